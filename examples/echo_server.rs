//! An echo server: every text and binary message goes back to its sender.
//!
//!     cargo run --example echo_server [--origin ORIGIN]... [--tls-cert PEM --tls-key PEM] [--deflate] [ADDRESS:PORT]
//!
//! The address defaults to 127.0.0.1:9001. With `--deflate` it accepts a
//! client's permessage-deflate offer (RFC 7692). With `--origin` (repeatable),
//! an upgrade from a page of another origin gets 403; with `--tls-cert`
//! (the certificate chain) and `--tls-key` (its PKCS#8 key), it serves wss. The AIR pattern: a `ServerSocket`
//! whose `connect` listener hands each accepted socket to a new `WebSocket`.
//! Like AS3 code that keeps its clients in an array, the server keeps each
//! `WebSocket` in a map until its `close` event, and the listeners reply
//! through `e.target()`, so a closed connection frees everything it used.

use airws::proto::deflate::DeflateConfig;
use airws::{
    Config, Event, EventDispatcher, ServerSocket, ServerSocketConnectEvent, ServerTls, WebSocket,
    WebSocketEvent,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const USAGE: &str =
    "usage: echo_server [--origin ORIGIN]... [--tls-cert PEM --tls-key PEM] [--deflate] [ADDRESS:PORT]";

/// Ends the process on a bad command line.
fn usage(problem: &str) -> ! {
    eprintln!("echo_server: {problem}\n{USAGE}");
    std::process::exit(2);
}

fn main() {
    let mut addr: Option<SocketAddr> = None;
    let mut origins = Vec::new();
    let (mut cert, mut key) = (None, None);
    let mut deflate = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--origin" => origins.push(value()),
            "--tls-cert" => cert = Some(value()),
            "--tls-key" => key = Some(value()),
            "--deflate" => deflate = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            a if a.starts_with('-') => usage(&format!("unknown option {a}")),
            a => match a.parse() {
                Ok(a) if addr.is_none() => addr = Some(a),
                Ok(_) => usage("more than one address"),
                Err(e) => usage(&format!("'{a}' is not an ADDRESS:PORT ({e})")),
            },
        }
    }
    let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9001)));
    let tls = match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let read =
                |path: &str| std::fs::read(path).unwrap_or_else(|e| usage(&format!("{path}: {e}")));
            match ServerTls::from_pem(&read(&cert), &read(&key)) {
                Ok(tls) => Some(tls),
                Err(e) => usage(&e.to_string()),
            }
        }
        _ => usage("--tls-cert and --tls-key go together"),
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let mut config = Config::default().allowed_origins(origins);
    if deflate {
        config = config
            .permessage_deflate(DeflateConfig::default())
            .unwrap_or_else(|e| usage(&e.to_string()));
    }

    let server = match serve(addr, config, tls) {
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
        "echo_server listening on {scheme}://{shown}:{}/",
        server.local_port()
    );
    loop {
        std::thread::park();
    }
}

/// The echo server: a `ServerSocket` on `addr` whose connections echo every
/// text and binary message. (`examples/bench.rs` measures this function.)
pub fn listen(addr: SocketAddr) -> Result<ServerSocket, airws::Error> {
    listen_with(addr, Config::default())
}

/// [`listen`] with connections that use `config`.
pub fn listen_with(addr: SocketAddr, config: Config) -> Result<ServerSocket, airws::Error> {
    serve(addr, config, None)
}

/// [`listen_with`], serving wss with `tls` when it is given.
pub fn serve(
    addr: SocketAddr,
    config: Config,
    tls: Option<ServerTls>,
) -> Result<ServerSocket, airws::Error> {
    let clients: Arc<Mutex<HashMap<u64, WebSocket>>> = Arc::default();
    let next_id = AtomicU64::new(0);
    // With TLS, every accepted socket carries the identity: start_server
    // then speaks wss on it.
    let server = match tls {
        Some(tls) => ServerSocket::with_tls(tls),
        None => ServerSocket::new(),
    };
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
