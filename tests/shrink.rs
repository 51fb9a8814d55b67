//! Buffers that shrink back: connections that received a burst of small
//! messages and one large one, then went quiet, return their read buffer,
//! batching buffer and kept message buffers, so that the heap they hold
//! comes back near where it was before the burst. (Its own test binary with
//! one test, so that the heap measured by the counting allocator below and
//! the resident memory are this test's alone.)

mod support;

use airws::{
    Config, Event, EventDispatcher, ServerSocket, ServerSocketConnectEvent, WebSocket,
    WebSocketEvent,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// The system allocator, counting the bytes in use.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator with the same
// arguments; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The process's resident memory, in KiB.
fn resident_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// An echo server (the README's) whose connections use `config`.
fn echo_server(config: Config) -> ServerSocket {
    let clients: Arc<Mutex<HashMap<u64, WebSocket>>> = Arc::default();
    let next_id = AtomicU64::new(0);
    let server = ServerSocket::new();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::with_config(config.clone());
        ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
            if let Some(ws) = e.target::<WebSocket>() {
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

const CONNECTIONS: usize = 50;

#[test]
fn quiet_connections_give_back_what_a_burst_grew() {
    // Longer than the burst takes, even on a slow machine.
    let quiet = Duration::from_secs(1);
    let server = echo_server(Config::default().release_buffers_after(quiet));
    let port = server.local_port();
    let mut peers: Vec<RawPeer> = (0..CONNECTIONS).map(|_| raw_client(port, "").0).collect();
    // Each connection's thread is up and idle: the base.
    assert!(eventually(|| library_threads().len() > CONNECTIONS));
    let base_heap = LIVE.load(Ordering::SeqCst);
    let base_rss = resident_kib();

    // A burst on each: 200 small messages back to back, then 256 KiB.
    let large = vec![5u8; 256 << 10];
    for peer in &mut peers {
        for i in 0..200 {
            peer.text(&format!("burst {i}"));
        }
        peer.binary(&large);
    }
    for peer in &mut peers {
        for i in 0..200 {
            assert_eq!(
                peer.read_message(),
                (OP_TEXT, format!("burst {i}").into_bytes())
            );
        }
        assert_eq!(peer.read_message(), (OP_BINARY, large.clone()));
    }
    let grown_heap = LIVE.load(Ordering::SeqCst) - base_heap;
    let grown_rss = resident_kib() - base_rss;

    // Quiet: within the wait, the heap they hold is back near the base.
    let mut left = 0;
    let back = eventually(|| {
        left = LIVE.load(Ordering::SeqCst) - base_heap;
        left < (CONNECTIONS as isize) * (8 << 10)
    });
    let left_rss = resident_kib() - base_rss;
    eprintln!(
        "{CONNECTIONS} connections, beyond their base: after the burst {} KiB of heap each \
         ({} KiB resident), once quiet {} KiB of heap ({} KiB resident)",
        grown_heap / 1024 / CONNECTIONS as isize,
        grown_rss / CONNECTIONS as i64,
        left / 1024 / CONNECTIONS as isize,
        left_rss / CONNECTIONS as i64,
    );
    assert!(
        grown_heap > (CONNECTIONS as isize) * (128 << 10),
        "the burst grew the buffers ({grown_heap} bytes)"
    );
    assert!(
        back,
        "{} KiB per connection still held once quiet",
        left / 1024 / CONNECTIONS as isize
    );
    // They still work after giving their buffers back.
    for peer in &mut peers {
        peer.text("after");
        assert_eq!(peer.read_message(), (OP_TEXT, b"after".to_vec()));
    }
    drop(peers);
    server.close();
}
