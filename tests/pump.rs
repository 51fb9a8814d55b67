//! Events on the owner's thread, over loopback sockets: an `EventPump` runs
//! the listeners on the thread that pumps it, in order and with AS3's
//! dispatch rules; listeners that are not `Send` change that thread's state;
//! the waker is called once per burst; the bounded queue pauses the
//! connection (nothing lost, the idle timeout not tripped); decisions wait
//! for the pump up to the handshake timeout, and a pump that never comes
//! refuses them.

mod support;

use airws::{
    Config, Error, Event, EventDispatcher, EventPump, SecurityErrorEvent, ServerTls,
    UpgradeRequestEvent, WebSocket, WebSocketEvent,
};
use std::cell::RefCell;
use std::io::Write;
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};
use support::*;

/// Records every event of `ws` with a local listener (`Rc`, not `Send`),
/// with the thread it ran on.
fn record_locally(ws: &WebSocket) -> Rc<RefCell<Vec<(Seen, ThreadId)>>> {
    let log = Rc::new(RefCell::new(Vec::new()));
    for event_type in [
        Event::CONNECT,
        Event::CLOSE,
        WebSocketEvent::DATA,
        SecurityErrorEvent::CERTIFICATE_ERROR,
    ] {
        let l = log.clone();
        ws.add_local_event_listener(event_type, move |e: &Event| {
            l.borrow_mut().push((seen(e), thread::current().id()));
        })
        .expect("attached to this thread's pump");
    }
    log
}

/// Pumps until `log` holds `n` events, within the wait.
fn pump_until<T>(pump: &EventPump, log: &RefCell<Vec<T>>, n: usize) {
    let deadline = Instant::now() + WAIT;
    while log.borrow().len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} events of {n}",
            log.borrow().len()
        );
        pump.wait(Duration::from_millis(100));
    }
}

/// The frames of `count` text messages `m0`, `m1`, ... as one buffer.
fn burst(peer: &mut RawPeer, count: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|i| peer.prepare(RawFrame::new(0x1, format!("m{i}"))))
        .collect()
}

#[test]
fn listeners_run_on_the_pumping_thread_in_order_with_as3_rules() {
    let server = RawServer::new();
    let pump = EventPump::new();
    let ws = WebSocket::new();
    pump.attach(&ws).expect("attach");
    let log = record_locally(&ws);
    // A Send listener runs on the pump's thread too, by priority, and stops
    // the local listeners for the message it marks.
    let (tx, threads) = mpsc::channel();
    ws.add_event_listener_with_priority(
        WebSocketEvent::DATA,
        move |e: &Event| {
            let _ = tx.send(thread::current().id());
            if e.string_data() == Some("m1") {
                e.stop_immediate_propagation();
            }
        },
        10,
    );
    ws.connect(&server.url(), &[]).expect("connect");
    let (mut peer, _) = server.accept();
    let bytes = burst(&mut peer, 3);
    peer.send_raw(&bytes);

    // Nothing runs until the pump does.
    let deadline = Instant::now() + WAIT;
    while pump.pending() < 4 {
        assert!(Instant::now() < deadline, "the events were not queued");
        thread::yield_now();
    }
    assert!(log.borrow().is_empty());
    assert!(threads.try_recv().is_err());
    assert_eq!(pump.dispatch_pending(), 4);

    let me = thread::current().id();
    let seen: Vec<Seen> = log.borrow().iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(
        seen,
        [
            Seen::Connect,
            Seen::Text("m0".into()),
            Seen::Text("m2".into())
        ]
    );
    assert!(log.borrow().iter().all(|(_, t)| *t == me));
    let sends: Vec<ThreadId> = threads.try_iter().collect();
    assert_eq!(sends, [me, me, me]);

    // Sends from a local listener go out; the peer's close comes back
    // through the pump.
    let wsl = ws.downgrade();
    ws.add_local_event_listener(WebSocketEvent::DATA, move |e: &Event| {
        if let Some(ws) = wsl.upgrade() {
            ws.send_message(
                WebSocket::FMT_TEXT,
                format!("echo {}", e.string_data().unwrap_or("")),
            )
            .expect("send");
        }
    })
    .expect("local");
    peer.text("m3");
    pump_until(&pump, &log, 4);
    assert_eq!(peer.read_message(), (0x1, b"echo m3".to_vec()));
    peer.close(4000, "bye");
    // The client answers; the server then ends the TCP stream.
    assert_eq!(peer.read_close().close_code(), Some(4000));
    drop(peer);
    pump_until(&pump, &log, 5);
    assert_eq!(log.borrow()[4].0, Seen::Close(4000));
}

#[test]
fn the_waker_is_called_once_per_burst_not_per_event() {
    let server = RawServer::new();
    let pump = EventPump::new();
    let wakes = Arc::new(AtomicUsize::new(0));
    let w = wakes.clone();
    pump.set_waker(move || {
        w.fetch_add(1, Ordering::SeqCst);
    });
    let ws = WebSocket::new();
    pump.attach(&ws).expect("attach");
    let log = record_locally(&ws);
    ws.connect(&server.url(), &[]).expect("connect");
    let (mut peer, _) = server.accept();
    let bytes = burst(&mut peer, 100);
    peer.send_raw(&bytes);
    let deadline = Instant::now() + WAIT;
    while pump.pending() < 101 {
        assert!(Instant::now() < deadline, "{} queued", pump.pending());
        thread::yield_now();
    }
    assert_eq!(
        wakes.load(Ordering::SeqCst),
        1,
        "connect and 100 messages: one wake"
    );
    assert_eq!(pump.dispatch_pending(), 101);
    assert_eq!(log.borrow().len(), 101);
    // The next burst wakes again, once.
    let bytes = burst(&mut peer, 10);
    peer.send_raw(&bytes);
    pump_until(&pump, &log, 111);
    assert!(
        (2..=11).contains(&wakes.load(Ordering::SeqCst)),
        "{} wakes",
        wakes.load(Ordering::SeqCst)
    );
}

#[test]
fn a_full_queue_pauses_the_connection_without_losing_or_timing_out() {
    let server = RawServer::new();
    // Room for 3 events; the client's idle timeout is shorter than the
    // pause.
    let pump = EventPump::with_limits(3, 1 << 20);
    let idle = Duration::from_millis(300);
    let ws = WebSocket::with_config(Config::default().idle_timeout(idle));
    pump.attach(&ws).expect("attach");
    let log = record_locally(&ws);
    ws.connect(&server.url(), &[]).expect("connect");
    let (mut peer, _) = server.accept();
    let bytes = burst(&mut peer, 50);
    peer.send_raw(&bytes);
    let deadline = Instant::now() + WAIT;
    while pump.pending() < 3 {
        assert!(Instant::now() < deadline);
        thread::yield_now();
    }
    // Paused for four idle timeouts: the queue stays at its bound.
    let paused = Instant::now();
    while paused.elapsed() < idle * 4 {
        assert!(pump.pending() <= 3, "{} queued", pump.pending());
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pump.pending(), 3);
    // Pumped, every message arrives, in order, and the connection is open.
    let deadline = Instant::now() + WAIT;
    while log.borrow().len() < 51 {
        assert!(Instant::now() < deadline, "{} events", log.borrow().len());
        pump.dispatch_pending();
        assert!(pump.pending() <= 3);
        thread::yield_now();
    }
    let texts: Vec<Seen> = log.borrow()[1..].iter().map(|(s, _)| s.clone()).collect();
    let expected: Vec<Seen> = (0..50).map(|i| Seen::Text(format!("m{i}"))).collect();
    assert_eq!(texts, expected);
    assert!(ws.connected(), "the pause did not trip the idle timeout");
    // The idle timeout still works once the connection reads again.
    assert_eq!(peer.read_close().close_code(), Some(1001));
}

#[test]
fn a_certificate_error_is_answered_by_the_pump() {
    let tls = ServerTls::from_pem(
        include_bytes!("tls/localhost.pem"),
        include_bytes!("tls/localhost.key"),
    )
    .expect("identity");
    let server = EchoServer::tls(tls);
    let pump = EventPump::new();
    let ws = WebSocket::new();
    pump.attach(&ws).expect("attach");
    let log = record_locally(&ws);
    ws.add_local_event_listener(SecurityErrorEvent::CERTIFICATE_ERROR, |e: &Event| {
        e.prevent_default();
    })
    .expect("local");
    ws.connect(&format!("wss://localhost:{}/", server.port), &[])
        .expect("connect");
    pump_until(&pump, &log, 2);
    assert!(matches!(log.borrow()[0].0, Seen::Certificate(_)));
    assert_eq!(log.borrow()[1].0, Seen::Connect);
}

#[test]
fn a_certificate_error_not_pumped_in_time_refuses_the_certificate() {
    let tls = ServerTls::from_pem(
        include_bytes!("tls/localhost.pem"),
        include_bytes!("tls/localhost.key"),
    )
    .expect("identity");
    let server = EchoServer::tls(tls);
    let pump = EventPump::new();
    let timeout = Duration::from_millis(300);
    let ws = WebSocket::with_config(Config::default().handshake_timeout(timeout));
    pump.attach(&ws).expect("attach");
    let log = record_locally(&ws);
    ws.add_local_event_listener(SecurityErrorEvent::CERTIFICATE_ERROR, |e: &Event| {
        e.prevent_default();
    })
    .expect("local");
    ws.connect(&format!("wss://localhost:{}/", server.port), &[])
        .expect("connect");
    // Not pumped until the connection has given up.
    assert!(
        ws.wait_closed(WAIT),
        "the opening ended at the handshake deadline"
    );
    assert_eq!(ws.close_reason(), 1015);
    pump_until(&pump, &log, 1);
    assert_eq!(
        log.borrow()[0].0,
        Seen::Close(1015),
        "the late certificateError is never dispatched"
    );
    assert_eq!(pump.dispatch_pending(), 0);
}

/// A raw client's upgrade of `path` to `port`; returns its answer's head.
fn upgrade_answer(port: u16, path: &'static str) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        tcp.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("request");
        read_head(&mut tcp)
    })
}

#[test]
fn a_server_decides_on_upgrade_requests_on_the_pumping_thread() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let pump = EventPump::new();
    let asked = Rc::new(RefCell::new(Vec::new()));
    let start = |timeout: Duration| {
        let ws = WebSocket::with_config(Config::default().handshake_timeout(timeout));
        pump.attach(&ws).expect("attach");
        let a = asked.clone();
        ws.add_local_event_listener(UpgradeRequestEvent::UPGRADE_REQUEST, move |e: &Event| {
            a.borrow_mut().push(e.http_path().to_owned());
            if e.http_path() != "/ok" {
                e.refuse(403, &[], "no").expect("refuse");
            }
        })
        .expect("local");
        ws
    };

    // Pumped: refused, then accepted.
    for (path, status) in [("/no", "403"), ("/ok", "101")] {
        let client = upgrade_answer(port, path);
        let ws = start(WAIT);
        ws.start_server(listener.accept().expect("accept").0)
            .expect("start_server");
        let deadline = Instant::now() + WAIT;
        while asked.borrow().last().map(String::as_str) != Some(path) {
            assert!(Instant::now() < deadline, "the request was not pumped");
            pump.wait(Duration::from_millis(100));
        }
        let head = client.join().expect("the client");
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
    }

    // Never pumped in time: 503, and the request is never dispatched.
    let client = upgrade_answer(port, "/ok");
    let ws = start(Duration::from_millis(300));
    ws.start_server(listener.accept().expect("accept").0)
        .expect("start_server");
    let head = client.join().expect("the client");
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(ws.wait_closed(WAIT));
    pump.dispatch_pending();
    assert_eq!(asked.borrow().len(), 2, "{:?}", asked.borrow());
}

#[test]
fn local_listeners_need_this_threads_pump_and_a_websocket_attaches_once() {
    let ws = WebSocket::new();
    let no_pump = ws.add_local_event_listener(Event::CONNECT, |_e: &Event| {});
    assert!(matches!(no_pump, Err(Error::IllegalOperation { .. })));
    let pump = EventPump::new();
    pump.attach(&ws).expect("attach");
    assert!(matches!(
        EventPump::new().attach(&ws),
        Err(Error::IllegalOperation { .. })
    ));
    let other = ws.clone();
    let from_elsewhere = thread::spawn(move || {
        other
            .add_local_event_listener(Event::CONNECT, |_e: &Event| {})
            .is_err()
    })
    .join()
    .expect("thread");
    assert!(from_elsewhere, "another thread cannot add local listeners");
    assert!(ws
        .add_local_event_listener(Event::CONNECT, |_e: &Event| {})
        .is_ok());
}

#[test]
fn once_the_pump_is_dropped_events_go_to_the_listeners_directly() {
    let server = RawServer::new();
    let pump = EventPump::new();
    let ws = WebSocket::new();
    pump.attach(&ws).expect("attach");
    let rx = record(&ws);
    drop(pump);
    ws.connect(&server.url(), &[]).expect("connect");
    let (mut peer, _) = server.accept();
    assert_eq!(next(&rx), Seen::Connect);
    peer.text("direct");
    assert_eq!(next(&rx), Seen::Text("direct".into()));
}

#[test]
fn sends_from_the_pump_thread_never_block_and_nothing_is_lost() {
    let server = RawServer::new();
    let url = server.url();
    let (tx, report) = mpsc::channel();
    let (go, step) = mpsc::channel::<()>();
    // The pump's thread: its sends must return at once while the peer does
    // not read; a blocking send would hang it until the write timeout.
    let owner = thread::spawn(move || {
        let pump = EventPump::new();
        let ws = WebSocket::with_config(
            Config::default()
                .max_buffered_amount(512 << 10)
                .write_timeout(Duration::from_secs(600)),
        );
        pump.attach(&ws).expect("attach");
        let log = record_locally(&ws);
        ws.connect(&url, &[]).expect("connect");
        pump_until(&pump, &log, 1);
        let mut sent = 0usize;
        let full = loop {
            assert!(sent < 10_000, "the queue never filled");
            let text = format!("msg {sent:05} {}", "x".repeat(4000));
            match ws.send_message(WebSocket::FMT_TEXT, text) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        // What waited when the send was refused (the flusher may have
        // handed it all to the kernel by now).
        let buffered = match &full {
            Error::BufferFull { buffered, .. } => *buffered,
            _ => 0,
        };
        let is_full = matches!(full, Error::BufferFull { .. });
        let _ = tx.send((sent, full.to_string(), is_full, buffered));
        // Once the peer read them: a message of 2 MiB, larger than the
        // limit, is queued as nothing else waits, in frames of 1 MiB; then
        // the close, from this thread too, without blocking.
        step.recv_timeout(WAIT).expect("the go");
        let big: Vec<u8> = (0..2 << 20).map(|i| (i % 251) as u8).collect();
        let lone = ws.send_message(WebSocket::FMT_BINARY, big.as_slice());
        ws.close(4001).expect("close");
        let _ = tx.send((0, format!("{lone:?}"), lone.is_ok(), 0));
        // A local close dispatches no close event (AIR's rule).
        assert!(ws.wait_closed(WAIT), "the closing handshake completes");
        assert_eq!(ws.close_reason(), 4001);
        assert_eq!(ws.buffered_amount(), 0, "nothing waits once closed");
        pump.dispatch_pending();
        assert_eq!(log.borrow().len(), 1, "{:?}", log.borrow());
    });
    let (mut peer, _) = server.accept();
    let (sent, error, is_full, buffered) = report.recv_timeout(WAIT).expect("the sends returned");
    assert!(is_full, "{error}");
    assert!(error.contains("bytes wait to be written"), "{error}");
    assert!(sent > 0, "some messages fit");
    assert!(buffered > 0, "bytes waited when it was refused");
    // Everything queued arrives, in order, whole.
    for i in 0..sent {
        let (op, data) = peer.read_message();
        assert_eq!(op, 0x1);
        let text = String::from_utf8(data).expect("text");
        assert!(
            text.starts_with(&format!("msg {i:05} ")),
            "message {i}: {}",
            &text[..12]
        );
    }
    go.send(()).expect("the owner waits");
    let (_, lone, ok, _) = report
        .recv_timeout(WAIT)
        .expect("the large send and close returned");
    assert!(ok, "{lone}");
    let (op, data) = peer.read_message();
    assert_eq!((op, data.len()), (0x2, 2 << 20));
    assert!(data.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    assert_eq!(
        peer.read_close().close_code(),
        Some(4001),
        "the close comes after it"
    );
    peer.close(4001, "");
    // The server ends the TCP stream: the client's closing handshake ends.
    drop(peer);
    owner.join().expect("the owner's thread");
}
