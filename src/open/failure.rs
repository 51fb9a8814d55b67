//! The one place where a failed opening becomes its AS3 events.

use crate::event::{Event, IOErrorEvent, SecurityErrorEvent, UpgradeRefusal};
use crate::proto::close::{ABNORMAL, TLS_HANDSHAKE};
use crate::session::Session;
use crate::websocket::Phase;

/// Why a connection did not open.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    /// The connection was aborted (`close()`, the last handle dropped) or
    /// replaced by a new one: nothing to record, nothing to dispatch.
    Aborted,
    /// The host could not be resolved or reached, or the socket failed:
    /// `ioError` with this text; the close reason stays as it was.
    Io(String),
    /// A client's TLS could not be set up: `securityError` with this text,
    /// close reason 1015.
    Tls(String),
    /// A server's TLS handshake failed: `securityError` with this text,
    /// then `close`, close reason 1015.
    TlsAccept(String),
    /// The server's certificate was refused (no listener of the
    /// `certificateError` called `prevent_default()`): `close`, close
    /// reason 1015.
    CertificateRefused,
    /// The connection closed before its handshake completed (peer gone,
    /// bad request): `close`, close reason 1006. The text says why, in the
    /// log.
    Closed(String),
    /// The server refused the upgrade: `close`, close reason 1006, with the
    /// refusal in the event (`upgrade_refusal()`) and this text (`text()`).
    Refused(UpgradeRefusal, String),
}

impl Session {
    /// Ends a connection that never opened: records its close reason and
    /// dispatches its events, unless it was aborted or replaced meanwhile.
    pub(crate) fn fail(&self, failure: OpenFailure) {
        let (close_reason, events) = match failure {
            OpenFailure::Aborted => return,
            OpenFailure::Io(text) => {
                log::debug!("{text}");
                (
                    None,
                    vec![IOErrorEvent::create(text, IOErrorEvent::SOCKET_ERROR_ID)],
                )
            }
            OpenFailure::Tls(text) => (
                Some(TLS_HANDSHAKE),
                vec![SecurityErrorEvent::create(
                    SecurityErrorEvent::SECURITY_ERROR,
                    text,
                )],
            ),
            OpenFailure::TlsAccept(text) => (
                Some(TLS_HANDSHAKE),
                vec![
                    SecurityErrorEvent::create(SecurityErrorEvent::SECURITY_ERROR, text),
                    Event::new(Event::CLOSE, false),
                ],
            ),
            OpenFailure::CertificateRefused => {
                (Some(TLS_HANDSHAKE), vec![Event::new(Event::CLOSE, false)])
            }
            OpenFailure::Closed(why) => {
                log::debug!("connection closed before opening: {why}");
                (Some(ABNORMAL), vec![Event::new(Event::CLOSE, false)])
            }
            OpenFailure::Refused(refusal, text) => {
                (Some(ABNORMAL), vec![Event::refused_close(refusal, text)])
            }
        };
        let ended = self.with_current(|st| {
            st.phase = Phase::Closed;
            st.pending = None;
            if let Some(code) = close_reason {
                st.close_reason = i32::from(code);
            }
            st.ending_listeners = Some(self.generation);
            self.shared.ended.notify_all();
        });
        if ended.is_none() {
            return;
        }
        for e in &events {
            self.dispatch(e);
        }
        self.ending_dispatched();
    }
}
