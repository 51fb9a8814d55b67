// Node `ws` as a peer for tests/interop.rs.
//
//   node node_peer.js server       serve on 127.0.0.1, print "LISTENING <port>"
//   node node_peer.js client URL   run the client script against URL
//
// Both print one line per observation; the Rust test asserts on them. Every
// wait has a timeout, and the process ends by itself.
'use strict';

const { WebSocket, WebSocketServer } = require('ws');

const WAIT = 20000;
const FRAGMENTS = ['frag-one|', 'frag-two|', 'frag-three'];

function say(...parts) {
  process.stdout.write(parts.join(' ') + '\n');
}

function big() {
  const b = Buffer.alloc(1 << 20);
  for (let i = 0; i < b.length; i++) b[i] = i % 251;
  return b;
}

function sendFragments(ws) {
  FRAGMENTS.forEach((f, i) => ws.send(f, { fin: i === FRAGMENTS.length - 1, binary: false }));
}

// ------------------------------------------------------------------ server

function runServer() {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    maxPayload: 16 << 20,
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
        ws.send(data, { binary: isBinary });
      }
    });
    ws.on('close', (code, reason) => say('CLOSED', code, reason.toString() || '-'));
  });
  setTimeout(() => process.exit(0), 120000).unref();
}

function command(ws, cmd) {
  if (cmd === 'fragments') {
    sendFragments(ws);
  } else if (cmd.startsWith('ping:')) {
    const payload = cmd.slice(5);
    const timer = setTimeout(() => ws.send('no pong'), WAIT);
    ws.once('pong', (data) => {
      clearTimeout(timer);
      ws.send('pong:' + data.toString());
    });
    ws.ping(payload);
  } else if (cmd.startsWith('close:')) {
    const [, code, reason] = cmd.split(':');
    ws.close(Number(code), reason);
  }
}

// ------------------------------------------------------------------ client

function fail(name, detail) {
  say('FAIL', name, detail || '');
  process.exit(1);
}

function runClient(url) {
  const text = 'héllo wörld ✓ 🎉';
  let ws;
  const expectNext = (name, check) =>
    new Promise((resolve) => {
      const timer = setTimeout(() => fail(name, 'timeout'), WAIT);
      ws.once('message', (data, isBinary) => {
        clearTimeout(timer);
        if (!check(data, isBinary)) fail(name, String(data).slice(0, 80));
        say('OK', name);
        resolve();
      });
    });
  const overall = setTimeout(() => fail('overall', 'timeout'), 4 * WAIT);
  ws = new WebSocket(url, ['chat', 'superchat'], { maxPayload: 16 << 20 });
  ws.on('error', (e) => fail('error', e.message));
  ws.on('open', async () => {
    say('PROTOCOL', ws.protocol || '-');
    ws.send(text);
    await expectNext('text', (d, b) => !b && d.toString() === text);
    ws.send(Buffer.from([...Array(256).keys()]));
    await expectNext('binary', (d, b) => b && d.equals(Buffer.from([...Array(256).keys()])));
    ws.send(big());
    await expectNext('big', (d, b) => b && d.equals(big()));
    sendFragments(ws);
    await expectNext('fragmented', (d, b) => !b && d.toString() === FRAGMENTS.join(''));
    await new Promise((resolve) => {
      const timer = setTimeout(() => fail('ping', 'no pong'), WAIT);
      ws.once('pong', (data) => {
        clearTimeout(timer);
        if (data.toString() !== 'node-ping') fail('ping', data.toString());
        say('OK', 'ping');
        resolve();
      });
      ws.ping('node-ping');
    });
    ws.on('close', (code, reason) => {
      say('CLOSED', code, reason.toString() || '-');
      second(url, overall);
    });
    ws.send('cmd:close:4001:server bye');
  });
}

function second(url, overall) {
  const ws = new WebSocket(url);
  ws.on('error', (e) => fail('error2', e.message));
  ws.on('open', () => ws.close(4002, 'bye'));
  ws.on('close', (code, reason) => {
    say('CLOSED2', code, reason.toString() || '-');
    say('DONE');
    clearTimeout(overall);
    process.exit(0);
  });
}

const [mode, url] = process.argv.slice(2);
if (mode === 'server') runServer();
else if (mode === 'client' && url) runClient(url);
else {
  say('usage: node node_peer.js server | client URL');
  process.exit(2);
}
