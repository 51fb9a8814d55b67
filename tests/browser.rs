//! A real browser: headless Chromium loads `examples/browser_demo`'s page and
//! exchanges text and binary messages with it over a WebSocket on the same
//! port, then closes with a code. Both sides' observations are checked.
//!
//! Switched on by the `browser` feature (`.ci/run` installs Chromium); with
//! the feature on, a missing browser fails the test.
#![cfg(feature = "browser")]

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{example, Kill};

fn chromium() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("AIRWS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    assert!(
        path.exists(),
        "Chromium not found at {} (install Debian's chromium, or set AIRWS_CHROMIUM)",
        path.display()
    );
    path
}

/// Removes the browser's profile folder.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn chromium_talks_to_the_browser_demo() {
    let chromium = chromium();
    let mut demo = Command::new(example("browser_demo"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start browser_demo");
    let stdout = demo.stdout.take().expect("stdout");
    let _demo = Kill(demo);
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("browser_demo prints its address");
    let url = first.rsplit(' ').next().expect("address").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");

    let profile =
        TempDir(std::env::temp_dir().join(format!("airws-chromium-{}", std::process::id())));
    std::fs::create_dir_all(&profile.0).expect("profile folder");
    let browser = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let _browser = Kill(browser);

    // Collect the server's lines until the page's report arrives.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut lines = Vec::new();
    let report = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no report from the page; the server saw: {lines:#?}"));
        if let Some(report) = line.strip_prefix("REPORT ") {
            break report.to_owned();
        }
        lines.push(line);
    };

    // What the server saw.
    let text = "héllo from the browser ✓";
    assert_eq!(
        lines,
        vec![
            "WS CONNECT protocol=demo.v1".to_owned(),
            format!("WS TEXT {text}"),
            "WS BINARY 0,1,2,127,128,250,255".to_owned(),
            "WS CLOSE 4001".to_owned(),
        ]
    );
    // What the browser saw.
    let expected = format!(
        r#"{{"open":true,"protocol":"demo.v1","text":"{text}","binary":"0,1,2,127,128,250,255","closeCode":4001,"wasClean":true}}"#
    );
    assert_eq!(report, expected);
}
