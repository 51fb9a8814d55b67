//! A memory budget that many connections share: what peers make the
//! library hold (partial messages, buffers beyond their base size) is
//! charged to it before it is allocated, and given back when it is freed.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// A limit on the bytes that peers can make the library hold, shared by
/// every connection given the same budget (clones share one budget).
///
/// Charged: the buffer of a message being received (its capacity, as it
/// grows), the buffers kept to carry later messages, and a read buffer
/// beyond its base size. A connection whose next step would go over the
/// budget is failed, and the others carry on: with 1009 (message too big)
/// when the message alone is larger than the whole budget, with 1013 (try
/// again later) when the budget is taken by other connections.
///
/// ```
/// use airws::{Config, MemoryBudget};
///
/// // One budget for every connection of a server: 512 MiB in all.
/// let budget = MemoryBudget::new(512 << 20);
/// let config = Config::default().memory_budget(budget.clone());
/// assert_eq!(budget.used(), 0);
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    used: AtomicUsize,
}

/// The process's default budget, in bytes: what every [`Config`] uses
/// unless given another (see [`MemoryBudget::process_default`]).
///
/// [`Config`]: crate::Config
pub const DEFAULT_BUDGET: usize = 512 << 20;

impl MemoryBudget {
    /// A budget of `limit` bytes, used by no connection yet.
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// The budget every `Config` uses unless given another: one for the
    /// whole process, of [`DEFAULT_BUDGET`] bytes (512 MiB).
    pub fn process_default() -> MemoryBudget {
        static DEFAULT: OnceLock<MemoryBudget> = OnceLock::new();
        DEFAULT
            .get_or_init(|| MemoryBudget::new(DEFAULT_BUDGET))
            .clone()
    }

    /// Its limit, in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// The bytes charged to it now.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Charges `bytes`, if they fit; returns whether they did.
    pub fn try_charge(&self, bytes: usize) -> bool {
        if bytes == 0 {
            return true;
        }
        let mut used = self.inner.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = used.checked_add(bytes).filter(|&n| n <= self.inner.limit) else {
                return false;
            };
            match self.inner.used.compare_exchange_weak(
                used,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Gives back `bytes` charged before.
    pub fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut used = self.inner.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_sub(bytes);
            match self.inner.used.compare_exchange_weak(
                used,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => used = now,
            }
        }
    }

    /// Whether `self` and `other` are the same budget.
    pub fn same(&self, other: &MemoryBudget) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.limit())
            .field("used", &self.used())
            .finish()
    }
}

/// What one owner (a receiver, a read buffer) has charged to a budget,
/// given back when it is dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Option<MemoryBudget>,
    bytes: usize,
}

impl Charge {
    pub(crate) fn new(budget: Option<MemoryBudget>) -> Charge {
        Charge { budget, bytes: 0 }
    }

    /// A new, empty charge on the same budget.
    pub(crate) fn sibling(&self) -> Charge {
        Charge::new(self.budget.clone())
    }

    /// Brings the charge to `bytes`: charges the difference (false when
    /// it does not fit; the charge is then unchanged), or gives it back.
    pub(crate) fn set(&mut self, bytes: usize) -> bool {
        let Some(budget) = &self.budget else {
            self.bytes = bytes;
            return true;
        };
        if bytes > self.bytes {
            if !budget.try_charge(bytes - self.bytes) {
                return false;
            }
        } else {
            budget.release(self.bytes - bytes);
        }
        self.bytes = bytes;
        true
    }

    /// The bytes charged.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The budget's limit (`usize::MAX` without one).
    pub(crate) fn limit(&self) -> usize {
        self.budget.as_ref().map_or(usize::MAX, MemoryBudget::limit)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_fit_the_limit_and_are_given_back() {
        let b = MemoryBudget::new(100);
        assert!(b.try_charge(60));
        assert!(!b.try_charge(41));
        assert!(b.try_charge(40));
        assert_eq!(b.used(), 100);
        b.release(30);
        assert_eq!(b.used(), 70);
        let mut c = Charge::new(Some(b.clone()));
        assert!(c.set(30));
        assert!(!c.set(31), "over the limit");
        assert_eq!((c.bytes(), b.used()), (30, 100));
        assert!(c.set(10));
        assert_eq!(b.used(), 80);
        drop(c);
        assert_eq!(b.used(), 70);
        assert!(MemoryBudget::process_default().same(&MemoryBudget::process_default()));
    }
}
