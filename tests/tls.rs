//! wss over loopback with the test certificates in `tests/tls/` (see its
//! README for how they were made): verification is on by default, a refused
//! certificate is a cancelable `certificateError`, `prevent_default()` lets
//! the connection go on, a configured CA is trusted without any event, a
//! host name mismatch is a certificate error, the `danger_` options skip
//! the checks they name, a server identity from PEM or PKCS#12 serves wss,
//! a client identity reaches a server that requires one (also on the
//! unverified retry after a `certificateError`), a peer that does not speak
//! TLS is a `securityError` (or an `ioError` when it just hangs up), and a
//! send from another thread never waits for the read loop inside the TLS
//! session.

mod support;

use airws::{
    ClientTls, Config, Event, EventDispatcher, IOErrorEvent, SecurityErrorEvent, ServerTls,
    WebSocket, WebSocketEvent,
};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const CA: &[u8] = include_bytes!("tls/ca.pem");
const LOCALHOST_CERT: &[u8] = include_bytes!("tls/localhost.pem");
const LOCALHOST_KEY: &[u8] = include_bytes!("tls/localhost.key");
const WRONG_HOST_CERT: &[u8] = include_bytes!("tls/wrong-host.pem");
const WRONG_HOST_KEY: &[u8] = include_bytes!("tls/wrong-host.key");
const LOCALHOST_P12: &[u8] = include_bytes!("tls/localhost.p12");
const LOCALHOST_P12_PASSWORD: &str = "airws test";

/// How long a send from another thread may take while the reader waits.
const SEND_WAIT: Duration = Duration::from_secs(5);

fn server_tls(cert: &[u8], key: &[u8]) -> ServerTls {
    ServerTls::from_pem(cert, key).expect("test identity")
}

fn localhost_tls() -> ServerTls {
    server_tls(LOCALHOST_CERT, LOCALHOST_KEY)
}

/// `native-tls`'s own acceptor with the localhost identity, for the servers
/// written by hand here.
fn localhost_acceptor() -> native_tls::TlsAcceptor {
    let identity =
        native_tls::Identity::from_pkcs8(LOCALHOST_CERT, LOCALHOST_KEY).expect("test identity");
    native_tls::TlsAcceptor::new(identity).expect("TLS acceptor")
}

/// Client settings that trust the test CA (and keep host name checks).
fn trusting_tls() -> ClientTls {
    ClientTls::new()
        .add_root_certificate_pem(CA)
        .expect("test CA")
}

/// A client config that trusts the test CA (and keeps host name checks).
fn trusting_config() -> Config {
    Config::default().client_tls(trusting_tls())
}

fn wss_url(host: &str, port: u16) -> String {
    format!("wss://{host}:{port}/")
}

/// What the `certificateError` listeners of one socket saw: how many events,
/// and how many of them were cancelable. Counted here and asserted on the
/// test's thread (a panic in a listener would only end the connection thread).
#[derive(Clone, Default)]
struct CertificateErrors {
    seen: Arc<AtomicUsize>,
    cancelable: Arc<AtomicUsize>,
}

impl CertificateErrors {
    /// Counts every `certificateError`; allows it when `allow`.
    fn listen(ws: &WebSocket, allow: bool) -> CertificateErrors {
        let counts = CertificateErrors::default();
        let c = counts.clone();
        ws.add_event_listener(SecurityErrorEvent::CERTIFICATE_ERROR, move |e: &Event| {
            c.seen.fetch_add(1, Ordering::SeqCst);
            if e.cancelable() {
                c.cancelable.fetch_add(1, Ordering::SeqCst);
            }
            if allow {
                e.prevent_default();
            }
        });
        counts
    }

    fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    fn cancelable(&self) -> usize {
        self.cancelable.load(Ordering::SeqCst)
    }
}

/// Collects the server's events for `for_ms` after the last one (at most
/// 50 events, within the wait).
fn server_events(server: &EchoServer, for_ms: u64) -> Vec<Seen> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while seen.len() < 50 && Instant::now() < deadline {
        match server.events.recv_timeout(Duration::from_millis(for_ms)) {
            Ok((_, s)) => seen.push(s),
            Err(_) => break,
        }
    }
    seen
}

#[test]
fn certificate_error_not_prevented_never_connects_and_closes_with_1015() {
    let server = EchoServer::tls(localhost_tls());
    let ws = WebSocket::new(); // the system's roots: the test CA is unknown
    let rx = record(&ws);
    let counts = CertificateErrors::listen(&ws, false);
    // Even a send from a listener cannot reach the server.
    let refused = Arc::new(Mutex::new(None));
    let r = refused.clone();
    let me = ws.downgrade();
    ws.add_event_listener(SecurityErrorEvent::CERTIFICATE_ERROR, move |_e: &Event| {
        if let Some(ws) = me.upgrade() {
            let result = ws.send_message(WebSocket::FMT_TEXT, "secret");
            *r.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.is_err());
        }
    });
    ws.connect(&wss_url("localhost", server.port), &[])
        .expect("connect");
    match next(&rx) {
        Seen::Certificate(text) => {
            assert!(
                text.contains(&format!("localhost:{}", server.port)),
                "{text}"
            );
            if cfg!(target_os = "linux") {
                // OpenSSL's reason: the CA is not among the system's roots.
                assert!(text.contains("certificate verify failed"), "{text}");
            }
        }
        other => panic!("expected certificateError, got {other:?}"),
    }
    assert_eq!(next(&rx), Seen::Close(1015));
    assert_eq!(ws.close_reason(), 1015);
    assert!(!ws.connected());
    assert!(ws.wait_closed(WAIT));
    nothing_more(&rx, 300); // never a connect
    assert_eq!((counts.seen(), counts.cancelable()), (1, 1));
    assert_eq!(
        *refused.lock().unwrap_or_else(|p| p.into_inner()),
        Some(true),
        "a send from the certificateError listener was refused"
    );
    assert!(ws.send_message(WebSocket::FMT_TEXT, "late").is_err());

    // The server saw two TLS connections (the verified attempt and the
    // unverified one used to tell a certificate problem from other TLS
    // failures) and both ended before any WebSocket handshake: no connect,
    // no message.
    let seen = server_events(&server, 300);
    assert_eq!(seen.len(), 2, "server events: {seen:?}");
    for s in &seen {
        assert!(
            matches!(s, Seen::Close(1006) | Seen::Close(1015)),
            "the server must see only failed openings: {seen:?}"
        );
    }
    // The verified attempt failed its TLS handshake on the server too.
    assert!(seen.contains(&Seen::Close(1015)), "{seen:?}");
}

#[test]
fn certificate_error_prevented_connects_and_echo_works() {
    let server = EchoServer::tls(localhost_tls());
    let (ws, counts, rx) = wss_client_allowing_certificates(server.port);
    let first = next(&rx);
    assert!(matches!(first, Seen::Certificate(_)), "{first:?}");
    assert_eq!(next(&rx), Seen::Connect);
    assert_eq!((counts.seen(), counts.cancelable()), (1, 1));
    assert!(ws.connected());

    ws.send_message(WebSocket::FMT_TEXT, "héllo over TLS")
        .expect("text");
    assert_eq!(next(&rx), Seen::Text("héllo over TLS".into()));
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    ws.send_message(WebSocket::FMT_BINARY, &big)
        .expect("binary");
    match next(&rx) {
        Seen::Binary(b) => assert!(b == big, "the 1 MiB echo differs ({} bytes)", b.len()),
        other => panic!("expected the 1 MiB echo, got {other:?}"),
    }
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    // The server's first connection (the verified attempt) failed its TLS
    // handshake; the allowed one ends with 1000.
    assert_eq!(
        server.wait_for(|s| *s == Seen::Close(1000)),
        Seen::Close(1000)
    );
    assert!(ws.wait_closed(WAIT));
    assert_eq!(ws.close_reason(), 1000);
    nothing_more(&rx, 100); // no close event for a local close
}

/// A client with `config` connects to `server` at `host` without a
/// `certificateError`, exchanges messages and closes with its own code. The
/// server saw this one connection only: no TLS attempt failed before it.
fn connects_without_a_certificate_error(server: &EchoServer, config: Config, host: &str) {
    let ws = WebSocket::with_config(config);
    let counts = CertificateErrors::listen(&ws, false);
    let rx = record(&ws);
    ws.connect(&wss_url(host, server.port), &[])
        .expect("connect");
    assert_eq!(next(&rx), Seen::Connect, "{host}");
    assert_eq!(server.next().1, Seen::Connect, "{host}: one connection");
    ws.send_message(WebSocket::FMT_BINARY, vec![1u8, 2, 3])
        .expect("send");
    assert_eq!(next(&rx), Seen::Binary(vec![1, 2, 3]));
    ws.send_message(WebSocket::FMT_TEXT, "bye").expect("send");
    assert_eq!(next(&rx), Seen::Text("bye".into()));
    // The client closes with its own code; the server sees it.
    ws.close(4001).expect("close");
    assert_eq!(
        server.wait_for(|s| matches!(s, Seen::Close(_))),
        Seen::Close(4001),
        "{host}"
    );
    assert!(ws.wait_closed(WAIT));
    assert_eq!(ws.close_reason(), 4001);
    nothing_more(&rx, 100);
    assert_eq!(counts.seen(), 0, "{host}: no certificateError");
}

#[test]
fn configured_ca_is_trusted_without_a_certificate_error() {
    let server = EchoServer::tls(localhost_tls());
    for host in ["localhost", "127.0.0.1"] {
        connects_without_a_certificate_error(&server, trusting_config(), host);
        // Without the system's roots, the test CA alone.
        let alone = trusting_tls().system_roots(false);
        connects_without_a_certificate_error(&server, Config::default().client_tls(alone), host);
    }
}

#[test]
fn without_the_system_roots_nothing_is_trusted_but_the_added_roots() {
    // A server the system's roots do not know either way: with no root at
    // all, its certificate is still checked, and refused.
    let server = EchoServer::tls(localhost_tls());
    let ws =
        WebSocket::with_config(Config::default().client_tls(ClientTls::new().system_roots(false)));
    let rx = record(&ws);
    ws.connect(&wss_url("localhost", server.port), &[])
        .expect("connect");
    assert!(matches!(next(&rx), Seen::Certificate(_)));
    assert_eq!(next(&rx), Seen::Close(1015));
}

#[test]
fn a_server_identity_from_pkcs12_serves_wss() {
    let tls = ServerTls::from_pkcs12(LOCALHOST_P12, LOCALHOST_P12_PASSWORD).expect("PKCS#12");
    let server = EchoServer::tls(tls);
    connects_without_a_certificate_error(&server, trusting_config(), "localhost");
}

#[test]
fn danger_accept_invalid_certs_connects_without_a_certificate_error() {
    // The system's roots do not know the test CA; the certificate is taken
    // anyway, on the first connection.
    let server = EchoServer::tls(localhost_tls());
    let tls = ClientTls::new().danger_accept_invalid_certs(true);
    connects_without_a_certificate_error(&server, Config::default().client_tls(tls), "localhost");
    // Nor is the host name checked then.
    let server = EchoServer::tls(server_tls(WRONG_HOST_CERT, WRONG_HOST_KEY));
    let tls = ClientTls::new().danger_accept_invalid_certs(true);
    connects_without_a_certificate_error(&server, Config::default().client_tls(tls), "localhost");
}

#[test]
fn danger_accept_invalid_hostnames_skips_the_name_check_only() {
    // Signed by the trusted CA for wrong.example: the name is not checked.
    let server = EchoServer::tls(server_tls(WRONG_HOST_CERT, WRONG_HOST_KEY));
    let tls = trusting_tls().danger_accept_invalid_hostnames(true);
    connects_without_a_certificate_error(&server, Config::default().client_tls(tls), "localhost");
    // The chain still is: without the CA, a certificateError.
    let tls = ClientTls::new().danger_accept_invalid_hostnames(true);
    let ws = WebSocket::with_config(Config::default().client_tls(tls));
    let rx = record(&ws);
    ws.connect(&wss_url("localhost", server.port), &[])
        .expect("connect");
    match next(&rx) {
        Seen::Certificate(text) => {
            if cfg!(target_os = "linux") {
                assert!(!text.contains("hostname mismatch"), "{text}");
            }
        }
        other => panic!("expected certificateError, got {other:?}"),
    }
    assert_eq!(next(&rx), Seen::Close(1015));
}

#[test]
fn host_name_mismatch_is_a_certificate_error() {
    // Signed by the trusted CA, but for wrong.example only.
    let server = EchoServer::tls(server_tls(WRONG_HOST_CERT, WRONG_HOST_KEY));
    let ws = WebSocket::with_config(trusting_config());
    let rx = record(&ws);
    ws.connect(&wss_url("localhost", server.port), &[])
        .expect("connect");
    match next(&rx) {
        Seen::Certificate(text) => {
            if cfg!(target_os = "linux") {
                // The chain is fine (the CA is trusted): only the name is wrong.
                assert!(text.contains("hostname mismatch"), "{text}");
            }
        }
        other => panic!("expected certificateError, got {other:?}"),
    }
    assert_eq!(next(&rx), Seen::Close(1015));
    assert_eq!(ws.close_reason(), 1015);

    // By IP address: not in the certificate either.
    ws.connect(&wss_url("127.0.0.1", server.port), &[])
        .expect("connect by address");
    assert!(matches!(next(&rx), Seen::Certificate(_)));
    assert_eq!(next(&rx), Seen::Close(1015));

    // The same socket object, allowed this time, then connects and works.
    let counts = CertificateErrors::listen(&ws, true);
    ws.connect(&wss_url("localhost", server.port), &[])
        .expect("connect again");
    assert!(matches!(next(&rx), Seen::Certificate(_)));
    assert_eq!(next(&rx), Seen::Connect);
    assert_eq!(ws.close_reason(), 0, "reset when a connection starts");
    assert_eq!(counts.seen(), 1);
    ws.send_message(WebSocket::FMT_TEXT, "allowed")
        .expect("send");
    assert_eq!(next(&rx), Seen::Text("allowed".into()));
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(WAIT));
}

/// Answers a wss client's upgrade by hand over `tls`.
fn answer_upgrade<S: Read + Write>(tls: &mut S) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 16 << 10, "HTTP head too long");
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
}

#[test]
fn send_from_another_thread_completes_while_the_tls_read_loop_waits() {
    // A wss server that accepts, answers the upgrade, then never sends: the
    // client's connection thread sits in a read inside the TLS session.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acc = localhost_acceptor();
    let (got_tx, got_rx) = mpsc::channel::<Vec<Vec<u8>>>();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut tls = acc.accept(tcp).expect("TLS accept");
        answer_upgrade(&mut tls);
        // Read 50 masked text frames of up to 125 bytes.
        let mut messages = Vec::new();
        for _ in 0..50 {
            let mut h = [0u8; 2];
            tls.read_exact(&mut h).expect("frame head");
            assert_eq!(h[0], 0x81, "FIN + text");
            assert_eq!(h[1] & 0x80, 0x80, "masked");
            let len = usize::from(h[1] & 0x7F);
            assert!(len < 126, "short message");
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
        // Keep the connection open until the client goes (its close frame).
        let mut rest = [0u8; 64];
        let _ = tls.read(&mut rest);
    });

    let ws = WebSocket::with_config(trusting_config());
    let rx = record(&ws);
    ws.connect(&wss_url("localhost", port), &[])
        .expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    // Let the connection thread settle into its blocking read.
    std::thread::sleep(Duration::from_millis(100));
    let (done_tx, done_rx) = mpsc::channel();
    let sender = ws.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        let results: Vec<bool> = (0..50)
            .map(|i| {
                sender
                    .send_message(WebSocket::FMT_TEXT, format!("message {i}"))
                    .is_ok()
            })
            .collect();
        let _ = done_tx.send((results, started.elapsed()));
    });
    let (results, took) = done_rx
        .recv_timeout(SEND_WAIT)
        .expect("the sends completed while the reader was blocked in the TLS session");
    assert!(results.iter().all(|ok| *ok), "every send succeeded");
    assert!(took < SEND_WAIT, "{took:?}");
    let got = got_rx.recv_timeout(WAIT).expect("the server got them");
    assert_eq!(got.len(), 50);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m, format!("message {i}").as_bytes());
    }
    nothing_more(&rx, 100); // the server sent nothing
    drop(ws);
    server.join().expect("server thread");
}

#[test]
fn concurrent_senders_over_tls_interleave_whole_messages() {
    // Four threads send messages of up to 150 KB (more than one 64 KiB TLS
    // chunk) while the reader decrypts the echoes: every message comes back
    // whole, and each thread's messages in order.
    const THREADS: u8 = 4;
    const EACH: u8 = 20;
    let server = EchoServer::tls(localhost_tls());
    let ws = WebSocket::with_config(trusting_config());
    let rx = record(&ws);
    ws.connect(&wss_url("localhost", server.port), &[])
        .expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    let message = |t: u8, k: u8| -> Vec<u8> {
        let len = (usize::from(t) * 31 + usize::from(k) * 7919) % 150_000 + 2;
        let mut m: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ t ^ k).collect();
        m[0] = t;
        m[1] = k;
        m
    };
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let ws = ws.clone();
            std::thread::spawn(move || {
                (0..EACH).all(|k| {
                    ws.send_message(WebSocket::FMT_BINARY, message(t, k))
                        .is_ok()
                })
            })
        })
        .collect();
    let mut next_k = [0u8; THREADS as usize];
    for _ in 0..u32::from(THREADS) * u32::from(EACH) {
        match next(&rx) {
            Seen::Binary(m) => {
                let (t, k) = (m[0], m[1]);
                assert!(t < THREADS, "thread byte {t}");
                assert_eq!(k, next_k[usize::from(t)], "thread {t}'s order");
                assert!(m == message(t, k), "message {t}/{k} came back changed");
                next_k[usize::from(t)] += 1;
            }
            other => panic!("expected an echo, got {other:?}"),
        }
    }
    for s in senders {
        assert!(s.join().expect("sender thread"), "every send succeeded");
    }
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(WAIT));
    assert_eq!(ws.close_reason(), 1000);
}

/// A TCP server that is no TLS server: each of at most `max` connections
/// gets `answer` (then the socket is closed) within the wait.
fn not_tls_server(answer: &'static [u8], max: usize) -> (u16, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + WAIT;
        let mut served = 0;
        while served < max && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut tcp, _)) => {
                    let _ = tcp.set_nonblocking(false);
                    let _ = tcp.write_all(answer);
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        served
    });
    (port, server)
}

/// A client connecting to a wss server on `port` at 127.0.0.1, whose
/// `certificateError` listener allows the connection; its events recorded.
fn wss_client_allowing_certificates(
    port: u16,
) -> (WebSocket, CertificateErrors, mpsc::Receiver<Seen>) {
    let ws = WebSocket::new();
    let counts = CertificateErrors::listen(&ws, true);
    let rx = record(&ws);
    ws.connect(&wss_url("127.0.0.1", port), &[])
        .expect("connect");
    (ws, counts, rx)
}

#[test]
fn a_server_that_does_not_speak_tls_is_a_security_error() {
    // The server answers in plain HTTP instead of a TLS record: the library
    // says so in plain words after one attempt (no retry without
    // verification: the certificate is not the problem), even though a
    // certificateError listener exists.
    let (port, server) = not_tls_server(b"HTTP/1.1 400 Bad Request\r\n\r\n", 1);
    let (ws, counts, rx) = wss_client_allowing_certificates(port);
    match next(&rx) {
        Seen::Security(text) => {
            assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
            assert!(text.contains("does not speak TLS"), "{text}");
            assert!(text.contains("HTTP/1.1 400 Bad Request"), "{text}");
            assert!(text.contains("ws://"), "{text}");
        }
        other => panic!("expected securityError, got {other:?}"),
    }
    assert!(ws.wait_closed(WAIT));
    assert!(!ws.connected());
    // AIR's rule for a connection that never opened: securityError alone,
    // no close event; close_reason is 1015 (TLS handshake failure).
    nothing_more(&rx, 300);
    assert_eq!(ws.close_reason(), 1015);
    assert_eq!(counts.seen(), 0, "not a certificate problem");
    assert_eq!(server.join().expect("server thread"), 1, "one connection");
}

#[test]
fn a_refused_certificate_without_a_listener_takes_one_connection_and_closes_with_1015() {
    // A TLS server with the test certificate, which the system's roots do
    // not trust; it counts the connections it accepts.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    let server = std::thread::spawn(move || {
        let acceptor = localhost_acceptor();
        listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + WAIT;
        let mut accepted = 0;
        while !stopping.load(Ordering::SeqCst) && Instant::now() < deadline {
            match listener.accept() {
                Ok((tcp, _)) => {
                    accepted += 1;
                    let _ = tcp.set_nonblocking(false);
                    let _ = tcp.set_read_timeout(Some(WAIT));
                    let _ = acceptor.accept(tcp);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        accepted
    });
    // Listeners for every ending but certificateError (record() would add
    // one).
    let ws = WebSocket::new();
    let (tx, rx) = mpsc::channel();
    for kind in [
        Event::CLOSE,
        SecurityErrorEvent::SECURITY_ERROR,
        IOErrorEvent::IO_ERROR,
    ] {
        let tx = Mutex::new(tx.clone());
        ws.add_event_listener(kind, move |e: &Event| {
            let close_reason = e.target::<WebSocket>().map(|w| w.close_reason());
            let _ = tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send((e.event_type(), close_reason));
        });
    }
    ws.connect(&wss_url("localhost", port), &[])
        .expect("connect");
    assert_eq!(
        rx.recv_timeout(WAIT).expect("an event"),
        (Event::CLOSE, Some(1015))
    );
    assert!(ws.wait_closed(WAIT));
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "one event only"
    );
    stop.store(true, Ordering::SeqCst);
    assert_eq!(
        server.join().expect("server thread"),
        1,
        "no second connection without a certificateError listener"
    );
}

#[test]
fn a_server_that_hangs_up_during_tls_is_an_io_error() {
    let (port, server) = not_tls_server(b"", 1);
    let (ws, counts, rx) = wss_client_allowing_certificates(port);
    match next(&rx) {
        Seen::IoError(id, text) => {
            assert_eq!(id, IOErrorEvent::CONNECTION_RESET_ID);
            assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        }
        other => panic!("expected ioError, got {other:?}"),
    }
    assert!(ws.wait_closed(WAIT));
    nothing_more(&rx, 300);
    assert_eq!(counts.seen(), 0);
    assert_eq!(server.join().expect("server thread"), 1);
}

#[test]
fn a_plain_client_at_a_wss_server_is_refused_with_1015_on_the_server() {
    let server = EchoServer::tls(localhost_tls());
    let ws = WebSocket::new();
    let rx = record(&ws);
    ws.connect(&format!("ws://127.0.0.1:{}/", server.port), &[])
        .expect("connect");
    // The client's HTTP request is no TLS record: the server fails its TLS
    // handshake (securityError, then close with 1015), and the client's
    // opening fails without a connect.
    assert_eq!(server.next().1, Seen::Close(1015));
    match next(&rx) {
        Seen::Close(_) | Seen::IoError(..) => {}
        other => panic!("expected the opening to fail, got {other:?}"),
    }
    assert!(ws.wait_closed(WAIT));
    nothing_more(&rx, 200);
    assert!(server_events(&server, 200).is_empty());
}

#[test]
fn a_raw_plain_request_at_a_wss_server_gets_no_http_answer() {
    // The server must not answer in clear: whatever comes back is TLS (an
    // alert record starts with 0x15) or nothing.
    let server = EchoServer::tls(localhost_tls());
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut reply = Vec::new();
    let _ = tcp.read_to_end(&mut reply);
    assert!(
        reply.is_empty() || reply[0] == 0x15,
        "the server answered in clear: {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(server.next().1, Seen::Close(1015));
}

#[test]
fn server_side_tls_echoes_formats_and_a_server_close_reaches_the_client() {
    let server = EchoServer::tls(localhost_tls());
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
    assert_eq!(server.wait_for(|s| *s == Seen::Connect), Seen::Connect);
    ws.send_message(WebSocket::FMT_TEXT, "t").expect("text");
    ws.send_message(WebSocket::FMT_BINARY, vec![0u8])
        .expect("binary");
    assert_eq!(next(&rx), Seen::Text("t".into()));
    assert_eq!(next(&rx), Seen::Binary(vec![0]));
    assert_eq!(
        *formats.lock().unwrap_or_else(|p| p.into_inner()),
        vec![WebSocket::FMT_TEXT, WebSocket::FMT_BINARY]
    );
    // The server's WebSocket closes with its own code, over TLS.
    let server_ws: Vec<WebSocket> = server
        .sockets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    assert_eq!(server_ws.len(), 1);
    server_ws[0].close(4002).expect("server close");
    assert_eq!(next(&rx), Seen::Close(4002));
    assert_eq!(ws.close_reason(), 4002);
    assert!(ws.wait_closed(WAIT));
    assert!(server_ws[0].wait_closed(WAIT));
    assert_eq!(server_ws[0].close_reason(), 4002);
    nothing_more(&rx, 100);
}

/// A client identity reaches a server that requires one. `native-tls`'s
/// acceptor cannot ask for a client certificate, so the server here is
/// OpenSSL's own (the backend of `native-tls` on Linux).
#[cfg(target_os = "linux")]
mod client_certificates {
    use super::*;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode};
    use openssl::x509::X509;

    /// What the server's TLS handshake of one connection gave: the common
    /// name of the client's certificate, or why it failed.
    type Accepted = Result<String, String>;

    /// A wss server on 127.0.0.1 that requires a client certificate and
    /// accepts any (the tests present the localhost certificate, whose
    /// extended key usage is for servers). After the upgrade it sends the
    /// certificate's common name as a text message and closes with 1000.
    /// Serves at most `max` connections, within the wait.
    fn server_requiring_a_client_certificate(max: usize) -> (u16, mpsc::Receiver<Accepted>) {
        let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
        builder
            .set_private_key(&PKey::private_key_from_pem(LOCALHOST_KEY).expect("key"))
            .expect("set key");
        builder
            .set_certificate(&X509::from_pem(LOCALHOST_CERT).expect("certificate"))
            .expect("set certificate");
        builder.set_verify_callback(
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            |_, _| true,
        );
        let acceptor = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            listener.set_nonblocking(true).expect("nonblocking");
            let deadline = Instant::now() + WAIT;
            let mut served = 0;
            while served < max && Instant::now() < deadline {
                let tcp = match listener.accept() {
                    Ok((tcp, _)) => tcp,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                served += 1;
                let _ = tcp.set_nonblocking(false);
                let _ = tcp.set_read_timeout(Some(WAIT));
                let mut tls = match acceptor.accept(tcp) {
                    Ok(tls) => tls,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        continue;
                    }
                };
                let name = tls
                    .ssl()
                    .peer_certificate()
                    .and_then(|cert| {
                        let entry = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next()?;
                        entry.data().to_string().ok()
                    })
                    .unwrap_or_default();
                let _ = tx.send(Ok(name.clone()));
                answer_upgrade(&mut tls);
                let mut frames = vec![0x81, name.len() as u8];
                frames.extend_from_slice(name.as_bytes());
                frames.extend_from_slice(&[0x88, 2, 0x03, 0xE8]); // close, 1000
                tls.write_all(&frames).expect("message and close");
                // The client's close frame, then the server closes first.
                let mut reply = [0u8; 64];
                let _ = tls.read(&mut reply);
                let _ = tls.shutdown();
            }
        });
        (port, rx)
    }

    fn accepted(rx: &mpsc::Receiver<Accepted>) -> Accepted {
        rx.recv_timeout(WAIT)
            .expect("a TLS handshake on the server")
    }

    /// The client side of a connection that worked: the server's message
    /// (the client certificate's name), then its close.
    fn assert_served(rx: &mpsc::Receiver<Seen>) {
        assert_eq!(next(rx), Seen::Connect);
        assert_eq!(next(rx), Seen::Text("localhost".into()));
        assert_eq!(next(rx), Seen::Close(1000));
    }

    fn with_identity(tls: ClientTls) -> Config {
        let tls = tls
            .identity_pem(LOCALHOST_CERT, LOCALHOST_KEY)
            .expect("client identity");
        Config::default().client_tls(tls)
    }

    #[test]
    fn a_client_identity_is_presented_to_a_server_that_requires_one() {
        let (port, server) = server_requiring_a_client_certificate(1);
        let ws = WebSocket::with_config(with_identity(trusting_tls()));
        let rx = record(&ws);
        ws.connect(&wss_url("localhost", port), &[])
            .expect("connect");
        assert_eq!(accepted(&server), Ok("localhost".to_owned()));
        assert_served(&rx);

        // From PKCS#12 too.
        let (port, server) = server_requiring_a_client_certificate(1);
        let tls = trusting_tls()
            .identity_pkcs12(LOCALHOST_P12, LOCALHOST_P12_PASSWORD)
            .expect("client identity");
        let ws = WebSocket::with_config(Config::default().client_tls(tls));
        let rx = record(&ws);
        ws.connect(&wss_url("localhost", port), &[])
            .expect("connect");
        assert_eq!(accepted(&server), Ok("localhost".to_owned()));
        assert_served(&rx);
    }

    #[test]
    fn without_an_identity_the_server_refuses_the_client() {
        // The control for the tests above: the server does require one.
        let (port, server) = server_requiring_a_client_certificate(1);
        let ws = WebSocket::with_config(trusting_config());
        let rx = record(&ws);
        ws.connect(&wss_url("localhost", port), &[])
            .expect("connect");
        let refused = accepted(&server).expect_err("no client certificate");
        assert!(refused.contains("certificate"), "{refused}");
        let ending = next(&rx);
        assert!(
            !matches!(ending, Seen::Connect | Seen::Certificate(_)),
            "{ending:?}"
        );
        assert!(ws.wait_closed(WAIT));
    }

    #[test]
    fn the_retry_after_a_certificate_error_keeps_the_client_identity() {
        // The system's roots do not know the server's CA: the first
        // connection fails its check, the second (unchecked) one asks the
        // listener, which allows it, and presents the same identity.
        let (port, server) = server_requiring_a_client_certificate(2);
        let ws = WebSocket::with_config(with_identity(ClientTls::new()));
        let counts = CertificateErrors::listen(&ws, true);
        let rx = record(&ws);
        ws.connect(&wss_url("localhost", port), &[])
            .expect("connect");
        let first = accepted(&server);
        assert!(first.is_err(), "the checked attempt was refused: {first:?}");
        assert_eq!(accepted(&server), Ok("localhost".to_owned()));
        assert!(matches!(next(&rx), Seen::Certificate(_)));
        assert_served(&rx);
        assert_eq!(counts.seen(), 1);
    }
}

#[test]
fn a_minimum_tls_version_refuses_an_older_server() {
    // A server that speaks TLS 1.2 at most.
    let identity =
        native_tls::Identity::from_pkcs8(LOCALHOST_CERT, LOCALHOST_KEY).expect("test identity");
    let acceptor = native_tls::TlsAcceptor::builder(identity)
        .max_protocol_version(Some(native_tls::Protocol::Tlsv12))
        .build()
        .expect("TLS acceptor");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        acceptor.accept(tcp).is_ok()
    });
    let tls = trusting_tls().min_protocol_version(airws::TlsVersion::Tls13);
    let ws = WebSocket::with_config(Config::default().client_tls(tls));
    let rx = record(&ws);
    ws.connect(&wss_url("localhost", port), &[])
        .expect("connect");
    match next(&rx) {
        Seen::Security(text) => assert!(text.contains("TLS handshake"), "{text}"),
        other => panic!("expected a securityError, got {other:?}"),
    }
    assert!(!server.join().expect("the server"), "no TLS 1.2 session");
    assert!(ws.wait_closed(WAIT));
}

#[test]
fn a_redirect_from_wss_to_ws_is_not_followed() {
    use std::io::BufRead;
    let acceptor = localhost_acceptor();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let plain = EchoServer::start();
    let location = plain.url();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        let mut tls = acceptor.accept(tcp).expect("TLS");
        let mut reader = std::io::BufReader::new(&mut tls);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let answer =
            format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
        tls.write_all(answer.as_bytes()).expect("answer");
        let _ = tls.flush();
    });
    let ws = WebSocket::with_config(trusting_config().max_redirects(5));
    let (tx, closes) = mpsc::channel();
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        let _ = tx.send(e.text().to_owned());
    });
    ws.connect(&wss_url("localhost", port), &[])
        .expect("connect");
    let text = closes.recv_timeout(WAIT).expect("close");
    assert!(text.contains("from wss to ws"), "{text}");
    server.join().expect("the server");
    // The plain server never saw the client.
    assert!(plain.events.try_recv().is_err());
}
