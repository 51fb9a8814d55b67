//! The AIR `WebSocket` API over real loopback sockets, member by member:
//! messages of every length form both ways, fragments, automatic pongs,
//! close codes and `close_reason`, subprotocols, refused upgrades, refused
//! connections, the bugs AIR itself shipped, sends that never wait for the
//! read loop, the dispatcher's AS3 rules, and threads that end with their
//! last handle. Each test names the member it exercises.

mod support;

use airws::{
    Config, Error, Event, EventDispatcher, EventType, HttpRequestEvent, IOErrorEvent, ServerSocket,
    ServerSocketConnectEvent, WebSocket, WebSocketEvent,
};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// Connects a recorded client to `url` and waits for `connect`.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn text_of(len: usize) -> String {
    // ASCII letters and digits, so any length is valid UTF-8.
    (0..len)
        .map(|i| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36]))
        .collect()
}

const SIZES: [usize; 6] = [0, 125, 126, 65535, 65536, 16 << 20];

/// Reads the frames of one data message from a server `WebSocket` (a large
/// message may come in fragments): each is unmasked, its length in the
/// shortest form, the first a text or binary frame, the others
/// continuations. Returns their headers and the reassembled payload.
fn read_server_message(peer: &mut RawPeer) -> (Vec<FrameHead>, Vec<u8>) {
    let mut heads = Vec::new();
    let mut data = Vec::new();
    loop {
        assert!(heads.len() < 100_000, "too many fragments");
        let (head, frame) = peer.read_with_head();
        assert!(
            !head.masked(),
            "a server never masks (frame {})",
            heads.len()
        );
        assert!(
            head.minimal_length(),
            "length not in the shortest form: {head:?}"
        );
        if heads.is_empty() {
            assert!(
                head.opcode == OP_TEXT || head.opcode == OP_BINARY,
                "expected a data frame, got {head:?}"
            );
        } else {
            assert_eq!(
                head.opcode, OP_CONT,
                "expected a continuation, got {head:?}"
            );
        }
        heads.push(head);
        data.extend_from_slice(&frame.payload);
        if head.fin {
            return (heads, data);
        }
    }
}

// ------------------------------------------------------------ send_message

#[test]
fn send_message_text_and_binary_of_every_length_form_echo_exactly() {
    let server = EchoServer::start();
    let (ws, rx) = open_client(&server.url(), &[]);
    for len in SIZES {
        let text = text_of(len);
        ws.send_message(WebSocket::FMT_TEXT, &text)
            .expect("send text");
        assert_eq!(next(&rx), Seen::Text(text.clone()), "text of {len} bytes");
        let bytes = pattern(len);
        ws.send_message(WebSocket::FMT_BINARY, &bytes)
            .expect("send binary");
        assert_eq!(next(&rx), Seen::Binary(bytes), "binary of {len} bytes");
    }
    // The server saw each message whole too.
    assert_eq!(
        server.wait_for(|s| matches!(s, Seen::Connect)),
        Seen::Connect
    );
    for len in SIZES {
        assert_eq!(
            server.wait_for(|s| matches!(s, Seen::Text(_))),
            Seen::Text(text_of(len))
        );
        assert_eq!(
            server.wait_for(|s| matches!(s, Seen::Binary(_))),
            Seen::Binary(pattern(len))
        );
    }
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(WAIT));
}

#[test]
fn send_message_from_the_server_reaches_a_raw_client_unmasked_in_the_right_length_form() {
    let (server, rx) = serve_websockets(Config::default);
    let (mut peer, _) = raw_client(server.local_port(), "");
    let ws = rx.recv_timeout(WAIT).expect("server connect");
    for len in SIZES {
        // A 16 MiB send blocks until the peer reads: send from another thread.
        let sender = ws.clone();
        let sending = std::thread::spawn(move || {
            sender
                .send_message(WebSocket::FMT_BINARY, pattern(len))
                .expect("send binary");
            sender
                .send_message(WebSocket::FMT_TEXT, text_of(len))
                .expect("send text");
        });
        for (opcode, want) in [
            (OP_BINARY, pattern(len)),
            (OP_TEXT, text_of(len).into_bytes()),
        ] {
            let (heads, data) = read_server_message(&mut peer);
            assert_eq!(heads[0].opcode, opcode, "{len} bytes");
            assert_eq!(data.len(), len, "reassembled length");
            assert!(data == want, "the {len} bytes differ from the message sent");
            if len <= 64 << 10 {
                // At most 64 KiB: one frame, in the shortest length form.
                assert_eq!(heads.len(), 1, "a message of {len} bytes is one frame");
                let form = match len {
                    0..=125 => len as u8,
                    126..=65535 => 126,
                    _ => 127,
                };
                assert_eq!(heads[0].len_field, form, "length form of {len} bytes");
            }
        }
        sending.join().expect("sender thread");
    }
    ws.close(4000).expect("close");
    assert_eq!(peer.read_close().close_code(), Some(4000));
    peer.close(4000, "");
    assert!(peer.sees_eof(), "the server closes TCP first");
    assert!(ws.wait_closed(WAIT));
    assert_eq!(ws.close_reason(), 4000);
    server.close();
}

#[test]
fn send_message_client_frames_are_masked_with_fresh_keys() {
    let (ws, _rx, mut peer) = client_of_raw_peer();
    let mut keys = std::collections::HashSet::new();
    for i in 0..20 {
        ws.send_message(WebSocket::FMT_BINARY, vec![0u8; 8])
            .expect("send");
        // Read the raw bytes to see the key itself.
        let mut head = [0u8; 6];
        peer.stream.read_exact(&mut head).expect("frame head");
        assert_eq!(head[1], 0x80 | 8, "masked, 8 bytes (frame {i})");
        let mut masked = [0u8; 8];
        peer.stream.read_exact(&mut masked).expect("payload");
        // The payload is zeros, so the masked bytes are the key repeated.
        assert_eq!(&masked[..4], &head[2..6]);
        keys.insert([head[2], head[3], head[4], head[5]]);
    }
    assert!(
        keys.len() >= 19,
        "masking keys repeat: {} distinct of 20",
        keys.len()
    );
    drop(ws);
}

#[test]
fn send_message_rejects_bad_arguments_with_argument_error() {
    let server = EchoServer::start();
    let (ws, rx) = open_client(&server.url(), &[]);
    let is_arg = |r: Result<(), Error>| matches!(r, Err(Error::InvalidArgument { .. }));
    assert!(is_arg(ws.send_message(3, "x")), "unknown opcode 3");
    assert!(is_arg(ws.send_message(0, "x")), "opcode 0");
    assert!(is_arg(ws.send_message(11, "x")), "opcode 11");
    assert!(is_arg(ws.send_message(WebSocket::FMT_PING, vec![0u8; 126])));
    assert!(is_arg(ws.send_message(WebSocket::FMT_PONG, vec![0u8; 126])));
    assert!(is_arg(
        ws.send_message(WebSocket::FMT_TEXT, vec![0xC0u8, 0x80])
    ));
    assert!(is_arg(ws.send_message(WebSocket::FMT_CLOSE, vec![3u8])));
    assert!(
        is_arg(ws.send_message(WebSocket::FMT_CLOSE, vec![0x03, 0xED])),
        "code 1005"
    );
    let msg = ws.send_message(7, "x").unwrap_err().to_string();
    assert!(msg.contains('7'), "the error names the opcode: {msg}");
    // The connection is still fine.
    ws.send_message(WebSocket::FMT_TEXT, "still open")
        .expect("send");
    assert_eq!(next(&rx), Seen::Text("still open".into()));
}

#[test]
fn send_message_when_not_open_is_an_illegal_operation() {
    let ws = WebSocket::new();
    let err = ws.send_message(WebSocket::FMT_TEXT, "x").unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotOpen {
                operation: "sendMessage",
                state: "not connected",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("not open"), "{err}");
}

#[test]
fn send_message_takes_str_string_slices_and_vecs() {
    let server = EchoServer::start();
    let (ws, rx) = open_client(&server.url(), &[]);
    let owned = String::from("owned");
    ws.send_message(WebSocket::FMT_TEXT, "str").expect("&str");
    ws.send_message(WebSocket::FMT_TEXT, &owned)
        .expect("&String");
    ws.send_message(WebSocket::FMT_TEXT, owned.clone())
        .expect("String");
    ws.send_message(WebSocket::FMT_BINARY, &[1u8, 2][..])
        .expect("&[u8]");
    ws.send_message(WebSocket::FMT_BINARY, vec![3u8])
        .expect("Vec<u8>");
    ws.send_message(WebSocket::FMT_TEXT, b"bytes as text".to_vec())
        .expect("UTF-8 bytes as text");
    for want in [
        Seen::Text("str".into()),
        Seen::Text("owned".into()),
        Seen::Text("owned".into()),
        Seen::Binary(vec![1, 2]),
        Seen::Binary(vec![3]),
        Seen::Text("bytes as text".into()),
    ] {
        assert_eq!(next(&rx), want);
    }
}

#[test]
fn send_message_ping_and_pong_reach_the_peer_with_their_opcodes() {
    let (ws, rx, mut peer) = client_of_raw_peer();
    ws.send_message(WebSocket::FMT_PING, "are you there")
        .expect("ping");
    let f = peer.read();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OP_PING, &b"are you there"[..])
    );
    ws.send_message(WebSocket::FMT_PONG, "unsolicited")
        .expect("pong");
    let f = peer.read();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OP_PONG, &b"unsolicited"[..])
    );
    // The peer's pong is not dispatched: format is only TEXT or BINARY.
    peer.send(RawFrame::new(OP_PONG, "answer"));
    peer.text("after the pong");
    assert_eq!(next(&rx), Seen::Text("after the pong".into()));
}

#[test]
fn send_message_fmt_close_starts_the_closing_handshake() {
    let (ws, rx, mut peer) = client_of_raw_peer();
    ws.send_message(WebSocket::FMT_CLOSE, close_payload(4321, "done"))
        .expect("close payload");
    let f = peer.read();
    assert_eq!(f.opcode, OP_CLOSE);
    assert_eq!(f.payload, close_payload(4321, "done"));
    peer.close(4321, "");
    drop(peer);
    assert!(ws.wait_closed(WAIT));
    assert_eq!(ws.close_reason(), 4321);
    nothing_more(&rx, 200);
}

#[test]
fn constants_have_airs_values() {
    assert_eq!(WebSocket::FMT_TEXT, 1);
    assert_eq!(WebSocket::FMT_BINARY, 2);
    assert_eq!(WebSocket::FMT_CLOSE, 8);
    assert_eq!(WebSocket::FMT_PING, 9);
    assert_eq!(WebSocket::FMT_PONG, 10);
    assert_eq!(WebSocket::CLOSE_NORMAL, 1000);
    assert_eq!(Event::CONNECT, "connect");
    assert_eq!(Event::CLOSE, "close");
    assert_eq!(IOErrorEvent::IO_ERROR, "ioError");
    assert_eq!(airws::SecurityErrorEvent::SECURITY_ERROR, "securityError");
    assert_eq!(
        airws::SecurityErrorEvent::CERTIFICATE_ERROR,
        "certificateError"
    );
    assert_eq!(WebSocketEvent::DATA, "websocketData");
    assert_eq!(ServerSocketConnectEvent::CONNECT, "connect");
    assert_eq!(HttpRequestEvent::REQUEST, "httpRequest");
    // As in AS3, where both are the string "connect".
    assert_eq!(ServerSocketConnectEvent::CONNECT, Event::CONNECT);
}

// ------------------------------------------------------------ receiving

#[test]
fn websocket_data_fragmented_message_with_an_interleaved_ping_arrives_whole_and_the_ping_is_answered(
) {
    let (_ws, rx, mut peer) = client_of_raw_peer();
    peer.send(RawFrame::new(OP_TEXT, "héllo ").fin(false));
    peer.send(RawFrame::new(OP_PING, "in between"));
    peer.send(RawFrame::new(OP_CONT, "wörld").fin(false));
    peer.send(RawFrame::new(OP_CONT, " ✓"));
    let pong = peer.read();
    assert_eq!(pong.opcode, OP_PONG);
    assert!(pong.masked, "a client masks its pong");
    assert_eq!(pong.payload, b"in between");
    assert_eq!(next(&rx), Seen::Text("héllo wörld ✓".into()));
    // Binary too, in 1-byte fragments.
    let data = pattern(50);
    for (i, b) in data.iter().enumerate() {
        let op = if i == 0 { OP_BINARY } else { OP_CONT };
        peer.send(RawFrame::new(op, vec![*b]).fin(i == data.len() - 1));
    }
    assert_eq!(next(&rx), Seen::Binary(data));
}

#[test]
fn ping_from_a_client_gets_its_pong_from_the_server_at_once() {
    let server = EchoServer::start();
    let (mut peer, _) = raw_client(server.port, "");
    for payload in [&b""[..], b"x", &[7u8; 125][..]] {
        peer.send(RawFrame::new(OP_PING, payload));
        let f = peer.read();
        assert_eq!(f.opcode, OP_PONG);
        assert!(!f.masked);
        assert_eq!(f.payload, payload);
    }
}

// ------------------------------------------------------------ close, close_reason

#[test]
fn close_from_the_client_reaches_the_server_with_its_code_and_no_local_close_event() {
    let server = EchoServer::start();
    let (ws, rx) = open_client(&server.url(), &[]);
    assert_eq!(ws.close_reason(), 0, "0 before any connection ended");
    server.wait_for(|s| *s == Seen::Connect);
    ws.close(3001).expect("close");
    assert_eq!(
        server.wait_for(|s| matches!(s, Seen::Close(_))),
        Seen::Close(3001)
    );
    assert!(ws.wait_closed(WAIT));
    assert_eq!(ws.close_reason(), 3001);
    nothing_more(&rx, 300);
    assert!(!ws.connected());
}

#[test]
fn close_from_the_server_dispatches_close_with_the_servers_code() {
    let server = EchoServer::start();
    let (ws, rx) = open_client(&server.url(), &[]);
    server.wait_for(|s| *s == Seen::Connect);
    let server_ws = {
        let map = server.sockets.lock().unwrap_or_else(|p| p.into_inner());
        map.values().next().cloned().expect("the server's socket")
    };
    server_ws.close(4000).expect("server close");
    assert_eq!(next(&rx), Seen::Close(4000));
    assert_eq!(ws.close_reason(), 4000);
    assert!(server_ws.wait_closed(WAIT));
    assert_eq!(server_ws.close_reason(), 4000);
}

#[test]
fn close_reason_is_1005_for_a_close_frame_without_a_code_and_1006_for_a_dropped_connection() {
    let raw = RawServer::new();
    let ws = WebSocket::new();
    let rx = record(&ws);
    ws.connect(&raw.url(), &[]).expect("connect");
    let (mut peer, _) = raw.accept();
    assert_eq!(next(&rx), Seen::Connect);
    peer.send(RawFrame::new(OP_CLOSE, Vec::new()));
    let reply = peer.read();
    assert_eq!(reply.opcode, OP_CLOSE);
    drop(peer);
    assert_eq!(next(&rx), Seen::Close(1005));

    // The same object connects again, keeping its listeners.
    ws.connect(&raw.url(), &[]).expect("reconnect");
    let (peer, _) = raw.accept();
    assert_eq!(next(&rx), Seen::Connect);
    assert_eq!(ws.close_reason(), 0, "reset by a new connection");
    drop(peer); // no close frame
    assert_eq!(next(&rx), Seen::Close(1006));
}

#[test]
fn close_with_a_reason_and_code_from_the_raw_server_is_echoed_and_reported() {
    let (_ws, rx, mut peer) = client_of_raw_peer();
    peer.close(4002, "bye");
    let reply = peer.read();
    assert_eq!(reply.close_code(), Some(4002), "the reply echoes the code");
    drop(peer);
    assert_eq!(next(&rx), Seen::Close(4002));
}

#[test]
fn close_rejects_codes_that_may_not_be_sent() {
    let server = EchoServer::start();
    let (ws, rx) = open_client(&server.url(), &[]);
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65536] {
        assert!(
            matches!(ws.close(code), Err(Error::InvalidArgument { .. })),
            "close({code}) must be refused"
        );
    }
    ws.send_message(WebSocket::FMT_TEXT, "still open")
        .expect("send");
    assert_eq!(next(&rx), Seen::Text("still open".into()));
    ws.close(WebSocket::CLOSE_NORMAL).expect("close(1000)");
    ws.close(WebSocket::CLOSE_NORMAL)
        .expect("a second close does nothing");
    assert!(ws.wait_closed(WAIT));
    assert_eq!(ws.close_reason(), 1000);
}

#[test]
fn close_while_connecting_aborts_without_a_connect_event() {
    let raw = RawServer::new(); // accepts TCP, never answers
    let ws = WebSocket::new();
    let rx = record(&ws);
    ws.connect(&raw.url(), &[]).expect("connect");
    let _tcp = raw.accept_tcp();
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(WAIT));
    assert!(!ws.connected());
    nothing_more(&rx, 300);
}

// ------------------------------------------------------------ protocol

#[test]
fn protocol_is_negotiated_from_the_servers_property() {
    let server = EchoServer::with(Config::default, "chat");
    let (ws, _rx) = open_client(&server.url(), &["superchat", "chat"]);
    assert_eq!(ws.protocol(), "chat");
    let server_ws = {
        server.wait_for(|s| *s == Seen::Connect);
        let map = server.sockets.lock().unwrap_or_else(|p| p.into_inner());
        map.values().next().cloned().expect("the server's socket")
    };
    assert_eq!(server_ws.protocol(), "chat");
    assert!(
        server_ws.set_protocol("other").is_err(),
        "read-only after the handshake"
    );
}

#[test]
fn protocol_is_empty_when_the_client_offers_none() {
    let server = EchoServer::with(Config::default, "chat");
    let (ws, _rx) = open_client(&server.url(), &[]);
    assert_eq!(ws.protocol(), "");
}

#[test]
fn protocol_a_server_choosing_one_that_was_not_offered_is_refused() {
    let raw = RawServer::new();
    let ws = WebSocket::new();
    let rx = record(&ws);
    ws.connect(&raw.url(), &["a"]).expect("connect");
    let (_peer, head) = raw.accept_with(&[
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Protocol", "b"),
    ]);
    assert_eq!(header(&head, "Sec-WebSocket-Protocol"), Some("a"));
    let seen = next(&rx);
    assert!(
        matches!(seen, Seen::Close(_) | Seen::IoError(..)),
        "{seen:?}"
    );
    assert_ne!(seen, Seen::Connect);
}

#[test]
fn connect_offers_protocols_and_rejects_invalid_ones() {
    let ws = WebSocket::new();
    assert!(matches!(
        ws.connect("ws://127.0.0.1:1/", &["a b"]),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        ws.connect("ws://127.0.0.1:1/", &["x", "x"]),
        Err(Error::InvalidArgument { .. })
    ));
}

// ------------------------------------------------------------ start_server

#[test]
fn start_server_answers_a_plain_http_request_with_400_then_closes_and_dispatches_close() {
    let server = EchoServer::start();
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).expect("response, then EOF");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(matches!(
        server.wait_for(|s| matches!(s, Seen::Close(_))),
        Seen::Close(_)
    ));
}

#[test]
fn start_server_answers_a_wrong_version_with_426_and_version_13() {
    let server = EchoServer::start();
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .expect("request");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).expect("response, then EOF");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 426"), "{text}");
    assert_eq!(header(&text, "Sec-WebSocket-Version"), Some("13"));
}

#[test]
fn start_server_accepts_header_names_in_any_case() {
    let server = EchoServer::start();
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    tcp.write_all(
        format!(
            "GET /x HTTP/1.1\r\nhOsT: x\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n\
             SEC-WEBSOCKET-KEY: {key}\r\nsec-websocket-version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("request");
    let head = read_head(&mut tcp);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header(&head, "sec-websocket-accept"),
        Some(accept_key(key).as_str())
    );
}

#[test]
fn start_server_rejects_a_null_socket_and_a_second_start() {
    let ws = WebSocket::new();
    assert!(matches!(
        ws.start_server(None::<TcpStream>),
        Err(Error::InvalidArgument { .. })
    ));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    let other = accepted.try_clone().expect("clone");
    ws.start_server(accepted).expect("start_server");
    assert!(matches!(
        ws.start_server(other),
        Err(Error::AlreadyOpen {
            operation: "startServer",
            ..
        })
    ));
}

// ------------------------------------------------------------ connect

#[test]
fn connect_refused_dispatches_io_error_naming_host_and_port_then_nothing_else() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let ws = WebSocket::new();
    let rx = record(&ws);
    ws.connect(&format!("ws://127.0.0.1:{port}/"), &[])
        .expect("connect returns at once");
    match next(&rx) {
        Seen::IoError(id, text) => {
            assert_eq!(id, IOErrorEvent::CONNECTION_REFUSED_ID);
            assert!(text.contains("127.0.0.1"), "{text}");
            assert!(text.contains(&port.to_string()), "{text}");
        }
        other => panic!("expected ioError, got {other:?}"),
    }
    assert!(ws.wait_closed(WAIT));
    assert!(!ws.connected());
}

/// A listener that takes its time, then records that it ran: `wait_closed`
/// must not return before it has.
fn slow_listener(ran: &Arc<AtomicBool>) -> impl Fn(&Event) + Send + Sync + 'static {
    let ran = ran.clone();
    move |_e: &Event| {
        // The listener's own work, long enough that a wait_closed that
        // returned at the end of the connection would return before it.
        std::thread::sleep(Duration::from_millis(300));
        ran.store(true, Ordering::SeqCst);
    }
}

#[test]
fn wait_closed_returns_after_the_io_error_listeners_have_run() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let ws = WebSocket::new();
    let ran = Arc::new(AtomicBool::new(false));
    ws.add_event_listener(IOErrorEvent::IO_ERROR, slow_listener(&ran));
    ws.connect(&format!("ws://127.0.0.1:{port}/"), &[])
        .expect("connect returns at once");
    assert!(ws.wait_closed(WAIT));
    assert!(
        ran.load(Ordering::SeqCst),
        "wait_closed returned before the ioError listener had run"
    );
}

#[test]
fn wait_closed_returns_after_the_close_listeners_have_run() {
    let (ws, _rx, mut peer) = client_of_raw_peer();
    let ran = Arc::new(AtomicBool::new(false));
    ws.add_event_listener(Event::CLOSE, slow_listener(&ran));
    peer.close(1000, "");
    assert_eq!(peer.read_close().close_code(), Some(1000));
    drop(peer);
    assert!(ws.wait_closed(WAIT));
    assert!(
        ran.load(Ordering::SeqCst),
        "wait_closed returned before the close listener had run"
    );
}

#[test]
fn connect_rejects_invalid_urls_and_a_second_connect() {
    let ws = WebSocket::new();
    for url in ["", "not a url", "http://127.0.0.1/", "ftp://x/", "ws://"] {
        assert!(
            matches!(ws.connect(url, &[]), Err(Error::InvalidUrl { .. })),
            "connect({url:?}) must be refused"
        );
    }
    let raw = RawServer::new();
    ws.connect(&raw.url(), &[]).expect("connect");
    assert!(matches!(
        ws.connect(&raw.url(), &[]),
        Err(Error::AlreadyOpen {
            operation: "connect",
            ..
        })
    ));
    let _ = raw.accept_tcp();
}

#[test]
fn connect_request_has_a_slash_path_host_with_port_and_version_13() {
    let raw = RawServer::new();
    let ws = WebSocket::new();
    let rx = record(&ws);
    // No path at all: AIR once sent an empty request target.
    ws.connect(&format!("ws://127.0.0.1:{}", raw.port), &["chat"])
        .expect("connect");
    let (_peer, head) = raw.accept();
    assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
    assert_eq!(
        header(&head, "Host"),
        Some(format!("127.0.0.1:{}", raw.port).as_str())
    );
    assert_eq!(header(&head, "Sec-WebSocket-Version"), Some("13"));
    assert_eq!(header(&head, "Sec-WebSocket-Protocol"), Some("chat"));
    let key = header(&head, "Sec-WebSocket-Key").expect("key");
    let decoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .expect("base64 key")
    };
    assert_eq!(decoded.len(), 16);
    assert_eq!(next(&rx), Seen::Connect);
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");

    // A path with a query goes out whole; a fragment does not.
    let ws = WebSocket::new();
    ws.connect(
        &format!("ws://127.0.0.1:{}/a/b?c=d&e=f#frag", raw.port),
        &[],
    )
    .expect("connect");
    let (_peer, head) = raw.accept();
    assert!(head.starts_with("GET /a/b?c=d&e=f HTTP/1.1\r\n"), "{head}");
}

#[test]
fn connect_matches_response_header_names_case_insensitively() {
    let raw = RawServer::new();
    let ws = WebSocket::new();
    let rx = record(&ws);
    ws.connect(&raw.url(), &[]).expect("connect");
    let (mut peer, _) = raw.accept_with(&[("UPGRADE", "WebSocket"), ("connection", "upgrade")]);
    assert_eq!(next(&rx), Seen::Connect);
    peer.text("ok");
    assert_eq!(next(&rx), Seen::Text("ok".into()));
}

#[test]
fn connect_a_refused_upgrade_dispatches_close_not_connect() {
    let raw = RawServer::new();
    let ws = WebSocket::new();
    let rx = record(&ws);
    ws.connect(&raw.url(), &[]).expect("connect");
    let mut tcp = raw.accept_tcp();
    let _ = read_head(&mut tcp);
    tcp.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        .expect("403");
    let seen = next(&rx);
    assert!(matches!(seen, Seen::Close(_)), "{seen:?}");
}

/// Connects to a raw server that answers the upgrade request with
/// `response`; returns what the `close` event carried: its text, the
/// refusal (status, reason, body) and the close reason.
fn refused_with(response: &'static [u8]) -> (String, Option<(u16, String, String)>, i32) {
    let raw = RawServer::new();
    let ws = WebSocket::new();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        let refusal = e
            .upgrade_refusal()
            .map(|r| (r.status(), r.reason().to_owned(), r.body().to_owned()));
        let reason = e.target::<WebSocket>().map_or(0, |w| w.close_reason());
        let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send((
            e.text().to_owned(),
            refusal,
            reason,
        ));
    });
    ws.add_event_listener(Event::CONNECT, |_e: &Event| {
        panic!("a refused upgrade connected")
    });
    ws.connect(&raw.url(), &[]).expect("connect");
    let mut tcp = raw.accept_tcp();
    let _ = read_head(&mut tcp);
    tcp.write_all(response).expect("answer");
    let seen = rx.recv_timeout(WAIT).expect("a close event");
    assert!(ws.wait_closed(WAIT));
    seen
}

#[test]
fn connect_a_refused_upgrade_tells_its_status_reason_and_body_in_the_close_event() {
    let cases: [(&'static [u8], u16, &str, &str); 5] = [
        (
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 27\r\n\r\nno access for you\r\nsecond line",
            403,
            "Forbidden",
            "no access for you",
        ),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 404, "Not Found", ""),
        (
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 12\r\n\r\nlog in first",
            401,
            "Unauthorized",
            "log in first",
        ),
        (
            b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
            302,
            "Found",
            "",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, "OK", "hello"),
    ];
    for (response, status, reason, body) in cases {
        let (text, refusal, close_reason) = refused_with(response);
        assert_eq!(
            refusal,
            Some((status, reason.to_owned(), body.to_owned())),
            "{text}"
        );
        assert!(text.contains(&format!("HTTP {status} {reason}")), "{text}");
        assert!(text.contains(body), "{text}");
        assert_eq!(close_reason, 1006);
    }
}

#[test]
fn connect_a_101_with_a_wrong_accept_key_is_a_refusal_saying_why() {
    let (text, refusal, _) = refused_with(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n",
    );
    let (status, _, why) = refusal.expect("a refusal");
    assert_eq!(status, 101);
    assert!(why.contains("Sec-WebSocket-Accept"), "{why}");
    assert!(text.contains("Sec-WebSocket-Accept"), "{text}");
}

#[test]
fn a_websocket_reconnected_from_its_own_close_listener_connects_again() {
    let raw = RawServer::new();
    let url = raw.url();
    let ws = WebSocket::new();
    let connects = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let counted = connects.clone();
    ws.add_event_listener(Event::CONNECT, move |e: &Event| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(ws) = e.target::<WebSocket>() {
            ws.send_message(WebSocket::FMT_TEXT, format!("connection {n}"))
                .ok();
        }
    });
    let again = url.clone();
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        if let Some(ws) = e.target::<WebSocket>() {
            let result = ws.connect(&again, &[]).map_err(|e| e.to_string());
            let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(result);
        }
    });
    ws.connect(&url, &[]).expect("connect");
    // The first connection: the server closes it.
    let (mut first, _) = raw.accept();
    assert_eq!(first.read_message(), (OP_TEXT, b"connection 1".to_vec()));
    first.close(4000, "");
    assert_eq!(first.read_close().close_code(), Some(4000));
    drop(first);
    assert_eq!(
        rx.recv_timeout(WAIT).expect("the close listener ran"),
        Ok(()),
        "connect() from the close listener"
    );
    // The second connection, opened by the close listener.
    let (mut second, _) = raw.accept();
    assert_eq!(second.read_message(), (OP_TEXT, b"connection 2".to_vec()));
    assert_eq!(connects.load(Ordering::SeqCst), 2);
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert_eq!(second.read_close().close_code(), Some(1000));
    second.close(1000, "");
    assert!(ws.wait_closed(WAIT));
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "no close event after the local close"
    );
}

// ------------------------------------------------------------ threads

#[test]
fn send_message_from_another_thread_completes_while_the_read_loop_waits() {
    let (ws, _rx, mut peer) = client_of_raw_peer();
    // Nothing ever arrives: the connection's thread is blocked in read.
    let (done_tx, done_rx) = mpsc::channel();
    let sender = ws.clone();
    let t = std::thread::spawn(move || {
        for i in 0..100 {
            sender
                .send_message(WebSocket::FMT_TEXT, format!("m{i}"))
                .expect("send");
        }
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(WAIT)
        .expect("the sends completed at once");
    t.join().expect("sender thread");
    for i in 0..100 {
        let (op, data) = peer.read_message();
        assert_eq!((op, data), (OP_TEXT, format!("m{i}").into_bytes()));
    }
}

#[test]
fn listeners_may_send_close_and_drop_handles_without_deadlock() {
    let server = EchoServer::start();
    let ws = WebSocket::new();
    let rx = record(&ws);
    let weak = ws.downgrade();
    ws.add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
        if let Some(me) = weak.upgrade() {
            match e.string_data() {
                Some("first") => me
                    .send_message(WebSocket::FMT_TEXT, "second")
                    .expect("send"),
                Some("second") => me.close(4444).expect("close from a listener"),
                _ => {}
            }
            drop(me); // a handle dropped inside a listener
        }
    });
    ws.connect(&server.url(), &[]).expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    ws.send_message(WebSocket::FMT_TEXT, "first").expect("send");
    assert_eq!(next(&rx), Seen::Text("first".into()));
    assert_eq!(next(&rx), Seen::Text("second".into()));
    assert!(ws.wait_closed(WAIT));
    assert_eq!(ws.close_reason(), 4444);
    assert_eq!(
        server.wait_for(|s| matches!(s, Seen::Close(_))),
        Seen::Close(4444)
    );
}

#[test]
fn dropping_the_last_handle_closes_with_1001() {
    let server = EchoServer::start();
    let (ws, _rx) = open_client(&server.url(), &[]);
    server.wait_for(|s| *s == Seen::Connect);
    drop(ws);
    assert_eq!(
        server.wait_for(|s| matches!(s, Seen::Close(_))),
        Seen::Close(1001)
    );
}

#[test]
fn a_listener_dropping_the_last_handle_in_a_burst_closes_with_1001() {
    // The application's only handle sits in a slot that the first message's
    // listener empties, while more messages of the same read are pending.
    let raw = RawServer::new();
    let slot: Arc<Mutex<Option<WebSocket>>> = Arc::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    {
        let ws = WebSocket::new();
        let (slot2, seen2) = (slot.clone(), seen.clone());
        ws.add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
            seen2
                .lock()
                .unwrap()
                .push(e.string_data().unwrap_or("").to_owned());
            drop(slot2.lock().unwrap().take());
        });
        ws.connect(&raw.url(), &[]).expect("connect");
        *slot.lock().unwrap() = Some(ws);
    }
    let (mut peer, _) = raw.accept();
    let burst: Vec<u8> = (0..5)
        .flat_map(|i| peer.prepare(RawFrame::new(OP_TEXT, format!("m{i}"))))
        .collect();
    peer.send_raw(&burst);
    let close = peer.read_close();
    assert_eq!(close.close_code(), Some(1001));
    assert!(slot.lock().unwrap().is_none());
    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty() && seen.iter().enumerate().all(|(i, m)| *m == format!("m{i}")),
        "{seen:?}"
    );
}

#[test]
fn no_library_thread_outlives_its_last_handle() {
    // Run in a child process so that other tests' threads do not count.
    if std::env::var_os("AIRWS_THREAD_CHILD").is_none() {
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "no_library_thread_outlives_its_last_handle",
                "--test-threads=1",
                "--nocapture",
            ])
            .env("AIRWS_THREAD_CHILD", "1")
            .output()
            .expect("run the child");
        assert!(
            out.status.success(),
            "child failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("THREADS-OK"));
        return;
    }
    assert!(library_threads().is_empty(), "{:?}", library_threads());
    {
        let server = EchoServer::start();
        let mut clients = Vec::new();
        for _ in 0..5 {
            let (ws, rx) = open_client(&server.url(), &[]);
            ws.send_message(WebSocket::FMT_TEXT, "x").expect("send");
            assert_eq!(next(&rx), Seen::Text("x".into()));
            clients.push((ws, rx));
        }
        assert!(library_threads().len() >= 11, "{:?}", library_threads());
        // One client closes, the others are just dropped.
        clients[0].0.close(WebSocket::CLOSE_NORMAL).expect("close");
        drop(clients);
    }
    assert!(
        eventually(|| library_threads().is_empty()),
        "threads left: {:?}",
        library_threads()
    );
    println!("THREADS-OK");
}

// ------------------------------------------------------------ EventDispatcher

/// An event type of the application's, as AS3 declares
/// `public static const CUSTOM:String = "custom"`.
const CUSTOM: EventType = EventType::new("custom");

#[test]
fn add_event_listener_with_priority_calls_higher_first_then_in_registration_order() {
    let ws = WebSocket::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    for (name, prio) in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1)] {
        let o = order.clone();
        ws.add_event_listener_with_priority(
            CUSTOM,
            move |_e: &Event| o.lock().unwrap_or_else(|p| p.into_inner()).push(name),
            prio,
        );
    }
    assert!(ws.dispatch_event(&Event::new(CUSTOM, false)));
    assert_eq!(*order.lock().unwrap(), vec!["b", "d", "a", "c", "e"]);
}

#[test]
fn remove_event_listener_and_has_event_listener_and_will_trigger() {
    let ws = WebSocket::new();
    assert!(!ws.has_event_listener(CUSTOM));
    assert!(!ws.will_trigger(CUSTOM));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let id = ws.add_event_listener(CUSTOM, move |_e: &Event| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert!(ws.has_event_listener(CUSTOM));
    assert!(ws.will_trigger(CUSTOM));
    ws.dispatch_event(&Event::new(CUSTOM, false));
    assert!(ws.remove_event_listener(CUSTOM, id));
    assert!(!ws.remove_event_listener(CUSTOM, id), "already removed");
    ws.dispatch_event(&Event::new(CUSTOM, false));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(!ws.has_event_listener(CUSTOM));

    let server = ServerSocket::new();
    let id = server.add_event_listener(ServerSocketConnectEvent::CONNECT, |_e: &Event| {});
    assert!(server.has_event_listener(ServerSocketConnectEvent::CONNECT));
    assert!(server.remove_event_listener(ServerSocketConnectEvent::CONNECT, id));
}

#[test]
fn dispatch_event_returns_false_only_when_a_cancelable_events_default_was_prevented() {
    let ws = WebSocket::new();
    ws.add_event_listener(CUSTOM, |e: &Event| e.prevent_default());
    let cancelable = Event::new(CUSTOM, true);
    assert!(cancelable.cancelable());
    assert!(!ws.dispatch_event(&cancelable));
    assert!(cancelable.is_default_prevented());
    let plain = Event::new(CUSTOM, false);
    assert!(
        ws.dispatch_event(&plain),
        "prevent_default does nothing here"
    );
    assert!(!plain.is_default_prevented());
    assert_eq!(plain.event_type(), CUSTOM);
    assert_eq!(plain.event_type(), "custom");
}

#[test]
fn dispatch_event_snapshot_added_listeners_wait_removed_ones_still_run() {
    let ws = WebSocket::new();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let later_id = Arc::new(Mutex::new(None));
    let (w, c, l) = (ws.downgrade(), calls.clone(), later_id.clone());
    ws.add_event_listener(CUSTOM, move |_e: &Event| {
        c.lock().unwrap().push("first");
        if let Some(ws) = w.upgrade() {
            let c2 = c.clone();
            ws.add_event_listener(CUSTOM, move |_e: &Event| c2.lock().unwrap().push("added"));
            if let Some(id) = l.lock().unwrap().take() {
                ws.remove_event_listener(CUSTOM, id);
            }
        }
    });
    let c = calls.clone();
    let id = ws.add_event_listener(CUSTOM, move |_e: &Event| c.lock().unwrap().push("removed"));
    *later_id.lock().unwrap() = Some(id);
    ws.dispatch_event(&Event::new(CUSTOM, false));
    assert_eq!(*calls.lock().unwrap(), vec!["first", "removed"]);
    calls.lock().unwrap().clear();
    ws.dispatch_event(&Event::new(CUSTOM, false));
    assert_eq!(*calls.lock().unwrap(), vec!["first", "added"]);
}

#[test]
fn stop_immediate_propagation_skips_the_remaining_listeners() {
    let ws = WebSocket::new();
    let calls = Arc::new(AtomicUsize::new(0));
    ws.add_event_listener(CUSTOM, |e: &Event| e.stop_immediate_propagation());
    let c = calls.clone();
    ws.add_event_listener(CUSTOM, move |_e: &Event| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    ws.dispatch_event(&Event::new(CUSTOM, false));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn event_types_string_literals_name_the_same_types_as_the_constants() {
    // AS3 code that passes the strings themselves ports as it is.
    let ws = WebSocket::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let id = ws.add_event_listener("custom", move |e: &Event| {
        assert_eq!(e.event_type(), CUSTOM);
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert!(ws.has_event_listener(CUSTOM));
    ws.dispatch_event(&Event::new(CUSTOM, false));
    ws.dispatch_event(&Event::new("custom", false));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(ws.remove_event_listener(CUSTOM, id));
    assert!(!ws.has_event_listener("custom"));

    // Listeners registered with "connect" and "websocketData" hear the
    // library's events, whose types are the constants.
    let server = EchoServer::start();
    let ws = WebSocket::new();
    let (tx, rx) = mpsc::channel();
    for name in ["connect", "websocketData"] {
        let tx = tx.clone();
        ws.add_event_listener(name, move |e: &Event| {
            let _ = tx.send((e.event_type(), e.event_type() == Event::CONNECT));
        });
    }
    ws.connect(&server.url(), &[]).expect("connect");
    assert_eq!(
        rx.recv_timeout(WAIT).expect("connect"),
        (Event::CONNECT, true)
    );
    ws.send_message(WebSocket::FMT_TEXT, "x").expect("send");
    assert_eq!(
        rx.recv_timeout(WAIT).expect("the echo"),
        (WebSocketEvent::DATA, false)
    );
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(WAIT));

    // A ServerSocket's connect is `Event::CONNECT` too, as in AS3.
    let server = ServerSocket::new();
    server.bind(0, "127.0.0.1").expect("bind");
    let (tx, rx) = mpsc::channel();
    server.add_event_listener(Event::CONNECT, move |e: &Event| {
        let _ = tx.send(e.socket().is_some());
    });
    server.listen().expect("listen");
    let _c = TcpStream::connect(("127.0.0.1", server.local_port())).expect("connect");
    assert!(rx.recv_timeout(WAIT).expect("the accepted socket"));
    server.close();
}

#[test]
fn a_panicking_listener_neither_kills_the_connection_nor_skips_the_close_handshake() {
    let server = EchoServer::start();
    let ws = WebSocket::new();
    ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
        if e.string_data() == Some("boom") {
            panic!("a listener panics (this panic is expected by the test)");
        }
    });
    let rx = record(&ws);
    ws.connect(&server.url(), &[]).expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    ws.send_message(WebSocket::FMT_TEXT, "boom").expect("send");
    assert_eq!(next(&rx), Seen::Text("boom".into()));
    ws.send_message(WebSocket::FMT_TEXT, "after").expect("send");
    assert_eq!(next(&rx), Seen::Text("after".into()));
    ws.close(4100).expect("close");
    assert_eq!(
        server.wait_for(|s| matches!(s, Seen::Close(_))),
        Seen::Close(4100)
    );
    assert!(ws.wait_closed(WAIT));
}

#[test]
fn event_target_is_the_dispatching_websocket() {
    let server = EchoServer::start();
    let ws = WebSocket::new();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    ws.add_event_listener(Event::CONNECT, move |e: &Event| {
        let target = e.target::<WebSocket>();
        let _ = tx.lock().unwrap().send(target.map(|w| w.connected()));
    });
    ws.connect(&server.url(), &[]).expect("connect");
    assert_eq!(rx.recv_timeout(WAIT).expect("connect"), Some(true));
}

// ------------------------------------------------------------ ServerSocket

#[test]
fn server_socket_bind_listen_properties_connect_event_and_close() {
    let server = ServerSocket::new();
    assert!(!server.bound());
    assert!(!server.listening());
    assert!(server.listen().is_err(), "listen before bind");
    server.bind(0, "127.0.0.1").expect("bind");
    assert!(server.bound());
    assert_eq!(server.local_address(), "127.0.0.1");
    let port = server.local_port();
    assert_ne!(port, 0);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let socket = e.socket();
        let again = e.socket();
        let _ = tx
            .lock()
            .unwrap()
            .send((socket.map(|s| s.peer_addr().is_ok()), again.is_none()));
    });
    server.listen().expect("listen");
    assert!(server.listening());
    let _c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    assert_eq!(
        rx.recv_timeout(WAIT).expect("connect event"),
        (Some(true), true)
    );
    server.close();
    assert!(!server.listening());
    assert!(
        eventually(|| TcpStream::connect(("127.0.0.1", port)).is_err()),
        "the port still accepts after close()"
    );
}

#[test]
fn server_socket_bind_rejects_a_bad_address() {
    let server = ServerSocket::new();
    assert!(server.bind(0, "not an address").is_err());
    assert!(!server.bound());
}

#[test]
fn wait_closed_and_connected_follow_the_connection() {
    let server = EchoServer::start();
    let ws = WebSocket::new();
    assert!(!ws.connected());
    assert!(ws.wait_closed(Duration::from_millis(1)), "nothing open");
    let rx = record(&ws);
    ws.connect(&server.url(), &[]).expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    assert!(ws.connected());
    assert!(!ws.wait_closed(Duration::from_millis(50)), "still open");
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(WAIT));
    assert!(!ws.connected());
}

#[test]
fn to_string_gives_as3s_object_strings() {
    assert_eq!(WebSocket::new().to_string(), "[object WebSocket]");
    assert_eq!(ServerSocket::new().to_string(), "[object ServerSocket]");
    let e = Event::new(Event::CONNECT, false);
    assert!(
        e.to_string()
            .starts_with("[Event type=\"connect\" cancelable=false"),
        "{e}"
    );
    let io = IOErrorEvent::create("boom", IOErrorEvent::SOCKET_ERROR_ID);
    assert_eq!(io.error_id(), 2031);
    assert_eq!(io.text(), "boom");
    assert!(io.to_string().contains("ioError"), "{io}");
}

#[test]
fn activate_and_deactivate_are_never_dispatched_by_the_library() {
    let server = EchoServer::start();
    let ws = WebSocket::new();
    let count = Arc::new(AtomicUsize::new(0));
    for t in [Event::ACTIVATE, Event::DEACTIVATE] {
        let c = count.clone();
        ws.add_event_listener(t, move |_e: &Event| {
            c.fetch_add(1, Ordering::SeqCst);
        });
    }
    let rx = record(&ws);
    ws.connect(&server.url(), &[]).expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    ws.send_message(WebSocket::FMT_TEXT, "x").expect("send");
    assert_eq!(next(&rx), Seen::Text("x".into()));
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(WAIT));
    assert_eq!(count.load(Ordering::SeqCst), 0);
    // They can be dispatched by the application, like any event.
    assert_eq!(Event::ACTIVATE, "activate");
    assert_eq!(Event::DEACTIVATE, "deactivate");
    assert!(ws.dispatch_event(&Event::new(Event::ACTIVATE, false)));
    assert_eq!(count.load(Ordering::SeqCst), 1);
}
