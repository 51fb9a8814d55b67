//! Drives the Autobahn|Testsuite fuzzing server (`wstest -m fuzzingserver`)
//! with this crate's client: asks for the case count, runs every case by
//! echoing each message until the server closes, then asks for the report.
//!
//!     cargo run --release --example autobahn_client [--deflate] ws://127.0.0.1:9001 airws
//!
//! With `--deflate` it offers permessage-deflate (RFC 7692), for the
//! compression cases 12.* and 13.*.

use airws::proto::deflate::DeflateConfig;
use airws::{Config, Event, EventDispatcher, IOErrorEvent, WebSocket, WebSocketEvent};
use std::sync::mpsc;
use std::time::Duration;

/// A case ends when the server closes; none takes this long.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let deflate = args.first().is_some_and(|a| a == "--deflate");
    if deflate {
        args.remove(0);
    }
    let mut args = args.into_iter();
    let (Some(url), agent) = (
        args.next(),
        args.next().unwrap_or_else(|| "airws".to_owned()),
    ) else {
        eprintln!("usage: autobahn_client [--deflate] URL [AGENT]");
        std::process::exit(2);
    };
    let url = url.trim_end_matches('/').to_owned();

    let count = match case_count(&url) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("autobahn_client: cannot get the case count: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("autobahn_client: {count} cases");

    let config = if deflate {
        match Config::default().permessage_deflate(DeflateConfig::default()) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("autobahn_client: {e}");
                std::process::exit(2);
            }
        }
    } else {
        Config::default()
    };
    let ws = WebSocket::with_config(config);
    ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
        if let Some(ws) = e.target::<WebSocket>() {
            let _ = ws.send_message(e.format(), e.data());
        }
    });
    ws.add_event_listener(IOErrorEvent::IO_ERROR, |e: &Event| {
        eprintln!("autobahn_client: {}", e.text());
    });
    for case in 1..=count {
        let case_url = format!("{url}/runCase?case={case}&agent={agent}");
        if let Err(e) = ws.connect(&case_url, &[]) {
            eprintln!("autobahn_client: case {case}: {e}");
            std::process::exit(1);
        }
        if !ws.wait_closed(CASE_TIMEOUT) {
            eprintln!("autobahn_client: case {case} did not end in {CASE_TIMEOUT:?}");
            let _ = ws.close(WebSocket::CLOSE_NORMAL);
            ws.wait_closed(Duration::from_secs(10));
        }
    }

    let report = WebSocket::new();
    let done = format!("{url}/updateReports?agent={agent}");
    if report.connect(&done, &[]).is_err() || !report.wait_closed(CASE_TIMEOUT) {
        eprintln!("autobahn_client: updateReports failed");
        std::process::exit(1);
    }
    eprintln!("autobahn_client: done");
}

/// Connects to `/getCaseCount` and reads the one text message it sends.
fn case_count(url: &str) -> Result<u32, String> {
    let ws = WebSocket::new();
    let (tx, rx) = mpsc::channel::<Result<u32, String>>();
    let data_tx = tx.clone();
    ws.add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
        let parsed = e.string_data().unwrap_or_default().trim().parse::<u32>();
        let _ = data_tx.send(parsed.map_err(|err| err.to_string()));
    });
    ws.add_event_listener(IOErrorEvent::IO_ERROR, move |e: &Event| {
        let _ = tx.send(Err(e.text().to_owned()));
    });
    ws.connect(&format!("{url}/getCaseCount"), &[])
        .map_err(|e| e.to_string())?;
    let n = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "no answer".to_owned())??;
    ws.wait_closed(Duration::from_secs(10));
    Ok(n)
}
