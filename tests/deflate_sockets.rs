//! permessage-deflate in the blocking layer, over loopback sockets: senders
//! on several threads at once (the compressor's order must be the wire's),
//! replies corked by a listener on the connection's thread, and the
//! non-blocking sends of a pump's thread. Both ends keep their context, so
//! a message compressed out of order would not inflate.
#![cfg(feature = "deflate")]

mod support;

use airws::{
    Config, DeflateConfig, Event, EventDispatcher, EventPump, Received, ServerSocket,
    ServerSocketConnectEvent, WebSocket, WebSocketEvent,
};
use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use support::EchoServer;

const T: Duration = Duration::from_secs(20);

fn deflate() -> Config {
    Config::default()
        .permessage_deflate(DeflateConfig::default())
        .expect("a valid deflate config")
}

/// JSON-like text of `len` bytes that compresses several times.
fn json(len: usize, seed: usize) -> String {
    let mut s = String::with_capacity(len + 64);
    let mut i = seed;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user{}\",\"ok\":{}}},",
            i % 41,
            i % 3 == 0
        ));
        i += 1;
    }
    s.truncate(len);
    s
}

/// The message `i` of thread `t`: its sender and number, then text.
fn message(t: usize, i: usize) -> String {
    const SIZES: [usize; 5] = [10, 100, 5000, 70_000, 300];
    // One message per thread over the 1 MiB fragment size.
    let size = if i == 7 {
        1_500_000
    } else {
        SIZES[i % SIZES.len()]
    };
    format!("{t}:{i}:{}", json(size, t * 1000 + i))
}

#[test]
fn concurrent_senders_keep_the_compressors_order_on_the_wire() {
    let server = EchoServer::with(deflate, "");
    let ws = WebSocket::open_with(deflate(), &server.url(), &[], T).expect("open");
    assert_eq!(ws.extensions(), "permessage-deflate");
    const THREADS: usize = 4;
    const EACH: usize = 25;
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let ws = ws.clone();
            thread::spawn(move || {
                for i in 0..EACH {
                    ws.send_message(WebSocket::FMT_TEXT, message(t, i))
                        .expect("send");
                }
            })
        })
        .collect();
    let mut next = [0usize; THREADS];
    for _ in 0..THREADS * EACH {
        let Received::Text(text) = ws.receive(T).expect("an echo") else {
            panic!("not a text echo");
        };
        let mut parts = text.splitn(3, ':');
        let t: usize = parts.next().and_then(|p| p.parse().ok()).expect("thread");
        let i: usize = parts.next().and_then(|p| p.parse().ok()).expect("number");
        assert_eq!(i, next[t], "thread {t}'s messages in order");
        assert!(text == message(t, i), "echo of {t}:{i} differs");
        next[t] += 1;
    }
    for s in senders {
        s.join().expect("a sender");
    }
    ws.close_and_wait(WebSocket::CLOSE_NORMAL, T)
        .expect("closed in time");
    assert_eq!(ws.close_reason(), 1000);
}

#[test]
fn replies_corked_on_the_connection_thread_arrive_compressed_and_in_order() {
    // A server whose listener answers each message with 20 replies, sent
    // on the connection's thread (corked until it reads again).
    let server = ServerSocket::new();
    let sockets: Arc<Mutex<Vec<WebSocket>>> = Arc::default();
    let kept = sockets.clone();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::with_config(deflate());
        ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
            let Some(ws) = e.target::<WebSocket>() else {
                return;
            };
            let asked = e.string_data().unwrap_or_default().to_owned();
            for r in 0..20 {
                let _ =
                    ws.send_message(WebSocket::FMT_TEXT, format!("{asked}/{r}:{}", json(200, r)));
            }
        });
        kept.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ws.clone());
        ws.start_server(e.socket()).expect("start_server");
    });
    server.bind(0, "127.0.0.1").expect("bind");
    server.listen().expect("listen");
    let url = format!("ws://127.0.0.1:{}/", server.local_port());
    let ws = WebSocket::open_with(deflate(), &url, &[], T).expect("open");
    for q in 0..5 {
        ws.send_message(WebSocket::FMT_TEXT, format!("q{q}"))
            .expect("send");
        for r in 0..20 {
            assert_eq!(
                ws.receive(T).expect("a reply"),
                Received::Text(format!("q{q}/{r}:{}", json(200, r)))
            );
        }
    }
    ws.close_and_wait(WebSocket::CLOSE_NORMAL, T)
        .expect("closed in time");
    drop(sockets);
    server.close();
}

#[test]
fn a_pumps_thread_sends_compressed_without_blocking() {
    let server = EchoServer::with(deflate, "");
    let pump = EventPump::new();
    let ws = WebSocket::with_config(deflate());
    pump.attach(&ws).expect("attach");
    let got: Rc<RefCell<Vec<String>>> = Rc::default();
    let opened = Rc::new(RefCell::new(false));
    {
        let got = got.clone();
        ws.add_local_event_listener(WebSocketEvent::DATA, move |e: &Event| {
            got.borrow_mut()
                .push(e.string_data().unwrap_or_default().to_owned());
        })
        .expect("local listener");
        let opened = opened.clone();
        ws.add_local_event_listener(Event::CONNECT, move |_: &Event| {
            *opened.borrow_mut() = true;
        })
        .expect("local listener");
    }
    ws.connect(&server.url(), &[]).expect("connect");
    let deadline = Instant::now() + T;
    while !*opened.borrow() {
        assert!(Instant::now() < deadline, "not open in time");
        pump.wait(Duration::from_millis(100));
    }
    assert_eq!(ws.extensions(), "permessage-deflate");
    // Queued on this thread (the pump's), written by the flusher.
    let sent: Vec<String> = (0..50).map(|i| format!("{i}:{}", json(3000, i))).collect();
    for m in &sent {
        ws.send_message(WebSocket::FMT_TEXT, m.as_str())
            .expect("queued");
    }
    while got.borrow().len() < sent.len() {
        assert!(
            Instant::now() < deadline,
            "{} echoes of {}",
            got.borrow().len(),
            sent.len()
        );
        pump.wait(Duration::from_millis(100));
    }
    assert!(
        *got.borrow() == sent,
        "the echoes differ from what was sent"
    );
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
}

/// A config with deflate on and a budget with no room for its state.
fn deflate_without_room() -> Config {
    deflate().memory_budget(airws::MemoryBudget::new(256 << 10))
}

#[test]
fn without_room_in_the_budget_a_server_declines_and_a_client_does_not_offer() {
    // The server declines: the connection opens uncompressed, and works.
    let server = EchoServer::with(deflate_without_room, "");
    let ws = WebSocket::open_with(deflate(), &server.url(), &[], T).expect("open");
    assert_eq!(ws.extensions(), "", "declined");
    let text = json(10_000, 1);
    ws.send_message(WebSocket::FMT_TEXT, text.as_str())
        .expect("send");
    assert_eq!(ws.receive(T).expect("the echo"), Received::Text(text));
    ws.close_and_wait(WebSocket::CLOSE_NORMAL, T)
        .expect("closed in time");

    // A client without room offers nothing: the request has no
    // Sec-WebSocket-Extensions; with room, the same client offers it.
    let head = request_head(deflate_without_room());
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "offered without room: {head}"
    );
    let head = request_head(deflate());
    assert!(
        head.contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"),
        "{head}"
    );
}

/// The upgrade request a client with `config` sends, read by a raw server
/// that then refuses it.
fn request_head(config: Config) -> String {
    let raw = support::RawServer::new();
    let url = raw.url();
    let seen = thread::spawn(move || {
        let mut s = raw.accept_tcp();
        let head = support::read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        head
    });
    assert!(
        WebSocket::open_with(config, &url, &[], T).is_err(),
        "refused"
    );
    seen.join().expect("the raw server")
}
