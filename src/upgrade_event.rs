//! The `upgradeRequest` event: a server's look at a client's upgrade
//! request before it answers, and what its listeners decide (refuse it,
//! choose the subprotocol, add headers to the answer).

use crate::error::Error;
use crate::event::{Event, EventType, HttpHead, Payload, UpgradeRefusal};
use crate::proto::handshake::{self, check_response_header};
use std::sync::{Mutex, MutexGuard};

/// A request that a listener of `upgradeRequest` looks at, and its decision.
#[derive(Debug)]
pub(crate) struct UpgradeExchange {
    head: HttpHead,
    offered: Vec<String>,
    decision: Mutex<Decision>,
}

impl UpgradeExchange {
    pub(crate) fn head(&self) -> &HttpHead {
        &self.head
    }

    fn decision(&self) -> MutexGuard<'_, Decision> {
        self.decision.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the listeners of one `upgradeRequest` decided.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The answer instead of the 101, when refused with [`Event::refuse`].
    pub(crate) refusal: Option<Refusal>,
    /// The subprotocol chosen with [`Event::accept_protocol`]: `Some(None)`
    /// for none at all; `None` when no listener chose.
    pub(crate) protocol: Option<Option<String>>,
    /// Headers for the answer, from [`Event::add_response_header`].
    pub(crate) headers: Vec<(String, String)>,
}

/// An HTTP answer that refuses an upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Refusal {
    /// The complete response, with `extra` headers after the refusal's own.
    pub(crate) fn response(&self, extra: &[(String, String)]) -> Vec<u8> {
        let all: Vec<(String, String)> = self.headers.iter().chain(extra).cloned().collect();
        let content_type = handshake::find_header(&all, "content-type")
            .unwrap_or("text/plain; charset=utf-8")
            .to_owned();
        let rest: Vec<(&str, &str)> = all
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        handshake::http_response(self.status, &content_type, &rest, &self.body)
    }

    /// The refusal as the server's `close` event carries it (and as it is
    /// logged): status, reason phrase, the body's first line.
    pub(crate) fn as_upgrade_refusal(&self) -> UpgradeRefusal {
        let reason = handshake::reason_phrase(self.status).to_owned();
        UpgradeRefusal::with_body(self.status, reason, &self.body)
    }
}

/// The `upgradeRequest` event: a client asks a server
/// [`WebSocket`](crate::WebSocket) for a WebSocket, and the listeners look at
/// its request (method, path, query, headers such as `Origin`, `Cookie`,
/// `Authorization`) before the server answers. Not in AIR.
///
/// A listener may:
/// - refuse the request with [`Event::refuse`] (a status, headers and a
///   body: 401 with `WWW-Authenticate`, 403, 404, a 3xx with `Location`), or
///   with [`Event::prevent_default`] alone (403 Forbidden). The client gets
///   that answer, the socket is closed and `close` is dispatched;
/// - choose the subprotocol for this request with [`Event::accept_protocol`],
///   instead of the [`protocol`](crate::WebSocket::protocol) property;
/// - add headers to the answer (`Set-Cookie`) with
///   [`Event::add_response_header`].
///
/// It is dispatched on the connection's thread after the
/// [`allowed_origins`](crate::Config::allowed_origins) check, and within the
/// [`handshake_timeout`](crate::Config::handshake_timeout): when the
/// listeners have not returned by then, the client gets
/// `503 Service Unavailable` and the connection's `close` follows (with
/// [`Error::Timeout`]) once they do. A listener that panics refuses the
/// request with `500 Internal Server Error`. A refusal is logged at
/// `debug` level, with its status and the first line of its body, and the
/// server `WebSocket`'s `close` event carries it as
/// [`Event::upgrade_refusal`] (in [`Error::HandshakeRefused`]).
///
/// ```
/// use airws::{Event, EventDispatcher, UpgradeRequestEvent, WebSocket};
///
/// let ws = WebSocket::new();
/// ws.add_event_listener(UpgradeRequestEvent::UPGRADE_REQUEST, |e: &Event| {
///     if e.http_path() != "/chat" {
///         let _ = e.refuse(404, &[], "No WebSocket here.\n");
///     } else if e.http_header("authorization") != Some("Bearer s3cret") {
///         let _ = e.refuse(401, &[("WWW-Authenticate", "Bearer")], "A token, please.\n");
///     } else {
///         let _ = e.add_response_header("Set-Cookie", "session=42; HttpOnly");
///         if e.offered_protocols().iter().any(|p| p == "chat.v2") {
///             let _ = e.accept_protocol("chat.v2");
///         }
///     }
/// });
/// ```
#[derive(Debug)]
pub struct UpgradeRequestEvent;

impl UpgradeRequestEvent {
    /// `"upgradeRequest"`: a valid upgrade request arrived; the server
    /// answers it when the listeners return. Cancelable.
    pub const UPGRADE_REQUEST: EventType = EventType::new("upgradeRequest");

    /// An `upgradeRequest` event for a request with `method`, target
    /// `path`, `headers`, and the subprotocols the client `offered` (in its
    /// order of preference).
    pub fn create(
        method: &str,
        path: &str,
        headers: Vec<(String, String)>,
        offered: Vec<String>,
    ) -> Event {
        Event::with_payload(
            UpgradeRequestEvent::UPGRADE_REQUEST,
            true,
            Payload::Upgrade(UpgradeExchange {
                head: HttpHead {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    headers,
                },
                offered,
                decision: Mutex::new(Decision::default()),
            }),
        )
    }
}

impl Event {
    fn upgrade(&self, operation: &str) -> Result<&UpgradeExchange, Error> {
        match &self.payload {
            Payload::Upgrade(u) => Ok(u),
            _ => Err(Error::illegal(format!(
                "{operation}: only an upgradeRequest event can be answered so (this is '{}')",
                self.event_type()
            ))),
        }
    }

    /// `upgradeRequest`: refuses the upgrade with `status` (300 to 599),
    /// `headers` and `body`, instead of the 101. The body is sent as
    /// `text/plain; charset=utf-8` unless `headers` has a `Content-Type`.
    /// Headers added with [`add_response_header`](Self::add_response_header)
    /// go out too. The last refusal given wins. Not in AIR.
    ///
    /// [`Error::InvalidArgument`] for a status out of that range or a header
    /// that [`check_response_header`] refuses (nothing is recorded then);
    /// [`Error::IllegalOperation`] on another event.
    ///
    /// ```
    /// # use airws::{Event, UpgradeRequestEvent};
    /// let e = UpgradeRequestEvent::create("GET", "/", vec![], vec![]);
    /// e.refuse(401, &[("WWW-Authenticate", "Bearer realm=\"chat\"")], "A token, please.\n")?;
    /// assert!(e.refuse(200, &[], "").is_err());
    /// # Ok::<(), airws::Error>(())
    /// ```
    pub fn refuse(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        let upgrade = self.upgrade("refuse")?;
        if !(300..=599).contains(&status) {
            return Err(Error::argument(format!(
                "refuse: {status} is not a status that refuses an upgrade (300 to 599)"
            )));
        }
        let headers = checked_headers("refuse", headers)?;
        upgrade.decision().refusal = Some(Refusal {
            status,
            headers,
            body: body.as_ref().to_vec(),
        });
        Ok(())
    }

    /// `upgradeRequest`: answers with `protocol` as the subprotocol, one of
    /// the [`offered_protocols`](Self::offered_protocols), instead of the
    /// `WebSocket`'s [`protocol`](crate::WebSocket::protocol) property; `""`
    /// answers with none. Not in AIR.
    ///
    /// [`Error::InvalidArgument`] when the client did not offer it;
    /// [`Error::IllegalOperation`] on another event.
    pub fn accept_protocol(&self, protocol: &str) -> Result<(), Error> {
        let upgrade = self.upgrade("acceptProtocol")?;
        let chosen = if protocol.is_empty() {
            None
        } else if upgrade.offered.iter().any(|p| p == protocol) {
            Some(protocol.to_owned())
        } else {
            return Err(Error::argument(format!(
                "acceptProtocol: the client did not offer '{}' (it offered: {})",
                protocol.escape_debug(),
                if upgrade.offered.is_empty() {
                    "none".to_owned()
                } else {
                    upgrade.offered.join(", ")
                }
            )));
        };
        upgrade.decision().protocol = Some(chosen);
        Ok(())
    }

    /// `upgradeRequest`: adds a header to the server's answer, the 101 or a
    /// refusal (`Set-Cookie`, ...). Headers of the same name add up. Not in
    /// AIR.
    ///
    /// [`Error::InvalidArgument`] for a header that
    /// [`check_response_header`] refuses (the library writes `Upgrade`,
    /// `Connection`, `Sec-WebSocket-*`, `Content-Length` and
    /// `Transfer-Encoding` itself; a name must be an HTTP token, a value
    /// must hold no CR, LF or other control character);
    /// [`Error::IllegalOperation`] on another event.
    pub fn add_response_header(&self, name: &str, value: &str) -> Result<(), Error> {
        let upgrade = self.upgrade("addResponseHeader")?;
        let header = checked_headers("addResponseHeader", &[(name, value)])?;
        upgrade.decision().headers.extend(header);
        Ok(())
    }

    /// `upgradeRequest`: the subprotocols the client offered
    /// (`Sec-WebSocket-Protocol`), in its order of preference; else empty.
    pub fn offered_protocols(&self) -> &[String] {
        match &self.payload {
            Payload::Upgrade(u) => &u.offered,
            _ => &[],
        }
    }

    /// What the listeners of an `upgradeRequest` decided.
    pub(crate) fn upgrade_decision(&self) -> Decision {
        match &self.payload {
            Payload::Upgrade(u) => u.decision().clone(),
            _ => Decision::default(),
        }
    }
}

fn checked_headers(
    operation: &str,
    headers: &[(&str, &str)],
) -> Result<Vec<(String, String)>, Error> {
    headers
        .iter()
        .map(|&(name, value)| match check_response_header(name, value) {
            Ok(()) => Ok((name.to_owned(), value.to_owned())),
            Err(e) => Err(Error::argument(format!(
                "{operation}: cannot send header '{}': {e}",
                name.escape_debug()
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        UpgradeRequestEvent::create(
            "GET",
            "/chat?room=1",
            vec![("Origin".into(), "https://app.example".into())],
            vec!["chat.v1".into(), "chat.v2".into()],
        )
    }

    #[test]
    fn the_request_can_be_read() {
        let e = event();
        assert!(e.cancelable());
        assert_eq!(e.event_type(), UpgradeRequestEvent::UPGRADE_REQUEST);
        assert_eq!(e.http_method(), "GET");
        assert_eq!(e.http_path(), "/chat?room=1");
        assert_eq!(e.http_query(), Some("room=1"));
        assert_eq!(e.http_header("origin"), Some("https://app.example"));
        assert_eq!(e.http_headers().len(), 1);
        assert_eq!(e.offered_protocols(), ["chat.v1", "chat.v2"]);
        assert_eq!(e.upgrade_decision(), Decision::default());
    }

    #[test]
    fn decisions_are_recorded() {
        let e = event();
        e.accept_protocol("chat.v2").unwrap();
        e.add_response_header("Set-Cookie", "a=1").unwrap();
        e.add_response_header("Set-Cookie", "b=2").unwrap();
        let d = e.upgrade_decision();
        assert_eq!(d.protocol, Some(Some("chat.v2".into())));
        assert_eq!(d.headers.len(), 2);
        assert_eq!(d.refusal, None);
        e.accept_protocol("").unwrap();
        assert_eq!(e.upgrade_decision().protocol, Some(None));
        e.refuse(401, &[("WWW-Authenticate", "Bearer")], "no\nmore")
            .unwrap();
        let refusal = e.upgrade_decision().refusal.unwrap();
        assert_eq!(
            refusal.as_upgrade_refusal().to_string(),
            "HTTP 401 Unauthorized: no"
        );
        let text = String::from_utf8(refusal.response(&d.headers)).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(text.contains("WWW-Authenticate: Bearer\r\n"));
        assert!(text.contains("Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"));
        assert!(text.ends_with("\r\n\r\nno\nmore"));
    }

    #[test]
    fn a_refusal_may_set_its_content_type() {
        let e = event();
        e.refuse(403, &[("Content-Type", "application/json")], "{}")
            .unwrap();
        let text = String::from_utf8(e.upgrade_decision().refusal.unwrap().response(&[])).unwrap();
        assert_eq!(text.matches("Content-Type").count(), 1, "{text}");
        assert!(text.contains("Content-Type: application/json\r\n"));
    }

    #[test]
    fn bad_arguments_are_refused_and_record_nothing() {
        let e = event();
        for status in [101, 200, 299, 600] {
            assert!(matches!(
                e.refuse(status, &[], ""),
                Err(Error::InvalidArgument { .. })
            ));
        }
        assert!(e.refuse(401, &[("X", "a\r\nb")], "").is_err());
        assert!(e.refuse(401, &[("Content-Length", "3")], "").is_err());
        assert!(e.add_response_header("Sec-WebSocket-Accept", "x").is_err());
        assert!(e.add_response_header("Bad Name", "x").is_err());
        assert!(matches!(
            e.accept_protocol("superchat"),
            Err(Error::InvalidArgument { .. })
        ));
        assert_eq!(e.upgrade_decision(), Decision::default());
        let other = Event::new("tick", true);
        assert!(matches!(
            other.refuse(403, &[], ""),
            Err(Error::IllegalOperation { .. })
        ));
        assert!(other.accept_protocol("chat").is_err());
        assert!(other.add_response_header("A", "b").is_err());
        assert!(other.offered_protocols().is_empty());
        assert_eq!(other.http_query(), None);
    }
}
