//! The opening handshake (RFC 6455 §4): the client's request and its check of
//! the response, the server's check of the request and its response. HTTP
//! heads are parsed by `httparse`; nothing here touches a socket.

use super::deflate::{self, Agreement, DeflateConfig, NegotiationError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::fmt;

/// The GUID that RFC 6455 §1.3 appends to the key.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The most headers a head may have.
const MAX_HEADERS: usize = 64;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    BASE64.encode(sha.digest().bytes())
}

/// Whether a comma-separated header value holds `token` (case-insensitively).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn header<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Headers as owned pairs, in order, names as sent (values that are not
/// UTF-8 decoded lossily).
fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// The first value of the header `name` (case-insensitively) among owned
/// pairs such as [`Request::headers`] or [`Accepted::headers`].
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of a header, in order, as text (lossily).
fn header_values(headers: &[httparse::Header<'_>], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .collect()
}

/// Every value of the header `name` among owned pairs, in order.
pub fn find_headers<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Every value of a repeatable header, split at commas and trimmed.
fn header_tokens(headers: &[httparse::Header<'_>], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|b| *b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).into_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

// ---------------------------------------------------------------- client side

/// The client's request, and the key it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// The `Sec-WebSocket-Key` sent (base64 of 16 random bytes).
    pub key: String,
    /// The request head, ready to write.
    pub bytes: Vec<u8>,
}

/// Builds the client's upgrade request.
///
/// `host` is the `Host` header value (with the port when it is not the
/// scheme's default), `resource` the path and query (`/` at least), `nonce`
/// 16 random bytes. `extra` are more headers (`Authorization`, `Cookie`,
/// `Origin`, ...), written after the library's own in their order: check
/// each with [`check_request_header`] first.
pub fn client_request(
    host: &str,
    resource: &str,
    protocols: &[String],
    extra: &[(String, String)],
    nonce: [u8; 16],
) -> ClientRequest {
    let key = BASE64.encode(nonce);
    let mut req = format!(
        "GET {resource} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !protocols.is_empty() {
        req.push_str("Sec-WebSocket-Protocol: ");
        req.push_str(&protocols.join(", "));
        req.push_str("\r\n");
    }
    for (name, value) in extra {
        req.push_str(name);
        req.push_str(": ");
        req.push_str(value);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    ClientRequest {
        key,
        bytes: req.into_bytes(),
    }
}

/// The headers of an upgrade request that the library writes itself: a
/// request header of one of these names is refused by
/// [`check_request_header`].
pub const LIBRARY_REQUEST_HEADERS: [&str; 9] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

/// Why a request header cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The name is empty or not an HTTP token (RFC 9110 §5.1).
    InvalidName,
    /// The value holds CR, LF, NUL or another control character (RFC 9110
    /// §5.5): it could end the header and inject others.
    InvalidValue,
    /// The library writes this header itself (`Host`, `Upgrade`,
    /// `Sec-WebSocket-*`, ...); subprotocols go in `connect`'s list.
    Reserved,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderError::InvalidName => "the name is not an HTTP token",
            HeaderError::InvalidValue => "the value holds a control character (CR, LF, NUL, ...)",
            HeaderError::Reserved => "the library writes this header itself",
        })
    }
}

impl std::error::Error for HeaderError {}

/// Checks a header an application adds to its upgrade request: a token
/// for a name, a value without control characters (but tab), and none of
/// the [`LIBRARY_REQUEST_HEADERS`].
///
/// ```
/// use airws::proto::handshake::{check_request_header, HeaderError};
/// assert_eq!(check_request_header("Authorization", "Bearer abc"), Ok(()));
/// assert_eq!(
///     check_request_header("X-A", "1\r\nX-B: 2"),
///     Err(HeaderError::InvalidValue)
/// );
/// assert_eq!(check_request_header("Sec-WebSocket-Key", "x"), Err(HeaderError::Reserved));
/// ```
pub fn check_request_header(name: &str, value: &str) -> Result<(), HeaderError> {
    check_header(name, value, &LIBRARY_REQUEST_HEADERS)
}

/// The headers of a server's answer that the library writes itself: a
/// response header of one of these names is refused by
/// [`check_response_header`].
pub const LIBRARY_RESPONSE_HEADERS: [&str; 7] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

/// Checks a header a server adds to its answer to an upgrade request
/// (`Set-Cookie`, `WWW-Authenticate`, ...): a token for a name, a value
/// without control characters (but tab), and none of the
/// [`LIBRARY_RESPONSE_HEADERS`].
///
/// ```
/// use airws::proto::handshake::{check_response_header, HeaderError};
/// assert_eq!(check_response_header("Set-Cookie", "id=1; HttpOnly"), Ok(()));
/// assert_eq!(check_response_header("Set-Cookie", "a\nb"), Err(HeaderError::InvalidValue));
/// assert_eq!(check_response_header("Sec-WebSocket-Accept", "x"), Err(HeaderError::Reserved));
/// ```
pub fn check_response_header(name: &str, value: &str) -> Result<(), HeaderError> {
    check_header(name, value, &LIBRARY_RESPONSE_HEADERS)
}

fn check_header(name: &str, value: &str, reserved: &[&str]) -> Result<(), HeaderError> {
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(HeaderError::InvalidName);
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7F) {
        return Err(HeaderError::InvalidValue);
    }
    if reserved.iter().any(|h| h.eq_ignore_ascii_case(name)) {
        return Err(HeaderError::Reserved);
    }
    Ok(())
}

/// What a valid 101 response told the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accepted {
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// The response's status code (101).
    pub status: u16,
    /// Every header of the response, in order, names as sent (values that
    /// are not UTF-8 are decoded lossily).
    pub headers: Vec<(String, String)>,
    /// permessage-deflate, when it was offered and the server accepted it.
    pub deflate: Option<Agreement>,
}

/// Why the client rejects the server's response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// The head is longer than the limit.
    TooLarge,
    /// Not parseable as HTTP.
    Malformed(String),
    /// The status was not 101: the server refused the upgrade.
    Status {
        /// The status code.
        code: u16,
        /// The reason phrase, as the server wrote it.
        reason: String,
        /// The length of the head: the body starts there.
        head_len: usize,
        /// The head's `Content-Length`, if it has a valid one.
        content_length: Option<usize>,
        /// The head's `Location` (where a redirect sends the client).
        location: Option<String>,
    },
    /// `Upgrade: websocket` is missing.
    NoUpgrade,
    /// `Connection: Upgrade` is missing.
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Accept` is missing or wrong.
    BadAccept,
    /// The server chose a subprotocol that was not offered.
    UnofferedProtocol(String),
    /// The server enabled an extension that was not offered.
    UnofferedExtension(String),
    /// The server's answer to the permessage-deflate offer breaks RFC 7692.
    Extension(NegotiationError),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::TooLarge => f.write_str("the response head is too large"),
            ResponseError::Malformed(e) => write!(f, "malformed HTTP response: {e}"),
            ResponseError::Status { code, .. } => {
                write!(f, "the server answered HTTP {code}, not 101")
            }
            ResponseError::NoUpgrade => f.write_str("the response lacks 'Upgrade: websocket'"),
            ResponseError::NoConnectionUpgrade => {
                f.write_str("the response lacks 'Connection: Upgrade'")
            }
            ResponseError::BadAccept => f.write_str("wrong or missing Sec-WebSocket-Accept"),
            ResponseError::UnofferedProtocol(p) => {
                write!(
                    f,
                    "the server chose subprotocol '{p}', which was not offered"
                )
            }
            ResponseError::UnofferedExtension(e) => {
                write!(
                    f,
                    "the server enabled extension '{e}', which was not offered"
                )
            }
            ResponseError::Extension(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ResponseError {}

/// Parses and checks the server's response to a request that offered no
/// extension.
///
/// Returns `Ok(None)` until `buf` holds the whole head, then the result and
/// the length of the head (bytes after it are WebSocket frames).
pub fn parse_response(
    buf: &[u8],
    key: &str,
    offered: &[String],
    max_head: usize,
) -> Result<Option<(Accepted, usize)>, ResponseError> {
    parse_response_offering(buf, key, offered, None, max_head)
}

/// [`parse_response`] for a request that offered permessage-deflate made
/// from `deflate` (see [`deflate::client_offer`]) when it is `Some`: the
/// server's answer to the offer is checked by [`deflate::client_accept`].
pub fn parse_response_offering(
    buf: &[u8],
    key: &str,
    offered: &[String],
    deflate: Option<&DeflateConfig>,
    max_head: usize,
) -> Result<Option<(Accepted, usize)>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > max_head {
                Err(ResponseError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(e) => return Err(ResponseError::Malformed(e.to_string())),
    };
    if len > max_head {
        return Err(ResponseError::TooLarge);
    }
    let status = resp.code.unwrap_or(0);
    let headers = resp.headers;
    if status != 101 {
        return Err(ResponseError::Status {
            code: status,
            reason: resp.reason.unwrap_or_default().to_owned(),
            head_len: len,
            content_length: header(headers, "content-length")
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok()),
            location: header(headers, "location")
                .and_then(|v| Some(std::str::from_utf8(v).ok()?.trim().to_owned())),
        });
    }
    if !header(headers, "upgrade").is_some_and(|v| has_token(v, "websocket")) {
        return Err(ResponseError::NoUpgrade);
    }
    if !headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection") && has_token(h.value, "upgrade"))
    {
        return Err(ResponseError::NoConnectionUpgrade);
    }
    let expected = accept_key(key);
    if header(headers, "sec-websocket-accept").map(|v| v.trim_ascii()) != Some(expected.as_bytes())
    {
        return Err(ResponseError::BadAccept);
    }
    let chosen = header_tokens(headers, "sec-websocket-protocol");
    let protocol = match chosen.as_slice() {
        [] => None,
        [p] if offered.iter().any(|o| o == p) => Some(p.clone()),
        _ => return Err(ResponseError::UnofferedProtocol(chosen.join(", "))),
    };
    let extensions = header_values(headers, "sec-websocket-extensions");
    let deflate = match deflate {
        Some(config) => {
            deflate::client_accept(config, &extensions).map_err(ResponseError::Extension)?
        }
        None => {
            if let Some(ext) = header_tokens(headers, "sec-websocket-extensions").first() {
                return Err(ResponseError::UnofferedExtension(ext.clone()));
            }
            None
        }
    };
    let headers = owned_headers(headers);
    Ok(Some((
        Accepted {
            protocol,
            status,
            headers,
            deflate,
        },
        len,
    )))
}

// ---------------------------------------------------------------- server side

/// A valid upgrade request, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request target (path and query).
    pub resource: String,
    /// The `Host` header.
    pub host: String,
    /// The `Sec-WebSocket-Key` header.
    pub key: String,
    /// The subprotocols the client offered, in its order of preference.
    pub protocols: Vec<String>,
    /// Every header of the request, in order, names as sent (values that
    /// are not UTF-8 are decoded lossily).
    pub headers: Vec<(String, String)>,
}

/// Why the server rejects a request; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The head is longer than the limit, or has too many headers (431).
    TooLarge,
    /// Not parseable as HTTP (400).
    Malformed(String),
    /// A well-formed HTTP request that does not ask for a WebSocket (400).
    NotUpgrade {
        /// The method of the request.
        method: String,
        /// The request target.
        resource: String,
        /// The headers, in order (names as sent).
        headers: Vec<(String, String)>,
    },
    /// An upgrade request that breaks a rule of RFC 6455 §4.2.1 (400).
    Invalid(&'static str),
    /// `Sec-WebSocket-Version` is not 13 (426, with `Sec-WebSocket-Version: 13`).
    Version,
}

impl RequestError {
    /// The HTTP status the server answers with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::TooLarge => 431,
            RequestError::Version => 426,
            _ => 400,
        }
    }

    /// The complete HTTP response for this rejection: a plain-text body
    /// that says what was wrong without repeating the request (no path,
    /// no header value), sent with `X-Content-Type-Options: nosniff`.
    pub fn response(&self) -> Vec<u8> {
        let status = self.status();
        let nosniff = ("X-Content-Type-Options", "nosniff");
        let extra: &[(&str, &str)] = if status == 426 {
            &[
                ("Sec-WebSocket-Version", "13"),
                ("Upgrade", "websocket"),
                nosniff,
            ]
        } else {
            &[nosniff]
        };
        let body = match self {
            RequestError::NotUpgrade { .. } => {
                "This is a WebSocket server: the request is not a WebSocket upgrade.".to_owned()
            }
            RequestError::Malformed(_) => "malformed HTTP request".to_owned(),
            other => other.to_string(),
        };
        http_response(
            status,
            "text/plain; charset=utf-8",
            extra,
            format!("{body}\n").as_bytes(),
        )
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooLarge => f.write_str("request head too large"),
            RequestError::Malformed(e) => write!(f, "malformed HTTP request: {e}"),
            RequestError::NotUpgrade {
                method, resource, ..
            } => {
                write!(f, "{method} {resource} is not a WebSocket upgrade request")
            }
            RequestError::Invalid(why) => write!(f, "invalid WebSocket upgrade request: {why}"),
            RequestError::Version => {
                f.write_str("unsupported Sec-WebSocket-Version (13 is required)")
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// Parses and checks a client's upgrade request.
///
/// Returns `Ok(None)` until `buf` holds the whole head, then the request and
/// the length of the head.
pub fn parse_request(
    buf: &[u8],
    max_head: usize,
) -> Result<Option<(Request, usize)>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > max_head {
                Err(RequestError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooLarge),
        Err(e) => return Err(RequestError::Malformed(e.to_string())),
    };
    if len > max_head {
        return Err(RequestError::TooLarge);
    }
    let method = req.method.unwrap_or_default();
    let resource = req.path.unwrap_or_default();
    let headers = req.headers;
    let upgrade = header(headers, "upgrade").is_some_and(|v| has_token(v, "websocket"));
    if !upgrade {
        return Err(RequestError::NotUpgrade {
            method: method.to_owned(),
            resource: resource.to_owned(),
            headers: owned_headers(headers),
        });
    }
    if method != "GET" {
        return Err(RequestError::Invalid("the method is not GET"));
    }
    // Headers that must appear once (RFC 6455 §11.3.1, RFC 9112 §3.2): a
    // second value is an attempt to be read two ways.
    for (name, why) in SINGLE_HEADERS {
        if headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
            > 1
        {
            return Err(RequestError::Invalid(why));
        }
    }
    if req.version != Some(1) {
        return Err(RequestError::Invalid("the HTTP version is not 1.1"));
    }
    let Some(host) = header(headers, "host") else {
        return Err(RequestError::Invalid("no Host header"));
    };
    if !headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection") && has_token(h.value, "upgrade"))
    {
        return Err(RequestError::Invalid("Connection does not list Upgrade"));
    }
    let key = header(headers, "sec-websocket-key")
        .map(|v| v.trim_ascii())
        .unwrap_or_default();
    match BASE64.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => {
            return Err(RequestError::Invalid(
                "Sec-WebSocket-Key is not 16 bytes in base64",
            ))
        }
    }
    if header(headers, "sec-websocket-version").map(|v| v.trim_ascii()) != Some(b"13".as_slice()) {
        return Err(RequestError::Version);
    }
    Ok(Some((
        Request {
            resource: resource.to_owned(),
            host: String::from_utf8_lossy(host).into_owned(),
            key: String::from_utf8_lossy(key).into_owned(),
            protocols: header_tokens(headers, "sec-websocket-protocol"),
            headers: owned_headers(headers),
        },
        len,
    )))
}

/// The headers an upgrade request may carry once only, and the error for a
/// second one.
const SINGLE_HEADERS: [(&str, &str); 3] = [
    ("host", "more than one Host header"),
    (
        "sec-websocket-key",
        "more than one Sec-WebSocket-Key header",
    ),
    (
        "sec-websocket-version",
        "more than one Sec-WebSocket-Version header",
    ),
];

/// The reason phrase of common HTTP status codes.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A complete HTTP/1.1 response that closes the connection.
pub fn http_response(
    status: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason_phrase(status),
        body.len()
    );
    for (name, value) in extra {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The server's 101 response, with the chosen subprotocol if any.
pub fn accept_response(key: &str, protocol: Option<&str>) -> Vec<u8> {
    accept_response_with(key, protocol, &[])
}

/// The server's 101 response, with the chosen subprotocol if any and
/// `extra` headers (checked by the caller with [`check_response_header`]).
pub fn accept_response_with(
    key: &str,
    protocol: Option<&str>,
    extra: &[(String, String)],
) -> Vec<u8> {
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    let protocol = protocol.map(|p| ("Sec-WebSocket-Protocol", p));
    for (name, value) in protocol
        .into_iter()
        .chain(extra.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    {
        resp.push_str(name);
        resp.push_str(": ");
        resp.push_str(value);
        resp.push_str("\r\n");
    }
    resp.push_str("\r\n");
    resp.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    #[test]
    fn accept_key_matches_rfc_6455_section_1_3() {
        assert_eq!(accept_key(RFC_KEY), RFC_ACCEPT);
    }

    #[test]
    fn client_request_is_what_rfc_section_1_2_shows() {
        let nonce = *b"the sample nonce";
        let extra = [
            ("Authorization".to_owned(), "Bearer t0ken".to_owned()),
            ("Origin".to_owned(), "http://example.com".to_owned()),
        ];
        let req = client_request(
            "server.example.com",
            "/chat",
            &["chat".into(), "superchat".into()],
            &extra,
            nonce,
        );
        assert_eq!(req.key, RFC_KEY);
        let text = String::from_utf8(req.bytes.clone()).unwrap();
        assert!(
            text.ends_with("Authorization: Bearer t0ken\r\nOrigin: http://example.com\r\n\r\n"),
            "{text}"
        );
        let parsed = parse_request(&req.bytes, 8192).unwrap().unwrap();
        assert_eq!(parsed.1, req.bytes.len());
        assert_eq!(parsed.0.resource, "/chat");
        assert_eq!(parsed.0.host, "server.example.com");
        assert_eq!(parsed.0.protocols, vec!["chat", "superchat"]);
    }

    #[test]
    fn request_headers_that_could_inject_or_collide_are_refused() {
        for (name, value, want) in [
            ("X-A", "1\r\nX-B: 2", HeaderError::InvalidValue),
            ("X-A", "1\nX-B: 2", HeaderError::InvalidValue),
            ("X-A", "a\0b", HeaderError::InvalidValue),
            ("X-A", "a\x7fb", HeaderError::InvalidValue),
            ("X-A\r\nX-B", "1", HeaderError::InvalidName),
            ("X A", "1", HeaderError::InvalidName),
            ("X:A", "1", HeaderError::InvalidName),
            ("", "1", HeaderError::InvalidName),
            ("host", "evil", HeaderError::Reserved),
            ("Sec-WebSocket-Key", "x", HeaderError::Reserved),
            ("SEC-WEBSOCKET-PROTOCOL", "chat", HeaderError::Reserved),
            ("Connection", "close", HeaderError::Reserved),
            ("Content-Length", "5", HeaderError::Reserved),
        ] {
            assert_eq!(
                check_request_header(name, value),
                Err(want),
                "{name:?}: {value:?}"
            );
        }
        for (name, value) in [
            ("Authorization", "Basic dTpw"),
            ("Cookie", "a=1; b=2"),
            ("Origin", "https://example.com"),
            ("User-Agent", "airws/0.1\ttest"),
            ("X-Empty", ""),
            ("X-Utf8", "héllo"),
        ] {
            assert_eq!(check_request_header(name, value), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn an_accepted_response_keeps_its_status_and_headers() {
        let resp = response("Set-Cookie: session=1\r\n");
        let (acc, _) = parse_response(&resp, RFC_KEY, &[], 8192).unwrap().unwrap();
        assert_eq!(acc.status, 101);
        assert!(acc
            .headers
            .iter()
            .any(|(n, v)| n == "Set-Cookie" && v == "session=1"));
    }

    fn response(extra: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {RFC_ACCEPT}\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn response_checks() {
        let offered = vec!["chat".to_string()];
        let ok = response("Sec-WebSocket-Protocol: chat\r\n");
        let (acc, n) = parse_response(&ok, RFC_KEY, &offered, 8192)
            .unwrap()
            .unwrap();
        assert_eq!(n, ok.len());
        assert_eq!(acc.protocol.as_deref(), Some("chat"));
        for cut in 0..ok.len() {
            assert_eq!(
                parse_response(&ok[..cut], RFC_KEY, &offered, 8192),
                Ok(None)
            );
        }
        let bad = response("Sec-WebSocket-Protocol: other\r\n");
        assert!(matches!(
            parse_response(&bad, RFC_KEY, &offered, 8192),
            Err(ResponseError::UnofferedProtocol(_))
        ));
        assert_eq!(
            parse_response(&ok, "AAAAAAAAAAAAAAAAAAAAAA==", &offered, 8192),
            Err(ResponseError::BadAccept)
        );
        let ext = response("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        assert!(matches!(
            parse_response(&ext, RFC_KEY, &offered, 8192),
            Err(ResponseError::UnofferedExtension(_))
        ));
        let refused = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_response(refused, RFC_KEY, &offered, 8192),
            Err(ResponseError::Status {
                code: 403,
                reason: "Forbidden".into(),
                head_len: refused.len(),
                content_length: Some(0),
                location: None,
            })
        );
        assert_eq!(
            parse_response(&ok, RFC_KEY, &offered, 20),
            Err(ResponseError::TooLarge)
        );
    }

    #[test]
    fn response_header_names_and_tokens_are_case_insensitive() {
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, UPGRADE\r\n\
             sec-websocket-accept: {RFC_ACCEPT}\r\n\r\n"
        );
        let (acc, _) = parse_response(resp.as_bytes(), RFC_KEY, &[], 8192)
            .unwrap()
            .unwrap();
        assert_eq!(acc.protocol, None);
    }

    fn request(lines: &str) -> Vec<u8> {
        format!("GET /chat HTTP/1.1\r\n{lines}\r\n").into_bytes()
    }

    const GOOD: &str = "Host: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn request_checks() {
        let (req, _) = parse_request(&request(GOOD), 8192).unwrap().unwrap();
        assert_eq!(req.key, RFC_KEY);
        assert!(req.protocols.is_empty());

        let not_upgrade = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n";
        let err = parse_request(not_upgrade, 8192).unwrap_err();
        assert_eq!(err.status(), 400);
        match &err {
            RequestError::NotUpgrade {
                method,
                resource,
                headers,
            } => {
                assert_eq!((method.as_str(), resource.as_str()), ("GET", "/index.html"));
                assert_eq!(headers, &[("Host".to_owned(), "x".to_owned())]);
            }
            other => panic!("{other:?}"),
        }
        assert!(String::from_utf8(err.response())
            .unwrap()
            .starts_with("HTTP/1.1 400 Bad Request\r\n"));

        let v8 = request(&GOOD.replace("Version: 13", "Version: 8"));
        let err = parse_request(&v8, 8192).unwrap_err();
        assert_eq!(err, RequestError::Version);
        let text = String::from_utf8(err.response()).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 "));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));

        let short_key = request(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="));
        assert!(matches!(
            parse_request(&short_key, 8192),
            Err(RequestError::Invalid(_))
        ));
        let no_host = request(&GOOD.replace("Host: server.example.com\r\n", ""));
        assert!(matches!(
            parse_request(&no_host, 8192),
            Err(RequestError::Invalid(_))
        ));
        let no_conn = request(&GOOD.replace("Connection: Upgrade", "Connection: keep-alive"));
        assert!(matches!(
            parse_request(&no_conn, 8192),
            Err(RequestError::Invalid(_))
        ));
        let post = request(GOOD).iter().skip(3).copied().collect::<Vec<u8>>();
        let post = [b"POST".as_slice(), &post].concat();
        assert!(matches!(
            parse_request(&post, 8192),
            Err(RequestError::Invalid(_))
        ));
        let http10 = String::from_utf8(request(GOOD))
            .unwrap()
            .replace("HTTP/1.1", "HTTP/1.0");
        assert!(matches!(
            parse_request(http10.as_bytes(), 8192),
            Err(RequestError::Invalid(_))
        ));
        assert_eq!(
            parse_request(&request(GOOD), 30),
            Err(RequestError::TooLarge)
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n", 10),
            Err(RequestError::TooLarge)
        );
    }

    #[test]
    fn a_header_that_must_be_single_twice_is_a_400() {
        for (line, name) in [
            ("Host: evil.example\r\n", "Host"),
            (
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n",
                "Sec-WebSocket-Key",
            ),
            ("sec-websocket-version: 13\r\n", "Sec-WebSocket-Version"),
        ] {
            let err = parse_request(&request(&format!("{GOOD}{line}")), 8192).unwrap_err();
            assert_eq!(err.status(), 400, "{name}");
            let text = String::from_utf8(err.response()).unwrap();
            assert!(
                text.contains(&format!("more than one {name} header")),
                "{text}"
            );
            assert!(
                text.contains("X-Content-Type-Options: nosniff\r\n"),
                "{text}"
            );
        }
    }

    #[test]
    fn the_400_body_does_not_repeat_the_request() {
        let path = "/<script>alert(1)</script>";
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let err = parse_request(req.as_bytes(), 8192).unwrap_err();
        let text = String::from_utf8(err.response()).unwrap();
        assert!(!text.contains("script"), "{text}");
        assert!(
            text.contains("X-Content-Type-Options: nosniff\r\n"),
            "{text}"
        );
        assert!(
            text.ends_with("the request is not a WebSocket upgrade.\n"),
            "{text}"
        );
        // The error itself still names it, for the log.
        assert!(err.to_string().contains(path));
    }

    #[test]
    fn connection_is_a_token_list_and_names_are_case_insensitive() {
        let lines = "host: a\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n\
                     SEC-WEBSOCKET-KEY: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\
                     Sec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Protocol: c\r\n";
        let (req, _) = parse_request(&request(lines), 8192).unwrap().unwrap();
        assert_eq!(req.protocols, vec!["a", "b", "c"]);
    }

    #[test]
    fn accept_response_round_trips_through_the_client_check() {
        let resp = accept_response(RFC_KEY, Some("chat"));
        let (acc, n) = parse_response(&resp, RFC_KEY, &["chat".into()], 8192)
            .unwrap()
            .unwrap();
        assert_eq!(n, resp.len());
        assert_eq!(acc.protocol.as_deref(), Some("chat"));
    }
}
