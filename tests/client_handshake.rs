//! What a client adds to its upgrade request, over real loopback sockets:
//! headers the application sets (a token, a cookie, an origin), the URL's
//! user and password as Basic authorization, headers that could inject
//! others refused before anything is sent, and the server's 101 headers
//! read after `connect`.

mod support;

use airws::{Error, WebSocket};
use base64::Engine as _;
use support::*;

#[test]
fn headers_reach_the_server_and_the_101s_headers_can_be_read() {
    let raw = RawServer::new();
    let ws = WebSocket::new();
    for (name, value) in [
        ("Authorization", "Bearer t0ken"),
        ("Cookie", "session=42; theme=dark"),
        ("Origin", "https://app.example"),
        ("User-Agent", "airws-test/1.0"),
        ("X-Request-Id", "7"),
    ] {
        ws.set_request_header(name, value).expect("a valid header");
    }
    let rx = record(&ws);
    ws.connect(&raw.url(), &[]).expect("connect");
    let (_peer, head) = raw.accept_with(&[
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Set-Cookie", "seen=1; HttpOnly"),
    ]);
    assert_eq!(next(&rx), Seen::Connect);
    assert_eq!(header(&head, "authorization"), Some("Bearer t0ken"));
    assert_eq!(header(&head, "cookie"), Some("session=42; theme=dark"));
    assert_eq!(header(&head, "origin"), Some("https://app.example"));
    assert_eq!(header(&head, "user-agent"), Some("airws-test/1.0"));
    assert_eq!(header(&head, "x-request-id"), Some("7"));
    let response = ws.handshake_response().expect("the 101");
    assert_eq!(response.status(), 101);
    assert_eq!(response.header("SET-COOKIE"), Some("seen=1; HttpOnly"));
    assert!(response.headers().len() >= 4);
}

#[test]
fn a_header_set_again_replaces_the_first_and_one_removed_is_not_sent() {
    let raw = RawServer::new();
    let ws = WebSocket::new();
    ws.set_request_header("X-A", "1").expect("valid");
    ws.set_request_header("x-a", "2").expect("valid");
    ws.set_request_header("X-B", "3").expect("valid");
    assert!(ws.remove_request_header("X-B"));
    assert!(!ws.remove_request_header("X-B"));
    ws.connect(&raw.url(), &[]).expect("connect");
    let (_peer, head) = raw.accept();
    assert_eq!(
        head.matches("x-a:").count() + head.matches("X-A:").count(),
        1,
        "{head}"
    );
    assert_eq!(header(&head, "x-a"), Some("2"));
    assert_eq!(header(&head, "x-b"), None);
}

#[test]
fn the_urls_user_and_password_are_sent_as_basic_authorization() {
    let raw = RawServer::new();
    let ws = WebSocket::new();
    let url = format!("ws://alice:s%40cr%C3%A9t@127.0.0.1:{}/feed", raw.port);
    ws.connect(&url, &[]).expect("connect");
    let (_peer, head) = raw.accept();
    let expected = base64::engine::general_purpose::STANDARD.encode("alice:s@crét");
    assert_eq!(
        header(&head, "authorization"),
        Some(format!("Basic {expected}").as_str())
    );
    // The credentials are not in the request line or the Host header.
    assert!(head.starts_with("GET /feed HTTP/1.1\r\n"), "{head}");
    assert_eq!(
        header(&head, "host"),
        Some(format!("127.0.0.1:{}", raw.port).as_str())
    );
    assert!(!head.contains("alice"), "{head}");
    drop(ws);

    // A header the application set wins over the URL's credentials.
    let raw = RawServer::new();
    let ws = WebSocket::new();
    ws.set_request_header("Authorization", "Bearer mine")
        .expect("valid");
    ws.connect(&format!("ws://alice:pw@127.0.0.1:{}/", raw.port), &[])
        .expect("connect");
    let (_peer, head) = raw.accept();
    assert_eq!(header(&head, "authorization"), Some("Bearer mine"));
    assert_eq!(head.matches("uthorization").count(), 1, "{head}");
}

#[test]
fn header_injection_attempts_are_argument_errors_and_none_of_it_is_sent() {
    let ws = WebSocket::new();
    for (name, value) in [
        ("X-A", "1\r\nX-Injected: yes"),
        ("X-A", "1\nX-Injected: yes"),
        ("X-A", "1\rX-Injected: yes"),
        ("X-A", "nul\0byte"),
        ("X-Injected: yes\r\nX-A", "1"),
        ("X A", "1"),
        ("", "1"),
        ("Host", "evil.example"),
        ("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA=="),
        ("sec-websocket-protocol", "chat"),
        ("Connection", "close"),
        ("Upgrade", "h2c"),
        ("Content-Length", "10"),
    ] {
        match ws.set_request_header(name, value) {
            Err(e @ Error::InvalidArgument { .. }) => {
                assert!(
                    e.to_string().starts_with("ArgumentError: setRequestHeader"),
                    "{e}"
                );
            }
            other => panic!("{name:?}: {value:?} gave {other:?}"),
        }
    }
    // What reaches the server: the library's request and nothing else.
    let raw = RawServer::new();
    ws.connect(&raw.url(), &[]).expect("connect");
    let (_peer, head) = raw.accept();
    assert!(!head.contains("Injected"), "{head}");
    assert!(!head.contains("evil"), "{head}");
    assert_eq!(header(&head, "connection"), Some("Upgrade"));
    assert_eq!(head.matches("\r\n").count(), 7, "six headers: {head}");
}
