//! Interoperability with peers nobody here wrote, in both directions: Python
//! `websockets` and Node `ws` (pinned in `tests/peers/`, installed by
//! `bash .ci/peers.sh`). Each exchange covers non-ASCII text, binary, a
//! 1 MiB message, a fragmented message, ping/pong, subprotocol negotiation
//! and close codes with `close_reason`; wss against the Python peer is
//! trusted once through `certificateError` + `prevent_default()` and once
//! through a configured CA.
//!
//! Switched on by the `interop` feature (as `.ci/run` does); with it on, a
//! missing peer fails the tests.

#![cfg(feature = "interop")]

mod support;

use airws::{
    Config, Event, EventDispatcher, SecurityErrorEvent, ServerSocket, ServerSocketConnectEvent,
    WebSocket, WebSocketEvent,
};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const PEER_WAIT: Duration = Duration::from_secs(30);
const FRAGMENTED: &str = "frag-one|frag-two|frag-three";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Peer {
    Python,
    Node,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn peer_command(peer: Peer) -> Command {
    match peer {
        Peer::Python => {
            let python = std::env::var_os("AIRWS_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().join(".ci/.venv/bin/python"));
            assert!(
                python.exists(),
                "{} is missing: run `bash .ci/peers.sh` (or set AIRWS_PYTHON)",
                python.display()
            );
            let mut c = Command::new(python);
            c.arg(root().join("tests/peers/py_peer.py"));
            c
        }
        Peer::Node => {
            assert!(
                root().join("tests/peers/node_modules/ws").exists(),
                "tests/peers/node_modules/ws is missing: run `bash .ci/peers.sh`"
            );
            let node = std::env::var_os("AIRWS_NODE").unwrap_or_else(|| "node".into());
            let mut c = Command::new(node);
            c.arg(root().join("tests/peers/node_peer.js"));
            c
        }
    }
}

/// A peer process (killed, by its own PID, when dropped) and its stdout lines.
struct PeerProcess {
    child: Child,
    lines: Receiver<String>,
    peer: Peer,
}

impl PeerProcess {
    fn start(peer: Peer, args: &[&str]) -> PeerProcess {
        let mut child = peer_command(peer)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start the {peer:?} peer: {e} (run bash .ci/peers.sh)")
            });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        PeerProcess { child, lines, peer }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(PEER_WAIT)
            .unwrap_or_else(|_| panic!("the {:?} peer printed nothing more", self.peer))
    }

    /// Reads lines until one starts with `prefix`; returns the rest of it.
    fn expect(&self, prefix: &str) -> String {
        for _ in 0..100 {
            let line = self.line();
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
            assert!(!line.starts_with("FAIL"), "{:?} peer: {line}", self.peer);
        }
        panic!("the {:?} peer never printed {prefix}", self.peer);
    }

    /// Starts the peer as a server and returns it with its port.
    fn server(peer: Peer, args: &[&str]) -> (PeerProcess, u16) {
        let mut full = vec!["server"];
        full.extend_from_slice(args);
        let p = PeerProcess::start(peer, &full);
        let port = p.expect("LISTENING").parse().expect("a port");
        (p, port)
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn big() -> Vec<u8> {
    (0..1 << 20).map(|i| (i % 251) as u8).collect()
}

// ------------------------------------------------------------ our client, their server

fn our_client_against(peer: Peer) {
    let (server, port) = PeerProcess::server(peer, &[]);
    let url = format!("ws://127.0.0.1:{port}/");
    let ws = WebSocket::new();
    let rx = record(&ws);
    ws.connect(&url, &["superchat", "chat"]).expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    assert_eq!(ws.protocol(), "chat");
    assert_eq!(server.expect("PROTOCOL"), "chat");

    let text = "héllo wörld ✓ 🎉";
    ws.send_message(WebSocket::FMT_TEXT, text).expect("text");
    assert_eq!(next(&rx), Seen::Text(text.into()));
    let bytes: Vec<u8> = (0..=255).collect();
    ws.send_message(WebSocket::FMT_BINARY, &bytes)
        .expect("binary");
    assert_eq!(next(&rx), Seen::Binary(bytes));
    ws.send_message(WebSocket::FMT_BINARY, big())
        .expect("1 MiB");
    assert_eq!(next(&rx), Seen::Binary(big()));
    // The peer sends a message in three fragments: one event, whole.
    ws.send_message(WebSocket::FMT_TEXT, "cmd:fragments")
        .expect("send");
    assert_eq!(next(&rx), Seen::Text(FRAGMENTED.into()));
    // The peer pings us and tells us what our automatic pong carried.
    ws.send_message(WebSocket::FMT_TEXT, "cmd:ping:auto-pong")
        .expect("send");
    assert_eq!(next(&rx), Seen::Text("pong:auto-pong".into()));
    if peer == Peer::Node {
        // Node `ws` reports the pings it receives.
        ws.send_message(WebSocket::FMT_PING, "our-ping")
            .expect("ping");
        assert_eq!(server.expect("GOTPING"), "our-ping");
    }
    // We close with a code: the peer sees it, and answers with it.
    ws.close(4001).expect("close");
    assert_eq!(server.expect("CLOSED"), "4001 -");
    assert!(ws.wait_closed(WAIT));
    assert_eq!(ws.close_reason(), 4001);
    nothing_more(&rx, 100);

    if peer == Peer::Python {
        // `websockets` refuses a client that offers no subprotocol to a
        // server that requires one (HTTP 400): a refused upgrade is `close`.
        ws.connect(&url, &[]).expect("connect");
        assert_eq!(next(&rx), Seen::Close(1006));
        assert!(!ws.connected());
    }
    // The same object again; this time the peer closes.
    ws.connect(&url, &["chat"]).expect("reconnect");
    assert_eq!(next(&rx), Seen::Connect);
    assert_eq!(ws.protocol(), "chat");
    ws.send_message(WebSocket::FMT_TEXT, "cmd:close:4002:bye")
        .expect("send");
    assert_eq!(next(&rx), Seen::Close(4002));
    assert_eq!(ws.close_reason(), 4002);
    assert_eq!(
        server.expect("CLOSED"),
        "4002 -",
        "our reply echoes the code"
    );
}

#[test]
fn our_client_against_python_websockets_server() {
    our_client_against(Peer::Python);
}

#[test]
fn our_client_against_node_ws_server() {
    our_client_against(Peer::Node);
}

// ------------------------------------------------------------ their client, our server

/// Our server for the peers' client script: answers subprotocol `chat`,
/// echoes every message, and closes with `code` on `cmd:close:CODE:REASON`.
/// Reports each connection's close reason.
fn our_server() -> (ServerSocket, u16, Receiver<i32>) {
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    let sockets: Arc<Mutex<Vec<WebSocket>>> = Arc::default();
    let server = ServerSocket::new();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::new();
        ws.set_protocol("chat").expect("protocol");
        ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
            let Some(ws) = e.target::<WebSocket>() else {
                return;
            };
            match e.string_data().and_then(|s| s.strip_prefix("cmd:close:")) {
                Some(rest) => {
                    let code = rest.split(':').next().and_then(|c| c.parse().ok());
                    ws.close(code.unwrap_or(1000)).expect("close");
                }
                None => ws.send_message(e.format(), e.data()).expect("echo"),
            }
        });
        let t = tx.clone();
        ws.add_event_listener(Event::CLOSE, move |e: &Event| {
            let code = e.target::<WebSocket>().map_or(-1, |w| w.close_reason());
            let _ = t.lock().unwrap_or_else(|p| p.into_inner()).send(code);
        });
        sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ws.clone());
        ws.start_server(e.socket()).expect("start_server");
    });
    server.bind(0, "127.0.0.1").expect("bind");
    server.listen().expect("listen");
    let port = server.local_port();
    (server, port, rx)
}

fn their_client_against_us(peer: Peer) {
    let (server, port, closes) = our_server();
    let client = PeerProcess::start(peer, &["client", &format!("ws://127.0.0.1:{port}/")]);
    assert_eq!(client.expect("PROTOCOL"), "chat");
    for step in ["text", "binary", "big", "fragmented", "ping"] {
        assert_eq!(client.expect("OK"), step);
    }
    // The peer asked our server to close with 4001.
    assert_eq!(client.expect("CLOSED"), "4001 -");
    // Then it opened a second connection and closed it with 4002 "bye":
    // our server's close event has the code, and the peer got it echoed.
    assert_eq!(client.expect("CLOSED2"), "4002 -");
    assert_eq!(client.expect("DONE"), "");
    assert_eq!(
        closes.recv_timeout(WAIT).expect("our server's close event"),
        4002
    );
    server.close();
}

#[test]
fn python_websockets_client_against_our_server() {
    their_client_against_us(Peer::Python);
}

#[test]
fn node_ws_client_against_our_server() {
    their_client_against_us(Peer::Node);
}

// ------------------------------------------------------------ wss with the Python peer

fn python_tls_server() -> (PeerProcess, u16) {
    let dir = root().join("tests/tls");
    PeerProcess::server(
        Peer::Python,
        &[
            "--tls",
            dir.join("localhost.pem").to_str().expect("path"),
            dir.join("localhost.key").to_str().expect("path"),
        ],
    )
}

fn exchange_over_wss(ws: &WebSocket, rx: &Receiver<Seen>, server: &PeerProcess) {
    assert_eq!(ws.protocol(), "chat");
    assert_eq!(server.expect("PROTOCOL"), "chat");
    ws.send_message(WebSocket::FMT_TEXT, "héllo over TLS")
        .expect("text");
    assert_eq!(next(rx), Seen::Text("héllo over TLS".into()));
    ws.send_message(WebSocket::FMT_BINARY, big())
        .expect("1 MiB");
    assert_eq!(next(rx), Seen::Binary(big()));
    ws.send_message(WebSocket::FMT_TEXT, "cmd:ping:tls")
        .expect("send");
    assert_eq!(next(rx), Seen::Text("pong:tls".into()));
    ws.close(4003).expect("close");
    assert_eq!(server.expect("CLOSED"), "4003 -");
    assert!(ws.wait_closed(WAIT));
    assert_eq!(ws.close_reason(), 4003);
}

#[test]
fn wss_to_python_trusted_through_certificate_error_prevent_default() {
    let (server, port) = python_tls_server();
    let ws = WebSocket::new();
    ws.add_event_listener(SecurityErrorEvent::CERTIFICATE_ERROR, |e: &Event| {
        e.prevent_default();
    });
    let rx = record(&ws);
    ws.connect(&format!("wss://localhost:{port}/"), &["chat"])
        .expect("connect");
    assert!(matches!(next(&rx), Seen::Certificate(_)));
    assert_eq!(next(&rx), Seen::Connect);
    exchange_over_wss(&ws, &rx, &server);
}

#[test]
fn wss_to_python_trusted_through_a_configured_ca() {
    let (server, port) = python_tls_server();
    let ca = native_tls::Certificate::from_pem(include_bytes!("tls/ca.pem")).expect("CA");
    let ws = WebSocket::with_config(Config {
        tls_connector: Some(
            native_tls::TlsConnector::builder()
                .add_root_certificate(ca)
                .build()
                .expect("connector"),
        ),
        ..Config::default()
    });
    let rx = record(&ws);
    ws.connect(&format!("wss://localhost:{port}/"), &["chat"])
        .expect("connect");
    assert_eq!(next(&rx), Seen::Connect, "no certificateError with the CA");
    exchange_over_wss(&ws, &rx, &server);
}
