//! RFC 6455 conformance, section by section after the Autobahn|Testsuite
//! (cases 1.*–10.*), without the suite: a raw peer written here
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
    ($($scenario:ident => $server:ident, $client:ident;)*) => {
        $(
            #[test]
            fn $server() {
                $scenario(Role::Server);
            }

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
