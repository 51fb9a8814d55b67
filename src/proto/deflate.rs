//! The permessage-deflate extension (RFC 7692): what each end offers and
//! answers, and the codec that compresses and inflates whole messages.
//!
//! Negotiation is pure text work and is always built; the codec needs the
//! `deflate` cargo feature (on by default), which brings `flate2` with its
//! pure-Rust `zlib-rs` backend.
//!
//! # Window bits of 8
//!
//! RFC 7692 allows an LZ77 window of 8 to 15 bits; zlib cannot compress
//! with an 8-bit window (it silently used 9 before 1.2.9 and refuses since),
//! and the well-known peers either decline such an offer or compress with 9
//! bits in breach of the agreement. This end agrees to 8 and keeps its
//! word: while the agreement limits what it compresses to 8 bits, it sends
//! every message uncompressed, which RFC 7692 §6 allows for any message.
//! What it receives under an 8-bit agreement is inflated with a 9-bit
//! window, which decodes any stream made with 8.
//!
//! ```
//! use airws::proto::deflate::{client_offer, server_accept, DeflateConfig};
//!
//! let config = DeflateConfig::default();
//! let offer = client_offer(&config);
//! assert_eq!(offer, "permessage-deflate; client_max_window_bits");
//! let agreement = server_accept(&config, &[offer]).expect("accepted");
//! assert_eq!(agreement.response(), "permessage-deflate");
//! ```

use std::fmt;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The bytes a sync flush ends with, removed from each compressed message
/// and put back before it is inflated (RFC 7692 §7.2.1, §7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// What this end asks of permessage-deflate, in both roles: a client
/// offers the extension with these parameters, a server accepts an offer
/// on these terms. The parameters are named as in RFC 7692, from the
/// point of view of the two ends, so one value means the same in either
/// role:
///
/// | field | as a client | as a server |
/// |---|---|---|
/// | `server_no_context_takeover` | asks the server to reset its compressor after each message | resets its compressor after each message |
/// | `client_no_context_takeover` | resets its compressor after each message (and says so) | asks the client to reset its compressor |
/// | `server_max_window_bits` (below 15) | asks the server for a smaller window | compresses with at most this window |
/// | `client_max_window_bits` | compresses with at most this window, and lets the server ask for less | asks the client for at most this window, when the client allows it |
///
/// A reset after each message costs compression (a message cannot refer
/// to the ones before), and saves the memory of the compressor's window
/// between messages: the side that does not take over its context keeps
/// no state while the connection is quiet.
///
/// ```
/// use airws::proto::deflate::DeflateConfig;
///
/// let mut lean = DeflateConfig::default();
/// lean.server_no_context_takeover = true;
/// lean.client_no_context_takeover = true;
/// lean.server_max_window_bits = 10;
/// assert_eq!(lean.check(), Ok(()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// The zlib compression level, 0 (none) to 9 (smallest). Default 6,
    /// zlib's own default.
    pub level: u32,
    /// Messages shorter than this many bytes go out uncompressed: a
    /// deflate block's overhead eats most of what so few bytes would save.
    /// Default 64.
    pub threshold: usize,
    /// See the table above. Default false.
    pub server_no_context_takeover: bool,
    /// See the table above. Default false.
    pub client_no_context_takeover: bool,
    /// The server's window, 8 to 15 bits; 15 asks for no limit. Default 15.
    pub server_max_window_bits: u8,
    /// The client's window, 8 to 15 bits; 15 asks for no limit. Default 15.
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            level: 6,
            threshold: 64,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateConfig {
    /// Checks every field: the level at most 9, the window bits 8 to 15.
    pub fn check(&self) -> Result<(), String> {
        if self.level > 9 {
            return Err(format!(
                "permessage-deflate: the compression level must be 0 to 9, not {}",
                self.level
            ));
        }
        for (name, bits) in [
            ("server_max_window_bits", self.server_max_window_bits),
            ("client_max_window_bits", self.client_max_window_bits),
        ] {
            if !(8..=15).contains(&bits) {
                return Err(format!(
                    "permessage-deflate: {name} must be 8 to 15, not {bits}"
                ));
            }
        }
        Ok(())
    }
}

/// The terms both ends agreed on, as the server's response states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Agreement {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window (8 to 15 bits).
    pub server_max_window_bits: u8,
    /// The client compresses with at most this window (8 to 15 bits).
    pub client_max_window_bits: u8,
    /// `client_max_window_bits` is stated in the response.
    client_bits_stated: bool,
    /// `server_max_window_bits` is stated in the response.
    server_bits_stated: bool,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value the server answers with, which
    /// is also what a `WebSocket`'s `extensions()` reports.
    pub fn response(&self) -> String {
        let mut out = EXTENSION_NAME.to_owned();
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if self.server_bits_stated {
            out.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if self.client_bits_stated {
            out.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        out
    }

    /// What the end in `role` does: how it compresses and how the peer's
    /// messages must be inflated.
    pub fn directions(&self, role: super::Role) -> (Direction, Direction) {
        let server = Direction {
            window_bits: self.server_max_window_bits,
            no_context_takeover: self.server_no_context_takeover,
        };
        let client = Direction {
            window_bits: self.client_max_window_bits,
            no_context_takeover: self.client_no_context_takeover,
        };
        match role {
            super::Role::Server => (server, client),
            super::Role::Client => (client, server),
        }
    }
}

/// One direction of a compressed connection: the window its sender may
/// use, and whether the sender resets its compressor after each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direction {
    /// The largest window, 8 to 15 bits.
    pub window_bits: u8,
    /// The compressor is reset after each message.
    pub no_context_takeover: bool,
}

/// Why a client fails the connection over the server's
/// `Sec-WebSocket-Extensions` (RFC 7692 §5, §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The server named an extension that was not offered.
    Unoffered(String),
    /// The server accepted permessage-deflate more than once.
    Repeated,
    /// A parameter the RFC does not define.
    UnknownParameter(String),
    /// A parameter given twice.
    DuplicateParameter(String),
    /// A parameter with a value it may not have, or without one it needs.
    InvalidValue(String),
    /// A parameter this end's offer did not allow, or a window larger
    /// than the offer's.
    NotAllowed(String),
    /// The header is not a valid extension list.
    Malformed,
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NegotiationError::Unoffered(name) => {
                write!(
                    f,
                    "the server enabled extension '{name}', which was not offered"
                )
            }
            NegotiationError::Repeated => {
                f.write_str("the server accepted permessage-deflate more than once")
            }
            NegotiationError::UnknownParameter(p) => {
                write!(f, "permessage-deflate: unknown parameter '{p}'")
            }
            NegotiationError::DuplicateParameter(p) => {
                write!(f, "permessage-deflate: parameter '{p}' given twice")
            }
            NegotiationError::InvalidValue(p) => {
                write!(f, "permessage-deflate: invalid value for '{p}'")
            }
            NegotiationError::NotAllowed(p) => {
                write!(f, "permessage-deflate: the offer did not allow '{p}'")
            }
            NegotiationError::Malformed => {
                f.write_str("Sec-WebSocket-Extensions is not a valid extension list")
            }
        }
    }
}

impl std::error::Error for NegotiationError {}

/// One element of an extension list: its name and its parameters, values
/// unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The extension's name, as sent.
    pub name: String,
    /// Its parameters in order: name, and the value if one was given.
    pub params: Vec<(String, Option<String>)>,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parses the values of every `Sec-WebSocket-Extensions` header, in order,
/// into their elements (RFC 6455 §9.1: tokens, parameters, values as
/// tokens or quoted strings). `None` when one is not valid.
pub fn parse_extensions<S: AsRef<str>>(values: &[S]) -> Option<Vec<Element>> {
    let mut out = Vec::new();
    for value in values {
        parse_list(value.as_ref().as_bytes(), &mut out)?;
    }
    Some(out)
}

fn parse_list(s: &[u8], out: &mut Vec<Element>) -> Option<()> {
    let mut p = Parser { s, at: 0 };
    loop {
        p.skip_ws();
        if p.eat(b',') {
            continue; // empty list elements are allowed (RFC 9110 §5.6.1)
        }
        if p.done() {
            return Some(());
        }
        let name = p.token()?;
        let mut params = Vec::new();
        loop {
            p.skip_ws();
            if !p.eat(b';') {
                break;
            }
            p.skip_ws();
            let pname = p.token()?;
            p.skip_ws();
            let value = if p.eat(b'=') {
                p.skip_ws();
                Some(if p.peek() == Some(b'"') {
                    let v = p.quoted()?;
                    // A quoted value must be a token once unquoted.
                    if v.is_empty() || !v.bytes().all(is_tchar) {
                        return None;
                    }
                    v
                } else {
                    p.token()?
                })
            } else {
                None
            };
            params.push((pname, value));
        }
        out.push(Element { name, params });
        p.skip_ws();
        if p.done() {
            return Some(());
        }
        if !p.eat(b',') {
            return None;
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }
    fn done(&self) -> bool {
        self.at >= self.s.len()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }
    fn token(&mut self) -> Option<String> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }
    fn quoted(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut v = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return String::from_utf8(v).ok();
                }
                b'\\' => {
                    self.at += 1;
                    v.push(self.peek()?);
                    self.at += 1;
                }
                c => {
                    v.push(c);
                    self.at += 1;
                }
            }
        }
    }
}

/// The parameters of one permessage-deflate element, checked for the
/// rules both sides share: known names, each once, valid values.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
}

fn window_bits(name: &str, value: &str) -> Result<u8, NegotiationError> {
    // 1*DIGIT with no leading zero, 8 to 15 (RFC 7692 §7.1.2.1).
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NegotiationError::InvalidValue(name.to_owned()));
    }
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) => Ok(bits),
        _ => Err(NegotiationError::InvalidValue(name.to_owned())),
    }
}

fn parse_params(element: &Element) -> Result<Params, NegotiationError> {
    let mut p = Params::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &element.params {
        let lower = name.to_ascii_lowercase();
        if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return Err(NegotiationError::DuplicateParameter(lower));
        }
        seen.push(name);
        match (lower.as_str(), value) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                p.server_max_window_bits = Some(window_bits(&lower, v)?)
            }
            ("client_max_window_bits", None) => p.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => {
                p.client_max_window_bits = Some(Some(window_bits(&lower, v)?))
            }
            (
                "server_no_context_takeover"
                | "client_no_context_takeover"
                | "server_max_window_bits",
                _,
            ) => return Err(NegotiationError::InvalidValue(lower)),
            _ => return Err(NegotiationError::UnknownParameter(lower)),
        }
    }
    Ok(p)
}

/// The offer a client sends in `Sec-WebSocket-Extensions`.
pub fn client_offer(config: &DeflateConfig) -> String {
    let mut out = EXTENSION_NAME.to_owned();
    if config.server_no_context_takeover {
        out.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        out.push_str("; client_no_context_takeover");
    }
    if config.server_max_window_bits < 15 {
        out.push_str(&format!(
            "; server_max_window_bits={}",
            config.server_max_window_bits
        ));
    }
    // Always: this end can compress with any window the server asks for.
    if config.client_max_window_bits < 15 {
        out.push_str(&format!(
            "; client_max_window_bits={}",
            config.client_max_window_bits
        ));
    } else {
        out.push_str("; client_max_window_bits");
    }
    out
}

/// The client's check of the server's `Sec-WebSocket-Extensions` values
/// (every such header, in order) against the offer made from `config`:
/// `Ok(None)` when the server declined, the agreement when it accepted,
/// an error when the client must fail the connection (RFC 7692 §7.1).
pub fn client_accept<S: AsRef<str>>(
    config: &DeflateConfig,
    values: &[S],
) -> Result<Option<Agreement>, NegotiationError> {
    let elements = parse_extensions(values).ok_or(NegotiationError::Malformed)?;
    let mut agreed = None;
    for element in &elements {
        if !element.name.eq_ignore_ascii_case(EXTENSION_NAME) {
            return Err(NegotiationError::Unoffered(element.name.clone()));
        }
        if agreed.is_some() {
            return Err(NegotiationError::Repeated);
        }
        let p = parse_params(element)?;
        // Asked for no context takeover: the server must agree.
        if config.server_no_context_takeover && !p.server_no_context_takeover {
            return Err(NegotiationError::NotAllowed(
                "the absence of server_no_context_takeover".to_owned(),
            ));
        }
        let server_bits = match (config.server_max_window_bits, p.server_max_window_bits) {
            (asked, Some(bits)) if bits > asked => {
                return Err(NegotiationError::NotAllowed(format!(
                    "server_max_window_bits={bits}"
                )))
            }
            (_, Some(bits)) => bits,
            (asked, None) if asked < 15 => {
                return Err(NegotiationError::NotAllowed(
                    "the absence of server_max_window_bits".to_owned(),
                ))
            }
            (_, None) => 15,
        };
        let client_bits = match p.client_max_window_bits {
            // In a response it needs a value (RFC 7692 §7.1.2.2).
            Some(None) => {
                return Err(NegotiationError::InvalidValue(
                    "client_max_window_bits".to_owned(),
                ))
            }
            Some(Some(bits)) if bits > config.client_max_window_bits => {
                return Err(NegotiationError::NotAllowed(format!(
                    "client_max_window_bits={bits}"
                )))
            }
            Some(Some(bits)) => bits,
            None => config.client_max_window_bits,
        };
        agreed = Some(Agreement {
            server_no_context_takeover: p.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover
                || config.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            server_bits_stated: p.server_max_window_bits.is_some(),
            client_bits_stated: p.client_max_window_bits.is_some(),
        });
    }
    Ok(agreed)
}

/// The server's choice among a request's `Sec-WebSocket-Extensions`
/// values: the first permessage-deflate offer it can accept on the terms
/// of `config`, or `None`. An offer with an unknown, repeated or invalid
/// parameter is declined, and the next one considered (RFC 7692 §5.1).
pub fn server_accept<S: AsRef<str>>(config: &DeflateConfig, values: &[S]) -> Option<Agreement> {
    // A header that does not parse: its offers are declined, and others
    // still count.
    let mut elements = Vec::new();
    for value in values {
        let mut one = Vec::new();
        if parse_list(value.as_ref().as_bytes(), &mut one).is_some() {
            elements.extend(one);
        }
    }
    elements
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(EXTENSION_NAME))
        .find_map(|e| accept_offer(config, &parse_params(e).ok()?))
}

fn accept_offer(config: &DeflateConfig, offer: &Params) -> Option<Agreement> {
    let server_bits = match offer.server_max_window_bits {
        Some(asked) => Some(asked.min(config.server_max_window_bits)),
        None if config.server_max_window_bits < 15 => Some(config.server_max_window_bits),
        None => None,
    };
    // A limit on the client's window can be stated only when the client
    // offered client_max_window_bits; without one it may use 15 bits.
    let client_bits = match offer.client_max_window_bits {
        Some(Some(offered)) => Some(offered.min(config.client_max_window_bits)),
        Some(None) if config.client_max_window_bits < 15 => Some(config.client_max_window_bits),
        Some(None) | None => None,
    };
    Some(Agreement {
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits.unwrap_or(15),
        client_max_window_bits: client_bits.unwrap_or(15),
        server_bits_stated: server_bits.is_some(),
        client_bits_stated: client_bits.is_some(),
    })
}

/// Whether `budget` has room now for a connection's codec state (the
/// compressor and the inflater at their largest windows).
pub fn fits_budget(budget: &super::budget::MemoryBudget) -> bool {
    let need = state_cost(15, true) + state_cost(15, false);
    budget.limit().saturating_sub(budget.used()) >= need
}

/// The memory the codec's state takes for an agreement, in bytes, as
/// measured with zlib-rs: the compressor's hash chains and window (its
/// largest part), and the inflater's window. Charged to the memory budget.
pub fn state_cost(window_bits: u8, compressor: bool) -> usize {
    let bits = u32::from(window_bits.clamp(9, 15));
    if compressor {
        // Window and previous-match chain (4 bytes per window byte), the
        // hash table, the pending buffer and the rest of the state at
        // zlib's memory level 8: 196 KiB at 9 bits and 307 KiB at 15
        // measured alone, 333–347 KiB a connection with the inflater and
        // the allocator's overhead at 1 000 connections (docs/benchmarks.md).
        (4usize << bits) + (208 << 10)
    } else {
        // 37 to 47 KiB measured, whatever the window.
        48 << 10
    }
}

#[cfg(feature = "deflate")]
pub use codec::{Deflater, InflateError, Inflater};

#[cfg(feature = "deflate")]
mod codec {
    use super::TAIL;
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
    use std::fmt;

    /// Compresses whole messages for one direction: a sync flush after
    /// each, its 4-byte tail removed, the context reset after each
    /// message or kept, as agreed.
    pub struct Deflater {
        inner: Compress,
        reset: bool,
    }

    impl fmt::Debug for Deflater {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Deflater")
                .field("reset", &self.reset)
                .finish_non_exhaustive()
        }
    }

    impl Deflater {
        /// A compressor at `level` with a window of `window_bits` (9 to
        /// 15; 8 cannot compress, see the module's documentation), reset
        /// after each message when `no_context_takeover`.
        pub fn new(level: u32, window_bits: u8, no_context_takeover: bool) -> Deflater {
            Deflater {
                inner: Compress::new_with_window_bits(
                    Compression::new(level.min(9)),
                    false,
                    window_bits.clamp(9, 15),
                ),
                reset: no_context_takeover,
            }
        }

        /// Appends `message` compressed to `out` (the payload of a message
        /// with RSV1 set).
        pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
            let start = out.len();
            let mut input = message;
            loop {
                // Deflate can grow incompressible data by a few bytes a block.
                let want = input.len() + input.len() / 64 + 64;
                out.reserve(want);
                let before_in = self.inner.total_in();
                let spare = out.capacity() - out.len();
                let before_out = out.len();
                self.inner
                    .compress_vec(input, out, FlushCompress::Sync)
                    .map_err(|e| e.to_string())?;
                let used = (self.inner.total_in() - before_in) as usize;
                input = &input[used.min(input.len())..];
                let produced = out.len() - before_out;
                if input.is_empty() && produced < spare {
                    break;
                }
            }
            if out.len() >= start + 4 && out[out.len() - 4..] == TAIL {
                out.truncate(out.len() - 4);
            }
            // zlib writes nothing for a second sync flush with no input
            // between: an empty message after another needs the empty
            // stored block's first byte, which the tail completes
            // (RFC 7692 §7.2.3.6).
            if out.len() == start {
                out.push(0x00);
            }
            if self.reset {
                self.inner.reset();
            }
            Ok(())
        }
    }

    /// What the inflater found wrong with a message.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum InflateError {
        /// The compressed data is not valid deflate data.
        Invalid(String),
    }

    /// Inflates the messages of one direction.
    pub struct Inflater {
        inner: Decompress,
        reset: bool,
        /// The deflate stream ended inside the message (a final block):
        /// the rest of the message is ignored, and the state reset after it.
        ended: bool,
    }

    impl fmt::Debug for Inflater {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Inflater")
                .field("reset", &self.reset)
                .finish_non_exhaustive()
        }
    }

    /// How far one call to [`Inflater::inflate`] got.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Progress {
        /// Input bytes consumed.
        pub consumed: usize,
        /// Output bytes appended.
        pub produced: usize,
        /// Everything the consumed input makes was output: the call did
        /// not stop for want of room.
        pub drained: bool,
    }

    impl Inflater {
        /// An inflater for a sender's window of `window_bits` (8 is
        /// inflated with 9), reset after each message when
        /// `no_context_takeover`.
        pub fn new(window_bits: u8, no_context_takeover: bool) -> Inflater {
            Inflater {
                inner: Decompress::new_with_window_bits(false, window_bits.clamp(9, 15)),
                reset: no_context_takeover,
                ended: false,
            }
        }

        /// Inflates from `input` into the room `out` has beyond its
        /// length (it never grows `out`).
        pub fn inflate(
            &mut self,
            input: &[u8],
            out: &mut Vec<u8>,
        ) -> Result<Progress, InflateError> {
            if self.ended {
                return Ok(Progress {
                    consumed: input.len(),
                    produced: 0,
                    drained: true,
                });
            }
            let spare = out.capacity() - out.len();
            let before_in = self.inner.total_in();
            let before_out = out.len();
            let status = self
                .inner
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|e| InflateError::Invalid(e.to_string()))?;
            let mut consumed = (self.inner.total_in() - before_in) as usize;
            let produced = out.len() - before_out;
            if status == Status::StreamEnd {
                self.ended = true;
                consumed = input.len();
            }
            Ok(Progress {
                consumed,
                produced,
                drained: self.ended || (consumed == input.len() && produced < spare),
            })
        }

        /// The message ended: its tail is to be inflated (see
        /// [`TAIL`]) unless the stream ended, and then the state reset if
        /// the agreement says so.
        pub fn needs_tail(&self) -> bool {
            !self.ended
        }

        /// After the message (and its tail) was inflated.
        pub fn end_message(&mut self) {
            if self.reset || self.ended {
                self.inner.reset(false);
                self.ended = false;
            }
        }

        /// Whether the state can be dropped between messages (nothing
        /// carries over from one message to the next).
        pub fn resets(&self) -> bool {
            self.reset
        }
    }
}

#[cfg(test)]
// Written as code outside the crate must: `DeflateConfig` is non-exhaustive.
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    fn agree(server: &DeflateConfig, client: &DeflateConfig) -> (Agreement, Agreement) {
        let offer = client_offer(client);
        let a = server_accept(server, &[offer]).expect("the server accepts");
        let b = client_accept(client, &[a.response()])
            .expect("the client accepts the response")
            .expect("an agreement");
        (a, b)
    }

    #[test]
    fn default_offer_and_answer() {
        let d = DeflateConfig::default();
        assert_eq!(
            client_offer(&d),
            "permessage-deflate; client_max_window_bits"
        );
        let (server, client) = agree(&d, &d);
        assert_eq!(server, client);
        assert_eq!(server.response(), "permessage-deflate");
        assert_eq!(
            (server.server_max_window_bits, server.client_max_window_bits),
            (15, 15)
        );
    }

    #[test]
    fn every_parameter_is_offered_and_agreed() {
        let mut c = DeflateConfig::default();
        c.server_no_context_takeover = true;
        c.client_no_context_takeover = true;
        c.server_max_window_bits = 10;
        c.client_max_window_bits = 11;
        assert_eq!(
            client_offer(&c),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=11"
        );
        let mut s = DeflateConfig::default();
        s.client_max_window_bits = 9;
        let (server, client) = agree(&s, &c);
        assert_eq!(server, client);
        assert!(server.server_no_context_takeover && server.client_no_context_takeover);
        assert_eq!(server.server_max_window_bits, 10);
        assert_eq!(server.client_max_window_bits, 9);
        assert_eq!(
            server.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
        let (send, recv) = server.directions(crate::proto::Role::Server);
        assert_eq!((send.window_bits, recv.window_bits), (10, 9));
        let (send, recv) = client.directions(crate::proto::Role::Client);
        assert_eq!((send.window_bits, recv.window_bits), (9, 10));
    }

    #[test]
    fn the_server_states_its_own_limits() {
        let mut s = DeflateConfig::default();
        s.server_no_context_takeover = true;
        s.client_no_context_takeover = true;
        s.server_max_window_bits = 12;
        s.client_max_window_bits = 10;
        // The browser's offer: client_max_window_bits without a value.
        let a = server_accept(&s, &["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(
            a.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits=10"
        );
        // Without client_max_window_bits in the offer, none in the answer.
        let a = server_accept(&s, &["permessage-deflate"]).unwrap();
        assert!(!a.response().contains("client_max_window_bits"));
        assert_eq!(a.client_max_window_bits, 15);
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_one_taken() {
        let s = DeflateConfig::default();
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=x",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=\"16\"",
            "permessage-deflate; client_max_window_bits=1a",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(server_accept(&s, &[bad]), None, "{bad}");
            let two = format!("{bad}, permessage-deflate; server_max_window_bits=12");
            let a = server_accept(&s, &[two.as_str()]).unwrap_or_else(|| panic!("{two}"));
            assert_eq!(a.server_max_window_bits, 12, "{two}");
        }
        // A header that is not an extension list is declined whole; the
        // next header still counts.
        assert_eq!(server_accept(&s, &["permessage-deflate;;"]), None);
        let a = server_accept(&s, &["permessage-deflate;;", "permessage-deflate"]);
        assert!(a.is_some());
        // Quoted values are unquoted; names are case-insensitive.
        let a = server_accept(
            &s,
            &["Permessage-Deflate; Server_Max_Window_Bits=\"9\"; client_max_window_bits"],
        )
        .unwrap();
        assert_eq!(a.server_max_window_bits, 9);
        // Several headers count as one list.
        let a = server_accept(
            &s,
            &["foo", "permessage-deflate; client_no_context_takeover"],
        );
        assert!(a.unwrap().client_no_context_takeover);
        assert_eq!(server_accept(&s, &[""; 0]), None);
    }

    #[test]
    fn responses_the_client_must_refuse() {
        let mut c = DeflateConfig::default();
        c.client_max_window_bits = 12;
        for (response, want) in [
            ("x-foo", NegotiationError::Unoffered("x-foo".into())),
            (
                "permessage-deflate, permessage-deflate",
                NegotiationError::Repeated,
            ),
            (
                "permessage-deflate; bar",
                NegotiationError::UnknownParameter("bar".into()),
            ),
            (
                "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                NegotiationError::DuplicateParameter("client_no_context_takeover".into()),
            ),
            (
                "permessage-deflate; client_max_window_bits",
                NegotiationError::InvalidValue("client_max_window_bits".into()),
            ),
            (
                "permessage-deflate; client_max_window_bits=13",
                NegotiationError::NotAllowed("client_max_window_bits=13".into()),
            ),
            (
                "permessage-deflate; server_max_window_bits=20",
                NegotiationError::InvalidValue("server_max_window_bits".into()),
            ),
            ("permessage-deflate; ", NegotiationError::Malformed),
        ] {
            assert_eq!(client_accept(&c, &[response]), Err(want), "{response}");
        }
        // What the offer asked for must be in the answer.
        let mut c = DeflateConfig::default();
        c.server_no_context_takeover = true;
        c.server_max_window_bits = 10;
        for response in [
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
        ] {
            assert!(
                matches!(
                    client_accept(&c, &[response]),
                    Err(NegotiationError::NotAllowed(_))
                ),
                "{response}"
            );
        }
        let a = client_accept(
            &c,
            &["permessage-deflate; server_no_context_takeover; server_max_window_bits=8"],
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.server_max_window_bits, 8);
        // No header: declined.
        assert_eq!(client_accept(&c, &[""; 0]), Ok(None));
    }

    #[test]
    fn the_server_may_add_what_the_client_did_not_ask() {
        let c = DeflateConfig::default();
        let a = client_accept(
            &c,
            &[
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
               server_max_window_bits=9; client_max_window_bits=8",
            ],
        )
        .unwrap()
        .unwrap();
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
        assert_eq!((a.server_max_window_bits, a.client_max_window_bits), (9, 8));
    }

    #[test]
    fn config_is_checked() {
        let mut d = DeflateConfig::default();
        assert_eq!(d.check(), Ok(()));
        d.level = 10;
        assert!(d.check().unwrap_err().contains("level"));
        let mut d = DeflateConfig::default();
        d.client_max_window_bits = 7;
        assert!(d.check().unwrap_err().contains("client_max_window_bits"));
        d.client_max_window_bits = 8;
        d.server_max_window_bits = 16;
        assert!(d.check().unwrap_err().contains("server_max_window_bits"));
    }

    #[cfg(feature = "deflate")]
    mod codec {
        use super::super::*;

        fn inflate_all(inf: &mut Inflater, payload: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            for input in [payload, &TAIL[..]] {
                let mut input = input;
                loop {
                    out.reserve(64);
                    let p = inf.inflate(input, &mut out).unwrap();
                    input = &input[p.consumed..];
                    if input.is_empty() && p.drained {
                        break;
                    }
                }
                if !inf.needs_tail() {
                    break;
                }
            }
            inf.end_message();
            out
        }

        // RFC 7692 §7.2.3.1: "Hello" compressed, and §7.2.3.2: the same
        // message again with the context taken over.
        #[test]
        fn rfc_7692_examples() {
            let mut d = Deflater::new(6, 15, false);
            let mut first = Vec::new();
            d.compress(b"Hello", &mut first).unwrap();
            assert_eq!(first, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
            let mut second = Vec::new();
            d.compress(b"Hello", &mut second).unwrap();
            assert_eq!(second, [0xf2, 0x00, 0x11, 0x00, 0x00]);
            let mut i = Inflater::new(15, false);
            assert_eq!(inflate_all(&mut i, &first), b"Hello");
            assert_eq!(inflate_all(&mut i, &second), b"Hello");
            // §7.2.3.3: a message in a stored (uncompressed) block.
            let stored = [
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ];
            let mut i = Inflater::new(15, false);
            assert_eq!(inflate_all(&mut i, &stored), b"Hello");
            // §7.2.3.4: two deflate blocks in one message.
            let two = [
                0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
            ];
            let mut i = Inflater::new(15, false);
            assert_eq!(inflate_all(&mut i, &two), b"Hello");
            // §7.2.3.5: a final block (BFINAL) ends the stream.
            let fin = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
            let mut i = Inflater::new(15, false);
            assert_eq!(inflate_all(&mut i, &fin), b"Hello");
            assert_eq!(
                inflate_all(&mut i, &first),
                b"Hello",
                "state reset after BFINAL"
            );
        }

        #[test]
        fn without_context_takeover_each_message_stands_alone() {
            let mut d = Deflater::new(6, 15, true);
            let mut a = Vec::new();
            let mut b = Vec::new();
            d.compress(b"Hello", &mut a).unwrap();
            d.compress(b"Hello", &mut b).unwrap();
            assert_eq!(a, b, "the second message does not refer to the first");
            let mut i = Inflater::new(15, true);
            assert_eq!(inflate_all(&mut i, &b), b"Hello");
            // An inflater that keeps its context reads them too.
            let mut i = Inflater::new(15, false);
            assert_eq!(inflate_all(&mut i, &a), b"Hello");
            assert_eq!(inflate_all(&mut i, &b), b"Hello");
        }

        #[test]
        fn large_messages_and_every_window_round_trip() {
            let text: Vec<u8> = (0..200_000u32)
                .flat_map(|i| format!("{{\"id\":{i},\"v\":\"x{}\"}}", i % 97).into_bytes())
                .take(300_000)
                .collect();
            for bits in 8..=15 {
                for reset in [false, true] {
                    let mut d = Deflater::new(6, bits, reset);
                    let mut i = Inflater::new(bits, reset);
                    for _ in 0..2 {
                        let mut c = Vec::new();
                        d.compress(&text, &mut c).unwrap();
                        assert!(c.len() * 4 < text.len(), "compressible");
                        assert_eq!(inflate_all(&mut i, &c), text, "{bits} {reset}");
                    }
                    let mut c = Vec::new();
                    d.compress(b"", &mut c).unwrap();
                    assert_eq!(inflate_all(&mut i, &c), b"");
                    // And the stream goes on after the empty message.
                    let mut c = Vec::new();
                    d.compress(&text[..1000], &mut c).unwrap();
                    assert_eq!(inflate_all(&mut i, &c), &text[..1000], "{bits} {reset}");
                }
            }
        }

        #[test]
        fn an_empty_message_is_one_byte_however_it_follows() {
            // §7.2.3.6: an empty message is the stored block `00`; zlib
            // writes nothing at all for it after another message.
            let mut d = Deflater::new(6, 15, false);
            let mut i = Inflater::new(15, false);
            for msg in [&b"x"[..], b"", b"", b"y"] {
                let mut c = Vec::new();
                d.compress(msg, &mut c).unwrap();
                assert!(!c.is_empty());
                assert_eq!(inflate_all(&mut i, &c), msg);
            }
        }

        #[test]
        fn invalid_data_is_an_error() {
            let mut i = Inflater::new(15, false);
            let mut out = Vec::with_capacity(64);
            // BTYPE 11 is reserved.
            assert!(i.inflate(&[0xff, 0xff, 0xff], &mut out).is_err());
        }
    }
}
