// Node `ws` as a peer for tests/interop.rs (protocol: README.md).
//
//   node node_peer.js server       serve on 127.0.0.1:0, print "LISTENING <port>"
//   node node_peer.js client URL   run the client script against URL
//   node node_peer.js auth-client URL TOKEN
//                                  connect without a token (expect a refusal),
//                                  then with it and a cookie (expect Set-Cookie)
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

function closedLine(code, reason) {
  return `${code} ${reason.toString() || '-'}`;
}

// ------------------------------------------------------------------ server

function runServer() {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    maxPayload: MAX,
    handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false),
  });
  wss.on('listening', () => say('LISTENING', wss.address().port));
  wss.on('connection', (ws) => {
    say('PROTOCOL', ws.protocol || '-');
    ws.on('ping', (data) => say('GOTPING', data.toString()));
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? null : data.toString();
      if (text !== null && text.startsWith('cmd:')) {
        command(ws, text.slice(4));
      } else {
        say('RECV', describe(data, isBinary));
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

const [mode, url, token] = process.argv.slice(2);
if (mode === 'server') runServer();
else if (mode === 'client' && url) runClient(url);
else if (mode === 'auth-client' && url && token) runAuthClient(url, token);
else {
  say('usage: node node_peer.js server | client URL | auth-client URL TOKEN');
  process.exit(2);
}
