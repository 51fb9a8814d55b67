//! One live connection: its writer (shared by every thread that sends) and
//! the read loop that runs on the connection's thread.

use crate::error::Error;
use crate::proto::bytes::append;
use crate::proto::close::{self, ABNORMAL};
use crate::proto::frame::{OP_CLOSE, OP_PONG};
use crate::proto::mask::extend_masked;
use crate::proto::receiver::{Incoming, Receiver};
use crate::proto::sender::{CloseHandshake, Sender};
use crate::proto::Role;
use crate::transport::Transport;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

/// Mask and write a client's payload in pieces of this size.
const WRITE_CHUNK: usize = 64 << 10;
/// Payloads up to this size go out in one write with their header.
const COALESCE_LIMIT: usize = 16 << 10;
/// The read buffer starts at 64 KiB, and grows to `READ_BUFFER_MAX` the
/// first time a read fills it: a connection that streams large messages then
/// takes several of them per system call.
const READ_BUFFER: usize = 64 << 10;
const READ_BUFFER_MAX: usize = 256 << 10;
/// Corked frames are written once they reach this many bytes.
const CORK_LIMIT: usize = 64 << 10;
/// A payload with at least this much still to come is read straight into
/// its message, up to `DIRECT_READ_MAX` bytes per read, instead of through
/// the read buffer.
const DIRECT_READ_MIN: usize = 16 << 10;
const DIRECT_READ_MAX: usize = 256 << 10;

/// The state every sender shares, behind the writer lock.
#[derive(Debug)]
pub(crate) struct Writer {
    sender: Sender,
    close: CloseHandshake,
    scratch: Vec<u8>,
    spare: Vec<u8>,
    /// Frames sent by listeners while the connection's thread handles what
    /// one read brought, written together before it reads again (corking).
    corked: Vec<u8>,
}

/// A connection after its TCP (and TLS) setup.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) role: Role,
    pub(crate) transport: Transport,
    writer: Mutex<Writer>,
    /// Mirrors `Writer::close.sent()`, readable without the writer lock.
    close_sent: AtomicBool,
    /// Set by the connection's thread while it dispatches what one read
    /// brought: its own sends are corked until it is about to read again.
    cork: AtomicBool,
    /// Whether `Writer::corked` holds frames, readable without the writer
    /// lock: the read loop locks the writer before a read only when it does,
    /// so it never waits behind another thread's long write for nothing.
    has_corked: AtomicBool,
    finished: Mutex<bool>,
    finished_cv: Condvar,
    reader_thread: OnceLock<ThreadId>,
}

impl Conn {
    pub(crate) fn new(role: Role, transport: Transport) -> Conn {
        Conn {
            role,
            transport,
            writer: Mutex::new(Writer {
                sender: Sender::new(role),
                close: CloseHandshake::default(),
                scratch: Vec::new(),
                spare: Vec::new(),
                corked: Vec::new(),
            }),
            cork: AtomicBool::new(false),
            has_corked: AtomicBool::new(false),
            close_sent: AtomicBool::new(false),
            finished: Mutex::new(false),
            finished_cv: Condvar::new(),
            reader_thread: OnceLock::new(),
        }
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether another thread holds the writer (a write in progress).
    pub(crate) fn writer_busy(&self) -> bool {
        matches!(
            self.writer.try_lock(),
            Err(std::sync::TryLockError::WouldBlock)
        )
    }

    /// Writes raw bytes (the handshake's HTTP head).
    pub(crate) fn write_raw(&self, data: &[u8]) -> io::Result<()> {
        let mut w = self.writer();
        self.transport.write_all(data, &mut w.spare)
    }

    /// Writes one frame. A failed write leaves a partial frame on the wire,
    /// so the connection cannot go on: the socket is shut down.
    fn write_frame(&self, w: &mut Writer, opcode: u8, payload: &[u8]) -> io::Result<()> {
        // Corked frames were sent first: they go first.
        let result = self
            .write_corked(w)
            .and_then(|()| self.write_frame_inner(w, opcode, payload));
        if result.is_err() {
            self.transport.shutdown();
        }
        result
    }

    fn write_frame_inner(&self, w: &mut Writer, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let h = w
            .sender
            .header(opcode, payload.len() as u64)
            .map_err(io::Error::other)?;
        let Writer { scratch, spare, .. } = w;
        match h.mask {
            None if payload.len() > COALESCE_LIMIT => {
                self.transport.write_all_parts(h.as_bytes(), payload, spare)
            }
            None => {
                scratch.clear();
                scratch.extend_from_slice(h.as_bytes());
                append(scratch, payload);
                self.transport.write_all(scratch, spare)
            }
            Some(key) => {
                scratch.clear();
                scratch.extend_from_slice(h.as_bytes());
                if payload.is_empty() {
                    return self.transport.write_all(scratch, spare);
                }
                for (i, chunk) in payload.chunks(WRITE_CHUNK).enumerate() {
                    if i > 0 {
                        scratch.clear();
                    }
                    extend_masked(scratch, chunk, key, 0);
                    self.transport.write_all(scratch, spare)?;
                }
                Ok(())
            }
        }
    }

    fn write_corked(&self, w: &mut Writer) -> io::Result<()> {
        if w.corked.is_empty() {
            return Ok(());
        }
        let Writer { corked, spare, .. } = w;
        let result = self.transport.write_all(corked, spare);
        corked.clear();
        self.has_corked.store(false, Ordering::SeqCst);
        result
    }

    /// Appends a frame to the corked bytes.
    fn cork_frame(w: &mut Writer, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let h = w
            .sender
            .header(opcode, payload.len() as u64)
            .map_err(io::Error::other)?;
        w.corked.extend_from_slice(h.as_bytes());
        match h.mask {
            Some(key) => extend_masked(&mut w.corked, payload, key, 0),
            None => append(&mut w.corked, payload),
        }
        Ok(())
    }

    /// Writes what was corked; the connection's thread calls it before it
    /// blocks in a read again.
    pub(crate) fn uncork(&self) {
        self.cork.store(false, Ordering::SeqCst);
        if !self.has_corked.load(Ordering::SeqCst) {
            return;
        }
        let mut w = self.writer();
        if let Err(e) = self.write_corked(&mut w) {
            log::debug!("writing corked frames failed: {e}");
            self.transport.shutdown();
        }
    }

    /// Sends a data or control message; fails once a close frame was sent.
    ///
    /// A small message sent by a listener on the connection's thread is
    /// corked: written together with the others sent while handling the same
    /// read, just before the thread reads again. Any other send goes out at
    /// once (after what was corked).
    pub(crate) fn send(&self, opcode: u8, payload: &[u8]) -> Result<(), Error> {
        let mut w = self.writer();
        if w.close.sent() {
            return Err(Error::illegal(
                "the WebSocket is closing: no message may follow the close frame",
            ));
        }
        if payload.len() <= COALESCE_LIMIT
            && self.cork.load(Ordering::SeqCst)
            && self.is_reader_thread()
        {
            let mut result = Self::cork_frame(&mut w, opcode, payload);
            self.has_corked.store(true, Ordering::SeqCst);
            if result.is_ok() && w.corked.len() >= CORK_LIMIT {
                result = self.write_corked(&mut w);
                if result.is_err() {
                    self.transport.shutdown();
                }
            }
            return result.map_err(Error::Io);
        }
        let result = self.write_frame(&mut w, opcode, payload);
        drop(w);
        result.map_err(|e| {
            // The reader will see the broken socket and report it.
            self.transport.shutdown();
            Error::Io(e)
        })
    }

    /// Sends a close frame unless one was sent. Returns whether it sent one.
    pub(crate) fn send_close(&self, code: Option<u16>, reason: &str) -> io::Result<bool> {
        let mut w = self.writer();
        if !w.close.local_close(code) {
            return Ok(false);
        }
        self.close_sent.store(true, Ordering::SeqCst);
        let payload = close::build_payload(code, reason);
        self.write_frame(&mut w, OP_CLOSE, &payload)?;
        Ok(true)
    }

    /// Answers a ping at once.
    fn send_pong(&self, payload: &[u8]) -> io::Result<()> {
        let mut w = self.writer();
        if w.close.sent() {
            return Ok(());
        }
        self.write_frame(&mut w, OP_PONG, payload)
    }

    /// Records the peer's close frame and answers it with the same code if we
    /// had not sent one.
    fn on_remote_close(&self, code: Option<u16>) -> io::Result<()> {
        let mut w = self.writer();
        if let Some(reply) = w.close.remote_close(code) {
            self.close_sent.store(true, Ordering::SeqCst);
            let payload = close::build_payload(reply, "");
            self.write_frame(&mut w, OP_CLOSE, &payload)?;
        }
        Ok(())
    }

    /// Whether a close frame was sent (or is being sent).
    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent.load(Ordering::SeqCst)
    }

    fn close_state(&self) -> CloseHandshake {
        self.writer().close
    }

    fn flush_tls_output(&self) {
        let mut w = self.writer();
        if let Err(e) = self.transport.write_all(&[], &mut w.spare) {
            log::debug!("writing TLS output failed: {e}");
        }
    }

    /// Records the calling thread as the one that runs the read loop.
    pub(crate) fn set_reader_thread(&self) {
        let _ = self.reader_thread.set(thread::current().id());
    }

    /// Whether the caller is the connection's own thread (inside a listener).
    pub(crate) fn is_reader_thread(&self) -> bool {
        self.reader_thread.get() == Some(&thread::current().id())
    }

    /// Ends our direction: TLS close_notify, then a TCP FIN.
    pub(crate) fn shutdown_write(&self) {
        let _w = self.writer();
        self.transport.shutdown_write();
    }

    /// Marks the connection finished and wakes close timers.
    pub(crate) fn mark_finished(&self) {
        *self.finished.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.finished_cv.notify_all();
    }

    /// Waits up to `timeout` for the connection to finish; closes the socket
    /// if it has not. Run by the close timer after a local `close()`.
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

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The closing handshake completed (or we gave up waiting for its end).
    Closed,
    /// We failed the connection for a protocol violation.
    Failed(u16),
    /// The stream ended without a close frame.
    Dropped,
    /// The socket failed.
    IoError(io::Error),
}

/// The read loop's timeouts (from `Config`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// How long to wait for the peer's part of the closing handshake.
    pub(crate) close: Duration,
    /// Close the connection when nothing arrives for this long.
    pub(crate) idle: Option<Duration>,
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
}

/// The read loop: runs until the connection ends, answering pings and close
/// frames, failing the connection on a protocol violation.
pub(crate) fn read_loop(
    conn: &Conn,
    receiver: &mut Receiver,
    leftover: &[u8],
    timeouts: Timeouts,
    deliver: &mut dyn Deliver,
) -> Ending {
    let close_timeout = timeouts.close;
    let mut buf = ReadBuffer::new(READ_BUFFER);
    let mut cipher = Vec::new();
    let mut deadline: Option<Instant> = None;
    let mut failed: Option<u16> = None;
    // The read timeout now set on the socket, to change it only when needed.
    let mut read_timeout: Option<Duration> = None;
    let mut pending = leftover.to_vec();
    let mut out = Vec::new();
    loop {
        // Where this read goes: the read buffer, or straight into the
        // message being assembled when a large payload is under way.
        let mut direct = false;
        let n = if !pending.is_empty() {
            let buf = buf.bytes();
            let n = pending.len().min(buf.len());
            buf[..n].copy_from_slice(&pending[..n]);
            pending.drain(..n);
            n
        } else {
            if deadline.is_none() && conn.close_sent() {
                // A local close(): wait a bounded time for the peer's answer.
                deadline = Some(Instant::now() + close_timeout);
            }
            let wanted = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return failed.map_or(Ending::Closed, Ending::Failed);
                    }
                    Some(d - now)
                }
                None => timeouts.idle,
            };
            if wanted != read_timeout {
                let _ = conn.transport.socket().set_read_timeout(wanted);
                read_timeout = wanted;
            }
            if cipher.is_empty() && conn.transport.is_tls() {
                cipher = vec![0u8; 32 << 10];
            }
            let room = if receiver.is_finished() {
                None
            } else {
                receiver.payload_room(DIRECT_READ_MIN, DIRECT_READ_MAX)
            };
            direct = room.is_some();
            let target = match room {
                Some(room) => room,
                None => buf.bytes(),
            };
            match conn.transport.read(target, &mut cipher) {
                Ok(0) => {
                    if let Some(code) = failed {
                        return Ending::Failed(code);
                    }
                    let st = conn.close_state();
                    return if st.received() || st.sent() {
                        Ending::Closed
                    } else {
                        Ending::Dropped
                    };
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if deadline.is_none()
                        && matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                {
                    // Nothing arrived for the idle timeout: close with 1001.
                    log::debug!("idle for {:?}: closing", timeouts.idle);
                    failed = Some(close::GOING_AWAY);
                    if let Err(e) = conn.send_close(Some(close::GOING_AWAY), "idle timeout") {
                        log::debug!("sending the close frame failed: {e}");
                    }
                    if conn.role == Role::Server {
                        conn.shutdown_write();
                    }
                    deadline = Some(Instant::now() + close_timeout);
                    continue;
                }
                Err(e) => {
                    if let Some(code) = failed {
                        return Ending::Failed(code);
                    }
                    let closing = deadline.is_some() || conn.close_sent();
                    return if closing {
                        Ending::Closed
                    } else {
                        Ending::IoError(e)
                    };
                }
            }
        };
        if conn.transport.has_pending_output() {
            conn.flush_tls_output();
        }
        if receiver.is_finished() {
            continue; // draining until the peer closes
        }
        conn.cork.store(true, Ordering::SeqCst);
        let result = if direct {
            receiver.commit_room(n, &mut out)
        } else {
            receiver.receive(&buf.bytes()[..n], &mut out)
        };
        // Its bytes consumed, a buffer that one read filled is replaced by
        // a larger one.
        if !direct && n == buf.len() && buf.len() < READ_BUFFER_MAX {
            buf = ReadBuffer::new(READ_BUFFER_MAX);
        }
        for msg in out.drain(..) {
            match msg {
                Incoming::Ping(payload) => {
                    if let Err(e) = conn.send_pong(&payload) {
                        log::debug!("sending a pong failed: {e}");
                    }
                }
                Incoming::Pong(_) => log::trace!("pong received"),
                Incoming::Close(parsed) => {
                    let code = parsed.as_ref().map(|(c, _)| *c);
                    log::debug!("close frame received: {parsed:?}");
                    if let Err(e) = conn.on_remote_close(code) {
                        log::debug!("answering the close frame failed: {e}");
                    }
                    // The server closes the TCP connection first; the client
                    // waits (a bounded time) for it to do so.
                    if conn.role == Role::Server {
                        conn.shutdown_write();
                    }
                    deadline.get_or_insert(Instant::now() + close_timeout);
                }
                msg => {
                    if let Some(buf) = deliver.message(msg) {
                        receiver.recycle(buf);
                    }
                }
            }
        }
        if let Err(violation) = result {
            log::debug!("failing the connection: {violation}");
            failed = Some(violation.code);
            match conn.send_close(Some(violation.code), violation.reason) {
                Ok(_) => {}
                Err(e) => log::debug!("sending the close frame failed: {e}"),
            }
            if conn.role == Role::Server {
                conn.shutdown_write();
            }
            deadline.get_or_insert(Instant::now() + close_timeout);
        }
        deliver.read_done();
        // About to read again: what listeners sent goes out now.
        conn.uncork();
    }
}

/// The close reason code for an ending.
pub(crate) fn reason_code(conn: &Conn, ending: &Ending) -> u16 {
    match ending {
        Ending::Failed(code) => *code,
        Ending::Closed => conn.close_state().reason().unwrap_or(ABNORMAL),
        Ending::Dropped | Ending::IoError(_) => {
            // A close frame we received still counts, whatever came after.
            let st = conn.close_state();
            if st.received() {
                st.reason().unwrap_or(ABNORMAL)
            } else {
                ABNORMAL
            }
        }
    }
}
