//! AIR's `ServerSocket`: listens for TCP connections and dispatches each as
//! a `connect` event carrying the accepted socket.

use crate::dispatcher::{EventDispatcher, ListenerRegistry};
use crate::error::Error;
use crate::event::{Event, EventTarget, ServerSocketConnectEvent};
use crate::tls::ServerTls;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

#[derive(Default)]
struct State {
    /// Bound but not yet listening.
    listener: Option<TcpListener>,
    local: Option<SocketAddr>,
    accept: Option<Accepting>,
}

struct Accepting {
    stop: Arc<AtomicBool>,
    /// Shared with the accept thread, so that `close` can shut it down.
    listener: Arc<TcpListener>,
    thread: JoinHandle<()>,
}

struct Shared {
    listeners: ListenerRegistry,
    state: Mutex<State>,
    /// The identity every accepted connection speaks TLS with (wss).
    tls: Option<ServerTls>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn close(&self) {
        let (accept, local) = {
            let mut st = self.state();
            st.listener = None;
            (st.accept.take(), st.local.take())
        };
        let Some(accept) = accept else { return };
        accept.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept(): shutting the listening socket down
        // makes it return at once, and needs no new descriptor (there may
        // be none left). Where the system does not allow that, connect to
        // it instead.
        if let Err(e) = socket2::SockRef::from(&*accept.listener).shutdown(Shutdown::Both) {
            log::debug!("shutting the listening socket down failed ({e}): connecting to it");
            if let Some(mut addr) = local {
                if addr.ip().is_unspecified() {
                    addr.set_ip(match addr.ip() {
                        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    });
                }
                let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
            }
        }
        if accept.thread.thread().id() != thread::current().id() {
            let _ = accept.thread.join();
        }
    }
}

struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// AIR's `ServerSocket`: binds a TCP port and dispatches a
/// [`ServerSocketConnectEvent::CONNECT`] event for each accepted connection.
/// The event's [`socket()`](Event::socket) goes to
/// [`WebSocket::start_server`](crate::WebSocket::start_server). A server made
/// with [`with_tls`](Self::with_tls) hands out sockets on which
/// `start_server` speaks wss.
///
/// Connections are accepted on a thread of the server's own; listeners run
/// there. When the last handle is dropped, the server stops listening.
///
/// As in AS3, the server code keeps each `WebSocket` it starts (here in a
/// list): a `WebSocket` whose last handle is dropped closes its connection.
/// `examples/echo_server.rs` also forgets each one at its `close` event.
///
/// ```no_run
/// use airws::{Event, EventDispatcher, ServerSocket, ServerSocketConnectEvent, WebSocket};
/// use std::sync::{Arc, Mutex};
///
/// let clients: Arc<Mutex<Vec<WebSocket>>> = Arc::default();
/// let server = ServerSocket::new();
/// let kept = clients.clone();
/// server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
///     let ws = WebSocket::new();
///     if ws.start_server(e.socket()).is_ok() {
///         kept.lock().unwrap_or_else(|p| p.into_inner()).push(ws);
///     }
/// });
/// server.bind(9001, "127.0.0.1")?;
/// server.listen()?;
/// # Ok::<(), airws::Error>(())
/// ```
#[derive(Clone)]
pub struct ServerSocket {
    handle: Arc<Handle>,
}

impl Default for ServerSocket {
    fn default() -> Self {
        ServerSocket::new()
    }
}

impl fmt::Debug for ServerSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSocket")
            .field("local", &self.shared().state().local)
            .field("listening", &self.listening())
            .finish()
    }
}

impl fmt::Display for ServerSocket {
    /// AS3's `toString()`: `[object ServerSocket]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[object ServerSocket]")
    }
}

impl EventDispatcher for ServerSocket {
    fn listeners(&self) -> &ListenerRegistry {
        &self.shared().listeners
    }

    fn event_target(&self) -> Option<EventTarget> {
        Some(Arc::new(self.clone()))
    }
}

impl ServerSocket {
    /// A new, unbound server socket.
    pub fn new() -> ServerSocket {
        ServerSocket::make(None)
    }

    /// A new, unbound server socket for wss: each socket it accepts
    /// carries `tls`, so that
    /// [`WebSocket::start_server`](crate::WebSocket::start_server) runs a
    /// TLS handshake with that identity first (within the
    /// [`handshake_timeout`](crate::Config::handshake_timeout)). Not in AIR.
    ///
    /// ```no_run
    /// use airws::{Event, EventDispatcher, ServerSocket, ServerSocketConnectEvent, ServerTls, WebSocket};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let tls = ServerTls::from_pem(
    ///     &std::fs::read("cert.pem")?,
    ///     &std::fs::read("key.pem")?,
    /// )?;
    /// let clients: Arc<Mutex<Vec<WebSocket>>> = Arc::default();
    /// let server = ServerSocket::with_tls(tls);
    /// let kept = clients.clone();
    /// server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
    ///     let ws = WebSocket::new();
    ///     if ws.start_server(e.socket()).is_ok() {
    ///         kept.lock().unwrap_or_else(|p| p.into_inner()).push(ws);
    ///     }
    /// });
    /// server.bind(9443, "127.0.0.1")?;
    /// server.listen()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_tls(tls: ServerTls) -> ServerSocket {
        ServerSocket::make(Some(tls))
    }

    fn make(tls: Option<ServerTls>) -> ServerSocket {
        ServerSocket {
            handle: Arc::new(Handle {
                shared: Arc::new(Shared {
                    listeners: ListenerRegistry::new(),
                    state: Mutex::new(State::default()),
                    tls,
                }),
            }),
        }
    }

    /// Whether the sockets this server accepts speak TLS (made with
    /// [`with_tls`](Self::with_tls)). Not in AIR.
    pub fn is_tls(&self) -> bool {
        self.shared().tls.is_some()
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Binds to `address` (an IP address such as `"127.0.0.1"` or `"::1"`) and
    /// `port` (0 picks a free one: read it with [`local_port`](Self::local_port)).
    ///
    /// [`Error::InvalidArgument`] for an invalid address;
    /// [`Error::IllegalOperation`] when already bound; [`Error::Io`] when the
    /// port cannot be bound.
    pub fn bind(&self, port: u16, address: &str) -> Result<(), Error> {
        let ip: IpAddr = address
            .parse()
            .map_err(|_| Error::argument(format!("bind: '{address}' is not an IP address")))?;
        let mut st = self.shared().state();
        if st.local.is_some() {
            return Err(Error::illegal("bind: the socket is already bound"));
        }
        let addr = SocketAddr::new(ip, port);
        let context = || format!("bind: cannot bind {addr}");
        let listener = TcpListener::bind(addr).map_err(|e| Error::io(context(), e))?;
        st.local = Some(listener.local_addr().map_err(|e| Error::io(context(), e))?);
        st.listener = Some(listener);
        Ok(())
    }

    /// Starts accepting connections, each dispatched as a `connect` event.
    /// [`Error::IllegalOperation`] when not bound or already listening.
    pub fn listen(&self) -> Result<(), Error> {
        let mut st = self.shared().state();
        if st.accept.is_some() {
            return Err(Error::illegal("listen: already listening"));
        }
        let Some(listener) = st.listener.take() else {
            return Err(Error::illegal("listen: the socket is not bound"));
        };
        let stop = Arc::new(AtomicBool::new(false));
        let shared = self.shared().clone();
        let weak = Arc::downgrade(&self.handle);
        let thread_stop = stop.clone();
        let listener = Arc::new(listener);
        let thread_listener = listener.clone();
        let spawned = thread::Builder::new()
            .name("airws-accept".into())
            .stack_size(512 << 10)
            .spawn(move || accept_loop(thread_listener, shared, weak, thread_stop));
        match spawned {
            Ok(thread) => {
                st.accept = Some(Accepting {
                    stop,
                    listener,
                    thread,
                });
                Ok(())
            }
            Err(e) => {
                st.local = None;
                Err(Error::io("listen: cannot start the accepting thread", e))
            }
        }
    }

    /// Stops listening and releases the port. Connections already accepted
    /// are not affected.
    pub fn close(&self) {
        self.shared().close();
    }

    /// Whether the socket is bound to a local address.
    pub fn bound(&self) -> bool {
        self.shared().state().local.is_some()
    }

    /// Whether the socket is accepting connections.
    pub fn listening(&self) -> bool {
        self.shared().state().accept.is_some()
    }

    /// The IP address the socket is bound to, or `""`.
    pub fn local_address(&self) -> String {
        self.shared()
            .state()
            .local
            .map(|a| a.ip().to_string())
            .unwrap_or_default()
    }

    /// The port the socket is bound to, or 0.
    pub fn local_port(&self) -> u16 {
        self.shared().state().local.map_or(0, |a| a.port())
    }
}

fn accept_loop(
    listener: Arc<TcpListener>,
    shared: Arc<Shared>,
    handle: Weak<Handle>,
    stop: Arc<AtomicBool>,
) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match accepted {
            Ok((socket, peer)) => {
                log::debug!("accepted a connection from {peer}");
                let event = ServerSocketConnectEvent::create(AcceptedSocket {
                    tcp: socket,
                    tls: shared.tls.clone(),
                });
                let target = handle
                    .upgrade()
                    .map(|h| Arc::new(ServerSocket { handle: h }) as EventTarget);
                event.set_target(target);
                shared.listeners.dispatch(&event);
                event.set_target(None);
                drop::<Event>(event);
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                log::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A socket a [`ServerSocket`] accepted, as its `connect` event's
/// [`socket()`](Event::socket) hands it out: the TCP connection, and the
/// server's TLS identity when it serves wss. Give it to
/// [`WebSocket::start_server`](crate::WebSocket::start_server). A
/// `TcpStream` accepted otherwise converts into one without TLS.
#[derive(Debug)]
pub struct AcceptedSocket {
    tcp: TcpStream,
    tls: Option<ServerTls>,
}

impl AcceptedSocket {
    /// An accepted TCP connection on which the server speaks TLS with
    /// `tls`, or plain text without.
    pub fn new(tcp: TcpStream, tls: Option<ServerTls>) -> AcceptedSocket {
        AcceptedSocket { tcp, tls }
    }

    /// The TCP connection.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The client's address.
    pub fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    /// Whether the server speaks TLS on it.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TCP connection and the TLS identity.
    pub fn into_parts(self) -> (TcpStream, Option<ServerTls>) {
        (self.tcp, self.tls)
    }
}

impl From<TcpStream> for AcceptedSocket {
    fn from(tcp: TcpStream) -> AcceptedSocket {
        AcceptedSocket { tcp, tls: None }
    }
}

/// What [`WebSocket::start_server`](crate::WebSocket::start_server) takes:
/// an [`AcceptedSocket`] or a `TcpStream`, or an `Option` of either
/// (`None` is AS3's null, an error).
pub trait IntoAcceptedSocket {
    /// The socket, or `None`.
    fn into_accepted_socket(self) -> Option<AcceptedSocket>;
}

impl IntoAcceptedSocket for AcceptedSocket {
    fn into_accepted_socket(self) -> Option<AcceptedSocket> {
        Some(self)
    }
}

impl IntoAcceptedSocket for TcpStream {
    fn into_accepted_socket(self) -> Option<AcceptedSocket> {
        Some(self.into())
    }
}

impl<T: IntoAcceptedSocket> IntoAcceptedSocket for Option<T> {
    fn into_accepted_socket(self) -> Option<AcceptedSocket> {
        self.and_then(IntoAcceptedSocket::into_accepted_socket)
    }
}
