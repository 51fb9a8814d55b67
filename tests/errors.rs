//! Errors to match on, over real loopback sockets: what the calls fail
//! with (`Error`'s variants and their AS3 wording), and what the events of
//! a failed connection carry (`Event::error`, and `ioError`'s `error_id`
//! and text, which tell a host that cannot be resolved, a refused
//! connection, a timeout and a reset apart).

mod support;

use airws::{
    Config, Error, Event, EventDispatcher, IOErrorEvent, SecurityErrorEvent, Timeout, WebSocket,
};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;
use support::*;

/// What one event of a failing connection said.
#[derive(Debug)]
struct Got {
    event_type: String,
    error_id: i32,
    text: String,
    /// `Event::error`, summed up by `describe`.
    error: Option<String>,
}

/// An error's variant and its telling fields.
fn describe(e: &Error) -> String {
    match e {
        Error::Io { kind, .. } => format!("Io({kind:?})"),
        Error::Timeout { which, after, .. } => format!("Timeout({which:?}, {after:?})"),
        Error::Tls { certificate, .. } => format!("Tls(certificate: {certificate})"),
        Error::Protocol { code, .. } => format!("Protocol({code})"),
        Error::HandshakeRefused(r) => format!("HandshakeRefused({})", r.status()),
        other => format!("{other:?}"),
    }
}

/// Records the failure events of `ws`.
fn record_failures(ws: &WebSocket) -> Receiver<Got> {
    let (tx, rx) = mpsc::channel();
    for t in [
        IOErrorEvent::IO_ERROR,
        SecurityErrorEvent::SECURITY_ERROR,
        Event::CLOSE,
    ] {
        let tx = tx.clone();
        ws.add_event_listener(t, move |e: &Event| {
            let _ = tx.send(Got {
                event_type: e.event_type().to_string(),
                error_id: e.error_id(),
                text: e.text().to_owned(),
                error: e.error().map(describe),
            });
        });
    }
    rx
}

fn got(rx: &Receiver<Got>) -> Got {
    rx.recv_timeout(WAIT).expect("an event within the wait")
}

// ------------------------------------------------------------ the calls

#[test]
fn calls_fail_with_variants_in_as3_wording() {
    let ws = WebSocket::new();
    let e = ws.send_message(WebSocket::FMT_TEXT, "x").unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotOpen {
                operation: "sendMessage",
                state: "not connected",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "IllegalOperationError: sendMessage: the WebSocket is not open (it is not connected)"
    );

    let e = ws.connect("http://127.0.0.1/", &[]).unwrap_err();
    match &e {
        Error::InvalidUrl { url, message, .. } => {
            assert_eq!(url, "http://127.0.0.1/");
            assert!(message.contains("'http'"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e
        .to_string()
        .starts_with("ArgumentError: connect: invalid URL"));

    let e = ws.close(1005).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("ArgumentError: close: code 1005"),
        "{e}"
    );

    // Opening: a second connect is AS3's ArgumentError; a send, not open yet.
    let raw = RawServer::new();
    ws.connect(&raw.url(), &[]).expect("connect");
    let e = ws.connect(&raw.url(), &[]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::AlreadyOpen {
                operation: "connect",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("ArgumentError: "), "{e}");
    let e = ws.send_message(WebSocket::FMT_TEXT, "x").unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotOpen {
                state: "still connecting",
                ..
            }
        ),
        "{e:?}"
    );
    // Not an I/O error: no `source`.
    assert!(std::error::Error::source(&e).is_none());
}

#[test]
fn a_send_that_the_peer_never_reads_fails_with_the_write_timeout() {
    let config = Config::default()
        .write_timeout(Duration::from_millis(300))
        .close_timeout(Duration::from_millis(300));
    let (ws, _rx, _peer) = client_of_raw_peer_with(config);
    let failures = record_failures(&ws);
    // The peer reads nothing: the socket's buffers fill, then the write
    // waits for the timeout.
    let big = vec![7u8; 64 << 20];
    let e = ws
        .send_message(WebSocket::FMT_BINARY, &big[..])
        .unwrap_err();
    match &e {
        Error::Timeout {
            which: Timeout::Write,
            after,
            ..
        } => assert_eq!(*after, Duration::from_millis(300)),
        other => panic!("expected the write timeout, got {other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with("IOError: Error #20313: Timed out."),
        "{e}"
    );
    // The connection ends with an ioError and a close saying why.
    let io = got(&failures);
    assert_eq!(io.event_type, "ioError");
    assert_eq!(io.error_id, IOErrorEvent::TIMED_OUT_ID);
    assert_eq!(io.error.as_deref(), Some("Timeout(Write, 300ms)"));
    let close = got(&failures);
    assert_eq!(close.event_type, "close");
    assert_eq!(close.error.as_deref(), Some("Timeout(Write, 300ms)"));
}

// ------------------------------------------------------------ ioError

#[test]
fn a_refused_connection_is_connection_refused() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let ws = WebSocket::new();
    let rx = record_failures(&ws);
    ws.connect(&format!("ws://127.0.0.1:{port}/"), &[])
        .expect("connect");
    let g = got(&rx);
    assert_eq!(g.event_type, "ioError");
    assert_eq!(g.error_id, IOErrorEvent::CONNECTION_REFUSED_ID);
    assert_eq!(g.error.as_deref(), Some("Io(ConnectionRefused)"));
    assert!(
        g.text.starts_with(&format!(
            "Error #20312: Connection refused. Cannot connect to 127.0.0.1:{port}: "
        )),
        "{}",
        g.text
    );
    assert!(IOErrorEvent::is_socket_error(g.error_id));
    assert!(ws.wait_closed(WAIT));
    assert!(rx.try_recv().is_err(), "ioError alone, as in AIR");
}

#[test]
fn a_host_that_cannot_be_resolved_is_host_not_found() {
    // A label over 63 bytes: the resolver refuses the name itself, without
    // asking any name server.
    let host = format!("{}.invalid", "a".repeat(64));
    let ws = WebSocket::new();
    let rx = record_failures(&ws);
    ws.connect(&format!("ws://{host}:9/"), &[])
        .expect("connect");
    let g = got(&rx);
    assert_eq!(g.event_type, "ioError");
    assert_eq!(g.error_id, IOErrorEvent::HOST_NOT_FOUND_ID);
    assert_eq!(g.error.as_deref(), Some("Io(HostNotFound)"));
    assert!(
        g.text
            .starts_with("Error #20311: Host not found. Cannot resolve host"),
        "{}",
        g.text
    );
    assert!(g.text.contains(&host), "{}", g.text);
}

#[test]
fn a_server_that_never_answers_is_the_handshake_timeout() {
    let raw = RawServer::new();
    let ws =
        WebSocket::with_config(Config::default().handshake_timeout(Duration::from_millis(300)));
    let rx = record_failures(&ws);
    ws.connect(&raw.url(), &[]).expect("connect");
    let _silent = raw.accept_tcp();
    let g = got(&rx);
    assert_eq!(g.event_type, "ioError");
    assert_eq!(g.error_id, IOErrorEvent::TIMED_OUT_ID);
    assert_eq!(g.error.as_deref(), Some("Timeout(Handshake, 300ms)"));
    assert!(
        g.text.starts_with("Error #20313: Timed out. "),
        "{}",
        g.text
    );
    assert!(
        g.text.contains(&format!("127.0.0.1:{}", raw.port)),
        "{}",
        g.text
    );
}

#[test]
fn a_server_that_resets_the_handshake_is_connection_reset() {
    let raw = RawServer::new();
    let ws = WebSocket::new();
    let rx = record_failures(&ws);
    ws.connect(&raw.url(), &[]).expect("connect");
    let tcp = raw.accept_tcp();
    // Closing a socket with unread bytes resets the connection.
    let mut first = [0u8; 1];
    tcp.peek(&mut first).expect("the request arrives");
    drop(tcp);
    let g = got(&rx);
    assert_eq!(g.event_type, "ioError");
    assert_eq!(g.error_id, IOErrorEvent::CONNECTION_RESET_ID);
    assert_eq!(g.error.as_deref(), Some("Io(ConnectionReset)"));
    assert!(
        g.text.starts_with("Error #20314: Connection reset. "),
        "{}",
        g.text
    );
}

// ------------------------------------------------------------ close and securityError

#[test]
fn a_refused_upgrade_closes_with_handshake_refused() {
    let raw = RawServer::new();
    let ws = WebSocket::new();
    let rx = record_failures(&ws);
    ws.connect(&raw.url(), &[]).expect("connect");
    let mut tcp = raw.accept_tcp();
    let _ = read_head(&mut tcp);
    tcp.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nno token\n")
        .expect("answer");
    let g = got(&rx);
    assert_eq!(g.event_type, "close");
    assert_eq!(g.error.as_deref(), Some("HandshakeRefused(403)"));
    assert_eq!(
        g.text,
        "the server refused the upgrade: HTTP 403 Forbidden: no token"
    );
}

#[test]
fn a_rule_the_server_broke_closes_with_protocol() {
    let (ws, _rx, mut peer) =
        client_of_raw_peer_with(Config::default().close_timeout(Duration::from_millis(300)));
    let failures = record_failures(&ws);
    // A server must not mask its frames.
    peer.send(RawFrame::new(OP_TEXT, "x").masked([1, 2, 3, 4]));
    peer.expect_failure(1002);
    let g = got(&failures);
    assert_eq!(g.event_type, "close");
    assert_eq!(g.error.as_deref(), Some("Protocol(1002)"));
    assert!(g.text.contains("close code 1002"), "{}", g.text);
    assert_eq!(ws.close_reason(), 1002);
}

#[test]
fn a_silent_peer_closes_with_the_idle_timeout() {
    let config = Config::default()
        .idle_timeout(Duration::from_millis(300))
        .close_timeout(Duration::from_millis(300));
    let (ws, _rx, mut peer) = client_of_raw_peer_with(config);
    let failures = record_failures(&ws);
    let close = peer.read_close();
    assert_eq!(close.close_code(), Some(1001));
    let g = got(&failures);
    assert_eq!(g.event_type, "close");
    assert_eq!(g.error.as_deref(), Some("Timeout(Idle, 300ms)"));
}

#[test]
fn wss_to_a_plain_server_is_a_tls_security_error() {
    let raw = RawServer::new();
    let ws = WebSocket::new();
    let rx = record_failures(&ws);
    ws.connect(&format!("wss://127.0.0.1:{}/", raw.port), &[])
        .expect("connect");
    let mut tcp = raw.accept_tcp();
    let mut hello = [0u8; 512];
    let _ = tcp.read(&mut hello).expect("the client hello");
    let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let g = got(&rx);
    assert_eq!(g.event_type, "securityError");
    assert_eq!(g.error.as_deref(), Some("Tls(certificate: false)"));
    assert!(g.text.contains("does not speak TLS"), "{}", g.text);
}

#[test]
fn a_server_whose_backlog_is_full_is_the_connect_timeout() {
    use socket2::{Domain, Socket, Type};
    // A listener that never accepts, with the shortest queue: once the
    // queue is full, the system drops further connection attempts, which
    // then wait until the connect timeout.
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    listener.bind(&addr.into()).expect("bind");
    listener.listen(0).expect("listen");
    let addr = listener
        .local_addr()
        .expect("address")
        .as_socket()
        .expect("an IP address");
    let mut queued = Vec::new();
    let mut full = false;
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => queued.push(s),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the queue of a listener with backlog 0 fills up");
    let ws = WebSocket::with_config(Config::default().connect_timeout(Duration::from_millis(300)));
    let rx = record_failures(&ws);
    ws.connect(&format!("ws://{addr}/"), &[]).expect("connect");
    let g = got(&rx);
    assert_eq!(g.event_type, "ioError");
    assert_eq!(g.error_id, IOErrorEvent::TIMED_OUT_ID);
    assert_eq!(g.error.as_deref(), Some("Timeout(Connect, 300ms)"));
    assert!(
        g.text
            .contains(&format!("Cannot connect to 127.0.0.1:{}", addr.port())),
        "{}",
        g.text
    );
}
