//! The server's parser of upgrade requests on any bytes: never panics; an
//! accepted request carries a key and fits the limit.
#![no_main]

use airws::proto::handshake::parse_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((request, used))) = parse_request(data, 4096) {
        assert!(used <= data.len() && used <= 4096);
        assert_eq!(request.key.len(), 24, "a base64 16-byte key");
    }
    if let Err(e) = parse_request(data, 4096) {
        let _ = (e.status(), e.response(), e.to_string());
    }
});
