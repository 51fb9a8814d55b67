//! The frame header decoder on any bytes: never panics; a decoded header is
//! consistent with the bytes it consumed.
#![no_main]

use airws::proto::frame::decode_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((h, used))) = decode_header(data) {
        assert!(used <= data.len());
        let len_bytes = match data[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask_bytes = if h.mask.is_some() { 4 } else { 0 };
        assert_eq!(used, 2 + len_bytes + mask_bytes);
        assert!(h.payload_len < 1 << 63);
        assert_eq!(h.opcode, data[0] & 0x0F);
        // Any prefix is "need more", never a different header.
        for cut in 0..used {
            assert!(matches!(decode_header(&data[..cut]), Ok(None) | Err(_)));
        }
    }
});
