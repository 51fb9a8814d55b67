//! A script with the blocking calls: connects, sends one message, prints
//! the reply, closes, and exits non-zero naming the cause when any step
//! fails. Run it against `cargo run --example echo_server`:
//!
//!     cargo run --example script [URL] [MESSAGE]
//!
//! Its body is the whole program: `WebSocket::open` waits for the outcome of
//! the connection, `receive` for the next message, `close_and_wait` for the
//! closing handshake.

use airws::WebSocket;
use std::time::Duration;

fn run(url: &str, message: &str) -> Result<(), airws::Error> {
    let ws = WebSocket::open(url, Duration::from_secs(5))?;
    ws.send_message(WebSocket::FMT_TEXT, message)?;
    println!("{}", ws.receive(Duration::from_secs(5))?);
    ws.close_and_wait(WebSocket::CLOSE_NORMAL, Duration::from_secs(5))?;
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".to_owned());
    let message = args.next().unwrap_or_else(|| "Hello".to_owned());
    if let Err(e) = run(&url, &message) {
        eprintln!("script: {e}");
        std::process::exit(1);
    }
}
