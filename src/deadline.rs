//! Reading from a socket with a deadline.
//!
//! A blocking read waits at most the socket's read timeout, so a deadline
//! for a series of reads (the opening handshake, the closing handshake) is
//! kept by setting that timeout to the time left before each read. A peer
//! that sends a byte now and then thus cannot stretch the series past the
//! deadline. Without a deadline, each read waits at most an idle timeout
//! (or forever).

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Reads from one socket, each read bounded by a deadline or, while there
/// is none, by an idle timeout.
///
/// The read itself is the caller's (a [`Transport`](crate::transport::Transport)
/// read that decrypts, or a plain read of the socket), so the same reader
/// serves both. The reader sets the socket's read timeout only when it has
/// to change.
#[derive(Debug)]
pub(crate) struct DeadlineReader<'a> {
    socket: &'a TcpStream,
    /// Every read must end by then; `None`: each read waits `idle`.
    pub(crate) deadline: Option<Instant>,
    /// How long a read without a deadline may wait (`None`: forever).
    pub(crate) idle: Option<Duration>,
    /// The error text of a read that timed out.
    timeout_text: &'static str,
    /// The read timeout last set on the socket (`None`: not set by us yet).
    applied: Option<Option<Duration>>,
}

impl<'a> DeadlineReader<'a> {
    /// A reader of `socket` with a deadline, or with an idle timeout while
    /// `deadline` is `None`. A read that times out fails with
    /// `ErrorKind::TimedOut` and `timed_out` as its text.
    pub(crate) fn new(
        socket: &'a TcpStream,
        deadline: Option<Instant>,
        idle: Option<Duration>,
        timed_out: &'static str,
    ) -> DeadlineReader<'a> {
        DeadlineReader {
            socket,
            deadline,
            idle,
            timeout_text: timed_out,
            applied: None,
        }
    }

    /// Runs `read` once the socket's read timeout is what is left before the
    /// deadline (or the idle timeout), again after an `Interrupted` error.
    /// Returns what `read` returned: 0 at the end of the stream. A deadline
    /// that has passed, or a read that waited its whole timeout
    /// (`WouldBlock` or `TimedOut`), is an `ErrorKind::TimedOut` error.
    pub(crate) fn read(
        &mut self,
        mut read: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            let wanted = match self.deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(self.timed_out());
                    }
                    Some(left)
                }
                None => self.idle,
            };
            if !close_enough(self.applied, wanted) {
                self.socket.set_read_timeout(wanted)?;
                self.applied = Some(wanted);
            }
            match read() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.timed_out());
                }
                result => return result,
            }
        }
    }

    fn timed_out(&self) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, self.timeout_text)
    }
}

/// Whether the read timeout `applied` may stay for a read that must end
/// within `wanted`: the same, or at most 1/64 longer (a deadline then
/// passes that little late, and a connection whose deadline moves a bit
/// with each read, as the idle timeout's does, costs no system call per
/// read). A shorter one may stay too: the read wakes early, finds nothing
/// due and reads again.
fn close_enough(applied: Option<Option<Duration>>, wanted: Option<Duration>) -> bool {
    match (applied, wanted) {
        (Some(Some(a)), Some(w)) => a <= w + w / 64 && a >= w / 2,
        (Some(a), w) => a == w,
        (None, _) => false,
    }
}
