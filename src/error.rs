//! The public API's error type.

use std::fmt;
use std::io;

/// What a call of the public API can fail with.
#[derive(Debug)]
pub enum Error {
    /// AS3's `ArgumentError`: a bad argument (an invalid URL or opcode, data
    /// too long, text that is not UTF-8, a close code that may not be sent, ...).
    Argument(String),
    /// AS3's `IllegalOperationError`: the call does not fit the object's state
    /// (sending on a socket that is not open, connecting while connected,
    /// setting `protocol` after the handshake, ...).
    IllegalOperation(String),
    /// AS3's `IOError`: the operating system refused an I/O operation.
    Io(io::Error),
}

impl Error {
    pub(crate) fn argument(msg: impl Into<String>) -> Error {
        Error::Argument(msg.into())
    }

    pub(crate) fn illegal(msg: impl Into<String>) -> Error {
        Error::IllegalOperation(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Argument(m) => write!(f, "ArgumentError: {m}"),
            Error::IllegalOperation(m) => write!(f, "IllegalOperationError: {m}"),
            Error::Io(e) => write!(f, "IOError: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}
