//! Events on the owner's thread: an [`EventPump`] that the application
//! pumps on its own thread (a GUI loop), the bounded queue the connections'
//! threads fill, the waker, and listeners that need not be `Send`.

use crate::dispatcher::ListenerId;
use crate::error::Error;
use crate::event::{Event, EventTarget};
use crate::proto::budget::{Charge, MemoryBudget};
use crate::websocket::{Handle, Shared, WebSocket};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

/// The default bound of a pump's queue: events.
pub const DEFAULT_PUMP_EVENTS: usize = 1024;
/// The default bound of a pump's queue: bytes of message data.
pub const DEFAULT_PUMP_BYTES: usize = 16 << 20;

/// How often a connection thread that waits for room looks again whether
/// its `WebSocket` is still wanted.
const RECHECK: Duration = Duration::from_millis(50);

/// A waker: called from a connection's thread when the queue gets an event
/// after being empty.
type Waker = Arc<dyn Fn() + Send + Sync + 'static>;

/// The answer to an event whose outcome a connection waits for
/// (`certificateError`, `upgradeRequest`, `httpRequest`).
#[derive(Default)]
pub(crate) struct Answer {
    state: Mutex<AnswerState>,
    changed: Condvar,
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum AnswerState {
    #[default]
    Waiting,
    Dispatched,
    /// The connection stopped waiting: the pump must not dispatch it.
    Abandoned,
}

impl Answer {
    fn lock(&self) -> MutexGuard<'_, AnswerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the pump may dispatch it (marks nothing).
    fn wanted(&self) -> bool {
        *self.lock() == AnswerState::Waiting
    }

    fn dispatched(&self) {
        *self.lock() = AnswerState::Dispatched;
        self.changed.notify_all();
    }

    /// Waits until the pump dispatched it or `deadline`; returns whether it
    /// was dispatched (if not, it never will be).
    pub(crate) fn wait(&self, deadline: Instant) -> bool {
        let mut st = self.lock();
        loop {
            match *st {
                AnswerState::Dispatched => return true,
                AnswerState::Abandoned => return false,
                AnswerState::Waiting => {}
            }
            let now = Instant::now();
            if now >= deadline {
                *st = AnswerState::Abandoned;
                return false;
            }
            st = match self.changed.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn abandon(&self) {
        let mut st = self.lock();
        if *st == AnswerState::Waiting {
            *st = AnswerState::Abandoned;
        }
        self.changed.notify_all();
    }
}

/// An event waiting for the pump.
struct Item {
    shared: Arc<Shared>,
    handle: Weak<Handle>,
    event: Arc<Event>,
    bytes: usize,
    /// The event's data, charged to its connection's memory budget.
    _charge: Charge,
    answer: Option<Arc<Answer>>,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Item>,
    bytes: usize,
    /// The pump was dropped: events go to the listeners directly.
    closed: bool,
}

/// The queue a pump and its connections share.
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    not_empty: Condvar,
    not_full: Condvar,
    waker: Mutex<Option<Waker>>,
    max_events: usize,
    max_bytes: usize,
    /// The pump's thread: where local listeners live.
    thread: ThreadId,
    /// Pumped by `WebSocket::receive` rather than an `EventPump`: the
    /// owner's sends block as usual.
    by_receive: bool,
}

/// Why an event was not queued.
pub(crate) enum NotQueued {
    /// The pump is gone: dispatch it directly.
    Closed(Arc<Event>),
    /// Nobody holds the `WebSocket` any more: drop it.
    Unwanted,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn thread(&self) -> ThreadId {
        self.thread
    }

    /// A queue of its own for a `WebSocket` used with blocking calls
    /// (`WebSocket::open`, `receive`): the events wait for `receive`.
    pub(crate) fn for_receive() -> Arc<Queue> {
        Arc::new(Queue::new(DEFAULT_PUMP_EVENTS, DEFAULT_PUMP_BYTES, true))
    }

    fn new(max_events: usize, max_bytes: usize, by_receive: bool) -> Queue {
        Queue {
            state: Mutex::new(QueueState::default()),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            waker: Mutex::new(None),
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
            thread: thread::current().id(),
            by_receive,
        }
    }

    /// Whether no event waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// Whether sends from the owner's thread must not block (an
    /// `EventPump`'s queue).
    pub(crate) fn sends_must_not_block(&self) -> bool {
        !self.by_receive
    }

    /// Waits until `deadline` for an event, and dispatches it on this
    /// thread; returns it, or `None` at the deadline.
    pub(crate) fn next_dispatched(&self, deadline: Instant) -> Option<Arc<Event>> {
        loop {
            if !self.wait_for_event(deadline) {
                return None;
            }
            if let Some(item) = self.pop() {
                if let Some(event) = dispatch_item(item) {
                    return Some(event);
                }
            }
        }
    }

    /// Queues `event` of the `WebSocket` (`shared`, `handle`), waiting while
    /// the queue is full (an empty queue takes any event); `budget` is
    /// charged with its data. Returns how long it waited for room, and the
    /// answer to wait for when `decision`.
    pub(crate) fn push(
        &self,
        shared: &Arc<Shared>,
        handle: &Weak<Handle>,
        event: Arc<Event>,
        budget: Option<&MemoryBudget>,
        decision: bool,
    ) -> Result<(Duration, Option<Arc<Answer>>), NotQueued> {
        let bytes = event.data().len();
        let mut charge = Charge::new(budget.cloned());
        let mut waited = None;
        let mut st = self.lock();
        loop {
            if st.closed {
                return Err(NotQueued::Closed(event));
            }
            let fits = st.items.len() < self.max_events
                && st.bytes.saturating_add(bytes) <= self.max_bytes
                && charge.set(bytes);
            if fits || st.items.is_empty() {
                break;
            }
            // Full: this connection stops reading until the pump makes room.
            waited.get_or_insert_with(Instant::now);
            if handle.strong_count() == 0 {
                log::debug!("an event for a dropped WebSocket was not queued");
                return Err(NotQueued::Unwanted);
            }
            st = match self.not_full.wait_timeout(st, RECHECK) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        let answer = decision.then(|| Arc::new(Answer::default()));
        let was_empty = st.items.is_empty();
        st.bytes += bytes;
        st.items.push_back(Item {
            shared: shared.clone(),
            handle: handle.clone(),
            event,
            bytes,
            _charge: charge,
            answer: answer.clone(),
        });
        drop(st);
        self.not_empty.notify_all();
        if was_empty {
            let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(wake) = waker {
                wake();
            }
        }
        Ok((waited.map_or(Duration::ZERO, |t| t.elapsed()), answer))
    }

    /// Waits until an event waits or `deadline`; returns whether one does.
    fn wait_for_event(&self, deadline: Instant) -> bool {
        let mut st = self.lock();
        while st.items.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = match self.not_empty.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    fn pop(&self) -> Option<Item> {
        let mut st = self.lock();
        let item = st.items.pop_front()?;
        st.bytes -= item.bytes;
        drop(st);
        self.not_full.notify_all();
        Some(item)
    }
}

/// Runs a `WebSocket`'s listeners on the thread that owns the pump, as AIR
/// delivers every event on the application's main loop: a desktop app's UI
/// thread, a script's main thread. Not in AIR, whose runtime pumps by
/// itself.
///
/// A `WebSocket` [attached](Self::attach) to a pump no longer calls its
/// listeners on its connection's thread: that thread queues each event,
/// and [`dispatch_pending`](Self::dispatch_pending) (or
/// [`wait`](Self::wait)) runs the listeners, in the order the events
/// happened, with AS3's dispatch rules (priorities, `prevent_default`,
/// `stop_immediate_propagation`). On the pump's thread a `WebSocket` also
/// takes listeners that are not `Send` and may mutate what they capture
/// ([`WebSocket::add_local_event_listener`]).
///
/// The queue is bounded, by count and by bytes of message data (charged to
/// the connection's [`MemoryBudget`] too): when it is full, the connection
/// stops reading until the pump makes room, so that TCP pushes back on the
/// peer; time spent paused so does not count towards the idle and message
/// timeouts. An empty queue takes any one event, however large.
///
/// On the pump's thread, `send_message` and `close` never block: a
/// message is queued and the connection's flusher thread writes it
/// ([`WebSocket::buffered_amount`] tells what waits); a send that would
/// pass [`Config::max_buffered_amount`](crate::Config::max_buffered_amount)
/// fails with [`Error::BufferFull`] and queues nothing.
///
/// Events whose outcome the connection needs (`certificateError`, and a
/// server's `upgradeRequest` and `httpRequest`) wait for the pump up to the
/// handshake timeout; one not pumped by then is dropped undispatched: the
/// certificate is refused (close 1015), the request answered 503.
///
/// ```
/// use airws::{Event, EventDispatcher, EventPump, WebSocket};
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use std::time::Duration;
///
/// let pump = EventPump::new();
/// pump.set_waker(|| { /* egui: ctx.request_repaint() */ });
/// let ws = WebSocket::new();
/// pump.attach(&ws)?;
/// // UI state that is not Send: a listener on this thread may change it.
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let l = log.clone();
/// ws.add_local_event_listener(Event::CLOSE, move |_e: &Event| l.borrow_mut().push("closed"))?;
/// // The UI loop, each frame:
/// let dispatched = pump.dispatch_pending();
/// # assert_eq!(dispatched, 0);
/// // A script: wait for the next event.
/// let _ = pump.wait(Duration::from_millis(10));
/// # Ok::<(), airws::Error>(())
/// ```
pub struct EventPump {
    queue: Arc<Queue>,
    /// Not `Send`: it runs listeners that live on its thread.
    _local: PhantomData<Rc<()>>,
}

impl fmt::Debug for EventPump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventPump")
            .field("pending", &self.pending())
            .field("max_events", &self.queue.max_events)
            .field("max_bytes", &self.queue.max_bytes)
            .finish()
    }
}

impl Default for EventPump {
    fn default() -> Self {
        EventPump::new()
    }
}

impl EventPump {
    /// A pump for the calling thread, its queue bounded at
    /// [`DEFAULT_PUMP_EVENTS`] events and [`DEFAULT_PUMP_BYTES`] bytes.
    pub fn new() -> EventPump {
        EventPump::with_limits(DEFAULT_PUMP_EVENTS, DEFAULT_PUMP_BYTES)
    }

    /// A pump whose queue holds at most `max_events` events and
    /// `max_bytes` bytes of message data (each at least 1; an empty queue
    /// takes one event of any size).
    pub fn with_limits(max_events: usize, max_bytes: usize) -> EventPump {
        EventPump {
            queue: Arc::new(Queue::new(max_events, max_bytes, false)),
            _local: PhantomData,
        }
    }

    /// Sets the waker: called from a connection's thread whenever an event
    /// is queued while the queue was empty (once per burst, not per
    /// event), so that a GUI loop wakes itself and pumps (egui's
    /// `request_repaint`, winit's `EventLoopProxy::send_event`, a
    /// channel). It must not block.
    pub fn set_waker(&self, waker: impl Fn() + Send + Sync + 'static) {
        *self.queue.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(waker));
    }

    /// Delivers `ws`'s events through this pump from now on (attach it
    /// before `connect` to get them all).
    ///
    /// [`Error::IllegalOperation`] when it is attached to a pump already.
    pub fn attach(&self, ws: &WebSocket) -> Result<(), Error> {
        if ws.shared().pump.set(Arc::downgrade(&self.queue)).is_err() {
            return Err(Error::illegal(
                "EventPump::attach: the WebSocket is attached to a pump already",
            ));
        }
        Ok(())
    }

    /// How many events wait.
    pub fn pending(&self) -> usize {
        self.queue.lock().items.len()
    }

    /// Runs the listeners of the events that wait, in order, on this
    /// thread; returns how many events it dispatched. Events queued while
    /// it runs wait for the next call.
    pub fn dispatch_pending(&self) -> usize {
        let mut left = self.pending();
        let mut dispatched = 0;
        while left > 0 {
            left -= 1;
            let Some(item) = self.queue.pop() else { break };
            if dispatch_item(item).is_some() {
                dispatched += 1;
            }
        }
        dispatched
    }

    /// Waits up to `timeout` for an event, then dispatches what waits
    /// ([`dispatch_pending`](Self::dispatch_pending)); returns how many
    /// events it dispatched (0 when none came).
    pub fn wait(&self, timeout: Duration) -> usize {
        if !self.queue.wait_for_event(Instant::now() + timeout) {
            return 0;
        }
        self.dispatch_pending()
    }
}

/// Runs the listeners of a queued event on this thread, unless it is a
/// decision the connection stopped waiting for; returns the event when it
/// was dispatched.
fn dispatch_item(item: Item) -> Option<Arc<Event>> {
    if let Some(answer) = &item.answer {
        if !answer.wanted() {
            return None;
        }
    }
    let target = item
        .handle
        .upgrade()
        .map(|handle| Arc::new(WebSocket::from_handle(handle)) as EventTarget);
    item.event.set_target(target);
    item.shared.listeners.dispatch(&item.event);
    item.event.set_target(None);
    if let Some(answer) = &item.answer {
        answer.dispatched();
    }
    Some(item.event)
}

impl Drop for EventPump {
    fn drop(&mut self) {
        let items = {
            let mut st = self.queue.lock();
            st.closed = true;
            st.bytes = 0;
            std::mem::take(&mut st.items)
        };
        self.queue.not_full.notify_all();
        for item in &items {
            if let Some(answer) = &item.answer {
                answer.abandon();
            }
        }
        if !items.is_empty() {
            log::debug!("an EventPump was dropped with {} events", items.len());
        }
        drop(items);
        // The local listeners of its WebSockets can never run again.
        let pump = queue_id(&self.queue);
        let _ = LOCAL.try_with(|m| {
            if let Ok(mut m) = m.try_borrow_mut() {
                m.retain(|_, (owner, _)| *owner != pump);
            }
        });
    }
}

// ---------------------------------------------------------------- local listeners

type LocalListener = Rc<RefCell<Box<dyn FnMut(&Event)>>>;

thread_local! {
    /// The listeners that live on this thread, by key, with the pump they
    /// were added through; the `WebSocket`'s registry holds a forwarder for
    /// each. An entry goes when the registry drops its forwarder on this
    /// thread, or when the pump is dropped.
    static LOCAL: RefCell<HashMap<u64, (usize, LocalListener)>> = RefCell::new(HashMap::new());
}

/// A pump's identity in [`LOCAL`].
fn queue_id(queue: &Arc<Queue>) -> usize {
    Arc::as_ptr(queue) as usize
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// The registry's part of a local listener: removes it from its thread's
/// table when the registry lets go of it (on that thread).
struct LocalKey(u64);

impl Drop for LocalKey {
    fn drop(&mut self) {
        let key = self.0;
        let _ = LOCAL.try_with(|m| {
            if let Ok(mut m) = m.try_borrow_mut() {
                m.remove(&key);
            }
        });
    }
}

/// Calls the local listener `key`, when this thread holds it.
fn call_local(key: u64, event: &Event) {
    let Some(listener) = LOCAL.with(|m| m.borrow().get(&key).map(|(_, l)| l.clone())) else {
        return;
    };
    match listener.try_borrow_mut() {
        Ok(mut f) => f(event),
        Err(_) => log::warn!(
            "a local listener for '{}' dispatched its own event type again; not called twice",
            event.event_type()
        ),
    };
}

impl WebSocket {
    /// Adds a listener that runs on the pump's thread and need not be
    /// `Send` or `Sync`: it may capture and change the UI's state (an
    /// `Rc<RefCell<..>>`). Like
    /// [`add_event_listener`](crate::EventDispatcher::add_event_listener)
    /// otherwise (priority 0, removed with `remove_event_listener`). Not in
    /// AIR.
    ///
    /// [`Error::IllegalOperation`] unless the `WebSocket` is attached to an
    /// [`EventPump`] of the calling thread.
    pub fn add_local_event_listener<F>(
        &self,
        event_type: impl Into<crate::EventType>,
        listener: F,
    ) -> Result<ListenerId, Error>
    where
        F: FnMut(&Event) + 'static,
    {
        let queue = self
            .shared()
            .pump
            .get()
            .and_then(Weak::upgrade)
            .filter(|q| q.thread() == thread::current().id());
        let Some(queue) = queue else {
            return Err(Error::illegal(
                "addLocalEventListener: the WebSocket is not attached to an EventPump of this thread",
            ));
        };
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        let listener: LocalListener = Rc::new(RefCell::new(Box::new(listener)));
        LOCAL.with(|m| m.borrow_mut().insert(key, (queue_id(&queue), listener)));
        let guard = LocalKey(key);
        // The forwarder owns the guard (all of it, not just its key).
        let forward = move |e: &Event| {
            let guard = &guard;
            call_local(guard.0, e);
        };
        Ok(self
            .shared()
            .listeners
            .add(event_type, 0, Arc::new(forward)))
    }
}
