//! The proxy step of a client's opening chain: a `CONNECT` tunnel through
//! an HTTP proxy, over which TLS and the upgrade then run as over a direct
//! connection.

use super::failure::OpenFailure;
use crate::deadline::DeadlineReader;
use crate::error::{Error, Timeout};
use crate::proxy::HttpProxy;
use crate::session::Session;
use crate::target::Target;
use std::io::{self, Read, Write};
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
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        let mut reader = DeadlineReader::new(
            tcp,
            Some(deadline),
            None,
            "the proxy did not answer in time",
        );
        let len = loop {
            let n = reader.read(|| tcp.read(&mut buf)).map_err(failed)?;
            if n == 0 {
                return Err(failed(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the proxy closed the connection",
                )));
            }
            head.extend_from_slice(&buf[..n]);
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&head) {
                Ok(httparse::Status::Complete(len)) => {
                    let code = response.code.unwrap_or(0);
                    if !(200..300).contains(&code) {
                        let reason = response.reason.unwrap_or_default();
                        return Err(OpenFailure::Io(Error::Proxy {
                            status: Some(code),
                            message: format!("{what} refused the tunnel: HTTP {code} {reason}")
                                .trim_end()
                                .to_owned(),
                        }));
                    }
                    break len;
                }
                Ok(httparse::Status::Partial) if head.len() <= max => {}
                Ok(httparse::Status::Partial) => {
                    return Err(OpenFailure::Io(Error::Proxy {
                        status: None,
                        message: format!("{what} sent an answer longer than {max} bytes"),
                    }));
                }
                Err(e) => {
                    return Err(OpenFailure::Io(Error::Proxy {
                        status: None,
                        message: format!("{what} did not answer in HTTP: {e}"),
                    }));
                }
            }
        };
        // The server speaks after the client: nothing may come yet.
        if head.len() > len {
            return Err(OpenFailure::Io(Error::Proxy {
                status: None,
                message: format!("{what} sent data after its answer"),
            }));
        }
        log::debug!("tunnel open through {what}");
        Ok(())
    }
}
