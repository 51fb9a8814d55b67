//! Limits, timeouts and socket options.

use std::time::Duration;

/// AIR's ceiling on a message: 4 GB, the most a `ByteArray` holds.
pub const MAX_MESSAGE_CEILING: u64 = u32::MAX as u64;

/// Settings for a [`WebSocket`](crate::WebSocket). `WebSocket::new()` uses
/// [`Config::default()`]; change a few fields with struct update syntax:
///
/// ```
/// use airws::{Config, WebSocket};
/// use std::time::Duration;
///
/// let ws = WebSocket::with_config(Config {
///     max_message_size: 1 << 20,
///     close_timeout: Duration::from_secs(2),
///     ..Config::default()
/// });
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest message accepted from the peer, all fragments together; a
    /// larger one fails the connection with 1009. Default 64 MiB; values above
    /// AIR's 4 GB ceiling are lowered to it.
    pub max_message_size: u64,
    /// Largest single frame accepted from the peer (1009 above it). Default 16 MiB.
    pub max_frame_size: u64,
    /// Largest HTTP head of the opening handshake, in bytes. Default 16 KiB.
    pub max_handshake_size: usize,
    /// How long a TCP connect may take, per address. Default 10 s.
    pub connect_timeout: Duration,
    /// How long the opening handshake (TLS and HTTP) may take. Default 10 s.
    pub handshake_timeout: Duration,
    /// How long to wait for the peer's part of the closing handshake before
    /// closing the socket. Default 5 s.
    pub close_timeout: Duration,
    /// How long a write may go without progress (the peer stopped reading)
    /// before the connection is dropped: the stalled `send_message` returns an
    /// error, and `close` (1006) follows. `None` waits forever.
    /// Default 30 s.
    pub write_timeout: Option<Duration>,
    /// Closes the connection (code 1001, then `close`) when nothing at all
    /// arrives from the peer for this long. `None` (the default) never does;
    /// a server facing the internet should set it, and its clients should
    /// send something (a ping will do) more often.
    pub idle_timeout: Option<Duration>,
    /// Set `TCP_NODELAY` on the socket (a message is a unit the peer waits
    /// for, so Nagle's algorithm only adds delay). Default true.
    pub nodelay: bool,
    /// Stack size of the connection's thread, where listeners run. Default 512 KiB.
    pub thread_stack_size: usize,
    /// The TLS settings for `wss` connections (trusted roots, client
    /// certificate, ...). Default `None`: the system's roots, with
    /// certificate and host name verification.
    ///
    /// When a `certificateError` listener calls `prevent_default()`, the
    /// connection is made again with a connector that accepts any
    /// certificate, built by the library: it does not carry this
    /// connector's client certificate. To reach a server that requires one,
    /// trust its certificate here (`add_root_certificate`) instead.
    pub tls_connector: Option<native_tls::TlsConnector>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: 64 << 20,
            max_frame_size: 16 << 20,
            max_handshake_size: 16 << 10,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            write_timeout: Some(Duration::from_secs(30)),
            idle_timeout: None,
            nodelay: true,
            thread_stack_size: 512 << 10,
            tls_connector: None,
        }
    }
}

impl Config {
    pub(crate) fn limits(&self) -> crate::proto::receiver::Limits {
        let message = self.max_message_size.min(MAX_MESSAGE_CEILING);
        crate::proto::receiver::Limits {
            max_message_size: message,
            max_frame_size: self.max_frame_size.min(message),
        }
    }
}
