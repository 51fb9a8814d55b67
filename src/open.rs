//! Opening a connection, up to the end of the opening handshake: a client's
//! in `client`, a server's in `server`, the HTTP head both read in
//! `http_head`, what a failed opening dispatches in `failure`, and the
//! deadline of a server's `upgradeRequest` listeners in `watchdog`.

mod client;
mod failure;
mod http_head;
mod proxy;
mod redirect;
mod server;
mod watchdog;

use crate::connection::Conn;
use crate::session::Session;
use crate::websocket::{HandshakeRequest, HandshakeResponse};
use failure::OpenFailure;
pub(crate) use redirect::add_url_credentials;
pub(crate) use server::refuse_unavailable;
use std::sync::Arc;

/// What a completed opening handshake hands to the read loop.
pub(crate) struct Opened {
    /// The connection, its transport set up.
    pub(crate) conn: Arc<Conn>,
    /// The subprotocol agreed on (empty: none).
    pub(crate) protocol: String,
    /// Bytes that came after the HTTP head: the first frames.
    pub(crate) leftover: Vec<u8>,
    /// A client's: the server's 101 response.
    pub(crate) response: Option<HandshakeResponse>,
    /// A server's: the client's request.
    pub(crate) request: Option<HandshakeRequest>,
}

impl Session {
    /// After the opening: runs the connection, or dispatches why it did not
    /// open.
    fn run_opened(&self, opened: Result<Opened, OpenFailure>) {
        match opened {
            Ok(Opened {
                conn,
                protocol,
                leftover,
                response,
                request,
            }) => {
                self.open_and_run(conn, protocol, leftover, response, request, false);
            }
            Err(failure) => self.fail(failure),
        }
    }
}
