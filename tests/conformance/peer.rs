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

use airws::{
    Config, Event, EventDispatcher, IOErrorEvent, ServerSocket, ServerSocketConnectEvent,
    WebSocket, WebSocketEvent,
};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
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

/// What the library's application saw: the `close_reason` at each `close`
/// event, and the text of each `ioError`.
struct App {
    closes: Receiver<i32>,
    io_errors: Arc<Mutex<Vec<String>>>,
    /// The library's `WebSocket`s, kept alive for the connection's lifetime
    /// (dropping the last handle would close it with 1001).
    _sockets: Arc<Mutex<Vec<WebSocket>>>,
    _server: Option<ServerSocket>,
}

/// Adds the echo listeners: every message goes back with its own format
/// (through `e.target()`, as examples/echo_server.rs and
/// examples/autobahn_client.rs do), and each `close` reports `close_reason`.
fn install_echo(ws: &WebSocket, closes: Sender<i32>, io_errors: Arc<Mutex<Vec<String>>>) {
    ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
        if let Some(ws) = e.target::<WebSocket>() {
            let _ = ws.send_message(e.format(), e.data());
        }
    });
    ws.add_event_listener(Event::CLOSE, move |e: &Event| {
        let reason = e.target::<WebSocket>().map_or(-1, |ws| ws.close_reason());
        let _ = closes.send(reason);
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
}

impl Peer {
    /// Opens a connection with the default configuration.
    pub fn open(role: Role) -> Peer {
        Peer::open_with(role, Config::default())
    }

    /// Opens a connection; `config` is the library's.
    pub fn open_with(role: Role, config: Config) -> Peer {
        match role {
            Role::Server => Peer::open_server_role(config),
            Role::Client => Peer::open_client_role(config),
        }
    }

    fn open_server_role(config: Config) -> Peer {
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
                _sockets: sockets,
                _server: Some(server),
            },
        );
        peer.client_handshake(addr);
        peer
    }

    fn open_client_role(config: Config) -> Peer {
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
                _sockets: Arc::new(Mutex::new(vec![ws])),
                _server: None,
            },
        );
        peer.server_handshake();
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

    /// The raw client's opening handshake: a request with a random key, then
    /// a check of the 101 and its `Sec-WebSocket-Accept`.
    fn client_handshake(&mut self, addr: SocketAddr) {
        let nonce: Vec<u8> = (0..2).flat_map(|_| random_u64().to_be_bytes()).collect();
        let key = BASE64.encode(nonce);
        let request = format!(
            "GET /conformance HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
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
    }

    /// The raw server's opening handshake: reads the request head until the
    /// blank line, answers 101 with the accept key.
    fn server_handshake(&mut self) {
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
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key)
        );
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
    /// frame from the library must satisfy: no RSV bits, masked exactly when
    /// the library is the client, the shortest length form.
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
        assert_eq!(
            got.rsv,
            0,
            "{}: RSV bits from the library: {got:?}",
            self.ctx()
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

    /// The next message must have `opcode` and `payload`: one final frame,
    /// or (a message longer than the library's fragment size) a first
    /// frame and continuation frames, the last of them final.
    pub fn expect(&mut self, opcode: u8, payload: &[u8]) {
        let mut got = self.recv();
        let mut frames = 1;
        while !got.fin && (got.opcode == OP_TEXT || got.opcode == OP_BINARY) {
            let next = self.recv();
            assert_eq!(
                next.opcode,
                OP_CONT,
                "{}: expected a continuation of a fragmented message, got {next:?}",
                self.ctx()
            );
            assert!(frames < 100_000, "{}: too many fragments", self.ctx());
            frames += 1;
            got.payload.extend_from_slice(&next.payload);
            got.fin = next.fin;
        }
        let ok = got.fin && got.opcode == opcode && got.payload == payload;
        assert!(
            ok,
            "{}: expected a message with opcode {opcode:#x} and {} bytes {} (in {frames} frame(s)), got {got:?}",
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

    /// The `close_reason` the library's application saw at its `close`
    /// event, which must come within `WAIT`; no `ioError` may have come.
    pub fn app_close_reason(&mut self) -> i32 {
        let reason = match self.app.closes.recv_timeout(WAIT) {
            Ok(r) => r,
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
        reason
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
