//! The data of an outgoing message.

use std::borrow::Cow;

/// The data of an outgoing message: text or bytes.
///
/// Made from `&str`, `String`, `&[u8]`, `Vec<u8>` and their references, so
/// [`WebSocket::send_message`](crate::WebSocket::send_message) takes any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageData<'a> {
    /// A string (AS3 `String`).
    Text(Cow<'a, str>),
    /// Bytes (AS3 `ByteArray`).
    Bytes(Cow<'a, [u8]>),
}

impl MessageData<'_> {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            MessageData::Text(s) => s.as_bytes(),
            MessageData::Bytes(b) => b,
        }
    }
}

impl<'a> From<&'a str> for MessageData<'a> {
    fn from(s: &'a str) -> Self {
        MessageData::Text(Cow::Borrowed(s))
    }
}
impl<'a> From<&'a String> for MessageData<'a> {
    fn from(s: &'a String) -> Self {
        MessageData::Text(Cow::Borrowed(s))
    }
}
impl From<String> for MessageData<'_> {
    fn from(s: String) -> Self {
        MessageData::Text(Cow::Owned(s))
    }
}
impl<'a> From<&'a [u8]> for MessageData<'a> {
    fn from(b: &'a [u8]) -> Self {
        MessageData::Bytes(Cow::Borrowed(b))
    }
}
impl<'a, const N: usize> From<&'a [u8; N]> for MessageData<'a> {
    fn from(b: &'a [u8; N]) -> Self {
        MessageData::Bytes(Cow::Borrowed(b))
    }
}
impl<'a> From<&'a Vec<u8>> for MessageData<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        MessageData::Bytes(Cow::Borrowed(b))
    }
}
impl From<Vec<u8>> for MessageData<'_> {
    fn from(b: Vec<u8>) -> Self {
        MessageData::Bytes(Cow::Owned(b))
    }
}
