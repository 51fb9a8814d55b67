//! The protocol layer's error: a rule the peer broke, with the close code
//! RFC 6455 names for it.

use std::fmt;

/// The peer broke a protocol rule; the connection must be failed with `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    /// The close code to send (1002, 1007, 1009, ...).
    pub code: u16,
    /// What the peer did, also used as the close reason.
    pub reason: &'static str,
}

impl ProtocolError {
    /// Creates an error with its close code and reason.
    pub const fn new(code: u16, reason: &'static str) -> Self {
        ProtocolError { code, reason }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close code {})", self.reason, self.code)
    }
}

impl std::error::Error for ProtocolError {}
