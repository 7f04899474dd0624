// icegate test page: gathers candidates against this (or any) STUN/TURN
// server, says what worked, gives a hint of the NAT's mapping, runs a
// relay-only call, calls another browser through the signaling, and shows
// the relay's own decisions. This module wires the others to the page:
// icegate.js (signaling), gather.js (candidates), nat.js and verdict.js
// (the decisions, pure functions), calls.js (calls), ui.js (DOM helpers).
import { connect } from './icegate.js';
import { $, addRow, ms, setConn } from './ui.js';
import { gatherOne, natGather } from './gather.js';
import { natTargets, natVerdict, natLabel, seenNote } from './nat.js';
import { explain, decisionView, expectedDenial, expectedDenialNote, noCredentials, turnURLs } from './verdict.js';
import { loopbackCall, Room } from './calls.js';

const params = new URLSearchParams(location.search);

// Results for people and for the end-to-end test (tools/e2e).
const results = { gather: {}, calls: {}, peers: {}, decisions: [], errors: [] };
window.icegate = { results };

const state = { servers: [], selected: -1, custom: false, own: [] };

// ---------------------------------------------------------------- signaling

const client = connect('ws', { token: params.get('token') || '' });
window.icegate.client = client;
const room = new Room(client, results, () => $('#relay-only').checked);

client.on('hello', (m) => {
  setConn((m.resumed ? 'resumed' : 'connected') + ' as ' + m.peer + (m.user ? ' (' + m.user + ')' : ''), 'ok');
  $('#me').textContent = 'you are ' + m.peer;
  $('#footer').textContent = 'icegate ' + (m.server.version || '') + ' · signaling ' + location.host +
    ' · pings every ' + m.ping_interval + ' s · resume grace ' + m.limits.resume_grace + ' s';
  if (m.server.turn_events) client.turnEvents(true).catch(() => {});
});
client.on('ice-servers', (s) => setOwnServers(s.iceServers, s.expires));
client.on('reconnecting', (r) => {
  if (!r.everConnected) {
    // Browsers hide the HTTP answer to a refused upgrade; say what it can be.
    setConn('cannot open the signaling WebSocket: refused (origin not in signaling.allowed_origins, or a token is needed: open this page with ?token=...) or the server is down; trying again', 'fail');
  } else {
    setConn('signaling dropped (' + r.code + (r.reason ? ': ' + r.reason : '') + '), reconnecting…', 'fail');
  }
});
client.on('new-peer', () => {
  // The session could not be resumed: back into the room as a new peer.
  if (room.name) room.join(room.name).catch(() => {});
});
client.on('closed', (c) => setConn('signaling closed (' + c.code + (c.reason ? ': ' + c.reason : '') + ')', 'fail'));
client.on('error', (m) => results.errors.push(m));
client.on('turn', (m) => onDecision(m.event));

// ------------------------------------------------------------- ICE servers

function setOwnServers(list, expires) {
  state.own = list || [];
  const exp = expires ? new Date(expires) : null;
  const h = client.hello;
  let info;
  if (h && !h.server.credentials) {
    const stun = state.own.flatMap((s) => [].concat(s.urls)).find((u) => /^stun:/.test(u));
    info = 'This relay has only static users and no shared secret (auth.secrets), so this page cannot mint TURN credentials: STUN only. ' +
      'To test TURN, add ' + (turnURLs(stun)[0] || 'its turn: URL') + ' with a static user\'s name and password below.';
    if (stun && !$('#url').value) $('#url').value = turnURLs(stun)[0];
  } else {
    info = 'Fresh TURN credentials from this server' + (exp ? ', valid until ' + exp.toLocaleTimeString() + ' (renewed before then)' : '') + '.';
  }
  $('#creds-info').textContent = info;
  if (!state.custom) useOwn();
}

// Each URL becomes its own entry so that each is tested on its own.
function useOwn() {
  state.custom = false;
  state.servers = [];
  for (const s of state.own) {
    for (const url of [].concat(s.urls)) state.servers.push({ urls: url, username: s.username, credential: s.credential });
  }
  renderServers();
}

function renderServers() {
  const ul = $('#servers');
  ul.textContent = '';
  state.servers.forEach((s, i) => {
    const li = document.createElement('li');
    li.textContent = s.urls;
    if (s.username) {
      const c = document.createElement('span');
      c.className = 'cred';
      c.textContent = '  [' + s.username + ':' + (s.credential ? '•'.repeat(6) : '') + ']';
      li.appendChild(c);
    }
    if (i === state.selected) li.className = 'selected';
    li.onclick = () => { state.selected = i; renderServers(); };
    ul.appendChild(li);
  });
}

$('#add').onclick = () => {
  const url = $('#url').value.trim();
  if (!/^(stun|turns?):/.test(url)) { alert('A URL starts with stun:, turn: or turns:'); return; }
  state.custom = true;
  state.servers.push({ urls: url, username: $('#username').value || undefined, credential: $('#password').value || undefined });
  renderServers();
};
$('#remove').onclick = () => {
  if (state.selected < 0) return;
  state.custom = true;
  state.servers.splice(state.selected, 1);
  state.selected = -1;
  renderServers();
};
$('#reset').onclick = useOwn;

// ---------------------------------------------------------------- verdicts

function renderVerdict(list) {
  $('#verdict tbody').textContent = '';
  const ctx = { decisions: results.decisions, selfSigned: !!(client.hello && client.hello.server.turns_certificate === 'self-signed' && !state.custom) };
  for (const r of list) {
    const [status, at, text] = explain(r, list, ctx);
    r.verdict = { status, text, ms: at == null ? null : Math.round(at) };
    const tr = addRow('#verdict', [r.kind + '  ' + r.url, status === 'ok' ? 'works' : status === 'warn' ? 'see note' : 'failed', at == null ? '—' : ms(at), text]);
    tr.children[1].className = status;
  }
  // TURN the page could not test says so, rather than vanishing.
  for (const row of noCredentials(client.hello, state.servers)) {
    const tr = addRow('#verdict', [row.kind, 'not tested', '—', row.text], 'untested');
    tr.children[1].className = row.status;
  }
  natVerdictRow();
}

async function gatherAll() {
  $('#candidates tbody').textContent = '';
  $('#errors tbody').textContent = '';
  const list = state.servers.slice();
  const out = await Promise.all(list.map((s, i) => gatherOne(s, i === 0, 10000)));
  for (const r of out) results.gather[r.url] = r;
  renderVerdict(out);
  return out;
}

// ---------------------------------------------------------------- NAT hint

function renderNat(nat) {
  $('#nat-probes tbody').textContent = '';
  for (const p of nat.probes) {
    let addr, via, cls = '';
    if (p.seen.length) {
      addr = p.seen.map((x) => x + seenNote(nat, x)).join(', ');
      via = p.mapped.map((m) => m.via).join('; ');
    } else if (p.silent) {
      addr = 'no new address';
      via = 'answered, but the browser reports each server-reflexive address once and none equal to a host address';
    } else {
      addr = 'no answer';
      via = p.errors.length ? p.errors.map((e) => e.code + ' ' + e.text).join('; ') : 'nothing within ' + Math.round(nat.elapsed / 1000) + ' s';
      cls = 'error';
    }
    addRow('#nat-probes', [p.url, addr, via], cls);
  }
  const v = $('#nat-verdict');
  v.textContent = '';
  const b = document.createElement('span');
  b.className = nat.verdict.status;
  b.textContent = natLabel(nat.verdict.mapping);
  v.appendChild(b);
  v.appendChild(document.createTextNode(' — ' + nat.verdict.text));
  const first = nat.probes[0];
  if (first) $('#natcheck').textContent = 'icegate natcheck ' + first.url;
  natVerdictRow();
}

// natVerdictRow adds the hint to the verdict table (after the gathering's
// rows, which renderVerdict replaces).
function natVerdictRow() {
  const nat = results.nat;
  const old = $('#verdict tr.nat');
  if (old) old.remove();
  if (!nat) return;
  const v = nat.verdict;
  const tr = addRow('#verdict', ['NAT mapping  ' + nat.probes.map((p) => p.url.replace(/^stun:/, '')).join(' vs '),
    natLabel(v.mapping), ms(nat.elapsed), v.text], 'nat');
  tr.children[1].className = v.status;
}

async function natHint() {
  $('#nat-probes tbody').textContent = '';
  $('#nat-verdict').textContent = 'asking…';
  const nat = await natGather(natTargets(client.hello, state.own), state.own, 8000);
  nat.verdict = natVerdict(nat);
  // Whether the hint found the same external address through two server
  // addresses (shown, or implied by the browser reporting it once).
  nat.samePort = nat.probes.length === 2 && (nat.verdict.mapping === 'endpoint-independent' || nat.verdict.mapping === 'no-nat');
  results.nat = nat;
  renderNat(nat);
  return nat;
}

// ------------------------------------------------------- relay-only calls

async function loopbackAll(bytes) {
  $('#calls tbody').textContent = '';
  const turns = state.servers.filter((s) => /^turn:/.test(s.urls));
  const out = [];
  for (const s of turns) out.push(await loopbackCall(s, bytes, results));
  return out;
}

// ------------------------------------------------------------- room calls

async function joinRoom(name) {
  await client.ready;
  return room.join(name);
}

$('#join').onclick = () => {
  const name = $('#room').value.trim() || 'lobby';
  joinRoom(name).catch((e) => alert(e.message));
};
$('#leave').onclick = () => room.leave();

// ---------------------------------------------------------- server decisions

const transports = new Map(); // client address -> transport, from earlier events
let explained = false;

function onDecision(e) {
  results.decisions.push(e);
  if (e.client && e.transport) transports.set(e.client, e.transport);
  if (e.client && !e.transport) e.transport = transports.get(e.client) || '';
  const view = decisionView(e);
  const detail = [e.detail, e.peer ? 'peer ' + e.peer : '', e.client ? 'from ' + e.client : ''].filter(Boolean).join(' · ');
  const tr = addRow('#decisions', [new Date(e.time).toLocaleTimeString(), view.label, e.transport, detail], view.cls === 'calm' ? 'calm' : '');
  tr.children[1].className = view.cls;
  if (expectedDenial(e) && !explained) {
    // Said once, under the table, for every such row.
    explained = true;
    const note = $('#decisions-note');
    note.textContent = expectedDenialNote;
    note.hidden = false;
  }
}

// --------------------------------------------------------------- run it

async function runAll() {
  await client.ready;
  const gathered = await gatherAll();
  const nat = await natHint();
  const calls = await loopbackAll(4 * 1048576);
  return { gathered, nat, calls };
}

$('#run-all').onclick = () => runAll();
$('#gather').onclick = () => client.ready.then(gatherAll);
$('#nat').onclick = () => client.ready.then(natHint);
$('#loopback').onclick = () => client.ready.then(() => loopbackAll(4 * 1048576));

// ?auto=gather,nat,loopback runs the tests at load; ?room=NAME joins a room.
// window.icegate.done settles when they finish (the end-to-end test waits
// for it).
window.icegate.done = (async () => {
  const auto = (params.get('auto') || '').split(',').filter(Boolean);
  const name = params.get('room');
  if (name) $('#room').value = name;
  await client.ready;
  if (auto.includes('gather')) await gatherAll();
  if (auto.includes('nat')) await natHint();
  if (auto.includes('loopback')) await loopbackAll(+(params.get('bytes') || 4 * 1048576));
  if (name && auto.includes('room')) await joinRoom(name);
  return results;
})();
