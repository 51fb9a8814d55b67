//! An echo server: every text and binary message goes back to its sender.
//!
//!     cargo run --example echo_server [ADDRESS:PORT]
//!
//! The address defaults to 127.0.0.1:9001. The AIR pattern: a `ServerSocket`
//! whose `connect` listener hands each accepted socket to a new `WebSocket`.
//! Like AS3 code that keeps its clients in an array, the server keeps each
//! `WebSocket` in a map until its `close` event, and the listeners reply
//! through `e.target()`, so a closed connection frees everything it used.

use airws::{
    Event, EventDispatcher, ServerSocket, ServerSocketConnectEvent, WebSocket, WebSocketEvent,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

fn main() {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let addr: SocketAddr = match arg.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo_server: '{arg}' is not an ADDRESS:PORT ({e})");
            std::process::exit(2);
        }
    };

    let server = match listen(addr) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("echo_server: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let ip = server.local_address();
    let shown = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip
    };
    println!(
        "echo_server listening on ws://{shown}:{}/",
        server.local_port()
    );
    loop {
        std::thread::park();
    }
}

/// The echo server: a `ServerSocket` on `addr` whose connections echo every
/// text and binary message. (`examples/bench.rs` measures this function.)
pub fn listen(addr: SocketAddr) -> Result<ServerSocket, airws::Error> {
    listen_with(addr, airws::Config::default())
}

/// [`listen`] with connections that use `config`.
pub fn listen_with(addr: SocketAddr, config: airws::Config) -> Result<ServerSocket, airws::Error> {
    let clients: Arc<Mutex<HashMap<u64, WebSocket>>> = Arc::default();
    let next_id = AtomicU64::new(0);
    let server = ServerSocket::new();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::with_config(config.clone());
        ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
            if let Some(ws) = e.target::<WebSocket>() {
                if let Err(err) = ws.send_message(e.format(), e.data()) {
                    eprintln!("echo failed: {err}");
                }
            }
        });
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let list = clients.clone();
        ws.add_event_listener(Event::CLOSE, move |_e: &Event| {
            list.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        });
        clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, ws.clone());
        if let Err(err) = ws.start_server(e.socket()) {
            eprintln!("startServer failed: {err}");
            clients
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    });
    server.bind(addr.port(), &addr.ip().to_string())?;
    server.listen()?;
    Ok(server)
}
