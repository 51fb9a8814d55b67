//! The client's check of the server's response on any bytes: never panics;
//! an accepted response chose a protocol that was offered.
#![no_main]

use airws::proto::handshake::parse_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let offered = vec!["chat".to_owned(), "superchat".to_owned()];
    match parse_response(data, "dGhlIHNhbXBsZSBub25jZQ==", &offered, 4096) {
        Ok(Some((accepted, used))) => {
            assert!(used <= data.len());
            if let Some(p) = accepted.protocol {
                assert!(offered.contains(&p));
            }
        }
        Ok(None) => {}
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
