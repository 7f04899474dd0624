// The admin page's decisions as pure functions (no DOM, no fetch), so that
// node --test checks them: reading Prometheus text, turning counter samples
// into bit rates, the chart's geometry, ranking users by relayed bytes,
// and the words and numbers the page shows.

// parseMetrics reads the Prometheus text exposition format (version 0.0.4)
// into a Map from metric name to its samples, [{labels, value}]. Comments
// and lines it cannot read are skipped: the page shows what it understood.
export function parseMetrics(text) {
  const out = new Map();
  for (const raw of String(text).split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+\S+)?$/.exec(line);
    if (!m) continue;
    const labels = m[2] ? parseLabels(m[2].slice(1, -1)) : {};
    if (labels === null) continue;
    const value = parseValue(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') continue;
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value });
  }
  return out;
}

function parseValue(s) {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  return /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s) ? Number(s) : NaN;
}

// parseLabels reads name="value",… with the format's escapes (\\, \", \n);
// null when malformed.
function parseLabels(s) {
  const labels = {};
  let i = 0;
  while (i < s.length) {
    const m = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(s.slice(i));
    if (!m) return null;
    i += m[0].length;
    let v = '';
    for (;;) {
      if (i >= s.length) return null;
      const c = s[i++];
      if (c === '"') break;
      if (c === '\\') {
        const e = s[i++];
        v += e === 'n' ? '\n' : e;
      } else {
        v += c;
      }
    }
    labels[m[1]] = v;
    const rest = /^\s*,?\s*/.exec(s.slice(i));
    i += rest[0].length;
  }
  return labels;
}

// sum adds the samples of one metric whose labels match every pair in
// match; undefined when the metric is absent.
export function sum(metrics, name, match = {}) {
  const samples = metrics.get(name);
  if (!samples) return undefined;
  let total = 0;
  for (const s of samples) {
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
  }
  return total;
}

// relayed is what the node relayed since it started, from
// icegate_relayed_bytes_total summed over transports.
export function relayed(metrics) {
  return {
    toPeer: sum(metrics, 'icegate_relayed_bytes_total', { direction: 'client_to_peer' }) ?? 0,
    toClient: sum(metrics, 'icegate_relayed_bytes_total', { direction: 'peer_to_client' }) ?? 0,
  };
}

// nodeLoad picks what the node card shows from one scrape, and the CPU
// and relayed counters the rates are computed from.
export function nodeLoad(metrics) {
  const info = (metrics.get('icegate_build_info') || [])[0];
  return {
    version: info ? info.labels.version : '',
    allocations: sum(metrics, 'icegate_allocations'),
    permissions: sum(metrics, 'icegate_permissions'),
    channels: sum(metrics, 'icegate_channels'),
    signalingPeers: sum(metrics, 'icegate_signaling_peers'),
    rooms: sum(metrics, 'icegate_signaling_rooms'),
    cpuSeconds: sum(metrics, 'process_cpu_seconds_total'),
    rss: sum(metrics, 'process_resident_memory_bytes'),
    started: sum(metrics, 'process_start_time_seconds'),
    ...relayed(metrics),
  };
}

// addSample appends a scrape {t (ms), toPeer, toClient, cpuSeconds} to
// history and returns the new point of the rate series, {t, toPeer,
// toClient (bit/s), cpu (share of one core)}, or null for the first
// sample. A counter that went down means the server restarted: its value
// is all that was counted since, so it is the delta. history keeps at
// most keep samples.
export function addSample(history, sample, keep = 61) {
  const prev = history[history.length - 1];
  history.push(sample);
  while (history.length > keep) history.shift();
  if (!prev) return null;
  const dt = (sample.t - prev.t) / 1000;
  if (!(dt > 0)) return null;
  const delta = (now, before) => (now >= before ? now - before : now);
  const point = {
    t: sample.t,
    toPeer: (delta(sample.toPeer, prev.toPeer) * 8) / dt,
    toClient: (delta(sample.toClient, prev.toClient) * 8) / dt,
  };
  if (sample.cpuSeconds !== undefined && prev.cpuSeconds !== undefined) {
    point.cpu = delta(sample.cpuSeconds, prev.cpuSeconds) / dt;
  }
  return point;
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten (at least 1), so
// the chart's top line reads as a round figure.
export function niceMax(v) {
  if (!(v > 1)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) {
    if (v <= m * p) return m * p;
  }
  return 10 * p;
}

// chartPoints maps rate points onto an SVG box of width × height showing
// the span ms up to now: the "x,y x,y" of a <polyline>, older points
// dropped, y growing downwards from top (the max) to height (0).
export function chartPoints(points, key, { now, span, width, height, max }) {
  const out = [];
  for (const p of points) {
    const age = now - p.t;
    if (age < 0 || age > span) continue;
    const x = width - (age / span) * width;
    const y = height - (Math.min(p[key], max) / max) * height;
    out.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  }
  return out.join(' ');
}

// topUsers adds the usage rows per (user, custom_id) and returns the n
// that relayed the most bytes, both directions together.
export function topUsers(rows, n = 10) {
  const by = new Map();
  for (const r of rows || []) {
    const key = JSON.stringify([r.user || '', r.custom_id || '']);
    const u = by.get(key) || { user: r.user || '', customID: r.custom_id || '', toPeer: 0, toClient: 0, total: 0 };
    u.toPeer += r.bytes_to_peer || 0;
    u.toClient += r.bytes_to_client || 0;
    u.total = u.toPeer + u.toClient;
    by.set(key, u);
  }
  return [...by.values()]
    .sort((a, b) => b.total - a.total || a.user.localeCompare(b.user) || a.customID.localeCompare(b.customID))
    .slice(0, n);
}

// signalingNodes counts the sessions per node named in the admin API's
// session list (a session in two rooms is counted once); this node first.
export function signalingNodes(sessions, self = '') {
  const seen = new Map();
  for (const s of sessions || []) {
    if (!s.node) continue;
    if (!seen.has(s.node)) seen.set(s.node, new Set());
    seen.get(s.node).add(s.peer);
  }
  return [...seen.entries()]
    .map(([node, peers]) => ({ node, sessions: peers.size }))
    .sort((a, b) => (b.node === self) - (a.node === self) || a.node.localeCompare(b.node));
}

const units = (v, base, names, digits = 1) => {
  if (v === undefined || v === null || Number.isNaN(v)) return '–';
  let i = 0;
  let x = Math.abs(v);
  while (x >= base && i < names.length - 1) {
    x /= base;
    i++;
  }
  const s = i === 0 ? String(Math.round(x)) : x.toFixed(digits);
  return `${v < 0 ? '-' : ''}${s} ${names[i]}`;
};

// formatBytes: 1536 → "1.5 KiB".
export const formatBytes = (v) => units(v, 1024, ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']);

// formatBits: 2500000 → "2.5 Mbit/s".
export const formatBits = (v) => units(v, 1000, ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s']);

// formatAge: how long ago a time was, "42 s", "5 min", "3 h 4 min", "2 d 1 h".
export function formatAge(since, now) {
  const t = typeof since === 'string' ? Date.parse(since) : since;
  if (!Number.isFinite(t)) return '–';
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 60) return `${s} s`;
  let m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  let h = Math.floor(m / 60);
  m %= 60;
  if (h < 24) return `${h} h ${m} min`;
  const d = Math.floor(h / 24);
  h %= 24;
  return `${d} d ${h} h`;
}

// clusterNode is what the page shows of one node's steering record (GET
// /api/v1/admin/nodes, in a cluster): a title and [label, value, class]
// rows. CPU is the process's share of all the host's cores.
export function clusterNode(n, now) {
  const cap = n.capacity ? ` of ${n.capacity}` : '';
  return {
    title: `Node ${n.id}` + (n.host ? ` (${n.host})` : ''),
    rows: [
      ['state', n.draining ? 'draining: new allocations refused' : 'serving', n.draining ? 'draining' : ''],
      ['allocations', `${n.allocations ?? 0}${cap}`],
      ['relayed now', Number.isFinite(n.bit_rate) && n.bit_rate >= 0 ? formatBits(n.bit_rate) : '–'],
      ['CPU', Number.isFinite(n.cpu) ? `${(n.cpu * 100).toFixed(0)} % of the host` : '–'],
      ['record written', n.updated ? formatAge(n.updated, now) + ' ago' : '–'],
    ],
  };
}

// explain turns an admin API answer that is not 2xx into the sentence the
// page shows: the API's own message when it sent one.
export function explain(status, body) {
  const msg = body && body.error && typeof body.error.message === 'string' ? body.error.message : '';
  switch (status) {
    case 401:
      return 'The key was refused: it is not one of api.keys. ' + msg;
    case 404:
      if (body && body.error && body.error.code === 'api-disabled') return 'The admin API is off on this node. ' + msg;
      return msg || 'Not found.';
    default:
      return `HTTP ${status}${msg ? ': ' + msg : ''}`;
  }
}
