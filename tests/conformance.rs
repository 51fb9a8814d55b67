//! RFC 6455 conformance, section by section after the Autobahn|Testsuite
//! (cases 1.*–10.*, and 12.*–13.* for permessage-deflate, RFC 7692),
//! without the suite: a raw peer written here
//! (`conformance/peer.rs`) sends the frames itself and checks, byte by byte,
//! what the library sends back. See docs/conformance.md.
//!
//! Every scenario runs in both roles, as two tests:
//!
//! - `*_server_role`: the library is an echo server (a `ServerSocket` on
//!   127.0.0.1, each accepted socket going to `WebSocket::start_server`, a
//!   `websocketData` listener that echoes through `e.target()` in the same
//!   format), driven by a raw client that masks its frames;
//! - `*_client_role`: the library is a `WebSocket` client that echoes every
//!   message (as examples/autobahn_client.rs does), driven by a raw server on
//!   a `TcpListener` that does not mask.
//!
//! The groups, by Autobahn section:
//!
//! - `s1_*` (1.1, 1.2 framing): text and binary at every length form, echoed
//!   exactly; a frame sent in chunks; a 64-bit length with its top bit set.
//! - `s2_*` (2.* ping/pong): pings answered with identical pongs, control
//!   frames over 125 bytes and fragmented control frames refused,
//!   unsolicited pongs ignored, pings in a row answered in order.
//! - `s3_*` (3.* reserved bits): RSV1–RSV3 on data and control frames.
//! - `s4_*` (4.* opcodes): reserved data (3–7) and control (0xB–0xF) opcodes.
//! - `s5_*` (5.* fragmentation): reassembly, control frames between
//!   fragments, continuations without a start, a new message inside one.
//! - `s6_*` (6.* UTF-8): valid text (also split at every byte), invalid
//!   text, and fail-fast inside an unfinished fragment or frame.
//! - `s7_*` (7.* closing): close codes, reasons and payload sizes, data after
//!   the close, and which end closes the TCP connection.
//! - `s9_*` (9.* limits and performance): the size limits of `Config` at
//!   small sizes, many small messages, 4 MiB messages.
//! - `s10_*` (10.* misc): formats kept, many frames per TCP write, frames in
//!   one-byte writes, the masking rule.
//! - `s12_*` (12.* permessage-deflate, default terms; feature `deflate`):
//!   compressible text and binary of 16 bytes to 128 KiB, compressed by the
//!   raw peer with `flate2` itself, unfragmented and cut into frames of
//!   256 to 32768 bytes; each echo inflated by the raw peer and compared,
//!   and compressed (RSV1) exactly when it is at least the threshold.
//! - `s13_*` (13.* permessage-deflate parameters): each window size and
//!   context takeover setting in the offer or the answer, a list of offers
//!   (server role), the agreed header and what `extensions()` reports, the
//!   library's echoes inflated with the agreed window (and by a fresh
//!   inflater when it agreed to no context takeover); the threshold; and
//!   the failures: RSV1 where it may not be (1002), invalid compressed data
//!   or inflated text (1007), a message that inflates beyond the limit
//!   (1009), declined offers (server role) and answers the library must
//!   refuse (client role: no connection, `close_reason` 1006).
//!
//! For each failure the test checks the close code on the wire, that the
//! TCP connection then ends (the server closes it first; the client waits
//! for the server), and the `close_reason` the application sees. Every wait
//! is bounded (`peer::WAIT`).

#[path = "conformance/peer.rs"]
mod peer;
mod support;

use airws::Config;
use peer::{Frame, Peer, Role, OP_BINARY, OP_PONG, OP_TEXT, WAIT};
use std::time::{Duration, Instant};

/// One test per role for each scenario.
macro_rules! in_both_roles {
    ($($(#[$attr:meta])* $scenario:path => $server:ident, $client:ident;)*) => {
        $(
            $(#[$attr])*
            #[test]
            fn $server() {
                $scenario(Role::Server);
            }

            $(#[$attr])*
            #[test]
            fn $client() {
                $scenario(Role::Client);
            }
        )*
    };
}

in_both_roles! {
    framing_lengths => s1_framing_lengths_server_role, s1_framing_lengths_client_role;
    framing_length_top_bit =>
        s1_framing_length_top_bit_server_role, s1_framing_length_top_bit_client_role;
    ping_pong => s2_ping_pong_server_role, s2_ping_pong_client_role;
    ping_invalid => s2_ping_invalid_server_role, s2_ping_invalid_client_role;
    reserved_bits => s3_reserved_bits_server_role, s3_reserved_bits_client_role;
    reserved_opcodes => s4_reserved_opcodes_server_role, s4_reserved_opcodes_client_role;
    fragmentation => s5_fragmentation_server_role, s5_fragmentation_client_role;
    fragmentation_errors =>
        s5_fragmentation_errors_server_role, s5_fragmentation_errors_client_role;
    utf8_valid => s6_utf8_valid_server_role, s6_utf8_valid_client_role;
    utf8_invalid => s6_utf8_invalid_server_role, s6_utf8_invalid_client_role;
    utf8_fail_fast => s6_utf8_fail_fast_server_role, s6_utf8_fail_fast_client_role;
    close_handshake => s7_close_handshake_server_role, s7_close_handshake_client_role;
    close_payloads => s7_close_payloads_server_role, s7_close_payloads_client_role;
    close_codes_valid => s7_close_codes_valid_server_role, s7_close_codes_valid_client_role;
    close_codes_invalid => s7_close_codes_invalid_server_role, s7_close_codes_invalid_client_role;
    tcp_close_order => s7_tcp_close_order_server_role, s7_tcp_close_order_client_role;
    limits => s9_limits_server_role, s9_limits_client_role;
    throughput => s9_throughput_server_role, s9_throughput_client_role;
    misc => s10_misc_server_role, s10_misc_client_role;
    masking_rule => s10_masking_rule_server_role, s10_masking_rule_client_role;
}

#[cfg(feature = "deflate")]
in_both_roles! {
    compression::messages => s12_deflate_messages_server_role, s12_deflate_messages_client_role;
    compression::fragmented =>
        s12_deflate_fragmented_server_role, s12_deflate_fragmented_client_role;
    compression::parameters =>
        s13_deflate_parameters_server_role, s13_deflate_parameters_client_role;
    compression::threshold => s13_deflate_threshold_server_role, s13_deflate_threshold_client_role;
    compression::reserved_bits =>
        s13_deflate_reserved_bits_server_role, s13_deflate_reserved_bits_client_role;
    compression::invalid_payloads =>
        s13_deflate_invalid_payloads_server_role, s13_deflate_invalid_payloads_client_role;
    compression::limits => s13_deflate_limits_server_role, s13_deflate_limits_client_role;
    compression::negotiation =>
        s13_deflate_negotiation_server_role, s13_deflate_negotiation_client_role;
    compression::empty_after_compressed =>
        s13_deflate_empty_message_server_role, s13_deflate_empty_message_client_role;
}

// ---------------------------------------------------------------- helpers

/// ASCII text of `len` bytes.
fn ascii(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789 -"[i % 38]))
        .collect()
}

/// Bytes of `len`, every value occurring.
fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 167 + 13) as u8).collect()
}

/// UTF-8 text of at least `len` bytes with characters of every width, so
/// that cuts at arbitrary byte positions split characters.
fn mixed_text(len: usize) -> String {
    let unit = "aé€𝄞κόσμε-\u{10FFFF}\u{FFFF}";
    let mut s = String::with_capacity(len + unit.len());
    while s.len() < len {
        s.push_str(unit);
    }
    s
}

/// Splits `data` into fragments of `size` bytes: the first with `opcode`,
/// the rest continuations, the last one final.
fn fragments(opcode: u8, data: &[u8], size: usize) -> Vec<Frame> {
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(size.max(1)).collect()
    };
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let op = if i == 0 { opcode } else { peer::OP_CONT };
            Frame::new(op, *c).fin(i == last)
        })
        .collect()
}

/// A connection on which the raw peer sends `frames` in one write; the
/// library must echo `echoes` first (text), then fail with `code`.
fn fails(role: Role, case: &str, frames: &[Frame], echoes: &[&str], code: u16) {
    let mut p = Peer::open(role);
    p.case(case);
    p.send_all(frames);
    for e in echoes {
        p.expect_text(e);
    }
    p.expect_fail(code);
}

/// Ends a connection that should still be healthy with a normal close.
fn close_normally(p: &mut Peer) {
    p.case("closing with 1000 after the checks");
    p.close_handshake(Frame::close(1000, ""), Some(1000), 1000);
}

// ---------------------------------------------------------------- 1 framing

const LENGTHS: [usize; 8] = [0, 125, 126, 127, 128, 65535, 65536, 1 << 20];

fn framing_lengths(role: Role) {
    let mut p = Peer::open(role);
    for len in LENGTHS {
        let text = ascii(len);
        p.case(format!("1.1 text of {len} bytes"));
        let wire = p.encode(&Frame::text(&text));
        p.write_while(wire, |p| p.expect_text(&text));

        let data = bytes(len);
        p.case(format!("1.2 binary of {len} bytes"));
        let wire = p.encode(&Frame::binary(&data));
        p.write_while(wire, |p| p.expect_binary(&data));
    }
    // 1.1.7 / 1.2.7: a frame written in chunks of 997 bytes.
    let text = ascii(65535);
    p.case("1.1.7 text of 65535 bytes in 997-byte writes");
    p.send_chunked(&[Frame::text(&text)], 997);
    p.expect_text(&text);
    let data = bytes(65536);
    p.case("1.2.7 binary of 65536 bytes in 997-byte writes");
    p.send_chunked(&[Frame::binary(&data)], 997);
    p.expect_binary(&data);
    close_normally(&mut p);
}

fn framing_length_top_bit(role: Role) {
    for (name, frame) in [
        ("binary", Frame::binary(b"")),
        ("text", Frame::text(b"")),
        ("continuation", Frame::cont(b"")),
    ] {
        for claim in [1u64 << 63, u64::MAX] {
            fails(
                role,
                &format!("1: {name} frame claiming {claim:#x} bytes (top bit set)"),
                &[Frame::text("before"), frame.clone().claim(claim)],
                &["before"],
                1002,
            );
        }
    }
}

// ---------------------------------------------------------------- 2 ping/pong

fn ping_pong(role: Role) {
    let mut p = Peer::open(role);
    p.case("2.1 ping without payload");
    p.send(Frame::ping(b""));
    p.expect_pong(b"");

    p.case("2.2 ping with a text payload");
    p.send(Frame::ping("Hello, world!"));
    p.expect_pong("Hello, world!");

    p.case("2.3 ping with a binary payload");
    let bin = [0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff];
    p.send(Frame::ping(bin));
    p.expect_pong(bin);

    p.case("2.4 ping with 125 bytes");
    let full = bytes(125);
    p.send(Frame::ping(&full));
    p.expect_pong(&full);

    p.case("2.6 ping with 125 bytes in one-byte writes");
    p.send_chunked(&[Frame::ping(&full)], 1);
    p.expect_pong(&full);

    p.case("2.7 unsolicited pong without payload is ignored");
    p.send_all(&[Frame::pong(b""), Frame::text("after pong")]);
    p.expect_text("after pong");

    p.case("2.8 unsolicited pong with payload is ignored");
    p.send_all(&[Frame::pong("unsolicited"), Frame::binary(b"after")]);
    p.expect_binary(b"after");

    p.case("2.9 unsolicited pong, then a ping: one pong, for the ping");
    p.send_all(&[Frame::pong("unsolicited"), Frame::ping("solicited")]);
    p.expect_pong("solicited");
    p.expect_silence(Duration::from_millis(50));

    p.case("2.10 ten pings in one write, answered in order");
    let pings: Vec<Frame> = (0..10).map(|i| Frame::ping(format!("ping {i}"))).collect();
    p.send_all(&pings);
    for i in 0..10 {
        p.expect_pong(format!("ping {i}"));
    }

    p.case("2.11 ten pings in separate writes, answered in order");
    p.send_slowly(&pings, Duration::from_millis(2));
    for i in 0..10 {
        p.expect_pong(format!("ping {i}"));
    }

    p.case("2: a ping between messages keeps its place");
    p.send_all(&[
        Frame::text("one"),
        Frame::ping("between"),
        Frame::binary(b"two"),
    ]);
    p.expect_text("one");
    p.expect_pong("between");
    p.expect_binary(b"two");
    close_normally(&mut p);
}

fn ping_invalid(role: Role) {
    fails(
        role,
        "2.5 ping with 126 bytes",
        &[Frame::text("before"), Frame::ping(bytes(126))],
        &["before"],
        1002,
    );
    fails(
        role,
        "2.5 pong with 126 bytes",
        &[Frame::text("before"), Frame::pong(bytes(126))],
        &["before"],
        1002,
    );
    fails(
        role,
        "2: ping with 65536 bytes (64-bit length form)",
        &[Frame::ping(bytes(65536))],
        &[],
        1002,
    );
    fails(
        role,
        "5.1 fragmented ping (FIN=0)",
        &[
            Frame::ping("frag").more(),
            Frame::cont("ment").fin(true),
            Frame::text("after"),
        ],
        &[],
        1002,
    );
    fails(
        role,
        "5.2 fragmented pong (FIN=0)",
        &[Frame::pong("frag").more(), Frame::cont("ment")],
        &[],
        1002,
    );
    fails(
        role,
        "2: fragmented close (FIN=0)",
        &[Frame::close(1000, "").more()],
        &[],
        1002,
    );
}

// ---------------------------------------------------------------- 3 reserved bits

fn reserved_bits(role: Role) {
    let targets = [
        ("text", Frame::text("with rsv")),
        ("binary", Frame::binary(b"with rsv")),
        ("ping", Frame::ping("with rsv")),
        ("close", Frame::close(1000, "")),
    ];
    for rsv in 1..=7u8 {
        for (name, frame) in &targets {
            fails(
                role,
                &format!("3: RSV={rsv:03b} on a {name} frame after a valid text"),
                &[
                    Frame::text("before"),
                    frame.clone().rsv(rsv),
                    Frame::text("after"),
                    Frame::ping("after"),
                ],
                &["before"],
                1002,
            );
        }
    }
    // 3.3: the frames written one byte at a time.
    let mut p = Peer::open(role);
    p.case("3.3 RSV=3 on text, after a valid text, in one-byte writes");
    p.send_chunked(&[Frame::text("before"), Frame::text("with rsv").rsv(3)], 1);
    p.expect_text("before");
    p.expect_fail(1002);
    // 3.4: after a ping, the ping is answered first.
    let mut p = Peer::open(role);
    p.case("3.4 RSV=4 on text, after a valid text and a ping");
    p.send_all(&[
        Frame::text("before"),
        Frame::ping("ping"),
        Frame::text("with rsv").rsv(4),
    ]);
    p.expect_text("before");
    p.expect_pong("ping");
    p.expect_fail(1002);
    // RSV on a fragment of a message.
    fails(
        role,
        "3: RSV1 on a continuation frame",
        &[Frame::text("frag").more(), Frame::cont("ment").rsv(4)],
        &[],
        1002,
    );
}

// ---------------------------------------------------------------- 4 opcodes

fn reserved_opcodes(role: Role) {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        for payload in [&b""[..], b"reserved opcode"] {
            fails(
                role,
                &format!("4: opcode {op:#x} with {} bytes", payload.len()),
                &[
                    Frame::text("before"),
                    Frame::new(op, payload),
                    Frame::ping("after"),
                ],
                &["before"],
                1002,
            );
        }
    }
    let mut p = Peer::open(role);
    p.case("4.1.5 opcode 7, after a valid text, in one-byte writes");
    p.send_chunked(
        &[Frame::text("before"), Frame::new(7, "x"), Frame::ping("p")],
        1,
    );
    p.expect_text("before");
    p.expect_fail(1002);
    fails(
        role,
        "4: reserved opcode inside a fragmented message",
        &[
            Frame::text("frag").more(),
            Frame::new(0xB, ""),
            Frame::cont("ment"),
        ],
        &[],
        1002,
    );
}

// ---------------------------------------------------------------- 5 fragmentation

fn fragmentation(role: Role) {
    let mut p = Peer::open(role);
    let two = [Frame::text("fragment1").more(), Frame::cont("fragment2")];
    p.case("5.3 text in two fragments, one write");
    p.send_all(&two);
    p.expect_text("fragment1fragment2");
    p.case("5.4 text in two fragments, separate writes");
    p.send_slowly(&two, Duration::from_millis(5));
    p.expect_text("fragment1fragment2");
    p.case("5.5 text in two fragments, one-byte writes");
    p.send_chunked(&two, 1);
    p.expect_text("fragment1fragment2");

    let with_ping = [
        Frame::text("fragment1").more(),
        Frame::ping("between"),
        Frame::cont("fragment2"),
    ];
    p.case("5.6 a ping between two fragments");
    p.send_all(&with_ping);
    p.expect_pong("between");
    p.expect_text("fragment1fragment2");
    p.case("5.7 a ping between two fragments, separate writes");
    p.send_slowly(&with_ping, Duration::from_millis(5));
    p.expect_pong("between");
    p.expect_text("fragment1fragment2");
    p.case("5.8 a ping between two fragments, one-byte writes");
    p.send_chunked(&with_ping, 1);
    p.expect_pong("between");
    p.expect_text("fragment1fragment2");

    p.case("5: binary in two fragments");
    p.send_all(&[Frame::binary([1, 2, 3]).more(), Frame::cont([4, 5])]);
    p.expect_binary([1, 2, 3, 4, 5]);

    p.case("5: an unsolicited pong between fragments is ignored");
    p.send_all(&[
        Frame::binary(b"a").more(),
        Frame::pong("x"),
        Frame::cont(b"b"),
    ]);
    p.expect_binary(b"ab");

    for n in [3usize, 10, 50] {
        p.case(format!("5: text and binary in {n} fragments"));
        let text = ascii(n * 7);
        p.send_all(&fragments(OP_TEXT, text.as_bytes(), 7));
        p.expect_text(&text);
        let data = bytes(n * 7);
        p.send_all(&fragments(OP_BINARY, &data, 7));
        p.expect_binary(&data);
    }

    p.case("5: empty fragments at the start, in the middle and at the end");
    p.send_all(&[
        Frame::text("").more(),
        Frame::cont("abc").more(),
        Frame::cont("").more(),
        Frame::cont("def").more(),
        Frame::cont(""),
    ]);
    p.expect_text("abcdef");
    p.case("5: an empty message in two empty fragments");
    p.send_all(&[Frame::binary(b"").more(), Frame::cont(b"")]);
    p.expect_binary(b"");

    p.case("5: 100 fragments of one byte");
    let text = ascii(100);
    p.send_all(&fragments(OP_TEXT, text.as_bytes(), 1));
    p.expect_text(&text);
    let data = bytes(100);
    p.send_all(&fragments(OP_BINARY, &data, 1));
    p.expect_binary(&data);

    p.case("5: a ping between each of 20 fragments");
    let mut frames = Vec::new();
    for (i, f) in fragments(OP_TEXT, ascii(20).as_bytes(), 1)
        .into_iter()
        .enumerate()
    {
        frames.push(f);
        frames.push(Frame::ping(format!("p{i}")));
    }
    p.send_all(&frames);
    for i in 0..19 {
        p.expect_pong(format!("p{i}"));
    }
    // The message completes with the 20th fragment, before the last ping.
    p.expect_text(ascii(20));
    p.expect_pong("p19");

    // 5.19 / 5.20: pings are answered while the message is still open.
    p.case("5.19 pings answered between slow fragments");
    p.send_all(&[
        Frame::text("fragment1").more(),
        Frame::cont("fragment2").more(),
    ]);
    p.send(Frame::ping("pongme 1!"));
    p.expect_pong("pongme 1!");
    p.send_slowly(
        &[
            Frame::cont("fragment3").more(),
            Frame::cont("fragment4").more(),
            Frame::ping("pongme 2!"),
        ],
        Duration::from_millis(20),
    );
    p.expect_pong("pongme 2!");
    p.expect_silence(Duration::from_millis(50));
    p.send(Frame::cont("fragment5"));
    p.expect_text("fragment1fragment2fragment3fragment4fragment5");
    close_normally(&mut p);
}

fn fragmentation_errors(role: Role) {
    fails(
        role,
        "5.9 continuation (FIN=1) without a message, then a text",
        &[
            Frame::cont("non-continuation payload"),
            Frame::text("Hello, world!"),
        ],
        &[],
        1002,
    );
    let mut p = Peer::open(role);
    p.case("5.11 continuation without a message, one-byte writes");
    p.send_chunked(&[Frame::cont("non-continuation payload")], 1);
    p.expect_fail(1002);
    fails(
        role,
        "5.12 continuation (FIN=0) without a message",
        &[Frame::cont("non-continuation payload").more()],
        &[],
        1002,
    );
    fails(
        role,
        "5.15 a continuation after a completed fragmented message",
        &[
            Frame::text("fragment1").more(),
            Frame::cont("fragment2"),
            Frame::cont("fragment3").more(),
            Frame::cont("fragment4"),
        ],
        &["fragment1fragment2"],
        1002,
    );
    fails(
        role,
        "5.16 continuation (FIN=0) first, then a fragmented text",
        &[
            Frame::cont("fragment1").more(),
            Frame::text("fragment2").more(),
            Frame::cont("fragment3"),
        ],
        &[],
        1002,
    );
    fails(
        role,
        "5.17 continuation (FIN=1) first, then a fragmented text",
        &[
            Frame::cont("fragment1"),
            Frame::text("fragment2").more(),
            Frame::cont("fragment3"),
        ],
        &[],
        1002,
    );
    fails(
        role,
        "5.18 a new text frame while a fragmented text is open",
        &[Frame::text("fragment1").more(), Frame::text("fragment2")],
        &[],
        1002,
    );
    fails(
        role,
        "5: a new binary frame while a fragmented binary is open",
        &[Frame::binary(b"a").more(), Frame::binary(b"b").more()],
        &[],
        1002,
    );
    fails(
        role,
        "5: a new binary frame while a fragmented text is open",
        &[Frame::text("a").more(), Frame::binary(b"b")],
        &[],
        1002,
    );
    // The ping before the violation is answered, the message never arrives.
    let mut p = Peer::open(role);
    p.case("5: ping answered, then a text frame inside a fragmented message");
    p.send_all(&[Frame::text("a").more(), Frame::ping("p"), Frame::text("b")]);
    p.expect_pong("p");
    p.expect_fail(1002);
}

// ---------------------------------------------------------------- 6 UTF-8

/// Valid UTF-8 texts (6.2–6.6, 6.7–6.11 boundaries, 6.22–6.23 noncharacters).
const VALID_UTF8: &[&[u8]] = &[
    b"",
    b"Hello-\xC2\xB5@\xC3\x9F\xC3\xB6\xC3\xA4\xC3\xBC\xC3\xA0\xC3\xA1-UTF-8!!",
    "κόσμε".as_bytes(),
    b"\x00\x7F",            // 1-byte boundaries
    b"\xC2\x80",            // U+0080, first 2-byte
    b"\xDF\xBF",            // U+07FF, last 2-byte
    b"\xE0\xA0\x80",        // U+0800, first 3-byte
    b"\xED\x9F\xBF",        // U+D7FF, before the surrogates
    b"\xEE\x80\x80",        // U+E000, after the surrogates
    b"\xEF\xBF\xBD",        // U+FFFD
    b"\xEF\xBF\xBE",        // U+FFFE, a noncharacter (valid)
    b"\xEF\xBF\xBF",        // U+FFFF
    b"\xF0\x90\x80\x80",    // U+10000, first 4-byte
    b"\xF4\x8F\xBF\xBF",    // U+10FFFF, the last code point
    b"\xF0\x9F\x98\x80 ok", // an emoji
    "€𝄞aé\u{10FFFF}z".as_bytes(),
    b"\xEF\xBB\xBFbom", // a byte order mark
];

/// Invalid UTF-8 (6.3, 6.6, 6.8–6.21): each must fail with 1007.
const INVALID_UTF8: &[(&str, &[u8])] = &[
    ("overlong NUL C0 80", b"\xC0\x80"),
    ("overlong C1 BF", b"\xC1\xBF"),
    ("overlong '/' C0 AF", b"\xC0\xAF"),
    ("overlong '/' E0 80 AF", b"\xE0\x80\xAF"),
    ("overlong '/' F0 80 80 AF", b"\xF0\x80\x80\xAF"),
    ("overlong U+07FF E0 9F BF", b"\xE0\x9F\xBF"),
    ("overlong U+FFFF F0 8F BF BF", b"\xF0\x8F\xBF\xBF"),
    ("5-byte F8 88 80 80 80", b"\xF8\x88\x80\x80\x80"),
    ("6-byte FC 84 80 80 80 80", b"\xFC\x84\x80\x80\x80\x80"),
    ("surrogate U+D800 ED A0 80", b"\xED\xA0\x80"),
    ("surrogate U+DFFF ED BF BF", b"\xED\xBF\xBF"),
    (
        "surrogate pair ED A0 80 ED B0 80",
        b"\xED\xA0\x80\xED\xB0\x80",
    ),
    ("above U+10FFFF F4 90 80 80", b"\xF4\x90\x80\x80"),
    ("F5 lead byte", b"\xF5\x80\x80\x80"),
    ("FE", b"\xFE"),
    ("FF", b"\xFF"),
    ("lone continuation 80", b"\x80"),
    ("lone continuation BF", b"\xBF"),
    ("continuations 80 BF 80", b"\x80\xBF\x80"),
    ("text then a lone continuation", b"\xCE\xBA\xE1\xBD\xB9\x80"),
    ("truncated 2-byte at the end", b"ab\xCE"),
    ("truncated 3-byte at the end", b"ab\xE0\xA0"),
    ("truncated 4-byte at the end", b"ab\xF0\x90\x80"),
    ("missing continuation in the middle", b"a\xC2b"),
    (
        "3-byte missing its last byte in the middle",
        b"\xE2\x82 euro",
    ),
    (
        "κόσμε with a bad byte",
        b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80edited",
    ),
    ("C3 28", b"\xC3\x28"),
];

fn utf8_valid(role: Role) {
    let mut p = Peer::open(role);
    for &text in VALID_UTF8 {
        assert!(std::str::from_utf8(text).is_ok(), "test data {text:x?}");
        p.case(format!("6: valid {text:x?} in one frame"));
        p.send(Frame::text(text));
        p.expect_text(text);

        // 6.2.2–6.2.4 and 6.4: split into two fragments at every byte
        // position (including an empty first or last fragment).
        for cut in 0..=text.len() {
            p.case(format!("6: valid {text:x?} in two fragments cut at {cut}"));
            p.send_all(&[Frame::text(&text[..cut]).more(), Frame::cont(&text[cut..])]);
            p.expect_text(text);
        }
        p.case(format!("6.2.4: valid {text:x?} in one-byte fragments"));
        p.send_all(&fragments(OP_TEXT, text, 1));
        p.expect_text(text);
        p.case(format!("6: valid {text:x?} in one-byte TCP writes"));
        p.send_chunked(&[Frame::text(text)], 1);
        p.expect_text(text);
    }
    p.case("6: valid mixed text of 4 KiB in fragments of 7 bytes");
    let text = mixed_text(4096);
    p.send_all(&fragments(OP_TEXT, text.as_bytes(), 7));
    p.expect_text(&text);
    p.case("6: invalid UTF-8 in a binary message is just bytes");
    p.send(Frame::binary(b"\xC0\x80\xED\xA0\x80\xFF"));
    p.expect_binary(b"\xC0\x80\xED\xA0\x80\xFF");
    close_normally(&mut p);
}

fn utf8_invalid(role: Role) {
    for &(name, bad) in INVALID_UTF8 {
        assert!(std::str::from_utf8(bad).is_err(), "test data {name}");
        fails(
            role,
            &format!("6: invalid UTF-8 ({name}) in one frame, after a valid text"),
            &[
                Frame::text("before"),
                Frame::text(bad),
                Frame::text("after"),
            ],
            &["before"],
            1007,
        );
        // Split at its middle into two fragments.
        let cut = bad.len() / 2;
        fails(
            role,
            &format!("6: invalid UTF-8 ({name}) in two fragments cut at {cut}"),
            &[Frame::text(&bad[..cut]).more(), Frame::cont(&bad[cut..])],
            &[],
            1007,
        );
        // One byte per fragment.
        fails(
            role,
            &format!("6: invalid UTF-8 ({name}) in one-byte fragments"),
            &fragments(OP_TEXT, bad, 1),
            &[],
            1007,
        );
    }
}

fn utf8_fail_fast(role: Role) {
    // Sequences that are invalid as soon as their bad byte arrives (not the
    // truncated ones, which only fail when the message ends).
    let at_once: [(&str, &[u8]); 9] = [
        ("C0 80", b"\xC0\x80"),
        ("E0 80 80", b"\xE0\x80\x80"),
        ("F0 80 80 80", b"\xF0\x80\x80\x80"),
        ("ED A0 80", b"\xED\xA0\x80"),
        ("F4 90 80 80", b"\xF4\x90\x80\x80"),
        ("FF", b"\xFF"),
        ("lone 80", b"\x80"),
        ("C2 then ASCII", b"\xC2A"),
        ("F5", b"\xF5"),
    ];
    for (name, bad) in at_once {
        // 6.4.1/6.4.2: the first fragment (FIN=0) holds the bad sequence; no
        // other fragment is ever sent.
        let mut p = Peer::open(role);
        p.case(format!("6.4: {name} in a first fragment without FIN"));
        let mut first = "κόσμε".as_bytes().to_vec();
        first.extend_from_slice(bad);
        first.extend_from_slice(b"edited");
        p.send(Frame::text(&first).more());
        p.expect_fail(1007);

        // The bad sequence in a later fragment, still without FIN.
        let mut p = Peer::open(role);
        p.case(format!("6.4: {name} in a second fragment without FIN"));
        p.send(Frame::text("κόσμε").more());
        p.send(Frame::cont(bad).more());
        p.expect_fail(1007);

        // 6.4.3/6.4.4: inside one frame: the header claims 1000 bytes, only
        // the start of the payload (with the bad sequence) is sent.
        let mut p = Peer::open(role);
        p.case(format!(
            "6.4.3: {name} early in a frame whose payload is not all sent"
        ));
        let mut start = "κόσμε".as_bytes().to_vec();
        start.extend_from_slice(bad);
        p.send(Frame::text(&start).claim(1000));
        p.expect_fail(1007);
    }
    // A code point cut between two fragments, bad in its second half.
    let mut p = Peer::open(role);
    p.case("6: ED in one fragment, A0 80 (a surrogate) in the next, without FIN");
    p.send(Frame::text(b"ab\xED").more());
    p.expect_silence(Duration::from_millis(50));
    p.send(Frame::cont(b"\xA0\x80").more());
    p.expect_fail(1007);
}

// ---------------------------------------------------------------- 7 closing

fn close_handshake(role: Role) {
    let mut p = Peer::open(role);
    p.case("7.1.1 echo, then close 1000");
    p.text("Hello World!");
    p.expect_text("Hello World!");
    p.close_handshake(Frame::close(1000, ""), Some(1000), 1000);

    // Whatever follows a close frame in the same write is ignored: one close
    // reply, no pong, no echo.
    for (case, after) in [
        ("7.1.2 two close frames: one reply", Frame::close(1001, "")),
        (
            "7.1.3 a ping after the close is not answered",
            Frame::ping("after close"),
        ),
        (
            "7.1.4 a text after the close is not echoed",
            Frame::text("after close"),
        ),
    ] {
        let mut p = Peer::open(role);
        p.case(case);
        p.send_all(&[Frame::close(1000, ""), after]);
        p.expect_close_reply(Some(1000));
        p.finish_peer_close();
        assert_eq!(p.app_close_reason(), 1000);
    }

    let mut p = Peer::open(role);
    p.case("7.1.4 data written after the close reply arrived is ignored");
    p.send(Frame::close(1000, ""));
    p.expect_close_reply(Some(1000));
    let late = p.encode_all(&[Frame::text("late"), Frame::ping("late")]);
    let _ = p.try_write(&late);
    p.finish_peer_close();
    assert_eq!(p.app_close_reason(), 1000);

    let mut p = Peer::open(role);
    p.case("7.1.5 a close inside a fragmented message");
    p.send_all(&[
        Frame::text("fragment1").more(),
        Frame::close(1000, ""),
        Frame::cont("fragment2"),
    ]);
    p.expect_close_reply(Some(1000));
    p.finish_peer_close();
    assert_eq!(p.app_close_reason(), 1000);

    let mut p = Peer::open(role);
    p.case("7.1.6 a 256 KiB message, a close, a ping");
    let big = ascii(256 << 10);
    let wire = p.encode_all(&[
        Frame::text(&big),
        Frame::close(1000, ""),
        Frame::ping("after close"),
    ]);
    p.write_while(wire, |p| {
        p.expect_text(&big);
        p.expect_close_reply(Some(1000));
    });
    p.finish_peer_close();
    assert_eq!(p.app_close_reason(), 1000);

    let mut p = Peer::open(role);
    p.case("7.3.1 a close without payload: an empty reply, close_reason 1005");
    p.close_handshake(Frame::close_raw(b""), None, 1005);
}

fn close_payloads(role: Role) {
    let mut p = Peer::open(role);
    p.case("7.3.3 close 1000 without a reason");
    p.close_handshake(Frame::close(1000, ""), Some(1000), 1000);

    let mut p = Peer::open(role);
    p.case("7.3.4 close 1000 with a reason");
    p.close_handshake(Frame::close(1000, "Hello World!"), Some(1000), 1000);

    let mut p = Peer::open(role);
    p.case("7.3.5 close with a reason of 123 bytes");
    p.close_handshake(Frame::close(1000, ascii(123)), Some(1000), 1000);

    let mut p = Peer::open(role);
    p.case("7.3.5 close with a 123-byte UTF-8 reason of multibyte characters");
    let reason = "é".repeat(61) + "a"; // 123 bytes
    assert_eq!(reason.len(), 123);
    p.close_handshake(Frame::close(3000, reason), Some(3000), 3000);

    fails(
        role,
        "7.3.2 close with a 1-byte payload",
        &[Frame::close_raw([0x03])],
        &[],
        1002,
    );
    fails(
        role,
        "7.3.6 close with a 124-byte reason (126-byte payload)",
        &[Frame::close(1000, ascii(124))],
        &[],
        1002,
    );
    fails(
        role,
        "7.5.1 close reason that is not UTF-8",
        &[Frame::close(
            1000,
            b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80edited",
        )],
        &[],
        1007,
    );
    fails(
        role,
        "7.5.1 close reason truncated inside a character",
        &[Frame::close(1000, b"ok\xE2\x82")],
        &[],
        1007,
    );
}

fn close_codes_valid(role: Role) {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        let mut p = Peer::open(role);
        p.case(format!("7.7 close with valid code {code}: echoed"));
        p.close_handshake(Frame::close(code, ""), Some(code), i32::from(code));
    }
}

fn close_codes_invalid(role: Role) {
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        fails(
            role,
            &format!("7.9/7.13 close with invalid code {code}"),
            &[Frame::close(code, "")],
            &[],
            1002,
        );
    }
}

fn tcp_close_order(role: Role) {
    match role {
        Role::Server => {
            // The server closes the TCP connection right after its reply,
            // without waiting for the client to close (whose own close
            // would come much later here).
            let mut p = Peer::open(role);
            p.case("7: the server closes TCP first after the close handshake");
            p.send(Frame::close(1000, ""));
            p.expect_close_reply(Some(1000));
            p.expect_server_closes_first();
            p.shutdown_write();
            assert_eq!(p.app_close_reason(), 1000);

            let mut p = Peer::open(role);
            p.case("7: after failing, the server closes TCP first");
            p.send(Frame::new(0x3, ""));
            assert_eq!(p.expect_close_frame(), Some(1002));
            p.expect_server_closes_first();
            p.shutdown_write();
            assert_eq!(p.app_close_reason(), 1002);
        }
        Role::Client => {
            // The client answers, then waits for the server to close.
            let mut p = Peer::open(role);
            p.case("7: the client waits for the server to close TCP");
            p.send(Frame::close(1000, ""));
            p.expect_close_reply(Some(1000));
            p.expect_silence(Duration::from_millis(300));
            p.shutdown_write();
            p.expect_eof();
            assert_eq!(p.app_close_reason(), 1000);

            // A server that never closes: the client gives up after its
            // close_timeout and closes by itself.
            let config = Config::default().close_timeout(Duration::from_millis(500));
            let mut p = Peer::open_with(role, config.clone());
            p.case("7: the client closes TCP after close_timeout when the server does not");
            p.send(Frame::close(4000, ""));
            p.expect_close_reply(Some(4000));
            let took = p.expect_eof();
            assert!(
                took >= Duration::from_millis(300),
                "the client closed TCP after {took:?}, without waiting for the server"
            );
            assert_eq!(p.app_close_reason(), 4000);

            let mut p = Peer::open_with(role, config);
            p.case("7: after failing, the client closes TCP after close_timeout at the latest");
            p.send(Frame::new(0x3, ""));
            assert_eq!(p.expect_close_frame(), Some(1002));
            let took = p.expect_eof();
            assert!(took >= Duration::from_millis(300), "took {took:?}");
            assert_eq!(p.app_close_reason(), 1002);
        }
    }
}

// ---------------------------------------------------------------- 9 limits

const FRAME_LIMIT: usize = 16 << 10;
const MESSAGE_LIMIT: usize = 64 << 10;

fn small_limits() -> Config {
    Config::default()
        .max_message_size(MESSAGE_LIMIT as u64)
        .max_frame_size(FRAME_LIMIT as u64)
}

fn limits(role: Role) {
    let mut p = Peer::open_with(role, small_limits());
    p.case("9: a frame at the frame limit");
    let data = bytes(FRAME_LIMIT);
    p.send(Frame::binary(&data));
    p.expect_binary(&data);
    p.case("9: a message at the message limit, in frames at the frame limit");
    let data = bytes(MESSAGE_LIMIT);
    p.send_all(&fragments(OP_BINARY, &data, FRAME_LIMIT));
    p.expect_binary(&data);
    let text = ascii(MESSAGE_LIMIT);
    p.send_all(&fragments(OP_TEXT, text.as_bytes(), FRAME_LIMIT));
    p.expect_text(&text);
    close_normally(&mut p);

    let mut p = Peer::open_with(role, small_limits());
    p.case("9: a binary frame one byte over the frame limit");
    p.send(Frame::binary(bytes(FRAME_LIMIT + 1)));
    p.expect_fail(1009);

    let mut p = Peer::open_with(role, small_limits());
    p.case("9: a text frame over the frame limit, refused on its header alone");
    p.send(Frame::text(b"").claim(FRAME_LIMIT as u64 + 1));
    p.expect_fail(1009);

    let mut p = Peer::open_with(role, small_limits());
    p.case("9: fragments that together exceed the message limit");
    let mut frames = fragments(OP_BINARY, &bytes(MESSAGE_LIMIT), FRAME_LIMIT);
    frames.last_mut().expect("fragments").fin = false;
    frames.push(Frame::cont([0u8]));
    p.send_all(&frames);
    p.expect_fail(1009);

    let mut p = Peer::open_with(role, small_limits());
    p.case("9: the fragment that exceeds the message limit is refused on its header");
    let mut frames = fragments(OP_TEXT, ascii(MESSAGE_LIMIT - 10).as_bytes(), FRAME_LIMIT);
    frames.last_mut().expect("fragments").fin = false;
    p.send_all(&frames);
    p.send(Frame::cont(b"").claim(11));
    p.expect_fail(1009);

    for (config, frame_limit) in [
        (small_limits(), FRAME_LIMIT as u64),
        (Config::default(), 16 << 20),
    ] {
        let mut p = Peer::open_with(role, config);
        p.case(format!(
            "9: a header claiming 2^62 bytes (frame limit {frame_limit}), no payload"
        ));
        p.send_all(&[Frame::text("before"), Frame::binary(b"").claim(1 << 62)]);
        p.expect_text("before");
        p.expect_fail(1009);
    }

    let mut p = Peer::open_with(role, small_limits());
    p.case("9: a header with the top bit of the length set is 1002, not 1009");
    p.send(Frame::binary(b"").claim(1 << 63));
    p.expect_fail(1002);
}

fn throughput(role: Role) {
    let mut p = Peer::open(role);
    p.case("9: 1000 messages of 16 bytes, echoed in order");
    let frames: Vec<Frame> = (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                Frame::text(format!("message {i:>8}"))
            } else {
                Frame::binary(format!("message {i:>8}"))
            }
        })
        .collect();
    let wire = p.encode_all(&frames);
    p.write_while(wire, |p| {
        for i in 0..1000 {
            let m = format!("message {i:>8}");
            assert_eq!(m.len(), 16);
            if i % 2 == 0 {
                p.expect_text(&m);
            } else {
                p.expect_binary(&m);
            }
        }
    });

    let data = bytes(4 << 20);
    p.case("9.2: a 4 MiB binary message in 64 KiB frames");
    let started = Instant::now();
    let wire = p.encode_all(&fragments(OP_BINARY, &data, 64 << 10));
    p.write_while(wire, |p| p.expect_binary(&data));
    let in_frames = started.elapsed();

    p.case("9.2: a 4 MiB binary message in one frame");
    let started = Instant::now();
    let wire = p.encode(&Frame::binary(&data));
    p.write_while(wire, |p| p.expect_binary(&data));
    let in_one = started.elapsed();

    p.case("9.1: a 1 MiB text message of mixed widths in 64 KiB frames");
    let text = mixed_text(1 << 20);
    let wire = p.encode_all(&fragments(OP_TEXT, text.as_bytes(), 64 << 10));
    p.write_while(wire, |p| p.expect_text(&text));

    p.case("9.5: 256 KiB in 64-byte frames");
    let data = bytes(256 << 10);
    let wire = p.encode_all(&fragments(OP_BINARY, &data, 64));
    p.write_while(wire, |p| p.expect_binary(&data));

    assert!(
        in_frames < WAIT && in_one < WAIT,
        "4 MiB took {in_frames:?} in frames, {in_one:?} in one frame"
    );
    close_normally(&mut p);
}

// ---------------------------------------------------------------- 10 misc

fn misc(role: Role) {
    let mut p = Peer::open(role);
    p.case("10: a text message comes back as text, a binary one as binary");
    p.text("τέλος");
    p.expect(OP_TEXT, "τέλος".as_bytes());
    p.binary("τέλος");
    p.expect(OP_BINARY, "τέλος".as_bytes());
    p.binary(b"");
    p.expect(OP_BINARY, b"");
    p.text("");
    p.expect(OP_TEXT, b"");

    p.case("10: 300 frames in one TCP write");
    let mut frames = Vec::new();
    for i in 0..100 {
        frames.push(Frame::text(format!("t{i}")));
        frames.push(Frame::binary(format!("b{i}")));
        frames.push(Frame::ping(format!("p{i}")));
    }
    p.send_all(&frames);
    for i in 0..100 {
        p.expect_text(format!("t{i}"));
        p.expect_binary(format!("b{i}"));
        p.expect(OP_PONG, format!("p{i}").as_bytes());
    }

    p.case("10: a frame of 300 bytes (16-bit length) in one-byte writes");
    let text = mixed_text(300);
    p.send_chunked(&[Frame::text(&text)], 1);
    p.expect_text(&text);

    p.case("10: a 64-bit-length header in one-byte writes, then its payload");
    let data = bytes(65536);
    let wire = p.encode(&Frame::binary(&data));
    let header_len = if role == Role::Server { 14 } else { 10 };
    for b in &wire[..header_len] {
        p.write(std::slice::from_ref(b));
    }
    p.write(&wire[header_len..]);
    p.expect_binary(&data);

    p.case("10: a fragmented message with a ping, in one-byte writes");
    p.send_chunked(
        &[
            Frame::binary(b"abc").more(),
            Frame::ping("x"),
            Frame::cont(b"def"),
        ],
        1,
    );
    p.expect_pong("x");
    p.expect_binary(b"abcdef");

    p.case("10: a frame split across writes at every byte position");
    let wire = p.encode(&Frame::text("split me"));
    for cut in 1..wire.len() {
        p.write(&wire[..cut]);
        p.write(&wire[cut..]);
        p.expect_text("split me");
    }

    p.case("10.1.1: a 64 KiB text message");
    let text = ascii(65536);
    p.send(Frame::text(&text));
    p.expect_text(&text);
    close_normally(&mut p);
}

fn masking_rule(role: Role) {
    let what = match role {
        Role::Server => "an unmasked frame from the client",
        Role::Client => "a masked frame from the server",
    };
    for frame in [
        Frame::text("wrong"),
        Frame::ping("wrong"),
        Frame::close(1000, ""),
    ] {
        fails(
            role,
            &format!("10: {what} (opcode {:#x})", frame.opcode),
            &[Frame::text("before"), frame.wrong_mask()],
            &["before"],
            1002,
        );
    }
}

// ---------------------------------------------------------------- 12, 13 permessage-deflate

/// permessage-deflate (RFC 7692), after Autobahn's 12.* and 13.*: the raw
/// peer compresses its messages with `flate2` itself and inflates the
/// library's echoes with the agreed window and context takeover
/// (`peer::Codec`).
#[cfg(feature = "deflate")]
mod compression {
    use super::*;
    use airws::proto::deflate::DeflateConfig;
    use peer::{Codec, Direction, Directions, Message, OP_PING, RSV1};
    use std::fmt::Write as _;

    /// Autobahn's message sizes (12.x.1 to 12.x.10).
    const SIZES: [usize; 10] = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072];
    /// The frame sizes the raw peer cuts compressed messages into.
    const FRAGMENTS: [usize; 4] = [256, 1024, 4096, 32768];
    /// 13.1 to 13.6's sizes.
    const SIZES_13: [usize; 7] = [16, 64, 256, 1024, 4096, 16384, 65536];
    /// The sizes for the other agreements of 13.*: the list of offers, the
    /// library's own terms (small windows make zlib slow).
    const SIZES_13_SHORT: [usize; 4] = [16, 64, 1024, 16384];
    /// How many times each message of 12.1 to 12.5 goes (Autobahn: 1000).
    const REPEATS: usize = 3;

    /// How many times each of the other messages goes: [`REPEATS`] up to
    /// 16 KiB, once above (the larger ones take most of the run's time).
    fn repeats(len: usize) -> usize {
        if len <= 16384 {
            REPEATS
        } else {
            1
        }
    }

    type Make = fn(usize, u64) -> Vec<u8>;
    /// A change to the default `DeflateConfig`.
    type Tweak = fn(&mut DeflateConfig);

    /// Autobahn's 12.1 to 12.5 (a JSON file, a bitmap, Goethe's Faust, an
    /// HTML page, a PDF), made up here.
    const CORPORA: [(&str, u8, Make); 5] = [
        ("12.1 JSON text", OP_TEXT, json),
        ("12.2 bitmap binary", OP_BINARY, bitmap),
        ("12.3 German prose", OP_TEXT, prose),
        ("12.4 HTML text", OP_TEXT, html),
        ("12.5 binary with far copies", OP_BINARY, far_copies),
    ];

    /// The library's configuration with permessage-deflate on the terms of
    /// `tweak` (applied to the default `DeflateConfig`), and those terms.
    fn deflate_config(tweak: impl FnOnce(&mut DeflateConfig)) -> (Config, DeflateConfig) {
        let mut d = DeflateConfig::default();
        tweak(&mut d);
        let config = Config::default()
            .permessage_deflate(d)
            .expect("a valid DeflateConfig");
        (config, d)
    }

    /// The plain agreement: a browser's offer to the library as the server;
    /// the plainest answer to the library as the client.
    fn plain(role: Role) -> &'static [&'static str] {
        match role {
            Role::Server => &["permessage-deflate; client_max_window_bits"],
            Role::Client => &["permessage-deflate"],
        }
    }

    fn direction(window_bits: u8, no_context_takeover: bool) -> Direction {
        Direction {
            window_bits,
            no_context_takeover,
        }
    }

    // ------------------------------------------------------------ data

    /// Deterministic test data (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x2545_F491_4F6C_DD1D)
        }

        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// JSON-like text of `len` bytes.
    fn json(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng::new(seed);
        let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
        let mut s = String::from("[");
        let mut id = seed * 1000;
        while s.len() < len {
            let _ = write!(
                s,
                concat!(
                    "{{\"id\":{},\"name\":\"{}\",\"score\":{},",
                    "\"active\":{},\"tags\":[\"t{}\",\"t{}\"]}},"
                ),
                id,
                names[rng.below(names.len())],
                rng.below(10_000),
                rng.below(2) == 0,
                rng.below(20),
                rng.below(20)
            );
            id += 1;
        }
        s.truncate(len);
        s.into_bytes()
    }

    /// A black-and-white bitmap's bytes: runs of 00 and FF, a stray byte
    /// now and then.
    fn bitmap(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(len + 64);
        let mut v = 0u8;
        while out.len() < len {
            let run = 1 + rng.below(40);
            out.resize(out.len() + run, v);
            v = !v;
            if rng.below(16) == 0 {
                out.push(rng.next() as u8);
            }
        }
        out.truncate(len);
        out
    }

    /// German prose: multibyte characters everywhere (and some of three
    /// and four bytes), so that frames and the library's inflated pieces
    /// cut through them. Exactly `len` bytes of UTF-8.
    fn prose(len: usize, seed: u64) -> Vec<u8> {
        const WORDS: [&str; 30] = [
            "Fräulein",
            "Größe",
            "über",
            "schön",
            "Straße",
            "müssen",
            "Bäume",
            "hören",
            "Mädchen",
            "Käse",
            "Öl",
            "Übermut",
            "weiß",
            "grün",
            "und",
            "die",
            "der",
            "das",
            "nicht",
            "ein",
            "ist",
            "zu",
            "Nacht",
            "Geist",
            "Welt",
            "Herz",
            "Ärger",
            "€",
            "κόσμε",
            "𝄞",
        ];
        let mut rng = Rng::new(seed);
        let mut s = String::with_capacity(len + 16);
        while s.len() < len {
            s.push_str(WORDS[rng.below(WORDS.len())]);
            s.push_str(if rng.below(9) == 0 { ",\n" } else { " " });
        }
        let mut cut = len;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        while s.len() < len {
            s.push(' ');
        }
        s.into_bytes()
    }

    /// An HTML table.
    fn html(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng::new(seed);
        let mut s = String::from("<!DOCTYPE html>\n<html><body><table>\n");
        let mut row = 0;
        while s.len() < len {
            let n = rng.below(100_000);
            let _ = writeln!(
                s,
                "<tr class=\"row{}\"><td><a href=\"/items/{n}\">Item {n}</a></td><td>{}</td></tr>",
                row % 2,
                rng.below(1000)
            );
            row += 1;
        }
        s.truncate(len);
        s.into_bytes()
    }

    /// Binary like a PDF's: random stretches, and copies of what came 1 to
    /// 4 KiB before, farther back than a 9-bit window reaches (so that a
    /// compressor with a larger window than agreed is caught).
    fn far_copies(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(len + 256);
        while out.len() < len {
            let n = 64 + rng.below(192);
            if out.len() >= 4096 && rng.below(3) != 0 {
                let from = out.len() - 1024 - rng.below(3072);
                for i in from..from + n {
                    out.push(out[i]);
                }
            } else {
                out.extend((0..n).map(|_| rng.next() as u8));
            }
        }
        out.truncate(len);
        out
    }

    /// Random bytes: deflate cannot make them smaller.
    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng::new(seed);
        (0..len).map(|_| rng.next() as u8).collect()
    }

    // ------------------------------------------------------------ helpers

    /// Sends `frames` (one message: `opcode` with `data`) and checks the
    /// echo: the same message, compressed exactly when `compressed`.
    fn echo(p: &mut Peer, frames: &[Frame], opcode: u8, data: &[u8], compressed: bool) -> Message {
        let wire = p.encode_all(frames);
        p.write_while(wire, |p| p.expect_message(opcode, data, compressed))
    }

    /// Whether the library compresses a message of `len` bytes: at least
    /// the threshold, and a window it can compress with (not 8 bits).
    fn compresses(p: &Peer, threshold: usize, len: usize) -> bool {
        let library = p.directions().expect("permessage-deflate agreed").library;
        library.window_bits >= 9 && len >= threshold
    }

    /// The raw peer's checks catch what they are there for: a stream made
    /// with a 15-bit window is refused where 9 bits were agreed (and one
    /// made with 9 bits is not), and a message that refers to the one
    /// before does not inflate on its own.
    fn the_checks_can_fail() {
        let codec = |peer: Direction, library: Direction| Codec::new(Directions { peer, library });
        let data = far_copies(16384, 1);
        let wide = codec(direction(15, false), direction(15, false)).compress(&data);
        let narrow = codec(direction(9, false), direction(9, false)).compress(&data);
        let reach = |z: &[u8]| peer::farthest_match(z).expect("valid deflate data");
        let (wide_reach, narrow_reach) = (reach(&wide), reach(&narrow));
        assert_eq!((wide_reach.len, narrow_reach.len), (data.len(), data.len()));
        assert!(wide_reach.farthest > 1024, "{wide_reach:?}");
        assert!(narrow_reach.farthest <= 512, "{narrow_reach:?}");
        let mut nine = codec(direction(15, false), direction(9, false));
        assert_eq!(nine.inflate(&narrow).as_deref(), Ok(&data[..]));
        let mut nine = codec(direction(15, false), direction(9, false));
        assert!(
            nine.inflate(&wide).is_err(),
            "a 15-bit stream passed where 9 bits were agreed"
        );
        let mut takeover = codec(direction(15, false), direction(15, false));
        let mut fresh = codec(direction(15, false), direction(15, true));
        let text = json(2000, 1);
        let first = takeover.compress(&text);
        let second = takeover.compress(&text);
        assert_eq!(fresh.inflate(&first).as_deref(), Ok(&text[..]));
        assert!(
            !matches!(fresh.inflate(&second), Ok(ref t) if *t == text),
            "a message that refers to the one before inflated on its own"
        );
    }

    /// A connection on which the raw peer sends a text of 200 bytes
    /// (compressed when `p` agreed on permessage-deflate, and echoed
    /// compressed), then the frames `rest` makes; the library must fail
    /// with `code`.
    fn fails_on(mut p: Peer, case: &str, rest: impl FnOnce(&mut Peer) -> Vec<Frame>, code: u16) {
        p.case(case);
        let before = json(200, 0);
        let agreed = p.directions().is_some();
        let mut frames = if agreed {
            p.compressed(OP_TEXT, &before, None)
        } else {
            vec![Frame::text(&before)]
        };
        frames.extend(rest(&mut p));
        p.send_all(&frames);
        p.expect_message(OP_TEXT, &before, agreed);
        p.expect_fail(code);
    }

    /// [`fails_on`] a connection with the plain agreement.
    fn fails(role: Role, case: &str, rest: impl FnOnce(&mut Peer) -> Vec<Frame>, code: u16) {
        let (config, _) = deflate_config(|_| {});
        fails_on(
            Peer::open_deflate(role, config, plain(role)),
            case,
            rest,
            code,
        );
    }

    /// `data` compressed by a compressor of its own (for a connection that
    /// agreed on nothing).
    fn standalone(data: &[u8]) -> Vec<u8> {
        let d = direction(15, false);
        Codec::new(Directions {
            peer: d,
            library: d,
        })
        .compress(data)
    }

    // ------------------------------------------------------------ 12

    pub fn messages(role: Role) {
        let (config, d) = deflate_config(|_| {});
        let mut p = Peer::open_deflate(role, config, plain(role));
        p.case("12: the agreement");
        assert_eq!(p.answer(), Some("permessage-deflate"), "[{role}]");
        // RFC 7692 §7.2.3's examples, first on the connection: "Hello"
        // compressed, then again referring to the first; in a stored
        // block; in two blocks; in a final block (after which the sender
        // starts a new deflate stream). Echoed uncompressed: 5 bytes is
        // below the threshold.
        for (section, payload) in [
            ("7.2.3.1", &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..]),
            ("7.2.3.2", &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            (
                "7.2.3.3",
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
            ),
            (
                "7.2.3.4",
                &[
                    0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
                ],
            ),
            ("7.2.3.5", &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]),
        ] {
            p.case(format!("12: RFC 7692 §{section}'s \"Hello\""));
            p.send(Frame::text(payload).rsv(RSV1));
            p.expect_message(OP_TEXT, b"Hello", false);
        }
        for (name, opcode, make) in CORPORA {
            for (i, len) in SIZES.into_iter().enumerate() {
                // The same message each time, as Autobahn sends it: with
                // context takeover the later ones refer to the first.
                let data = make(len, i as u64);
                for rep in 0..REPEATS {
                    p.case(format!("{name}: {len} bytes, unfragmented, #{rep}"));
                    let frames = p.compressed(opcode, &data, None);
                    echo(&mut p, &frames, opcode, &data, len >= d.threshold);
                }
            }
        }
        p.case("12: extensions()");
        assert_eq!(p.library_extensions(), "permessage-deflate", "[{role}]");
        close_normally(&mut p);
    }

    pub fn fragmented(role: Role) {
        let (config, d) = deflate_config(|_| {});
        let mut p = Peer::open_deflate(role, config, plain(role));
        for (name, opcode, make) in CORPORA {
            for (i, size) in FRAGMENTS.into_iter().enumerate() {
                // Long enough to make several frames of `size` when it
                // compresses well, and more when it does not.
                let len = (size * 16).clamp(4096, 131072);
                let data = make(len, 100 + i as u64);
                for rep in 0..repeats(len) {
                    p.case(format!("{name}: {len} bytes in frames of {size}, #{rep}"));
                    let frames = p.compressed(opcode, &data, Some(size));
                    echo(&mut p, &frames, opcode, &data, len >= d.threshold);
                }
            }
        }

        p.case("12: a ping between the fragments of a compressed message");
        let data = prose(5000, 1);
        let mut frames = p.compressed(OP_TEXT, &data, Some(700));
        assert!(frames.len() > 1);
        frames.insert(1, Frame::ping("between"));
        p.send_all(&frames);
        p.expect_pong("between");
        p.expect_message(OP_TEXT, &data, true);

        p.case("12: each fragment compressed and flushed on its own");
        let data = prose(20_000, 2);
        let frames = p.compressed_streaming(OP_TEXT, &data, 1000);
        assert_eq!(frames.len(), 20);
        echo(&mut p, &frames, OP_TEXT, &data, true);

        p.case("12: an empty first frame with RSV1, the data in continuations");
        let data = html(3000, 3);
        let z = p.deflate(&data);
        let (a, b) = z.split_at(z.len() / 2);
        let frames = [
            Frame::new(OP_TEXT, b"").rsv(RSV1).more(),
            Frame::cont(a).more(),
            Frame::cont(b).more(),
            Frame::cont(b""),
        ];
        echo(&mut p, &frames, OP_TEXT, &data, true);

        p.case("12: an uncompressed fragmented message between compressed ones");
        let data = json(3000, 4);
        echo(
            &mut p,
            &fragments(OP_TEXT, &data, 500),
            OP_TEXT,
            &data,
            true,
        );
        let frames = p.compressed(OP_TEXT, &data, Some(300));
        echo(&mut p, &frames, OP_TEXT, &data, true);

        p.case("12: a compressed echo over 1 MiB goes out in frames, RSV1 on the first only");
        let data = random(1_200_000, 5);
        let frames = p.compressed(OP_BINARY, &data, Some(64 << 10));
        let m = echo(&mut p, &frames, OP_BINARY, &data, true);
        assert!(m.frames > 1, "[{role}] one frame of {} bytes", m.wire_len);
        close_normally(&mut p);
    }

    // ------------------------------------------------------------ 13

    /// One agreement of 13.*.
    struct Terms {
        case: &'static str,
        /// The library's `DeflateConfig`, changed from the default.
        tweak: Tweak,
        /// The raw peer's `Sec-WebSocket-Extensions` values: its offer
        /// (server role) or its answer (client role).
        ext: &'static [&'static str],
        /// The library's offer (client role).
        offer: &'static str,
        /// The agreement as the library states it: the 101's
        /// `Sec-WebSocket-Extensions` (server role), and `extensions()`.
        agreed: &'static str,
        /// The library's window and reset, for what it sends.
        library: (u8, bool),
        /// The raw peer's, for what it sends.
        peer: (u8, bool),
    }

    fn keep(_: &mut DeflateConfig) {}

    const DEFAULT_OFFER: &str = "permessage-deflate; client_max_window_bits";

    fn terms(role: Role) -> Vec<Terms> {
        let t = |case, ext, agreed, library, peer| Terms {
            case,
            tweak: keep,
            ext,
            offer: DEFAULT_OFFER,
            agreed,
            library,
            peer,
        };
        match role {
            Role::Server => vec![
                t(
                    "13.1 the browser's offer",
                    &[DEFAULT_OFFER],
                    "permessage-deflate",
                    (15, false),
                    (15, false),
                ),
                t(
                    "13.1 a bare offer",
                    &["permessage-deflate"],
                    "permessage-deflate",
                    (15, false),
                    (15, false),
                ),
                t(
                    "13.2 client_no_context_takeover",
                    &["permessage-deflate; client_no_context_takeover"],
                    "permessage-deflate; client_no_context_takeover",
                    (15, false),
                    (15, true),
                ),
                t(
                    "13.2 server_no_context_takeover",
                    &["permessage-deflate; server_no_context_takeover"],
                    "permessage-deflate; server_no_context_takeover",
                    (15, true),
                    (15, false),
                ),
                t(
                    "13.3 server_max_window_bits=9",
                    &["permessage-deflate; server_max_window_bits=9"],
                    "permessage-deflate; server_max_window_bits=9",
                    (9, false),
                    (15, false),
                ),
                t(
                    "13.4 server_max_window_bits=15",
                    &["permessage-deflate; server_max_window_bits=15"],
                    "permessage-deflate; server_max_window_bits=15",
                    (15, false),
                    (15, false),
                ),
                t(
                    "13.3 client_max_window_bits=9",
                    &["permessage-deflate; client_max_window_bits=9"],
                    "permessage-deflate; client_max_window_bits=9",
                    (15, false),
                    (9, false),
                ),
                t(
                    "13.4 client_max_window_bits=15",
                    &["permessage-deflate; client_max_window_bits=15"],
                    "permessage-deflate; client_max_window_bits=15",
                    (15, false),
                    (15, false),
                ),
                t(
                    "13.5 server_no_context_takeover, server_max_window_bits=9",
                    &["permessage-deflate; server_no_context_takeover; server_max_window_bits=9"],
                    "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
                    (9, true),
                    (15, false),
                ),
                t(
                    "13.6 server_no_context_takeover, server_max_window_bits=15",
                    &["permessage-deflate; server_no_context_takeover; server_max_window_bits=15"],
                    "permessage-deflate; server_no_context_takeover; server_max_window_bits=15",
                    (15, true),
                    (15, false),
                ),
                t(
                    "13.6 every parameter, windows of 9 bits",
                    &["permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
                       client_max_window_bits=9; server_max_window_bits=9"],
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                     server_max_window_bits=9; client_max_window_bits=9",
                    (9, true),
                    (9, true),
                ),
                t(
                    "13.7 a list of offers: the first is taken",
                    &["permessage-deflate; server_no_context_takeover; server_max_window_bits=9, \
                       permessage-deflate; server_no_context_takeover, permessage-deflate"],
                    "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
                    (9, true),
                    (15, false),
                ),
                t(
                    "13.7 a list of offers: the first acceptable one is taken",
                    &["x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=7, \
                       permessage-deflate; foo, permessage-deflate; server_max_window_bits, \
                       permessage-deflate; client_max_window_bits=10; server_max_window_bits=12, \
                       permessage-deflate"],
                    "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10",
                    (12, false),
                    (10, false),
                ),
                t(
                    "13.7 offers in two headers: the first acceptable one is taken",
                    &[
                        "permessage-deflate; server_max_window_bits=16",
                        "permessage-deflate; client_no_context_takeover; client_max_window_bits",
                    ],
                    "permessage-deflate; client_no_context_takeover",
                    (15, false),
                    (15, true),
                ),
                t(
                    "13: server_max_window_bits=8: agreed, and the library does not compress",
                    &["permessage-deflate; server_max_window_bits=8"],
                    "permessage-deflate; server_max_window_bits=8",
                    (8, false),
                    (15, false),
                ),
                Terms {
                    tweak: |d| d.server_no_context_takeover = true,
                    ..t(
                        "13: a server configured with server_no_context_takeover",
                        &[DEFAULT_OFFER],
                        "permessage-deflate; server_no_context_takeover",
                        (15, true),
                        (15, false),
                    )
                },
                Terms {
                    tweak: |d| d.server_max_window_bits = 10,
                    ..t(
                        "13: a server configured with server_max_window_bits=10",
                        &[DEFAULT_OFFER],
                        "permessage-deflate; server_max_window_bits=10",
                        (10, false),
                        (15, false),
                    )
                },
                Terms {
                    tweak: |d| {
                        d.client_max_window_bits = 9;
                        d.client_no_context_takeover = true;
                    },
                    ..t(
                        "13: a server configured with client_max_window_bits=9 and \
                         client_no_context_takeover",
                        &[DEFAULT_OFFER],
                        "permessage-deflate; client_no_context_takeover; client_max_window_bits=9",
                        (15, false),
                        (9, true),
                    )
                },
                Terms {
                    tweak: |d| d.level = 0,
                    ..t(
                        "13: compression level 0 (stored blocks)",
                        &[DEFAULT_OFFER],
                        "permessage-deflate",
                        (15, false),
                        (15, false),
                    )
                },
                Terms {
                    tweak: |d| d.level = 9,
                    ..t(
                        "13: compression level 9",
                        &[DEFAULT_OFFER],
                        "permessage-deflate",
                        (15, false),
                        (15, false),
                    )
                },
            ],
            Role::Client => vec![
                t(
                    "13.1 the plain answer",
                    &["permessage-deflate"],
                    "permessage-deflate",
                    (15, false),
                    (15, false),
                ),
                t(
                    "13.2 client_no_context_takeover",
                    &["permessage-deflate; client_no_context_takeover"],
                    "permessage-deflate; client_no_context_takeover",
                    (15, true),
                    (15, false),
                ),
                t(
                    "13.2 server_no_context_takeover",
                    &["permessage-deflate; server_no_context_takeover"],
                    "permessage-deflate; server_no_context_takeover",
                    (15, false),
                    (15, true),
                ),
                t(
                    "13.3 server_max_window_bits=9",
                    &["permessage-deflate; server_max_window_bits=9"],
                    "permessage-deflate; server_max_window_bits=9",
                    (15, false),
                    (9, false),
                ),
                t(
                    "13.4 server_max_window_bits=15",
                    &["permessage-deflate; server_max_window_bits=15"],
                    "permessage-deflate; server_max_window_bits=15",
                    (15, false),
                    (15, false),
                ),
                t(
                    "13.3 client_max_window_bits=9",
                    &["permessage-deflate; client_max_window_bits=9"],
                    "permessage-deflate; client_max_window_bits=9",
                    (9, false),
                    (15, false),
                ),
                t(
                    "13.4 client_max_window_bits=15",
                    &["permessage-deflate; client_max_window_bits=15"],
                    "permessage-deflate; client_max_window_bits=15",
                    (15, false),
                    (15, false),
                ),
                t(
                    "13.5 no context takeover both ways, windows of 9 bits",
                    &["permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                       server_max_window_bits=9; client_max_window_bits=9"],
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                     server_max_window_bits=9; client_max_window_bits=9",
                    (9, true),
                    (9, true),
                ),
                t(
                    "13.6 no context takeover both ways, windows of 15 bits",
                    &["permessage-deflate; client_max_window_bits=15; server_max_window_bits=15; \
                       client_no_context_takeover; server_no_context_takeover"],
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                     server_max_window_bits=15; client_max_window_bits=15",
                    (15, true),
                    (15, true),
                ),
                t(
                    "13: names in capitals, a quoted value",
                    &["Permessage-Deflate; Client_Max_Window_Bits=\"10\"; \
                       SERVER_NO_CONTEXT_TAKEOVER"],
                    "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
                    (10, false),
                    (15, true),
                ),
                t(
                    "13: client_max_window_bits=8: agreed, and the library does not compress",
                    &["permessage-deflate; client_max_window_bits=8"],
                    "permessage-deflate; client_max_window_bits=8",
                    (8, false),
                    (15, false),
                ),
                Terms {
                    tweak: |d| d.client_no_context_takeover = true,
                    offer: "permessage-deflate; client_no_context_takeover; client_max_window_bits",
                    ..t(
                        "13: a client configured with client_no_context_takeover",
                        &["permessage-deflate"],
                        "permessage-deflate; client_no_context_takeover",
                        (15, true),
                        (15, false),
                    )
                },
                Terms {
                    tweak: |d| d.client_max_window_bits = 10,
                    offer: "permessage-deflate; client_max_window_bits=10",
                    ..t(
                        "13: a client configured with client_max_window_bits=10",
                        &["permessage-deflate"],
                        "permessage-deflate",
                        (10, false),
                        (15, false),
                    )
                },
                Terms {
                    tweak: |d| {
                        d.server_no_context_takeover = true;
                        d.server_max_window_bits = 10;
                    },
                    offer: "permessage-deflate; server_no_context_takeover; \
                            server_max_window_bits=10; client_max_window_bits",
                    ..t(
                        "13: a client asking for server_no_context_takeover and a 10-bit window",
                        &["permessage-deflate; server_no_context_takeover; \
                           server_max_window_bits=9"],
                        "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
                        (15, false),
                        (9, true),
                    )
                },
                Terms {
                    tweak: |d| d.level = 0,
                    ..t(
                        "13: compression level 0 (stored blocks)",
                        &["permessage-deflate"],
                        "permessage-deflate",
                        (15, false),
                        (15, false),
                    )
                },
                Terms {
                    tweak: |d| d.level = 9,
                    ..t(
                        "13: compression level 9",
                        &["permessage-deflate"],
                        "permessage-deflate",
                        (15, false),
                        (15, false),
                    )
                },
            ],
        }
    }

    /// 13.*'s messages on an agreed connection: JSON text and binary with
    /// far copies of `sizes`, each sent [`repeats`] times (the same
    /// message); one cut into frames, and an
    /// uncompressed one among the compressed; every echo checked.
    fn exchange(p: &mut Peer, case: &str, threshold: usize, sizes: &[usize]) {
        let kinds = [
            ("text", OP_TEXT, json as Make),
            ("binary", OP_BINARY, far_copies),
        ];
        for (i, &len) in sizes.iter().enumerate() {
            for (kind, opcode, make) in kinds {
                let data = make(len, i as u64);
                for rep in 0..repeats(len) {
                    p.case(format!("{case}: {kind} of {len} bytes, #{rep}"));
                    let frames = p.compressed(opcode, &data, None);
                    let compressed = compresses(p, threshold, len);
                    echo(p, &frames, opcode, &data, compressed);
                }
            }
        }
        p.case(format!("{case}: 16384 bytes of text in frames of 1024"));
        let data = json(16384, 99);
        let frames = p.compressed(OP_TEXT, &data, Some(1024));
        let compressed = compresses(p, threshold, data.len());
        echo(p, &frames, OP_TEXT, &data, compressed);
        p.case(format!(
            "{case}: an uncompressed message among compressed ones"
        ));
        let data = far_copies(5000, 7);
        let compressed = compresses(p, threshold, data.len());
        echo(p, &[Frame::binary(&data)], OP_BINARY, &data, compressed);
        let data = json(3000, 8);
        let frames = p.compressed(OP_TEXT, &data, None);
        echo(p, &frames, OP_TEXT, &data, compressed);
    }

    pub fn parameters(role: Role) {
        the_checks_can_fail();
        for t in terms(role) {
            let (config, d) = deflate_config(t.tweak);
            let mut p = Peer::open_deflate(role, config, t.ext);
            let case = t.case;
            match role {
                Role::Server => assert_eq!(p.answer(), Some(t.agreed), "[{role}] {case}: the 101"),
                Role::Client => assert_eq!(p.offer(), Some(t.offer), "[{role}] {case}: the offer"),
            }
            let want = Directions {
                peer: direction(t.peer.0, t.peer.1),
                library: direction(t.library.0, t.library.1),
            };
            assert_eq!(p.directions(), Some(want), "[{role}] {case}: the terms");
            // Autobahn's 13.1 to 13.6 at its sizes up to 64 KiB; up to
            // 16 KiB with a small window, which makes zlib slow (it slides
            // its whole hash table every 2^bits bytes), and a few sizes for
            // the others.
            let full = case.starts_with("13.") && !case.starts_with("13.7");
            let small_window = t.library.0 < 15 || t.peer.0 < 15;
            let sizes: Vec<usize> = if full { &SIZES_13[..] } else { &SIZES_13_SHORT }
                .iter()
                .copied()
                .filter(|&len| !small_window || len <= 16384)
                .collect();
            exchange(&mut p, case, d.threshold, &sizes);
            p.case(format!("{case}: extensions()"));
            assert_eq!(p.library_extensions(), t.agreed, "[{role}] {case}");
            close_normally(&mut p);
        }
    }

    pub fn threshold(role: Role) {
        // (An empty message is compressed only as the first message of a
        // connection here: see `empty_after_compressed`.)
        for (tweak, below, above) in [
            (
                keep as Tweak,
                &[0usize, 1, 16, 63][..],
                &[64usize, 65, 200][..],
            ),
            (
                |d: &mut DeflateConfig| d.threshold = 0,
                &[],
                &[1, 16, 63, 64],
            ),
            (
                |d: &mut DeflateConfig| d.threshold = 1000,
                &[64, 999],
                &[1000, 1001],
            ),
        ] {
            let (config, d) = deflate_config(tweak);
            let mut p = Peer::open_deflate(role, config, plain(role));
            for &len in below.iter().chain(above) {
                let data = json(len, len as u64);
                let compressed = len >= d.threshold;
                assert_eq!(compressed, above.contains(&len));
                p.case(format!(
                    "13: {len} bytes, compressed, threshold {}",
                    d.threshold
                ));
                let frames = p.compressed(OP_TEXT, &data, None);
                echo(&mut p, &frames, OP_TEXT, &data, compressed);
                p.case(format!(
                    "13: {len} bytes, uncompressed, threshold {}",
                    d.threshold
                ));
                echo(
                    &mut p,
                    &[Frame::binary(&data)],
                    OP_BINARY,
                    &data,
                    compressed,
                );
            }
            close_normally(&mut p);
        }
        // Threshold 0: an empty message, first on its connection.
        let (config, _) = deflate_config(|d| d.threshold = 0);
        let mut p = Peer::open_deflate(role, config.clone(), plain(role));
        p.case("13: an empty message, compressed, first on its connection");
        let frames = p.compressed(OP_TEXT, b"", None);
        echo(&mut p, &frames, OP_TEXT, b"", true);
        close_normally(&mut p);
        // Threshold 0 and no context takeover for the library: empty
        // messages among others.
        let resets: &[&str] = match role {
            Role::Server => &["permessage-deflate; server_no_context_takeover"],
            Role::Client => &["permessage-deflate; client_no_context_takeover"],
        };
        let mut p = Peer::open_deflate(role, config, resets);
        let data = json(100, 1);
        for (i, message) in [&data[..], b"", b"", &data[..]].into_iter().enumerate() {
            p.case(format!(
                "13: without context takeover, message {i} of {} bytes, compressed",
                message.len()
            ));
            let frames = p.compressed(OP_TEXT, message, None);
            echo(&mut p, &frames, OP_TEXT, message, true);
            p.case(format!(
                "13: without context takeover, message {i} of {} bytes, uncompressed",
                message.len()
            ));
            echo(&mut p, &[Frame::text(message)], OP_TEXT, message, true);
        }
        close_normally(&mut p);
        // Level 0 compresses into stored blocks: still RSV1, a few bytes
        // longer than the message.
        let (config, _) = deflate_config(|d| d.level = 0);
        let mut p = Peer::open_deflate(role, config, plain(role));
        p.case("13: level 0, 5000 bytes");
        let data = json(5000, 1);
        let frames = p.compressed(OP_TEXT, &data, None);
        let m = echo(&mut p, &frames, OP_TEXT, &data, true);
        assert!(m.wire_len > data.len(), "[{role}] {m:?}");
        close_normally(&mut p);
    }

    /// Threshold 0 and context takeover: an empty message after a
    /// compressed one must still be a complete deflate block once the tail
    /// is put back (a single 00 byte, RFC 7692 §7.2.3.6), or the raw peer's
    /// inflater misreads the message after it.
    pub fn empty_after_compressed(role: Role) {
        let (config, _) = deflate_config(|d| d.threshold = 0);
        let mut p = Peer::open_deflate(role, config, plain(role));
        let data = json(100, 1);
        for (i, message) in [&data[..], b"", &data[..]].into_iter().enumerate() {
            p.case(format!(
                "13: message {i} of {} bytes, threshold 0, context takeover",
                message.len()
            ));
            let frames = p.compressed(OP_TEXT, message, None);
            echo(&mut p, &frames, OP_TEXT, message, true);
        }
        close_normally(&mut p);
    }

    pub fn reserved_bits(role: Role) {
        let split = |p: &mut Peer, opcode: u8| {
            let z = p.deflate(&json(3000, 1));
            let (a, b) = z.split_at(z.len() / 2);
            (Frame::new(opcode, a).rsv(RSV1).more(), Frame::cont(b))
        };
        fails(
            role,
            "13: RSV1 on the continuation of a compressed message",
            |p| {
                let (first, rest) = split(p, OP_TEXT);
                vec![first, rest.rsv(RSV1)]
            },
            1002,
        );
        fails(
            role,
            "13: RSV1 on the continuation of an uncompressed message",
            |_| vec![Frame::text("frag").more(), Frame::cont("ment").rsv(RSV1)],
            1002,
        );
        for (name, frame) in [
            ("ping", Frame::ping("rsv1")),
            ("pong", Frame::pong("rsv1")),
            ("close", Frame::close(1000, "")),
        ] {
            fails(
                role,
                &format!("13: RSV1 on a {name}"),
                |_| vec![frame.rsv(RSV1)],
                1002,
            );
        }
        fails(
            role,
            "13: RSV1 on a ping between the fragments of a compressed message",
            |p| {
                let (first, rest) = split(p, OP_BINARY);
                vec![first, Frame::new(OP_PING, "rsv1").rsv(RSV1), rest]
            },
            1002,
        );
        for (name, rsv) in [
            ("RSV1 and RSV2", RSV1 | 0b010),
            ("RSV1 and RSV3", RSV1 | 0b001),
            ("RSV2", 0b010),
        ] {
            fails(
                role,
                &format!("13: {name} on a compressed message's first frame"),
                |p| {
                    let mut frames = p.compressed(OP_TEXT, &json(300, 2), None);
                    frames[0].rsv = rsv;
                    frames
                },
                1002,
            );
        }

        // RSV1 where nothing was agreed: the library without
        // permessage-deflate, and with it when the offer is declined
        // (server role) or the answer does not accept it (client role).
        let declined: &[&str] = match role {
            Role::Server => &["permessage-deflate; server_max_window_bits=7"],
            Role::Client => &[],
        };
        let (with_deflate, _) = deflate_config(|_| {});
        for (name, config, ext) in [
            (
                "permessage-deflate off",
                Config::default(),
                plain(Role::Server),
            ),
            ("permessage-deflate not agreed", with_deflate, declined),
        ] {
            let ext = if role == Role::Client && name.ends_with("off") {
                &[][..]
            } else {
                ext
            };
            let p = Peer::open_ext(role, config, ext);
            assert_eq!(p.answer(), None, "[{role}] {name}");
            assert_eq!(p.directions(), None, "[{role}] {name}");
            fails_on(
                p,
                &format!("13: RSV1 on a compressed text, {name}"),
                |_| vec![Frame::text(standalone(&json(300, 3))).rsv(RSV1)],
                1002,
            );
        }
    }

    pub fn invalid_payloads(role: Role) {
        let cases: [(&str, Vec<u8>); 3] = [
            ("a reserved block type (BTYPE 11)", vec![0xFF; 8]),
            (
                "a stored block whose lengths disagree",
                [&[0x00, 0x05, 0x00, 0x00, 0x00][..], b"hello"].concat(),
            ),
            ("garbage after a sync flush", b"\x12\x34\x56\x78".to_vec()),
        ];
        for (name, bad) in cases {
            for opcode in [OP_TEXT, OP_BINARY] {
                fails(
                    role,
                    &format!("13: compressed data with {name}, opcode {opcode:#x}"),
                    |p| {
                        let payload = if name.starts_with("garbage") {
                            [p.deflate(&json(500, 1)), bad.clone()].concat()
                        } else {
                            bad.clone()
                        };
                        vec![Frame::new(opcode, payload).rsv(RSV1)]
                    },
                    1007,
                );
            }
        }
        fails(
            role,
            "13: a continuation of invalid data after a valid first frame",
            |p| {
                let z = p.deflate(&json(500, 2));
                vec![
                    Frame::new(OP_BINARY, z).rsv(RSV1).more(),
                    Frame::cont(b"\x12\x34\x56\x78"),
                ]
            },
            1007,
        );
        // A match 1 byte back before any byte was inflated (fixed Huffman:
        // length 3, distance 1, end of block). On a connection of its own,
        // before which nothing was inflated.
        let (config, _) = deflate_config(|_| {});
        let mut p = Peer::open_deflate(role, config, plain(role));
        p.case("13: a match before the start of the data");
        p.send_all(&[
            Frame::text("before"),
            Frame::text(b"\x02\x02\x00").rsv(RSV1),
        ]);
        p.expect_text("before");
        p.expect_fail(1007);

        // Inflated text that is not UTF-8.
        let mut deep = json(10_000, 3);
        deep[5000] = 0xC0;
        let mut split_bad = prose(3000, 4);
        split_bad.splice(1500..1500, *b"\xED\xA0\x80");
        for (name, text, fragment) in [
            ("an FF byte", b"abc\xFFdef".to_vec(), None),
            ("C0 deep in 10 KB", deep, None),
            (
                "a surrogate, the message in 256-byte frames",
                split_bad,
                Some(256),
            ),
            ("a character cut at the end", b"ok \xE2\x82".to_vec(), None),
        ] {
            assert!(std::str::from_utf8(&text).is_err());
            fails(
                role,
                &format!("13: a compressed text with {name}"),
                |p| p.compressed(OP_TEXT, &text, fragment),
                1007,
            );
        }
        // Fail-fast: the first frame, not final, of a message that never
        // ends.
        let mut bad = json(3000, 5);
        bad[100] = 0xFF;
        fails(
            role,
            "13: invalid UTF-8 in the first frame of an unfinished compressed text",
            |p| {
                let z = p.deflate(&bad);
                vec![Frame::new(OP_TEXT, z).rsv(RSV1).more()]
            },
            1007,
        );
        // The same bytes in a binary message are just bytes.
        let (config, _) = deflate_config(|_| {});
        let mut p = Peer::open_deflate(role, config, plain(role));
        p.case("13: invalid UTF-8 in a compressed binary message is echoed");
        let mut data = json(3000, 6);
        data[100] = 0xFF;
        data[2000] = 0xC0;
        let frames = p.compressed(OP_BINARY, &data, Some(1000));
        echo(&mut p, &frames, OP_BINARY, &data, true);
        close_normally(&mut p);
    }

    pub fn limits(role: Role) {
        let open = || {
            let config = small_limits()
                .permessage_deflate(DeflateConfig::default())
                .expect("a valid DeflateConfig");
            Peer::open_deflate(role, config, plain(role))
        };
        let mut p = open();
        p.case("13: a compressed message that inflates to the message limit");
        let data = json(MESSAGE_LIMIT, 1);
        let frames = p.compressed(OP_TEXT, &data, None);
        assert!(frames[0].payload.len() < FRAME_LIMIT);
        echo(&mut p, &frames, OP_TEXT, &data, true);
        p.case("13: the frame limit is on the wire: one frame that inflates past it");
        let data = bitmap(MESSAGE_LIMIT - 100, 2);
        let frames = p.compressed(OP_BINARY, &data, None);
        assert!(frames[0].payload.len() < FRAME_LIMIT);
        echo(&mut p, &frames, OP_BINARY, &data, true);
        close_normally(&mut p);

        fails_on(
            open(),
            "13: a compressed message one byte over the message limit",
            |p| p.compressed(OP_TEXT, &json(MESSAGE_LIMIT + 1, 3), None),
            1009,
        );
        fails_on(
            open(),
            "13: 1 MiB of zeros in 1 KiB of compressed data",
            |p| p.compressed(OP_BINARY, &vec![0; 1 << 20], None),
            1009,
        );
        fails_on(
            open(),
            "13: compressed fragments that together inflate past the message limit",
            |p| p.compressed(OP_BINARY, &vec![7; 200 << 10], Some(100)),
            1009,
        );
        fails_on(
            open(),
            "13: a compressed frame over the frame limit on the wire",
            |p| p.compressed(OP_BINARY, &random(FRAME_LIMIT + 1000, 4), None),
            1009,
        );
    }

    pub fn negotiation(role: Role) {
        match role {
            Role::Server => {
                // Offers the library declines: no extension in the 101, and
                // an uncompressed echo.
                let (config, _) = deflate_config(|_| {});
                let declined = [
                    "permessage-deflate; server_max_window_bits=7",
                    "permessage-deflate; server_max_window_bits=16",
                    "permessage-deflate; server_max_window_bits",
                    "permessage-deflate; server_max_window_bits=09",
                    "permessage-deflate; client_max_window_bits=0",
                    "permessage-deflate; server_no_context_takeover=1",
                    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                    "permessage-deflate; foo",
                    "permessage-deflate;; client_max_window_bits",
                    "x-webkit-deflate-frame",
                ];
                for offer in declined {
                    let mut p = Peer::open_ext(role, config.clone(), &[offer]);
                    declined_then_plain(&mut p, &format!("13: the offer {offer:?} is declined"));
                }
                let mut p = Peer::open_ext(role, Config::default(), &[DEFAULT_OFFER]);
                declined_then_plain(&mut p, "13: permessage-deflate off: the offer is declined");
            }
            Role::Client => {
                let (config, _) = deflate_config(|_| {});
                let mut p = Peer::open_deflate(role, config.clone(), &[]);
                declined_then_plain(&mut p, "13: the server answers without extensions");
                let mut p = Peer::open_ext(role, Config::default(), &[]);
                assert_eq!(p.offer(), None, "[{role}] permessage-deflate off: no offer");
                declined_then_plain(&mut p, "13: permessage-deflate off");

                // Answers the library must refuse (RFC 7692 §5, §7.1).
                let refused: [(&str, &[&str], &str); 10] = [
                    (
                        "server_max_window_bits=7",
                        &["permessage-deflate; server_max_window_bits=7"],
                        "server_max_window_bits",
                    ),
                    (
                        "server_max_window_bits=16",
                        &["permessage-deflate; server_max_window_bits=16"],
                        "server_max_window_bits",
                    ),
                    (
                        "client_max_window_bits without a value",
                        &["permessage-deflate; client_max_window_bits"],
                        "client_max_window_bits",
                    ),
                    (
                        "an unknown parameter",
                        &["permessage-deflate; x-unknown"],
                        "x-unknown",
                    ),
                    (
                        "an unknown parameter with a value",
                        &["permessage-deflate; foo=bar"],
                        "foo",
                    ),
                    ("an extension not offered", &["x-unknown"], "x-unknown"),
                    (
                        "permessage-deflate twice",
                        &["permessage-deflate, permessage-deflate"],
                        "more than once",
                    ),
                    (
                        "permessage-deflate in two headers",
                        &["permessage-deflate", "permessage-deflate"],
                        "more than once",
                    ),
                    (
                        "a parameter twice",
                        &["permessage-deflate; server_no_context_takeover; \
                           server_no_context_takeover"],
                        "server_no_context_takeover",
                    ),
                    (
                        "a value on a flag",
                        &["permessage-deflate; client_no_context_takeover=1"],
                        "client_no_context_takeover",
                    ),
                ];
                for (name, answer, why) in refused {
                    let mut p = Peer::open_deflate(role, config.clone(), answer);
                    p.case(format!("13: the answer {answer:?} ({name}) is refused"));
                    p.expect_handshake_refused(why);
                }
                // Answers that do not honour what the library asked for.
                let asking: [(&str, Tweak, &str, &str); 4] = [
                    (
                        "a 10-bit client window",
                        |d| d.client_max_window_bits = 10,
                        "permessage-deflate; client_max_window_bits=12",
                        "client_max_window_bits=12",
                    ),
                    (
                        "server_no_context_takeover",
                        |d| d.server_no_context_takeover = true,
                        "permessage-deflate",
                        "server_no_context_takeover",
                    ),
                    (
                        "a 10-bit server window",
                        |d| d.server_max_window_bits = 10,
                        "permessage-deflate",
                        "server_max_window_bits",
                    ),
                    (
                        "a 10-bit server window",
                        |d| d.server_max_window_bits = 10,
                        "permessage-deflate; server_max_window_bits=12",
                        "server_max_window_bits=12",
                    ),
                ];
                for (asked, tweak, answer, why) in asking {
                    let (config, _) = deflate_config(tweak);
                    let mut p = Peer::open_deflate(role, config, &[answer]);
                    p.case(format!(
                        "13: the answer {answer:?} to a client asking for {asked}"
                    ));
                    p.expect_handshake_refused(why);
                }
                let mut p = Peer::open_ext(role, Config::default(), &["permessage-deflate"]);
                p.case("13: permessage-deflate accepted though not offered");
                p.expect_handshake_refused("not offered");
            }
        }
    }

    /// Nothing was agreed on `p`: messages go both ways uncompressed (the
    /// raw peer's check of the RSV bits is the strict one), and
    /// `extensions()` is empty.
    fn declined_then_plain(p: &mut Peer, case: &str) {
        p.case(case);
        assert_eq!(p.answer(), None, "[{}] {case}: the 101", p.role);
        assert_eq!(p.directions(), None, "[{}] {case}", p.role);
        let data = json(300, 1);
        p.send(Frame::text(&data));
        p.expect_text(&data);
        assert_eq!(p.library_extensions(), "", "[{}] {case}", p.role);
        close_normally(p);
    }
}
