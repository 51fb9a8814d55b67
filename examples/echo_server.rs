//! An echo server: every text and binary message goes back to its sender.
//!
//!     cargo run --example echo_server [ADDRESS:PORT]
//!
//! The address defaults to 127.0.0.1:9001. The AIR pattern: a `ServerSocket`
//! whose `connect` listener hands each accepted socket to a new `WebSocket`.

use airws::{
    Event, EventDispatcher, ServerSocket, ServerSocketConnectEvent, WebSocket, WebSocketEvent,
};
use std::net::SocketAddr;

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

    let server = ServerSocket::new();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, |e: &Event| {
        let ws = WebSocket::new();
        // The listener's clone keeps the connection alive until it closes.
        let echo = ws.clone();
        ws.add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
            if let Err(err) = echo.send_message(e.format(), e.data()) {
                eprintln!("echo failed: {err}");
            }
        });
        if let Err(err) = ws.start_server(e.socket()) {
            eprintln!("startServer failed: {err}");
        }
    });
    if let Err(e) = server
        .bind(addr.port(), &addr.ip().to_string())
        .and_then(|_| server.listen())
    {
        eprintln!("echo_server: cannot listen on {addr}: {e}");
        std::process::exit(1);
    }
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
