//! Opening a client connection, as a chain of steps:
//!
//! ```text
//! dial (resolve → TCP) → TLS, wss only (with the certificate-error retry) → HTTP upgrade
//! ```
//!
//! Each step takes what the one before produced. `dial` hands over a set-up
//! TCP stream to the server, `tls` turns it into a [`Transport`] (for `ws`,
//! [`Transport::plain`] does), and `upgrade` runs the HTTP handshake over
//! any transport. A way to reach the server other than a direct TCP
//! connection (a tunnel through a proxy, say) replaces `dial` alone: the TLS
//! step calls the dial it is given when its retry needs a new connection.

use super::failure::OpenFailure;
use super::http_head::{read_head, read_line_after, HeadResult};
use super::redirect;
use super::Opened;
use crate::connection::Conn;
use crate::dial::{self, DialError};
use crate::error::{Error, IoErrorKind, Timeout};
use crate::event::{ReconnectEvent, SecurityErrorEvent, UpgradeRefusal};
use crate::proto::backoff::{self, Backoff};
use crate::proto::deflate;
use crate::proto::handshake;
use crate::proto::Role;
use crate::proxy::HttpProxy;
use crate::session::Session;
use crate::target::Target;
use crate::transport::{drive_handshake, MemIo, TlsFailure, Transport};
use crate::websocket::{HandshakeResponse, Phase};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether a TLS failure is about the server's certificate or host name
/// (the failures a `certificateError` listener may accept). `native-tls`
/// gives no error kinds, so this reads the backend's message: OpenSSL
/// says "certificate verify failed" (with the reason: expired, self-signed,
/// unknown issuer, host name mismatch, ...).
fn is_certificate_failure(err: &native_tls::Error) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    ["certificate", "verify", "hostname", "host name"]
        .iter()
        .any(|word| text.contains(word))
}

/// What the application learns of a refused upgrade: the status line, and
/// the first line of the body (at most 200 characters, read for at most a
/// second), or why a 101 was not accepted.
fn refusal(
    conn: &Conn,
    e: &handshake::ResponseError,
    bytes: &mut Vec<u8>,
    deadline: Instant,
) -> UpgradeRefusal {
    let handshake::ResponseError::Status {
        code,
        reason,
        head_len,
        content_length,
        ..
    } = e
    else {
        // A 101 that is not a valid upgrade (a wrong accept key, ...), or
        // no HTTP at all: say what was wrong.
        let status = match e {
            handshake::ResponseError::Malformed(_) | handshake::ResponseError::TooLarge => 0,
            _ => 101,
        };
        return UpgradeRefusal::new(status, String::new(), e.to_string());
    };
    // No more than the body holds, when the head says how long it is.
    let max = UpgradeRefusal::BODY_LINE_MAX.min(content_length.unwrap_or(usize::MAX));
    let until = deadline.min(Instant::now() + Duration::from_secs(1));
    read_line_after(conn, until, bytes, *head_len, max);
    let body = bytes.get(*head_len..).unwrap_or_default();
    UpgradeRefusal::with_body(*code, reason.clone(), body)
}

impl Session {
    /// The connection's thread of a client: opens the connection, then runs it.
    pub(crate) fn run_client(
        self,
        target: Target,
        offered: Vec<String>,
        headers: Vec<(String, String)>,
        proxy: Option<HttpProxy>,
    ) {
        let Some(backoff) = self.config().reconnect else {
            let opened = self.follow_redirects(target, &offered, headers, proxy);
            self.run_opened(opened);
            return;
        };
        self.run_reconnecting(backoff, target, offered, headers, proxy);
    }

    /// [`run_client`](Self::run_client) with reconnects: after an ending
    /// or a failed attempt that trying again can fix, `reconnecting`, the
    /// backoff's delay (cut short by `close()` or the last handle going),
    /// and another attempt; a success starts the count again.
    fn run_reconnecting(
        &self,
        backoff: Backoff,
        target: Target,
        offered: Vec<String>,
        headers: Vec<(String, String)>,
        proxy: Option<HttpProxy>,
    ) {
        let mut attempt = 0u32;
        loop {
            let opened =
                self.follow_redirects(target.clone(), &offered, headers.clone(), proxy.clone());
            let (cause, last) = match opened {
                Ok(o) => {
                    attempt = 0;
                    let ended = self
                        .open_and_run(o.conn, o.protocol, o.leftover, o.response, o.request, true);
                    match ended {
                        Some(cause) => (cause, None),
                        None => return,
                    }
                }
                Err(failure) => match retry_cause(&failure) {
                    Some(cause) if self.still_connecting() => (cause, Some(failure)),
                    _ => return self.fail(failure),
                },
            };
            attempt = attempt.saturating_add(1);
            let Some(delay) = backoff.delay(attempt, random_unit()) else {
                log::debug!("{}: no attempt {attempt}: giving up", target.url);
                let why = cause.to_string();
                return self.fail(last.unwrap_or(OpenFailure::Closed(why, Some(cause))));
            };
            log::debug!("{}: attempt {attempt} in {delay:?}: {cause}", target.url);
            self.emit(ReconnectEvent::create(attempt, delay, cause));
            if !self.wait_before_retry(delay) {
                return;
            }
        }
    }

    /// Waits `delay` while the `WebSocket` is still to be reconnected;
    /// false when `close()` or the last handle ended that.
    fn wait_before_retry(&self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        let mut st = self.shared.state();
        loop {
            if st.generation != self.generation || st.phase != Phase::Connecting {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            st = match self.shared.ended.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Opens the connection, following redirects as the config allows.
    fn follow_redirects(
        &self,
        mut target: Target,
        offered: &[String],
        mut headers: Vec<(String, String)>,
        mut proxy: Option<HttpProxy>,
    ) -> Result<Opened, OpenFailure> {
        let max = self.config().max_redirects;
        let first =
            url::Url::parse(&target.url).map_or_else(|_| target.url.clone(), |u| u.to_string());
        let mut chain = vec![first];
        loop {
            let opened = self.open_client(&target, offered, &headers, proxy.as_ref());
            let Err(OpenFailure::Redirect(_, location)) = &opened else {
                return opened;
            };
            let failed = |why: String, chain: &[String]| {
                Err(OpenFailure::RedirectFailed(Error::Redirect {
                    message: format!("{why}: {}", chain.join(" -> ")),
                }))
            };
            let next = match redirect::next_hop(&target, location) {
                Ok(next) => next,
                Err(why) => {
                    chain.push(location.clone());
                    return failed(format!("the redirect is not followed, {why}"), &chain);
                }
            };
            chain.push(next.url.clone());
            if chain[..chain.len() - 1].contains(&next.url) {
                return failed("a redirect loop".to_owned(), &chain);
            }
            if chain.len() - 1 > max as usize {
                return failed(format!("more redirects than the {max} allowed"), &chain);
            }
            log::debug!("{}: redirected to {}", target.url, next.url);
            headers = redirect::headers_for(&target, &next, &headers);
            redirect::add_url_credentials(&mut headers, &next);
            proxy = self
                .config()
                .proxy
                .for_target(&next.host, next.tls)
                .map_err(OpenFailure::RedirectFailed)?;
            target = next;
        }
    }

    /// The chain of steps, up to a completed opening handshake.
    fn open_client(
        &self,
        target: &Target,
        offered: &[String],
        headers: &[(String, String)],
        proxy: Option<&HttpProxy>,
    ) -> Result<Opened, OpenFailure> {
        let dial = || self.dial(target, proxy);
        let tcp = dial()?;
        // TLS and the HTTP upgrade together must finish within the timeout.
        let deadline = Instant::now() + self.config().handshake_timeout;
        let transport = if target.tls {
            self.tls(target, tcp, deadline, dial)?
        } else {
            Transport::plain(tcp)
        };
        self.upgrade(target, offered, headers, transport, deadline)
    }

    /// Step 1: a TCP connection to the server, or a tunnel to it through
    /// `proxy`, registered so that `close()` can abort it, with the
    /// handshake's socket options.
    fn dial(
        &self,
        target: &Target,
        proxy: Option<&HttpProxy>,
    ) -> Result<Arc<TcpStream>, OpenFailure> {
        let (host, port) = match proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (target.host.as_str(), target.port),
        };
        // One deadline for finding the host and reaching it.
        let deadline = Instant::now() + self.config().connect_timeout;
        let addrs = dial::resolve_by(host, port, deadline, dial::system_resolver)
            .map_err(|e| self.dial_failure(e, host, port))?;
        let tcp = dial::connect_staggered(&addrs, deadline, dial::ATTEMPT_DELAY)
            .map_err(|e| self.dial_failure(e, host, port))?;
        let tcp = Arc::new(tcp);
        if !self.register_pending(&tcp) {
            return Err(OpenFailure::Aborted);
        }
        if let Err(e) = self.setup_socket(&tcp) {
            return Err(OpenFailure::Io(Error::io(
                format!("Cannot set up the socket to {}", target.url),
                e,
            )));
        }
        if let Some(proxy) = proxy {
            self.tunnel(&tcp, proxy, target)?;
        }
        Ok(tcp)
    }

    /// The opening's failure for a host that could not be found or
    /// reached.
    fn dial_failure(&self, e: DialError, host: &str, port: u16) -> OpenFailure {
        let after = self.config().connect_timeout;
        let resolving = format!("Cannot resolve host '{host}' (port {port})");
        let connecting = format!("Cannot connect to {host}:{port}");
        OpenFailure::Io(match e {
            DialError::Resolve(e) => Error::io_kind(IoErrorKind::HostNotFound, resolving, e),
            DialError::NoAddress => Error::io_kind(
                IoErrorKind::HostNotFound,
                resolving,
                io::Error::new(io::ErrorKind::NotFound, "the host has no address"),
            ),
            DialError::ResolveTimeout => Error::Timeout {
                which: Timeout::Connect,
                after,
                context: resolving,
            },
            DialError::Connect(e) => {
                Error::io_or_timeout(connecting, e, Timeout::Connect, Some(after))
            }
            DialError::ConnectTimeout => Error::Timeout {
                which: Timeout::Connect,
                after,
                context: connecting,
            },
        })
    }

    /// Step 2 (wss): the TLS handshake over `tcp`, with certificate checks.
    /// When only the certificate is wrong, the listeners decide (see
    /// `certificate_retry`), over a new connection from `dial`.
    fn tls(
        &self,
        target: &Target,
        tcp: Arc<TcpStream>,
        deadline: Instant,
        dial: impl Fn() -> Result<Arc<TcpStream>, OpenFailure>,
    ) -> Result<Transport, OpenFailure> {
        let connector = self.config().client_tls.connector().map_err(|e| {
            OpenFailure::Tls(Error::tls(false, format!("TLS is not available: {e}")))
        })?;
        let first = drive_handshake(
            connector.connect(&target.host, MemIo::default()),
            &tcp,
            deadline,
        );
        let err = match first {
            Ok(session) => return Ok(Transport::tls(tcp, session)),
            Err(TlsFailure::Io(e)) => {
                return Err(OpenFailure::Io(Error::io_or_timeout(
                    format!("TLS handshake with {}:{} failed", target.host, target.port),
                    e,
                    Timeout::Handshake,
                    Some(self.config().handshake_timeout),
                )));
            }
            Err(TlsFailure::NotTls(start)) => {
                let _ = tcp.shutdown(Shutdown::Both);
                return Err(OpenFailure::Tls(Error::tls(
                    false,
                    format!(
                        "TLS handshake with {}:{} failed: the server does not speak TLS, it \
                         answered in plain text (\"{start}\"); if it is a plain WebSocket \
                         server, connect with ws:// instead of wss://",
                        target.host, target.port
                    ),
                )));
            }
            Err(TlsFailure::Tls(e)) => e,
        };
        let _ = tcp.shutdown(Shutdown::Both);
        // Only a certificate the listeners may accept is worth a second
        // connection: a failure that is not about the certificate is a
        // `securityError` at once, and without a `certificateError`
        // listener nobody can accept the certificate.
        if !is_certificate_failure(&err) {
            return Err(OpenFailure::Tls(Error::tls(
                false,
                format!(
                    "TLS handshake with {}:{} failed: {err}",
                    target.host, target.port
                ),
            )));
        }
        if !self
            .shared
            .listeners
            .has(SecurityErrorEvent::CERTIFICATE_ERROR)
        {
            log::debug!(
                "TLS certificate of {}:{} rejected, no certificateError listener: {err}",
                target.host,
                target.port
            );
            return Err(OpenFailure::CertificateRefused(Error::tls(
                true,
                format!(
                    "TLS certificate of {}:{} rejected: {err}",
                    target.host, target.port
                ),
            )));
        }
        self.certificate_retry(target, err, deadline, dial)
    }

    /// Was the certificate the only problem? Tries again without checking
    /// it (the same `ClientTls` otherwise: its identity is presented again);
    /// if that works, a cancelable `certificateError` is dispatched, and the
    /// unchecked session is used only when a listener called
    /// `prevent_default()`.
    fn certificate_retry(
        &self,
        target: &Target,
        err: native_tls::Error,
        deadline: Instant,
        dial: impl Fn() -> Result<Arc<TcpStream>, OpenFailure>,
    ) -> Result<Transport, OpenFailure> {
        let text = format!(
            "TLS certificate of {}:{} rejected: {err}",
            target.host, target.port
        );
        let retry = self
            .config()
            .client_tls
            .unverified()
            .connector()
            .ok()
            .and_then(|insecure| {
                let tcp2 = dial().ok()?;
                let session = drive_handshake(
                    insecure.connect(&target.host, MemIo::default()),
                    &tcp2,
                    deadline,
                )
                .ok()?;
                Some((tcp2, session))
            });
        let Some((tcp2, session)) = retry else {
            return Err(OpenFailure::Tls(Error::tls(
                true,
                format!(
                    "TLS handshake with {}:{} failed: {err}",
                    target.host, target.port
                ),
            )));
        };
        if !self.still_connecting() {
            let _ = tcp2.shutdown(Shutdown::Both);
            return Err(OpenFailure::Aborted);
        }
        let event = Arc::new(
            SecurityErrorEvent::create(SecurityErrorEvent::CERTIFICATE_ERROR, text.clone())
                .with_error(Error::tls(true, text.clone())),
        );
        // Through a pump, the listeners have until the handshake deadline;
        // not dispatched by then, the certificate is refused.
        let decided = self.decide(&event, deadline);
        if decided && event.is_default_prevented() && self.still_connecting() {
            log::warn!("{}: certificate error allowed by a listener", target.url);
            return Ok(Transport::tls(tcp2, session));
        }
        let _ = tcp2.shutdown(Shutdown::Both);
        Err(OpenFailure::CertificateRefused(Error::tls(true, text)))
    }

    /// Step 3: the HTTP upgrade over `transport`, which must end by
    /// `deadline`.
    fn upgrade(
        &self,
        target: &Target,
        offered: &[String],
        headers: &[(String, String)],
        transport: Transport,
        deadline: Instant,
    ) -> Result<Opened, OpenFailure> {
        let conn = Arc::new(Conn::new(Role::Client, transport, self.settings()));
        let mut nonce = [0u8; 16];
        if let Err(e) = getrandom::fill(&mut nonce) {
            return Err(OpenFailure::Io(Error::io(
                "No random numbers for the handshake key",
                io::Error::other(e),
            )));
        }
        // permessage-deflate is offered when configured and the memory
        // budget has room for its state.
        let deflate = self
            .config()
            .deflate
            .filter(|_| deflate::fits_budget(&self.config().memory_budget));
        let mut with_offer;
        let mut headers = headers;
        if let Some(d) = &deflate {
            with_offer = headers.to_vec();
            with_offer.push((
                "Sec-WebSocket-Extensions".to_owned(),
                deflate::client_offer(d),
            ));
            headers = &with_offer;
        }
        let request = handshake::client_request(
            &target.host_header,
            &target.resource,
            offered,
            headers,
            nonce,
        );
        if let Err(e) = conn.write_raw(&request.bytes) {
            return Err(OpenFailure::Io(handshake_io(
                format!(
                    "Cannot send the handshake to {}:{}",
                    target.host, target.port
                ),
                e,
                self.config().handshake_timeout,
            )));
        }
        let max = self.config().max_handshake_size;
        let head = read_head(&conn, deadline, |buf| {
            handshake::parse_response_offering(buf, &request.key, offered, deflate.as_ref(), max)
        });
        let (accepted, leftover) = match head {
            HeadResult::Done(accepted, leftover) => (accepted, leftover),
            HeadResult::Invalid(e, mut bytes) => {
                let location = match &e {
                    handshake::ResponseError::Status { code, location, .. }
                        if redirect::is_redirect(*code) && self.config().max_redirects > 0 =>
                    {
                        location.clone()
                    }
                    _ => None,
                };
                let refusal = refusal(&conn, &e, &mut bytes, deadline);
                conn.transport.shutdown();
                log::debug!("{}: refused: {refusal} ({e})", target.url);
                return Err(match location {
                    Some(location) => OpenFailure::Redirect(refusal, location),
                    None => OpenFailure::Refused(refusal),
                });
            }
            HeadResult::Eof => {
                return Err(OpenFailure::Closed(
                    format!("{}: the server closed the connection", target.url),
                    Some(Error::io(
                        format!(
                            "{}:{} closed the connection during the handshake",
                            target.host, target.port
                        ),
                        io::Error::from(io::ErrorKind::UnexpectedEof),
                    )),
                ));
            }
            HeadResult::Io(e) => {
                conn.transport.shutdown();
                return Err(OpenFailure::Io(handshake_io(
                    format!("Handshake with {}:{} failed", target.host, target.port),
                    e,
                    self.config().handshake_timeout,
                )));
            }
        };
        if let (Some(agreement), Some(d)) = (&accepted.deflate, &deflate) {
            conn.set_deflate(agreement, d);
        }
        Ok(Opened {
            conn,
            protocol: accepted.protocol.unwrap_or_default(),
            leftover,
            response: Some(HandshakeResponse {
                status: accepted.status,
                headers: accepted.headers,
            }),
            request: None,
        })
    }
}

/// An I/O error of the opening handshake: a timeout is the handshake
/// timeout's.
fn handshake_io(context: String, e: io::Error, timeout: Duration) -> Error {
    Error::io_or_timeout(context, e, Timeout::Handshake, Some(timeout))
}

/// Why to try again after `failure`, or `None` when that cannot help (or
/// the opening was aborted).
fn retry_cause(failure: &OpenFailure) -> Option<Error> {
    match failure {
        OpenFailure::Io(e) => Some(e.clone()),
        OpenFailure::Closed(why, error) => Some(error.clone().unwrap_or_else(|| {
            Error::io("The opening failed", std::io::Error::other(why.clone()))
        })),
        OpenFailure::Refused(refusal) if backoff::retryable_status(refusal.status()) => {
            Some(Error::HandshakeRefused(refusal.clone()))
        }
        _ => None,
    }
}

/// A random number in `0.0..=1.0`, for the backoff's jitter.
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes) as f64 / u64::MAX as f64,
        Err(_) => 0.5,
    }
}
