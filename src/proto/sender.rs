//! The outgoing half of a connection: frame encoding with fresh masking keys
//! for a client, and the close handshake's bookkeeping.

use super::close::NO_STATUS;
use super::frame::header_bytes;
use super::frame::MAX_HEADER_LEN;
use super::Role;

/// Masking keys from the operating system's CSPRNG, fetched 64 at a time so
/// that a frame does not cost a system call. The pool is allocated on the
/// first key: a server, which never masks, carries none.
#[derive(Debug, Default)]
pub struct MaskKeys {
    pool: Option<Box<[u8; 256]>>,
    used: usize,
}

impl MaskKeys {
    /// The next unused key.
    pub fn next_key(&mut self) -> Result<[u8; 4], getrandom::Error> {
        let pool = self.pool.get_or_insert_with(|| Box::new([0; 256]));
        if self.used == 0 || self.used + 4 > pool.len() {
            getrandom::fill(&mut pool[..])?;
            self.used = 0;
        }
        let k = &pool[self.used..self.used + 4];
        let key = [k[0], k[1], k[2], k[3]];
        self.used += 4;
        Ok(key)
    }
}

/// Encodes frames for one end of a connection.
#[derive(Debug)]
pub struct Sender {
    role: Role,
    keys: MaskKeys,
}

/// A frame header ready to write, and the key its payload must be masked with.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingHeader {
    /// The header bytes; only the first `len` are used.
    pub bytes: [u8; MAX_HEADER_LEN],
    /// How many bytes of `bytes` make the header.
    pub len: usize,
    /// The masking key (client only).
    pub mask: Option<[u8; 4]>,
}

impl OutgoingHeader {
    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Appends the whole frame to `out`: this header, then `payload`
    /// (masked with the header's key, if it has one), which must be as
    /// long as the header says.
    pub fn append_frame(&self, out: &mut Vec<u8>, payload: &[u8]) {
        out.extend_from_slice(self.as_bytes());
        match self.mask {
            Some(key) => super::mask::extend_masked(out, payload, key, 0),
            None => super::bytes::append(out, payload),
        }
    }
}

impl Sender {
    /// An encoder for the given role: a client masks, a server does not.
    pub fn new(role: Role) -> Self {
        Sender {
            role,
            keys: MaskKeys::default(),
        }
    }

    /// The header of a final frame with `opcode` and a payload of `len` bytes.
    pub fn header(&mut self, opcode: u8, len: u64) -> Result<OutgoingHeader, getrandom::Error> {
        self.frame_header(true, opcode, len)
    }

    /// The header of a frame with `opcode` and a payload of `len` bytes,
    /// final or not (`fin`).
    pub fn frame_header(
        &mut self,
        fin: bool,
        opcode: u8,
        len: u64,
    ) -> Result<OutgoingHeader, getrandom::Error> {
        self.frame_header_rsv(fin, 0, opcode, len)
    }

    /// [`frame_header`](Self::frame_header) with the RSV bits `rsv` (RSV1
    /// = 0b100: the first frame of a compressed message).
    pub fn frame_header_rsv(
        &mut self,
        fin: bool,
        rsv: u8,
        opcode: u8,
        len: u64,
    ) -> Result<OutgoingHeader, getrandom::Error> {
        let mask = match self.role {
            Role::Client => Some(self.keys.next_key()?),
            Role::Server => None,
        };
        let (mut bytes, n) = header_bytes(fin, opcode, mask, len);
        bytes[0] |= (rsv & 0x7) << 4;
        Ok(OutgoingHeader {
            bytes,
            len: n,
            mask,
        })
    }

    /// Appends a whole final frame to `out`.
    pub fn encode(
        &mut self,
        out: &mut Vec<u8>,
        opcode: u8,
        payload: &[u8],
    ) -> Result<(), getrandom::Error> {
        self.header(opcode, payload.len() as u64)?
            .append_frame(out, payload);
        Ok(())
    }
}

/// The close handshake (RFC 6455 §7): who sent and who received a close frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseHandshake {
    /// The code we sent (`Some(None)`: a close without a code).
    sent: Option<Option<u16>>,
    /// The code we received (`Some(None)`: a close without a code).
    received: Option<Option<u16>>,
}

impl CloseHandshake {
    /// Whether we sent a close frame: nothing more may be sent.
    pub fn sent(&self) -> bool {
        self.sent.is_some()
    }

    /// Whether we received a close frame.
    pub fn received(&self) -> bool {
        self.received.is_some()
    }

    /// Whether both close frames have been exchanged.
    pub fn is_complete(&self) -> bool {
        self.sent.is_some() && self.received.is_some()
    }

    /// We want to close with `code`. Returns true when the close frame must
    /// be sent (false when one already was).
    pub fn local_close(&mut self, code: Option<u16>) -> bool {
        if self.sent.is_some() {
            return false;
        }
        self.sent = Some(code);
        true
    }

    /// The peer's close frame arrived. Returns the code to answer with, when
    /// an answer is due: the same code, or none when the peer sent none.
    pub fn remote_close(&mut self, code: Option<u16>) -> Option<Option<u16>> {
        if self.received.is_none() {
            self.received = Some(code);
        }
        if self.sent.is_none() {
            self.sent = Some(code);
            Some(code)
        } else {
            None
        }
    }

    /// The close reason code: the peer's code when its close frame arrived
    /// (1005 when it carried none), else the code we sent, else `None`.
    pub fn reason(&self) -> Option<u16> {
        match (self.received, self.sent) {
            (Some(code), _) => Some(code.unwrap_or(NO_STATUS)),
            (None, Some(code)) => Some(code.unwrap_or(NO_STATUS)),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::{decode_header, OP_TEXT};
    use crate::proto::receiver::{Incoming, Limits, Receiver};

    #[test]
    fn client_frames_are_masked_with_fresh_keys() {
        let mut s = Sender::new(Role::Client);
        let mut a = Vec::new();
        let mut b = Vec::new();
        s.encode(&mut a, OP_TEXT, b"Hello").unwrap();
        s.encode(&mut b, OP_TEXT, b"Hello").unwrap();
        let (ha, _) = decode_header(&a).unwrap().unwrap();
        let (hb, _) = decode_header(&b).unwrap().unwrap();
        assert!(ha.mask.is_some() && hb.mask.is_some());
        assert_ne!(ha.mask, hb.mask, "two frames got the same key");
        let mut r = Receiver::new(
            Role::Server,
            Limits {
                max_frame_size: 100,
                max_message_size: 100,
            },
        );
        let mut out = Vec::new();
        r.receive(&a, &mut out).unwrap();
        assert_eq!(out, vec![Incoming::Text("Hello".into())]);
    }

    #[test]
    fn server_frames_are_never_masked() {
        let mut s = Sender::new(Role::Server);
        let mut a = Vec::new();
        s.encode(&mut a, OP_TEXT, b"Hello").unwrap();
        assert_eq!(a, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn close_handshake_answers_with_the_same_code() {
        let mut c = CloseHandshake::default();
        assert_eq!(c.reason(), None);
        assert_eq!(c.remote_close(Some(4000)), Some(Some(4000)));
        assert!(c.is_complete());
        assert_eq!(c.reason(), Some(4000));
        assert!(!c.local_close(Some(1000)));

        let mut c = CloseHandshake::default();
        assert!(c.local_close(Some(1001)));
        assert!(!c.is_complete());
        assert_eq!(c.reason(), Some(1001));
        assert_eq!(c.remote_close(Some(1001)), None);
        assert!(c.is_complete());

        let mut c = CloseHandshake::default();
        assert_eq!(c.remote_close(None), Some(None));
        assert_eq!(c.reason(), Some(1005));
    }
}
