//! Buffers that shrink back: connections that received a burst of small
//! messages and one large one, then went quiet, return their read buffer,
//! batching buffer and kept message buffers, so that the heap they hold
//! comes back near where it was before the burst. (Its own test binary with
//! one test, so that the heap measured by the counting allocator below and
//! the resident memory are this test's alone.)

mod support;

use airws::Config;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;

/// The heap in use, counted by this binary's global allocator.
#[path = "support/counting.rs"]
mod counting;
use counting::LIVE;

/// The README's server.
#[allow(dead_code)]
#[path = "../examples/echo_server.rs"]
mod echo_server;

const CONNECTIONS: usize = 50;

#[test]
fn quiet_connections_give_back_what_a_burst_grew() {
    // Longer than the burst takes, even on a slow machine.
    let quiet = Duration::from_secs(1);
    let server = echo_server::listen_with(
        "127.0.0.1:0".parse().expect("address"),
        Config::default().release_buffers_after(quiet),
    )
    .expect("listen");
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
