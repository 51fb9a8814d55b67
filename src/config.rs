//! Limits, timeouts and socket options.

use crate::error::Error;
use crate::limit::ConnectionLimit;
use crate::proto::backoff::Backoff;
use crate::proto::budget::MemoryBudget;
use crate::proto::connection::Keepalive;
use crate::proto::deflate::DeflateConfig;
use crate::proto::Role;
use crate::proxy::Proxy;
use crate::tls::ClientTls;
use std::time::Duration;

/// AIR's ceiling on a message: 4 GB, the most a `ByteArray` holds.
pub const MAX_MESSAGE_CEILING: u64 = u32::MAX as u64;

/// Settings for a [`WebSocket`](crate::WebSocket): limits, timeouts, socket
/// options and a client's TLS settings. `WebSocket::new()` uses
/// [`Config::default()`]; to change some options, start from the default
/// and call one setter per option, each named like its option:
///
/// ```
/// use airws::{Config, WebSocket};
/// use std::time::Duration;
///
/// let config = Config::default()
///     .max_message_size(1 << 20)
///     .close_timeout(Duration::from_secs(2))
///     .idle_timeout(Duration::from_secs(120));
/// let ws = WebSocket::with_config(config);
/// # drop(ws);
/// ```
///
/// The fields are private, so a new option is a new setter and code written
/// against this version keeps compiling. The values set can be seen in the
/// `Debug` output.
///
/// # Defaults by role
///
/// One `Config` serves both roles, because a `WebSocket` takes its role only
/// when it is used: [`connect`](crate::WebSocket::connect) makes it a client,
/// [`start_server`](crate::WebSocket::start_server) the server end of an
/// accepted socket. `Config::default()` holds the defaults of each role, and
/// the connection uses those of the role it has; a setter sets its option for
/// both roles. So `WebSocket::new()` (AS3's `new WebSocket()`) gets fitting
/// defaults in either role, and a server needs no configuration of its own to
/// get the server's defaults. They differ where a server faces peers it
/// does not know: a server accepts messages up to 16 MiB (a client 64 MiB),
/// drops a peer silent for 5 minutes, and fails a message not finished
/// within a minute; each setter's documentation gives both defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    client: Options,
    server: Options,
}

/// The options of one role.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) max_message_size: u64,
    pub(crate) max_frame_size: u64,
    pub(crate) max_handshake_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) message_timeout: Option<Duration>,
    pub(crate) tcp_keepalive: Option<Duration>,
    pub(crate) release_buffers_after: Duration,
    pub(crate) nodelay: bool,
    pub(crate) thread_stack_size: usize,
    pub(crate) client_tls: ClientTls,
    pub(crate) memory_budget: MemoryBudget,
    pub(crate) connection_limit: ConnectionLimit,
    pub(crate) proxy: Proxy,
    pub(crate) max_redirects: u32,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) max_buffered_amount: usize,
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) reconnect: Option<Backoff>,
    pub(crate) deflate: Option<DeflateConfig>,
}

impl Options {
    /// The defaults of `role`.
    fn defaults(role: Role) -> Options {
        let base = Options {
            max_message_size: 64 << 20,
            max_frame_size: 16 << 20,
            max_handshake_size: 16 << 10,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            write_timeout: Some(Duration::from_secs(30)),
            idle_timeout: None,
            message_timeout: None,
            tcp_keepalive: Some(Duration::from_secs(60)),
            release_buffers_after: Duration::from_secs(10),
            nodelay: true,
            thread_stack_size: 512 << 10,
            memory_budget: MemoryBudget::process_default(),
            connection_limit: ConnectionLimit::process_default(),
            proxy: Proxy::FromEnvironment,
            max_redirects: 0,
            allowed_origins: Vec::new(),
            max_buffered_amount: 16 << 20,
            keepalive: None,
            reconnect: None,
            deflate: None,
            client_tls: ClientTls::default(),
        };
        match role {
            Role::Client => base,
            // A server's peers are strangers: smaller messages, and no
            // connection or message held for ever.
            // Keepalive finds peers gone without a word in 90 s; a quiet
            // peer that answers the pings is not idle, and the idle
            // timeout stays for one that sends nothing when keepalive is
            // turned off.
            Role::Server => Options {
                max_message_size: 16 << 20,
                idle_timeout: Some(Duration::from_secs(300)),
                message_timeout: Some(Duration::from_secs(60)),
                keepalive: Some(Keepalive {
                    interval: Duration::from_secs(60),
                    timeout: Duration::from_secs(30),
                }),
                ..base
            },
        }
    }

    /// The protocol's size limits, the message limit lowered to AIR's
    /// ceiling and the frame limit to the message limit.
    pub(crate) fn limits(&self) -> crate::proto::receiver::Limits {
        let message = self.max_message_size.min(MAX_MESSAGE_CEILING);
        crate::proto::receiver::Limits {
            max_message_size: message,
            max_frame_size: self.max_frame_size.min(message),
        }
    }
}

impl Default for Config {
    /// The defaults of each role (see [Defaults by role](Config#defaults-by-role)).
    fn default() -> Self {
        Config {
            client: Options::defaults(Role::Client),
            server: Options::defaults(Role::Server),
        }
    }
}

impl Config {
    /// The options a connection in `role` uses.
    pub(crate) fn for_role(&self, role: Role) -> &Options {
        match role {
            Role::Client => &self.client,
            Role::Server => &self.server,
        }
    }

    /// Sets an option for both roles.
    fn set(mut self, set: impl Fn(&mut Options)) -> Self {
        set(&mut self.client);
        set(&mut self.server);
        self
    }

    /// Largest message accepted from the peer, all fragments together; a
    /// larger one fails the connection with 1009. Default 16 MiB for a
    /// server (the largest message of Autobahn|Testsuite's limits cases;
    /// 32 of them fit the default memory budget at once), 64 MiB for a
    /// client; values above AIR's 4 GB ceiling ([`MAX_MESSAGE_CEILING`]) are
    /// lowered to it.
    #[must_use]
    pub fn max_message_size(self, bytes: u64) -> Self {
        self.set(|o| o.max_message_size = bytes)
    }

    /// Largest single frame accepted from the peer; a larger one fails the
    /// connection with 1009. Default 16 MiB; a value above the message limit
    /// is lowered to it.
    #[must_use]
    pub fn max_frame_size(self, bytes: u64) -> Self {
        self.set(|o| o.max_frame_size = bytes)
    }

    /// Largest HTTP head of the opening handshake, in bytes: above it a
    /// server answers 431 and closes, a client fails the connection.
    /// Default 16 KiB.
    #[must_use]
    pub fn max_handshake_size(self, bytes: usize) -> Self {
        self.set(|o| o.max_handshake_size = bytes)
    }

    /// How long a client may take to find its host and reach it: name
    /// resolution (on a thread of its own, since the system's resolver
    /// cannot be interrupted) and the TCP connection together. A host's
    /// addresses are tried as RFC 8305 (Happy Eyeballs) says: the families
    /// interleaved, the next address 250 ms after the previous attempt
    /// began (or at once when it failed), the first connection made
    /// winning. When the host cannot be reached in time, `ioError` follows
    /// ([`Timeout::Connect`](crate::Timeout::Connect)). Default 10 s.
    #[must_use]
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.set(|o| o.connect_timeout = timeout)
    }

    /// How long the opening handshake (TLS and HTTP together) may take; a
    /// peer that has not finished by then is dropped (a server answers an
    /// unfinished request with 408 first). Default 10 s.
    #[must_use]
    pub fn handshake_timeout(self, timeout: Duration) -> Self {
        self.set(|o| o.handshake_timeout = timeout)
    }

    /// How long to wait for the peer's part of the closing handshake before
    /// closing the socket. Default 5 s.
    #[must_use]
    pub fn close_timeout(self, timeout: Duration) -> Self {
        self.set(|o| o.close_timeout = timeout)
    }

    /// How long a write may go without progress (the peer stopped reading)
    /// before the connection is dropped: the stalled `send_message` returns an
    /// error, and `close` (1006) follows. `None` waits forever.
    /// Default 30 s.
    #[must_use]
    pub fn write_timeout(self, timeout: impl Into<Option<Duration>>) -> Self {
        let timeout = timeout.into();
        self.set(|o| o.write_timeout = timeout)
    }

    /// Closes the connection (code 1001, then `close`) when nothing at all
    /// arrives from the peer for this long; `None` never does. Default 5
    /// minutes for a server (a peer that went away without a word does not
    /// hold a thread for ever), `None` for a client. Any frame counts,
    /// the pongs that answer the [`keepalive`](Self::keepalive)'s pings
    /// too: with a server's default keepalive a quiet client that answers
    /// is kept, and one that does not is found dead first.
    #[must_use]
    pub fn idle_timeout(self, timeout: impl Into<Option<Duration>>) -> Self {
        let timeout = timeout.into();
        self.set(|o| o.idle_timeout = timeout)
    }

    /// Fails the connection (code 1008, then `close`) when a message has
    /// not ended this long after its first frame began to arrive, so that
    /// a peer cannot hold a partial message, and the memory it takes, for
    /// ever; `None` never does. Default 1 minute for a server (a 16 MiB
    /// message needs a link of about 2.3 Mbit/s to make it: a server whose
    /// clients send large messages over slow links sets a longer one),
    /// `None` for a client.
    #[must_use]
    pub fn message_timeout(self, timeout: impl Into<Option<Duration>>) -> Self {
        let timeout = timeout.into();
        self.set(|o| o.message_timeout = timeout)
    }

    /// TCP keepalive on the socket: after this long without traffic the
    /// system probes the peer, every 10 s, and ends a connection whose peer
    /// is gone (a machine that crashed or lost its network sends no FIN),
    /// which the read then reports. `None` turns it off. Default 60 s, both
    /// roles.
    #[must_use]
    pub fn tcp_keepalive(self, idle: impl Into<Option<Duration>>) -> Self {
        let idle = idle.into();
        self.set(|o| o.tcp_keepalive = idle)
    }

    /// The memory budget that what peers make the library hold is charged
    /// to (a partial message, buffers kept for later messages, a read
    /// buffer beyond its base size), shared by every connection given the
    /// same [`MemoryBudget`]. A connection that would go over it fails with
    /// 1009 when its message alone is larger than the whole budget, else
    /// with 1013 (try again later); the others carry on. Default
    /// [`MemoryBudget::process_default`]: one budget of 512 MiB for the
    /// whole process.
    ///
    /// ```
    /// use airws::{Config, MemoryBudget};
    /// let server_budget = MemoryBudget::new(256 << 20);
    /// let config = Config::default().memory_budget(server_budget);
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn memory_budget(self, budget: MemoryBudget) -> Self {
        self.set(|o| o.memory_budget = budget.clone())
    }

    /// The cap on server connections that run at once (see
    /// [`ConnectionLimit`]), shared by every `WebSocket` given the same
    /// limit: over it, `start_server` answers 503 and returns
    /// [`Error::TooManyConnections`](crate::Error::TooManyConnections). A
    /// server role option (a client's connection is its application's own
    /// doing). Default [`ConnectionLimit::process_default`]: 16 384 for the
    /// whole process.
    #[must_use]
    pub fn connection_limit(mut self, limit: ConnectionLimit) -> Self {
        self.server.connection_limit = limit;
        self
    }

    /// How long a connection must be quiet (nothing arrives, no message is
    /// half received) before the buffers that earlier traffic grew go back
    /// to their idle size: the read buffer (256 KiB back to 64 KiB), the
    /// buffers kept to carry later messages (up to 256 KiB), the writer's
    /// batching buffer (up to 256 KiB). So an idle connection holds about
    /// its base whatever it received before. Default 10 s, both roles.
    #[must_use]
    pub fn release_buffers_after(self, quiet: Duration) -> Self {
        self.set(|o| o.release_buffers_after = quiet)
    }

    /// Keepalive, to find peers that are gone without a word (a laptop
    /// asleep, a NAT that dropped the mapping, a frozen server): after
    /// `interval` in which nothing arrived, a ping; after `timeout` more
    /// still without anything (any frame from the peer counts, not only the
    /// pong), the peer is declared dead. The connection then fails at once:
    /// a close frame with 1011 if it can be written without waiting, the
    /// socket closed without waiting for an answer, `close_reason()` 1011,
    /// and `close` carrying [`Error::Timeout`](crate::Error::Timeout) with
    /// [`Timeout::Keepalive`](crate::Timeout::Keepalive) ("the peer did not
    /// answer pings"). Driven by the connection's own timers: no thread.
    /// Default: for a server 60 s and 30 s (a client gone without a word is
    /// found within 90 s, and one that answers the pings is never idle, so
    /// the [`idle_timeout`](Self::idle_timeout) is left for servers that
    /// turn keepalive off); off for a client. Not in AIR.
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) when
    /// either is zero.
    ///
    /// ```
    /// use airws::Config;
    /// use std::time::Duration;
    ///
    /// let config = Config::default().keepalive(Duration::from_secs(20), Duration::from_secs(20))?;
    /// assert!(Config::default().keepalive(Duration::ZERO, Duration::from_secs(1)).is_err());
    /// # let _ = config;
    /// # Ok::<(), airws::Error>(())
    /// ```
    pub fn keepalive(self, interval: Duration, timeout: Duration) -> Result<Self, Error> {
        if interval.is_zero() || timeout.is_zero() {
            return Err(Error::argument(format!(
                "keepalive: the ping interval ({interval:?}) and the pong timeout \
                 ({timeout:?}) must both be longer than zero"
            )));
        }
        Ok(self.set(|o| o.keepalive = Some(Keepalive { interval, timeout })))
    }

    /// A client tries again, after the delays of `backoff`, when its
    /// connection ends or an attempt fails in a way that trying again can
    /// fix: not after a refused certificate, an upgrade refused with a 4xx
    /// other than 408 and 429 (or a 3xx), a close with 1002, 1003, 1007,
    /// 1008, 1009, 1010 or 1015 ([`proto::backoff`](crate::proto::backoff)),
    /// nor after `close()` or when the last handle is dropped, which also
    /// stop a wait at once. Before each attempt a
    /// [`reconnecting`](crate::ReconnectEvent) event says which, after how
    /// long and why; `connect` follows each success. While it waits the
    /// `WebSocket` is connecting: `send_message` fails with
    /// [`Error::NotOpen`](crate::Error::NotOpen). When it gives up (attempts
    /// spent, or a failure it cannot fix), the last failure's events are
    /// dispatched as without reconnecting. Off by default; client only. Not
    /// in AIR.
    ///
    /// ```
    /// use airws::proto::backoff::Backoff;
    /// use airws::Config;
    ///
    /// let config = Config::default().reconnect(Backoff::default().max_attempts(Some(10)));
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn reconnect(self, backoff: Backoff) -> Self {
        self.set(|o| o.reconnect = Some(backoff))
    }

    /// Turns [`reconnect`](Self::reconnect) off (the default).
    #[must_use]
    pub fn no_reconnect(self) -> Self {
        self.set(|o| o.reconnect = None)
    }

    /// Turns [`keepalive`](Self::keepalive) off (the default).
    #[must_use]
    pub fn no_keepalive(self) -> Self {
        self.set(|o| o.keepalive = None)
    }

    /// Turns permessage-deflate (RFC 7692) on, on the terms of `deflate`:
    /// a client offers it in its upgrade request, a server accepts a
    /// client's offer (the first one it can). Messages of at least
    /// `deflate.threshold` bytes then go out compressed, and the peer's
    /// compressed messages are inflated, their size limits applied to
    /// what they inflate to. Not in AIR: off by default in both roles, so
    /// that a ported application sends what AIR sends.
    ///
    /// Its cost is memory on each connection that uses it: with context
    /// takeover (the default), about 340 KiB for the compressor and 40 KiB
    /// for the inflater at 15 window bits, kept while the connection
    /// lives; a side that resets after each message
    /// (`*_no_context_takeover`) frees its state while the connection is
    /// quiet ([`release_buffers_after`](Self::release_buffers_after)).
    /// That state is charged to the [`memory_budget`](Self::memory_budget):
    /// a server whose budget has no room for it declines the offer (the
    /// connection opens uncompressed), and a client does not offer. The
    /// default budget (512 MiB for the process) thus holds the state of
    /// about 1 200 compressed connections: a server that means thousands
    /// of connections to compress raises it (10 000 need about 4 GiB), or
    /// turns context takeover off for mostly idle ones. CPU: at level 6,
    /// about 180 µs of a core per 16 KiB message echoed and 7.5 µs per
    /// 256 B one. `docs/benchmarks.md` has the measured figures.
    ///
    /// [`InvalidArgument`](Error::InvalidArgument) for a level above 9 or
    /// window bits outside 8 to 15, or when the crate was built without
    /// its `deflate` feature (on by default).
    ///
    /// ```
    /// use airws::{Config, DeflateConfig};
    ///
    /// let mut deflate = DeflateConfig::default();
    /// deflate.server_no_context_takeover = true; // less memory per connection
    /// let config = Config::default().permessage_deflate(deflate)?;
    /// # let _ = config;
    /// # Ok::<(), airws::Error>(())
    /// ```
    pub fn permessage_deflate(self, deflate: DeflateConfig) -> Result<Self, Error> {
        if !cfg!(feature = "deflate") {
            return Err(Error::argument(
                "permessage_deflate: airws was built without its deflate feature",
            ));
        }
        deflate.check().map_err(Error::argument)?;
        Ok(self.set(|o| o.deflate = Some(deflate)))
    }

    /// Turns [`permessage_deflate`](Self::permessage_deflate) off (the
    /// default): a client offers no extension, a server declines every
    /// offer.
    #[must_use]
    pub fn no_permessage_deflate(self) -> Self {
        self.set(|o| o.deflate = None)
    }

    /// [`permessage_deflate`](Self::permessage_deflate) for one role only
    /// (`Some`: on, on those terms; `None`: off), the other role's setting
    /// kept: `Role::Server` to accept offers from clients,
    /// `Role::Client` to offer it. For one `Config` shared by a server's
    /// `WebSocket`s and the clients the same process opens.
    ///
    /// ```
    /// use airws::proto::Role;
    /// use airws::{Config, DeflateConfig};
    ///
    /// // A server that compresses for browsers; its own outgoing clients do not.
    /// let config = Config::default().permessage_deflate_for(Role::Server, Some(DeflateConfig::default()))?;
    /// # let _ = config;
    /// # Ok::<(), airws::Error>(())
    /// ```
    pub fn permessage_deflate_for(
        mut self,
        role: Role,
        deflate: Option<DeflateConfig>,
    ) -> Result<Self, Error> {
        if let Some(d) = &deflate {
            if !cfg!(feature = "deflate") {
                return Err(Error::argument(
                    "permessage_deflate: airws was built without its deflate feature",
                ));
            }
            d.check().map_err(Error::argument)?;
        }
        match role {
            Role::Client => self.client.deflate = deflate,
            Role::Server => self.server.deflate = deflate,
        }
        Ok(self)
    }

    /// The most bytes that sends which must not block may leave waiting to
    /// be written: those of the thread that pumps the `WebSocket`'s
    /// [`EventPump`](crate::EventPump), which queue their message and
    /// return at once. A send that would pass it fails with
    /// [`Error::BufferFull`](crate::Error::BufferFull) (a message alone
    /// larger than it is queued when nothing else waits). Default 16 MiB,
    /// both roles.
    #[must_use]
    pub fn max_buffered_amount(self, bytes: usize) -> Self {
        self.set(|o| o.max_buffered_amount = bytes)
    }

    /// How a client reaches its server: [`Proxy::FromEnvironment`] (the
    /// default: `http_proxy`, `https_proxy`, `all_proxy`, `no_proxy`, as
    /// Python's `requests` reads them), [`Proxy::None`], or an HTTP proxy
    /// ([`Proxy::http`]). Through a proxy, the client asks it for a tunnel
    /// (`CONNECT host:port`, the URL's host name unresolved), then runs TLS
    /// (for `wss`, with the server's name for SNI and the certificate
    /// checks) and the upgrade through it; the connect timeout covers the
    /// connection to the proxy, the handshake timeout the tunnel's opening.
    /// A proxy that refuses is an `ioError` carrying [`Error::Proxy`] with
    /// its HTTP status. A client role option.
    ///
    /// [`Error::Proxy`]: crate::Error::Proxy
    #[must_use]
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.client.proxy = proxy;
        self
    }

    /// How many redirects of the upgrade a client follows (301, 302, 303,
    /// 307, 308 with a `Location`; `http`/`https` locations become
    /// `ws`/`wss`). Default 0: a redirect is a refused upgrade, as in AIR;
    /// 5 follows what a moved service needs. Never from `wss` to `ws`;
    /// `Authorization` and `Cookie` are not sent to another host (or port)
    /// than the first; a loop, or more redirects than this, ends the
    /// connection with a `close` carrying [`Error::Redirect`] that lists
    /// the chain. A client role option.
    ///
    /// [`Error::Redirect`]: crate::Error::Redirect
    #[must_use]
    pub fn max_redirects(mut self, max: u32) -> Self {
        self.client.max_redirects = max;
        self
    }

    /// The origins whose web pages may open a WebSocket to this server
    /// (`https://app.example`, scheme, host and port as the browser's
    /// `Origin` header gives them, compared without regard to case): a
    /// request with another `Origin` is answered `403 Forbidden` before any
    /// listener sees it, so that a page elsewhere cannot use a visitor's
    /// cookies on this server (cross-site WebSocket hijacking). A request
    /// without `Origin` is allowed: browsers always send one, so it comes
    /// from a program, which an origin check does not stop anyway. Default
    /// empty: any origin. A server role option.
    ///
    /// ```
    /// use airws::Config;
    /// let config = Config::default().allowed_origins(["https://app.example"]);
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.server.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Set `TCP_NODELAY` on the socket (a message is a unit the peer waits
    /// for, so Nagle's algorithm only adds delay). Default true.
    #[must_use]
    pub fn nodelay(self, nodelay: bool) -> Self {
        self.set(|o| o.nodelay = nodelay)
    }

    /// Stack size of the connection's thread, where listeners run; a
    /// listener that needs more overflows it, which aborts the process.
    /// Default 512 KiB.
    #[must_use]
    pub fn thread_stack_size(self, bytes: usize) -> Self {
        self.set(|o| o.thread_stack_size = bytes)
    }

    /// The TLS settings of a client's `wss` connections: trusted roots, a
    /// client identity, the checks (see [`ClientTls`]). Default
    /// `ClientTls::default()`: the system's roots, no identity, certificate
    /// and host name checks on.
    ///
    /// When the server's certificate fails the checks and a
    /// `certificateError` listener exists, the second connection that asks
    /// the listeners uses these settings too, with the checks off: it
    /// presents the same client identity.
    ///
    /// Only a client uses them; a server's TLS settings are the
    /// [`ServerTls`](crate::ServerTls) given to
    /// [`start_server_tls`](crate::WebSocket::start_server_tls).
    #[must_use]
    pub fn client_tls(self, tls: ClientTls) -> Self {
        self.set(|o| o.client_tls = tls.clone())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn permessage_deflate_is_set_per_role_or_for_both_and_checked() {
        use crate::proto::deflate::DeflateConfig;
        let c = Config::default();
        assert!(c.client.deflate.is_none() && c.server.deflate.is_none());
        let d = DeflateConfig::default();
        if cfg!(feature = "deflate") {
            let both = Config::default().permessage_deflate(d).unwrap();
            assert_eq!(
                (both.client.deflate, both.server.deflate),
                (Some(d), Some(d))
            );
            let server = Config::default()
                .permessage_deflate_for(Role::Server, Some(d))
                .unwrap();
            assert_eq!(
                (server.client.deflate, server.server.deflate),
                (None, Some(d))
            );
            let off = both.permessage_deflate_for(Role::Client, None).unwrap();
            assert_eq!((off.client.deflate, off.server.deflate), (None, Some(d)));
            assert!(off.no_permessage_deflate().server.deflate.is_none());
            let mut bad = d;
            bad.server_max_window_bits = 16;
            let e = Config::default().permessage_deflate(bad).unwrap_err();
            assert!(e.to_string().contains("server_max_window_bits"), "{e}");
            assert!(Config::default()
                .permessage_deflate_for(Role::Client, Some(bad))
                .is_err());
        } else {
            assert!(Config::default().permessage_deflate(d).is_err());
        }
    }

    use super::*;

    #[test]
    fn each_role_has_its_defaults() {
        let config = Config::default();
        let (client, server) = (config.for_role(Role::Client), config.for_role(Role::Server));
        assert_eq!(client.max_message_size, 64 << 20);
        assert_eq!(server.max_message_size, 16 << 20);
        assert_eq!(client.idle_timeout, None);
        assert_eq!(server.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(client.message_timeout, None);
        assert_eq!(server.message_timeout, Some(Duration::from_secs(60)));
        assert_eq!(client.keepalive, None);
        assert_eq!(
            server.keepalive,
            Some(Keepalive {
                interval: Duration::from_secs(60),
                timeout: Duration::from_secs(30)
            })
        );
        for role in [Role::Client, Role::Server] {
            let o = config.for_role(role);
            assert_eq!(o.max_frame_size, 16 << 20);
            assert_eq!(o.max_handshake_size, 16 << 10);
            assert_eq!(o.connect_timeout, Duration::from_secs(10));
            assert_eq!(o.handshake_timeout, Duration::from_secs(10));
            assert_eq!(o.close_timeout, Duration::from_secs(5));
            assert_eq!(o.write_timeout, Some(Duration::from_secs(30)));
            assert_eq!(o.tcp_keepalive, Some(Duration::from_secs(60)));
            assert_eq!(o.release_buffers_after, Duration::from_secs(10));
            assert!(o.memory_budget.same(&MemoryBudget::process_default()));
            assert!(o.nodelay);
            assert_eq!(o.thread_stack_size, 512 << 10);
            assert_eq!(
                format!("{:?}", o.client_tls),
                format!("{:?}", ClientTls::default())
            );
        }
    }

    #[test]
    fn a_setter_sets_its_option_for_both_roles() {
        let config = Config::default()
            .max_message_size(1 << 20)
            .max_frame_size(1 << 10)
            .max_handshake_size(1 << 12)
            .connect_timeout(Duration::from_secs(1))
            .handshake_timeout(Duration::from_secs(2))
            .close_timeout(Duration::from_secs(3))
            .write_timeout(None)
            .idle_timeout(Duration::from_secs(4))
            .message_timeout(Duration::from_secs(5))
            .tcp_keepalive(None)
            .memory_budget(MemoryBudget::new(1 << 20))
            .nodelay(false)
            .thread_stack_size(1 << 16)
            .client_tls(ClientTls::new().danger_accept_invalid_hostnames(true));
        for role in [Role::Client, Role::Server] {
            let o = config.for_role(role);
            assert_eq!(o.max_message_size, 1 << 20);
            assert_eq!(o.max_frame_size, 1 << 10);
            assert_eq!(o.max_handshake_size, 1 << 12);
            assert_eq!(o.connect_timeout, Duration::from_secs(1));
            assert_eq!(o.handshake_timeout, Duration::from_secs(2));
            assert_eq!(o.close_timeout, Duration::from_secs(3));
            assert_eq!(o.write_timeout, None);
            assert_eq!(o.idle_timeout, Some(Duration::from_secs(4)));
            assert_eq!(o.message_timeout, Some(Duration::from_secs(5)));
            assert_eq!(o.tcp_keepalive, None);
            assert_eq!(o.memory_budget.limit(), 1 << 20);
            assert!(!o.nodelay);
            assert_eq!(o.thread_stack_size, 1 << 16);
            assert!(format!("{:?}", o.client_tls).contains("danger_accept_invalid_hostnames: true"));
        }
    }

    #[test]
    fn the_limits_are_lowered_to_the_ceiling_and_the_message_limit() {
        let o = Config::default()
            .max_message_size(u64::MAX)
            .max_frame_size(u64::MAX);
        let limits = o.for_role(Role::Server).limits();
        assert_eq!(limits.max_message_size, MAX_MESSAGE_CEILING);
        assert_eq!(limits.max_frame_size, MAX_MESSAGE_CEILING);
        let o = Config::default().max_message_size(100).max_frame_size(1000);
        let limits = o.for_role(Role::Client).limits();
        assert_eq!(limits.max_frame_size, 100);
    }
}
