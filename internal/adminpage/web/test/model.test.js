// The admin page's pure logic (model.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseMetrics, sum, relayed, nodeLoad, addSample, niceMax, chartPoints, topUsers, signalingNodes,
  formatBytes, formatBits, formatAge, explain, clusterNode,
} from '../model.js';

const scrape = `# HELP icegate_relayed_bytes_total Application bytes relayed.
# TYPE icegate_relayed_bytes_total counter
icegate_relayed_bytes_total{direction="client_to_peer",transport="udp"} 1000
icegate_relayed_bytes_total{direction="peer_to_client",transport="udp"} 2000
icegate_relayed_bytes_total{direction="client_to_peer",transport="tcp"} 24
icegate_relayed_bytes_total{direction="peer_to_client",transport="tcp"} 1.5e3
icegate_allocations 3
icegate_build_info{goversion="go1.26.0",version="v1.2-3-g\\"x\\"\\\\y"} 1
process_cpu_seconds_total 12.5
process_start_time_seconds 1.7e+09
weird line without value
bad{label=unquoted} 1
go_gc_duration_seconds{quantile="0.5"} NaN
up +Inf 1712345678000
`;

test('parseMetrics reads samples, labels with escapes, and skips what it cannot read', () => {
  const m = parseMetrics(scrape);
  assert.equal(m.get('icegate_relayed_bytes_total').length, 4);
  assert.deepEqual(m.get('icegate_relayed_bytes_total')[3], { labels: { direction: 'peer_to_client', transport: 'tcp' }, value: 1500 });
  assert.equal(m.get('icegate_build_info')[0].labels.version, 'v1.2-3-g"x"\\y');
  assert.equal(m.get('up')[0].value, Infinity);
  assert.ok(Number.isNaN(m.get('go_gc_duration_seconds')[0].value));
  assert.equal(m.has('weird'), false);
  assert.equal(m.has('bad'), false);
  assert.equal(parseMetrics('').size, 0);
  assert.equal(parseMetrics(undefined).size, 0);
});

test('sum and relayed add over transports by direction', () => {
  const m = parseMetrics(scrape);
  assert.deepEqual(relayed(m), { toPeer: 1024, toClient: 3500 });
  assert.equal(sum(m, 'icegate_relayed_bytes_total', { transport: 'tcp' }), 1524);
  assert.equal(sum(m, 'absent'), undefined);
  assert.deepEqual(relayed(new Map()), { toPeer: 0, toClient: 0 });
});

test('nodeLoad picks the card figures', () => {
  const load = nodeLoad(parseMetrics(scrape));
  assert.equal(load.version, 'v1.2-3-g"x"\\y');
  assert.equal(load.allocations, 3);
  assert.equal(load.cpuSeconds, 12.5);
  assert.equal(load.started, 1.7e9);
  assert.equal(load.permissions, undefined);
  assert.equal(load.toPeer, 1024);
});

test('addSample turns counters into bit rates, and a restart into a fresh count', () => {
  const h = [];
  assert.equal(addSample(h, { t: 0, toPeer: 0, toClient: 0, cpuSeconds: 1 }), null);
  assert.deepEqual(addSample(h, { t: 2000, toPeer: 250_000, toClient: 500, cpuSeconds: 2 }), { t: 2000, toPeer: 1_000_000, toClient: 2000, cpu: 0.5 });
  // The server restarted: 1000 bytes since, not a negative rate.
  assert.deepEqual(addSample(h, { t: 3000, toPeer: 1000, toClient: 0 }), { t: 3000, toPeer: 8000, toClient: 0 });
  // Two scrapes at the same time: no point (no division by zero).
  assert.equal(addSample(h, { t: 3000, toPeer: 1000, toClient: 0 }), null);
  for (let i = 0; i < 100; i++) addSample(h, { t: 4000 + i, toPeer: 0, toClient: 0 }, 5);
  assert.equal(h.length, 5);
});

test('niceMax rounds up to 1, 2 or 5 times a power of ten', () => {
  assert.equal(niceMax(0), 1);
  assert.equal(niceMax(NaN), 1);
  assert.equal(niceMax(7), 10);
  assert.equal(niceMax(10), 10);
  assert.equal(niceMax(11), 20);
  assert.equal(niceMax(1_500_000), 2_000_000);
  assert.equal(niceMax(4_000_001), 5_000_000);
});

test('chartPoints maps the last span onto the box, clamped to the top', () => {
  const pts = [{ t: 0, a: 50 }, { t: 50, a: 100 }, { t: 100, a: 500 }, { t: 101, a: 1 }];
  const box = { now: 100, span: 100, width: 200, height: 100, max: 100 };
  // t=101 is in the future (clock skew): skipped; 500 is drawn at the top.
  assert.equal(chartPoints(pts, 'a', box), '0.0,50.0 100.0,0.0 200.0,0.0');
  assert.equal(chartPoints(pts, 'a', { ...box, now: 175 }), '50.0,0.0 52.0,99.0');
  assert.equal(chartPoints([], 'a', box), '');
});

test('topUsers adds rows per user and custom id and ranks by total bytes', () => {
  const rows = [
    { user: 'alice', custom_id: '', bytes_to_peer: 10, bytes_to_client: 10 },
    { user: 'acme', custom_id: 'acme', bytes_to_peer: 5, bytes_to_client: 100 },
    { user: 'alice', custom_id: '', bytes_to_peer: 100, bytes_to_client: 0 },
    { user: 'bob', bytes_to_peer: 1 },
  ];
  assert.deepEqual(topUsers(rows, 2), [
    { user: 'alice', customID: '', toPeer: 110, toClient: 10, total: 120 },
    { user: 'acme', customID: 'acme', toPeer: 5, toClient: 100, total: 105 },
  ]);
  assert.equal(topUsers(rows).length, 3);
  assert.deepEqual(topUsers(null), []);
});

test('signalingNodes counts sessions once per node, this node first', () => {
  const s = [
    { peer: 'p1', room: 'r1', node: 'b' }, { peer: 'p1', room: 'r2', node: 'b' },
    { peer: 'p2', room: 'r1', node: 'a' }, { peer: 'p3', room: 'r1', node: 'c' }, { peer: 'p4', room: 'r', node: '' },
  ];
  assert.deepEqual(signalingNodes(s, 'c'), [{ node: 'c', sessions: 1 }, { node: 'a', sessions: 1 }, { node: 'b', sessions: 1 }]);
  assert.deepEqual(signalingNodes(s), [{ node: 'a', sessions: 1 }, { node: 'b', sessions: 1 }, { node: 'c', sessions: 1 }]);
  assert.deepEqual(signalingNodes(undefined), []);
});

test('formatting', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(3 * 1024 ** 3), '3.0 GiB');
  assert.equal(formatBytes(undefined), '–');
  assert.equal(formatBits(999), '999 bit/s');
  assert.equal(formatBits(2_500_000), '2.5 Mbit/s');
  const now = Date.parse('2026-12-07T12:00:00Z');
  assert.equal(formatAge('2026-12-07T11:59:18Z', now), '42 s');
  assert.equal(formatAge('2026-12-07T11:55:00Z', now), '5 min');
  assert.equal(formatAge('2026-12-07T08:56:00Z', now), '3 h 4 min');
  assert.equal(formatAge('2026-12-05T11:00:00Z', now), '2 d 1 h');
  assert.equal(formatAge('not a time', now), '–');
  assert.equal(formatAge('2026-12-07T12:00:05Z', now), '0 s');
});

test('explain says what a failed admin call means', () => {
  assert.match(explain(401, { error: { code: 'unauthorized', message: 'missing or wrong' } }), /^The key was refused/);
  assert.match(explain(404, { error: { code: 'api-disabled', message: 'set api' } }), /admin API is off/);
  assert.equal(explain(404, { error: { code: 'no-such-allocation', message: 'no live allocation "7"' } }), 'no live allocation "7"');
  assert.equal(explain(503, null), 'HTTP 503');
  assert.equal(explain(500, { error: { message: 42 } }), 'HTTP 500');
});

test('clusterNode shows a steering record', () => {
  const now = Date.parse('2026-12-07T12:00:10Z');
  const c = clusterNode({ id: 'n2', host: 'turn2.example.com', allocations: 7, capacity: 100, bit_rate: 2500000,
    cpu: 0.125, draining: true, updated: Date.parse('2026-12-07T12:00:05Z') }, now);
  assert.equal(c.title, 'Node n2 (turn2.example.com)');
  assert.deepEqual(c.rows, [
    ['state', 'draining: new allocations refused', 'draining'],
    ['allocations', '7 of 100'],
    ['relayed now', '2.5 Mbit/s'],
    ['CPU', '13 % of the host'],
    ['record written', '5 s ago'],
  ]);
  const bare = clusterNode({ id: 'n3', bit_rate: -1 }, now);
  assert.equal(bare.title, 'Node n3');
  assert.deepEqual(bare.rows[1], ['allocations', '0']);
  assert.deepEqual(bare.rows[2], ['relayed now', '–']);
  assert.deepEqual(bare.rows[4], ['record written', '–']);
});
