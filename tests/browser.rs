//! A real browser: headless Chromium loads `examples/browser_demo`'s page and
//! exchanges text and binary messages with it over a WebSocket on the same
//! port, then closes with a code. Both sides' observations are checked.
//! Chromium also meets the Origin allow-list (a page of another origin is
//! refused, a page of the server's own is served) and a wss
//! `ServerSocket::with_tls` whose test CA it trusts. With permessage-deflate
//! on in our servers, Chromium agrees to it (with and without context
//! takeover, with smaller windows) and exchanges 1 MiB messages.
//!
//! Switched on by the `browser` feature (`.ci/run` installs Chromium, and
//! NSS's `certutil` for the CA); with the feature on, a missing browser or
//! `certutil` fails the test.
#![cfg(feature = "browser")]

mod support;

use airws::proto::deflate::DeflateConfig;
use airws::{
    Config, Event, EventDispatcher, HttpRequestEvent, ServerSocket, ServerSocketConnectEvent,
    ServerTls, WebSocket, WebSocketEvent,
};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use support::{example, Kill};

fn chromium() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("AIRWS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    assert!(
        path.exists(),
        "Chromium not found at {} (install Debian's chromium, or set AIRWS_CHROMIUM)",
        path.display()
    );
    path
}

/// Removes the browser's profile folder.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A headless Chromium we started, on a profile of its own; killed and its
/// folders removed when dropped.
struct Browser {
    _process: Kill,
    _profile: TempDir,
}

impl Browser {
    /// Opens `url`; with `home`, Chromium's home folder (where it finds the
    /// NSS certificate database `.pki/nssdb`).
    fn open(chromium: &Path, url: &str, home: Option<&Path>) -> Browser {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let profile = TempDir(
            std::env::temp_dir().join(format!("airws-chromium-{}-{n}", std::process::id())),
        );
        std::fs::create_dir_all(&profile.0).expect("profile folder");
        let mut command = Command::new(chromium);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(home) = home {
            command.env("HOME", home);
        }
        let process = Kill(command.spawn().expect("start chromium"));
        Browser {
            _process: process,
            _profile: profile,
        }
    }
}

#[test]
fn chromium_talks_to_the_browser_demo() {
    let chromium = chromium();
    let mut demo = Command::new(example("browser_demo"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start browser_demo");
    let stdout = demo.stdout.take().expect("stdout");
    let _demo = Kill(demo);
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("browser_demo prints its address");
    let url = first.rsplit(' ').next().expect("address").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");

    let _browser = Browser::open(&chromium, &url, None);

    // Collect the server's lines until the page's report arrives.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut lines = Vec::new();
    let report = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no report from the page; the server saw: {lines:#?}"));
        if let Some(report) = line.strip_prefix("REPORT ") {
            break report.to_owned();
        }
        lines.push(line);
    };

    // What the server saw.
    let text = "héllo from the browser ✓";
    assert_eq!(
        lines,
        vec![
            "WS CONNECT protocol=demo.v1".to_owned(),
            format!("WS TEXT {text}"),
            "WS BINARY 0,1,2,127,128,250,255".to_owned(),
            "WS CLOSE 4001".to_owned(),
        ]
    );
    // What the browser saw.
    let expected = format!(
        r#"{{"open":true,"protocol":"demo.v1","text":"{text}","binary":"0,1,2,127,128,250,255","closeCode":4001,"wasClean":true}}"#
    );
    assert_eq!(report, expected);
}

// ---------------------------------------------------------------- pages of our own

/// A server of ours for pages and their WebSockets: `GET` of a page in
/// `pages` answers it; `GET /report?...` sends `REPORT ...` on the channel;
/// WebSockets echo, and report `WS CONNECT origin=<Origin>` (then `WS
/// EXTENSIONS <agreed>` when an extension was agreed), `WS TEXT <text>`
/// (`WS DIGEST TEXT|BINARY <bytes> <sha1>` for binary and for text longer
/// than [`LONG_TEXT`]), `WS CLOSE <code>`, and `WS REFUSED <status>` for an
/// upgrade it refused.
struct PageServer {
    server: ServerSocket,
    port: u16,
    pages: Arc<Mutex<HashMap<String, String>>>,
}

impl PageServer {
    /// `config(port)` is the config of each `WebSocket`, `port` the server's.
    fn bind(
        server: ServerSocket,
        config: fn(u16) -> Config,
        lines: mpsc::Sender<String>,
    ) -> PageServer {
        let pages: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let served = pages.clone();
        let lines = Mutex::new(lines);
        server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
            let port = e.target::<ServerSocket>().map_or(0, |s| s.local_port());
            let ws = WebSocket::with_config(config(port));
            let say = {
                let tx = lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let tx = Mutex::new(tx);
                Arc::new(move |line: String| {
                    let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(line);
                })
            };
            let http = Arc::new(AtomicBool::new(false));
            let opened = Arc::new(AtomicBool::new(false));
            let (pages, s, h) = (served.clone(), say.clone(), http.clone());
            ws.add_event_listener(HttpRequestEvent::REQUEST, move |e: &Event| {
                h.store(true, Ordering::SeqCst);
                let path = e.http_path();
                s(format!("HTTP {path}"));
                if let Some(query) = path.strip_prefix("/report?") {
                    s(format!("REPORT {query}"));
                    e.respond(200, "text/plain", "ok");
                } else if let Some(page) = pages
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(path.split('?').next().unwrap_or(path))
                {
                    e.respond(200, "text/html; charset=utf-8", page);
                } else {
                    e.respond(404, "text/plain", "not here");
                }
            });
            let (s, o) = (say.clone(), opened.clone());
            ws.add_event_listener(Event::CONNECT, move |e: &Event| {
                o.store(true, Ordering::SeqCst);
                let origin = e
                    .target::<WebSocket>()
                    .and_then(|w| w.handshake_request())
                    .and_then(|r| r.header("origin").map(str::to_owned));
                s(format!("WS CONNECT origin={}", origin.unwrap_or_default()));
                let extensions = e.target::<WebSocket>().map(|w| w.extensions());
                if let Some(agreed) = extensions.filter(|x| !x.is_empty()) {
                    s(format!("WS EXTENSIONS {agreed}"));
                }
            });
            let s = say.clone();
            ws.add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
                match e.string_data() {
                    Some(text) if text.len() <= LONG_TEXT => s(format!("WS TEXT {text}")),
                    Some(text) => s(format!("WS DIGEST {}", digest("TEXT", text.as_bytes()))),
                    None => s(format!("WS DIGEST {}", digest("BINARY", e.data()))),
                }
                if let Some(ws) = e.target::<WebSocket>() {
                    let _ = ws.send_message(e.format(), e.data());
                }
            });
            ws.add_event_listener(Event::CLOSE, move |e: &Event| {
                if http.load(Ordering::SeqCst) {
                    return;
                }
                if opened.load(Ordering::SeqCst) {
                    let code = e.target::<WebSocket>().map_or(-1, |w| w.close_reason());
                    say(format!("WS CLOSE {code}"));
                } else if let Some(refusal) = e.upgrade_refusal() {
                    say(format!("WS REFUSED {}", refusal.status()));
                }
                // Else a connection that closed before any request (the
                // browser opens some ahead of need).
            });
            if ws.start_server(e.socket()).is_ok() {
                // Each ends with its connection; the test is short.
                std::mem::forget(ws);
            }
        });
        server.bind(0, "127.0.0.1").expect("bind");
        let port = server.local_port();
        PageServer {
            server,
            port,
            pages,
        }
    }

    fn page(&self, path: &str, html: String) {
        self.pages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_owned(), html);
    }

    fn listen(&self) {
        self.server.listen().expect("listen");
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.server.close();
    }
}

/// Text longer than this many bytes is reported by its digest.
const LONG_TEXT: usize = 256;

/// A message as `<kind> <bytes> <sha1 hex>`.
fn digest(kind: &str, data: &[u8]) -> String {
    format!(
        "{kind} {} {}",
        data.len(),
        sha1_smol::Sha1::from(data).digest()
    )
}

/// The lines of the page servers up to the first `REPORT`, and the report.
fn until_report(rx: &mpsc::Receiver<String>) -> (Vec<String>, String) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no report from the page; the servers saw: {lines:#?}"));
        if let Some(report) = line.strip_prefix("REPORT ") {
            return (lines, report.to_owned());
        }
        lines.push(line);
    }
}

/// Whether `want` is among `lines` or comes next on `rx` (within 30 s).
fn saw(rx: &mpsc::Receiver<String>, lines: &[String], want: &str) -> bool {
    if lines.iter().any(|l| l == want) {
        return true;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line == want {
            return true;
        }
    }
    false
}

/// The `WS` lines but `WS CLOSE`, which may come before or after the report.
fn websocket_lines(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("WS ") && !l.starts_with("WS CLOSE"))
        .collect()
}

/// A page that opens a WebSocket to `ws_url`, sends `text`, and on its echo
/// closes with 1000 and reports `<prefix>&same=<echo or the close code>`.
fn echo_page(ws_url: &str, text: &str, prefix_js: &str) -> String {
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>echo</title><script>
const report = (r) => fetch("/report?" + {prefix_js} + "&same=" + encodeURIComponent(r));
const ws = new WebSocket("{ws_url}");
ws.onopen = () => ws.send("{text}");
ws.onmessage = (e) => {{ ws.close(1000); report("echo:" + e.data); }};
ws.onclose = (e) => {{ if (e.code !== 1000) report("closed-" + e.code); }};
</script>"#
    )
}

#[test]
fn chromium_is_refused_from_another_origin_and_served_from_the_allowed_one() {
    let chromium = chromium();
    let (tx, rx) = mpsc::channel();
    // The server with the allow-list (its own origin), and a second
    // server: another origin.
    let ours = PageServer::bind(
        ServerSocket::new(),
        |port| Config::default().allowed_origins([format!("http://127.0.0.1:{port}")]),
        tx.clone(),
    );
    let allowed = format!("http://127.0.0.1:{}", ours.port);
    let other = PageServer::bind(ServerSocket::new(), |_| Config::default(), tx);
    let ws_url = format!("ws://127.0.0.1:{}/ws", ours.port);
    // The foreign page tries, then goes to the allowed origin's page, which
    // reports both results.
    other.page(
        "/",
        format!(
            r#"<!doctype html><meta charset="utf-8"><title>foreign</title><script>
let opened = false;
const ws = new WebSocket("{ws_url}");
ws.onopen = () => {{ opened = true; ws.close(1000); }};
ws.onclose = (e) => {{
  location.href = "{allowed}/?foreign=" + (opened ? "opened" : "refused-" + e.code);
}};
</script>"#
        ),
    );
    ours.page(
        "/",
        echo_page(
            &ws_url,
            "same origin",
            r#"new URLSearchParams(location.search).get("foreign")"#,
        ),
    );
    ours.listen();
    other.listen();
    let _browser = Browser::open(
        &chromium,
        &format!("http://127.0.0.1:{}/", other.port),
        None,
    );
    let (lines, report) = until_report(&rx);
    assert_eq!(report, "refused-1006&same=echo%3Asame%20origin");
    // A first WebSocket refused (403, before any listener), then the
    // same-origin one with its Origin, closed by the page with 1000.
    assert_eq!(
        websocket_lines(&lines),
        [
            "WS REFUSED 403",
            &format!("WS CONNECT origin={allowed}"),
            "WS TEXT same origin",
        ],
        "{lines:#?}"
    );
    assert!(saw(&rx, &lines, "WS CLOSE 1000"), "{lines:#?}");
}

/// `certutil`, NSS's tool that makes Chromium's certificate database.
fn certutil() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("AIRWS_CERTUTIL").unwrap_or_else(|_| "/usr/bin/certutil".into()),
    );
    assert!(
        path.exists(),
        "certutil not found at {} (install Debian's libnss3-tools, or set AIRWS_CERTUTIL)",
        path.display()
    );
    path
}

/// A home folder whose NSS database trusts `tests/tls/ca.pem` for TLS
/// servers, as Chromium on Linux reads it.
fn home_trusting_the_test_ca() -> TempDir {
    let home = TempDir(std::env::temp_dir().join(format!("airws-home-{}", std::process::id())));
    let db = home.0.join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("the NSS folder");
    let db_arg = format!("sql:{}", db.display());
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls/ca.pem");
    let certutil = certutil();
    for args in [
        vec!["-N", "-d", &db_arg, "--empty-password"],
        vec![
            "-A",
            "-d",
            &db_arg,
            "-t",
            "C,,",
            "-n",
            "airws test CA",
            "-i",
            ca.to_str().expect("a UTF-8 path"),
        ],
    ] {
        let status = Command::new(&certutil)
            .args(&args)
            .stdout(Stdio::null())
            .status()
            .expect("run certutil");
        assert!(status.success(), "certutil {args:?} failed: {status}");
    }
    home
}

#[test]
fn chromium_trusting_the_test_ca_talks_to_a_wss_server_socket() {
    let chromium = chromium();
    let home = home_trusting_the_test_ca();
    let tls = ServerTls::from_pem(
        include_bytes!("tls/localhost.pem"),
        include_bytes!("tls/localhost.key"),
    )
    .expect("the test identity");
    let (tx, rx) = mpsc::channel();
    let server = PageServer::bind(ServerSocket::with_tls(tls), |_| Config::default(), tx);
    let origin = format!("https://127.0.0.1:{}", server.port);
    let ws_url = format!("wss://127.0.0.1:{}/ws", server.port);
    server.page(
        "/",
        echo_page(&ws_url, "over wss", r#""scheme=" + location.protocol"#),
    );
    server.listen();
    let _browser = Browser::open(&chromium, &format!("{origin}/"), Some(&home.0));
    let (lines, report) = until_report(&rx);
    assert_eq!(report, "scheme=https:&same=echo%3Aover%20wss");
    assert_eq!(
        websocket_lines(&lines),
        [&format!("WS CONNECT origin={origin}"), "WS TEXT over wss"],
        "{lines:#?}"
    );
    assert!(saw(&rx, &lines, "WS CLOSE 1000"), "{lines:#?}");
}

// ---------------------------------------------------------------- permessage-deflate

/// A page that, for each WebSocket URL in turn, connects, sends 1 Mi
/// characters of JSON-like text, 1 MiB of compressible binary and the text
/// again, checks each echo against what it sent, closes with 1000, and
/// reports for each: `ws.extensions`, the digest (`TEXT|BINARY <bytes>
/// <sha1>`) of each message sent, `same` or what differed for each echo,
/// and the close code and `wasClean`. The report is JSON, URL-encoded.
fn deflate_page(ws_urls: &[String]) -> String {
    let urls = ws_urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>deflate</title><script>
const MiB = 1 << 20;
function jsonText() {{
  const parts = [];
  let length = 0;
  for (let i = 0; length < MiB; i++) {{
    const r = `{{"id":${{i}},"user":"user-${{i}}","city":"Zürich","tags":["alpha","beta","✓"],"score":${{i * 37 % 1000}}}}`;
    parts.push(r);
    length += r.length + 1;
  }}
  return parts.join(",").slice(0, MiB);
}}
function structured() {{
  const b = new Uint8Array(MiB);
  for (let i = 0; i < MiB; i++) b[i] = ((i >> 6) & 255) ^ (i % 7);
  return b;
}}
const hex = (buf) => [...new Uint8Array(buf)].map((x) => x.toString(16).padStart(2, "0")).join("");
async function digest(m) {{
  const bytes = typeof m === "string" ? new TextEncoder().encode(m) : new Uint8Array(m);
  const kind = typeof m === "string" ? "TEXT" : "BINARY";
  return kind + " " + bytes.length + " " + hex(await crypto.subtle.digest("SHA-1", bytes));
}}
function same(sent, got) {{
  if (typeof sent === "string") return got === sent;
  if (!(got instanceof ArrayBuffer) || got.byteLength !== sent.length) return false;
  const g = new Uint8Array(got);
  for (let i = 0; i < g.length; i++) if (g[i] !== sent[i]) return false;
  return true;
}}
async function exchange(url, messages) {{
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const inbox = [];
  let waiting = null;
  const deliver = (m) => {{
    if (waiting) {{ const w = waiting; waiting = null; w(m); }} else inbox.push(m);
  }};
  ws.onmessage = (e) => deliver(e.data);
  const closed = new Promise((resolve) => {{
    ws.onclose = (e) => {{ resolve(e); deliver(null); }};
  }});
  const opened = await new Promise((resolve) => {{
    ws.onopen = () => resolve(true);
    closed.then(() => resolve(false));
  }});
  const result = {{ extensions: ws.extensions, sent: [], echoed: [] }};
  if (opened) {{
    for (const m of messages) {{
      ws.send(m);
      const got = inbox.length ? inbox.shift() : await new Promise((r) => {{ waiting = r; }});
      result.sent.push(await digest(m));
      result.echoed.push(same(m, got) ? "same" : got === null ? "closed" : "differs: " + await digest(got));
      if (got === null) break;
    }}
    ws.close(1000);
  }}
  const e = await closed;
  result.code = e.code;
  result.clean = e.wasClean;
  return result;
}}
(async () => {{
  let report;
  try {{
    const text = jsonText();
    const binary = structured();
    const results = [];
    for (const url of [{urls}]) results.push(await exchange(url, [text, binary, text]));
    report = results;
  }} catch (e) {{
    report = {{ error: String(e) }};
  }}
  fetch("/report?" + encodeURIComponent(JSON.stringify(report)));
}})();
</script>"#
    )
}

/// A server `Config` with permessage-deflate on these terms.
fn with_deflate(deflate: DeflateConfig) -> Config {
    Config::default()
        .permessage_deflate(deflate)
        .expect("a valid permessage-deflate config")
}

/// A lean permessage-deflate: no context takeover either way, a 10-bit
/// window for the server and 11 bits for the client (Chromium's offer of
/// `client_max_window_bits` lets the server ask for it).
fn lean_deflate() -> DeflateConfig {
    let mut deflate = DeflateConfig::default();
    deflate.server_no_context_takeover = true;
    deflate.client_no_context_takeover = true;
    deflate.server_max_window_bits = 10;
    deflate.client_max_window_bits = 11;
    deflate
}

#[test]
fn deflate_chromium_exchanges_mebibytes_compressed_with_our_server() {
    let chromium = chromium();
    let (tx, rx) = mpsc::channel();
    // The page's own server with permessage-deflate's defaults, and a
    // second one with the lean terms.
    let plain = PageServer::bind(
        ServerSocket::new(),
        |_| with_deflate(DeflateConfig::default()),
        tx.clone(),
    );
    let lean = PageServer::bind(ServerSocket::new(), |_| with_deflate(lean_deflate()), tx);
    let origin = format!("http://127.0.0.1:{}", plain.port);
    let urls = [
        format!("ws://127.0.0.1:{}/ws", plain.port),
        format!("ws://127.0.0.1:{}/ws", lean.port),
    ];
    plain.page("/", deflate_page(&urls));
    plain.listen();
    lean.listen();
    let _browser = Browser::open(&chromium, &format!("{origin}/"), None);
    let (lines, report) = until_report(&rx);
    let report = percent_encoding::percent_decode_str(&report)
        .decode_utf8()
        .expect("a UTF-8 report")
        .into_owned();

    // What our servers saw: each connection's agreement, then the digests
    // of the three messages.
    let agreed = [
        "permessage-deflate",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=11",
    ];
    let seen = websocket_lines(&lines);
    let digests: Vec<&str> = seen
        .iter()
        .filter_map(|l| l.strip_prefix("WS DIGEST "))
        .collect();
    assert_eq!(digests.len(), 6, "three messages on each: {lines:#?}");
    let (text, binary) = (digests[0], digests[1]);
    assert!(text.starts_with("TEXT "), "{text}");
    assert_eq!(
        binary.split(' ').take(2).collect::<Vec<_>>(),
        ["BINARY", "1048576"]
    );
    let mut expected = Vec::new();
    for agreement in agreed {
        expected.extend([
            format!("WS CONNECT origin={origin}"),
            format!("WS EXTENSIONS {agreement}"),
            format!("WS DIGEST {text}"),
            format!("WS DIGEST {binary}"),
            format!("WS DIGEST {text}"),
        ]);
    }
    assert_eq!(seen, expected, "{lines:#?}");
    assert!(
        text.split(' ')
            .nth(1)
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n >= 1 << 20),
        "at least 1 MiB of text: {text}"
    );

    // What the browser saw: the same agreement, what it sent is what our
    // servers received, and every echo equal to what it sent.
    let one = |agreement: &str| {
        format!(
            r#"{{"extensions":"{agreement}","sent":["{text}","{binary}","{text}"],"echoed":["same","same","same"],"code":1000,"clean":true}}"#
        )
    };
    assert_eq!(report, format!("[{},{}]", one(agreed[0]), one(agreed[1])));
    assert!(saw(&rx, &lines, "WS CLOSE 1000"), "{lines:#?}");
}
