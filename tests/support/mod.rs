//! What the integration tests share: a raw WebSocket peer written here from
//! RFC 6455 (frames, masking, the opening handshake by hand), an echo server
//! built on the library, and an event recorder. Every wait is bounded.

#![allow(dead_code)]

use airws::{
    Config, Event, EventDispatcher, EventType, IOErrorEvent, SecurityErrorEvent, ServerSocket,
    ServerSocketConnectEvent, ServerTls, WebSocket, WebSocketEvent,
};
use base64::Engine as _;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

// ---------------------------------------------------------------- frames

/// A frame as a raw peer writes it; `build` turns it into bytes.
#[derive(Clone, Debug)]
pub struct RawFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
    pub mask: Option<[u8; 4]>,
    /// Write this length in the header instead of the payload's.
    pub claimed_len: Option<u64>,
}

impl RawFrame {
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> RawFrame {
        RawFrame {
            fin: true,
            rsv: 0,
            opcode,
            payload: payload.into(),
            mask: None,
            claimed_len: None,
        }
    }

    pub fn fin(mut self, fin: bool) -> RawFrame {
        self.fin = fin;
        self
    }

    pub fn rsv(mut self, rsv: u8) -> RawFrame {
        self.rsv = rsv;
        self
    }

    pub fn masked(mut self, key: [u8; 4]) -> RawFrame {
        self.mask = Some(key);
        self
    }

    pub fn claim(mut self, len: u64) -> RawFrame {
        self.claimed_len = Some(len);
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let len = self.claimed_len.unwrap_or(self.payload.len() as u64);
        let mut out = Vec::with_capacity(self.payload.len() + 14);
        out.push(u8::from(self.fin) << 7 | (self.rsv & 7) << 4 | (self.opcode & 0xF));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if len <= 0xFFFF {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        match self.mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// A frame read back from the library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code of a close frame (None when its payload is empty).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, OP_CLOSE, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A frame header read back from the library, as it was on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub len: u64,
    /// The 7-bit length field: the length itself (0 to 125), 126 when a
    /// 16-bit length follows, 127 when a 64-bit length follows.
    pub len_field: u8,
}

impl FrameHead {
    pub fn masked(&self) -> bool {
        self.mask.is_some()
    }

    /// Whether the length is in the shortest form that holds it, as
    /// RFC 6455 §5.2 requires.
    pub fn minimal_length(&self) -> bool {
        match self.len_field {
            126 => (126..=0xFFFF).contains(&self.len),
            127 => self.len > 0xFFFF,
            n => u64::from(n) == self.len,
        }
    }

    /// Unmasks payload bytes that start `offset` bytes into the payload.
    pub fn unmask(&self, bytes: &mut [u8], offset: u64) {
        let Some(key) = self.mask else { return };
        // The key as it lines up with `bytes[0]`, eight bytes at a time (the
        // tests run unoptimized, and payloads reach 64 MiB).
        let shift = (offset % 4) as usize;
        let key: [u8; 4] = std::array::from_fn(|i| key[(i + shift) % 4]);
        let wide = u64::from_ne_bytes(std::array::from_fn(|i| key[i % 4]));
        let mut chunks = bytes.chunks_exact_mut(8);
        for chunk in &mut chunks {
            let word = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
}

/// A close payload: the code and a reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// One end of a raw connection: writes frames (masked when it plays the
/// client) and reads the library's frames.
pub struct RawPeer {
    pub stream: TcpStream,
    pub client: bool,
    counter: u32,
}

impl RawPeer {
    pub fn new(stream: TcpStream, client: bool) -> RawPeer {
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        RawPeer {
            stream,
            client,
            counter: 0x1234_5678,
        }
    }

    /// A varying masking key (the tests need no secrecy).
    fn next_key(&mut self) -> [u8; 4] {
        self.counter = self
            .counter
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        self.counter.to_be_bytes()
    }

    /// Masks the frame when this peer is a client and it has no mask yet.
    pub fn prepare(&mut self, frame: RawFrame) -> Vec<u8> {
        let frame = if self.client && frame.mask.is_none() {
            let key = self.next_key();
            frame.masked(key)
        } else {
            frame
        };
        frame.build()
    }

    pub fn send(&mut self, frame: RawFrame) {
        let bytes = self.prepare(frame);
        self.stream.write_all(&bytes).expect("raw peer write");
    }

    /// Writes without failing the test (the library may already have closed).
    pub fn try_send(&mut self, frame: RawFrame) -> io::Result<()> {
        let bytes = self.prepare(frame);
        self.stream.write_all(&bytes)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("raw peer write");
    }

    pub fn text(&mut self, s: &str) {
        self.send(RawFrame::new(OP_TEXT, s.as_bytes()));
    }

    pub fn binary(&mut self, b: &[u8]) {
        self.send(RawFrame::new(OP_BINARY, b));
    }

    pub fn close(&mut self, code: u16, reason: &str) {
        self.send(RawFrame::new(OP_CLOSE, close_payload(code, reason)));
    }

    /// Reads one frame; panics on a timeout or EOF.
    pub fn read(&mut self) -> Frame {
        expect_read(self.try_read(), "a frame")
    }

    /// Reads one frame; `Ok(None)` on EOF.
    pub fn try_read(&mut self) -> io::Result<Option<Frame>> {
        Ok(self.try_read_with_head()?.map(|(_, frame)| frame))
    }

    /// Reads one frame with its header; panics on a timeout or EOF.
    pub fn read_with_head(&mut self) -> (FrameHead, Frame) {
        expect_read(self.try_read_with_head(), "a frame")
    }

    /// Reads one frame with its header; `Ok(None)` on EOF.
    pub fn try_read_with_head(&mut self) -> io::Result<Option<(FrameHead, Frame)>> {
        let Some(head) = self.try_read_head()? else {
            return Ok(None);
        };
        let mut payload = vec![0u8; head.len as usize];
        self.stream.read_exact(&mut payload)?;
        head.unmask(&mut payload, 0);
        let frame = Frame {
            fin: head.fin,
            rsv: head.rsv,
            opcode: head.opcode,
            masked: head.mask.is_some(),
            payload,
        };
        Ok(Some((head, frame)))
    }

    /// Reads a frame's header only (its payload is left on the socket, for
    /// [`read_payload`](Self::read_payload)); panics on a timeout or EOF.
    pub fn read_head(&mut self) -> FrameHead {
        expect_read(self.try_read_head(), "a frame header")
    }

    /// Reads a frame's header only; `Ok(None)` on EOF.
    pub fn try_read_head(&mut self) -> io::Result<Option<FrameHead>> {
        let mut head = [0u8; 2];
        if !read_full_or_eof(&mut self.stream, &mut head)? {
            return Ok(None);
        }
        let fin = head[0] & 0x80 != 0;
        let rsv = (head[0] >> 4) & 7;
        let opcode = head[0] & 0xF;
        let masked = head[1] & 0x80 != 0;
        let len_field = head[1] & 0x7F;
        let len = match len_field {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b)?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b)?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        assert!(len <= 64 << 20, "the library sent a frame of {len} bytes");
        let mask = if masked {
            let mut key = [0u8; 4];
            self.stream.read_exact(&mut key)?;
            Some(key)
        } else {
            None
        };
        Ok(Some(FrameHead {
            fin,
            rsv,
            opcode,
            mask,
            len,
            len_field,
        }))
    }

    /// Reads `n` bytes of the payload of the frame whose header was just
    /// read, unmasked; `offset` is how much of that payload was read before.
    pub fn read_payload(&mut self, head: &FrameHead, offset: u64, n: usize) -> Vec<u8> {
        assert!(
            offset + n as u64 <= head.len,
            "reading past the end of a payload of {} bytes",
            head.len
        );
        let mut part = vec![0u8; n];
        if let Err(e) = self.stream.read_exact(&mut part) {
            panic!("reading a payload from the library failed: {e}");
        }
        head.unmask(&mut part, offset);
        part
    }

    /// Reads frames until a data message is complete; pongs are returned as
    /// they come (the caller asked for them).
    pub fn read_message(&mut self) -> (u8, Vec<u8>) {
        let first = self.read();
        assert!(
            first.opcode == OP_TEXT || first.opcode == OP_BINARY,
            "expected a data frame, got {first:?}"
        );
        let opcode = first.opcode;
        let mut data = first.payload;
        let mut fin = first.fin;
        let mut frames = 1;
        while !fin {
            frames += 1;
            assert!(frames < 100_000, "too many fragments");
            let f = self.read();
            assert_eq!(f.opcode, OP_CONT, "expected a continuation, got {f:?}");
            data.extend_from_slice(&f.payload);
            fin = f.fin;
        }
        (opcode, data)
    }

    /// Reads until the library's close frame and returns it, skipping data
    /// frames (at most `limit` of them).
    pub fn read_close(&mut self) -> Frame {
        for _ in 0..10_000 {
            let f = self.read();
            if f.opcode == OP_CLOSE {
                return f;
            }
        }
        panic!("no close frame after 10 000 frames");
    }

    /// Whether the library closed the TCP connection (EOF or reset) within
    /// the wait, reading and discarding anything that still arrives.
    pub fn sees_eof(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
        false
    }

    /// Asserts that the library fails the connection with `code`: its close
    /// frame carries the code, and the TCP connection ends.
    pub fn expect_failure(&mut self, code: u16) {
        let f = self.read_close();
        assert_eq!(f.close_code(), Some(code), "close frame {f:?}");
        assert_eq!(f.masked, !self.client, "masking of the close frame");
        // Answer like a well-behaved peer, then the connection must end.
        let _ = self.try_send(RawFrame::new(OP_CLOSE, close_payload(code, "")));
        assert!(
            self.sees_eof(),
            "the connection was not closed after {code}"
        );
    }
}

/// What a read of `what` from the library brought; panics on a timeout or EOF.
fn expect_read<T>(read: io::Result<Option<T>>, what: &str) -> T {
    match read {
        Ok(Some(value)) => value,
        Ok(None) => panic!("the library closed the connection instead of sending {what}"),
        Err(e) => panic!("reading {what} from the library failed: {e}"),
    }
}

fn read_full_or_eof(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------- handshake

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let digest = sha1_smol::Sha1::from(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
        .digest()
        .bytes();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Reads an HTTP head byte by byte (so nothing after it is consumed).
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 64 << 10, "HTTP head too long");
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => break,
            Err(e) => panic!("reading an HTTP head failed: {e}"),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The value of a header in a head, matched case-insensitively.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Sends `request` to `port` and reads the response: its head, and the body
/// its `Content-Length` announces.
pub fn exchange(port: u16, request: &str) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    tcp.write_all(request.as_bytes()).expect("request");
    let head = read_head(&mut tcp);
    let length = header(&head, "content-length").map_or(0, |v| v.parse().expect("a length"));
    let mut body = vec![0u8; length];
    tcp.read_exact(&mut body).expect("the body");
    head + &String::from_utf8_lossy(&body)
}

/// Opens a raw client connection to `port` and completes the handshake;
/// returns the peer and the server's response head.
pub fn raw_client(port: u16, extra_headers: &str) -> (RawPeer, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the library");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = format!(
        "GET /chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "no 101 response: {head}");
    assert_eq!(
        header(&head, "Sec-WebSocket-Accept"),
        Some(accept_key(key).as_str())
    );
    (RawPeer::new(stream, true), head)
}

/// A raw server on 127.0.0.1 that accepts one connection at a time.
pub struct RawServer {
    pub listener: TcpListener,
    pub port: u16,
}

impl RawServer {
    pub fn new() -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind raw server");
        let port = listener.local_addr().expect("addr").port();
        RawServer { listener, port }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// Accepts a connection within the wait.
    pub fn accept_tcp(&self) -> TcpStream {
        self.listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + WAIT;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).expect("blocking");
                    s.set_read_timeout(Some(WAIT)).expect("timeout");
                    return s;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no connection arrived");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept failed: {e}"),
            }
        }
    }

    /// Accepts a connection and answers its upgrade request with a 101 made
    /// of `response_headers` (name, value) pairs plus the accept key; returns
    /// the peer and the request head.
    pub fn accept_with(&self, response_headers: &[(&str, &str)]) -> (RawPeer, String) {
        let mut stream = self.accept_tcp();
        let head = read_head(&mut stream);
        let key = header(&head, "Sec-WebSocket-Key")
            .expect("a key")
            .to_owned();
        let mut resp = String::from("HTTP/1.1 101 Switching Protocols\r\n");
        for (n, v) in response_headers {
            resp.push_str(&format!("{n}: {v}\r\n"));
        }
        resp.push_str(&format!(
            "Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(&key)
        ));
        stream.write_all(resp.as_bytes()).expect("send 101");
        (RawPeer::new(stream, false), head)
    }

    /// Accepts a connection with a standard 101 response.
    pub fn accept(&self) -> (RawPeer, String) {
        self.accept_with(&[("Upgrade", "websocket"), ("Connection", "Upgrade")])
    }
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer::new()
    }
}

// ---------------------------------------------------------------- events

/// What a `WebSocket` dispatched, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Connect,
    Close(i32),
    Text(String),
    Binary(Vec<u8>),
    IoError(i32, String),
    Security(String),
    Certificate(String),
}

/// A client `WebSocket` connected to `url`: its events are recorded, and
/// `connect` was already seen.
pub fn open_client(url: &str, protocols: &[&str]) -> (WebSocket, Receiver<Seen>) {
    let ws = WebSocket::new();
    let rx = record(&ws);
    ws.connect(url, protocols).expect("connect");
    assert_eq!(next(&rx), Seen::Connect);
    (ws, rx)
}

/// A client `WebSocket` connected to a [`RawServer`] that answered its
/// upgrade: its events are recorded, and `connect` was already seen.
pub fn client_of_raw_peer() -> (WebSocket, Receiver<Seen>, RawPeer) {
    client_of_raw_peer_with(Config::default())
}

/// Like [`client_of_raw_peer`], for a client `WebSocket` with `config`.
pub fn client_of_raw_peer_with(config: Config) -> (WebSocket, Receiver<Seen>, RawPeer) {
    let raw = RawServer::new();
    let ws = WebSocket::with_config(config);
    let rx = record(&ws);
    ws.connect(&raw.url(), &[]).expect("connect");
    let (peer, _) = raw.accept();
    assert_eq!(next(&rx), Seen::Connect);
    (ws, rx, peer)
}

/// The event types that [`record`] listens for: all that a `WebSocket`
/// dispatches.
pub const RECORDED: [EventType; 6] = [
    Event::CONNECT,
    Event::CLOSE,
    WebSocketEvent::DATA,
    IOErrorEvent::IO_ERROR,
    SecurityErrorEvent::SECURITY_ERROR,
    SecurityErrorEvent::CERTIFICATE_ERROR,
];

/// Records every event of a `WebSocket` into a channel.
pub fn record(ws: &WebSocket) -> Receiver<Seen> {
    let (tx, rx) = mpsc::channel();
    for event_type in RECORDED {
        let tx = tx.clone();
        ws.add_event_listener(event_type, move |e: &Event| {
            let _ = tx.send(seen(e));
        });
    }
    rx
}

/// What an event of one of the [`RECORDED`] types says, told apart by its
/// type as an AS3 `switch (e.type)` would.
pub fn seen(e: &Event) -> Seen {
    match e.event_type() {
        Event::CONNECT => Seen::Connect,
        Event::CLOSE => Seen::Close(e.target::<WebSocket>().map_or(-1, |w| w.close_reason())),
        WebSocketEvent::DATA => match e.string_data() {
            Some(s) => Seen::Text(s.to_owned()),
            None => Seen::Binary(e.data().to_vec()),
        },
        IOErrorEvent::IO_ERROR => Seen::IoError(e.error_id(), e.text().to_owned()),
        SecurityErrorEvent::SECURITY_ERROR => Seen::Security(e.text().to_owned()),
        SecurityErrorEvent::CERTIFICATE_ERROR => Seen::Certificate(e.text().to_owned()),
        other => panic!("an event of a type that is not recorded: {other}"),
    }
}

/// The next recorded event, within the wait.
pub fn next(rx: &Receiver<Seen>) -> Seen {
    rx.recv_timeout(WAIT).expect("an event within the wait")
}

/// Asserts that nothing more is dispatched for a short while.
pub fn nothing_more(rx: &Receiver<Seen>, for_ms: u64) {
    if let Ok(e) = rx.recv_timeout(Duration::from_millis(for_ms)) {
        panic!("unexpected event {e:?}");
    }
}

// ---------------------------------------------------------------- echo server

/// The library as an echo server on 127.0.0.1: every accepted socket gets a
/// `WebSocket` that echoes each message with its format. Server-side events
/// are reported on `events` as (connection number, event).
pub struct EchoServer {
    pub server: ServerSocket,
    pub port: u16,
    pub events: Receiver<(u64, Seen)>,
    pub sockets: Arc<Mutex<HashMap<u64, WebSocket>>>,
}

impl EchoServer {
    pub fn start() -> EchoServer {
        EchoServer::with(Config::default, "")
    }

    /// With a config for each accepted connection and a `protocol` to answer.
    pub fn with(config: fn() -> Config, protocol: &'static str) -> EchoServer {
        EchoServer::serve(config, protocol, None)
    }

    /// A wss echo server (`ServerSocket::with_tls`): each accepted socket
    /// runs TLS with `tls` first.
    pub fn tls(tls: ServerTls) -> EchoServer {
        EchoServer::serve(Config::default, "", Some(tls))
    }

    fn serve(config: fn() -> Config, protocol: &'static str, tls: Option<ServerTls>) -> EchoServer {
        let (tx, rx) = mpsc::channel::<(u64, Seen)>();
        let tx = Arc::new(Mutex::new(tx));
        let sockets: Arc<Mutex<HashMap<u64, WebSocket>>> = Arc::default();
        let next_id = AtomicU64::new(0);
        let server = match &tls {
            Some(tls) => ServerSocket::with_tls(tls.clone()),
            None => ServerSocket::new(),
        };
        let map = sockets.clone();
        server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let ws = WebSocket::with_config(config());
            if !protocol.is_empty() {
                ws.set_protocol(protocol)
                    .expect("set_protocol before the handshake");
            }
            ws.add_event_listener(WebSocketEvent::DATA, |e: &Event| {
                if let Some(ws) = e.target::<WebSocket>() {
                    let _ = ws.send_message(e.format(), e.data());
                }
            });
            let report = move |tx: &Arc<Mutex<Sender<(u64, Seen)>>>, seen: Seen| {
                let _ = tx
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .send((id, seen));
            };
            for event_type in [Event::CONNECT, Event::CLOSE, WebSocketEvent::DATA] {
                let (t, m) = (tx.clone(), map.clone());
                ws.add_event_listener(event_type, move |e: &Event| {
                    if e.event_type() == Event::CLOSE {
                        m.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                    }
                    report(&t, seen(e));
                });
            }
            map.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, ws.clone());
            ws.start_server(e.socket()).expect("start_server");
        });
        server.bind(0, "127.0.0.1").expect("bind");
        server.listen().expect("listen");
        let port = server.local_port();
        EchoServer {
            server,
            port,
            events: rx,
            sockets,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// The next server-side event (of any connection), within the wait.
    pub fn next(&self) -> (u64, Seen) {
        self.events
            .recv_timeout(WAIT)
            .expect("a server event within the wait")
    }

    /// Skips server events until one matches, within the wait.
    pub fn wait_for(&self, want: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((_, s)) if want(&s) => return s,
                Ok(_) => {}
                Err(_) => panic!("the server event did not come"),
            }
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.server.close();
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

// ---------------------------------------------------------------- server sockets

/// A `ServerSocket` on 127.0.0.1 whose accepted sockets each get a server
/// `WebSocket` with `config`; each is handed over on the channel once its
/// handshake is complete (the test then owns it).
pub fn serve_websockets(config: fn() -> Config) -> (ServerSocket, Receiver<WebSocket>) {
    let (tx, rx) = mpsc::channel::<WebSocket>();
    let tx = Mutex::new(tx);
    let server = ServerSocket::new();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::with_config(config());
        let t = Mutex::new(tx.lock().unwrap_or_else(|p| p.into_inner()).clone());
        ws.add_event_listener(Event::CONNECT, move |e: &Event| {
            if let Some(ws) = e.target::<WebSocket>() {
                let _ = t.lock().unwrap_or_else(|p| p.into_inner()).send(ws);
            }
        });
        ws.start_server(e.socket()).expect("start_server");
        // The connection stays open until the test drops what it received
        // (or the peer ends it).
        std::mem::forget(ws);
    });
    server.bind(0, "127.0.0.1").expect("bind");
    server.listen().expect("listen");
    (server, rx)
}

// ---------------------------------------------------------------- threads

/// The names of this process's threads that the library started.
pub fn library_threads() -> Vec<String> {
    let mut names = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return names;
    };
    for entry in dir.flatten() {
        if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) {
            let comm = comm.trim();
            if comm.starts_with("airws") {
                names.push(comm.to_owned());
            }
        }
    }
    names
}

/// Polls until `cond` holds, within the wait.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

// ---------------------------------------------------------------- processes

/// An example's binary: `cargo test` builds the examples next to the test
/// binaries' folder.
pub fn example(name: &str) -> std::path::PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built (cargo test builds examples)",
        path.display()
    );
    path
}

/// Kills and reaps a child process we started, by its handle, when dropped.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This process's resident memory, in KiB (`VmRSS`).
pub fn resident_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
