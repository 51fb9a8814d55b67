//! A server looks at each upgrade request before it answers, over real
//! loopback sockets: the `upgradeRequest` event's request, a refusal with a
//! status, headers and a body, a subprotocol chosen per request, headers
//! added to the 101, and the handshake deadline over listeners (of
//! `upgradeRequest` and `httpRequest`) that panic or never return. And wss
//! from a `ServerSocket::with_tls`.
//!
//! A file of its own: the listeners' deadline starts the watchdog's thread,
//! which thread-counting tests elsewhere must not see.

mod support;

use airws::{
    ClientTls, Config, Error, Event, EventDispatcher, HttpRequestEvent, ServerSocket,
    ServerSocketConnectEvent, ServerTls, Timeout, UpgradeRequestEvent, WebSocket,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// What a server's `WebSocket` reported: its `upgradeRequest`s as seen by
/// the listener, and its `close` events with their error.
#[derive(Debug)]
enum Report {
    Request {
        method: String,
        path: String,
        query: Option<String>,
        origin: Option<String>,
        offered: Vec<String>,
        header_count: usize,
    },
    Connect(String),
    /// `close` carrying the refusal this server answered with.
    Refused(u16, String),
    Close(Option<String>),
}

type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// A server whose `WebSocket`s use `config`, answer `protocol` by default,
/// and have `listener` for `upgradeRequest`; reports what happens.
fn server(
    config: Config,
    protocol: &'static str,
    listener: Listener,
) -> (ServerSocket, mpsc::Receiver<Report>) {
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    let server = ServerSocket::new();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::with_config(config.clone());
        if !protocol.is_empty() {
            ws.set_protocol(protocol).expect("protocol");
        }
        let send = {
            let tx = tx.clone();
            move |r: Report| {
                let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(r);
            }
        };
        let (s, l) = (send.clone(), listener.clone());
        ws.add_event_listener(UpgradeRequestEvent::UPGRADE_REQUEST, move |e: &Event| {
            s(Report::Request {
                method: e.http_method().to_owned(),
                path: e.http_path().to_owned(),
                query: e.http_query().map(str::to_owned),
                origin: e.http_header("origin").map(str::to_owned),
                offered: e.offered_protocols().to_vec(),
                header_count: e.http_headers().len(),
            });
            l(e);
        });
        let s = send.clone();
        ws.add_event_listener(Event::CONNECT, move |e: &Event| {
            s(Report::Connect(
                e.target::<WebSocket>()
                    .map(|w| w.protocol())
                    .unwrap_or_default(),
            ));
        });
        ws.add_event_listener(Event::CLOSE, move |e: &Event| {
            send(match e.upgrade_refusal() {
                Some(r) => Report::Refused(r.status(), r.body().to_owned()),
                None => Report::Close(e.error().map(|e| format!("{e:?}"))),
            });
        });
        ws.start_server(e.socket()).expect("start_server");
        std::mem::forget(ws);
    });
    server.bind(0, "127.0.0.1").expect("bind");
    server.listen().expect("listen");
    (server, rx)
}

fn report(rx: &mpsc::Receiver<Report>) -> Report {
    rx.recv_timeout(WAIT).expect("a report within the wait")
}

#[test]
fn a_listener_refuses_with_401_then_accepts_a_token_with_a_cookie_and_a_subprotocol() {
    let listener: Listener = Arc::new(|e: &Event| {
        if e.http_header("authorization") != Some("Bearer s3cret") {
            e.refuse(
                401,
                &[("WWW-Authenticate", "Bearer realm=\"chat\"")],
                "A token, please.\nSecond line.",
            )
            .expect("a valid refusal");
            return;
        }
        e.add_response_header("Set-Cookie", "session=42; HttpOnly")
            .expect("a valid header");
        e.add_response_header("Set-Cookie", "theme=dark")
            .expect("a valid header");
        // Not offered: refused with an error, and nothing changes.
        assert!(matches!(
            e.accept_protocol("superchat"),
            Err(Error::InvalidArgument { .. })
        ));
        e.accept_protocol("chat.v2").expect("offered");
    });
    let (server, rx) = server(Config::default(), "chat.v1", listener);
    let port = server.local_port();

    let refused = exchange(
        port,
        &upgrade(
            "/rooms/7?x=1",
            "Origin: https://app.example\r\nSec-WebSocket-Protocol: chat.v1, chat.v2\r\n",
        ),
    );
    assert!(
        refused.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{refused}"
    );
    assert_eq!(
        header(&refused, "www-authenticate"),
        Some("Bearer realm=\"chat\"")
    );
    assert_eq!(
        header(&refused, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(refused.ends_with("\r\n\r\nA token, please.\nSecond line."));
    match report(&rx) {
        Report::Request {
            method,
            path,
            query,
            origin,
            offered,
            header_count,
        } => {
            assert_eq!(method, "GET");
            assert_eq!(path, "/rooms/7?x=1");
            assert_eq!(query.as_deref(), Some("x=1"));
            assert_eq!(origin.as_deref(), Some("https://app.example"));
            assert_eq!(offered, ["chat.v1", "chat.v2"]);
            assert_eq!(header_count, 7);
        }
        other => panic!("expected the request, got {other:?}"),
    }
    match report(&rx) {
        Report::Refused(401, body) => assert_eq!(body, "A token, please."),
        other => panic!("expected the refusal, got {other:?}"),
    }

    let accepted = exchange(
        port,
        &upgrade(
            "/rooms/7",
            "Authorization: Bearer s3cret\r\nSec-WebSocket-Protocol: chat.v1, chat.v2\r\n",
        ),
    );
    assert!(accepted.starts_with("HTTP/1.1 101 "), "{accepted}");
    assert_eq!(header(&accepted, "sec-websocket-protocol"), Some("chat.v2"));
    assert_eq!(
        header(&accepted, "sec-websocket-accept"),
        Some(accept_key(KEY).as_str())
    );
    assert!(accepted.contains("\r\nSet-Cookie: session=42; HttpOnly\r\nSet-Cookie: theme=dark\r\n"));
    assert!(matches!(report(&rx), Report::Request { .. }));
    match report(&rx) {
        Report::Connect(protocol) => assert_eq!(protocol, "chat.v2"),
        other => panic!("expected connect, got {other:?}"),
    }
}

#[test]
fn prevent_default_alone_refuses_with_403_and_a_listener_may_choose_no_subprotocol() {
    let listener: Listener = Arc::new(|e: &Event| {
        if e.http_path() == "/private" {
            e.prevent_default();
        } else {
            e.accept_protocol("").expect("none");
        }
    });
    let (server, rx) = server(Config::default(), "chat", listener);
    let port = server.local_port();
    let refused = exchange(port, &upgrade("/private", ""));
    assert!(
        refused.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{refused}"
    );
    assert!(matches!(report(&rx), Report::Request { .. }));
    assert!(matches!(report(&rx), Report::Refused(403, _)));
    let accepted = exchange(port, &upgrade("/", "Sec-WebSocket-Protocol: chat\r\n"));
    assert!(accepted.starts_with("HTTP/1.1 101 "), "{accepted}");
    assert_eq!(header(&accepted, "sec-websocket-protocol"), None);
}

#[test]
fn a_listener_that_decides_nothing_lets_the_protocol_property_be_answered() {
    let (server, rx) = server(Config::default(), "chat", Arc::new(|_: &Event| {}));
    let accepted = exchange(
        server.local_port(),
        &upgrade("/", "Sec-WebSocket-Protocol: other, chat\r\n"),
    );
    assert!(accepted.starts_with("HTTP/1.1 101 "), "{accepted}");
    assert_eq!(header(&accepted, "sec-websocket-protocol"), Some("chat"));
    assert!(matches!(report(&rx), Report::Request { .. }));
}

#[test]
fn the_origin_allow_list_is_checked_before_any_listener() {
    let config = Config::default().allowed_origins(["https://app.example"]);
    let (server, rx) = server(config, "", Arc::new(|_: &Event| {}));
    let port = server.local_port();
    let refused = exchange(port, &upgrade("/", "Origin: https://evil.example\r\n"));
    assert!(refused.starts_with("HTTP/1.1 403 "), "{refused}");
    match report(&rx) {
        Report::Refused(403, body) => assert!(body.contains("evil.example"), "{body}"),
        other => panic!("no upgradeRequest for a foreign origin: {other:?}"),
    }
    let accepted = exchange(port, &upgrade("/", "Origin: https://app.example\r\n"));
    assert!(accepted.starts_with("HTTP/1.1 101 "), "{accepted}");
    assert!(matches!(report(&rx), Report::Request { .. }));
}

#[test]
fn a_panicking_listener_refuses_with_500() {
    let listener: Listener = Arc::new(|e: &Event| {
        // A decision made before the panic does not count.
        e.add_response_header("Set-Cookie", "half=made")
            .expect("valid");
        panic!("the token store is down");
    });
    let (server, rx) = server(Config::default(), "", listener);
    let refused = exchange(server.local_port(), &upgrade("/", ""));
    assert!(
        refused.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{refused}"
    );
    assert_eq!(header(&refused, "set-cookie"), None, "{refused}");
    assert!(matches!(report(&rx), Report::Request { .. }));
    assert!(matches!(report(&rx), Report::Refused(500, _)));
}

#[test]
fn a_listener_that_does_not_return_in_time_gets_the_client_a_503_at_the_deadline() {
    let timeout = Duration::from_millis(300);
    let (release, held) = mpsc::channel::<()>();
    let held = Arc::new(Mutex::new(held));
    let listener: Listener = Arc::new(move |e: &Event| {
        // Waits until the test lets it go: far past the deadline.
        let _ = held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv_timeout(Duration::from_secs(60));
        // A decision made after the deadline is ignored.
        let _ = e.add_response_header("Set-Cookie", "late=1");
    });
    let (server, rx) = server(Config::default().handshake_timeout(timeout), "", listener);
    let started = Instant::now();
    let mut tcp = TcpStream::connect(("127.0.0.1", server.local_port())).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    tcp.write_all(upgrade("/", "").as_bytes()).expect("request");
    let head = read_head(&mut tcp);
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(
        started.elapsed() >= timeout,
        "answered before the deadline: {:?}",
        started.elapsed()
    );
    // Then the end of the stream, while the listener still runs.
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest).expect("the body, then EOF");
    assert!(String::from_utf8_lossy(&rest).contains("did not decide"));
    assert!(matches!(report(&rx), Report::Request { .. }));
    assert!(
        rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "nothing is dispatched while the listener runs"
    );
    release.send(()).expect("the listener waits");
    match report(&rx) {
        Report::Close(Some(error)) => {
            assert!(error.contains("Timeout"), "{error}");
            assert!(error.contains("Handshake"), "{error}");
        }
        other => panic!("expected close with a timeout, got {other:?}"),
    }
}

/// Serves `request` with a `WebSocket` whose `event_type` listeners do not
/// return within its 200 ms handshake timeout (they answer `respond` too
/// late); returns the client's answer, and whether the `close` that follows
/// their return carries `Error::Timeout` (`Handshake`).
fn served_by_a_late_listener(event_type: airws::EventType, request: String) -> (String, bool) {
    let (release, held) = mpsc::channel::<()>();
    let held = Mutex::new(held);
    let ws =
        WebSocket::with_config(Config::default().handshake_timeout(Duration::from_millis(200)));
    ws.add_event_listener(event_type, move |e: &Event| {
        let _ = held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv_timeout(Duration::from_secs(60));
        e.respond(200, "text/plain", "too late");
    });
    let (tx, closed) = mpsc::channel();
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        let _ = tx.send(matches!(
            e.error(),
            Some(Error::Timeout {
                which: Timeout::Handshake,
                ..
            })
        ));
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let client = std::thread::spawn(move || exchange(port, &request));
    let (socket, _) = listener.accept().expect("accept");
    ws.start_server(socket).expect("start_server");
    let answer = client.join().expect("the client");
    release.send(()).expect("the listener waits");
    (answer, closed.recv_timeout(WAIT).expect("close"))
}

#[test]
fn the_timeout_error_names_the_handshake_timeout() {
    // The structured error of the late decision, matched as an application would.
    let (head, timeout) =
        served_by_a_late_listener(UpgradeRequestEvent::UPGRADE_REQUEST, upgrade("/", ""));
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(timeout, "Error::Timeout(Handshake)");
}

#[test]
fn an_http_request_listener_that_does_not_return_in_time_gets_the_client_a_503() {
    let (answer, timeout) = served_by_a_late_listener(
        HttpRequestEvent::REQUEST,
        "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned(),
    );
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(!answer.contains("too late"), "{answer}");
    assert!(timeout, "Error::Timeout(Handshake)");
}

fn tls_identity() -> ServerTls {
    ServerTls::from_pem(
        include_bytes!("tls/localhost.pem"),
        include_bytes!("tls/localhost.key"),
    )
    .expect("the test identity")
}

fn trusting_client() -> WebSocket {
    let tls = ClientTls::new()
        .add_root_certificate_pem(include_bytes!("tls/ca.pem"))
        .expect("the test CA");
    WebSocket::with_config(Config::default().client_tls(tls))
}

#[test]
fn a_server_socket_with_tls_hands_out_sockets_that_speak_wss() {
    let server = EchoServer::tls(tls_identity());
    assert!(server.server.is_tls());
    let ws = trusting_client();
    let rx = record(&ws);
    ws.connect(&format!("wss://localhost:{}/", server.port), &[])
        .expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    ws.send_message(WebSocket::FMT_TEXT, "over tls ✓")
        .expect("send");
    assert_eq!(next(&rx), Seen::Text("over tls ✓".into()));
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(WAIT));
}

#[test]
fn the_handshake_deadline_covers_tls_on_a_server_socket_with_tls() {
    let (tx, rx) = mpsc::channel();
    let server = ServerSocket::with_tls(tls_identity());
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let socket = e.socket().expect("the socket");
        assert!(socket.is_tls());
        let ws =
            WebSocket::with_config(Config::default().handshake_timeout(Duration::from_millis(300)));
        let tx = tx.clone();
        ws.add_event_listener(Event::CLOSE, move |e: &Event| {
            let _ = tx.send(e.error().map(|e| e.to_string()));
        });
        ws.start_server(socket).expect("start_server");
        std::mem::forget(ws);
    });
    server.bind(0, "127.0.0.1").expect("bind");
    server.listen().expect("listen");
    // A client that connects and never starts TLS.
    let mut tcp = TcpStream::connect(("127.0.0.1", server.local_port())).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = [0u8; 16];
    assert_eq!(tcp.read(&mut buf).expect("EOF, not a read timeout"), 0);
    let error = rx.recv_timeout(WAIT).expect("close");
    assert!(error.is_some(), "the close carries why");
}
