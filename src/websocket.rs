//! AIR's `WebSocket` class: the handle, its shared state and the public API.
//!
//! The connection's thread works through a `Session`: opening a client
//! connection is in `open::client`, a server connection in `open::server`,
//! the open connection's life in `run`.

use crate::config::{Config, MAX_MESSAGE_CEILING};
use crate::connection::Conn;
use crate::dispatcher::{EventDispatcher, ListenerRegistry};
use crate::error::Error;
use crate::event::EventTarget;
use crate::limit::Slot;
use crate::message::MessageData;
use crate::open;
use crate::proto::close::{self, GOING_AWAY};
use crate::proto::frame::{MAX_CONTROL_PAYLOAD, OP_BINARY, OP_PING, OP_PONG, OP_TEXT};
use crate::proto::handshake;
use crate::proto::Role;
use crate::pump::Queue;
use crate::server_socket::IntoAcceptedSocket;
use crate::session::Session;
use crate::target::{is_token, Target};
use crate::tls::ServerTls;
use std::fmt;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread;
use std::time::Duration;

/// Where a `WebSocket` is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Never connected.
    Idle,
    /// `connect()` or `start_server()` was called; the handshake runs.
    Connecting,
    /// The handshake completed.
    Open,
    /// `close()` was called (or the last handle dropped); the closing
    /// handshake runs. No `close` event follows.
    Closing,
    /// The connection ended.
    Closed,
}

/// What the `Shared::state` lock guards.
#[derive(Debug)]
pub(crate) struct State {
    /// Counts connections; a connection's thread acts only while it is current.
    pub(crate) generation: u64,
    pub(crate) phase: Phase,
    /// The open connection.
    pub(crate) conn: Option<Arc<Conn>>,
    /// The socket while connecting (shared, not duplicated), so that `close()` can abort.
    pub(crate) pending: Option<Arc<TcpStream>>,
    /// The `protocol` property.
    pub(crate) protocol: String,
    /// The extensions of the current or last connection.
    pub(crate) extensions: String,
    /// The `closeReason` property.
    pub(crate) close_reason: i32,
    /// The reason in the peer's close frame of the last connection.
    pub(crate) close_text: String,
    /// The generation whose ending's listeners (`ioError`, `close`, ...)
    /// are running: `wait_closed` waits for them too.
    pub(crate) ending_listeners: Option<u64>,
    /// Headers a client adds to its upgrade request.
    pub(crate) request_headers: Vec<(String, String)>,
    /// A client's: the server's 101 response of the current or last
    /// connection.
    pub(crate) response: Option<HandshakeResponse>,
    /// A server's: the client's upgrade request of the current or last
    /// connection.
    pub(crate) request: Option<HandshakeRequest>,
}

/// A client's upgrade request, as a server `WebSocket` accepted it: its
/// path and query and its headers (`Origin`, `Cookie`, `Authorization`,
/// ...). See [`WebSocket::handshake_request`]. Not in AIR.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeRequest {
    pub(crate) resource: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl HandshakeRequest {
    /// The request target as sent: the path and the query
    /// (`/chat/room1?token=x`).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The path, without the query (`/chat/room1`).
    pub fn path(&self) -> &str {
        self.resource.split('?').next().unwrap_or_default()
    }

    /// The query, without the `?` (`token=x`), if there is one.
    pub fn query(&self) -> Option<&str> {
        self.resource.split_once('?').map(|(_, q)| q)
    }

    /// Every header, in order, names as the client wrote them.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first header named `name` (case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        handshake::find_header(&self.headers, name)
    }
}

/// The server's answer to a client's upgrade: its status (101) and
/// headers, for example the `Set-Cookie` a server sends with it. See
/// [`WebSocket::handshake_response`]. Not in AIR.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
}

impl HandshakeResponse {
    /// The status code: 101.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Every header, in order, names as the server wrote them.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first header named `name` (case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        handshake::find_header(&self.headers, name)
    }
}

impl State {
    /// No connection is open or opening, and the listeners of the last
    /// one's ending have returned.
    fn is_settled(&self) -> bool {
        !matches!(self.phase, Phase::Connecting | Phase::Open | Phase::Closing)
            && self.ending_listeners.is_none()
    }
}

/// What every handle of one `WebSocket` and its connection's thread share.
pub(crate) struct Shared {
    pub(crate) listeners: ListenerRegistry,
    pub(crate) config: Config,
    state: Mutex<State>,
    /// Signalled whenever a connection ends (see `wait_closed`).
    pub(crate) ended: Condvar,
    /// The pump that runs the listeners, once attached (`EventPump::attach`).
    pub(crate) pump: OnceLock<Weak<Queue>>,
    /// The queue `receive` pumps, for a `WebSocket` made by `open`.
    pub(crate) own_queue: OnceLock<Arc<Queue>>,
    /// A `receive` runs (its listeners may not call it again).
    pub(crate) receiving: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Locks the state.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the closing handshake of the current connection, or aborts one
    /// being opened. `None` when there is nothing to close.
    fn begin_close(&self, code: Option<u16>, reason: &str, closer: Closer) {
        let conn = {
            let mut st = self.state();
            match st.phase {
                Phase::Open => {
                    st.phase = Phase::Closing;
                    st.close_reason = i32::from(code.unwrap_or(close::NO_STATUS));
                    st.conn.clone()
                }
                Phase::Connecting => {
                    st.phase = Phase::Closed;
                    st.close_reason = i32::from(code.unwrap_or(close::NO_STATUS));
                    if let Some(p) = st.pending.take() {
                        let _ = p.shutdown(Shutdown::Both);
                    }
                    self.ended.notify_all();
                    None
                }
                _ => None,
            }
        };
        let Some(conn) = conn else { return };
        if conn.is_reader_thread() {
            // A listener: the read loop arms its next read with the
            // protocol's close deadline, so no timer is needed.
            if let Err(e) = conn.send_close(code, reason) {
                log::debug!("sending the close frame failed: {e}");
                conn.transport.shutdown();
            }
            return;
        }
        // From another thread: from now on nothing else may be sent. The
        // connection's thread may be blocked in a read armed before this
        // close began, and the close frame's write may block on a peer that
        // stopped reading: a timer shuts the socket down when the close
        // timeout passes, which wakes the reader and ends such a write.
        // When another thread is writing, the close frame waits in the
        // queue for its current frame.
        if !conn.queue_close(code, reason) {
            return;
        }
        let timeout = self.config.for_role(conn.role()).close_timeout;
        let timer_conn = conn.clone();
        // The last handle may be dropped on a thread that must not block
        // (a UI thread): the timer's thread writes the close frame then.
        let write_on_timer = closer == Closer::LastHandle || closer == Closer::NoBlock;
        let spawned = thread::Builder::new()
            .name("airws-close-timer".into())
            .stack_size(64 << 10)
            .spawn(move || {
                let deadline = std::time::Instant::now() + timeout;
                if write_on_timer {
                    if let Err(e) = timer_conn.flush_queued() {
                        log::debug!("sending the close frame failed: {e}");
                        timer_conn.transport.shutdown();
                    }
                }
                timer_conn
                    .finish_within(deadline.saturating_duration_since(std::time::Instant::now()));
            });
        if spawned.is_err() {
            conn.transport.shutdown();
            return;
        }
        if !write_on_timer {
            if let Err(e) = conn.flush_queued() {
                log::debug!("sending the close frame failed: {e}");
                conn.transport.shutdown();
            }
        }
    }
}

/// Who starts a closing handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closer {
    /// `close()` or `send_message(FMT_CLOSE, ..)`: writes the close frame
    /// itself (bounded by the close timer).
    Caller,
    /// `close()` or `FMT_CLOSE` from the thread of the `WebSocket`'s pump:
    /// never blocks it, like `LastHandle`.
    NoBlock,
    /// The last handle was dropped: never blocks the dropping thread.
    LastHandle,
}

/// Closes the connection when the last user handle goes away.
pub(crate) struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared
            .begin_close(Some(GOING_AWAY), "", Closer::LastHandle);
    }
}

/// AIR's `WebSocket`: a WebSocket client (`connect`) or the server end of an
/// accepted socket (`start_server`), with AS3-style event listeners.
///
/// The handle is cheap to clone; clones share one connection. When the
/// last handle is dropped, the connection is closed (code 1001) and its
/// thread ends.
///
/// A listener reaches its `WebSocket` through the event:
/// `e.target::<WebSocket>()` (AS3's `event.target as WebSocket`) is a
/// handle for the dispatch only. A listener that captures a clone of its
/// own `WebSocket` instead stores a handle in that `WebSocket`'s own
/// listener list, a reference cycle: the object and its listeners then
/// outlive the connection (its socket and thread still end). Capture
/// [`downgrade`](WebSocket::downgrade) where a listener needs the
/// `WebSocket` beyond its target (a timer, another socket's listener).
///
/// ```no_run
/// use airws::{Event, EventDispatcher, WebSocket, WebSocketEvent};
///
/// let ws = WebSocket::new();
/// ws.add_event_listener(Event::CONNECT, |e: &Event| {
///     // The event's target, not a captured clone: no reference cycle.
///     if let Some(ws) = e.target::<WebSocket>() {
///         ws.send_message(WebSocket::FMT_TEXT, "hello").ok();
///     }
/// });
/// ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
///     println!("got {:?}", e.string_data());
/// });
/// ws.connect("ws://127.0.0.1:9001/", &[]).unwrap();
/// ```
#[derive(Clone)]
pub struct WebSocket {
    pub(crate) handle: Arc<Handle>,
}

/// A handle that does not keep the connection open: see [`WebSocket::downgrade`].
#[derive(Clone, Debug)]
pub struct WeakWebSocket(Weak<Handle>);

impl WeakWebSocket {
    /// The `WebSocket`, if a strong handle still exists.
    pub fn upgrade(&self) -> Option<WebSocket> {
        self.0.upgrade().map(|handle| WebSocket { handle })
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebSocket")
    }
}

impl Default for WebSocket {
    fn default() -> Self {
        WebSocket::new()
    }
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared().state();
        f.debug_struct("WebSocket")
            .field("phase", &st.phase)
            .field("protocol", &st.protocol)
            .field("close_reason", &st.close_reason)
            .finish()
    }
}

impl fmt::Display for WebSocket {
    /// AS3's `toString()`: `[object WebSocket]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[object WebSocket]")
    }
}

impl EventDispatcher for WebSocket {
    fn listeners(&self) -> &ListenerRegistry {
        &self.shared().listeners
    }

    fn event_target(&self) -> Option<EventTarget> {
        Some(Arc::new(self.clone()))
    }
}

impl WebSocket {
    /// Code for a TEXT message (AS3 `fmtTEXT`).
    pub const FMT_TEXT: u32 = 1;
    /// Code for a BINARY message (AS3 `fmtBINARY`).
    pub const FMT_BINARY: u32 = 2;
    /// Code for a CLOSE message (AS3 `fmtCLOSE`).
    pub const FMT_CLOSE: u32 = 8;
    /// Code for a PING message (AS3 `fmtPING`).
    pub const FMT_PING: u32 = 9;
    /// Code for a PONG message (AS3 `fmtPONG`).
    pub const FMT_PONG: u32 = 10;
    /// The default close code, "normal closure": `close(WebSocket::CLOSE_NORMAL)`
    /// is AS3's `close()`.
    pub const CLOSE_NORMAL: u32 = 1000;

    /// A new, unconnected WebSocket with the default [`Config`]. Use it as a
    /// client with [`connect`](Self::connect) or as a server with
    /// [`start_server`](Self::start_server); its connection has the defaults
    /// of that role.
    pub fn new() -> WebSocket {
        WebSocket::with_config(Config::default())
    }

    /// A new, unconnected WebSocket with the given limits and timeouts.
    ///
    /// ```
    /// use airws::{Config, WebSocket};
    /// use std::time::Duration;
    ///
    /// let ws = WebSocket::with_config(Config::default().close_timeout(Duration::from_secs(2)));
    /// # drop(ws);
    /// ```
    pub fn with_config(config: Config) -> WebSocket {
        WebSocket {
            handle: Arc::new(Handle {
                shared: Arc::new(Shared {
                    listeners: ListenerRegistry::new(),
                    config,
                    state: Mutex::new(State {
                        generation: 0,
                        phase: Phase::Idle,
                        conn: None,
                        pending: None,
                        protocol: String::new(),
                        extensions: String::new(),
                        close_reason: 0,
                        close_text: String::new(),
                        ending_listeners: None,
                        request_headers: Vec::new(),
                        response: None,
                        request: None,
                    }),
                    ended: Condvar::new(),
                    pump: OnceLock::new(),
                    own_queue: OnceLock::new(),
                    receiving: std::sync::atomic::AtomicBool::new(false),
                }),
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    pub(crate) fn from_handle(handle: Arc<Handle>) -> WebSocket {
        WebSocket { handle }
    }

    /// A handle that does not keep the connection open; a listener that
    /// captures it does not keep its own `WebSocket` alive.
    pub fn downgrade(&self) -> WeakWebSocket {
        WeakWebSocket(Arc::downgrade(&self.handle))
    }

    /// The close reason code, as RFC 6455 defines it: the code of the
    /// first close frame received from the peer (1005 when it carried
    /// none). After [`close`](WebSocket::close) that is the peer's answer,
    /// normally the code this end sent; when no answer came, the code this
    /// end sent. The code of the rule the peer broke (1002, 1007, 1009) when
    /// this end failed the connection; 1006 when the connection ended
    /// without a close frame; 1015 when the server's certificate was
    /// refused; 0 before any connection ended.
    pub fn close_reason(&self) -> i32 {
        self.shared().state().close_reason
    }

    /// The subprotocol (`Sec-WebSocket-Protocol`). A client's is the one the
    /// server chose; a server's is the one it answers with when the client
    /// offered it.
    pub fn protocol(&self) -> String {
        self.shared().state().protocol.clone()
    }

    /// The extensions the opening handshake agreed on, as the server's
    /// `Sec-WebSocket-Extensions` names them: `"permessage-deflate"` with
    /// its parameters when [`Config::permessage_deflate`] is on and the
    /// peer agreed, else `""`. Of the current or last connection. Not in
    /// AIR; like the browser's `WebSocket.extensions`.
    ///
    /// [`Config::permessage_deflate`]: crate::Config::permessage_deflate
    pub fn extensions(&self) -> String {
        self.shared().state().extensions.clone()
    }

    /// Whether a connection is open: from the end of the opening handshake
    /// until the connection has ended (including a closing handshake begun by
    /// [`close`](Self::close)). Not in AIR's `WebSocket`; like AS3
    /// `Socket.connected`.
    pub fn connected(&self) -> bool {
        matches!(self.shared().state().phase, Phase::Open | Phase::Closing)
    }

    /// Blocks until no connection is open or opening, for at most `timeout`;
    /// returns whether that is so. When the connection's end dispatches
    /// events (`ioError`, `securityError`, `close`), it also waits until
    /// their listeners have returned, so what they print or record is
    /// there when it returns. After [`close`](Self::close), this waits
    /// for the closing handshake to finish, which dispatches no event. Not in
    /// AIR's `WebSocket`: a convenience for scripts and tests. Do not call it
    /// from a listener of the same `WebSocket` (it would wait for itself until
    /// the timeout).
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let st = self.shared().state();
        let (st, _) = self
            .shared()
            .ended
            .wait_timeout_while(st, timeout, |st| !st.is_settled())
            .unwrap_or_else(|p| p.into_inner());
        st.is_settled()
    }

    /// Sets the subprotocol a server answers with. Read-only once the
    /// handshake has completed: then [`Error::IllegalOperation`];
    /// [`Error::InvalidArgument`] for a name that is not an HTTP token.
    pub fn set_protocol(&self, protocol: &str) -> Result<(), Error> {
        let mut st = self.shared().state();
        if matches!(st.phase, Phase::Open | Phase::Closing) {
            return Err(Error::illegal(
                "protocol: read-only once the handshake has completed",
            ));
        }
        if !protocol.is_empty() && !is_token(protocol) {
            return Err(Error::argument(format!(
                "protocol: '{protocol}' is not a valid HTTP token"
            )));
        }
        st.protocol = protocol.to_owned();
        Ok(())
    }

    /// Sets a header of the client's upgrade request, sent by every later
    /// [`connect`](Self::connect) (`Authorization: Bearer ...`, `Cookie`,
    /// `Origin`, `User-Agent`, ...); a header of the same name set before
    /// is replaced. A user name and password in the URL are sent as Basic
    /// `Authorization` unless one is set here. Not in AIR.
    ///
    /// [`Error::InvalidArgument`] when the name is not an HTTP token, the
    /// value holds CR, LF, NUL or another control character (it could
    /// inject headers), or the library writes that header itself (`Host`,
    /// `Upgrade`, `Connection`, `Sec-WebSocket-*`, `Content-Length`,
    /// `Transfer-Encoding`; subprotocols go in `connect`'s list).
    ///
    /// ```no_run
    /// # use airws::WebSocket;
    /// let ws = WebSocket::new();
    /// ws.set_request_header("Authorization", "Bearer eyJhbGciOi...")?;
    /// ws.set_request_header("Cookie", "session=42")?;
    /// ws.connect("wss://example.com/feed", &[])?;
    /// # Ok::<(), airws::Error>(())
    /// ```
    pub fn set_request_header(&self, name: &str, value: &str) -> Result<(), Error> {
        if let Err(e) = handshake::check_request_header(name, value) {
            return Err(Error::argument(format!(
                "setRequestHeader: cannot send header '{}': {e}",
                name.escape_debug()
            )));
        }
        let mut st = self.shared().state();
        let headers = &mut st.request_headers;
        match headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(h) => *h = (name.to_owned(), value.to_owned()),
            None => headers.push((name.to_owned(), value.to_owned())),
        }
        Ok(())
    }

    /// Removes a header set with
    /// [`set_request_header`](Self::set_request_header); returns whether
    /// one was set. Not in AIR.
    pub fn remove_request_header(&self, name: &str) -> bool {
        let mut st = self.shared().state();
        let before = st.request_headers.len();
        st.request_headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        st.request_headers.len() != before
    }

    /// The server's 101 response to this client's upgrade (its status and
    /// headers, such as `Set-Cookie`), once `connect` is dispatched; kept
    /// after the connection ends, cleared by the next `connect`. `None`
    /// before, and for a server `WebSocket`. Not in AIR.
    pub fn handshake_response(&self) -> Option<HandshakeResponse> {
        self.shared().state().response.clone()
    }

    /// The client's upgrade request this server `WebSocket` accepted (path,
    /// query, headers such as `Cookie`), once `connect` is dispatched; kept
    /// after the connection ends, cleared by the next `start_server`.
    /// `None` before, and for a client. Not in AIR.
    ///
    /// ```no_run
    /// # use airws::{Event, EventDispatcher, WebSocket};
    /// # let ws = WebSocket::new();
    /// ws.add_event_listener(Event::CONNECT, |e: &Event| {
    ///     if let Some(request) = e.target::<WebSocket>().and_then(|ws| ws.handshake_request()) {
    ///         println!("room {} for {:?}", request.path(), request.header("cookie"));
    ///     }
    /// });
    /// ```
    pub fn handshake_request(&self) -> Option<HandshakeRequest> {
        self.shared().state().request.clone()
    }

    /// Connects to a `ws://` or `wss://` URL, offering `protocols`.
    ///
    /// Returns at once; the TCP connection, TLS and the handshake run on the
    /// connection's thread, which then dispatches `connect`, or `ioError` (the
    /// host cannot be resolved or reached), `securityError` /
    /// `certificateError` (TLS), or `close` (the server refused the upgrade).
    ///
    /// Fails (AS3's `ArgumentError`) with [`Error::AlreadyOpen`] when a
    /// connection is open or opening, [`Error::InvalidUrl`] when the URL is
    /// invalid or not ws/wss, [`Error::InvalidArgument`] when a protocol is
    /// not a valid token or is offered twice. Why a connection that started
    /// failed is in its events' [`Event::error`](crate::Event::error).
    pub fn connect(&self, url: &str, protocols: &[&str]) -> Result<(), Error> {
        let target = Target::parse(url)?;
        let mut offered = Vec::with_capacity(protocols.len());
        for p in protocols {
            if !is_token(p) {
                return Err(Error::argument(format!(
                    "connect: protocol '{p}' is not a valid HTTP token"
                )));
            }
            if offered.iter().any(|o: &String| o == p) {
                return Err(Error::argument(format!(
                    "connect: protocol '{p}' is offered twice"
                )));
            }
            offered.push((*p).to_owned());
        }
        // Which proxy, if any: a bad one in the environment is the
        // caller's error, before anything is sent.
        let proxy = self
            .shared()
            .config
            .for_role(Role::Client)
            .proxy
            .for_target(&target.host, target.tls)?;
        let mut headers = Vec::new();
        let session = self.begin_session("connect", Role::Client, |st| {
            st.protocol.clear();
            st.response = None;
            headers = st.request_headers.clone();
        })?;
        // Credentials in the URL, as browsers and curl send them, unless
        // the application set its own.
        open::add_url_credentials(&mut headers, &target);
        self.spawn(session, move |s| {
            s.run_client(target, offered, headers, proxy)
        })
    }

    /// Takes over an accepted socket and acts as its WebSocket server: runs
    /// a TLS handshake first when the socket carries a TLS identity (from a
    /// [`ServerSocket::with_tls`](crate::ServerSocket::with_tls) server),
    /// reads the client's upgrade request, dispatches
    /// [`upgradeRequest`](crate::UpgradeRequestEvent) to the listeners that
    /// may refuse it, answers it (with the `protocol` property when the
    /// client offered it, unless a listener chose) and dispatches `connect`
    /// when the handshake is complete. A request that is not a valid upgrade
    /// gets an HTTP error response, then the socket is closed and `close` is
    /// dispatched. When the connection's thread cannot be started, the client
    /// gets `503 Service Unavailable` and the call an [`Error::Io`].
    ///
    /// `socket` is the [`AcceptedSocket`](crate::AcceptedSocket) of a
    /// `connect` event (`e.socket()`), or a `TcpStream` accepted otherwise.
    ///
    /// [`Error::InvalidArgument`] when `socket` is `None` (AS3's null),
    /// [`Error::AlreadyOpen`] when a connection is open or opening.
    pub fn start_server(&self, socket: impl IntoAcceptedSocket) -> Result<(), Error> {
        let Some(socket) = socket.into_accepted_socket() else {
            return Err(Error::argument("startServer: the socket is null"));
        };
        let (tcp, tls) = socket.into_parts();
        self.start_server_with(tcp, tls)
    }

    /// Like [`start_server`](Self::start_server), for `wss` with `tls`'s
    /// identity, whatever identity the socket carries. A handshake that
    /// fails is a `securityError`, then `close` (1015).
    ///
    /// One [`ServerTls`] serves every connection of a server: its TLS
    /// context is shared, not built again per connection.
    pub fn start_server_tls(
        &self,
        socket: impl IntoAcceptedSocket,
        tls: &ServerTls,
    ) -> Result<(), Error> {
        let Some(socket) = socket.into_accepted_socket() else {
            return Err(Error::argument("startServer: the socket is null"));
        };
        let (tcp, _) = socket.into_parts();
        self.start_server_with(tcp, Some(tls.clone()))
    }

    fn start_server_with(&self, tcp: TcpStream, tls: Option<ServerTls>) -> Result<(), Error> {
        let session = self.begin_session("startServer", Role::Server, |st| st.request = None)?;
        let tcp = Arc::new(tcp);
        let kept = tcp.clone();
        let slot = self.connection_slot(&session, &kept)?;
        let started = self.spawn(session, move |s| {
            s.run_server(tcp, tls);
            drop(slot);
        });
        if started.is_err() {
            // No thread to serve it: tell the client why.
            open::refuse_unavailable(&kept);
        }
        started
    }

    fn begin_session(
        &self,
        operation: &'static str,
        role: Role,
        reset: impl FnOnce(&mut State),
    ) -> Result<Session, Error> {
        let mut st = self.shared().state();
        if matches!(st.phase, Phase::Connecting | Phase::Open) {
            return Err(Error::AlreadyOpen { operation });
        }
        st.generation += 1;
        st.phase = Phase::Connecting;
        st.conn = None;
        st.pending = None;
        st.close_reason = 0;
        st.close_text.clear();
        reset(&mut st);
        Ok(Session {
            shared: self.shared().clone(),
            handle: Arc::downgrade(&self.handle),
            generation: st.generation,
            role,
        })
    }

    /// A place under the connection limit for the server connection
    /// `session` opens on `tcp`; without one the client is answered 503 and
    /// the opening ends here.
    fn connection_slot(&self, session: &Session, tcp: &TcpStream) -> Result<Slot, Error> {
        let limit = &session.config().connection_limit;
        if let Some(slot) = limit.try_acquire() {
            return Ok(slot);
        }
        self.abandon(session.generation);
        open::refuse_unavailable(tcp);
        log::warn!("startServer: {} connections run already", limit.limit());
        Err(Error::TooManyConnections {
            limit: limit.limit(),
        })
    }

    /// Marks the opening of `generation` as over before it ran.
    fn abandon(&self, generation: u64) {
        let mut st = self.shared().state();
        if st.generation == generation {
            st.phase = Phase::Closed;
            self.shared().ended.notify_all();
        }
    }

    fn spawn(
        &self,
        session: Session,
        run: impl FnOnce(Session) + Send + 'static,
    ) -> Result<(), Error> {
        let generation = session.generation;
        let stack_size = session.config().thread_stack_size;
        let spawned = thread::Builder::new()
            .name("airws-connection".into())
            .stack_size(stack_size)
            .spawn(move || run(session));
        if let Err(e) = spawned {
            self.abandon(generation);
            return Err(Error::io("Cannot start the connection's thread", e));
        }
        Ok(())
    }

    /// Sends a message: `FMT_TEXT` or `FMT_BINARY` data, a `FMT_PING` or
    /// `FMT_PONG` (at most 125 bytes), or `FMT_CLOSE` with a close payload (empty,
    /// or a 2-byte code and a UTF-8 reason), which starts the closing handshake
    /// like [`close`](Self::close).
    ///
    /// On the thread of the [`EventPump`](crate::EventPump) the `WebSocket`
    /// is attached to, it never blocks: the message is queued for the
    /// connection's flusher thread, [`Error::BufferFull`] when that would
    /// pass [`Config::max_buffered_amount`](crate::Config::max_buffered_amount).
    /// Elsewhere it writes the message from any thread, without waiting for
    /// incoming data, and returns once it is written (a small message sent by a
    /// listener of this `WebSocket` is written with the other replies to the
    /// same read, just before the connection's thread reads again). A message
    /// over 1 MiB goes out in frames of 1 MiB; the peer's pings are answered
    /// between them, and another thread's message waits for this one to end.
    /// [`Error::InvalidArgument`] for an unknown opcode, data too long, or a
    /// text message whose bytes are not UTF-8; [`Error::NotOpen`] when the
    /// socket is not open; [`Error::IllegalOperation`] when it starts closing
    /// before the whole message went out (the rest of it is not sent);
    /// [`Error::Io`] or [`Error::Timeout`] (the write timeout) when the
    /// connection broke.
    ///
    /// ```no_run
    /// # let ws = airws::WebSocket::new();
    /// ws.send_message(airws::WebSocket::FMT_TEXT, "héllo")?;
    /// ws.send_message(airws::WebSocket::FMT_BINARY, vec![1u8, 2, 3])?;
    /// # Ok::<(), airws::Error>(())
    /// ```
    pub fn send_message<'a>(
        &self,
        opcode: u32,
        data: impl Into<MessageData<'a>>,
    ) -> Result<(), Error> {
        let data = data.into();
        let bytes = data.as_bytes();
        if bytes.len() as u64 > MAX_MESSAGE_CEILING {
            return Err(Error::argument("sendMessage: data over 4 GB"));
        }
        let op = match opcode {
            WebSocket::FMT_TEXT => {
                if let MessageData::Bytes(b) = &data {
                    if std::str::from_utf8(b).is_err() {
                        return Err(Error::argument("sendMessage: TEXT data is not valid UTF-8"));
                    }
                }
                OP_TEXT
            }
            WebSocket::FMT_BINARY => OP_BINARY,
            WebSocket::FMT_PING | WebSocket::FMT_PONG => {
                if bytes.len() > MAX_CONTROL_PAYLOAD {
                    return Err(Error::argument(format!(
                        "sendMessage: a PING or PONG carries at most 125 bytes, not {}",
                        bytes.len()
                    )));
                }
                if opcode == WebSocket::FMT_PING {
                    OP_PING
                } else {
                    OP_PONG
                }
            }
            WebSocket::FMT_CLOSE => return self.send_close_payload(bytes),
            other => {
                return Err(Error::argument(format!(
                    "sendMessage: unknown opcode {other} (use FMT_TEXT, FMT_BINARY, FMT_CLOSE, FMT_PING or FMT_PONG)"
                )));
            }
        };
        let conn = self.open_conn("sendMessage")?;
        if self.on_pump_thread() {
            let limit = self
                .shared()
                .config
                .for_role(conn.role())
                .max_buffered_amount;
            return conn.send_nowait(op, bytes, limit);
        }
        conn.send(op, bytes)
    }

    /// The bytes sent and not yet written to the socket (the browser
    /// WebSocket's `bufferedAmount`): what sends from the
    /// [`EventPump`](crate::EventPump)'s thread queued, and what other
    /// threads' sends wait behind. 0 when no connection is open. Not in
    /// AIR.
    pub fn buffered_amount(&self) -> u64 {
        let conn = self.shared().state().conn.clone();
        conn.map_or(0, |c| c.buffered() as u64)
    }

    /// Who closes: the caller, or (on the pump's thread, which must not
    /// block) the close timer's thread.
    fn closer(&self) -> Closer {
        if self.on_pump_thread() {
            Closer::NoBlock
        } else {
            Closer::Caller
        }
    }

    /// Whether the caller is the thread of the pump this `WebSocket` is
    /// attached to: its sends must not block.
    fn on_pump_thread(&self) -> bool {
        self.shared()
            .pump
            .get()
            .and_then(Weak::upgrade)
            .is_some_and(|q| q.sends_must_not_block() && q.thread() == thread::current().id())
    }

    fn open_conn(&self, operation: &'static str) -> Result<Arc<Conn>, Error> {
        let st = self.shared().state();
        match (&st.phase, &st.conn) {
            (Phase::Open, Some(conn)) => Ok(conn.clone()),
            (phase, _) => Err(Error::NotOpen {
                operation,
                state: match phase {
                    Phase::Idle => "not connected",
                    Phase::Connecting => "still connecting",
                    Phase::Closing => "closing",
                    _ => "closed",
                },
            }),
        }
    }

    fn send_close_payload(&self, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::argument(
                "sendMessage: a CLOSE payload is at most 125 bytes",
            ));
        }
        let (code, reason) = match payload.len() {
            0 => (None, ""),
            1 => {
                return Err(Error::argument(
                    "sendMessage: a CLOSE payload of 1 byte is invalid",
                ))
            }
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                check_close_code(u32::from(code))?;
                let Ok(reason) = std::str::from_utf8(&payload[2..]) else {
                    return Err(Error::argument(
                        "sendMessage: the CLOSE reason is not UTF-8",
                    ));
                };
                (Some(code), reason)
            }
        };
        self.open_conn("sendMessage")?;
        let closer = self.closer();
        self.shared().begin_close(code, reason, closer);
        Ok(())
    }

    /// Closes the WebSocket with `reason_code` (AS3's `close()` is
    /// `close(WebSocket::CLOSE_NORMAL)`): sends the close frame and lets the
    /// connection's thread finish the closing handshake. As in AIR, no `close`
    /// event is dispatched for a close made here. Closing a socket that is not
    /// open does nothing; closing one that is connecting aborts it.
    ///
    /// It does not wait for another thread's send in progress: the close
    /// frame follows the frame being written (at most 1 MiB), the rest of
    /// that message is not sent, and its `send_message` returns an error.
    /// Messages whose `send_message` returned before `close()` was called
    /// went out before the close frame.
    ///
    /// [`Error::InvalidArgument`] for a code that may not be sent (valid: 1000–1003,
    /// 1007–1014, 3000–4999).
    pub fn close(&self, reason_code: u32) -> Result<(), Error> {
        check_close_code(reason_code)?;
        self.shared()
            .begin_close(Some(reason_code as u16), "", self.closer());
        Ok(())
    }
}

fn check_close_code(code: u32) -> Result<(), Error> {
    if close::is_valid_on_wire(code) {
        Ok(())
    } else {
        Err(Error::argument(format!(
            "close: code {code} may not be sent (use 1000-1003, 1007-1014 or 3000-4999)"
        )))
    }
}
