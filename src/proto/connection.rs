//! One connection's rules, as a state machine with no I/O and no clock.
//!
//! [`Connection`] owns the receiver, the sender's state, the closing
//! handshake and every timer. The I/O layer feeds it what the socket
//! brought ([`Connection::receive`], [`Connection::receive_eof`]) and the
//! current time, and asks it what to do next:
//!
//! - [`Connection::poll_transmit`]: bytes to write, and whether to shut the
//!   write side down after them (the server closes TCP first);
//! - [`Connection::poll_messages`]: the messages to dispatch, in order
//!   with the answers to the peer's control frames;
//! - [`Connection::poll_timeout`]: when to call
//!   [`Connection::handle_timeout`] if nothing arrives before;
//! - [`Connection::ending`]: the connection is over, close the socket.
//!
//! It never reads the clock or touches a socket: time is a parameter, so
//! every rule is tested on a simulated clock (see the tests at the end).
//!
//! ```
//! use airws::proto::connection::{Connection, Settings};
//! use airws::proto::receiver::{Incoming, Limits};
//! use airws::proto::Role;
//! use std::time::{Duration, Instant};
//!
//! let settings = Settings {
//!     limits: Limits { max_frame_size: 1 << 20, max_message_size: 1 << 20 },
//!     close_timeout: Duration::from_secs(5),
//!     idle_timeout: None,
//!     message_timeout: None,
//!     budget: None,
//!     keepalive: None,
//! };
//! let now = Instant::now();
//! let mut client = Connection::new(Role::Client, settings, now);
//! let mut got = Vec::new();
//! // A ping from the server: the client queues the pong itself.
//! client.receive(&[0x89, 2, b'h', b'i'], now);
//! client.poll_messages(now, &mut got);
//! let mut out = Vec::new();
//! client.poll_transmit(&mut out);
//! assert_eq!(out[..2], [0x8A, 0x82]); // a pong, masked, carrying "hi"
//! // A text message is for the application.
//! client.receive(&[0x81, 2, b'o', b'k'], now);
//! client.poll_messages(now, &mut got);
//! assert_eq!(got, vec![Incoming::Text("ok".into())]);
//! ```

use super::budget::{Charge, MemoryBudget};
use super::close::{self, GOING_AWAY};
use super::deflate::{Agreement, DeflateConfig, Direction};
use super::error::ProtocolError;
use super::frame::{
    MAX_CONTROL_PAYLOAD, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};
use super::receiver::{Incoming, Limits, Receiver, Room};
pub use super::sender::OutgoingHeader;
use super::sender::{CloseHandshake, Sender};
use super::Role;
use std::fmt;
use std::time::{Duration, Instant};

/// At most this many bytes of pongs wait to be written; a ping that
/// arrives while they wait is not answered, so a peer that pings while our
/// writes are stuck cannot grow memory (RFC 6455 §5.5.3 does not require a
/// pong for every ping).
const MAX_PENDING_PONG_BYTES: usize = 64 << 10;

/// The connection's limits, timers and memory budget.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Size limits for what the peer sends.
    pub limits: Limits,
    /// How long to wait for the peer's part of the closing handshake (its
    /// close frame, or for a client the server's end of the TCP stream).
    pub close_timeout: Duration,
    /// Fail the connection with 1001 when nothing arrives for this long.
    pub idle_timeout: Option<Duration>,
    /// Fail the connection with 1008 when a message has not ended this
    /// long after its first frame began to arrive.
    pub message_timeout: Option<Duration>,
    /// The budget that what the peer makes this connection hold (its
    /// partial message, its kept buffers) is charged to; `None`: no budget
    /// beyond the limits.
    pub budget: Option<MemoryBudget>,
    /// Pings that find a dead peer; `None`: none are sent.
    pub keepalive: Option<Keepalive>,
}

/// Keepalive: after `interval` in which nothing arrived from the peer, a
/// ping; when `timeout` more passes still without anything (any byte is a
/// sign of life, a pong or not), the peer is declared dead and the
/// connection fails at once with 1011 ([`Failure::PeerDead`]), without
/// waiting for a closing handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence after which a ping is sent.
    pub interval: Duration,
    /// Further silence after which the peer is dead.
    pub timeout: Duration,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// The closing handshake completed, or the wait for its end passed.
    Closed,
    /// This end failed the connection with this close code: a rule the
    /// peer broke (1002, 1007, 1009) or the idle timeout (1001).
    Failed(u16),
    /// The stream ended without a closing handshake.
    Dropped,
    /// Reading or writing failed without a closing handshake under way.
    Broken,
}

/// Why this end failed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The peer broke this rule.
    Violation(ProtocolError),
    /// Nothing arrived for the idle timeout (close code 1001).
    IdleTimeout,
    /// A message did not end within the message timeout (close code 1008).
    MessageTimeout,
    /// Nothing arrived for the keepalive's interval and timeout, a ping
    /// sent between (close code 1011; the connection ends at once).
    PeerDead,
}

impl Failure {
    /// The close code the connection is failed with.
    pub fn code(self) -> u16 {
        match self {
            Failure::Violation(v) => v.code,
            Failure::IdleTimeout => GOING_AWAY,
            Failure::MessageTimeout => close::POLICY_VIOLATION,
            Failure::PeerDead => close::INTERNAL_ERROR,
        }
    }
}

/// Why a frame cannot be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was sent or queued: no frame may follow it.
    Closing,
    /// Another data message is being sent in fragments: a new one may
    /// start when it ends.
    MessageInProgress,
    /// A continuation frame with no fragmented message to continue.
    NoMessage,
    /// A control frame that is fragmented or carries over 125 bytes.
    InvalidControl,
    /// The operating system gave no random bytes for a masking key.
    Random(getrandom::Error),
    /// The compressor failed (permessage-deflate); the detail is logged.
    Compress,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closing => {
                f.write_str("the connection is closing: no frame may follow the close frame")
            }
            SendError::MessageInProgress => f.write_str("another message is being sent"),
            SendError::NoMessage => {
                f.write_str("a continuation frame without a message to continue")
            }
            SendError::InvalidControl => {
                f.write_str("a control frame must be final and carry at most 125 bytes")
            }
            SendError::Random(e) => write!(f, "no random bytes for a masking key: {e}"),
            SendError::Compress => f.write_str("the message could not be compressed"),
        }
    }
}

impl std::error::Error for SendError {}

/// The protocol state of one connection after its opening handshake.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    settings: Settings,
    receiver: Receiver,
    sender: Sender,
    close: CloseHandshake,
    /// Frames to write, in order.
    out: Vec<u8>,
    /// What arrived; `poll_messages` has taken the first `taken` items.
    received: Vec<Incoming>,
    taken: usize,
    /// A rule the peer broke, after the items of `received`.
    violation: Option<ProtocolError>,
    /// Bytes of pongs in `out`, not yet handed to the writer.
    pong_bytes: usize,
    /// The close frame is in `out` (not yet handed to the writer).
    close_queued: bool,
    /// The close frame was handed to the writer: nothing may follow it.
    close_transmitted: bool,
    /// The write side is to be shut down once the close frame is written.
    shutdown_due: bool,
    shutdown_done: bool,
    /// A data message is being sent in fragments.
    sending_message: bool,
    /// Why this end failed the connection.
    failed: Option<Failure>,
    close_deadline: Option<Instant>,
    last_received: Instant,
    /// The receiver's count of messages begun, when last looked at.
    messages_seen: u64,
    /// When the message being received began, if one is.
    message_since: Option<Instant>,
    /// The `last_received` at the keepalive's ping: a ping is out for it.
    pinged_for: Option<Instant>,
    /// Keepalive pings sent (their payload).
    pings: u32,
    /// The reason in the peer's close frame.
    peer_reason: Option<String>,
    ending: Option<Ending>,
    /// permessage-deflate's sending half, once agreed.
    compression: Option<Compression>,
}

/// The sending half of permessage-deflate.
#[derive(Debug)]
struct Compression {
    #[cfg_attr(not(feature = "deflate"), allow(dead_code))]
    level: u32,
    threshold: usize,
    /// Our window and whether we reset after each message.
    direction: Direction,
    /// The compressor, made at the first message to compress; dropped
    /// while the connection is quiet when nothing carries over.
    #[cfg(feature = "deflate")]
    state: Option<super::deflate::Deflater>,
    /// The compressor's memory, charged to the budget while it exists.
    charge: Charge,
    /// The compressed message, between the compressor and the queue.
    buf: Vec<u8>,
}

impl Connection {
    /// A connection whose opening handshake has just completed at `now`.
    pub fn new(role: Role, settings: Settings, now: Instant) -> Connection {
        let mut receiver = Receiver::new(role, settings.limits);
        if let Some(budget) = &settings.budget {
            receiver.set_budget(budget.clone());
        }
        Connection {
            role,
            settings,
            receiver,
            sender: Sender::new(role),
            close: CloseHandshake::default(),
            out: Vec::new(),
            received: Vec::new(),
            taken: 0,
            violation: None,
            pong_bytes: 0,
            close_queued: false,
            close_transmitted: false,
            shutdown_due: false,
            shutdown_done: false,
            sending_message: false,
            failed: None,
            close_deadline: None,
            last_received: now,
            messages_seen: 0,
            message_since: None,
            pinged_for: None,
            pings: 0,
            peer_reason: None,
            ending: None,
            compression: None,
        }
    }

    /// permessage-deflate was agreed (in the opening handshake): from now
    /// on this end compresses the messages it sends through
    /// [`send_message`](Self::send_message) that are at least
    /// `config.threshold` bytes long, at `config.level`, as `agreement`
    /// says for its role, and inflates the peer's compressed messages. The
    /// codec's state is charged to the memory budget: when the budget has
    /// no room for the compressor, messages go out uncompressed.
    pub fn set_deflate(&mut self, agreement: &Agreement, config: &DeflateConfig) {
        let (ours, peers) = agreement.directions(self.role);
        self.receiver.set_inflate(peers);
        self.compression = Some(Compression {
            level: config.level,
            threshold: config.threshold,
            direction: ours,
            #[cfg(feature = "deflate")]
            state: None,
            charge: Charge::new(self.settings.budget.clone()),
            buf: Vec::new(),
        });
    }

    /// Whether [`send_message`](Self::send_message) compresses a message
    /// of `len` bytes: permessage-deflate was agreed, the message is at
    /// least the threshold, and the agreement lets this end compress (a
    /// window of 8 bits does not: see [`deflate`](super::deflate)).
    pub fn will_compress(&self, len: usize) -> bool {
        cfg!(feature = "deflate")
            && self
                .compression
                .as_ref()
                .is_some_and(|c| len >= c.threshold && c.direction.window_bits >= 9)
    }

    /// Queues a whole data message (`OP_TEXT` or `OP_BINARY`), compressed
    /// when [`will_compress`](Self::will_compress) says so, as frames of at
    /// most `fragment` bytes of payload (at least one frame).
    pub fn send_message(
        &mut self,
        opcode: u8,
        payload: &[u8],
        fragment: usize,
    ) -> Result<(), SendError> {
        if !matches!(opcode, OP_TEXT | OP_BINARY) {
            return Err(SendError::InvalidControl);
        }
        if self.close.sent() || self.ending.is_some() {
            return Err(SendError::Closing);
        }
        if self.sending_message {
            return Err(SendError::MessageInProgress);
        }
        let fragment = fragment.max(1);
        if self.will_compress(payload.len()) {
            if let Some(compressed) = self.compress(payload)? {
                let result = self.queue_frames(opcode, &compressed, fragment, true);
                if let Some(c) = self.compression.as_mut() {
                    c.buf = compressed;
                }
                return result;
            }
        }
        self.queue_frames(opcode, payload, fragment, false)
    }

    /// Compresses a message into the compression's buffer, taken out of
    /// it; `None` when the budget has no room for the compressor.
    #[cfg(feature = "deflate")]
    fn compress(&mut self, payload: &[u8]) -> Result<Option<Vec<u8>>, SendError> {
        let Some(c) = self.compression.as_mut() else {
            return Ok(None);
        };
        if c.state.is_none() {
            let cost = super::deflate::state_cost(c.direction.window_bits, true);
            if !c.charge.set(cost) {
                log::debug!("no room in the memory budget for a compressor: sending uncompressed");
                return Ok(None);
            }
            c.state = Some(super::deflate::Deflater::new(
                c.level,
                c.direction.window_bits,
                c.direction.no_context_takeover,
            ));
        }
        let mut out = std::mem::take(&mut c.buf);
        out.clear();
        match c.state.as_mut() {
            Some(state) => state.compress(payload, &mut out).map_err(|e| {
                log::warn!("permessage-deflate: the compressor failed: {e}");
                SendError::Compress
            })?,
            None => return Ok(None),
        }
        Ok(Some(out))
    }

    #[cfg(not(feature = "deflate"))]
    fn compress(&mut self, _payload: &[u8]) -> Result<Option<Vec<u8>>, SendError> {
        Ok(None)
    }

    /// Queues one message's frames; the first has RSV1 when `compressed`.
    fn queue_frames(
        &mut self,
        opcode: u8,
        payload: &[u8],
        fragment: usize,
        compressed: bool,
    ) -> Result<(), SendError> {
        let mut pieces = payload.chunks(fragment).peekable();
        let mut op = opcode;
        let mut rsv = if compressed { 0b100 } else { 0 };
        loop {
            let piece = pieces.next().unwrap_or_default();
            let fin = pieces.peek().is_none();
            self.sender
                .frame_header_rsv(fin, rsv, op, piece.len() as u64)
                .map_err(SendError::Random)?
                .append_frame(&mut self.out, piece);
            if fin {
                return Ok(());
            }
            op = OP_CONTINUATION;
            rsv = 0;
        }
    }

    /// The permessage-deflate agreement's sending direction, when one was
    /// agreed.
    pub fn deflate_direction(&self) -> Option<Direction> {
        self.compression.as_ref().map(|c| c.direction)
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    // ------------------------------------------------------------ input

    /// Feeds bytes from the peer, received at `now`. What they complete
    /// comes out of [`poll_messages`](Self::poll_messages), in order.
    /// After a close frame or a broken rule, further bytes are ignored.
    pub fn receive(&mut self, data: &[u8], now: Instant) {
        if self.ending.is_some() {
            return;
        }
        self.last_received = now;
        if self.receiver.is_finished() {
            return; // draining until the peer closes
        }
        let result = self.receiver.receive(data, &mut self.received);
        self.note(result);
        self.track_message(now);
    }

    /// Notes when the message being received began (for the message
    /// timeout).
    fn track_message(&mut self, now: Instant) {
        let started = self.receiver.messages_started();
        if started != self.messages_seen {
            self.messages_seen = started;
            self.message_since = Some(now);
        }
        if !self.receiver.in_message() {
            self.message_since = None;
        }
    }

    /// Room at the end of the message being assembled, when at least `min`
    /// bytes of a data frame's payload are still to come: the I/O layer
    /// reads up to `max` bytes straight into it, then gives it back with
    /// [`return_room`](Self::return_room). See [`Receiver::lend_room`].
    pub fn lend_room(&mut self, min: usize, max: usize) -> Option<Room> {
        if self.ending.is_some() || self.receiver.is_finished() {
            return None;
        }
        self.receiver.lend_room(min, max)
    }

    /// Gives back a lent room of which the first `n` bytes were filled at
    /// `now`; they count exactly as if [`receive`](Self::receive) had
    /// been given them.
    pub fn return_room(&mut self, room: Room, n: usize, now: Instant) {
        if n > 0 {
            self.last_received = now;
        }
        let result = self.receiver.return_room(room, n, &mut self.received);
        if self.ending.is_some() {
            self.received.clear();
            self.taken = 0;
            return;
        }
        self.note(result);
        self.track_message(now);
    }

    fn note(&mut self, result: Result<(), ProtocolError>) {
        if let Err(violation) = result {
            self.violation.get_or_insert(violation);
        }
    }

    /// Whether [`poll_messages`](Self::poll_messages) has more to give or
    /// to act on.
    pub fn has_messages(&self) -> bool {
        self.taken < self.received.len() || self.violation.is_some()
    }

    /// Moves the text and binary messages and pongs that arrived to `out`,
    /// in order, and acts on the control frames among them: a ping is
    /// answered and a close frame is answered with the same code (frames
    /// queued for [`poll_transmit`](Self::poll_transmit)); a broken rule
    /// fails the connection with the code RFC 6455 names.
    ///
    /// It stops before a ping, a close or a broken rule that follows
    /// messages in `out`, so that what the application sends in answer to
    /// those messages goes out before the pong or the close frame: call it
    /// again, after handling `out`, while
    /// [`has_messages`](Self::has_messages) says so.
    pub fn poll_messages(&mut self, now: Instant, out: &mut Vec<Incoming>) {
        let start = out.len();
        // The common case, no control frame among what arrived: hand it all
        // over without moving the messages one by one.
        if self.taken == 0
            && out.is_empty()
            && !self
                .received
                .iter()
                .any(|m| matches!(m, Incoming::Ping(_) | Incoming::Close(_)))
        {
            std::mem::swap(out, &mut self.received);
            if !out.is_empty() {
                return;
            }
        }
        while let Some(item) = self.received.get_mut(self.taken) {
            if matches!(item, Incoming::Ping(_) | Incoming::Close(_)) && out.len() > start {
                return;
            }
            // Taken out without an allocation: an empty Vec allocates nothing.
            let item = std::mem::replace(item, Incoming::Pong(Vec::new()));
            self.taken += 1;
            match item {
                Incoming::Ping(payload) => self.queue_pong(&payload),
                Incoming::Close(parsed) => {
                    let code = parsed.as_ref().map(|(code, _)| *code);
                    if let Some((_, reason)) = parsed {
                        self.peer_reason.get_or_insert(reason);
                    }
                    self.on_close_frame(code, now);
                }
                message => out.push(message),
            }
        }
        self.received.clear();
        self.taken = 0;
        if out.len() > start {
            return;
        }
        if let Some(violation) = self.violation.take() {
            log::debug!("failing the connection: {violation}");
            self.fail(Failure::Violation(violation), now);
        }
    }

    /// Answers a ping, in its place among the frames this end sends.
    fn queue_pong(&mut self, payload: &[u8]) {
        if self.close.sent() {
            return;
        }
        if self.pong_bytes >= MAX_PENDING_PONG_BYTES {
            log::debug!("{MAX_PENDING_PONG_BYTES} bytes of pongs wait to be written: a ping is not answered");
            return;
        }
        let before = self.out.len();
        match self.sender.encode(&mut self.out, OP_PONG, payload) {
            Ok(()) => self.pong_bytes += self.out.len() - before,
            Err(e) => log::debug!("no pong: {e}"),
        }
    }

    fn on_close_frame(&mut self, code: Option<u16>, now: Instant) {
        log::debug!("close frame received: {code:?}");
        if let Some(reply) = self.close.remote_close(code) {
            self.queue_close(reply, "");
        }
        // The server closes the TCP connection first; the client waits (a
        // bounded time) for it to do so.
        if self.role == Role::Server {
            self.shutdown_due = !self.shutdown_done;
        }
        self.close_deadline
            .get_or_insert(now + self.settings.close_timeout);
    }

    /// Fails the connection: a close frame with `code`, then (a server)
    /// the end of our stream; the connection ends when the peer closes or
    /// the close timeout passes.
    fn fail(&mut self, failure: Failure, now: Instant) {
        let failure = *self.failed.get_or_insert(failure);
        let code = failure.code();
        if self.close.local_close(Some(code)) {
            let reason = match failure {
                Failure::Violation(v) => v.reason,
                Failure::IdleTimeout => "idle timeout",
                Failure::MessageTimeout => "message not finished in time",
                Failure::PeerDead => "peer did not answer pings",
            };
            self.queue_close(Some(code), reason);
        }
        if self.role == Role::Server {
            self.shutdown_due = !self.shutdown_done;
        }
        self.close_deadline
            .get_or_insert(now + self.settings.close_timeout);
    }

    fn queue_close(&mut self, code: Option<u16>, reason: &str) {
        let payload = close::build_payload(code, reason);
        match self.sender.encode(&mut self.out, OP_CLOSE, &payload) {
            Ok(()) => self.close_queued = true,
            Err(e) => {
                // Without a masking key no frame can be sent: end at once.
                log::debug!("no close frame: {e}");
                self.ending.get_or_insert(Ending::Broken);
            }
        }
    }

    /// The peer ended its stream (a read returned 0).
    pub fn receive_eof(&mut self) {
        self.end_stream(Ending::Dropped);
    }

    /// Reading or writing failed (the stream is unusable).
    pub fn stream_failed(&mut self) {
        self.end_stream(Ending::Broken);
    }

    /// The stream is over: the connection ended as it was failed, or closed
    /// if a close frame went either way, else as `otherwise` says.
    fn end_stream(&mut self, otherwise: Ending) {
        if self.ending.is_some() {
            return;
        }
        self.ending = Some(match self.failed {
            Some(failure) => Ending::Failed(failure.code()),
            None if self.close.received() || self.close.sent() => Ending::Closed,
            None => otherwise,
        });
    }

    // ------------------------------------------------------------ timers

    /// When [`handle_timeout`](Self::handle_timeout) is due if nothing
    /// arrives before: the end of the closing handshake's wait, or of the
    /// idle timeout. `None` when no timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ending.is_some() {
            return None;
        }
        if let Some(d) = self.close_deadline {
            return Some(d);
        }
        let idle = self
            .settings
            .idle_timeout
            .map(|idle| self.last_received + idle);
        let message = self.message_deadline();
        [idle, message, self.keepalive_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the keepalive acts next: the ping, or, a ping out, the end.
    fn keepalive_deadline(&self) -> Option<Instant> {
        let k = self.settings.keepalive?;
        if self.close.sent() {
            return None;
        }
        Some(if self.pinged_for == Some(self.last_received) {
            self.last_received + k.interval + k.timeout
        } else {
            self.last_received + k.interval
        })
    }

    /// Leaves `paused` out of the idle and message timeouts: the time the
    /// application kept the connection from reading (a full event queue),
    /// during which the peer could not be heard. The closing handshake's
    /// wait is not extended.
    pub fn shift_timers(&mut self, paused: Duration) {
        self.last_received += paused;
        if let Some(since) = &mut self.message_since {
            *since += paused;
        }
    }

    /// When the message being received must have ended.
    fn message_deadline(&self) -> Option<Instant> {
        Some(self.message_since? + self.settings.message_timeout?)
    }

    /// Acts on the timers at `now`: after the close timeout the connection
    /// ends; after the idle timeout it is failed with 1001, after the
    /// message timeout with 1008.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ending.is_some() {
            return;
        }
        if let Some(d) = self.close_deadline {
            if now >= d {
                log::debug!("the peer did not finish the closing handshake in time");
                self.ending = Some(
                    self.failed
                        .map_or(Ending::Closed, |f| Ending::Failed(f.code())),
                );
            }
            return;
        }
        if self.message_deadline().is_some_and(|d| now >= d) {
            log::debug!("a message did not end within the message timeout: failing");
            self.fail(Failure::MessageTimeout, now);
            return;
        }
        if let Some(idle) = self.settings.idle_timeout {
            if now >= self.last_received + idle {
                log::debug!("idle for {idle:?}: closing");
                self.fail(Failure::IdleTimeout, now);
                return;
            }
        }
        if let Some(k) = self.settings.keepalive {
            if self.close.sent() {
                return;
            }
            let silent = now.saturating_duration_since(self.last_received);
            if silent >= k.interval + k.timeout && self.pinged_for == Some(self.last_received) {
                log::debug!("nothing from the peer for {silent:?}, a ping unanswered: it is dead");
                self.peer_dead();
            } else if silent >= k.interval && self.pinged_for != Some(self.last_received) {
                self.pings = self.pings.wrapping_add(1);
                match self
                    .sender
                    .encode(&mut self.out, OP_PING, &self.pings.to_be_bytes())
                {
                    Ok(()) => self.pinged_for = Some(self.last_received),
                    Err(e) => log::debug!("no keepalive ping: {e}"),
                }
            }
        }
    }

    /// The peer did not answer the keepalive: a close frame (1011) for the
    /// writer to send if it can at once, and the end, without waiting for
    /// the peer's answer.
    fn peer_dead(&mut self) {
        let failure = *self.failed.get_or_insert(Failure::PeerDead);
        if self.close.local_close(Some(failure.code())) {
            self.queue_close(Some(failure.code()), "peer did not answer pings");
        }
        self.ending.get_or_insert(Ending::Failed(failure.code()));
    }

    // ------------------------------------------------------------ output

    /// Starts the closing handshake with `code` (none: an empty close
    /// frame) at `now`. Returns false when a close frame was already sent.
    /// The connection ends when the peer's answer completes the handshake,
    /// or when the close timeout passes.
    pub fn close(&mut self, code: Option<u16>, reason: &str, now: Instant) -> bool {
        if self.ending.is_some() || !self.close.local_close(code) {
            return false;
        }
        self.queue_close(code, reason);
        if self.role == Role::Server && self.close.received() {
            self.shutdown_due = !self.shutdown_done;
        }
        self.close_deadline
            .get_or_insert(now + self.settings.close_timeout);
        true
    }

    /// Gives back the memory that earlier traffic grew and that an idle
    /// connection does not need: the buffers kept to carry later messages,
    /// and the queues' spare capacity. For a connection that has gone
    /// quiet.
    pub fn release_buffers(&mut self) {
        self.receiver.release_spares();
        if let Some(c) = self.compression.as_mut() {
            c.buf = Vec::new();
            // A compressor that carries nothing over is made again for the
            // next message.
            if c.direction.no_context_takeover {
                #[cfg(feature = "deflate")]
                {
                    c.state = None;
                }
                c.charge.set(0);
            }
        }
        if self.out.is_empty() {
            self.out = Vec::new();
        }
        if self.taken >= self.received.len() {
            self.received = Vec::new();
            self.taken = 0;
        }
    }

    /// Whether the peer is between messages: no message, no frame is
    /// partly received.
    pub fn receiver_is_idle(&self) -> bool {
        self.receiver.is_idle()
    }

    /// Whether a close frame was sent or queued: no frame may follow.
    pub fn close_sent(&self) -> bool {
        self.close.sent()
    }

    /// Whether a data message is being sent in fragments.
    pub fn sending_message(&self) -> bool {
        self.sending_message
    }

    /// Queues a whole frame: a data frame (`OP_TEXT` or `OP_BINARY` to
    /// begin a message, `OP_CONTINUATION` to go on with it, `fin` on its
    /// last frame), or a control frame (`OP_PING`, `OP_PONG`), which may go
    /// between the fragments of a message.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8], fin: bool) -> Result<(), SendError> {
        self.frame_header(opcode, payload.len() as u64, fin)?
            .append_frame(&mut self.out, payload);
        Ok(())
    }

    /// The header of a frame whose payload the caller writes itself, right
    /// after the bytes it takes with [`poll_transmit`](Self::poll_transmit)
    /// and before it takes any more (the same rules as
    /// [`send_frame`](Self::send_frame)). A client must mask the payload
    /// with the header's key.
    pub fn frame_header(
        &mut self,
        opcode: u8,
        len: u64,
        fin: bool,
    ) -> Result<OutgoingHeader, SendError> {
        if self.close.sent() || self.ending.is_some() {
            return Err(SendError::Closing);
        }
        match opcode {
            OP_PING | OP_PONG => {
                if !fin || len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(SendError::InvalidControl);
                }
            }
            OP_TEXT | OP_BINARY if self.sending_message => {
                return Err(SendError::MessageInProgress)
            }
            OP_CONTINUATION if !self.sending_message => return Err(SendError::NoMessage),
            OP_TEXT | OP_BINARY | OP_CONTINUATION => {}
            _ => return Err(SendError::InvalidControl),
        }
        let h = self
            .sender
            .frame_header(fin, opcode, len)
            .map_err(SendError::Random)?;
        if opcode != OP_PING && opcode != OP_PONG {
            self.sending_message = !fin;
        }
        Ok(h)
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) has something to give.
    pub fn has_transmit(&self) -> bool {
        !self.out.is_empty() || self.shutdown_ready()
    }

    /// How many bytes wait in the queue.
    pub fn queued_len(&self) -> usize {
        self.out.len()
    }

    fn shutdown_ready(&self) -> bool {
        self.shutdown_due && (self.close_queued || self.close_transmitted)
    }

    /// Appends the queued frames to `buf`, in order. Returns true when the write side is to be shut
    /// down once they are written (a TLS close_notify, then a TCP FIN):
    /// the server does so after its close frame.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        self.pong_bytes = 0;
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.out);
        } else {
            buf.extend_from_slice(&self.out);
            self.out.clear();
        }
        if self.close_queued {
            self.close_queued = false;
            self.close_transmitted = true;
        }
        if self.shutdown_ready() {
            self.shutdown_due = false;
            self.shutdown_done = true;
            return true;
        }
        false
    }

    // ------------------------------------------------------------ the end

    /// How the connection ended, once it has: the I/O layer then closes
    /// the socket.
    pub fn ending(&self) -> Option<Ending> {
        self.ending
    }

    /// The reason the peer's close frame gave, once one arrived ("" for
    /// none).
    pub fn peer_close_reason(&self) -> &str {
        self.peer_reason.as_deref().unwrap_or("")
    }

    /// Why this end failed the connection (the reason of an
    /// [`Ending::Failed`]), once it has.
    pub fn failure(&self) -> Option<Failure> {
        self.failed
    }

    /// The close reason code for `ending` (AS3's `closeReason`): the code
    /// this end failed the connection with; else the peer's close code
    /// (1005 when its frame had none); else the code this end sent; 1006
    /// when the stream ended with no close frame received.
    pub fn close_reason(&self, ending: Ending) -> u16 {
        match ending {
            Ending::Failed(code) => code,
            Ending::Closed => self.close.reason().unwrap_or(close::ABNORMAL),
            Ending::Dropped | Ending::Broken => {
                // A close frame we received still counts, whatever came after.
                if self.close.received() {
                    self.close.reason().unwrap_or(close::ABNORMAL)
                } else {
                    close::ABNORMAL
                }
            }
        }
    }

    /// Gives back the buffer of a delivered message, for a later one to
    /// reuse (see [`Receiver::recycle`]).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.receiver.recycle(buf);
    }
}
