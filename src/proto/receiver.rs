//! The incoming half of a connection: turns bytes from the peer into
//! messages, pings, pongs and a close, enforcing every framing rule.
//!
//! It takes bytes in any split (one byte at a time or many frames at once)
//! and gives the same result. Payloads are unmasked and checked as they
//! arrive: text fails on its first invalid UTF-8 byte, and a size limit fails
//! on the frame header, before anything of that size is allocated.

use super::budget::{Charge, MemoryBudget};
use super::bytes::append;
use super::close::{self, INVALID_PAYLOAD, MESSAGE_TOO_BIG, PROTOCOL_ERROR, TRY_AGAIN_LATER};
use super::deflate::Direction;
use super::error::ProtocolError;
use super::frame::{
    decode_header, FrameHeader, HeaderError, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OP_BINARY,
    OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};
use super::mask::apply_mask;
use super::utf8;
use super::Role;

/// Size limits for what the peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest payload of one frame.
    pub max_frame_size: u64,
    /// The largest message, all its fragments together.
    pub max_message_size: u64,
}

/// Something complete that arrived from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole text message, valid UTF-8.
    Text(String),
    /// A whole binary message.
    Binary(Vec<u8>),
    /// A ping and its application data.
    Ping(Vec<u8>),
    /// A pong and its application data.
    Pong(Vec<u8>),
    /// A close frame: its code and reason, or `None` when it had no payload.
    /// Nothing after it is read.
    Close(Option<(u16, String)>),
}

/// Room at the end of a message being assembled, lent out of the receiver
/// by [`Receiver::lend_room`].
#[derive(Debug)]
pub struct Room {
    data: Vec<u8>,
    start: usize,
}

impl Room {
    /// The bytes to fill with what the peer sent.
    pub fn bytes(&mut self) -> &mut [u8] {
        &mut self.data[self.start..]
    }
}

/// A data message being assembled from its fragments.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: Vec<u8>,
    /// How much of `data` is known to be valid UTF-8 (text only).
    utf8_checked: usize,
    /// Sent compressed (RSV1 on its first frame): `data` holds what was
    /// inflated so far.
    compressed: bool,
}

/// The receiving half of permessage-deflate, once agreed.
#[derive(Debug)]
struct Inflate {
    /// The peer's window and whether it resets after each message.
    direction: Direction,
    /// The inflater, made at the first compressed message; dropped while
    /// the connection is quiet when nothing carries over between messages.
    #[cfg(feature = "deflate")]
    state: Option<super::deflate::Inflater>,
    /// The inflater's memory, charged to the budget while it exists.
    charge: Charge,
}

#[derive(Debug)]
enum State {
    /// Waiting for (the rest of) a frame header.
    Header,
    /// Reading the payload of `header`; `done` bytes read so far.
    Payload { header: FrameHeader, done: u64 },
    /// A close frame was received, or the peer broke a rule: nothing more is read.
    Finished,
}

/// The message assembler for one connection.
#[derive(Debug)]
pub struct Receiver {
    role: Role,
    limits: Limits,
    state: State,
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    control: Vec<u8>,
    message: Option<Partial>,
    /// Bytes at the end of the message's data that are not payload: the
    /// room [`Receiver::payload_room`] lent, or what a read did not fill of
    /// it, kept for the next read so that it is not zeroed again.
    room: usize,
    /// Buffers of delivered messages, given back to carry later ones.
    spares: Vec<Vec<u8>>,
    /// Their capacity together.
    spare_bytes: usize,
    /// What the message's buffer and the spares hold, charged to the
    /// memory budget before it is allocated.
    charge: Charge,
    /// How many data messages have begun (their first frame's header).
    messages_started: u64,
    /// permessage-deflate, when agreed.
    inflate: Option<Inflate>,
}

/// A message's buffer starts with room for at most this much, and then
/// grows by at most what has arrived (it doubles): a header that
/// announces a large frame costs memory only as its bytes arrive.
const RESERVE_FIRST: usize = 16 << 10;
/// The largest buffer [`Receiver::recycle`] keeps.
const RECYCLE_MAX: usize = 256 << 10;
/// At most this many bytes of buffers are kept for reuse, in at most
/// `RECYCLE_COUNT` buffers (enough for the messages of one read).
const RECYCLE_BYTES: usize = 256 << 10;
const RECYCLE_COUNT: usize = 64;

impl Receiver {
    /// A receiver for the given role (which decides the masking rule) and limits.
    pub fn new(role: Role, limits: Limits) -> Self {
        Receiver {
            role,
            limits,
            state: State::Header,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            control: Vec::new(),
            message: None,
            room: 0,
            spares: Vec::new(),
            spare_bytes: 0,
            charge: Charge::new(None),
            messages_started: 0,
            inflate: None,
        }
    }

    /// permessage-deflate was agreed: messages whose first frame has RSV1
    /// set are inflated as `peer` (the peer's sending direction of the
    /// [`Agreement`](super::deflate::Agreement)) says. Their limits apply
    /// to the inflated size, checked as they are inflated, and the
    /// inflater's state is charged to the memory budget. Without the
    /// `deflate` feature, such a message fails the connection with 1011.
    pub fn set_inflate(&mut self, peer: Direction) {
        self.inflate = Some(Inflate {
            direction: peer,
            #[cfg(feature = "deflate")]
            state: None,
            charge: self.charge.sibling(),
        });
    }

    /// Charges what this receiver holds (the message being assembled, the
    /// buffers kept for later ones) to `budget`, shared with other
    /// connections: a message that would take it over the budget fails the
    /// connection, with 1009 when it is larger than the whole budget, else
    /// with 1013 (try again later).
    pub fn set_budget(&mut self, budget: MemoryBudget) {
        let mut charge = Charge::new(Some(budget));
        // What is held already is charged as it is.
        let _ = charge.set(self.held());
        self.charge = charge;
        if let Some(inflate) = &mut self.inflate {
            let mut charge = self.charge.sibling();
            let _ = charge.set(inflate.charge.bytes());
            inflate.charge = charge;
        }
    }

    /// The bytes this receiver holds: the message's buffer and the spares.
    fn held(&self) -> usize {
        self.spare_bytes + self.message.as_ref().map_or(0, |m| m.data.capacity())
    }

    /// Brings the budget's charge down to what is held, after a buffer
    /// was handed out or dropped.
    fn account(&mut self) {
        let held = self.held();
        if held < self.charge.bytes() {
            self.charge.set(held);
        }
    }

    /// Makes the message's buffer hold at least `needed` bytes, doubling
    /// as `Vec` does, and charges it to the budget first.
    fn reserve_message(&mut self, needed: usize) -> Result<(), ProtocolError> {
        let spares = self.spare_bytes;
        let Some(m) = self.message.as_mut() else {
            return Ok(());
        };
        let cap = m.data.capacity();
        if needed <= cap {
            return Ok(());
        }
        let limit = usize::try_from(self.limits.max_message_size).unwrap_or(usize::MAX);
        let mut target = needed.max(cap.saturating_mul(2)).min(limit.max(needed));
        if !self.charge.set(spares + target) {
            target = needed;
            if !self.charge.set(spares + target) {
                return Err(if needed > self.charge.limit() {
                    ProtocolError::new(MESSAGE_TOO_BIG, "message too big for the memory budget")
                } else {
                    ProtocolError::new(
                        TRY_AGAIN_LATER,
                        "the memory budget for messages is used up: try again later",
                    )
                });
            }
        }
        m.data.reserve_exact(target - m.data.len());
        // The allocator may give more than asked: charge what it gave.
        let _ = self.charge.set(spares + m.data.capacity());
        Ok(())
    }

    /// Gives back the buffer of a message that was delivered, so that a later
    /// message can use it: in steady state a small message then costs no
    /// allocation, and a large one no allocation and no page faults (a freed
    /// 64 KiB block goes back to the system and its pages fault in again
    /// when the next message takes it). At most 256 KiB of buffers are kept.
    ///
    /// ```
    /// use airws::proto::receiver::{Incoming, Limits, Receiver};
    /// use airws::proto::Role;
    ///
    /// let limits = Limits { max_frame_size: 1024, max_message_size: 1024 };
    /// let mut r = Receiver::new(Role::Client, limits);
    /// let mut out = Vec::new();
    /// r.receive(&[0x82, 3, 1, 2, 3], &mut out).unwrap();
    /// let Some(Incoming::Binary(first)) = out.pop() else { panic!() };
    /// let at = first.as_ptr();
    /// r.recycle(first);
    /// r.receive(&[0x82, 2, 4, 5], &mut out).unwrap();
    /// let Some(Incoming::Binary(second)) = out.pop() else { panic!() };
    /// assert_eq!((second.as_slice(), second.as_ptr()), (&[4u8, 5][..], at));
    /// ```
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        let size = buf.capacity();
        if size == 0
            || size > RECYCLE_MAX
            || self.spare_bytes + size > RECYCLE_BYTES
            || self.spares.len() >= RECYCLE_COUNT
            || !self.charge.set(self.held() + size)
        {
            return;
        }
        buf.clear();
        self.spare_bytes += size;
        self.spares.push(buf);
    }

    /// Drops the buffers kept to carry later messages (for a connection
    /// that has gone quiet), giving their memory back to the budget.
    pub fn release_spares(&mut self) {
        self.spares = Vec::new();
        self.spare_bytes = 0;
        // A control frame's payload being received stays.
        let in_control = matches!(self.state, State::Payload { header, .. } if header.is_control());
        if !in_control {
            self.control = Vec::new();
        }
        self.account();
        // An inflater that carries nothing over is made again when the
        // next compressed message comes.
        let between = self.message.is_none();
        if let Some(inflate) = &mut self.inflate {
            if between && inflate.direction.no_context_takeover {
                #[cfg(feature = "deflate")]
                {
                    inflate.state = None;
                }
                inflate.charge.set(0);
            }
        }
    }

    /// A buffer for a new message of which `first` bytes are announced: a
    /// spare (already charged), or an empty one that `reserve_message`
    /// grows.
    fn message_buffer(&mut self, first: usize) -> Vec<u8> {
        if self.spares.last().is_some_and(|b| b.capacity() >= first) {
            if let Some(buf) = self.spares.pop() {
                self.spare_bytes -= buf.capacity();
                return buf;
            }
        }
        Vec::new()
    }

    /// Whether a close frame was received or a rule was broken: the receiver
    /// ignores all further input.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// Whether a data message has begun and not ended.
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// How many data messages have begun so far: with
    /// [`in_message`](Self::in_message), tells when the current one began.
    pub fn messages_started(&self) -> u64 {
        self.messages_started
    }

    /// Whether the receiver is between frames and holds no partial message.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Header) && self.header_len == 0 && self.message.is_none()
    }

    /// Feeds bytes from the peer. Everything complete is pushed to `out`, in
    /// order. On a broken rule, what came before it is in `out` and the
    /// receiver is finished.
    pub fn receive(&mut self, input: &[u8], out: &mut Vec<Incoming>) -> Result<(), ProtocolError> {
        self.drop_room();
        let result = self.receive_inner(input, out);
        self.settle(result)
    }

    /// Room for the rest of the current data frame's payload, at the end of
    /// the message being assembled, when at least `min` bytes of it are still
    /// to come: the caller reads the peer's bytes straight into it (saving a
    /// copy of large payloads), then passes how many it read to
    /// [`Receiver::commit_room`]. The room holds at most `max` bytes, and no
    /// more than what has arrived of the message so far, so that a header
    /// announcing a large frame costs memory only as its bytes arrive: there
    /// is no room before `min` bytes have arrived, and then it doubles as
    /// they do. Its contents are unspecified (zeros, or what an earlier read
    /// left), and it counts against the message's limits like received
    /// data.
    ///
    /// `None` when the receiver is elsewhere (a header, a control frame, a
    /// short remainder): feed the bytes to [`Receiver::receive`] instead.
    ///
    /// ```
    /// use airws::proto::receiver::{Incoming, Limits, Receiver};
    /// use airws::proto::Role;
    ///
    /// let limits = Limits { max_frame_size: 1 << 20, max_message_size: 1 << 20 };
    /// let mut r = Receiver::new(Role::Client, limits);
    /// let mut out = Vec::new();
    /// // A binary frame of 1000 bytes from a server: its header first.
    /// r.receive(&[0x82, 126, 0x03, 0xE8], &mut out).unwrap();
    /// // Nothing of the payload has arrived yet: no room.
    /// assert!(r.payload_room(256, 4096).is_none());
    /// r.receive(&[7; 300], &mut out).unwrap();
    /// // 300 bytes have arrived: room for as many again.
    /// let room = r.payload_room(256, 4096).expect("in a large payload");
    /// assert_eq!(room.len(), 300);
    /// room.fill(7); // what a read from the socket would do
    /// r.commit_room(300, &mut out).unwrap();
    /// // 600 have: room for the 400 left.
    /// let room = r.payload_room(256, 4096).expect("in a large payload");
    /// assert_eq!(room.len(), 400);
    /// room.fill(7);
    /// r.commit_room(400, &mut out).unwrap();
    /// assert_eq!(out, vec![Incoming::Binary(vec![7; 1000])]);
    /// ```
    #[doc(hidden)]
    pub fn payload_room(&mut self, min: usize, max: usize) -> Option<&mut [u8]> {
        let State::Payload { header, done } = self.state else {
            self.drop_room();
            return None;
        };
        let remaining = header.payload_len - done;
        let arrived = self
            .message
            .as_ref()
            .map_or(0, |m| m.data.len() - self.room);
        // A compressed payload is inflated, not stored: no room for it.
        let compressed = self.message.as_ref().is_some_and(|m| m.compressed);
        // No more room than what has arrived of the message: announced
        // bytes that never come cost nothing.
        if header.is_control() || compressed || remaining < min as u64 || arrived < min {
            self.drop_room();
            return None;
        }
        let start = arrived;
        let want = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(max)
            .min(arrived);
        if self.reserve_message(start + want).is_err() {
            // Over the budget: the bytes come through `receive`, which
            // fails the connection.
            self.drop_room();
            return None;
        }
        let m = self.message.as_mut()?;
        // Room left by the last read is reused as it is; only new bytes are
        // zeroed.
        m.data.resize(start + want, 0);
        self.room = want;
        Some(&mut m.data[start..])
    }

    /// Like [`Receiver::payload_room`], but the room is moved out of the
    /// receiver (with the message's buffer it belongs to), so that the
    /// caller can fill it while the receiver is shared with other threads
    /// behind a lock it does not hold during the read. Give it back with
    /// [`Receiver::return_room`] before any other call that feeds the
    /// receiver.
    ///
    /// ```
    /// use airws::proto::receiver::{Incoming, Limits, Receiver};
    /// use airws::proto::Role;
    ///
    /// let limits = Limits { max_frame_size: 1 << 20, max_message_size: 1 << 20 };
    /// let mut r = Receiver::new(Role::Client, limits);
    /// let mut out = Vec::new();
    /// r.receive(&[0x82, 126, 0x03, 0xE8], &mut out).unwrap();
    /// r.receive(&[7; 500], &mut out).unwrap();
    /// let mut room = r.lend_room(256, 4096).expect("in a large payload");
    /// assert_eq!(room.bytes().len(), 500);
    /// room.bytes().fill(7);
    /// r.return_room(room, 500, &mut out).unwrap();
    /// assert_eq!(out, vec![Incoming::Binary(vec![7; 1000])]);
    /// ```
    pub fn lend_room(&mut self, min: usize, max: usize) -> Option<Room> {
        self.payload_room(min, max)?;
        let m = self.message.as_mut()?;
        let data = std::mem::take(&mut m.data);
        let start = data.len() - self.room;
        Some(Room { data, start })
    }

    /// Takes back a room lent by [`Receiver::lend_room`] and commits the
    /// first `n` bytes of it, as [`Receiver::commit_room`] does.
    pub fn return_room(
        &mut self,
        room: Room,
        n: usize,
        out: &mut Vec<Incoming>,
    ) -> Result<(), ProtocolError> {
        match self.message.as_mut() {
            Some(m) => m.data = room.data,
            None => self.room = 0,
        }
        self.commit_room(n, out)
    }

    /// Takes the first `n` bytes of the room that
    /// [`Receiver::payload_room`] lent as received payload, exactly as if
    /// they had been passed to [`Receiver::receive`]. `n` larger than the
    /// room is treated as the whole room.
    #[doc(hidden)]
    pub fn commit_room(&mut self, n: usize, out: &mut Vec<Incoming>) -> Result<(), ProtocolError> {
        let room = std::mem::take(&mut self.room);
        let n = n.min(room);
        let result = self.commit_inner(room, n, out);
        self.settle(result)
    }

    fn commit_inner(
        &mut self,
        room: usize,
        n: usize,
        out: &mut Vec<Incoming>,
    ) -> Result<(), ProtocolError> {
        let State::Payload { header, done } = self.state else {
            return Ok(());
        };
        let Some(m) = self.message.as_mut() else {
            return Ok(());
        };
        let start = m.data.len() - room;
        // What the read did not fill stays, as room for the next one. (When
        // this completes the frame, the read filled it all: the room never
        // exceeds what the frame still has to bring.)
        self.room = room - n;
        if n == 0 {
            return Ok(());
        }
        self.accept_stored(&header, done, start, start + n)?;
        self.payload_advanced(header, done + n as u64, out)
    }

    /// Drops the room (lent, or left over from a read) from the message.
    fn drop_room(&mut self) {
        let room = std::mem::take(&mut self.room);
        if let Some(m) = self.message.as_mut() {
            m.data.truncate(m.data.len().saturating_sub(room));
        }
    }

    /// After a broken rule, nothing more is read and nothing is kept.
    fn settle(&mut self, result: Result<(), ProtocolError>) -> Result<(), ProtocolError> {
        if result.is_err() {
            self.state = State::Finished;
            self.room = 0;
            self.message = None;
            self.control = Vec::new();
        }
        self.account();
        result
    }

    fn receive_inner(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<Incoming>,
    ) -> Result<(), ProtocolError> {
        while !input.is_empty() {
            match self.state {
                State::Finished => return Ok(()),
                State::Header => {
                    let take = input.len().min(MAX_HEADER_LEN - self.header_len);
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&input[..take]);
                    let had = self.header_len;
                    self.header_len += take;
                    match decode_header(&self.header[..self.header_len]) {
                        Ok(None) => {
                            input = &input[take..];
                        }
                        Ok(Some((header, used))) => {
                            input = &input[used - had..];
                            self.header_len = 0;
                            self.start_frame(header)?;
                            if header.payload_len == 0 {
                                self.finish_frame(header, out)?;
                            } else {
                                self.state = State::Payload { header, done: 0 };
                            }
                        }
                        Err(HeaderError::LengthTopBitSet) => {
                            return Err(ProtocolError::new(
                                PROTOCOL_ERROR,
                                "frame length with the most significant bit set",
                            ));
                        }
                    }
                }
                State::Payload { header, done } => {
                    let remaining = header.payload_len - done;
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let (chunk, rest) = input.split_at(take);
                    input = rest;
                    self.payload_chunk(&header, done, chunk)?;
                    self.payload_advanced(header, done + take as u64, out)?;
                }
            }
        }
        Ok(())
    }

    /// Moves on once `done` bytes of the frame's payload have arrived.
    fn payload_advanced(
        &mut self,
        header: FrameHeader,
        done: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), ProtocolError> {
        if done == header.payload_len {
            self.state = State::Header;
            self.finish_frame(header, out)
        } else {
            self.state = State::Payload { header, done };
            Ok(())
        }
    }

    /// Checks a header against every rule and the limits.
    fn start_frame(&mut self, h: FrameHeader) -> Result<(), ProtocolError> {
        let compressed = h.rsv & RSV1 != 0;
        if h.rsv & !RSV1 != 0 || (compressed && self.inflate.is_none()) {
            return Err(ProtocolError::new(
                PROTOCOL_ERROR,
                "reserved bits set without a negotiated extension",
            ));
        }
        if compressed && h.is_control() {
            return Err(ProtocolError::new(
                PROTOCOL_ERROR,
                "RSV1 set on a control frame",
            ));
        }
        if compressed && h.opcode == OP_CONTINUATION {
            return Err(ProtocolError::new(
                PROTOCOL_ERROR,
                "RSV1 set on a continuation frame",
            ));
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => {
                return Err(ProtocolError::new(
                    PROTOCOL_ERROR,
                    "unmasked frame from a client",
                ));
            }
            (Role::Client, true) => {
                return Err(ProtocolError::new(
                    PROTOCOL_ERROR,
                    "masked frame from a server",
                ));
            }
            _ => {}
        }
        match h.opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !h.fin {
                    return Err(ProtocolError::new(
                        PROTOCOL_ERROR,
                        "fragmented control frame",
                    ));
                }
                if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(ProtocolError::new(
                        PROTOCOL_ERROR,
                        "control frame payload over 125 bytes",
                    ));
                }
                self.control.clear();
            }
            OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                if h.payload_len > self.limits.max_frame_size {
                    return Err(ProtocolError::new(MESSAGE_TOO_BIG, "frame too big"));
                }
                match (&mut self.message, h.opcode) {
                    (None, OP_CONTINUATION) => {
                        return Err(ProtocolError::new(
                            PROTOCOL_ERROR,
                            "continuation frame without a message to continue",
                        ));
                    }
                    (Some(_), OP_TEXT | OP_BINARY) => {
                        return Err(ProtocolError::new(
                            PROTOCOL_ERROR,
                            "new data frame inside a fragmented message",
                        ));
                    }
                    (None, _) => {
                        // A compressed message's limit is on what it
                        // inflates to, checked as it does.
                        if !compressed && h.payload_len > self.limits.max_message_size {
                            return Err(ProtocolError::new(MESSAGE_TOO_BIG, "message too big"));
                        }
                        let first = if compressed {
                            // What it inflates to is unknown: a guess, never
                            // more than one byte past the limit.
                            h.payload_len
                                .saturating_mul(4)
                                .clamp(256, RESERVE_FIRST as u64)
                                .min(self.limits.max_message_size.saturating_add(1))
                        } else {
                            h.payload_len.min(RESERVE_FIRST as u64)
                        } as usize;
                        if compressed {
                            self.start_inflating()?;
                        }
                        let data = self.message_buffer(first);
                        self.messages_started += 1;
                        self.message = Some(Partial {
                            text: h.opcode == OP_TEXT,
                            data,
                            utf8_checked: 0,
                            compressed,
                        });
                        self.reserve_message(first)?;
                    }
                    (Some(m), _) if m.compressed => {}
                    (Some(m), _) => {
                        let len = m.data.len();
                        let total = len as u64 + h.payload_len;
                        if total > self.limits.max_message_size {
                            return Err(ProtocolError::new(MESSAGE_TOO_BIG, "message too big"));
                        }
                        let step = RESERVE_FIRST.max(len) as u64;
                        self.reserve_message(len + h.payload_len.min(step) as usize)?;
                    }
                }
            }
            _ => {
                return Err(ProtocolError::new(PROTOCOL_ERROR, "reserved opcode"));
            }
        }
        Ok(())
    }

    /// Unmasks and stores a piece of the current frame's payload.
    fn payload_chunk(
        &mut self,
        h: &FrameHeader,
        done: u64,
        chunk: &[u8],
    ) -> Result<(), ProtocolError> {
        let offset = (done % 4) as usize;
        if h.is_control() {
            let start = self.control.len();
            self.control.extend_from_slice(chunk);
            if let Some(key) = h.mask {
                apply_mask(&mut self.control[start..], key, offset);
            }
            return Ok(());
        }
        let Some(m) = self.message.as_mut() else {
            return Err(ProtocolError::new(
                PROTOCOL_ERROR,
                "payload without a message",
            ));
        };
        if m.compressed {
            return self.inflate_chunk(h, done, chunk);
        }
        let start = m.data.len();
        self.reserve_message(start + chunk.len())?;
        let Some(m) = self.message.as_mut() else {
            return Ok(());
        };
        append(&mut m.data, chunk);
        let end = m.data.len();
        self.accept_stored(h, done, start, end)
    }

    /// Unmasks and checks the payload bytes stored in the message at
    /// `start..end`, which begin `done` bytes into the frame's payload.
    fn accept_stored(
        &mut self,
        h: &FrameHeader,
        done: u64,
        start: usize,
        end: usize,
    ) -> Result<(), ProtocolError> {
        let Some(m) = self.message.as_mut() else {
            return Err(ProtocolError::new(
                PROTOCOL_ERROR,
                "payload without a message",
            ));
        };
        if let Some(key) = h.mask {
            apply_mask(&mut m.data[start..end], key, (done % 4) as usize);
        }
        if m.text && !utf8::advance(&m.data[..end], &mut m.utf8_checked) {
            return Err(ProtocolError::new(
                INVALID_PAYLOAD,
                "text message is not valid UTF-8",
            ));
        }
        Ok(())
    }

    /// Completes a frame whose payload has all arrived.
    fn finish_frame(
        &mut self,
        h: FrameHeader,
        out: &mut Vec<Incoming>,
    ) -> Result<(), ProtocolError> {
        match h.opcode {
            OP_PING => out.push(Incoming::Ping(std::mem::take(&mut self.control))),
            OP_PONG => out.push(Incoming::Pong(std::mem::take(&mut self.control))),
            OP_CLOSE => {
                let parsed = close::parse_payload(&self.control)?;
                self.control.clear();
                self.state = State::Finished;
                self.message = None;
                out.push(Incoming::Close(parsed));
            }
            _ => {
                if h.fin {
                    if self.message.as_ref().is_some_and(|m| m.compressed) {
                        self.end_inflating()?;
                    }
                    if let Some(m) = self.message.take() {
                        out.push(complete(m)?);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The RSV1 bit in [`FrameHeader::rsv`]: the message is compressed.
const RSV1: u8 = 0b100;

/// A compressed message's payload is unmasked into a buffer of this size
/// on the stack, a piece at a time, on its way to the inflater.
const UNMASK_PIECE: usize = 4096;

impl Receiver {
    /// A compressed message begins: the inflater is made if it is not
    /// there, its memory charged to the budget first.
    fn start_inflating(&mut self) -> Result<(), ProtocolError> {
        let Some(inflate) = self.inflate.as_mut() else {
            return Err(ProtocolError::new(
                PROTOCOL_ERROR,
                "RSV1 set without a negotiated extension",
            ));
        };
        #[cfg(feature = "deflate")]
        {
            if inflate.state.is_some() {
                return Ok(());
            }
            let bits = inflate.direction.window_bits;
            let cost = super::deflate::state_cost(bits, false);
            if !inflate.charge.set(cost) {
                return Err(ProtocolError::new(
                    TRY_AGAIN_LATER,
                    "the memory budget is used up: no room to inflate a message",
                ));
            }
            inflate.state = Some(super::deflate::Inflater::new(
                bits,
                inflate.direction.no_context_takeover,
            ));
            Ok(())
        }
        #[cfg(not(feature = "deflate"))]
        {
            let _ = inflate;
            Err(ProtocolError::new(
                close::INTERNAL_ERROR,
                "permessage-deflate is not built in (the deflate feature)",
            ))
        }
    }

    /// Unmasks and inflates a piece of a compressed message's payload,
    /// which begins `done` bytes into its frame's payload.
    fn inflate_chunk(
        &mut self,
        h: &FrameHeader,
        done: u64,
        chunk: &[u8],
    ) -> Result<(), ProtocolError> {
        let Some(key) = h.mask else {
            return self.inflate_into_message(chunk);
        };
        let mut piece = [0u8; UNMASK_PIECE];
        let mut at = done;
        for part in chunk.chunks(UNMASK_PIECE) {
            let buf = &mut piece[..part.len()];
            buf.copy_from_slice(part);
            apply_mask(buf, key, (at % 4) as usize);
            self.inflate_into_message(buf)?;
            at += part.len() as u64;
        }
        Ok(())
    }

    /// The last frame of a compressed message arrived: its tail is
    /// inflated, and the inflater reset if nothing carries over.
    fn end_inflating(&mut self) -> Result<(), ProtocolError> {
        #[cfg(feature = "deflate")]
        {
            let needs_tail = self
                .inflate
                .as_ref()
                .and_then(|i| i.state.as_ref())
                .is_some_and(|s| s.needs_tail());
            if needs_tail {
                self.inflate_into_message(&super::deflate::TAIL)?;
            }
            if let Some(state) = self.inflate.as_mut().and_then(|i| i.state.as_mut()) {
                state.end_message();
            }
        }
        Ok(())
    }

    /// Inflates `input` into the message, growing its buffer as `Vec`
    /// does but never past one byte over the message limit, each growth
    /// charged to the budget first; checks the limit and the text's UTF-8
    /// on what comes out, as it comes.
    #[cfg(feature = "deflate")]
    fn inflate_into_message(&mut self, input: &[u8]) -> Result<(), ProtocolError> {
        let Some(mut state) = self.inflate.as_mut().and_then(|i| i.state.take()) else {
            return Err(ProtocolError::new(
                PROTOCOL_ERROR,
                "compressed payload without a compressed message",
            ));
        };
        let result = self.inflate_with(&mut state, input);
        if let Some(inflate) = self.inflate.as_mut() {
            inflate.state = Some(state);
        }
        result
    }

    #[cfg(not(feature = "deflate"))]
    fn inflate_into_message(&mut self, _input: &[u8]) -> Result<(), ProtocolError> {
        Err(ProtocolError::new(
            close::INTERNAL_ERROR,
            "permessage-deflate is not built in (the deflate feature)",
        ))
    }

    #[cfg(feature = "deflate")]
    fn inflate_with(
        &mut self,
        state: &mut super::deflate::Inflater,
        mut input: &[u8],
    ) -> Result<(), ProtocolError> {
        let limit = usize::try_from(self.limits.max_message_size).unwrap_or(usize::MAX);
        loop {
            let Some(m) = self.message.as_ref() else {
                return Ok(());
            };
            let len = m.data.len();
            if m.data.capacity() == len {
                let want = len
                    .saturating_add(len.max(RESERVE_FIRST))
                    .min(limit.saturating_add(1));
                self.reserve_message(want)?;
            }
            let Some(m) = self.message.as_mut() else {
                return Ok(());
            };
            let room = m.data.capacity() - m.data.len();
            let progress = state.inflate(input, &mut m.data).map_err(|_| {
                ProtocolError::new(INVALID_PAYLOAD, "the compressed data is invalid")
            })?;
            input = &input[progress.consumed..];
            if m.data.len() > limit {
                return Err(ProtocolError::new(
                    MESSAGE_TOO_BIG,
                    "message too big once inflated",
                ));
            }
            if m.text && !utf8::advance(&m.data, &mut m.utf8_checked) {
                return Err(ProtocolError::new(
                    INVALID_PAYLOAD,
                    "text message is not valid UTF-8",
                ));
            }
            if input.is_empty() && progress.drained {
                return Ok(());
            }
            if progress.consumed == 0 && progress.produced == 0 && room > 0 {
                // zlib makes progress whenever it has input and room; this
                // is a stream that wants neither.
                return Ok(());
            }
        }
    }
}

fn complete(m: Partial) -> Result<Incoming, ProtocolError> {
    if !m.text {
        return Ok(Incoming::Binary(m.data));
    }
    match String::from_utf8(m.data) {
        Ok(s) => Ok(Incoming::Text(s)),
        Err(_) => Err(ProtocolError::new(
            INVALID_PAYLOAD,
            "text message ends inside a UTF-8 sequence",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::encode_header;
    use crate::proto::mask::extend_masked;

    const LIMITS: Limits = Limits {
        max_frame_size: 1 << 20,
        max_message_size: 4 << 20,
    };

    /// A frame as a client sends it (masked).
    fn cframe(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x11, 0x22, 0x33, 0x44];
        let mut out = Vec::new();
        encode_header(&mut out, fin, opcode, Some(key), payload.len() as u64);
        extend_masked(&mut out, payload, key, 0);
        out
    }

    /// A frame as a server sends it (unmasked).
    fn sframe(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_header(&mut out, fin, opcode, None, payload.len() as u64);
        out.extend_from_slice(payload);
        out
    }

    fn run(role: Role, wire: &[u8]) -> (Vec<Incoming>, Result<(), ProtocolError>) {
        let mut r = Receiver::new(role, LIMITS);
        let mut out = Vec::new();
        let res = r.receive(wire, &mut out);
        (out, res)
    }

    /// Feeds `wire` whole, then one byte at a time, and checks both agree.
    fn run_split(role: Role, wire: &[u8]) -> (Vec<Incoming>, Result<(), ProtocolError>) {
        let whole = run(role, wire);
        let mut r = Receiver::new(role, LIMITS);
        let mut out = Vec::new();
        let mut res = Ok(());
        for b in wire {
            res = r.receive(std::slice::from_ref(b), &mut out);
            if res.is_err() {
                break;
            }
        }
        assert_eq!(whole, (out, res), "whole and byte-by-byte differ");
        whole
    }

    #[test]
    fn recycled_buffers_are_bounded_and_reused() {
        let mut r = Receiver::new(Role::Client, LIMITS);
        r.recycle(Vec::with_capacity(RECYCLE_MAX + 1));
        r.recycle(Vec::new());
        assert!(r.spares.is_empty(), "too large or empty: not kept");
        for _ in 0..RECYCLE_COUNT + 10 {
            r.recycle(Vec::with_capacity(16));
        }
        assert!(r.spares.len() <= RECYCLE_COUNT);
        for _ in 0..10 {
            r.recycle(Vec::with_capacity(RECYCLE_MAX));
        }
        assert!(r.spare_bytes <= RECYCLE_BYTES);
        assert_eq!(
            r.spare_bytes,
            r.spares.iter().map(Vec::capacity).sum::<usize>()
        );
        // A kept buffer carries the next message, emptied first.
        let mut r = Receiver::new(Role::Client, LIMITS);
        let mut old = Vec::with_capacity(64);
        old.extend_from_slice(b"stale bytes");
        r.recycle(old);
        let mut out = Vec::new();
        r.receive(&sframe(true, OP_BINARY, b"new"), &mut out)
            .unwrap();
        assert_eq!(out, vec![Incoming::Binary(b"new".to_vec())]);
        assert!(r.spares.is_empty() && r.spare_bytes == 0);
    }

    #[test]
    fn rfc_examples_as_a_client() {
        let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (out, res) = run_split(Role::Client, &wire);
        assert_eq!(res, Ok(()));
        assert_eq!(out, vec![Incoming::Text("Hello".into())]);

        let wire = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        let (out, _) = run_split(Role::Client, &wire);
        assert_eq!(out, vec![Incoming::Text("Hello".into())]);

        let wire = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (out, _) = run_split(Role::Client, &wire);
        assert_eq!(out, vec![Incoming::Ping(b"Hello".to_vec())]);
    }

    #[test]
    fn rfc_masked_example_as_a_server() {
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (out, res) = run_split(Role::Server, &wire);
        assert_eq!(res, Ok(()));
        assert_eq!(out, vec![Incoming::Text("Hello".into())]);
    }

    #[test]
    fn all_three_length_forms() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload = vec![0xAB; len];
            let (out, res) = run(Role::Server, &cframe(true, OP_BINARY, &payload));
            assert_eq!(res, Ok(()));
            assert_eq!(out, vec![Incoming::Binary(payload)]);
        }
    }

    #[test]
    fn masking_rules_by_role() {
        let (_, res) = run(Role::Server, &sframe(true, OP_TEXT, b"x"));
        assert_eq!(res.unwrap_err().code, PROTOCOL_ERROR);
        let (_, res) = run(Role::Client, &cframe(true, OP_TEXT, b"x"));
        assert_eq!(res.unwrap_err().code, PROTOCOL_ERROR);
    }

    #[test]
    fn reserved_bits_and_opcodes_fail_with_1002() {
        for first in [0xC1u8, 0xA1, 0x91] {
            let (_, res) = run(Role::Client, &[first, 0x00]);
            assert_eq!(res.unwrap_err().code, PROTOCOL_ERROR, "{first:#x}");
        }
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let (_, res) = run(Role::Client, &[0x80 | op, 0x00]);
            assert_eq!(res.unwrap_err().code, PROTOCOL_ERROR, "opcode {op}");
        }
    }

    #[test]
    fn control_frame_rules() {
        let (_, res) = run(Role::Client, &sframe(false, OP_PING, b""));
        assert_eq!(res.unwrap_err().code, PROTOCOL_ERROR);
        let (_, res) = run(Role::Client, &sframe(true, OP_PING, &[0; 126]));
        assert_eq!(res.unwrap_err().code, PROTOCOL_ERROR);
        let (out, res) = run(Role::Client, &sframe(true, OP_PING, &[7; 125]));
        assert_eq!(res, Ok(()));
        assert_eq!(out, vec![Incoming::Ping(vec![7; 125])]);
    }

    #[test]
    fn fragments_with_interleaved_control_frames() {
        let mut wire = sframe(false, OP_TEXT, b"fra");
        wire.extend(sframe(true, OP_PING, b"p"));
        wire.extend(sframe(false, OP_CONTINUATION, b"gme"));
        wire.extend(sframe(true, OP_PONG, b"q"));
        wire.extend(sframe(true, OP_CONTINUATION, b"nted"));
        let (out, res) = run_split(Role::Client, &wire);
        assert_eq!(res, Ok(()));
        assert_eq!(
            out,
            vec![
                Incoming::Ping(b"p".to_vec()),
                Incoming::Pong(b"q".to_vec()),
                Incoming::Text("fragmented".into()),
            ]
        );
    }

    #[test]
    fn fragmentation_errors() {
        let (_, res) = run(Role::Client, &sframe(true, OP_CONTINUATION, b"x"));
        assert_eq!(res.unwrap_err().code, PROTOCOL_ERROR);
        let mut wire = sframe(false, OP_TEXT, b"a");
        wire.extend(sframe(true, OP_TEXT, b"b"));
        let (_, res) = run(Role::Client, &wire);
        assert_eq!(res.unwrap_err().code, PROTOCOL_ERROR);
    }

    #[test]
    fn messages_before_an_error_are_delivered() {
        let mut wire = sframe(true, OP_TEXT, b"first");
        wire.extend([0xC1, 0x00]);
        let (out, res) = run_split(Role::Client, &wire);
        assert_eq!(out, vec![Incoming::Text("first".into())]);
        assert_eq!(res.unwrap_err().code, PROTOCOL_ERROR);
    }

    #[test]
    fn invalid_utf8_fails_on_the_first_bad_fragment() {
        // The first fragment already holds an impossible sequence; the message
        // never ends, and still the receiver fails.
        let wire = sframe(false, OP_TEXT, &[b'o', b'k', 0xF4, 0x90, 0x80]);
        let (_, res) = run_split(Role::Client, &wire);
        assert_eq!(res.unwrap_err().code, INVALID_PAYLOAD);
        // Fail-fast inside one frame, too: only its header and the first bad
        // bytes have arrived.
        let mut r = Receiver::new(Role::Client, LIMITS);
        let mut out = Vec::new();
        let mut wire = Vec::new();
        encode_header(&mut wire, true, OP_TEXT, None, 1000);
        wire.extend_from_slice(&[0xCE, 0xBA, 0xFF]);
        assert_eq!(
            r.receive(&wire, &mut out).unwrap_err().code,
            INVALID_PAYLOAD
        );
    }

    #[test]
    fn utf8_split_across_fragments_is_valid() {
        let text = "κόσμε";
        let bytes = text.as_bytes();
        for cut in 1..bytes.len() {
            let mut wire = sframe(false, OP_TEXT, &bytes[..cut]);
            wire.extend(sframe(true, OP_CONTINUATION, &bytes[cut..]));
            let (out, res) = run(Role::Client, &wire);
            assert_eq!(res, Ok(()));
            assert_eq!(out, vec![Incoming::Text(text.into())]);
        }
        // Truncated at the end of the message.
        let (_, res) = run(Role::Client, &sframe(true, OP_TEXT, &bytes[..1]));
        assert_eq!(res.unwrap_err().code, INVALID_PAYLOAD);
    }

    #[test]
    fn limits_fail_with_1009_on_the_header() {
        let mut wire = Vec::new();
        encode_header(&mut wire, true, OP_BINARY, None, 1u64 << 62);
        let (_, res) = run(Role::Client, &wire);
        assert_eq!(res.unwrap_err().code, MESSAGE_TOO_BIG);
        // Fragments that each fit but together exceed the message limit.
        let mut r = Receiver::new(
            Role::Client,
            Limits {
                max_frame_size: 10,
                max_message_size: 15,
            },
        );
        let mut out = Vec::new();
        assert!(r
            .receive(&sframe(false, OP_BINARY, &[0; 10]), &mut out)
            .is_ok());
        let err = r
            .receive(&sframe(true, OP_CONTINUATION, &[0; 6]), &mut out)
            .unwrap_err();
        assert_eq!(err.code, MESSAGE_TOO_BIG);
        let (_, res) = run(
            Role::Client,
            &sframe(true, OP_BINARY, &vec![0; (1 << 20) + 1]),
        );
        assert_eq!(res.unwrap_err().code, MESSAGE_TOO_BIG);
    }

    #[test]
    fn close_frames() {
        let (out, res) = run_split(
            Role::Client,
            &sframe(true, OP_CLOSE, &[0x03, 0xE8, b'b', b'y', b'e']),
        );
        assert_eq!(res, Ok(()));
        assert_eq!(out, vec![Incoming::Close(Some((1000, "bye".into())))]);
        let (out, _) = run(Role::Client, &sframe(true, OP_CLOSE, &[]));
        assert_eq!(out, vec![Incoming::Close(None)]);
        let (_, res) = run(Role::Client, &sframe(true, OP_CLOSE, &[0x03]));
        assert_eq!(res.unwrap_err().code, PROTOCOL_ERROR);
        let (_, res) = run(Role::Client, &sframe(true, OP_CLOSE, &[0x03, 0xEC]));
        assert_eq!(res.unwrap_err().code, PROTOCOL_ERROR);
        let (_, res) = run(Role::Client, &sframe(true, OP_CLOSE, &[0x03, 0xE8, 0xC0]));
        assert_eq!(res.unwrap_err().code, INVALID_PAYLOAD);
        // Nothing after the close is read.
        let mut wire = sframe(true, OP_CLOSE, &[]);
        wire.extend(sframe(true, OP_TEXT, b"late"));
        let (out, res) = run(Role::Client, &wire);
        assert_eq!(res, Ok(()));
        assert_eq!(out, vec![Incoming::Close(None)]);
    }

    #[test]
    fn a_close_inside_a_fragmented_message_is_accepted() {
        let mut wire = sframe(false, OP_TEXT, b"part");
        wire.extend(sframe(true, OP_CLOSE, &[0x03, 0xE8]));
        let (out, res) = run(Role::Client, &wire);
        assert_eq!(res, Ok(()));
        assert_eq!(out, vec![Incoming::Close(Some((1000, String::new())))]);
    }
}
