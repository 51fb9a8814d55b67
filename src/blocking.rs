//! Blocking calls for scripts: open a connection and wait for the outcome,
//! receive the next message with a timeout, close and wait for the closing
//! handshake. The same connection machinery as the listeners: a `WebSocket`
//! made by [`WebSocket::open`] queues its events, and [`WebSocket::receive`]
//! takes them, running any listeners on the calling thread.

use crate::config::Config;
use crate::error::{Error, Timeout};
use crate::event::{Event, IOErrorEvent, SecurityErrorEvent, WebSocketEvent};
use crate::pump::Queue;
use crate::websocket::WebSocket;
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What [`WebSocket::receive`] returns: a message, or the end of the
/// connection with its close code and reason. Not in AIR.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// The connection ended: `code` is [`close_reason`](WebSocket::close_reason),
    /// `reason` the text of the peer's close frame ("" for none).
    Closed {
        /// The close reason code.
        code: i32,
        /// The peer's close reason text.
        reason: String,
    },
}

impl fmt::Display for Received {
    /// The text, `<N bytes>` for binary data, or `closed (CODE REASON)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Received::Text(text) => f.write_str(text),
            Received::Binary(data) => write!(f, "<{} bytes>", data.len()),
            Received::Closed { code, reason } if reason.is_empty() => {
                write!(f, "closed ({code})")
            }
            Received::Closed { code, reason } => write!(f, "closed ({code} {reason})"),
        }
    }
}

impl WebSocket {
    /// Connects to `url` and waits up to `timeout` for the outcome: the
    /// open `WebSocket`, or the error that names why not (a refused
    /// connection or unknown host, an HTTP status, TLS, the timeout). For
    /// scripts; not in AIR. The `WebSocket` queues its messages for
    /// [`receive`](Self::receive), which also runs its listeners, if any, on
    /// the calling thread. What is not received waits, up to
    /// [`DEFAULT_PUMP_EVENTS`](crate::DEFAULT_PUMP_EVENTS) events and
    /// [`DEFAULT_PUMP_BYTES`](crate::DEFAULT_PUMP_BYTES) bytes (charged to the
    /// memory budget); past that the connection stops reading until
    /// `receive` makes room, so that TCP pushes back on the peer.
    ///
    /// ```no_run
    /// use airws::WebSocket;
    /// use std::time::Duration;
    ///
    /// let ws = WebSocket::open("ws://127.0.0.1:9001/", Duration::from_secs(5))?;
    /// ws.send_message(WebSocket::FMT_TEXT, "Hello")?;
    /// println!("{}", ws.receive(Duration::from_secs(5))?);
    /// ws.close_and_wait(WebSocket::CLOSE_NORMAL, Duration::from_secs(5))?;
    /// # Ok::<(), airws::Error>(())
    /// ```
    pub fn open(url: &str, timeout: Duration) -> Result<WebSocket, Error> {
        WebSocket::open_with(Config::default(), url, &[], timeout)
    }

    /// [`open`](Self::open) with a `config` and subprotocols to offer.
    pub fn open_with(
        config: Config,
        url: &str,
        protocols: &[&str],
        timeout: Duration,
    ) -> Result<WebSocket, Error> {
        let ws = WebSocket::with_config(config);
        let queue = Queue::for_receive();
        let _ = ws.shared().pump.set(std::sync::Arc::downgrade(&queue));
        let _ = ws.shared().own_queue.set(queue.clone());
        ws.connect(url, protocols)?;
        let deadline = Instant::now() + timeout;
        let mut failure = None;
        loop {
            let Some(event) = queue.next_dispatched(deadline) else {
                let _ = ws.close(WebSocket::CLOSE_NORMAL);
                return Err(failure.unwrap_or(Error::Timeout {
                    which: Timeout::Connect,
                    after: timeout,
                    context: format!("Opening {url}"),
                }));
            };
            match event.event_type() {
                Event::CONNECT => return Ok(ws),
                // An opening that fails so dispatches no close after it.
                IOErrorEvent::IO_ERROR | SecurityErrorEvent::SECURITY_ERROR => {
                    if let Some(error) = event.error() {
                        return Err(error.clone());
                    }
                    failure = Some(Error::io(
                        format!("Opening {url} failed"),
                        std::io::Error::other(event.text().to_owned()),
                    ));
                }
                Event::CLOSE => {
                    return Err(event.error().cloned().or(failure).unwrap_or_else(|| {
                        Error::io(
                            format!("Opening {url} failed"),
                            std::io::Error::other(format!(
                                "closed (close reason {})",
                                ws.close_reason()
                            )),
                        )
                    }));
                }
                _ => {}
            }
        }
    }

    /// Waits up to `timeout` for the next message of a `WebSocket` made by
    /// [`open`](Self::open), and returns it, or [`Received::Closed`] once the
    /// connection has ended (again on every later call). The `WebSocket`'s
    /// listeners, if any, run on this thread as the events pass; a data
    /// listener sees each message too. Not in AIR.
    ///
    /// [`Error::Timeout`] ([`Timeout::Receive`]) when nothing came;
    /// [`Error::IllegalOperation`] for a `WebSocket` not made by `open`, or
    /// when called from a listener (of the connection's thread, or of
    /// another `receive`), where it would wait for itself.
    pub fn receive(&self, timeout: Duration) -> Result<Received, Error> {
        let Some(queue) = self.shared().own_queue.get().cloned() else {
            return Err(Error::illegal(
                "receive: this WebSocket was not made by WebSocket::open; use listeners",
            ));
        };
        if self.on_connection_thread() || self.shared().receiving.swap(true, Ordering::SeqCst) {
            return Err(Error::illegal(
                "receive: called from a listener, it would wait for itself",
            ));
        }
        let result = self.receive_from(&queue, timeout);
        self.shared().receiving.store(false, Ordering::SeqCst);
        result
    }

    fn receive_from(&self, queue: &Queue, timeout: Duration) -> Result<Received, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.connected() && queue.is_empty() {
                return Ok(self.closed());
            }
            let wait = if self.connected() {
                deadline
            } else {
                // Ended: only what is still queued is left to take.
                Instant::now()
            };
            let Some(event) = queue.next_dispatched(wait) else {
                if !self.connected() {
                    return Ok(self.closed());
                }
                return Err(Error::Timeout {
                    which: Timeout::Receive,
                    after: timeout,
                    context: "Receiving a message".to_owned(),
                });
            };
            match event.event_type() {
                WebSocketEvent::DATA => {
                    return Ok(match event.string_data() {
                        Some(text) => Received::Text(text.to_owned()),
                        None => Received::Binary(event.data().to_vec()),
                    })
                }
                Event::CLOSE => return Ok(self.closed()),
                _ => {}
            }
        }
    }

    /// Whether the caller is the open connection's own thread (a listener
    /// there), which a blocking call would keep from making progress.
    fn on_connection_thread(&self) -> bool {
        let conn = self.shared().state().conn.clone();
        conn.is_some_and(|c| c.is_reader_thread())
    }

    fn closed(&self) -> Received {
        let st = self.shared().state();
        Received::Closed {
            code: st.close_reason,
            reason: st.close_text.clone(),
        }
    }

    /// Closes with `code` (as [`close`](Self::close)) and waits up to
    /// `timeout` for the closing handshake to end. Not in AIR.
    ///
    /// [`Error::Timeout`] ([`Timeout::Close`]) when it did not end in time
    /// (the socket is closed anyway, at the `close_timeout`);
    /// [`Error::IllegalOperation`] from a listener on the connection's own
    /// thread, which must go on to finish the handshake (nothing is
    /// closed then: call [`close`](Self::close) there); the errors of
    /// [`close`](Self::close).
    pub fn close_and_wait(&self, code: u32, timeout: Duration) -> Result<(), Error> {
        if self.on_connection_thread() {
            return Err(Error::illegal(
                "closeAndWait: called from a listener on the connection's thread, it would \
                 wait for itself; call close() there",
            ));
        }
        self.close(code)?;
        if self.wait_closed(timeout) {
            Ok(())
        } else {
            Err(Error::Timeout {
                which: Timeout::Close,
                after: timeout,
                context: "The closing handshake".to_owned(),
            })
        }
    }
}
