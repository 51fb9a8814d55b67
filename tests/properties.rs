//! Property tests of the sans-I/O core (the same entry points as the fuzz
//! targets in `fuzz/`): any input, split at any points, gives the same
//! result as when fed whole, and nothing panics.

use airws::proto::frame::decode_header;
use airws::proto::handshake::{accept_response, client_request, parse_request, parse_response};
use airws::proto::mask::apply_mask;
use airws::proto::receiver::{Incoming, Limits, Receiver};
use airws::proto::{utf8, Role};
use proptest::prelude::*;

const LIMITS: Limits = Limits {
    max_frame_size: 4096,
    max_message_size: 16384,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Feeds `chunks` to a receiver; the messages and the first error's code.
fn feed(role: Role, chunks: &[&[u8]]) -> (Vec<Incoming>, Option<u16>) {
    let mut r = Receiver::new(role, LIMITS);
    let mut out = Vec::new();
    for chunk in chunks {
        if let Err(e) = r.receive(chunk, &mut out) {
            return (out, Some(e.code));
        }
        if r.is_finished() {
            break;
        }
    }
    (out, None)
}

/// Splits `data` at the given points (taken modulo its length).
fn split<'a>(data: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    if data.is_empty() {
        return vec![data];
    }
    let mut cuts: Vec<usize> = points.iter().map(|p| p % data.len()).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for c in cuts {
        pieces.push(&data[start..c]);
        start = c;
    }
    pieces.push(&data[start..]);
    pieces
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Client), Just(Role::Server)]
}

/// One frame as a peer of `role` would send it to us.
fn frame(fin: bool, opcode: u8, payload: &[u8], to: Role, key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | opcode];
    // A client receives unmasked frames; a server masked ones.
    let masked = to == Role::Server;
    let bit = if masked { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(bit | 126);
        out.extend((len as u16).to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend((len as u64).to_be_bytes());
    }
    if masked {
        out.extend(key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend(payload);
    }
    out
}

#[derive(Debug, Clone)]
enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        "\\PC{0,300}".prop_map(Message::Text),
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Message::Binary),
        proptest::collection::vec(any::<u8>(), 0..125).prop_map(Message::Ping),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn receiver_any_bytes_split_anywhere_equals_whole(
        role in role(),
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        points in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let whole = feed(role, &[&data]);
        let pieces = split(&data, &points);
        prop_assert_eq!(feed(role, &pieces), whole);
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        prop_assert_eq!(feed(role, &bytes), feed(role, &[&data]));
    }

    #[test]
    fn receiver_decodes_valid_streams_into_the_messages_sent(
        role in role(),
        messages in proptest::collection::vec(message(), 1..8),
        fragment_sizes in proptest::collection::vec(1usize..500, 1..6),
        key in any::<[u8; 4]>(),
        points in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (n, m) in messages.iter().enumerate() {
            let (opcode, payload, want) = match m {
                Message::Text(s) => (1, s.as_bytes().to_vec(), Incoming::Text(s.clone())),
                Message::Binary(b) => (2, b.clone(), Incoming::Binary(b.clone())),
                Message::Ping(p) => {
                    stream.extend(frame(true, 9, p, role, key));
                    expected.push(Incoming::Ping(p.clone()));
                    continue;
                }
            };
            // Fragment it, with a ping between the first two fragments.
            let size = fragment_sizes[n % fragment_sizes.len()];
            let pieces: Vec<&[u8]> = if payload.is_empty() {
                vec![&payload[..]]
            } else {
                payload.chunks(size).collect()
            };
            for (i, piece) in pieces.iter().enumerate() {
                let op = if i == 0 { opcode } else { 0 };
                stream.extend(frame(i + 1 == pieces.len(), op, piece, role, key));
                if i == 0 && pieces.len() > 1 {
                    stream.extend(frame(true, 9, b"between", role, key));
                    expected.push(Incoming::Ping(b"between".to_vec()));
                }
            }
            expected.push(want);
        }
        let (got, err) = feed(role, &split(&stream, &points));
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn receiver_wrong_masking_for_the_role_is_1002(
        role in role(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        key in any::<[u8; 4]>(),
    ) {
        // A frame as the *other* role would receive it.
        let other = if role == Role::Client { Role::Server } else { Role::Client };
        let bytes = frame(true, 2, &payload, other, key);
        prop_assert_eq!(feed(role, &[&bytes]).1, Some(1002));
    }

    #[test]
    fn decode_header_any_bytes_prefix_consistent(
        data in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let whole = decode_header(&data);
        if let Ok(Some((_, used))) = &whole {
            prop_assert!(*used <= data.len());
            for cut in 0..*used {
                prop_assert!(matches!(decode_header(&data[..cut]), Ok(None) | Err(_)));
            }
            prop_assert_eq!(decode_header(&data[..*used]), whole);
        }
    }

    #[test]
    fn parse_request_any_bytes_never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = parse_request(&data, 512);
    }

    #[test]
    fn parse_request_valid_head_split_anywhere(
        path in "/[a-z0-9/]{0,20}",
        protocols in proptest::collection::vec("[a-z]{1,8}", 0..3),
        nonce in any::<[u8; 16]>(),
        extra in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let req = client_request("example.com:9001", &path, &protocols, nonce);
        let mut data = req.bytes.clone();
        let head_len = data.len();
        data.extend(&extra);
        for cut in 0..head_len {
            prop_assert!(matches!(parse_request(&data[..cut], 16 << 10), Ok(None)));
        }
        let parsed = parse_request(&data, 16 << 10);
        match parsed {
            Ok(Some((r, used))) => {
                prop_assert_eq!(used, head_len);
                prop_assert_eq!(r.key, req.key);
                prop_assert_eq!(r.protocols, protocols);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn parse_response_any_bytes_and_valid_heads(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        nonce in any::<[u8; 16]>(),
        choose in any::<bool>(),
    ) {
        let offered = vec!["chat".to_owned()];
        let _ = parse_response(&data, "dGhlIHNhbXBsZSBub25jZQ==", &offered, 512);
        let req = client_request("h", "/", &offered, nonce);
        let head = accept_response(&req.key, choose.then_some("chat"));
        for cut in 0..head.len() {
            prop_assert!(matches!(parse_response(&head[..cut], &req.key, &offered, 4096), Ok(None)));
        }
        match parse_response(&head, &req.key, &offered, 4096) {
            Ok(Some((accepted, used))) => {
                prop_assert_eq!(used, head.len());
                prop_assert_eq!(accepted.protocol, choose.then(|| "chat".to_owned()));
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn utf8_advance_in_chunks_agrees_with_std_and_fails_fast(
        text in "\\PC{0,40}",
        noise in proptest::collection::vec(any::<u8>(), 0..8),
        at in any::<usize>(),
        points in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut data = text.into_bytes();
        let pos = if data.is_empty() { 0 } else { at % data.len() };
        data.splice(pos..pos, noise);
        let valid = std::str::from_utf8(&data).is_ok();
        // Feed growing prefixes, as the receiver does.
        let mut checked = 0;
        let mut failed_at = None;
        let mut end = 0;
        for piece in split(&data, &points) {
            end += piece.len();
            if !utf8::advance(&data[..end], &mut checked) {
                failed_at = Some(end);
                break;
            }
        }
        let complete = failed_at.is_none() && checked == data.len();
        prop_assert_eq!(complete, valid, "checked {} of {}", checked, data.len());
        if let Some(end) = failed_at {
            // It failed no later than the piece holding the first bad byte.
            let err = std::str::from_utf8(&data).unwrap_err();
            prop_assert!(err.valid_up_to() < end);
        }
    }

    #[test]
    fn apply_mask_matches_a_byte_loop_and_is_an_involution(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        key in any::<[u8; 4]>(),
        offset in 0usize..8,
    ) {
        let mut fast = data.clone();
        apply_mask(&mut fast, key, offset);
        let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ key[(i + offset) % 4]).collect();
        prop_assert_eq!(&fast, &slow);
        apply_mask(&mut fast, key, offset);
        prop_assert_eq!(fast, data);
    }
}
