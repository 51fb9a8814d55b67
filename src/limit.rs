//! A cap on the server connections that run at once: each has a thread, and
//! threads are what a thread-per-connection server runs out of first.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// How many server connections (`start_server`, `start_server_tls`) may run
/// at once, shared by every `WebSocket` whose [`Config`](crate::Config) has
/// the same limit (clones share one limit). A connection counts from
/// `start_server` until its thread ends. Over the limit, `start_server`
/// answers the client `503 Service Unavailable` (with `Retry-After: 1`)
/// and returns [`Error::TooManyConnections`](crate::Error::TooManyConnections).
///
/// ```
/// use airws::{Config, ConnectionLimit};
///
/// let limit = ConnectionLimit::new(1000);
/// let config = Config::default().connection_limit(limit.clone());
/// assert_eq!(limit.live(), 0);
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct ConnectionLimit {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    live: AtomicUsize,
}

/// The process's default limit: what every [`Config`](crate::Config) uses
/// unless given another (see [`ConnectionLimit::process_default`]).
pub const DEFAULT_CONNECTION_LIMIT: usize = 16_384;

impl ConnectionLimit {
    /// A limit of `limit` connections at once.
    pub fn new(limit: usize) -> ConnectionLimit {
        ConnectionLimit {
            inner: Arc::new(Inner {
                limit,
                live: AtomicUsize::new(0),
            }),
        }
    }

    /// The limit every `Config` uses unless given another: one for the
    /// whole process, of [`DEFAULT_CONNECTION_LIMIT`] (16 384) server
    /// connections.
    pub fn process_default() -> ConnectionLimit {
        static DEFAULT: OnceLock<ConnectionLimit> = OnceLock::new();
        DEFAULT
            .get_or_init(|| ConnectionLimit::new(DEFAULT_CONNECTION_LIMIT))
            .clone()
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// How many connections run now under it.
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::Relaxed)
    }

    /// A place for one more connection, if there is one.
    pub(crate) fn try_acquire(&self) -> Option<Slot> {
        let mut live = self.inner.live.load(Ordering::Relaxed);
        loop {
            if live >= self.inner.limit {
                return None;
            }
            match self.inner.live.compare_exchange_weak(
                live,
                live + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Slot {
                        limit: self.clone(),
                    })
                }
                Err(now) => live = now,
            }
        }
    }

    /// Whether `self` and `other` are the same limit.
    pub fn same(&self, other: &ConnectionLimit) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for ConnectionLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionLimit")
            .field("limit", &self.limit())
            .field("live", &self.live())
            .finish()
    }
}

/// One connection's place under a limit, given back when dropped.
pub(crate) struct Slot {
    limit: ConnectionLimit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limit.inner.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fit_the_limit_and_come_back() {
        let limit = ConnectionLimit::new(2);
        let a = limit.try_acquire().expect("one");
        let b = limit.try_acquire().expect("two");
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.live(), 2);
        drop(a);
        let c = limit.try_acquire().expect("room again");
        drop((b, c));
        assert_eq!(limit.live(), 0);
    }
}
