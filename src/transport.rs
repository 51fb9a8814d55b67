//! The blocking transport under a connection: plain TCP, or TLS.
//!
//! A `native_tls::TlsStream` cannot be split into a read half and a write
//! half, and its methods need `&mut self`. So the TLS session is driven over an
//! in-memory buffer pair ([`MemIo`]) instead of the socket: the session only
//! encrypts and decrypts, under a mutex that is never held across a blocking
//! call. The reader thread reads ciphertext from the socket with no lock
//! held, then locks the session just long enough to decrypt it;
//! a sender locks the session just long enough to encrypt, then writes the
//! ciphertext to the socket. See `docs/architecture.md`.

use native_tls::{HandshakeError, TlsStream};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Encrypt at most this much plaintext at a time, so that a large message
/// does not produce its whole ciphertext in memory at once.
const TLS_CHUNK: usize = 64 << 10;

/// The byte stream a TLS session runs over: what the peer sent, not yet
/// decrypted, and what the session produced, not yet written to the socket.
#[derive(Debug, Default)]
pub(crate) struct MemIo {
    incoming: Vec<u8>,
    read_pos: usize,
    outgoing: Vec<u8>,
}

impl Read for MemIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = &self.incoming[self.read_pos..];
        if avail.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.read_pos += n;
        if self.read_pos == self.incoming.len() {
            self.incoming.clear();
            self.read_pos = 0;
        }
        Ok(n)
    }
}

impl Write for MemIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MemIo {
    fn feed(&mut self, ciphertext: &[u8]) {
        if self.read_pos > 0 {
            self.incoming.drain(..self.read_pos);
            self.read_pos = 0;
        }
        self.incoming.extend_from_slice(ciphertext);
    }
}

/// Why a TLS handshake failed.
#[derive(Debug)]
pub(crate) enum TlsFailure {
    /// The socket failed or closed.
    Io(io::Error),
    /// The TLS layer refused (certificate, protocol version, ...).
    Tls(native_tls::Error),
    /// The peer does not speak TLS: its first bytes are not a TLS record
    /// (a plain HTTP or WebSocket endpoint). Carries the start of what it
    /// sent, as printable text.
    NotTls(String),
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFailure::Io(e) => write!(f, "{e}"),
            TlsFailure::Tls(e) => write!(f, "{e}"),
            TlsFailure::NotTls(start) => {
                write!(f, "the peer does not speak TLS (it sent \"{start}\")")
            }
        }
    }
}

/// Whether `first` can begin a TLS record: its content type (change
/// cipher spec, alert, handshake or application data, RFC 8446 §5.1).
fn starts_tls_record(first: u8) -> bool {
    (20..=23).contains(&first)
}

/// The first line of `bytes`, at most 60 characters, with anything that is
/// not printable ASCII shown as `\xNN`.
fn printable_start(bytes: &[u8]) -> String {
    let line = bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let mut out = String::new();
    for &b in line.iter().take(60) {
        if b.is_ascii_graphic() || b == b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn write_out(mut tcp: &TcpStream, io: &mut MemIo) -> io::Result<()> {
    if !io.outgoing.is_empty() {
        tcp.write_all(&io.outgoing)?;
        io.outgoing.clear();
    }
    Ok(())
}

/// Runs a TLS handshake that was started over a [`MemIo`], moving its bytes
/// to and from `tcp` until it completes, or fails at `deadline` (a peer that
/// sends a byte now and then cannot keep it going).
pub(crate) fn drive_handshake(
    mut result: Result<TlsStream<MemIo>, HandshakeError<MemIo>>,
    tcp: &TcpStream,
    deadline: Instant,
) -> Result<TlsStream<MemIo>, TlsFailure> {
    let mut buf = vec![0u8; 16 << 10];
    let mut first_read = true;
    let mut reader = crate::deadline::DeadlineReader::new(
        tcp,
        Some(deadline),
        None,
        "the TLS handshake timed out",
    );
    loop {
        match result {
            Ok(mut s) => {
                write_out(tcp, s.get_mut()).map_err(TlsFailure::Io)?;
                return Ok(s);
            }
            Err(HandshakeError::Failure(e)) => return Err(TlsFailure::Tls(e)),
            Err(HandshakeError::WouldBlock(mut mid)) => {
                write_out(tcp, mid.get_mut()).map_err(TlsFailure::Io)?;
                let n = reader
                    .read(|| (&*tcp).read(&mut buf))
                    .map_err(TlsFailure::Io)?;
                if n == 0 {
                    return Err(TlsFailure::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection during the TLS handshake",
                    )));
                }
                if std::mem::take(&mut first_read) && !starts_tls_record(buf[0]) {
                    return Err(TlsFailure::NotTls(printable_start(&buf[..n])));
                }
                mid.get_mut().feed(&buf[..n]);
                result = mid.handshake();
            }
        }
    }
}

/// A connection's byte stream.
///
/// One socket (one file descriptor) serves the reader thread and every
/// sender: reads and writes go through `&TcpStream`, and writes are
/// serialized by the connection's writer role.
#[derive(Debug)]
pub(crate) struct Transport {
    tcp: Arc<TcpStream>,
    tls: Option<Mutex<TlsStream<MemIo>>>,
    /// What one write (a frame, or what is queued) may take in all,
    /// partial writes included; `None`: no limit. The socket's send
    /// timeout is this, shortened while a write has made partial progress.
    write_timeout: AtomicU64,
}

/// `Transport::write_timeout` when there is none.
const NO_TIMEOUT: u64 = u64::MAX;

/// The deadline of one write, partial writes included.
pub(crate) struct WriteClock {
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// The socket's send timeout was shortened: restore it at the end.
    shortened: bool,
}

impl Transport {
    pub(crate) fn plain(tcp: Arc<TcpStream>) -> Transport {
        Transport {
            tcp,
            tls: None,
            write_timeout: AtomicU64::new(NO_TIMEOUT),
        }
    }

    pub(crate) fn tls(tcp: Arc<TcpStream>, session: TlsStream<MemIo>) -> Transport {
        Transport {
            tcp,
            tls: Some(Mutex::new(session)),
            write_timeout: AtomicU64::new(NO_TIMEOUT),
        }
    }

    /// Sets how long one write may take, partial writes included.
    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        let nanos = timeout.map_or(NO_TIMEOUT, |t| {
            u64::try_from(t.as_nanos()).unwrap_or(NO_TIMEOUT - 1)
        });
        self.write_timeout.store(nanos, Ordering::Relaxed);
        self.tcp.set_write_timeout(timeout)
    }

    /// How long one write may take.
    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        match self.write_timeout.load(Ordering::Relaxed) {
            NO_TIMEOUT => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// Starts the clock of one write, which may take several calls (a
    /// client's frame is masked and written in pieces): pass it to each,
    /// then to [`end_write`](Self::end_write).
    pub(crate) fn start_write(&self) -> WriteClock {
        let timeout = self.write_timeout();
        WriteClock {
            timeout,
            deadline: timeout.map(|t| Instant::now() + t),
            shortened: false,
        }
    }

    /// Ends the clock of one write: the send timeout is the whole again.
    pub(crate) fn end_write(&self, clock: &WriteClock) {
        if clock.shortened {
            let _ = self.tcp.set_write_timeout(clock.timeout);
        }
    }

    /// `parts` to the socket in order, in as few writes as the kernel
    /// allows, by the clock's deadline: after a partial write the socket's
    /// send timeout is what is left, so that a peer that reads a little now
    /// and then cannot make one write last longer than the timeout.
    fn send(&self, mut parts: [&[u8]; 3], clock: &mut WriteClock) -> io::Result<()> {
        let mut tcp = &*self.tcp;
        let mut first = 0;
        loop {
            while first < parts.len() && parts[first].is_empty() {
                first += 1;
            }
            if first == parts.len() {
                return Ok(());
            }
            let slices = [
                IoSlice::new(parts[0]),
                IoSlice::new(parts[1]),
                IoSlice::new(parts[2]),
            ];
            match tcp.write_vectored(&slices[first..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    for part in parts[first..].iter_mut() {
                        let take = n.min(part.len());
                        *part = &part[take..];
                        n -= take;
                        if n == 0 {
                            break;
                        }
                    }
                    if parts.iter().all(|p| p.is_empty()) {
                        return Ok(());
                    }
                    // Partial progress: the next write gets what is left.
                    if let Some(deadline) = clock.deadline {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(write_timed_out());
                        }
                        tcp.set_write_timeout(Some(left))?;
                        clock.shortened = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(write_timed_out()),
                Err(e) => return Err(e),
            }
        }
    }

    /// The socket, for its options (timeouts).
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.tcp
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    fn session(&self) -> Option<MutexGuard<'_, TlsStream<MemIo>>> {
        self.tls
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads plaintext; `cipher` is the reader's scratch buffer for
    /// ciphertext. Blocks without holding any lock. Returns 0 at the end of
    /// the stream.
    pub(crate) fn read(&self, buf: &mut [u8], cipher: &mut [u8]) -> io::Result<usize> {
        let mut reader = &*self.tcp;
        let Some(tls) = &self.tls else {
            return reader.read(buf);
        };
        loop {
            {
                let mut s = tls.lock().unwrap_or_else(|p| p.into_inner());
                match s.read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            let n = reader.read(cipher)?;
            if n == 0 {
                return Ok(0);
            }
            let mut s = tls.lock().unwrap_or_else(|p| p.into_inner());
            s.get_mut().feed(&cipher[..n]);
        }
    }

    /// Whether the TLS session produced bytes (an alert, a key update) that
    /// no write has carried yet.
    pub(crate) fn has_pending_output(&self) -> bool {
        self.session()
            .is_some_and(|s| !s.get_ref().outgoing.is_empty())
    }

    /// Writes `data` to the peer. The caller serializes writes (the
    /// connection's writer role).
    pub(crate) fn write_all(&self, data: &[u8], spare: &mut Vec<u8>) -> io::Result<()> {
        let mut clock = self.start_write();
        let written = self.write_timed(data, spare, &mut clock);
        self.end_write(&clock);
        written
    }

    /// `write_all` on the clock of a write that has begun.
    pub(crate) fn write_timed(
        &self,
        data: &[u8],
        spare: &mut Vec<u8>,
        clock: &mut WriteClock,
    ) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return self.send([data, &[], &[]], clock);
        };
        let mut chunks = data.chunks(TLS_CHUNK);
        loop {
            let chunk = chunks.next();
            {
                let mut s = tls.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(chunk) = chunk {
                    s.write_all(chunk)?;
                }
                std::mem::swap(&mut s.get_mut().outgoing, spare);
            }
            let written = self.send([spare, &[], &[]], clock);
            spare.clear();
            written?;
            if chunk.is_none() {
                return Ok(());
            }
        }
    }

    /// Writes `prefix` (frames queued before), a frame header and its
    /// payload as one stream write: a vectored write on plain TCP, so that
    /// a large payload does not cost a copy and a small header does not go
    /// out in a packet of its own.
    pub(crate) fn write_all_parts(
        &self,
        prefix: &[u8],
        head: &[u8],
        body: &[u8],
        spare: &mut Vec<u8>,
        clock: &mut WriteClock,
    ) -> io::Result<()> {
        if let Some(tls) = &self.tls {
            // The prefix and the head go out with the body's first records.
            {
                let mut s = tls.lock().unwrap_or_else(|p| p.into_inner());
                s.write_all(prefix)?;
                s.write_all(head)?;
            }
            return self.write_timed(body, spare, clock);
        }
        self.send([prefix, head, body], clock)
    }

    /// Ends our direction of the stream: TLS close_notify, then a TCP FIN.
    pub(crate) fn shutdown_write(&self) {
        if let Some(mut s) = self.session() {
            let _ = s.shutdown();
            let out = std::mem::take(&mut s.get_mut().outgoing);
            drop(s);
            let _ = (&*self.tcp).write_all(&out);
        }
        let _ = self.tcp.shutdown(Shutdown::Write);
    }

    /// Closes the socket in both directions, waking a blocked reader.
    pub(crate) fn shutdown(&self) {
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}

/// The error of a write that did not finish by its deadline.
fn write_timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the write timed out")
}
