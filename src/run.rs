//! An open connection's life on its thread: publishes the connection,
//! dispatches `connect`, runs the read loop, delivers its messages as
//! `websocketData` events, and ends the connection.

use crate::connection::{self, Conn};
use crate::error::{Error, Timeout};
use crate::event::{Event, EventTarget, IOErrorEvent, WebSocketEvent};
use crate::proto::connection::{Ending, Failure};
use crate::proto::receiver::Incoming;
use crate::session::Session;
use crate::websocket::{HandshakeRequest, HandshakeResponse, Phase};
use std::io;
use std::sync::Arc;
use std::time::Duration;

impl Session {
    /// The handshake succeeded: publishes the connection, dispatches
    /// `connect`, runs the read loop and ends the connection. With
    /// `may_retry`, an ending that retrying can fix dispatches nothing: the
    /// `WebSocket` goes back to connecting and the cause is returned.
    pub(crate) fn open_and_run(
        &self,
        conn: Arc<Conn>,
        protocol: String,
        leftover: Vec<u8>,
        response: Option<HandshakeResponse>,
        request: Option<HandshakeRequest>,
        may_retry: bool,
    ) -> Option<Error> {
        let _ = conn.transport.socket().set_read_timeout(None);
        let _ = conn
            .transport
            .set_write_timeout(self.config().write_timeout);
        conn.set_reader_thread();
        conn.set_release_after(self.config().release_buffers_after);
        let published = self.with_current(|st| {
            st.phase = Phase::Open;
            st.conn = Some(conn.clone());
            st.pending = None;
            st.protocol = protocol;
            st.extensions = conn.extensions();
            st.response = response;
            st.request = request;
        });
        if published.is_none() {
            conn.transport.shutdown();
            return None;
        }
        self.emit(Event::new(Event::CONNECT, false));
        let mut events = DataEvents {
            session: self,
            target: None,
            paused: Duration::ZERO,
        };
        let (ending, error) = connection::read_loop(&conn, &leftover, &mut events);
        // No handle of ours outlives the read loop.
        drop(events);
        conn.transport.shutdown();
        conn.mark_finished();
        let reason = conn.close_reason(ending);
        let retry = may_retry && crate::proto::backoff::retryable_close(reason);
        let notify = {
            let mut st = self.shared.state();
            if st.generation != self.generation {
                false
            } else {
                let notify = st.phase == Phase::Open;
                // Ended by the peer or the link, to be tried again: still
                // connecting, as far as the application can tell.
                st.phase = if notify && retry {
                    Phase::Connecting
                } else {
                    Phase::Closed
                };
                st.conn = None;
                st.close_reason = i32::from(reason);
                st.close_text = conn.peer_close_reason();
                if notify && !retry {
                    st.ending_listeners = Some(self.generation);
                }
                self.shared.ended.notify_all();
                notify
            }
        };
        log::debug!("connection ended: {ending:?}, close reason {reason}");
        if notify && retry {
            let close = self.close_event(&conn, ending, error.as_ref());
            return Some(close.error().cloned().unwrap_or_else(|| {
                Error::io(
                    "The connection ended",
                    io::Error::other(format!("closed (close reason {reason})")),
                )
            }));
        }
        if notify {
            if ending == Ending::Broken {
                self.emit(IOErrorEvent::from_error(self.broken(&conn, error.as_ref())));
            }
            self.emit(self.close_event(&conn, ending, error.as_ref()));
            self.ending_dispatched();
        }
        None
    }

    /// Why the connection broke: the read's error, or the write's.
    fn broken(&self, conn: &Conn, read_error: Option<&io::Error>) -> Error {
        match read_error {
            Some(e) => Error::io(
                "The connection failed",
                io::Error::new(e.kind(), e.to_string()),
            ),
            None => conn.write_failure().unwrap_or_else(|| {
                Error::io("The connection failed", io::Error::other("a write failed"))
            }),
        }
    }

    /// The `close` event of an open connection that ended: carrying why,
    /// when this end failed it or it broke.
    fn close_event(&self, conn: &Conn, ending: Ending, read_error: Option<&io::Error>) -> Event {
        let error = match ending {
            Ending::Failed(_) => match conn.failure() {
                Some(Failure::Violation(v)) => Some(Error::Protocol {
                    code: v.code,
                    message: v.reason.to_owned(),
                }),
                Some(Failure::MessageTimeout) => {
                    self.config().message_timeout.map(|after| Error::Timeout {
                        which: Timeout::Message,
                        after,
                        context: "A message was not finished".to_owned(),
                    })
                }
                Some(Failure::PeerDead) => self.config().keepalive.map(|k| Error::Timeout {
                    which: Timeout::Keepalive,
                    after: k.interval + k.timeout,
                    context: "The peer did not answer pings".to_owned(),
                }),
                Some(Failure::IdleTimeout) => {
                    self.config().idle_timeout.map(|after| Error::Timeout {
                        which: Timeout::Idle,
                        after,
                        context: "Nothing arrived".to_owned(),
                    })
                }
                _ => None,
            },
            Ending::Broken => Some(self.broken(conn, read_error)),
            _ => None,
        };
        match error {
            Some(error) => Event::failed_close(error),
            None => Event::new(Event::CLOSE, false),
        }
    }
}

/// Delivers the read loop's messages as `websocketData` events.
///
/// The events' target (a strong handle) is made once for all the messages
/// of one read and dropped before the next read, so the connection still
/// ends right after a listener drops the application's last handle. Each
/// message's buffer comes back after its dispatch, for the next message
/// (through a pump, it goes with the event).
struct DataEvents<'a> {
    session: &'a Session,
    target: Option<Option<EventTarget>>,
    /// How long the deliveries waited for room in the pump's queue.
    paused: Duration,
}

impl connection::Deliver for DataEvents<'_> {
    fn message(&mut self, msg: Incoming) -> Option<Vec<u8>> {
        let event = match msg {
            Incoming::Text(s) => WebSocketEvent::text(s),
            Incoming::Binary(b) => WebSocketEvent::binary(b),
            _ => return None,
        };
        if self.session.is_pumped() {
            self.paused += self.session.emit(event);
            return None;
        }
        let target = self
            .target
            .get_or_insert_with(|| self.session.target())
            .clone();
        self.session.dispatch_with(&event, target);
        event.into_message_bytes()
    }

    fn read_done(&mut self) {
        self.target = None;
    }

    fn take_paused(&mut self) -> Duration {
        std::mem::take(&mut self.paused)
    }
}
