//! Tests that measure or exhaust the whole process (its descriptors, its
//! memory), each in a child process of its own: the test binary runs
//! itself again with `AIRWS_CHILD` naming the test, under the limits the
//! test sets with `prlimit`, and the parent checks how it ended.

mod support;

use airws::ServerSocket;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a child may run before it is killed and the test fails.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// Runs the test `name` in a child process with `limits` (`prlimit`
/// options such as `--nofile=256`) and asserts that it succeeds; in the
/// child, runs `body`.
fn in_child(name: &str, limits: &[&str], body: impl FnOnce()) {
    if std::env::var("AIRWS_CHILD").as_deref() == Ok(name) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new("prlimit")
        .args(limits)
        .arg("--")
        .arg(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env("AIRWS_CHILD", name)
        .stdin(Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) runs the child");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(CHILD_LIMIT) {
        Ok(status) => {
            let status = status.expect("the child's status");
            assert!(
                status.success(),
                "{name} failed in its child process: {status}"
            );
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{name} did not finish within {CHILD_LIMIT:?} in its child process");
        }
    }
}

/// The README's server (`examples/echo_server.rs`).
#[allow(dead_code)]
#[path = "../examples/echo_server.rs"]
mod echo_server;

/// Each connection thread's count of voluntary context switches (by
/// thread id): it goes up each time the thread blocks, so a thread whose
/// count has moved has worked through what woke it and waits again.
fn connection_thread_switches() -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        // The name as the system keeps it: 15 bytes.
        if !"airws-connection".starts_with(comm.trim()) || comm.trim().len() < 10 {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok());
        if let Some(n) = switches {
            counts.insert(task.file_name().to_string_lossy().into_owned(), n);
        }
    }
    counts
}

/// Opens files until the process has no descriptor left; returns them.
fn exhaust_descriptors() -> Vec<std::fs::File> {
    let mut files = Vec::new();
    for _ in 0..100_000 {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(_) => return files,
        }
    }
    panic!("no descriptor limit reached: run under prlimit --nofile");
}

#[test]
fn server_socket_close_returns_at_once_with_no_descriptor_left() {
    in_child(
        "server_socket_close_returns_at_once_with_no_descriptor_left",
        &["--nofile=128"],
        || {
            let server = ServerSocket::new();
            server.bind(0, "127.0.0.1").expect("bind");
            server.listen().expect("listen");
            let files = exhaust_descriptors();
            assert!(std::fs::File::open("/dev/null").is_err());
            let started = Instant::now();
            server.close();
            let took = started.elapsed();
            drop(files);
            assert!(
                took < Duration::from_secs(1),
                "close() took {took:?} with no descriptor left"
            );
            assert!(!server.listening());
            // And dropping the last handle of another server, likewise.
            let other = ServerSocket::new();
            other.bind(0, "127.0.0.1").expect("bind");
            other.listen().expect("listen");
            let files = exhaust_descriptors();
            let started = Instant::now();
            drop(other);
            let took = started.elapsed();
            drop(files);
            assert!(
                took < Duration::from_secs(1),
                "dropping the last handle took {took:?} with no descriptor left"
            );
        },
    );
}

#[test]
fn a_claimed_large_frame_costs_only_what_arrived() {
    in_child(
        "a_claimed_large_frame_costs_only_what_arrived",
        &["--nofile=4096"],
        || {
            const CONNECTIONS: usize = 400;
            let server =
                echo_server::listen("127.0.0.1:0".parse().expect("address")).expect("listen");
            let port = server.local_port();
            // Warm up: what the process sets up once.
            let warm: Vec<_> = (0..20).map(|_| support::raw_client(port, "")).collect();
            drop(warm);
            assert!(support::eventually(
                || connection_thread_switches().is_empty()
            ));
            let before = support::resident_kib();
            let mut peers: Vec<_> = (0..CONNECTIONS)
                .map(|_| support::raw_client(port, "").0)
                .collect();
            let idle = support::resident_kib();
            let switches = connection_thread_switches();
            assert_eq!(switches.len(), CONNECTIONS);
            // Each client announces a 16 MiB binary frame and sends one byte of it.
            for peer in &mut peers {
                let frame = support::RawFrame::new(support::OP_BINARY, vec![0u8; 1])
                    .claim(16 << 20)
                    .masked([1, 2, 3, 4])
                    .build();
                peer.send_raw(&frame);
            }
            // Every connection thread has read its byte and waits for more.
            let all_moved = support::eventually(|| {
                let now = connection_thread_switches();
                switches
                    .iter()
                    .all(|(tid, n)| now.get(tid).is_some_and(|m| m > n))
            });
            assert!(all_moved, "every connection read its byte");
            let after = support::resident_kib();
            let per_connection = (after - before).max(0) / CONNECTIONS as i64;
            let claim_cost = (after - idle).max(0) / CONNECTIONS as i64;
            eprintln!(
                "resident: {before} KiB before, {idle} KiB with {CONNECTIONS} idle connections, \
                 {after} KiB once each claimed 16 MiB and sent 1 byte: {per_connection} KiB \
                 per connection, of which the claim {claim_cost} KiB"
            );
            assert!(
                per_connection <= 64,
                "{per_connection} KiB per connection with a claimed 16 MiB frame"
            );
            // The claim itself: the byte that came, and a buffer of at most
            // 16 KiB for the message (no room is lent before 16 KiB arrive).
            assert!(
                claim_cost <= 16,
                "a claimed 16 MiB frame costs {claim_cost} KiB more than an idle connection"
            );
            drop(peers);
            server.close();
        },
    );
}

/// One attacker: sends 63 MiB of a binary message in fragments of at most
/// 16 MiB (the default frame limit), none of them final, then a ping, and
/// holds the connection. Returns the close code the server sent instead of
/// the pong, if it refused the message (0: the connection broke).
fn hold_63_mib(port: u16, zeros: &[u8]) -> Option<u16> {
    use std::io::{Read, Write};
    let (mut peer, _) = support::raw_client(port, "");
    let mut ok = true;
    for (i, mib) in [16u64, 16, 16, 15].into_iter().enumerate() {
        // Masked with a key of zeros: the payload goes out as it is.
        let opcode = if i == 0 { 0x02 } else { 0x00 };
        let mut head = vec![opcode, 0x80 | 127];
        head.extend_from_slice(&(mib << 20).to_be_bytes());
        head.extend_from_slice(&[0, 0, 0, 0]);
        ok = ok && peer.stream.write_all(&head).is_ok();
        for _ in 0..mib {
            ok = ok && peer.stream.write_all(&zeros[..1 << 20]).is_ok();
        }
    }
    let _ = peer
        .stream
        .write_all(&[0x89, 0x84, 0, 0, 0, 0, b'p', b'i', b'n', b'g']);
    // The pong says the server holds the fragment; a close frame, why not.
    let mut frame = [0u8; 4];
    match peer.stream.read_exact(&mut frame) {
        Ok(()) if frame[0] == 0x8A => None,
        Ok(()) if frame[0] == 0x88 && frame[1] >= 2 => {
            Some(u16::from_be_bytes([frame[2], frame[3]]))
        }
        // The connection broke: the server is gone (the test says so).
        _ => Some(0),
    }
}

/// Starts `command` (a server that prints its port in its first line of
/// output) under an address-space cap of 2 GiB.
fn server_under_2_gib(
    command: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (support::Kill, u16) {
    use std::io::{BufRead, BufReader};
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--as={}", 2u64 << 30))
        .arg("--")
        .arg(command)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut server = support::Kill(cmd.spawn().expect("prlimit runs the server"));
    // Its first line that names a port ("PORT 1234", or a ws:// URL).
    let mut out = BufReader::new(server.0.stdout.take().expect("stdout"));
    let mut port = None;
    for _ in 0..20 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        // (The test harness may print the test's name before it.)
        let line = line.trim().trim_end_matches('/');
        if line.contains("PORT ") || line.contains("ws://") {
            port = line.rsplit([':', ' ']).next().and_then(|p| p.parse().ok());
            break;
        }
    }
    let port = port.expect("the server printed its port");
    // Keep reading its output, so that it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (server, port)
}

/// 40 clients that each try to hold 63 MiB of a message at once: returns
/// how each ended (`None`: it holds them; else the server's close code).
/// Then checks that the server lives and still echoes a new client.
fn forty_clients_holding_63_mib(server: &mut support::Kill, port: u16) -> Vec<Option<u16>> {
    const ATTACKERS: usize = 40;
    let zeros = std::sync::Arc::new(vec![0u8; 1 << 20]);
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            let zeros = zeros.clone();
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || hold_63_mib(port, &zeros))
                .expect("an attacker")
        })
        .collect();
    let codes: Vec<Option<u16>> = attackers
        .into_iter()
        .map(|a| a.join().expect("an attacker"))
        .collect();
    eprintln!("close codes (None: holds 63 MiB): {codes:?}");
    assert!(
        server.0.try_wait().expect("the server's status").is_none(),
        "the server died under the attack"
    );
    // The server still serves.
    let (mut peer, _) = support::raw_client(port, "");
    peer.text("still here");
    assert_eq!(
        peer.read_message(),
        (support::OP_TEXT, b"still here".to_vec())
    );
    assert!(server.0.try_wait().expect("status").is_none());
    codes
}

#[test]
fn a_default_echo_server_under_a_2_gib_cap_survives_40_clients_sending_63_mib() {
    let (mut server, port) =
        server_under_2_gib(&support::example("echo_server"), &["127.0.0.1:0"], &[]);
    let codes = forty_clients_holding_63_mib(&mut server, port);
    // A server takes messages up to 16 MiB by default: each is refused.
    assert!(
        codes.iter().all(|c| matches!(c, Some(1009 | 1013))),
        "{codes:?}"
    );
}

#[test]
fn a_server_that_takes_64_mib_messages_is_kept_alive_by_the_memory_budget() {
    if std::env::var("AIRWS_CHILD").as_deref() == Ok("budget_server") {
        // The child: the README's server, for messages up to 64 MiB, with
        // the default memory budget; it serves until its input ends.
        use std::io::Read;
        let server = echo_server::listen_with(
            "127.0.0.1:0".parse().expect("address"),
            airws::Config::default().max_message_size(64 << 20),
        )
        .expect("listen");
        println!("PORT {}", server.local_port());
        let _ = std::io::stdin().read(&mut [0u8; 1]);
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let (mut server, port) = server_under_2_gib(
        &exe,
        &[
            "a_server_that_takes_64_mib_messages_is_kept_alive_by_the_memory_budget",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ],
        &[("AIRWS_CHILD", "budget_server")],
    );
    let codes = forty_clients_holding_63_mib(&mut server, port);
    let held = codes.iter().filter(|c| c.is_none()).count();
    let refused = codes.iter().filter(|c| **c == Some(1013)).count();
    eprintln!("{held} clients hold 63 MiB, {refused} were refused with 1013");
    assert_eq!(
        held + refused,
        codes.len(),
        "every refusal is a 1013: {codes:?}"
    );
    assert!(
        refused > 0 && held > 0,
        "the budget holds some and refuses the rest"
    );
}

#[test]
fn reconnecting_clients_leave_no_thread_behind_once_closed_or_dropped() {
    in_child(
        "reconnecting_clients_leave_no_thread_behind_once_closed_or_dropped",
        &["--nofile=1024"],
        || {
            use airws::proto::backoff::Backoff;
            use airws::{Config, Event, EventDispatcher, ReconnectEvent, WebSocket};
            // Nobody listens on this port: every attempt is refused.
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                l.local_addr().expect("addr").port()
            };
            let backoff = Backoff::default()
                .delays(Duration::from_millis(10), Duration::from_millis(50))
                .expect("valid delays");
            let (tx, retries) = mpsc::channel();
            let clients: Vec<WebSocket> = (0..8)
                .map(|_| {
                    let ws = WebSocket::with_config(Config::default().reconnect(backoff));
                    let tx = std::sync::Mutex::new(tx.clone());
                    ws.add_event_listener(ReconnectEvent::RECONNECTING, move |e: &Event| {
                        if e.reconnect_attempt() == 3 {
                            let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(());
                        }
                    });
                    ws.connect(&format!("ws://127.0.0.1:{port}/"), &[])
                        .expect("connect");
                    ws
                })
                .collect();
            for _ in 0..clients.len() {
                retries
                    .recv_timeout(support::WAIT)
                    .expect("each client retries");
            }
            assert!(!support::library_threads().is_empty());
            // Half are closed, half dropped, in the middle of their loops.
            for (i, ws) in clients.into_iter().enumerate() {
                if i % 2 == 0 {
                    ws.close(WebSocket::CLOSE_NORMAL).expect("close");
                    assert!(ws.wait_closed(support::WAIT));
                }
            }
            assert!(
                support::eventually(|| support::library_threads().is_empty()),
                "threads left: {:?}",
                support::library_threads()
            );
        },
    );
}

// ------------------------------------------------- decompression bombs

/// The compressed payload of a binary message that inflates to 1 GiB of
/// zeros, as RFC 7692 sends it (raw deflate, a sync flush after each MiB,
/// the last 4-byte tail removed), and how many of its first bytes inflate
/// to exactly 15 MiB. Compressing 1 GiB takes half a minute in a debug
/// build; but once the window is full of zeros, each further MiB of zeros
/// compresses to the same bytes, so those are repeated instead, and the
/// first 5 MiB are inflated back to check it.
#[cfg(feature = "deflate")]
fn gib_of_zeros_deflated() -> (Vec<u8>, usize) {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    const MIB: usize = 1 << 20;
    let zeros = vec![0u8; MIB];
    let mut deflate = Compress::new(Compression::default(), false);
    let pieces: Vec<Vec<u8>> = (0..4)
        .map(|_| {
            let mut out = Vec::with_capacity(MIB / 64);
            let before = deflate.total_in();
            deflate
                .compress_vec(&zeros, &mut out, FlushCompress::Sync)
                .expect("deflate");
            assert_eq!(deflate.total_in() - before, MIB as u64, "all of it taken");
            assert!(out.len() < out.capacity(), "all of it flushed");
            assert_eq!(out[out.len() - 4..], [0, 0, 0xFF, 0xFF]);
            out
        })
        .collect();
    assert_eq!(pieces[2], pieces[3], "a MiB of zeros in a window of zeros");
    let mut payload = [pieces[0].as_slice(), &pieces[1]].concat();
    for _ in 2..1024 {
        payload.extend_from_slice(&pieces[2]);
    }
    let first_15_mib = pieces[0].len() + pieces[1].len() + 13 * pieces[2].len();
    // The first 5 MiB, as sent, inflate to zeros.
    let head = pieces[0].len() + pieces[1].len() + 3 * pieces[2].len();
    let mut inflate = Decompress::new(false);
    let mut out = Vec::with_capacity(5 * MIB + 1);
    inflate
        .decompress_vec(&payload[..head], &mut out, FlushDecompress::Sync)
        .expect("inflate");
    assert_eq!(inflate.total_in(), head as u64);
    assert!(out.len() == 5 * MIB && out.iter().all(|&b| b == 0));
    payload.truncate(payload.len() - 4);
    (payload, first_15_mib)
}

/// A decompression bomb: the frames of one binary message that inflates
/// to 1 GiB of zeros, as a client sends them (masked, RSV1 on the first).
#[cfg(feature = "deflate")]
struct DeflateBomb {
    /// The first frame: what inflates to 15 MiB, then a ping.
    first: Vec<u8>,
    /// The rest of the message, in three continuation frames.
    rest: std::sync::Arc<Vec<u8>>,
}

#[cfg(feature = "deflate")]
impl DeflateBomb {
    /// The bomb's frames: about 1 MiB on the wire.
    fn new() -> DeflateBomb {
        use support::{RawFrame, OP_BINARY, OP_CONT, OP_PING};
        let (payload, split) = gib_of_zeros_deflated();
        let key = [0x3A, 0x91, 0x5E, 0xC7];
        let mut first = RawFrame::new(OP_BINARY, &payload[..split])
            .fin(false)
            .rsv(0b100)
            .masked(key)
            .build();
        first.extend(RawFrame::new(OP_PING, b"held".to_vec()).masked(key).build());
        let tail = &payload[split..];
        let third = tail.len() / 3 + 1;
        let parts: Vec<&[u8]> = tail.chunks(third).collect();
        assert_eq!(parts.len(), 3);
        let mut rest = Vec::with_capacity(tail.len() + 64);
        for (i, part) in parts.iter().enumerate() {
            rest.extend(
                RawFrame::new(OP_CONT, part.to_vec())
                    .fin(i == 2)
                    .masked(key)
                    .build(),
            );
        }
        eprintln!(
            "the bomb: {} bytes on the wire ({} of them compressed data) inflate to 1 GiB",
            first.len() + rest.len(),
            payload.len()
        );
        DeflateBomb {
            first,
            rest: std::sync::Arc::new(rest),
        }
    }

    /// Connects to `port`, offering permessage-deflate, checks that the
    /// 101 accepted it, and sends the first frame and the ping: once the
    /// pong comes back, the server holds the first 15 MiB inflated.
    fn arm(&self, port: u16) -> support::RawPeer {
        let (mut peer, head) =
            support::raw_client(port, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
        let agreed = support::header(&head, "Sec-WebSocket-Extensions").unwrap_or("");
        assert_eq!(
            agreed.split(';').next().map(str::trim),
            Some("permessage-deflate"),
            "the server did not accept the offer: {head}"
        );
        peer.send_raw(&self.first);
        let pong = peer.read();
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (support::OP_PONG, &b"held"[..]),
            "a pong while the server holds 15 MiB of the message"
        );
        peer
    }

    /// Sends the rest of the message on `peer` (from a thread of its own,
    /// since the server may stop reading) and reads what the server
    /// sends: the code of its close frame (`None`: the connection ended
    /// without one).
    fn detonate(&self, mut peer: support::RawPeer) -> Option<u16> {
        use std::io::Write;
        let mut out = peer.stream.try_clone().expect("a second handle");
        out.set_write_timeout(Some(support::WAIT))
            .expect("write timeout");
        let rest = self.rest.clone();
        let writer = std::thread::spawn(move || out.write_all(&rest).is_ok());
        let mut code = None;
        for _ in 0..100 {
            match peer.try_read() {
                Ok(Some(f)) if f.opcode == support::OP_CLOSE => {
                    code = f.close_code();
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        // Unblocks the writer if the server stopped reading.
        let _ = peer.stream.shutdown(std::net::Shutdown::Both);
        let _ = writer.join().expect("the writer");
        code
    }
}

/// For the child of the bomb tests (`AIRWS_CHILD=deflate_server`): serves
/// the README's server with permessage-deflate on and a server's default
/// limits (16 MiB messages, the default memory budget), prints its port
/// and returns once its input ends; true then. False in any other process.
#[cfg(feature = "deflate")]
fn serve_deflate_if_child() -> bool {
    if std::env::var("AIRWS_CHILD").as_deref() != Ok("deflate_server") {
        return false;
    }
    use std::io::Read;
    let config = airws::Config::default()
        .permessage_deflate(airws::proto::deflate::DeflateConfig::default())
        .expect("permessage-deflate");
    let server =
        echo_server::listen_with("127.0.0.1:0".parse().expect("address"), config).expect("listen");
    println!("PORT {}", server.local_port());
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    true
}

/// Runs test `name` again in a child process, as the server of
/// [`serve_deflate_if_child`], under a 2 GiB address-space cap.
#[cfg(feature = "deflate")]
fn deflate_server(name: &str) -> (support::Kill, u16) {
    let exe = std::env::current_exe().expect("the test binary");
    let (server, port) = server_under_2_gib(
        &exe,
        &[name, "--exact", "--nocapture", "--test-threads=1"],
        &[("AIRWS_CHILD", "deflate_server")],
    );
    // prlimit runs the server in its own process: that is what is measured.
    let running = std::fs::read_link(format!("/proc/{}/exe", server.0.id())).expect("its binary");
    assert_eq!(running, exe, "the child is the test binary");
    (server, port)
}

/// The peak resident memory of process `pid` so far (`VmHWM`), in KiB.
#[cfg(feature = "deflate")]
fn peak_resident_kib(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// The server still serves a new client (uncompressed), and lives.
#[cfg(feature = "deflate")]
fn still_serves(server: &mut support::Kill, port: u16) {
    let (mut peer, _) = support::raw_client(port, "");
    peer.text("still here");
    assert_eq!(
        peer.read_message(),
        (support::OP_TEXT, b"still here".to_vec())
    );
    assert!(server.0.try_wait().expect("its status").is_none());
}

#[cfg(feature = "deflate")]
#[test]
fn a_deflate_bomb_of_1_gib_is_refused_with_1009_and_the_server_peaks_under_256_mib() {
    if serve_deflate_if_child() {
        return;
    }
    let bomb = DeflateBomb::new();
    let (mut server, port) = deflate_server(
        "a_deflate_bomb_of_1_gib_is_refused_with_1009_and_the_server_peaks_under_256_mib",
    );
    let pid = server.0.id();
    let idle = peak_resident_kib(pid);
    let started = Instant::now();
    let peer = bomb.arm(port);
    let held = peak_resident_kib(pid);
    let code = bomb.detonate(peer);
    let took = started.elapsed();
    let peak = peak_resident_kib(pid);
    eprintln!(
        "server peak resident (VmHWM): {idle} KiB idle, {held} KiB holding 15 MiB of the \
         message, {peak} KiB after the close ({code:?}, {took:?} from the upgrade)"
    );
    assert_eq!(code, Some(1009), "a message over the limit once inflated");
    assert!(
        peak < 256 << 10,
        "the server's peak resident memory was {peak} KiB"
    );
    still_serves(&mut server, port);
}

#[cfg(feature = "deflate")]
#[test]
fn eight_deflate_bombs_held_at_once_peak_under_eight_message_limits_and_the_base() {
    const BOMBS: usize = 8;
    // The server's message limit (a server's default).
    const LIMIT_KIB: i64 = 16 << 10;
    if serve_deflate_if_child() {
        return;
    }
    let bomb = std::sync::Arc::new(DeflateBomb::new());
    let (mut server, port) = deflate_server(
        "eight_deflate_bombs_held_at_once_peak_under_eight_message_limits_and_the_base",
    );
    let pid = server.0.id();
    let base = peak_resident_kib(pid);
    // Each bomb's first 15 MiB are held before any goes off.
    let peers: Vec<_> = (0..BOMBS).map(|_| bomb.arm(port)).collect();
    let held = peak_resident_kib(pid);
    let started = Instant::now();
    let detonations: Vec<_> = peers
        .into_iter()
        .map(|peer| {
            let bomb = bomb.clone();
            std::thread::spawn(move || bomb.detonate(peer))
        })
        .collect();
    let codes: Vec<Option<u16>> = detonations
        .into_iter()
        .map(|d| d.join().expect("a bomb"))
        .collect();
    let took = started.elapsed();
    let peak = peak_resident_kib(pid);
    eprintln!(
        "server peak resident (VmHWM): {base} KiB before, {held} KiB with {BOMBS} bombs \
         holding 15 MiB each, {peak} KiB after their closes {codes:?} ({took:?})"
    );
    assert!(
        codes.iter().all(|c| matches!(c, Some(1009 | 1013))),
        "{codes:?}"
    );
    // Each connection holds at most its message limit (and one byte) of
    // inflated data, plus its inflater (under 64 KiB) and what its thread
    // and reads take: 1 MiB each is ample for those.
    let bound = base + BOMBS as i64 * (LIMIT_KIB + 1024);
    assert!(
        peak <= bound,
        "the server's peak resident memory was {peak} KiB, over {bound} KiB"
    );
    still_serves(&mut server, port);
}
