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

// ------------------------------------------------------------ redirects

/// A server that answers one upgrade request with `status` and
/// `Location: location`; the thread returns the request head it got.
fn redirector(status: u16, location: String) -> (RawServer, std::thread::JoinHandle<String>) {
    let raw = RawServer::new();
    let listener = raw.listener.try_clone().expect("clone");
    let handle = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().expect("accept");
        let head = read_head(&mut tcp);
        let answer =
            format!("HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
        use std::io::Write;
        tcp.write_all(answer.as_bytes()).expect("answer");
        head
    });
    (raw, handle)
}

/// What the `close` of a connection that did not open carried.
fn closed_with(ws: &WebSocket) -> std::sync::mpsc::Receiver<(Option<u16>, String)> {
    use airws::{Event, EventDispatcher};
    let (tx, rx) = std::sync::mpsc::channel();
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        let _ = tx.send((e.upgrade_refusal().map(|r| r.status()), e.text().to_owned()));
    });
    rx
}

#[test]
fn redirects_are_followed_when_asked_for_and_refused_otherwise() {
    let server = EchoServer::start();
    // Two hops, a relative one then an absolute http:// one.
    let (second, second_head) = redirector(307, format!("http://127.0.0.1:{}/echo", server.port));
    let (first, first_head) = redirector(302, format!("http://127.0.0.1:{}/hop", second.port));
    let ws = WebSocket::with_config(airws::Config::default().max_redirects(5));
    ws.set_request_header("Origin", "https://app.example")
        .expect("valid");
    let rx = record(&ws);
    ws.connect(&first.url(), &[]).expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    ws.send_message(WebSocket::FMT_TEXT, "after two redirects")
        .expect("send");
    assert_eq!(next(&rx), Seen::Text("after two redirects".into()));
    assert!(first_head
        .join()
        .expect("first")
        .starts_with("GET / HTTP/1.1"));
    let second_head = second_head.join().expect("second");
    assert!(
        second_head.starts_with("GET /hop HTTP/1.1"),
        "{second_head}"
    );
    assert_eq!(header(&second_head, "origin"), Some("https://app.example"));
    drop(ws);

    // Not asked for: the redirect is a refused upgrade.
    let (raw, _head) = redirector(302, format!("ws://127.0.0.1:{}/", server.port));
    let ws = WebSocket::new();
    let closes = closed_with(&ws);
    ws.connect(&raw.url(), &[]).expect("connect");
    let (status, _) = closes.recv_timeout(WAIT).expect("close");
    assert_eq!(status, Some(302));
}

#[test]
fn credentials_are_not_sent_to_another_host_after_a_redirect() {
    // 127.0.0.1 sends the client to localhost: another host.
    let (target, target_head) = redirector(404, "/".into());
    let (first, first_head) = redirector(302, format!("ws://localhost:{}/", target.port));
    let ws = WebSocket::with_config(airws::Config::default().max_redirects(2));
    ws.set_request_header("Authorization", "Bearer t")
        .expect("valid");
    ws.set_request_header("Cookie", "a=1").expect("valid");
    ws.set_request_header("User-Agent", "airws-test")
        .expect("valid");
    let closes = closed_with(&ws);
    ws.connect(&first.url(), &[]).expect("connect");
    let (status, _) = closes.recv_timeout(WAIT).expect("close");
    assert_eq!(status, Some(404), "the last hop's answer");
    let first_head = first_head.join().expect("first");
    assert_eq!(header(&first_head, "authorization"), Some("Bearer t"));
    let target_head = target_head.join().expect("target");
    assert_eq!(header(&target_head, "authorization"), None, "{target_head}");
    assert_eq!(header(&target_head, "cookie"), None, "{target_head}");
    assert_eq!(header(&target_head, "user-agent"), Some("airws-test"));
}

#[test]
fn a_redirect_loop_and_a_chain_too_long_are_named() {
    // A sends to B, B back to A.
    let a = RawServer::new();
    let (b, _b_head) = redirector(302, format!("ws://127.0.0.1:{}/", a.port));
    let a_listener = a.listener.try_clone().expect("clone");
    let b_url = b.url();
    std::thread::spawn(move || {
        use std::io::Write;
        let (mut tcp, _) = a_listener.accept().expect("accept");
        let _ = read_head(&mut tcp);
        let answer =
            format!("HTTP/1.1 301 Moved\r\nLocation: {b_url}\r\nContent-Length: 0\r\n\r\n");
        tcp.write_all(answer.as_bytes()).expect("answer");
    });
    let ws = WebSocket::with_config(airws::Config::default().max_redirects(5));
    let closes = closed_with(&ws);
    ws.connect(&a.url(), &[]).expect("connect");
    let (status, text) = closes.recv_timeout(WAIT).expect("close");
    assert_eq!(status, None);
    assert!(text.starts_with("a redirect loop: "), "{text}");
    assert!(text.contains(&b.url()) && text.contains(&a.url()), "{text}");

    // Two redirects with one allowed.
    let server = EchoServer::start();
    let (second, _h2) = redirector(302, server.url());
    let (first, _h1) = redirector(302, second.url());
    let ws = WebSocket::with_config(airws::Config::default().max_redirects(1));
    let closes = closed_with(&ws);
    ws.connect(&first.url(), &[]).expect("connect");
    let (_, text) = closes.recv_timeout(WAIT).expect("close");
    assert!(
        text.starts_with("more redirects than the 1 allowed: "),
        "{text}"
    );
}
