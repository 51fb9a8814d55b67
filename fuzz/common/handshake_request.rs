//! `proto::handshake::parse_request` (the server's check of an upgrade
//! request) on any bytes, with a head size limit: it never panics; "need
//! more" only below the limit; an accepted request fits the limit, carries a
//! 16-byte key in canonical base64, and its prefixes are "need more"; the
//! server's answer to it passes the client's check.

use airws::proto::handshake::{accept_response, parse_request, parse_response, RequestError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

const MAX_HEAD: usize = 1024;

/// The check of the `handshake_request` fuzz target.
pub fn check(data: &[u8]) {
    let whole = parse_request(data, MAX_HEAD);
    assert_eq!(parse_request(data, MAX_HEAD), whole, "not deterministic");
    match &whole {
        Ok(None) => {
            assert!(data.len() <= MAX_HEAD);
            let half = &data[..data.len() / 2];
            assert_eq!(parse_request(half, MAX_HEAD), Ok(None));
        }
        Ok(Some((req, used))) => {
            let used = *used;
            assert!(used <= data.len() && used <= MAX_HEAD);
            assert_eq!(data[used - 1], b'\n');
            let raw = BASE64.decode(&req.key).expect("the key is base64");
            assert_eq!(raw.len(), 16);
            assert_eq!(BASE64.encode(&raw), req.key, "the key is canonical");
            // The head alone gives the same answer; its prefixes need more.
            assert_eq!(parse_request(&data[..used], MAX_HEAD), whole);
            for cut in [0, 1, used / 2, used - 2, used - 1] {
                assert_eq!(parse_request(&data[..cut], MAX_HEAD), Ok(None), "cut {cut}");
            }
            assert!(req.protocols.iter().all(|p| !p.is_empty()
                && !p.contains(',')
                && p.trim_matches(|c: char| c.is_ascii_whitespace()) == p.as_str()));
            // Our own 101 for it satisfies our own client.
            let chosen = req.protocols.first().map(String::as_str);
            let resp = accept_response(&req.key, chosen);
            match parse_response(&resp, &req.key, &req.protocols, 4096) {
                Ok(Some((acc, n))) => {
                    assert_eq!(n, resp.len());
                    assert_eq!(acc.protocol.as_deref(), chosen);
                }
                other => panic!("our 101 for {req:?} is refused: {other:?}"),
            }
        }
        Err(e) => {
            if data.len() <= MAX_HEAD && *e == RequestError::TooLarge {
                // Within the limit, only too many headers are "too large".
                assert!(data.iter().filter(|b| **b == b'\n').count() > 64);
            }
            let status = e.status();
            assert!(matches!(status, 400 | 426 | 431));
            let resp = e.response();
            assert!(resp.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
            let _ = e.to_string();
        }
    }
}
