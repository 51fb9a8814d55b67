//! AIR's `WebSocket` class.

use crate::config::{Config, MAX_MESSAGE_CEILING};
use crate::connection::Conn;
use crate::deadline::DeadlineReader;
use crate::dispatcher::{EventDispatcher, ListenerRegistry};
use crate::error::Error;
use crate::event::{Event, EventTarget, HttpRequestEvent, IOErrorEvent, SecurityErrorEvent};
use crate::message::MessageData;
use crate::proto::close::{self, ABNORMAL, GOING_AWAY, TLS_HANDSHAKE};
use crate::proto::frame::{MAX_CONTROL_PAYLOAD, OP_BINARY, OP_PING, OP_PONG, OP_TEXT};
use crate::proto::handshake;
use crate::proto::Role;
use crate::session::Session;
use crate::target::{is_token, Target};
use crate::transport::{drive_handshake, MemIo, TlsFailure, Transport};
use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread;
use std::time::{Duration, Instant};

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
    /// The `closeReason` property.
    pub(crate) close_reason: i32,
}

/// What every handle of one `WebSocket` and its connection's thread share.
pub(crate) struct Shared {
    pub(crate) listeners: ListenerRegistry,
    pub(crate) config: Config,
    state: Mutex<State>,
    /// Signalled whenever a connection ends (see `wait_closed`).
    pub(crate) ended: Condvar,
}

impl Shared {
    /// Locks the state.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the closing handshake of the current connection, or aborts one
    /// being opened. `None` when there is nothing to close.
    fn begin_close(&self, code: Option<u16>, reason: &str) {
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
        // The timer starts before the close frame is written: the reader may
        // be blocked on the socket, or another sender may be stuck writing to
        // a peer that stopped reading. Either way, when the timeout passes
        // the socket is shut down, which also ends a stuck write, so close()
        // itself returns within the timeout. The connection's own thread
        // needs no timer when nobody else is writing: its read loop keeps the
        // deadline.
        if !conn.is_reader_thread() || conn.writer_busy() {
            let timeout = self.config.close_timeout;
            let timer_conn = conn.clone();
            let spawned = thread::Builder::new()
                .name("airws-close-timer".into())
                .stack_size(64 << 10)
                .spawn(move || timer_conn.finish_within(timeout));
            if spawned.is_err() {
                conn.transport.shutdown();
            }
        }
        if let Err(e) = conn.send_close(code, reason) {
            log::debug!("sending the close frame failed: {e}");
            conn.transport.shutdown();
        }
    }
}

/// Closes the connection when the last user handle goes away.
pub(crate) struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.begin_close(Some(GOING_AWAY), "");
    }
}

/// AIR's `WebSocket`: a WebSocket client (`connect`) or the server end of an
/// accepted socket (`start_server`), with AS3-style event listeners.
///
/// The handle is cheap to clone; clones share one connection, so a listener
/// can capture a clone and reply. When the last handle is dropped, the
/// connection is closed (code 1001) and its thread ends.
///
/// ```no_run
/// use airws::{Event, EventDispatcher, WebSocket, WebSocketEvent};
///
/// let ws = WebSocket::new();
/// let sender = ws.clone();
/// ws.add_event_listener(Event::CONNECT, move |_e: &Event| {
///     sender.send_message(WebSocket::FMT_TEXT, "hello").ok();
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
    /// [`start_server`](Self::start_server).
    pub fn new() -> WebSocket {
        WebSocket::with_config(Config::default())
    }

    /// A new, unconnected WebSocket with the given limits and timeouts.
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
                        close_reason: 0,
                    }),
                    ended: Condvar::new(),
                }),
            }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
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

    /// Whether a connection is open: from the end of the opening handshake
    /// until the connection has ended (including a closing handshake begun by
    /// [`close`](Self::close)). Not in AIR's `WebSocket`; like AS3
    /// `Socket.connected`.
    pub fn connected(&self) -> bool {
        matches!(self.shared().state().phase, Phase::Open | Phase::Closing)
    }

    /// Blocks until no connection is open or opening, for at most `timeout`;
    /// returns whether that is so. After [`close`](Self::close), this waits
    /// for the closing handshake to finish, which dispatches no event. Not in
    /// AIR's `WebSocket`: a convenience for scripts and tests. Do not call it
    /// from a listener of the same `WebSocket` (it would wait for itself until
    /// the timeout).
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let st = self.shared().state();
        let (st, _) = self
            .shared()
            .ended
            .wait_timeout_while(st, timeout, |st| {
                matches!(st.phase, Phase::Connecting | Phase::Open | Phase::Closing)
            })
            .unwrap_or_else(|p| p.into_inner());
        !matches!(st.phase, Phase::Connecting | Phase::Open | Phase::Closing)
    }

    /// Sets the subprotocol a server answers with. Read-only once the
    /// handshake has completed: then an `IllegalOperation` error.
    pub fn set_protocol(&self, protocol: &str) -> Result<(), Error> {
        let mut st = self.shared().state();
        if matches!(st.phase, Phase::Open | Phase::Closing) {
            return Err(Error::illegal(
                "protocol is read-only once the handshake has completed",
            ));
        }
        if !protocol.is_empty() && !is_token(protocol) {
            return Err(Error::argument(format!(
                "protocol '{protocol}' is not a valid HTTP token"
            )));
        }
        st.protocol = protocol.to_owned();
        Ok(())
    }

    /// Connects to a `ws://` or `wss://` URL, offering `protocols`.
    ///
    /// Returns at once; the TCP connection, TLS and the handshake run on the
    /// connection's thread, which then dispatches `connect`, or `ioError` (the
    /// host cannot be resolved or reached), `securityError` /
    /// `certificateError` (TLS), or `close` (the server refused the upgrade).
    ///
    /// Fails with `ArgumentError` when a connection is open or opening, the
    /// URL is invalid or not ws/wss, or a protocol is not a valid token.
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
        let session = self.begin_session(|st| st.protocol.clear())?;
        self.spawn(session, move |s| s.run_client(target, offered))
    }

    /// Takes over an accepted socket and acts as its WebSocket server: reads
    /// the client's upgrade request, answers it (with the `protocol`
    /// property when the client offered it) and dispatches `connect` when the
    /// handshake is complete. A request that is not a valid upgrade gets an
    /// HTTP error response, then the socket is closed and `close` is dispatched.
    ///
    /// `ArgumentError` when `socket` is `None` (AS3's null) or a connection is
    /// open or opening.
    pub fn start_server(&self, socket: impl Into<Option<TcpStream>>) -> Result<(), Error> {
        let Some(tcp) = socket.into() else {
            return Err(Error::argument("startServer: the socket is null"));
        };
        let session = self.begin_session(|_| {})?;
        self.spawn(session, move |s| s.run_server(tcp, None))
    }

    /// Like [`start_server`](Self::start_server), for `wss`: runs a TLS
    /// handshake with `acceptor` first.
    pub fn start_server_tls(
        &self,
        socket: impl Into<Option<TcpStream>>,
        acceptor: native_tls::TlsAcceptor,
    ) -> Result<(), Error> {
        let Some(tcp) = socket.into() else {
            return Err(Error::argument("startServer: the socket is null"));
        };
        let session = self.begin_session(|_| {})?;
        self.spawn(session, move |s| s.run_server(tcp, Some(acceptor)))
    }

    fn begin_session(&self, reset: impl FnOnce(&mut State)) -> Result<Session, Error> {
        let mut st = self.shared().state();
        if matches!(st.phase, Phase::Connecting | Phase::Open) {
            return Err(Error::argument(
                "there is already a socket connection open or opening",
            ));
        }
        st.generation += 1;
        st.phase = Phase::Connecting;
        st.conn = None;
        st.pending = None;
        st.close_reason = 0;
        reset(&mut st);
        Ok(Session {
            shared: self.shared().clone(),
            handle: Arc::downgrade(&self.handle),
            generation: st.generation,
        })
    }

    fn spawn(
        &self,
        session: Session,
        run: impl FnOnce(Session) + Send + 'static,
    ) -> Result<(), Error> {
        let generation = session.generation;
        let spawned = thread::Builder::new()
            .name("airws-connection".into())
            .stack_size(self.shared().config.thread_stack_size)
            .spawn(move || run(session));
        if let Err(e) = spawned {
            let mut st = self.shared().state();
            if st.generation == generation {
                st.phase = Phase::Closed;
                self.shared().ended.notify_all();
            }
            return Err(Error::Io(e));
        }
        Ok(())
    }

    /// Sends a message: `FMT_TEXT` or `FMT_BINARY` data, a `FMT_PING` or
    /// `FMT_PONG` (at most 125 bytes), or `FMT_CLOSE` with a close payload (empty,
    /// or a 2-byte code and a UTF-8 reason), which starts the closing handshake
    /// like [`close`](Self::close).
    ///
    /// Writes the frame at once, from any thread, without waiting for incoming
    /// data. `ArgumentError` for an unknown opcode, data too long, or a text
    /// message whose bytes are not UTF-8; `IllegalOperation` when the socket
    /// is not open.
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
        conn.send(op, bytes)
    }

    fn open_conn(&self, what: &str) -> Result<Arc<Conn>, Error> {
        let st = self.shared().state();
        match (&st.phase, &st.conn) {
            (Phase::Open, Some(conn)) => Ok(conn.clone()),
            (phase, _) => Err(Error::illegal(format!(
                "{what}: the WebSocket is not open (it is {})",
                match phase {
                    Phase::Idle => "not connected",
                    Phase::Connecting => "still connecting",
                    Phase::Closing => "closing",
                    _ => "closed",
                }
            ))),
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
        self.shared().begin_close(code, reason);
        Ok(())
    }

    /// Closes the WebSocket with `reason_code` (AS3's `close()` is
    /// `close(WebSocket::CLOSE_NORMAL)`): sends the close frame and lets the
    /// connection's thread finish the closing handshake. As in AIR, no `close`
    /// event is dispatched for a close made here. Closing a socket that is not
    /// open does nothing; closing one that is connecting aborts it.
    ///
    /// `ArgumentError` for a code that may not be sent (valid: 1000–1003,
    /// 1007–1014, 3000–4999).
    pub fn close(&self, reason_code: u32) -> Result<(), Error> {
        check_close_code(reason_code)?;
        self.shared().begin_close(Some(reason_code as u16), "");
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

impl Session {
    /// Ends a connection that never opened: records the close reason and
    /// dispatches `events` if nobody aborted it meanwhile.
    fn fail_opening(&self, close_reason: Option<u16>, events: &[Event]) {
        let ended = self.with_current(|st| {
            st.phase = Phase::Closed;
            st.pending = None;
            if let Some(code) = close_reason {
                st.close_reason = i32::from(code);
            }
            self.shared.ended.notify_all();
        });
        if ended.is_none() {
            return;
        }
        for e in events {
            self.dispatch(e);
        }
    }

    fn io_error(&self, text: String) {
        log::debug!("{text}");
        self.fail_opening(
            None,
            &[IOErrorEvent::create(text, IOErrorEvent::SOCKET_ERROR_ID)],
        );
    }

    fn closed_before_open(&self, why: &str) {
        log::debug!("connection closed before opening: {why}");
        self.fail_opening(Some(ABNORMAL), &[Event::new(Event::CLOSE, false)]);
    }

    fn connect_tcp(&self, t: &Target) -> Result<TcpStream, String> {
        let addrs: Vec<SocketAddr> = match (t.host.as_str(), t.port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => {
                return Err(format!(
                    "Error #2031: Socket Error. Cannot resolve host '{}' (port {}): {e}",
                    t.host, t.port
                ));
            }
        };
        let mut last = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, self.config().connect_timeout) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        let cause = last.map_or_else(|| "no address found".to_owned(), |e| e.to_string());
        Err(format!(
            "Error #2031: Socket Error. Cannot connect to {}:{}: {cause}",
            t.host, t.port
        ))
    }

    fn run_client(self, target: Target, offered: Vec<String>) {
        let mut tcp = match self.connect_tcp(&target) {
            Ok(s) => Arc::new(s),
            Err(text) => return self.io_error(text),
        };
        if !self.register_pending(&tcp) {
            return;
        }
        if let Err(e) = self.setup_socket(&tcp) {
            return self.io_error(format!("Error #2031: Socket Error. {}: {e}", target.url));
        }
        // TLS and the HTTP upgrade together must finish within the timeout.
        let deadline = Instant::now() + self.config().handshake_timeout;
        let transport = if target.tls {
            match self.client_tls(&target, &mut tcp, deadline) {
                Some(t) => t,
                None => return,
            }
        } else {
            Transport::plain(tcp.clone())
        };
        drop(tcp);
        let conn = Arc::new(Conn::new(Role::Client, transport));
        let mut nonce = [0u8; 16];
        if let Err(e) = getrandom::fill(&mut nonce) {
            return self.io_error(format!("no random numbers for the handshake key: {e}"));
        }
        let request =
            handshake::client_request(&target.host_header, &target.resource, &offered, nonce);
        if let Err(e) = conn.write_raw(&request.bytes) {
            return self.io_error(format!(
                "Error #2031: Socket Error. Cannot send the handshake to {}:{}: {e}",
                target.host, target.port
            ));
        }
        let max = self.config().max_handshake_size;
        let head = self.read_head(&conn, deadline, |buf| {
            handshake::parse_response(buf, &request.key, &offered, max)
        });
        let (accepted, leftover) = match head {
            HeadResult::Done(accepted, leftover) => (accepted, leftover),
            HeadResult::Invalid(e) => {
                conn.transport.shutdown();
                return self.closed_before_open(&format!("{}: upgrade refused: {e}", target.url));
            }
            HeadResult::Eof => {
                return self.closed_before_open(&format!(
                    "{}: the server closed the connection during the handshake",
                    target.url
                ));
            }
            HeadResult::Io(e) => {
                conn.transport.shutdown();
                return self.io_error(format!(
                    "Error #2031: Socket Error. Handshake with {}:{} failed: {e}",
                    target.host, target.port
                ));
            }
        };
        self.open_and_run(
            conn,
            accepted.protocol.unwrap_or_default(),
            leftover,
            Role::Client,
        );
    }

    /// Runs the client's TLS handshake, handling certificate errors.
    fn client_tls(
        &self,
        target: &Target,
        tcp: &mut Arc<TcpStream>,
        deadline: Instant,
    ) -> Option<Transport> {
        let connector = match &self.config().tls_connector {
            Some(c) => c.clone(),
            None => match native_tls::TlsConnector::new() {
                Ok(c) => c,
                Err(e) => {
                    self.fail_opening(
                        Some(TLS_HANDSHAKE),
                        &[SecurityErrorEvent::create(
                            SecurityErrorEvent::SECURITY_ERROR,
                            format!("TLS is not available: {e}"),
                        )],
                    );
                    return None;
                }
            },
        };
        let first = drive_handshake(
            connector.connect(&target.host, MemIo::default()),
            tcp,
            deadline,
        );
        let err = match first {
            Ok(session) => return Some(Transport::tls(tcp.clone(), session)),
            Err(TlsFailure::Io(e)) => {
                self.io_error(format!(
                    "Error #2031: Socket Error. TLS handshake with {}:{} failed: {e}",
                    target.host, target.port
                ));
                return None;
            }
            Err(TlsFailure::Tls(e)) => e,
        };
        // Was the certificate the only problem? Try again without checking it;
        // if that works, the listeners decide.
        let text = format!(
            "TLS certificate of {}:{} rejected: {err}",
            target.host, target.port
        );
        let _ = tcp.shutdown(Shutdown::Both);
        let retry = native_tls::TlsConnector::builder()
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true)
            .build()
            .ok()
            .and_then(|insecure| {
                let tcp2 = Arc::new(self.connect_tcp(target).ok()?);
                if !self.register_pending(&tcp2) || self.setup_socket(&tcp2).is_err() {
                    return None;
                }
                let session = drive_handshake(
                    insecure.connect(&target.host, MemIo::default()),
                    &tcp2,
                    deadline,
                )
                .ok()?;
                Some((tcp2, session))
            });
        let Some((tcp2, session)) = retry else {
            self.fail_opening(
                Some(TLS_HANDSHAKE),
                &[SecurityErrorEvent::create(
                    SecurityErrorEvent::SECURITY_ERROR,
                    format!(
                        "TLS handshake with {}:{} failed: {err}",
                        target.host, target.port
                    ),
                )],
            );
            return None;
        };
        if !self.still_connecting() {
            let _ = tcp2.shutdown(Shutdown::Both);
            return None;
        }
        let event = SecurityErrorEvent::create(SecurityErrorEvent::CERTIFICATE_ERROR, text);
        self.dispatch(&event);
        if event.is_default_prevented() && self.still_connecting() {
            log::warn!("{}: certificate error allowed by a listener", target.url);
            *tcp = tcp2;
            return Some(Transport::tls(tcp.clone(), session));
        }
        let _ = tcp2.shutdown(Shutdown::Both);
        self.fail_opening(Some(TLS_HANDSHAKE), &[Event::new(Event::CLOSE, false)]);
        None
    }

    fn run_server(self, tcp: TcpStream, acceptor: Option<native_tls::TlsAcceptor>) {
        let tcp = Arc::new(tcp);
        let peer = tcp
            .peer_addr()
            .map_or_else(|_| "unknown peer".to_owned(), |a| a.to_string());
        if !self.register_pending(&tcp) {
            return;
        }
        if let Err(e) = self.setup_socket(&tcp) {
            return self.closed_before_open(&format!("{peer}: {e}"));
        }
        // A client that sends its handshake slowly (slowloris) is dropped
        // when this passes, however often it sends a byte.
        let deadline = Instant::now() + self.config().handshake_timeout;
        let transport = match acceptor {
            Some(acceptor) => {
                match drive_handshake(acceptor.accept(MemIo::default()), &tcp, deadline) {
                    Ok(session) => Transport::tls(tcp.clone(), session),
                    Err(e) => {
                        let _ = tcp.shutdown(Shutdown::Both);
                        return self.fail_opening(
                            Some(TLS_HANDSHAKE),
                            &[
                                SecurityErrorEvent::create(
                                    SecurityErrorEvent::SECURITY_ERROR,
                                    format!("TLS handshake with {peer} failed: {e}"),
                                ),
                                Event::new(Event::CLOSE, false),
                            ],
                        );
                    }
                }
            }
            None => Transport::plain(tcp.clone()),
        };
        drop(tcp);
        let conn = Arc::new(Conn::new(Role::Server, transport));
        let max = self.config().max_handshake_size;
        let (request, leftover) =
            match self.read_head(&conn, deadline, |buf| handshake::parse_request(buf, max)) {
                HeadResult::Done(r, leftover) => (r, leftover),
                HeadResult::Invalid(e) => {
                    let mut response = None;
                    if let handshake::RequestError::NotUpgrade {
                        method,
                        resource,
                        headers,
                    } = &e
                    {
                        let event = HttpRequestEvent::create(method, resource, headers.clone());
                        if self.still_connecting() {
                            self.dispatch(&event);
                        }
                        response = event.take_http_response();
                    }
                    let response = response.unwrap_or_else(|| {
                        log::debug!("{peer}: {e}: answering {}", e.status());
                        e.response()
                    });
                    let _ = conn.write_raw(&response);
                    linger(&conn);
                    return self.closed_before_open(&format!("{peer}: {e}"));
                }
                HeadResult::Eof => {
                    return self.closed_before_open(&format!("{peer} closed the connection"))
                }
                HeadResult::Io(e) => {
                    if e.kind() == io::ErrorKind::TimedOut {
                        // Tell a slow client why, as for any refused request.
                        let _ = conn.write_raw(&handshake::http_response(
                            408,
                            "text/plain; charset=utf-8",
                            &[],
                            b"The WebSocket handshake timed out.\n",
                        ));
                        linger(&conn);
                    }
                    conn.transport.shutdown();
                    return self.closed_before_open(&format!("{peer}: {e}"));
                }
            };
        let Some(chosen) = self.with_current(|st| {
            (!st.protocol.is_empty() && request.protocols.contains(&st.protocol))
                .then(|| st.protocol.clone())
        }) else {
            conn.transport.shutdown();
            return;
        };
        if let Err(e) = conn.write_raw(&handshake::accept_response(&request.key, chosen.as_deref()))
        {
            conn.transport.shutdown();
            return self.closed_before_open(&format!("{peer}: {e}"));
        }
        self.open_and_run(conn, chosen.unwrap_or_default(), leftover, Role::Server);
    }

    /// Reads an HTTP head and hands it to `parse` until it is complete.
    fn read_head<T, E>(
        &self,
        conn: &Conn,
        deadline: Instant,
        parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, E>,
    ) -> HeadResult<T, E> {
        let mut head = Vec::new();
        let mut buf = vec![0u8; 4096];
        let mut cipher = vec![0u8; if conn.transport.is_tls() { 16 << 10 } else { 0 }];
        let mut reader = DeadlineReader::new(
            conn.transport.socket(),
            Some(deadline),
            None,
            "handshake timed out",
        );
        loop {
            match reader.read(|| conn.transport.read(&mut buf, &mut cipher)) {
                Ok(0) => return HeadResult::Eof,
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) => return HeadResult::Io(e),
            }
            match parse(&head) {
                Ok(None) => {}
                Ok(Some((value, len))) => return HeadResult::Done(value, head.split_off(len)),
                Err(e) => return HeadResult::Invalid(e),
            }
        }
    }
}

enum HeadResult<T, E> {
    Done(T, Vec<u8>),
    Invalid(E),
    Eof,
    Io(io::Error),
}

/// After an HTTP error response: half-close, and read what the client still
/// sends for a moment, so that closing does not reset the connection before
/// the client has read the response.
fn linger(conn: &Conn) {
    conn.shutdown_write();
    let mut buf = [0u8; 1024];
    let mut cipher = vec![0u8; if conn.transport.is_tls() { 16 << 10 } else { 0 }];
    let mut reader = DeadlineReader::new(
        conn.transport.socket(),
        Some(Instant::now() + Duration::from_secs(1)),
        None,
        "lingering timed out",
    );
    for _ in 0..256 {
        match reader.read(|| conn.transport.read(&mut buf, &mut cipher)) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    conn.transport.shutdown();
}
