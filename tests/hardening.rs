//! A server that hostile clients cannot talk into a bad state, over real
//! loopback sockets: strict upgrade requests (a header that must be single
//! sent twice gets 400), and a 503 for a client that no thread can serve.

mod support;

use airws::{
    Config, ConnectionLimit, Event, EventDispatcher, ServerSocket, ServerSocketConnectEvent,
    WebSocket,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use support::*;

/// A server whose `WebSocket`s use `config`; accepted `start_server`
/// results are reported on the channel.
fn server_with(config: Config) -> (ServerSocket, mpsc::Receiver<Result<(), String>>) {
    let (tx, rx) = mpsc::channel();
    let server = ServerSocket::new();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::with_config(config.clone());
        let started = ws.start_server(e.socket()).map_err(|e| e.to_string());
        let _ = tx.send(started);
        // Kept open for the test's length.
        std::mem::forget(ws);
    });
    server.bind(0, "127.0.0.1").expect("bind");
    server.listen().expect("listen");
    (server, rx)
}

const UPGRADE: &str = "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                       Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                       Sec-WebSocket-Version: 13\r\n";

#[test]
fn a_header_that_must_be_single_sent_twice_gets_400() {
    let server = EchoServer::start();
    let good = exchange(server.port, &format!("{UPGRADE}\r\n"));
    assert!(good.starts_with("HTTP/1.1 101 "), "{good}");
    for (extra, name) in [
        ("Host: other.example\r\n", "Host"),
        (
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n",
            "Sec-WebSocket-Key",
        ),
        ("Sec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version"),
    ] {
        let response = exchange(server.port, &format!("{UPGRADE}{extra}\r\n"));
        assert!(
            response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{name}: {response}"
        );
        assert!(
            response.contains(&format!("more than one {name} header")),
            "{name}: {response}"
        );
        assert!(response.contains("X-Content-Type-Options: nosniff\r\n"));
    }
}

#[test]
fn a_plain_request_gets_a_400_that_does_not_repeat_its_path() {
    let server = EchoServer::start();
    let response = exchange(
        server.port,
        "GET /<img%20src=x> HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    assert!(!response.contains("img"), "{response}");
    assert!(response.contains("X-Content-Type-Options: nosniff\r\n"));
}

#[test]
fn a_client_that_no_thread_can_serve_gets_503() {
    // A stack no system can map: the connection's thread cannot start.
    let (server, started) = server_with(Config::default().thread_stack_size(1 << 46));
    let response = exchange(server.local_port(), &format!("{UPGRADE}\r\n"));
    assert!(
        response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{response}"
    );
    assert!(response.contains("Retry-After: 1\r\n"), "{response}");
    let result = started
        .recv_timeout(Duration::from_secs(5))
        .expect("start_server returned");
    let err = result.expect_err("start_server fails");
    assert!(err.starts_with("IOError: "), "{err}");
}

#[test]
fn write_timeout_bounds_the_whole_write_against_a_peer_that_reads_a_trickle() {
    let config = Config::default()
        .write_timeout(Duration::from_secs(1))
        .close_timeout(Duration::from_millis(300));
    let (ws, rx, peer) = client_of_raw_peer_with(config);
    // The peer reads 16 KiB every 50 ms until the library closes the
    // connection: each write makes a little progress, none finishes. A
    // timeout that restarted after each partial write would let a 64 MiB
    // message go on for minutes.
    let mut stream = peer.stream.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let stop_reading = stop.clone();
    let trickle = std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 << 10];
        let mut total = 0usize;
        for _ in 0..2_000 {
            if stop_reading.load(Ordering::SeqCst) {
                break;
            }
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        total
    });
    let started = Instant::now();
    let big = vec![1u8; 64 << 20];
    let err = ws
        .send_message(WebSocket::FMT_BINARY, &big[..])
        .expect_err("the write cannot finish");
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert!(
        matches!(
            err,
            airws::Error::Timeout {
                which: airws::Timeout::Write,
                ..
            }
        ),
        "{err:?}"
    );
    // 1 s, and a margin for a loaded machine: a timeout that restarted
    // after each partial write would take minutes here.
    eprintln!("the write failed after {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "a 1 s write timeout ended the write after {took:?}"
    );
    // The connection ends at once with ioError and close, and nothing
    // follows: no read, no pong, no second failure.
    assert!(matches!(next(&rx), Seen::IoError(..)));
    assert!(matches!(next(&rx), Seen::Close(1006)));
    let read = trickle.join().expect("the trickle reader");
    assert!(read > 0 && read < 64 << 20, "the peer read {read} bytes");
    nothing_more(&rx, 200);
}

/// A server `WebSocket` with `config` on an accepted socket, and a raw
/// client that completed the upgrade with it.
fn server_and_raw_client(config: Config) -> (WebSocket, mpsc::Receiver<Seen>, RawPeer) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let client = std::thread::spawn(move || raw_client(port, "").0);
    let (socket, _) = listener.accept().expect("accept");
    let ws = WebSocket::with_config(config);
    let rx = record(&ws);
    ws.start_server(socket).expect("start_server");
    let peer = client.join().expect("the client");
    assert_eq!(next(&rx), Seen::Connect);
    (ws, rx, peer)
}

#[test]
fn a_message_not_finished_in_time_is_failed_with_1008() {
    let config = Config::default()
        .message_timeout(Duration::from_millis(300))
        .close_timeout(Duration::from_millis(300));
    let (ws, _rx, mut peer) = server_and_raw_client(config);
    let (tx, closes) = mpsc::channel();
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        let _ = tx.send(e.error().map(|e| e.to_string()));
    });
    // The first fragment of a message whose end never comes.
    peer.send(RawFrame::new(OP_TEXT, "part").fin(false));
    peer.expect_failure(1008);
    let error = closes.recv_timeout(WAIT).expect("close").expect("an error");
    assert!(
        error.contains("the message timeout (300ms) passed"),
        "{error}"
    );
    assert_eq!(ws.close_reason(), 1008);
}

/// The `timer_active` field of the kernel's entry for the TCP connection
/// from local port `local` to `remote` (2: the keepalive timer runs).
fn tcp_timer(local: u16, remote: u16) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if port(f.get(1)?)? == local && port(f.get(2)?)? == remote {
            u8::from_str_radix(f.get(5)?.split(':').next()?, 16).ok()
        } else {
            None
        }
    })
}

#[test]
fn sockets_get_tcp_keepalive_unless_it_is_turned_off() {
    for (config, want) in [
        (Config::default(), 2),
        (Config::default().tcp_keepalive(None), 0),
    ] {
        let (ws, _rx, peer) = server_and_raw_client(config);
        let server_port = peer.stream.peer_addr().expect("address").port();
        let client_port = peer.stream.local_addr().expect("address").port();
        // (Once the last bytes are acknowledged: until then the
        // retransmission timer shows instead.)
        eventually(|| tcp_timer(server_port, client_port) == Some(want));
        assert_eq!(
            tcp_timer(server_port, client_port),
            Some(want),
            "the server's socket, keepalive {}",
            if want == 2 { "on" } else { "off" }
        );
        drop(ws);
    }
}

#[test]
fn a_client_over_the_connection_limit_gets_503_until_a_place_frees() {
    let limit = ConnectionLimit::new(2);
    let (server, started) = server_with(Config::default().connection_limit(limit.clone()));
    let port = server.local_port();
    let first = raw_client(port, "").0;
    let _second = raw_client(port, "").0;
    assert_eq!(limit.live(), 2);
    let response = exchange(port, &format!("{UPGRADE}\r\n"));
    assert!(
        response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{response}"
    );
    let results: Vec<_> = (0..3)
        .map(|_| started.recv_timeout(WAIT).expect("start_server returned"))
        .collect();
    assert!(results[..2].iter().all(Result::is_ok), "{results:?}");
    let refused = results[2].as_ref().expect_err("the third is refused");
    assert!(refused.contains("the limit: answered 503"), "{refused}");
    // One leaves: its place is free once its thread has ended.
    let mut first = first;
    first.close(1000, "");
    assert_eq!(first.read_close().close_code(), Some(1000));
    assert!(eventually(|| limit.live() < 2));
    let again = exchange(port, &format!("{UPGRADE}\r\n"));
    assert!(again.starts_with("HTTP/1.1 101 "), "{again}");
}

#[test]
fn an_origin_not_on_the_allow_list_gets_403() {
    let config = Config::default().allowed_origins(["https://app.example"]);
    let (server, _started) = server_with(config);
    let port = server.local_port();
    let with = |origin: Option<&str>| {
        let line = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
        exchange(port, &format!("{UPGRADE}{line}\r\n"))
    };
    for allowed in [
        Some("https://app.example"),
        Some("HTTPS://App.Example/"),
        None,
    ] {
        let response = with(allowed);
        assert!(
            response.starts_with("HTTP/1.1 101 "),
            "{allowed:?}: {response}"
        );
    }
    for foreign in ["https://evil.example", "http://app.example", "null"] {
        let response = with(Some(foreign));
        assert!(
            response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{foreign}: {response}"
        );
        assert!(response.contains("X-Content-Type-Options: nosniff\r\n"));
    }
}

#[test]
fn the_request_stays_readable_on_the_server_websocket() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let client = std::thread::spawn(move || {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.write_all(
                "GET /rooms/7?token=abc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\nCookie: session=42\r\nOrigin: https://app.example\r\n\r\n"
            .as_bytes(),
        )
        .expect("request");
        let head = read_head(&mut tcp);
        (tcp, head)
    });
    let (socket, _) = listener.accept().expect("accept");
    let ws = WebSocket::new();
    assert!(ws.handshake_request().is_none());
    let rx = record(&ws);
    ws.start_server(socket).expect("start_server");
    assert_eq!(next(&rx), Seen::Connect);
    let (_tcp, head) = client.join().expect("the client");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let request = ws.handshake_request().expect("the request");
    assert_eq!(request.resource(), "/rooms/7?token=abc");
    assert_eq!(request.path(), "/rooms/7");
    assert_eq!(request.query(), Some("token=abc"));
    assert_eq!(request.header("COOKIE"), Some("session=42"));
    assert_eq!(request.header("origin"), Some("https://app.example"));
    assert!(request.headers().len() >= 7);
}
