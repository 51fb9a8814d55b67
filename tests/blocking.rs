//! The blocking calls for scripts, over loopback sockets: each outcome of
//! `WebSocket::open`, `receive` with and without a message in time, the
//! close with its code and reason, `close_and_wait`, and the calls refused
//! where they would wait for themselves.

mod support;

use airws::{
    Config, Error, Event, EventDispatcher, IoErrorKind, Received, ServerTls, Timeout, WebSocket,
    WebSocketEvent,
};
use std::io::{Read, Write};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn the_script_open_send_receive_close() {
    let server = EchoServer::start();
    let ws = WebSocket::open(&server.url(), T).expect("open");
    ws.send_message(WebSocket::FMT_TEXT, "Hello").expect("send");
    assert_eq!(
        ws.receive(T).expect("the echo"),
        Received::Text("Hello".into())
    );
    ws.send_message(WebSocket::FMT_BINARY, vec![1u8, 2, 3])
        .expect("send");
    let echo = ws.receive(T).expect("the echo");
    assert_eq!(echo, Received::Binary(vec![1, 2, 3]));
    assert_eq!(echo.to_string(), "<3 bytes>");
    ws.close_and_wait(WebSocket::CLOSE_NORMAL, T)
        .expect("closed in time");
    assert_eq!(ws.close_reason(), 1000);
}

#[test]
fn open_names_why_it_failed() {
    // Refused: nobody listens on the port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    match WebSocket::open(&format!("ws://127.0.0.1:{port}/"), T) {
        Err(Error::Io {
            kind: IoErrorKind::ConnectionRefused,
            ..
        }) => {}
        other => panic!("expected a refused connection, got {other:?}"),
    }

    // An HTTP status.
    let raw = RawServer::new();
    let url = raw.url();
    let answer = std::thread::spawn(move || {
        let mut s = raw.accept_tcp();
        let _ = read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n");
        let mut rest = [0u8; 64];
        let _ = s.read(&mut rest);
    });
    match WebSocket::open(&url, T) {
        Err(Error::HandshakeRefused(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected the 403, got {other:?}"),
    }
    answer.join().expect("the server");

    // TLS: a certificate nobody vouched for.
    let tls = ServerTls::from_pem(
        include_bytes!("tls/localhost.pem"),
        include_bytes!("tls/localhost.key"),
    )
    .expect("identity");
    let server = EchoServer::tls(tls);
    match WebSocket::open(&format!("wss://localhost:{}/", server.port), T) {
        Err(Error::Tls {
            certificate: true, ..
        }) => {}
        other => panic!("expected a certificate error, got {other:?}"),
    }

    // The timeout: a server that accepts and never answers.
    let raw = RawServer::new();
    let url = raw.url();
    let held = std::thread::spawn(move || {
        let mut s = raw.accept_tcp();
        let mut buf = [0u8; 4096];
        while let Ok(1..) = s.read(&mut buf) {}
    });
    match WebSocket::open(&url, Duration::from_millis(300)) {
        Err(Error::Timeout {
            which: Timeout::Connect,
            ..
        }) => {}
        other => panic!("expected the timeout, got {other:?}"),
    }
    held.join().expect("the server");
}

#[test]
fn receive_waits_for_a_message_or_its_timeout_then_reports_the_close() {
    let raw = RawServer::new();
    let url = raw.url();
    let (tx, peer) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(raw.accept().0);
    });
    let ws = WebSocket::open(&url, T).expect("open");
    let mut peer = peer.recv_timeout(T).expect("the peer");
    match ws.receive(Duration::from_millis(100)) {
        Err(Error::Timeout {
            which: Timeout::Receive,
            ..
        }) => {}
        other => panic!("expected the receive timeout, got {other:?}"),
    }
    peer.text("late");
    assert_eq!(
        ws.receive(T).expect("a message"),
        Received::Text("late".into())
    );
    peer.text("before the close");
    peer.close(4001, "bye");
    // The client answers; the server then ends the TCP stream, as RFC 6455
    // has it (else the client would wait out its close timeout).
    assert_eq!(peer.read_close().close_code(), Some(4001));
    drop(peer);
    assert_eq!(
        ws.receive(T).expect("a message"),
        Received::Text("before the close".into()),
        "what came before the close is received first"
    );
    let closed = ws.receive(T).expect("the close");
    assert_eq!(
        closed,
        Received::Closed {
            code: 4001,
            reason: "bye".into()
        }
    );
    assert_eq!(closed.to_string(), "closed (4001 bye)");
    assert_eq!(ws.receive(Duration::ZERO).expect("again"), closed);
}

#[test]
fn a_data_listener_sees_the_messages_receive_returns_on_the_same_thread() {
    let server = EchoServer::start();
    let ws = WebSocket::open(&server.url(), T).expect("open");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let here = std::thread::current().id();
    ws.add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
        s.lock().unwrap_or_else(|p| p.into_inner()).push((
            e.string_data().unwrap_or("").to_owned(),
            std::thread::current().id(),
        ));
        // A listener that calls receive is refused: it would wait for itself.
        if let Some(ws) = e.target::<WebSocket>() {
            assert!(matches!(
                ws.receive(Duration::from_millis(10)),
                Err(Error::IllegalOperation { .. })
            ));
        }
    });
    ws.send_message(WebSocket::FMT_TEXT, "both").expect("send");
    assert_eq!(
        ws.receive(T).expect("the echo"),
        Received::Text("both".into())
    );
    assert_eq!(
        *seen.lock().unwrap_or_else(|p| p.into_inner()),
        [("both".to_owned(), here)]
    );
}

#[test]
fn receive_needs_a_websocket_made_by_open() {
    let ws = WebSocket::with_config(Config::default());
    assert!(matches!(
        ws.receive(Duration::from_millis(10)),
        Err(Error::IllegalOperation { .. })
    ));
}

#[test]
fn close_and_wait_in_a_listener_of_the_connections_thread_is_refused() {
    let server = EchoServer::start();
    let ws = WebSocket::new();
    let (tx, rx) = mpsc::channel();
    ws.add_event_listener(Event::CONNECT, move |e: &Event| {
        if let Some(ws) = e.target::<WebSocket>() {
            let refused = matches!(
                ws.close_and_wait(1000, T),
                Err(Error::IllegalOperation { .. })
            );
            let _ = tx.send(refused);
            ws.close(1000).expect("close");
        }
    });
    ws.connect(&server.url(), &[]).expect("connect");
    assert!(
        rx.recv_timeout(T).expect("the listener ran"),
        "refused at once"
    );
    assert!(ws.wait_closed(T));
}
