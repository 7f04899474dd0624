// The NAT hint's logic (nat.js), fed candidates as browsers report them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverKey, bareAddress, ipPort, isLoopback, natTargets, newNat, natCandidate, natError, natVerdict, natLabel, seenNote } from '../nat.js';

const srflx = (address, port, url, related = '0.0.0.0', relatedPort = 0) => ({ type: 'srflx', protocol: 'udp', address, port, relatedAddress: related, relatedPort, url });
const host = (address, port) => ({ type: 'host', protocol: 'udp', address, port, url: '' });
const relay = (address, port, mapped, mappedPort, url) => ({ type: 'relay', protocol: 'udp', address, port, relatedAddress: mapped, relatedPort: mappedPort, url });

function run(targets, candidates, { complete = true, errors = [] } = {}) {
  const nat = newNat(targets, false);
  for (const c of candidates) natCandidate(nat, c);
  for (const e of errors) natError(nat, e);
  nat.complete = complete;
  nat.elapsed = 1234;
  return { nat, verdict: natVerdict(nat) };
}

test('serverKey matches URLs of one server', () => {
  assert.equal(serverKey('stun:127.0.0.1:3478'), '127.0.0.1 3478');
  assert.equal(serverKey('turn:127.0.0.1:3478?transport=udp'), '127.0.0.1 3478');
  assert.equal(serverKey('stun:[::1]:3479'), '::1 3479');
  assert.equal(serverKey('stun:Example.ORG'), 'example.org 3478');
  assert.equal(serverKey('turns:example.org'), 'example.org 5349');
  assert.equal(serverKey('http://x'), '');
  assert.equal(serverKey(undefined), '');
});

test('IPv6 addresses are wrapped once, however the browser gives them', () => {
  // Chromium gives candidate addresses in URI form, Firefox without brackets.
  assert.equal(bareAddress('[::1]'), '::1');
  assert.equal(bareAddress('::1'), '::1');
  assert.equal(bareAddress('192.0.2.1'), '192.0.2.1');
  assert.equal(ipPort('[::1]', 5000), '[::1]:5000');
  assert.equal(ipPort('::1', 5000), '[::1]:5000');
  assert.equal(ipPort('[2001:db8::7]', 1), '[2001:db8::7]:1');
  assert.equal(ipPort('198.51.100.7', 9), '198.51.100.7:9');
  assert.ok(isLoopback('[::1]:5000'));
  assert.ok(isLoopback('127.0.0.1:5000'));
  assert.ok(!isLoopback('[[::1]]:5000'));
  assert.ok(!isLoopback('10.0.0.1:5000'));
});

test('loopback over IPv6 with one server address is no NAT, not "There is a NAT"', () => {
  // What a new user hit: the page on http://localhost:8080/, Chromium
  // reporting the reflexive address as "[::1]".
  const { nat, verdict } = run(['stun:localhost:3478'], [host('[::1]', 50000), srflx('[::1]', 50000, 'stun:localhost:3478', '[::1]', 50000)]);
  assert.deepEqual(nat.probes[0].seen, ['[::1]:50000']);
  assert.deepEqual(nat.hosts, ['[::1]:50000']);
  assert.equal(verdict.mapping, 'no-nat');
  assert.equal(verdict.status, 'ok');
  assert.doesNotMatch(verdict.text, /There is a NAT/);
  assert.match(verdict.text, /loopback/);
  assert.equal(seenNote(nat, '[::1]:50000'), ' (a host address)');
});

test('loopback with host addresses hidden still reads as no NAT', () => {
  const { verdict } = run(['stun:[::1]:3478'], [srflx('[::1]', 41000, 'stun:[::1]:3478')]);
  assert.equal(verdict.mapping, 'no-nat');
});

test('one server address behind a NAT: cannot tell the mapping, but there is a NAT', () => {
  const { verdict } = run(['stun:203.0.113.10:3478'], [host('10.0.0.5', 5000), srflx('198.51.100.7', 61000, 'stun:203.0.113.10:3478', '10.0.0.5', 5000)]);
  assert.equal(verdict.mapping, 'unknown');
  assert.match(verdict.text, /There is a NAT/);
  assert.match(verdict.text, /198\.51\.100\.7:61000/);
});

test('the same mapped address through both server addresses: endpoint-independent', () => {
  const t = ['stun:203.0.113.10:3478', 'stun:203.0.113.11:3479'];
  const { verdict } = run(t, [host('10.0.0.5', 5000),
    relay('203.0.113.10', 50001, '198.51.100.7', 61000, 'turn:203.0.113.10:3478?transport=udp'),
    relay('203.0.113.10', 50002, '198.51.100.7', 61000, 'turn:203.0.113.11:3479?transport=udp')]);
  assert.equal(verdict.mapping, 'endpoint-independent');
  assert.equal(verdict.status, 'ok');
});

test('reported once (the browser drops the duplicate): endpoint-independent', () => {
  const t = ['stun:203.0.113.10:3478', 'stun:203.0.113.11:3479'];
  const { nat, verdict } = run(t, [host('10.0.0.5', 5000), srflx('198.51.100.7', 61000, t[0], '10.0.0.5', 5000)]);
  assert.equal(nat.probes[1].silent, true);
  assert.equal(verdict.mapping, 'endpoint-independent');
});

test('different ports through the two server addresses: per destination', () => {
  const t = ['stun:203.0.113.10:3478', 'stun:203.0.113.11:3479'];
  const { verdict } = run(t, [host('10.0.0.5', 5000), srflx('198.51.100.7', 61000, t[0]), srflx('198.51.100.7', 61001, t[1])]);
  assert.equal(verdict.mapping, 'dependent');
  assert.match(verdict.text, /Different external ports/);
  assert.equal(natLabel(verdict.mapping), 'per destination');
});

test('no answer at all: UDP blocked', () => {
  const t = ['stun:203.0.113.10:3478', 'stun:203.0.113.11:3479'];
  const { verdict } = run(t, [host('10.0.0.5', 5000)], { complete: false, errors: [{ url: t[0], code: 701, text: 'timeout' }] });
  assert.equal(verdict.mapping, 'blocked');
  assert.equal(verdict.status, 'fail');
  assert.match(verdict.text, /within 1 s/);
});

test('one of two server addresses silent: cannot tell', () => {
  const t = ['stun:203.0.113.10:3478', 'stun:203.0.113.11:3479'];
  const { verdict } = run(t, [srflx('198.51.100.7', 61000, t[0])], { errors: [{ url: t[1], code: 701, text: 'x' }] });
  assert.equal(verdict.mapping, 'unknown');
  assert.match(verdict.text, /Only 203\.0\.113\.10:3478 answered/);
});

test('candidates without url cannot be compared', () => {
  const t = ['stun:203.0.113.10:3478', 'stun:203.0.113.11:3479'];
  const { verdict } = run(t, [srflx('198.51.100.7', 61000, '')]);
  assert.equal(verdict.mapping, 'unknown');
  assert.match(verdict.text, /does not say through which server address/);
});

test('no STUN URL: nothing to ask', () => {
  assert.equal(run([], []).verdict.mapping, 'unknown');
});

test('natTargets prefers the RFC 5780 pair from hello', () => {
  const servers = [{ urls: ['stun:example.org:3478'] }, { urls: ['turn:example.org:3478?transport=udp'], username: 'u', credential: 'p' }];
  assert.deepEqual(natTargets({ nat_probe: ['stun:a:1', 'stun:b:2'] }, servers), ['stun:a:1', 'stun:b:2']);
  assert.deepEqual(natTargets({}, servers), ['stun:example.org:3478']);
  assert.deepEqual(natTargets(null, []), []);
});

test('TCP candidates and hidden related addresses are ignored', () => {
  const nat = newNat(['stun:203.0.113.10:3478'], false);
  natCandidate(nat, { type: 'srflx', protocol: 'tcp', address: '198.51.100.7', port: 9, url: 'stun:203.0.113.10:3478' });
  natCandidate(nat, relay('203.0.113.10', 50001, '0.0.0.0', 0, 'turn:203.0.113.10:3478?transport=udp'));
  natCandidate(nat, host('abc.local', 5000));
  assert.deepEqual(nat.probes[0].mapped, []);
  assert.deepEqual(nat.hosts, []);
});
