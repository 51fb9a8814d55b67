//! The public API's error type, also what an `ioError`, a
//! `securityError` and the `close` of a failed connection carry
//! ([`Event::error`](crate::Event::error)).

use crate::event::UpgradeRefusal;
use std::fmt;
use std::io;
use std::time::Duration;

/// What a call of the public API can fail with, and why a connection
/// failed.
///
/// A call fails with [`InvalidArgument`](Error::InvalidArgument),
/// [`InvalidUrl`](Error::InvalidUrl), [`AlreadyOpen`](Error::AlreadyOpen)
/// (AS3's `ArgumentError`), [`NotOpen`](Error::NotOpen),
/// [`IllegalOperation`](Error::IllegalOperation) (AS3's
/// `IllegalOperationError`), [`Io`](Error::Io) or
/// [`Timeout`](Error::Timeout) (AS3's `IOError`) before anything is sent.
/// A connection that fails later reports it in its events:
/// [`Event::error`](crate::Event::error) of an `ioError` ([`Io`](Error::Io),
/// [`Timeout`](Error::Timeout)), of a `securityError`
/// ([`Tls`](Error::Tls)), and of the `close` of a connection this end
/// failed ([`Protocol`](Error::Protocol), [`Timeout`](Error::Timeout),
/// [`HandshakeRefused`](Error::HandshakeRefused), ...).
///
/// `Display` keeps AIR's wording: the AS3 error class, then the message
/// (`"IllegalOperationError: sendMessage: the WebSocket is not open (it is
/// closed)"`). The enum and each variant are `#[non_exhaustive]`, so that
/// variants and fields can be added: match with `{ .. }` and a `_` arm.
///
/// ```
/// use airws::{Error, WebSocket};
///
/// let ws = WebSocket::new();
/// match ws.send_message(WebSocket::FMT_TEXT, "hi") {
///     Err(Error::NotOpen { operation, .. }) => assert_eq!(operation, "sendMessage"),
///     other => panic!("{other:?}"),
/// }
/// match ws.connect("http://example.com/", &[]) {
///     Err(e @ Error::InvalidUrl { .. }) => assert!(e.to_string().starts_with("ArgumentError")),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// AS3's `ArgumentError`: a bad argument (an unknown opcode, data too
    /// long, text that is not UTF-8, a close code that may not be sent, a
    /// protocol name that is not a token, unusable TLS material, ...).
    #[non_exhaustive]
    InvalidArgument {
        /// What is wrong, starting with the AS3 method's name.
        message: String,
    },
    /// AS3's `ArgumentError` for `connect`'s URL: it cannot be parsed, is not
    /// `ws://` or `wss://`, or has no host.
    #[non_exhaustive]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// AS3's `ArgumentError` for `connect` or `startServer` on a WebSocket
    /// whose connection is open or opening.
    #[non_exhaustive]
    AlreadyOpen {
        /// The AS3 method called (`"connect"`, `"startServer"`).
        operation: &'static str,
    },
    /// AS3's `IllegalOperationError` for a call that needs an open
    /// WebSocket (`sendMessage`).
    #[non_exhaustive]
    NotOpen {
        /// The AS3 method called.
        operation: &'static str,
        /// Where the WebSocket is instead: `"not connected"`, `"still
        /// connecting"`, `"closing"` or `"closed"`.
        state: &'static str,
    },
    /// AS3's `IllegalOperationError` otherwise: the call does not fit the
    /// object's state (setting `protocol` after the handshake, a message
    /// after the close frame, binding a bound `ServerSocket`, ...).
    #[non_exhaustive]
    IllegalOperation {
        /// What is wrong, usually starting with the AS3 method's name.
        message: String,
    },
    /// AS3's `IOError`: the operating system reported an I/O error (a host
    /// that cannot be resolved, a refused or reset connection, ...).
    #[non_exhaustive]
    Io {
        /// Which kind of failure: also the `ioError`'s `error_id`.
        kind: IoErrorKind,
        /// What was being done ("Cannot connect to example.com:80").
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A timeout passed, and which one (AS3's `IOError`; an `ioError` with
    /// [`IOErrorEvent::TIMED_OUT_ID`](crate::IOErrorEvent::TIMED_OUT_ID)).
    #[non_exhaustive]
    Timeout {
        /// Which timeout of the [`Config`](crate::Config).
        which: Timeout,
        /// Its length.
        after: Duration,
        /// What was being done ("Handshake with example.com:443"), or
        /// empty.
        context: String,
    },
    /// TLS could not be set up (AS3's `SecurityError`, a `securityError`
    /// event): the handshake failed, the peer does not speak TLS, or the
    /// certificate was refused.
    #[non_exhaustive]
    Tls {
        /// Whether the server's certificate (or host name) was the problem.
        certificate: bool,
        /// What failed, in words.
        message: String,
    },
    /// The peer broke a rule of RFC 6455, and this end failed the
    /// connection with `code` (1002, 1007, 1009, ...).
    #[non_exhaustive]
    Protocol {
        /// The close code sent for it, also the `close_reason`.
        code: u16,
        /// The rule that was broken.
        message: String,
    },
    /// The server refused the client's upgrade: its HTTP status, reason
    /// phrase and the start of its body.
    HandshakeRefused(UpgradeRefusal),
    /// The HTTP proxy did not open the tunnel (AS3's `IOError`, an
    /// `ioError`): it refused with an HTTP status (407: it wants
    /// credentials), or it broke the exchange.
    #[non_exhaustive]
    Proxy {
        /// The proxy's HTTP status, when it answered with one.
        status: Option<u16>,
        /// What happened, naming the proxy and the target.
        message: String,
    },
    /// A redirect of the upgrade that is not followed (see
    /// [`Config::max_redirects`](crate::Config::max_redirects)): a loop,
    /// more redirects than allowed, one from `wss` to `ws`, or a `Location`
    /// that is not a WebSocket URL.
    #[non_exhaustive]
    Redirect {
        /// What was wrong, with the URLs of the chain.
        message: String,
    },
    /// `startServer` over the [`ConnectionLimit`](crate::ConnectionLimit):
    /// the client was answered 503 (AS3's `IOError`).
    #[non_exhaustive]
    TooManyConnections {
        /// The limit that was reached.
        limit: usize,
    },
    /// A send that must not block (from the thread of the
    /// [`EventPump`](crate::EventPump) the `WebSocket` is attached to)
    /// found its outgoing queue full: the peer reads slower than the
    /// application sends (AS3's `IOError`). Nothing of the message was
    /// queued; send it again once [`buffered_amount`](crate::WebSocket::buffered_amount)
    /// has come down.
    #[non_exhaustive]
    BufferFull {
        /// The bytes waiting to be written.
        buffered: u64,
        /// [`Config::max_buffered_amount`](crate::Config::max_buffered_amount).
        limit: u64,
    },
}

/// Which kind of I/O failure an [`Error::Io`] is; each has its own
/// `ioError` `error_id` ([`IoErrorKind::error_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoErrorKind {
    /// The host name could not be resolved (DNS).
    HostNotFound,
    /// Nothing listens there: the connection was refused.
    ConnectionRefused,
    /// The operating system gave up waiting (a TCP timeout).
    TimedOut,
    /// The peer reset or aborted the connection, or it broke.
    ConnectionReset,
    /// Any other failure of a socket.
    Other,
}

impl IoErrorKind {
    /// The kind of an operating system error.
    pub fn of(e: &io::Error) -> IoErrorKind {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => IoErrorKind::ConnectionRefused,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => IoErrorKind::TimedOut,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => IoErrorKind::ConnectionReset,
            _ => IoErrorKind::Other,
        }
    }

    /// The `error_id` of an `ioError` of this kind (see [`IOErrorEvent`]).
    ///
    /// [`IOErrorEvent`]: crate::IOErrorEvent
    pub fn error_id(self) -> i32 {
        use crate::event::IOErrorEvent as E;
        match self {
            IoErrorKind::HostNotFound => E::HOST_NOT_FOUND_ID,
            IoErrorKind::ConnectionRefused => E::CONNECTION_REFUSED_ID,
            IoErrorKind::TimedOut => E::TIMED_OUT_ID,
            IoErrorKind::ConnectionReset => E::CONNECTION_RESET_ID,
            IoErrorKind::Other => E::SOCKET_ERROR_ID,
        }
    }

    /// The words of an `ioError`'s text for this kind (`"Connection
    /// refused"`), after `Error #id: `.
    fn title(self) -> &'static str {
        match self {
            IoErrorKind::HostNotFound => "Host not found",
            IoErrorKind::ConnectionRefused => "Connection refused",
            IoErrorKind::TimedOut => "Timed out",
            IoErrorKind::ConnectionReset => "Connection reset",
            IoErrorKind::Other => "Socket Error",
        }
    }
}

/// Which timeout of the [`Config`](crate::Config) passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timeout {
    /// `connect_timeout`: no TCP connection to any of the host's addresses.
    Connect,
    /// `handshake_timeout`: TLS and the HTTP upgrade did not complete.
    Handshake,
    /// `write_timeout`: the peer stopped reading while a write waited.
    Write,
    /// `idle_timeout`: nothing arrived for that long.
    Idle,
    /// `message_timeout`: a message did not end that long after it began.
    Message,
    /// `keepalive`: nothing arrived for its interval and timeout, a ping
    /// sent between: the peer did not answer pings.
    Keepalive,
    /// The timeout of a blocking [`receive`](crate::WebSocket::receive):
    /// no message came.
    Receive,
    /// The timeout of [`close_and_wait`](crate::WebSocket::close_and_wait):
    /// the closing handshake did not end.
    Close,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Timeout::Connect => "connect",
            Timeout::Handshake => "handshake",
            Timeout::Write => "write",
            Timeout::Idle => "idle",
            Timeout::Message => "message",
            Timeout::Keepalive => "keepalive",
            Timeout::Receive => "receive",
            Timeout::Close => "close",
        })
    }
}

impl Error {
    pub(crate) fn argument(msg: impl Into<String>) -> Error {
        Error::InvalidArgument {
            message: msg.into(),
        }
    }

    pub(crate) fn illegal(msg: impl Into<String>) -> Error {
        Error::IllegalOperation {
            message: msg.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            kind: IoErrorKind::of(&source),
            context: context.into(),
            source,
        }
    }

    /// An I/O error of a known kind.
    pub(crate) fn io_kind(
        kind: IoErrorKind,
        context: impl Into<String>,
        source: io::Error,
    ) -> Error {
        Error::Io {
            kind,
            context: context.into(),
            source,
        }
    }

    /// `io`, or the timeout `which` when `source` is a timeout.
    pub(crate) fn io_or_timeout(
        context: impl Into<String>,
        source: io::Error,
        which: Timeout,
        after: Option<Duration>,
    ) -> Error {
        match (IoErrorKind::of(&source), after) {
            (IoErrorKind::TimedOut, Some(after)) => Error::Timeout {
                which,
                after,
                context: context.into(),
            },
            _ => Error::io(context, source),
        }
    }

    pub(crate) fn tls(certificate: bool, message: impl Into<String>) -> Error {
        Error::Tls {
            certificate,
            message: message.into(),
        }
    }

    /// The AS3 error class this error is reported as.
    fn class(&self) -> &'static str {
        match self {
            Error::InvalidArgument { .. }
            | Error::InvalidUrl { .. }
            | Error::AlreadyOpen { .. } => "ArgumentError",
            Error::NotOpen { .. } | Error::IllegalOperation { .. } => "IllegalOperationError",
            Error::Tls { .. } => "SecurityError",
            Error::Io { .. }
            | Error::Timeout { .. }
            | Error::Protocol { .. }
            | Error::HandshakeRefused(_)
            | Error::TooManyConnections { .. }
            | Error::BufferFull { .. }
            | Error::Proxy { .. }
            | Error::Redirect { .. } => "IOError",
        }
    }

    /// The `error_id` of the `ioError` this error is dispatched as: the
    /// kind's id for [`Io`](Error::Io), `TIMED_OUT_ID` for a timeout,
    /// `SOCKET_ERROR_ID` for the rest.
    pub fn error_id(&self) -> i32 {
        match self {
            Error::Io { kind, .. } => kind.error_id(),
            Error::Timeout { .. } => IoErrorKind::TimedOut.error_id(),
            _ => IoErrorKind::Other.error_id(),
        }
    }

    /// The message without the AS3 class: an event's `text`.
    pub(crate) fn message(&self) -> String {
        Message(self).to_string()
    }
}

/// An error's message, without its AS3 class.
struct Message<'a>(&'a Error);

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Error::InvalidArgument { message } | Error::IllegalOperation { message } => {
                f.write_str(message)
            }
            Error::InvalidUrl { url, message } => {
                write!(f, "connect: invalid URL '{url}': {message}")
            }
            Error::AlreadyOpen { operation } => write!(
                f,
                "{operation}: there is already a socket connection open or opening"
            ),
            Error::NotOpen { operation, state } => {
                write!(f, "{operation}: the WebSocket is not open (it is {state})")
            }
            Error::Io {
                kind,
                context,
                source,
            } => {
                write!(f, "Error #{}: {}.", kind.error_id(), kind.title())?;
                if context.is_empty() {
                    write!(f, " {source}")
                } else {
                    write!(f, " {context}: {source}")
                }
            }
            Error::Timeout {
                which,
                after,
                context,
            } => {
                write!(
                    f,
                    "Error #{}: Timed out. ",
                    IoErrorKind::TimedOut.error_id()
                )?;
                if context.is_empty() {
                    write!(f, "The {which} timeout ({after:?}) passed")
                } else {
                    write!(f, "{context}: the {which} timeout ({after:?}) passed")
                }
            }
            Error::Tls { message, .. } | Error::Redirect { message } => f.write_str(message),
            Error::Proxy { message, .. } => write!(
                f,
                "Error #{}: Socket Error. {message}",
                IoErrorKind::Other.error_id()
            ),
            Error::Protocol { code, message } => write!(
                f,
                "the peer broke the WebSocket protocol: {message} (close code {code})"
            ),
            Error::HandshakeRefused(refusal) => {
                write!(f, "the server refused the upgrade: {refusal}")
            }
            Error::TooManyConnections { limit } => write!(
                f,
                "startServer: {limit} connections run already, the limit: answered 503"
            ),
            Error::BufferFull { buffered, limit } => write!(
                f,
                "sendMessage: {buffered} bytes wait to be written, and this message would \
                 pass the limit of {limit}: the peer reads slower than this end sends"
            ),
        }
    }
}

/// A clone is the same error; an [`Error::Io`]'s `source` becomes an
/// `io::Error` of the same kind and message (the operating system's code is
/// kept in its text).
impl Clone for Error {
    fn clone(&self) -> Error {
        match self {
            Error::InvalidArgument { message } => Error::InvalidArgument {
                message: message.clone(),
            },
            Error::InvalidUrl { url, message } => Error::InvalidUrl {
                url: url.clone(),
                message: message.clone(),
            },
            Error::AlreadyOpen { operation } => Error::AlreadyOpen { operation },
            Error::NotOpen { operation, state } => Error::NotOpen { operation, state },
            Error::IllegalOperation { message } => Error::IllegalOperation {
                message: message.clone(),
            },
            Error::Io {
                kind,
                context,
                source,
            } => Error::Io {
                kind: *kind,
                context: context.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Timeout {
                which,
                after,
                context,
            } => Error::Timeout {
                which: *which,
                after: *after,
                context: context.clone(),
            },
            Error::Tls {
                certificate,
                message,
            } => Error::Tls {
                certificate: *certificate,
                message: message.clone(),
            },
            Error::Protocol { code, message } => Error::Protocol {
                code: *code,
                message: message.clone(),
            },
            Error::HandshakeRefused(refusal) => Error::HandshakeRefused(refusal.clone()),
            Error::Proxy { status, message } => Error::Proxy {
                status: *status,
                message: message.clone(),
            },
            Error::Redirect { message } => Error::Redirect {
                message: message.clone(),
            },
            Error::TooManyConnections { limit } => Error::TooManyConnections { limit: *limit },
            Error::BufferFull { buffered, limit } => Error::BufferFull {
                buffered: *buffered,
                limit: *limit,
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class(), Message(self))
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::io("", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_keeps_the_as3_classes() {
        let cases = [
            (Error::argument("close: code 5"), "ArgumentError: close: code 5"),
            (
                Error::AlreadyOpen { operation: "connect" },
                "ArgumentError: connect: there is already a socket connection open or opening",
            ),
            (
                Error::NotOpen {
                    operation: "sendMessage",
                    state: "closed",
                },
                "IllegalOperationError: sendMessage: the WebSocket is not open (it is closed)",
            ),
            (
                Error::io(
                    "Cannot connect to h:1",
                    io::Error::from(io::ErrorKind::ConnectionRefused),
                ),
                "IOError: Error #20312: Connection refused. Cannot connect to h:1: connection refused",
            ),
            (
                Error::Timeout {
                    which: Timeout::Connect,
                    after: Duration::from_secs(10),
                    context: "Cannot connect to h:1".into(),
                },
                "IOError: Error #20313: Timed out. Cannot connect to h:1: the connect timeout (10s) passed",
            ),
            (Error::tls(false, "no TLS"), "SecurityError: no TLS"),
            (
                Error::Protocol {
                    code: 1002,
                    message: "masked frame".into(),
                },
                "IOError: the peer broke the WebSocket protocol: masked frame (close code 1002)",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn each_io_kind_has_its_own_id() {
        let ids = [
            IoErrorKind::HostNotFound,
            IoErrorKind::ConnectionRefused,
            IoErrorKind::TimedOut,
            IoErrorKind::ConnectionReset,
            IoErrorKind::Other,
        ]
        .map(IoErrorKind::error_id);
        assert_eq!(ids, [20311, 20312, 20313, 20314, 2031]);
        let kind = |k| IoErrorKind::of(&io::Error::from(k));
        assert_eq!(
            kind(io::ErrorKind::ConnectionRefused),
            IoErrorKind::ConnectionRefused
        );
        assert_eq!(kind(io::ErrorKind::TimedOut), IoErrorKind::TimedOut);
        assert_eq!(kind(io::ErrorKind::WouldBlock), IoErrorKind::TimedOut);
        assert_eq!(
            kind(io::ErrorKind::BrokenPipe),
            IoErrorKind::ConnectionReset
        );
        assert_eq!(
            kind(io::ErrorKind::ConnectionReset),
            IoErrorKind::ConnectionReset
        );
        assert_eq!(kind(io::ErrorKind::AddrInUse), IoErrorKind::Other);
    }
}
