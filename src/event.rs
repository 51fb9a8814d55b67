//! Events, event types and the AS3 event type constants.
//!
//! One [`Event`] type carries every kind of event; the AS3 event classes
//! (`IOErrorEvent`, `WebSocketEvent`, ...) are unit structs that hold their
//! type constants and constructors, so AS3 code such as
//! `ws.addEventListener(WebSocketEvent.DATA, onData)` ports as
//! `ws.add_event_listener(WebSocketEvent::DATA, on_data)`. The constants are
//! [`EventType`]s, not strings: a misspelt one does not compile.

use crate::error::Error;
use crate::server_socket::AcceptedSocket;
use crate::upgrade_event::UpgradeExchange;
use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The object an event is about, as set by [`EventDispatcher::dispatch_event`](crate::EventDispatcher::dispatch_event).
pub type EventTarget = Arc<dyn Any + Send + Sync>;

/// A WebSocket message format: [`WebSocket::FMT_TEXT`](crate::WebSocket::FMT_TEXT) or
/// [`WebSocket::FMT_BINARY`](crate::WebSocket::FMT_BINARY).
pub type Format = u32;

/// An event type: what AS3 keeps in a `String` (`Event.CONNECT` is
/// `"connect"`), as a value of its own.
///
/// The library's types are constants of the AS3 event classes
/// ([`Event::CONNECT`], [`WebSocketEvent::DATA`], [`IOErrorEvent::IO_ERROR`],
/// ...), so a listener registration ports line for line and a misspelt
/// constant is a compile error, where AS3 would register a listener that
/// never fires:
///
/// ```compile_fail,E0599
/// use airws::{Event, EventDispatcher, WebSocket};
///
/// let ws = WebSocket::new();
/// ws.add_event_listener(Event::CONECT, |_e: &Event| {});
/// ```
///
/// Types of your own are made with the `const fn` [`EventType::new`], like
/// an AS3 `public static const TICK:String = "tick"` (see
/// [`EventDispatcher`](crate::EventDispatcher)). A string literal converts
/// too (`From<&'static str>`), so AS3 code that passes `"connect"` ports as it
/// is, and an `EventType` compares equal to its string. It is `Copy`, and the
/// constants can be used as `match` patterns, as in an AS3 `switch` on
/// `e.type`:
///
/// ```
/// use airws::{Event, EventType, IOErrorEvent, WebSocketEvent};
///
/// fn describe(e: &Event) -> &'static str {
///     match e.event_type() {
///         Event::CONNECT => "open",
///         Event::CLOSE => "closed",
///         WebSocketEvent::DATA => "message",
///         IOErrorEvent::IO_ERROR => "failed",
///         _ => "other",
///     }
/// }
///
/// assert_eq!(describe(&Event::new(Event::CONNECT, false)), "open");
/// assert_eq!(describe(&Event::new("close", false)), "closed");
/// assert_eq!(describe(&WebSocketEvent::text("hi")), "message");
/// assert_eq!(describe(&Event::new("tick", false)), "other");
///
/// let e = Event::new("connect", false);
/// assert!(e.event_type() == Event::CONNECT);
/// assert!(e.event_type() == "connect");
/// assert_eq!(Event::CONNECT.as_str(), "connect");
/// assert_eq!(EventType::from("connect"), Event::CONNECT);
/// ```
///
/// An event type is a `&'static str` underneath: creating one, registering a
/// listener for it and dispatching it never allocate. A name known only at
/// run time can be given a `'static` lifetime with [`String::leak`] (once per
/// name: the memory is never freed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventType(&'static str);

impl EventType {
    /// The event type named `name`: AS3's type string.
    pub const fn new(name: &'static str) -> EventType {
        EventType(name)
    }

    /// The type's name (`"connect"`, `"websocketData"`, ...).
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for EventType {
    /// The type's name, as AS3 prints `e.type`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl From<&'static str> for EventType {
    fn from(name: &'static str) -> EventType {
        EventType(name)
    }
}

impl AsRef<str> for EventType {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl PartialEq<str> for EventType {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for EventType {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<EventType> for str {
    fn eq(&self, other: &EventType) -> bool {
        self == other.0
    }
}

impl PartialEq<EventType> for &str {
    fn eq(&self, other: &EventType) -> bool {
        *self == other.0
    }
}

#[derive(Debug)]
pub(crate) enum Payload {
    None,
    IoError {
        error_id: i32,
        text: String,
    },
    Text(String),
    Message(Message),
    Socket(Mutex<Option<AcceptedSocket>>),
    Http(HttpExchange),
    Upgrade(UpgradeExchange),
    Reconnect {
        attempt: u32,
        delay: std::time::Duration,
    },
}

/// Why a server refused a client's upgrade: what the `close` event of a
/// refused opening carries ([`Event::upgrade_refusal`]), so that an
/// application tells a 403 from a dropped link. A server `WebSocket`'s
/// `close` event carries one too when it refused the request (a foreign
/// `Origin`, an `upgradeRequest` listener): the answer it sent.
///
/// ```
/// # use airws::{Event, EventDispatcher, WebSocket};
/// let ws = WebSocket::new();
/// ws.add_event_listener(Event::CLOSE, |e: &Event| {
///     if let Some(r) = e.upgrade_refusal() {
///         eprintln!("refused: HTTP {} {} ({})", r.status(), r.reason(), r.body());
///     }
/// });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpgradeRefusal {
    status: u16,
    reason: String,
    body: String,
}

impl UpgradeRefusal {
    /// The most of a refusal's body the application is given.
    pub(crate) const BODY_LINE_MAX: usize = 200;

    /// A refusal with `status` and `reason` whose body is the first line of
    /// `body`, trimmed, without control characters, at most
    /// [`BODY_LINE_MAX`](Self::BODY_LINE_MAX) characters.
    pub(crate) fn with_body(status: u16, reason: String, body: &[u8]) -> UpgradeRefusal {
        let line = body.split(|&b| b == b'\n').next().unwrap_or_default();
        let body = String::from_utf8_lossy(line)
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(Self::BODY_LINE_MAX)
            .collect();
        UpgradeRefusal::new(status, reason, body)
    }

    pub(crate) fn new(status: u16, reason: String, body: String) -> UpgradeRefusal {
        UpgradeRefusal {
            status,
            reason,
            body,
        }
    }

    /// The HTTP status the server answered with (403, 404, 302, ...); 101
    /// when it agreed to switch but its answer was not a valid upgrade (a
    /// wrong `Sec-WebSocket-Accept`, ...); 0 when it did not answer in HTTP.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The status line's reason phrase ("Forbidden"), as the server wrote
    /// it; empty for a 101 that is not a valid upgrade.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The first line of the response's body, at most 200 characters; for
    /// a 101 that is not a valid upgrade, what was wrong with it.
    pub fn body(&self) -> &str {
        &self.body
    }
}

impl fmt::Display for UpgradeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if !self.reason.is_empty() {
            write!(f, " {}", self.reason)?;
        }
        if !self.body.is_empty() {
            write!(f, ": {}", self.body)?;
        }
        Ok(())
    }
}

/// The request line and headers of an HTTP request a server received.
#[derive(Debug)]
pub(crate) struct HttpHead {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
}

#[derive(Debug)]
pub(crate) struct HttpExchange {
    head: HttpHead,
    response: Mutex<Option<Vec<u8>>>,
}

#[derive(Debug)]
pub(crate) enum Message {
    Text(String),
    Binary(Vec<u8>),
}

/// An event, as passed to listeners.
///
/// Which fields mean something depends on the type: `error_id` and `text` for
/// `ioError`; `text` for `securityError` and `certificateError`; `format`,
/// `data` and `string_data` for `websocketData`; `socket` for a
/// `ServerSocket`'s `connect`; the `http_*` accessors for `httpRequest` and
/// `upgradeRequest`, with `respond` for the first and `refuse`,
/// `accept_protocol`, `add_response_header` and `offered_protocols` for the
/// second ([`UpgradeRequestEvent`](crate::UpgradeRequestEvent)).
///
/// ```
/// use airws::{Event, EventDispatcher, WebSocket, WebSocketEvent};
///
/// let ws = WebSocket::new();
/// ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
///     if e.format() == WebSocket::FMT_TEXT {
///         println!("text: {}", e.string_data().unwrap_or_default());
///     } else {
///         println!("{} bytes", e.data().len());
///     }
/// });
/// ```
pub struct Event {
    event_type: EventType,
    cancelable: bool,
    default_prevented: AtomicBool,
    stopped: AtomicBool,
    /// A listener panicked during the dispatch.
    panicked: AtomicBool,
    pub(crate) payload: Payload,
    /// Why the connection failed, for the events that report it.
    error: Option<Box<Error>>,
    target: Mutex<Option<EventTarget>>,
}

impl Event {
    /// `"connect"`: a WebSocket finished its opening handshake, or a
    /// `ServerSocket` accepted a connection.
    pub const CONNECT: EventType = EventType::new("connect");
    /// `"close"`: the connection was closed by the other party (or failed).
    pub const CLOSE: EventType = EventType::new("close");
    /// `"activate"`: inherited from AS3's EventDispatcher; never dispatched by this crate.
    pub const ACTIVATE: EventType = EventType::new("activate");
    /// `"deactivate"`: inherited from AS3's EventDispatcher; never dispatched by this crate.
    pub const DEACTIVATE: EventType = EventType::new("deactivate");

    /// A plain event, like AS3's `new Event(type, false, cancelable)`: an
    /// [`EventType`] constant, or a string literal.
    pub fn new(event_type: impl Into<EventType>, cancelable: bool) -> Event {
        Event::with_payload(event_type.into(), cancelable, Payload::None)
    }

    pub(crate) fn with_payload(event_type: EventType, cancelable: bool, payload: Payload) -> Event {
        Event {
            event_type,
            cancelable,
            default_prevented: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            payload,
            error: None,
            target: Mutex::new(None),
        }
    }

    /// The event, carrying `error` (see [`Event::error`]).
    pub(crate) fn with_error(mut self, error: Error) -> Event {
        self.error = Some(Box::new(error));
        self
    }

    /// The event type ([`Event::CONNECT`], [`WebSocketEvent::DATA`], ...):
    /// AS3's `type`. Compare it with the constants (`e.event_type() ==
    /// Event::CONNECT`), match on them, or compare it with a string.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// Whether [`prevent_default`](Self::prevent_default) has an effect.
    pub fn cancelable(&self) -> bool {
        self.cancelable
    }

    /// Cancels the default behaviour, if the event is cancelable; otherwise
    /// does nothing (as in AS3). For `certificateError`, this lets the
    /// connection go on; for `upgradeRequest`, it refuses the request (403
    /// unless a listener gave a refusal of its own with
    /// [`refuse`](Self::refuse)).
    pub fn prevent_default(&self) {
        if self.cancelable {
            self.default_prevented.store(true, Ordering::SeqCst);
        }
    }

    /// Whether a listener called [`prevent_default`](Self::prevent_default) on
    /// a cancelable event.
    pub fn is_default_prevented(&self) -> bool {
        self.default_prevented.load(Ordering::SeqCst)
    }

    /// Stops the dispatch: no further listener is called for this event.
    pub fn stop_immediate_propagation(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// AS3's `stopPropagation()`. Events here do not travel through a display
    /// list, so this only marks the event; listeners on the current target are
    /// still called, as in AS3.
    pub fn stop_propagation(&self) {}

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Records that a listener panicked during the dispatch.
    pub(crate) fn set_panicked(&self) {
        self.panicked.store(true, Ordering::SeqCst);
    }

    /// Whether a listener panicked during a dispatch of this event.
    pub(crate) fn panicked(&self) -> bool {
        self.panicked.load(Ordering::SeqCst)
    }

    /// The object the event is about, when it is a `T` (for example
    /// `e.target::<WebSocket>()` in a WebSocket's listener, or
    /// `e.target::<ServerSocket>()`). AS3's `target` and `currentTarget`.
    pub fn target<T: Any + Clone>(&self) -> Option<T> {
        let guard = self.target.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().and_then(|t| t.downcast_ref::<T>()).cloned()
    }

    /// The message's bytes, taken back after the dispatch so that their
    /// buffer can carry the next message.
    pub(crate) fn into_message_bytes(self) -> Option<Vec<u8>> {
        match self.payload {
            Payload::Message(Message::Text(s)) => Some(s.into_bytes()),
            Payload::Message(Message::Binary(b)) => Some(b),
            _ => None,
        }
    }

    pub(crate) fn set_target(&self, target: Option<EventTarget>) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
    }

    /// `ioError`: a number for the kind of error (AIR's `errorID`), else 0.
    pub fn error_id(&self) -> i32 {
        match &self.payload {
            Payload::IoError { error_id, .. } => *error_id,
            _ => 0,
        }
    }

    /// `ioError`, `securityError`, `certificateError`: the error message;
    /// the `close` of a connection that failed: why (for a refused upgrade
    /// "the server refused the upgrade: HTTP 403 Forbidden: ..."); else "".
    pub fn text(&self) -> &str {
        match &self.payload {
            Payload::IoError { text, .. } | Payload::Text(text) => text,
            _ => "",
        }
    }

    /// Why the connection failed, as an [`Error`] to match on: for an
    /// `ioError` ([`Error::Io`], [`Error::Timeout`]), a `securityError`
    /// or `certificateError` ([`Error::Tls`]), and the `close` of a
    /// connection that this end failed or that never opened
    /// ([`Error::Protocol`], [`Error::Timeout`], [`Error::HandshakeRefused`],
    /// [`Error::Tls`], [`Error::Io`]). `None` for any other event, and for
    /// the `close` of a connection that ended with a closing handshake or
    /// that the peer dropped. Not in AIR.
    ///
    /// ```
    /// # use airws::{Error, Event, EventDispatcher, IoErrorKind, WebSocket};
    /// let ws = WebSocket::new();
    /// ws.add_event_listener(Event::CLOSE, |e: &Event| match e.error() {
    ///     Some(Error::HandshakeRefused(r)) => eprintln!("refused with HTTP {}", r.status()),
    ///     Some(Error::Protocol { code, .. }) => eprintln!("the server broke a rule ({code})"),
    ///     Some(other) => eprintln!("{other}"),
    ///     None => {}
    /// });
    /// ```
    pub fn error(&self) -> Option<&Error> {
        self.error.as_deref()
    }

    /// The `close` of a connection whose upgrade the server refused: its
    /// status, reason phrase and the start of its body. `None` for any
    /// other event. Not in AIR.
    pub fn upgrade_refusal(&self) -> Option<&UpgradeRefusal> {
        match self.error() {
            Some(Error::HandshakeRefused(refusal)) => Some(refusal),
            _ => None,
        }
    }

    /// The `close` event of a connection that failed with `error`: its
    /// text is the error's message.
    pub(crate) fn failed_close(error: Error) -> Event {
        Event::with_payload(Event::CLOSE, false, Payload::Text(error.message())).with_error(error)
    }

    /// `websocketData`: [`WebSocket::FMT_TEXT`](crate::WebSocket::FMT_TEXT) or
    /// [`WebSocket::FMT_BINARY`](crate::WebSocket::FMT_BINARY); else 0.
    pub fn format(&self) -> Format {
        match &self.payload {
            Payload::Message(Message::Text(_)) => crate::WebSocket::FMT_TEXT,
            Payload::Message(Message::Binary(_)) => crate::WebSocket::FMT_BINARY,
            _ => 0,
        }
    }

    /// `websocketData`: the message bytes (for text, its UTF-8); else empty.
    pub fn data(&self) -> &[u8] {
        match &self.payload {
            Payload::Message(Message::Text(s)) => s.as_bytes(),
            Payload::Message(Message::Binary(b)) => b,
            _ => &[],
        }
    }

    /// `websocketData`: the message as a string, for text messages; `None`
    /// for binary ones.
    pub fn string_data(&self) -> Option<&str> {
        match &self.payload {
            Payload::Message(Message::Text(s)) => Some(s),
            _ => None,
        }
    }

    /// `reconnecting`: the number of the attempt it announces (from 1);
    /// else 0.
    pub fn reconnect_attempt(&self) -> u32 {
        match &self.payload {
            Payload::Reconnect { attempt, .. } => *attempt,
            _ => 0,
        }
    }

    /// `reconnecting`: the wait before the attempt; else zero.
    pub fn reconnect_delay(&self) -> std::time::Duration {
        match &self.payload {
            Payload::Reconnect { delay, .. } => *delay,
            _ => std::time::Duration::ZERO,
        }
    }

    /// The request of an `httpRequest` or `upgradeRequest` event.
    fn http_head(&self) -> Option<&HttpHead> {
        match &self.payload {
            Payload::Http(h) => Some(&h.head),
            Payload::Upgrade(u) => Some(u.head()),
            _ => None,
        }
    }

    /// `httpRequest` and `upgradeRequest`: the request method (`"GET"`,
    /// ...); else "".
    pub fn http_method(&self) -> &str {
        self.http_head().map_or("", |h| &h.method)
    }

    /// `httpRequest` and `upgradeRequest`: the request target, path and
    /// query (`"/index.html?x=1"`); else "".
    pub fn http_path(&self) -> &str {
        self.http_head().map_or("", |h| &h.path)
    }

    /// `httpRequest` and `upgradeRequest`: the query of the request target,
    /// without its `?` (`"x=1"` for `"/index.html?x=1"`), if it has one.
    pub fn http_query(&self) -> Option<&str> {
        self.http_head()?.path.split_once('?').map(|(_, q)| q)
    }

    /// `httpRequest` and `upgradeRequest`: the first header named `name`
    /// (case-insensitively).
    pub fn http_header(&self, name: &str) -> Option<&str> {
        crate::proto::handshake::find_header(&self.http_head()?.headers, name)
    }

    /// `httpRequest` and `upgradeRequest`: every header of the request, in
    /// order, names as sent; else empty.
    pub fn http_headers(&self) -> &[(String, String)] {
        self.http_head().map_or(&[], |h| &h.headers)
    }

    /// `httpRequest`: answers the request with `status`, a `Content-Type` and
    /// a body, instead of the default 400 response. The last answer given wins.
    /// Does nothing on other events (an `upgradeRequest` is refused with
    /// [`refuse`](Self::refuse)).
    pub fn respond(&self, status: u16, content_type: &str, body: impl AsRef<[u8]>) {
        if let Payload::Http(h) = &self.payload {
            let bytes =
                crate::proto::handshake::http_response(status, content_type, &[], body.as_ref());
            *h.response.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        }
    }

    pub(crate) fn take_http_response(&self) -> Option<Vec<u8>> {
        match &self.payload {
            Payload::Http(h) => h.response.lock().unwrap_or_else(|p| p.into_inner()).take(),
            _ => None,
        }
    }

    /// A `ServerSocket`'s `connect`: the accepted socket, with the TLS
    /// identity of a [`ServerSocket::with_tls`](crate::ServerSocket::with_tls)
    /// server. The first call takes it; later calls return `None`. Pass it
    /// to [`WebSocket::start_server`](crate::WebSocket::start_server).
    pub fn socket(&self) -> Option<AcceptedSocket> {
        match &self.payload {
            Payload::Socket(s) => s.lock().unwrap_or_else(|p| p.into_inner()).take(),
            _ => None,
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("type", &self.event_type)
            .field("cancelable", &self.cancelable)
            .field("default_prevented", &self.is_default_prevented())
            .field("payload", &self.payload)
            .field("error", &self.error)
            .finish()
    }
}

impl fmt::Display for Event {
    /// AS3's `toString()`: `[Event type="connect" cancelable=false]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[Event type=\"{}\" cancelable={}",
            self.event_type, self.cancelable
        )?;
        match &self.payload {
            Payload::IoError { error_id, text } => {
                write!(f, " text=\"{text}\" errorID={error_id}")?
            }
            Payload::Text(text) => write!(f, " text=\"{text}\"")?,
            Payload::Message(_) => {
                write!(f, " format={} length={}", self.format(), self.data().len())?
            }
            _ => {}
        }
        f.write_str("]")
    }
}

/// AS3's `IOErrorEvent`: its type constant and constructor.
#[derive(Debug)]
pub struct IOErrorEvent;

impl IOErrorEvent {
    /// `"ioError"`: a connection could not be made or broke.
    pub const IO_ERROR: EventType = EventType::new("ioError");
    /// AIR's error number for a socket error (`Error #2031: Socket
    /// Error`): the `error_id` of an `ioError` whose cause has no number of
    /// its own below.
    pub const SOCKET_ERROR_ID: i32 = 2031;
    /// `Error #20311: Host not found`: the host name could not be resolved.
    /// Not in AIR, which reports 2031 for every socket error.
    pub const HOST_NOT_FOUND_ID: i32 = 20311;
    /// `Error #20312: Connection refused`: nothing listens at that address
    /// and port. Not in AIR.
    pub const CONNECTION_REFUSED_ID: i32 = 20312;
    /// `Error #20313: Timed out`: a timeout of the
    /// [`Config`](crate::Config) passed (connect, handshake, write), or the
    /// operating system's. Not in AIR.
    pub const TIMED_OUT_ID: i32 = 20313;
    /// `Error #20314: Connection reset`: the peer reset or aborted the
    /// connection. Not in AIR.
    pub const CONNECTION_RESET_ID: i32 = 20314;

    /// Whether `error_id` is one of the socket errors above: what AS3 code
    /// that compares `errorID` with 2031 becomes.
    ///
    /// ```
    /// use airws::IOErrorEvent;
    /// assert!(IOErrorEvent::is_socket_error(IOErrorEvent::CONNECTION_REFUSED_ID));
    /// assert!(IOErrorEvent::is_socket_error(2031));
    /// assert!(!IOErrorEvent::is_socket_error(2032));
    /// ```
    pub fn is_socket_error(error_id: i32) -> bool {
        error_id == IOErrorEvent::SOCKET_ERROR_ID
            || (IOErrorEvent::HOST_NOT_FOUND_ID..=IOErrorEvent::CONNECTION_RESET_ID)
                .contains(&error_id)
    }

    /// The `ioError` reporting `error`: its text is the error's message, its
    /// `error_id` the error's.
    pub(crate) fn from_error(error: Error) -> Event {
        IOErrorEvent::create(error.message(), error.error_id()).with_error(error)
    }

    /// An `ioError` event with its message and error number.
    pub fn create(text: impl Into<String>, error_id: i32) -> Event {
        Event::with_payload(
            IOErrorEvent::IO_ERROR,
            false,
            Payload::IoError {
                error_id,
                text: text.into(),
            },
        )
    }
}

/// AS3's `SecurityErrorEvent`: its type constants and constructors.
#[derive(Debug)]
pub struct SecurityErrorEvent;

impl SecurityErrorEvent {
    /// `"securityError"`: the TLS connection failed for a reason other than the
    /// certificate.
    pub const SECURITY_ERROR: EventType = EventType::new("securityError");
    /// `"certificateError"`: the server's certificate could not be verified.
    /// Cancelable: `prevent_default()` lets the connection go on.
    pub const CERTIFICATE_ERROR: EventType = EventType::new("certificateError");

    /// A security event of the given type; `certificateError` events are cancelable.
    pub fn create(event_type: impl Into<EventType>, text: impl Into<String>) -> Event {
        let event_type = event_type.into();
        let cancelable = event_type == SecurityErrorEvent::CERTIFICATE_ERROR;
        Event::with_payload(event_type, cancelable, Payload::Text(text.into()))
    }
}

/// AS3's `WebSocketEvent`: its type constant and constructors.
#[derive(Debug)]
pub struct WebSocketEvent;

impl WebSocketEvent {
    /// `"websocketData"`: a whole message arrived.
    pub const DATA: EventType = EventType::new("websocketData");

    /// A `websocketData` event for a text message.
    pub fn text(text: impl Into<String>) -> Event {
        Event::with_payload(
            WebSocketEvent::DATA,
            false,
            Payload::Message(Message::Text(text.into())),
        )
    }

    /// A `websocketData` event for a binary message.
    pub fn binary(data: impl Into<Vec<u8>>) -> Event {
        Event::with_payload(
            WebSocketEvent::DATA,
            false,
            Payload::Message(Message::Binary(data.into())),
        )
    }
}

/// The `reconnecting` event of a client `WebSocket` whose config has
/// [`Config::reconnect`](crate::Config::reconnect): dispatched before each
/// new attempt, after a connection ended or an attempt failed in a way that
/// trying again can fix. It carries the attempt number
/// ([`Event::reconnect_attempt`], from 1), the delay before it
/// ([`Event::reconnect_delay`]) and the cause ([`Event::error`]). `connect`
/// follows each success; the listeners stay, as AIR keeps them. Not in AIR.
///
/// ```
/// use airws::{Event, EventDispatcher, ReconnectEvent, WebSocket};
///
/// let ws = WebSocket::new();
/// ws.add_event_listener(ReconnectEvent::RECONNECTING, |e: &Event| {
///     eprintln!(
///         "attempt {} in {:?}: {}",
///         e.reconnect_attempt(),
///         e.reconnect_delay(),
///         e.error().map(|err| err.to_string()).unwrap_or_default()
///     );
/// });
/// ```
#[derive(Debug)]
pub struct ReconnectEvent;

impl ReconnectEvent {
    /// `"reconnecting"`: the connection is tried again after a delay.
    pub const RECONNECTING: EventType = EventType::new("reconnecting");

    /// A `reconnecting` event for attempt `attempt` after `delay`, because
    /// of `cause`.
    pub fn create(attempt: u32, delay: std::time::Duration, cause: Error) -> Event {
        Event::with_payload(
            ReconnectEvent::RECONNECTING,
            false,
            Payload::Reconnect { attempt, delay },
        )
        .with_error(cause)
    }
}

/// AS3's `ServerSocketConnectEvent`: its type constant and constructor.
#[derive(Debug)]
pub struct ServerSocketConnectEvent;

impl ServerSocketConnectEvent {
    /// `"connect"`: a `ServerSocket` accepted a connection. The same type as
    /// [`Event::CONNECT`], as in AS3.
    pub const CONNECT: EventType = Event::CONNECT;

    /// A `connect` event carrying an accepted socket (a `TcpStream`, or an
    /// [`AcceptedSocket`] that carries a TLS identity too).
    pub fn create(socket: impl Into<AcceptedSocket>) -> Event {
        Event::with_payload(
            ServerSocketConnectEvent::CONNECT,
            false,
            Payload::Socket(Mutex::new(Some(socket.into()))),
        )
    }
}

/// A plain HTTP request that reached [`WebSocket::start_server`](crate::WebSocket::start_server)
/// instead of an upgrade. Not in AIR, whose server answers such requests by
/// closing the socket: here a listener may answer it with
/// [`Event::respond`], so that one port serves both a web page and its
/// WebSocket. Without an answer the client gets 400 Bad Request. Either way
/// the socket is then closed and `close` is dispatched, as in AIR. The
/// listeners run within the handshake timeout: when they have not returned
/// by then, the client gets 503 and `close` carries [`Error::Timeout`].
///
/// ```
/// use airws::{Event, EventDispatcher, HttpRequestEvent, WebSocket};
///
/// let ws = WebSocket::new();
/// ws.add_event_listener(HttpRequestEvent::REQUEST, |e: &Event| {
///     if e.http_method() == "GET" && e.http_path() == "/" {
///         e.respond(200, "text/html; charset=utf-8", "<h1>hello</h1>");
///     }
/// });
/// ```
#[derive(Debug)]
pub struct HttpRequestEvent;

impl HttpRequestEvent {
    /// `"httpRequest"`: a request that is not a WebSocket upgrade arrived.
    pub const REQUEST: EventType = EventType::new("httpRequest");

    /// An `httpRequest` event for a request.
    pub fn create(method: &str, path: &str, headers: Vec<(String, String)>) -> Event {
        Event::with_payload(
            HttpRequestEvent::REQUEST,
            false,
            Payload::Http(HttpExchange {
                head: HttpHead {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    headers,
                },
                response: Mutex::new(None),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prevent_default_works_only_on_cancelable_events() {
        let e = Event::new(Event::CONNECT, false);
        e.prevent_default();
        assert!(!e.is_default_prevented());
        let e = SecurityErrorEvent::create(SecurityErrorEvent::CERTIFICATE_ERROR, "self-signed");
        assert!(e.cancelable());
        e.prevent_default();
        assert!(e.is_default_prevented());
        assert_eq!(e.text(), "self-signed");
        assert!(!SecurityErrorEvent::create(SecurityErrorEvent::SECURITY_ERROR, "x").cancelable());
    }

    #[test]
    fn event_types_compare_with_each_other_and_with_strings() {
        assert_eq!(ServerSocketConnectEvent::CONNECT, Event::CONNECT);
        assert_ne!(Event::CONNECT, Event::CLOSE);
        // Both orders, with `&str` and with `str`.
        assert!(Event::CONNECT == "connect");
        assert!("connect" == Event::CONNECT);
        assert!(Event::CONNECT == *"connect");
        assert!(*"connect" == Event::CONNECT);
        assert!(Event::CONNECT != "Connect");
        assert_eq!(EventType::from("websocketData"), WebSocketEvent::DATA);
        assert_eq!(WebSocketEvent::DATA.to_string(), "websocketData");
        assert_eq!(HttpRequestEvent::REQUEST.as_ref(), "httpRequest");
        const TICK: EventType = EventType::new("tick");
        let e = Event::new(TICK, false);
        assert_eq!(e.event_type(), TICK);
        assert_eq!(e.event_type().as_str(), "tick");
        let name = String::from("made-at-run-time").leak();
        assert_eq!(
            Event::new(EventType::new(name), false).event_type(),
            "made-at-run-time"
        );
    }

    #[test]
    fn typed_fields() {
        let e = IOErrorEvent::create("refused", IOErrorEvent::SOCKET_ERROR_ID);
        assert_eq!(
            (e.event_type(), e.error_id(), e.text()),
            (IOErrorEvent::IO_ERROR, 2031, "refused")
        );
        let e = WebSocketEvent::text("héllo");
        assert_eq!(e.format(), crate::WebSocket::FMT_TEXT);
        assert_eq!(e.string_data(), Some("héllo"));
        assert_eq!(e.data(), "héllo".as_bytes());
        let e = WebSocketEvent::binary(vec![1, 2]);
        assert_eq!(e.format(), crate::WebSocket::FMT_BINARY);
        assert_eq!(e.string_data(), None);
        assert_eq!(e.data(), &[1, 2]);
        assert_eq!(
            e.to_string(),
            "[Event type=\"websocketData\" cancelable=false format=2 length=2]"
        );
    }
}
