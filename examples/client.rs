//! A tiny wscat: sends each line of standard input as a text message and
//! prints each text message received on its own line.
//!
//!     cargo run --example client ws://127.0.0.1:9001/
//!     cargo run --example client -- -H 'Authorization: Bearer t' --proxy http://proxy:3128 wss://example.com/
//!
//! Options (`--help` lists them): `-H 'Name: value'` (repeatable) adds a
//! header to the upgrade request; `--proxy URL` goes through that HTTP
//! proxy (without it, the proxy the environment names: `http_proxy`,
//! `https_proxy`, `all_proxy`, `no_proxy`); `--no-proxy` goes direct;
//! `--ca PEM` trusts that CA; `-k`/`--insecure` accepts a certificate that
//! fails the checks; `-s`/`--subprotocol P` (repeatable) offers P;
//! `--ping-interval SECS` and `--ping-timeout SECS` turn keepalive on (either
//! alone: 20 s for the other), so that a server that stops answering ends
//! the client with "the peer did not answer pings" and exit status 1;
//! `--deflate` offers permessage-deflate (RFC 7692) and says on standard
//! error whether the server agreed; `--reconnect` comes back after the connection ends or fails in a way
//! that trying again can fix (jittered backoff), sending the lines typed
//! meanwhile once it is back, in order.
//!
//! When standard input ends it sends a close, still prints every message that
//! arrives before the server's close reply, and exits. Binary messages are
//! shown as `<binary: N bytes>`. Diagnostics go to standard error.
//!
//! Exit status: 0 after a normal close (close reason 1000, or 1005 for a
//! close frame without a code); 1 after any other ending (a refused or
//! failed connection, a close with another code, a dropped link), with the
//! reason on standard error; 2 for a bad command line.

use airws::proto::backoff::Backoff;
use airws::proto::deflate::DeflateConfig;
use airws::{
    ClientTls, Config, Event, EventDispatcher, IOErrorEvent, Proxy, ReconnectEvent,
    SecurityErrorEvent, WebSocket, WebSocketEvent,
};
use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

const USAGE: &str = "usage: client [OPTIONS] ws://HOST:PORT/PATH

  -H, --header 'NAME: VALUE'   add a header to the upgrade request (repeatable)
  -s, --subprotocol P          offer subprotocol P (repeatable)
      --proxy URL              connect through this HTTP proxy (http://[user:pass@]host:port)
      --no-proxy               connect directly, whatever the environment says
      --ca FILE                trust the CA certificates in this PEM file
  -k, --insecure               accept a server certificate that fails the checks
      --ping-interval SECS     ping after SECS without a word from the server (keepalive)
      --ping-timeout SECS      after SECS more without one, the server is dead: exit 1
      --reconnect              come back after a lost connection; lines typed meanwhile
                               are sent once it is back, in order
      --deflate                offer permessage-deflate (compression)
  -h, --help                   print this help

Without --proxy, the proxy the environment names is used (http_proxy for ws://,
https_proxy for wss://, all_proxy, no_proxy). Exit status: 0 after a close with
1000 or 1005, 1 after any other ending, 2 for a bad command line.";

/// The command line.
#[derive(Default)]
struct Options {
    url: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    proxy: Option<Proxy>,
    ca: Option<String>,
    insecure: bool,
    ping_interval: Option<Duration>,
    ping_timeout: Option<Duration>,
    reconnect: bool,
    deflate: bool,
}

/// Seconds on the command line: a positive number.
fn seconds(name: &str, text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "{name} takes a number of seconds above 0, not '{text}'"
        )),
    }
}

/// Parses the command line; `Err` is the message for a bad one.
fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "-H" | "--header" => {
                let h = value(arg)?;
                let (name, v) = h
                    .split_once(':')
                    .ok_or_else(|| format!("header '{h}' is not 'Name: value'"))?;
                o.headers
                    .push((name.trim().to_owned(), v.trim().to_owned()));
            }
            "-s" | "--subprotocol" => o.subprotocols.push(value(arg)?),
            "--proxy" => {
                o.proxy = Some(Proxy::http(&value(arg)?).map_err(|e| e.to_string())?);
            }
            "--no-proxy" => o.proxy = Some(Proxy::None),
            "--ca" => o.ca = Some(value(arg)?),
            "-k" | "--insecure" => o.insecure = true,
            "--ping-interval" => o.ping_interval = Some(seconds(arg, &value(arg)?)?),
            "--ping-timeout" => o.ping_timeout = Some(seconds(arg, &value(arg)?)?),
            "--reconnect" => o.reconnect = true,
            "--deflate" => o.deflate = true,
            a if a.starts_with('-') => return Err(format!("unknown option {a}")),
            a if o.url.is_empty() => o.url = a.to_owned(),
            a => return Err(format!("unexpected argument {a}")),
        }
    }
    if o.url.is_empty() {
        return Err("no URL".to_owned());
    }
    Ok(o)
}

/// The socket the options describe; `Err` for unusable ones.
fn websocket(o: &Options) -> Result<WebSocket, String> {
    let mut config = Config::default();
    if let Some(proxy) = &o.proxy {
        config = config.proxy(proxy.clone());
    }
    if let Some(path) = &o.ca {
        let pem = std::fs::read(path).map_err(|e| format!("--ca {path}: {e}"))?;
        let tls = ClientTls::new()
            .add_root_certificate_pem(&pem)
            .map_err(|e| e.to_string())?;
        config = config.client_tls(tls);
    }
    if o.ping_interval.is_some() || o.ping_timeout.is_some() {
        let every = Duration::from_secs(20);
        config = config
            .keepalive(
                o.ping_interval.unwrap_or(every),
                o.ping_timeout.unwrap_or(every),
            )
            .map_err(|e| e.to_string())?;
    }
    if o.reconnect {
        config = config.reconnect(Backoff::default());
    }
    if o.deflate {
        config = config
            .permessage_deflate(DeflateConfig::default())
            .map_err(|e| e.to_string())?;
    }
    let ws = WebSocket::with_config(config);
    for (name, value) in &o.headers {
        ws.set_request_header(name, value)
            .map_err(|e| e.to_string())?;
    }
    if o.insecure {
        // Asked on the command line: accept what the checks refused.
        ws.add_event_listener(SecurityErrorEvent::CERTIFICATE_ERROR, |e: &Event| {
            eprintln!("client: accepting it anyway (--insecure): {}", e.text());
            e.prevent_default();
        });
    }
    Ok(ws)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("client: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let ws = match websocket(&options) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("client: {e}");
            std::process::exit(2);
        }
    };
    let url = options.url.clone();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();

    // Lines typed while the connection is away (--reconnect), in order.
    let pending: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let opened_once = Arc::new(AtomicBool::new(false));
    let tx = ready_tx.clone();
    let (waiting, once) = (pending.clone(), opened_once.clone());
    ws.add_event_listener(Event::CONNECT, move |e: &Event| {
        if once.swap(true, Ordering::SeqCst) {
            eprintln!("connected again");
        }
        let mut waiting = waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ws) = e.target::<WebSocket>() {
            while let Some(line) = waiting.pop_front() {
                if let Err(err) = ws.send_message(WebSocket::FMT_TEXT, line) {
                    eprintln!("client: {err}");
                    break;
                }
            }
        }
        let _ = tx.send(Ok(()));
    });
    ws.add_event_listener(ReconnectEvent::RECONNECTING, |e: &Event| {
        let cause = e.error().map(|err| err.to_string()).unwrap_or_default();
        eprintln!(
            "client: {cause}; reconnecting in {:.1} s (attempt {})",
            e.reconnect_delay().as_secs_f64(),
            e.reconnect_attempt()
        );
    });
    ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
        let mut out = std::io::stdout().lock();
        let _ = match e.string_data() {
            Some(text) => writeln!(out, "{text}"),
            None => writeln!(out, "<binary: {} bytes>", e.data().len()),
        };
        let _ = out.flush();
    });
    for kind in [IOErrorEvent::IO_ERROR, SecurityErrorEvent::SECURITY_ERROR] {
        let tx = ready_tx.clone();
        let once = opened_once.clone();
        ws.add_event_listener(kind, move |e: &Event| {
            if once.load(Ordering::SeqCst)
                && !e.target::<WebSocket>().is_some_and(|w| w.connected())
            {
                // Given up after the connection was lost: no close follows.
                eprintln!("client: {}", e.text());
                std::process::exit(1);
            }
            let _ = tx.send(Err(e.text().to_owned()));
        });
    }
    if !options.insecure {
        let tx = ready_tx.clone();
        ws.add_event_listener(SecurityErrorEvent::CERTIFICATE_ERROR, move |e: &Event| {
            // Said here: the `close` that follows may end the process first.
            eprintln!("client: {} (-k accepts it)", e.text());
            let _ = tx.send(Err("the server's certificate was refused".to_owned()));
        });
    }
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        let reason = e.target::<WebSocket>().map_or(0, |w| w.close_reason());
        if !e.text().is_empty() {
            // Why: a refused upgrade's HTTP status and body, a server that
            // did not answer pings, a broken rule.
            eprintln!("client: {}", e.text());
        }
        eprintln!("closed (close reason {reason})");
        let _ = ready_tx.send(Err(format!("closed (close reason {reason})")));
        // Standard input may still be open: nothing more can be sent.
        std::process::exit(exit_status(reason));
    });

    let offered: Vec<&str> = options.subprotocols.iter().map(String::as_str).collect();
    if let Err(e) = ws.connect(&url, &offered) {
        eprintln!("client: {e}");
        std::process::exit(2);
    }
    match ready_rx.recv() {
        Ok(Ok(())) => {
            eprintln!("connected to {url}");
            if options.deflate {
                match ws.extensions() {
                    e if e.is_empty() => eprintln!("the server declined permessage-deflate"),
                    e => eprintln!("extensions: {e}"),
                }
            }
        }
        Ok(Err(text)) => {
            eprintln!("client: {text}");
            std::process::exit(1);
        }
        Err(_) => std::process::exit(1),
    }

    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let sent = {
            let mut waiting = pending.lock().unwrap_or_else(|p| p.into_inner());
            if options.reconnect && (!ws.connected() || !waiting.is_empty()) {
                // Away: sent by the connect listener once back.
                waiting.push_back(line);
                Ok(())
            } else {
                match ws.send_message(WebSocket::FMT_TEXT, line.as_str()) {
                    // Lost just now: it goes with the others once back.
                    Err(airws::Error::NotOpen { .. }) if options.reconnect => {
                        waiting.push_back(line);
                        Ok(())
                    }
                    other => other,
                }
            }
        };
        if let Err(e) = sent {
            eprintln!("client: {e}");
            std::process::exit(1);
        }
    }
    let _ = ws.close(WebSocket::CLOSE_NORMAL);
    // Messages that arrive before the server's close reply are still printed.
    ws.wait_closed(Duration::from_secs(10));
    let reason = ws.close_reason();
    eprintln!("closed (close reason {reason})");
    std::process::exit(exit_status(reason));
}

/// 0 for a normal close (1000, or 1005: a close frame without a code), 1
/// for any other ending.
fn exit_status(close_reason: i32) -> i32 {
    match close_reason {
        1000 | 1005 => 0,
        _ => 1,
    }
}
