//! The sans-I/O protocol core: frames, masking, UTF-8, close codes, message
//! assembly, the opening handshake and the connection's state machine
//! (closing, timers). Everything here takes bytes and returns
//! bytes and events; nothing touches a socket, a thread or a clock.

pub mod bytes;
pub mod close;
pub mod connection;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod receiver;
pub mod sender;
pub mod utf8;

/// Which end of the connection this is: it decides who masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that connected: masks every frame it sends.
    Client,
    /// The end that accepted: never masks, requires masked frames.
    Server,
}
