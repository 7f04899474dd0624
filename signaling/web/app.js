// icegate test page: gathers candidates against this (or any) STUN/TURN
// server, says what worked, gives a hint of the NAT's mapping, runs a
// relay-only call, calls another browser through the signaling, and shows
// the relay's own decisions.
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
  // A new peer (a first connection, or a resume that failed) numbers its
  // messages from 1 again: the seq of an earlier peer must not be sent as
  // "last" when this one resumes.
  if (!m.resumed) state.lastSeq = 0;
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

// The NAT hint asks each of the server's addresses, from one socket, what
// this browser's address looks like (RFC 5780 §4.3 tests I and III): the
// same external address through two server addresses that differ in IP and
// port is endpoint-independent mapping (RFC 4787 §4.1). One peer
// connection with both servers, because Chromium sends every STUN and TURN
// request of a network interface from one shared socket; separate
// connections would use separate sockets, and so separate mappings.
//
// Chromium reports a server-reflexive address once (a second server seeing
// the same one adds nothing) and not at all when it equals the host
// address (no NAT). So where credentials allow, each address is also asked
// for a TURN allocation over UDP: the relay candidate's related address is
// the mapped address from the Allocate response, reported per server.

// serverKey turns stun:/turn: URLs (and the url field of candidates and
// errors) into "host port", to match them.
function serverKey(url) {
  const m = /^(stuns?|turns?):(\[[^\]]*\]|[^:?/]*)(?::(\d+))?/i.exec(url || '');
  if (!m) return '';
  const port = m[3] || (/s$/i.test(m[1]) ? '5349' : '3478');
  return m[2].replace(/^\[|\]$/g, '').toLowerCase() + ' ' + port;
}

const ipPort = (address, port) => (String(address).includes(':') ? '[' + address + ']' : address) + ':' + port;

// natTargets returns the stun: URLs to compare through: the server's two
// RFC 5780 addresses from hello (nat_probe), or else its one STUN URL.
function natTargets() {
  const probe = state.hello && state.hello.nat_probe;
  if (probe && probe.length) return probe.slice();
  const own = state.own.flatMap((s) => [].concat(s.urls)).find((u) => /^stun:/.test(u));
  return own ? [own] : [];
}

// natGather gathers once against every target (and, with credentials, a
// TURN/UDP allocation at the same address) and sorts what came back by
// server.
function natGather(targets, timeout) {
  const cred = state.own.find((s) => s.username && [].concat(s.urls).some((u) => /^turn:.*transport=udp/.test(u)));
  const probes = targets.map((url) => ({ url, key: serverKey(url), mapped: [], errors: [] }));
  const iceServers = [];
  for (const p of probes) {
    iceServers.push({ urls: p.url });
    if (cred) iceServers.push({ urls: 'turn:' + p.url.replace(/^stun:/, '') + '?transport=udp', username: cred.username, credential: cred.credential });
  }
  const nat = { probes, candidates: [], hosts: [], turn: !!cred, complete: false, unmatched: [] };
  return new Promise(async (resolve) => {
    const start = performance.now();
    const pc = new RTCPeerConnection({ iceServers, iceCandidatePoolSize: 0 });
    const finish = (complete) => {
      if (nat.elapsed != null) return;
      nat.complete = complete;
      nat.elapsed = performance.now() - start;
      pc.close();
      resolve(nat);
    };
    const probeFor = (url) => probes.find((p) => p.key === serverKey(url));
    pc.onicecandidate = (e) => {
      if (!e.candidate) { finish(true); return; }
      const c = e.candidate;
      if (!c.candidate || c.protocol !== 'udp') return;
      nat.candidates.push({ type: c.type, address: c.address, port: c.port, relatedAddress: c.relatedAddress, relatedPort: c.relatedPort, url: c.url || e.url || '' });
      const add = (list, v) => { if (!list.includes(v)) list.push(v); };
      // Host candidates may be missing or mDNS names (.local): browsers hide
      // host addresses from pages without camera or microphone permission.
      if (c.type === 'host' && !/\.local$/i.test(c.address)) add(nat.hosts, ipPort(c.address, c.port));
      if (c.type !== 'srflx' && c.type !== 'relay') return;
      if (c.type === 'srflx' && c.relatedAddress && c.relatedAddress !== '0.0.0.0') add(nat.hosts, ipPort(c.relatedAddress, c.relatedPort));
      const p = probeFor(c.url || e.url);
      if (!p) { nat.unmatched.push(ipPort(c.type === 'srflx' ? c.address : c.relatedAddress, c.type === 'srflx' ? c.port : c.relatedPort)); return; }
      // A relay candidate's related address is the mapped address; browsers
      // hide it (0.0.0.0) when they may not show reflexive addresses.
      const [address, port] = c.type === 'srflx' ? [c.address, c.port] : [c.relatedAddress, c.relatedPort];
      if (!address || address === '0.0.0.0' || address === '::' || !port) return;
      const at = ipPort(address, port);
      if (!p.mapped.some((m) => m.at === at)) p.mapped.push({ at, via: c.type === 'srflx' ? 'server-reflexive candidate' : 'TURN allocation (relay candidate\'s related address)' });
      else if (c.type === 'relay') p.mapped.find((m) => m.at === at).via += ' and TURN allocation';
    };
    pc.onicecandidateerror = (e) => {
      const p = probeFor(e.url);
      if (p) p.errors.push({ url: e.url, code: e.errorCode, text: e.errorText });
    };
    pc.createDataChannel('nat');
    await pc.setLocalDescription(await pc.createOffer());
    setTimeout(() => finish(false), timeout);
  });
}

// natVerdict says what the mapped addresses mean, only as far as they show.
function natVerdict(nat) {
  const ps = nat.probes;
  const secs = Math.round(nat.elapsed / 1000);
  for (const p of ps) {
    p.seen = p.mapped.map((m) => m.at);
    const stunFailed = p.errors.some((e) => /^stun:/.test(e.url || ''));
    // An answer that adds no candidate: the browser had reported that
    // address already (through the other server), or it is a host address.
    p.silent = !p.seen.length && nat.complete && !stunFailed;
    p.answered = p.seen.length > 0 || p.silent;
  }
  const name = (p) => p.url.replace(/^stun:/, '');
  // The browser's own address: a host candidate, or a loopback address
  // (the server runs on this machine).
  const loopback = (a) => /^127\.|^\[::1\]:/.test(a);
  const isHost = (a) => nat.hosts.includes(a) || loopback(a);
  const hidden = !nat.hosts.length;
  if (!ps.length) return { mapping: 'unknown', status: 'warn', text: 'This server offers no STUN over UDP (listen.udp is off): nothing to ask.' };
  if (!ps.some((p) => p.answered)) {
    return { mapping: 'blocked', status: 'fail', text: 'No answer through ' + (ps.length > 1 ? 'either server address' : 'the server\'s address') +
      (nat.complete ? '' : ' within ' + secs + ' s') + ': UDP to the server is blocked or filtered on the way. Only TURN over TCP or TLS can work from here.' };
  }
  if (nat.unmatched.length && !ps.some((p) => p.seen.length)) {
    // Without a candidate's url nothing says which server saw what.
    return { mapping: 'unknown', status: 'warn', text: 'The server saw ' + [...new Set(nat.unmatched)].join(', ') +
      ', but this browser does not say through which server address (the candidate\'s url), so they cannot be compared: try a Chromium-based browser, or icegate natcheck.' };
  }
  const seen = [...new Set(ps.flatMap((p) => p.seen))];
  if (ps.every((p) => p.answered) && seen.every(isHost)) {
    const where = !seen.length ? 'this browser\'s own address (the browser adds no server-reflexive candidate equal to a host candidate)'
      : seen.join(', ') + (seen.every(loopback) ? ' (loopback: the server runs on this machine)' : ' (one of this browser\'s own addresses)');
    return { mapping: 'no-nat', status: 'ok',
      text: 'No NAT between this browser and the server: the server saw ' + where + (ps.length > 1 ? ' through both server addresses' : '') +
        '. Direct connections work as far as this side is concerned (a firewall may still filter what comes in).' };
  }
  if (ps.length === 1) {
    return { mapping: 'unknown', status: 'warn', text: 'Your address as the server sees it: ' + seen.join(', ') + '. With one server address nothing can be said about the mapping: ' +
      'it takes a second server address to compare with (the server\'s stun.alternate_address, RFC 5780). ' +
      (hidden ? 'The browser hides its own addresses, so whether there is a NAT at all does not show either.' : 'There is a NAT: that is not one of this browser\'s own addresses.') };
  }
  const [a, b] = ps;
  const eimNote = hidden ? ' (or no NAT at all: the browser hides its own addresses, so that does not show)' : '';
  const quiet = ps.find((p) => !p.answered);
  if (quiet) {
    const other = ps.find((p) => p !== quiet);
    return { mapping: 'unknown', status: 'warn', text: 'Only ' + name(other) + ' answered (' + (other.seen.join(', ') || 'no new address') + '); nothing came back through ' + name(quiet) +
      (nat.complete ? '' : ' within ' + secs + ' s') + ': a firewall on the way or at the server drops it, so the mapping cannot be told.' };
  }
  if (!a.seen.length || !b.seen.length) {
    // One server added no candidate: the browser reports an address once.
    const shown = a.seen.length ? a : b;
    return { mapping: 'endpoint-independent', status: 'ok',
      text: 'The same external address, ' + shown.seen.join(', ') + ', through both server addresses (the browser reports it once, through ' + name(shown) + '): ' +
        'endpoint-independent mapping' + eimNote + '. Direct connections are likely to work from here.' };
  }
  const common = a.seen.filter((x) => b.seen.includes(x));
  if (common.length === a.seen.length && common.length === b.seen.length) {
    return { mapping: 'endpoint-independent', status: 'ok',
      text: 'The same external address, ' + common.join(', ') + ', through both server addresses: endpoint-independent mapping' + eimNote + '. Direct connections are likely to work from here.' };
  }
  if (!common.length) {
    const ip = (x) => x.replace(/:\d+$/, '');
    const sameIP = a.seen.some((x) => b.seen.some((y) => ip(x) === ip(y)));
    return { mapping: 'dependent', status: 'warn',
      text: 'Different external ' + (sameIP ? 'ports' : 'addresses') + ': ' + a.seen.join(', ') + ' through ' + name(a) + ', ' + b.seen.join(', ') + ' through ' + name(b) +
        '. The NAT maps per destination (address- or port-dependent mapping, symmetric-like): a peer cannot reach the address a server saw, so expect calls from here to need the TURN relay.' };
  }
  return { mapping: 'mixed', status: 'warn',
    text: 'Some addresses are the same through both server addresses and some are not (' + a.seen.join(', ') + ' / ' + b.seen.join(', ') + '): several network interfaces behind different NATs. Run icegate natcheck -local ADDRESS for each.' };
}

function renderNat(nat) {
  $('#nat-probes tbody').textContent = '';
  for (const p of nat.probes) {
    let addr, via, cls = '';
    if (p.seen.length) {
      addr = p.seen.map((x) => x + (nat.hosts.includes(x) ? ' (a host address)' : /^127\.|^\[::1\]:/.test(x) ? ' (loopback)' : '')).join(', ');
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

function natLabel(mapping) {
  return { 'no-nat': 'no NAT', 'endpoint-independent': 'endpoint-independent', 'dependent': 'per destination',
    'blocked': 'UDP blocked', 'mixed': 'mixed', 'unknown': 'cannot tell' }[mapping] || mapping;
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
  const nat = await natGather(natTargets(), 8000);
  nat.verdict = natVerdict(nat);
  // Whether the hint found the same external address through two server
  // addresses (shown, or implied by the browser reporting it once).
  nat.samePort = nat.probes.length === 2 && (nat.verdict.mapping === 'endpoint-independent' || nat.verdict.mapping === 'no-nat');
  results.nat = nat;
  renderNat(nat);
  return nat;
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
  const nat = await natHint();
  const calls = await loopbackAll(4 * 1048576);
  return { gathered, nat, calls };
}

$('#run-all').onclick = () => runAll();
$('#gather').onclick = () => helloReady.then(gatherAll);
$('#nat').onclick = () => helloReady.then(natHint);
$('#loopback').onclick = () => helloReady.then(() => loopbackAll(4 * 1048576));

connect();

// ?auto=gather,nat,loopback runs the tests at load; ?room=NAME joins a room.
// window.icegate.done settles when they finish (the end-to-end test waits
// for it).
window.icegate.done = (async () => {
  const auto = (params.get('auto') || '').split(',').filter(Boolean);
  const room = params.get('room');
  if (room) $('#room').value = room;
  await helloReady;
  if (auto.includes('gather')) await gatherAll();
  if (auto.includes('nat')) await natHint();
  if (auto.includes('loopback')) await loopbackAll(+(params.get('bytes') || 4 * 1048576));
  if (room && auto.includes('room')) await joinRoom(room);
  return results;
})();
