//! One live connection in the blocking layer: the protocol state machine
//! ([`proto::connection::Connection`](crate::proto::connection::Connection))
//! behind a mutex that is only held for memory work, the writes of every
//! thread that sends, and the read loop of the connection's thread.
//!
//! Writes: whoever has bytes to send takes the *writer role* (a flag under
//! the mutex, not a lock held across the write), takes everything queued
//! from the protocol and writes it with no lock held, and goes on until the
//! queue is empty. A thread that finds another writing leaves its frames in
//! the queue for that writer: a pong or a close frame waits for at most the
//! frame being written. Large messages go out in fragments of
//! [`FRAGMENT_SIZE`], so that frame is never longer than that; only one
//! data message is under way at a time, so messages never interleave.

use crate::deadline::DeadlineReader;
use crate::error::{Error, Timeout};
use crate::proto::budget::{Charge, MemoryBudget};
use crate::proto::connection::{Connection, Ending, Failure, SendError, Settings};
use crate::proto::frame::{OP_CONTINUATION, OP_PING, OP_PONG};
use crate::proto::mask::extend_masked;
use crate::proto::receiver::Incoming;
use crate::proto::sender::OutgoingHeader;
use crate::proto::Role;
use crate::transport::{Transport, WriteClock};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

/// Data messages longer than this go out as several frames of at most
/// this size, so that a pong or a close frame never waits behind more
/// than this many bytes of another message (RFC 6455 §5.4 lets control
/// frames go between fragments).
pub(crate) const FRAGMENT_SIZE: usize = 1 << 20;
/// A server's frames up to this size are copied after their header into one
/// write; larger ones go out with their header in one vectored write.
const COALESCE_LIMIT: usize = 16 << 10;
/// The read buffer starts at 64 KiB, and grows to `READ_BUFFER_MAX` the
/// first time a read fills it: a connection that streams large messages then
/// takes several of them per system call.
const READ_BUFFER: usize = 64 << 10;
const READ_BUFFER_MAX: usize = 256 << 10;
/// Corked frames are written once they reach this many bytes.
const CORK_LIMIT: usize = 64 << 10;

/// How often an idle flusher thread looks whether its connection ended.
const FLUSHER_RECHECK: Duration = Duration::from_millis(250);
/// A payload with at least this much still to come is read straight into
/// its message, up to `DIRECT_READ_MAX` bytes per read, instead of through
/// the read buffer.
const DIRECT_READ_MIN: usize = 16 << 10;
const DIRECT_READ_MAX: usize = 256 << 10;
/// A client masks a large payload into its write buffer this much at a time.
const MASK_PIECE: usize = 64 << 10;
/// The writer keeps a buffer of at most this capacity between writes.
const KEEP_BUFFER: usize = 256 << 10;

/// What the mutex guards: the protocol and the writer role.
#[derive(Debug)]
struct Locked {
    proto: Connection,
    /// A thread is writing to the socket (the writer role).
    writing: bool,
    /// A write failed: the socket is shut down and nothing more is sent.
    broken: Option<io::ErrorKind>,
    /// The number of the take whose write failed.
    broken_take: u64,
    /// Queue takes begun and finished by writers: a sender whose frames are
    /// queued knows they are written when the next take has finished.
    takes_started: u64,
    takes_done: u64,
    /// The writer's buffers, lent to whoever holds the writer role.
    buf: Vec<u8>,
    tls_spare: Vec<u8>,
    /// Threads waiting on `Conn::changed`.
    waiters: usize,
    /// The flusher thread runs (it writes what non-blocking sends queue).
    flusher: bool,
}

/// A connection after its TCP (and TLS) setup.
#[derive(Debug)]
pub(crate) struct Conn {
    role: Role,
    pub(crate) transport: Transport,
    locked: Mutex<Locked>,
    /// Signalled when the writer role is released, a take is written, a
    /// message ends or the connection starts closing.
    changed: Condvar,
    /// Set by the connection's thread while it dispatches what one read
    /// brought: its own small sends are corked (queued without a write)
    /// until it is about to read again.
    cork: AtomicBool,
    finished: Mutex<bool>,
    finished_cv: Condvar,
    reader_thread: OnceLock<ThreadId>,
    /// The memory budget the read buffer's growth is charged to.
    budget: Option<MemoryBudget>,
    /// After this long without incoming data, the buffers grown by earlier
    /// traffic go back to their idle size.
    release_after: OnceLock<Duration>,
    /// The extensions agreed in the opening handshake.
    extensions: OnceLock<String>,
}

impl Conn {
    pub(crate) fn new(role: Role, transport: Transport, settings: Settings) -> Conn {
        let budget = settings.budget.clone();
        Conn {
            role,
            transport,
            locked: Mutex::new(Locked {
                proto: Connection::new(role, settings, Instant::now()),
                writing: false,
                broken: None,
                broken_take: 0,
                takes_started: 0,
                takes_done: 0,
                buf: Vec::new(),
                tls_spare: Vec::new(),
                waiters: 0,
                flusher: false,
            }),
            changed: Condvar::new(),
            cork: AtomicBool::new(false),
            finished: Mutex::new(false),
            finished_cv: Condvar::new(),
            reader_thread: OnceLock::new(),
            budget,
            release_after: OnceLock::new(),
            extensions: OnceLock::new(),
        }
    }

    /// Which end of the connection this is.
    pub(crate) fn role(&self) -> Role {
        self.role
    }

    fn lock(&self) -> MutexGuard<'_, Locked> {
        self.locked.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&'a self, mut guard: MutexGuard<'a, Locked>) -> MutexGuard<'a, Locked> {
        guard.waiters += 1;
        let mut guard = self.changed.wait(guard).unwrap_or_else(|p| p.into_inner());
        guard.waiters -= 1;
        guard
    }

    /// Wakes the threads waiting for a change, if any (a wake is a system
    /// call; most writes have nobody to wake).
    fn wake(&self, st: &Locked) {
        if st.waiters > 0 {
            self.changed.notify_all();
        }
    }

    /// Writes raw bytes (the handshake's HTTP head), before the connection
    /// is shared with other threads.
    pub(crate) fn write_raw(&self, data: &[u8]) -> io::Result<()> {
        let mut spare = Vec::new();
        self.transport.write_all(data, &mut spare)
    }

    /// Sends a data message (`OP_TEXT`, `OP_BINARY`) or a ping or pong;
    /// fails once a close frame was sent.
    ///
    /// A small message sent by a listener on the connection's thread is
    /// corked: written together with the others sent while handling the same
    /// read, just before the thread reads again. Any other send returns once
    /// its frames are written (by this thread, or by the one that was
    /// writing when they were queued).
    pub(crate) fn send(&self, opcode: u8, payload: &[u8]) -> Result<(), Error> {
        let control = opcode == OP_PING || opcode == OP_PONG;
        let mut st = self.lock();
        // A compressed message is compressed under the lock and queued
        // whole, so that the order of the compressor's messages is the
        // order on the wire.
        if control || payload.len() <= COALESCE_LIMIT || st.proto.will_compress(payload.len()) {
            st = self.wait_for_turn(st, control)?;
            if control {
                st.proto.send_frame(opcode, payload, true)
            } else {
                st.proto.send_message(opcode, payload, FRAGMENT_SIZE)
            }
            .map_err(send_error)?;
            if self.cork.load(Ordering::Relaxed)
                && st.proto.queued_len() < CORK_LIMIT
                && self.is_reader_thread()
            {
                return Ok(());
            }
            return self.flush(st, true).map(drop);
        }
        // One frame or several, each written from the caller's buffer: a
        // server's as it is, a client's masked a piece at a time.
        let mut rest = payload;
        let mut op = opcode;
        loop {
            let (piece, tail) = rest.split_at(rest.len().min(FRAGMENT_SIZE));
            let fin = tail.is_empty();
            st = self.write_direct(st, op, piece, fin)?;
            if fin {
                self.wake(&st);
                return Ok(());
            }
            rest = tail;
            op = OP_CONTINUATION;
        }
    }

    /// Queues a data message or a control frame for the flusher thread to
    /// write, and returns without touching the socket: the send of a
    /// pump's thread, which must not block. A message over
    /// [`FRAGMENT_SIZE`] is queued as several frames, at once, so no other
    /// frame goes between them. [`Error::BufferFull`] when `limit` bytes
    /// would be exceeded (a message alone larger than it is still queued
    /// when nothing else is). Waits only when another thread is in the
    /// middle of sending a message in fragments.
    pub(crate) fn send_nowait(
        self: &Arc<Self>,
        opcode: u8,
        payload: &[u8],
        limit: usize,
    ) -> Result<(), Error> {
        let control = opcode == OP_PING || opcode == OP_PONG;
        let mut st = self.wait_for_turn(self.lock(), control)?;
        let buffered = st.proto.queued_len();
        if buffered > 0 && buffered.saturating_add(payload.len()) > limit {
            return Err(Error::BufferFull {
                buffered: buffered as u64,
                limit: limit as u64,
            });
        }
        if control {
            st.proto.send_frame(opcode, payload, true)
        } else {
            st.proto.send_message(opcode, payload, FRAGMENT_SIZE)
        }
        .map_err(send_error)?;
        self.start_flusher(&mut st);
        self.wake(&st);
        Ok(())
    }

    /// permessage-deflate was agreed in the opening handshake (before the
    /// connection is shared with other threads).
    pub(crate) fn set_deflate(
        &self,
        agreement: &crate::proto::deflate::Agreement,
        config: &crate::proto::deflate::DeflateConfig,
    ) {
        self.lock().proto.set_deflate(agreement, config);
        let _ = self.extensions.set(agreement.response());
    }

    /// The extensions in use, as the server's response names them ("" for
    /// none).
    pub(crate) fn extensions(&self) -> String {
        self.extensions.get().cloned().unwrap_or_default()
    }

    /// What non-blocking sends queued and no writer has taken yet, in bytes.
    pub(crate) fn buffered(&self) -> usize {
        self.lock().proto.queued_len()
    }

    /// Starts the flusher thread unless it runs.
    fn start_flusher(self: &Arc<Self>, st: &mut Locked) {
        if st.flusher {
            return;
        }
        let conn = self.clone();
        let spawned = thread::Builder::new()
            .name("airws-flusher".into())
            .stack_size(64 << 10)
            .spawn(move || conn.flush_until_finished());
        match spawned {
            Ok(_) => st.flusher = true,
            // The read loop writes what is queued before its next read.
            Err(e) => log::warn!("cannot start the flusher thread: {e}"),
        }
    }

    /// The flusher thread: writes what is queued whenever no other thread
    /// holds the writer role, until the connection ends.
    fn flush_until_finished(&self) {
        let mut st = self.lock();
        loop {
            let finished = *self.finished.lock().unwrap_or_else(|p| p.into_inner());
            if finished || st.broken.is_some() || st.proto.ending().is_some() {
                break;
            }
            if !st.writing && (st.proto.has_transmit() || self.transport.has_pending_output()) {
                st = self.write_out(st, None);
                continue;
            }
            st.waiters += 1;
            let (guard, _) = self
                .changed
                .wait_timeout(st, FLUSHER_RECHECK)
                .unwrap_or_else(|p| p.into_inner());
            st = guard;
            st.waiters -= 1;
        }
        st.flusher = false;
    }

    /// Waits until a new data message may begin (no other one is being
    /// sent in fragments); `in_turn` (a control frame, or a further
    /// fragment of the caller's own message) need not wait.
    fn wait_for_turn<'a>(
        &'a self,
        mut st: MutexGuard<'a, Locked>,
        in_turn: bool,
    ) -> Result<MutexGuard<'a, Locked>, Error> {
        loop {
            if let Some(kind) = st.broken {
                return Err(self.broken_error(kind));
            }
            if st.proto.close_sent() {
                return Err(send_error(SendError::Closing));
            }
            if in_turn || !st.proto.sending_message() {
                return Ok(st);
            }
            st = self.wait(st);
        }
    }

    /// Gets what is queued written: takes the writer role and writes, or
    /// leaves it to the thread that holds the role. With `wait`, returns
    /// once the frames queued so far are written.
    fn flush<'a>(
        &'a self,
        mut st: MutexGuard<'a, Locked>,
        wait: bool,
    ) -> Result<MutexGuard<'a, Locked>, Error> {
        let mine = st.takes_started + 1;
        loop {
            if let Some(kind) = st.broken {
                // Frames written by an earlier take went out.
                if st.broken_take <= mine {
                    return Err(self.broken_error(kind));
                }
            }
            if st.takes_done >= mine {
                return Ok(st);
            }
            if !st.writing {
                if !st.proto.has_transmit() {
                    // Nothing is queued: what was went out with a take
                    // that has finished (the queue may have been taken
                    // between our queuing and this call).
                    return Ok(st);
                }
                st = self.write_out(st, None);
                continue;
            }
            if !wait {
                return Ok(st);
            }
            st = self.wait(st);
        }
    }

    /// Writes a frame whose payload is the caller's buffer (after what is
    /// queued before it), as the writer. A message's first frame also
    /// waits for its turn: the writer role is released between two
    /// fragments of another message, which must not be interleaved.
    fn write_direct<'a>(
        &'a self,
        mut st: MutexGuard<'a, Locked>,
        opcode: u8,
        payload: &[u8],
        fin: bool,
    ) -> Result<MutexGuard<'a, Locked>, Error> {
        let first = opcode != OP_CONTINUATION;
        loop {
            st = self.wait_for_turn(st, !first)?;
            if !st.writing {
                break;
            }
            st = self.wait(st);
        }
        let header = st
            .proto
            .frame_header(opcode, payload.len() as u64, fin)
            .map_err(send_error)?;
        st = self.write_out(st, Some((header, payload)));
        match st.broken {
            Some(kind) => Err(self.broken_error(kind)),
            None => Ok(st),
        }
    }

    /// Takes the writer role and writes until nothing is queued: `direct`
    /// first (a header and the payload it announces, after the frames
    /// queued before it). Returns with the role released.
    fn write_out<'a>(
        &'a self,
        mut st: MutexGuard<'a, Locked>,
        mut direct: Option<(OutgoingHeader, &[u8])>,
    ) -> MutexGuard<'a, Locked> {
        st.writing = true;
        let mut buf = std::mem::take(&mut st.buf);
        let mut spare = std::mem::take(&mut st.tls_spare);
        loop {
            if st.broken.is_some() {
                break;
            }
            if direct.is_none() && !st.proto.has_transmit() && !self.transport.has_pending_output()
            {
                break;
            }
            buf.clear();
            let shutdown = st.proto.poll_transmit(&mut buf);
            st.takes_started += 1;
            drop(st);
            // One deadline for the whole take, however many calls it needs.
            let mut clock = self.transport.start_write();
            let written = match direct.take() {
                Some((header, payload)) => match header.mask {
                    None => self.transport.write_all_parts(
                        &buf,
                        header.as_bytes(),
                        payload,
                        &mut spare,
                        &mut clock,
                    ),
                    Some(key) => {
                        self.write_masked(&mut buf, &header, payload, key, &mut spare, &mut clock)
                    }
                },
                None => self.transport.write_timed(&buf, &mut spare, &mut clock),
            };
            self.transport.end_write(&clock);
            if written.is_ok() && shutdown {
                self.transport.shutdown_write();
            }
            st = self.lock();
            st.takes_done += 1;
            if let Err(e) = written {
                log::debug!("write failed: {e}");
                st.broken_take = st.takes_done;
                // A partial frame cannot be continued: the stream is
                // broken, and the reader ends the connection.
                st.broken = Some(e.kind());
                st.proto.stream_failed();
                self.transport.shutdown();
            }
        }
        if buf.capacity() > KEEP_BUFFER {
            buf = Vec::new();
        }
        st.buf = buf;
        st.tls_spare = spare;
        st.writing = false;
        self.wake(&st);
        st
    }

    /// Writes `buf` (frames queued before), then a client's frame: its
    /// header and its payload masked with `key`, a piece at a time so that
    /// a large frame is never copied whole.
    fn write_masked(
        &self,
        buf: &mut Vec<u8>,
        header: &OutgoingHeader,
        payload: &[u8],
        key: [u8; 4],
        spare: &mut Vec<u8>,
        clock: &mut WriteClock,
    ) -> io::Result<()> {
        buf.extend_from_slice(header.as_bytes());
        // Pieces are a multiple of 4 bytes long: each starts at mask offset 0.
        for piece in payload.chunks(MASK_PIECE) {
            extend_masked(buf, piece, key, 0);
            self.transport.write_timed(buf, spare, clock)?;
            buf.clear();
        }
        if payload.is_empty() {
            self.transport.write_timed(buf, spare, clock)?;
        }
        Ok(())
    }

    /// Starts the closing handshake with `code` unless a close frame was
    /// sent. Returns whether it started it. The close frame goes out after
    /// the frame being written, if another thread is writing; else this
    /// thread writes it.
    pub(crate) fn send_close(&self, code: Option<u16>, reason: &str) -> io::Result<bool> {
        if !self.queue_close(code, reason) {
            return Ok(false);
        }
        self.flush_queued().map(|()| true)
    }

    /// Starts the closing handshake with `code` without writing anything:
    /// from now on nothing else may be sent. Returns false when a close
    /// frame was already sent. [`flush_queued`](Self::flush_queued) writes
    /// it.
    pub(crate) fn queue_close(&self, code: Option<u16>, reason: &str) -> bool {
        let mut st = self.lock();
        if !st.proto.close(code, reason, Instant::now()) {
            return false;
        }
        // Senders waiting for their turn give up.
        self.wake(&st);
        true
    }

    /// Writes what is queued, or leaves it to the thread that is writing.
    pub(crate) fn flush_queued(&self) -> io::Result<()> {
        let st = self.lock();
        match self.flush(st, false) {
            Ok(_) => Ok(()),
            Err(Error::Io { source, .. }) => Err(source),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    /// What a send fails with once a write failed with `kind`: the write
    /// timeout, or the I/O error.
    pub(crate) fn broken_error(&self, kind: io::ErrorKind) -> Error {
        let timeout = self.transport.write_timeout();
        Error::io_or_timeout(
            "The connection failed",
            io::Error::from(kind),
            Timeout::Write,
            timeout,
        )
    }

    /// Sets how long the connection must be quiet before its grown
    /// buffers go back to their idle size.
    pub(crate) fn set_release_after(&self, after: Duration) {
        let _ = self.release_after.set(after);
    }

    /// Gives back what earlier traffic grew, keeping only the idle size:
    /// the protocol's kept buffers and queues, the writer's batching
    /// buffer (unless a write is under way).
    fn release_buffers(&self, st: &mut Locked) {
        st.proto.release_buffers();
        if !st.writing {
            st.buf = Vec::new();
            st.tls_spare = Vec::new();
        }
    }

    /// Why a write failed, when one did.
    pub(crate) fn write_failure(&self) -> Option<Error> {
        let kind = self.lock().broken?;
        Some(self.broken_error(kind))
    }

    /// Why this end failed the connection, when it did.
    pub(crate) fn failure(&self) -> Option<Failure> {
        self.lock().proto.failure()
    }

    /// The close reason code for `ending`.
    pub(crate) fn close_reason(&self, ending: Ending) -> u16 {
        self.lock().proto.close_reason(ending)
    }

    /// The reason the peer's close frame gave ("" for none).
    pub(crate) fn peer_close_reason(&self) -> String {
        self.lock().proto.peer_close_reason().to_owned()
    }

    /// Records the calling thread as the one that runs the read loop.
    pub(crate) fn set_reader_thread(&self) {
        let _ = self.reader_thread.set(thread::current().id());
    }

    /// Whether the caller is the connection's own thread (inside a listener).
    pub(crate) fn is_reader_thread(&self) -> bool {
        self.reader_thread.get() == Some(&thread::current().id())
    }

    /// Ends our direction: TLS close_notify, then a TCP FIN. Used before
    /// the connection opens (after an HTTP error response).
    pub(crate) fn shutdown_write(&self) {
        self.transport.shutdown_write();
    }

    /// Marks the connection finished and wakes close timers.
    pub(crate) fn mark_finished(&self) {
        *self.finished.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.finished_cv.notify_all();
    }

    /// Waits up to `timeout` for the connection to finish; closes the socket
    /// if it has not. Run by the close timer after a local `close()` from a
    /// thread other than the connection's, whose read does not see the
    /// closing handshake's deadline.
    pub(crate) fn finish_within(&self, timeout: Duration) {
        let guard = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .finished_cv
            .wait_timeout_while(guard, timeout, |done| !*done)
            .unwrap_or_else(|p| p.into_inner());
        if !*guard {
            log::debug!(
                "the peer did not finish the closing handshake in {timeout:?}; closing the socket"
            );
            self.transport.shutdown();
        }
    }
}

fn send_error(e: SendError) -> Error {
    match e {
        SendError::Closing => {
            Error::illegal("the WebSocket is closing: no message may follow the close frame")
        }
        SendError::Random(e) => {
            Error::io("No random numbers for a masking key", io::Error::other(e))
        }
        other => Error::illegal(other.to_string()),
    }
}

/// The read loop's buffer, placed half-way into a page of its allocation.
///
/// The kernel copies received data into it with the same string instruction
/// as `memcpy` (see `proto::bytes`), which slows down when the destination
/// lies a few bytes after the source modulo 4 KiB. The source is the
/// sender's socket buffer pages, which on loopback start at page boundaries,
/// while a heap block starts 16 bytes into a page: exactly such a distance.
/// Half a page away, pipelined 64 KiB messages went 7–10% faster.
struct ReadBuffer {
    backing: Vec<u8>,
    start: usize,
    len: usize,
}

impl ReadBuffer {
    const PAGE: usize = 4096;

    fn new(len: usize) -> ReadBuffer {
        let backing = vec![0u8; len + Self::PAGE];
        let at = backing.as_ptr() as usize % Self::PAGE;
        let start = (Self::PAGE + Self::PAGE / 2 - at) % Self::PAGE;
        ReadBuffer {
            backing,
            start,
            len,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.backing[self.start..self.start + self.len]
    }
}

/// Where the read loop delivers text and binary messages.
pub(crate) trait Deliver {
    /// A complete message. Returns its buffer when it comes back after the
    /// dispatch, for the next message to reuse.
    fn message(&mut self, msg: Incoming) -> Option<Vec<u8>>;
    /// Everything that one read brought was delivered.
    fn read_done(&mut self);
    /// How long the deliveries since the last call waited (for room in a
    /// pump's queue), not reading: the protocol's timers leave it out.
    fn take_paused(&mut self) -> Duration {
        Duration::ZERO
    }
}

/// The read loop: moves bytes from the socket into the protocol, writes
/// what it answers, waits (in the read) until its next deadline, and
/// delivers messages; runs until the protocol says the connection ended.
/// Returns the ending, and the error of the read that broke it, if one did.
pub(crate) fn read_loop(
    conn: &Conn,
    leftover: &[u8],
    deliver: &mut dyn Deliver,
) -> (Ending, Option<io::Error>) {
    let mut buf = ReadBuffer::new(READ_BUFFER);
    let mut buf_charge = Charge::new(conn.budget.clone());
    let mut cipher = Vec::new();
    // Each read waits at most until the protocol's next deadline.
    let mut reader = DeadlineReader::new(conn.transport.socket(), None, None, "read timed out");
    let mut messages = Vec::new();
    let mut recycled = Vec::new();
    // When data last arrived, while the buffers it may have grown are
    // kept (`None` once they were given back).
    let release_after = conn.release_after.get().copied();
    let mut last_data: Option<Instant> = Some(Instant::now());
    let mut st = conn.lock();
    if !leftover.is_empty() {
        let now = Instant::now();
        st.proto.receive(leftover, now);
        st = dispatch(conn, st, &mut messages, &mut recycled, deliver, now);
    }
    loop {
        // One lock for everything before the read: what listeners
        // sent, pongs and close frames (written now, or after the frame
        // another thread is writing), the next deadline, the room to read
        // into.
        // (A deadline that has passed makes the read below time out at once.)
        if st.broken.is_some() {
            // A write failed (which ended the stream): nothing more is
            // read, parsed or answered.
            return (st.proto.ending().unwrap_or(Ending::Broken), None);
        }
        if st.proto.has_transmit() {
            st = match conn.flush(st, false) {
                Ok(st) => st,
                Err(_) => conn.lock(),
            };
        } else if conn.transport.has_pending_output() && !st.writing {
            st = conn.write_out(st, None);
        }
        if let Some(ending) = st.proto.ending() {
            return (ending, None);
        }
        let release_at = release_after
            .zip(last_data)
            .map(|(after, last)| last + after);
        reader.deadline = match (st.proto.poll_timeout(), release_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut room = st.proto.lend_room(DIRECT_READ_MIN, DIRECT_READ_MAX);
        drop(st);

        if cipher.is_empty() && conn.transport.is_tls() {
            cipher = vec![0u8; 32 << 10];
        }
        let target = match &mut room {
            Some(room) => room.bytes(),
            None => buf.bytes(),
        };
        let result = reader.read(|| conn.transport.read(target, &mut cipher));

        let now = Instant::now();
        st = conn.lock();
        let n = *result.as_ref().unwrap_or(&0);
        if n > 0 {
            last_data = Some(now);
        }
        let direct = room.is_some();
        match room {
            Some(room) => st.proto.return_room(room, n, now),
            None if n > 0 => st.proto.receive(&buf.bytes()[..n], now),
            None => {}
        }
        match result {
            Ok(0) => st.proto.receive_eof(),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if release_at.is_some_and(|at| now >= at) {
                    if st.proto.receiver_is_idle() {
                        // Quiet for long enough: back to the idle size.
                        conn.release_buffers(&mut st);
                        if buf.len() > READ_BUFFER {
                            buf = ReadBuffer::new(READ_BUFFER);
                            buf_charge.set(0);
                        }
                        cipher = Vec::new();
                        messages = Vec::new();
                        recycled = Vec::new();
                        last_data = None;
                    } else {
                        // In the middle of a message: look again later.
                        last_data = Some(now);
                    }
                }
                st.proto.handle_timeout(now);
                if st.proto.failure() == Some(Failure::PeerDead) {
                    // A peer declared dead is not waited for: its close
                    // frame goes out only if it can at once.
                    let _ = conn
                        .transport
                        .set_write_timeout(Some(Duration::from_millis(1)));
                }
            }
            Err(e) => {
                st.proto.stream_failed();
                if let Some(ending) = st.proto.ending() {
                    return (ending, Some(e));
                }
            }
        }
        // Its bytes consumed, a buffer that one read filled is replaced by
        // a larger one.
        // (Charged to the memory budget; without room in it the buffer
        // stays as it is.)
        if !direct
            && n == buf.len()
            && buf.len() < READ_BUFFER_MAX
            && buf_charge.set(READ_BUFFER_MAX - READ_BUFFER)
        {
            buf = ReadBuffer::new(READ_BUFFER_MAX);
        }
        st = dispatch(conn, st, &mut messages, &mut recycled, deliver, now);
    }
}

/// Delivers what one read completed, in order with the protocol's answers
/// to the control frames among it, with the connection's own small sends
/// corked until the loop is about to read again. Takes the lock `st`,
/// releases it while listeners run, and returns it taken again, with the
/// delivered buffers given back to the receiver.
fn dispatch<'a>(
    conn: &'a Conn,
    mut st: MutexGuard<'a, Locked>,
    messages: &mut Vec<Incoming>,
    recycled: &mut Vec<Vec<u8>>,
    deliver: &mut dyn Deliver,
    now: Instant,
) -> MutexGuard<'a, Locked> {
    // After a failed write, what was read is not parsed further: its
    // pings would only queue pongs that cannot be sent.
    while st.broken.is_none() && st.proto.has_messages() {
        st.proto.poll_messages(now, messages);
        if messages.is_empty() {
            continue;
        }
        drop(st);
        conn.cork.store(true, Ordering::Relaxed);
        for msg in messages.drain(..) {
            match msg {
                Incoming::Pong(_) => log::trace!("pong received"),
                msg => recycled.extend(deliver.message(msg)),
            }
        }
        // Without the lock: this may drop the application's last handle,
        // which closes the connection.
        deliver.read_done();
        conn.cork.store(false, Ordering::Relaxed);
        let paused = deliver.take_paused();
        st = conn.lock();
        if !paused.is_zero() {
            st.proto.shift_timers(paused);
        }
        for b in recycled.drain(..) {
            st.proto.recycle(b);
        }
    }
    st
}
