//! Opening a server connection on an accepted socket: TLS (wss), the
//! client's request, the Origin check and the `upgradeRequest` listeners,
//! and the answer: 101, or an HTTP error response (from an `httpRequest` or
//! `upgradeRequest` listener; 403 for a foreign origin; 400, 426, 431; 408
//! when the request did not arrive in time, 503 when the listeners did not
//! decide in time).

use super::failure::OpenFailure;
use super::http_head::{read_head, HeadResult};
use super::watchdog;
use super::Opened;
use crate::connection::Conn;
use crate::deadline::DeadlineReader;
use crate::error::{Error, Timeout};
use crate::event::{Event, HttpRequestEvent, UpgradeRefusal};
use crate::proto::close::PROTOCOL_ERROR;
use crate::proto::deflate;
use crate::proto::handshake::{self, Request};
use crate::proto::Role;
use crate::session::Session;
use crate::tls::ServerTls;
use crate::transport::{drive_handshake, MemIo, TlsFailure, Transport};
use crate::upgrade_event::{Decision, Refusal, UpgradeRequestEvent};
use crate::websocket::HandshakeRequest;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Session {
    /// The connection's thread of a server: opens the connection, then runs it.
    pub(crate) fn run_server(self, tcp: Arc<TcpStream>, tls: Option<ServerTls>) {
        let peer = tcp
            .peer_addr()
            .map_or_else(|_| "unknown peer".to_owned(), |a| a.to_string());
        let opened = self.open_server(tcp, &peer, tls.as_ref());
        self.run_opened(opened);
    }

    /// TLS, the request, the 101.
    fn open_server(
        &self,
        tcp: Arc<TcpStream>,
        peer: &str,
        tls: Option<&ServerTls>,
    ) -> Result<Opened, OpenFailure> {
        if !self.register_pending(&tcp) {
            return Err(OpenFailure::Aborted);
        }
        if let Err(e) = self.setup_socket(&tcp) {
            return Err(OpenFailure::Closed(
                format!("{peer}: {e}"),
                Some(Error::io(format!("Cannot set up the socket of {peer}"), e)),
            ));
        }
        // A client that sends its handshake slowly (slowloris) is dropped
        // when this passes, however often it sends a byte.
        let deadline = Instant::now() + self.config().handshake_timeout;
        let transport = accept_tls(tcp, peer, tls, deadline)?;
        let conn = Arc::new(Conn::new(Role::Server, transport, self.settings()));
        let (request, leftover) = self.read_request(&conn, peer, deadline)?;
        if let Some(origin) = self.foreign_origin(&request) {
            log::debug!("{peer}: refused: origin {origin:?} is not allowed");
            let _ = conn.write_raw(&handshake::http_response(
                403,
                "text/plain; charset=utf-8",
                &[("X-Content-Type-Options", "nosniff")],
                b"This origin may not open a WebSocket here.\n",
            ));
            linger(&conn);
            return Err(OpenFailure::Refused(UpgradeRefusal::new(
                403,
                handshake::reason_phrase(403).to_owned(),
                format!("the origin {origin:?} is not allowed"),
            )));
        }
        let Some(default_protocol) = self.with_current(|st| {
            (!st.protocol.is_empty() && request.protocols.contains(&st.protocol))
                .then(|| st.protocol.clone())
        }) else {
            conn.transport.shutdown();
            return Err(OpenFailure::Aborted);
        };
        let decision = self.inspect(&conn, peer, &request, deadline)?;
        let chosen = decision.protocol.unwrap_or(default_protocol);
        // permessage-deflate: the first offer this end can accept, when
        // configured and the memory budget has room for its state.
        let deflate = self.config().deflate.and_then(|d| {
            if !deflate::fits_budget(&self.config().memory_budget) {
                // Said once at info level: a server that meant every
                // connection to compress needs a larger budget.
                static SAID: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    log::info!(
                        "permessage-deflate declined: the memory budget has no room for the \
                         codec's state (about 384 KiB a connection); raise Config::memory_budget \
                         for more compressed connections (this is logged once)"
                    );
                }
                log::debug!("{peer}: permessage-deflate declined: the memory budget is used up");
                return None;
            }
            let offers = handshake::find_headers(&request.headers, "sec-websocket-extensions");
            deflate::server_accept(&d, &offers).map(|agreement| (agreement, d))
        });
        let mut headers = decision.headers;
        if let Some((agreement, _)) = &deflate {
            headers.push(("Sec-WebSocket-Extensions".to_owned(), agreement.response()));
        }
        let answer = handshake::accept_response_with(&request.key, chosen.as_deref(), &headers);
        if let Some((agreement, d)) = &deflate {
            conn.set_deflate(agreement, d);
        }
        if let Err(e) = conn.write_raw(&answer) {
            conn.transport.shutdown();
            return Err(OpenFailure::Closed(
                format!("{peer}: {e}"),
                Some(self.handshake_io(format!("Cannot answer {peer}"), e)),
            ));
        }
        Ok(Opened {
            conn,
            protocol: chosen.unwrap_or_default(),
            leftover,
            response: None,
            request: Some(HandshakeRequest {
                resource: request.resource,
                headers: request.headers,
            }),
        })
    }

    /// Dispatches `upgradeRequest` for a valid request, when it has
    /// listeners, and returns their decision to accept it; a refusal is
    /// answered here. The listeners have until `deadline`: past it the
    /// watchdog answers 503 and the opening ends when they return.
    fn inspect(
        &self,
        conn: &Arc<Conn>,
        peer: &str,
        request: &Request,
        deadline: Instant,
    ) -> Result<Decision, OpenFailure> {
        if !self
            .shared
            .listeners
            .has(UpgradeRequestEvent::UPGRADE_REQUEST)
        {
            return Ok(Decision::default());
        }
        let event = Arc::new(UpgradeRequestEvent::create(
            "GET",
            &request.resource,
            request.headers.clone(),
            request.protocols.clone(),
        ));
        if self.dispatch_watched(conn, peer, &event, deadline) {
            return Err(self.too_late(conn, peer, "upgradeRequest"));
        }
        if !self.still_connecting() {
            conn.transport.shutdown();
            return Err(OpenFailure::Aborted);
        }
        let decision = event.upgrade_decision();
        let refusal = if event.panicked() {
            Some(Refusal {
                status: 500,
                headers: Vec::new(),
                body: b"The server failed while checking this WebSocket request.\n".to_vec(),
            })
        } else if decision.refusal.is_some() {
            decision.refusal.clone()
        } else if event.is_default_prevented() {
            Some(Refusal {
                status: 403,
                headers: Vec::new(),
                body: b"This WebSocket request is refused.\n".to_vec(),
            })
        } else {
            None
        };
        let Some(refusal) = refusal else {
            return Ok(decision);
        };
        let sent = refusal.as_upgrade_refusal();
        log::debug!("{peer}: refused by an upgradeRequest listener: {sent}");
        // A listener that panicked decided nothing: none of its headers go out.
        let mut headers = if event.panicked() {
            Vec::new()
        } else {
            decision.headers
        };
        headers.push(("X-Content-Type-Options".into(), "nosniff".into()));
        let _ = conn.write_raw(&refusal.response(&headers));
        linger(conn);
        Err(OpenFailure::Refused(sent))
    }

    /// Reads the client's request. One that is not a valid upgrade is
    /// answered: a plain HTTP request by its `httpRequest` listeners (or
    /// 400), a bad upgrade with 400, 426 or 431, a request that does not
    /// arrive in time with 408.
    fn read_request(
        &self,
        conn: &Arc<Conn>,
        peer: &str,
        deadline: Instant,
    ) -> Result<(Request, Vec<u8>), OpenFailure> {
        let max = self.config().max_handshake_size;
        match read_head(conn, deadline, |buf| handshake::parse_request(buf, max)) {
            HeadResult::Done(r, leftover) => Ok((r, leftover)),
            HeadResult::Invalid(e, _) => {
                let mut response = None;
                // A plain HTTP request is no error; a bad upgrade broke RFC 6455.
                let mut error = Some(Error::Protocol {
                    code: PROTOCOL_ERROR,
                    message: format!("{peer} sent an invalid upgrade request: {e}"),
                });
                if let handshake::RequestError::NotUpgrade {
                    method,
                    resource,
                    headers,
                } = &e
                {
                    let event =
                        Arc::new(HttpRequestEvent::create(method, resource, headers.clone()));
                    if self.dispatch_watched(conn, peer, &event, deadline) {
                        return Err(self.too_late(conn, peer, "httpRequest"));
                    }
                    response = event.take_http_response();
                    error = None;
                }
                let response = response.unwrap_or_else(|| {
                    log::debug!("{peer}: {e}: answering {}", e.status());
                    e.response()
                });
                let _ = conn.write_raw(&response);
                linger(conn);
                Err(OpenFailure::Closed(format!("{peer}: {e}"), error))
            }
            HeadResult::Eof => Err(OpenFailure::Closed(
                format!("{peer} closed the connection"),
                None,
            )),
            HeadResult::Io(e) => {
                if e.kind() == io::ErrorKind::TimedOut {
                    // Tell a slow client why, as for any refused request.
                    let _ = conn.write_raw(&handshake::http_response(
                        408,
                        "text/plain; charset=utf-8",
                        &[],
                        b"The WebSocket handshake timed out.\n",
                    ));
                    linger(conn);
                }
                conn.transport.shutdown();
                let why = format!("{peer}: {e}");
                let context = format!("Reading the request of {peer} failed");
                Err(OpenFailure::Closed(
                    why,
                    Some(self.handshake_io(context, e)),
                ))
            }
        }
    }
}

impl Session {
    /// The `Origin` of `request` when the config's allow-list does not
    /// have it (no list: any origin; no `Origin`: not a browser, allowed).
    fn foreign_origin(&self, request: &Request) -> Option<String> {
        let allowed = &self.config().allowed_origins;
        if allowed.is_empty() {
            return None;
        }
        let origin = handshake::find_header(&request.headers, "origin")?.trim();
        let same = |a: &str| {
            a.trim_end_matches('/')
                .eq_ignore_ascii_case(origin.trim_end_matches('/'))
        };
        (!allowed.iter().any(|a| same(a))).then(|| origin.to_owned())
    }

    /// Dispatches `event` (`httpRequest`, `upgradeRequest`) unless the
    /// opening was aborted, watched until `deadline`: if the listeners have
    /// not returned by then, the watchdog answers the client 503 and ends
    /// the stream. Returns whether that happened.
    fn dispatch_watched(
        &self,
        conn: &Arc<Conn>,
        peer: &str,
        event: &Arc<Event>,
        deadline: Instant,
    ) -> bool {
        if !self.shared.listeners.has(event.event_type()) {
            return false;
        }
        let late = conn.clone();
        let late_peer = peer.to_owned();
        let event_type = event.event_type();
        let watch = watchdog::watch(deadline, move || {
            log::debug!("{late_peer}: the {event_type} listeners did not return in time");
            answer_late(&late);
        });
        let dispatched = self.still_connecting() && self.decide(event, deadline);
        if watch.is_some_and(watchdog::Watch::disarm) {
            return true;
        }
        if !dispatched && self.still_connecting() {
            // Through a pump that did not run it in time: never accepted.
            log::debug!("{peer}: the pump did not run the {event_type} listeners in time");
            answer_late(conn);
            return true;
        }
        false
    }

    /// The end of an opening whose `event_type` listeners returned after
    /// the handshake deadline (the watchdog answered the client).
    fn too_late(&self, conn: &Conn, peer: &str, event_type: &str) -> OpenFailure {
        conn.transport.shutdown();
        OpenFailure::Closed(
            format!("{peer}: the {event_type} listeners did not return in time"),
            Some(Error::Timeout {
                which: Timeout::Handshake,
                after: self.config().handshake_timeout,
                context: format!("The {event_type} listeners for {peer} did not return in time"),
            }),
        )
    }

    /// An I/O error of the opening handshake: a timeout is the handshake
    /// timeout's.
    fn handshake_io(&self, context: String, e: io::Error) -> Error {
        let timeout = self.config().handshake_timeout;
        Error::io_or_timeout(context, e, Timeout::Handshake, Some(timeout))
    }
}

/// Answers a request whose listeners did not decide in time: 503, then the
/// end of the stream.
fn answer_late(conn: &Conn) {
    let _ = conn.write_raw(&handshake::http_response(
        503,
        "text/plain; charset=utf-8",
        &[("X-Content-Type-Options", "nosniff")],
        b"The server did not decide on this request in time.\n",
    ));
    conn.shutdown_write();
}

/// The TLS handshake with `tls` (wss), or the plain socket (ws).
fn accept_tls(
    tcp: Arc<TcpStream>,
    peer: &str,
    tls: Option<&ServerTls>,
    deadline: Instant,
) -> Result<Transport, OpenFailure> {
    let Some(tls) = tls else {
        return Ok(Transport::plain(tcp));
    };
    match drive_handshake(tls.acceptor().accept(MemIo::default()), &tcp, deadline) {
        Ok(session) => Ok(Transport::tls(tcp, session)),
        Err(TlsFailure::NotTls(start)) => {
            let _ = tcp.shutdown(Shutdown::Both);
            Err(OpenFailure::TlsAccept(format!(
                "TLS handshake with {peer} failed: the client does not speak TLS, it sent \
                 plain text (\"{start}\"); it should connect with wss://"
            )))
        }
        Err(e) => {
            let _ = tcp.shutdown(Shutdown::Both);
            Err(OpenFailure::TlsAccept(format!(
                "TLS handshake with {peer} failed: {e}"
            )))
        }
    }
}

/// Answers a client that no thread can serve with 503, on the calling
/// thread: reads what the request sent so far (so that closing does not
/// reset the connection before the answer is read), writes the answer,
/// half-closes, and waits a moment for the rest of the request.
pub(crate) fn refuse_unavailable(tcp: &TcpStream) {
    let response = handshake::http_response(
        503,
        "text/plain; charset=utf-8",
        &[("Retry-After", "1"), ("X-Content-Type-Options", "nosniff")],
        b"The server cannot take this connection now; try again later.\n",
    );
    let mut tcp = tcp;
    let mut buf = [0u8; 4096];
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
    if tcp.write_all(&response).is_err() {
        return;
    }
    let _ = tcp.shutdown(Shutdown::Write);
    for _ in 0..16 {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    log::debug!("no thread for a connection: answered 503");
}

/// After an HTTP error response: half-close, and read what the client still
/// sends for a moment, so that closing does not reset the connection before
/// the client has read the response.
fn linger(conn: &Conn) {
    conn.shutdown_write();
    let mut buf = [0u8; 1024];
    let mut cipher = vec![0u8; if conn.transport.is_tls() { 16 << 10 } else { 0 }];
    let mut reader = DeadlineReader::new(
        conn.transport.socket(),
        Some(Instant::now() + Duration::from_secs(1)),
        None,
        "lingering timed out",
    );
    for _ in 0..256 {
        match reader.read(|| conn.transport.read(&mut buf, &mut cipher)) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    conn.transport.shutdown();
}
