//! `proto::frame::decode_header` on any bytes: it never panics, a prefix of
//! a header is "need more", and a decoded header re-encodes to the bytes it
//! was decoded from.

use airws::proto::frame::{decode_header, header_bytes, HeaderError, MAX_HEADER_LEN};

/// The check of the `frame_header` fuzz target.
pub fn check(data: &[u8]) {
    let whole = decode_header(data);
    // Every prefix is "need more" or the same answer (bytes past a header
    // never change it; a header has at most 14 bytes).
    let cuts = (0..=data.len().min(MAX_HEADER_LEN + 1)).chain([data.len()]);
    for cut in cuts {
        let part = decode_header(&data[..cut]);
        assert!(
            part == Ok(None) || part == whole,
            "prefix {cut}: {part:?}, whole: {whole:?}"
        );
    }
    match whole {
        Ok(None) => assert!(data.len() < MAX_HEADER_LEN, "14 bytes always hold a header"),
        Err(HeaderError::LengthTopBitSet) => {
            assert_eq!(data[1] & 0x7F, 127);
            assert!(data[2] & 0x80 != 0);
            assert_eq!(decode_header(&data[..10]), whole);
        }
        Ok(Some((h, used))) => {
            assert!(used <= data.len());
            for cut in 0..used {
                assert_eq!(decode_header(&data[..cut]), Ok(None), "prefix {cut}");
            }
            assert!(h.rsv <= 7 && h.opcode <= 15);
            assert!(h.payload_len < 1 << 63);
            // Re-encode: the crate's encoder writes no RSV bits and always
            // the shortest length form, so put the RSV bits back and compare
            // with the consumed bytes when the input used the shortest form.
            let (mut buf, n) = header_bytes(h.fin, h.opcode, h.mask, h.payload_len);
            buf[0] |= h.rsv << 4;
            let reencoded = &buf[..n];
            assert_eq!(decode_header(reencoded), Ok(Some((h, n))));
            let shortest = match data[1] & 0x7F {
                126 => h.payload_len >= 126,
                127 => h.payload_len > 0xFFFF,
                _ => true,
            };
            if shortest {
                assert_eq!(reencoded, &data[..used]);
            } else {
                // A longer length form than needed: the same header, fewer bytes.
                assert!(n < used);
                assert_eq!(reencoded[0], data[0]);
                assert_eq!(reencoded[1] & 0x80, data[1] & 0x80);
                if h.mask.is_some() {
                    assert_eq!(&reencoded[n - 4..], &data[used - 4..used]);
                }
            }
        }
    }
}
