//! A tiny wscat: sends each line of standard input as a text message and
//! prints each text message received on its own line.
//!
//!     cargo run --example client ws://127.0.0.1:9001/
//!
//! When standard input ends it sends a close, still prints every message that
//! arrives before the server's close reply, and exits. Binary messages are
//! shown as `<binary: N bytes>`. Diagnostics go to standard error.
//!
//! Exit status: 0 after a normal close (close reason 1000, or 1005 for a
//! close frame without a code); 1 after any other ending (a refused or
//! failed connection, a close with another code, a dropped link), with the
//! reason on standard error; 2 for a bad command line.

use airws::{Event, EventDispatcher, IOErrorEvent, SecurityErrorEvent, WebSocket, WebSocketEvent};
use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;

fn main() {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: client ws://HOST:PORT/PATH");
        std::process::exit(2);
    };
    let ws = WebSocket::new();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();

    let tx = ready_tx.clone();
    ws.add_event_listener(Event::CONNECT, move |_e: &Event| {
        let _ = tx.send(Ok(()));
    });
    ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
        let mut out = std::io::stdout().lock();
        let _ = match e.string_data() {
            Some(text) => writeln!(out, "{text}"),
            None => writeln!(out, "<binary: {} bytes>", e.data().len()),
        };
        let _ = out.flush();
    });
    for kind in [
        IOErrorEvent::IO_ERROR,
        SecurityErrorEvent::SECURITY_ERROR,
        SecurityErrorEvent::CERTIFICATE_ERROR,
    ] {
        let tx = ready_tx.clone();
        ws.add_event_listener(kind, move |e: &Event| {
            let _ = tx.send(Err(e.text().to_owned()));
        });
    }
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        let reason = e.target::<WebSocket>().map_or(0, |w| w.close_reason());
        if !e.text().is_empty() {
            // A refused upgrade says why (its HTTP status and body).
            eprintln!("client: {}", e.text());
        }
        eprintln!("closed by the server (close reason {reason})");
        let _ = ready_tx.send(Err(format!("closed (close reason {reason})")));
        // Standard input may still be open: nothing more can be sent.
        std::process::exit(exit_status(reason));
    });

    if let Err(e) = ws.connect(&url, &[]) {
        eprintln!("client: {e}");
        std::process::exit(2);
    }
    match ready_rx.recv() {
        Ok(Ok(())) => eprintln!("connected to {url}"),
        Ok(Err(text)) => {
            eprintln!("client: {text}");
            std::process::exit(1);
        }
        Err(_) => std::process::exit(1),
    }

    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Err(e) = ws.send_message(WebSocket::FMT_TEXT, line) {
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
