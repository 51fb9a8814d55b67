//! Incremental UTF-8 validation: text is checked as each piece arrives, so a
//! message fails on the first invalid byte, not when it ends.

/// Extends the validated prefix of `data`, which starts `*checked` bytes in.
///
/// Returns false as soon as `data` holds a byte sequence that can never
/// become valid UTF-8. A sequence cut short at the end of `data` is left for
/// the next call.
pub fn advance(data: &[u8], checked: &mut usize) -> bool {
    let rest = data.get(*checked..).unwrap_or_default();
    match std::str::from_utf8(rest) {
        Ok(_) => {
            *checked = data.len();
            true
        }
        Err(e) if e.error_len().is_none() => {
            *checked += e.valid_up_to();
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_code_point_waits_for_its_end() {
        let text = "κόσμε €𝄞".as_bytes();
        for cut in 0..=text.len() {
            let mut checked = 0;
            assert!(advance(&text[..cut], &mut checked));
            assert!(checked <= cut);
            assert!(advance(text, &mut checked));
            assert_eq!(checked, text.len());
        }
    }

    #[test]
    fn fails_on_the_first_impossible_byte() {
        // 0xF4 0x90 starts a code point above U+10FFFF: invalid at once.
        let mut checked = 0;
        assert!(!advance(&[b'a', 0xF4, 0x90], &mut checked));
        // A lone continuation byte.
        let mut checked = 0;
        assert!(!advance(&[0x80], &mut checked));
        // Surrogates (ED A0..BF) are invalid.
        let mut checked = 0;
        assert!(!advance(&[0xED, 0xA0], &mut checked));
    }
}
