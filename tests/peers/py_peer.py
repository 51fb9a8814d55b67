"""Python `websockets` as a peer for tests/interop.rs (protocol: README.md).

    py_peer.py server [--tls CERT KEY] [--token TOKEN] [--port PORT] [--deflate MODE]
                                         serve on 127.0.0.1:PORT (default 0), print "LISTENING <port>";
                                         with --token, demand "Authorization: Bearer TOKEN"
                                         (else 401), print "AUTH ok|refused" and
                                         "COOKIE <Cookie or ->", answer with Set-Cookie;
                                         with --deflate, permessage-deflate as MODE says,
                                         "EXTENSIONS ..." per connection, digests in "RECV"
    py_peer.py client URL [--ca CAFILE]  run the client script against URL; for wss,
                                         trusting the CA in CAFILE
    py_peer.py deflate-client URL MODE   run the permessage-deflate client script against URL

MODE is "on" (websockets' own permessage-deflate settings), "no-context"
(both server_no_context_takeover and client_no_context_takeover asked
for) or "off" (no permessage-deflate).

Both print one line per observation; the Rust test asserts on them, in
order. Every wait has a timeout, and the process ends by itself.
"""

import functools
import hashlib
from http import HTTPStatus
import os
import random
import ssl
import sys
import threading

from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import ServerConnection, serve

WAIT = 20  # seconds, for any single wait
LIFETIME = 120  # seconds; the process ends by itself after this
MAX = 16 * 1024 * 1024
TEXT = "héllo wörld ✓ 🎉"
FRAGMENTED = "frag-one ✓|frag-two 🎉|frag-three"

_out = threading.Lock()


def say(*parts):
    line = " ".join(str(p) for p in parts)
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def big():
    return bytes(i % 251 for i in range(1 << 20))


def text_fragments():
    """FRAGMENTED as UTF-8 bytes cut inside "✓" and inside "🎉"."""
    b = FRAGMENTED.encode()
    cut1 = b.index("✓".encode()) + 1
    cut2 = b.index("🎉".encode()) + 2
    return [b[:cut1], b[cut1:cut2], b[cut2:]]


def binary_fragments():
    b = big()
    return [b[:1000], b[1000:700_000], b[700_000:]]


def describe(message):
    if isinstance(message, str):
        return "TEXT " + message
    return "BINARY %d %s" % (len(message), hashlib.sha1(message).hexdigest())


def digest(message):
    """A message as its type, length and SHA-1: "TEXT|BINARY <bytes> <sha1 hex>"
    (the length and hash of text are those of its UTF-8)."""
    if isinstance(message, str):
        data, kind = message.encode(), "TEXT"
    else:
        data, kind = bytes(message), "BINARY"
    return "%s %d %s" % (kind, len(data), hashlib.sha1(data).hexdigest())


def closed_line(code, reason):
    return "%s %s" % ("-" if code is None else code, reason or "-")


class PingReporter:
    """Mixin: prints "GOTPING <payload>" for every ping frame that arrives."""

    def __init__(self, *args, **kwargs):
        # Before the connection's reader thread starts.
        self.got_ping = threading.Event()
        super().__init__(*args, **kwargs)

    def process_event(self, event):
        super().process_event(event)
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            say("GOTPING", bytes(event.data).decode(errors="replace"))
            self.got_ping.set()


class Server(PingReporter, ServerConnection):
    pass


class Client(PingReporter, ClientConnection):
    pass


# ------------------------------------------------------------------ server


def handler(ws, deflate=None):
    say("PROTOCOL", ws.subprotocol or "-")
    if deflate is not None:
        say_extensions(ws)
    report = describe if deflate is None else digest
    try:
        for message in ws:
            if isinstance(message, str) and message.startswith("cmd:"):
                command(ws, message[4:])
            else:
                say("RECV", report(message))
                ws.send(message)
    except ConnectionClosed:
        pass
    say("CLOSED", closed_line(ws.close_code, ws.close_reason))


def command(ws, cmd):
    if cmd == "fragments":
        ws.send(text_fragments(), text=True)
    elif cmd == "fragments-binary":
        ws.send(binary_fragments())
    elif cmd.startswith("ping:"):
        payload = cmd[5:]
        if ws.ping(payload.encode()).wait(WAIT):
            ws.send("pong:" + payload)
        else:
            ws.send("no pong")
    elif cmd.startswith("ping-me:"):
        ws.ping(cmd[8:].encode())
    elif cmd.startswith("close:"):
        _, code, reason = cmd.split(":", 2)
        ws.close(int(code), reason)
    else:
        ws.send("unknown command " + cmd)


def token_check(token):
    """process_request and process_response for a server that demands a
    bearer token: 401 without it; the cookie it got is printed, and the
    101 sets one."""

    def process_request(connection, request):
        if request.headers.get("Authorization") != "Bearer " + token:
            say("AUTH", "refused")
            return connection.respond(HTTPStatus.UNAUTHORIZED, "a bearer token is needed\n")
        say("AUTH", "ok")
        say("COOKIE", request.headers.get("Cookie", "-"))
        return None

    def process_response(connection, request, response):
        response.headers["Set-Cookie"] = "seen=1"
        return None

    return process_request, process_response


def run_server(args):
    context = None
    process_request = process_response = None
    port = 0
    deflate = None
    while args:
        if args[0] == "--tls" and len(args) >= 3:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(args[1], args[2])
            args = args[3:]
        elif args[0] == "--token" and len(args) >= 2:
            process_request, process_response = token_check(args[1])
            args = args[2:]
        elif args[0] == "--port" and len(args) >= 2:
            port = int(args[1])
            args = args[2:]
        elif args[0] == "--deflate" and len(args) >= 2 and args[1] in DEFLATE_MODES:
            deflate = args[1]
            args = args[2:]
        else:
            sys.exit(__doc__)
    with serve(
        functools.partial(handler, deflate=deflate),
        "127.0.0.1",
        port,
        subprotocols=["chat"],
        ssl=context,
        max_size=MAX,
        open_timeout=WAIT,
        close_timeout=WAIT,
        ping_interval=None,
        create_connection=Server,
        process_request=process_request,
        process_response=process_response,
        **server_compression(deflate),
    ) as server:
        say("LISTENING", server.socket.getsockname()[1])
        # The test kills the process when it is done; end anyway after a while.
        timer = threading.Timer(LIFETIME, server.shutdown)
        timer.daemon = True
        timer.start()
        server.serve_forever()


# ------------------------------------------------------------------ client


def check(name, ok, detail=""):
    if not ok:
        say("FAIL", name, detail)
        sys.exit(1)
    say("OK", name)


def expect_echo(ws, name, sent):
    try:
        got = ws.recv(WAIT)
    except TimeoutError:
        check(name, False, "timeout")
    check(name, got == sent, describe(got)[:80])


def run_client(url, ca=None):
    options = dict(max_size=MAX, open_timeout=WAIT, close_timeout=WAIT,
                   ping_interval=None, create_connection=Client)
    if ca is not None:
        options["ssl"] = ssl.create_default_context(cafile=ca)
    with connect(url, subprotocols=["chat", "superchat"], **options) as ws:
        say("PROTOCOL", ws.subprotocol or "-")
        ws.send(TEXT)
        expect_echo(ws, "text", TEXT)
        ws.send(bytes(range(256)))
        expect_echo(ws, "binary", bytes(range(256)))
        ws.send(big())
        expect_echo(ws, "big", big())
        ws.send(text_fragments(), text=True)
        expect_echo(ws, "fragmented", FRAGMENTED)
        ws.send(binary_fragments())
        expect_echo(ws, "fragmented-binary", big())
        check("ping", ws.ping(b"py-ping").wait(WAIT))
        ws.send("cmd:ping-me:server-ping")
        check("ping-me", ws.got_ping.wait(WAIT))
        # The server closes with the code and reason it is asked for.
        ws.send("cmd:close:4001:server bye ✓")
        try:
            extra = ws.recv(WAIT)
            check("closed-by-server", False, repr(extra)[:80])
        except TimeoutError:
            check("closed-by-server", False, "timeout")
        except ConnectionClosed as e:
            rcvd = e.rcvd
            say("CLOSED", closed_line(rcvd and rcvd.code, rcvd and rcvd.reason))
    # A second connection, offering no subprotocol; this side closes.
    options["create_connection"] = ClientConnection
    with connect(url, **options) as ws:
        say("PROTOCOL2", ws.subprotocol or "-")
        ws.close(4002, "bye")
        say("CLOSED2", closed_line(ws.close_code, ws.close_reason))
    say("DONE")


# ------------------------------------------------------------------ permessage-deflate

DEFLATE_MODES = ("on", "no-context", "off")


def server_compression(mode):
    """serve()'s compression arguments for a --deflate MODE (None: its defaults)."""
    if mode == "on":
        return dict(compression="deflate")
    if mode == "no-context":
        factory = ServerPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True
        )
        return dict(compression=None, extensions=[factory])
    if mode == "off":
        return dict(compression=None)
    return {}


def client_compression(mode):
    """connect()'s compression arguments for a MODE."""
    if mode == "on":
        return dict(compression="deflate")
    if mode == "no-context":
        factory = ClientPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True
        )
        return dict(compression=None, extensions=[factory])
    return dict(compression=None)


def say_extensions(ws):
    """Prints "EXTENSIONS <in effect> <Sec-WebSocket-Extensions>": the names
    of the extensions this connection uses ("-" for none), then the value of
    the 101's header ("-" for none), as this end sent or received it."""
    active = ",".join(e.name for e in ws.protocol.extensions) or "-"
    header = ws.response.headers.get("Sec-WebSocket-Extensions") or "-"
    say("EXTENSIONS", active, header)


def json_text(records):
    """JSON-like text of `records` records, each with non-ASCII characters."""
    return "[" + ",".join(
        '{"id":%d,"user":"user-%d","city":"Zürich","tags":["alpha","beta","✓"],'
        '"score":%d,"active":%s}' % (i, i, i * 37 % 1000, "true" if i % 3 else "false")
        for i in range(records)
    ) + "]"


def structured(length):
    """Compressible binary: runs of 64 bytes, each run its own pattern."""
    return bytes(((i // 64) % 256) ^ (i % 7) for i in range(length))


def deflate_messages():
    """The deflate client's messages: (name, message or list of fragments).
    "record" is sent twice in a row (with context takeover, the second
    refers to the first); fragmented text is cut inside "✓" and inside "ü";
    "random" is the one that does not compress."""
    record = json_text(6)
    json = json_text(2000)
    small = json_text(300).encode()
    cut1 = small.index("✓".encode()) + 1
    cut2 = small.index("ü".encode(), len(small) // 2) + 1
    binary = structured(300 * 1024)
    return [
        ("tiny", "tiny ✓"),
        ("empty-text", ""),
        ("empty-binary", b""),
        ("record", record),
        ("record-again", record),
        ("json", json),
        ("json-again", json),
        ("json-again-2", json),
        ("binary", binary),
        ("random", random.Random(7).randbytes(3 << 19)),
        ("fragmented-text", [small[:cut1], small[cut1:cut2], small[cut2:]]),
        ("fragmented-binary", [binary[:1000], binary[1000:200_000], binary[200_000:]]),
    ]


def run_deflate_client(url, mode):
    options = dict(max_size=MAX, open_timeout=WAIT, close_timeout=WAIT, ping_interval=None)
    options.update(client_compression(mode))
    with connect(url, subprotocols=["chat"], **options) as ws:
        say("PROTOCOL", ws.subprotocol or "-")
        say_extensions(ws)
        for name, message in deflate_messages():
            if isinstance(message, list):
                text = name.endswith("-text")
                whole = b"".join(message)
                sent = whole.decode() if text else whole
                say("SENT", name, digest(sent))
                ws.send(message, text=text)
            else:
                sent = message
                say("SENT", name, digest(sent))
                ws.send(message)
            expect_echo(ws, name, sent)
        ws.close(1000)
        say("CLOSED", closed_line(ws.close_code, ws.close_reason))
    say("DONE")


def give_up():
    say("FAIL watchdog", "still running after %d s" % LIFETIME)
    os._exit(3)


def main():
    # UTF-8 output, whatever the locale.
    sys.stdout.reconfigure(encoding="utf-8")
    # A client that hangs anyway is ended by this.
    watchdog = threading.Timer(LIFETIME, give_up)
    watchdog.daemon = True
    if len(sys.argv) >= 2 and sys.argv[1] == "server":
        run_server(sys.argv[2:])
    elif len(sys.argv) in (3, 5) and sys.argv[1] == "client":
        ca = None
        if len(sys.argv) == 5:
            if sys.argv[3] != "--ca":
                sys.exit(__doc__)
            ca = sys.argv[4]
        watchdog.start()
        try:
            run_client(sys.argv[2], ca)
        except Exception as e:  # report it on stdout, where the test looks
            say("FAIL", "exception", "%s: %s" % (type(e).__name__, e))
            sys.exit(1)
    elif len(sys.argv) == 4 and sys.argv[1] == "deflate-client" and sys.argv[3] in DEFLATE_MODES:
        watchdog.start()
        try:
            run_deflate_client(sys.argv[2], sys.argv[3])
        except Exception as e:  # report it on stdout, where the test looks
            say("FAIL", "exception", "%s: %s" % (type(e).__name__, e))
            sys.exit(1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
