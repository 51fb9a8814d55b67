//! The one place where a failed opening becomes its AS3 events.

use crate::error::Error;
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
    /// The host could not be resolved or reached, or the socket failed
    /// (`Error::Io`, `Error::Timeout`): `ioError`; the close reason stays as
    /// it was.
    Io(Error),
    /// A client's TLS could not be set up (`Error::Tls`): `securityError`,
    /// close reason 1015.
    Tls(Error),
    /// A server's TLS handshake failed, for this reason: `securityError`,
    /// then `close`, both carrying `Error::Tls`; close reason 1015.
    TlsAccept(String),
    /// The server's certificate was refused (no listener of the
    /// `certificateError` called `prevent_default()`): `close` carrying the
    /// error, close reason 1015.
    CertificateRefused(Error),
    /// The connection closed before its handshake completed (peer gone,
    /// bad request): `close`, close reason 1006, carrying the error when
    /// there is one. The text says why, in the log.
    Closed(String, Option<Error>),
    /// The server refused the upgrade: `close`, close reason 1006, carrying
    /// `Error::HandshakeRefused`.
    Refused(UpgradeRefusal),
    /// The server redirected the client to `location`, and redirects are
    /// followed: the next hop (a `Refused` when it reaches `fail`).
    Redirect(UpgradeRefusal, String),
    /// A redirect that cannot be followed (a loop, too many, TLS dropped):
    /// `close`, close reason 1006, carrying `Error::Redirect`.
    RedirectFailed(Error),
}

impl Session {
    /// Ends a connection that never opened: records its close reason and
    /// dispatches its events, unless it was aborted or replaced meanwhile.
    pub(crate) fn fail(&self, failure: OpenFailure) {
        let (close_reason, events) = match failure {
            OpenFailure::Aborted => return,
            OpenFailure::Io(error) => {
                log::debug!("{error}");
                (None, vec![IOErrorEvent::from_error(error)])
            }
            OpenFailure::Tls(error) => (Some(TLS_HANDSHAKE), vec![security_error(error)]),
            OpenFailure::TlsAccept(text) => (
                Some(TLS_HANDSHAKE),
                vec![
                    security_error(Error::tls(false, text.clone())),
                    Event::failed_close(Error::tls(false, text)),
                ],
            ),
            OpenFailure::CertificateRefused(error) => {
                (Some(TLS_HANDSHAKE), vec![Event::failed_close(error)])
            }
            OpenFailure::Closed(why, error) => {
                log::debug!("connection closed before opening: {why}");
                let close = match error {
                    Some(error) => Event::failed_close(error),
                    None => Event::new(Event::CLOSE, false),
                };
                (Some(ABNORMAL), vec![close])
            }
            OpenFailure::RedirectFailed(error) => {
                log::debug!("{error}");
                (Some(ABNORMAL), vec![Event::failed_close(error)])
            }
            OpenFailure::Refused(refusal) | OpenFailure::Redirect(refusal, _) => {
                let error = Error::HandshakeRefused(refusal);
                log::debug!("{error}");
                (Some(ABNORMAL), vec![Event::failed_close(error)])
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
        for e in events {
            self.emit(e);
        }
        self.ending_dispatched();
    }
}

/// The `securityError` reporting `error`.
fn security_error(error: Error) -> Event {
    SecurityErrorEvent::create(SecurityErrorEvent::SECURITY_ERROR, error.message())
        .with_error(error)
}
