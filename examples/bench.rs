//! Benchmark: our echo server (`examples/echo_server.rs`) against a
//! `tungstenite` echo server (its sync API, a thread per connection), a
//! uWebSockets echo server when one is built (`examples/uws_echo`; given by
//! `--uws PATH` or `AIRWS_UWS_ECHO`, its columns skipped otherwise) and a
//! raw TCP echo, driven by one load generator over 127.0.0.1; our client
//! against tungstenite's client; masking against `memcpy`; and resident
//! memory per idle connection. `deflate` measures permessage-deflate
//! (RFC 7692): JSON-like text echoed with and without it, by our server and,
//! when `bash .ci/peers.sh` installed them, by Node `ws` and Python
//! `websockets`.
//!
//!     cargo run --release --example bench            # everything (a few minutes)
//!     cargo run --release --example bench -- quick    # shorter cells, one run each
//!     cargo run --release --example bench -- servers [quick]  # server CPU per message, against raw TCP
//!     AIRWS_UWS_ECHO=path/to/uws_echo cargo run --release --example bench -- servers  # or: -- servers --uws PATH
//!     cargo run --release --example bench -- memory [N]
//!     cargo run --release --example bench -- clients  # the client table only
//!     cargo run --release --example bench -- serve airws|airws-deflate|tungstenite|raw
//!     cargo run --release --example bench -- drive PORT SIZE IN_FLIGHT CONNS SECONDS [SERVER_PID]
//!     cargo run --release --example bench -- deflate [quick]  # the permessage-deflate tables (a few minutes)
//!     cargo run --release --example bench -- deflate-memory [N [SIZE [airws|node|python]]]
//!     cargo run --release --example bench -- deflate-drive PORT SIZE IN_FLIGHT CONNS SECONDS off|deflate|nct [SERVER_PID]
//!
//! Each server runs in its own process (this binary, started again with
//! `serve KIND`, or `node` and `python` running a script this binary writes
//! to a temporary file), so that its memory and CPU time can be read from
//! /proc. Every figure is the median of runs that alternate between the
//! servers, and the ratios compare figures of the same run.

#[allow(dead_code)]
#[path = "echo_server.rs"]
mod echo_server;

use airws::proto::deflate::{self, Agreement, DeflateConfig, Direction};
use airws::{Config, Event, EventDispatcher, MemoryBudget, Received, WebSocket, WebSocketEvent};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ servers

/// Serves `kind` on 127.0.0.1; `budget_mib` replaces the default memory
/// budget (512 MiB) of `airws-deflate`.
fn serve(kind: &str, budget_mib: Option<usize>) {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let port = match kind {
        "airws" => {
            let server = echo_server::listen(addr).expect("listen");
            let port = server.local_port();
            std::mem::forget(server);
            port
        }
        // `echo_server --deflate`: the same server, accepting offers of
        // permessage-deflate on the default terms.
        "airws-deflate" => {
            let mut config = Config::default()
                .permessage_deflate(DeflateConfig::default())
                .expect("permessage-deflate (the deflate feature)");
            if let Some(mib) = budget_mib {
                config = config.memory_budget(MemoryBudget::new(mib << 20));
            }
            let server = echo_server::listen_with(addr, config).expect("listen");
            let port = server.local_port();
            std::mem::forget(server);
            port
        }
        "tungstenite" => serve_with(addr, tungstenite_echo),
        "raw" => serve_with(addr, raw_echo),
        other => panic!("unknown server kind {other}"),
    };
    println!("PORT {port}");
    // Ends when the benchmark closes our standard input.
    let _ = io::stdin().read_to_end(&mut Vec::new());
}

fn serve_with(addr: SocketAddr, handler: fn(TcpStream)) -> u16 {
    let listener = TcpListener::bind(addr).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = std::thread::Builder::new()
                .stack_size(128 << 10)
                .spawn(move || handler(stream));
        }
    });
    port
}

/// The echo a `tungstenite` user writes with its sync API.
fn tungstenite_echo(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    while let Ok(msg) = ws.read() {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).is_err() {
            return;
        }
    }
}

/// A raw TCP echo: whatever one read brought goes back in one write.
fn raw_echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // Answer the upgrade so that the load generator is the same for all.
    let Ok(head) = read_head(&mut stream) else {
        return;
    };
    let key = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    let accept = airws::proto::handshake::accept_response(&key, None);
    if stream.write_all(&accept).is_err() {
        return;
    }
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 << 10 || stream.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::InvalidData.into());
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A server process, ended (by its PID) when dropped.
struct Server {
    kind: &'static str,
    child: Child,
    port: u16,
    /// The script it runs, removed when it is dropped.
    script: Option<PathBuf>,
}

impl Server {
    fn start(kind: &'static str) -> Server {
        Server::start_with(kind, &[])
    }

    /// [`start`](Self::start), with more arguments after `serve KIND`.
    fn start_with(kind: &'static str, more: &[String]) -> Server {
        let exe = std::env::current_exe().expect("own path");
        let mut command = Command::new(exe);
        command.args(["serve", kind]).args(more);
        Server::spawn(kind, command, None).expect("start a server")
    }

    /// Starts `command`, which prints `PORT N` first and ends when its
    /// standard input closes; waits at most 20 s for that line.
    fn spawn(kind: &'static str, command: Command, script: Option<PathBuf>) -> io::Result<Server> {
        Server::spawn_reading(kind, command, script, |line| {
            line.strip_prefix("PORT ").and_then(|p| p.parse().ok())
        })
    }

    /// The uWebSockets echo server of `examples/uws_echo` (the binary at
    /// `path`), started as `uws_echo PORT` on a port found free just
    /// before; it prints `listening on PORT` once it listens, and exits
    /// when the port was taken meanwhile, which is tried again (5 times
    /// at most).
    fn start_uws(path: &Path) -> io::Result<Server> {
        let mut last = io::Error::other("not started");
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut command = Command::new(path);
            command.arg(port.to_string());
            let expected = format!("listening on {port}");
            match Server::spawn_reading("uWebSockets", command, None, |line| {
                (line == expected).then_some(port)
            }) {
                Ok(server) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Starts `command` and waits at most 20 s for its first line, from
    /// which `port_of` reads the port it listens on.
    fn spawn_reading(
        kind: &'static str,
        mut command: Command,
        script: Option<PathBuf>,
        port_of: impl FnOnce(&str) -> Option<u16>,
    ) -> io::Result<Server> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let port = port_of(line.trim());
        let mut server = Server {
            kind,
            child,
            port: 0,
            script,
        };
        match port {
            Some(port) => {
                server.port = port;
                Ok(server)
            }
            // Dropping it ends the process.
            None => Err(io::Error::other(format!("{kind}: no PORT line"))),
        }
    }

    /// Resident memory of the server process, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(script) = &self.script {
            let _ = std::fs::remove_file(script);
        }
    }
}

// ------------------------------------------------------------------ load generator

/// Opens a connection and completes the upgrade.
fn open(port: u16) -> io::Result<TcpStream> {
    open_offering(port, None).map(|(s, _)| s)
}

/// Opens a connection offering `extensions` (a `Sec-WebSocket-Extensions`
/// value) and completes the upgrade; returns the server's
/// `Sec-WebSocket-Extensions` too, when it sent one.
fn open_offering(port: u16, extensions: Option<&str>) -> io::Result<(TcpStream, Option<String>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    // A server that stops answering ends the run instead of holding it.
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let offer = extensions.map_or(String::new(), |e| {
        format!("Sec-WebSocket-Extensions: {e}\r\n")
    });
    s.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        )
        .as_bytes(),
    )?;
    let head = read_head(&mut s)?;
    if !head.starts_with("HTTP/1.1 101") {
        return Err(io::Error::other(format!("no upgrade: {head}")));
    }
    let agreed = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| v.trim().to_owned())
    });
    Ok((s, agreed))
}

/// A masked binary frame, built once and sent many times.
fn frame(size: usize) -> Vec<u8> {
    let mut out = vec![0x82];
    if size < 126 {
        out.push(0x80 | size as u8);
    } else if size <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend((size as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend((size as u64).to_be_bytes());
    }
    out.extend([0x12, 0x34, 0x56, 0x78]);
    out.extend((0..size).map(|i| (i as u8) ^ [0x12, 0x34, 0x56, 0x78][i % 4]));
    out
}

/// Counts whole messages in what the server sends back (masked or not; a
/// message in fragments counts once, at its final frame).
struct FrameCounter {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    /// Whether the current frame is a message's final frame.
    fin: bool,
    /// Bytes read, payload bytes of the frames parsed, and frames with
    /// RSV1 (compressed messages), since [`take_counts`](Self::take_counts).
    counts: [u64; 3],
}

impl FrameCounter {
    fn new() -> FrameCounter {
        FrameCounter {
            buf: vec![0u8; 256 << 10],
            start: 0,
            end: 0,
            skip: 0,
            fin: false,
            counts: [0; 3],
        }
    }

    /// Bytes read, payload bytes and compressed frames since the last call.
    fn take_counts(&mut self) -> [u64; 3] {
        std::mem::take(&mut self.counts)
    }

    /// Reads until at least one more frame is complete; returns how many.
    fn read_frames(&mut self, s: &mut TcpStream) -> io::Result<u64> {
        loop {
            let done = self.parse();
            if done > 0 {
                return Ok(done);
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = s.read(&mut self.buf[self.end..])?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.end += n;
            self.counts[0] += n as u64;
        }
    }

    fn parse(&mut self) -> u64 {
        let mut done = 0;
        loop {
            if self.skip > 0 {
                let avail = (self.end - self.start) as u64;
                let take = avail.min(self.skip);
                self.start += take as usize;
                self.skip -= take;
                if self.skip > 0 {
                    return done;
                }
                done += u64::from(self.fin);
                continue;
            }
            let b = &self.buf[self.start..self.end];
            if b.len() < 2 {
                return done;
            }
            let masked = b[1] & 0x80 != 0;
            let fin = b[0] & 0x80 != 0;
            let (len, mut head) = match b[1] & 0x7F {
                126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
                127 if b.len() >= 10 => {
                    let mut l = [0u8; 8];
                    l.copy_from_slice(&b[2..10]);
                    (u64::from_be_bytes(l), 10)
                }
                126 | 127 => return done,
                n => (u64::from(n), 2),
            };
            if masked {
                head += 4;
            }
            if b.len() < head {
                return done;
            }
            self.start += head;
            self.fin = fin;
            self.counts[1] += len;
            self.counts[2] += u64::from(b[0] & 0x40 != 0);
            if len == 0 {
                done += u64::from(fin);
            } else {
                self.skip = len;
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Cell {
    size: usize,
    in_flight: usize,
    connections: usize,
}

#[derive(Clone, Debug, Default)]
struct Measure {
    msgs_per_s: f64,
    mb_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    /// The server's CPU time (user + system) per message echoed in the
    /// measured window, in µs; 0 when it cannot be read.
    server_cpu_us: f64,
    /// The load generator's CPU time (this process, all its threads) per
    /// message in the same window, in µs.
    generator_cpu_us: f64,
}

/// Drives `port` with `cell` for `duration`; `server` is the server's PID,
/// whose CPU time is read around the measured window.
fn drive(port: u16, cell: Cell, duration: Duration, server: Option<u32>) -> io::Result<Measure> {
    let frame = Arc::new(frame(cell.size));
    let window = Arc::new(Window::new(&frame, cell.in_flight));
    let stop = Arc::new(AtomicBool::new(false));
    let counted = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Barrier::new(cell.connections + 1));
    let (lat_tx, lat_rx) = mpsc::channel::<Vec<u32>>();
    let mut threads = Vec::new();
    for _ in 0..cell.connections {
        let stream = open(port)?;
        let (frame, window, stop, counted, ready, lat_tx) = (
            frame.clone(),
            window.clone(),
            stop.clone(),
            counted.clone(),
            ready.clone(),
            lat_tx.clone(),
        );
        threads.push(std::thread::spawn(move || -> io::Result<()> {
            ready.wait();
            if cell.in_flight == 1 {
                ping_pong(stream, &frame, &stop, &counted, &lat_tx)
            } else {
                pumped(stream, &window, &stop, &counted)
            }
        }));
    }
    drop(lat_tx);
    ready.wait();
    // A short warm-up, then the measured window.
    std::thread::sleep(Duration::from_millis(200));
    let before = counted.load(Ordering::Relaxed);
    let cpu_before = server.map(cpu_seconds);
    let own_before = process_cpu();
    let started = Instant::now();
    std::thread::sleep(duration);
    let after = counted.load(Ordering::Relaxed);
    let cpu = server.map(cpu_seconds).zip(cpu_before).map(|(a, b)| a - b);
    let own = process_cpu() - own_before;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| io::Error::other("a load thread panicked"))??;
    }
    let mut lat: Vec<u32> = lat_rx.iter().flatten().collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            f64::from(lat[((lat.len() - 1) as f64 * p) as usize]) / 1000.0
        }
    };
    let msgs = (after - before) as f64 / elapsed;
    Ok(Measure {
        msgs_per_s: msgs,
        mb_per_s: msgs * cell.size as f64 / 1e6,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        server_cpu_us: cpu.map_or(0.0, |c| c * 1e6 / (after - before).max(1) as f64),
        generator_cpu_us: own * 1e6 / (after - before).max(1) as f64,
    })
}

/// One message in flight: send, wait for the echo, record the round trip.
fn ping_pong(
    mut s: TcpStream,
    frame: &[u8],
    stop: &AtomicBool,
    counted: &AtomicU64,
    lat_tx: &mpsc::Sender<Vec<u32>>,
) -> io::Result<()> {
    let mut counter = FrameCounter::new();
    let mut lat = Vec::with_capacity(1 << 16);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        s.write_all(frame)?;
        let n = counter.read_frames(&mut s)?;
        if lat.len() < 1 << 20 {
            lat.push(t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
        }
        counted.fetch_add(n, Ordering::Relaxed);
    }
    let _ = lat_tx.send(lat);
    Ok(())
}

/// `send`'s flag for a write that takes what the socket buffer has room
/// for and never waits (`MSG_DONTWAIT`).
#[cfg(target_os = "linux")]
const MSG_DONTWAIT: i32 = 0x40;
#[cfg(all(unix, not(target_os = "linux")))]
const MSG_DONTWAIT: i32 = 0x80;
/// Elsewhere a refill may wait for room, which is safe while a window's
/// frames fit in the socket buffers.
#[cfg(not(unix))]
const MSG_DONTWAIT: i32 = 0;

/// The frames of a pipelined window, built (and masked) once for all the
/// connections of a cell: `2 × in_flight` copies of one frame back to
/// back, so that the next `n ≤ in_flight` frames to send, from wherever
/// the previous write stopped (even inside a frame), are one slice.
struct Window {
    bytes: Vec<u8>,
    frame_len: usize,
    in_flight: usize,
}

impl Window {
    fn new(frame: &[u8], in_flight: usize) -> Window {
        Window {
            bytes: frame.repeat(2 * in_flight),
            frame_len: frame.len(),
            in_flight,
        }
    }

    /// `len ≤ in_flight` frames' worth of bytes from `at`, an offset below
    /// `in_flight` frames (all the frames are the same, so any offset
    /// modulo a window's length is the same place in the stream).
    fn slice(&self, at: usize, len: usize) -> &[u8] {
        &self.bytes[at..at + len]
    }
}

/// `in_flight` messages outstanding on one thread, which alternates
/// between refilling the window and reading: when n echoes have come back,
/// n frames go out in one `send` (a slice of the [`Window`], no copy), then
/// one `read` of up to 256 KiB takes whatever echoes have arrived (counted
/// by their headers, payloads skipped). In the steady state that is two
/// system calls per batch and no wake-up of another thread; a writer
/// thread fed by a channel costs a wake-up per batch and a core shared by
/// two threads on each side.
///
/// The refill must not wait while the server waits for room to write its
/// echoes to us (each would wait for the other once a window's bytes
/// exceed the socket buffers, as 8 × 1 MiB do): it takes what the socket
/// has room for (`MSG_DONTWAIT`), and the rest goes after the next read.
/// It waits for room only when every frame written whole has been echoed:
/// the server has nothing left to write then, so it reads.
fn pumped(
    mut s: TcpStream,
    window: &Window,
    stop: &AtomicBool,
    counted: &AtomicU64,
) -> io::Result<()> {
    let frame_len = window.frame_len as u64;
    let span = window.in_flight * window.frame_len;
    let mut counter = FrameCounter::new();
    // Where the next byte to send is in the window, and how many to send.
    let (mut at, mut owed) = (0usize, span);
    // Bytes written in all, and echoes counted.
    let (mut written, mut echoed) = (0u64, 0u64);
    let mut drain_deadline = None;
    loop {
        // Frames written whole whose echo has not come back yet.
        let unanswered = written / frame_len - echoed;
        if owed > 0 {
            let piece = window.slice(at, owed);
            let n = if unanswered > 0 {
                match socket2::SockRef::from(&s).send_with_flags(piece, MSG_DONTWAIT) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                    Err(e) => return Err(e),
                }
            } else {
                // Waits for room (at most the write timeout).
                match s.write(piece) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                    Err(e) => return Err(e),
                }
            };
            written += n as u64;
            owed -= n;
            at = (at + n) % span;
        }
        let unanswered = written / frame_len - echoed;
        if unanswered == 0 {
            if owed == 0 {
                // Stopped, and every echo is in.
                return Ok(());
            }
            continue;
        }
        let n = counter.read_frames(&mut s)?;
        echoed += n;
        counted.fetch_add(n, Ordering::Relaxed);
        if !stop.load(Ordering::Relaxed) {
            owed += n as usize * window.frame_len;
        } else {
            // Only the rest of a frame begun is still sent.
            let begun = (written % frame_len) as usize;
            if begun > 0 {
                owed = owed.min(window.frame_len - begun);
            } else {
                owed = 0;
            }
            let deadline = *drain_deadline.get_or_insert(Instant::now() + Duration::from_secs(10));
            if Instant::now() > deadline {
                return Err(io::Error::other("echoes still missing 10 s after the end"));
            }
        }
    }
}

// ------------------------------------------------------------------ clients

/// CPU time this process has used, in seconds (Linux; 0 elsewhere).
fn process_cpu() -> f64 {
    cpu_seconds(std::process::id())
}

/// CPU time (user + system, all threads) process `pid` has used, in
/// seconds, from `/proc/PID/stat` (Linux; 0 elsewhere).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        // utime and stime, in USER_HZ (100 per second on Linux).
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => 0.0,
    }
}

/// A client's rate and the CPU time this process spent per message.
struct ClientRun {
    msgs_per_s: f64,
    cpu_us: f64,
}

/// Our client: `in_flight` messages outstanding, one more sent from the
/// data listener for each echo.
fn our_client(port: u16, size: usize, in_flight: usize, duration: Duration) -> ClientRun {
    let ws = WebSocket::new();
    let counted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let payload = Arc::new(vec![7u8; size]);
    let (c, s, p) = (counted.clone(), stop.clone(), payload.clone());
    ws.add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
        c.fetch_add(1, Ordering::Relaxed);
        if !s.load(Ordering::Relaxed) {
            if let Some(ws) = e.target::<WebSocket>() {
                let _ = ws.send_message(WebSocket::FMT_BINARY, &p[..]);
            }
        }
    });
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    ws.add_event_listener(Event::CONNECT, move |_e: &Event| {
        let _ = tx.lock().map(|t| t.send(()));
    });
    ws.connect(&format!("ws://127.0.0.1:{port}/"), &[])
        .expect("connect");
    rx.recv_timeout(Duration::from_secs(10)).expect("connected");
    for _ in 0..in_flight {
        ws.send_message(WebSocket::FMT_BINARY, &payload[..])
            .expect("send");
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = counted.load(Ordering::Relaxed);
    let cpu = process_cpu();
    let started = Instant::now();
    std::thread::sleep(duration);
    let n = counted.load(Ordering::Relaxed) - before;
    let cpu = process_cpu() - cpu;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = ws.close(WebSocket::CLOSE_NORMAL);
    ws.wait_closed(Duration::from_secs(5));
    ClientRun {
        msgs_per_s: rate,
        cpu_us: cpu * 1e6 / n.max(1) as f64,
    }
}

/// tungstenite's client, the way its sync API is used.
fn tungstenite_client(port: u16, size: usize, in_flight: usize, duration: Duration) -> ClientRun {
    use tungstenite::Message;
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut ws, _) =
        tungstenite::client(format!("ws://127.0.0.1:{port}/"), stream).expect("handshake");
    let payload = vec![7u8; size];
    for _ in 0..in_flight {
        ws.send(Message::binary(payload.clone())).expect("send");
    }
    let warm = Instant::now() + Duration::from_millis(200);
    while Instant::now() < warm {
        ws.read().expect("read");
        ws.send(Message::binary(payload.clone())).expect("send");
    }
    let cpu = process_cpu();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        ws.read().expect("read");
        n += 1;
        ws.send(Message::binary(payload.clone())).expect("send");
    }
    let cpu = process_cpu() - cpu;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = ws.close(None);
    ClientRun {
        msgs_per_s: rate,
        cpu_us: cpu * 1e6 / n.max(1) as f64,
    }
}

// ------------------------------------------------------------------ masking

fn masking() -> (f64, f64) {
    let src = vec![0x5Au8; 1 << 20];
    let mut dst = vec![0u8; 1 << 20];
    let gbps = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < Duration::from_millis(500) {
            f();
            n += 1;
        }
        n as f64 * (1 << 20) as f64 / started.elapsed().as_secs_f64() / 1e9
    };
    let copy = gbps(&mut || {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
    });
    let mut buf = src.clone();
    let mask = gbps(&mut || {
        airws::proto::mask::apply_mask(std::hint::black_box(&mut buf), [1, 2, 3, 4], 0);
        std::hint::black_box(&buf);
    });
    (mask, copy)
}

// ------------------------------------------------------------------ memory

fn memory(n: usize) {
    println!("\n## Resident memory per idle connection ({n} connections)\n");
    println!("| server | before (KiB) | with {n} idle (KiB) | per connection (KiB) |");
    println!("|---|---|---|---|");
    for kind in ["airws", "tungstenite"] {
        let server = Server::start(kind);
        std::thread::sleep(Duration::from_millis(200));
        let before = server.rss_kib();
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            match open(server.port) {
                Ok(c) => conns.push(c),
                Err(e) => {
                    eprintln!("{kind}: stopped at {} connections: {e}", conns.len());
                    break;
                }
            }
        }
        // Give every connection's thread time to reach its idle read.
        std::thread::sleep(Duration::from_secs(1));
        let after = server.rss_kib();
        let per = (after.saturating_sub(before)) as f64 / conns.len().max(1) as f64;
        println!("| {} | {before} | {after} | {per:.1} |", server.kind);
        drop(conns);
    }
}

// ------------------------------------------------------------------ permessage-deflate

/// What the load generator offers in a permessage-deflate cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Offer {
    /// No `Sec-WebSocket-Extensions`: plain text frames.
    Off,
    /// permessage-deflate with context takeover (the default offer).
    Takeover,
    /// permessage-deflate with `server_no_context_takeover` and
    /// `client_no_context_takeover`.
    NoTakeover,
}

impl Offer {
    const ALL: [Offer; 3] = [Offer::Off, Offer::Takeover, Offer::NoTakeover];

    /// The terms offered (none for `Off`).
    fn config(self) -> Option<DeflateConfig> {
        let mut d = DeflateConfig::default();
        match self {
            Offer::Off => return None,
            Offer::Takeover => {}
            Offer::NoTakeover => {
                d.server_no_context_takeover = true;
                d.client_no_context_takeover = true;
            }
        }
        Some(d)
    }

    fn name(self) -> &'static str {
        match self {
            Offer::Off => "off",
            Offer::Takeover => "deflate",
            Offer::NoTakeover => "deflate, no context takeover",
        }
    }

    fn parse(s: &str) -> Option<Offer> {
        match s {
            "off" => Some(Offer::Off),
            "deflate" => Some(Offer::Takeover),
            "nct" => Some(Offer::NoTakeover),
            _ => None,
        }
    }

    /// Opens a connection with this offer, and checks the server's answer:
    /// the agreement, or none when nothing was offered; a server that
    /// declines the offer is an error.
    fn open(self, port: u16) -> io::Result<(TcpStream, Option<Agreement>)> {
        match self.open_or_declined(port)? {
            (_, None) if self != Offer::Off => {
                Err(io::Error::other("the server declined permessage-deflate"))
            }
            opened => Ok(opened),
        }
    }

    /// [`open`](Self::open), where the server may decline the offer.
    fn open_or_declined(self, port: u16) -> io::Result<(TcpStream, Option<Agreement>)> {
        let config = self.config();
        let offer = config.as_ref().map(deflate::client_offer);
        let (stream, answer) = open_offering(port, offer.as_deref())?;
        let agreement = match (config, answer) {
            (None, None) => None,
            (None, Some(a)) => {
                return Err(io::Error::other(format!(
                    "agreed to '{a}' without an offer"
                )))
            }
            (Some(_), None) => None,
            (Some(c), Some(a)) => deflate::client_accept(&c, &[a.as_str()])
                .map_err(|e| io::Error::other(e.to_string()))?,
        };
        Ok((stream, agreement))
    }
}

/// A deterministic pseudo-random sequence (xorshift64*): the payloads are
/// the same in every run.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number below `n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % n.max(1)
    }
}

/// Message `seq` of a JSON feed, exactly `size` bytes of ASCII (for a size
/// of at least 64): `{"seq":N,"records":[{"id":…,"user":"user17",
/// "online":true,"score":421,…},…],"note":"…"}`, with numbers that vary
/// from record to record.
fn json_message(size: usize, seq: u64) -> String {
    const COUNTRIES: [&str; 8] = ["FR", "DE", "US", "JP", "BR", "IN", "NG", "CA"];
    const TAGS: [&str; 8] = [
        "new", "vip", "beta", "mobile", "desktop", "eu", "trial", "staff",
    ];
    const WORDS: [&str; 8] = [
        "online", "away", "busy", "ready", "pending", "sync", "update", "idle",
    ];
    let mut rng = Rng::new(seq + 1);
    let pick = |rng: &mut Rng, list: &[&'static str]| list[rng.below(list.len() as u64) as usize];
    let mut out = format!("{{\"seq\":{seq},\"records\":[");
    let mut id = 1000 + seq * 7;
    loop {
        let record = format!(
            "{{\"id\":{id},\"user\":\"user{}\",\"online\":{},\"score\":{},\"level\":{},\
             \"country\":\"{}\",\"tags\":[\"{}\",\"{}\"],\"last_seen\":{}}}",
            rng.below(1000),
            rng.below(2) == 1,
            rng.below(10_000),
            1 + rng.below(60),
            pick(&mut rng, &COUNTRIES),
            pick(&mut rng, &TAGS),
            pick(&mut rng, &TAGS),
            1_700_000_000 + rng.below(1_000_000),
        );
        // After it there must be room for `],"note":""}`.
        if out.len() + 1 + record.len() + 12 > size {
            break;
        }
        if !out.ends_with('[') {
            out.push(',');
        }
        out.push_str(&record);
        id += 1 + rng.below(5);
    }
    out.push_str("],\"note\":\"");
    let note_end = size.saturating_sub(2).max(out.len());
    while out.len() < note_end {
        if !out.ends_with('"') {
            out.push(' ');
        }
        out.push_str(pick(&mut rng, &WORDS));
    }
    out.truncate(note_end);
    out.push_str("\"}");
    out
}

/// A client's compressor for one connection, as the agreement says
/// (written here with `flate2`, apart from the library's codec).
struct ClientDeflate {
    inner: flate2::Compress,
    reset: bool,
}

impl ClientDeflate {
    fn new(direction: Direction) -> ClientDeflate {
        ClientDeflate {
            inner: flate2::Compress::new_with_window_bits(
                flate2::Compression::new(DeflateConfig::default().level),
                false,
                direction.window_bits.clamp(9, 15),
            ),
            reset: direction.no_context_takeover,
        }
    }

    /// `message` compressed, its sync flush's tail removed (RFC 7692 §7.2.1).
    fn compress(&mut self, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() / 2 + 64);
        let mut input = message;
        // Each round either consumes input or fills the room it was given.
        for _ in 0..message.len() / 64 + 64 {
            out.reserve(input.len() / 2 + 256);
            let before = self.inner.total_in();
            self.inner
                .compress_vec(input, &mut out, flate2::FlushCompress::Sync)
                .expect("compress");
            input = &input[(self.inner.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&deflate::TAIL) {
            out.truncate(out.len() - deflate::TAIL.len());
        }
        if self.reset {
            self.inner.reset();
        }
        out
    }
}

/// A masked client frame with `first` as its first byte (FIN, RSV1, opcode).
fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![first];
    let size = payload.len();
    if size < 126 {
        out.push(0x80 | size as u8);
    } else if size <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend((size as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend((size as u64).to_be_bytes());
    }
    out.extend(key);
    let start = out.len();
    out.extend_from_slice(payload);
    airws::proto::mask::apply_mask(&mut out[start..], key, 0);
    out
}

/// The client frames of a cell, built once and sent in a cycle: text
/// messages of the JSON feed, compressed as the agreement says (or not).
/// The cycle holds at least 1 MiB of messages, well beyond a 32 KiB window,
/// so no message finds a copy of itself in the compressor's window. With
/// context takeover the first message refers to nothing before it, so the
/// cycle can begin again after the last: what each message refers to is
/// the same the second time round.
struct Feed {
    bytes: Vec<u8>,
    /// Where each frame ends in `bytes`.
    ends: Vec<usize>,
    /// The messages' total size, before and after compression.
    plain: u64,
    packed: u64,
}

impl Feed {
    /// `count` messages of `size` bytes (0: enough for 1 MiB), compressed
    /// in `direction` when given.
    fn new(size: usize, count: usize, direction: Option<Direction>) -> Feed {
        let count = if count == 0 {
            ((1 << 20) / size.max(1)).max(16)
        } else {
            count
        };
        let mut compressor = direction.map(ClientDeflate::new);
        let mut feed = Feed {
            bytes: Vec::new(),
            ends: Vec::with_capacity(count),
            plain: 0,
            packed: 0,
        };
        for seq in 0..count {
            let message = json_message(size, seq as u64);
            let frame = match compressor.as_mut() {
                Some(c) => {
                    let packed = c.compress(message.as_bytes());
                    feed.packed += packed.len() as u64;
                    masked_frame(0x81 | 0x40, &packed)
                }
                None => {
                    feed.packed += message.len() as u64;
                    masked_frame(0x81, message.as_bytes())
                }
            };
            feed.plain += message.len() as u64;
            feed.bytes.extend_from_slice(&frame);
            feed.ends.push(feed.bytes.len());
        }
        feed
    }

    /// The messages' size over their size as sent.
    fn ratio(&self) -> f64 {
        self.plain as f64 / self.packed.max(1) as f64
    }

    /// Writes `k` frames from `next` on, going round the cycle; returns the
    /// bytes written.
    fn write(&self, w: &mut TcpStream, next: &mut usize, k: usize) -> io::Result<u64> {
        let mut written = 0;
        let mut left = k;
        while left > 0 {
            let first = *next;
            let last = (first + left).min(self.ends.len());
            let start = if first == 0 { 0 } else { self.ends[first - 1] };
            let piece = &self.bytes[start..self.ends[last - 1]];
            w.write_all(piece)?;
            written += piece.len() as u64;
            left -= last - first;
            *next = last % self.ends.len();
        }
        Ok(written)
    }
}

/// What the connections of a deflate cell count, added up.
#[derive(Default)]
struct Tally {
    messages: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    payload: AtomicU64,
    compressed: AtomicU64,
}

impl Tally {
    /// Counts `messages` echoes, `sent` bytes written, and what `counter`
    /// read since it was last asked.
    fn add(&self, messages: u64, sent: u64, counter: &mut FrameCounter) {
        let [received, payload, compressed] = counter.take_counts();
        self.received.fetch_add(received, Ordering::Relaxed);
        self.payload.fetch_add(payload, Ordering::Relaxed);
        self.compressed.fetch_add(compressed, Ordering::Relaxed);
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.messages.fetch_add(messages, Ordering::Relaxed);
    }

    fn snapshot(&self) -> [u64; 5] {
        [
            &self.messages,
            &self.sent,
            &self.received,
            &self.payload,
            &self.compressed,
        ]
        .map(|a| a.load(Ordering::Relaxed))
    }
}

#[derive(Clone, Debug, Default)]
struct DeflateMeasure {
    msgs_per_s: f64,
    /// Bytes the load generator's sockets sent and received per message
    /// echoed (frames, not TCP/IP headers).
    wire_bytes: f64,
    /// The echoes' size over their payload as received.
    echo_ratio: f64,
    /// The share of echoes that came compressed.
    compressed: f64,
    /// The client's messages' size over their size as sent.
    sent_ratio: f64,
    p50_us: f64,
    server_cpu_us: f64,
}

/// Drives `port` with text messages of the JSON feed, offering `offer`.
fn drive_feed(
    port: u16,
    cell: Cell,
    offer: Offer,
    duration: Duration,
    server: Option<u32>,
) -> io::Result<DeflateMeasure> {
    let mut streams = Vec::with_capacity(cell.connections);
    let mut agreement = None;
    for _ in 0..cell.connections {
        let (s, agreed) = offer.open(port)?;
        streams.push(s);
        agreement = agreed;
    }
    let feed = Arc::new(Feed::new(
        cell.size,
        0,
        agreement.map(|a| a.directions(airws::proto::Role::Client).0),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let ready = Arc::new(Barrier::new(cell.connections + 1));
    let (lat_tx, lat_rx) = mpsc::channel::<Vec<u32>>();
    let mut threads = Vec::new();
    for stream in streams {
        let (feed, stop, tally, ready, lat_tx) = (
            feed.clone(),
            stop.clone(),
            tally.clone(),
            ready.clone(),
            lat_tx.clone(),
        );
        threads.push(std::thread::spawn(move || -> io::Result<()> {
            ready.wait();
            if cell.in_flight == 1 {
                feed_ping_pong(stream, &feed, &stop, &tally, &lat_tx)
            } else {
                feed_pipelined(stream, feed, cell.in_flight, &stop, tally)
            }
        }));
    }
    drop(lat_tx);
    ready.wait();
    std::thread::sleep(Duration::from_millis(200));
    let before = tally.snapshot();
    let cpu_before = server.map(cpu_seconds);
    let started = Instant::now();
    std::thread::sleep(duration);
    let after = tally.snapshot();
    let cpu = server.map(cpu_seconds).zip(cpu_before).map(|(a, b)| a - b);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| io::Error::other("a load thread panicked"))??;
    }
    let mut lat: Vec<u32> = lat_rx.iter().flatten().collect();
    lat.sort_unstable();
    let [messages, sent, received, payload, compressed] =
        [0, 1, 2, 3, 4].map(|i| (after[i] - before[i]) as f64);
    let per = |x: f64| x / messages.max(1.0);
    Ok(DeflateMeasure {
        msgs_per_s: messages / elapsed,
        wire_bytes: per(sent + received),
        echo_ratio: messages * cell.size as f64 / payload.max(1.0),
        compressed: per(compressed),
        sent_ratio: feed.ratio(),
        p50_us: lat
            .get(lat.len().saturating_sub(1) / 2)
            .map_or(0.0, |&ns| f64::from(ns) / 1000.0),
        server_cpu_us: cpu.map_or(0.0, |c| c * 1e6 / messages.max(1.0)),
    })
}

/// One message in flight: send the next of the feed, wait for its echo.
fn feed_ping_pong(
    mut s: TcpStream,
    feed: &Feed,
    stop: &AtomicBool,
    tally: &Tally,
    lat_tx: &mpsc::Sender<Vec<u32>>,
) -> io::Result<()> {
    let mut counter = FrameCounter::new();
    let mut next = 0;
    let mut lat = Vec::with_capacity(1 << 16);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let sent = feed.write(&mut s, &mut next, 1)?;
        let n = counter.read_frames(&mut s)?;
        if lat.len() < 1 << 20 {
            lat.push(t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
        }
        tally.add(n, sent, &mut counter);
    }
    let _ = lat_tx.send(lat);
    Ok(())
}

/// `in_flight` messages outstanding: a writer thread sends the next n
/// messages of the feed for each n echoes the reader counts.
fn feed_pipelined(
    s: TcpStream,
    feed: Arc<Feed>,
    in_flight: usize,
    stop: &AtomicBool,
    tally: Arc<Tally>,
) -> io::Result<()> {
    let mut writer = s.try_clone()?;
    let (token_tx, token_rx) = mpsc::sync_channel::<u64>(in_flight * 2);
    let writer_tally = tally.clone();
    let sending = std::thread::spawn(move || -> io::Result<()> {
        let mut next = 0;
        let sent = feed.write(&mut writer, &mut next, in_flight)?;
        writer_tally.sent.fetch_add(sent, Ordering::Relaxed);
        while let Ok(mut n) = token_rx.recv() {
            while let Ok(more) = token_rx.try_recv() {
                n += more;
            }
            let sent = feed.write(&mut writer, &mut next, n as usize)?;
            writer_tally.sent.fetch_add(sent, Ordering::Relaxed);
        }
        Ok(())
    });
    let mut reader = s;
    let mut counter = FrameCounter::new();
    let mut outstanding = in_flight as u64;
    while outstanding > 0 {
        let n = counter.read_frames(&mut reader)?;
        tally.add(n, 0, &mut counter);
        outstanding -= n;
        if !stop.load(Ordering::Relaxed) {
            outstanding += n;
            if token_tx.send(n).is_err() {
                break;
            }
        }
    }
    drop(token_tx);
    sending
        .join()
        .map_err(|_| io::Error::other("writer panicked"))??;
    Ok(())
}

/// An echo server for this benchmark in Node `ws`, permessage-deflate on
/// the library's terms (zlib level 6, messages of 64 bytes and more).
const NODE_ECHO: &str = r#"'use strict';
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  maxPayload: 64 << 20,
  perMessageDeflate: { threshold: 64, zlibDeflateOptions: { level: 6 } },
});
wss.on('listening', () => process.stdout.write(`PORT ${wss.address().port}\n`));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
// Ends when the benchmark closes standard input, or after an hour.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
setTimeout(() => process.exit(0), 3600 * 1000).unref();
"#;

/// An echo server for this benchmark in Python `websockets` (asyncio), with
/// its default compression: permessage-deflate on, windows of 12 bits,
/// memLevel 5.
const PYTHON_ECHO: &str = r#"import asyncio
import os
import sys
import threading

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws):
    # The load generator ends its connections without a closing handshake.
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


def watch_stdin():
    sys.stdin.read()
    os._exit(0)


async def main():
    async with serve(echo, "127.0.0.1", 0, max_size=64 << 20, ping_interval=None) as server:
        print("PORT", server.sockets[0].getsockname()[1], flush=True)
        # Ends when the benchmark closes standard input, or after an hour.
        threading.Thread(target=watch_stdin, daemon=True).start()
        await asyncio.sleep(3600)


asyncio.run(main())
"#;

/// The servers a deflate table can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    /// `echo_server --deflate`, in a process of this binary.
    Airws,
    Node,
    Python,
}

impl Peer {
    const ALL: [Peer; 3] = [Peer::Airws, Peer::Node, Peer::Python];

    fn name(self) -> &'static str {
        match self {
            Peer::Airws => "airws",
            Peer::Node => "Node ws",
            Peer::Python => "Python websockets",
        }
    }

    /// Its name on the command line.
    fn short(self) -> &'static str {
        match self {
            Peer::Airws => "airws",
            Peer::Node => "node",
            Peer::Python => "python",
        }
    }

    /// Starts the server; for Node and Python, the peers `bash .ci/peers.sh`
    /// installs (`AIRWS_NODE` and `AIRWS_PYTHON` name other binaries, as for
    /// the interoperability tests).
    fn start(self) -> io::Result<Server> {
        self.start_with(None)
    }

    /// [`start`](Self::start); ours with a memory budget of `budget_mib`
    /// instead of the default.
    fn start_with(self, budget_mib: Option<usize>) -> io::Result<Server> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let script = |ext: &str, text: &str| -> io::Result<PathBuf> {
            let path =
                std::env::temp_dir().join(format!("airws-bench-{}-echo.{ext}", std::process::id()));
            std::fs::write(&path, text)?;
            Ok(path)
        };
        match self {
            Peer::Airws => Ok(Server::start_with(
                "airws-deflate",
                &budget_mib
                    .map(|b| b.to_string())
                    .into_iter()
                    .collect::<Vec<_>>(),
            )),
            Peer::Node => {
                let modules = root.join("tests/peers/node_modules");
                if !modules.join("ws").is_dir() {
                    return Err(io::Error::other("no ws in tests/peers/node_modules"));
                }
                let node = std::env::var_os("AIRWS_NODE").unwrap_or_else(|| "node".into());
                let path = script("js", NODE_ECHO)?;
                let mut command = Command::new(node);
                command.arg(&path).env("NODE_PATH", modules);
                Server::spawn(self.name(), command, Some(path))
            }
            Peer::Python => {
                let python = std::env::var_os("AIRWS_PYTHON")
                    .map_or_else(|| root.join(".ci/.venv/bin/python"), PathBuf::from);
                if !python.exists() {
                    return Err(io::Error::other("no Python venv in .ci/.venv"));
                }
                let path = script("py", PYTHON_ECHO)?;
                let mut command = Command::new(python);
                command.arg(&path);
                Server::spawn(self.name(), command, Some(path))
            }
        }
    }
}

/// Starts the servers of `peers` that can be started, saying why not for
/// the others.
fn start_peers(peers: &[Peer]) -> Vec<(Peer, Server)> {
    peers
        .iter()
        .filter_map(|&p| match p.start() {
            Ok(s) => Some((p, s)),
            Err(e) => {
                eprintln!(
                    "{}: not measured ({e}); `bash .ci/peers.sh` installs it",
                    p.name()
                );
                None
            }
        })
        .collect()
}

/// One round trip through our own client with `offer`'s terms: the echo of
/// a 16 KiB message of the feed must come back intact; returns what the
/// client's `extensions()` reports.
fn check_with_our_client(port: u16, offer: Offer) -> Result<String, String> {
    let mut config = Config::default().no_reconnect();
    if let Some(d) = offer.config() {
        config = config.permessage_deflate(d).map_err(|e| e.to_string())?;
    }
    let url = format!("ws://127.0.0.1:{port}/");
    let wait = Duration::from_secs(5);
    let ws = WebSocket::open_with(config, &url, &[], wait).map_err(|e| e.to_string())?;
    let message = json_message(16 << 10, 7);
    ws.send_message(WebSocket::FMT_TEXT, message.as_str())
        .map_err(|e| e.to_string())?;
    let echo = ws.receive(wait).map_err(|e| e.to_string())?;
    let extensions = ws.extensions();
    let _ = ws.close_and_wait(WebSocket::CLOSE_NORMAL, wait);
    match echo {
        Received::Text(t) if t == message => Ok(extensions),
        other => Err(format!("a wrong echo: {other:?}")),
    }
}

/// The compression ratio of the feed itself, as our client's compressor
/// makes it (level 6, 15-bit window).
fn feed_ratios(sizes: &[usize]) {
    println!("\n## The JSON feed: size over compressed size\n");
    println!("| message size | messages in the cycle | each alone (no context takeover) | with context takeover |");
    println!("|---|---|---|---|");
    for &size in sizes {
        let direction = |no_context_takeover| Direction {
            window_bits: 15,
            no_context_takeover,
        };
        let alone = Feed::new(size, 0, Some(direction(true)));
        let taken = Feed::new(size, 0, Some(direction(false)));
        println!(
            "| {size} | {} | {:.2} | {:.2} |",
            alone.ends.len(),
            alone.ratio(),
            taken.ratio()
        );
    }
}

/// The deflate table: for each cell and server, the three offers, `runs`
/// rounds alternating between them; medians, and ratios to "off" of the
/// same server in the same run of the benchmark.
fn deflate_table(servers: &[(Peer, Server)], cells: &[Cell], runs: usize, window: Duration) {
    println!("\n## permessage-deflate: JSON text echoed\n");
    println!("| server | size | in flight | conns | compression | msgs/s | ×off | wire B/msg | off/this | echo ratio | server CPU µs/msg | ×off | p50 µs |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &cell in cells {
        for (peer, server) in servers {
            let mut results: Vec<Vec<DeflateMeasure>> = vec![Vec::new(); Offer::ALL.len()];
            for _ in 0..runs {
                for (i, &offer) in Offer::ALL.iter().enumerate() {
                    match drive_feed(server.port, cell, offer, window, Some(server.child.id())) {
                        Ok(m) => results[i].push(m),
                        Err(e) => eprintln!("{} {cell:?} {}: {e}", peer.name(), offer.name()),
                    }
                }
            }
            let med = |i: usize, f: fn(&DeflateMeasure) -> f64| {
                median(results[i].iter().map(f).collect())
            };
            for (i, &offer) in Offer::ALL.iter().enumerate() {
                if results[i].is_empty() {
                    continue;
                }
                let ratio = |f: fn(&DeflateMeasure) -> f64| med(i, f) / med(0, f).max(1e-9);
                let wire = med(i, |m| m.wire_bytes);
                let p50 = if cell.in_flight == 1 {
                    format!("{:.0}", med(i, |m| m.p50_us))
                } else {
                    String::new()
                };
                let compressed = med(i, |m| m.compressed);
                let note = if offer != Offer::Off && compressed < 0.99 {
                    format!(" ({:.0}% of echoes compressed)", compressed * 100.0)
                } else {
                    String::new()
                };
                println!(
                    "| {} | {} | {} | {} | {}{note} | {:.0} | {:.2} | {wire:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {p50} |",
                    peer.name(),
                    cell.size,
                    cell.in_flight,
                    cell.connections,
                    offer.name(),
                    med(i, |m| m.msgs_per_s),
                    ratio(|m| m.msgs_per_s),
                    med(0, |m| m.wire_bytes) / wire.max(1.0),
                    med(i, |m| m.echo_ratio),
                    med(i, |m| m.server_cpu_us),
                    ratio(|m| m.server_cpu_us),
                );
            }
        }
    }
}

/// How long a connection stays quiet before the memory check after it:
/// the default `Config::release_buffers_after` (10 s) and 2 s more.
const QUIET: Duration = Duration::from_secs(12);

/// One server's figures in a memory run, in KiB.
struct MemoryRun {
    conns: usize,
    negotiated: usize,
    compressed: usize,
    before: u64,
    active: u64,
    quiet: u64,
}

/// Resident memory per connection of servers holding `n` connections, each
/// of which negotiated `offer` and exchanged one message of `size` bytes of
/// the feed; read 1 s after the last message and again once the
/// connections have been quiet for [`QUIET`]. A fresh server per offer and
/// run; the servers of a run hold their connections at the same time when
/// the descriptors allow it.
fn deflate_memory(n: usize, size: usize, runs: usize, peers: &[Peer], budget_mib: Option<usize>) {
    let variants: Vec<(Peer, Offer)> = peers
        .iter()
        .flat_map(|&p| Offer::ALL.map(|o| (p, o)))
        .collect();
    let group = (12_000 / n.max(1)).clamp(1, variants.len());
    let mut results: Vec<Vec<MemoryRun>> = (0..variants.len()).map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (g, chunk) in variants.chunks(group).enumerate() {
            let mut held = Vec::new();
            for (k, &(peer, offer)) in chunk.iter().enumerate() {
                let server = match peer.start_with(budget_mib) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("{}: not measured ({e})", peer.name());
                        continue;
                    }
                };
                std::thread::sleep(Duration::from_millis(300));
                let before = server.rss_kib();
                let mut conns = Vec::with_capacity(n);
                let (mut negotiated, mut compressed) = (0, 0);
                let mut feeds = [None, None];
                for _ in 0..n {
                    match one_message(server.port, offer, size, &mut feeds) {
                        Ok((s, agreed, rsv1)) => {
                            negotiated += usize::from(agreed);
                            compressed += usize::from(rsv1);
                            conns.push(s);
                        }
                        Err(e) => {
                            eprintln!(
                                "{} {}: stopped at {} connections: {e}",
                                peer.name(),
                                offer.name(),
                                conns.len()
                            );
                            break;
                        }
                    }
                }
                held.push((g * group + k, server, conns, before, negotiated, compressed));
            }
            std::thread::sleep(Duration::from_secs(1));
            let active: Vec<u64> = held.iter().map(|h| h.1.rss_kib()).collect();
            std::thread::sleep(QUIET - Duration::from_secs(1));
            for ((v, server, conns, before, negotiated, compressed), active) in
                held.into_iter().zip(active)
            {
                results[v].push(MemoryRun {
                    conns: conns.len(),
                    negotiated,
                    compressed,
                    before,
                    active,
                    quiet: server.rss_kib(),
                });
            }
        }
    }
    println!("\n## permessage-deflate: resident memory per connection ({n} connections, one {size}-byte message each)\n");
    println!("| server | compression | negotiated / compressed echoes | before (KiB) | 1 s after the message: KiB per conn | above off | after {} s quiet: KiB per conn | above off |", QUIET.as_secs());
    println!("|---|---|---|---|---|---|---|---|");
    let per = |v: usize, f: fn(&MemoryRun) -> u64| {
        median(
            results[v]
                .iter()
                .map(|m| f(m).saturating_sub(m.before) as f64 / m.conns.max(1) as f64)
                .collect(),
        )
    };
    for (v, &(peer, offer)) in variants.iter().enumerate() {
        let r = &results[v];
        if r.is_empty() {
            continue;
        }
        // The same server's "off" row, the first of its three.
        let off = v - v % Offer::ALL.len();
        let least = |f: fn(&MemoryRun) -> usize| r.iter().map(f).min().unwrap_or(0);
        let (active, quiet) = (per(v, |m| m.active), per(v, |m| m.quiet));
        println!(
            "| {} | {} | {} / {} of {} | {:.0} | {active:.1} | {:.1} | {quiet:.1} | {:.1} |",
            peer.name(),
            offer.name(),
            least(|m| m.negotiated),
            least(|m| m.compressed),
            least(|m| m.conns),
            median(r.iter().map(|m| m.before as f64).collect()),
            active - per(off, |m| m.active),
            quiet - per(off, |m| m.quiet),
        );
    }
}

/// Opens a connection with `offer` (which the server may decline), sends
/// the feed's first message and reads its echo; says whether deflate was
/// agreed and the echo came compressed. `feeds` keeps the frame for the
/// next connections, plain and compressed.
fn one_message(
    port: u16,
    offer: Offer,
    size: usize,
    feeds: &mut [Option<Feed>; 2],
) -> io::Result<(TcpStream, bool, bool)> {
    let (mut s, agreement) = offer.open_or_declined(port)?;
    let feed = feeds[usize::from(agreement.is_some())].get_or_insert_with(|| {
        Feed::new(
            size,
            1,
            agreement.map(|a| a.directions(airws::proto::Role::Client).0),
        )
    });
    feed.write(&mut s, &mut 0, 1)?;
    let mut counter = FrameCounter::new();
    counter.read_frames(&mut s)?;
    let [_, _, compressed] = counter.take_counts();
    Ok((s, agreement.is_some(), compressed > 0))
}

/// `deflate`: the feed's ratios, the checks through our client, the table,
/// and memory per connection.
fn deflate_bench(runs: usize, window: Duration, memory_n: usize) {
    println!("# airws benchmark: permessage-deflate\n");
    println!(
        "Loopback, {runs} run(s) per cell alternating between the offers, {window:?} each; medians.",
    );
    feed_ratios(&[256, 16 << 10]);
    let servers = start_peers(&Peer::ALL);
    println!("\n## Negotiated (our client, one 16 KiB round trip)\n");
    for (peer, server) in &servers {
        for offer in [Offer::Takeover, Offer::NoTakeover] {
            match check_with_our_client(server.port, offer) {
                Ok(ext) => println!("- {} with {}: `{ext}`", peer.name(), offer.name()),
                Err(e) => println!("- {} with {}: FAILED: {e}", peer.name(), offer.name()),
            }
        }
    }
    let cells: Vec<Cell> = [
        (256, 1, 1),
        (256, 32, 16),
        (16 << 10, 1, 1),
        (16 << 10, 32, 16),
    ]
    .map(|(size, in_flight, connections)| Cell {
        size,
        in_flight,
        connections,
    })
    .to_vec();
    deflate_table(&servers, &cells, runs, window);
    let peers: Vec<Peer> = servers.iter().map(|(p, _)| *p).collect();
    drop(servers);
    for size in [256, 16 << 10] {
        deflate_memory(memory_n, size, runs, &peers, None);
    }
}

/// `deflate-drive PORT SIZE IN_FLIGHT CONNECTIONS SECONDS off|deflate|nct
/// [SERVER_PID]`: one deflate cell against a server started apart.
fn deflate_drive_one(args: &[String]) {
    let num = |i: usize| args.get(i).and_then(|a| a.parse::<usize>().ok());
    let (Some(port), Some(size), Some(in_flight), Some(connections), Some(seconds), Some(offer)) = (
        num(0).and_then(|p| u16::try_from(p).ok()),
        num(1),
        num(2),
        num(3),
        num(4),
        args.get(5).and_then(|o| Offer::parse(o)),
    ) else {
        eprintln!("usage: bench deflate-drive PORT SIZE IN_FLIGHT CONNECTIONS SECONDS off|deflate|nct [SERVER_PID]");
        std::process::exit(2);
    };
    let cell = Cell {
        size: size.max(64),
        in_flight: in_flight.max(1),
        connections: connections.max(1),
    };
    let server = args.get(6).and_then(|a| a.parse::<u32>().ok());
    let window = Duration::from_secs(seconds.clamp(1, 600) as u64);
    match drive_feed(port, cell, offer, window, server) {
        Ok(m) => println!(
            "{cell:?} {}: {:.0} msgs/s, {:.0} wire B/msg, echo ratio {:.2}, sent ratio {:.2}, \
             {:.0}% compressed, p50 {:.0} µs, server CPU {:.2} µs/msg",
            offer.name(),
            m.msgs_per_s,
            m.wire_bytes,
            m.echo_ratio,
            m.sent_ratio,
            m.compressed * 100.0,
            m.p50_us,
            m.server_cpu_us
        ),
        Err(e) => {
            eprintln!("{cell:?}: {e}");
            std::process::exit(1);
        }
    }
}

// ------------------------------------------------------------------ main

/// Our client and tungstenite's against the tungstenite echo server on
/// `port`: rates, and the CPU time this process spent per message.
fn clients(port: u16, runs: usize, window: Duration) {
    println!("\n## Clients, against the tungstenite echo server\n");
    println!("| size | in flight | airws client msgs/s | tungstenite client msgs/s | ratio | airws CPU µs/msg | tungstenite CPU µs/msg |");
    println!("|---|---|---|---|---|---|---|");
    for (size, in_flight) in [(16usize, 1usize), (16, 32), (1024, 32), (64 << 10, 8)] {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..runs {
            ours.push(our_client(port, size, in_flight, window));
            theirs.push(tungstenite_client(port, size, in_flight, window));
        }
        let rates = |v: &[ClientRun]| median(v.iter().map(|r| r.msgs_per_s).collect());
        let cpus = |v: &[ClientRun]| median(v.iter().map(|r| r.cpu_us).collect());
        let (o, t) = (rates(&ours), rates(&theirs));
        println!(
            "| {size} | {in_flight} | {o:.0} | {t:.0} | {:.2} | {:.1} | {:.1} |",
            o / t.max(1.0),
            cpus(&ours),
            cpus(&theirs),
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `drive PORT SIZE IN_FLIGHT CONNECTIONS SECONDS`: one cell against a
/// server started apart (`bench serve KIND`), for a profiler attached to it.
fn drive_one(args: &[String]) {
    let num = |i: usize, default: usize| {
        args.get(i)
            .and_then(|a| a.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let Ok(port) = u16::try_from(num(0, 0)) else {
        eprintln!("usage: bench drive PORT SIZE IN_FLIGHT CONNECTIONS SECONDS");
        std::process::exit(2);
    };
    let cell = Cell {
        size: num(1, 16),
        in_flight: num(2, 1).max(1),
        connections: num(3, 1).max(1),
    };
    let seconds = num(4, 5).clamp(1, 600) as u64;
    let server = args.get(5).and_then(|a| a.parse::<u32>().ok());
    match drive(port, cell, Duration::from_secs(seconds), server) {
        Ok(m) => println!(
            "{cell:?}: {:.0} msgs/s, {:.0} MB/s, p50 {:.0} µs, p99 {:.0} µs, server CPU {:.2} µs/msg, load generator CPU {:.2} µs/msg",
            m.msgs_per_s, m.mb_per_s, m.p50_us, m.p99_us, m.server_cpu_us, m.generator_cpu_us
        ),
        Err(e) => {
            eprintln!("{cell:?}: {e}");
            std::process::exit(1);
        }
    }
}

/// Where the uWebSockets echo server of `examples/uws_echo` is: the path
/// after `--uws` (both taken out of `args`), else `AIRWS_UWS_ECHO`.
fn uws_path(args: &mut Vec<String>) -> Option<PathBuf> {
    if let Some(i) = args.iter().position(|a| a == "--uws") {
        args.remove(i);
        if i < args.len() {
            return Some(PathBuf::from(args.remove(i)));
        }
        eprintln!("--uws needs the path of a built uws_echo");
        std::process::exit(2);
    }
    std::env::var_os("AIRWS_UWS_ECHO")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// The echo servers of the tables, in the order each round visits them:
/// ours, tungstenite, uWebSockets when `uws` names it (the table says
/// when it is skipped, and why), raw TCP last.
fn start_servers(uws: Option<&Path>) -> Vec<Server> {
    let mut servers = vec![Server::start("airws"), Server::start("tungstenite")];
    match uws.map(|path| (path, Server::start_uws(path))) {
        Some((_, Ok(server))) => servers.push(server),
        Some((path, Err(e))) => println!(
            "uWebSockets: skipped, {} did not start ({e}); see examples/uws_echo/README.md\n",
            path.display()
        ),
        None => println!(
            "uWebSockets: skipped (no AIRWS_UWS_ECHO or --uws PATH; examples/uws_echo/README.md builds it)\n"
        ),
    }
    servers.push(Server::start("raw"));
    servers
}

/// Runs `cell` `runs` times against every server, the rounds alternating
/// between them; the measures of each server, in the order of `servers`.
fn rounds(servers: &[Server], cell: Cell, runs: usize, window: Duration) -> Vec<Vec<Measure>> {
    let mut results: Vec<Vec<Measure>> = vec![Vec::new(); servers.len()];
    for _ in 0..runs {
        for (i, s) in servers.iter().enumerate() {
            match drive(s.port, cell, window, Some(s.child.id())) {
                Ok(m) => results[i].push(m),
                Err(e) => eprintln!("{} {cell:?}: {e}", s.kind),
            }
        }
    }
    results
}

/// The median of `f` over one server's measures.
fn med(results: &[Measure], f: fn(&Measure) -> f64) -> f64 {
    median(results.iter().map(f).collect())
}

/// The table row of `cells` markdown cells, `cells` first and empty ones
/// after them up to `width`.
fn row(cells: &[String], width: usize) -> String {
    let mut out = String::from("|");
    for i in 0..width.max(cells.len()) {
        out.push(' ');
        out.push_str(cells.get(i).map_or("", String::as_str));
        out.push_str(" |");
    }
    out
}

/// The echo table: every size, 1 and 32 (8 for 1 MiB) in flight, 1 and 16
/// connections, against every server in `servers` (ours first, raw TCP
/// last).
fn echo_table(servers: &[Server], runs: usize, window: Duration) {
    let raw = servers.len() - 1;
    let others = &servers[1..];
    println!("## Echo servers\n");
    let mut header: Vec<String> = [
        "size",
        "in flight",
        "conns",
        "airws msgs/s",
        "MB/s",
        "p50 µs",
        "p99 µs",
    ]
    .map(String::from)
    .to_vec();
    header.extend(others.iter().map(|s| format!("{} msgs/s", s.kind)));
    header.extend(others.iter().map(|s| format!("airws/{}", s.kind)));
    header.push("server CPU µs/msg: airws".into());
    header.extend(others.iter().map(|s| s.kind.to_string()));
    let width = header.len();
    println!("{}", row(&header, width));
    println!("|{}", "---|".repeat(width));
    for size in [16usize, 1024, 64 << 10, 1 << 20] {
        for in_flight in [1usize, 32] {
            for connections in [1usize, 16] {
                let in_flight = if size >= 1 << 20 {
                    in_flight.min(8)
                } else {
                    in_flight
                };
                let cell = Cell {
                    size,
                    in_flight,
                    connections,
                };
                let results = rounds(servers, cell, runs, window);
                let rate = |i: usize| med(&results[i], |m| m.msgs_per_s);
                let ours = rate(0);
                let mut cells = vec![
                    size.to_string(),
                    in_flight.to_string(),
                    connections.to_string(),
                    format!("{ours:.0}"),
                    format!("{:.0}", med(&results[0], |m| m.mb_per_s)),
                ];
                if in_flight == 1 {
                    cells.push(format!("{:.0}", med(&results[0], |m| m.p50_us)));
                    cells.push(format!("{:.0}", med(&results[0], |m| m.p99_us)));
                } else {
                    cells.extend([String::new(), String::new()]);
                }
                cells.extend((1..=raw).map(|i| format!("{:.0}", rate(i))));
                cells.extend((1..=raw).map(|i| format!("{:.2}", ours / rate(i).max(1.0))));
                cells.extend(
                    (0..=raw).map(|i| format!("{:.2}", med(&results[i], |m| m.server_cpu_us))),
                );
                println!("{}", row(&cells, width));
                if in_flight == 1 && connections == 1 {
                    let p50s: Vec<String> = (1..=raw)
                        .map(|i| {
                            format!("{} {:.0}", servers[i].kind, med(&results[i], |m| m.p50_us))
                        })
                        .collect();
                    let note = format!("p50 µs: {}", p50s.join(", "));
                    println!("{}", row(&[String::new(), note], width));
                }
            }
        }
    }
}

/// The cells of `bench servers`: where a server's own cost per message
/// shows, one connection unless noted.
const SERVER_CELLS: [(&str, Cell); 5] = [
    (
        "16 B, 1 connection",
        Cell {
            size: 16,
            in_flight: 32,
            connections: 1,
        },
    ),
    (
        "16 B, 16 connections",
        Cell {
            size: 16,
            in_flight: 32,
            connections: 16,
        },
    ),
    (
        "1 KiB, 1 connection",
        Cell {
            size: 1024,
            in_flight: 32,
            connections: 1,
        },
    ),
    (
        "64 KiB, 1 connection",
        Cell {
            size: 64 << 10,
            in_flight: 32,
            connections: 1,
        },
    ),
    (
        "1 MiB, 8 in flight",
        Cell {
            size: 1 << 20,
            in_flight: 8,
            connections: 1,
        },
    ),
];

/// `bench servers`: each server's CPU time per message and msgs/s in the
/// cells of [`SERVER_CELLS`] (32 in flight unless noted), throughput
/// against raw TCP's in the same run, the load generator's own CPU time
/// per message, and every round's figures.
fn servers_table(servers: &[Server], runs: usize, window: Duration) {
    let raw = servers.len() - 1;
    let names: Vec<&str> = servers.iter().map(|s| s.kind).collect();
    println!(
        "## Servers: CPU per message ({} round(s) alternating between servers, {:?} each; medians)\n",
        runs, window
    );
    let mut header = vec!["cell".to_string()];
    header.extend(names.iter().enumerate().map(|(i, n)| {
        if i == 0 {
            format!("server CPU µs/msg: {n}")
        } else {
            n.to_string()
        }
    }));
    header.extend(names.iter().enumerate().map(|(i, n)| {
        if i == 0 {
            format!("msgs/s: {n}")
        } else {
            n.to_string()
        }
    }));
    header.extend(names[..raw].iter().map(|n| format!("{n}/raw")));
    let width = header.len();
    let mut generator = Vec::new();
    let mut all_rounds = Vec::new();
    println!("{}", row(&header, width));
    println!("|{}", "---|".repeat(width));
    for (label, cell) in SERVER_CELLS {
        let results = rounds(servers, cell, runs, window);
        let rate = |i: usize| med(&results[i], |m| m.msgs_per_s);
        let mut cells = vec![label.to_string()];
        cells.extend((0..=raw).map(|i| format!("{:.2}", med(&results[i], |m| m.server_cpu_us))));
        cells.extend((0..=raw).map(|i| format!("{:.0}", rate(i))));
        cells.extend((0..raw).map(|i| format!("{:.2}", rate(i) / rate(raw).max(1.0))));
        println!("{}", row(&cells, width));
        let mut line = vec![label.to_string()];
        line.extend((0..=raw).map(|i| format!("{:.2}", med(&results[i], |m| m.generator_cpu_us))));
        generator.push(line);
        for (i, r) in results.iter().enumerate() {
            let each: Vec<String> = r
                .iter()
                .map(|m| format!("{:.0} ({:.2})", m.msgs_per_s, m.server_cpu_us))
                .collect();
            all_rounds.push(format!("- {label}, {}: {}", names[i], each.join(", ")));
        }
    }
    println!("\n### The load generator's CPU µs per message (this process), by server\n");
    let mut header = vec!["cell".to_string()];
    header.extend(names.iter().map(|n| n.to_string()));
    println!("{}", row(&header, header.len()));
    println!("|{}", "---|".repeat(header.len()));
    for line in generator {
        println!("{}", row(&line, header.len()));
    }
    println!("\n### Every round: msgs/s (server CPU µs/msg)\n");
    for line in all_rounds {
        println!("{line}");
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let uws = uws_path(&mut args);
    match args.first().map(String::as_str) {
        Some("serve") => {
            let budget = args.get(2).and_then(|b| b.parse().ok());
            return serve(args.get(1).map_or("airws", String::as_str), budget);
        }
        Some("memory") => {
            let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000);
            return memory(n);
        }
        Some("drive") => return drive_one(&args[1..]),
        Some("clients") => {
            let server = Server::start("tungstenite");
            return clients(server.port, 3, Duration::from_secs(1));
        }
        Some("servers") => {
            let (runs, window) = if args.get(1).map(String::as_str) == Some("quick") {
                (1, Duration::from_millis(300))
            } else {
                (3, Duration::from_secs(2))
            };
            let servers = start_servers(uws.as_deref());
            servers_table(&servers, runs, window);
            return clients(servers[1].port, runs, window.min(Duration::from_secs(1)));
        }
        Some("deflate") => {
            return if args.get(1).map(String::as_str) == Some("quick") {
                deflate_bench(1, Duration::from_millis(300), 200)
            } else {
                deflate_bench(3, Duration::from_secs(1), 1000)
            };
        }
        Some("deflate-memory") => {
            let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000);
            let size = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(16 << 10);
            let peers: Vec<Peer> = match args.get(3) {
                Some(name) => Peer::ALL
                    .into_iter()
                    .filter(|p| p.short() == name.as_str())
                    .collect(),
                None => Peer::ALL.to_vec(),
            };
            let budget = args.get(4).and_then(|b| b.parse().ok());
            return deflate_memory(n, size, 3, &peers, budget);
        }
        Some("deflate-drive") => return deflate_drive_one(&args[1..]),
        _ => {}
    }
    let quick = args.first().map(String::as_str) == Some("quick");
    let (runs, window) = if quick {
        (1, Duration::from_millis(300))
    } else {
        (3, Duration::from_secs(1))
    };

    let servers = start_servers(uws.as_deref());
    println!("# airws benchmark\n");
    println!(
        "Loopback, {} run(s) per cell alternating between servers, {:?} each; medians.\n",
        runs, window
    );
    echo_table(&servers, runs, window);
    println!();
    servers_table(&servers, runs, if quick { window } else { 2 * window });
    println!();
    clients(servers[1].port, runs, window);

    let (mask, copy) = masking();
    println!("\n## Masking 1 MiB\n");
    println!("| apply_mask GB/s | memcpy GB/s | ratio |");
    println!("|---|---|---|");
    println!("| {mask:.2} | {copy:.2} | {:.2} |", mask / copy.max(1e-9));
    drop(servers);
    memory(if quick { 200 } else { 1000 });
    if quick {
        // One short deflate cell, our server only (`deflate` has the rest).
        let servers = start_peers(&[Peer::Airws]);
        let cell = Cell {
            size: 16 << 10,
            in_flight: 32,
            connections: 1,
        };
        deflate_table(&servers, &[cell], runs, window);
    }
}
