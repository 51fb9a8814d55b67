//! The connection state machine (`airws::proto::connection`) over its public
//! API: a client and a server wired to each other in memory, on a simulated
//! clock, and one test per rule the machine enforces.
//!
//! Nothing here sleeps or reads the clock, except once per test for the
//! base instant every simulated time is an offset from.

use airws::proto::budget::MemoryBudget;
use airws::proto::connection::{Connection, Ending, Failure, Keepalive, SendError, Settings};
use airws::proto::frame::{OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use airws::proto::receiver::{Incoming, Limits};
use airws::proto::Role;
use std::time::{Duration, Instant};

const LIMITS: Limits = Limits {
    max_frame_size: 1 << 20,
    max_message_size: 4 << 20,
};
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The masking key of the frames the tests write as a client.
const KEY: [u8; 4] = [0x3A, 0x91, 0x0C, 0xE7];
/// The bound of every loop that waits for the machines to settle.
const MAX_STEPS: usize = 1000;

fn settings() -> Settings {
    Settings {
        limits: LIMITS,
        close_timeout: CLOSE_TIMEOUT,
        idle_timeout: None,
        message_timeout: None,
        budget: None,
        keepalive: None,
    }
}

fn text(s: &str) -> Incoming {
    Incoming::Text(s.to_owned())
}

fn binary(b: &[u8]) -> Incoming {
    Incoming::Binary(b.to_vec())
}

fn pong(b: &[u8]) -> Incoming {
    Incoming::Pong(b.to_vec())
}

// ------------------------------------------------------------------ frames

/// Encodes a frame in the shortest length form, masked with `mask` if any.
fn encode(fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(bit | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A frame as a server sends it: unmasked.
fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode(fin, opcode, None, payload)
}

/// A frame as a client sends it: masked.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode(fin, opcode, Some(KEY), payload)
}

/// A frame as the peer of an end with role `receiver` sends it.
fn frame_to(receiver: Role, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    match receiver {
        Role::Server => client_frame(fin, opcode, payload),
        Role::Client => server_frame(fin, opcode, payload),
    }
}

/// A close frame's payload: the code in network byte order, then the reason.
fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(reason.as_bytes());
    out
}

/// A frame as it appears on the wire, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn new(fin: bool, opcode: u8, payload: &[u8]) -> Frame {
        Frame {
            fin,
            opcode,
            payload: payload.to_vec(),
        }
    }

    fn close(code: u16, reason: &str) -> Frame {
        Frame::new(true, OP_CLOSE, &close_payload(code, reason))
    }

    /// The code of a close frame (`None`: an empty close frame).
    fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, OP_CLOSE, "not a close frame: {self:?}");
        match self.payload.len() {
            0 => None,
            1 => panic!("a close frame with a 1-byte payload"),
            _ => Some(u16::from_be_bytes([self.payload[0], self.payload[1]])),
        }
    }
}

/// The frames an end with role `sender` wrote, in order. Checks the
/// masking rule (a client masks every frame, a server none) and that no
/// reserved bit is set; a client's payloads come out unmasked.
fn frames(sender: Role, wire: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let rest = &wire[at..];
        assert!(rest.len() >= 2, "a truncated frame header at {at}");
        let (b0, b1) = (rest[0], rest[1]);
        assert_eq!(b0 & 0x70, 0, "reserved bits set at {at}");
        let masked = b1 & 0x80 != 0;
        assert_eq!(
            masked,
            sender == Role::Client,
            "mask bit of a {sender:?} frame at {at}"
        );
        let (len, mut pos) = match b1 & 0x7F {
            126 => {
                assert!(rest.len() >= 4, "a truncated frame header at {at}");
                (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4)
            }
            127 => {
                assert!(rest.len() >= 10, "a truncated frame header at {at}");
                let mut b = [0u8; 8];
                b.copy_from_slice(&rest[2..10]);
                (usize::try_from(u64::from_be_bytes(b)).unwrap(), 10)
            }
            n => (usize::from(n), 2),
        };
        let key = if masked {
            assert!(rest.len() >= pos + 4, "a truncated masking key at {at}");
            let k = [rest[pos], rest[pos + 1], rest[pos + 2], rest[pos + 3]];
            pos += 4;
            Some(k)
        } else {
            None
        };
        assert!(rest.len() >= pos + len, "a truncated payload at {at}");
        let mut payload = rest[pos..pos + len].to_vec();
        if let Some(k) = key {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        frames.push(Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0F,
            payload,
        });
        at += pos + len;
    }
    frames
}

// ------------------------------------------------------------------ harness

/// A simulated clock: a base instant and an offset advanced by hand.
#[derive(Debug, Clone, Copy)]
struct Clock {
    base: Instant,
    offset: Duration,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            base: Instant::now(),
            offset: Duration::ZERO,
        }
    }

    fn now(&self) -> Instant {
        self.base + self.offset
    }

    fn advance(&mut self, by: Duration) {
        self.offset += by;
    }
}

/// How the bytes the peer sent are handed to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// All that is in flight in one `receive` call.
    Whole,
    /// In `receive` calls of at most this many bytes.
    Pieces(usize),
    /// Straight into the message being assembled (`lend_room`, then
    /// `return_room` with at most `fill` bytes) whenever the connection
    /// lends a room for `min`..`max` bytes; else in `receive` calls of at
    /// most `read` bytes.
    Direct {
        min: usize,
        max: usize,
        read: usize,
        fill: usize,
    },
}

/// One end: its connection, what it handed out, and its outgoing stream.
#[derive(Debug)]
struct Side {
    conn: Connection,
    /// The messages `poll_messages` handed out, in order.
    inbox: Vec<Incoming>,
    /// Every byte `poll_transmit` gave, in order.
    sent: Vec<u8>,
    /// Each `poll_transmit` call: how many bytes it gave, and its shutdown flag.
    transmits: Vec<(usize, bool)>,
    /// Bytes given by `poll_transmit`, not yet delivered to the peer.
    in_flight: Vec<u8>,
    /// This end's stream has ended (its write side was shut down, or its
    /// socket closed when the connection ended): the peer gets its end of
    /// the stream once the bytes before it are delivered.
    write_closed: bool,
    eof_delivered: bool,
    /// This end's stream never ends: its shutdown and its ending are not
    /// passed on (a peer that never closes TCP).
    never_closes: bool,
    /// How the peer's bytes are delivered to this end.
    delivery: Delivery,
    /// How many bytes went in through lent rooms.
    direct_bytes: usize,
}

impl Side {
    fn new(role: Role, settings: Settings, now: Instant) -> Side {
        Side {
            conn: Connection::new(role, settings, now),
            inbox: Vec::new(),
            sent: Vec::new(),
            transmits: Vec::new(),
            in_flight: Vec::new(),
            write_closed: false,
            eof_delivered: false,
            never_closes: false,
            delivery: Delivery::Whole,
            direct_bytes: 0,
        }
    }

    fn role(&self) -> Role {
        self.conn.role()
    }

    /// Takes the messages (and acts on the control frames) that arrived.
    fn collect(&mut self, now: Instant) -> bool {
        let mut calls = 0;
        while self.conn.has_messages() {
            calls += 1;
            assert!(calls <= MAX_STEPS, "has_messages() stays true");
            self.conn.poll_messages(now, &mut self.inbox);
        }
        calls > 0
    }

    /// Takes what the connection wants to send; ends the stream after a
    /// shutdown, or once the connection has ended (the I/O layer then
    /// closes the socket).
    fn transmit(&mut self) -> bool {
        if self.write_closed {
            return false;
        }
        let mut moved = false;
        if self.conn.has_transmit() {
            let mut buf = Vec::new();
            let shutdown = self.conn.poll_transmit(&mut buf);
            self.transmits.push((buf.len(), shutdown));
            self.sent.extend_from_slice(&buf);
            self.in_flight.extend_from_slice(&buf);
            self.write_closed = shutdown && !self.never_closes;
            moved = true;
        }
        if self.conn.ending().is_some() && !self.never_closes && !self.write_closed {
            self.write_closed = true;
            moved = true;
        }
        moved
    }

    /// How many times `poll_transmit` asked for the write side to be shut down.
    fn shutdowns(&self) -> usize {
        self.transmits.iter().filter(|(_, shut)| *shut).count()
    }

    /// The frames this end sent.
    fn sent_frames(&self) -> Vec<Frame> {
        frames(self.role(), &self.sent)
    }

    /// Hands `data` from the peer to the connection as `delivery` says,
    /// taking the messages after each call.
    fn feed(&mut self, data: &[u8], now: Instant) {
        match self.delivery {
            Delivery::Whole => {
                self.conn.receive(data, now);
                self.collect(now);
            }
            Delivery::Pieces(n) => {
                for piece in data.chunks(n.max(1)) {
                    self.conn.receive(piece, now);
                    self.collect(now);
                }
            }
            Delivery::Direct {
                min,
                max,
                read,
                fill,
            } => {
                let mut rest = data;
                // Every pass takes at least one byte.
                while !rest.is_empty() {
                    let n = match self.conn.lend_room(min, max) {
                        Some(mut room) => {
                            let space = room.bytes();
                            let n = space.len().min(fill).min(rest.len());
                            space[..n].copy_from_slice(&rest[..n]);
                            self.conn.return_room(room, n, now);
                            self.direct_bytes += n;
                            n
                        }
                        None => {
                            let n = read.min(rest.len());
                            self.conn.receive(&rest[..n], now);
                            n
                        }
                    };
                    assert!(n > 0, "a delivery that takes nothing");
                    rest = &rest[n..];
                    self.collect(now);
                }
            }
        }
    }
}

/// A client and a server wired to each other in memory.
#[derive(Debug)]
struct Pair {
    clock: Clock,
    client: Side,
    server: Side,
}

impl Pair {
    fn new() -> Pair {
        Pair::with(settings())
    }

    /// The end that plays `role`.
    fn end(&mut self, role: Role) -> &mut Side {
        match role {
            Role::Client => &mut self.client,
            Role::Server => &mut self.server,
        }
    }

    fn with(settings: Settings) -> Pair {
        let clock = Clock::new();
        let now = clock.now();
        Pair {
            clock,
            client: Side::new(Role::Client, settings.clone(), now),
            server: Side::new(Role::Server, settings, now),
        }
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Moves what each end sends to the other (the client's first), and
    /// takes each end's messages. Returns whether anything moved.
    fn step(&mut self) -> bool {
        let now = self.clock.now();
        let a = Pair::carry(&mut self.client, &mut self.server, now);
        let b = Pair::carry(&mut self.server, &mut self.client, now);
        a | b
    }

    fn carry(src: &mut Side, dst: &mut Side, now: Instant) -> bool {
        let mut moved = src.collect(now);
        moved |= src.transmit();
        if !src.in_flight.is_empty() {
            let data = std::mem::take(&mut src.in_flight);
            dst.feed(&data, now);
            moved = true;
        }
        if src.write_closed && !src.eof_delivered {
            src.eof_delivered = true;
            dst.conn.receive_eof();
            dst.collect(now);
            moved = true;
        }
        moved
    }

    /// Steps until nothing moves.
    fn drive(&mut self) {
        for _ in 0..MAX_STEPS {
            if !self.step() {
                return;
            }
        }
        panic!("still moving after {MAX_STEPS} steps");
    }

    /// Both endings and close reasons: (client, server).
    fn endings(&self) -> (Option<Ending>, Option<Ending>) {
        (self.client.conn.ending(), self.server.conn.ending())
    }

    fn reasons(&self) -> (u16, u16) {
        let c = self.client.conn.ending().expect("the client has not ended");
        let s = self.server.conn.ending().expect("the server has not ended");
        (
            self.client.conn.close_reason(c),
            self.server.conn.close_reason(s),
        )
    }
}

/// A connection on its own, fed by hand.
fn lone(role: Role, settings: Settings) -> (Clock, Side) {
    let clock = Clock::new();
    let side = Side::new(role, settings, clock.now());
    (clock, side)
}

// ------------------------------------------------------------------ pings

#[test]
fn a_ping_from_either_side_is_answered_with_a_pong_carrying_its_payload() {
    let mut p = Pair::new();
    let long = [0x5A; 125];
    for payload in [&b"from the client"[..], b"", &long] {
        p.client.conn.send_frame(OP_PING, payload, true).unwrap();
    }
    p.drive();
    // The server answered by itself, unmasked: 0x8A, the length, the payload.
    let mut expected = vec![0x8A, 15];
    expected.extend_from_slice(b"from the client");
    expected.extend_from_slice(&[0x8A, 0]);
    expected.extend_from_slice(&[0x8A, 125]);
    expected.extend_from_slice(&long);
    assert_eq!(p.server.sent, expected);
    assert!(
        p.server.inbox.is_empty(),
        "pings are not for the application"
    );
    assert_eq!(
        p.client.inbox,
        [pong(b"from the client"), pong(b""), pong(&long)]
    );

    p.server
        .conn
        .send_frame(OP_PING, b"from the server", true)
        .unwrap();
    p.drive();
    assert_eq!(
        p.client.sent_frames(),
        [
            Frame::new(true, OP_PING, b"from the client"),
            Frame::new(true, OP_PING, b""),
            Frame::new(true, OP_PING, &long),
            Frame::new(true, OP_PONG, b"from the server"),
        ]
    );
    assert_eq!(p.server.inbox, [pong(b"from the server")]);
    assert_eq!(p.endings(), (None, None));
}

#[test]
fn the_pong_keeps_its_place_among_the_applications_replies() {
    for role in [Role::Server, Role::Client] {
        let (clock, mut side) = lone(role, settings());
        let now = clock.now();
        let conn = &mut side.conn;
        let mut wire = frame_to(role, true, OP_TEXT, b"question");
        wire.extend(frame_to(role, true, OP_PING, b"p1"));
        wire.extend(frame_to(role, true, OP_TEXT, b"second"));
        wire.extend(frame_to(role, true, OP_PING, b"p2"));
        conn.receive(&wire, now);

        let mut got = Vec::new();
        conn.poll_messages(now, &mut got);
        assert_eq!(got, [text("question")], "{role:?}");
        assert_eq!(
            conn.queued_len(),
            0,
            "{role:?}: the pong waits for the next call"
        );
        assert!(conn.has_messages(), "{role:?}");
        conn.send_frame(OP_TEXT, b"answer 1", true).unwrap();

        got.clear();
        conn.poll_messages(now, &mut got);
        assert_eq!(got, [text("second")], "{role:?}");
        conn.send_frame(OP_TEXT, b"answer 2", true).unwrap();

        got.clear();
        conn.poll_messages(now, &mut got);
        assert!(got.is_empty(), "{role:?}");
        assert!(!conn.has_messages(), "{role:?}");

        let mut out = Vec::new();
        assert!(!conn.poll_transmit(&mut out), "{role:?}");
        assert_eq!(
            frames(role, &out),
            [
                Frame::new(true, OP_TEXT, b"answer 1"),
                Frame::new(true, OP_PONG, b"p1"),
                Frame::new(true, OP_TEXT, b"answer 2"),
                Frame::new(true, OP_PONG, b"p2"),
            ],
            "{role:?}"
        );
        if role == Role::Server {
            let mut expected = server_frame(true, OP_TEXT, b"answer 1");
            expected.extend([0x8A, 2, b'p', b'1']);
            expected.extend(server_frame(true, OP_TEXT, b"answer 2"));
            expected.extend([0x8A, 2, b'p', b'2']);
            assert_eq!(out, expected);
        }
    }
}

#[test]
fn the_answer_to_a_close_follows_the_applications_replies() {
    for role in [Role::Server, Role::Client] {
        let (clock, mut side) = lone(role, settings());
        let now = clock.now();
        let conn = &mut side.conn;
        let mut wire = frame_to(role, true, OP_TEXT, b"last question");
        wire.extend(frame_to(role, true, OP_CLOSE, &close_payload(4000, "bye")));
        conn.receive(&wire, now);
        let mut got = Vec::new();
        conn.poll_messages(now, &mut got);
        assert_eq!(got, [text("last question")], "{role:?}");
        assert_eq!(
            conn.queued_len(),
            0,
            "{role:?}: the close is not answered yet"
        );
        assert!(!conn.close_sent(), "{role:?}");
        conn.send_frame(OP_TEXT, b"last answer", true).unwrap();
        got.clear();
        conn.poll_messages(now, &mut got);
        assert!(got.is_empty() && !conn.has_messages(), "{role:?}");
        assert!(conn.close_sent(), "{role:?}");
        let mut out = Vec::new();
        assert_eq!(conn.poll_transmit(&mut out), role == Role::Server);
        assert_eq!(
            frames(role, &out),
            [
                Frame::new(true, OP_TEXT, b"last answer"),
                Frame::close(4000, ""),
            ],
            "{role:?}"
        );
        conn.receive_eof();
        assert_eq!(conn.ending(), Some(Ending::Closed), "{role:?}");
        assert_eq!(conn.close_reason(Ending::Closed), 4000, "{role:?}");
    }
}

#[test]
fn a_ping_flood_with_nothing_written_keeps_the_queued_pongs_bounded() {
    const BOUND: usize = 64 << 10;
    const PINGS: usize = 2000;
    for role in [Role::Server, Role::Client] {
        // A pong carrying 125 bytes: a 2-byte header, plus a key from a client.
        let pong_len = if role == Role::Server { 127 } else { 131 };
        let ping = frame_to(role, true, OP_PING, &[0x55; 125]);

        // All the pings in one read.
        let (clock, mut side) = lone(role, settings());
        let now = clock.now();
        side.feed(&ping.repeat(PINGS), now);
        let queued = side.conn.queued_len();
        assert!(
            queued <= BOUND + pong_len,
            "{role:?}: {queued} bytes of pongs queued"
        );
        assert!(queued >= BOUND, "{role:?}: only {queued} bytes of pongs");
        assert_eq!(queued % pong_len, 0, "{role:?}: whole pongs only");

        // Written, the queue takes pongs again.
        let mut out = Vec::new();
        side.conn.poll_transmit(&mut out);
        assert_eq!(out.len(), queued);
        assert!(frames(role, &out)
            .iter()
            .all(|f| *f == Frame::new(true, OP_PONG, &[0x55; 125])));
        side.feed(&ping, now);
        assert_eq!(side.conn.queued_len(), pong_len, "{role:?}");

        // One ping per read, answered in turn: the same bound.
        let (clock, mut side) = lone(role, settings());
        let now = clock.now();
        for _ in 0..PINGS {
            side.feed(&ping, now);
            assert!(side.conn.queued_len() <= BOUND + pong_len, "{role:?}");
        }
        assert!(side.conn.queued_len() >= BOUND, "{role:?}");
        assert_eq!(side.conn.ending(), None, "{role:?}");
    }
}

// ------------------------------------------------------------------ closing

#[test]
fn a_close_is_answered_with_the_same_code() {
    // The client closes.
    let mut p = Pair::new();
    let now = p.now();
    assert!(p.client.conn.close(Some(4000), "bye", now));
    p.drive();
    assert_eq!(p.client.sent_frames(), [Frame::close(4000, "bye")]);
    assert_eq!(p.server.sent, [0x88, 2, 0x0F, 0xA0]);
    assert_eq!(p.endings(), (Some(Ending::Closed), Some(Ending::Closed)));
    assert_eq!(p.reasons(), (4000, 4000));
    assert!(p.client.inbox.is_empty() && p.server.inbox.is_empty());

    // The server closes.
    let mut p = Pair::new();
    let now = p.now();
    assert!(p.server.conn.close(Some(4000), "bye", now));
    p.drive();
    let mut expected = vec![0x88, 5, 0x0F, 0xA0];
    expected.extend_from_slice(b"bye");
    assert_eq!(p.server.sent, expected);
    assert_eq!(p.client.sent_frames(), [Frame::close(4000, "")]);
    assert_eq!(p.endings(), (Some(Ending::Closed), Some(Ending::Closed)));
    assert_eq!(p.reasons(), (4000, 4000));
}

#[test]
fn the_answered_side_cannot_close_or_send_again() {
    let mut p = Pair::new();
    let now = p.now();
    assert!(p.client.conn.close(Some(4000), "bye", now));
    p.step();
    // The server has answered: its own close() finds the handshake done.
    assert!(p.server.conn.close_sent());
    assert!(!p.server.conn.close(Some(1000), "", now));
    assert_eq!(
        p.server.conn.send_frame(OP_TEXT, b"late", true),
        Err(SendError::Closing)
    );
    assert!(!p.client.conn.close(Some(1000), "", now));
    p.drive();
    assert_eq!(p.server.sent, [0x88, 2, 0x0F, 0xA0]);
    assert_eq!(p.reasons(), (4000, 4000));
}

#[test]
fn a_close_without_a_code_is_answered_with_an_empty_close() {
    for closer in [Role::Client, Role::Server] {
        let mut p = Pair::new();
        let now = p.now();
        let closing = p.end(closer);
        assert!(closing.conn.close(None, "", now));
        p.drive();
        let empty = Frame::new(true, OP_CLOSE, b"");
        assert_eq!(p.client.sent_frames(), [empty], "{closer:?}");
        assert_eq!(p.server.sent, [0x88, 0], "{closer:?}");
        assert_eq!(
            p.endings(),
            (Some(Ending::Closed), Some(Ending::Closed)),
            "{closer:?}"
        );
        assert_eq!(p.reasons(), (1005, 1005), "{closer:?}");
    }
}

#[test]
fn a_simultaneous_close_completes_without_echoes() {
    let mut p = Pair::new();
    let now = p.now();
    assert!(p.client.conn.close(Some(4001), "c", now));
    assert!(p.server.conn.close(Some(4002), "s", now));
    p.drive();
    assert_eq!(p.client.sent_frames(), [Frame::close(4001, "c")]);
    assert_eq!(p.server.sent_frames(), [Frame::close(4002, "s")]);
    assert_eq!((p.client.shutdowns(), p.server.shutdowns()), (0, 1));
    assert_eq!(p.endings(), (Some(Ending::Closed), Some(Ending::Closed)));
    // Each reports the code the peer sent.
    assert_eq!(p.reasons(), (4002, 4001));
}

#[test]
fn the_server_closes_tcp_first() {
    // The client starts the closing handshake.
    let clock = Clock::new();
    let now = clock.now();
    let mut client = Connection::new(Role::Client, settings(), now);
    let mut server = Connection::new(Role::Server, settings(), now);
    let mut got = Vec::new();
    assert!(client.close(Some(1000), "", now));
    let mut wire = Vec::new();
    assert!(
        !client.poll_transmit(&mut wire),
        "a client never shuts down first"
    );
    server.receive(&wire, now);
    server.poll_messages(now, &mut got);
    assert!(!server.has_messages());
    let mut reply = Vec::new();
    assert!(
        server.poll_transmit(&mut reply),
        "the server shuts its write side down after its answer"
    );
    assert_eq!(reply, [0x88, 2, 0x03, 0xE8]);
    assert_eq!(
        server.ending(),
        None,
        "the server waits for the client's EOF"
    );
    client.receive(&reply, now);
    client.poll_messages(now, &mut got);
    assert_eq!(
        client.ending(),
        None,
        "the client waits for the server's EOF"
    );
    let mut nothing = Vec::new();
    assert!(!client.has_transmit());
    assert!(!client.poll_transmit(&mut nothing));
    assert!(nothing.is_empty());
    client.receive_eof();
    assert_eq!(client.ending(), Some(Ending::Closed));
    assert_eq!(server.ending(), None);
    server.receive_eof();
    assert_eq!(server.ending(), Some(Ending::Closed));
    assert!(got.is_empty());

    // The server starts it: it shuts down once the client has answered.
    let mut p = Pair::new();
    let now = p.now();
    assert!(p.server.conn.close(Some(1000), "", now));
    let mut first = Vec::new();
    assert!(
        !p.server.conn.poll_transmit(&mut first),
        "the server waits for the client's close frame before shutting down"
    );
    assert_eq!(first, [0x88, 2, 0x03, 0xE8]);
    p.client.feed(&first, now);
    assert_eq!(p.client.conn.ending(), None);
    p.drive();
    assert_eq!(p.server.transmits, [(0, true)]);
    assert_eq!(p.client.shutdowns(), 0);
    assert_eq!(p.client.sent_frames(), [Frame::close(1000, "")]);
    assert_eq!(p.endings(), (Some(Ending::Closed), Some(Ending::Closed)));
    assert_eq!(p.reasons(), (1000, 1000));
}

#[test]
fn the_client_waits_close_timeout_for_the_servers_eof_then_ends() {
    let mut p = Pair::new();
    p.server.never_closes = true;
    assert_eq!(
        p.client.conn.poll_timeout(),
        None,
        "no timer before the close"
    );
    p.clock.advance(Duration::from_secs(3));
    let start = p.now();
    assert!(p.client.conn.close(Some(1000), "", start));
    let deadline = start + CLOSE_TIMEOUT;
    assert_eq!(p.client.conn.poll_timeout(), Some(deadline));

    // The server's answer a second later does not move the deadline.
    p.clock.advance(Duration::from_secs(1));
    p.drive();
    assert_eq!(p.client.sent_frames(), [Frame::close(1000, "")]);
    assert_eq!(p.server.sent, [0x88, 2, 0x03, 0xE8]);
    assert_eq!(p.server.shutdowns(), 1, "asked for, but never done");
    assert_eq!(p.endings(), (None, None));
    assert_eq!(p.client.conn.poll_timeout(), Some(deadline));
    assert_eq!(
        p.server.conn.poll_timeout(),
        Some(start + Duration::from_secs(1) + CLOSE_TIMEOUT)
    );

    p.client
        .conn
        .handle_timeout(deadline - Duration::from_nanos(1));
    assert_eq!(p.client.conn.ending(), None);
    assert_eq!(p.client.conn.poll_timeout(), Some(deadline));
    p.client.conn.handle_timeout(deadline);
    assert_eq!(p.client.conn.ending(), Some(Ending::Closed));
    assert_eq!(p.client.conn.close_reason(Ending::Closed), 1000);
    assert_eq!(p.client.conn.poll_timeout(), None);

    // The client's socket closes: the server sees its EOF.
    p.drive();
    assert_eq!(p.server.conn.ending(), Some(Ending::Closed));
    assert_eq!(p.reasons(), (1000, 1000));
}

#[test]
fn a_close_unanswered_ends_after_close_timeout() {
    for role in [Role::Server, Role::Client] {
        let (mut clock, mut side) = lone(role, settings());
        clock.advance(Duration::from_millis(250));
        let start = clock.now();
        assert!(side.conn.close(Some(4000), "", start));
        assert!(side.transmit());
        assert_eq!(side.sent_frames(), [Frame::close(4000, "")], "{role:?}");
        assert_eq!(
            side.shutdowns(),
            0,
            "{role:?}: no shutdown before the answer"
        );
        let deadline = start + CLOSE_TIMEOUT;
        assert_eq!(side.conn.poll_timeout(), Some(deadline), "{role:?}");
        // The peer goes on sending messages; they do not move the deadline.
        clock.advance(Duration::from_secs(2));
        side.feed(&frame_to(role, true, OP_TEXT, b"unaware"), clock.now());
        assert_eq!(side.inbox, [text("unaware")], "{role:?}");
        assert_eq!(side.conn.poll_timeout(), Some(deadline), "{role:?}");
        side.conn.handle_timeout(deadline - Duration::from_nanos(1));
        assert_eq!(side.conn.ending(), None, "{role:?}");
        side.conn.handle_timeout(deadline);
        assert_eq!(side.conn.ending(), Some(Ending::Closed), "{role:?}");
        assert_eq!(side.conn.close_reason(Ending::Closed), 4000, "{role:?}");
    }
}

#[test]
fn the_idle_timeout_fails_a_server_with_1001() {
    let idle = Duration::from_secs(10);
    let s = Settings {
        idle_timeout: Some(idle),
        ..settings()
    };
    let (clock, mut server) = lone(Role::Server, s);
    let t0 = clock.now();
    let at = |secs: u64| t0 + Duration::from_secs(secs);
    assert_eq!(server.conn.poll_timeout(), Some(t0 + idle));

    // A message resets the deadline.
    server
        .conn
        .receive(&client_frame(true, OP_TEXT, b"hi"), at(6));
    assert_eq!(server.conn.poll_timeout(), Some(at(16)));
    // So does one byte of a frame.
    let ping = client_frame(true, OP_PING, b"?");
    server.conn.receive(&ping[..1], at(9));
    assert_eq!(server.conn.poll_timeout(), Some(at(19)));
    server.conn.receive(&ping[1..], at(9));
    server.collect(at(9));
    assert_eq!(server.inbox, [text("hi")]);
    server.transmit();
    assert_eq!(server.sent, [0x8A, 1, b'?']);

    // The old deadlines pass without effect.
    server.conn.handle_timeout(at(10));
    server.conn.handle_timeout(at(19) - Duration::from_nanos(1));
    assert!(!server.conn.has_transmit());
    assert_eq!(server.conn.ending(), None);

    server.conn.handle_timeout(at(19));
    let mut out = Vec::new();
    assert!(server.conn.poll_transmit(&mut out), "the server shuts down");
    assert_eq!(out[..4], [0x88, out.len() as u8 - 2, 0x03, 0xE9]);
    let sent = frames(Role::Server, &out);
    let close = &sent[0];
    assert_eq!(close.close_code(), Some(1001));
    assert!(std::str::from_utf8(&close.payload[2..]).is_ok());
    assert_eq!(
        server.conn.ending(),
        None,
        "waiting for the client's answer"
    );
    assert_eq!(server.conn.poll_timeout(), Some(at(19) + CLOSE_TIMEOUT));

    // The client answers and closes.
    server.feed(
        &client_frame(true, OP_CLOSE, &close_payload(1001, "")),
        at(20),
    );
    assert_eq!(server.conn.ending(), None);
    server.conn.receive_eof();
    assert_eq!(server.conn.ending(), Some(Ending::Failed(1001)));
    assert_eq!(server.conn.close_reason(Ending::Failed(1001)), 1001);
    assert_eq!(server.inbox, [text("hi")]);
}

#[test]
fn the_idle_timeout_fails_a_client_with_1001() {
    let idle = Duration::from_secs(30);
    let mut p = Pair::with(Settings {
        idle_timeout: Some(idle),
        ..settings()
    });
    let t0 = p.now();
    // A read straight into a message's room counts as receiving.
    let header = server_frame(true, OP_BINARY, &[7; 100_000]);
    let (head, body) = header.split_at(10);
    p.client.conn.receive(head, t0 + Duration::from_secs(20));
    assert_eq!(
        p.client.conn.poll_timeout(),
        Some(t0 + Duration::from_secs(50))
    );
    let (first, rest) = body.split_at(body.len() / 2);
    p.client.conn.receive(first, t0 + Duration::from_secs(20));
    let mut room = p.client.conn.lend_room(1, 1 << 20).expect("a room");
    assert_eq!(room.bytes().len(), rest.len());
    room.bytes().copy_from_slice(rest);
    p.client
        .conn
        .return_room(room, rest.len(), t0 + Duration::from_secs(25));
    assert_eq!(
        p.client.conn.poll_timeout(),
        Some(t0 + Duration::from_secs(55))
    );
    p.client.collect(t0);
    assert_eq!(p.client.inbox, [binary(&[7; 100_000])]);

    let deadline = t0 + Duration::from_secs(55);
    p.client
        .conn
        .handle_timeout(deadline - Duration::from_nanos(1));
    assert!(!p.client.conn.has_transmit());
    p.clock.advance(Duration::from_secs(55));
    p.client.conn.handle_timeout(deadline);
    p.drive();
    let sent = p.client.sent_frames();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].close_code(), Some(1001));
    assert_eq!(p.server.sent, [0x88, 2, 0x03, 0xE9], "the same code back");
    assert_eq!(
        p.endings(),
        (Some(Ending::Failed(1001)), Some(Ending::Closed))
    );
    assert_eq!(p.reasons(), (1001, 1001));
}

#[test]
fn a_close_during_a_fragmented_send_follows_the_fragments() {
    for closer in [Role::Client, Role::Server] {
        let mut p = Pair::new();
        let now = p.now();
        let a = p.end(closer);
        a.conn.send_frame(OP_BINARY, b"frag-1", false).unwrap();
        a.conn
            .send_frame(OP_CONTINUATION, b"frag-2", false)
            .unwrap();
        assert!(a.conn.sending_message());
        assert!(a.conn.close(Some(1000), "done", now));
        assert_eq!(
            a.conn.send_frame(OP_CONTINUATION, b"frag-3", true),
            Err(SendError::Closing)
        );
        assert_eq!(
            a.conn.frame_header(OP_CONTINUATION, 6, true).err(),
            Some(SendError::Closing)
        );
        assert_eq!(
            a.conn.send_frame(OP_PING, b"", true),
            Err(SendError::Closing)
        );
        assert_eq!(
            a.conn.send_frame(OP_TEXT, b"new", true),
            Err(SendError::Closing)
        );
        p.drive();
        let (a, b) = match closer {
            Role::Client => (&p.client, &p.server),
            Role::Server => (&p.server, &p.client),
        };
        assert_eq!(
            a.sent_frames(),
            [
                Frame::new(false, OP_BINARY, b"frag-1"),
                Frame::new(false, OP_CONTINUATION, b"frag-2"),
                Frame::close(1000, "done"),
            ],
            "{closer:?}"
        );
        assert_eq!(b.sent_frames(), [Frame::close(1000, "")], "{closer:?}");
        assert!(
            b.inbox.is_empty(),
            "{closer:?}: the partial message is dropped"
        );
        assert_eq!(
            p.endings(),
            (Some(Ending::Closed), Some(Ending::Closed)),
            "{closer:?}"
        );
        assert_eq!(p.reasons(), (1000, 1000), "{closer:?}");
    }
}

#[test]
fn a_close_inside_the_peers_fragmented_message_ends_cleanly() {
    for role in [Role::Server, Role::Client] {
        let (clock, mut side) = lone(role, settings());
        let now = clock.now();
        // The message so far ends inside a UTF-8 sequence, which the
        // rest would complete: no matter.
        let mut wire = frame_to(role, false, OP_TEXT, b"par");
        wire.extend(frame_to(role, false, OP_CONTINUATION, b"ti\xCE"));
        wire.extend(frame_to(role, true, OP_CLOSE, &close_payload(1000, "")));
        // The rest of the message after the close is not read.
        wire.extend(frame_to(role, true, OP_CONTINUATION, b"al"));
        side.delivery = Delivery::Pieces(3);
        side.feed(&wire, now);
        assert!(side.inbox.is_empty(), "{role:?}");
        side.transmit();
        assert_eq!(side.sent_frames(), [Frame::close(1000, "")], "{role:?}");
        side.conn.receive_eof();
        assert_eq!(side.conn.ending(), Some(Ending::Closed), "{role:?}");
        assert_eq!(side.conn.close_reason(Ending::Closed), 1000, "{role:?}");
    }
    // Between two connections, the server's message cut by its close.
    let mut p = Pair::new();
    let now = p.now();
    p.server.conn.send_frame(OP_TEXT, b"par", false).unwrap();
    p.server
        .conn
        .send_frame(OP_CONTINUATION, b"ti", false)
        .unwrap();
    assert!(p.server.conn.close(Some(1000), "", now));
    p.drive();
    assert!(p.client.inbox.is_empty());
    assert_eq!(p.endings(), (Some(Ending::Closed), Some(Ending::Closed)));
    assert_eq!(p.reasons(), (1000, 1000));
}

#[test]
fn frames_after_a_close_frame_are_ignored() {
    for role in [Role::Server, Role::Client] {
        let close = frame_to(role, true, OP_CLOSE, &close_payload(1000, ""));
        let mut after = frame_to(role, true, OP_TEXT, b"late");
        after.extend(frame_to(role, true, OP_PING, b"p"));
        after.extend(frame_to(role, true, OP_BINARY, b"later"));
        // A frame with the wrong masking for this end, reserved bits, garbage.
        after.extend(frame_to(
            if role == Role::Server {
                Role::Client
            } else {
                Role::Server
            },
            true,
            OP_TEXT,
            b"x",
        ));
        after.extend([0xF1, 0x00, 0xFF, 0xFF, 0xFF, 0x13, 0x37]);
        let mut all = close.clone();
        all.extend_from_slice(&after);

        let ways: [(&str, Delivery, bool); 4] = [
            ("in one read", Delivery::Whole, false),
            ("a byte at a time", Delivery::Pieces(1), false),
            ("in pieces of 5", Delivery::Pieces(5), false),
            ("after the close was handled", Delivery::Whole, true),
        ];
        for (how, delivery, separately) in ways {
            let (clock, mut side) = lone(role, settings());
            let now = clock.now();
            side.delivery = delivery;
            if separately {
                side.feed(&close, now);
                side.transmit();
                side.feed(&after, now);
            } else {
                side.feed(&all, now);
            }
            side.transmit();
            assert!(side.inbox.is_empty(), "{role:?} {how}: {:?}", side.inbox);
            assert_eq!(
                side.sent_frames(),
                [Frame::close(1000, "")],
                "{role:?} {how}: only the answer to the close, no pong"
            );
            if role == Role::Server {
                assert_eq!(side.sent, [0x88, 2, 0x03, 0xE8], "{how}");
                assert_eq!(side.shutdowns(), 1, "{how}");
            }
            assert!(!side.conn.has_transmit(), "{role:?} {how}");
            assert!(!side.conn.has_messages(), "{role:?} {how}");
            side.conn.receive_eof();
            assert_eq!(side.conn.ending(), Some(Ending::Closed), "{role:?} {how}");
            assert_eq!(side.conn.close_reason(Ending::Closed), 1000);
        }
    }
}

#[test]
fn a_ping_after_the_local_close_is_not_answered() {
    let mut p = Pair::new();
    let now = p.now();
    // Both are in flight at once: the server's ping and the client's close.
    p.server.conn.send_frame(OP_PING, b"late", true).unwrap();
    p.server.transmit();
    assert!(p.client.conn.close(Some(1000), "", now));
    p.drive();
    assert_eq!(p.client.sent_frames(), [Frame::close(1000, "")]);
    assert_eq!(p.endings(), (Some(Ending::Closed), Some(Ending::Closed)));
    assert!(p.server.inbox.is_empty());
}

// ------------------------------------------------------------------ failures

/// Only the header of a frame the peer of `receiver` sends, announcing
/// `len` bytes of payload.
fn header_only(receiver: Role, opcode: u8, len: u64) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match receiver {
        Role::Server => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&KEY);
        }
        Role::Client => {
            out.push(127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out
}

/// A stream from the peer of `role`: two valid messages, then a broken rule.
fn violation_cases(role: Role) -> Vec<(&'static str, Settings, Vec<u8>, u16)> {
    let mut prefix = frame_to(role, true, OP_TEXT, b"one");
    prefix.extend(frame_to(role, true, OP_BINARY, &[1, 2, 3]));
    let with = |tail: Vec<u8>| {
        let mut w = prefix.clone();
        w.extend(tail);
        w
    };
    let wrong_masking = match role {
        Role::Server => server_frame(true, OP_TEXT, b"unmasked"),
        Role::Client => client_frame(true, OP_TEXT, b"masked"),
    };
    let mut reserved = frame_to(role, true, OP_TEXT, b"rsv");
    reserved[0] |= 0x40;
    let small = Settings {
        limits: Limits {
            max_frame_size: 64,
            max_message_size: 100,
        },
        ..settings()
    };
    let mut too_big_message = frame_to(role, false, OP_BINARY, &[0; 60]);
    too_big_message.extend(frame_to(role, true, OP_CONTINUATION, &[0; 60]));
    vec![
        ("wrong masking", settings(), with(wrong_masking), 1002),
        ("reserved bits", settings(), with(reserved), 1002),
        (
            "reserved opcode",
            settings(),
            with(frame_to(role, true, 0x3, b"")),
            1002,
        ),
        (
            "continuation without a message",
            settings(),
            with(frame_to(role, true, OP_CONTINUATION, b"x")),
            1002,
        ),
        (
            "fragmented ping",
            settings(),
            with(frame_to(role, false, OP_PING, b"")),
            1002,
        ),
        (
            "close code 1005 on the wire",
            settings(),
            with(frame_to(role, true, OP_CLOSE, &close_payload(1005, ""))),
            1002,
        ),
        (
            "invalid UTF-8",
            settings(),
            with(frame_to(role, true, OP_TEXT, &[b'o', b'k', 0xC0, 0x80])),
            1007,
        ),
        (
            "frame too big",
            small.clone(),
            with(frame_to(role, true, OP_BINARY, &[0; 65])),
            1009,
        ),
        ("message too big", small, with(too_big_message), 1009),
        (
            "a header announcing 2^40 bytes",
            settings(),
            with(header_only(role, OP_BINARY, 1 << 40)),
            1009,
        ),
        (
            "ping over 125 bytes",
            settings(),
            with(frame_to(role, true, OP_PING, &[0; 126])),
            1002,
        ),
        (
            "close with a 1-byte payload",
            settings(),
            with(frame_to(role, true, OP_CLOSE, &[0x03])),
            1002,
        ),
        (
            "close reason not UTF-8",
            settings(),
            with(frame_to(role, true, OP_CLOSE, &[0x03, 0xE8, 0xFF])),
            1007,
        ),
    ]
}

#[test]
fn a_broken_rule_after_valid_messages_fails_the_connection_with_its_code() {
    for role in [Role::Server, Role::Client] {
        for (what, s, wire, code) in violation_cases(role) {
            let (clock, mut side) = lone(role, s);
            let now = clock.now();
            let conn = &mut side.conn;
            conn.receive(&wire, now);
            let mut got = Vec::new();
            conn.poll_messages(now, &mut got);
            assert_eq!(got, [text("one"), binary(&[1, 2, 3])], "{role:?} {what}");
            assert_eq!(conn.queued_len(), 0, "{role:?} {what}: messages first");
            assert!(conn.has_messages(), "{role:?} {what}");
            // What the application sends in answer goes before the close.
            conn.send_frame(OP_TEXT, b"reply", true).unwrap();
            got.clear();
            conn.poll_messages(now, &mut got);
            assert!(got.is_empty(), "{role:?} {what}");
            assert!(!conn.has_messages(), "{role:?} {what}");
            assert!(conn.close_sent(), "{role:?} {what}");
            let mut out = Vec::new();
            let shutdown = conn.poll_transmit(&mut out);
            assert_eq!(shutdown, role == Role::Server, "{role:?} {what}");
            let sent = frames(role, &out);
            assert_eq!(sent.len(), 2, "{role:?} {what}: {sent:?}");
            assert_eq!(sent[0], Frame::new(true, OP_TEXT, b"reply"));
            assert_eq!(sent[1].close_code(), Some(code), "{role:?} {what}");
            if role == Role::Server {
                let close = &out[out.len() - sent[1].payload.len() - 2..];
                assert_eq!(
                    close[..4],
                    [
                        0x88,
                        sent[1].payload.len() as u8,
                        (code >> 8) as u8,
                        code as u8
                    ],
                    "{what}"
                );
            }
            // More bytes, even valid ones, are not read.
            conn.receive(&frame_to(role, true, OP_PING, b"ignored"), now);
            assert!(
                !conn.has_messages() && !conn.has_transmit(),
                "{role:?} {what}"
            );
            assert_eq!(conn.ending(), None, "{role:?} {what}");
            conn.receive_eof();
            assert_eq!(conn.ending(), Some(Ending::Failed(code)), "{role:?} {what}");
            assert_eq!(
                conn.close_reason(Ending::Failed(code)),
                code,
                "{role:?} {what}"
            );
        }
    }
}

#[test]
fn a_broken_rule_fails_the_same_way_in_any_split() {
    for role in [Role::Server, Role::Client] {
        for (what, s, wire, code) in violation_cases(role) {
            let run = |delivery: Delivery| {
                let (clock, mut side) = lone(role, s.clone());
                side.delivery = delivery;
                side.feed(&wire, clock.now());
                side.transmit();
                side.conn.receive_eof();
                let frames = side.sent_frames();
                let shutdowns = side.shutdowns();
                (side.inbox, frames, shutdowns, side.conn.ending())
            };
            let whole = run(Delivery::Whole);
            assert_eq!(
                whole.0,
                [text("one"), binary(&[1, 2, 3])],
                "{role:?} {what}"
            );
            assert_eq!(whole.1.len(), 1, "{role:?} {what}");
            assert_eq!(whole.1[0].close_code(), Some(code), "{role:?} {what}");
            assert_eq!(whole.3, Some(Ending::Failed(code)), "{role:?} {what}");
            for n in [1, 2, 3, 7] {
                assert_eq!(run(Delivery::Pieces(n)), whole, "{role:?} {what} in {n}s");
            }
        }
    }
}

#[test]
fn a_pair_with_a_broken_rule_ends_failed_on_one_side_closed_on_the_other() {
    let mut p = Pair::new();
    p.client.conn.send_frame(OP_TEXT, b"valid", true).unwrap();
    p.drive();
    // The client's stream carries a frame with a reserved bit set.
    let mut bad = client_frame(true, OP_TEXT, b"bad");
    bad[0] |= 0x10;
    p.client.in_flight.extend_from_slice(&bad);
    p.drive();
    assert_eq!(p.server.inbox, [text("valid")]);
    assert_eq!(p.server.sent_frames()[0].close_code(), Some(1002));
    assert_eq!(p.server.shutdowns(), 1);
    assert_eq!(
        p.client.sent_frames().last().unwrap().close_code(),
        Some(1002)
    );
    assert_eq!(
        p.endings(),
        (Some(Ending::Closed), Some(Ending::Failed(1002)))
    );
    assert_eq!(p.reasons(), (1002, 1002));
}

#[test]
fn a_failed_connection_ends_at_the_close_timeout_when_the_peer_never_answers() {
    for role in [Role::Server, Role::Client] {
        let (mut clock, mut side) = lone(role, settings());
        clock.advance(Duration::from_secs(7));
        let at = clock.now();
        side.feed(&frame_to(role, true, OP_TEXT, &[0xC0]), at);
        side.transmit();
        assert_eq!(side.sent_frames()[0].close_code(), Some(1007), "{role:?}");
        assert_eq!(
            side.conn.poll_timeout(),
            Some(at + CLOSE_TIMEOUT),
            "{role:?}"
        );
        side.conn
            .handle_timeout(at + CLOSE_TIMEOUT - Duration::from_nanos(1));
        assert_eq!(side.conn.ending(), None, "{role:?}");
        side.conn.handle_timeout(at + CLOSE_TIMEOUT);
        assert_eq!(side.conn.ending(), Some(Ending::Failed(1007)), "{role:?}");
        assert_eq!(side.conn.close_reason(Ending::Failed(1007)), 1007);
        assert!(!side.conn.close(Some(1000), "", at + CLOSE_TIMEOUT));
    }
}

#[test]
fn eof_without_a_close_is_dropped_with_1006() {
    let mut p = Pair::new();
    p.client
        .conn
        .send_frame(OP_TEXT, b"last words", true)
        .unwrap();
    p.client.transmit();
    // The client's stream ends with no close frame.
    p.client.write_closed = true;
    p.drive();
    assert_eq!(p.server.inbox, [text("last words")]);
    assert_eq!(p.server.conn.ending(), Some(Ending::Dropped));
    assert_eq!(p.server.conn.close_reason(Ending::Dropped), 1006);
    // The server's socket closed in turn.
    assert_eq!(p.client.conn.ending(), Some(Ending::Dropped));
    assert_eq!(p.client.conn.close_reason(Ending::Dropped), 1006);
    assert!(p.server.sent.is_empty(), "no close frame after the end");

    // In the middle of a frame.
    for role in [Role::Server, Role::Client] {
        let (clock, mut side) = lone(role, settings());
        let frame = frame_to(role, true, OP_BINARY, &[9; 300]);
        side.feed(&frame[..100], clock.now());
        side.conn.receive_eof();
        assert_eq!(side.conn.ending(), Some(Ending::Dropped), "{role:?}");
        assert_eq!(side.conn.close_reason(Ending::Dropped), 1006, "{role:?}");
        assert!(side.inbox.is_empty());
        assert_eq!(side.conn.poll_timeout(), None);
    }
}

#[test]
fn a_close_frame_that_arrived_before_the_eof_gives_the_reason() {
    for role in [Role::Server, Role::Client] {
        let (clock, mut side) = lone(role, settings());
        let now = clock.now();
        side.conn.receive(
            &frame_to(role, true, OP_CLOSE, &close_payload(4000, "")),
            now,
        );
        // The stream ends before the close frame was handled.
        side.conn.receive_eof();
        assert_eq!(side.conn.ending(), Some(Ending::Dropped), "{role:?}");
        side.collect(now);
        assert!(side.inbox.is_empty(), "{role:?}");
        assert_eq!(side.conn.ending(), Some(Ending::Dropped), "{role:?}");
        assert_eq!(side.conn.close_reason(Ending::Dropped), 4000, "{role:?}");
    }
}

#[test]
fn stream_failed_while_closing_ends_closed() {
    for role in [Role::Server, Role::Client] {
        // This end sent its close frame.
        let (clock, mut side) = lone(role, settings());
        assert!(side.conn.close(Some(4000), "bye", clock.now()));
        side.transmit();
        side.conn.stream_failed();
        assert_eq!(side.conn.ending(), Some(Ending::Closed), "{role:?}");
        assert_eq!(side.conn.close_reason(Ending::Closed), 4000, "{role:?}");

        // The peer's close frame arrived and was answered.
        let (clock, mut side) = lone(role, settings());
        side.feed(
            &frame_to(role, true, OP_CLOSE, &close_payload(4001, "")),
            clock.now(),
        );
        side.conn.stream_failed();
        assert_eq!(side.conn.ending(), Some(Ending::Closed), "{role:?}");
        assert_eq!(side.conn.close_reason(Ending::Closed), 4001, "{role:?}");

        // Nothing under way.
        let (_, mut side) = lone(role, settings());
        side.conn.stream_failed();
        assert_eq!(side.conn.ending(), Some(Ending::Broken), "{role:?}");
        assert_eq!(side.conn.close_reason(Ending::Broken), 1006, "{role:?}");

        // After a broken rule.
        let (clock, mut side) = lone(role, settings());
        side.feed(&frame_to(role, true, OP_TEXT, &[0xFF]), clock.now());
        side.conn.stream_failed();
        assert_eq!(side.conn.ending(), Some(Ending::Failed(1007)), "{role:?}");
        assert_eq!(side.conn.close_reason(Ending::Failed(1007)), 1007);

        // Nothing changes after the end.
        side.conn.receive_eof();
        side.conn
            .handle_timeout(clock.now() + Duration::from_secs(3600));
        assert_eq!(side.conn.ending(), Some(Ending::Failed(1007)), "{role:?}");
        assert_eq!(side.conn.poll_timeout(), None);
    }
}

// ------------------------------------------------------------------ sending

#[test]
fn a_new_message_cannot_start_while_one_is_in_progress() {
    let mut p = Pair::new();
    let c = &mut p.client.conn;
    assert_eq!(
        c.send_frame(OP_CONTINUATION, b"x", true),
        Err(SendError::NoMessage)
    );
    assert!(!c.sending_message());
    c.send_frame(OP_TEXT, b"Hel", false).unwrap();
    assert!(c.sending_message());
    assert_eq!(
        c.send_frame(OP_TEXT, b"x", true),
        Err(SendError::MessageInProgress)
    );
    assert_eq!(
        c.send_frame(OP_BINARY, b"x", false),
        Err(SendError::MessageInProgress)
    );
    assert_eq!(
        c.frame_header(OP_TEXT, 1, true).err(),
        Some(SendError::MessageInProgress)
    );
    // Control frames may go between the fragments.
    c.send_frame(OP_PING, b"between", true).unwrap();
    c.send_frame(OP_PONG, b"unsolicited", true).unwrap();
    assert!(c.sending_message());
    c.send_frame(OP_CONTINUATION, b"l", false).unwrap();
    c.send_frame(OP_CONTINUATION, b"o", true).unwrap();
    assert!(!c.sending_message());
    assert_eq!(
        c.send_frame(OP_CONTINUATION, b"!", true),
        Err(SendError::NoMessage)
    );
    assert_eq!(
        c.frame_header(OP_CONTINUATION, 1, true).err(),
        Some(SendError::NoMessage)
    );
    // Control frames must be final and short; a close goes through close().
    assert_eq!(
        c.send_frame(OP_PING, b"", false),
        Err(SendError::InvalidControl)
    );
    assert_eq!(
        c.send_frame(OP_PONG, &[0; 126], true),
        Err(SendError::InvalidControl)
    );
    assert_eq!(
        c.send_frame(OP_CLOSE, b"", true),
        Err(SendError::InvalidControl)
    );
    assert_eq!(c.send_frame(0x3, b"", true), Err(SendError::InvalidControl));
    c.send_frame(OP_BINARY, &[1], true).unwrap();
    p.drive();
    // The refused frames left nothing on the wire.
    assert_eq!(
        p.client.sent_frames(),
        [
            Frame::new(false, OP_TEXT, b"Hel"),
            Frame::new(true, OP_PING, b"between"),
            Frame::new(true, OP_PONG, b"unsolicited"),
            Frame::new(false, OP_CONTINUATION, b"l"),
            Frame::new(true, OP_CONTINUATION, b"o"),
            Frame::new(true, OP_BINARY, &[1]),
        ]
    );
    assert_eq!(
        p.server.inbox,
        [pong(b"unsolicited"), text("Hello"), binary(&[1])]
    );
    assert_eq!(p.client.inbox, [pong(b"between")]);
    assert_eq!(p.endings(), (None, None));
}

#[test]
fn a_frame_header_with_a_payload_written_by_the_caller() {
    for role in [Role::Server, Role::Client] {
        let (_, mut side) = lone(role, settings());
        let payload = vec![0xC3; 70_000];
        side.conn.send_frame(OP_PING, b"first", true).unwrap();
        let mut out = Vec::new();
        side.conn.poll_transmit(&mut out);
        let h = side
            .conn
            .frame_header(OP_BINARY, payload.len() as u64, true)
            .unwrap();
        out.extend_from_slice(h.as_bytes());
        match h.mask {
            Some(key) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4])),
            None => out.extend_from_slice(&payload),
        }
        assert_eq!(h.mask.is_some(), role == Role::Client);
        assert_eq!(
            frames(role, &out),
            [
                Frame::new(true, OP_PING, b"first"),
                Frame::new(true, OP_BINARY, &payload),
            ]
        );
        assert!(!side.conn.sending_message());
    }
}

// ------------------------------------------------------------------ delivery

/// A stream from a client with every kind of frame, ending in a close.
fn client_stream() -> Vec<u8> {
    let mut w = client_frame(true, OP_TEXT, b"hello");
    w.extend(client_frame(false, OP_BINARY, &[1, 2, 3]));
    w.extend(client_frame(true, OP_PING, b"mid-message"));
    w.extend(client_frame(false, OP_CONTINUATION, &[4, 5]));
    w.extend(client_frame(true, OP_PONG, b"unsolicited"));
    w.extend(client_frame(true, OP_CONTINUATION, &[6]));
    let kosme = "κόσμε".as_bytes();
    w.extend(client_frame(false, OP_TEXT, &kosme[..3]));
    w.extend(client_frame(true, OP_CONTINUATION, &kosme[3..]));
    w.extend(client_frame(true, OP_TEXT, "é".repeat(150).as_bytes()));
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    w.extend(client_frame(true, OP_BINARY, &big));
    w.extend(client_frame(true, OP_PING, b""));
    w.extend(client_frame(true, OP_CLOSE, &close_payload(1000, "bye")));
    w.extend(client_frame(true, OP_TEXT, b"after the close"));
    w
}

/// Pieces of pseudo-random lengths from 1 to `max`, from a fixed seed.
fn random_cuts(len: usize, max: usize, mut seed: u64) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut at = 0;
    while at < len {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = 1 + (seed >> 33) as usize % max;
        cuts.push(n.min(len - at));
        at += n;
    }
    cuts
}

#[test]
fn the_same_stream_in_any_split_gives_the_same_messages_and_bytes() {
    let wire = client_stream();
    // Each piece is one read, after which the server writes what it queued.
    let run = |pieces: &[usize]| {
        let (clock, mut server) = lone(Role::Server, settings());
        let now = clock.now();
        let mut at = 0;
        for &n in pieces {
            server.feed(&wire[at..at + n], now);
            server.transmit();
            at += n;
        }
        assert_eq!(at, wire.len());
        server.conn.receive_eof();
        let shutdowns = server.shutdowns();
        (server.inbox, server.sent, shutdowns, server.conn.ending())
    };
    let whole = run(&[wire.len()]);
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        whole.0,
        [
            text("hello"),
            pong(b"unsolicited"),
            binary(&[1, 2, 3, 4, 5, 6]),
            text("κόσμε"),
            text(&"é".repeat(150)),
            binary(&big),
        ]
    );
    let mut expected = vec![0x8A, 11];
    expected.extend_from_slice(b"mid-message");
    expected.extend([0x8A, 0, 0x88, 2, 0x03, 0xE8]);
    assert_eq!(whole.1, expected);
    assert_eq!(whole.2, 1);
    assert_eq!(whole.3, Some(Ending::Closed));

    assert!(run(&vec![1; wire.len()]) == whole, "a byte at a time");
    for max in [2, 5, 13, 300, 20_000] {
        let cuts = random_cuts(wire.len(), max, max as u64);
        assert!(run(&cuts) == whole, "pieces of at most {max}");
    }
}

#[test]
fn a_conversation_gives_the_same_result_in_any_split() {
    let talk = |delivery: Delivery| {
        let mut p = Pair::new();
        p.client.delivery = delivery;
        p.server.delivery = delivery;
        p.client.conn.send_frame(OP_TEXT, b"hi", true).unwrap();
        p.client.conn.send_frame(OP_PING, b"c", true).unwrap();
        p.client
            .conn
            .send_frame(OP_BINARY, &[1; 300], false)
            .unwrap();
        p.client.conn.send_frame(OP_PING, b"c2", true).unwrap();
        p.client
            .conn
            .send_frame(OP_CONTINUATION, &[2; 70_000], true)
            .unwrap();
        p.drive();
        p.server.conn.send_frame(OP_PING, b"s", true).unwrap();
        p.server.conn.send_frame(OP_TEXT, b"hello", false).unwrap();
        p.server
            .conn
            .send_frame(OP_CONTINUATION, b" there", true)
            .unwrap();
        p.drive();
        let now = p.now();
        assert!(p.client.conn.close(Some(1000), "done", now));
        p.drive();
        let reasons = p.reasons();
        (
            p.client.inbox.clone(),
            p.server.inbox.clone(),
            p.client.sent_frames(),
            p.server.sent.clone(),
            p.endings(),
            reasons,
        )
    };
    let whole = talk(Delivery::Whole);
    let mut message = vec![1; 300];
    message.extend([2; 70_000]);
    assert_eq!(whole.0, [pong(b"c"), pong(b"c2"), text("hello there")]);
    assert_eq!(whole.1, [text("hi"), binary(&message), pong(b"s")]);
    assert_eq!(whole.4, (Some(Ending::Closed), Some(Ending::Closed)));
    assert_eq!(whole.5, (1000, 1000));
    for n in [1, 3, 1000] {
        assert!(talk(Delivery::Pieces(n)) == whole, "pieces of {n}");
    }
    let direct = Delivery::Direct {
        min: 1024,
        max: 8192,
        read: 512,
        fill: 3000,
    };
    assert!(talk(direct) == whole, "reads straight into the message");
}

/// A stream from the peer of `role` with large frames: a binary frame of
/// 300 000 bytes, a text of 200 000 bytes in three fragments cut inside
/// UTF-8 sequences with a ping between, a short text; with `bad_utf8`,
/// the text carries an invalid byte deep in its second fragment.
fn large_stream(role: Role, bad_utf8: bool) -> Vec<u8> {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut kosme = "κόσμε".repeat(20_000).into_bytes();
    if bad_utf8 {
        kosme[120_000] = 0xFF;
    }
    let mut w = frame_to(role, true, OP_BINARY, &big);
    w.extend(frame_to(role, false, OP_TEXT, &kosme[..70_001]));
    w.extend(frame_to(role, true, OP_PING, b"between"));
    w.extend(frame_to(
        role,
        false,
        OP_CONTINUATION,
        &kosme[70_001..140_003],
    ));
    w.extend(frame_to(role, true, OP_CONTINUATION, &kosme[140_003..]));
    w.extend(frame_to(role, true, OP_TEXT, b"end"));
    w
}

#[test]
fn reads_straight_into_the_message_give_the_same_messages_as_receive() {
    let ways = [
        Delivery::Direct {
            min: 16 << 10,
            max: 256 << 10,
            read: 64 << 10,
            fill: usize::MAX,
        },
        Delivery::Direct {
            min: 16 << 10,
            max: 64 << 10,
            read: 4096,
            fill: 10_000,
        },
        Delivery::Direct {
            min: 1,
            max: 4099,
            read: 7,
            fill: 1021,
        },
    ];
    for role in [Role::Server, Role::Client] {
        for bad_utf8 in [false, true] {
            let wire = large_stream(role, bad_utf8);
            let run = |delivery: Delivery| {
                let (clock, mut side) = lone(role, settings());
                side.delivery = delivery;
                side.feed(&wire, clock.now());
                side.transmit();
                let frames = side.sent_frames();
                (side.inbox, frames, side.sent, side.direct_bytes)
            };
            let (inbox, frames, sent, _) = run(Delivery::Whole);
            let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
            if bad_utf8 {
                assert_eq!(inbox, [binary(&big)], "{role:?}");
                assert_eq!(frames.len(), 2, "{role:?}: {frames:?}");
                assert_eq!(frames[0], Frame::new(true, OP_PONG, b"between"));
                assert_eq!(frames[1].close_code(), Some(1007), "{role:?}");
            } else {
                assert_eq!(
                    inbox,
                    [binary(&big), text(&"κόσμε".repeat(20_000)), text("end")],
                    "{role:?}"
                );
                assert_eq!(frames, [Frame::new(true, OP_PONG, b"between")]);
            }
            for way in ways {
                let (d_inbox, d_frames, d_sent, direct) = run(way);
                assert!(
                    d_inbox == inbox,
                    "{role:?} {bad_utf8} {way:?}: messages differ"
                );
                assert_eq!(d_frames, frames, "{role:?} {bad_utf8} {way:?}");
                if role == Role::Server {
                    assert_eq!(d_sent, sent, "{bad_utf8} {way:?}");
                }
                assert!(
                    direct >= 200_000,
                    "{role:?} {bad_utf8} {way:?}: only {direct} bytes read straight in"
                );
            }
        }
    }
}

#[test]
fn no_room_is_lent_outside_a_large_data_payload() {
    for role in [Role::Server, Role::Client] {
        let (clock, mut side) = lone(role, settings());
        let now = clock.now();
        assert!(
            side.conn.lend_room(1, 4096).is_none(),
            "{role:?}: between frames"
        );
        let ping = frame_to(role, true, OP_PING, &[1; 100]);
        side.conn.receive(&ping[..10], now);
        assert!(
            side.conn.lend_room(1, 4096).is_none(),
            "{role:?}: in a ping"
        );
        side.conn.receive(&ping[10..], now);
        let frame = frame_to(role, true, OP_BINARY, &[5; 1000]);
        let head = if role == Role::Server { 8 } else { 4 };
        side.conn.receive(&frame[..head], now);
        let body = &frame[head..];
        assert!(
            side.conn.lend_room(1, 4096).is_none(),
            "{role:?}: nothing of the payload has arrived"
        );
        side.conn.receive(&body[..100], now);
        assert!(
            side.conn.lend_room(901, 4096).is_none(),
            "{role:?}: too short"
        );
        assert!(
            side.conn.lend_room(101, 4096).is_none(),
            "{role:?}: less than the minimum has arrived"
        );
        // No more room than what has arrived: it doubles.
        let mut room = side.conn.lend_room(100, 4096).expect("a room");
        assert_eq!(room.bytes().len(), 100, "{role:?}");
        room.bytes().copy_from_slice(&body[100..200]);
        side.conn.return_room(room, 100, now);
        // A read that brought nothing, then the rest.
        let mut room = side.conn.lend_room(150, 4096).expect("a room");
        assert_eq!(room.bytes().len(), 200, "{role:?}");
        side.conn.return_room(room, 0, now);
        let mut room = side.conn.lend_room(1, 4096).expect("a room");
        assert_eq!(room.bytes().len(), 200, "{role:?}");
        room.bytes().copy_from_slice(&body[200..400]);
        side.conn.return_room(room, 200, now);
        let mut room = side.conn.lend_room(1, 4096).expect("a room");
        assert_eq!(room.bytes().len(), 400, "{role:?}");
        room.bytes().copy_from_slice(&body[400..800]);
        side.conn.return_room(room, 400, now);
        let mut room = side.conn.lend_room(1, 4096).expect("a room");
        assert_eq!(room.bytes().len(), 200, "{role:?}: the rest");
        room.bytes().copy_from_slice(&body[800..]);
        side.conn.return_room(room, 200, now);
        side.collect(now);
        assert_eq!(side.inbox, [binary(&[5; 1000])], "{role:?}");
        // After a close, nothing more is lent.
        side.feed(&frame_to(role, true, OP_CLOSE, b""), now);
        side.conn
            .receive(&frame_to(role, true, OP_BINARY, &[0; 2000])[..8], now);
        assert!(
            side.conn.lend_room(1, 4096).is_none(),
            "{role:?}: after the close"
        );
    }
}

// ------------------------------------------------------------ memory budget

/// `settings()` with a memory budget.
fn budgeted(budget: &MemoryBudget) -> Settings {
    Settings {
        budget: Some(budget.clone()),
        ..settings()
    }
}

#[test]
fn connections_share_a_memory_budget_and_the_one_over_it_fails_with_1013() {
    let budget = MemoryBudget::new(1 << 20);
    for role in [Role::Server, Role::Client] {
        let (clock, mut a) = lone(role, budgeted(&budget));
        let (_, mut b) = lone(role, budgeted(&budget));
        let now = clock.now();
        // Two fragments of 600 KiB each: A holds its first one.
        let piece = vec![7u8; 600 << 10];
        a.feed(&frame_to(role, false, OP_BINARY, &piece), now);
        a.collect(now);
        assert!(a.conn.ending().is_none());
        let held = budget.used();
        assert!(held >= 600 << 10, "{role:?}: {held} bytes charged");
        // B's first fragment does not fit beside it: try again later.
        b.feed(&frame_to(role, false, OP_BINARY, &piece), now);
        b.collect(now);
        b.transmit();
        let sent = b.sent_frames();
        assert_eq!(
            sent.last().and_then(|f| f.close_code()),
            Some(1013),
            "{role:?}"
        );
        // B gave back what it held; A goes on and ends its message.
        assert_eq!(budget.used(), held, "{role:?}");
        a.feed(&frame_to(role, true, OP_CONTINUATION, &[8; 10]), now);
        a.collect(now);
        assert!(matches!(a.inbox.last(), Some(Incoming::Binary(m)) if m.len() == piece.len() + 10));
        // Delivered: the message's buffer is the application's now.
        assert!(budget.used() < 300 << 10, "{role:?}: {}", budget.used());
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0, "{role:?}: all given back");
    }
}

#[test]
fn a_message_larger_than_the_whole_budget_fails_with_1009() {
    let budget = MemoryBudget::new(256 << 10);
    for role in [Role::Server, Role::Client] {
        let (clock, mut side) = lone(role, budgeted(&budget));
        let now = clock.now();
        side.feed(&frame_to(role, true, OP_BINARY, &vec![1u8; 300 << 10]), now);
        side.collect(now);
        side.transmit();
        assert_eq!(
            side.sent_frames().last().and_then(|f| f.close_code()),
            Some(1009),
            "{role:?}"
        );
        assert!(side.inbox.is_empty());
        drop(side);
        assert_eq!(budget.used(), 0);
    }
}

#[test]
fn a_claimed_frame_is_charged_only_as_its_bytes_arrive() {
    let budget = MemoryBudget::new(64 << 20);
    for role in [Role::Server, Role::Client] {
        let (clock, mut side) = lone(role, budgeted(&budget));
        let now = clock.now();
        // A header announcing 1 MiB (the frame limit), and one byte of it.
        let mut wire = header_only(role, OP_BINARY, 1 << 20);
        wire.push(0);
        side.feed(&wire, now);
        side.collect(now);
        assert!(side.conn.ending().is_none());
        assert!(
            budget.used() <= 16 << 10,
            "{role:?}: {} bytes charged for one byte",
            budget.used()
        );
        drop(side);
        assert_eq!(budget.used(), 0);
    }
}

// ------------------------------------------------------------ message timeout

#[test]
fn a_message_not_finished_within_the_message_timeout_fails_with_1008() {
    let limit = Duration::from_secs(60);
    for role in [Role::Server, Role::Client] {
        let s = Settings {
            message_timeout: Some(limit),
            ..settings()
        };
        let (clock, mut side) = lone(role, s);
        let t0 = clock.now();
        assert_eq!(
            side.conn.poll_timeout(),
            None,
            "{role:?}: no message, no timer"
        );
        // A whole message at once: no timer is left running.
        side.feed(&frame_to(role, true, OP_TEXT, b"hi"), t0);
        side.collect(t0);
        assert_eq!(side.conn.poll_timeout(), None, "{role:?}");
        // A message begins at 10 s; bytes that keep coming do not move
        // its deadline.
        let t10 = t0 + Duration::from_secs(10);
        side.feed(&frame_to(role, false, OP_BINARY, &[1; 100]), t10);
        assert_eq!(side.conn.poll_timeout(), Some(t10 + limit), "{role:?}");
        let t50 = t0 + Duration::from_secs(50);
        side.feed(&frame_to(role, false, OP_CONTINUATION, &[2; 100]), t50);
        assert_eq!(side.conn.poll_timeout(), Some(t10 + limit), "{role:?}");
        side.conn
            .handle_timeout(t10 + limit - Duration::from_nanos(1));
        side.transmit();
        assert!(side.sent_frames().is_empty(), "{role:?}: not yet");
        side.conn.handle_timeout(t10 + limit);
        side.transmit();
        assert_eq!(
            side.sent_frames().last().and_then(|f| f.close_code()),
            Some(1008),
            "{role:?}"
        );
        assert!(matches!(
            side.conn.failure(),
            Some(airws::proto::connection::Failure::MessageTimeout)
        ));
    }
}

#[test]
fn each_message_has_its_own_deadline() {
    let limit = Duration::from_secs(60);
    let s = Settings {
        message_timeout: Some(limit),
        ..settings()
    };
    let (clock, mut side) = lone(Role::Server, s);
    let t0 = clock.now();
    side.feed(&frame_to(Role::Server, false, OP_TEXT, b"a"), t0);
    let t30 = t0 + Duration::from_secs(30);
    // The first message ends and the next begins in the same read.
    let mut wire = frame_to(Role::Server, true, OP_CONTINUATION, b"b");
    wire.extend(frame_to(Role::Server, false, OP_BINARY, b"c"));
    side.feed(&wire, t30);
    side.collect(t30);
    assert_eq!(side.inbox, [text("ab")]);
    assert_eq!(side.conn.poll_timeout(), Some(t30 + limit));
}

#[test]
fn time_paused_by_the_application_is_left_out_of_the_idle_and_message_timeouts() {
    let s = Settings {
        idle_timeout: Some(Duration::from_secs(10)),
        message_timeout: Some(Duration::from_secs(4)),
        ..settings()
    };
    let (clock, mut server) = lone(Role::Server, s);
    let t0 = clock.now();
    let at = |secs: u64| t0 + Duration::from_secs(secs);
    // A message begins at 1 s: it must end by 5 s, and nothing may be quiet
    // past 11 s.
    server
        .conn
        .receive(&client_frame(false, OP_TEXT, b"par"), at(1));
    assert_eq!(server.conn.poll_timeout(), Some(at(5)));
    // The connection did not read from 2 s to 32 s (a full event queue):
    // both deadlines move by those 30 s.
    server.conn.shift_timers(Duration::from_secs(30));
    assert_eq!(server.conn.poll_timeout(), Some(at(35)));
    server.conn.handle_timeout(at(32));
    assert_eq!(server.conn.ending(), None);
    assert!(
        !server.conn.has_transmit(),
        "no close frame: {:?}",
        server.conn.failure()
    );
    // The message ends in time; the idle deadline is then 10 s after it.
    server
        .conn
        .receive(&client_frame(true, OP_CONTINUATION, b"t"), at(34));
    server.collect(at(34));
    assert_eq!(server.inbox, [text("part")]);
    assert_eq!(server.conn.poll_timeout(), Some(at(44)));
    // Without a pause the timers act as before.
    server.conn.handle_timeout(at(44));
    let mut out = Vec::new();
    assert!(server.conn.poll_transmit(&mut out));
    assert_eq!(frames(Role::Server, &out)[0].close_code(), Some(1001));
}

// ------------------------------------------------------------------ keepalive

fn keepalive(interval: u64, timeout: u64) -> Settings {
    Settings {
        keepalive: Some(Keepalive {
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(timeout),
        }),
        ..settings()
    }
}

/// Takes what `side` queued and returns it as frames.
fn sent_frames(side: &mut Side, role: Role) -> Vec<Frame> {
    let mut out = Vec::new();
    side.conn.poll_transmit(&mut out);
    frames(role, &out)
}

#[test]
fn keepalive_pings_after_the_interval_and_fails_a_silent_peer_at_once_with_1011() {
    let (clock, mut client) = lone(Role::Client, keepalive(10, 5));
    let t0 = clock.now();
    let at = |secs: u64| t0 + Duration::from_secs(secs);
    assert_eq!(client.conn.poll_timeout(), Some(at(10)));
    client.conn.handle_timeout(at(9));
    assert!(!client.conn.has_transmit(), "no ping before the interval");
    client.conn.handle_timeout(at(10));
    assert_eq!(
        sent_frames(&mut client, Role::Client),
        [Frame::new(true, OP_PING, &1u32.to_be_bytes())]
    );
    // The ping is out: the next deadline is the peer's last chance.
    assert_eq!(client.conn.poll_timeout(), Some(at(15)));
    client.conn.handle_timeout(at(12));
    assert!(!client.conn.has_transmit(), "one ping per silence");
    client.conn.handle_timeout(at(15) - Duration::from_nanos(1));
    assert_eq!(client.conn.ending(), None);
    client.conn.handle_timeout(at(15));
    // Dead: a close frame for the writer, and the end, without a wait.
    assert_eq!(client.conn.ending(), Some(Ending::Failed(1011)));
    assert_eq!(client.conn.failure(), Some(Failure::PeerDead));
    assert_eq!(client.conn.close_reason(Ending::Failed(1011)), 1011);
    assert_eq!(
        sent_frames(&mut client, Role::Client),
        [Frame::close(1011, "peer did not answer pings")]
    );
    assert_eq!(client.conn.poll_timeout(), None);
}

#[test]
fn any_frame_from_the_peer_is_a_sign_of_life_for_the_keepalive() {
    let (clock, mut server) = lone(Role::Server, keepalive(10, 5));
    let t0 = clock.now();
    let at = |secs: u64| t0 + Duration::from_secs(secs);
    server.conn.handle_timeout(at(10));
    assert_eq!(sent_frames(&mut server, Role::Server)[0].opcode, OP_PING);
    // Not the pong: a text message answers as well.
    server.feed(&client_frame(true, OP_TEXT, b"busy"), at(13));
    assert_eq!(server.inbox, [text("busy")]);
    assert_eq!(server.conn.poll_timeout(), Some(at(23)));
    server.conn.handle_timeout(at(15));
    assert_eq!(server.conn.ending(), None, "alive");
    // The next silence gets the next ping, which a pong answers.
    server.conn.handle_timeout(at(23));
    assert_eq!(
        sent_frames(&mut server, Role::Server),
        [Frame::new(true, OP_PING, &2u32.to_be_bytes())]
    );
    server.feed(&client_frame(true, OP_PONG, &2u32.to_be_bytes()), at(24));
    assert_eq!(server.conn.poll_timeout(), Some(at(34)));
    // One byte of a frame is enough.
    server.conn.handle_timeout(at(34));
    assert_eq!(sent_frames(&mut server, Role::Server)[0].opcode, OP_PING);
    let ping = client_frame(true, OP_PING, b"?");
    server.conn.receive(&ping[..1], at(38));
    server.conn.handle_timeout(at(39));
    assert_eq!(server.conn.ending(), None);
    assert_eq!(server.conn.poll_timeout(), Some(at(48)));
}

#[test]
fn keepalive_is_quiet_once_the_closing_handshake_began_and_starts_afresh_per_connection() {
    let (clock, mut client) = lone(Role::Client, keepalive(10, 5));
    let t0 = clock.now();
    let at = |secs: u64| t0 + Duration::from_secs(secs);
    assert!(client.conn.close(Some(1000), "", at(1)));
    let _ = sent_frames(&mut client, Role::Client);
    // The close timeout (not the keepalive) bounds the wait now.
    assert_eq!(client.conn.poll_timeout(), Some(at(1) + CLOSE_TIMEOUT));
    client.conn.handle_timeout(at(11));
    assert!(!client.conn.has_transmit(), "no ping after the close frame");
    // A new connection counts from its own start.
    let next = Connection::new(Role::Client, keepalive(10, 5), at(100));
    assert_eq!(next.poll_timeout(), Some(at(110)));
}
