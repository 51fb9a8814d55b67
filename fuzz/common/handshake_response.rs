//! `proto::handshake::parse_response` (the client's check of the server's
//! answer) on any bytes, against a fixed key and offered subprotocols: it
//! never panics; "need more" only below the limit; an accepted response
//! fits the limit, chose an offered subprotocol (or none), and its prefixes
//! are "need more".

use airws::proto::handshake::{parse_response, ResponseError};

/// The key of RFC 6455 §1.3; its accept value is `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MAX_HEAD: usize = 1024;

/// The check of the `handshake_response` fuzz target.
pub fn check(data: &[u8]) {
    let offered = ["chat".to_owned(), "superchat".to_owned()];
    let whole = parse_response(data, KEY, &offered, MAX_HEAD);
    assert_eq!(parse_response(data, KEY, &offered, MAX_HEAD), whole);
    match &whole {
        Ok(None) => {
            assert!(data.len() <= MAX_HEAD);
            let half = &data[..data.len() / 2];
            assert_eq!(parse_response(half, KEY, &offered, MAX_HEAD), Ok(None));
        }
        Ok(Some((accepted, used))) => {
            let used = *used;
            assert!(used <= data.len() && used <= MAX_HEAD);
            assert_eq!(data[used - 1], b'\n');
            if let Some(p) = &accepted.protocol {
                assert!(offered.contains(p), "chose {p}");
            }
            assert_eq!(
                parse_response(&data[..used], KEY, &offered, MAX_HEAD),
                whole
            );
            for cut in [0, 1, used / 2, used - 2, used - 1] {
                assert_eq!(
                    parse_response(&data[..cut], KEY, &offered, MAX_HEAD),
                    Ok(None),
                    "cut {cut}"
                );
            }
            // The same head with no subprotocol offered: refused if one was chosen.
            let none = parse_response(&data[..used], KEY, &[], MAX_HEAD);
            match &accepted.protocol {
                None => assert_eq!(none, whole),
                Some(_) => assert!(matches!(none, Err(ResponseError::UnofferedProtocol(_)))),
            }
            // Against another key: refused.
            assert_eq!(
                parse_response(
                    &data[..used],
                    "AAAAAAAAAAAAAAAAAAAAAA==",
                    &offered,
                    MAX_HEAD
                ),
                Err(ResponseError::BadAccept)
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
