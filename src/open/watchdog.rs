//! Deadlines for work that runs on a connection's thread and cannot be
//! interrupted there (an application's `upgradeRequest` listeners): one
//! thread for the whole process runs each expired watch's action, so that
//! the client is answered at the deadline whatever the listener does. The
//! thread starts with the first watch and ends after a while with none.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long the watchdog's thread waits with nothing to watch before it ends.
const IDLE: Duration = Duration::from_secs(10);

type Action = Box<dyn FnOnce() + Send>;

/// One watch: its action until it expires or is disarmed; `true` once the
/// action ran.
type Slot = Arc<Mutex<Option<Action>>>;

#[derive(Default)]
struct Entries {
    by_deadline: BTreeMap<(Instant, u64), Slot>,
    next_id: u64,
    thread_running: bool,
}

struct Watchdog {
    entries: Mutex<Entries>,
    changed: Condvar,
}

impl Watchdog {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| Watchdog {
        entries: Mutex::new(Entries::default()),
        changed: Condvar::new(),
    })
}

/// A watch on a piece of work: unless disarmed by `deadline`, its action
/// runs on the watchdog's thread.
pub(crate) struct Watch {
    key: (Instant, u64),
    slot: Slot,
}

/// Runs `action` at `deadline` unless the returned watch is disarmed first.
/// `None` when the watchdog's thread cannot be started (the work then runs
/// unwatched).
pub(crate) fn watch(deadline: Instant, action: impl FnOnce() + Send + 'static) -> Option<Watch> {
    let dog = watchdog();
    let mut entries = dog.lock();
    if !entries.thread_running {
        let spawned = thread::Builder::new()
            .name("airws-watchdog".into())
            .stack_size(256 << 10)
            .spawn(run);
        if let Err(e) = spawned {
            log::warn!("cannot start the watchdog's thread: {e}");
            return None;
        }
        entries.thread_running = true;
    }
    let id = entries.next_id;
    entries.next_id += 1;
    let key = (deadline, id);
    let slot: Slot = Arc::new(Mutex::new(Some(Box::new(action))));
    entries.by_deadline.insert(key, slot.clone());
    dog.changed.notify_all();
    Some(Watch { key, slot })
}

impl Watch {
    /// Ends the watch; returns whether its action ran (it has finished
    /// when this returns).
    pub(crate) fn disarm(self) -> bool {
        watchdog().lock().by_deadline.remove(&self.key);
        // Waits for an action that is running.
        let action = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        action.is_none()
    }
}

/// The watchdog's thread.
fn run() {
    let dog = watchdog();
    let mut entries = dog.lock();
    loop {
        let now = Instant::now();
        let first = entries.by_deadline.keys().next().copied();
        match first {
            Some(key) if key.0 <= now => {
                let slot = entries.by_deadline.remove(&key);
                drop(entries);
                if let Some(slot) = slot {
                    let mut action = slot.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(act) = action.take() {
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(act)).is_err() {
                            log::error!("a watchdog action panicked");
                        }
                    }
                }
                entries = dog.lock();
            }
            Some((deadline, _)) => {
                let wait = deadline.saturating_duration_since(now);
                entries = match dog.changed.wait_timeout(entries, wait) {
                    Ok((guard, _)) => guard,
                    Err(p) => p.into_inner().0,
                };
            }
            None => {
                let (guard, timeout) = match dog.changed.wait_timeout(entries, IDLE) {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                entries = guard;
                if timeout.timed_out() && entries.by_deadline.is_empty() {
                    entries.thread_running = false;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn an_expired_watch_runs_its_action_once() {
        let (tx, rx) = mpsc::channel();
        let w = watch(Instant::now() + Duration::from_millis(20), move || {
            let _ = tx.send(());
        })
        .expect("a watch");
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the action ran");
        assert!(w.disarm(), "disarm tells that it ran");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_disarmed_watch_never_runs() {
        let (tx, rx) = mpsc::channel::<()>();
        let w = watch(Instant::now() + Duration::from_secs(3600), move || {
            let _ = tx.send(());
        })
        .expect("a watch");
        assert!(!w.disarm());
        // The action was dropped with the watch: the channel is closed.
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        ));
    }

    #[test]
    fn watches_expire_in_deadline_order() {
        let (tx, rx) = mpsc::channel();
        let now = Instant::now();
        let mut watches = Vec::new();
        for (i, ms) in [(0, 60u64), (1, 20), (2, 40)] {
            let tx = tx.clone();
            watches.push(
                watch(now + Duration::from_millis(ms), move || {
                    let _ = tx.send(i);
                })
                .expect("a watch"),
            );
        }
        let order: Vec<i32> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("ran"))
            .collect();
        assert_eq!(order, [1, 2, 0]);
        assert!(watches.into_iter().all(Watch::disarm));
    }
}
