//! An ActionScript program that uses AIR's `WebSocket` and `ServerSocket`,
//! and its line-by-line Rust port. Each block of AS3 (in comments) is
//! followed by the Rust that replaces it.
//!
//!     cargo run --example air_port
//!
//! The program starts an echo server on 127.0.0.1 (a free port), connects a
//! client to it offering the subprotocol "chat", sends a text and a binary
//! message, prints the echoes, closes with code 4000 and prints the close
//! reason each side saw. It exits 0 when everything happened as expected.

use airws::{
    Event, EventDispatcher, IOErrorEvent, ServerSocket, ServerSocketConnectEvent, WebSocket,
    WebSocketEvent,
};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn main() {
    // What the program saw, for the check at the end (not part of the port).
    let (log_tx, log) = mpsc::channel::<String>();
    let trace = move |line: String| {
        println!("{line}");
        let _ = log_tx.send(line);
    };

    // --- The server ------------------------------------------------------
    //
    // private var server:ServerSocket = new ServerSocket();
    // private var clients:Array = [];
    let server = ServerSocket::new();
    let clients: Arc<Mutex<Vec<WebSocket>>> = Arc::default();

    // server.addEventListener(ServerSocketConnectEvent.CONNECT, onAccept);
    // private function onAccept(e:ServerSocketConnectEvent):void {
    //     var ws:WebSocket = new WebSocket();
    //     ws.protocol = "chat";
    //     ws.addEventListener(WebSocketEvent.DATA, onServerData);
    //     ws.addEventListener(Event.CLOSE, onServerClose);
    //     clients.push(ws);
    //     ws.startServer(e.socket);
    // }
    let t = trace.clone();
    let list = clients.clone();
    server.add_event_listener(ServerSocketConnectEvent::CONNECT, move |e: &Event| {
        let ws = WebSocket::new();
        ws.set_protocol("chat").ok();
        ws.add_event_listener(WebSocketEvent::DATA, on_server_data);
        let t = t.clone();
        ws.add_event_listener(Event::CLOSE, move |e: &Event| on_server_close(e, &t));
        list.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ws.clone());
        if let Err(err) = ws.start_server(e.socket()) {
            eprintln!("startServer failed: {err}");
        }
    });

    // private function onServerData(e:WebSocketEvent):void {
    //     var ws:WebSocket = e.target as WebSocket;
    //     ws.sendMessage(e.format, e.data);
    // }
    fn on_server_data(e: &Event) {
        if let Some(ws) = e.target::<WebSocket>() {
            ws.send_message(e.format(), e.data()).ok();
        }
    }

    // private function onServerClose(e:Event):void {
    //     var ws:WebSocket = e.target as WebSocket;
    //     trace("server: client closed with " + ws.closeReason);
    // }
    fn on_server_close(e: &Event, trace: &(impl Fn(String) + ?Sized)) {
        if let Some(ws) = e.target::<WebSocket>() {
            trace(format!("server: client closed with {}", ws.close_reason()));
        }
    }

    // server.bind(0, "127.0.0.1");
    // server.listen();
    // trace("server: listening on port " + server.localPort);
    if let Err(err) = server.bind(0, "127.0.0.1").and_then(|_| server.listen()) {
        eprintln!("cannot listen: {err}");
        std::process::exit(1);
    }
    trace(format!("server: listening on port {}", server.local_port()));

    // --- The client ------------------------------------------------------
    //
    // private var ws:WebSocket = new WebSocket();
    let ws = WebSocket::new();

    // ws.addEventListener(Event.CONNECT, function(e:Event):void {
    //     trace("client: connected, protocol " + ws.protocol);
    //     ws.sendMessage(WebSocket.fmtTEXT, "héllo from AS3");
    //     var bytes:ByteArray = new ByteArray();
    //     bytes.writeByte(1); bytes.writeByte(2); bytes.writeByte(3);
    //     ws.sendMessage(WebSocket.fmtBINARY, bytes);
    // });
    let t = trace.clone();
    ws.add_event_listener(Event::CONNECT, move |e: &Event| {
        let Some(ws) = e.target::<WebSocket>() else {
            return;
        };
        t(format!("client: connected, protocol {}", ws.protocol()));
        ws.send_message(WebSocket::FMT_TEXT, "héllo from AS3").ok();
        let bytes: Vec<u8> = vec![1, 2, 3];
        ws.send_message(WebSocket::FMT_BINARY, bytes).ok();
    });

    // ws.addEventListener(WebSocketEvent.DATA, function(e:WebSocketEvent):void {
    //     if (e.format == WebSocket.fmtTEXT) trace("client: text " + e.stringData);
    //     else { trace("client: binary of " + e.data.length + " bytes"); ws.close(4000); }
    // });
    let t = trace.clone();
    ws.add_event_listener(WebSocketEvent::DATA, move |e: &Event| {
        let Some(ws) = e.target::<WebSocket>() else {
            return;
        };
        if e.format() == WebSocket::FMT_TEXT {
            t(format!(
                "client: text {}",
                e.string_data().unwrap_or_default()
            ));
        } else {
            t(format!("client: binary of {} bytes", e.data().len()));
            ws.close(4000).ok();
        }
    });

    // ws.addEventListener(IOErrorEvent.IO_ERROR, function(e:IOErrorEvent):void {
    //     trace("client: error " + e.errorID + ": " + e.text);
    // });
    let t = trace.clone();
    ws.add_event_listener(IOErrorEvent::IO_ERROR, move |e: &Event| {
        t(format!("client: error {}: {}", e.error_id(), e.text()));
    });

    // ws.connect("ws://127.0.0.1:" + server.localPort + "/echo", new <String>["chat"]);
    let url = format!("ws://127.0.0.1:{}/echo", server.local_port());
    if let Err(err) = ws.connect(&url, &["chat"]) {
        eprintln!("connect failed: {err}");
        std::process::exit(1);
    }

    // --- Not part of the port: wait for the exchange, then check it. ------
    // An AIR program returns to its event loop here; a Rust program waits.
    let mut seen = Vec::new();
    while let Ok(line) = log.recv_timeout(Duration::from_secs(10)) {
        let done = line.starts_with("server: client closed");
        seen.push(line);
        if done {
            break;
        }
    }
    if ws.wait_closed(Duration::from_secs(10)) {
        println!("client: closed with {}", ws.close_reason());
    }
    let expected = [
        "client: connected, protocol chat",
        "client: text héllo from AS3",
        "client: binary of 3 bytes",
        "server: client closed with 4000",
    ];
    let ok = expected.iter().all(|e| seen.iter().any(|s| s == e)) && ws.close_reason() == 4000;
    server.close();
    clients.lock().unwrap_or_else(|p| p.into_inner()).clear();
    if ok {
        println!("air_port: OK");
    } else {
        eprintln!("air_port: expected {expected:?}, saw {seen:?}");
        std::process::exit(1);
    }
}
