//! `proto::frame::decode_header` on any bytes: it never panics, a prefix of
//! a header is "need more", and a decoded header re-encodes to the bytes it
//! was decoded from.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::frame_header::check(data));
