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
//!
//! With bit 7 of byte 0 set, permessage-deflate was agreed: the receiver
//! inflates messages whose first frame has RSV1 (`Receiver::set_inflate`),
//! and byte 1 says how (see `Deflate::from_byte`: the peer's window bits,
//! its context takeover, the order of the set-up calls, and whether the
//! chunked feed drops what a quiet connection drops whenever a chunk
//! leaves the receiver idle); the chunk sizes follow it. The receiver then
//! always has a memory budget, with room for the inflater and `BUDGET`
//! bytes more with bit 6, else ample room. Checked as well: what it
//! charges to the budget stays within the inflater's cost plus the larger
//! of the message limit (and one byte) and `FIRST_INFLATE_BUFFER`; the heap
//! it keeps stays within the bound above taken with that larger size, plus
//! `INFLATER_HEAP`; delivered texts are valid UTF-8 and no message is over
//! the limit once inflated. The chunks still give the same items as the
//! whole input, but where a compressed message is at fault they may report
//! another of its faults (`INFLATE_FAULTS`) than the whole input does.

use airws::proto::budget::MemoryBudget;
use airws::proto::close::{is_valid_on_wire, INVALID_PAYLOAD, MESSAGE_TOO_BIG, TRY_AGAIN_LATER};
use airws::proto::deflate::{state_cost, Direction};
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

/// With permessage-deflate and bit 6 clear, the budget's room beyond the
/// inflater's cost: more than any message of these limits takes.
const AMPLE_BUDGET: usize = 1 << 20;

/// The buffer a compressed message starts with is sized from its first
/// frame's length, from 256 bytes up to this, whatever the message limit.
const FIRST_INFLATE_BUFFER: usize = 16 << 10;

/// The heap zlib's inflater takes beyond what the receiver keeps itself:
/// 47,552 bytes with zlib-rs 0.6, whatever the window.
const INFLATER_HEAP: usize = 64 << 10;

/// The close codes of what is found wrong with a compressed message as
/// it is inflated: invalid data or UTF-8, over the message limit or the
/// memory budget.
const INFLATE_FAULTS: [u16; 3] = [INVALID_PAYLOAD, MESSAGE_TOO_BIG, TRY_AGAIN_LATER];

/// permessage-deflate, as byte 1 of the input sets it up.
#[derive(Clone, Copy, Debug)]
struct Deflate {
    /// The peer's direction of the agreement: its window and whether it
    /// resets after each message.
    peer: Direction,
    /// `set_inflate` before `set_budget` (else after).
    inflate_first: bool,
    /// The chunked feed calls `release_spares` after each chunk that
    /// leaves the receiver idle, as the read loop does when a connection
    /// goes quiet.
    release: bool,
}

impl Deflate {
    /// Bits 0 to 2: the peer's window bits, 8 to 15; bit 3: no context
    /// takeover; bit 4: `set_inflate` first; bit 5: `release_spares`
    /// after each chunk.
    fn from_byte(b: u8) -> Deflate {
        Deflate {
            peer: Direction {
                window_bits: 8 + (b & 7),
                no_context_takeover: b & 0x08 != 0,
            },
            inflate_first: b & 0x10 != 0,
            release: b & 0x20 != 0,
        }
    }

    /// What the budget is charged for the inflater.
    fn state_cost(&self) -> usize {
        state_cost(self.peer.window_bits, false)
    }
}

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

/// A receiver in `role` with `limits`, its memory `budget` and, when
/// agreed, permessage-deflate; returns it with the bounds of the heap it
/// may keep and of what it may charge to the budget.
fn receiver(
    role: Role,
    limits: Limits,
    budget: Option<&MemoryBudget>,
    deflate: Option<Deflate>,
) -> (Receiver, usize, usize) {
    let mut r = Receiver::new(role, limits);
    let message = limits.max_message_size as usize;
    let Some(d) = deflate else {
        let mut bound = 2 * message + 2 * MAX_CONTROL_PAYLOAD + 8;
        if let Some(budget) = budget {
            r.set_budget(budget.clone());
            bound = bound.min(budget.limit() + 2 * MAX_CONTROL_PAYLOAD + 8);
        }
        return (r, bound, bound);
    };
    if d.inflate_first {
        r.set_inflate(d.peer);
    }
    if let Some(budget) = budget {
        r.set_budget(budget.clone());
    }
    if !d.inflate_first {
        r.set_inflate(d.peer);
    }
    let buffer = (message + 1).max(FIRST_INFLATE_BUFFER);
    let charged = d.state_cost() + buffer;
    let mut bound = 2 * buffer + 2 * MAX_CONTROL_PAYLOAD + 8 + INFLATER_HEAP;
    if let Some(budget) = budget {
        bound = bound.min(budget.limit() + 2 * MAX_CONTROL_PAYLOAD + 8 + INFLATER_HEAP);
    }
    (r, bound, charged)
}

fn feed(
    role: Role,
    limits: Limits,
    chunks: &[&[u8]],
    direct: bool,
    budget: Option<&MemoryBudget>,
    deflate: Option<Deflate>,
) -> (Vec<Incoming>, Option<ProtocolError>) {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    // Room for every item (each takes at least 2 bytes), so `out` never
    // reallocates and its own buffer stays out of the count below.
    let mut out = Vec::with_capacity(total + 1);
    let (mut r, bound, charged) = receiver(role, limits, budget, deflate);
    let release = deflate.is_some_and(|d| d.release);
    let base = LIVE.load(Relaxed);
    LARGEST.store(0, Relaxed);
    let mut error = None;
    for chunk in chunks {
        let before = out.len();
        let res = give(&mut r, chunk, direct, &mut out);
        if release && r.is_idle() {
            r.release_spares();
        }
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
            assert!(
                budget.used() <= charged,
                "the receiver charges {} bytes with limits {limits:?} and {deflate:?}",
                budget.used()
            );
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
    // Bit 7: permessage-deflate, set up as byte 1 says.
    let (deflate, rest) = match rest.split_first() {
        Some((&d, rest)) if control & 0x80 != 0 => (Some(Deflate::from_byte(d)), rest),
        _ if control & 0x80 != 0 => return,
        _ => (None, rest),
    };
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
    // Bit 6: a memory budget (one for each feed); with permessage-deflate,
    // always one, small with bit 6 and ample without.
    let budget = || match deflate {
        None => (control & 0x40 != 0).then(|| MemoryBudget::new(BUDGET)),
        Some(d) if control & 0x40 != 0 => Some(MemoryBudget::new(d.state_cost() + BUDGET)),
        Some(d) => Some(MemoryBudget::new(d.state_cost() + AMPLE_BUDGET)),
    };
    let chunked_budget = budget();
    let (split, split_err) = feed(
        role,
        limits,
        &chunks,
        direct,
        chunked_budget.as_ref(),
        deflate,
    );
    // The whole input at once, with nothing dropped between chunks.
    let whole_budget = budget();
    let whole_deflate = deflate.map(|d| Deflate {
        release: false,
        ..d
    });
    let (whole, whole_err) = feed(
        role,
        limits,
        &[stream],
        false,
        whole_budget.as_ref(),
        whole_deflate,
    );
    assert_eq!(split, whole, "split and whole give different items");
    match (split_err, whole_err) {
        // A compressed message's faults are found as it is inflated, and
        // which comes first depends on how much data each call is given
        // (zlib's output runs ahead of its own checks of the data, or
        // behind them): with permessage-deflate, split and whole may
        // report different ones of them for the same message.
        (Some(a), Some(b)) if deflate.is_some() && a != b => assert!(
            INFLATE_FAULTS.contains(&a.code) && INFLATE_FAULTS.contains(&b.code),
            "split and whole give different errors: {a:?} and {b:?}"
        ),
        (split_err, whole_err) => assert_eq!(
            split_err, whole_err,
            "split and whole give different errors"
        ),
    }
    for m in &whole {
        match m {
            Incoming::Text(s) => {
                assert!(s.len() as u64 <= limits.max_message_size);
                assert!(std::str::from_utf8(s.as_bytes()).is_ok());
            }
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
