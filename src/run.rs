//! An open connection's life on its thread: publishes the connection,
//! dispatches `connect`, runs the read loop, delivers its messages as
//! `websocketData` events, and ends the connection.

use crate::connection::{self, Conn};
use crate::event::{Event, EventTarget, IOErrorEvent, WebSocketEvent};
use crate::proto::connection::Ending;
use crate::proto::receiver::Incoming;
use crate::session::Session;
use crate::websocket::Phase;
use std::sync::Arc;

impl Session {
    /// The handshake succeeded: publishes the connection, dispatches
    /// `connect`, runs the read loop and ends the connection.
    pub(crate) fn open_and_run(self, conn: Arc<Conn>, protocol: String, leftover: Vec<u8>) {
        let _ = conn.transport.socket().set_read_timeout(None);
        let _ = conn
            .transport
            .socket()
            .set_write_timeout(self.config().write_timeout);
        conn.set_reader_thread();
        let published = self.with_current(|st| {
            st.phase = Phase::Open;
            st.conn = Some(conn.clone());
            st.pending = None;
            st.protocol = protocol;
        });
        if published.is_none() {
            conn.transport.shutdown();
            return;
        }
        self.dispatch(&Event::new(Event::CONNECT, false));
        let mut events = DataEvents {
            session: &self,
            target: None,
        };
        let (ending, error) = connection::read_loop(&conn, &leftover, &mut events);
        // No handle of ours outlives the read loop.
        drop(events);
        conn.transport.shutdown();
        conn.mark_finished();
        let reason = conn.close_reason(ending);
        let notify = {
            let mut st = self.shared.state();
            if st.generation != self.generation {
                false
            } else {
                let notify = st.phase == Phase::Open;
                st.phase = Phase::Closed;
                st.conn = None;
                st.close_reason = i32::from(reason);
                if notify {
                    st.ending_listeners = Some(self.generation);
                }
                self.shared.ended.notify_all();
                notify
            }
        };
        log::debug!("connection ended: {ending:?}, close reason {reason}");
        if notify {
            if ending == Ending::Broken {
                let cause = error.map_or_else(|| "write failed".to_owned(), |e| e.to_string());
                self.dispatch(&IOErrorEvent::create(
                    format!("Error #2031: Socket Error. The connection failed: {cause}"),
                    IOErrorEvent::SOCKET_ERROR_ID,
                ));
            }
            self.dispatch(&Event::new(Event::CLOSE, false));
            self.ending_dispatched();
        }
    }
}

/// Delivers the read loop's messages as `websocketData` events.
///
/// The events' target (a strong handle) is made once for all the messages
/// of one read and dropped before the next read, so the connection still
/// ends right after a listener drops the application's last handle. Each
/// message's buffer comes back after its dispatch, for the next message.
struct DataEvents<'a> {
    session: &'a Session,
    target: Option<Option<EventTarget>>,
}

impl connection::Deliver for DataEvents<'_> {
    fn message(&mut self, msg: Incoming) -> Option<Vec<u8>> {
        let event = match msg {
            Incoming::Text(s) => WebSocketEvent::text(s),
            Incoming::Binary(b) => WebSocketEvent::binary(b),
            _ => return None,
        };
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
}
