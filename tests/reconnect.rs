//! Reconnect with backoff, over loopback sockets: a client whose server
//! restarts on the same port comes back and its later messages arrive;
//! failures that retrying cannot fix end it with the usual events; a send
//! while it waits is refused; `close()` during a wait ends it at once.

mod support;

use airws::proto::backoff::Backoff;
use airws::{
    Config, Error, Event, EventDispatcher, ReconnectEvent, ServerSocket, ServerSocketConnectEvent,
    WebSocket, WebSocketEvent,
};
use std::io::{Read, Write};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use support::*;

/// What the client reported.
#[derive(Debug, Clone, PartialEq)]
enum Rep {
    Connect,
    Reconnecting(u32),
    Text(String),
    Close(i32),
}

fn client(backoff: Backoff) -> (WebSocket, mpsc::Receiver<Rep>) {
    let ws = WebSocket::with_config(Config::default().reconnect(backoff));
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    let send = move |r: Rep| {
        let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(r);
    };
    let s = send.clone();
    ws.add_event_listener(Event::CONNECT, move |_e: &Event| s(Rep::Connect));
    let s = send.clone();
    ws.add_event_listener(ReconnectEvent::RECONNECTING, move |e: &Event| {
        assert!(e.error().is_some(), "the cause");
        s(Rep::Reconnecting(e.reconnect_attempt()));
    });
    let s = send.clone();
    ws.add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
        s(Rep::Text(e.string_data().unwrap_or("").to_owned()))
    });
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        send(Rep::Close(
            e.target::<WebSocket>().map_or(-1, |w| w.close_reason()),
        ))
    });
    (ws, rx)
}

fn fast() -> Backoff {
    Backoff::default()
        .delays(Duration::from_millis(20), Duration::from_millis(100))
        .expect("valid delays")
}

fn rep(rx: &mpsc::Receiver<Rep>) -> Rep {
    rx.recv_timeout(WAIT).expect("a report within the wait")
}

/// An echo server on `port` (0: any); returns it, its port, and its
/// `WebSocket`s.
fn echo_on(port: u16) -> (ServerSocket, u16, Arc<Mutex<Vec<WebSocket>>>) {
    let sockets: Arc<Mutex<Vec<WebSocket>>> = Arc::default();
    let kept = sockets.clone();
    let server = ServerSocket::new();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::new();
        ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
            if let Some(ws) = e.target::<WebSocket>() {
                let _ = ws.send_message(e.format(), e.data());
            }
        });
        if ws.start_server(e.socket()).is_ok() {
            kept.lock().unwrap_or_else(|p| p.into_inner()).push(ws);
        }
    });
    server.bind(port, "127.0.0.1").expect("bind");
    server.listen().expect("listen");
    let port = server.local_port();
    (server, port, sockets)
}

#[test]
fn a_client_comes_back_after_its_server_restarts_and_later_messages_arrive() {
    let (server, port, sockets) = echo_on(0);
    let (ws, rx) = client(fast());
    ws.connect(&format!("ws://127.0.0.1:{port}/"), &[])
        .expect("connect");
    assert_eq!(rep(&rx), Rep::Connect);
    ws.send_message(WebSocket::FMT_TEXT, "before")
        .expect("send");
    assert_eq!(rep(&rx), Rep::Text("before".into()));

    // The server goes away (1012: service restart) and stays away a while.
    server.close();
    for s in sockets.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        let _ = s.close(1012);
    }
    assert_eq!(rep(&rx), Rep::Reconnecting(1));
    // Refused while nobody listens: the attempts go on, counted.
    assert_eq!(rep(&rx), Rep::Reconnecting(2));
    assert!(matches!(
        ws.send_message(WebSocket::FMT_TEXT, "while away"),
        Err(Error::NotOpen { .. })
    ));

    // Back on the same port: connected again, with the same listeners.
    let (_server, _, _sockets) = echo_on(port);
    let back = loop {
        match rep(&rx) {
            Rep::Reconnecting(_) => continue,
            other => break other,
        }
    };
    assert_eq!(back, Rep::Connect);
    for i in 0..20 {
        ws.send_message(WebSocket::FMT_TEXT, format!("after {i}"))
            .expect("send");
    }
    for i in 0..20 {
        assert_eq!(rep(&rx), Rep::Text(format!("after {i}")));
    }
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(WAIT));
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "no close event after close()"
    );
}

/// A server that answers every upgrade with `status`.
fn refusing(status: u16) -> (u16, mpsc::Receiver<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, asked) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..50 {
            let Ok((mut s, _)) = listener.accept() else {
                break;
            };
            let _ = s.set_read_timeout(Some(WAIT));
            let _ = read_head(&mut s);
            let _ = write!(
                s,
                "HTTP/1.1 {status} Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let mut rest = [0u8; 64];
            let _ = s.read(&mut rest);
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    (port, asked)
}

#[test]
fn an_upgrade_refused_with_403_is_not_tried_again_but_503_is() {
    let (port, asked) = refusing(403);
    let (ws, rx) = client(fast());
    ws.connect(&format!("ws://127.0.0.1:{port}/"), &[])
        .expect("connect");
    assert_eq!(rep(&rx), Rep::Close(1006), "refused, as without reconnect");
    asked.recv_timeout(WAIT).expect("one request");
    assert!(
        asked.recv_timeout(Duration::from_millis(300)).is_err(),
        "not asked again"
    );

    let (port, asked) = refusing(503);
    let (ws, rx) = client(fast());
    ws.connect(&format!("ws://127.0.0.1:{port}/"), &[])
        .expect("connect");
    assert_eq!(rep(&rx), Rep::Reconnecting(1));
    assert_eq!(rep(&rx), Rep::Reconnecting(2));
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(WAIT));
    drop(asked);
}

#[test]
fn a_close_that_retrying_cannot_fix_ends_it_and_attempts_run_out() {
    // 1008 from the server: not tried again.
    let raw = RawServer::new();
    let (ws, rx) = client(fast());
    ws.connect(&raw.url(), &[]).expect("connect");
    let (mut peer, _) = raw.accept();
    assert_eq!(rep(&rx), Rep::Connect);
    peer.close(1008, "policy");
    assert_eq!(peer.read_close().close_code(), Some(1008));
    drop(peer);
    assert_eq!(rep(&rx), Rep::Close(1008));

    // Two attempts at most, against nobody: the last failure's events.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (ws2, rx2) = client(fast().max_attempts(Some(2)));
    ws2.connect(&format!("ws://127.0.0.1:{port}/"), &[])
        .expect("connect");
    assert_eq!(rep(&rx2), Rep::Reconnecting(1));
    assert_eq!(rep(&rx2), Rep::Reconnecting(2));
    // The third failure is the last: an ioError (not reported here) and
    // nothing more; the WebSocket is closed.
    assert!(ws2.wait_closed(WAIT));
    assert!(!ws2.connected());
    drop(ws);
}

#[test]
fn close_during_a_wait_ends_it_at_once() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    // Waits of a minute: only close() can end this one within the wait.
    let slow = Backoff::default()
        .delays(Duration::from_secs(60), Duration::from_secs(60))
        .expect("valid delays")
        .jitter(0.0)
        .expect("valid jitter");
    let (ws, rx) = client(slow);
    ws.connect(&format!("ws://127.0.0.1:{port}/"), &[])
        .expect("connect");
    assert_eq!(rep(&rx), Rep::Reconnecting(1));
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(WAIT), "the wait ended with close()");
    // Dropping the last handle during a wait ends it too.
    let (ws, rx) = client(slow);
    ws.connect(&format!("ws://127.0.0.1:{port}/"), &[])
        .expect("connect");
    assert_eq!(rep(&rx), Rep::Reconnecting(1));
    let weak = ws.downgrade();
    drop(ws);
    // (The dispatch that reported the attempt may hold its target a moment
    // longer.)
    assert!(eventually(|| weak.upgrade().is_none()));
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
}
