//! `proto::receiver::Receiver` in the client role on any bytes, split into
//! chunks chosen by the input, with small limits (see `common/receiver.rs`).
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use airws::proto::Role;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: common::receiver::Counting = common::receiver::Counting;

fuzz_target!(|data: &[u8]| common::receiver::run(Role::Client, data));
