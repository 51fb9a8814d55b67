// Node `ws` as a peer for tests/interop.rs (protocol: README.md).
//
//   node node_peer.js server [--deflate MODE]
//                                  serve on 127.0.0.1:0, print "LISTENING <port>";
//                                  with --deflate, permessage-deflate as MODE says,
//                                  "EXTENSIONS ..." per connection, digests in "RECV"
//   node node_peer.js client URL   run the client script against URL
//   node node_peer.js auth-client URL TOKEN
//                                  connect without a token (expect a refusal),
//                                  then with it and a cookie (expect Set-Cookie)
//   node node_peer.js deflate-client URL MODE
//                                  run the permessage-deflate client script against URL
//
// MODE is "on" (permessage-deflate, every message compressed: threshold 0),
// "no-context" (the same, with serverNoContextTakeover and
// clientNoContextTakeover) or "off" (no permessage-deflate).
//
// Both print one line per observation; the Rust test asserts on them, in
// order. Every wait has a timeout, and the process ends by itself.
'use strict';

const crypto = require('crypto');
const { WebSocket, WebSocketServer } = require('ws');

const WAIT = 20000; // ms, for any single wait
const LIFETIME = 120000; // ms; the process ends by itself after this
const MAX = 16 << 20;
const TEXT = 'héllo wörld ✓ 🎉';
const FRAGMENTED = 'frag-one ✓|frag-two 🎉|frag-three';

function say(...parts) {
  process.stdout.write(parts.join(' ') + '\n');
}

function big() {
  const b = Buffer.alloc(1 << 20);
  for (let i = 0; i < b.length; i++) b[i] = i % 251;
  return b;
}

function bytes256() {
  return Buffer.from([...Array(256).keys()]);
}

// FRAGMENTED as UTF-8 bytes cut inside "✓" and inside "🎉".
function textFragments() {
  const b = Buffer.from(FRAGMENTED);
  const cut1 = b.indexOf(Buffer.from('✓')) + 1;
  const cut2 = b.indexOf(Buffer.from('🎉')) + 2;
  return [b.subarray(0, cut1), b.subarray(cut1, cut2), b.subarray(cut2)];
}

function binaryFragments() {
  const b = big();
  return [b.subarray(0, 1000), b.subarray(1000, 700000), b.subarray(700000)];
}

// Sends the pieces as one message: the first frame with the message's opcode,
// the others as continuations, `fin` on the last.
function sendFragments(ws, pieces, binary) {
  pieces.forEach((p, i) => ws.send(p, { binary, fin: i === pieces.length - 1 }));
}

function describe(data, isBinary) {
  if (!isBinary) return 'TEXT ' + data.toString();
  return `BINARY ${data.length} ${crypto.createHash('sha1').update(data).digest('hex')}`;
}

// A message as its type, length and SHA-1: "TEXT|BINARY <bytes> <sha1 hex>".
function digest(data, isBinary) {
  const sha1 = crypto.createHash('sha1').update(data).digest('hex');
  return `${isBinary ? 'BINARY' : 'TEXT'} ${data.length} ${sha1}`;
}

function closedLine(code, reason) {
  return `${code} ${reason.toString() || '-'}`;
}

// ------------------------------------------------------------------ server

function runServer(args) {
  let deflate = null;
  if (args.length === 2 && args[0] === '--deflate' && DEFLATE_MODES.includes(args[1])) {
    deflate = args[1];
  } else if (args.length !== 0) {
    usage();
  }
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    maxPayload: MAX,
    handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false),
    perMessageDeflate: deflateOptions(deflate),
  });
  wss.on('listening', () => say('LISTENING', wss.address().port));
  // The 101's headers, just before its connection is opened.
  wss.on('headers', (headers, req) => {
    req.extensionsHeader = extensionsHeader(headers);
  });
  wss.on('connection', (ws, req) => {
    say('PROTOCOL', ws.protocol || '-');
    if (deflate !== null) sayExtensions(ws, req.extensionsHeader);
    const report = deflate === null ? describe : digest;
    ws.on('ping', (data) => say('GOTPING', data.toString()));
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? null : data.toString();
      if (text !== null && text.startsWith('cmd:')) {
        command(ws, text.slice(4));
      } else {
        say('RECV', report(data, isBinary));
        ws.send(data, { binary: isBinary });
      }
    });
    ws.on('close', (code, reason) => say('CLOSED', closedLine(code, reason)));
  });
  setTimeout(() => process.exit(0), LIFETIME).unref();
}

function command(ws, cmd) {
  if (cmd === 'fragments') {
    sendFragments(ws, textFragments(), false);
  } else if (cmd === 'fragments-binary') {
    sendFragments(ws, binaryFragments(), true);
  } else if (cmd.startsWith('ping:')) {
    const payload = cmd.slice(5);
    const timer = setTimeout(() => ws.send('no pong'), WAIT);
    ws.once('pong', (data) => {
      clearTimeout(timer);
      ws.send('pong:' + data.toString());
    });
    ws.ping(payload);
  } else if (cmd.startsWith('ping-me:')) {
    ws.ping(cmd.slice(8));
  } else if (cmd.startsWith('close:')) {
    const rest = cmd.slice(6);
    const colon = rest.indexOf(':');
    ws.close(Number(rest.slice(0, colon)), rest.slice(colon + 1));
  } else {
    ws.send('unknown command ' + cmd);
  }
}

// ------------------------------------------------------------------ client

function fail(name, detail) {
  say('FAIL', name, detail || '');
  process.exit(1);
}

// Resolves with the next message, or fails the script after WAIT.
function nextMessage(ws, name) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(name, 'timeout'), WAIT);
    ws.once('message', (data, isBinary) => {
      clearTimeout(timer);
      resolve({ data, isBinary });
    });
  });
}

async function expectEcho(ws, name, sentText, sentBytes) {
  const { data, isBinary } = await nextMessage(ws, name);
  const ok = sentText !== null
    ? !isBinary && data.toString() === sentText
    : isBinary && data.equals(sentBytes);
  if (!ok) fail(name, describe(data, isBinary).slice(0, 80));
  say('OK', name);
}

// Resolves when `event` arrives (its first argument), or fails after WAIT.
function once(ws, event, name) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(name, 'timeout'), WAIT);
    ws.once(event, (arg) => {
      clearTimeout(timer);
      resolve(arg);
    });
  });
}

async function runClient(url) {
  setTimeout(() => fail('watchdog', `still running after ${LIFETIME} ms`), LIFETIME).unref();
  let ws = new WebSocket(url, ['chat', 'superchat'], { maxPayload: MAX });
  ws.on('error', (e) => fail('error', e.message));
  ws.on('ping', (data) => say('GOTPING', data.toString()));
  await once(ws, 'open', 'open');
  say('PROTOCOL', ws.protocol || '-');

  ws.send(TEXT);
  await expectEcho(ws, 'text', TEXT);
  ws.send(bytes256());
  await expectEcho(ws, 'binary', null, bytes256());
  ws.send(big());
  await expectEcho(ws, 'big', null, big());
  sendFragments(ws, textFragments(), false);
  await expectEcho(ws, 'fragmented', FRAGMENTED);
  sendFragments(ws, binaryFragments(), true);
  await expectEcho(ws, 'fragmented-binary', null, big());

  const pong = once(ws, 'pong', 'ping');
  ws.ping('node-ping');
  const pongData = await pong;
  if (pongData.toString() !== 'node-ping') fail('ping', pongData.toString());
  say('OK', 'ping');

  const ping = once(ws, 'ping', 'ping-me');
  ws.send('cmd:ping-me:server-ping');
  await ping;
  say('OK', 'ping-me');

  // The server closes with the code and reason it is asked for.
  ws.on('message', (data) => fail('closed-by-server', String(data).slice(0, 80)));
  const closed = new Promise((resolve) => {
    const timer = setTimeout(() => fail('closed-by-server', 'timeout'), WAIT);
    ws.once('close', (code, reason) => {
      clearTimeout(timer);
      resolve(closedLine(code, reason));
    });
  });
  ws.send('cmd:close:4001:server bye ✓');
  say('CLOSED', await closed);

  // A second connection, offering no subprotocol; this side closes.
  ws = new WebSocket(url, { maxPayload: MAX });
  ws.on('error', (e) => fail('error2', e.message));
  await once(ws, 'open', 'open2');
  say('PROTOCOL2', ws.protocol || '-');
  const closed2 = new Promise((resolve) => {
    const timer = setTimeout(() => fail('close2', 'timeout'), WAIT);
    ws.once('close', (code, reason) => {
      clearTimeout(timer);
      resolve(closedLine(code, reason));
    });
  });
  ws.close(4002, 'bye');
  say('CLOSED2', await closed2);
  say('DONE');
  process.exit(0);
}

// ------------------------------------------------------------------ auth client

// Connects with `options`; resolves with the refusal ('REFUSED <status>
// <WWW-Authenticate or ->') or, once open, with the socket.
function attempt(url, options, name) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(name, 'timeout'), WAIT);
    const ws = new WebSocket(url, ['chat'], options);
    ws.on('unexpected-response', (req, res) => {
      clearTimeout(timer);
      let body = '';
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => {
        say('REFUSED', res.statusCode, res.headers['www-authenticate'] || '-');
        say('BODY', body.split('\n')[0] || '-');
        req.destroy();
        resolve(null);
      });
    });
    ws.on('upgrade', (res) => {
      const cookies = res.headers['set-cookie'] || [];
      say('SETCOOKIE', cookies.join(' | ') || '-');
    });
    ws.on('open', () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.on('error', (e) => {
      // The refusal is reported by 'unexpected-response'; any other error fails.
      if (!/Unexpected server response/.test(e.message)) fail(name, e.message);
    });
  });
}

async function runAuthClient(url, token) {
  const origin = 'https://app.example';
  const none = await attempt(url, { origin, headers: { 'X-Client': 'node-ws' } }, 'no-token');
  if (none !== null) fail('no-token', 'it opened');
  const ws = await attempt(url, {
    origin,
    headers: { Authorization: 'Bearer ' + token, Cookie: 'session=42', 'X-Client': 'node-ws' },
  }, 'token');
  if (ws === null) fail('token', 'refused');
  say('PROTOCOL', ws.protocol || '-');
  const echoed = nextMessage(ws, 'echo');
  ws.send('with a token ✓');
  const { data } = await echoed;
  say('ECHO', data.toString());
  const closed = once(ws, 'close', 'close');
  ws.close(1000);
  await closed;
  say('DONE');
  process.exit(0);
}

// ------------------------------------------------------------------ permessage-deflate

const DEFLATE_MODES = ['on', 'no-context', 'off'];

// The `perMessageDeflate` option of a server or client for a MODE; without
// one, a server's default (off) made explicit.
function deflateOptions(mode) {
  if (mode === 'on') return { threshold: 0 };
  if (mode === 'no-context') {
    return { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true };
  }
  return false;
}

// The value of Sec-WebSocket-Extensions among a response's header lines, or null.
function extensionsHeader(lines) {
  for (const line of lines) {
    const m = /^sec-websocket-extensions:\s*(.*)$/i.exec(line);
    if (m) return m[1];
  }
  return null;
}

// "EXTENSIONS <in effect> <Sec-WebSocket-Extensions>": the names of the
// extensions this connection uses ("-" for none), then the value of the
// 101's header ("-" for none), as this end sent or received it.
function sayExtensions(ws, header) {
  say('EXTENSIONS', ws.extensions || '-', header || '-');
}

// JSON-like text of `records` records, each with non-ASCII characters.
function jsonText(records) {
  const parts = [];
  for (let i = 0; i < records; i++) {
    parts.push(`{"id":${i},"user":"user-${i}","city":"Zürich","tags":["alpha","beta","✓"],`
      + `"score":${(i * 37) % 1000},"active":${i % 3 ? 'true' : 'false'}}`);
  }
  return '[' + parts.join(',') + ']';
}

// Compressible binary: runs of 64 bytes, each run its own pattern.
function structured(length) {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (Math.floor(i / 64) % 256) ^ (i % 7);
  return b;
}

// The deflate client's messages: { name, data, binary, fragments }.
// "record" is sent twice in a row (with context takeover, the second refers
// to the first); the fragmented text is cut inside "✓" and inside "ü";
// "random" is the one that does not compress.
function deflateMessages() {
  const record = jsonText(6);
  const json = jsonText(2000);
  const small = Buffer.from(jsonText(300));
  const cut1 = small.indexOf(Buffer.from('✓')) + 1;
  const cut2 = small.indexOf(Buffer.from('ü'), small.length >> 1) + 1;
  const binary = structured(300 * 1024);
  const one = (name, data, binary) => ({ name, data, binary, fragments: null });
  return [
    one('tiny', 'tiny ✓', false),
    one('empty-text', '', false),
    one('empty-binary', Buffer.alloc(0), true),
    one('record', record, false),
    one('record-again', record, false),
    one('json', json, false),
    one('json-again', json, false),
    one('json-again-2', json, false),
    one('binary', binary, true),
    one('random', crypto.randomBytes(3 << 19), true),
    {
      name: 'fragmented-text',
      data: small.toString(),
      binary: false,
      fragments: [small.subarray(0, cut1), small.subarray(cut1, cut2), small.subarray(cut2)],
    },
    {
      name: 'fragmented-binary',
      data: binary,
      binary: true,
      fragments: [binary.subarray(0, 1000), binary.subarray(1000, 200000), binary.subarray(200000)],
    },
  ];
}

async function runDeflateClient(url, mode) {
  setTimeout(() => fail('watchdog', `still running after ${LIFETIME} ms`), LIFETIME).unref();
  const ws = new WebSocket(url, ['chat'], {
    maxPayload: MAX,
    perMessageDeflate: deflateOptions(mode),
  });
  ws.on('error', (e) => fail('error', e.message));
  let header = null;
  ws.on('upgrade', (res) => {
    header = res.headers['sec-websocket-extensions'] || null;
  });
  await once(ws, 'open', 'open');
  say('PROTOCOL', ws.protocol || '-');
  sayExtensions(ws, header);
  for (const m of deflateMessages()) {
    const bytes = Buffer.from(m.data);
    say('SENT', m.name, digest(bytes, m.binary));
    if (m.fragments) sendFragments(ws, m.fragments, m.binary);
    else ws.send(m.data, { binary: m.binary });
    await expectEcho(ws, m.name, m.binary ? null : m.data, m.binary ? m.data : null);
  }
  const closed = new Promise((resolve) => {
    const timer = setTimeout(() => fail('close', 'timeout'), WAIT);
    ws.once('close', (code, reason) => {
      clearTimeout(timer);
      resolve(closedLine(code, reason));
    });
  });
  ws.close(1000);
  say('CLOSED', await closed);
  say('DONE');
  process.exit(0);
}

function usage() {
  say('usage: node node_peer.js server [--deflate on|no-context|off] | client URL'
    + ' | auth-client URL TOKEN | deflate-client URL on|no-context|off');
  process.exit(2);
}

const [mode, url, arg] = process.argv.slice(2);
if (mode === 'server') runServer(process.argv.slice(3));
else if (mode === 'client' && url) runClient(url);
else if (mode === 'auth-client' && url && arg) runAuthClient(url, arg);
else if (mode === 'deflate-client' && url && DEFLATE_MODES.includes(arg)) runDeflateClient(url, arg);
else usage();
