//! Hostile and broken peers: slow handshakes, oversized heads, resets and
//! drops mid-frame and mid-handshake, a peer that stops reading while we
//! write, an idle peer. Each case ends with the documented events, the
//! connection's thread ends, and the server goes on serving others.

mod support;

use airws::{
    Config, Event, EventDispatcher, IOErrorEvent, ServerSocket, ServerSocketConnectEvent,
    ServerTls, WebSocket,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::*;

/// The fault tests run one at a time, so that each can check that the
/// library's threads are gone once its connections have ended.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs a scenario (everything it made is dropped when it returns), then
/// checks that no thread of the library is left.
fn ends_its_threads(scenario: fn()) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        eventually(|| library_threads().is_empty()),
        "threads before: {:?}",
        library_threads()
    );
    scenario();
    assert!(
        eventually(|| library_threads().is_empty()),
        "threads left: {:?}",
        library_threads()
    );
}

fn short_timeouts() -> Config {
    Config::default()
        .handshake_timeout(Duration::from_millis(800))
        .close_timeout(Duration::from_millis(800))
        .write_timeout(Duration::from_millis(800))
}

/// Reads until EOF or error; returns what arrived and whether the
/// connection ended within `within`.
fn read_until_end(tcp: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tcp.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match tcp.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break
            }
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

fn slowloris_client_is_dropped_at_the_handshake_deadline_scenario() {
    let server = EchoServer::with(short_timeouts, "");
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let started = Instant::now();
    tcp.write_all(b"GET / HTTP/1.1\r\n").expect("start");
    // One byte every 100 ms: each read succeeds, but the whole head never
    // arrives. The server must drop it at its 800 ms deadline.
    let mut dropped = false;
    for b in b"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaa" {
        std::thread::sleep(Duration::from_millis(100));
        if tcp.write_all(&[*b]).is_err() {
            dropped = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let (answer, ended) = read_until_end(&mut tcp, WAIT);
    dropped |= ended;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(dropped, "the slow client was not dropped");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "dropped only after {:?}",
        started.elapsed()
    );
    let seen = server.wait_for(|s| matches!(s, Seen::Close(_)));
    assert_eq!(seen, Seen::Close(1006));
    // The server still serves others.
    let (mut peer, _) = raw_client(server.port, "");
    peer.text("still here");
    assert_eq!(peer.read_message(), (OP_TEXT, b"still here".to_vec()));
}

fn a_silent_tls_client_is_dropped_at_the_handshake_deadline_scenario() {
    let tls = ServerTls::from_pem(
        include_bytes!("tls/localhost.pem"),
        include_bytes!("tls/localhost.key"),
    )
    .expect("server identity");
    let server = ServerSocket::new();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::with_config(short_timeouts());
        let t = Mutex::new(tx.lock().unwrap_or_else(|p| p.into_inner()).clone());
        ws.add_event_listener(Event::CLOSE, move |_e: &Event| {
            let _ = t.lock().unwrap_or_else(|p| p.into_inner()).send(());
        });
        ws.start_server_tls(e.socket(), &tls)
            .expect("start_server_tls");
        std::mem::forget(ws); // the connection's thread owns its end
    });
    server.bind(0, "127.0.0.1").expect("bind");
    server.listen().expect("listen");
    let mut tcp = TcpStream::connect(("127.0.0.1", server.local_port())).expect("connect");
    // Half a TLS record header, then nothing.
    tcp.write_all(&[0x16, 0x03]).expect("write");
    let (_, ended) = read_until_end(&mut tcp, WAIT);
    assert!(ended, "the silent TLS client was not dropped");
    rx.recv_timeout(WAIT)
        .expect("the server WebSocket dispatched close");
}

fn a_head_larger_than_the_limit_gets_431_then_the_socket_closes_scenario() {
    fn small_heads() -> Config {
        Config::default().max_handshake_size(1024)
    }
    let server = EchoServer::with(small_heads, "");
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let mut request = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        request.push_str(&format!("X-Filler-{i}: {}\r\n", "a".repeat(20)));
    }
    let _ = tcp.write_all(request.as_bytes());
    let (got, ended) = read_until_end(&mut tcp, WAIT);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert!(ended);
    assert!(matches!(
        server.wait_for(|s| matches!(s, Seen::Close(_))),
        Seen::Close(_)
    ));
}

fn a_client_that_closes_mid_handshake_gets_close_and_no_connect_scenario() {
    let server = EchoServer::start();
    {
        let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpg")
            .expect("half a request");
    } // closed
    let seen = server.next().1;
    assert_eq!(seen, Seen::Close(1006));
}

fn a_server_that_stalls_mid_handshake_gives_the_client_io_error_scenario() {
    let raw = RawServer::new();
    let ws = WebSocket::with_config(short_timeouts());
    let rx = record(&ws);
    let started = Instant::now();
    ws.connect(&raw.url(), &[]).expect("connect");
    let mut tcp = raw.accept_tcp();
    let _ = read_head(&mut tcp);
    tcp.write_all(b"HTTP/1.1 101 Switching")
        .expect("half a response");
    match next(&rx) {
        Seen::IoError(id, text) => {
            assert_eq!(id, IOErrorEvent::TIMED_OUT_ID);
            assert!(text.contains("the handshake timeout"), "{text}");
            let server = format!("127.0.0.1:{}", raw.port);
            assert!(text.contains(&server), "names the server: {text}");
        }
        other => panic!("expected ioError, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!ws.connected());
}

fn a_peer_that_resets_mid_frame_ends_with_1006_and_the_server_serves_others_scenario() {
    let server = EchoServer::start();
    {
        let (mut peer, _) = raw_client(server.port, "");
        server.wait_for(|s| *s == Seen::Connect);
        // Leave an echo unread in our receive buffer, so that closing the
        // socket sends a reset, then write half a frame.
        peer.text("unread echo");
        std::thread::sleep(Duration::from_millis(50));
        let frame = peer.prepare(RawFrame::new(OP_BINARY, vec![7u8; 1000]));
        peer.send_raw(&frame[..500]);
    } // dropped with unread data: RST
    assert_eq!(
        server.wait_for(|s| matches!(s, Seen::Close(_))),
        Seen::Close(1006)
    );
    let (mut other, _) = raw_client(server.port, "");
    other.binary(&[1, 2, 3]);
    assert_eq!(other.read_message(), (OP_BINARY, vec![1, 2, 3]));
}

fn a_client_whose_server_vanishes_mid_frame_gets_close_1006_scenario() {
    let (ws, rx, mut peer) = client_of_raw_peer();
    let frame = RawFrame::new(OP_TEXT, "x".repeat(300)).build();
    peer.send_raw(&frame[..100]);
    drop(peer);
    assert_eq!(next(&rx), Seen::Close(1006));
    assert!(ws.wait_closed(WAIT));
}

fn a_peer_that_stops_reading_fails_the_stalled_send_and_close_returns_in_time_scenario() {
    // Our server writes to a raw client that never reads.
    let (server, rx) = serve_websockets(short_timeouts);

    // 1. A stalled send fails after the write timeout.
    let (_stuck_peer, _) = raw_client(server.local_port(), "");
    let ws = rx.recv_timeout(WAIT).expect("server connect");
    let events = record(&ws);
    let started = Instant::now();
    let big = vec![0u8; 32 << 20];
    let result = ws.send_message(WebSocket::FMT_BINARY, &big);
    assert!(
        result.is_err(),
        "a 32 MiB send to a peer that does not read"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stalled send took {:?}",
        started.elapsed()
    );
    let mut seen = vec![next(&events)];
    if matches!(seen[0], Seen::IoError(..)) {
        seen.push(next(&events));
    }
    assert_eq!(seen.last(), Some(&Seen::Close(1006)), "{seen:?}");

    // 2. close() while another thread is stuck writing returns within the
    //    close timeout, and the connection ends.
    let (_stuck_peer2, _) = raw_client(server.local_port(), "");
    let ws2 = rx.recv_timeout(WAIT).expect("server connect");
    let writer = ws2.clone();
    let sending = std::thread::spawn(move || {
        let big = vec![0u8; 32 << 20];
        writer.send_message(WebSocket::FMT_BINARY, &big).is_err()
    });
    std::thread::sleep(Duration::from_millis(200)); // the writer is stuck now
    let started = Instant::now();
    ws2.close(WebSocket::CLOSE_NORMAL).expect("close");
    let close_took = started.elapsed();
    assert!(
        close_took < Duration::from_secs(3),
        "close() took {close_took:?}"
    );
    assert!(ws2.wait_closed(WAIT), "the connection did not end");
    assert!(sending.join().expect("sender"), "the stuck send failed");

    // 3. Meanwhile other connections are served.
    let (mut other, _) = raw_client(server.local_port(), "");
    let ws3 = rx.recv_timeout(WAIT).expect("server connect");
    ws3.send_message(WebSocket::FMT_TEXT, "fine").expect("send");
    assert_eq!(other.read_message(), (OP_TEXT, b"fine".to_vec()));
    server.close();
}

fn an_idle_peer_is_closed_with_1001_after_the_idle_timeout_scenario() {
    fn idle() -> Config {
        Config::default().idle_timeout(Duration::from_millis(300))
    }
    let server = EchoServer::with(idle, "");
    let (mut peer, _) = raw_client(server.port, "");
    // Traffic keeps it open.
    for i in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        peer.text(&format!("tick {i}"));
        assert_eq!(peer.read_message().1, format!("tick {i}").into_bytes());
    }
    // Silence closes it.
    let started = Instant::now();
    let f = peer.read_close();
    assert_eq!(f.close_code(), Some(1001));
    assert!(started.elapsed() >= Duration::from_millis(250));
    peer.close(1001, "");
    assert!(peer.sees_eof());
    assert_eq!(
        server.wait_for(|s| matches!(s, Seen::Close(_))),
        Seen::Close(1001)
    );
}

#[test]
fn slowloris_client_is_dropped_at_the_handshake_deadline() {
    ends_its_threads(slowloris_client_is_dropped_at_the_handshake_deadline_scenario);
}

#[test]
fn a_silent_tls_client_is_dropped_at_the_handshake_deadline() {
    ends_its_threads(a_silent_tls_client_is_dropped_at_the_handshake_deadline_scenario);
}

#[test]
fn a_head_larger_than_the_limit_gets_431_then_the_socket_closes() {
    ends_its_threads(a_head_larger_than_the_limit_gets_431_then_the_socket_closes_scenario);
}

#[test]
fn a_client_that_closes_mid_handshake_gets_close_and_no_connect() {
    ends_its_threads(a_client_that_closes_mid_handshake_gets_close_and_no_connect_scenario);
}

#[test]
fn a_server_that_stalls_mid_handshake_gives_the_client_io_error() {
    ends_its_threads(a_server_that_stalls_mid_handshake_gives_the_client_io_error_scenario);
}

#[test]
fn a_peer_that_resets_mid_frame_ends_with_1006_and_the_server_serves_others() {
    ends_its_threads(
        a_peer_that_resets_mid_frame_ends_with_1006_and_the_server_serves_others_scenario,
    );
}

#[test]
fn a_client_whose_server_vanishes_mid_frame_gets_close_1006() {
    ends_its_threads(a_client_whose_server_vanishes_mid_frame_gets_close_1006_scenario);
}

#[test]
fn a_peer_that_stops_reading_fails_the_stalled_send_and_close_returns_in_time() {
    ends_its_threads(
        a_peer_that_stops_reading_fails_the_stalled_send_and_close_returns_in_time_scenario,
    );
}

#[test]
fn an_idle_peer_is_closed_with_1001_after_the_idle_timeout() {
    ends_its_threads(an_idle_peer_is_closed_with_1001_after_the_idle_timeout_scenario);
}
