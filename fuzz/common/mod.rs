//! The checks of the fuzz targets, one module per target. The targets call
//! them on libFuzzer's inputs; `tests/properties.rs` calls them on the saved
//! inputs in `fuzz/regressions/<target>/`, so every kept input is also a test
//! that runs with the stable toolchain.
#![allow(dead_code)]

pub mod frame_header;
pub mod handshake_request;
pub mod handshake_response;
pub mod receiver;
