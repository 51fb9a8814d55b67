//! Reading the HTTP head of the opening handshake: a server reads the
//! client's request, a client the server's response.

use crate::connection::Conn;
use crate::deadline::DeadlineReader;
use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Instant;

/// What reading an HTTP head came to.
pub(crate) enum HeadResult<T, E> {
    /// The parsed head, and the bytes that followed it.
    Done(T, Vec<u8>),
    /// The head is not what it should be; the bytes read so far.
    Invalid(E, Vec<u8>),
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
    let mut reader = HeadReader::new(conn, deadline, 4096);
    read_head_by(
        |head| {
            let n = reader.read()?;
            head.extend_from_slice(&reader.buf[..n]);
            Ok(n)
        },
        parse,
    )
}

/// [`read_head`] straight from a socket that carries no TLS (a proxy's
/// answer, before the tunnel is used), by `deadline`.
pub(crate) fn read_head_plain<T, E>(
    mut tcp: &TcpStream,
    deadline: Instant,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, E>,
) -> HeadResult<T, E> {
    let mut reader = DeadlineReader::new(tcp, Some(deadline), None, "no answer in time");
    let mut buf = [0u8; 1024];
    read_head_by(
        |head| {
            let n = reader.read(|| tcp.read(&mut buf))?;
            head.extend_from_slice(&buf[..n]);
            Ok(n)
        },
        parse,
    )
}

/// Calls `read` (which appends to the head and returns how much) and
/// `parse` in turn until the head is complete.
fn read_head_by<T, E>(
    mut read: impl FnMut(&mut Vec<u8>) -> io::Result<usize>,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, E>,
) -> HeadResult<T, E> {
    let mut head = Vec::new();
    loop {
        match read(&mut head) {
            Ok(0) => return HeadResult::Eof,
            Ok(_) => {}
            Err(e) => return HeadResult::Io(e),
        }
        match parse(&head) {
            Ok(None) => {}
            Ok(Some((value, len))) => return HeadResult::Done(value, head.split_off(len)),
            Err(e) => return HeadResult::Invalid(e, head),
        }
    }
}

/// Reads more of what follows an HTTP head into `bytes`, until it holds a
/// line end after `from`, `max` bytes, the end of the stream, or `deadline`:
/// the start of a refusal's body, for the application to see why. Errors
/// end the reading quietly.
pub(crate) fn read_line_after(
    conn: &Conn,
    deadline: Instant,
    bytes: &mut Vec<u8>,
    from: usize,
    max: usize,
) {
    let mut reader = HeadReader::new(conn, deadline, 1024);
    for _ in 0..64 {
        let body = bytes.get(from..).unwrap_or_default();
        if body.contains(&b'\n') || body.len() >= max {
            return;
        }
        match reader.read() {
            Ok(0) | Err(_) => return,
            Ok(n) => bytes.extend_from_slice(&reader.buf[..n]),
        }
    }
}

/// Reads of the opening handshake: through the transport (decrypting for
/// TLS), each bounded by the handshake's deadline.
struct HeadReader<'a> {
    conn: &'a Conn,
    reader: DeadlineReader<'a>,
    buf: Vec<u8>,
    cipher: Vec<u8>,
}

impl<'a> HeadReader<'a> {
    fn new(conn: &'a Conn, deadline: Instant, size: usize) -> HeadReader<'a> {
        HeadReader {
            conn,
            reader: DeadlineReader::new(
                conn.transport.socket(),
                Some(deadline),
                None,
                "handshake timed out",
            ),
            buf: vec![0u8; size],
            cipher: vec![0u8; if conn.transport.is_tls() { 16 << 10 } else { 0 }],
        }
    }

    /// One read into `buf`: 0 at the end of the stream.
    fn read(&mut self) -> std::io::Result<usize> {
        let HeadReader {
            conn,
            reader,
            buf,
            cipher,
        } = self;
        reader.read(|| conn.transport.read(buf, cipher))
    }
}
