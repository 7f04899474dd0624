// icegate.js's pure helpers; the client itself is tested against a real
// server in tools/webtest (client.test.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, tokenExpiry, wsURL, IcegateError } from '../icegate.js';

test('backoff doubles up to the cap, jittered in the upper half', () => {
  assert.equal(backoffDelay(1, 250, 5000, () => 0), 125);
  assert.equal(backoffDelay(1, 250, 5000, () => 1), 250);
  assert.equal(backoffDelay(3, 250, 5000, () => 1), 1000);
  assert.equal(backoffDelay(10, 250, 5000, () => 1), 5000);
  assert.equal(backoffDelay(50, 250, 5000, () => 0), 2500);
  for (let n = 1; n < 30; n++) {
    const d = backoffDelay(n);
    assert.ok(d >= 125 && d <= 5000, 'attempt ' + n + ': ' + d);
  }
});

test('tokenExpiry reads exp from a JWT', () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  assert.equal(tokenExpiry(b64({ alg: 'HS256' }) + '.' + b64({ sub: 'a', exp: 1795267314 }) + '.sig'), 1795267314);
  assert.equal(tokenExpiry('not a token'), null);
  assert.equal(tokenExpiry(''), null);
});

test('wsURL resolves against the page and picks ws: or wss:', () => {
  assert.equal(wsURL('ws', 'http://localhost:8080/').toString(), 'ws://localhost:8080/ws');
  assert.equal(wsURL('/ws', 'https://example.org/app/').toString(), 'wss://example.org/ws');
  assert.equal(wsURL('wss://a.example/ws').toString(), 'wss://a.example/ws');
});

test('IcegateError carries the code', () => {
  const e = new IcegateError('room-full', 'room "x" is full');
  assert.equal(e.code, 'room-full');
  assert.match(e.message, /^room-full: /);
  assert.ok(e instanceof Error);
});
