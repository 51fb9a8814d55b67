"""Python `websockets` as a peer for tests/interop.rs.

    py_peer.py server [--tls CERT KEY]   serve on 127.0.0.1, print "LISTENING <port>"
    py_peer.py client URL                run the client script against URL

Both print one line per observation; the Rust test asserts on them. Every
wait has a timeout, and the process ends by itself.
"""

import ssl
import sys
import threading

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import serve

WAIT = 20
MAX = 16 * 1024 * 1024
FRAGMENTS = ["frag-one|", "frag-two|", "frag-three"]


def say(*parts):
    print(*parts, flush=True)


def big():
    return bytes(i % 251 for i in range(1 << 20))


# ------------------------------------------------------------------ server

def handler(ws):
    say("PROTOCOL", ws.subprotocol or "-")
    try:
        for message in ws:
            if isinstance(message, str) and message.startswith("cmd:"):
                command(ws, message[4:])
            else:
                ws.send(message)
    except ConnectionClosed:
        pass
    rcvd = ws.close_code, ws.close_reason
    say("CLOSED", rcvd[0], rcvd[1] or "-")


def command(ws, cmd):
    if cmd == "fragments":
        ws.send(FRAGMENTS)
    elif cmd.startswith("ping:"):
        payload = cmd[5:].encode()
        if ws.ping(payload).wait(WAIT):
            ws.send("pong:" + payload.decode())
        else:
            ws.send("no pong")
    elif cmd.startswith("close:"):
        _, code, reason = cmd.split(":", 2)
        ws.close(int(code), reason)


def run_server(args):
    context = None
    if args[:1] == ["--tls"]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args[1], args[2])
    with serve(handler, "127.0.0.1", 0, subprotocols=["chat"], ssl=context,
               max_size=MAX, open_timeout=WAIT, close_timeout=WAIT) as server:
        say("LISTENING", server.socket.getsockname()[1])
        # The test kills the process when it is done; end anyway after a while.
        timer = threading.Timer(120, server.shutdown)
        timer.daemon = True
        timer.start()
        server.serve_forever()


# ------------------------------------------------------------------ client

def check(name, ok, detail=""):
    say("OK" if ok else "FAIL", name, detail)
    if not ok:
        sys.exit(1)


def run_client(url):
    text = "héllo wörld ✓ 🎉"
    with connect(url, subprotocols=["chat", "superchat"], max_size=MAX,
                 open_timeout=WAIT, close_timeout=WAIT) as ws:
        say("PROTOCOL", ws.subprotocol or "-")
        ws.send(text)
        check("text", ws.recv(WAIT) == text)
        ws.send(bytes(range(256)))
        check("binary", ws.recv(WAIT) == bytes(range(256)))
        ws.send(big())
        check("big", ws.recv(WAIT) == big())
        ws.send(FRAGMENTS)
        check("fragmented", ws.recv(WAIT) == "".join(FRAGMENTS))
        check("ping", ws.ping(b"py-ping").wait(WAIT))
        # The server closes with the code it is asked for.
        ws.send("cmd:close:4001:server bye")
        try:
            extra = ws.recv(WAIT)
            check("closed-by-server", False, repr(extra))
        except ConnectionClosed as e:
            say("CLOSED", e.rcvd.code if e.rcvd else "-", (e.rcvd.reason if e.rcvd else "") or "-")
    # A second connection: this side closes.
    with connect(url, open_timeout=WAIT, close_timeout=WAIT) as ws:
        ws.close(4002, "bye")
        say("CLOSED2", ws.close_code, ws.close_reason or "-")
    say("DONE")


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "server":
        run_server(sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "client":
        run_client(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
