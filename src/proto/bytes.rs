//! Appending payload bytes to a buffer without a slow path of `memcpy`.
//!
//! On some x86-64 processors, the string-copy instruction that `memcpy`
//! uses for large copies runs more than ten times slower when the
//! destination lies a few bytes after the source modulo 4 KiB: each load
//! then waits on a store to an address with the same low 12 bits (4K
//! aliasing). A frame's payload sits a header's length (2 to 14 bytes) into
//! the read buffer, and two heap blocks often share their offset in a page,
//! so receiving fell into exactly that case: a 64 KiB copy took 20 µs
//! instead of 1.3 µs. Copies at such a distance go in pieces small enough
//! for `memcpy` to use its vector loop, which does not stall.

/// Distances (destination minus source, modulo 4 KiB) that take the slow path.
const ALIASING_WINDOW: usize = 64;
/// Pieces below the size at which `memcpy` switches to the string instruction.
const PIECE: usize = 2048;

/// Appends `src` to `dst`, like `extend_from_slice`.
///
/// ```
/// let mut v = b"ab".to_vec();
/// airws::proto::bytes::append(&mut v, &[b'c'; 10_000]);
/// assert_eq!(v.len(), 10_002);
/// assert!(v[2..].iter().all(|&b| b == b'c'));
/// ```
pub fn append(dst: &mut Vec<u8>, src: &[u8]) {
    if src.len() <= PIECE {
        dst.extend_from_slice(src);
        return;
    }
    dst.reserve(src.len());
    let to = dst.as_ptr() as usize + dst.len();
    let from = src.as_ptr() as usize;
    let distance = to.wrapping_sub(from) % 4096;
    if distance == 0 || distance >= ALIASING_WINDOW {
        dst.extend_from_slice(src);
        return;
    }
    for piece in src.chunks(PIECE) {
        dst.extend_from_slice(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_every_length_at_every_distance() {
        let src: Vec<u8> = (0..3 * PIECE + 5).map(|i| (i * 7) as u8).collect();
        for skew in 0..80 {
            for len in [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 5 - skew] {
                let piece = &src[skew..skew + len];
                let mut dst = vec![9u8; 3];
                append(&mut dst, piece);
                assert_eq!(&dst[..3], &[9, 9, 9]);
                assert_eq!(&dst[3..], piece, "skew {skew} len {len}");
            }
        }
    }
}
