//! Frame headers (RFC 6455 §5.2): decoding all three length forms and encoding
//! the header that precedes a payload.

use std::fmt;

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

/// Largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest possible frame header: 2 bytes, 8 bytes of length, 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit: this frame ends its message.
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The 4-bit opcode.
    pub opcode: u8,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// True for close, ping, pong and the reserved control opcodes 0xB..0xF.
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// A header that can never be valid, whatever the connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The 64-bit length form has its most significant bit set (RFC 6455 §5.2).
    LengthTopBitSet,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::LengthTopBitSet => {
                f.write_str("64-bit payload length with the most significant bit set")
            }
        }
    }
}

impl std::error::Error for HeaderError {}

/// Decodes a frame header from the start of `buf`.
///
/// Returns `Ok(None)` while `buf` holds less than a whole header, and
/// `Ok(Some((header, header_len)))` once it holds one.
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, HeaderError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;
    let (payload_len, mut pos) = match len7 {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len & (1 << 63) != 0 {
                return Err(HeaderError::LengthTopBitSet);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let key = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(key)
    } else {
        None
    };
    Ok(Some((
        FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode: b0 & 0x0F,
            mask,
            payload_len,
        },
        pos,
    )))
}

/// Appends a frame header to `out`, using the shortest length form.
pub fn encode_header(out: &mut Vec<u8>, fin: bool, opcode: u8, mask: Option<[u8; 4]>, len: u64) {
    let (buf, n) = header_bytes(fin, opcode, mask, len);
    out.extend_from_slice(&buf[..n]);
}

/// Builds a frame header on the stack: the bytes and how many of them are used.
pub fn header_bytes(
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
) -> ([u8; MAX_HEADER_LEN], usize) {
    let mut b = [0u8; MAX_HEADER_LEN];
    b[0] = (if fin { 0x80 } else { 0 }) | (opcode & 0x0F);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = 2;
    if len < 126 {
        b[1] = mask_bit | len as u8;
    } else if len <= u64::from(u16::MAX) {
        b[1] = mask_bit | 126;
        b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        n = 4;
    } else {
        b[1] = mask_bit | 127;
        b[2..10].copy_from_slice(&len.to_be_bytes());
        n = 10;
    }
    if let Some(key) = mask {
        b[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    (b, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6455 §5.7 examples.
    #[test]
    fn rfc_single_frame_unmasked_text() {
        let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, n) = decode_header(&wire).unwrap().unwrap();
        assert_eq!(n, 2);
        assert!(h.fin);
        assert_eq!(h.opcode, OP_TEXT);
        assert_eq!(h.mask, None);
        assert_eq!(h.payload_len, 5);
        assert_eq!(&wire[n..], b"Hello");
    }

    #[test]
    fn rfc_single_frame_masked_text() {
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = decode_header(&wire).unwrap().unwrap();
        assert_eq!(n, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        let mut payload = wire[n..].to_vec();
        crate::proto::mask::apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn rfc_fragmented_unmasked_text() {
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let second = [0x80, 0x02, 0x6c, 0x6f];
        let (h1, _) = decode_header(&first).unwrap().unwrap();
        let (h2, _) = decode_header(&second).unwrap().unwrap();
        assert!(!h1.fin);
        assert_eq!(h1.opcode, OP_TEXT);
        assert!(h2.fin);
        assert_eq!(h2.opcode, OP_CONTINUATION);
    }

    #[test]
    fn rfc_ping_and_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, _) = decode_header(&ping).unwrap().unwrap();
        assert_eq!(h.opcode, OP_PING);
        assert!(h.is_control());
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, _) = decode_header(&pong).unwrap().unwrap();
        assert_eq!(h.opcode, OP_PONG);
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn rfc_256_bytes_and_64_kib() {
        let (h, n) = decode_header(&[0x82, 0x7E, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        let wire = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        let (h, n) = decode_header(&wire).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn incomplete_headers_wait_for_more() {
        let wire = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for end in 0..wire.len() {
            assert_eq!(decode_header(&wire[..end]), Ok(None), "prefix {end}");
        }
        let (h, n) = decode_header(&wire).unwrap().unwrap();
        assert_eq!((h.payload_len, n, h.mask), (65536, 14, Some([1, 2, 3, 4])));
    }

    #[test]
    fn top_bit_of_64_bit_length_is_rejected() {
        let wire = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode_header(&wire), Err(HeaderError::LengthTopBitSet));
    }

    #[test]
    fn rsv_bits_are_reported() {
        let (h, _) = decode_header(&[0xF1, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b111);
        let (h, _) = decode_header(&[0xC1, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b100);
    }

    #[test]
    fn encode_uses_the_shortest_form_and_round_trips() {
        for (len, hlen) in [
            (0u64, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (1 << 40, 10),
        ] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let mut out = Vec::new();
                encode_header(&mut out, true, OP_BINARY, mask, len);
                let extra = if mask.is_some() { 4 } else { 0 };
                assert_eq!(out.len(), hlen + extra);
                let (h, n) = decode_header(&out).unwrap().unwrap();
                assert_eq!(n, out.len());
                assert_eq!(h.payload_len, len);
                assert_eq!(h.mask, mask);
                assert!(h.fin);
                assert_eq!(h.opcode, OP_BINARY);
            }
        }
    }
}
