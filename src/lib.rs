//! # airws
//!
//! The Adobe AIR `WebSocket` class for Rust: an RFC 6455 WebSocket client and
//! server with AS3-style event listeners, blocking I/O on a thread per
//! connection, and no async runtime. ActionScript code that uses `WebSocket`
//! and `ServerSocket` ports line for line.
//!
//! ```no_run
//! use airws::{Event, EventDispatcher, WebSocket, WebSocketEvent};
//! use std::time::Duration;
//!
//! fn main() -> Result<(), airws::Error> {
//!     let ws = WebSocket::new();
//!     // Listeners reach their WebSocket through the event's target: a
//!     // captured clone would keep it alive after it closes.
//!     ws.add_event_listener(Event::CONNECT, |e: &Event| {
//!         if let Some(ws) = e.target::<WebSocket>() {
//!             ws.send_message(WebSocket::FMT_TEXT, "Hello").ok();
//!         }
//!     });
//!     ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
//!         println!("received: {}", e.string_data().unwrap_or("<binary>"));
//!         if let Some(ws) = e.target::<WebSocket>() {
//!             ws.close(WebSocket::CLOSE_NORMAL).ok();
//!         }
//!     });
//!     ws.add_event_listener(Event::CLOSE, |e: &Event| {
//!         if let Some(ws) = e.target::<WebSocket>() {
//!             println!("closed by the server with {}", ws.close_reason());
//!         }
//!     });
//!     ws.connect("ws://127.0.0.1:9001/chat", &["chat"])?;
//!     ws.wait_closed(Duration::from_secs(10));
//!     Ok(())
//! }
//! ```
//!
//! A script uses the blocking calls instead: [`WebSocket::open`] waits for
//! the connection, [`WebSocket::receive`] for the next message (or the
//! close), [`WebSocket::close_and_wait`] for the closing handshake:
//!
//! ```no_run
//! use airws::WebSocket;
//! use std::time::Duration;
//!
//! fn main() -> Result<(), airws::Error> {
//!     let ws = WebSocket::open("ws://127.0.0.1:9001/", Duration::from_secs(5))?;
//!     ws.send_message(WebSocket::FMT_TEXT, "Hello")?;
//!     println!("{}", ws.receive(Duration::from_secs(5))?);
//!     ws.close_and_wait(WebSocket::CLOSE_NORMAL, Duration::from_secs(5))?;
//!     Ok(())
//! }
//! ```
//!
//! A GUI loop attaches its `WebSocket`s to an [`EventPump`], whose thread
//! then runs their listeners.
//!
//! The layers: [`proto`] is the sans-I/O protocol core (frames, handshake,
//! message assembly, closing); [`WebSocket`] and [`ServerSocket`] are the
//! blocking layer, with one thread per connection that reads and dispatches
//! events. See `docs/architecture.md` and `docs/porting.md`.
//!
//! For `wss`, a client's TLS settings are a [`ClientTls`] given to
//! [`Config::client_tls`], a server's a [`ServerTls`] given to
//! [`ServerSocket::with_tls`] (or [`WebSocket::start_server_tls`]); both
//! wrap `native-tls`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod blocking;
mod config;
mod connection;
mod deadline;
mod dial;
mod dispatcher;
mod error;
mod event;
mod limit;
mod message;
mod open;
pub mod proto;
mod proxy;
mod pump;
mod run;
mod server_socket;
mod session;
mod target;
mod tls;
mod transport;
mod upgrade_event;
mod websocket;

pub use blocking::Received;
pub use config::{Config, MAX_MESSAGE_CEILING};
pub use dispatcher::{EventDispatcher, Listener, ListenerId, ListenerRegistry};
pub use error::{Error, IoErrorKind, Timeout};
pub use event::{
    Event, EventTarget, EventType, Format, HttpRequestEvent, IOErrorEvent, ReconnectEvent,
    SecurityErrorEvent, ServerSocketConnectEvent, UpgradeRefusal, WebSocketEvent,
};
pub use limit::{ConnectionLimit, DEFAULT_CONNECTION_LIMIT};
pub use message::MessageData;
pub use proto::budget::{MemoryBudget, DEFAULT_BUDGET};
pub use proto::deflate::DeflateConfig;
pub use proxy::{HttpProxy, Proxy};
pub use pump::{EventPump, DEFAULT_PUMP_BYTES, DEFAULT_PUMP_EVENTS};
pub use server_socket::{AcceptedSocket, IntoAcceptedSocket, ServerSocket};
pub use tls::{ClientTls, ServerTls, TlsVersion};
pub use upgrade_event::UpgradeRequestEvent;
pub use websocket::{HandshakeRequest, HandshakeResponse, WeakWebSocket, WebSocket};

/// The code examples of `README.md`, compiled as doctests so that they keep
/// working when pasted.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The server configuration of `docs/security.md`, compiled as a doctest.
#[doc = include_str!("../docs/security.md")]
#[cfg(doctest)]
pub struct SecurityDoctests;
