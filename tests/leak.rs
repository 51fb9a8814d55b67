//! No leak in the natural pattern: a server written the README's way (the
//! AIR pattern of `examples/echo_server.rs`: a map of open `WebSocket`s,
//! listeners that reply through the event's target) accepts 2 000
//! connections, and once they have closed its threads and its heap are
//! back to their baseline. (Its own test binary with one test, so that the
//! thread count and the heap measured by the counting allocator below are
//! this test's alone.) The same holds for listeners that capture their
//! `WebSocket` through `downgrade()`.

mod support;

use airws::{
    Event, EventDispatcher, ServerSocket, ServerSocketConnectEvent, WebSocket, WebSocketEvent,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use support::*;

/// The heap in use, counted by this binary's global allocator.
#[path = "support/counting.rs"]
mod counting;
use counting::LIVE;

/// The server of the README, as `examples/echo_server.rs` has it.
#[allow(dead_code)]
#[path = "../examples/echo_server.rs"]
mod echo_server;

const CONNECTIONS: usize = 2_000;
/// Connections open at once.
const BATCH: usize = 100;

/// `n` clients, `BATCH` at a time: each sends a message, checks its echo,
/// closes, and sees the server end the connection.
fn run_clients(port: u16, n: usize) {
    let mut done = 0;
    while done < n {
        let batch = BATCH.min(n - done);
        let clients: Vec<_> = (0..batch)
            .map(|i| {
                std::thread::Builder::new()
                    .stack_size(128 << 10)
                    .spawn(move || {
                        let (mut peer, _) = raw_client(port, "");
                        let text = format!("message {i}");
                        peer.text(&text);
                        let (op, data) = peer.read_message();
                        assert_eq!((op, data), (OP_TEXT, text.into_bytes()));
                        peer.close(1000, "");
                        assert_eq!(peer.read_close().close_code(), Some(1000));
                        assert!(peer.sees_eof(), "the server closes TCP");
                    })
                    .expect("spawn a client")
            })
            .collect();
        for c in clients {
            c.join().expect("a client failed");
        }
        done += batch;
    }
}

/// The same server with listeners that capture their `WebSocket`, as AS3
/// code captures its `ws` variable: through `downgrade()`, a handle that
/// does not keep it alive.
fn listen_capturing() -> ServerSocket {
    let clients: Arc<Mutex<HashMap<u64, WebSocket>>> = Arc::default();
    let next_id = AtomicU64::new(0);
    let server = ServerSocket::new();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::new();
        let me = ws.downgrade();
        ws.add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
            if let Some(ws) = me.upgrade() {
                ws.send_message(e.format(), e.data()).ok();
            }
        });
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let list = clients.clone();
        ws.add_event_listener(Event::CLOSE, move |_e: &Event| {
            list.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        });
        clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, ws.clone());
        ws.start_server(e.socket()).expect("start_server");
    });
    server.bind(0, "127.0.0.1").expect("bind");
    server.listen().expect("listen");
    server
}

/// Runs `CONNECTIONS` connections through the server on `port` and
/// asserts that its threads and the heap come back to where they were.
fn returns_to_baseline(port: u16, which: &str) {
    // A first round brings in what the process keeps once (thread-locals of
    // the standard library, the allocator's and the resolver's state).
    run_clients(port, BATCH);
    let threads = library_threads().len();
    assert!(
        eventually(|| library_threads().len() <= threads),
        "{which}: threads after the first round"
    );
    let heap = LIVE.load(Ordering::SeqCst);

    run_clients(port, CONNECTIONS);

    let back = eventually(|| library_threads().len() <= threads);
    assert!(
        back,
        "{which}: {} library threads after {CONNECTIONS} closed connections, {threads} before",
        library_threads().len()
    );
    // Every connection's thread has ended; what is left of the heap must be
    // what was there before, give or take a little (a leak of 100 bytes per
    // connection would be 200 000).
    let mut grown = 0;
    let settled = eventually(|| {
        grown = LIVE.load(Ordering::SeqCst) - heap;
        grown < 16 << 10
    });
    assert!(
        settled,
        "{which}: the heap grew by {grown} bytes over {CONNECTIONS} closed connections"
    );
}

#[test]
fn a_server_written_the_readme_way_returns_to_its_baseline_after_2000_connections() {
    let server = echo_server::listen("127.0.0.1:0".parse().expect("address")).expect("listen");
    returns_to_baseline(server.local_port(), "replies through the target");
    server.close();
    // One test, run after the other: the measures are the process's.
    let server = listen_capturing();
    returns_to_baseline(
        server.local_port(),
        "replies through a captured downgrade()",
    );
    server.close();
}
