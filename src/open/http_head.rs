//! Reading the HTTP head of the opening handshake: a server reads the
//! client's request, a client the server's response.

use crate::connection::Conn;
use crate::deadline::DeadlineReader;
use std::io;
use std::time::Instant;

/// What reading an HTTP head came to.
pub(crate) enum HeadResult<T, E> {
    /// The parsed head, and the bytes that followed it.
    Done(T, Vec<u8>),
    /// The head is not what it should be.
    Invalid(E),
    /// The peer closed the connection before the head was complete.
    Eof,
    /// The socket failed, or `deadline` passed (`ErrorKind::TimedOut`).
    Io(io::Error),
}

/// Reads an HTTP head and hands it to `parse` until it is complete.
pub(crate) fn read_head<T, E>(
    conn: &Conn,
    deadline: Instant,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, E>,
) -> HeadResult<T, E> {
    let mut head = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut cipher = vec![0u8; if conn.transport.is_tls() { 16 << 10 } else { 0 }];
    let mut reader = DeadlineReader::new(
        conn.transport.socket(),
        Some(deadline),
        None,
        "handshake timed out",
    );
    loop {
        match reader.read(|| conn.transport.read(&mut buf, &mut cipher)) {
            Ok(0) => return HeadResult::Eof,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return HeadResult::Io(e),
        }
        match parse(&head) {
            Ok(None) => {}
            Ok(Some((value, len))) => return HeadResult::Done(value, head.split_off(len)),
            Err(e) => return HeadResult::Invalid(e),
        }
    }
}
