//! permessage-deflate (RFC 7692) in the sans-I/O core: two connections
//! wired to each other in memory, and frames the tests write themselves,
//! compressed with `flate2` directly (not through the library's codec).
//! These are the project's own cover of Autobahn's 12.* and 13.* cases:
//! each window size, with and without context takeover, messages from 16
//! bytes to 128 KiB, fragmented or not.
#![cfg(feature = "deflate")]

use airws::proto::budget::MemoryBudget;
use airws::proto::connection::{Connection, Ending, Settings};
use airws::proto::deflate::{client_accept, client_offer, server_accept, Agreement, DeflateConfig};
use airws::proto::frame::{decode_header, OP_BINARY, OP_CONTINUATION, OP_PING, OP_TEXT};
use airws::proto::receiver::{Incoming, Limits};
use airws::proto::Role;
use flate2::{Compress, Compression, FlushCompress};
use std::time::{Duration, Instant};

const LIMITS: Limits = Limits {
    max_frame_size: 1 << 20,
    max_message_size: 4 << 20,
};
/// The bound of every loop that waits for the machines to settle.
const MAX_STEPS: usize = 1000;
const KEY: [u8; 4] = [0x5C, 0x21, 0xA0, 0x7E];

fn settings(limits: Limits, budget: Option<MemoryBudget>) -> Settings {
    Settings {
        limits,
        close_timeout: Duration::from_secs(5),
        idle_timeout: None,
        message_timeout: None,
        budget,
        keepalive: None,
    }
}

/// What the server and the client agree on for these two configurations.
fn agree(server: &DeflateConfig, client: &DeflateConfig) -> Agreement {
    let a = server_accept(server, &[client_offer(client)]).expect("accepted");
    let b = client_accept(client, &[a.response()])
        .expect("a valid response")
        .expect("an agreement");
    assert_eq!(a, b);
    a
}

struct Pair {
    client: Connection,
    server: Connection,
    now: Instant,
    /// Every frame header the client and the server sent, in order.
    from_client: Vec<(u8, u8, bool, usize)>,
    from_server: Vec<(u8, u8, bool, usize)>,
}

fn pair(server: &DeflateConfig, client: &DeflateConfig) -> Pair {
    let now = Instant::now();
    let agreement = agree(server, client);
    let mut c = Connection::new(Role::Client, settings(LIMITS, None), now);
    let mut s = Connection::new(Role::Server, settings(LIMITS, None), now);
    c.set_deflate(&agreement, client);
    s.set_deflate(&agreement, server);
    Pair {
        client: c,
        server: s,
        now,
        from_client: Vec::new(),
        from_server: Vec::new(),
    }
}

/// The headers of the frames in `wire`: (opcode, rsv, fin, payload length).
fn headers(mut wire: &[u8]) -> Vec<(u8, u8, bool, usize)> {
    let mut out = Vec::new();
    while let Ok(Some((h, n))) = decode_header(wire) {
        out.push((h.opcode, h.rsv, h.fin, h.payload_len as usize));
        wire = &wire[n + h.payload_len as usize..];
    }
    out
}

impl Pair {
    /// Moves bytes both ways until nothing is left; returns what each end
    /// received (client's, server's).
    fn settle(&mut self) -> (Vec<Incoming>, Vec<Incoming>) {
        let (mut at_client, mut at_server) = (Vec::new(), Vec::new());
        for _ in 0..MAX_STEPS {
            let mut wire = Vec::new();
            self.client.poll_transmit(&mut wire);
            self.from_client.extend(headers(&wire));
            let moved = !wire.is_empty();
            self.server.receive(&wire, self.now);
            while self.server.has_messages() {
                self.server.poll_messages(self.now, &mut at_server);
            }
            let mut back = Vec::new();
            self.server.poll_transmit(&mut back);
            self.from_server.extend(headers(&back));
            let moved = moved || !back.is_empty();
            self.client.receive(&back, self.now);
            while self.client.has_messages() {
                self.client.poll_messages(self.now, &mut at_client);
            }
            if !moved {
                return (at_client, at_server);
            }
        }
        panic!("the pair did not settle in {MAX_STEPS} steps");
    }
}

/// JSON-like text that compresses 5 to 10 times.
fn json(len: usize, seed: usize) -> String {
    let mut s = String::new();
    let mut i = seed;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user{}\",\"online\":{},\"score\":{}}},",
            i % 37,
            i % 2 == 0,
            (i * 7919) % 1000
        ));
        i += 1;
    }
    s.truncate(len);
    s
}

#[test]
fn messages_round_trip_both_ways_for_every_window_and_takeover() {
    // Autobahn 13.1 to 13.6: window bits and context takeover on each side.
    for bits in [9u8, 12, 15] {
        for no_takeover in [false, true] {
            // Every message compressed, however short.
            let mut client = DeflateConfig::default();
            client.threshold = 0;
            client.client_max_window_bits = bits;
            client.client_no_context_takeover = no_takeover;
            let mut server = DeflateConfig::default();
            server.threshold = 0;
            server.server_max_window_bits = bits;
            server.server_no_context_takeover = no_takeover;
            let mut p = pair(&server, &client);
            // Autobahn's sizes, 16 bytes to 128 KiB.
            for (n, len) in [16usize, 64, 256, 1024, 4096, 16384, 65536, 131072]
                .into_iter()
                .enumerate()
            {
                let msg = json(len, n);
                p.client
                    .send_message(OP_TEXT, msg.as_bytes(), 1 << 20)
                    .unwrap();
                let (_, at_server) = p.settle();
                assert_eq!(
                    at_server,
                    vec![Incoming::Text(msg.clone())],
                    "{bits} {no_takeover} {len}"
                );
                p.server
                    .send_message(OP_BINARY, msg.as_bytes(), 1 << 20)
                    .unwrap();
                let (at_client, _) = p.settle();
                assert_eq!(at_client, vec![Incoming::Binary(msg.into_bytes())]);
            }
            // Each message compressed (RSV1 on its only frame) and smaller.
            for h in p.from_client.iter().chain(&p.from_server) {
                assert_eq!((h.1, h.2), (0b100, true), "{h:?}");
            }
            let last = p.from_client.last().unwrap().3;
            assert!(last * 4 < 131072, "compressed to {last} bytes");
        }
    }
}

#[test]
fn context_takeover_makes_a_repeated_message_smaller_and_its_absence_does_not() {
    let msg = json(2000, 1);
    for (no_takeover, smaller) in [(false, true), (true, false)] {
        let mut client = DeflateConfig::default();
        client.client_no_context_takeover = no_takeover;
        let mut p = pair(&DeflateConfig::default(), &client);
        for _ in 0..3 {
            p.client
                .send_message(OP_TEXT, msg.as_bytes(), 1 << 20)
                .unwrap();
            let (_, got) = p.settle();
            assert_eq!(got, vec![Incoming::Text(msg.clone())]);
        }
        let sizes: Vec<usize> = p.from_client.iter().map(|h| h.3).collect();
        if smaller {
            assert!(sizes[1] * 4 < sizes[0], "{sizes:?}");
        } else {
            assert_eq!(sizes[0], sizes[1], "{sizes:?}");
            assert_eq!(sizes[1], sizes[2], "{sizes:?}");
        }
    }
}

#[test]
fn fragmented_compressed_messages_set_rsv1_on_the_first_frame_only() {
    // Autobahn 12.x.11 to 12.x.18: compressed messages cut into frames.
    let mut p = pair(&DeflateConfig::default(), &DeflateConfig::default());
    let msg = json(131072, 3);
    p.server.send_message(OP_TEXT, msg.as_bytes(), 256).unwrap();
    let (got, _) = p.settle();
    assert_eq!(got, vec![Incoming::Text(msg)]);
    assert!(p.from_server.len() > 2);
    assert_eq!(p.from_server[0].0, OP_TEXT);
    assert_eq!(p.from_server[0].1, 0b100);
    for h in &p.from_server[1..] {
        assert_eq!((h.0, h.1), (OP_CONTINUATION, 0), "{h:?}");
    }
    assert!(p.from_server.last().unwrap().2, "the last frame is final");
}

#[test]
fn small_messages_go_uncompressed_and_an_8_bit_window_never_compresses() {
    let mut p = pair(&DeflateConfig::default(), &DeflateConfig::default());
    p.client.send_message(OP_TEXT, b"short", 1 << 20).unwrap();
    let (_, got) = p.settle();
    assert_eq!(got, vec![Incoming::Text("short".into())]);
    assert_eq!(p.from_client[0].1, 0, "below the threshold: no RSV1");

    // The server limits the client's window to 8 bits, which zlib cannot
    // compress with: the client agrees and sends uncompressed.
    let mut server = DeflateConfig::default();
    server.client_max_window_bits = 8;
    let mut p = pair(&server, &DeflateConfig::default());
    assert_eq!(p.client.deflate_direction().unwrap().window_bits, 8);
    assert!(!p.client.will_compress(100_000));
    let msg = json(10_000, 0);
    p.client
        .send_message(OP_TEXT, msg.as_bytes(), 1 << 20)
        .unwrap();
    let (_, got) = p.settle();
    assert_eq!(got, vec![Incoming::Text(msg)]);
    assert_eq!(p.from_client[0], (OP_TEXT, 0, true, 10_000));
}

// ------------------------------------------------------------ raw frames

/// A frame as a client sends it, with the RSV bits `rsv`, masked.
fn client_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    out
}

/// `data` compressed as RFC 7692 says: raw deflate, a sync flush, the
/// 4-byte tail removed.
fn compress(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1024);
    let mut input = data;
    loop {
        let before = c.total_in();
        c.compress_vec(input, &mut out, FlushCompress::Sync)
            .unwrap();
        input = &input[(c.total_in() - before) as usize..];
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(1024));
    }
    assert_eq!(out[out.len() - 4..], [0, 0, 0xff, 0xff]);
    out.truncate(out.len() - 4);
    out
}

fn raw_deflate() -> Compress {
    Compress::new(Compression::default(), false)
}

/// A server that agreed on permessage-deflate, with `limits` and `budget`.
fn server_with(limits: Limits, budget: Option<MemoryBudget>) -> (Connection, Instant) {
    let now = Instant::now();
    let d = DeflateConfig::default();
    let mut s = Connection::new(Role::Server, settings(limits, budget), now);
    s.set_deflate(&agree(&d, &d), &d);
    (s, now)
}

/// Feeds `wire` to `server`; returns the messages and the close code it
/// fails with, if it does.
fn feed(server: &mut Connection, now: Instant, wire: &[u8]) -> (Vec<Incoming>, Option<u16>) {
    let mut got = Vec::new();
    server.receive(wire, now);
    for _ in 0..MAX_STEPS {
        if !server.has_messages() {
            break;
        }
        server.poll_messages(now, &mut got);
    }
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    server.receive_eof();
    let code = match server.ending() {
        Some(Ending::Failed(code)) => Some(code),
        _ => None,
    };
    (got, code)
}

#[test]
fn frames_compressed_by_another_implementation_are_inflated() {
    let (mut s, now) = server_with(LIMITS, None);
    let mut c = raw_deflate();
    let mut wire = Vec::new();
    // Two messages sharing the context, then one fragmented in three frames
    // with a ping between them.
    for text in ["Hello, hello, hello!", "Hello, hello, hello!"] {
        wire.extend(client_frame(
            true,
            0b100,
            OP_TEXT,
            &compress(&mut c, text.as_bytes()),
        ));
    }
    let big = compress(&mut c, json(5000, 9).as_bytes());
    let (a, rest) = big.split_at(big.len() / 3);
    let (b, rest) = rest.split_at(rest.len() / 2);
    wire.extend(client_frame(false, 0b100, OP_BINARY, a));
    wire.extend(client_frame(true, 0, OP_PING, b"p"));
    wire.extend(client_frame(false, 0, OP_CONTINUATION, b));
    wire.extend(client_frame(true, 0, OP_CONTINUATION, rest));
    // An uncompressed message between compressed ones (RSV1 clear).
    wire.extend(client_frame(true, 0, OP_TEXT, b"plain"));
    let (got, code) = feed(&mut s, now, &wire);
    assert_eq!(code, None);
    assert_eq!(
        got,
        vec![
            Incoming::Text("Hello, hello, hello!".into()),
            Incoming::Text("Hello, hello, hello!".into()),
            Incoming::Binary(json(5000, 9).into_bytes()),
            Incoming::Text("plain".into()),
        ]
    );
}

#[test]
fn rsv1_where_it_may_not_be_fails_with_1002() {
    let mut c = raw_deflate();
    let z = compress(&mut c, b"some text");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("on a ping", client_frame(true, 0b100, OP_PING, b"")),
        (
            "on a continuation",
            [
                client_frame(false, 0b100, OP_TEXT, &z),
                client_frame(true, 0b100, OP_CONTINUATION, b""),
            ]
            .concat(),
        ),
        ("RSV2", client_frame(true, 0b010, OP_TEXT, b"x")),
        ("RSV3", client_frame(true, 0b001, OP_TEXT, b"x")),
    ];
    for (what, wire) in cases {
        let (s, now) = &mut server_with(LIMITS, None);
        let (_, code) = feed(s, *now, &wire);
        assert_eq!(code, Some(1002), "{what}");
    }
    // Without the extension agreed, RSV1 is a protocol error too.
    let now = Instant::now();
    let mut plain = Connection::new(Role::Server, settings(LIMITS, None), now);
    let (_, code) = feed(&mut plain, now, &client_frame(true, 0b100, OP_TEXT, &z));
    assert_eq!(code, Some(1002));
}

#[test]
fn invalid_compressed_data_and_invalid_inflated_text_fail_with_1007() {
    let (mut s, now) = server_with(LIMITS, None);
    // BTYPE 11 (reserved) in the first block header.
    let (_, code) = feed(
        &mut s,
        now,
        &client_frame(true, 0b100, OP_BINARY, &[0xff; 8]),
    );
    assert_eq!(code, Some(1007));

    // Invalid UTF-8 is found as it is inflated, before the message ends.
    let (mut s, now) = server_with(LIMITS, None);
    let mut c = raw_deflate();
    let mut bad = json(3000, 2).into_bytes();
    bad[100] = 0xFF;
    let z = compress(&mut c, &bad);
    // Only the first frame of a message that never ends.
    let (_, code) = feed(&mut s, now, &client_frame(false, 0b100, OP_TEXT, &z));
    assert_eq!(code, Some(1007));
}

#[test]
fn a_decompression_bomb_fails_with_1009_within_the_limit() {
    // 64 MiB of zeros compress to about 64 KiB; the limit is 1 MiB.
    let limits = Limits {
        max_frame_size: 1 << 20,
        max_message_size: 1 << 20,
    };
    let budget = MemoryBudget::new(64 << 20);
    let (mut s, now) = server_with(limits, Some(budget.clone()));
    let mut c = raw_deflate();
    let zeros = vec![0u8; 64 << 20];
    let z = compress(&mut c, &zeros);
    assert!(z.len() < 128 << 10, "{} bytes", z.len());
    let wire = client_frame(true, 0b100, OP_BINARY, &z);
    // Fed in pieces, watching what the connection holds.
    let mut peak = 0;
    let mut failed = None;
    for piece in wire.chunks(4096) {
        s.receive(piece, now);
        peak = peak.max(budget.used());
        let mut got = Vec::new();
        s.poll_messages(now, &mut got);
        assert!(got.is_empty());
        if let Some(failure) = s.failure() {
            failed = Some(failure.code());
            break;
        }
    }
    assert_eq!(failed, Some(1009));
    assert!(peak <= (1 << 20) + (64 << 10), "held {peak} bytes");
    // A message just at the limit inflates and is delivered.
    let (mut s, now) = server_with(limits, None);
    let exact = vec![7u8; 1 << 20];
    let z = compress(&mut raw_deflate(), &exact);
    let (got, code) = feed(&mut s, now, &client_frame(true, 0b100, OP_BINARY, &z));
    assert_eq!((got, code), (vec![Incoming::Binary(exact)], None));
}

#[test]
fn the_codec_state_is_charged_to_the_budget_and_released_when_quiet() {
    let budget = MemoryBudget::new(64 << 20);
    let now = Instant::now();
    let mut d = DeflateConfig::default();
    d.server_no_context_takeover = true;
    d.client_no_context_takeover = true;
    let agreement = agree(&d, &d);
    let mut s = Connection::new(Role::Server, settings(LIMITS, Some(budget.clone())), now);
    s.set_deflate(&agreement, &d);
    assert_eq!(budget.used(), 0, "nothing before the first message");
    let z = compress(&mut raw_deflate(), json(1000, 0).as_bytes());
    s.receive(&client_frame(true, 0b100, OP_TEXT, &z), now);
    let mut got = Vec::new();
    s.poll_messages(now, &mut got);
    assert_eq!(got.len(), 1);
    s.send_message(OP_TEXT, json(1000, 0).as_bytes(), 1 << 20)
        .unwrap();
    assert!(
        budget.used() > 128 << 10,
        "compressor and inflater: {}",
        budget.used()
    );
    drop(got);
    s.release_buffers();
    assert_eq!(budget.used(), 0, "without context takeover nothing is kept");
    // A budget with no room for a compressor: messages go out uncompressed.
    let tiny = MemoryBudget::new(1000);
    let mut s = Connection::new(Role::Server, settings(LIMITS, Some(tiny)), now);
    s.set_deflate(&agreement, &d);
    s.send_message(OP_TEXT, json(500, 0).as_bytes(), 1 << 20)
        .unwrap();
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    assert_eq!(headers(&out)[0].1, 0, "no RSV1");
}
