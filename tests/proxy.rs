//! Clients through a real HTTP proxy: tinyproxy, started here on 127.0.0.1
//! with a configuration of our own, with and without proxy credentials.
//! ws and wss through it, a refusal that names the proxy's status, and the
//! proxy environment variables (in child processes, since the environment
//! is the whole process's).
//!
//! Switched on by the `proxy` feature (`.ci/run` installs tinyproxy); with
//! the feature on, a missing tinyproxy fails the tests.
#![cfg(feature = "proxy")]

mod support;

use airws::{
    ClientTls, Config, Error, Event, EventDispatcher, IOErrorEvent, Proxy, ServerTls, WebSocket,
};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use support::*;

/// A tinyproxy of ours on 127.0.0.1, killed when dropped.
struct TinyProxy {
    _process: Kill,
    port: u16,
    _dir: TempDir,
}

/// A folder of ours, removed when dropped.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TinyProxy {
    /// Starts tinyproxy; with `credentials`, it demands them (Basic).
    fn start(credentials: Option<(&str, &str)>) -> TinyProxy {
        let program = std::env::var("AIRWS_TINYPROXY").unwrap_or_else(|_| "tinyproxy".into());
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("address").port()
        };
        let dir =
            std::env::temp_dir().join(format!("airws-tinyproxy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a folder");
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 30\nMaxClients 100\nLogLevel Warning\n"
        );
        if let Some((user, password)) = credentials {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let path = dir.join("tinyproxy.conf");
        std::fs::write(&path, conf).expect("the configuration");
        let child = Command::new(&program)
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start tinyproxy `{program}` ({e}): .ci/run installs it")
            });
        let process = Kill(child);
        assert!(
            eventually(|| TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "tinyproxy does not listen on {port}"
        );
        TinyProxy {
            _process: process,
            port,
            _dir: TempDir(dir),
        }
    }

    fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((u, p)) => format!("http://{u}:{p}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }
}

/// Echoes one message through `ws` and closes.
fn echo_once(ws: &WebSocket, rx: &mpsc::Receiver<Seen>) {
    ws.send_message(WebSocket::FMT_TEXT, "through the proxy")
        .expect("send");
    assert_eq!(next(rx), Seen::Text("through the proxy".into()));
    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
    assert!(ws.wait_closed(WAIT));
}

#[test]
fn ws_goes_through_the_proxy() {
    let proxy = TinyProxy::start(None);
    let server = EchoServer::start();
    let config = Config::default().proxy(Proxy::http(&proxy.url(None)).expect("a proxy URL"));
    let ws = WebSocket::with_config(config);
    let rx = record(&ws);
    ws.connect(&server.url(), &[]).expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    echo_once(&ws, &rx);
}

#[test]
fn wss_goes_through_the_proxy_with_credentials_and_the_servers_name() {
    let proxy = TinyProxy::start(Some(("alice", "s3cret")));
    let tls = ServerTls::from_pem(
        include_bytes!("tls/localhost.pem"),
        include_bytes!("tls/localhost.key"),
    )
    .expect("the test identity");
    let server = EchoServer::tls(tls);
    let ca = include_bytes!("tls/ca.pem");
    let config = Config::default()
        .proxy(Proxy::http(&proxy.url(Some(("alice", "s3cret")))).expect("a proxy URL"))
        .client_tls(
            ClientTls::new()
                .add_root_certificate_pem(ca)
                .expect("the CA"),
        );
    let ws = WebSocket::with_config(config);
    let rx = record(&ws);
    // By name: the proxy resolves it, and TLS checks the certificate for it.
    ws.connect(&format!("wss://localhost:{}/", server.port), &[])
        .expect("connect");
    assert_eq!(
        next(&rx),
        Seen::Connect,
        "no certificateError: verified through the tunnel"
    );
    echo_once(&ws, &rx);
}

#[test]
fn a_proxy_that_refuses_is_an_io_error_naming_its_status() {
    let proxy = TinyProxy::start(Some(("alice", "s3cret")));
    let server = EchoServer::start();
    for (credentials, status) in [(None, 407), (Some(("alice", "wrong")), 401)] {
        let config = Config::default().proxy(Proxy::http(&proxy.url(credentials)).expect("a URL"));
        let ws = WebSocket::with_config(config);
        let (tx, rx) = mpsc::channel();
        ws.add_event_listener(IOErrorEvent::IO_ERROR, move |e: &Event| {
            let status = match e.error() {
                Some(Error::Proxy { status, .. }) => *status,
                _ => None,
            };
            let _ = tx.send((status, e.text().to_owned()));
        });
        ws.connect(&server.url(), &[]).expect("connect");
        let (got, text) = rx.recv_timeout(WAIT).expect("ioError");
        assert_eq!(got, Some(status), "{text}");
        assert!(text.contains(&format!("HTTP {status}")), "{text}");
        assert!(
            text.contains(&format!("127.0.0.1:{}", proxy.port)),
            "{text}"
        );
        assert!(ws.wait_closed(WAIT));
    }
}

/// Runs the test `name` in a child process with `env` set (and no other
/// proxy variable), and asserts that it succeeds.
fn in_child_with_env(name: &str, env: &[(&str, String)]) {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([name, "--exact", "--test-threads=1"])
        .stdin(Stdio::null());
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let status = command.status().expect("the child");
    assert!(status.success(), "{name} failed in its child process");
}

/// Where a connection from `ws` (with the default config: the proxy from
/// the environment) to the raw server came from: the proxy, or directly.
fn connects_through(proxy_port: Option<u16>, url_host: &str, tls: bool) {
    let raw = RawServer::new();
    let scheme = if tls { "wss" } else { "ws" };
    let ws = WebSocket::new();
    ws.connect(&format!("{scheme}://{url_host}:{}/", raw.port), &[])
        .expect("connect");
    let tcp = raw.accept_tcp();
    let peer = tcp.peer_addr().expect("the peer");
    // tinyproxy connects from another port than our socket's: it is not
    // ours, and the proxy is the one process between them.
    let ours = ws_socket_ports();
    match proxy_port {
        Some(_) => assert!(
            !ours.contains(&peer.port()),
            "the connection came from the proxy"
        ),
        None => assert!(ours.contains(&peer.port()), "the connection came from us"),
    }
    drop(ws);
}

/// The local ports of this process's TCP sockets that connect out.
fn ws_socket_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return ports;
    };
    let inodes: Vec<String> = dir
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_owned)
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 9 && inodes.iter().any(|i| i == f[9]) {
            if let Some(p) = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
            {
                ports.push(p);
            }
        }
    }
    ports
}

#[test]
fn the_proxy_environment_is_read_as_requests_reads_it() {
    // One proxy for all the children; each child a set of variables.
    let proxy = TinyProxy::start(None);
    let url = proxy.url(None);
    let p = Some(proxy.port);
    for (case, env, host, tls, through) in [
        (
            "http_proxy",
            vec![("http_proxy", url.clone())],
            "127.0.0.1",
            false,
            p,
        ),
        (
            "HTTP_PROXY",
            vec![("HTTP_PROXY", url.clone())],
            "127.0.0.1",
            false,
            p,
        ),
        (
            "https_proxy for ws",
            vec![("https_proxy", url.clone())],
            "127.0.0.1",
            false,
            None,
        ),
        (
            "https_proxy for wss",
            vec![("https_proxy", url.clone())],
            "127.0.0.1",
            true,
            p,
        ),
        (
            "http_proxy for wss",
            vec![("http_proxy", url.clone())],
            "127.0.0.1",
            true,
            None,
        ),
        (
            "lower case wins",
            vec![
                ("http_proxy", url.clone()),
                ("HTTP_PROXY", "http://127.0.0.1:1".into()),
            ],
            "127.0.0.1",
            false,
            p,
        ),
        (
            "all_proxy",
            vec![("all_proxy", url.clone())],
            "127.0.0.1",
            false,
            p,
        ),
        (
            "no_proxy by address",
            vec![
                ("http_proxy", url.clone()),
                ("no_proxy", "localhost,127.0.0.1".into()),
            ],
            "127.0.0.1",
            false,
            None,
        ),
        (
            "no_proxy by name",
            vec![
                ("http_proxy", url.clone()),
                ("NO_PROXY", "localhost".into()),
            ],
            "localhost",
            false,
            None,
        ),
        (
            "no_proxy *",
            vec![("all_proxy", url.clone()), ("no_proxy", "*".into())],
            "127.0.0.1",
            false,
            None,
        ),
    ] {
        let mut env: Vec<(&str, String)> = env;
        env.push(("AIRWS_CASE_HOST", host.to_owned()));
        env.push(("AIRWS_CASE_TLS", tls.to_string()));
        env.push((
            "AIRWS_CASE_THROUGH",
            through.map_or("-".into(), |p| p.to_string()),
        ));
        eprintln!("case {case}");
        in_child_with_env("proxy_environment_case", &env);
    }
}

#[test]
fn proxy_environment_case() {
    // The body of one case of the test above, in its child process.
    let Ok(host) = std::env::var("AIRWS_CASE_HOST") else {
        return;
    };
    let tls = std::env::var("AIRWS_CASE_TLS").as_deref() == Ok("true");
    let through = std::env::var("AIRWS_CASE_THROUGH")
        .ok()
        .and_then(|p| p.parse().ok());
    connects_through(through, &host, tls);
}

#[test]
fn the_client_example_goes_through_a_proxy() {
    use std::io::Write;
    let proxy = TinyProxy::start(None);
    let server = EchoServer::start();
    let mut client = Command::new(example("client"))
        .args(["--proxy", &proxy.url(None), &server.url()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client example");
    writeln!(client.stdin.take().expect("stdin"), "through a proxy").expect("a line");
    let out = client.wait_with_output().expect("its output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through a proxy\n");
}
