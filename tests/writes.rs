//! Large sends and what may go out between their frames, over real loopback
//! sockets: a data message larger than the library's fragment size goes out
//! as fragments, a pong or a close frame may go out between two of them
//! (RFC 6455 §5.4) instead of waiting behind the whole message, and whole
//! messages from concurrent senders never interleave. Each test runs twice:
//! with our `WebSocket` as the server (a raw client reads its frames) and as
//! the client (a raw server reads them).
//!
//! The fragment size itself is the library's choice: the tests only rely on
//! it being at most 1 MiB, so that a message of several MiB is fragmented.

mod support;

use airws::{Config, Event, EventDispatcher, ServerSocket, WebSocket, WebSocketEvent};
use std::net::Shutdown;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// The large message: far above any fragment size, and far above what the
/// loopback socket buffers of both ends hold together, so that its send
/// cannot end while the peer does not read.
const LARGE: usize = 64 << 20;

/// Which end of the connection our `WebSocket` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// Our `WebSocket` and the raw peer at the other end of its connection.
struct Pair {
    ws: WebSocket,
    peer: RawPeer,
    side: Side,
    /// The listening socket when our `WebSocket` is the server, kept until
    /// the test ends.
    _server: Option<ServerSocket>,
}

impl Pair {
    fn open(side: Side, config: fn() -> Config) -> Pair {
        match side {
            Side::Server => {
                let (server, rx) = serve_websockets(config);
                let (peer, _) = raw_client(server.local_port(), "");
                let ws = rx
                    .recv_timeout(WAIT)
                    .expect("the server WebSocket connected");
                Pair {
                    ws,
                    peer,
                    side,
                    _server: Some(server),
                }
            }
            Side::Client => {
                let (ws, _events, peer) = client_of_raw_peer_with(config());
                Pair {
                    ws,
                    peer,
                    side,
                    _server: None,
                }
            }
        }
    }

    /// Whether our `WebSocket` masks its frames (a client does, a server never).
    fn masks(&self) -> bool {
        self.side == Side::Client
    }

    /// Reads the next frame; panics with `waiting_for` on a timeout or EOF.
    fn read(&mut self, waiting_for: &str) -> Frame {
        match self.peer.try_read() {
            Ok(Some(f)) => f,
            Ok(None) => panic!("the connection ended while waiting for {waiting_for}"),
            Err(e) => panic!("no frame came while waiting for {waiting_for}: {e}"),
        }
    }

    /// The peer answers the library's close frame with `code` and the
    /// closing handshake completes: the raw server ends TCP first, or the
    /// library's server does. Returns the frames that still came (there
    /// should be none).
    fn answer_close_and_end(&mut self, code: u16) -> Vec<Frame> {
        self.peer.close(code, "");
        if self.side == Side::Client {
            // The raw server ends the TCP connection first (RFC 6455 §7.1.1).
            let _ = self.peer.stream.shutdown(Shutdown::Write);
        }
        let mut after = Vec::new();
        loop {
            assert!(after.len() < 10_000, "10 000 frames after the close frame");
            match self.peer.try_read() {
                Ok(Some(f)) => after.push(f),
                Ok(None) => break,
                // A reset after the close frames still ends the connection.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("the connection did not end after the closing handshake: {e}"),
            }
        }
        // The library ended its side: the peer ends its own too (a library
        // server then need not wait out its close timeout for it).
        let _ = self.peer.stream.shutdown(Shutdown::Write);
        after
    }

    /// Closes from our side with 4000 and completes the closing handshake.
    fn close_cleanly(&mut self) {
        self.ws.close(4000).expect("close");
        let f = self.read("the close frame");
        assert_eq!(
            f.opcode,
            OP_CLOSE,
            "expected the close frame, got {}",
            describe(&f)
        );
        assert_eq!(f.close_code(), Some(4000));
        let after = self.answer_close_and_end(4000);
        assert!(
            after.is_empty(),
            "frames after the close frame: {:?}",
            after.iter().map(describe).collect::<Vec<_>>()
        );
        assert!(self.ws.wait_closed(WAIT), "the connection did not end");
        assert_eq!(self.ws.close_reason(), 4000);
    }
}

/// A frame in a few words (its payload may be megabytes long).
fn describe(f: &Frame) -> String {
    let kind = match f.opcode {
        OP_CONT => "continuation".to_owned(),
        OP_TEXT => "text".to_owned(),
        OP_BINARY => "binary".to_owned(),
        OP_CLOSE => "close".to_owned(),
        OP_PING => "ping".to_owned(),
        OP_PONG => "pong".to_owned(),
        other => format!("opcode {other}"),
    };
    format!(
        "{kind} frame, FIN={}, {}, {} bytes",
        u8::from(f.fin),
        if f.masked { "masked" } else { "unmasked" },
        f.payload.len()
    )
}

/// `len` pseudo-random bytes, different for each `seed`: a byte out of
/// place, lost or repeated shows.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Like [`noise`], as ASCII letters (valid UTF-8 for a text message).
fn text_noise(seed: u64, len: usize) -> Vec<u8> {
    noise(seed, len)
        .into_iter()
        .map(|b| b'a' + b % 26)
        .collect()
}

/// Sends `data` with `format` from another thread; its result arrives on
/// the channel.
fn send_in_background(
    ws: &WebSocket,
    format: u32,
    data: Arc<Vec<u8>>,
) -> Receiver<Result<(), String>> {
    let (tx, rx) = mpsc::channel();
    let ws = ws.clone();
    thread::spawn(move || {
        let result = ws
            .send_message(format, &data[..])
            .map_err(|e| e.to_string());
        let _ = tx.send(result);
    });
    rx
}

// ------------------------------------------------------------ pongs

const PING: &[u8] = b"ping between the fragments";

/// Another thread sends 64 MiB; after its first frame the peer pings, and
/// the pong must come before the message's final frame.
fn pong_between_fragments(side: Side) {
    let mut pair = Pair::open(side, Config::default);
    let masks = pair.masks();
    let data = Arc::new(noise(1, LARGE));
    let sent = send_in_background(&pair.ws, WebSocket::FMT_BINARY, data.clone());

    let first = pair.read("the first frame of the 64 MiB message");
    assert_eq!(first.opcode, OP_BINARY, "first frame: {}", describe(&first));
    assert_eq!(first.masked, masks, "masking of the first frame");
    let mut frames = 1usize;
    let mut data_frames = 1usize;
    // Where the message's final frame and the pong came, counted in frames.
    let mut final_at = first.fin.then_some(0);
    let mut pong_at = None;
    let mut received = first.payload;

    pair.peer.send(RawFrame::new(OP_PING, PING));
    let deadline = Instant::now() + 2 * WAIT;
    while final_at.is_none() || pong_at.is_none() {
        assert!(
            Instant::now() < deadline && frames < 100_000,
            "after {frames} frames in {:?}: final frame {final_at:?}, pong {pong_at:?}",
            2 * WAIT
        );
        let f = pair.read(if pong_at.is_none() {
            "the pong"
        } else {
            "the rest of the 64 MiB message"
        });
        match f.opcode {
            OP_PONG => {
                assert_eq!(f.payload, PING, "the pong carries the ping's payload");
                assert_eq!(f.masked, masks, "masking of the pong");
                assert!(pong_at.is_none(), "a second pong");
                pong_at = Some(frames);
            }
            OP_CONT => {
                assert!(
                    final_at.is_none(),
                    "a continuation after the final frame: {}",
                    describe(&f)
                );
                assert_eq!(f.masked, masks, "masking of data frame {data_frames}");
                received.extend_from_slice(&f.payload);
                data_frames += 1;
                if f.fin {
                    final_at = Some(frames);
                }
            }
            _ => panic!("unexpected frame {frames}: {}", describe(&f)),
        }
        frames += 1;
    }
    let (final_at, pong_at) = (final_at.unwrap_or(0), pong_at.unwrap_or(0));
    assert!(
        pong_at < final_at,
        "the pong (frame {pong_at}) came after the data message's final frame (frame \
         {final_at}, the last of {data_frames} data frames): it waited behind the whole send"
    );
    assert_eq!(received.len(), LARGE, "length of the reassembled message");
    assert!(
        received == *data,
        "the reassembled message differs from the bytes sent"
    );
    let result = sent
        .recv_timeout(WAIT)
        .expect("send_message returned once the peer read the message");
    assert_eq!(result, Ok(()), "the sender's send_message");
    pair.close_cleanly();
}

// ------------------------------------------------------------ close

const CLOSE_TIMEOUT: Duration = Duration::from_secs(6);

fn six_second_close() -> Config {
    Config::default().close_timeout(CLOSE_TIMEOUT)
}

/// How much of the first frame's payload the peer reads before it stops.
const PEEK: u64 = 4 << 10;

/// Another thread sends 64 MiB to a peer that stopped reading; `close()`
/// returns at once, and its frame follows the frame being written.
fn close_during_large_send(side: Side) {
    let mut pair = Pair::open(side, six_second_close);
    let masks = pair.masks();
    let data = Arc::new(noise(2, LARGE));
    let sent = send_in_background(&pair.ws, WebSocket::FMT_BINARY, data.clone());

    // The first frame's header and a little of its payload: the send is
    // under way. Then the peer stops reading. The 64 MiB do not fit in the
    // socket buffers, so the send cannot end until the peer reads again.
    let first = pair.peer.read_head();
    assert_eq!(first.opcode, OP_BINARY, "first frame: {first:?}");
    assert_eq!(first.masked(), masks, "masking of the first frame");
    let peek = PEEK.min(first.len);
    let mut received = pair.peer.read_payload(&first, 0, peek as usize);
    match sent.try_recv() {
        Err(TryRecvError::Empty) => {}
        other => {
            panic!("the 64 MiB send ended while the peer had read {peek} bytes of it: {other:?}")
        }
    }

    // close() from another thread: it must not wait for the send.
    let (tx, closed) = mpsc::channel();
    let closer = pair.ws.clone();
    thread::spawn(move || {
        let started = Instant::now();
        let result = closer.close(4000).map_err(|e| e.to_string());
        let _ = tx.send((result, started.elapsed()));
    });
    let half = CLOSE_TIMEOUT / 2;
    match closed.recv_timeout(half) {
        Ok((result, took)) => {
            assert_eq!(result, Ok(()), "close(4000)");
            assert!(took < half, "close(4000) took {took:?}");
        }
        Err(_) => panic!(
            "close(4000) did not return within {half:?} (half the close timeout) while \
             another thread's send was in progress: it waits behind the send"
        ),
    }

    // The peer reads again: the rest of the frame being written, then the
    // data frames already on their way, then the close frame.
    received.extend(
        pair.peer
            .read_payload(&first, peek, (first.len - peek) as usize),
    );
    let mut fin = first.fin;
    let mut data_frames = 1usize;
    let close = loop {
        assert!(
            data_frames < 100_000,
            "no close frame after {data_frames} data frames"
        );
        let f = pair.read("the close frame after the current fragment");
        match f.opcode {
            OP_CLOSE => break f,
            OP_CONT if !fin => {
                assert_eq!(f.masked, masks, "masking of data frame {data_frames}");
                received.extend_from_slice(&f.payload);
                fin = f.fin;
                data_frames += 1;
            }
            _ => panic!(
                "unexpected frame after {data_frames} data frames (message complete: {fin}): {}",
                describe(&f)
            ),
        }
    };
    assert_eq!(close.close_code(), Some(4000), "the close frame's code");
    assert_eq!(close.masked, masks, "masking of the close frame");
    assert!(
        !fin,
        "the whole 64 MiB message went out before the close frame ({data_frames} data frames)"
    );
    assert!(
        received[..] == data[..received.len()],
        "the {} bytes before the close frame are not the start of the message sent",
        received.len()
    );
    let result = sent
        .recv_timeout(WAIT)
        .expect("the interrupted send_message returned");
    assert!(result.is_err(), "the interrupted send_message returned Ok");

    // The peer answers; no data frame follows the close frame.
    let after = pair.answer_close_and_end(4000);
    assert!(
        after.is_empty(),
        "frames after the close frame: {:?}",
        after.iter().map(describe).collect::<Vec<_>>()
    );
    assert!(pair.ws.wait_closed(WAIT), "the connection did not end");
    assert_eq!(pair.ws.close_reason(), 4000);
}

fn one_second_close() -> Config {
    Config::default().close_timeout(Duration::from_secs(1))
}

/// Another thread's 64 MiB send is stuck on a peer that stopped reading;
/// a listener on the connection's own thread calls `close()`. It returns at
/// once (its frame waits behind the stuck frame), and when the close timeout
/// passes the connection ends: the read loop armed its read with the close
/// deadline, and the stuck send fails.
fn close_from_a_listener_during_a_stuck_send(side: Side) {
    let mut pair = Pair::open(side, one_second_close);
    let (tx, closed) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    pair.ws
        .add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
            if e.string_data() != Some("close now") {
                return;
            }
            let Some(ws) = e.target::<WebSocket>() else {
                return;
            };
            let started = Instant::now();
            let result = ws.close(4001).map_err(|e| e.to_string());
            let _ = tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send((result, started.elapsed()));
        });
    let data = Arc::new(noise(3, LARGE));
    let sent = send_in_background(&pair.ws, WebSocket::FMT_BINARY, data);
    let first = pair.peer.read_head();
    assert_eq!(first.opcode, OP_BINARY, "first frame: {first:?}");
    // The peer reads nothing more, and asks for the close.
    pair.peer.text("close now");
    let (result, took) = closed
        .recv_timeout(WAIT)
        .expect("the listener called close(4001)");
    assert_eq!(result, Ok(()), "close(4001) in the listener");
    assert!(
        took < Duration::from_millis(500),
        "close(4001) in the listener took {took:?}: it waited behind the stuck send"
    );
    assert!(
        pair.ws.wait_closed(WAIT),
        "the connection did not end after its close timeout"
    );
    assert_eq!(pair.ws.close_reason(), 4001, "no answer came: our code");
    let result = sent
        .recv_timeout(WAIT)
        .expect("the stuck send_message returned");
    assert!(result.is_err(), "the stuck send_message returned Ok");
}

// ------------------------------------------------------------ concurrent senders

const SENDERS: usize = 3;
const MESSAGES: usize = 4;
const MESSAGE_SIZE: usize = 3 << 20;
/// The peer pings after every third data frame it reads, at most this often.
const MAX_PINGS: usize = 32;

/// A message as sent: its opcode and its bytes.
type Message = (u8, Vec<u8>);

/// What sender `s` sends as its message `i`: text and binary in turn, each
/// with its own contents.
fn message_of(s: usize, i: usize) -> Message {
    let seed = 100 + (s * MESSAGES + i) as u64;
    if (s + i) % 2 == 0 {
        (OP_TEXT, text_noise(seed, MESSAGE_SIZE))
    } else {
        (OP_BINARY, noise(seed, MESSAGE_SIZE))
    }
}

/// A message the peer is reassembling.
struct InProgress {
    opcode: u8,
    data: Vec<u8>,
    frames: usize,
}

/// Three threads send four 3 MiB messages each at once, while the peer
/// pings; the peer checks every frame it reads.
fn concurrent_sends(side: Side) {
    let mut pair = Pair::open(side, Config::default);
    let masks = pair.masks();
    let messages: Arc<Vec<Vec<Message>>> = Arc::new(
        (0..SENDERS)
            .map(|s| (0..MESSAGES).map(|i| message_of(s, i)).collect())
            .collect(),
    );
    let start = Arc::new(Barrier::new(SENDERS));
    let results: Vec<Receiver<Result<(), String>>> = (0..SENDERS)
        .map(|s| {
            let (tx, rx) = mpsc::channel();
            let (ws, messages, start) = (pair.ws.clone(), messages.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let result = messages[s].iter().try_for_each(|(opcode, data)| {
                    let format = if *opcode == OP_TEXT {
                        WebSocket::FMT_TEXT
                    } else {
                        WebSocket::FMT_BINARY
                    };
                    ws.send_message(format, &data[..])
                        .map_err(|e| e.to_string())
                });
                let _ = tx.send(result);
            });
            rx
        })
        .collect();

    let total = SENDERS * MESSAGES;
    // How many messages of each sender arrived (each sender's arrive in order).
    let mut next_of = [0usize; SENDERS];
    let mut complete = 0usize;
    let mut current: Option<InProgress> = None;
    let (mut data_frames, mut pings, mut pongs) = (0usize, 0usize, 0usize);
    let deadline = Instant::now() + 2 * WAIT;
    for n in 0.. {
        if complete == total && pongs == pings {
            break;
        }
        assert!(
            Instant::now() < deadline && n < 1_000_000,
            "after {n} frames in {:?}: {complete} of {total} messages, {pongs} of {pings} pongs",
            2 * WAIT
        );
        let f = pair.read("the next frame of the concurrent sends");
        match f.opcode {
            OP_PONG => {
                assert_eq!(
                    f.payload,
                    format!("ping {pongs}").into_bytes(),
                    "pongs answer the pings in order"
                );
                assert_eq!(f.masked, masks, "masking of pong {pongs}");
                pongs += 1;
                continue;
            }
            OP_TEXT | OP_BINARY => {
                if let Some(cur) = &current {
                    panic!(
                        "frame {n} ({}) starts a new message while the message in progress \
                         ({} bytes in {} frames so far) has not ended: messages interleave",
                        describe(&f),
                        cur.data.len(),
                        cur.frames
                    );
                }
                current = Some(InProgress {
                    opcode: f.opcode,
                    data: Vec::with_capacity(MESSAGE_SIZE),
                    frames: 0,
                });
            }
            OP_CONT => assert!(
                current.is_some(),
                "frame {n} is a continuation outside any message: {}",
                describe(&f)
            ),
            _ => panic!("unexpected frame {n}: {}", describe(&f)),
        }
        assert_eq!(f.masked, masks, "masking of data frame {data_frames}");
        data_frames += 1;
        let cur = current.as_mut().expect("a message in progress");
        cur.data.extend_from_slice(&f.payload);
        cur.frames += 1;
        if f.fin {
            let msg = current.take().expect("a message in progress");
            let found = (0..SENDERS).find_map(|s| {
                (0..MESSAGES)
                    .find(|&i| messages[s][i].0 == msg.opcode && messages[s][i].1 == msg.data)
                    .map(|i| (s, i))
            });
            let Some((s, i)) = found else {
                panic!(
                    "a message of {} bytes (opcode {}, {} frames) is none of the messages sent",
                    msg.data.len(),
                    msg.opcode,
                    msg.frames
                );
            };
            assert!(i >= next_of[s], "message {i} of sender {s} arrived twice");
            assert_eq!(
                i, next_of[s],
                "sender {s}'s messages arrive in the order sent"
            );
            // 3 MiB is above any fragment size the library may choose.
            assert!(
                msg.frames >= 2,
                "message {i} of sender {s} ({} bytes) went out as a single frame, not in fragments",
                msg.data.len()
            );
            next_of[s] += 1;
            complete += 1;
        }
        if data_frames % 3 == 1 && pings < MAX_PINGS && complete < total {
            pair.peer
                .send(RawFrame::new(OP_PING, format!("ping {pings}")));
            pings += 1;
        }
    }
    assert!(current.is_none(), "a message is still in progress");
    assert_eq!(next_of, [MESSAGES; SENDERS], "every message arrived once");
    for (s, result) in results.iter().enumerate() {
        let result = result.recv_timeout(WAIT).expect("the sender finished");
        assert_eq!(result, Ok(()), "sender {s}'s sends");
    }
    pair.close_cleanly();
}

// ------------------------------------------------------------ the two roles

/// Our `WebSocket` as the server, read by a raw client.
mod server {
    use super::*;

    #[test]
    fn pong_goes_out_between_the_fragments_of_a_64_mib_send() {
        pong_between_fragments(Side::Server);
    }

    #[test]
    fn close_during_a_large_send_goes_out_after_the_current_fragment() {
        close_during_large_send(Side::Server);
    }

    #[test]
    fn close_from_a_listener_during_a_stuck_send_ends_at_the_close_timeout() {
        close_from_a_listener_during_a_stuck_send(Side::Server);
    }

    #[test]
    fn concurrent_large_sends_never_interleave() {
        concurrent_sends(Side::Server);
    }
}

/// Our `WebSocket` as the client, read by a raw server.
mod client {
    use super::*;

    #[test]
    fn pong_goes_out_between_the_fragments_of_a_64_mib_send() {
        pong_between_fragments(Side::Client);
    }

    #[test]
    fn close_during_a_large_send_goes_out_after_the_current_fragment() {
        close_during_large_send(Side::Client);
    }

    #[test]
    fn close_from_a_listener_during_a_stuck_send_ends_at_the_close_timeout() {
        close_from_a_listener_during_a_stuck_send(Side::Client);
    }

    #[test]
    fn concurrent_large_sends_never_interleave() {
        concurrent_sends(Side::Client);
    }
}
