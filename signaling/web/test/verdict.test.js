// The verdicts' logic (verdict.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kindOf, formatPriority, explain, decisionView, expectedDenial, denialRule, noCredentials, turnURLs } from '../verdict.js';

const result = (url, over = {}) => ({ url, kind: kindOf(url), candidates: [], errors: [], srflx: null, relay: null, elapsed: 10000, ...over });

test('kindOf', () => {
  assert.equal(kindOf('stun:h:3478'), 'STUN');
  assert.equal(kindOf('turn:h:3478?transport=udp'), 'TURN/UDP');
  assert.equal(kindOf('turn:h:3478'), 'TURN/UDP');
  assert.equal(kindOf('turn:h:3478?transport=tcp'), 'TURN/TCP');
  assert.equal(kindOf('turns:h:5349?transport=tcp'), 'TURNS');
});

test('formatPriority splits the three parts', () => {
  // RFC 8445 §5.1.2.1: type preference 126, local 65535, component 255.
  assert.equal(formatPriority(126 * 2 ** 24 + 65535 * 2 ** 8 + 255), '126 | 65535 | 255');
});

test('explain: what worked', () => {
  const stun = result('stun:h:3478', { srflx: { at: 12, address: '198.51.100.7', port: 61000 } });
  assert.deepEqual(explain(stun, [stun]).slice(0, 2), ['ok', 12]);
  const udp = result('turn:h:3478?transport=udp', { relay: { at: 30, address: '203.0.113.10', port: 50000, relayProtocol: '' } });
  const [s, at, text] = explain(udp, [udp]);
  assert.equal(s, 'ok');
  assert.equal(at, 30);
  assert.match(text, /over udp/);
  // STUN without srflx but TURN/UDP worked: no NAT, a note, not a failure.
  const bare = result('stun:h:3478');
  assert.equal(explain(bare, [bare, udp])[0], 'warn');
});

test('explain: the likely cause of a failure', () => {
  const cases = [
    [{ errors: [{ code: 401 }] }, /Credentials refused \(401\)/],
    [{ errors: [{ code: 486 }] }, /quota/],
    [{ errors: [{ code: 508 }] }, /capacity/],
    [{ errors: [{ code: 701 }] }, /Could not reach the server over UDP \(701\)/],
    [{}, /No relay candidate within 10 s/],
  ];
  for (const [over, want] of cases) {
    const r = result('turn:h:3478?transport=udp', over);
    const [s, , text] = explain(r, [r]);
    assert.equal(s, 'fail');
    assert.match(text, want);
  }
  const turns = result('turns:h:5349?transport=tcp');
  assert.match(explain(turns, [turns], { selfSigned: true })[2], /self-signed certificate/);
});

test('explain quotes the server, but not the expected denials of private peers', () => {
  const r = result('turn:h:3478?transport=udp', { errors: [{ code: 401 }] });
  const decisions = [
    { kind: 'permission-denied', detail: 'deny 10.0.0.5: rule rfc1918' },
    { kind: 'auth-refused', detail: 'credential expired by 42s' },
  ];
  const text = explain(r, [r], { decisions })[2];
  assert.match(text, /credential expired by 42s/);
  assert.doesNotMatch(text, /rfc1918/);
});

test('permission denied for a private address is expected and calm', () => {
  const e = { kind: 'permission-denied', detail: 'deny 10.0.0.5: rule rfc1918', peer: '10.0.0.5' };
  assert.equal(denialRule(e), 'rfc1918');
  assert.ok(expectedDenial(e));
  assert.deepEqual(decisionView(e), { label: 'permission denied (expected)', cls: 'calm' });
  for (const rule of ['ipv6-ula', 'ipv6-link-local', 'link-local', 'cgnat', 'loopback']) {
    assert.ok(expectedDenial({ kind: 'permission-denied', detail: 'deny x: rule ' + rule }), rule);
  }
  // Not expected: metadata services, the relay's own ports, other kinds.
  const meta = { kind: 'permission-denied', detail: 'deny 169.254.169.254: rule cloud-metadata' };
  assert.ok(!expectedDenial(meta));
  assert.equal(decisionView(meta).cls, 'fail');
  assert.equal(decisionView({ kind: 'auth-refused', detail: 'x' }).cls, 'fail');
  assert.equal(decisionView({ kind: 'allocation-created' }).cls, 'ok');
  assert.equal(decisionView({ kind: 'permission-denied' }).cls, 'fail');
});

test('static users only: TURN says why it was not tested, and how to test it', () => {
  const hello = { server: { credentials: false }, ice_servers: [{ urls: ['stun:localhost:3478'] }] };
  const rows = noCredentials(hello, [{ urls: 'stun:localhost:3478' }]);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].status, 'warn');
  assert.match(rows[0].text, /only static users/);
  assert.match(rows[0].text, /cannot mint TURN credentials/);
  assert.match(rows[0].text, /turn:localhost:3478\?transport=udp/);
  assert.match(rows[0].text, /auth\.secrets/);
  // The user brought a TURN server: it is tested, no row.
  assert.deepEqual(noCredentials(hello, [{ urls: 'turn:localhost:3478?transport=udp', username: 'test', credential: 'test' }]), []);
  // The server mints credentials: no row.
  assert.deepEqual(noCredentials({ server: { credentials: true }, ice_servers: [] }, []), []);
  assert.deepEqual(noCredentials(null, []), []);
});

test('turnURLs', () => {
  assert.deepEqual(turnURLs('stun:[::1]:3478'), ['turn:[::1]:3478?transport=udp', 'turn:[::1]:3478?transport=tcp']);
  assert.deepEqual(turnURLs(undefined), []);
});
