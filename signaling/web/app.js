// icegate test page: gathers candidates against this (or any) STUN/TURN
// server, says what worked, runs a relay-only call, calls another browser
// through the signaling, and shows the relay's own decisions.
'use strict';

const $ = (s) => document.querySelector(s);
const params = new URLSearchParams(location.search);
const token = params.get('token') || '';

// Results for people and for the end-to-end test (tools/e2e).
const results = { gather: {}, calls: {}, peers: {}, decisions: [], errors: [] };
window.icegate = { results };

const state = {
  ws: null, peer: null, hello: null, resume: null, lastSeq: 0, nextId: 1,
  pending: new Map(), own: [], servers: [], selected: -1, expires: null,
  reconnects: 0, room: null, pcs: new Map(),
};

let helloResolve;
const helloReady = new Promise((r) => { helloResolve = r; });

// ---------------------------------------------------------------- signaling

function wsURL() {
  const u = new URL('ws', location.href);
  u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  if (token) u.searchParams.set('token', token);
  if (state.resume) {
    u.searchParams.set('resume', state.resume);
    u.searchParams.set('last', String(state.lastSeq));
  }
  return u.toString();
}

function setConn(text, cls) {
  const el = $('#conn');
  el.textContent = text;
  el.className = 'pill ' + (cls || '');
}

function connect() {
  const ws = new WebSocket(wsURL());
  state.ws = ws;
  ws.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    if (m.seq) state.lastSeq = m.seq;
    dispatch(m);
  };
  ws.onclose = (ev) => {
    if (!state.hello) {
      // Browsers hide the HTTP answer to a refused upgrade; say what it can be.
      setConn('cannot open the signaling WebSocket: refused (origin not in signaling.allowed_origins, or a token is needed: open this page with ?token=...) or the server is down', 'fail');
    } else {
      setConn('signaling closed (' + ev.code + (ev.reason ? ': ' + ev.reason : '') + '), reconnecting…', 'fail');
    }
    for (const [, p] of state.pending) p.reject(new Error('connection closed'));
    state.pending.clear();
    // Come back with the resume token: same id, same rooms, nothing lost.
    if (ev.code !== 1000 && state.reconnects++ < 20) setTimeout(connect, Math.min(500 * state.reconnects, 5000));
  };
}

// send sends a message; with an id it returns a promise of the ack.
function send(m, wantAck) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('signaling not connected'));
  let p = Promise.resolve(null);
  if (wantAck) {
    m.id = state.nextId++;
    p = new Promise((resolve, reject) => state.pending.set(m.id, { resolve, reject }));
  }
  state.ws.send(JSON.stringify(m));
  return p;
}

function settle(m) {
  const p = state.pending.get(m.id);
  if (!p) return false;
  state.pending.delete(m.id);
  if (m.type === 'error') p.reject(new Error(m.code + ': ' + m.error)); else p.resolve(m);
  return true;
}

function dispatch(m) {
  switch (m.type) {
    case 'hello': onHello(m); break;
    case 'ice-servers': setOwnServers(m.ice_servers, m.expires); break;
    case 'ack': case 'joined': case 'left': settle(m); break;
    case 'error':
      if (!settle(m)) results.errors.push(m);
      break;
    case 'turn': onDecision(m.event); break;
    case 'peer-joined': break; // the newcomer calls us
    case 'peer-left': closePeer(m.peer, 'left'); break;
    case 'offer': case 'answer': case 'candidate': onSignal(m); break;
  }
}

function onHello(m) {
  state.hello = m;
  state.peer = m.peer;
  state.resume = m.resume_token;
  state.reconnects = 0;
  setConn((m.resumed ? 'resumed' : 'connected') + ' as ' + m.peer + (m.user ? ' (' + m.user + ')' : ''), 'ok');
  $('#me').textContent = 'you are ' + m.peer;
  $('#footer').textContent = 'icegate ' + (m.server.version || '') + ' · signaling ' + location.host +
    ' · pings every ' + m.ping_interval + ' s · resume grace ' + m.limits.resume_grace + ' s';
  setOwnServers(m.ice_servers, m.expires);
  if (m.server.turn_events) send({ type: 'turn-events', on: true }, true).catch(() => {});
  helloResolve(m);
}

// ------------------------------------------------------------- ICE servers

function setOwnServers(list, expires) {
  state.own = list || [];
  state.expires = expires ? new Date(expires) : null;
  const info = state.hello && !state.hello.server.credentials
    ? 'This server has no shared secret to mint TURN credentials with (auth.secrets): STUN only.'
    : 'Fresh TURN credentials from this server' + (state.expires ? ', valid until ' + state.expires.toLocaleTimeString() + ' (renewed before then)' : '') + '.';
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

// ---------------------------------------------------------------- gathering

const t0 = performance.now();
const ms = (t) => Math.round(t) + ' ms';

function kindOf(url) {
  if (/^stun:/.test(url)) return 'STUN';
  if (/^turns:/.test(url)) return 'TURNS';
  if (/transport=tcp/.test(url)) return 'TURN/TCP';
  return 'TURN/UDP';
}

function formatPriority(p) {
  return (p >>> 24) + ' | ' + ((p >>> 8) & 0xffff) + ' | ' + (p & 0xff);
}

function addRow(table, cells, cls) {
  const tr = document.createElement('tr');
  if (cls) tr.className = cls;
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = c == null ? '' : String(c);
    tr.appendChild(td);
  }
  $(table + ' tbody').appendChild(tr);
  return tr;
}

// gatherOne gathers against one URL and resolves with what happened.
function gatherOne(server, showHost, timeout) {
  return new Promise(async (resolve) => {
    const start = performance.now();
    const r = { url: server.urls, kind: kindOf(server.urls), candidates: [], errors: [], srflx: null, relay: null, done: false };
    let pc;
    try {
      pc = new RTCPeerConnection({ iceServers: [server], iceCandidatePoolSize: 0 });
    } catch (e) {
      r.errors.push({ code: 0, text: String(e.message || e) });
      resolve(r);
      return;
    }
    const finish = () => {
      if (r.done) return;
      r.done = true;
      r.elapsed = performance.now() - start;
      pc.close();
      resolve(r);
    };
    pc.onicecandidate = (e) => {
      if (!e.candidate) { finish(); return; }
      const c = e.candidate;
      if (!c.candidate) return;
      const at = performance.now() - start;
      const cand = {
        at, component: c.component, type: c.type, foundation: c.foundation, protocol: c.protocol,
        address: c.address, port: c.port, priority: c.priority, relayProtocol: c.relayProtocol || '',
      };
      r.candidates.push(cand);
      if (c.type === 'srflx' && !r.srflx) r.srflx = cand;
      if (c.type === 'relay' && !r.relay) r.relay = cand;
      if (c.type !== 'host' || showHost) {
        addRow('#candidates', [((performance.now() - t0) / 1000).toFixed(3), server.urls, c.component, c.type, c.foundation,
          c.protocol + (c.relayProtocol ? '/' + c.relayProtocol : ''), c.address, c.port, formatPriority(c.priority)], c.type);
      }
    };
    pc.onicecandidateerror = (e) => {
      const err = { url: e.url, code: e.errorCode, text: e.errorText, address: e.address, port: e.port, at: performance.now() - start };
      r.errors.push(err);
      addRow('#errors', [((performance.now() - t0) / 1000).toFixed(3), e.url, e.errorCode, e.errorText], 'error');
    };
    pc.createDataChannel('probe');
    await pc.setLocalDescription(await pc.createOffer());
    setTimeout(finish, timeout);
  });
}

// explain turns a gathering result into a verdict row.
function explain(r, all) {
  const secs = Math.round((r.elapsed || 0) / 1000);
  const codes = r.errors.map((e) => e.code);
  const refused = results.decisions.filter((d) => d.kind === 'auth-refused' || d.kind === 'refused' || d.kind === 'permission-denied');
  const serverSays = refused.length ? ' The server says: ' + refused.map((d) => d.kind + (d.detail ? ' (' + d.detail + ')' : '')).join('; ') + '.' : '';
  const selfSigned = state.hello && state.hello.server.turns_certificate === 'self-signed' && !state.custom;
  if (r.kind === 'STUN') {
    if (r.srflx) return ['ok', r.srflx.at, 'STUN works: your address as the server sees it is ' + r.srflx.address + ':' + r.srflx.port + '.'];
    const udpTurn = all.find((x) => x.kind === 'TURN/UDP' && x.relay);
    if (udpTurn) {
      return ['warn', udpTurn.relay.at, 'The server answered over UDP, but no server-reflexive candidate came back: there is no NAT between you and the server (the reflexive address equals a host address, and the browser drops duplicates). Fine on a LAN or on loopback.'];
    }
    if (codes.includes(701)) return ['fail', null, 'No answer from the STUN server (701): UDP to it is blocked, or the host name does not resolve.'];
    return ['fail', null, 'No answer within ' + secs + ' s: outgoing UDP to this port is blocked, or nothing listens there.'];
  }
  if (r.relay) {
    const via = r.relay.relayProtocol || (r.kind === 'TURN/UDP' ? 'udp' : r.kind === 'TURN/TCP' ? 'tcp' : 'tls');
    return ['ok', r.relay.at, r.kind + ' works: relay address ' + r.relay.address + ':' + r.relay.port + ' allocated over ' + via + '.'];
  }
  if (codes.includes(401)) return ['fail', null, 'Credentials refused (401): the username or password is wrong, or the credential expired.' + serverSays];
  if (codes.includes(403)) return ['fail', null, 'Forbidden (403).' + serverSays];
  if (codes.includes(486)) return ['fail', null, 'Allocation quota reached (486): this user holds too many allocations (limits.allocations_per_user).' + serverSays];
  if (codes.includes(508)) return ['fail', null, 'The server is at capacity (508): limits.allocations_total, or no relay port is free.' + serverSays];
  if (r.kind === 'TURNS' && selfSigned) {
    return ['fail', null, 'The server has a self-signed certificate (tls.cert_file is not set); browsers refuse turns: with it. Configure a real certificate for the host name in the URL.'];
  }
  if (codes.includes(701)) {
    return ['fail', null, 'Could not reach the server over ' + (r.kind === 'TURN/UDP' ? 'UDP' : 'TCP') + ' (701): a firewall blocks the port, or the host name does not resolve.' + serverSays];
  }
  if (serverSays) return ['fail', null, 'No relay candidate.' + serverSays];
  return ['fail', null, 'No relay candidate within ' + secs + ' s and no error: the ' + (r.kind === 'TURN/UDP' ? 'UDP' : 'TCP') + ' port is probably blocked on the way.'];
}

function renderVerdict(list) {
  $('#verdict tbody').textContent = '';
  for (const r of list) {
    const [status, at, text] = explain(r, list);
    r.verdict = { status, text, ms: at == null ? null : Math.round(at) };
    const tr = addRow('#verdict', [r.kind + '  ' + r.url, status === 'ok' ? 'works' : status === 'warn' ? 'see note' : 'failed', at == null ? '—' : ms(at), text]);
    tr.children[1].className = status;
  }
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

// ------------------------------------------------------- relay-only calls

function waitFor(cond, what, timeout) {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const tick = () => {
      const v = cond();
      if (v) { resolve(v); return; }
      if (performance.now() - start > timeout) { reject(new Error('timed out waiting for ' + what)); return; }
      setTimeout(tick, 20);
    };
    tick();
  });
}

// selectedPair reads the selected candidate pair from getStats.
async function selectedPair(pc) {
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  });
  if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
  if (!pair) return null;
  const l = stats.get(pair.localCandidateId) || {};
  const r = stats.get(pair.remoteCandidateId) || {};
  return {
    local: { type: l.candidateType, protocol: l.protocol, relayProtocol: l.relayProtocol || '', address: l.address, port: l.port },
    remote: { type: r.candidateType, protocol: r.protocol, address: r.address, port: r.port },
    rtt: pair.currentRoundTripTime,
    text: l.candidateType + ' ' + l.address + ':' + l.port + (l.relayProtocol ? ' (' + l.relayProtocol + ')' : '') + ' ↔ ' +
      r.candidateType + ' ' + r.address + ':' + r.port + ' over ' + l.protocol,
  };
}

function wire(a, b) {
  a.onicecandidate = (e) => { if (e.candidate) b.addIceCandidate(e.candidate).catch(() => {}); };
  b.onicecandidate = (e) => { if (e.candidate) a.addIceCandidate(e.candidate).catch(() => {}); };
}

// loopbackCall connects two peer connections through the relay only, then
// measures the data channel's round trip and throughput.
async function loopbackCall(server, bytes) {
  const row = addRow('#calls', [server.urls, 'connecting…', '', '', '']);
  const r = { url: server.urls, ok: false };
  results.calls[server.urls] = r;
  const cfg = { iceServers: [server], iceTransportPolicy: 'relay' };
  const a = new RTCPeerConnection(cfg);
  const b = new RTCPeerConnection(cfg);
  wire(a, b);
  try {
    const start = performance.now();
    const dc = a.createDataChannel('bench', { ordered: true });
    let received = 0;
    b.ondatachannel = (e) => {
      const ch = e.channel;
      ch.binaryType = 'arraybuffer';
      ch.onmessage = (ev) => {
        if (typeof ev.data === 'string') { ch.send(ev.data); return; }
        received += ev.data.byteLength;
        if (received >= bytes) ch.send('got:' + received);
      };
    };
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription);
    await waitFor(() => dc.readyState === 'open', 'the data channel to open', 15000);
    r.openMs = Math.round(performance.now() - start);
    row.children[1].textContent = 'open in ' + r.openMs + ' ms';

    // Round trip: sequential echoes, median.
    const rtts = [];
    for (let i = 0; i < 20; i++) {
      const sent = performance.now();
      await new Promise((resolve) => {
        dc.onmessage = (ev) => { if (ev.data === 'ping' + i) resolve(); };
        dc.send('ping' + i);
      });
      rtts.push(performance.now() - sent);
    }
    rtts.sort((x, y) => x - y);
    r.rttMs = +rtts[rtts.length >> 1].toFixed(2);
    row.children[2].textContent = r.rttMs + ' ms (median of 20)';

    // Throughput: bytes in 16 KiB messages with backpressure.
    const chunk = new ArrayBuffer(16384);
    const sendStart = performance.now();
    const done = new Promise((resolve) => { dc.onmessage = (ev) => { if (String(ev.data).startsWith('got:')) resolve(); }; });
    dc.bufferedAmountLowThreshold = 256 * 1024;
    for (let sent = 0; sent < bytes; sent += chunk.byteLength) {
      if (dc.bufferedAmount > 1024 * 1024) {
        await new Promise((resolve) => { dc.onbufferedamountlow = resolve; });
      }
      dc.send(chunk);
    }
    await Promise.race([done, new Promise((_, rej) => setTimeout(() => rej(new Error('throughput test timed out')), 30000))]);
    const secs = (performance.now() - sendStart) / 1000;
    r.mbitPerSec = +((bytes * 8) / secs / 1e6).toFixed(1);
    row.children[3].textContent = r.mbitPerSec + ' Mbit/s (' + (bytes / 1048576).toFixed(0) + ' MiB in ' + secs.toFixed(2) + ' s)';
    r.pair = await selectedPair(a);
    row.children[4].textContent = r.pair ? r.pair.text : '?';
    r.ok = true;
    row.children[1].className = 'ok';
  } catch (e) {
    r.error = String(e.message || e);
    row.children[1].textContent = 'failed: ' + r.error;
    row.children[1].className = 'fail';
  } finally {
    a.close();
    b.close();
  }
  return r;
}

async function loopbackAll(bytes) {
  $('#calls tbody').textContent = '';
  const turns = state.servers.filter((s) => /^turn:/.test(s.urls));
  const out = [];
  for (const s of turns) out.push(await loopbackCall(s, bytes));
  return out;
}

// ------------------------------------------------------------- room calls

function peerRow(id) {
  let p = state.pcs.get(id);
  if (p && p.row) return p.row;
  const row = addRow('#peers', [id, 'new', '', '', '']);
  return row;
}

function newPeer(id, initiator) {
  const servers = state.own;
  const pc = new RTCPeerConnection({ iceServers: servers, iceTransportPolicy: $('#relay-only').checked ? 'relay' : 'all' });
  const p = { id, pc, row: peerRow(id), dc: null, queued: [] };
  state.pcs.set(id, p);
  const r = results.peers[id] = { id, state: 'new', connected: false };
  pc.onicecandidate = (e) => {
    send({ type: 'candidate', to: id, data: e.candidate ? e.candidate.toJSON() : null });
  };
  pc.onconnectionstatechange = async () => {
    r.state = pc.connectionState;
    p.row.children[1].textContent = pc.connectionState;
    p.row.children[1].className = pc.connectionState === 'connected' ? 'ok' : pc.connectionState === 'failed' ? 'fail' : '';
    if (pc.connectionState === 'connected') {
      r.pair = await selectedPair(pc);
      p.row.children[2].textContent = r.pair ? r.pair.text : '?';
      if (r.pair && r.pair.rtt != null) p.row.children[3].textContent = (r.pair.rtt * 1000).toFixed(1) + ' ms';
      r.connected = true;
    }
  };
  const onChannel = (dc) => {
    p.dc = dc;
    dc.onopen = () => dc.send('hello from ' + state.peer);
    dc.onmessage = (ev) => {
      r.message = String(ev.data);
      p.row.children[4].textContent = 'got "' + r.message + '"';
    };
  };
  if (initiator) {
    onChannel(pc.createDataChannel('chat'));
    pc.createOffer().then((o) => pc.setLocalDescription(o)).then(() => {
      send({ type: 'offer', to: id, data: pc.localDescription.toJSON() }, true).catch((e) => { p.row.children[1].textContent = e.message; });
    });
  } else {
    pc.ondatachannel = (e) => onChannel(e.channel);
  }
  return p;
}

async function onSignal(m) {
  let p = state.pcs.get(m.from);
  if (!p) {
    if (m.type !== 'offer') return;
    p = newPeer(m.from, false);
  }
  const pc = p.pc;
  try {
    if (m.type === 'offer') {
      await pc.setRemoteDescription(m.data);
      await pc.setLocalDescription(await pc.createAnswer());
      send({ type: 'answer', to: m.from, data: pc.localDescription.toJSON() });
      for (const c of p.queued) await pc.addIceCandidate(c);
      p.queued = [];
    } else if (m.type === 'answer') {
      await pc.setRemoteDescription(m.data);
      for (const c of p.queued) await pc.addIceCandidate(c);
      p.queued = [];
    } else if (m.type === 'candidate') {
      const c = m.data || null;
      if (!pc.remoteDescription) p.queued.push(c); else await pc.addIceCandidate(c);
    }
  } catch (e) {
    p.row.children[1].textContent = 'error: ' + e.message;
  }
}

function closePeer(id, why) {
  const p = state.pcs.get(id);
  if (!p) return;
  p.pc.close();
  p.row.children[1].textContent = why;
  p.row.children[1].className = 'muted';
  state.pcs.delete(id);
  if (results.peers[id]) results.peers[id].state = why;
}

async function joinRoom(name) {
  await helloReady;
  const j = await send({ type: 'join', room: name }, true);
  state.room = name;
  // The newcomer calls everyone already there.
  for (const id of j.peers) newPeer(id, true);
  return j;
}

$('#join').onclick = () => {
  const name = $('#room').value.trim() || 'lobby';
  joinRoom(name).catch((e) => alert(e.message));
};
$('#leave').onclick = () => {
  if (!state.room) return;
  send({ type: 'leave', room: state.room }, true).catch(() => {});
  for (const id of [...state.pcs.keys()]) closePeer(id, 'you left');
  state.room = null;
};

// ---------------------------------------------------------- server decisions

const transports = new Map(); // client address -> transport, from earlier events

function onDecision(e) {
  results.decisions.push(e);
  if (e.client && e.transport) transports.set(e.client, e.transport);
  if (e.client && !e.transport) e.transport = transports.get(e.client) || '';
  const what = { 'authenticated': 'authenticated', 'auth-refused': 'credential refused', 'allocation-created': 'allocation created',
    'allocation-deleted': 'allocation deleted', 'permission-denied': 'permission denied', 'refused': 'refused' }[e.kind] || e.kind;
  const detail = [e.detail, e.peer ? 'peer ' + e.peer : '', e.client ? 'from ' + e.client : ''].filter(Boolean).join(' · ');
  const tr = addRow('#decisions', [new Date(e.time).toLocaleTimeString(), what, e.transport, detail]);
  tr.children[1].className = /refused|denied/.test(e.kind) ? 'fail' : 'ok';
}

// --------------------------------------------------------------- run it

async function runAll() {
  await helloReady;
  const gathered = await gatherAll();
  const calls = await loopbackAll(4 * 1048576);
  return { gathered, calls };
}

$('#run-all').onclick = () => runAll();
$('#gather').onclick = () => helloReady.then(gatherAll);
$('#loopback').onclick = () => helloReady.then(() => loopbackAll(4 * 1048576));

connect();

// ?auto=gather,loopback runs the tests at load; ?room=NAME joins a room.
// window.icegate.done settles when they finish (the end-to-end test waits
// for it).
window.icegate.done = (async () => {
  const auto = (params.get('auto') || '').split(',').filter(Boolean);
  const room = params.get('room');
  if (room) $('#room').value = room;
  await helloReady;
  if (auto.includes('gather')) await gatherAll();
  if (auto.includes('loopback')) await loopbackAll(+(params.get('bytes') || 4 * 1048576));
  if (room && auto.includes('room')) await joinRoom(room);
  return results;
})();
