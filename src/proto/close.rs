//! Close codes and close frame payloads (RFC 6455 §5.5.1, §7.4).

use super::error::ProtocolError;
use super::frame::MAX_CONTROL_PAYLOAD;

/// 1000: normal closure.
pub const NORMAL: u16 = 1000;
/// 1001: the endpoint is going away.
pub const GOING_AWAY: u16 = 1001;
/// 1002: protocol error.
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1003: a data type the endpoint cannot accept.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// 1005: no status code was present (never sent on the wire).
pub const NO_STATUS: u16 = 1005;
/// 1006: the connection closed without a close frame (never sent on the wire).
pub const ABNORMAL: u16 = 1006;
/// 1007: data inconsistent with the message type, e.g. text that is not UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// 1008: a message violates the endpoint's policy.
pub const POLICY_VIOLATION: u16 = 1008;
/// 1009: a message too big to process.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// 1011: an unexpected condition on the server.
pub const INTERNAL_ERROR: u16 = 1011;
/// 1013: try again later (the endpoint is short of resources now).
pub const TRY_AGAIN_LATER: u16 = 1013;
/// 1015: the TLS handshake failed (never sent on the wire).
pub const TLS_HANDSHAKE: u16 = 1015;

/// Whether `code` may appear in a close frame on the wire, received or sent:
/// 1000–1003, 1007–1014 and 3000–4999.
pub fn is_valid_on_wire(code: u32) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The most a close reason can take: the control payload less the code.
pub const MAX_REASON_LEN: usize = MAX_CONTROL_PAYLOAD - 2;

/// Parses the payload of a received close frame: `None` when it is empty,
/// else the code and the reason.
pub fn parse_payload(payload: &[u8]) -> Result<Option<(u16, String)>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::new(
            PROTOCOL_ERROR,
            "close frame with a 1-byte payload",
        )),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_on_wire(u32::from(code)) {
                return Err(ProtocolError::new(
                    PROTOCOL_ERROR,
                    "close frame with an invalid close code",
                ));
            }
            match std::str::from_utf8(&payload[2..]) {
                Ok(reason) => Ok(Some((code, reason.to_owned()))),
                Err(_) => Err(ProtocolError::new(
                    INVALID_PAYLOAD,
                    "close reason is not valid UTF-8",
                )),
            }
        }
    }
}

/// Builds a close payload: the code in network byte order, then the reason.
/// `None` builds the empty payload.
pub fn build_payload(code: Option<u16>, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + reason.len());
    if let Some(code) = code {
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(reason.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_ranges_match_rfc_6455_section_7_4() {
        let invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535];
        for code in invalid {
            assert!(!is_valid_on_wire(code), "{code}");
        }
        let valid = [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 4999];
        for code in valid {
            assert!(is_valid_on_wire(code), "{code}");
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_payload(&[]).unwrap(), None);
        assert_eq!(parse_payload(&[0x03]).unwrap_err().code, PROTOCOL_ERROR);
        assert_eq!(
            parse_payload(&[0x03, 0xE8, b'o', b'k']).unwrap(),
            Some((1000, "ok".into()))
        );
        assert_eq!(
            parse_payload(&[0x03, 0xED]).unwrap_err().code,
            PROTOCOL_ERROR
        );
        assert_eq!(
            parse_payload(&[0x03, 0xE8, 0xFF]).unwrap_err().code,
            INVALID_PAYLOAD
        );
        assert_eq!(build_payload(Some(1001), "x"), vec![0x03, 0xE9, b'x']);
        assert!(build_payload(None, "ignored").is_empty());
    }
}
