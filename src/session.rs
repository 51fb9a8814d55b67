//! The connection's thread: its link to the `WebSocket`, how it dispatches
//! events, and how it changes the state only while its connection is the
//! current one.

use crate::config::Options;
use crate::event::{Event, EventTarget};
use crate::proto::connection::Settings;
use crate::proto::Role;
use crate::pump::{NotQueued, Queue};
use crate::websocket::{Handle, Phase, Shared, State, WebSocket};
use std::io;
use std::net::TcpStream;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The connection's thread: its link to the `WebSocket` and its generation.
pub(crate) struct Session {
    pub(crate) shared: Arc<Shared>,
    pub(crate) handle: Weak<Handle>,
    /// The generation this thread's connection was given; it acts only while
    /// that is the current one.
    pub(crate) generation: u64,
    /// The role the `WebSocket` took for this connection: its options are
    /// that role's.
    pub(crate) role: Role,
}

/// Between two TCP keepalive probes, once the first was sent.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Session {
    /// The options of this connection's role.
    pub(crate) fn config(&self) -> &Options {
        self.shared.config.for_role(self.role)
    }

    /// The listeners of this connection's ending have returned: wakes
    /// `wait_closed`.
    pub(crate) fn ending_dispatched(&self) {
        let mut st = self.shared.state();
        if st.ending_listeners == Some(self.generation) {
            st.ending_listeners = None;
            self.shared.ended.notify_all();
        }
    }

    /// The protocol's limits and timers, from the configuration.
    pub(crate) fn settings(&self) -> Settings {
        Settings {
            limits: self.config().limits(),
            close_timeout: self.config().close_timeout,
            idle_timeout: self.config().idle_timeout,
            message_timeout: self.config().message_timeout,
            budget: Some(self.config().memory_budget.clone()),
            keepalive: self.config().keepalive,
        }
    }

    /// Dispatches an event to the listeners, with the `WebSocket` as target
    /// while a user handle exists: at once on this thread, or through the
    /// pump the `WebSocket` is attached to (then this returns once the
    /// event is queued, having waited for room, and the time it waited is
    /// returned).
    pub(crate) fn emit(&self, event: Event) -> Duration {
        self.emit_with(event, || self.target())
    }

    /// [`emit`](Self::emit) with the target `target()` gives, when the
    /// event is dispatched on this thread.
    pub(crate) fn emit_with(
        &self,
        event: Event,
        target: impl FnOnce() -> Option<EventTarget>,
    ) -> Duration {
        let Some(queue) = self.queue() else {
            self.dispatch_with(&event, target());
            return Duration::ZERO;
        };
        let budget = Some(&self.config().memory_budget);
        match queue.push(&self.shared, &self.handle, Arc::new(event), budget, false) {
            Ok((waited, _)) => waited,
            Err(NotQueued::Closed(event)) => {
                self.dispatch(&event);
                Duration::ZERO
            }
            Err(NotQueued::Unwanted) => Duration::ZERO,
        }
    }

    /// Dispatches an event whose outcome the caller reads next
    /// (`certificateError`, `upgradeRequest`, `httpRequest`): at once, or
    /// through the pump, waiting until it dispatched it or `deadline`.
    /// Returns whether the listeners ran (if not, they never will for it).
    pub(crate) fn decide(&self, event: &Arc<Event>, deadline: Instant) -> bool {
        let Some(queue) = self.queue() else {
            self.dispatch(event);
            return true;
        };
        let budget = Some(&self.config().memory_budget);
        match queue.push(&self.shared, &self.handle, event.clone(), budget, true) {
            Ok((_, Some(answer))) => {
                let done = answer.wait(deadline);
                if !done {
                    log::debug!(
                        "the pump did not dispatch '{}' before the handshake deadline",
                        event.event_type()
                    );
                }
                done
            }
            Ok((_, None)) | Err(NotQueued::Unwanted) => false,
            Err(NotQueued::Closed(event)) => {
                self.dispatch(&event);
                true
            }
        }
    }

    /// Whether the `WebSocket` is attached to a pump that still exists.
    pub(crate) fn is_pumped(&self) -> bool {
        self.queue().is_some()
    }

    /// The pump's queue, when the `WebSocket` is attached to a pump that
    /// still exists.
    fn queue(&self) -> Option<Arc<Queue>> {
        self.shared.pump.get().and_then(Weak::upgrade)
    }

    /// Dispatches an event to the listeners on this thread, with the
    /// `WebSocket` as target while a user handle exists.
    pub(crate) fn dispatch(&self, event: &Event) {
        self.dispatch_with(event, self.target());
    }

    /// Dispatches `event` with `target` set while the listeners run.
    pub(crate) fn dispatch_with(&self, event: &Event, target: Option<EventTarget>) {
        event.set_target(target);
        self.shared.listeners.dispatch(event);
        event.set_target(None);
    }

    /// A handle to dispatch events with, unless the application dropped
    /// every handle.
    pub(crate) fn target(&self) -> Option<EventTarget> {
        self.handle
            .upgrade()
            .map(|handle| Arc::new(WebSocket { handle }) as EventTarget)
    }

    /// Runs `f` on the state, under its lock, if this connection is still
    /// being opened: its generation is the current one and nobody aborted
    /// it (`close()`, the last handle dropped). `None` when it is not.
    pub(crate) fn with_current<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        let mut st = self.shared.state();
        if st.generation != self.generation || st.phase != Phase::Connecting {
            return None;
        }
        Some(f(&mut st))
    }

    /// Whether this connection is still being opened (not aborted or replaced).
    pub(crate) fn still_connecting(&self) -> bool {
        self.with_current(|_| ()).is_some()
    }

    /// Keeps a handle to the socket so that `close()` can abort the opening.
    pub(crate) fn register_pending(&self, tcp: &Arc<TcpStream>) -> bool {
        self.with_current(|st| st.pending = Some(tcp.clone()))
            .is_some()
    }

    /// The socket options for the opening handshake.
    pub(crate) fn setup_socket(&self, tcp: &TcpStream) -> io::Result<()> {
        tcp.set_nodelay(self.config().nodelay)?;
        if let Some(idle) = self.config().tcp_keepalive {
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval(KEEPALIVE_INTERVAL);
            socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive)?;
        }
        tcp.set_read_timeout(Some(self.config().handshake_timeout))?;
        tcp.set_write_timeout(Some(self.config().handshake_timeout))
    }
}
