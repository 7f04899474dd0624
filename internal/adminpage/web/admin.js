// The admin page's DOM and fetches; what it decides is in model.js. It
// writes page content with textContent and createElement only (never
// innerHTML), so a user name, a room or an error message is shown as
// text whatever it holds.
import {
  parseMetrics, nodeLoad, addSample, niceMax, chartPoints, topUsers, signalingNodes,
  formatBytes, formatBits, formatAge, explain, clusterNode,
} from './model.js';

// How often the page polls, and how much of the chart it keeps.
const interval = 2000;
const span = 120_000;

const $ = (id) => document.getElementById(id);

// key lives in this module only: not in the URL, not in storage.
let key = '';
let timer = 0;
let busy = false;
// again asks for one more refresh as soon as the one in flight ends (a
// kick clicked meanwhile must show its effect without waiting).
let again = false;
const history = [];
let points = [];

// window.icegateAdmin is for tools/e2e: how many refreshes finished and
// the last error shown.
const status = { ready: true, refreshes: 0, error: '' };
window.icegateAdmin = status;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function showError(msg) {
  status.error = msg || '';
  $('error').textContent = msg || '';
  $('error').hidden = !msg;
}

class APIError extends Error {
  constructor(status, body) {
    super(explain(status, body));
    this.status = status;
    this.body = body;
  }
}

// api calls the admin API with the key, relative to the page so that a
// reverse proxy that mounts the listener under a prefix keeps working.
async function api(path, method = 'GET') {
  const resp = await fetch(new URL('../api/v1/admin/' + path, location.href), {
    method,
    headers: { Authorization: 'Bearer ' + key },
    cache: 'no-store',
    credentials: 'omit',
    redirect: 'error',
  });
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) throw new APIError(resp.status, body);
  return body;
}

async function scrape() {
  const resp = await fetch(new URL('../metrics', location.href), { cache: 'no-store', credentials: 'omit' });
  if (!resp.ok) throw new Error(`/metrics: HTTP ${resp.status}`);
  return parseMetrics(await resp.text());
}

function signIn(ev) {
  ev.preventDefault();
  key = $('key').value.trim();
  $('key').value = '';
  if (!key) return;
  showError('');
  refresh();
}

function signOut(msg) {
  key = '';
  clearTimeout(timer);
  history.length = 0;
  points = [];
  $('dashboard').hidden = true;
  $('forget').hidden = true;
  $('login').hidden = false;
  $('updated').textContent = '';
  showError(msg);
}

// refresh fetches everything once and schedules the next one; one at a
// time, so a slow node is not asked again before it answered.
async function refresh() {
  clearTimeout(timer);
  if (!key) return;
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  again = false;
  const used = key;
  try {
    // The drain status first: it checks the key before anything is shown.
    const drain = await api('drain');
    const [metrics, allocs, sessions, usage, cluster] = await Promise.all([
      scrape().catch((e) => e),
      api('allocations'),
      api('sessions').catch((e) => e),
      api('usage?from=1h').catch((e) => e),
      api('nodes').catch((e) => e),
    ]);
    if (key !== used) return; // forgotten or replaced meanwhile
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('forget').hidden = false;
    showError(metrics instanceof Error ? 'Load and bit rate unavailable: ' + metrics.message : '');
    const now = Date.now();
    renderNode(metrics instanceof Error ? null : metrics, drain, now, cluster instanceof Error ? null : cluster);
    renderAllocations(allocs.allocations || [], now);
    renderSessions(sessions, now);
    renderUsage(usage);
    $('updated').textContent = 'updated ' + new Date(now).toLocaleTimeString();
    status.refreshes++;
  } catch (e) {
    if (key !== used) return;
    if (e instanceof APIError && (e.status === 401 || e.status === 404)) {
      signOut(e.message);
      status.refreshes++;
      return;
    }
    showError('The node did not answer: ' + e.message);
  } finally {
    busy = false;
    if (key) timer = setTimeout(refresh, again ? 0 : interval);
  }
}

function dl(pairs) {
  const d = el('dl');
  for (const [k, v, cls] of pairs) {
    d.append(el('dt', k), el('dd', v, cls));
  }
  return d;
}

// clusterShown says the last refresh showed the cluster's nodes.
let clusterShown = false;

function renderNode(metrics, drain, now, cluster) {
  const cards = [];
  const card = el('div', undefined, 'card');
  card.append(el('h3', 'This node (' + location.host + ')'));
  const pairs = [['state', drain.draining ? 'draining: new allocations refused' : 'serving', drain.draining ? 'draining' : ''],
    ['allocations', drain.allocations]];
  if (metrics) {
    const load = nodeLoad(metrics);
    $('version').textContent = load.version ? 'icegate ' + load.version : '';
    const point = addSample(history, { t: now, toPeer: load.toPeer, toClient: load.toClient, cpuSeconds: load.cpuSeconds });
    if (point) points.push(point);
    points = points.filter((p) => now - p.t <= span);
    const last = points[points.length - 1];
    pairs.push(
      ['permissions / channels', `${load.permissions ?? '–'} / ${load.channels ?? '–'}`],
      ['relayed now', last ? `${formatBits(last.toPeer)} → peers, ${formatBits(last.toClient)} → clients` : 'measuring…'],
      ['relayed since start', `${formatBytes(load.toPeer)} → peers, ${formatBytes(load.toClient)} → clients`],
      ['CPU', last && last.cpu !== undefined ? `${(last.cpu * 100).toFixed(0)} % of one core` : '–'],
      ['memory (RSS)', formatBytes(load.rss)],
      ['up', load.started ? formatAge(load.started * 1000, now) : '–'],
      ['signaling peers / rooms', `${load.signalingPeers ?? '–'} / ${load.rooms ?? '–'}`],
    );
    renderChart(now);
  }
  card.append(dl(pairs));
  cards.push(card);
  // In a cluster, every node's steering record (this one's too, as the
  // cluster sees it).
  clusterShown = !!(cluster && cluster.scope === 'cluster' && (cluster.nodes || []).length);
  if (clusterShown) {
    for (const n of cluster.nodes) {
      const c = clusterNode(n, now);
      const nc = el('div', undefined, 'card');
      nc.append(el('h3', c.title), dl(c.rows));
      cards.push(nc);
    }
  }
  $('nodes').replaceChildren(...cards);
}

function renderChart(now) {
  const top = niceMax(Math.max(0, ...points.map((p) => Math.max(p.toPeer, p.toClient))));
  const box = { now, span, width: 800, height: 200, max: top };
  $('line-to-peer').setAttribute('points', chartPoints(points, 'toPeer', box));
  $('line-to-client').setAttribute('points', chartPoints(points, 'toClient', box));
  $('chart-max').textContent = formatBits(top);
  const last = points[points.length - 1];
  $('rate-to-peer').textContent = last ? formatBits(last.toPeer) : '–';
  $('rate-to-client').textContent = last ? formatBits(last.toClient) : '–';
}

function emptyRow(cols, text) {
  const tr = el('tr');
  const td = el('td', text, 'empty');
  td.colSpan = cols;
  tr.append(td);
  return tr;
}

function kickButton(label, title, path) {
  const b = el('button', label, 'kick');
  b.type = 'button';
  b.title = title;
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await api(path, 'DELETE');
      showError('');
    } catch (e) {
      showError(label + ' failed: ' + e.message);
    }
    refresh();
  });
  return b;
}

function renderAllocations(list, now) {
  $('alloc-count').textContent = `(${list.length})`;
  const rows = list.map((a) => {
    const tr = el('tr');
    tr.dataset.id = a.id;
    tr.append(
      el('td', a.id, 'mono'), el('td', a.user), el('td', a.custom_id || ''), el('td', a.client, 'mono'),
      el('td', a.transport), el('td', a.relay, 'mono'), el('td', formatAge(a.start, now)),
      el('td', formatBytes(a.bytes_to_peer), 'num'), el('td', formatBytes(a.bytes_to_client), 'num'),
      el('td', (a.permissions || []).length, 'num'),
    );
    const td = el('td');
    td.append(kickButton('Kick', 'close this allocation now (its client may allocate again)', 'allocations/' + encodeURIComponent(a.id)));
    tr.append(td);
    return tr;
  });
  $('allocations').tBodies[0].replaceChildren(...(rows.length ? rows : [emptyRow(11, 'no live allocations')]));
}

function renderSessions(res, now) {
  const note = $('sessions-note');
  const body = $('sessions').tBodies[0];
  if (res instanceof Error) {
    note.textContent = res.message;
    note.hidden = false;
    $('session-count').textContent = '';
    body.replaceChildren();
    $('cluster').textContent = '';
    return;
  }
  note.hidden = true;
  const list = res.sessions || [];
  $('session-count').textContent = `(${list.length})`;
  const rows = list.map((s) => {
    const tr = el('tr');
    tr.dataset.id = s.peer;
    tr.append(el('td', s.peer, 'mono'), el('td', s.user || ''), el('td', s.room), el('td', s.node, 'mono'), el('td', formatAge(s.joined, now)));
    const td = el('td');
    td.append(kickButton('End', 'end this signaling session for good (close code 4100, no resume)', 'sessions/' + encodeURIComponent(s.peer)));
    tr.append(td);
    return tr;
  });
  body.replaceChildren(...(rows.length ? rows : [emptyRow(6, 'no signaling sessions in rooms')]));
  const nodes = signalingNodes(list);
  $('cluster').textContent = (nodes.length
    ? 'Signaling nodes holding sessions: ' + nodes.map((n) => `${n.node} (${n.sessions})`).join(', ') + '. '
    : '') + (clusterShown ? '' : 'No cluster: this node only.');
}

function renderUsage(res) {
  const body = $('top-users').tBodies[0];
  if (res instanceof Error) {
    body.replaceChildren(emptyRow(5, res.message));
    return;
  }
  const rows = topUsers(res.usage, 10).map((u) => {
    const tr = el('tr');
    tr.append(el('td', u.user), el('td', u.customID), el('td', formatBytes(u.toPeer), 'num'),
      el('td', formatBytes(u.toClient), 'num'), el('td', formatBytes(u.total), 'num'));
    return tr;
  });
  body.replaceChildren(...(rows.length ? rows : [emptyRow(5, 'nothing relayed in the last hour')]));
}

$('login').addEventListener('submit', signIn);
$('forget').addEventListener('click', () => signOut(''));
