//! `proto::handshake::parse_response` (the client's check of the server's
//! answer) on any bytes, against a fixed key and offered subprotocols: it
//! never panics; "need more" only below the limit; an accepted response
//! fits the limit, chose an offered subprotocol (or none), and its prefixes
//! are "need more".
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::handshake_response::check(data));
