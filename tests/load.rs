//! Load: 500 concurrent connections to one echo server, 200 messages each,
//! every echo checked for content and order, one file descriptor per
//! server connection; afterwards the server's threads are back to their
//! baseline. (Its own test binary, so that the thread and descriptor counts
//! are this test's alone.)

mod support;

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;
use support::*;

const CONNECTIONS: usize = 500;
const MESSAGES: usize = 200;

/// The echo server a user would write: `examples/echo_server.rs` itself.
#[allow(dead_code)]
#[path = "../examples/echo_server.rs"]
mod echo_server;

fn echo_server() -> airws::ServerSocket {
    echo_server::listen("127.0.0.1:0".parse().expect("address")).expect("listen")
}

/// File descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd (Linux)")
        .count()
}

#[test]
fn five_hundred_connections_two_hundred_messages_each_then_threads_back_to_baseline() {
    let baseline = library_threads().len();
    let fds_before = open_fds();
    let server = echo_server();
    let port = server.local_port();
    let all_connected = Arc::new(Barrier::new(CONNECTIONS + 1));
    let go = Arc::new(Barrier::new(CONNECTIONS + 1));
    let (done_tx, done_rx) = mpsc::channel::<Result<usize, String>>();
    let mut clients = Vec::new();
    for c in 0..CONNECTIONS {
        let all_connected = all_connected.clone();
        let go = go.clone();
        let done = done_tx.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                // Both barriers are passed whatever happens, so that a
                // failed connection cannot leave the test waiting.
                let connected = std::panic::catch_unwind(|| raw_client(port, "").0);
                all_connected.wait();
                go.wait();
                let result = connected.and_then(|mut peer| {
                    std::panic::catch_unwind(move || {
                        for i in 0..MESSAGES {
                            peer.text(&format!("client {c} message {i}"));
                        }
                        for i in 0..MESSAGES {
                            let (op, data) = peer.read_message();
                            assert_eq!(op, OP_TEXT);
                            assert_eq!(data, format!("client {c} message {i}").into_bytes());
                        }
                        peer.close(1000, "");
                        let reply = peer.read_close();
                        assert_eq!(reply.close_code(), Some(1000));
                        assert!(peer.sees_eof(), "the server closes TCP");
                        MESSAGES
                    })
                });
                let _ = done.send(result.map_err(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                }));
            })
            .expect("spawn a client");
        clients.push(spawned);
    }
    drop(done_tx);
    // All 500 connected at once: the server has a thread for each.
    all_connected.wait();
    let peak = library_threads()
        .iter()
        .filter(|n| n.starts_with("airws-connectio"))
        .count();
    let fds = open_fds() - fds_before;
    go.wait();
    // One descriptor per client socket, one per server connection (the
    // reader and the senders share it), the listener and a little slack.
    assert!(
        fds <= 2 * CONNECTIONS + 8,
        "{fds} file descriptors for {CONNECTIONS} connections"
    );
    assert!(
        peak >= CONNECTIONS,
        "only {peak} connection threads with {CONNECTIONS} connections open"
    );

    let mut echoed = 0;
    for _ in 0..CONNECTIONS {
        match done_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(n)) => echoed += n,
            Ok(Err(why)) => panic!("a client failed: {why}"),
            Err(_) => panic!("clients did not finish in time"),
        }
    }
    for c in clients {
        c.join().expect("client thread");
    }
    assert_eq!(echoed, CONNECTIONS * MESSAGES);

    server.close();
    drop(server);
    let back = eventually(|| library_threads().len() <= baseline);
    assert!(
        back,
        "{} library threads left (baseline {baseline})",
        library_threads().len()
    );
}
