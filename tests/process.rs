//! Tests that measure or exhaust the whole process (its descriptors, its
//! memory), each in a child process of its own: the test binary runs
//! itself again with `AIRWS_CHILD` naming the test, under the limits the
//! test sets with `prlimit`, and the parent checks how it ended.

use airws::ServerSocket;
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
