//! Property tests of the sans-I/O protocol core, over the entry points the
//! fuzz targets in `fuzz/` exercise: any input, split at any points, gives
//! the same result as when fed whole, valid input decodes to exactly what was
//! encoded, and nothing panics.
//!
//! Inputs are kept small (256 cases per property) so the file runs in a few
//! seconds in CI with the stable toolchain.

use airws::proto::close::{self, is_valid_on_wire};
use airws::proto::connection::{Connection, Ending, Settings};
use airws::proto::error::ProtocolError;
use airws::proto::frame::{
    decode_header, header_bytes, HeaderError, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
};
use airws::proto::handshake::{
    accept_key, accept_response, client_request, parse_request, parse_response, RequestError,
    ResponseError,
};
use airws::proto::mask::apply_mask;
use airws::proto::receiver::{Incoming, Limits, Receiver};
use airws::proto::{utf8, Role};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use std::path::Path;
use std::time::{Duration, Instant};

/// The checks of the fuzz targets (`fuzz/common/`), for replaying their
/// seeds and kept inputs here.
#[path = "../fuzz/common/mod.rs"]
mod fuzz_checks;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------------ helpers

/// Splits `data` at the given points (taken modulo its length + 1, so empty
/// pieces occur too).
fn split<'a>(data: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for c in cuts {
        pieces.push(&data[start..c]);
        start = c;
    }
    pieces.push(&data[start..]);
    pieces
}

/// What a receiver made of a whole stream: the items, and the first error.
type Outcome = (Vec<Incoming>, Result<(), ProtocolError>);

/// Feeds `chunks` to a new receiver, all of them even after an error or a
/// close, checking that a finished receiver stays finished and takes nothing.
fn feed(role: Role, limits: Limits, chunks: &[&[u8]]) -> Outcome {
    let mut r = Receiver::new(role, limits);
    let mut out = Vec::new();
    let mut result = Ok(());
    for chunk in chunks {
        let finished = r.is_finished();
        let before = out.len();
        let res = r.receive(chunk, &mut out);
        if finished {
            assert_eq!(res, Ok(()), "a finished receiver failed again");
            assert_eq!(out.len(), before, "a finished receiver gave items");
        }
        if let Err(e) = res {
            assert!(r.is_finished(), "not finished after {e}");
            result = Err(e);
        } else if r.is_finished() && !finished {
            assert!(matches!(out.last(), Some(Incoming::Close(_))));
        }
    }
    (out, result)
}

/// Like `feed`, but payload bytes go where the read loop puts a large
/// payload's: into the room the receiver lends, at most `max` bytes at a
/// time. The room is filled with garbage first, so that bytes lent but not
/// committed would show in the messages. And as the read loop does, every
/// delivered message's buffer goes back to the receiver (after its bytes
/// are copied out, and garbage written into its spare capacity), so that a
/// recycled buffer's old bytes would show too.
fn feed_direct(role: Role, limits: Limits, chunks: &[&[u8]], max: usize) -> Outcome {
    let mut r = Receiver::new(role, limits);
    let mut out = Vec::new();
    let mut delivered = Vec::new();
    let mut recycle = |r: &mut Receiver, out: &mut Vec<Incoming>| {
        for item in out.drain(..) {
            let buf = match &item {
                Incoming::Text(s) => Some(s.clone().into_bytes()),
                Incoming::Binary(b) => Some(b.clone()),
                _ => None,
            };
            delivered.push(item);
            if let Some(mut buf) = buf {
                buf.resize(buf.capacity().max(8), 0xEE);
                r.recycle(buf);
            }
        }
    };
    for chunk in chunks {
        let mut rest: &[u8] = chunk;
        while !rest.is_empty() && !r.is_finished() {
            let res = match r.payload_room(1, max) {
                Some(room) => {
                    assert!(!room.is_empty() && room.len() <= max);
                    room.fill(0xA5);
                    let k = room.len().min(rest.len());
                    room[..k].copy_from_slice(&rest[..k]);
                    rest = &rest[k..];
                    r.commit_room(k, &mut out)
                }
                None => {
                    let res = r.receive(&rest[..1], &mut out);
                    rest = &rest[1..];
                    res
                }
            };
            recycle(&mut r, &mut out);
            if let Err(e) = res {
                assert!(r.is_finished(), "not finished after {e}");
                return (delivered, Err(e));
            }
        }
    }
    (delivered, Ok(()))
}

const BIG: Limits = Limits {
    max_frame_size: 1 << 20,
    max_message_size: 1 << 20,
};

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Client), Just(Role::Server)]
}

fn small_limits() -> impl Strategy<Value = Limits> {
    (0u64..160, 0u64..400).prop_map(|(f, m)| Limits {
        max_frame_size: f,
        max_message_size: m,
    })
}

/// A frame as it is put on the wire, any of its fields possibly wrong.
#[derive(Debug, Clone)]
struct RawFrame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    /// Whether the MASK bit is as the receiving role requires.
    right_mask: bool,
    /// 0: shortest length form; 1: 16-bit; 2: 64-bit (possibly longer than needed).
    len_form: u8,
    key: [u8; 4],
    payload: Vec<u8>,
    /// Bytes cut off the end of the frame.
    truncate: usize,
}

/// Encodes a frame as a peer sends it to a receiver in `to`: masked for a
/// server, unmasked for a client (unless `right_mask` is false).
fn encode(f: &RawFrame, to: Role) -> Vec<u8> {
    let masked = (to == Role::Server) == f.right_mask;
    let mut out = vec![u8::from(f.fin) << 7 | (f.rsv & 7) << 4 | (f.opcode & 0xF)];
    let bit = if masked { 0x80 } else { 0 };
    let len = f.payload.len();
    match f.len_form {
        0 if len < 126 => out.push(bit | len as u8),
        0 | 1 if len <= 0xFFFF => {
            out.push(bit | 126);
            out.extend((len as u16).to_be_bytes());
        }
        _ => {
            out.push(bit | 127);
            out.extend((len as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend(f.key);
        out.extend(f.payload.iter().enumerate().map(|(i, b)| b ^ f.key[i % 4]));
    } else {
        out.extend(&f.payload);
    }
    out.truncate(out.len().saturating_sub(f.truncate));
    out
}

/// A frame as a valid peer sends it (shortest length form, right masking).
fn valid_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4], to: Role) -> Vec<u8> {
    encode(
        &RawFrame {
            fin,
            rsv: 0,
            opcode,
            right_mask: true,
            len_form: 0,
            key,
            payload: payload.to_vec(),
            truncate: 0,
        },
        to,
    )
}

fn close_payload() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            select(vec![1000u16, 1001, 1002, 1003, 1007, 1011, 3000, 4999]),
            any::<u16>()
        ],
        "\\PC{0,12}",
    )
        .prop_map(|(code, reason)| [&code.to_be_bytes()[..], reason.as_bytes()].concat())
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..40),
        3 => "\\PC{0,24}".prop_map(String::into_bytes),
        1 => close_payload(),
        1 => vec(any::<u8>(), 100..300),
    ]
}

/// Frames that are mostly plausible: the receiver gets past the header
/// checks often enough to reach assembly, UTF-8 and limit checks.
fn raw_frame() -> impl Strategy<Value = RawFrame> {
    (
        prop::bool::weighted(0.7),
        prop_oneof![40 => Just(0u8), 1 => 0u8..8],
        prop_oneof![
            20 => select(vec![0u8, 1, 2, 8, 9, 10]),
            1 => 0u8..16
        ],
        prop::bool::weighted(0.98),
        prop_oneof![8 => Just(0u8), 1 => 1u8..3],
        any::<[u8; 4]>(),
        payload(),
        prop_oneof![30 => Just(0usize), 1 => 1usize..6],
    )
        .prop_map(
            |(fin, rsv, opcode, right_mask, len_form, key, payload, truncate)| RawFrame {
                fin,
                rsv,
                opcode,
                right_mask,
                len_form,
                key,
                payload,
                truncate,
            },
        )
}

/// Any bytes a peer could send: random bytes, or a sequence of plausible
/// frames with random bytes here and there.
fn noisy_stream(to: Role) -> impl Strategy<Value = Vec<u8>> {
    let pieces = vec(
        prop_oneof![
            20 => raw_frame().prop_map(move |f| encode(&f, to)),
            1 => vec(any::<u8>(), 0..8),
        ],
        0..12,
    )
    .prop_map(|p| p.concat());
    prop_oneof![1 => vec(any::<u8>(), 0..512), 4 => pieces]
}

fn role_and_stream() -> impl Strategy<Value = (Role, Vec<u8>)> {
    role().prop_flat_map(|r| (Just(r), noisy_stream(r)))
}

/// One unit of a valid stream: a data message, fragmented at `cuts`, with
/// control frames after some of its fragments; or a lone ping or pong.
#[derive(Debug, Clone)]
enum Unit {
    Data {
        text: bool,
        payload: Vec<u8>,
        cuts: Vec<usize>,
        /// (after which fragment, is a ping, payload)
        controls: Vec<(usize, bool, Vec<u8>)>,
    },
    Control(bool, Vec<u8>),
}

fn control_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..16),
        vec(any::<u8>(), MAX_CONTROL_PAYLOAD..=MAX_CONTROL_PAYLOAD)
    ]
}

fn unit() -> impl Strategy<Value = Unit> {
    let data = prop_oneof![
        4 => "\\PC{0,60}".prop_map(|s| (true, s.into_bytes())),
        4 => vec(any::<u8>(), 0..200).prop_map(|b| (false, b)),
        1 => vec(any::<u8>(), 126..2000).prop_map(|b| (false, b)),
        // The 64-bit length form, once in a while.
        1 => (65536usize..65600, any::<u8>()).prop_map(|(n, b)| (false, vec![b; n])),
    ];
    prop_oneof![
        5 => (
            data,
            vec(any::<usize>(), 0..5),
            vec((0usize..6, any::<bool>(), control_payload()), 0..3),
        )
            .prop_map(|((text, payload), cuts, controls)| Unit::Data {
                text,
                payload,
                cuts,
                controls,
            }),
        1 => (any::<bool>(), control_payload()).prop_map(|(p, b)| Unit::Control(p, b)),
    ]
}

/// A frame of a valid stream and what it completes.
struct Step {
    bytes: Vec<u8>,
    /// For a data frame: its payload length and the message's length so far.
    data: Option<(u64, u64)>,
    completes: Option<Incoming>,
}

/// Encodes units (and an optional close, then bytes that must be ignored)
/// as a valid peer sends them to `to`.
fn valid_stream(
    units: &[Unit],
    close: &Option<Option<(u16, String)>>,
    trailer: &[u8],
    keys: &[[u8; 4]],
    to: Role,
) -> Vec<Step> {
    let mut key_i = 0;
    let mut key = || {
        key_i += 1;
        keys[key_i % keys.len()]
    };
    let control = |ping: bool, p: &[u8], key: [u8; 4]| Step {
        bytes: valid_frame(true, if ping { 9 } else { 10 }, p, key, to),
        data: None,
        completes: Some(if ping {
            Incoming::Ping(p.to_vec())
        } else {
            Incoming::Pong(p.to_vec())
        }),
    };
    let mut steps = Vec::new();
    for u in units {
        match u {
            Unit::Control(ping, p) => steps.push(control(*ping, p, key())),
            Unit::Data {
                text,
                payload,
                cuts,
                controls,
            } => {
                let fragments = split(payload, cuts);
                let mut so_far = 0;
                for (i, frag) in fragments.iter().enumerate() {
                    let last = i + 1 == fragments.len();
                    let opcode = match (i, text) {
                        (0, true) => 1,
                        (0, false) => 2,
                        _ => 0,
                    };
                    so_far += frag.len() as u64;
                    let message = if *text {
                        Incoming::Text(String::from_utf8(payload.clone()).unwrap())
                    } else {
                        Incoming::Binary(payload.clone())
                    };
                    steps.push(Step {
                        bytes: valid_frame(last, opcode, frag, key(), to),
                        data: Some((frag.len() as u64, so_far)),
                        completes: last.then_some(message),
                    });
                    for (_, ping, p) in controls.iter().filter(|c| c.0 % fragments.len() == i) {
                        steps.push(control(*ping, p, key()));
                    }
                }
            }
        }
    }
    if let Some(c) = close {
        let payload = match c {
            Some((code, reason)) => close::build_payload(Some(*code), reason),
            None => Vec::new(),
        };
        steps.push(Step {
            bytes: valid_frame(true, 8, &payload, key(), to),
            data: None,
            completes: Some(Incoming::Close(c.clone())),
        });
        steps.push(Step {
            bytes: trailer.to_vec(),
            data: None,
            completes: None,
        });
    }
    steps
}

/// What a receiver with `limits` must make of a valid stream: every item up
/// to the first data frame that breaks a limit, then 1009.
fn expected(steps: &[Step], limits: Limits) -> Outcome {
    let mut items = Vec::new();
    for s in steps {
        if let Some((frame, message)) = s.data {
            if frame > limits.max_frame_size || message > limits.max_message_size {
                return (items, Err(ProtocolError::new(1009, "")));
            }
        }
        items.extend(s.completes.clone());
    }
    (items, Ok(()))
}

fn close_frame() -> impl Strategy<Value = Option<Option<(u16, String)>>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(None)),
        1 => (
            select(vec![1000u16, 1001, 1003, 1008, 1011, 3000, 4000, 4999]),
            "\\PC{0,30}"
        )
            .prop_map(|(c, r)| Some(Some((c, r)))),
    ]
}

/// Strips the reason of an error, for comparing with `expected`.
fn codes(o: &Outcome) -> (&[Incoming], Result<(), u16>) {
    (&o.0, o.1.map_err(|e| e.code))
}

/// A header name in random case.
fn cased(name: &'static str) -> impl Strategy<Value = String> {
    vec(any::<bool>(), name.len()).prop_map(move |upper| {
        name.chars()
            .zip(upper)
            .map(|(c, u)| {
                if u {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

fn token() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9.-]{0,8}"
}

/// Headers that change nothing.
fn extra_headers() -> impl Strategy<Value = Vec<String>> {
    vec(
        ("X-[A-Za-z]{1,8}", "[ -~]{0,16}").prop_map(|(n, v)| format!("{n}: {}", v.trim())),
        0..4,
    )
}

/// A valid upgrade request head in a random form, and what it must parse to.
fn valid_request() -> impl Strategy<Value = (Vec<u8>, String, String, String, Vec<String>)> {
    (
        "/[a-zA-Z0-9/?=&%._-]{0,24}",
        "[a-z0-9.-]{1,16}(:[0-9]{1,5})?",
        any::<[u8; 16]>(),
        vec(token(), 0..4),
        (
            cased("Host"),
            cased("Upgrade"),
            cased("Connection"),
            cased("Sec-WebSocket-Key"),
            cased("Sec-WebSocket-Version"),
            cased("Sec-WebSocket-Protocol"),
        ),
        select(vec!["websocket", "WebSocket", "h2c, websocket"]),
        select(vec![
            "Upgrade",
            "upgrade",
            "keep-alive, Upgrade",
            "Upgrade ,close",
        ]),
        extra_headers(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(
            |(path, host, nonce, protocols, names, upgrade, connection, extra, seed, lf)| {
                let key = client_request("h", "/", &[], &[], nonce).key;
                let (n_host, n_up, n_conn, n_key, n_ver, n_proto) = names;
                let mut lines = vec![
                    format!("{n_host}: {host}"),
                    format!("{n_up}: {upgrade}"),
                    format!("{n_conn}: {connection}"),
                    format!("{n_key}: {key}"),
                    format!("{n_ver}: 13"),
                ];
                if !protocols.is_empty() {
                    lines.push(format!("{n_proto}: {}", protocols.join(" , ")));
                }
                lines.extend(extra);
                shuffle(&mut lines, seed);
                let eol = if lf { "\n" } else { "\r\n" };
                let mut head = format!("GET {path} HTTP/1.1{eol}");
                for l in &lines {
                    head.push_str(l);
                    head.push_str(eol);
                }
                head.push_str(eol);
                (head.into_bytes(), path, host, key, protocols)
            },
        )
}

/// A deterministic shuffle (proptest shrinks the seed, not the order).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        items.swap(i, (seed >> 33) as usize % (i + 1));
    }
}

/// Bytes that look like an HTTP head: plausible lines, mutated.
fn http_like(first_lines: Vec<&'static str>) -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        30 => select(vec![
            "Host: example.com",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: c2hvcnQ=",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Version: 8",
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "Sec-WebSocket-Protocol: chat, superchat",
            "Sec-WebSocket-Protocol: other",
            "Sec-WebSocket-Extensions: permessage-deflate",
            "Content-Length: 0",
            "",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,20}",
    ];
    (
        select(first_lines),
        vec(line, 0..10),
        select(vec!["\r\n", "\n"]),
        prop_oneof![
            5 => Just(Vec::new()),
            1 => vec((any::<usize>(), any::<u8>()), 1..3),
        ],
    )
        .prop_map(|(first, lines, eol, flips)| {
            let mut head = format!("{first}{eol}");
            for l in lines {
                head.push_str(&l);
                head.push_str(eol);
            }
            head.push_str(eol);
            let mut bytes = head.into_bytes();
            for (at, b) in flips {
                let n = bytes.len();
                bytes[at % n] = b;
            }
            bytes
        })
}

/// Checks the prefix rules of a head parser on `data`: a prefix that is
/// complete gives the same answer as the whole, a prefix that fails means
/// the whole fails, and "need more" for the whole means "need more" for
/// every prefix.
fn check_prefixes<T: PartialEq + std::fmt::Debug, E: std::fmt::Debug>(
    data: &[u8],
    parse: impl Fn(&[u8]) -> Result<Option<T>, E>,
) -> Result<(), TestCaseError> {
    let whole = parse(data);
    for cut in 0..data.len() {
        match parse(&data[..cut]) {
            Ok(None) => {}
            Ok(Some(part)) => {
                prop_assert!(
                    matches!(&whole, Ok(Some(w)) if *w == part),
                    "prefix {cut} gave {part:?}, the whole {whole:?}"
                );
            }
            Err(e) => prop_assert!(
                whole.is_err(),
                "prefix {cut} failed ({e:?}), whole {whole:?}"
            ),
        }
        if matches!(whole, Ok(None)) {
            prop_assert!(matches!(parse(&data[..cut]), Ok(None)));
        }
    }
    Ok(())
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The verdict of feeding growing prefixes of `data`, ending at `ends`, to
/// `utf8::advance`: the end of the prefix it failed on, if it did.
fn advance_in_steps(data: &[u8], ends: &[usize]) -> Result<Option<usize>, TestCaseError> {
    let mut checked = 0;
    for &end in ends {
        let before = checked;
        if !utf8::advance(&data[..end], &mut checked) {
            return Ok(Some(end));
        }
        prop_assert!(before <= checked && checked <= end);
        prop_assert!(std::str::from_utf8(&data[..checked]).is_ok());
        // Everything but a cut-short sequence at the end is checked.
        prop_assert!(end - checked < 4);
        prop_assert_eq!(
            checked,
            std::str::from_utf8(&data[..end]).map_or_else(|e| e.valid_up_to(), |_| end)
        );
    }
    Ok(None)
}

// --------------------------------------------------------------- properties

/// What a connection made of a whole stream, then the end of it: the
/// messages, what it wrote (for a client, only its length: masking keys
/// are random), whether it shut its write side down, how it ended and its
/// close reason.
type ConnOutcome = (
    Vec<Incoming>,
    Result<Vec<u8>, usize>,
    bool,
    Option<Ending>,
    u16,
);

/// Feeds `chunks` to a new connection (through lent rooms of at most
/// `room` bytes where it lends one, when `room` is set), taking its
/// messages and its output after each, then ends the stream.
fn feed_connection(
    role: Role,
    limits: Limits,
    chunks: &[&[u8]],
    room: Option<usize>,
) -> Result<ConnOutcome, TestCaseError> {
    let now = Instant::now();
    let settings = Settings {
        limits,
        close_timeout: Duration::from_secs(5),
        idle_timeout: None,
        message_timeout: None,
        budget: None,
        keepalive: None,
    };
    let mut conn = Connection::new(role, settings, now);
    let mut messages = Vec::new();
    let mut out = Vec::new();
    let mut shutdown = false;
    let mut take = |conn: &mut Connection, messages: &mut Vec<Incoming>, out: &mut Vec<u8>| {
        for _ in 0..10_000 {
            if !conn.has_messages() {
                break;
            }
            conn.poll_messages(now, messages);
        }
        let mut buf = Vec::new();
        shutdown |= conn.poll_transmit(&mut buf);
        out.extend_from_slice(&buf);
    };
    for chunk in chunks {
        let mut rest: &[u8] = chunk;
        while !rest.is_empty() {
            let lent = room.and_then(|max| conn.lend_room(1, max));
            match lent {
                Some(mut lent) => {
                    let n = rest.len().min(lent.bytes().len());
                    lent.bytes()[..n].copy_from_slice(&rest[..n]);
                    conn.return_room(lent, n, now);
                    rest = &rest[n..];
                }
                None => {
                    conn.receive(rest, now);
                    rest = &[];
                }
            }
            take(&mut conn, &mut messages, &mut out);
            prop_assert!(
                conn.queued_len() <= (64 << 10) + 256,
                "queue grew to {}",
                conn.queued_len()
            );
        }
    }
    conn.receive_eof();
    take(&mut conn, &mut messages, &mut out);
    let ending = conn.ending();
    let reason = ending.map_or(0, |e| conn.close_reason(e));
    let written = match role {
        Role::Server => Ok(out),
        Role::Client => Err(out.len()),
    };
    Ok((messages, written, shutdown, ending, reason))
}

proptest! {
    #![proptest_config(config())]

    /// (a) The connection state machine: any bytes, either role, small
    /// limits, split anywhere or read through lent rooms, give the same
    /// messages, the same output, the same ending and close reason as whole;
    /// nothing panics and the queue of frames to write stays bounded.
    #[test]
    fn connection_any_bytes_split_anywhere_equals_whole(
        (role, data) in role_and_stream(),
        limits in small_limits(),
        points in vec(any::<usize>(), 0..16),
        room in 1usize..200,
    ) {
        let whole = feed_connection(role, limits, &[&data], None)?;
        let pieces = split(&data, &points);
        prop_assert_eq!(&feed_connection(role, limits, &pieces, None)?, &whole);
        prop_assert_eq!(&feed_connection(role, limits, &pieces, Some(room))?, &whole);
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        prop_assert_eq!(&feed_connection(role, limits, &bytes, None)?, &whole);
        let (messages, _, _, ending, reason) = &whole;
        prop_assert!(ending.is_some(), "no ending after the end of the stream");
        prop_assert!(matches!(reason, 1000..=1003 | 1005..=1014 | 3000..=4999), "reason {}", reason);
        for m in messages {
            prop_assert!(matches!(m, Incoming::Text(_) | Incoming::Binary(_) | Incoming::Pong(_)), "{:?}", m);
        }
    }

    /// (a) Any bytes, either role, small limits: split anywhere (or one byte
    /// at a time) they give the same items and the same error as whole.
    #[test]
    fn receiver_any_bytes_split_anywhere_equals_whole(
        (role, data) in role_and_stream(),
        limits in small_limits(),
        points in vec(any::<usize>(), 0..16),
        room in 1usize..200,
    ) {
        let whole = feed(role, limits, &[&data]);
        let pieces = split(&data, &points);
        prop_assert_eq!(&feed(role, limits, &pieces), &whole);
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        prop_assert_eq!(&feed(role, limits, &bytes), &whole);
        prop_assert_eq!(&feed_direct(role, limits, &pieces, room), &whole);
        for item in &whole.0 {
            match item {
                Incoming::Text(s) => prop_assert!(s.len() as u64 <= limits.max_message_size),
                Incoming::Binary(b) => prop_assert!(b.len() as u64 <= limits.max_message_size),
                Incoming::Ping(b) | Incoming::Pong(b) => prop_assert!(b.len() <= 125),
                Incoming::Close(c) => {
                    prop_assert!(c.as_ref().is_none_or(|(code, _)| is_valid_on_wire(u32::from(*code))));
                }
            }
        }
        if let Err(e) = whole.1 {
            prop_assert!(matches!(e.code, 1002 | 1007 | 1009), "{:?}", e);
        }
    }

    /// (b) A valid stream (fragmented messages, interleaved pings and pongs,
    /// maybe a close and bytes after it) decodes into exactly the messages
    /// encoded, whatever the split.
    #[test]
    fn receiver_decodes_valid_streams_into_the_messages_sent(
        role in role(),
        units in vec(unit(), 0..6),
        close in close_frame(),
        trailer in vec(any::<u8>(), 0..8),
        keys in vec(any::<[u8; 4]>(), 1..4),
        points in vec(any::<usize>(), 0..24),
        room in 1usize..5000,
    ) {
        let steps = valid_stream(&units, &close, &trailer, &keys, role);
        let stream: Vec<u8> = steps.iter().flat_map(|s| s.bytes.iter().copied()).collect();
        let want = expected(&steps, BIG);
        prop_assert_eq!(&want.1, &Ok(()));
        let whole = feed(role, BIG, &[&stream]);
        prop_assert_eq!(&whole, &want);
        prop_assert_eq!(&feed(role, BIG, &split(&stream, &points)), &want);
        prop_assert_eq!(&feed_direct(role, BIG, &split(&stream, &points), room), &want);
        if stream.len() < 8192 {
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            prop_assert_eq!(&feed(role, BIG, &bytes), &want);
        }
    }

    /// (b) The same streams under small limits: every item before the first
    /// data frame that breaks a limit, then 1009, whatever the split.
    #[test]
    fn receiver_valid_streams_under_limits_stop_at_the_first_excess(
        role in role(),
        units in vec(unit(), 0..6),
        close in close_frame(),
        keys in vec(any::<[u8; 4]>(), 1..4),
        limits in small_limits(),
        at_the_edge in any::<bool>(),
        edge in (any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0u64..2, 0u64..2),
        points in vec(any::<usize>(), 0..24),
    ) {
        let steps = valid_stream(&units, &close, &[], &keys, role);
        let stream: Vec<u8> = steps.iter().flat_map(|s| s.bytes.iter().copied()).collect();
        let sizes: Vec<(u64, u64)> = steps.iter().filter_map(|s| s.data).collect();
        let limits = match (at_the_edge, sizes.is_empty()) {
            // Limits equal to, or one less than, the size of some frame and
            // some message so far.
            (true, false) => {
                let (f, m, df, dm) = edge;
                Limits {
                    max_frame_size: sizes[f.index(sizes.len())].0.saturating_sub(df),
                    max_message_size: sizes[m.index(sizes.len())].1.saturating_sub(dm),
                }
            }
            _ => limits,
        };
        let want = expected(&steps, limits);
        let whole = feed(role, limits, &[&stream]);
        prop_assert_eq!(codes(&whole), codes(&want));
        prop_assert_eq!(&feed(role, limits, &split(&stream, &points)), &whole);
    }

    /// (b) A frame masked the wrong way for the role fails with 1002.
    #[test]
    fn receiver_wrong_masking_for_the_role_is_1002(
        role in role(),
        opcode in select(vec![1u8, 2, 8, 9, 10]),
        payload in vec(any::<u8>(), 0..100),
        key in any::<[u8; 4]>(),
    ) {
        let other = if role == Role::Client { Role::Server } else { Role::Client };
        let bytes = valid_frame(true, opcode, &payload, key, other);
        let (items, res) = feed(role, BIG, &[&bytes]);
        prop_assert!(items.is_empty());
        prop_assert_eq!(res.map_err(|e| e.code), Err(1002));
    }

    /// (c) decode_header on any bytes: no panic; every prefix is "need more"
    /// or the same answer; a decoded header re-encodes to its bytes.
    #[test]
    fn decode_header_any_bytes_is_prefix_consistent(
        data in prop_oneof![
            vec(any::<u8>(), 0..20),
            (any::<u8>(), select(vec![0u8, 1, 125, 126, 127]), any::<bool>(), vec(any::<u8>(), 0..16))
                .prop_map(|(b0, len, m, rest)| {
                    [&[b0, len | if m { 0x80 } else { 0 }][..], &rest].concat()
                }),
        ],
    ) {
        let whole = decode_header(&data);
        for cut in 0..=data.len() {
            let part = decode_header(&data[..cut]);
            prop_assert!(part == Ok(None) || part == whole, "prefix {}: {:?} vs {:?}", cut, part, whole);
        }
        match whole {
            Ok(None) => prop_assert!(data.len() < MAX_HEADER_LEN),
            Err(HeaderError::LengthTopBitSet) => {
                prop_assert_eq!(data[1] & 0x7F, 127);
                prop_assert!(data[2] & 0x80 != 0);
            }
            Ok(Some((h, used))) => {
                for cut in 0..used {
                    prop_assert_eq!(decode_header(&data[..cut]), Ok(None));
                }
                prop_assert_eq!(decode_header(&data[..used]), whole);
                let (mut buf, n) = header_bytes(h.fin, h.opcode, h.mask, h.payload_len);
                buf[0] |= h.rsv << 4;
                prop_assert_eq!(decode_header(&buf[..n]), Ok(Some((h, n))));
                let shortest = match data[1] & 0x7F {
                    126 => h.payload_len >= 126,
                    127 => h.payload_len > 0xFFFF,
                    _ => true,
                };
                if shortest {
                    prop_assert_eq!(&buf[..n], &data[..used]);
                } else {
                    prop_assert!(n < used);
                }
            }
        }
    }

    /// (c) Encoding then decoding a header gives it back, in the shortest form.
    #[test]
    fn header_bytes_round_trip(
        fin in any::<bool>(),
        opcode in 0u8..16,
        mask in any::<Option<[u8; 4]>>(),
        len in prop_oneof![0u64..130, 65530u64..65540, 0u64..(1 << 63)],
    ) {
        let (buf, n) = header_bytes(fin, opcode, mask, len);
        let (h, used) = decode_header(&buf[..n]).unwrap().unwrap();
        prop_assert_eq!(used, n);
        prop_assert_eq!((h.fin, h.rsv, h.opcode, h.mask, h.payload_len), (fin, 0, opcode, mask, len));
        let form = if len < 126 { 2 } else if len <= 0xFFFF { 4 } else { 10 };
        prop_assert_eq!(n, form + if mask.is_some() { 4 } else { 0 });
    }

    /// (d) parse_request on any bytes and HTTP-like bytes: no panic, the
    /// prefix rules hold, "need more" only within the size limit.
    #[test]
    fn parse_request_any_bytes(
        data in prop_oneof![
            vec(any::<u8>(), 0..300),
            http_like(vec!["GET / HTTP/1.1", "GET /chat HTTP/1.0", "POST / HTTP/1.1", "GET  HTTP/1.1"]),
        ],
        limit in prop_oneof![Just(1024usize), 0usize..300],
    ) {
        check_prefixes(&data, |d| parse_request(d, limit))?;
        match parse_request(&data, limit) {
            Ok(None) => prop_assert!(data.len() <= limit),
            Ok(Some((r, used))) => {
                prop_assert!(used <= data.len() && used <= limit);
                prop_assert_eq!(r.key.len(), 24);
            }
            Err(e) => {
                let status = e.status();
                prop_assert!(matches!(status, 400 | 426 | 431));
                let response = e.response();
                let status_line = format!("HTTP/1.1 {status} ");
                prop_assert!(response.starts_with(status_line.as_bytes()));
            }
        }
    }

    /// (d) A valid request head, in any header order and case, with either
    /// line ending: every prefix needs more; the whole (with frames after
    /// it) parses to what was sent; one byte over the limit is too large.
    #[test]
    fn parse_request_valid_head_split_anywhere(
        (head, path, host, key, protocols) in valid_request(),
        after in vec(any::<u8>(), 0..16),
    ) {
        for cut in 0..head.len() {
            prop_assert_eq!(parse_request(&head[..cut], 4096), Ok(None), "cut {}", cut);
        }
        let data = [&head[..], &after].concat();
        let (req, used) = parse_request(&data, 4096).unwrap().unwrap();
        prop_assert_eq!(used, head.len());
        prop_assert_eq!(&req.resource, &path);
        prop_assert_eq!(&req.host, &host);
        prop_assert_eq!(&req.key, &key);
        prop_assert_eq!(&req.protocols, &protocols);
        prop_assert_eq!(parse_request(&head, 4096), Ok(Some((req, used))));
        let limit = head.len() - 1;
        prop_assert_eq!(parse_request(&data, limit), Err(RequestError::TooLarge));
        prop_assert_eq!(parse_request(&head[..limit], limit), Ok(None));
    }

    /// (d) client_request heads parse back on the server side, split anywhere.
    #[test]
    fn client_request_round_trips(
        path in "/[a-z0-9/]{0,20}",
        protocols in vec(token(), 0..3),
        nonce in any::<[u8; 16]>(),
    ) {
        let req = client_request("example.com:9001", &path, &protocols, &[], nonce);
        for cut in 0..req.bytes.len() {
            prop_assert_eq!(parse_request(&req.bytes[..cut], 4096), Ok(None));
        }
        let (parsed, used) = parse_request(&req.bytes, 4096).unwrap().unwrap();
        prop_assert_eq!(used, req.bytes.len());
        prop_assert_eq!(&parsed.key, &req.key);
        prop_assert_eq!(&parsed.resource, &path);
        prop_assert_eq!(&parsed.protocols, &protocols);
    }

    /// (d) parse_response on any bytes and HTTP-like bytes: no panic, the
    /// prefix rules hold; an accepted response chose an offered protocol.
    #[test]
    fn parse_response_any_bytes(
        data in prop_oneof![
            vec(any::<u8>(), 0..300),
            http_like(vec![
                "HTTP/1.1 101 Switching Protocols",
                "HTTP/1.1 101",
                "HTTP/1.0 101 OK",
                "HTTP/1.1 403 Forbidden",
            ]),
        ],
        limit in prop_oneof![Just(1024usize), 0usize..300],
    ) {
        let offered = vec!["chat".to_owned(), "superchat".to_owned()];
        check_prefixes(&data, |d| parse_response(d, KEY, &offered, limit))?;
        match parse_response(&data, KEY, &offered, limit) {
            Ok(None) => prop_assert!(data.len() <= limit),
            Ok(Some((accepted, used))) => {
                prop_assert!(used <= data.len() && used <= limit);
                prop_assert!(accepted.protocol.is_none_or(|p| offered.contains(&p)));
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    /// (d) A valid 101 (ours, or hand-made in any order and case): every
    /// prefix needs more; the whole parses, with the chosen protocol.
    #[test]
    fn parse_response_valid_head_split_anywhere(
        nonce in any::<[u8; 16]>(),
        offered in vec(token(), 0..3),
        pick in any::<prop::sample::Index>(),
        choose in any::<bool>(),
        names in (cased("Upgrade"), cased("Connection"), cased("Sec-WebSocket-Accept"), cased("Sec-WebSocket-Protocol")),
        extra in extra_headers(),
        seed in any::<u64>(),
        ours in any::<bool>(),
        after in vec(any::<u8>(), 0..16),
    ) {
        let key = client_request("h", "/", &offered, &[], nonce).key;
        let chosen = (choose && !offered.is_empty()).then(|| offered[pick.index(offered.len())].clone());
        let head = if ours {
            accept_response(&key, chosen.as_deref())
        } else {
            let (n_up, n_conn, n_acc, n_proto) = names;
            let mut lines = vec![
                format!("{n_up}: websocket"),
                format!("{n_conn}: Upgrade"),
                format!("{n_acc}: {}", accept_key(&key)),
            ];
            if let Some(p) = &chosen {
                lines.push(format!("{n_proto}: {p}"));
            }
            lines.extend(extra);
            shuffle(&mut lines, seed);
            format!("HTTP/1.1 101 Switching Protocols\r\n{}\r\n\r\n", lines.join("\r\n")).into_bytes()
        };
        for cut in 0..head.len() {
            prop_assert_eq!(parse_response(&head[..cut], &key, &offered, 4096), Ok(None));
        }
        let data = [&head[..], &after].concat();
        let (accepted, used) = parse_response(&data, &key, &offered, 4096).unwrap().unwrap();
        prop_assert_eq!(used, head.len());
        prop_assert_eq!(&accepted.protocol, &chosen);
        prop_assert_eq!(
            parse_response(&data, &key, &offered, head.len() - 1),
            Err(ResponseError::TooLarge)
        );
        if chosen.is_some() {
            prop_assert!(matches!(
                parse_response(&data, &key, &[], 4096),
                Err(ResponseError::UnofferedProtocol(_))
            ));
        }
    }

    /// (e) utf8::advance fed growing prefixes agrees with std on the verdict,
    /// and fails exactly on the prefix holding the byte that makes the input
    /// invalid, never earlier, never later.
    #[test]
    fn utf8_advance_in_chunks_agrees_with_std_and_fails_fast(
        data in prop_oneof![
            vec(any::<u8>(), 0..40),
            ("\\PC{0,30}", vec(any::<u8>(), 0..4), any::<usize>()).prop_map(|(s, noise, at)| {
                let mut b = s.into_bytes();
                let at = at % (b.len() + 1);
                b.splice(at..at, noise);
                b
            }),
        ],
        points in vec(any::<usize>(), 0..10),
    ) {
        let ends: Vec<usize> = {
            let mut end = 0;
            split(&data, &points).iter().map(|p| { end += p.len(); end }).collect()
        };
        let failed = advance_in_steps(&data, &ends)?;
        // The shortest prefix that std already knows to be invalid.
        let first_bad = (1..=data.len()).find(|&n| {
            matches!(std::str::from_utf8(&data[..n]), Err(e) if e.error_len().is_some())
        });
        match first_bad {
            None => prop_assert_eq!(failed, None),
            Some(bad) => {
                let expected = ends.iter().copied().find(|&e| e >= bad);
                prop_assert_eq!(failed, expected);
            }
        }
        let complete_and_valid = failed.is_none() && {
            let mut checked = 0;
            utf8::advance(&data, &mut checked) && checked == data.len()
        };
        prop_assert_eq!(complete_and_valid, std::str::from_utf8(&data).is_ok());
    }

    /// (f) apply_mask at any offset equals the byte loop of RFC 6455 §5.3, is
    /// an involution, and masking in pieces equals masking whole.
    #[test]
    fn apply_mask_matches_a_byte_loop_and_is_an_involution(
        data in vec(any::<u8>(), 0..300),
        start in 0usize..8,
        key in any::<[u8; 4]>(),
        offset in prop_oneof![0usize..8, any::<usize>()],
        points in vec(any::<usize>(), 0..4),
    ) {
        let data = &data[start.min(data.len())..];
        let naive: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[(offset % 4 + i % 4) % 4])
            .collect();
        let mut fast = data.to_vec();
        apply_mask(&mut fast, key, offset);
        prop_assert_eq!(&fast, &naive);
        apply_mask(&mut fast, key, offset);
        prop_assert_eq!(&fast[..], data);
        let mut pieces = data.to_vec();
        let mut done = 0;
        for piece in split(data, &points) {
            let n = piece.len();
            apply_mask(&mut pieces[done..done + n], key, offset.wrapping_add(done));
            done += n;
        }
        prop_assert_eq!(pieces, naive);
    }

    /// close::parse_payload on any bytes: no panic; what it accepts is the
    /// code and the reason it was built from.
    #[test]
    fn close_payload_parses_what_was_built(
        data in prop_oneof![vec(any::<u8>(), 0..20), close_payload()],
    ) {
        match close::parse_payload(&data) {
            Ok(None) => prop_assert!(data.is_empty()),
            Ok(Some((code, reason))) => {
                prop_assert!(is_valid_on_wire(u32::from(code)));
                prop_assert_eq!(close::build_payload(Some(code), &reason), data);
            }
            Err(e) => {
                let valid_code = data.len() >= 2
                    && is_valid_on_wire(u32::from(u16::from_be_bytes([data[0], data[1]])));
                prop_assert_eq!(e.code, if valid_code { 1007 } else { 1002 });
            }
        }
    }
}

/// Runs the check of fuzz target `target` on every file in `dir`; the number
/// of files.
fn replay(dir: &Path, target: &str) -> usize {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        eprintln!("{target}: {}", file.display());
        match target {
            "frame_header" => fuzz_checks::frame_header::check(&data),
            "receiver_client" => fuzz_checks::receiver::run(Role::Client, &data),
            "receiver_server" => fuzz_checks::receiver::run(Role::Server, &data),
            "handshake_request" => fuzz_checks::handshake_request::check(&data),
            "handshake_response" => fuzz_checks::handshake_response::check(&data),
            other => panic!("no fuzz target named {other}"),
        }
    }
    files.len()
}

/// The fuzz targets' seeds (`fuzz/seeds/<target>/`) and the inputs kept from
/// their runs (`fuzz/regressions/<target>/`), through the same checks as in
/// the targets (the receiver's heap accounting aside: it needs the targets'
/// counting allocator). A crash found by fuzzing stays a test here.
#[test]
fn fuzz_seeds_and_regressions_replay() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for kind in ["seeds", "regressions"] {
        let Ok(targets) = std::fs::read_dir(fuzz.join(kind)) else {
            continue;
        };
        for target in targets {
            let target = target.unwrap();
            if target.file_type().unwrap().is_dir() {
                let name = target.file_name().into_string().unwrap();
                total += replay(&target.path(), &name);
            }
        }
    }
    assert!(total > 0, "no seeds under {}", fuzz.display());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The receiver fuzz targets' checks, with and without a memory budget,
    /// on any input (byte 0 picks the limits, the chunking, the lent room
    /// and the budget).
    #[test]
    fn the_receiver_fuzz_checks_hold_for_any_input(
        data in proptest::collection::vec(any::<u8>(), 0..1500),
    ) {
        fuzz_checks::receiver::run(Role::Client, &data);
        fuzz_checks::receiver::run(Role::Server, &data);
    }
}
