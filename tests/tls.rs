//! wss over loopback with the test certificates in `tests/tls/` (see its
//! README for how they were made): verification is on by default, a refused
//! certificate is a cancelable `certificateError`, `prevent_default()` lets
//! the connection go on, a configured CA is trusted without any event, a
//! host name mismatch is a certificate error, and a send from another thread
//! never waits for the read loop inside the TLS session.

mod support;

use airws::{Config, Event, EventDispatcher, SecurityErrorEvent, WebSocket, WebSocketEvent};
use native_tls::{Certificate, Identity, TlsAcceptor, TlsConnector};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use support::*;

const CA: &[u8] = include_bytes!("tls/ca.pem");
const LOCALHOST_CERT: &[u8] = include_bytes!("tls/localhost.pem");
const LOCALHOST_KEY: &[u8] = include_bytes!("tls/localhost.key");
const WRONG_HOST_CERT: &[u8] = include_bytes!("tls/wrong-host.pem");
const WRONG_HOST_KEY: &[u8] = include_bytes!("tls/wrong-host.key");

fn acceptor(cert: &[u8], key: &[u8]) -> TlsAcceptor {
    let identity = Identity::from_pkcs8(cert, key).expect("test identity");
    TlsAcceptor::new(identity).expect("TLS acceptor")
}

fn trusting_config() -> Config {
    let ca = Certificate::from_pem(CA).expect("test CA");
    Config {
        tls_connector: Some(
            TlsConnector::builder()
                .add_root_certificate(ca)
                .build()
                .expect("TLS connector"),
        ),
        ..Config::default()
    }
}

fn wss_url(host: &str, port: u16) -> String {
    format!("wss://{host}:{port}/")
}

/// A listener that allows every certificate error and counts them.
fn allow_certificate_errors(ws: &WebSocket) -> Arc<AtomicBool> {
    let seen = Arc::new(AtomicBool::new(false));
    let s = seen.clone();
    ws.add_event_listener(SecurityErrorEvent::CERTIFICATE_ERROR, move |e: &Event| {
        assert!(e.cancelable(), "certificateError is cancelable");
        s.store(true, Ordering::SeqCst);
        e.prevent_default();
    });
    seen
}

#[test]
fn certificate_error_not_prevented_never_connects_and_closes_with_1015() {
    let server = EchoServer::tls(acceptor(LOCALHOST_CERT, LOCALHOST_KEY));
    let ws = WebSocket::new(); // the system's roots: the test CA is unknown
    let rx = record(&ws);
    let sent = Arc::new(Mutex::new(None));
    let s = sent.clone();
    let me = ws.downgrade();
    ws.add_event_listener(SecurityErrorEvent::CERTIFICATE_ERROR, move |e: &Event| {
        assert!(e.cancelable());
        // Even a send from the listener cannot reach the server.
        if let Some(ws) = me.upgrade() {
            *s.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(ws.send_message(WebSocket::FMT_TEXT, "secret").is_err());
        }
    });
    ws.connect(&wss_url("localhost", server.port), &[])
        .expect("connect");
    match next(&rx) {
        Seen::Certificate(text) => assert!(text.contains("localhost"), "{text}"),
        other => panic!("expected certificateError, got {other:?}"),
    }
    assert_eq!(next(&rx), Seen::Close(1015));
    assert_eq!(ws.close_reason(), 1015);
    assert!(!ws.connected());
    nothing_more(&rx, 300);
    assert_eq!(*sent.lock().unwrap(), Some(true), "the send was refused");
    // The server never got a message (it may see handshakes that ended).
    while let Ok((_, seen)) = server
        .events
        .recv_timeout(std::time::Duration::from_millis(300))
    {
        assert!(
            !matches!(seen, Seen::Text(_) | Seen::Binary(_)),
            "application data reached the server: {seen:?}"
        );
    }
}

#[test]
fn certificate_error_prevented_connects_and_echo_works() {
    let server = EchoServer::tls(acceptor(LOCALHOST_CERT, LOCALHOST_KEY));
    let ws = WebSocket::new();
    let allowed = allow_certificate_errors(&ws);
    let rx = record(&ws);
    ws.connect(&wss_url("127.0.0.1", server.port), &[])
        .expect("connect");
    let first = next(&rx);
    assert!(matches!(first, Seen::Certificate(_)), "{first:?}");
    assert_eq!(next(&rx), Seen::Connect);
    assert!(allowed.load(Ordering::SeqCst));
    ws.send_message(WebSocket::FMT_TEXT, "héllo over TLS")
        .expect("text");
    assert_eq!(next(&rx), Seen::Text("héllo over TLS".into()));
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    ws.send_message(WebSocket::FMT_BINARY, &big)
        .expect("binary");
    assert_eq!(next(&rx), Seen::Binary(big));
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    // The server saw the first, verified attempt fail its TLS handshake
    // (1015) before the allowed one; the allowed one ends with 1000.
    assert_eq!(
        server.wait_for(|s| *s == Seen::Close(1000)),
        Seen::Close(1000)
    );
    assert!(ws.wait_closed(WAIT));
    assert_eq!(ws.close_reason(), 1000);
}

#[test]
fn configured_ca_is_trusted_without_a_certificate_error() {
    let server = EchoServer::tls(acceptor(LOCALHOST_CERT, LOCALHOST_KEY));
    for host in ["localhost", "127.0.0.1"] {
        let ws = WebSocket::with_config(trusting_config());
        let rx = record(&ws);
        ws.connect(&wss_url(host, server.port), &[])
            .expect("connect");
        assert_eq!(next(&rx), Seen::Connect, "{host}");
        ws.send_message(WebSocket::FMT_BINARY, vec![1u8, 2, 3])
            .expect("send");
        assert_eq!(next(&rx), Seen::Binary(vec![1, 2, 3]));
        // The server closes: the client sees the code.
        ws.send_message(WebSocket::FMT_TEXT, "bye").expect("send");
        assert_eq!(next(&rx), Seen::Text("bye".into()));
        ws.close(4001).expect("close");
        assert!(ws.wait_closed(WAIT));
        assert_eq!(ws.close_reason(), 4001);
        nothing_more(&rx, 100);
    }
}

#[test]
fn host_name_mismatch_is_a_certificate_error() {
    // Signed by the trusted CA, but for wrong.example.
    let server = EchoServer::tls(acceptor(WRONG_HOST_CERT, WRONG_HOST_KEY));
    let ws = WebSocket::with_config(trusting_config());
    let rx = record(&ws);
    ws.connect(&wss_url("localhost", server.port), &[])
        .expect("connect");
    assert!(matches!(next(&rx), Seen::Certificate(_)));
    assert_eq!(next(&rx), Seen::Close(1015));

    // The same socket object, allowed this time, then connects.
    let _allowed = allow_certificate_errors(&ws);
    ws.connect(&wss_url("localhost", server.port), &[])
        .expect("connect again");
    assert!(matches!(next(&rx), Seen::Certificate(_)));
    assert_eq!(next(&rx), Seen::Connect);
}

#[test]
fn send_from_another_thread_completes_while_the_tls_read_loop_waits() {
    // A wss server that accepts, then never sends: the client's connection
    // thread sits in a read inside the TLS session.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acc = acceptor(LOCALHOST_CERT, LOCALHOST_KEY);
    let (got_tx, got_rx) = mpsc::channel::<Vec<Vec<u8>>>();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut tls = acc.accept(tcp).expect("TLS accept");
        // The HTTP upgrade, by hand.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
            tls.read_exact(&mut byte).expect("request");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let key = header(&head, "Sec-WebSocket-Key").expect("key").to_owned();
        write!(
            tls,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(&key)
        )
        .expect("101");
        tls.flush().expect("flush");
        // Read 50 masked text frames of up to 125 bytes.
        let mut messages = Vec::new();
        for _ in 0..50 {
            let mut h = [0u8; 2];
            tls.read_exact(&mut h).expect("frame head");
            assert_eq!(h[0], 0x81, "FIN + text");
            assert_eq!(h[1] & 0x80, 0x80, "masked");
            let len = usize::from(h[1] & 0x7F);
            let mut key = [0u8; 4];
            tls.read_exact(&mut key).expect("mask");
            let mut p = vec![0u8; len];
            tls.read_exact(&mut p).expect("payload");
            for (i, b) in p.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
            messages.push(p);
        }
        let _ = got_tx.send(messages);
        // Keep the connection open until the client goes.
        let mut rest = [0u8; 64];
        let _ = tls.read(&mut rest);
    });

    let ws = WebSocket::with_config(trusting_config());
    let rx = record(&ws);
    ws.connect(&wss_url("localhost", port), &[])
        .expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    let (done_tx, done_rx) = mpsc::channel();
    let sender = ws.clone();
    std::thread::spawn(move || {
        for i in 0..50 {
            sender
                .send_message(WebSocket::FMT_TEXT, format!("message {i}"))
                .expect("send");
        }
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(WAIT)
        .expect("the sends completed while the reader was blocked");
    let got = got_rx.recv_timeout(WAIT).expect("the server got them");
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m, format!("message {i}").as_bytes());
    }
    drop(ws);
    server.join().expect("server thread");
}

#[test]
fn a_server_that_does_not_speak_tls_is_a_security_error() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        // Two attempts at most (the library retries to tell certificate
        // errors from other TLS failures); each gets an HTTP answer.
        listener.set_nonblocking(true).expect("nonblocking");
        let deadline = std::time::Instant::now() + WAIT;
        let mut served = 0;
        while served < 2 && std::time::Instant::now() < deadline {
            match listener.accept() {
                Ok((mut tcp, _)) => {
                    let _ = tcp.set_nonblocking(false);
                    let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
                    served += 1;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
    });
    let ws = WebSocket::new();
    let rx = record(&ws);
    ws.connect(&wss_url("127.0.0.1", port), &[])
        .expect("connect");
    match next(&rx) {
        Seen::Security(text) => assert!(text.contains(&port.to_string()), "{text}"),
        other => panic!("expected securityError, got {other:?}"),
    }
    assert!(ws.wait_closed(WAIT));
    assert!(!ws.connected());
    nothing_more(&rx, 200);
    let _ = server.join();
}

#[test]
fn server_side_tls_serves_a_trusting_client_and_data_events_carry_the_format() {
    let server = EchoServer::tls(acceptor(LOCALHOST_CERT, LOCALHOST_KEY));
    let ws = WebSocket::with_config(trusting_config());
    let formats = Arc::new(Mutex::new(Vec::new()));
    let f = formats.clone();
    ws.add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
        f.lock().unwrap_or_else(|p| p.into_inner()).push(e.format());
    });
    let rx = record(&ws);
    ws.connect(&wss_url("localhost", server.port), &[])
        .expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    ws.send_message(WebSocket::FMT_TEXT, "t").expect("text");
    ws.send_message(WebSocket::FMT_BINARY, vec![0u8])
        .expect("binary");
    assert_eq!(next(&rx), Seen::Text("t".into()));
    assert_eq!(next(&rx), Seen::Binary(vec![0]));
    assert_eq!(
        *formats.lock().unwrap(),
        vec![WebSocket::FMT_TEXT, WebSocket::FMT_BINARY]
    );
    assert_eq!(server.wait_for(|s| *s == Seen::Connect), Seen::Connect);
}
