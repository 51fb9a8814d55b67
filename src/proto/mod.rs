//! The sans-I/O protocol core: frames, close codes, message assembly, the
//! opening handshake and the connection's state machine (closing, timers).
//! Everything here takes bytes and the time and returns bytes, events and
//! the next deadline; nothing touches a socket, a thread or a clock.
//!
//! This is a supported API, for running the protocol over your own I/O (an
//! event loop, a test harness, another transport), in the manner of
//! `ureq-proto` or Python `websockets`' protocol layer:
//!
//! - [`connection`]: [`connection::Connection`], one connection after its
//!   opening handshake: feed it bytes and the time, take messages, bytes to
//!   write, the next deadline and how it ended;
//! - [`handshake`]: the client's request and the check of the server's
//!   response, the server's check of a request and its responses;
//! - [`receiver`]: the message assembler that `Connection` drives, with its
//!   [`receiver::Limits`] and [`receiver::Incoming`] items;
//! - [`deflate`]: permessage-deflate (RFC 7692): offers, answers and
//!   the codec;
//! - [`frame`]: the frame header codec and the opcodes;
//! - [`close`]: close codes and close payloads;
//! - [`error`]: [`error::ProtocolError`], a rule the peer broke and its code;
//! - [`budget`]: [`budget::MemoryBudget`], a limit on what peers make many
//!   connections hold together;
//! - [`backoff`]: [`backoff::Backoff`], jittered exponential backoff for
//!   trying a connection again, and which endings retrying cannot fix.
//!
//! The helpers the library is built from (`bytes`, `mask`, `utf8`,
//! `sender`) are public only for the project's fuzz targets, property tests
//! and benchmark; they are hidden from the documentation and may change in
//! any release.

pub mod backoff;
pub mod budget;
#[doc(hidden)]
pub mod bytes;
pub mod close;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
#[doc(hidden)]
pub mod mask;
pub mod receiver;
#[doc(hidden)]
pub mod sender;
#[doc(hidden)]
pub mod utf8;

/// Which end of the connection this is: it decides who masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that connected: masks every frame it sends.
    Client,
    /// The end that accepted: never masks, requires masked frames.
    Server,
}
