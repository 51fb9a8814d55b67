//! The README's main job: `examples/echo_server` and `examples/client` work
//! against each other, as separate processes.

mod support;

use support::{example, Kill};

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Starts the echo server on a free port and returns it with its URL.
/// The output of `child` once it exits, which it must do within 30 s.
fn output_within_30_s(child: Child, what: &str) -> std::process::Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect(what)
        .expect("its output")
}

fn start_echo_server() -> (Kill, String) {
    start_echo_server_with(&[])
}

/// Starts the echo server with `args` on a free port.
fn start_echo_server_with(args: &[&str]) -> (Kill, String) {
    start_echo_server_on(args, "127.0.0.1:0")
}

/// Starts the echo server with `args` on `address`.
fn start_echo_server_on(args: &[&str], address: &str) -> (Kill, String) {
    let mut child = Command::new(example("echo_server"))
        .args(args)
        .arg(address)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start echo_server");
    let stdout = child.stdout.take().expect("stdout");
    let server = Kill(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("echo_server prints its address");
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("an address")
        .to_owned();
    assert!(
        url.starts_with("ws://127.0.0.1:") || url.starts_with("wss://127.0.0.1:"),
        "unexpected first line: {line:?}"
    );
    (server, url)
}

#[test]
fn client_and_echo_server_work_against_each_other() {
    let (_server, url) = start_echo_server();
    let mut client = Command::new(example("client"))
        .arg(&url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start client");
    let lines = ["hello", "κόσμε – ünïcödé", "", "last line"];
    {
        let mut stdin = client.stdin.take().expect("stdin");
        for l in lines {
            writeln!(stdin, "{l}").expect("write to client");
        }
    } // stdin closed: the client sends a close and exits after the reply
    let out = output_within_30_s(client, "client exits after stdin ends");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got, lines, "stderr: {stderr}");
    assert!(stderr.contains("close reason 1000"), "stderr: {stderr}");
}

#[test]
fn client_reports_a_refused_connection() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = Command::new(example("client"))
        .arg(format!("ws://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .output()
        .expect("run client");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "stderr: {stderr}"
    );
}

/// A server that accepts one connection and runs `serve` on it.
fn one_shot_server(serve: fn(std::net::TcpStream)) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            serve(stream);
        }
    });
    port
}

fn client_output(port: u16) -> (std::process::Output, String) {
    let child = Command::new(example("client"))
        .arg(format!("ws://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start client");
    let out = output_within_30_s(child, "client exits by itself");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

#[test]
fn client_exits_non_zero_when_the_upgrade_is_refused() {
    let port = one_shot_server(|mut s| {
        let mut buf = [0u8; 4096];
        let _ = std::io::Read::read(&mut s, &mut buf);
        let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    });
    let (out, stderr) = client_output(port);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("close reason 1006"), "stderr: {stderr}");
    assert!(stderr.contains("HTTP 403 Forbidden"), "stderr: {stderr}");
}

#[test]
fn client_exits_non_zero_after_a_close_with_another_code() {
    let port = one_shot_server(|mut s| {
        let head = support::read_head(&mut s);
        let key = support::header(&head, "Sec-WebSocket-Key").unwrap_or_default();
        let _ = s.write_all(&airws::proto::handshake::accept_response(key, None));
        // A close frame with 4001, then the end of the stream.
        let _ = s.write_all(&[0x88, 2, 0x0F, 0xA1]);
        let mut rest = [0u8; 256];
        let _ = std::io::Read::read(&mut s, &mut rest);
    });
    let (out, stderr) = client_output(port);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("close reason 4001"), "stderr: {stderr}");
}

#[test]
fn client_with_keepalive_exits_non_zero_naming_a_server_that_stopped_answering() {
    // A server that completes the handshake, then never answers: it reads
    // the pings and drops them, until the client is gone.
    let port = one_shot_server(|mut s| {
        let head = support::read_head(&mut s);
        let key = support::header(&head, "Sec-WebSocket-Key").unwrap_or_default();
        let _ = s.write_all(&airws::proto::handshake::accept_response(key, None));
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let mut buf = [0u8; 1024];
        while let Ok(1..) = std::io::Read::read(&mut s, &mut buf) {}
    });
    let mut child = Command::new(example("client"))
        .args(["--ping-interval", "0.2", "--ping-timeout", "0.3"])
        .arg(format!("ws://127.0.0.1:{port}/"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start client");
    // Standard input stays open: the client does not close by itself.
    let stdin = child.stdin.take();
    let out = output_within_30_s(child, "client exits when the server is found dead");
    drop(stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("did not answer pings"), "stderr: {stderr}");
    assert!(stderr.contains("close reason 1011"), "stderr: {stderr}");
}

#[test]
fn the_script_example_prints_the_echo_or_exits_non_zero_naming_the_cause() {
    let (_server, url) = start_echo_server();
    let child = Command::new(example("script"))
        .args([url.as_str(), "héllo script"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start script");
    let out = output_within_30_s(child, "script exits by itself");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "héllo script\n");

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let child = Command::new(example("script"))
        .arg(format!("ws://127.0.0.1:{port}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start script");
    let out = output_within_30_s(child, "script exits by itself");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("refused"), "stderr: {stderr}");
}

/// The lines a child writes to `stream`, as they come.
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line that contains `want`, within 30 s.
fn line_with(rx: &mpsc::Receiver<String>, want: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(want) => return line,
            Ok(_) => {}
            Err(_) => panic!("no line with {want:?} within 30 s"),
        }
    }
}

#[test]
fn client_with_reconnect_comes_back_and_sends_what_was_typed_meanwhile() {
    let (server, url) = start_echo_server();
    let address = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    let mut child = Command::new(example("client"))
        .arg("--reconnect")
        .arg(&url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start client");
    let mut stdin = child.stdin.take().expect("stdin");
    let out = lines_of(child.stdout.take().expect("stdout"));
    let err = lines_of(child.stderr.take().expect("stderr"));
    // (If the test fails, its input ends as it unwinds, and so does it.)
    line_with(&err, "connected to");
    writeln!(stdin, "one").expect("type");
    assert_eq!(line_with(&out, "one"), "one");
    // The server goes away: the client waits and tries again.
    drop(server);
    line_with(&err, "reconnecting in");
    writeln!(stdin, "typed while away").expect("type");
    writeln!(stdin, "and another").expect("type");
    // Back on the same port: what was typed goes out, in order.
    let (_server, _) = start_echo_server_on(&[], &address);
    line_with(&err, "connected again");
    assert_eq!(
        out.recv_timeout(Duration::from_secs(30)).expect("echo"),
        "typed while away"
    );
    assert_eq!(
        out.recv_timeout(Duration::from_secs(30)).expect("echo"),
        "and another"
    );
    writeln!(stdin, "two").expect("type");
    assert_eq!(line_with(&out, "two"), "two");
    drop(stdin);
    let status = output_within_30_s(child, "client exits after its input ends").status;
    assert!(status.success(), "{status}");
}

#[test]
fn air_port_runs_its_exchange_and_exits_zero() {
    let child = Command::new(example("air_port"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start air_port");
    let out = output_within_30_s(child, "air_port exits by itself");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "air_port failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "client: connected, protocol chat",
        "client: text héllo from AS3",
        "client: binary of 3 bytes",
        "server: client closed with 4000",
        "air_port: OK",
    ] {
        assert!(stdout.lines().any(|l| l == line), "no {line:?} in {stdout}");
    }
}

#[test]
fn client_prints_its_help_and_refuses_a_bad_command_line() {
    let help = Command::new(example("client"))
        .arg("--help")
        .output()
        .expect("run client");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for option in ["-H", "--proxy", "--ca", "--insecure", "--subprotocol"] {
        assert!(text.contains(option), "{option} in: {text}");
    }
    for bad in [
        &["--bogus", "ws://x/"][..],
        &["-H", "no colon", "ws://x/"],
        &[],
    ] {
        let out = Command::new(example("client"))
            .args(bad)
            .stdin(Stdio::null())
            .output()
            .expect("run client");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn client_sends_its_headers_and_subprotocols_and_reports_a_refusal() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().expect("accept");
        let head = support::read_head(&mut tcp);
        tcp.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nbad token\n")
            .expect("answer");
        head
    });
    let out = Command::new(example("client"))
        .args([
            "-H",
            "Authorization: Bearer t0ken",
            "--header",
            "X-Trace: 1",
            "-s",
            "chat",
            "--no-proxy",
            &format!("ws://127.0.0.1:{port}/"),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run client");
    let head = server.join().expect("the server");
    assert_eq!(
        support::header(&head, "authorization"),
        Some("Bearer t0ken")
    );
    assert_eq!(support::header(&head, "x-trace"), Some("1"));
    assert_eq!(
        support::header(&head, "sec-websocket-protocol"),
        Some("chat")
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP 403 Forbidden: bad token"), "{stderr}");
}

#[test]
fn client_trusts_a_ca_given_with_ca_and_accepts_any_certificate_with_k() {
    let tls = airws::ServerTls::from_pem(
        include_bytes!("tls/localhost.pem"),
        include_bytes!("tls/localhost.key"),
    )
    .expect("the test identity");
    let server = support::EchoServer::tls(tls);
    let url = format!("wss://localhost:{}/", server.port);
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/ca.pem");
    for args in [vec!["--ca", ca], vec!["-k"], vec![]] {
        let mut client = Command::new(example("client"))
            .args(&args)
            .args(["--no-proxy", &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start client");
        writeln!(client.stdin.take().expect("stdin"), "over TLS").expect("a line");
        let out = output_within_30_s(client, "client exits");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if args.is_empty() {
            // Neither: the test CA is not trusted, and the client says how.
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains("-k accepts it"), "{stderr}");
        } else {
            assert!(out.status.success(), "{args:?}: {stderr}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "over TLS\n");
        }
    }
}

#[test]
fn echo_server_refuses_foreign_origins_and_serves_wss() {
    // --origin: a page of another origin gets 403.
    let (_server, url) = start_echo_server_with(&["--origin", "https://app.example"]);
    let port: u16 = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    for (origin, status) in [
        ("https://app.example", "101"),
        ("https://evil.example", "403"),
    ] {
        let (_peer, head) = {
            let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            tcp.write_all(
                format!(
                    "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                     Origin: {origin}\r\n\r\n"
                )
                .as_bytes(),
            )
            .expect("request");
            let head = support::read_head(&mut tcp);
            (tcp, head)
        };
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{origin}: {head}"
        );
    }
    // --tls-cert and --tls-key: wss, which the client example reaches
    // trusting the test CA.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/");
    let cert = format!("{dir}localhost.pem");
    let key = format!("{dir}localhost.key");
    let (_tls_server, tls_url) = start_echo_server_with(&["--tls-cert", &cert, "--tls-key", &key]);
    assert!(tls_url.starts_with("wss://"), "{tls_url}");
    let url = tls_url.replace("127.0.0.1", "localhost");
    let mut client = Command::new(example("client"))
        .args(["--ca", &format!("{dir}ca.pem"), "--no-proxy", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start client");
    writeln!(client.stdin.take().expect("stdin"), "secure echo").expect("a line");
    let out = output_within_30_s(client, "client exits");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "secure echo\n");
}
