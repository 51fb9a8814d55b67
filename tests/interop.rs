//! Interoperability with peers nobody here wrote, in both directions: Python
//! `websockets` and Node `ws` (pinned in `tests/peers/`, installed by
//! `bash .ci/peers.sh`; the line protocol of the peer scripts is in
//! `tests/peers/README.md`).
//!
//! Each exchange covers non-ASCII text, binary, a 1 MiB message, fragmented
//! text (cut inside UTF-8 sequences) and binary (1 MiB in three fragments),
//! pings both ways, subprotocol negotiation, and close codes and reasons
//! with `close_reason()` for a close made by either side. wss against the
//! Python peer is trusted once through `certificateError` +
//! `prevent_default()` and once through a configured CA, and refused (1015)
//! without either.
//!
//! permessage-deflate (the `deflate_*` tests), each way with each peer, with
//! and without context takeover, and offered to a peer that declines it:
//! both ends report what they agreed, every message (JSON-like text, a
//! record sent twice, hundreds of KiB of binary, 1.5 MiB that does not
//! compress, empty and fragmented ones) comes back byte for byte, and a
//! relay between the two counts what each message took on the wire each
//! way: compressed, and a repeated message a fraction of its first copy
//! exactly when the sender keeps its context.
//!
//! Switched on by the `interop` feature (as `.ci/run` does); with it on, a
//! missing peer fails the tests. The peers are found at
//! `.ci/.venv/bin/python` (or `$AIRWS_PYTHON`) and `node` on the PATH (or
//! `$AIRWS_NODE`) with `tests/peers/node_modules`.

#![cfg(feature = "interop")]

mod support;

use airws::proto::deflate::DeflateConfig;
use airws::{
    ClientTls, Config, Event, EventDispatcher, SecurityErrorEvent, ServerSocket,
    ServerSocketConnectEvent, ServerTls, UpgradeRequestEvent, WebSocket, WebSocketEvent,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{close_payload, next, nothing_more, open_client, record, Seen, WAIT};

/// The longest wait for a line from a peer.
const PEER_WAIT: Duration = Duration::from_secs(20);
const TEXT: &str = "héllo wörld ✓ 🎉";
/// What the peers send in three fragments, cut inside "✓" and "🎉".
const FRAGMENTED: &str = "frag-one ✓|frag-two 🎉|frag-three";
const HINT: &str = "install the peers with `bash .ci/peers.sh`";

fn big() -> Vec<u8> {
    (0..1 << 20).map(|i| (i % 251) as u8).collect()
}

fn bytes256() -> Vec<u8> {
    (0..=255).collect()
}

/// How a peer server reports a binary message: `BINARY <len> <sha1>`.
fn binary_line(data: &[u8]) -> String {
    format!(
        "BINARY {} {}",
        data.len(),
        sha1_smol::Sha1::from(data).digest()
    )
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Peer {
    Python,
    Node,
}

impl Peer {
    fn command(self) -> Command {
        match self {
            Peer::Python => {
                let python = match std::env::var_os("AIRWS_PYTHON") {
                    Some(p) => PathBuf::from(p),
                    None => {
                        let p = root().join(".ci/.venv/bin/python");
                        assert!(
                            p.exists(),
                            "{} is missing: {HINT} (or set AIRWS_PYTHON to a Python with websockets)",
                            p.display()
                        );
                        p
                    }
                };
                let mut c = Command::new(python);
                c.arg(root().join("tests/peers/py_peer.py"))
                    .env("PYTHONIOENCODING", "utf-8")
                    .env("PYTHONDONTWRITEBYTECODE", "1");
                c
            }
            Peer::Node => {
                let ws = root().join("tests/peers/node_modules/ws/package.json");
                assert!(ws.exists(), "{} is missing: {HINT}", ws.display());
                let node = std::env::var_os("AIRWS_NODE").unwrap_or_else(|| "node".into());
                let mut c = Command::new(node);
                c.arg(root().join("tests/peers/node_peer.js"));
                c
            }
        }
    }
}

// ------------------------------------------------------------ peer processes

/// A peer process we started, with its stdout lines; killed (through its
/// own handle) and reaped when dropped.
struct PeerProcess {
    child: Child,
    peer: Peer,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    seen: Vec<String>,
}

impl PeerProcess {
    fn start(peer: Peer, args: &[&str]) -> PeerProcess {
        let mut command = peer.command();
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {peer:?} peer `{program}`: {e}; {HINT}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        PeerProcess {
            child,
            peer,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Starts the peer as a server and returns it with its port.
    fn server(peer: Peer, args: &[&str]) -> (PeerProcess, u16) {
        let mut full = vec!["server"];
        full.extend_from_slice(args);
        let mut p = PeerProcess::start(peer, &full);
        let port = p.expect("LISTENING");
        let port = port.parse().unwrap_or_else(|_| p.fail("a port"));
        (p, port)
    }

    fn fail(&self, what: &str) -> ! {
        // Give the stderr reader a moment to collect a dying peer's last words.
        std::thread::sleep(Duration::from_millis(200));
        panic!(
            "{:?} peer: {what}\n--- its stdout so far:\n{}\n--- its stderr:\n{}",
            self.peer,
            self.seen.join("\n"),
            self.stderr.lock().unwrap_or_else(|p| p.into_inner())
        );
    }

    /// The peer's next line must be `<word>` or `<word> <rest>`: returns the rest.
    fn expect(&mut self, word: &str) -> String {
        let line = match self.lines.recv_timeout(PEER_WAIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => self.fail(&format!("no line within {PEER_WAIT:?}")),
            Err(RecvTimeoutError::Disconnected) => {
                self.fail(&format!("the process ended (is it installed? {HINT})"))
            }
        };
        self.seen.push(line.clone());
        match line.strip_prefix(word) {
            Some("") => String::new(),
            Some(rest) if rest.starts_with(' ') => rest[1..].to_owned(),
            _ => self.fail(&format!("expected `{word} ...`, got `{line}`")),
        }
    }

    /// Waits for the process to end by itself, successfully, with nothing more printed.
    fn finish(&mut self) {
        let deadline = Instant::now() + PEER_WAIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(status)) => self.fail(&format!("it exited with {status}")),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => self.fail("it did not exit"),
                Err(e) => self.fail(&format!("waiting for it failed: {e}")),
            }
        }
        if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.fail(&format!("unexpected last line `{line}`"));
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------ our client, their server

fn our_client_against(peer: Peer) {
    let (mut server, port) = PeerProcess::server(peer, &[]);
    let url = format!("ws://127.0.0.1:{port}/");
    // Subprotocol: we offer two, the peer picks `chat`.
    let (ws, rx) = open_client(&url, &["superchat", "chat"]);
    assert_eq!(ws.protocol(), "chat");
    assert_eq!(server.expect("PROTOCOL"), "chat");

    // Echoes; the peer also reports what it received.
    ws.send_message(WebSocket::FMT_TEXT, TEXT).expect("text");
    assert_eq!(server.expect("RECV"), format!("TEXT {TEXT}"));
    assert_eq!(next(&rx), Seen::Text(TEXT.into()));
    ws.send_message(WebSocket::FMT_BINARY, bytes256())
        .expect("binary");
    assert_eq!(server.expect("RECV"), binary_line(&bytes256()));
    assert_eq!(next(&rx), Seen::Binary(bytes256()));
    ws.send_message(WebSocket::FMT_BINARY, big())
        .expect("1 MiB");
    assert_eq!(server.expect("RECV"), binary_line(&big()));
    assert_eq!(next(&rx), Seen::Binary(big()));

    // The peer sends fragmented messages: one event each, whole.
    ws.send_message(WebSocket::FMT_TEXT, "cmd:fragments")
        .expect("send");
    assert_eq!(next(&rx), Seen::Text(FRAGMENTED.into()));
    ws.send_message(WebSocket::FMT_TEXT, "cmd:fragments-binary")
        .expect("send");
    assert_eq!(next(&rx), Seen::Binary(big()));

    // The peer pings us and tells us what our automatic pong carried.
    ws.send_message(WebSocket::FMT_TEXT, "cmd:ping:auto-pong ✓")
        .expect("send");
    assert_eq!(next(&rx), Seen::Text("pong:auto-pong ✓".into()));
    // We ping the peer; it reports the ping (its pong reaches no listener
    // of ours: the library does not dispatch pongs).
    ws.send_message(WebSocket::FMT_PING, "our-ping")
        .expect("ping");
    assert_eq!(server.expect("GOTPING"), "our-ping");

    // We close with a code: the peer sees it and answers; no close event here.
    ws.close(4001).expect("close");
    assert_eq!(server.expect("CLOSED"), "4001 -");
    assert!(ws.wait_closed(WAIT), "the closing handshake did not finish");
    assert_eq!(ws.close_reason(), 4001);
    nothing_more(&rx, 200);

    // The same object again; we close with a code and a reason.
    ws.connect(&url, &["chat"]).expect("reconnect");
    assert_eq!(next(&rx), Seen::Connect);
    assert_eq!(server.expect("PROTOCOL"), "chat");
    ws.send_message(WebSocket::FMT_CLOSE, close_payload(4003, "adiós ✓"))
        .expect("close frame");
    assert_eq!(server.expect("CLOSED"), "4003 adiós ✓");
    assert!(ws.wait_closed(WAIT), "the closing handshake did not finish");
    assert_eq!(ws.close_reason(), 4003);
    nothing_more(&rx, 200);

    // The peer closes with a code and a reason: our close event has the
    // code, and our answer echoes it.
    ws.connect(&url, &["chat"]).expect("reconnect");
    assert_eq!(next(&rx), Seen::Connect);
    assert_eq!(server.expect("PROTOCOL"), "chat");
    ws.send_message(WebSocket::FMT_TEXT, "cmd:close:4002:bye")
        .expect("send");
    assert_eq!(next(&rx), Seen::Close(4002));
    assert_eq!(ws.close_reason(), 4002);
    assert!(!ws.connected());
    assert_eq!(server.expect("CLOSED"), "4002 -");

    // Offering no subprotocol to a server that has one.
    ws.connect(&url, &[]).expect("connect");
    match peer {
        Peer::Python => {
            // `websockets` refuses it (HTTP 400): a refused upgrade is `close`.
            assert_eq!(next(&rx), Seen::Close(1006));
            assert!(!ws.connected());
        }
        Peer::Node => {
            // `ws` accepts it without a subprotocol.
            assert_eq!(next(&rx), Seen::Connect);
            assert_eq!(ws.protocol(), "");
            assert_eq!(server.expect("PROTOCOL"), "-");
            ws.close(WebSocket::CLOSE_NORMAL).expect("close");
            assert_eq!(server.expect("CLOSED"), "1000 -");
            assert!(ws.wait_closed(WAIT));
            assert_eq!(ws.close_reason(), 1000);
        }
    }
    nothing_more(&rx, 200);
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

/// What our server saw, per connection.
#[derive(Clone, Debug, PartialEq)]
enum Srv {
    Connect(String),
    Text(String),
    Binary(Vec<u8>),
    Close(i32),
    /// Before each message, with a relay's counts: the bytes that had
    /// passed it each way when the message arrived (see [`Relay`]).
    Wire(u64, u64),
}

/// What a [`Relay`] counted: client to server, server to client.
type WireCounts = Arc<[AtomicU64; 2]>;

/// Our server for the peers' client script: answers subprotocol `chat`,
/// echoes every message, pings on `cmd:ping-me:PAYLOAD` and closes with a
/// code and reason on `cmd:close:CODE:REASON`. Reports every event as
/// (connection number, event); with a relay's counts, a [`Srv::Wire`]
/// before each message.
struct OurServer {
    server: ServerSocket,
    port: u16,
    events: Receiver<(u64, Srv)>,
    sockets: Arc<Mutex<Vec<WebSocket>>>,
}

impl OurServer {
    fn start() -> OurServer {
        OurServer::start_with(ServerSocket::new())
    }

    /// With `server`: a `ServerSocket::with_tls` serves wss.
    fn start_with(server: ServerSocket) -> OurServer {
        OurServer::serve(server, Config::default(), None)
    }

    /// With `config` for each accepted connection (permessage-deflate, say),
    /// reached through the relay that counts into `wire`.
    fn configured(config: Config, wire: WireCounts) -> OurServer {
        OurServer::serve(ServerSocket::new(), config, Some(wire))
    }

    fn serve(server: ServerSocket, config: Config, wire: Option<WireCounts>) -> OurServer {
        let (tx, events) = mpsc::channel::<(u64, Srv)>();
        let tx = Arc::new(Mutex::new(tx));
        let sockets: Arc<Mutex<Vec<WebSocket>>> = Arc::default();
        let kept = sockets.clone();
        let ids = AtomicU64::new(0);
        server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
            let id = ids.fetch_add(1, Ordering::SeqCst);
            let report = {
                let tx = tx.clone();
                move |seen: Srv| {
                    let _ = tx
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .send((id, seen));
                }
            };
            let ws = WebSocket::with_config(config.clone());
            ws.set_protocol("chat").expect("protocol");
            let r = report.clone();
            ws.add_event_listener(Event::CONNECT, move |e: &Event| {
                let ws = e.target::<WebSocket>().expect("target");
                r(Srv::Connect(ws.protocol()));
            });
            let (r, wire) = (report.clone(), wire.clone());
            ws.add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
                let ws = e.target::<WebSocket>().expect("target");
                // Before the echo: what passed is exactly up to this message
                // and the echo before it.
                if let Some(w) = &wire {
                    r(Srv::Wire(
                        w[0].load(Ordering::SeqCst),
                        w[1].load(Ordering::SeqCst),
                    ));
                }
                r(match e.string_data() {
                    Some(s) => Srv::Text(s.to_owned()),
                    None => Srv::Binary(e.data().to_vec()),
                });
                let command = e.string_data().and_then(|s| s.strip_prefix("cmd:"));
                if let Some(payload) = command.and_then(|c| c.strip_prefix("ping-me:")) {
                    ws.send_message(WebSocket::FMT_PING, payload).expect("ping");
                } else if let Some(rest) = command.and_then(|c| c.strip_prefix("close:")) {
                    let (code, reason) = rest.split_once(':').expect("cmd:close:CODE:REASON");
                    let code = code.parse().expect("a close code");
                    ws.send_message(WebSocket::FMT_CLOSE, close_payload(code, reason))
                        .expect("close");
                } else {
                    ws.send_message(e.format(), e.data()).expect("echo");
                }
            });
            ws.add_event_listener(Event::CLOSE, move |e: &Event| {
                report(Srv::Close(
                    e.target::<WebSocket>().map_or(-1, |w| w.close_reason()),
                ));
            });
            kept.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(ws.clone());
            ws.start_server(e.socket()).expect("start_server");
        });
        server.bind(0, "127.0.0.1").expect("bind");
        server.listen().expect("listen");
        let port = server.local_port();
        OurServer {
            server,
            port,
            events,
            sockets,
        }
    }

    fn next(&self) -> (u64, Srv) {
        self.events
            .recv_timeout(WAIT)
            .expect("an event of our server within the wait")
    }

    fn socket(&self, id: usize) -> WebSocket {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())[id].clone()
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        self.server.close();
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

fn their_client_against_us(peer: Peer) {
    let server = OurServer::start();
    let url = format!("ws://127.0.0.1:{}/", server.port);
    let client = PeerProcess::start(peer, &["client", &url]);
    run_client_script(server, client);
}

/// The peer's client script (`tests/peers/README.md`) against our server.
fn run_client_script(server: OurServer, mut client: PeerProcess) {
    // The peer offers `chat` and `superchat`; we answer `chat`.
    assert_eq!(client.expect("PROTOCOL"), "chat");
    assert_eq!(server.next(), (0, Srv::Connect("chat".into())));

    // Echoes; fragmented messages reach our listener whole.
    let steps = [
        ("text", Srv::Text(TEXT.into())),
        ("binary", Srv::Binary(bytes256())),
        ("big", Srv::Binary(big())),
        ("fragmented", Srv::Text(FRAGMENTED.into())),
        ("fragmented-binary", Srv::Binary(big())),
    ];
    for (step, seen) in steps {
        assert_eq!(client.expect("OK"), step);
        assert_eq!(server.next(), (0, seen), "step {step}");
    }
    // The peer pings and gets our automatic pong.
    assert_eq!(client.expect("OK"), "ping");
    // We ping the peer, which reports it.
    assert_eq!(
        server.next(),
        (0, Srv::Text("cmd:ping-me:server-ping".into()))
    );
    assert_eq!(client.expect("GOTPING"), "server-ping");
    assert_eq!(client.expect("OK"), "ping-me");

    // Asked to, we close with a code and a reason: the peer reports both.
    let command = "cmd:close:4001:server bye ✓";
    assert_eq!(server.next(), (0, Srv::Text(command.into())));
    assert_eq!(client.expect("CLOSED"), "4001 server bye ✓");
    let first = server.socket(0);
    assert!(
        first.wait_closed(WAIT),
        "the closing handshake did not finish"
    );
    assert_eq!(first.close_reason(), 4001);

    // A second connection offering no subprotocol: none is answered. The
    // peer closes it with 4002 "bye": our close event has the code, and the
    // peer gets the code echoed.
    assert_eq!(client.expect("PROTOCOL2"), "-");
    assert_eq!(
        server.next(),
        (1, Srv::Connect(String::new())),
        "no close event for our own close, then the second connection"
    );
    assert_eq!(client.expect("CLOSED2"), "4002 -");
    assert_eq!(server.next(), (1, Srv::Close(4002)));
    assert_eq!(client.expect("DONE"), "");
    client.finish();
    if let Ok(e) = server.events.recv_timeout(Duration::from_millis(200)) {
        panic!("unexpected event of our server: {e:?}");
    }
}

#[test]
fn python_websockets_client_against_our_server() {
    their_client_against_us(Peer::Python);
}

#[test]
fn node_ws_client_against_our_server() {
    their_client_against_us(Peer::Node);
}

#[test]
fn python_websockets_client_against_our_wss_server_socket() {
    let tls = ServerTls::from_pem(
        &std::fs::read(tls_file("localhost.pem")).expect("read"),
        &std::fs::read(tls_file("localhost.key")).expect("read"),
    )
    .expect("the test identity");
    let server = OurServer::start_with(ServerSocket::with_tls(tls));
    let url = format!("wss://localhost:{}/", server.port);
    let ca = tls_file("ca.pem");
    let client = PeerProcess::start(Peer::Python, &["client", &url, "--ca", &ca]);
    run_client_script(server, client);
}

/// What our server's `upgradeRequest` listener saw of each request.
#[derive(Debug, PartialEq)]
struct SeenRequest {
    origin: Option<String>,
    authorization: Option<String>,
    cookie: Option<String>,
    client: Option<String>,
    path: String,
}

#[test]
fn node_ws_client_is_refused_without_a_token_then_accepted_with_one_and_gets_a_cookie() {
    let (tx, requests) = mpsc::channel::<SeenRequest>();
    let tx = Mutex::new(tx);
    let sockets: Arc<Mutex<Vec<WebSocket>>> = Arc::default();
    let kept = sockets.clone();
    let server = ServerSocket::new();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::with_config(Config::default().allowed_origins(["https://app.example"]));
        ws.set_protocol("chat").expect("protocol");
        let tx = Mutex::new(tx.lock().unwrap_or_else(|p| p.into_inner()).clone());
        ws.add_event_listener(UpgradeRequestEvent::UPGRADE_REQUEST, move |e: &Event| {
            let h = |name: &str| e.http_header(name).map(str::to_owned);
            let _ = tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(SeenRequest {
                    origin: h("origin"),
                    authorization: h("authorization"),
                    cookie: h("cookie"),
                    client: h("x-client"),
                    path: e.http_path().to_owned(),
                });
            if e.http_header("authorization") == Some("Bearer s3cret") {
                e.add_response_header("Set-Cookie", "seen=1; HttpOnly")
                    .expect("a valid header");
            } else {
                e.refuse(
                    401,
                    &[("WWW-Authenticate", "Bearer realm=\"airws\"")],
                    "A token, please.\n",
                )
                .expect("a valid refusal");
            }
        });
        ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
            if let Some(ws) = e.target::<WebSocket>() {
                let _ = ws.send_message(e.format(), e.data());
            }
        });
        ws.start_server(e.socket()).expect("start_server");
        kept.lock().unwrap_or_else(|p| p.into_inner()).push(ws);
    });
    server.bind(0, "127.0.0.1").expect("bind");
    server.listen().expect("listen");
    let url = format!("ws://127.0.0.1:{}/feed?room=7", server.local_port());
    let mut client = PeerProcess::start(Peer::Node, &["auth-client", &url, "s3cret"]);

    assert_eq!(client.expect("REFUSED"), "401 Bearer realm=\"airws\"");
    assert_eq!(client.expect("BODY"), "A token, please.");
    let first = requests.recv_timeout(PEER_WAIT).expect("the first request");
    assert_eq!(
        first,
        SeenRequest {
            origin: Some("https://app.example".into()),
            authorization: None,
            cookie: None,
            client: Some("node-ws".into()),
            path: "/feed?room=7".into(),
        }
    );
    assert_eq!(client.expect("SETCOOKIE"), "seen=1; HttpOnly");
    assert_eq!(client.expect("PROTOCOL"), "chat");
    let second = requests
        .recv_timeout(PEER_WAIT)
        .expect("the second request");
    assert_eq!(second.authorization.as_deref(), Some("Bearer s3cret"));
    assert_eq!(second.cookie.as_deref(), Some("session=42"));
    assert_eq!(client.expect("ECHO"), "with a token ✓");
    assert_eq!(client.expect("DONE"), "");
    client.finish();
    let second = sockets.lock().unwrap_or_else(|p| p.into_inner())[1].clone();
    assert!(second.wait_closed(PEER_WAIT));
    assert_eq!(second.close_reason(), 1000);
    let request = second
        .handshake_request()
        .expect("the request stays readable");
    assert_eq!(request.path(), "/feed");
    assert_eq!(request.query(), Some("room=7"));
    server.close();
}

// ------------------------------------------------------------ wss with the Python peer

fn tls_file(name: &str) -> String {
    let path = root().join("tests/tls").join(name);
    assert!(
        path.exists(),
        "{} is missing (see tests/tls/README.md)",
        path.display()
    );
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// The Python peer serving wss with `tests/tls/localhost.pem` (signed by
/// `tests/tls/ca.pem`, for localhost and 127.0.0.1).
fn python_tls_server() -> (PeerProcess, u16) {
    PeerProcess::server(
        Peer::Python,
        &[
            "--tls",
            &tls_file("localhost.pem"),
            &tls_file("localhost.key"),
        ],
    )
}

fn exchange_over_wss(ws: &WebSocket, rx: &Receiver<Seen>, server: &mut PeerProcess) {
    assert_eq!(ws.protocol(), "chat");
    assert_eq!(server.expect("PROTOCOL"), "chat");
    ws.send_message(WebSocket::FMT_TEXT, TEXT).expect("text");
    assert_eq!(server.expect("RECV"), format!("TEXT {TEXT}"));
    assert_eq!(next(rx), Seen::Text(TEXT.into()));
    ws.send_message(WebSocket::FMT_BINARY, big())
        .expect("1 MiB");
    assert_eq!(server.expect("RECV"), binary_line(&big()));
    assert_eq!(next(rx), Seen::Binary(big()));
    ws.send_message(WebSocket::FMT_TEXT, "cmd:fragments")
        .expect("send");
    assert_eq!(next(rx), Seen::Text(FRAGMENTED.into()));
    ws.send_message(WebSocket::FMT_TEXT, "cmd:ping:tls")
        .expect("send");
    assert_eq!(next(rx), Seen::Text("pong:tls".into()));
    ws.send_message(WebSocket::FMT_PING, "our-tls-ping")
        .expect("ping");
    assert_eq!(server.expect("GOTPING"), "our-tls-ping");
    ws.close(4003).expect("close");
    assert_eq!(server.expect("CLOSED"), "4003 -");
    assert!(ws.wait_closed(WAIT), "the closing handshake did not finish");
    assert_eq!(ws.close_reason(), 4003);
    nothing_more(rx, 200);
}

#[test]
fn wss_to_python_trusted_through_certificate_error_prevent_default() {
    let (mut server, port) = python_tls_server();
    let ws = WebSocket::new();
    ws.add_event_listener(SecurityErrorEvent::CERTIFICATE_ERROR, |e: &Event| {
        e.prevent_default();
    });
    let rx = record(&ws);
    ws.connect(&format!("wss://localhost:{port}/"), &["chat"])
        .expect("connect");
    match next(&rx) {
        Seen::Certificate(text) => assert!(text.contains("localhost"), "{text}"),
        other => panic!("expected certificateError, got {other:?}"),
    }
    assert_eq!(next(&rx), Seen::Connect);
    exchange_over_wss(&ws, &rx, &mut server);
}

#[test]
fn wss_to_python_trusted_through_a_configured_ca() {
    let (mut server, port) = python_tls_server();
    let pem = std::fs::read(tls_file("ca.pem")).expect("read ca.pem");
    let tls = ClientTls::new().add_root_certificate_pem(&pem).expect("CA");
    let ws = WebSocket::with_config(Config::default().client_tls(tls));
    let rx = record(&ws);
    // By IP address: the certificate names 127.0.0.1 too.
    ws.connect(&format!("wss://127.0.0.1:{port}/"), &["chat"])
        .expect("connect");
    assert_eq!(next(&rx), Seen::Connect, "no certificateError with the CA");
    exchange_over_wss(&ws, &rx, &mut server);
}

#[test]
fn wss_to_python_untrusted_certificate_is_refused_with_1015() {
    let (_server, port) = python_tls_server();
    let ws = WebSocket::new();
    let rx = record(&ws);
    ws.connect(&format!("wss://localhost:{port}/"), &["chat"])
        .expect("connect");
    assert!(matches!(next(&rx), Seen::Certificate(_)));
    assert_eq!(next(&rx), Seen::Close(1015));
    assert_eq!(ws.close_reason(), 1015);
    assert!(!ws.connected());
    nothing_more(&rx, 200);
}

#[test]
fn our_client_sends_a_bearer_token_and_a_cookie_to_python_websockets() {
    let (mut server, port) = PeerProcess::server(Peer::Python, &["--token", "s3cret"]);
    let url = format!("ws://127.0.0.1:{port}/");
    // A wrong token: the server answers 401, which the close event carries.
    let ws = WebSocket::new();
    ws.set_request_header("Authorization", "Bearer wrong")
        .expect("a valid header");
    let (tx, refused) = mpsc::channel();
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        let _ = tx.send(e.upgrade_refusal().map(|r| r.status()));
    });
    ws.connect(&url, &[]).expect("connect");
    assert_eq!(refused.recv_timeout(PEER_WAIT).expect("close"), Some(401));
    assert_eq!(server.expect("AUTH"), "refused");
    // The right token and a cookie: connected, and the 101's Set-Cookie
    // can be read.
    let ws = WebSocket::new();
    ws.set_request_header("Authorization", "Bearer s3cret")
        .expect("a valid header");
    ws.set_request_header("Cookie", "session=42")
        .expect("a valid header");
    let rx = record(&ws);
    ws.connect(&url, &["chat"]).expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    assert_eq!(server.expect("AUTH"), "ok");
    assert_eq!(server.expect("COOKIE"), "session=42");
    let response = ws.handshake_response().expect("the 101");
    assert_eq!(response.status(), 101);
    assert_eq!(response.header("set-cookie"), Some("seen=1"));
    ws.send_message(WebSocket::FMT_TEXT, "with a token")
        .expect("send");
    assert_eq!(next(&rx), Seen::Text("with a token".into()));
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(PEER_WAIT));
}

#[test]
fn keepalive_finds_a_frozen_python_websockets_server_dead() {
    let (mut server, port) = PeerProcess::server(Peer::Python, &[]);
    let (interval, timeout) = (Duration::from_millis(200), Duration::from_millis(300));
    let config = Config::default()
        .keepalive(interval, timeout)
        .expect("a valid keepalive");
    let ws = WebSocket::with_config(config);
    let (tx, closed) = mpsc::channel();
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        let keepalive = matches!(
            e.error(),
            Some(airws::Error::Timeout {
                which: airws::Timeout::Keepalive,
                ..
            })
        );
        let _ = tx.send((e.text().to_owned(), keepalive));
    });
    let rx = record(&ws);
    ws.connect(&format!("ws://127.0.0.1:{port}/"), &["chat"])
        .expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    assert_eq!(server.expect("PROTOCOL"), "chat");
    // Alive and answering our pings: three times the bound passes quietly.
    std::thread::sleep((interval + timeout) * 3);
    assert!(ws.connected(), "a peer that answers pings is alive");
    assert!(closed.try_recv().is_err());
    // Frozen (SIGSTOP): its kernel still acknowledges, it answers nothing.
    let pid = server.child.id().to_string();
    let stop = Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill -STOP");
    assert!(stop.success());
    let frozen = Instant::now();
    let (text, keepalive) = closed.recv_timeout(WAIT).expect("close within the wait");
    let took = frozen.elapsed();
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    assert!(keepalive, "close carries Timeout::Keepalive: {text}");
    assert!(text.contains("did not answer pings"), "{text}");
    assert_eq!(ws.close_reason(), 1011);
    assert!(
        took >= timeout,
        "declared dead after {took:?}, before the timeout had passed"
    );
}

#[test]
fn reconnect_comes_back_to_a_python_websockets_server_started_again_on_its_port() {
    let (mut first, port) = PeerProcess::server(Peer::Python, &[]);
    let backoff = airws::proto::backoff::Backoff::default()
        .delays(Duration::from_millis(50), Duration::from_millis(200))
        .expect("valid delays");
    let ws = WebSocket::with_config(Config::default().reconnect(backoff));
    let (tx, events) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    for kind in [
        Event::CONNECT,
        airws::ReconnectEvent::RECONNECTING,
        Event::CLOSE,
    ] {
        let tx = tx.clone();
        ws.add_event_listener(kind, move |e: &Event| {
            let _ = tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(e.event_type().as_str());
        });
    }
    let url = format!("ws://127.0.0.1:{port}/");
    ws.connect(&url, &["chat"]).expect("connect");
    assert_eq!(events.recv_timeout(PEER_WAIT).expect("connect"), "connect");
    assert_eq!(first.expect("PROTOCOL"), "chat");
    ws.send_message(WebSocket::FMT_TEXT, "to the first")
        .expect("send");
    assert_eq!(first.expect("RECV"), "TEXT to the first");

    // The server is killed; while it is away, sends are refused.
    drop(first);
    assert_eq!(
        events.recv_timeout(PEER_WAIT).expect("reconnecting"),
        "reconnecting"
    );
    assert!(ws.send_message(WebSocket::FMT_TEXT, "lost").is_err());

    // Started again on the same port: the client comes back by itself.
    let (mut second, again) = PeerProcess::server(Peer::Python, &["--port", &port.to_string()]);
    assert_eq!(again, port);
    let back = loop {
        match events.recv_timeout(PEER_WAIT).expect("an event") {
            "reconnecting" => continue,
            other => break other,
        }
    };
    assert_eq!(back, "connect");
    assert_eq!(second.expect("PROTOCOL"), "chat");
    for i in 0..10 {
        ws.send_message(WebSocket::FMT_TEXT, format!("to the second {i}"))
            .expect("send");
    }
    for i in 0..10 {
        assert_eq!(second.expect("RECV"), format!("TEXT to the second {i}"));
    }
    ws.close(4005).expect("close");
    assert_eq!(second.expect("CLOSED"), "4005 -");
    assert!(ws.wait_closed(PEER_WAIT));
}

// ------------------------------------------------------------ permessage-deflate

/// A relay on 127.0.0.1 in front of a server's port, for one connection:
/// it counts the bytes that pass each way, which tells compressed traffic
/// from plain on the wire.
struct Relay {
    port: u16,
    counts: WireCounts,
    accepted: Arc<AtomicBool>,
    /// One message from each direction's copier as it ends.
    ended: Receiver<()>,
}

/// The longest a relayed connection may last.
const RELAY_LIFETIME: Duration = Duration::from_secs(120);

impl Relay {
    /// Relays to `target`, counting into `counts`.
    fn start(target: u16, counts: WireCounts) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("the relay's address").port();
        let accepted = Arc::new(AtomicBool::new(false));
        let (tx, ended) = mpsc::channel();
        let (c, a) = (counts.clone(), accepted.clone());
        std::thread::spawn(move || {
            let Ok((near, _)) = listener.accept() else {
                return;
            };
            a.store(true, Ordering::SeqCst);
            drop(listener);
            let Ok(far) = TcpStream::connect(("127.0.0.1", target)) else {
                return;
            };
            let (Ok(near2), Ok(far2)) = (near.try_clone(), far.try_clone()) else {
                return;
            };
            let (c2, tx2) = (c.clone(), tx.clone());
            std::thread::spawn(move || {
                copy_counting(near2, far2, &c2[0]);
                let _ = tx2.send(());
            });
            copy_counting(far, near, &c[1]);
            let _ = tx.send(());
        });
        Relay {
            port,
            counts,
            accepted,
            ended,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// The bytes that passed so far: client to server, server to client.
    fn counts(&self) -> (u64, u64) {
        (
            self.counts[0].load(Ordering::SeqCst),
            self.counts[1].load(Ordering::SeqCst),
        )
    }

    /// Waits for the relayed connection to end both ways; returns the
    /// bytes that passed.
    fn finish(&self) -> (u64, u64) {
        for _ in 0..2 {
            self.ended
                .recv_timeout(PEER_WAIT)
                .expect("the relayed connection ends within the wait");
        }
        self.counts()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // A relay nobody connected to: its accept is woken, and it ends.
        if !self.accepted.load(Ordering::SeqCst) {
            let _ = TcpStream::connect(("127.0.0.1", self.port));
        }
    }
}

/// Copies `from` to `to` until `from` ends (or fails, or the relay's
/// lifetime is over), adding what passes to `count`; then ends `to`'s
/// sending side, as `from`'s end did.
fn copy_counting(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64) {
    let deadline = Instant::now() + RELAY_LIFETIME;
    let _ = from.set_read_timeout(Some(PEER_WAIT));
    let mut buf = vec![0u8; 64 << 10];
    while Instant::now() < deadline {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // Counted before they are passed on: whoever has them
                // finds them counted.
                count.fetch_add(n as u64, Ordering::SeqCst);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The most bytes a message of `len` bytes may take on the wire, with its
/// frame headers: a quarter of it when it compresses, a little more than
/// itself when it does not.
fn wire_bound(len: usize, compressible: bool) -> u64 {
    let len = len as u64;
    if compressible {
        len / 4 + 64
    } else {
        len + len / 64 + 64
    }
}

/// What the count of the first message may include besides it: the
/// opening handshake.
const HANDSHAKE_SLACK: u64 = 1024;
/// What the count of the last echo may include besides it: the closing
/// handshake.
const CLOSE_SLACK: u64 = 64;

/// Checks the bytes one message took on the wire one way (`slack` more
/// allowed for what went with it): under [`wire_bound`] when the extension
/// was agreed, at least the message itself when not.
fn check_wire(what: &str, wire: u64, len: usize, compressible: bool, agreed: bool, slack: u64) {
    println!("{what}: {len} bytes, {wire} on the wire");
    if agreed {
        let bound = wire_bound(len, compressible) + slack;
        assert!(
            wire <= bound,
            "{what}: {len} bytes took {wire} on the wire, over {bound}: not compressed?"
        );
    } else {
        assert!(
            wire >= len as u64,
            "{what}: {len} bytes took only {wire} on the wire, though not compressed"
        );
    }
}

/// Checks what context takeover does on the wire one way, from the bytes
/// that "record" and then "record-again" (the same message) took: with
/// the context kept, the second refers to the first and is a fraction of
/// it; with the compressor reset after each message, it costs as much.
fn check_takeover(what: &str, (first, again): (u64, u64), takeover: bool) {
    println!("{what}: a repeated message took {first}, then {again} bytes on the wire");
    if takeover {
        assert!(
            again * 4 <= first,
            "{what}: with context takeover, the repeat took {again} bytes after {first}"
        );
    } else {
        assert!(
            again * 2 >= first,
            "{what}: without context takeover, the repeat took only {again} bytes after {first}"
        );
    }
}

/// Whether the sender on one side keeps its context, by the agreement `ours`
/// reports: `side` is "client" or "server".
fn takes_over(ours: &str, side: &str) -> bool {
    !ours.contains(&format!("{side}_no_context_takeover"))
}

/// The bytes that "record" and "record-again" took, from `(name, bytes)`.
fn repeat_sizes(sizes: &[(String, u64)]) -> (u64, u64) {
    let size = |name: &str| {
        sizes
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, b)| b)
            .unwrap_or_else(|| panic!("no wire size for {name}"))
    };
    (size("record"), size("record-again"))
}

/// A message as the peers report it: `TEXT|BINARY <bytes> <sha1 hex>`.
fn digest(binary: bool, data: &[u8]) -> String {
    format!(
        "{} {} {}",
        if binary { "BINARY" } else { "TEXT" },
        data.len(),
        sha1_smol::Sha1::from(data).digest()
    )
}

/// JSON-like text of `records` records, each with non-ASCII characters.
fn json_text(records: usize) -> String {
    let items: Vec<String> = (0..records)
        .map(|i| {
            format!(
                r#"{{"id":{i},"user":"user-{i}","city":"Zürich","tags":["alpha","beta","✓"],"score":{},"active":{}}}"#,
                i * 37 % 1000,
                i % 3 != 0
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// Compressible binary: runs of 64 bytes, each run its own pattern.
fn structured(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 64) % 256) as u8 ^ (i % 7) as u8)
        .collect()
}

/// Bytes that do not compress (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// One message of our client's compressed exchange.
struct Outgoing {
    name: &'static str,
    binary: bool,
    data: Vec<u8>,
    compressible: bool,
}

/// Our client's messages: tiny and empty ones (under the threshold, sent
/// as they are), a short JSON record twice (with context takeover, the
/// second refers to the first), 200 KiB of JSON-like text three times,
/// 1.2 MiB of it, 300 KiB of compressible binary, and 1.5 MiB that does
/// not compress (sent in fragments).
fn outgoing() -> Vec<Outgoing> {
    let record = json_text(6).into_bytes();
    let json = json_text(2000).into_bytes();
    let text = |name, data: Vec<u8>| Outgoing {
        name,
        binary: false,
        data,
        compressible: true,
    };
    let binary = |name, data: Vec<u8>, compressible| Outgoing {
        name,
        binary: true,
        data,
        compressible,
    };
    vec![
        text("tiny", "tiny ✓".into()),
        text("empty-text", Vec::new()),
        binary("empty-binary", Vec::new(), true),
        text("record", record.clone()),
        text("record-again", record),
        text("json", json.clone()),
        text("json-again", json.clone()),
        text("json-again-2", json),
        text("json-large", json_text(12_000).into_bytes()),
        binary("binary", structured(300 * 1024), true),
        binary("random", noise(3 << 19), false),
    ]
}

/// A `Config` with permessage-deflate on these terms.
fn with_deflate(deflate: DeflateConfig) -> Config {
    Config::default()
        .permessage_deflate(deflate)
        .expect("a valid permessage-deflate config")
}

/// A `DeflateConfig` asking for no context takeover both ways.
fn no_context_takeover() -> DeflateConfig {
    let mut deflate = DeflateConfig::default();
    deflate.server_no_context_takeover = true;
    deflate.client_no_context_takeover = true;
    deflate
}

/// Waits for the next message event, which must be `want`, compared byte
/// for byte (a mismatch is reported by digest).
fn expect_echo(rx: &Receiver<Seen>, name: &str, binary: bool, want: &[u8]) {
    let (got_binary, got) = match next(rx) {
        Seen::Text(s) => (false, s.into_bytes()),
        Seen::Binary(b) => (true, b),
        other => panic!("{name}: expected its echo, got {other:?}"),
    };
    assert!(
        got_binary == binary && got == want,
        "{name}: the echo differs: got {}, sent {}",
        digest(got_binary, &got),
        digest(binary, want)
    );
}

/// Our client with `deflate` against the peer's echo server started with
/// `--deflate <mode>`, through a [`Relay`]: both ends must report the
/// extension (`ours`, what `extensions()` says, and `theirs`, the 101's
/// header as the peer sent it; "" when none was agreed), every message's
/// echo must match, and when the extension was agreed, every message must
/// go compressed both ways, and a repeated one must cost a fraction of its
/// first copy exactly when its sender keeps its context.
fn our_deflate_client_against(
    peer: Peer,
    mode: &str,
    deflate: DeflateConfig,
    ours: &str,
    theirs: &str,
) {
    let (mut server, port) = PeerProcess::server(peer, &["--deflate", mode]);
    let relay = Relay::start(port, WireCounts::default());
    let ws = WebSocket::with_config(with_deflate(deflate));
    let rx = record(&ws);
    ws.connect(&relay.url(), &["chat"]).expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    assert_eq!(ws.extensions(), ours, "the extensions our client agreed");
    assert_eq!(server.expect("PROTOCOL"), "chat");
    let (active, header) = if theirs.is_empty() {
        ("-", "-")
    } else {
        ("permessage-deflate", theirs)
    };
    assert_eq!(
        server.expect("EXTENSIONS"),
        format!("{active} {header}"),
        "the extensions the peer agreed (in effect, then its response header)"
    );

    // One message at a time: what passed the relay between two echoes is
    // exactly one message each way.
    let agreed = !ours.is_empty();
    let (mut up_sizes, mut down_sizes) = (Vec::new(), Vec::new());
    for m in outgoing() {
        let before = relay.counts();
        ws.send_message(
            if m.binary {
                WebSocket::FMT_BINARY
            } else {
                WebSocket::FMT_TEXT
            },
            m.data.clone(),
        )
        .unwrap_or_else(|e| panic!("send {}: {e}", m.name));
        assert_eq!(
            server.expect("RECV"),
            digest(m.binary, &m.data),
            "what the peer received of {}",
            m.name
        );
        expect_echo(&rx, m.name, m.binary, &m.data);
        let after = relay.counts();
        let (len, compressible) = (m.data.len(), m.compressible);
        check_wire(m.name, after.0 - before.0, len, compressible, agreed, 0);
        let echo = format!("{} echoed", m.name);
        check_wire(&echo, after.1 - before.1, len, compressible, agreed, 0);
        up_sizes.push((m.name.to_owned(), after.0 - before.0));
        down_sizes.push((m.name.to_owned(), after.1 - before.1));
    }
    if agreed {
        let (up, down) = (repeat_sizes(&up_sizes), repeat_sizes(&down_sizes));
        check_takeover("our client", up, takes_over(ours, "client"));
        check_takeover("the peer's server", down, takes_over(ours, "server"));
    }

    // The peer's fragmented messages, each fragment compressed on its own
    // with RSV1 on the first only.
    for (command, binary, want, compressible) in [
        (
            "cmd:fragments",
            false,
            FRAGMENTED.as_bytes().to_vec(),
            false,
        ),
        ("cmd:fragments-binary", true, big(), true),
    ] {
        let before = relay.counts();
        ws.send_message(WebSocket::FMT_TEXT, command).expect("send");
        expect_echo(&rx, command, binary, &want);
        let wire = relay.counts().1 - before.1;
        check_wire(command, wire, want.len(), compressible, agreed, 0);
    }
    // Control frames, never compressed, still go through both ways.
    ws.send_message(WebSocket::FMT_TEXT, "cmd:ping:deflate ✓")
        .expect("send");
    assert_eq!(next(&rx), Seen::Text("pong:deflate ✓".into()));

    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert_eq!(server.expect("CLOSED"), "1000 -");
    assert!(ws.wait_closed(WAIT), "the closing handshake did not finish");
    assert_eq!(ws.close_reason(), 1000);
    assert_eq!(
        ws.extensions(),
        ours,
        "extensions() still tells the last connection's"
    );
    nothing_more(&rx, 200);
    relay.finish();
}

#[test]
fn deflate_our_client_against_python_websockets_server() {
    // websockets' own settings: 12-bit windows both ways, which our
    // compressor must keep to.
    let agreed = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12";
    our_deflate_client_against(Peer::Python, "on", DeflateConfig::default(), agreed, agreed);
}

#[test]
fn deflate_our_client_against_python_websockets_server_without_context_takeover() {
    // Both ends ask for it.
    let agreed = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    our_deflate_client_against(
        Peer::Python,
        "no-context",
        no_context_takeover(),
        agreed,
        agreed,
    );
}

#[test]
fn deflate_our_client_against_node_ws_server() {
    our_deflate_client_against(
        Peer::Node,
        "on",
        DeflateConfig::default(),
        "permessage-deflate",
        "permessage-deflate",
    );
}

#[test]
fn deflate_our_client_against_node_ws_server_imposing_no_context_takeover() {
    // Our client does not ask; the server's answer imposes it both ways.
    let agreed = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    our_deflate_client_against(
        Peer::Node,
        "no-context",
        DeflateConfig::default(),
        agreed,
        agreed,
    );
}

#[test]
fn deflate_our_client_offering_to_a_node_ws_server_without_it_agrees_none() {
    our_deflate_client_against(Peer::Node, "off", DeflateConfig::default(), "", "");
}

/// The names of the peers' `deflate-client` messages, in order
/// (`tests/peers/*`), and whether each compresses.
const PEER_MESSAGES: [(&str, bool); 12] = [
    ("tiny", true),
    ("empty-text", true),
    ("empty-binary", true),
    ("record", true),
    ("record-again", true),
    ("json", true),
    ("json-again", true),
    ("json-again-2", true),
    ("binary", true),
    ("random", false),
    ("fragmented-text", true),
    ("fragmented-binary", true),
];

/// What our server's event carried, as the peers report a message.
fn srv_digest(seen: &Srv) -> String {
    match seen {
        Srv::Text(s) => digest(false, s.as_bytes()),
        Srv::Binary(b) => digest(true, b),
        other => format!("{other:?}"),
    }
}

/// The peer's `deflate-client <mode>` script against our server with
/// `config`, through a [`Relay`]: both ends must report the extension
/// (`ours`, what our server's `extensions()` says, and `theirs`, the 101's
/// header as the peer received it; "" when none was agreed), our server
/// must receive each message the peer says it sent, the peer must get each
/// echo byte for byte, and when the extension was agreed, every message
/// must go compressed both ways, and a repeated one must cost a fraction
/// of its first copy exactly when its sender keeps its context.
fn their_deflate_client_against_us(
    peer: Peer,
    mode: &str,
    config: Config,
    ours: &str,
    theirs: &str,
) {
    let wire = WireCounts::default();
    let server = OurServer::configured(config, wire.clone());
    let relay = Relay::start(server.port, wire);
    let mut client = PeerProcess::start(peer, &["deflate-client", &relay.url(), mode]);
    assert_eq!(client.expect("PROTOCOL"), "chat");
    assert_eq!(server.next(), (0, Srv::Connect("chat".into())));
    assert_eq!(
        server.socket(0).extensions(),
        ours,
        "the extensions our server agreed"
    );
    let (active, header) = if theirs.is_empty() {
        ("-", "-")
    } else {
        ("permessage-deflate", theirs)
    };
    assert_eq!(
        client.expect("EXTENSIONS"),
        format!("{active} {header}"),
        "the extensions the peer agreed (in effect, then the response header)"
    );

    // Our server notes the relay's counts as each message arrives, before
    // its echo: between two notes, exactly one message passed each way.
    let agreed = !ours.is_empty();
    let (mut last_up, mut last_down) = (0, 0);
    let mut previous: Option<(&str, usize, bool)> = None;
    let (mut up_sizes, mut down_sizes) = (Vec::new(), Vec::new());
    for (i, (name, compressible)) in PEER_MESSAGES.into_iter().enumerate() {
        let sent = client.expect("SENT");
        let (sent_name, sent_digest) = sent
            .split_once(' ')
            .unwrap_or_else(|| client.fail("SENT <name> <digest>"));
        assert_eq!(sent_name, name, "the peer's messages, in order");
        let len: usize = sent_digest
            .split(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| client.fail("a length in the digest"));
        let (up, down) = match server.next() {
            (0, Srv::Wire(up, down)) => (up, down),
            other => panic!("expected the wire counts before {name}, got {other:?}"),
        };
        let (id, seen) = server.next();
        assert_eq!(
            (id, srv_digest(&seen)),
            (0, sent_digest.to_owned()),
            "what our server received of {name}"
        );
        // The first message went with the opening handshake.
        let slack = if i == 0 { HANDSHAKE_SLACK } else { 0 };
        check_wire(name, up - last_up, len, compressible, agreed, slack);
        up_sizes.push((name.to_owned(), up - last_up));
        if let Some((name, len, compressible)) = previous {
            let echo = format!("{name} echoed");
            check_wire(&echo, down - last_down, len, compressible, agreed, 0);
            down_sizes.push((name.to_owned(), down - last_down));
        }
        (last_up, last_down, previous) = (up, down, Some((name, len, compressible)));
        assert_eq!(client.expect("OK"), name, "the peer checked the echo");
    }
    assert_eq!(client.expect("CLOSED"), "1000 -");
    assert_eq!(client.expect("DONE"), "");
    client.finish();
    assert_eq!(server.next(), (0, Srv::Close(1000)));
    assert_eq!(server.socket(0).extensions(), ours);
    let (_, down) = relay.finish();
    if let Some((name, len, compressible)) = previous {
        let echo = format!("{name} echoed");
        check_wire(
            &echo,
            down - last_down,
            len,
            compressible,
            agreed,
            CLOSE_SLACK,
        );
    }
    if agreed {
        let (up, down) = (repeat_sizes(&up_sizes), repeat_sizes(&down_sizes));
        check_takeover("the peer's client", up, takes_over(ours, "client"));
        check_takeover("our server", down, takes_over(ours, "server"));
    }
    if let Ok(e) = server.events.recv_timeout(Duration::from_millis(200)) {
        panic!("unexpected event of our server: {e:?}");
    }
}

#[test]
fn deflate_python_websockets_client_against_our_server() {
    // websockets offers `client_max_window_bits`; our server states no
    // limit.
    their_deflate_client_against_us(
        Peer::Python,
        "on",
        with_deflate(DeflateConfig::default()),
        "permessage-deflate",
        "permessage-deflate",
    );
}

#[test]
fn deflate_python_websockets_client_against_our_server_without_context_takeover() {
    // The client asks for it both ways; our server does not, and agrees.
    let agreed = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    their_deflate_client_against_us(
        Peer::Python,
        "no-context",
        with_deflate(DeflateConfig::default()),
        agreed,
        agreed,
    );
}

#[test]
fn deflate_python_websockets_client_offering_to_our_server_without_it_agrees_none() {
    their_deflate_client_against_us(Peer::Python, "on", Config::default(), "", "");
}

#[test]
fn deflate_node_ws_client_against_our_server() {
    their_deflate_client_against_us(
        Peer::Node,
        "on",
        with_deflate(DeflateConfig::default()),
        "permessage-deflate",
        "permessage-deflate",
    );
}

#[test]
fn deflate_node_ws_client_against_our_server_without_context_takeover() {
    // Both ends ask for it.
    let agreed = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    their_deflate_client_against_us(
        Peer::Node,
        "no-context",
        with_deflate(no_context_takeover()),
        agreed,
        agreed,
    );
}

#[test]
fn deflate_node_ws_client_against_our_server_imposing_no_context_takeover() {
    // The client does not ask; our server's answer imposes it both ways.
    let agreed = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    their_deflate_client_against_us(
        Peer::Node,
        "on",
        with_deflate(no_context_takeover()),
        agreed,
        agreed,
    );
}

#[test]
fn deflate_node_ws_client_against_our_server_with_small_windows() {
    // Our server limits its own window to 10 bits and the client's to 11
    // (the client offered `client_max_window_bits`).
    let mut deflate = DeflateConfig::default();
    deflate.server_max_window_bits = 10;
    deflate.client_max_window_bits = 11;
    let agreed = "permessage-deflate; server_max_window_bits=10; client_max_window_bits=11";
    their_deflate_client_against_us(Peer::Node, "on", with_deflate(deflate), agreed, agreed);
}
