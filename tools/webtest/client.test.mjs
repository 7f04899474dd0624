// icegate.js against a real signaling server (started by webtest_test.go,
// which passes its URL in ICEGATE_URL). Connections go through a TCP proxy
// in this file, so a test can cut them mid-stream the way a network does:
// no close frame, data in flight lost.
//
// Run through `go test ./tools/webtest` (or `make test`); alone it skips.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import crypto from 'node:crypto';
import { connect, IcegateError } from '../../signaling/web/icegate.js';

const base = process.env.ICEGATE_URL;
const secret = process.env.ICEGATE_TOKEN_SECRET;
const grace = Number(process.env.ICEGATE_RESUME_GRACE_MS || 30000);
const skip = !base && 'needs a server: run it with go test ./tools/webtest';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(() => {
  if (!skip && typeof WebSocket === 'undefined') throw new Error('no WebSocket in this Node: run with --experimental-websocket (Node 20) or use Node 22');
});

// token mints an HS256 JSON Web Token as an application backend would.
function token(sub, ttlSeconds = 600) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64({ sub, iat: now, exp: now + ttlSeconds });
  return head + '.' + crypto.createHmac('sha256', secret).update(head).digest('base64url');
}

// Proxy forwards TCP to the server; cut() drops every connection through
// it at once (both ends see the TCP connection end without a WebSocket
// close frame, as when a network path dies), and refuse = true makes it
// drop new ones as they come. (Not with a TCP reset: in Node 20 a socket
// reset by resetAndDestroy sometimes stays among the live handles and keeps
// the test process from exiting.)
class Proxy {
  constructor() {
    this.pairs = new Set();
    this.refuse = false;
    this.frozen = false; // forward nothing, close nothing: a dead path
    this.accepted = 0;
    const target = new URL(base);
    this.server = net.createServer((down) => {
      this.accepted++;
      if (this.refuse) { down.destroy(); return; }
      const up = net.connect(Number(target.port), target.hostname);
      const pair = { down, up };
      this.pairs.add(pair);
      const end = () => { this.pairs.delete(pair); down.destroy(); up.destroy(); };
      down.on('error', end).on('close', end);
      up.on('error', end).on('close', end);
      down.on('data', (b) => { if (!this.frozen) up.write(b); });
      up.on('data', (b) => { if (!this.frozen) down.write(b); });
    });
  }
  listen() {
    return new Promise((r) => this.server.listen(0, '127.0.0.1', () => r(this)));
  }
  get url() {
    return 'ws://127.0.0.1:' + this.server.address().port + '/ws';
  }
  cut() {
    for (const { down, up } of this.pairs) { down.destroy(); up.destroy(); }
    this.pairs.clear();
  }
  close() {
    this.cut();
    return new Promise((r) => this.server.close(() => r()));
  }
}

const wsBase = () => base.replace(/^http/, 'ws') + '/ws';
const fast = { backoff: { min: 50, max: 400 } };

function client(user, url = wsBase(), opts = {}) {
  return connect(url, { token: token(user), ...fast, ...opts });
}

// collect records the 'message' data a client receives.
function collect(c) {
  const got = [];
  c.on('message', (m) => got.push(m.data.n));
  return got;
}

async function waitFor(cond, what, ms = 15000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(10);
  }
}

// stream sends n numbered messages from c to peer with up to 16 in flight,
// calling atCut() before message cutAt; it returns the numbers acked and
// the failures.
async function stream(c, peer, n, cutAt, atCut) {
  const acked = [];
  const failed = [];
  const inflight = new Set();
  for (let i = 1; i <= n; i++) {
    if (i === cutAt) atCut();
    const p = c.send(peer, { n: i }).then(() => acked.push(i), (e) => failed.push({ n: i, code: e.code }));
    inflight.add(p);
    p.finally(() => inflight.delete(p));
    if (inflight.size >= 16) await Promise.race(inflight);
    if (i % 25 === 0) await sleep(2); // let deliveries interleave with sends
  }
  await Promise.all(inflight);
  return { acked, failed };
}

// strictlyIncreasing says the list has no duplicate and no reordering.
function assertInOrderOnce(got) {
  for (let i = 1; i < got.length; i++) {
    assert.ok(got[i] > got[i - 1], 'message ' + got[i] + ' after ' + got[i - 1] + ': duplicated or out of order');
  }
}

test('acks, answers and error codes', { skip }, async () => {
  const a = client('alice');
  const b = client('bob');
  const ha = await a.ready;
  await b.ready;
  assert.match(ha.peer, /^[a-z2-7]{16}$/);
  assert.equal(ha.user, 'alice');
  assert.ok(Array.isArray(a.iceServers));
  const ja = await a.join('basics', { maxPeers: 2 });
  assert.equal(ja.type, 'joined');
  assert.deepEqual(ja.peers, []);
  const joinedSeen = new Promise((r) => a.on('peer-joined', r));
  const jb = await b.join('basics');
  assert.deepEqual(jb.peers, [a.peer]);
  assert.equal((await joinedSeen).peer, b.peer);

  const got = new Promise((r) => b.on('message', r));
  const ack = await a.send(b.peer, { hi: 1 });
  assert.equal(ack.type, 'ack');
  assert.equal(ack.held, undefined);
  const m = await got;
  assert.equal(m.from, a.peer);
  assert.equal(m.from_user, 'alice');
  assert.deepEqual(m.data, { hi: 1 });

  const bc = await a.broadcast('basics', { all: true });
  assert.equal(bc.delivered, 1);

  await assert.rejects(a.send('aaaaaaaaaaaaaaaa', 1), (e) => e instanceof IcegateError && e.code === 'no-such-peer');
  const c = client('carol');
  await assert.rejects(c.join('basics'), (e) => e.code === 'room-full');
  await assert.rejects(a.join('has space'), (e) => e.code === 'bad-field');
  assert.equal((await a.ping()).type, 'pong');

  const left = new Promise((r) => a.on('peer-left', r));
  await b.close();
  assert.equal(b.state, 'closed');
  assert.equal((await left).peer, b.peer);
  await assert.rejects(b.send(a.peer, 1), (e) => e.code === 'closed');
  await Promise.all([a.close(), c.close()]);
});

test('a receiver whose connection is cut mid-stream gets every message once, in order', { skip }, async () => {
  const proxy = await new Proxy().listen();
  const a = client('alice');
  const b = client('bob', proxy.url);
  await Promise.all([a.ready, b.ready]);
  const peer = b.peer;
  await a.join('recv-cut');
  await b.join('recv-cut');
  const got = collect(b);
  const resumed = [];
  b.on('resumed', (r) => resumed.push(r));
  const n = 400;
  const { acked, failed } = await stream(a, b.peer, n, 150, () => proxy.cut());
  // The sender's connection never dropped: everything is acked (held or not).
  assert.deepEqual(failed, []);
  assert.equal(acked.length, n);
  await waitFor(() => got.length >= n, 'all ' + n + ' messages at the receiver (got ' + got.length + ')');
  await sleep(100); // a duplicate would come now
  assertInOrderOnce(got);
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => i + 1));
  assert.equal(b.peer, peer, 'the resume kept the peer id');
  assert.ok(resumed.length >= 1, 'the client resumed');
  assert.equal(resumed[0].gap, false);
  assert.ok(proxy.accepted >= 2, 'the client reconnected through the proxy');
  await Promise.all([a.close(), b.close()]);
  await proxy.close();
});

test('a sender whose connection is cut mid-stream: what is acked arrives exactly once, in order', { skip }, async () => {
  const proxy = await new Proxy().listen();
  const a = client('alice', proxy.url);
  const b = client('bob');
  await Promise.all([a.ready, b.ready]);
  await a.join('send-cut');
  await b.join('send-cut');
  const got = collect(b);
  const reconnecting = [];
  a.on('reconnecting', (r) => reconnecting.push(r));
  const n = 400;
  const { acked, failed } = await stream(a, b.peer, n, 200, () => proxy.cut());
  // Only what was on the wire at the cut may be in doubt.
  assert.ok(failed.length <= 16, 'failed: ' + JSON.stringify(failed));
  for (const f of failed) assert.equal(f.code, 'connection-lost');
  assert.equal(acked.length + failed.length, n);
  await waitFor(() => acked.every((x) => got.includes(x)), 'every acked message at the receiver');
  await sleep(100);
  assertInOrderOnce(got);
  const doubtful = new Set(failed.map((f) => f.n));
  for (const x of got) assert.ok(acked.includes(x) || doubtful.has(x));
  assert.ok(reconnecting.length >= 1);
  assert.ok(reconnecting[0].code !== 1000);
  await Promise.all([a.close(), b.close()]);
  await proxy.close();
});

test('cut twice in a row, and during the resume itself', { skip }, async () => {
  const proxy = await new Proxy().listen();
  const a = client('alice');
  const b = client('bob', proxy.url);
  await Promise.all([a.ready, b.ready]);
  await a.join('cut-twice');
  await b.join('cut-twice');
  const got = collect(b);
  // Cut b again as soon as it starts reconnecting, a few times.
  let cuts = 0;
  b.on('hello', () => { if (cuts > 0 && cuts < 4) { cuts++; proxy.cut(); } });
  const n = 300;
  const { acked, failed } = await stream(a, b.peer, n, 100, () => { cuts = 1; proxy.cut(); });
  assert.deepEqual(failed, []);
  assert.equal(acked.length, n);
  await waitFor(() => got.length >= n, 'all messages (got ' + got.length + ')');
  await sleep(100);
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => i + 1));
  await Promise.all([a.close(), b.close()]);
  await proxy.close();
});

test('a resume refused after the grace: new-peer, waiting requests rejected', { skip }, async () => {
  const proxy = await new Proxy().listen();
  const a = client('alice');
  const b = client('bob', proxy.url);
  await Promise.all([a.ready, b.ready]);
  await a.join('grace');
  await b.join('grace');
  const old = b.peer;
  const left = new Promise((r) => a.on('peer-left', r));
  const newPeer = new Promise((r) => b.on('new-peer', r));
  proxy.refuse = true;
  proxy.cut();
  // Made while disconnected: it waits for the connection, whose session
  // is then a new one, so it is rejected rather than sent.
  const waiting = b.send(a.peer, { late: true });
  assert.equal((await left).peer, old, 'the others are told after the grace');
  await sleep(200);
  proxy.refuse = false;
  const np = await newPeer;
  assert.equal(np.previous, old);
  assert.notEqual(np.peer, old);
  assert.match(np.reason, /new peer/);
  await assert.rejects(waiting, (e) => e.code === 'new-peer');
  // The new peer works once it rejoins.
  await b.join('grace');
  const got = new Promise((r) => a.on('message', r));
  await b.send(a.peer, { again: true });
  assert.deepEqual((await got).data, { again: true });
  await Promise.all([a.close(), b.close()]);
  await proxy.close();
}, { timeout: grace + 20000 });

test('auth: a fresh token goes out before token_expires', { skip }, async () => {
  let asked = 0;
  // A token that expires in 40 s, renewed 39 s before: about 1 s from now.
  const a = connect(wsBase(), {
    token: token('alice', 40), renewBefore: 39, ...fast,
    getToken: async () => { asked++; return token('alice', 600); },
  });
  const h = await a.ready;
  assert.ok(h.token_expires);
  const renewed = await new Promise((r) => a.on('token', r));
  assert.equal(asked, 1);
  assert.ok(Date.parse(renewed.expires) > Date.now() + 500000);
  await a.close();

  // Another user's token is refused, and the client says so.
  const b = connect(wsBase(), {
    token: token('bob', 40), renewBefore: 39, ...fast,
    getToken: async () => token('mallory', 600),
  });
  await b.ready;
  const err = await new Promise((r) => b.on('token-error', r));
  assert.equal(err.error.code, 'bad-token');
  await b.close();
});

test('a refused connection keeps trying, then gives up when told to', { skip }, async () => {
  const tries = [];
  const c = connect(wsBase(), { token: 'not-a-token', backoff: { min: 20, max: 40 }, retries: 2 });
  c.on('reconnecting', (r) => tries.push(r));
  const closed = await new Promise((r) => c.on('closed', r));
  assert.equal(tries.length, 2);
  assert.equal(tries[0].everConnected, false);
  assert.match(closed.reason, /gave up after 2 attempts/);
  await assert.rejects(c.ready, (e) => e.code === 'closed');
});

test('a connection that goes silent is noticed by the heartbeat and resumed', { skip }, async () => {
  const proxy = await new Proxy().listen();
  const a = client('alice');
  // The server's ping_interval is 1 s here (webtest_test.go): a ping every
  // second, and no pong within 500 ms is a dead connection.
  const b = client('bob', proxy.url, { pongTimeout: 500 });
  await Promise.all([a.ready, b.ready]);
  const peer = b.peer;
  await a.join('silent');
  await b.join('silent');
  const got = collect(b);
  const dropped = new Promise((r) => b.on('reconnecting', r));
  proxy.frozen = true; // nothing passes, nobody is told
  const ack = await a.send(b.peer, { n: 1 });
  assert.equal(ack.type, 'ack');
  const d = await dropped;
  assert.equal(d.code, 3000);
  proxy.frozen = false;
  await waitFor(() => got.length === 1, 'the message sent while the path was dead');
  assert.deepEqual(got, [1]);
  assert.equal(b.peer, peer);
  await Promise.all([a.close(), b.close()]);
  await proxy.close();
});
