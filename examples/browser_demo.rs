//! One port for a web page and its WebSocket: AIR's "web pages connect to and
//! talk with the application". Open the printed address in a browser.
//!
//!     cargo run --example browser_demo [ADDRESS:PORT]
//!
//! The address defaults to 127.0.0.1:9002. Each accepted socket goes to a
//! `WebSocket` with `start_server`; a plain HTTP request for `/` gets the page
//! (through the `httpRequest` event), and the page's script opens a
//! WebSocket to the same port, sends a text and a binary message, checks
//! their echoes, closes with code 4001 and reports what it saw to `/report`.
//! Every step is printed on standard output, one line each.

use airws::{
    Event, EventDispatcher, HttpRequestEvent, ServerSocket, ServerSocketConnectEvent, WebSocket,
    WebSocketEvent,
};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>airws browser demo</title></head>
<body>
<h1>airws browser demo</h1>
<pre id="log"></pre>
<script>
const log = (line) => { document.getElementById('log').textContent += line + '\n'; };
const seen = { open: false, protocol: null, text: null, binary: null, closeCode: null, wasClean: null };
const ws = new WebSocket('ws://' + location.host + '/socket', ['demo.v1']);
ws.binaryType = 'arraybuffer';
ws.onopen = () => {
  seen.open = true;
  seen.protocol = ws.protocol;
  log('open, protocol ' + ws.protocol);
  ws.send('héllo from the browser ✓');
  ws.send(new Uint8Array([0, 1, 2, 127, 128, 250, 255]));
};
ws.onmessage = (m) => {
  if (typeof m.data === 'string') {
    seen.text = m.data;
    log('text echo: ' + m.data);
  } else {
    seen.binary = Array.from(new Uint8Array(m.data)).join(',');
    log('binary echo: ' + seen.binary);
  }
  if (seen.text !== null && seen.binary !== null) ws.close(4001, 'done');
};
ws.onclose = (c) => {
  seen.closeCode = c.code;
  seen.wasClean = c.wasClean;
  log('close ' + c.code + ' clean ' + c.wasClean);
  fetch('/report?' + encodeURIComponent(JSON.stringify(seen)));
};
ws.onerror = () => log('error');
</script>
</body></html>
"#;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Decodes `%XX` escapes (the page's report is a URL-encoded JSON object).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn main() {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_owned());
    let addr: SocketAddr = match arg.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("browser_demo: '{arg}' is not an ADDRESS:PORT ({e})");
            std::process::exit(2);
        }
    };

    let sockets: Arc<Mutex<HashMap<u64, WebSocket>>> = Arc::default();
    let next_id = AtomicU64::new(0);
    let server = ServerSocket::new();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::new();
        let _ = ws.set_protocol("demo.v1");
        ws.add_event_listener(HttpRequestEvent::REQUEST, |e: &Event| {
            match (e.http_method(), e.http_path()) {
                ("GET", "/") => e.respond(200, "text/html; charset=utf-8", PAGE),
                ("GET", path) if path.starts_with("/report?") => {
                    say(&format!(
                        "REPORT {}",
                        percent_decode(&path["/report?".len()..])
                    ));
                    e.respond(204, "text/plain", "");
                }
                _ => e.respond(404, "text/plain; charset=utf-8", "not found\n"),
            }
        });
        let upgraded = Arc::new(AtomicBool::new(false));
        let flag = upgraded.clone();
        ws.add_event_listener(Event::CONNECT, move |e: &Event| {
            flag.store(true, Ordering::SeqCst);
            if let Some(ws) = e.target::<WebSocket>() {
                say(&format!("WS CONNECT protocol={}", ws.protocol()));
            }
        });
        ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
            match e.string_data() {
                Some(text) => say(&format!("WS TEXT {text}")),
                None => {
                    let bytes: Vec<String> = e.data().iter().map(|b| b.to_string()).collect();
                    say(&format!("WS BINARY {}", bytes.join(",")));
                }
            }
            if let Some(ws) = e.target::<WebSocket>() {
                let _ = ws.send_message(e.format(), e.data());
            }
        });
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let list = sockets.clone();
        ws.add_event_listener(Event::CLOSE, move |e: &Event| {
            // Plain HTTP exchanges end with a close too; report WebSockets only.
            if let (true, Some(ws)) = (upgraded.load(Ordering::SeqCst), e.target::<WebSocket>()) {
                say(&format!("WS CLOSE {}", ws.close_reason()));
            }
            list.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        });
        sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, ws.clone());
        if ws.start_server(e.socket()).is_err() {
            sockets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    });
    if let Err(e) = server
        .bind(addr.port(), &addr.ip().to_string())
        .and_then(|_| server.listen())
    {
        eprintln!("browser_demo: cannot listen on {addr}: {e}");
        std::process::exit(1);
    }
    say(&format!(
        "browser_demo serving http://{}:{}/",
        server.local_address(),
        server.local_port()
    ));
    loop {
        std::thread::park();
    }
}
