//! The raw peer of the conformance tests, written from RFC 6455 without the
//! library's code: a frame encoder (`RawFrame` of tests/support: any opcode,
//! FIN and RSV bits, the three length forms, masked or not, a length that may
//! lie), a frame decoder with
//! a bounded wait, and the opening handshake done by hand on both sides.
//!
//! A [`Peer`] is one connection between the raw peer and the library. In
//! [`Role::Server`] the library is an echo server (a `ServerSocket` whose
//! accepted sockets go to `WebSocket::start_server`) and the raw peer is a
//! client that masks its frames; in [`Role::Client`] the library is a
//! `WebSocket` client that echoes every message, and the raw peer is a
//! server on a `TcpListener` that does not mask.
//!
//! permessage-deflate (RFC 7692): a peer opened with [`Peer::open_deflate`]
//! offers the extension (server role) or answers the library's offer
//! (client role) with the header values the test gives. When the 101 agrees
//! on it, the raw peer keeps a [`Codec`] of its own, `flate2` used directly
//! (raw deflate, a sync flush, the 4-byte tail removed): a compressor for
//! what it sends and an inflater for what the library sends, with the
//! agreed windows, each kept across messages unless its sender agreed to
//! no context takeover (then the library's messages are each inflated by a
//! fresh inflater). Where the library agreed to a window under 15 bits, a
//! reader of deflate blocks written here ([`farthest_match`]) checks that
//! no match of its messages reaches farther back than the window, which no
//! inflater setting can.

// Without the `deflate` feature the compression tests are not built, and
// the raw peer's side of permessage-deflate goes unused.
#![cfg_attr(not(feature = "deflate"), allow(dead_code))]

use airws::{
    Config, Event, EventDispatcher, IOErrorEvent, ServerSocket, ServerSocketConnectEvent,
    WebSocket, WebSocketEvent,
};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crate::support::{
    accept_key, header, RawFrame, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WAIT,
};

/// How soon the library, as the server, must close the TCP connection after
/// its close frame (it does so at once; it would take its whole
/// `close_timeout`, 5 s by default, if it waited for the client).
pub const SERVER_CLOSES_WITHIN: Duration = Duration::from_secs(2);
/// The largest HTTP head the raw peer reads.
const MAX_HEAD: usize = 16 << 10;

/// The role the library plays on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The library is the server; the raw peer is a client and masks.
    Server,
    /// The library is the client; the raw peer is a server and does not mask.
    Client,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Server => "server role",
            Role::Client => "client role",
        })
    }
}

// ---------------------------------------------------------------- random

static SEED: AtomicU64 = AtomicU64::new(0);

/// A random-ish number: masking keys and handshake keys need no secrecy here,
/// only variety.
pub fn random_u64() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    // splitmix64
    let mut z = nanos ^ n ^ 0xD1B5_4A32_D192_ED03;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------- encoder

/// How the raw peer masks a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Masking {
    /// As its role requires: a client masks with a fresh key, a server does not.
    Proper,
    /// The opposite of what its role requires (a protocol violation).
    Wrong,
}

/// A frame the raw peer sends.
#[derive(Clone, Debug)]
pub struct Frame {
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (RSV1 = 0b100).
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
    /// Written in the header instead of the payload's length (a lie).
    pub claim: Option<u64>,
    pub masking: Masking,
}

impl Frame {
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            fin: true,
            rsv: 0,
            opcode,
            payload: payload.into(),
            claim: None,
            masking: Masking::Proper,
        }
    }

    pub fn text(s: impl AsRef<[u8]>) -> Frame {
        Frame::new(OP_TEXT, s.as_ref())
    }

    pub fn binary(b: impl AsRef<[u8]>) -> Frame {
        Frame::new(OP_BINARY, b.as_ref())
    }

    pub fn cont(b: impl AsRef<[u8]>) -> Frame {
        Frame::new(OP_CONT, b.as_ref())
    }

    pub fn ping(b: impl AsRef<[u8]>) -> Frame {
        Frame::new(OP_PING, b.as_ref())
    }

    pub fn pong(b: impl AsRef<[u8]>) -> Frame {
        Frame::new(OP_PONG, b.as_ref())
    }

    /// A close frame with a code and a reason.
    pub fn close(code: u16, reason: impl AsRef<[u8]>) -> Frame {
        Frame::new(OP_CLOSE, close_payload(code, reason.as_ref()))
    }

    /// A close frame with any payload.
    pub fn close_raw(payload: impl AsRef<[u8]>) -> Frame {
        Frame::new(OP_CLOSE, payload.as_ref())
    }

    pub fn fin(mut self, fin: bool) -> Frame {
        self.fin = fin;
        self
    }

    /// Not the final fragment.
    pub fn more(self) -> Frame {
        self.fin(false)
    }

    pub fn rsv(mut self, rsv: u8) -> Frame {
        self.rsv = rsv;
        self
    }

    /// Claims `len` bytes of payload in the header, whatever follows.
    pub fn claim(mut self, len: u64) -> Frame {
        self.claim = Some(len);
        self
    }

    pub fn wrong_mask(mut self) -> Frame {
        self.masking = Masking::Wrong;
        self
    }
}

/// A close payload: the code in network order, then the reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// Encodes one frame (`RawFrame::build` of tests/support): the header with
/// the shortest length form for the (claimed) length, the masking key when
/// there is one, and the payload, masked with it.
pub fn encode(
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len_field: u64,
    payload: &[u8],
) -> Vec<u8> {
    RawFrame {
        fin,
        rsv,
        opcode,
        payload: payload.to_vec(),
        mask,
        claimed_len: Some(len_field),
    }
    .build()
}

/// XORs `data` with the masking key (RFC 6455 §5.3), from offset 0.
pub fn xor_mask(data: &mut [u8], key: [u8; 4]) {
    let word = u32::from_ne_bytes(key);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i];
    }
}

// ---------------------------------------------------------------- decoder

/// A frame read from the library.
#[derive(Clone, PartialEq, Eq)]
pub struct Got {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    /// Unmasked.
    pub payload: Vec<u8>,
}

impl Got {
    /// The code of a close frame; `None` when its payload is empty.
    pub fn close_code(&self) -> Option<u16> {
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl fmt::Debug for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Got {{ fin: {}, rsv: {}, opcode: {:#x}, len: {}, payload: {} }}",
            self.fin,
            self.rsv,
            self.opcode,
            self.payload.len(),
            preview(&self.payload)
        )
    }
}

/// The start of some bytes, for messages.
pub fn preview(b: &[u8]) -> String {
    let shown = &b[..b.len().min(40)];
    let more = if b.len() > shown.len() { "..." } else { "" };
    match std::str::from_utf8(shown) {
        Ok(s) => format!("{s:?}{more}"),
        Err(_) => format!("{shown:02x?}{more}"),
    }
}

/// Why a read ended without a frame.
#[derive(Debug)]
pub enum End {
    /// The library closed the TCP connection (FIN).
    Eof,
    /// The connection was reset or failed.
    Broken(io::Error),
    /// Nothing came within the wait.
    Timeout,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Eof => f.write_str("EOF (the library closed the TCP connection)"),
            End::Broken(e) => write!(f, "a broken connection ({e})"),
            End::Timeout => write!(f, "nothing within the wait"),
        }
    }
}

// ---------------------------------------------------------------- the library's side

/// What the library's application saw at a `close` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppClose {
    /// `close_reason` at the event.
    pub close_reason: i32,
    /// The refused upgrade the event carries (status and the text saying
    /// why), when the connection never opened.
    pub refusal: Option<(u16, String)>,
}

/// What the library's application saw: each `close` event, and the text
/// of each `ioError`.
struct App {
    closes: Receiver<AppClose>,
    io_errors: Arc<Mutex<Vec<String>>>,
    /// The library's `WebSocket`s, kept alive for the connection's lifetime
    /// (dropping the last handle would close it with 1001).
    sockets: Arc<Mutex<Vec<WebSocket>>>,
    _server: Option<ServerSocket>,
}

/// Adds the echo listeners: every message goes back with its own format
/// (through `e.target()`, as examples/echo_server.rs and
/// examples/autobahn_client.rs do), and each `close` reports `close_reason`.
fn install_echo(ws: &WebSocket, closes: Sender<AppClose>, io_errors: Arc<Mutex<Vec<String>>>) {
    ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
        if let Some(ws) = e.target::<WebSocket>() {
            let _ = ws.send_message(e.format(), e.data());
        }
    });
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        let close_reason = e.target::<WebSocket>().map_or(-1, |ws| ws.close_reason());
        let refusal = e
            .upgrade_refusal()
            .map(|r| (r.status(), r.body().to_owned()));
        let _ = closes.send(AppClose {
            close_reason,
            refusal,
        });
    });
    ws.add_event_listener(IOErrorEvent::IO_ERROR, move |e: &Event| {
        io_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.text().to_owned());
    });
}

// ---------------------------------------------------------------- the peer

/// One connection between the raw peer and the library.
pub struct Peer {
    pub role: Role,
    stream: TcpStream,
    inbuf: Vec<u8>,
    chunk: Vec<u8>,
    /// What the current check is about, for failure messages.
    case: String,
    app: App,
    /// The `Sec-WebSocket-Extensions` offer: the raw client's (server role,
    /// its header values joined with ", "), or the library's (client role).
    offer: Option<String>,
    /// The `Sec-WebSocket-Extensions` of the 101: the library's answer
    /// (server role), or the raw server's (client role, its header values
    /// joined with ", ").
    answer: Option<String>,
    /// permessage-deflate, when the 101 agreed on it.
    codec: Option<Codec>,
}

impl Peer {
    /// Opens a connection with the default configuration.
    pub fn open(role: Role) -> Peer {
        Peer::open_with(role, Config::default())
    }

    /// Opens a connection; `config` is the library's.
    pub fn open_with(role: Role, config: Config) -> Peer {
        Peer::open_ext(role, config, &[])
    }

    /// Opens a connection whose handshake carries `Sec-WebSocket-Extensions`
    /// headers, one per value in `ext`: in the server role the raw client's
    /// offer, in the client role the raw server's answer to whatever the
    /// library offered (no header when `ext` is empty). The 101's terms,
    /// when they are a permessage-deflate agreement the raw peer can read,
    /// set up its [`Codec`]; nothing is checked about the offer.
    pub fn open_ext(role: Role, config: Config, ext: &[&str]) -> Peer {
        match role {
            Role::Server => Peer::open_server_role(config, ext),
            Role::Client => Peer::open_client_role(config, ext),
        }
    }

    /// [`open_ext`](Self::open_ext) for a library configured with
    /// permessage-deflate: in the client role, the library's request must
    /// offer it, with `client_max_window_bits` (RFC 7692 §7.1.2.2: a
    /// client that can compress with any window the server asks for).
    pub fn open_deflate(role: Role, config: Config, ext: &[&str]) -> Peer {
        let p = Peer::open_ext(role, config, ext);
        if role == Role::Client {
            let offer = p.offer.clone().unwrap_or_default();
            let first = offer.split(',').next().map(parse_element);
            let ok = first.as_ref().is_some_and(|(name, params)| {
                name.eq_ignore_ascii_case("permessage-deflate")
                    && params
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("client_max_window_bits"))
            });
            assert!(
                ok,
                "[{role}] the library does not offer permessage-deflate with \
                 client_max_window_bits: {offer:?}"
            );
        }
        p
    }

    fn open_server_role(config: Config, ext: &[&str]) -> Peer {
        let (tx, closes) = mpsc::channel();
        let io_errors = Arc::new(Mutex::new(Vec::new()));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let server = ServerSocket::new();
        {
            let io_errors = io_errors.clone();
            let sockets = sockets.clone();
            server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
                let ws = WebSocket::with_config(config.clone());
                install_echo(&ws, tx.clone(), io_errors.clone());
                sockets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(ws.clone());
                ws.start_server(e.socket()).expect("start_server");
            });
        }
        server.bind(0, "127.0.0.1").expect("bind");
        server.listen().expect("listen");
        let addr = SocketAddr::from(([127, 0, 0, 1], server.local_port()));
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect to the library");
        let mut peer = Peer::new(
            Role::Server,
            stream,
            App {
                closes,
                io_errors,
                sockets,
                _server: Some(server),
            },
        );
        peer.client_handshake(addr, ext);
        peer
    }

    fn open_client_role(config: Config, ext: &[&str]) -> Peer {
        let (tx, closes) = mpsc::channel();
        let io_errors = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the raw server");
        let port = listener.local_addr().expect("local addr").port();
        let ws = WebSocket::with_config(config);
        install_echo(&ws, tx, io_errors.clone());
        ws.connect(&format!("ws://127.0.0.1:{port}/conformance"), &[])
            .expect("connect");
        let stream = accept_within(&listener, WAIT);
        let mut peer = Peer::new(
            Role::Client,
            stream,
            App {
                closes,
                io_errors,
                sockets: Arc::new(Mutex::new(vec![ws])),
                _server: None,
            },
        );
        peer.server_handshake(ext);
        peer
    }

    fn new(role: Role, stream: TcpStream, app: App) -> Peer {
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        stream.set_write_timeout(Some(WAIT)).expect("write timeout");
        Peer {
            role,
            stream,
            inbuf: Vec::new(),
            chunk: vec![0; 64 << 10],
            case: String::new(),
            app,
            offer: None,
            answer: None,
            codec: None,
        }
    }

    /// Names the current check in failure messages.
    pub fn case(&mut self, what: impl Into<String>) -> &mut Peer {
        self.case = what.into();
        self
    }

    fn ctx(&self) -> String {
        if self.case.is_empty() {
            format!("[{}]", self.role)
        } else {
            format!("[{}] {}", self.role, self.case)
        }
    }

    // ------------------------------------------------------------ handshakes

    /// The raw client's opening handshake: a request with a random key and
    /// a `Sec-WebSocket-Extensions` header for each of `ext`, then a check
    /// of the 101 and its `Sec-WebSocket-Accept`; its
    /// `Sec-WebSocket-Extensions` is kept as the answer.
    fn client_handshake(&mut self, addr: SocketAddr, ext: &[&str]) {
        let nonce: Vec<u8> = (0..2).flat_map(|_| random_u64().to_be_bytes()).collect();
        let key = BASE64.encode(nonce);
        let extensions: String = ext
            .iter()
            .map(|v| format!("Sec-WebSocket-Extensions: {v}\r\n"))
            .collect();
        let request = format!(
            "GET /conformance HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             {extensions}\r\n"
        );
        self.stream
            .write_all(request.as_bytes())
            .expect("write the upgrade request");
        let head = self.read_head();
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "the library did not answer 101: {head:?}"
        );
        let get = |name: &str| header(&head, name);
        assert_eq!(
            get("Sec-WebSocket-Accept"),
            Some(accept_key(&key).as_str()),
            "wrong Sec-WebSocket-Accept in {head:?}"
        );
        assert!(
            get("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
            "no Upgrade: websocket in {head:?}"
        );
        let answers = header_values(&head, "Sec-WebSocket-Extensions");
        assert!(
            answers.len() <= 1,
            "more than one Sec-WebSocket-Extensions in {head:?}"
        );
        self.offer = (!ext.is_empty()).then(|| ext.join(", "));
        self.answer = answers.first().map(|v| v.to_string());
        if let Some(answer) = &self.answer {
            let terms = Terms::parse(answer).unwrap_or_else(|| {
                panic!("[{}] the library's 101 agrees on {answer:?}", self.role)
            });
            self.codec = Some(Codec::new(terms.directions(Role::Server, None)));
        }
    }

    /// The raw server's opening handshake: reads the request head until the
    /// blank line (the library's `Sec-WebSocket-Extensions` kept as the
    /// offer), answers 101 with the accept key and a
    /// `Sec-WebSocket-Extensions` header for each of `ext`.
    fn server_handshake(&mut self, ext: &[&str]) {
        let head = self.read_head();
        assert!(
            head.starts_with("GET /conformance HTTP/1.1"),
            "unexpected request line in {head:?}"
        );
        let get = |name: &str| header(&head, name);
        assert_eq!(get("Sec-WebSocket-Version"), Some("13"), "{head:?}");
        assert!(
            get("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
            "{head:?}"
        );
        let key = get("Sec-WebSocket-Key").expect("no Sec-WebSocket-Key");
        let offers = header_values(&head, "Sec-WebSocket-Extensions");
        let extensions: String = ext
            .iter()
            .map(|v| format!("Sec-WebSocket-Extensions: {v}\r\n"))
            .collect();
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n{extensions}\r\n",
            accept_key(key)
        );
        self.offer = (!offers.is_empty()).then(|| offers.join(", "));
        self.answer = (!ext.is_empty()).then(|| ext.join(", "));
        // Only an answer of one valid element agrees on anything (the
        // library must refuse the others).
        let offered = self.offer.as_deref().and_then(Terms::parse);
        if let (true, Some(terms)) = (
            ext.len() == 1,
            self.answer.as_deref().and_then(Terms::parse),
        ) {
            self.codec = Some(Codec::new(terms.directions(Role::Client, offered)));
        }
        self.stream
            .write_all(response.as_bytes())
            .expect("write the 101 response");
    }

    /// Reads an HTTP head up to its blank line; what follows stays buffered.
    fn read_head(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(pos) = self.inbuf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.inbuf.drain(..pos + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            assert!(self.inbuf.len() < MAX_HEAD, "HTTP head too large");
            let want = self.inbuf.len() + 1;
            if let Err(e) = self.fill(want, deadline) {
                panic!("reading the HTTP head failed: {e}");
            }
        }
    }

    // ------------------------------------------------------------ writing

    /// The bytes of a frame as this peer sends it: masked with a fresh key
    /// when it is the client (unless the frame asks for the wrong masking).
    pub fn encode(&self, f: &Frame) -> Vec<u8> {
        let should_mask = self.role == Role::Server;
        let mask = match (should_mask, f.masking) {
            (true, Masking::Proper) | (false, Masking::Wrong) => {
                let mut key = (random_u64() as u32).to_be_bytes();
                if key == [0; 4] {
                    key = [0x5A, 0xA5, 0x3C, 0xC3];
                }
                Some(key)
            }
            _ => None,
        };
        let len = f.claim.unwrap_or(f.payload.len() as u64);
        encode(f.fin, f.rsv, f.opcode, mask, len, &f.payload)
    }

    /// Encodes the frames back to back.
    pub fn encode_all(&self, frames: &[Frame]) -> Vec<u8> {
        frames.iter().flat_map(|f| self.encode(f)).collect()
    }

    /// Sends one frame.
    pub fn send(&mut self, f: Frame) {
        let bytes = self.encode(&f);
        self.write(&bytes);
    }

    /// Sends the frames in one TCP write.
    pub fn send_all(&mut self, frames: &[Frame]) {
        let bytes = self.encode_all(frames);
        self.write(&bytes);
    }

    /// Sends each frame in its own write, with a short pause between them.
    pub fn send_slowly(&mut self, frames: &[Frame], pause: Duration) {
        for f in frames {
            self.send(f.clone());
            thread::sleep(pause);
        }
    }

    /// Sends the frames in writes of `size` bytes.
    pub fn send_chunked(&mut self, frames: &[Frame], size: usize) {
        let bytes = self.encode_all(frames);
        for c in bytes.chunks(size.max(1)) {
            self.write(c);
        }
    }

    pub fn text(&mut self, s: impl AsRef<[u8]>) {
        self.send(Frame::text(s));
    }

    pub fn binary(&mut self, b: impl AsRef<[u8]>) {
        self.send(Frame::binary(b));
    }

    /// Writes raw bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            panic!("{}: raw peer write failed: {e}", self.ctx());
        }
    }

    /// Writes raw bytes, without failing the test when the library has
    /// already gone.
    pub fn try_write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `bytes` from another thread while `read` runs here, so that
    /// neither side can block the other on full socket buffers.
    pub fn write_while<R>(&mut self, bytes: Vec<u8>, read: impl FnOnce(&mut Peer) -> R) -> R {
        let mut writer = self.stream.try_clone().expect("clone the raw socket");
        thread::scope(|s| {
            let w = s.spawn(move || writer.write_all(&bytes));
            let r = read(self);
            match w.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("{}: raw peer write failed: {e}", self.ctx()),
                Err(_) => panic!("{}: the writer thread panicked", self.ctx()),
            }
            r
        })
    }

    /// Half-closes: a TCP FIN from the raw peer.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    // ------------------------------------------------------------ reading

    /// Makes `inbuf` hold at least `n` bytes, reading until `deadline`.
    fn fill(&mut self, n: usize, deadline: Instant) -> Result<(), End> {
        while self.inbuf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(End::Timeout);
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("set_read_timeout");
            match self.stream.read(&mut self.chunk) {
                Ok(0) => return Err(End::Eof),
                Ok(k) => self.inbuf.extend_from_slice(&self.chunk[..k]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(End::Timeout)
                }
                Err(e) => return Err(End::Broken(e)),
            }
        }
        Ok(())
    }

    /// Reads one frame from the library within `wait`. Checks what every
    /// frame from the library must satisfy: no RSV bits (but RSV1 on the
    /// first frame of a data message once permessage-deflate is agreed: a
    /// data frame that is not a continuation), masked exactly when the
    /// library is the client, the shortest length form.
    pub fn read_frame_within(&mut self, wait: Duration) -> Result<Got, End> {
        let deadline = Instant::now() + wait;
        self.fill(2, deadline)?;
        let b0 = self.inbuf[0];
        let b1 = self.inbuf[1];
        let masked = b1 & 0x80 != 0;
        let (len, mut pos) = match b1 & 0x7F {
            126 => {
                self.fill_in_frame(4, deadline)?;
                let len = u64::from(u16::from_be_bytes([self.inbuf[2], self.inbuf[3]]));
                assert!(
                    len >= 126,
                    "{}: non-minimal 16-bit length {len}",
                    self.ctx()
                );
                (len, 4)
            }
            127 => {
                self.fill_in_frame(10, deadline)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.inbuf[2..10]);
                let len = u64::from_be_bytes(b);
                assert!(
                    len > 0xFFFF && len >> 63 == 0,
                    "{}: bad 64-bit length {len:#x}",
                    self.ctx()
                );
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let key = if masked {
            self.fill_in_frame(pos + 4, deadline)?;
            let k = [
                self.inbuf[pos],
                self.inbuf[pos + 1],
                self.inbuf[pos + 2],
                self.inbuf[pos + 3],
            ];
            pos += 4;
            Some(k)
        } else {
            None
        };
        let len = usize::try_from(len).expect("frame length fits in memory");
        self.fill_in_frame(pos + len, deadline)?;
        let mut payload: Vec<u8> = self.inbuf[pos..pos + len].to_vec();
        self.inbuf.drain(..pos + len);
        if let Some(k) = key {
            xor_mask(&mut payload, k);
        }
        let got = Got {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode: b0 & 0xF,
            payload,
        };
        assert_eq!(
            masked,
            self.role == Role::Client,
            "{}: a frame from the library {} masked: {got:?}",
            self.ctx(),
            if masked { "is" } else { "is not" }
        );
        let allowed = match got.opcode {
            OP_TEXT | OP_BINARY if self.codec.is_some() => RSV1,
            _ => 0,
        };
        assert_eq!(
            got.rsv & !allowed,
            0,
            "{}: RSV bits from the library{}: {got:?}",
            self.ctx(),
            if self.codec.is_some() {
                " (permessage-deflate allows RSV1 on a message's first frame only)"
            } else {
                ""
            }
        );
        Ok(got)
    }

    /// Like `fill`, once a frame has begun: EOF there is a truncated frame.
    fn fill_in_frame(&mut self, n: usize, deadline: Instant) -> Result<(), End> {
        match self.fill(n, deadline) {
            Err(End::Eof) => panic!(
                "{}: the library closed the connection inside a frame ({} of {n} bytes)",
                self.ctx(),
                self.inbuf.len()
            ),
            other => other,
        }
    }

    /// Reads the next frame; fails the test on EOF or after `WAIT`.
    pub fn recv(&mut self) -> Got {
        match self.read_frame_within(WAIT) {
            Ok(f) => f,
            Err(e) => panic!(
                "{}: expected a frame from the library, got {e:?}",
                self.ctx()
            ),
        }
    }

    /// The next message from the library: a control frame on its own, or a
    /// data frame and its continuations up to the final one (a frame that
    /// is neither ends the message there, for the caller to find wrong).
    /// A compressed message (RSV1 on its first frame) is inflated by the
    /// raw peer's [`Codec`].
    pub fn recv_message(&mut self) -> Message {
        let first = self.recv();
        let mut m = Message {
            opcode: first.opcode,
            fin: first.fin,
            compressed: first.rsv & RSV1 != 0,
            frames: 1,
            wire_len: first.payload.len(),
            data: first.payload,
        };
        while !m.fin && (m.opcode == OP_TEXT || m.opcode == OP_BINARY) {
            let next = self.recv();
            assert_eq!(
                next.opcode,
                OP_CONT,
                "{}: expected a continuation of a fragmented message, got {next:?}",
                self.ctx()
            );
            assert!(m.frames < 100_000, "{}: too many fragments", self.ctx());
            m.frames += 1;
            m.wire_len += next.payload.len();
            m.data.extend_from_slice(&next.payload);
            m.fin = next.fin;
        }
        if m.compressed {
            // Compressed data ends with an empty stored block of which only
            // the 4-byte tail is removed (RFC 7692 §7.2.1): at least the
            // byte that begins it stays. A receiver that puts the tail back
            // after nothing (§7.2.2) is left inside a stored block's
            // header, and misreads what follows.
            assert!(
                m.wire_len > 0,
                "{}: the library sent a compressed message (RSV1, opcode {:#x}) with an \
                 empty payload; with 00 00 ff ff appended it is not a complete deflate \
                 block, and an inflater that keeps its context misreads the next message",
                self.ctx(),
                m.opcode
            );
            let ctx = self.ctx();
            let codec = self
                .codec
                .as_mut()
                .expect("RSV1 is checked in read_frame_within");
            m.data = codec.inflate(&m.data).unwrap_or_else(|e| {
                panic!(
                    "{ctx}: the library's compressed message (opcode {:#x}, {} bytes in {} \
                     frame(s)) does not inflate with {:?}: {e}",
                    m.opcode, m.wire_len, m.frames, codec.library
                )
            });
        }
        m
    }

    /// The next message must have `opcode` and `payload`: one final frame,
    /// or (a message longer than the library's fragment size) a first
    /// frame and continuation frames, the last of them final; inflated when
    /// it is compressed.
    pub fn expect(&mut self, opcode: u8, payload: &[u8]) {
        let got = self.recv_message();
        let ok = got.fin && got.opcode == opcode && got.data == payload;
        assert!(
            ok,
            "{}: expected a message with opcode {opcode:#x} and {} bytes {}, got {got:?}",
            self.ctx(),
            payload.len(),
            preview(payload)
        );
    }

    pub fn expect_text(&mut self, s: impl AsRef<[u8]>) {
        self.expect(OP_TEXT, s.as_ref());
    }

    pub fn expect_binary(&mut self, b: impl AsRef<[u8]>) {
        self.expect(OP_BINARY, b.as_ref());
    }

    pub fn expect_pong(&mut self, b: impl AsRef<[u8]>) {
        self.expect(OP_PONG, b.as_ref());
    }

    /// The next frame must be a close frame; returns its code. Checks that
    /// its payload is a valid close payload.
    pub fn expect_close_frame(&mut self) -> Option<u16> {
        let got = self.recv();
        assert!(
            got.fin && got.opcode == OP_CLOSE,
            "{}: expected a close frame, got {got:?}",
            self.ctx()
        );
        assert!(
            got.payload.len() != 1 && got.payload.len() <= 125,
            "{}: invalid close payload from the library: {got:?}",
            self.ctx()
        );
        if got.payload.len() >= 2 {
            assert!(
                std::str::from_utf8(&got.payload[2..]).is_ok(),
                "{}: close reason from the library is not UTF-8: {got:?}",
                self.ctx()
            );
        }
        got.close_code()
    }

    /// Nothing may arrive for `wait`, and the connection must stay open.
    pub fn expect_silence(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        let want = self.inbuf.len() + 1;
        match self.fill(want, deadline) {
            Err(End::Timeout) => {}
            Err(e) => panic!(
                "{}: expected the connection to stay open and quiet, got {e}",
                self.ctx()
            ),
            Ok(()) => {
                let f = self.read_frame_within(WAIT);
                panic!("{}: expected silence, got {f:?}", self.ctx());
            }
        }
    }

    /// The library must close the TCP connection (EOF or reset) within
    /// `WAIT`, with nothing more sent. Returns how long it took.
    pub fn expect_eof(&mut self) -> Duration {
        self.expect_eof_within(WAIT)
    }

    /// The library, as the server, must close the TCP connection first:
    /// right after its close frame, well before its `close_timeout` (5 s by
    /// default) would make it give up waiting for the client.
    pub fn expect_server_closes_first(&mut self) -> Duration {
        self.expect_eof_within(SERVER_CLOSES_WITHIN)
    }

    /// The library must close the TCP connection within `wait`.
    pub fn expect_eof_within(&mut self, wait: Duration) -> Duration {
        let start = Instant::now();
        let want = self.inbuf.len() + 1;
        match self.fill(want, start + wait) {
            Err(End::Eof) | Err(End::Broken(_)) if self.inbuf.is_empty() => start.elapsed(),
            Err(End::Timeout) => panic!(
                "{}: the library did not close the TCP connection within {wait:?}",
                self.ctx()
            ),
            _ => {
                let f = self.read_frame_within(Duration::from_millis(100));
                panic!(
                    "{}: expected the TCP connection to end, got more data: {f:?}",
                    self.ctx()
                );
            }
        }
    }

    // ------------------------------------------------------------ the application

    /// The `close` event the library's application saw, which must come
    /// within `WAIT`; no `ioError` may have come.
    pub fn app_close(&mut self) -> AppClose {
        let close = match self.app.closes.recv_timeout(WAIT) {
            Ok(c) => c,
            Err(e) => panic!(
                "{}: the library dispatched no close event within {WAIT:?} ({e})",
                self.ctx()
            ),
        };
        let errors = self
            .app
            .io_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        assert!(
            errors.is_empty(),
            "{}: unexpected ioError events: {errors:?}",
            self.ctx()
        );
        close
    }

    /// The `close_reason` the library's application saw at its `close`
    /// event, which must come within `WAIT`; no `ioError` may have come.
    pub fn app_close_reason(&mut self) -> i32 {
        self.app_close().close_reason
    }

    /// What the library's `WebSocket::extensions()` reports (once the
    /// connection is open: after the first echo, say).
    pub fn library_extensions(&self) -> String {
        let sockets = self.app.sockets.lock().unwrap_or_else(|p| p.into_inner());
        let ws = sockets
            .first()
            .unwrap_or_else(|| panic!("{}: the library has no WebSocket", self.ctx()));
        ws.extensions()
    }

    // ------------------------------------------------------------ closing

    /// The library must fail the connection with `code`: the next frame is
    /// its close frame with that code; then the TCP connection ends the way
    /// the library's role requires, and the application sees `code` as its
    /// `close_reason`.
    ///
    /// Server role: the library closes TCP first, right after its close
    /// frame, without waiting for the raw client (which neither answers nor
    /// closes before it sees EOF). Client role: the library waits for the
    /// server; the raw server answers the close and closes its side, and the
    /// library then closes the connection.
    pub fn expect_fail(&mut self, code: u16) {
        let got = self.expect_close_frame();
        assert_eq!(
            got,
            Some(code),
            "{}: expected the library to fail the connection with {code}",
            self.ctx()
        );
        self.finish_after_library_close(code);
        let reason = self.app_close_reason();
        assert_eq!(
            reason,
            i32::from(code),
            "{}: close_reason seen by the application",
            self.ctx()
        );
    }

    /// After the library sent a close frame (its own, or its answer to ours):
    /// the end of the TCP connection, as the role requires.
    fn finish_after_library_close(&mut self, code: u16) {
        match self.role {
            Role::Server => {
                self.expect_server_closes_first();
                let _ = self.stream.shutdown(Shutdown::Both);
            }
            Role::Client => {
                let answer = self.encode(&Frame::close(code, b""));
                let _ = self.try_write(&answer);
                self.shutdown_write();
                self.expect_eof();
                let _ = self.stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// The raw peer closes with `frame`; the library must answer with a close
    /// frame carrying `reply` (None: an empty payload), then the connection
    /// ends as the role requires; the application sees `reason`.
    pub fn close_handshake(&mut self, frame: Frame, reply: Option<u16>, reason: i32) {
        self.send(frame);
        self.expect_close_reply(reply);
        self.finish_peer_close();
        let seen = self.app_close_reason();
        assert_eq!(
            seen,
            reason,
            "{}: close_reason seen by the application",
            self.ctx()
        );
    }

    /// The next frame must be the library's close reply: `reply` as its code
    /// (None: an empty payload), and no reason.
    pub fn expect_close_reply(&mut self, reply: Option<u16>) {
        let got = self.recv();
        assert!(
            got.fin && got.opcode == OP_CLOSE,
            "{}: expected the close reply, got {got:?}",
            self.ctx()
        );
        let want = reply.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
        assert_eq!(
            got.payload,
            want,
            "{}: the close reply should carry {reply:?}",
            self.ctx()
        );
    }

    /// After the library answered our close: the server closes TCP first;
    /// the client waits for the raw server to close it.
    pub fn finish_peer_close(&mut self) {
        match self.role {
            Role::Server => {
                self.expect_server_closes_first();
                let _ = self.stream.shutdown(Shutdown::Both);
            }
            Role::Client => {
                self.shutdown_write();
                self.expect_eof();
                let _ = self.stream.shutdown(Shutdown::Both);
            }
        }
    }
}

// ---------------------------------------------------------------- permessage-deflate

/// RSV1, as the low three bits of [`Frame::rsv`] and [`Got::rsv`] hold it:
/// the "compressed" bit of permessage-deflate (RFC 7692 §6).
pub const RSV1: u8 = 0b100;
/// What a sync flush ends with, removed from each compressed message and
/// put back before inflating it (RFC 7692 §7.2.1, §7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];
/// The most the raw peer inflates of one message from the library.
const MAX_INFLATED: usize = 64 << 20;

/// A message read from the library.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub opcode: u8,
    /// Its last frame was final.
    pub fin: bool,
    /// RSV1 was set on its first frame.
    pub compressed: bool,
    pub frames: usize,
    /// Its payload bytes on the wire, all frames together.
    pub wire_len: usize,
    /// Its payload, inflated when it was compressed.
    pub data: Vec<u8>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Message {{ opcode: {:#x}, fin: {}, compressed: {}, frames: {}, wire_len: {}, \
             len: {}, data: {} }}",
            self.opcode,
            self.fin,
            self.compressed,
            self.frames,
            self.wire_len,
            self.data.len(),
            preview(&self.data)
        )
    }
}

/// One direction of permessage-deflate: the largest window its sender may
/// compress with, and whether it resets its compressor after each message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Direction {
    pub window_bits: u8,
    pub no_context_takeover: bool,
}

/// Both directions, seen from the raw peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Directions {
    /// What the raw peer sends.
    pub peer: Direction,
    /// What the library sends.
    pub library: Direction,
}

/// The parameters of one permessage-deflate element (RFC 7692 §7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Terms {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    /// `Some(None)`: named without a value (which only an offer may do).
    pub client_max_window_bits: Option<Option<u8>>,
}

impl Terms {
    /// One `permessage-deflate` element whose parameters are the RFC's,
    /// each at most once, with windows of 8 to 15 bits; `None` for anything
    /// else (a list of several elements too).
    pub fn parse(value: &str) -> Option<Terms> {
        if value.contains(',') {
            return None;
        }
        let (name, params) = parse_element(value);
        if !name.eq_ignore_ascii_case("permessage-deflate") {
            return None;
        }
        let bits = |v: &str| {
            let ok = !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit());
            v.parse::<u8>().ok().filter(|b| ok && (8..=15).contains(b))
        };
        let mut t = Terms::default();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in &params {
            let name = name.to_ascii_lowercase();
            if seen.contains(&name) {
                return None;
            }
            match (name.as_str(), value.as_deref()) {
                ("server_no_context_takeover", None) => t.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => t.client_no_context_takeover = true,
                ("server_max_window_bits", Some(v)) => t.server_max_window_bits = Some(bits(v)?),
                ("client_max_window_bits", None) => t.client_max_window_bits = Some(None),
                ("client_max_window_bits", Some(v)) => {
                    t.client_max_window_bits = Some(Some(bits(v)?))
                }
                _ => return None,
            }
            seen.push(name);
        }
        Some(t)
    }

    /// The directions these terms (the 101's) set for the raw peer opposite
    /// the library in `role`. In the client role the library's own offer
    /// binds the library too: a window it offered, a reset it announced.
    pub fn directions(&self, role: Role, offered: Option<Terms>) -> Directions {
        let server = Direction {
            window_bits: self.server_max_window_bits.unwrap_or(15),
            no_context_takeover: self.server_no_context_takeover,
        };
        let mut client = Direction {
            window_bits: self.client_max_window_bits.flatten().unwrap_or(15),
            no_context_takeover: self.client_no_context_takeover,
        };
        if let Some(offer) = offered {
            if let Some(Some(bits)) = offer.client_max_window_bits {
                client.window_bits = client.window_bits.min(bits);
            }
            client.no_context_takeover |= offer.client_no_context_takeover;
        }
        match role {
            Role::Server => Directions {
                peer: client,
                library: server,
            },
            Role::Client => Directions {
                peer: server,
                library: client,
            },
        }
    }
}

/// An extension element's name and parameters (values unquoted), read
/// loosely: `name; p; q=v`.
pub fn parse_element(element: &str) -> (String, Vec<(String, Option<String>)>) {
    let mut parts = element.split(';');
    let name = parts.next().unwrap_or_default().trim().to_owned();
    let params = parts
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (
                k.trim().to_owned(),
                Some(v.trim().trim_matches('"').to_owned()),
            ),
            None => (p.trim().to_owned(), None),
        })
        .collect();
    (name, params)
}

/// Every value of the header `name` in an HTTP head, in order.
pub fn header_values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// A raw deflate compressor with a window of `window_bits` (9 to 15).
pub fn compressor(window_bits: u8, level: Compression) -> Compress {
    Compress::new_with_window_bits(level, false, window_bits)
}

/// A raw deflate inflater for a sender's window of `window_bits` (a window
/// of 8 is inflated with 9, which decodes anything made with 8).
pub fn inflater(window_bits: u8) -> Decompress {
    Decompress::new_with_window_bits(false, window_bits.max(9))
}

/// Runs `data` through `c`, ending with `flush`; returns what came out
/// (after a sync flush: all of it, ending with [`TAIL`]).
pub fn deflate_with(c: &mut Compress, data: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let start = c.total_in();
    loop {
        let done = (c.total_in() - start) as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(4096));
        }
        let status = c
            .compress_vec(&data[done..], &mut out, flush)
            .expect("the raw peer's compressor failed");
        let done = (c.total_in() - start) as usize;
        if status == Status::StreamEnd || (done == data.len() && out.len() < out.capacity()) {
            return out;
        }
    }
}

/// Inflates one message: `payload` with [`TAIL`] put back. Returns its
/// bytes and whether the deflate stream ended in it (a final block, after
/// which the sender starts a new stream).
pub fn inflate_message(d: &mut Decompress, payload: &[u8]) -> Result<(Vec<u8>, bool), String> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(payload.len() * 4 + 64);
    let mut buf = vec![0u8; 64 << 10];
    let start = d.total_in();
    loop {
        let done = (d.total_in() - start) as usize;
        let out_before = d.total_out();
        let status = d
            .decompress(&input[done..], &mut buf, FlushDecompress::Sync)
            .map_err(|e| format!("invalid deflate data after {done} bytes: {e}"))?;
        let produced = (d.total_out() - out_before) as usize;
        out.extend_from_slice(&buf[..produced]);
        if out.len() > MAX_INFLATED {
            return Err(format!("inflates beyond {MAX_INFLATED} bytes"));
        }
        let now = (d.total_in() - start) as usize;
        if status == Status::StreamEnd {
            return Ok((out, true));
        }
        if now == input.len() && produced < buf.len() {
            return Ok((out, false));
        }
        if now == done && produced == 0 {
            return Err(format!("the inflater is stuck after {done} bytes"));
        }
    }
}

// ------------------------------------------------ the farthest match

/// How far back the matches of a compressed message reach, and how many
/// bytes it inflates to: its deflate blocks (RFC 1951 §3.2) read, with
/// [`TAIL`] put back, but not inflated. A sender that keeps to a window of
/// 2^bits never reaches farther back than 2^bits bytes (RFC 7692
/// §7.1.2.1).
///
/// The raw peer's inflater cannot tell: zlib-rs keeps 32 KiB of history
/// whatever window it is given, and zlib counts what one call has output
/// as history too.
pub fn farthest_match(payload: &[u8]) -> Result<Reach, String> {
    let mut data = payload.to_vec();
    data.extend_from_slice(&TAIL);
    let mut r = BitReader { data: &data, at: 0 };
    let mut reach = Reach::default();
    // The message's blocks, each starting where the one before ended; the
    // last is the empty stored block that the tail completes.
    while r.at < data.len() * 8 {
        let last = r.bits(1)? == 1;
        match r.bits(2)? {
            0 => {
                r.at = r.at.div_ceil(8) * 8;
                let len = r.bits(16)?;
                let nlen = r.bits(16)?;
                if len != !nlen & 0xFFFF {
                    return Err(format!("a stored block with LEN {len:#x}, NLEN {nlen:#x}"));
                }
                r.at += 8 * len as usize;
                reach.len += len as usize;
                if r.at > data.len() * 8 {
                    return Err("a stored block past the end".to_owned());
                }
            }
            1 => {
                let mut lengths = [8u8; 288];
                lengths[144..256].fill(9);
                lengths[256..280].fill(7);
                let lit = Huffman::new(&lengths)?;
                let dist = Huffman::new(&[5; 30])?;
                r.codes(&lit, &dist, &mut reach)?;
            }
            2 => {
                let (lit, dist) = r.dynamic_tables()?;
                r.codes(&lit, &dist, &mut reach)?;
            }
            _ => return Err("a block of the reserved type 11".to_owned()),
        }
        if last {
            break;
        }
    }
    Ok(reach)
}

/// What [`farthest_match`] finds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// The farthest any match reaches back, in bytes (0: no match).
    pub farthest: usize,
    /// How many bytes the blocks make.
    pub len: usize,
}

/// Base lengths and extra bits of the length symbols 257..=285.
const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Base distances and extra bits of the distance symbols 0..=29.
const DISTANCE_BASE: [u32; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DISTANCE_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order in which a dynamic block gives the code lengths' lengths.
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// A canonical Huffman code (RFC 1951 §3.2.2): how many codes of each
/// length, and the symbols in code order.
struct Huffman {
    count: [u16; 16],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Huffman, String> {
        let mut count = [0u16; 16];
        for &l in lengths {
            count[usize::from(l)] += 1;
        }
        count[0] = 0;
        // No length may have more codes than it has room for.
        let mut room: i32 = 1;
        for &c in &count[1..] {
            room = room * 2 - i32::from(c);
            if room < 0 {
                return Err("an oversubscribed Huffman code".to_owned());
            }
        }
        let mut offsets = [0u16; 16];
        for len in 1..15 {
            offsets[len + 1] = offsets[len] + count[len];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (symbol, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbols[usize::from(offsets[usize::from(l)])] = symbol as u16;
                offsets[usize::from(l)] += 1;
            }
        }
        Ok(Huffman { count, symbols })
    }
}

/// Reads bits from the least significant bit of each byte up.
struct BitReader<'a> {
    data: &'a [u8],
    /// In bits.
    at: usize,
}

impl BitReader<'_> {
    fn bits(&mut self, n: u32) -> Result<u32, String> {
        let mut v = 0;
        for i in 0..n {
            let byte = self
                .data
                .get(self.at / 8)
                .ok_or("the blocks end before the message does")?;
            v |= u32::from((byte >> (self.at % 8)) & 1) << i;
            self.at += 1;
        }
        Ok(v)
    }

    /// One symbol: its code read a bit at a time, first bit first.
    fn decode(&mut self, h: &Huffman) -> Result<u16, String> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= self.bits(1)? as i32;
            let count = i32::from(h.count[len]);
            if code - count < first {
                return Ok(h.symbols[(index + code - first) as usize]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err("a code that is not in its Huffman table".to_owned())
    }

    /// A dynamic block's two codes (RFC 1951 §3.2.7).
    fn dynamic_tables(&mut self) -> Result<(Huffman, Huffman), String> {
        let hlit = self.bits(5)? as usize + 257;
        let hdist = self.bits(5)? as usize + 1;
        let hclen = self.bits(4)? as usize + 4;
        let mut cl = [0u8; 19];
        for &i in &CODE_LENGTH_ORDER[..hclen] {
            cl[i] = self.bits(3)? as u8;
        }
        let cl = Huffman::new(&cl)?;
        let mut lengths = Vec::with_capacity(hlit + hdist);
        while lengths.len() < hlit + hdist {
            let (value, times) = match self.decode(&cl)? {
                s @ 0..=15 => (s as u8, 1),
                16 => {
                    let prev = *lengths.last().ok_or("a repeat with nothing before it")?;
                    (prev, 3 + self.bits(2)?)
                }
                17 => (0, 3 + self.bits(3)?),
                _ => (0, 11 + self.bits(7)?),
            };
            lengths.extend(std::iter::repeat_n(value, times as usize));
        }
        if lengths.len() != hlit + hdist {
            return Err("code lengths that overrun their count".to_owned());
        }
        Ok((
            Huffman::new(&lengths[..hlit])?,
            Huffman::new(&lengths[hlit..])?,
        ))
    }

    /// A block's literals and matches up to its end, counted in `reach`.
    fn codes(&mut self, lit: &Huffman, dist: &Huffman, reach: &mut Reach) -> Result<(), String> {
        loop {
            let symbol = usize::from(self.decode(lit)?);
            match symbol {
                0..=255 => reach.len += 1,
                256 => return Ok(()),
                257..=285 => {
                    let i = symbol - 257;
                    let length = u32::from(LENGTH_BASE[i]) + self.bits(LENGTH_EXTRA[i].into())?;
                    let d = usize::from(self.decode(dist)?);
                    if d >= 30 {
                        return Err(format!("the distance symbol {d}"));
                    }
                    let distance = DISTANCE_BASE[d] + self.bits(DISTANCE_EXTRA[d].into())?;
                    reach.farthest = reach.farthest.max(distance as usize);
                    reach.len += length as usize;
                }
                _ => return Err(format!("the length symbol {symbol}")),
            }
        }
    }
}

/// The raw peer's side of permessage-deflate: its compressor, for the
/// messages it sends, and its inflater, for the library's, each with the
/// agreed window and kept across messages unless its direction resets.
pub struct Codec {
    pub peer: Direction,
    pub library: Direction,
    compressor: Compress,
    inflater: Decompress,
}

impl Codec {
    pub fn new(d: Directions) -> Codec {
        Codec {
            peer: d.peer,
            library: d.library,
            compressor: compressor(d.peer.window_bits.max(9), Compression::fast()),
            inflater: inflater(d.library.window_bits),
        }
    }

    /// `data` compressed as one message (its payload, sent with RSV1).
    pub fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        let mut pieces = self.compress_pieces(data, data.len().max(1));
        assert_eq!(pieces.len(), 1);
        pieces.pop().unwrap_or_default()
    }

    /// `data` compressed as one message the way a streaming sender does it:
    /// each `piece` bytes of it compressed with a sync flush of its own,
    /// one frame's payload each; only the last piece loses its [`TAIL`].
    pub fn compress_pieces(&mut self, data: &[u8], piece: usize) -> Vec<Vec<u8>> {
        assert!(
            self.peer.window_bits >= 9,
            "the raw peer cannot compress with a window of {} bits",
            self.peer.window_bits
        );
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[]]
        } else {
            data.chunks(piece.max(1)).collect()
        };
        let mut out: Vec<Vec<u8>> = chunks
            .iter()
            .map(|c| {
                let z = deflate_with(&mut self.compressor, c, FlushCompress::Sync);
                if z.is_empty() {
                    // zlib refuses a second sync flush in a row with no
                    // input in between: nothing came out, and the stream
                    // is byte-aligned. An empty stored block says the same.
                    vec![0x00, 0x00, 0x00, 0xFF, 0xFF]
                } else {
                    z
                }
            })
            .collect();
        let last = out.last_mut().expect("at least one piece");
        assert!(last.ends_with(&TAIL), "a sync flush ends with 00 00 ff ff");
        last.truncate(last.len() - TAIL.len());
        if self.peer.no_context_takeover {
            self.compressor.reset();
        }
        out
    }

    /// Inflates one of the library's messages: with a fresh inflater when
    /// the library agreed to no context takeover, else with the one that
    /// inflated its messages before; and checks that no match reaches
    /// beyond the library's agreed window ([`farthest_match`]).
    pub fn inflate(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        if self.library.no_context_takeover {
            self.inflater = inflater(self.library.window_bits);
        }
        let (out, ended) = inflate_message(&mut self.inflater, payload)?;
        if ended {
            self.inflater = inflater(self.library.window_bits);
        }
        // Deflate cannot reach farther back than 32 KiB: a 15-bit window
        // needs no look.
        if self.library.window_bits < 15 {
            let window = 1usize << self.library.window_bits;
            let reach = farthest_match(payload)?;
            if reach.len != out.len() {
                return Err(format!(
                    "the raw peer's block reader makes {} bytes of the {} inflated",
                    reach.len,
                    out.len()
                ));
            }
            if reach.farthest > window {
                return Err(format!(
                    "a match {} bytes back, beyond the agreed window of {window} bytes",
                    reach.farthest
                ));
            }
        }
        Ok(out)
    }
}

// For the compression tests.
impl Peer {
    /// The `Sec-WebSocket-Extensions` offer (see [`Peer::open_ext`]).
    pub fn offer(&self) -> Option<&str> {
        self.offer.as_deref()
    }

    /// The 101's `Sec-WebSocket-Extensions` (see [`Peer::open_ext`]).
    pub fn answer(&self) -> Option<&str> {
        self.answer.as_deref()
    }

    /// The agreed directions, when permessage-deflate was agreed.
    pub fn directions(&self) -> Option<Directions> {
        self.codec.as_ref().map(|c| Directions {
            peer: c.peer,
            library: c.library,
        })
    }

    fn codec_mut(&mut self) -> &mut Codec {
        let ctx = self.ctx();
        self.codec
            .as_mut()
            .unwrap_or_else(|| panic!("{ctx}: permessage-deflate was not agreed"))
    }

    /// `data` compressed by the raw peer as one message's payload.
    pub fn deflate(&mut self, data: &[u8]) -> Vec<u8> {
        self.codec_mut().compress(data)
    }

    /// `data` as a compressed message: its compressed payload in one frame
    /// (`fragment` None) or cut into frames of `fragment` bytes; RSV1 on
    /// the first frame only.
    pub fn compressed(&mut self, opcode: u8, data: &[u8], fragment: Option<usize>) -> Vec<Frame> {
        let payload = self.deflate(data);
        let size = fragment.unwrap_or(payload.len()).max(1);
        let pieces: Vec<Vec<u8>> = if payload.is_empty() {
            vec![Vec::new()]
        } else {
            payload.chunks(size).map(<[u8]>::to_vec).collect()
        };
        compressed_frames(opcode, pieces)
    }

    /// `data` as a compressed message of one frame per `piece` bytes, each
    /// piece compressed and flushed on its own ([`Codec::compress_pieces`]).
    pub fn compressed_streaming(&mut self, opcode: u8, data: &[u8], piece: usize) -> Vec<Frame> {
        let pieces = self.codec_mut().compress_pieces(data, piece);
        compressed_frames(opcode, pieces)
    }

    /// The next message must be `opcode` with `data` (inflated when it
    /// is compressed), compressed (RSV1 on its first frame) exactly when
    /// `compressed`. Returns it, for more checks.
    pub fn expect_message(&mut self, opcode: u8, data: &[u8], compressed: bool) -> Message {
        let got = self.recv_message();
        let ok = got.fin && got.opcode == opcode && got.data == data;
        assert!(
            ok,
            "{}: expected a message with opcode {opcode:#x} and {} bytes {}, got {got:?}",
            self.ctx(),
            data.len(),
            preview(data)
        );
        assert_eq!(
            got.compressed,
            compressed,
            "{}: the library's echo of {} bytes should {}be compressed (RSV1), got {got:?}",
            self.ctx(),
            data.len(),
            if compressed { "" } else { "not " }
        );
        got
    }

    /// The library, as a client, must refuse the raw server's 101: it
    /// closes the TCP connection without sending anything, and its
    /// application sees a `close` event with `close_reason` 1006 carrying
    /// the refused upgrade (status 101) whose text contains `why`.
    pub fn expect_handshake_refused(&mut self, why: &str) {
        assert_eq!(self.role, Role::Client, "only a client refuses a 101");
        self.expect_eof();
        let close = self.app_close();
        let ok = close.close_reason == 1006
            && close
                .refusal
                .as_ref()
                .is_some_and(|(status, text)| *status == 101 && text.contains(why));
        assert!(
            ok,
            "{}: expected close_reason 1006 and a refused 101 saying {why:?}, got {close:?}",
            self.ctx()
        );
    }
}

/// Frames for the pieces of one compressed payload: the first with
/// `opcode` and RSV1, the others continuations, the last final.
fn compressed_frames(opcode: u8, pieces: Vec<Vec<u8>>) -> Vec<Frame> {
    let last = pieces.len().saturating_sub(1);
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            if i == 0 {
                Frame::new(opcode, p).rsv(RSV1).fin(i == last)
            } else {
                Frame::new(OP_CONT, p).fin(i == last)
            }
        })
        .collect()
}

/// Accepts one connection within `wait` (the listener polls, so the wait is bounded).
fn accept_within(listener: &TcpListener, wait: Duration) -> TcpStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).expect("blocking");
                return s;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "the library's client did not connect within {wait:?}"
                );
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept failed: {e}"),
        }
    }
}
