//! Nothing lost, nothing interleaved: every message sent before `close()`
//! reaches the peer before the close frame; every message received before
//! the peer's close frame reaches the listeners before `close`; concurrent
//! senders never interleave the frames of two messages.

mod support;

use airws::{Config, WebSocket};
use std::sync::{Arc, Barrier};
use support::*;

#[test]
fn ten_thousand_messages_sent_before_close_all_arrive_before_the_close_frame() {
    let (ws, _rx, mut peer) = client_of_raw_peer();
    // The raw server reads on its own thread while we send.
    let reading = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(10_000);
        loop {
            let f = peer.read();
            if f.opcode == OP_CLOSE {
                peer.close(f.close_code().unwrap_or(1000), "");
                return (got, f.close_code());
            }
            assert!(f.fin);
            got.push(String::from_utf8(f.payload).expect("UTF-8"));
        }
    });
    for i in 0..10_000 {
        ws.send_message(WebSocket::FMT_TEXT, format!("message {i}"))
            .expect("send");
    }
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    let (got, code) = reading.join().expect("reader");
    assert_eq!(code, Some(1000));
    assert_eq!(got.len(), 10_000);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m, &format!("message {i}"));
    }
    assert!(ws.wait_closed(WAIT));
}

#[test]
fn ten_thousand_messages_from_a_server_before_close_all_arrive() {
    let (server, rx) = serve_websockets(Config::default);
    let (_client, events) = open_client(&format!("ws://127.0.0.1:{}/", server.local_port()), &[]);
    let ws = rx.recv_timeout(WAIT).expect("server side");
    for i in 0..10_000 {
        ws.send_message(WebSocket::FMT_BINARY, (i as u32).to_be_bytes().to_vec())
            .expect("send");
    }
    ws.close(4000).expect("close");
    for i in 0..10_000u32 {
        assert_eq!(next(&events), Seen::Binary(i.to_be_bytes().to_vec()));
    }
    assert_eq!(next(&events), Seen::Close(4000));
    server.close();
}

#[test]
fn messages_received_before_a_close_frame_reach_listeners_before_close() {
    let (_ws, rx, mut peer) = client_of_raw_peer();
    // 1000 messages and the close frame in one write: the close must not
    // overtake any of them.
    let mut burst = Vec::new();
    for i in 0..1000 {
        burst.extend(RawFrame::new(OP_TEXT, format!("m{i}")).build());
    }
    burst.extend(RawFrame::new(OP_CLOSE, close_payload(4005, "done")).build());
    peer.send_raw(&burst);
    for i in 0..1000 {
        assert_eq!(next(&rx), Seen::Text(format!("m{i}")));
    }
    assert_eq!(next(&rx), Seen::Close(4005));
    assert_eq!(peer.read_close().close_code(), Some(4005));
}

#[test]
fn concurrent_senders_on_eight_threads_never_interleave_frames() {
    let (ws, _rx, mut peer) = client_of_raw_peer();
    const THREADS: u8 = 8;
    const EACH: usize = 50;
    let reading = std::thread::spawn(move || {
        let mut per_thread = vec![0usize; THREADS as usize];
        for _ in 0..THREADS as usize * EACH {
            let (op, data) = peer.read_message();
            assert_eq!(op, OP_BINARY);
            // Each message is one thread's id repeated: a message whose
            // bytes differ was interleaved with another.
            let id = data[0];
            assert!(
                data.iter().all(|b| *b == id),
                "a message mixes bytes of two senders"
            );
            let expected_len = 1000 + (per_thread[id as usize] * 7919) % 200_000;
            assert_eq!(data.len(), expected_len, "thread {id}'s message");
            per_thread[id as usize] += 1;
        }
        per_thread
    });
    let start = Arc::new(Barrier::new(THREADS as usize));
    let senders: Vec<_> = (0..THREADS)
        .map(|id| {
            let ws = ws.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                for n in 0..EACH {
                    // Sizes across all three length forms, up to ~200 KiB.
                    let len = 1000 + (n * 7919) % 200_000;
                    ws.send_message(WebSocket::FMT_BINARY, vec![id; len])
                        .expect("send");
                }
            })
        })
        .collect();
    for s in senders {
        s.join().expect("sender");
    }
    let per_thread = reading.join().expect("reader");
    assert!(per_thread.iter().all(|n| *n == EACH), "{per_thread:?}");
}

#[test]
fn large_messages_sent_both_ways_at_once_from_other_threads_both_arrive() {
    // Each end sends 12 MiB while the other does the same: each read loop
    // must keep reading (and not wait for its own end's writer), or both
    // writes stall until the write timeout.
    let (server, rx) = serve_websockets(Config::default);
    let (client, events) = open_client(&format!("ws://127.0.0.1:{}/", server.local_port()), &[]);
    let server_ws = rx.recv_timeout(WAIT).expect("server side");
    let server_events = record(&server_ws);
    let big = |b: u8| vec![b; 12 << 20];
    let senders: Vec<_> = [(client.clone(), 1u8), (server_ws.clone(), 2u8)]
        .into_iter()
        .map(|(ws, b)| {
            std::thread::spawn(move || ws.send_message(WebSocket::FMT_BINARY, big(b)).is_ok())
        })
        .collect();
    assert_eq!(next(&events), Seen::Binary(big(2)));
    assert_eq!(next(&server_events), Seen::Binary(big(1)));
    for s in senders {
        assert!(s.join().expect("sender"), "a send failed");
    }
    server.close();
}
