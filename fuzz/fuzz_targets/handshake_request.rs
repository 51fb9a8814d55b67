//! `proto::handshake::parse_request` (the server's check of an upgrade
//! request) on any bytes, with a head size limit: it never panics; "need
//! more" only below the limit; an accepted request fits the limit, carries a
//! 16-byte key in canonical base64, and its prefixes are "need more"; the
//! server's answer to it passes the client's check.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::handshake_request::check(data));
