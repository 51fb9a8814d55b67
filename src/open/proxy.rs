//! The proxy step of a client's opening chain: a `CONNECT` tunnel through
//! an HTTP proxy, over which TLS and the upgrade then run as over a direct
//! connection.

use super::failure::OpenFailure;
use super::http_head::{read_head_plain, HeadResult};
use crate::error::{Error, Timeout};
use crate::proxy::HttpProxy;
use crate::session::Session;
use crate::target::Target;
use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Instant;

/// The most headers a proxy's answer may have.
const MAX_HEADERS: usize = 64;

impl Session {
    /// Asks `proxy`, over `tcp`, for a tunnel to the target's host and
    /// port (the host name as the URL gives it: the proxy resolves it), by
    /// the handshake timeout.
    pub(super) fn tunnel(
        &self,
        mut tcp: &TcpStream,
        proxy: &HttpProxy,
        target: &Target,
    ) -> Result<(), OpenFailure> {
        let timeout = self.config().handshake_timeout;
        let deadline = Instant::now() + timeout;
        let authority = if target.host.contains(':') {
            format!("[{}]:{}", target.host, target.port)
        } else {
            format!("{}:{}", target.host, target.port)
        };
        let what = format!("the proxy {} for {authority}", proxy.address());
        let failed = |e: io::Error| {
            OpenFailure::Io(Error::io_or_timeout(
                format!("Tunnel through {what} failed"),
                e,
                Timeout::Handshake,
                Some(timeout),
            ))
        };
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(authorization) = &proxy.authorization {
            request.push_str("Proxy-Authorization: ");
            request.push_str(authorization);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes()).map_err(failed)?;

        let max = self.config().max_handshake_size;
        let refused = |status, message: String| OpenFailure::Io(Error::Proxy { status, message });
        let answer = read_head_plain(tcp, deadline, |head| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(head) {
                Ok(httparse::Status::Complete(len)) => Ok(Some((
                    (
                        response.code.unwrap_or(0),
                        response.reason.unwrap_or_default().to_owned(),
                    ),
                    len,
                ))),
                Ok(httparse::Status::Partial) if head.len() <= max => Ok(None),
                Ok(httparse::Status::Partial) => {
                    Err(format!("sent an answer longer than {max} bytes"))
                }
                Err(e) => Err(format!("did not answer in HTTP: {e}")),
            }
        });
        match answer {
            HeadResult::Done((code, reason), leftover) => {
                if !(200..300).contains(&code) {
                    let message = format!("{what} refused the tunnel: HTTP {code} {reason}");
                    return Err(refused(Some(code), message.trim_end().to_owned()));
                }
                // The server speaks after the client: nothing may come yet.
                if !leftover.is_empty() {
                    return Err(refused(None, format!("{what} sent data after its answer")));
                }
            }
            HeadResult::Invalid(why, _) => return Err(refused(None, format!("{what} {why}"))),
            HeadResult::Eof => {
                return Err(failed(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the proxy closed the connection",
                )))
            }
            HeadResult::Io(e) => return Err(failed(e)),
        }
        log::debug!("tunnel open through {what}");
        Ok(())
    }
}
