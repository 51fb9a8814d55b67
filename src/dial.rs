//! Finding and reaching a host: name resolution bounded by the connect
//! timeout, and connection attempts to its addresses staggered as RFC 8305
//! (Happy Eyeballs) describes, instead of one after the other with the
//! whole timeout each.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long an attempt runs alone before the next address is tried beside
/// it (RFC 8305 §5 recommends 250 ms).
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// At most this many addresses of one host are tried.
const MAX_ATTEMPTS: usize = 8;

/// Why a host could not be reached.
#[derive(Debug)]
pub(crate) enum DialError {
    /// The name could not be resolved (the resolver's error).
    Resolve(io::Error),
    /// The resolver did not answer within the timeout.
    ResolveTimeout,
    /// The name has no address.
    NoAddress,
    /// No address answered: the last attempt's error.
    Connect(io::Error),
    /// No address answered within the timeout.
    ConnectTimeout,
}

/// The addresses of `host`, by `deadline`. An IP address needs no
/// resolver; a name is resolved on a thread of its own (`getaddrinfo`
/// cannot be interrupted), which the caller stops waiting for at the
/// deadline. `resolve` is the resolver (the system's, in the library).
pub(crate) fn resolve_by(
    host: &str,
    port: u16,
    deadline: Instant,
    resolve: impl FnOnce(String, u16) -> io::Result<Vec<SocketAddr>> + Send + 'static,
) -> Result<Vec<SocketAddr>, DialError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_owned();
    let spawned = thread::Builder::new()
        .name("airws-resolve".into())
        .stack_size(128 << 10)
        .spawn(move || {
            // The caller may have stopped waiting: then the answer is dropped.
            let _ = tx.send(resolve(name, port));
        });
    if let Err(e) = spawned {
        return Err(DialError::Resolve(e));
    }
    let wait = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(wait) {
        Ok(Ok(addrs)) if addrs.is_empty() => Err(DialError::NoAddress),
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(DialError::Resolve(e)),
        Err(_) => Err(DialError::ResolveTimeout),
    }
}

/// The system's resolver.
pub(crate) fn system_resolver(host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host.as_str(), port)
        .to_socket_addrs()
        .map(Iterator::collect)
}

/// `addrs` in the order to try them (RFC 8305 §4): the families
/// interleaved, starting with the family of the first address the
/// resolver gave.
pub(crate) fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (mut same, mut other): (Vec<&SocketAddr>, Vec<&SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv6() == first.is_ipv6());
    same.reverse();
    other.reverse();
    let mut out = Vec::with_capacity(addrs.len());
    while let Some(a) = same.pop() {
        out.push(*a);
        if let Some(b) = other.pop() {
            out.push(*b);
        }
    }
    out.extend(other.into_iter().rev().copied());
    out.dedup();
    out
}

/// Connects to the first of `addrs` that answers by `deadline`: the next
/// address is tried `delay` after the previous attempt began, or as soon
/// as it failed, with the attempts before it still running; the first
/// connection made wins and the others are dropped.
pub(crate) fn connect_staggered(
    addrs: &[SocketAddr],
    deadline: Instant,
    delay: Duration,
) -> Result<TcpStream, DialError> {
    let order = interleave(addrs);
    let (tx, rx) = mpsc::channel::<io::Result<TcpStream>>();
    let mut started = 0;
    let mut finished = 0;
    let mut last_error = None;
    let mut next_start = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if started < order.len().min(MAX_ATTEMPTS) && (now >= next_start || finished == started) {
            let addr = order[started];
            let tx = tx.clone();
            let timeout = deadline.saturating_duration_since(now);
            let spawned = thread::Builder::new()
                .name("airws-connect".into())
                .stack_size(128 << 10)
                .spawn(move || {
                    // A connection that lost the race is dropped here.
                    let _ = tx.send(TcpStream::connect_timeout(&addr, timeout));
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => return Err(DialError::Connect(e)),
            }
            next_start = Instant::now() + delay;
            continue;
        }
        if finished == started {
            break; // every address was tried, and failed
        }
        let wait_until = if started < order.len().min(MAX_ATTEMPTS) {
            next_start.min(deadline)
        } else {
            deadline
        };
        match rx.recv_timeout(wait_until.saturating_duration_since(Instant::now())) {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => {
                finished += 1;
                last_error = Some(e);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Every attempt failed: the last one's error; else the deadline came.
    match last_error {
        Some(e) if finished == started => Err(DialError::Connect(e)),
        _ => Err(DialError::ConnectTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

    fn v4(last: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), 80)
    }
    fn v6(last: u16) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last)),
            80,
        )
    }

    #[test]
    fn families_are_interleaved_starting_with_the_first() {
        assert_eq!(
            interleave(&[v6(1), v6(2), v6(3), v4(1), v4(2)]),
            [v6(1), v4(1), v6(2), v4(2), v6(3)]
        );
        assert_eq!(interleave(&[v4(1), v4(2), v6(1)]), [v4(1), v6(1), v4(2)]);
        assert_eq!(interleave(&[v4(1), v4(1)]), [v4(1)]);
        assert!(interleave(&[]).is_empty());
    }

    #[test]
    fn an_ip_address_needs_no_resolver_and_a_silent_resolver_ends_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let addrs = resolve_by("127.0.0.1", 9, deadline, |_, _| panic!("no resolver")).unwrap();
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], 9))]);
        // A resolver that never answers (it waits for a message that never
        // comes): the wait ends at the deadline.
        let (_keep, never) = mpsc::channel::<()>();
        let never = std::sync::Mutex::new(never);
        let deadline = Instant::now() + Duration::from_millis(100);
        let result = resolve_by("example.invalid", 9, deadline, move |_, _| {
            let _ = never.lock().unwrap().recv();
            Ok(Vec::new())
        });
        assert!(
            matches!(result, Err(DialError::ResolveTimeout)),
            "{result:?}"
        );
        let result = resolve_by(
            "x.invalid",
            9,
            Instant::now() + Duration::from_secs(5),
            |_, _| Err(io::Error::other("no such host")),
        );
        assert!(matches!(result, Err(DialError::Resolve(_))), "{result:?}");
    }

    #[test]
    fn an_address_that_does_not_answer_does_not_hold_up_the_next() {
        use socket2::{Domain, Socket, Type};
        // The first address: a listener whose queue is full, so that a
        // connection attempt to it waits; the second answers.
        let stuck = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        stuck
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        stuck.listen(0).unwrap();
        let stuck_addr = stuck.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        for _ in 0..8 {
            match TcpStream::connect_timeout(&stuck_addr, Duration::from_millis(200)) {
                Ok(s) => queued.push(s),
                Err(_) => break,
            }
        }
        let good = TcpListener::bind("127.0.0.1:0").unwrap();
        let good_addr = good.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = connect_staggered(&[stuck_addr, good_addr], deadline, ATTEMPT_DELAY)
            .expect("the second address answers");
        assert_eq!(stream.peer_addr().unwrap(), good_addr);
        // Every address refusing: the last error, not a timeout.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let result = connect_staggered(
            &[closed],
            Instant::now() + Duration::from_secs(30),
            ATTEMPT_DELAY,
        );
        assert!(
            matches!(&result, Err(DialError::Connect(e)) if e.kind() == io::ErrorKind::ConnectionRefused),
            "{result:?}"
        );
        // Only a stuck address: the deadline.
        let result = connect_staggered(
            &[stuck_addr],
            Instant::now() + Duration::from_millis(300),
            ATTEMPT_DELAY,
        );
        assert!(
            matches!(result, Err(DialError::ConnectTimeout)),
            "{result:?}"
        );
    }
}
