//! The body shared by the `receiver_client` and `receiver_server` targets.
//!
//! Input layout: byte 0 picks the limits (low 2 bits) and how many chunk
//! sizes follow (bits 2..5, 1 to 8); those bytes are the chunk sizes (mod 64,
//! cycled; 0 feeds an empty chunk); the rest is the byte stream from the peer.
//!
//! Checked: nothing panics; the stream fed in chunks gives the same items and
//! the same error as fed whole; no item exceeds the limits; after each call
//! the heap the receiver keeps (all live allocations but the items it
//! delivered) stays within twice the message limit plus a control frame;
//! after an error or a close the receiver is finished and takes nothing more.
//! With bit 6 of byte 0 set, the receiver has a memory budget of
//! `BUDGET` bytes: what it keeps stays within the budget (plus a control
//! frame), the budget's count never goes over its limit, and it is back to
//! 0 once the receiver is dropped.

use airws::proto::budget::MemoryBudget;
use airws::proto::close::is_valid_on_wire;
use airws::proto::error::ProtocolError;
use airws::proto::frame::{MAX_CONTROL_PAYLOAD, OP_PING};
use airws::proto::receiver::{Incoming, Limits, Receiver};
use airws::proto::Role;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Counts live heap bytes and the largest single request since a reset.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
            LARGEST.fetch_max(layout.size(), Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
            LARGEST.fetch_max(layout.size(), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            LIVE.fetch_add(new_size, Relaxed);
            LARGEST.fetch_max(new_size, Relaxed);
        }
        p
    }
}

const LIMITS: [Limits; 4] = [
    Limits {
        max_frame_size: 0,
        max_message_size: 0,
    },
    Limits {
        max_frame_size: 16,
        max_message_size: 40,
    },
    Limits {
        max_frame_size: 125,
        max_message_size: 300,
    },
    Limits {
        max_frame_size: 1024,
        max_message_size: 1024,
    },
];

/// The memory budget of inputs with bit 6 of byte 0 set: between the
/// message limits, so that some messages fit it and some do not.
const BUDGET: usize = 500;

/// Heap bytes owned by the delivered items.
fn delivered_heap(out: &[Incoming]) -> usize {
    out.iter()
        .map(|m| match m {
            Incoming::Text(s) => s.capacity(),
            Incoming::Binary(b) | Incoming::Ping(b) | Incoming::Pong(b) => b.capacity(),
            Incoming::Close(Some((_, reason))) => reason.capacity(),
            Incoming::Close(None) => 0,
        })
        .sum()
}

/// A valid ping frame as a peer of a receiver in `role` sends it.
fn ping(role: Role) -> Vec<u8> {
    match role {
        Role::Client => vec![0x80 | OP_PING, 2, b'h', b'i'],
        Role::Server => vec![0x80 | OP_PING, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2],
    }
}

/// Feeds one chunk. With `direct`, payload bytes go where a socket read
/// would put them: into the room the receiver lends (filled with garbage
/// first, so that bytes lent but not committed would show).
fn give(
    r: &mut Receiver,
    chunk: &[u8],
    direct: bool,
    out: &mut Vec<Incoming>,
) -> Result<(), ProtocolError> {
    if !direct {
        return r.receive(chunk, out);
    }
    let mut rest = chunk;
    while !rest.is_empty() {
        let Some(room) = r.payload_room(1, 64) else {
            // Not inside a payload: one byte the usual way, then look again.
            r.receive(&rest[..1], out)?;
            rest = &rest[1..];
            continue;
        };
        assert!((1..=64).contains(&room.len()), "room of {}", room.len());
        room.fill(0xAA);
        let k = room.len().min(rest.len());
        room[..k].copy_from_slice(&rest[..k]);
        r.commit_room(k, out)?;
        rest = &rest[k..];
    }
    Ok(())
}

fn feed(
    role: Role,
    limits: Limits,
    chunks: &[&[u8]],
    direct: bool,
    budget: Option<&MemoryBudget>,
) -> (Vec<Incoming>, Option<ProtocolError>) {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    // Room for every item (each takes at least 2 bytes), so `out` never
    // reallocates and its own buffer stays out of the count below.
    let mut out = Vec::with_capacity(total + 1);
    let mut r = Receiver::new(role, limits);
    let mut bound = 2 * limits.max_message_size as usize + 2 * MAX_CONTROL_PAYLOAD + 8;
    if let Some(budget) = budget {
        r.set_budget(budget.clone());
        bound = bound.min(budget.limit() + 2 * MAX_CONTROL_PAYLOAD + 8);
    }
    let base = LIVE.load(Relaxed);
    LARGEST.store(0, Relaxed);
    let mut error = None;
    for chunk in chunks {
        let before = out.len();
        let res = give(&mut r, chunk, direct, &mut out);
        assert!(
            LARGEST.load(Relaxed) <= bound,
            "an allocation of {} bytes with limits {limits:?}",
            LARGEST.load(Relaxed)
        );
        let kept = LIVE.load(Relaxed) as isize - base as isize - delivered_heap(&out) as isize;
        assert!(
            kept <= bound as isize,
            "the receiver keeps {kept} heap bytes with limits {limits:?} and budget {budget:?}"
        );
        if let Some(budget) = budget {
            assert!(budget.used() <= budget.limit(), "{budget:?}");
        }
        match res {
            Err(e) => {
                assert!(r.is_finished(), "not finished after {e}");
                error = Some(e);
                break;
            }
            Ok(()) if r.is_finished() => {
                assert!(
                    matches!(out.last(), Some(Incoming::Close(_))),
                    "finished without an error or a close"
                );
                assert!(out[before..out.len() - 1]
                    .iter()
                    .all(|m| !matches!(m, Incoming::Close(_))));
                break;
            }
            Ok(()) => {
                assert!(out[before..]
                    .iter()
                    .all(|m| !matches!(m, Incoming::Close(_))));
            }
        }
    }
    if r.is_finished() {
        // Finished for good: nothing more is taken, not even a valid frame.
        let n = out.len();
        for chunk in chunks.iter().copied().chain([ping(role).as_slice()]) {
            assert_eq!(r.receive(chunk, &mut out), Ok(()));
            assert!(r.is_finished());
        }
        assert_eq!(out.len(), n, "items after the end");
    }
    drop(r);
    if let Some(budget) = budget {
        assert_eq!(budget.used(), 0, "the receiver gave back what it held");
    }
    (out, error)
}

pub fn run(role: Role, data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let limits = LIMITS[usize::from(control & 3)];
    let n = usize::from((control >> 2) & 7) + 1;
    let (sizes, stream) = rest.split_at(n.min(rest.len()));
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < stream.len() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .map_or(1, |s| usize::from(s % 64));
        i += 1;
        let end = (pos + size).min(stream.len());
        chunks.push(&stream[pos..end]);
        if size == 0 {
            // An empty chunk, then one byte so the loop always moves on.
            chunks.push(&stream[pos..pos + 1]);
            pos += 1;
        } else {
            pos = end;
        }
    }
    // Bit 5: payload bytes go through the receiver's lent room, as the
    // read loop does for large payloads.
    let direct = control & 0x20 != 0;
    // Bit 6: a memory budget (one for each feed).
    let budget = (control & 0x40 != 0).then(|| MemoryBudget::new(BUDGET));
    let (split, split_err) = feed(role, limits, &chunks, direct, budget.as_ref());
    let budget = (control & 0x40 != 0).then(|| MemoryBudget::new(BUDGET));
    let (whole, whole_err) = feed(role, limits, &[stream], false, budget.as_ref());
    assert_eq!(split, whole, "split and whole give different items");
    assert_eq!(
        split_err, whole_err,
        "split and whole give different errors"
    );
    for m in &whole {
        match m {
            Incoming::Text(s) => assert!(s.len() as u64 <= limits.max_message_size),
            Incoming::Binary(b) => assert!(b.len() as u64 <= limits.max_message_size),
            Incoming::Ping(b) | Incoming::Pong(b) => assert!(b.len() <= MAX_CONTROL_PAYLOAD),
            Incoming::Close(Some((code, reason))) => {
                assert!(is_valid_on_wire(u32::from(*code)));
                assert!(reason.len() <= MAX_CONTROL_PAYLOAD - 2);
            }
            Incoming::Close(None) => {}
        }
    }
}
