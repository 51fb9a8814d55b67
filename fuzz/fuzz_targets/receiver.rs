//! The message assembler on any bytes, in either role, split into chunks
//! chosen by the input: never panics, never yields more than the limits
//! allow, and gives the same result as when fed whole.
#![no_main]

use airws::proto::receiver::{Incoming, Limits, Receiver};
use airws::proto::Role;
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_frame_size: 4096,
    max_message_size: 16384,
};

fn run(role: Role, chunks: &[&[u8]]) -> (Vec<Incoming>, Option<u16>) {
    let mut r = Receiver::new(role, LIMITS);
    let mut out = Vec::new();
    for chunk in chunks {
        if let Err(e) = r.receive(chunk, &mut out) {
            return (out, Some(e.code));
        }
        if r.is_finished() {
            break;
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let role = if control & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let step = usize::from(control >> 1).max(1);
    let chunks: Vec<&[u8]> = rest.chunks(step).collect();
    let (split, split_err) = run(role, &chunks);
    let (whole, whole_err) = run(role, &[rest]);
    assert_eq!(split, whole);
    assert_eq!(split_err, whole_err);
    for msg in &split {
        let len = match msg {
            Incoming::Text(s) => s.len(),
            Incoming::Binary(b) | Incoming::Ping(b) | Incoming::Pong(b) => b.len(),
            _ => 0,
        };
        assert!(len as u64 <= LIMITS.max_message_size);
    }
});
