//! AS3's `EventDispatcher`: listener registries keyed by event type, with
//! priorities, and the dispatch rules of AS3.

use crate::event::{Event, EventTarget, EventType};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

/// A listener: called with each event of the type it was registered for.
pub type Listener = Arc<dyn Fn(&Event) + Send + Sync + 'static>;

/// Identifies a registered listener, for
/// [`remove_event_listener`](EventDispatcher::remove_event_listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

#[derive(Clone)]
struct Entry {
    id: u64,
    priority: i32,
    listener: Listener,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    // Copy-on-write: a dispatch clones the Arc, not the list. A B-tree: a
    // dispatcher has few event types, and comparing a few short strings
    // costs less than hashing one with SipHash. The keys are `'static`
    // strings: adding a listener does not copy its type's name.
    by_type: BTreeMap<EventType, Arc<Vec<Entry>>>,
}

/// The listeners of one dispatcher.
#[derive(Default)]
pub struct ListenerRegistry {
    table: Mutex<Table>,
}

impl std::fmt::Debug for ListenerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.lock();
        let mut m = f.debug_map();
        for (k, v) in &t.by_type {
            m.entry(&k.as_str(), &v.len());
        }
        m.finish()
    }
}

impl ListenerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a listener; higher priorities are called first, equal ones in the
    /// order they were added.
    pub fn add(
        &self,
        event_type: impl Into<EventType>,
        priority: i32,
        listener: Listener,
    ) -> ListenerId {
        let mut t = self.lock();
        t.next_id += 1;
        let id = t.next_id;
        let list = Arc::make_mut(t.by_type.entry(event_type.into()).or_default());
        let at = list
            .iter()
            .position(|e| e.priority < priority)
            .unwrap_or(list.len());
        list.insert(
            at,
            Entry {
                id,
                priority,
                listener,
            },
        );
        ListenerId(id)
    }

    /// Removes a listener; returns whether it was registered for `event_type`.
    pub fn remove(&self, event_type: impl Into<EventType>, id: ListenerId) -> bool {
        let event_type = event_type.into();
        let mut t = self.lock();
        let Some(list) = t.by_type.get_mut(&event_type) else {
            return false;
        };
        let Some(at) = list.iter().position(|e| e.id == id.0) else {
            return false;
        };
        Arc::make_mut(list).remove(at);
        if list.is_empty() {
            t.by_type.remove(&event_type);
        }
        true
    }

    /// Whether any listener is registered for `event_type`.
    pub fn has(&self, event_type: impl Into<EventType>) -> bool {
        self.lock()
            .by_type
            .get(&event_type.into())
            .is_some_and(|l| !l.is_empty())
    }

    /// Calls the listeners for the event's type, as they were when the
    /// dispatch began: one added meanwhile is not called, one removed meanwhile
    /// still is. No lock is held while a listener runs. A panicking listener
    /// is logged and the next one is called. Returns `false` when the default
    /// was prevented.
    pub fn dispatch(&self, event: &Event) -> bool {
        let snapshot = self.lock().by_type.get(&event.event_type()).cloned();
        if let Some(list) = snapshot {
            for entry in list.iter() {
                let listener = &entry.listener;
                if catch_unwind(AssertUnwindSafe(|| listener(event))).is_err() {
                    event.set_panicked();
                    log::error!(
                        "a listener for '{}' panicked; the panic was caught",
                        event.event_type()
                    );
                }
                if event.is_stopped() {
                    break;
                }
            }
        }
        !event.is_default_prevented()
    }
}

/// AS3's `EventDispatcher`: implemented by [`WebSocket`](crate::WebSocket)
/// and [`ServerSocket`](crate::ServerSocket), and by any type of yours that
/// holds a [`ListenerRegistry`].
///
/// Every method that takes an event type takes `impl Into<EventType>`: one of
/// the AS3 constants ([`Event::CONNECT`], ...), a constant of your own made
/// with [`EventType::new`], or a string literal. A type of your own is
/// declared once, as AS3 declares `public static const TICK:String = "tick"`:
///
/// ```
/// use airws::{Event, EventDispatcher, EventType, ListenerRegistry};
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// struct Clock { listeners: ListenerRegistry }
/// impl Clock {
///     const TICK: EventType = EventType::new("tick");
/// }
/// impl EventDispatcher for Clock {
///     fn listeners(&self) -> &ListenerRegistry { &self.listeners }
/// }
///
/// let clock = Clock { listeners: ListenerRegistry::new() };
/// let ticks = Arc::new(AtomicUsize::new(0));
/// let t = ticks.clone();
/// let id = clock.add_event_listener(Clock::TICK, move |e: &Event| {
///     assert_eq!(e.event_type(), Clock::TICK);
///     t.fetch_add(1, Ordering::SeqCst);
/// });
/// assert!(clock.has_event_listener(Clock::TICK));
/// // A string literal names the same type.
/// assert!(clock.has_event_listener("tick"));
/// clock.dispatch_event(&Event::new(Clock::TICK, false));
/// clock.dispatch_event(&Event::new("tick", false));
/// assert!(clock.remove_event_listener(Clock::TICK, id));
/// clock.dispatch_event(&Event::new(Clock::TICK, false));
/// assert_eq!(ticks.load(Ordering::SeqCst), 2);
/// ```
pub trait EventDispatcher {
    /// The registry that holds this dispatcher's listeners.
    fn listeners(&self) -> &ListenerRegistry;

    /// What [`Event::target`] returns during this dispatcher's dispatches.
    fn event_target(&self) -> Option<EventTarget> {
        None
    }

    /// Registers a listener for `event_type` at priority 0 and returns its id.
    ///
    /// Listeners run on the connection's thread, one event at a time, with no
    /// lock of this crate held, so they may call any method, including
    /// `send_message` and `close`.
    fn add_event_listener<F>(&self, event_type: impl Into<EventType>, listener: F) -> ListenerId
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.add_event_listener_with_priority(event_type, listener, 0)
    }

    /// Registers a listener with AS3's `priority`: higher first, equal ones in
    /// the order they were added.
    fn add_event_listener_with_priority<F>(
        &self,
        event_type: impl Into<EventType>,
        listener: F,
        priority: i32,
    ) -> ListenerId
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.listeners()
            .add(event_type, priority, Arc::new(listener))
    }

    /// Removes a listener; returns whether it was registered.
    fn remove_event_listener(&self, event_type: impl Into<EventType>, id: ListenerId) -> bool {
        self.listeners().remove(event_type, id)
    }

    /// Whether any listener is registered for `event_type`.
    fn has_event_listener(&self, event_type: impl Into<EventType>) -> bool {
        self.listeners().has(event_type)
    }

    /// Whether dispatching `event_type` would call a listener. Without a
    /// display list this is [`has_event_listener`](Self::has_event_listener).
    fn will_trigger(&self, event_type: impl Into<EventType>) -> bool {
        self.has_event_listener(event_type)
    }

    /// Dispatches `event` to this dispatcher's listeners on the calling
    /// thread. Returns `false` when a listener prevented the default of a
    /// cancelable event.
    ///
    /// The event's [`target`](Event::target) is this dispatcher while its
    /// listeners run, and is cleared afterwards: unlike in AS3, where the
    /// garbage collector makes it harmless, an event kept after dispatch
    /// would otherwise keep its `WebSocket` (and its connection) alive.
    fn dispatch_event(&self, event: &Event) -> bool {
        event.set_target(self.event_target());
        let result = self.listeners().dispatch(event);
        event.set_target(None);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct D(ListenerRegistry);
    impl EventDispatcher for D {
        fn listeners(&self) -> &ListenerRegistry {
            &self.0
        }
    }

    fn recorder() -> (Arc<Mutex<Vec<String>>>, impl Fn(&str) -> Listener) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        (log, move |name: &str| {
            let l = l.clone();
            let name = name.to_owned();
            Arc::new(move |_e: &Event| l.lock().unwrap().push(name.clone())) as Listener
        })
    }

    #[test]
    fn priority_then_registration_order() {
        let d = D(ListenerRegistry::new());
        let (log, rec) = recorder();
        d.listeners().add("x", 0, rec("a0"));
        d.listeners().add("x", 5, rec("b5"));
        d.listeners().add("x", 0, rec("c0"));
        d.listeners().add("x", 5, rec("d5"));
        d.listeners().add("x", -1, rec("e-1"));
        d.dispatch_event(&Event::new("x", false));
        assert_eq!(*log.lock().unwrap(), ["b5", "d5", "a0", "c0", "e-1"]);
    }

    #[test]
    fn added_during_dispatch_not_called_removed_still_called() {
        let d = Arc::new(D(ListenerRegistry::new()));
        let (log, rec) = recorder();
        let later = Arc::new(Mutex::new(None));
        let d2 = d.clone();
        let later2 = later.clone();
        let rec_late = rec("late");
        d.add_event_listener("x", move |_e: &Event| {
            d2.listeners().add("x", 0, rec_late.clone());
            if let Some(id) = later2.lock().unwrap().take() {
                d2.remove_event_listener("x", id);
            }
        });
        let id = d.listeners().add("x", 0, rec("removed-meanwhile"));
        *later.lock().unwrap() = Some(id);
        d.dispatch_event(&Event::new("x", false));
        assert_eq!(*log.lock().unwrap(), ["removed-meanwhile"]);
        d.dispatch_event(&Event::new("x", false));
        assert_eq!(*log.lock().unwrap(), ["removed-meanwhile", "late"]);
    }

    #[test]
    fn stop_immediate_propagation_and_prevent_default() {
        let d = D(ListenerRegistry::new());
        let (log, rec) = recorder();
        d.add_event_listener("x", |e: &Event| {
            e.prevent_default();
            e.stop_immediate_propagation();
        });
        d.listeners().add("x", 0, rec("never"));
        assert!(!d.dispatch_event(&Event::new("x", true)));
        assert!(d.dispatch_event(&Event::new("x", false)), "not cancelable");
        assert!(log.lock().unwrap().is_empty());
    }

    #[test]
    fn a_panicking_listener_does_not_stop_the_next() {
        let d = D(ListenerRegistry::new());
        let called = Arc::new(AtomicBool::new(false));
        let c = called.clone();
        d.add_event_listener_with_priority("x", |_e: &Event| panic!("listener bug"), 1);
        d.add_event_listener("x", move |_e: &Event| c.store(true, Ordering::SeqCst));
        d.dispatch_event(&Event::new("x", false));
        assert!(called.load(Ordering::SeqCst));
    }

    #[test]
    fn has_will_trigger_and_remove() {
        let d = D(ListenerRegistry::new());
        assert!(!d.has_event_listener("x"));
        let id = d.add_event_listener("x", |_e: &Event| {});
        assert!(d.has_event_listener("x") && d.will_trigger("x"));
        assert!(!d.remove_event_listener("y", id));
        assert!(d.remove_event_listener("x", id));
        assert!(!d.remove_event_listener("x", id));
        assert!(!d.has_event_listener("x"));
    }
}
