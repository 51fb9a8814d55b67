//! Benchmark: our echo server (`examples/echo_server.rs`) against a
//! `tungstenite` echo server (its sync API, a thread per connection) and a
//! raw TCP echo, driven by one load generator over 127.0.0.1; our client
//! against tungstenite's client; masking against `memcpy`; and resident
//! memory per idle connection.
//!
//!     cargo run --release --example bench            # everything (a few minutes)
//!     cargo run --release --example bench -- quick    # shorter cells, one run each
//!     cargo run --release --example bench -- memory [N]
//!     cargo run --release --example bench -- clients  # the client table only
//!     cargo run --release --example bench -- serve airws|tungstenite|raw
//!     cargo run --release --example bench -- drive PORT SIZE IN_FLIGHT CONNS SECONDS [SERVER_PID]
//!
//! Each server runs in its own process (this binary, started again with
//! `serve KIND`), so that its memory can be read from /proc. Every figure is
//! the median of runs that alternate between the servers, and the ratios
//! compare figures of the same run.

#[allow(dead_code)]
#[path = "echo_server.rs"]
mod echo_server;

use airws::{Event, EventDispatcher, WebSocket, WebSocketEvent};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ servers

fn serve(kind: &str) {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let port = match kind {
        "airws" => {
            let server = echo_server::listen(addr).expect("listen");
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
}

impl Server {
    fn start(kind: &'static str) -> Server {
        let exe = std::env::current_exe().expect("own path");
        let mut child = Command::new(exe)
            .args(["serve", kind])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("its port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .expect("PORT line");
        Server { kind, child, port }
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
    }
}

// ------------------------------------------------------------------ load generator

/// Opens a connection and completes the upgrade.
fn open(port: u16) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let head = read_head(&mut s)?;
    if !head.starts_with("HTTP/1.1 101") {
        return Err(io::Error::other(format!("no upgrade: {head}")));
    }
    Ok(s)
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
}

impl FrameCounter {
    fn new() -> FrameCounter {
        FrameCounter {
            buf: vec![0u8; 256 << 10],
            start: 0,
            end: 0,
            skip: 0,
            fin: false,
        }
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
}

/// Drives `port` with `cell` for `duration`; `server` is the server's PID,
/// whose CPU time is read around the measured window.
fn drive(port: u16, cell: Cell, duration: Duration, server: Option<u32>) -> io::Result<Measure> {
    let frame = Arc::new(frame(cell.size));
    let stop = Arc::new(AtomicBool::new(false));
    let counted = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Barrier::new(cell.connections + 1));
    let (lat_tx, lat_rx) = mpsc::channel::<Vec<u32>>();
    let mut threads = Vec::new();
    for _ in 0..cell.connections {
        let stream = open(port)?;
        let (frame, stop, counted, ready, lat_tx) = (
            frame.clone(),
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
                pipelined(stream, frame, cell.in_flight, &stop, &counted)
            }
        }));
    }
    drop(lat_tx);
    ready.wait();
    // A short warm-up, then the measured window.
    std::thread::sleep(Duration::from_millis(200));
    let before = counted.load(Ordering::Relaxed);
    let cpu_before = server.map(cpu_seconds);
    let started = Instant::now();
    std::thread::sleep(duration);
    let after = counted.load(Ordering::Relaxed);
    let cpu = server.map(cpu_seconds).zip(cpu_before).map(|(a, b)| a - b);
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

/// `in_flight` messages outstanding: a writer thread sends one more for
/// each echo the reader counts.
fn pipelined(
    s: TcpStream,
    frame: Arc<Vec<u8>>,
    in_flight: usize,
    stop: &AtomicBool,
    counted: &AtomicU64,
) -> io::Result<()> {
    let mut writer = s.try_clone()?;
    let (token_tx, token_rx) = mpsc::sync_channel::<u64>(in_flight * 2);
    // The frames of a whole window, built once: n echoes are answered with
    // n frames in one write, so the generator costs little per message.
    let batch: Vec<u8> = frame.repeat(in_flight);
    let sending = std::thread::spawn(move || -> io::Result<()> {
        writer.write_all(&batch)?;
        while let Ok(mut n) = token_rx.recv() {
            while let Ok(more) = token_rx.try_recv() {
                n += more;
            }
            while n > 0 {
                let k = n.min(in_flight as u64) as usize;
                writer.write_all(&batch[..k * frame.len()])?;
                n -= k as u64;
            }
        }
        Ok(())
    });
    let mut reader = s;
    let mut counter = FrameCounter::new();
    let mut outstanding = in_flight as u64;
    while outstanding > 0 {
        let n = counter.read_frames(&mut reader)?;
        counted.fetch_add(n, Ordering::Relaxed);
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

// ------------------------------------------------------------------ clients

/// Our client: `in_flight` messages outstanding, one more sent from the
/// data listener for each echo.
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
            "{cell:?}: {:.0} msgs/s, {:.0} MB/s, p50 {:.0} µs, p99 {:.0} µs, server CPU {:.2} µs/msg",
            m.msgs_per_s, m.mb_per_s, m.p50_us, m.p99_us, m.server_cpu_us
        ),
        Err(e) => {
            eprintln!("{cell:?}: {e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => return serve(args.get(1).map_or("airws", String::as_str)),
        Some("memory") => {
            let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000);
            return memory(n);
        }
        Some("drive") => return drive_one(&args[1..]),
        Some("clients") => {
            let server = Server::start("tungstenite");
            return clients(server.port, 3, Duration::from_secs(1));
        }
        _ => {}
    }
    let quick = args.first().map(String::as_str) == Some("quick");
    let (runs, window) = if quick {
        (1, Duration::from_millis(300))
    } else {
        (3, Duration::from_secs(1))
    };

    let servers = [
        Server::start("airws"),
        Server::start("tungstenite"),
        Server::start("raw"),
    ];
    println!("# airws benchmark\n");
    println!(
        "Loopback, {} run(s) per cell alternating between servers, {:?} each; medians.\n",
        runs, window
    );
    println!("## Echo servers\n");
    println!("| size | in flight | conns | airws msgs/s | MB/s | p50 µs | p99 µs | tungstenite msgs/s | raw TCP msgs/s | airws/tungstenite | airws/raw | server CPU µs/msg: airws | tungstenite | raw |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
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
                let mut results: Vec<Vec<Measure>> = vec![Vec::new(); servers.len()];
                for _ in 0..runs {
                    for (i, s) in servers.iter().enumerate() {
                        match drive(s.port, cell, window, Some(s.child.id())) {
                            Ok(m) => results[i].push(m),
                            Err(e) => eprintln!("{} {cell:?}: {e}", s.kind),
                        }
                    }
                }
                let med =
                    |i: usize, f: fn(&Measure) -> f64| median(results[i].iter().map(f).collect());
                let ours = med(0, |m| m.msgs_per_s);
                let tung = med(1, |m| m.msgs_per_s);
                let raw = med(2, |m| m.msgs_per_s);
                let (p50, p99) = if in_flight == 1 {
                    (
                        format!("{:.0}", med(0, |m| m.p50_us)),
                        format!("{:.0}", med(0, |m| m.p99_us)),
                    )
                } else {
                    ("".into(), "".into())
                };
                println!(
                    "| {size} | {in_flight} | {connections} | {ours:.0} | {:.0} | {p50} | {p99} | {tung:.0} | {raw:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                    med(0, |m| m.mb_per_s),
                    ours / tung.max(1.0),
                    ours / raw.max(1.0),
                    med(0, |m| m.server_cpu_us),
                    med(1, |m| m.server_cpu_us),
                    med(2, |m| m.server_cpu_us),
                );
                if in_flight == 1 && connections == 1 {
                    println!(
                        "|  | p50 µs: tungstenite {:.0}, raw {:.0} |  |  |  |  |  |  |  |  |  |  |  |  |",
                        med(1, |m| m.p50_us),
                        med(2, |m| m.p50_us)
                    );
                }
            }
        }
    }

    clients(servers[1].port, runs, window);

    let (mask, copy) = masking();
    println!("\n## Masking 1 MiB\n");
    println!("| apply_mask GB/s | memcpy GB/s | ratio |");
    println!("|---|---|---|");
    println!("| {mask:.2} | {copy:.2} | {:.2} |", mask / copy.max(1e-9));
    drop(servers);
    memory(if quick { 200 } else { 1000 });
}
