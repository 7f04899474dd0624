// Calls: relay-only calls between two peer connections in this page, and
// calls to other browsers in a room, signalled through icegate.js.
import { addRow } from './ui.js';

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

/** selectedPair reads the selected candidate pair from getStats. */
export async function selectedPair(pc) {
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

/**
 * loopbackCall connects two peer connections through the relay only, then
 * measures the data channel's round trip and throughput.
 */
export async function loopbackCall(server, bytes, results) {
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

/**
 * Room calls the other browsers in a room: the newcomer calls everyone
 * already there; offers, answers and candidates go through the signaling
 * client (icegate.js).
 */
export class Room {
  constructor(client, results, relayOnly) {
    this.client = client;
    this.results = results;
    this.relayOnly = relayOnly;
    this.pcs = new Map();
    this.name = null;
    client.on('peer-left', (m) => this.close(m.peer, 'left'));
    for (const t of ['offer', 'answer', 'candidate']) client.on(t, (m) => this.onSignal(m));
  }

  row(id) {
    const p = this.pcs.get(id);
    if (p && p.row) return p.row;
    return addRow('#peers', [id, 'new', '', '', '']);
  }

  newPeer(id, initiator) {
    const c = this.client;
    const pc = new RTCPeerConnection({ iceServers: c.iceServers, iceTransportPolicy: this.relayOnly() ? 'relay' : 'all' });
    const p = { id, pc, row: this.row(id), dc: null, queued: [] };
    this.pcs.set(id, p);
    const r = this.results.peers[id] = { id, state: 'new', connected: false };
    pc.onicecandidate = (e) => {
      c.signal('candidate', id, e.candidate ? e.candidate.toJSON() : null).catch(() => {});
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
      dc.onopen = () => dc.send('hello from ' + c.peer);
      dc.onmessage = (ev) => {
        r.message = String(ev.data);
        p.row.children[4].textContent = 'got "' + r.message + '"';
      };
    };
    if (initiator) {
      onChannel(pc.createDataChannel('chat'));
      pc.createOffer().then((o) => pc.setLocalDescription(o)).then(() => c.signal('offer', id, pc.localDescription.toJSON()))
        .catch((e) => { p.row.children[1].textContent = e.message; });
    } else {
      pc.ondatachannel = (e) => onChannel(e.channel);
    }
    return p;
  }

  async onSignal(m) {
    let p = this.pcs.get(m.from);
    if (!p) {
      if (m.type !== 'offer') return;
      p = this.newPeer(m.from, false);
    }
    const pc = p.pc;
    try {
      if (m.type === 'offer') {
        await pc.setRemoteDescription(m.data);
        await pc.setLocalDescription(await pc.createAnswer());
        this.client.signal('answer', m.from, pc.localDescription.toJSON()).catch(() => {});
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

  close(id, why) {
    const p = this.pcs.get(id);
    if (!p) return;
    p.pc.close();
    p.row.children[1].textContent = why;
    p.row.children[1].className = 'muted';
    this.pcs.delete(id);
    if (this.results.peers[id]) this.results.peers[id].state = why;
  }

  async join(name) {
    const j = await this.client.join(name);
    this.name = name;
    for (const id of j.peers) this.newPeer(id, true);
    return j;
  }

  leave() {
    if (!this.name) return;
    this.client.leave(this.name).catch(() => {});
    for (const id of [...this.pcs.keys()]) this.close(id, 'you left');
    this.name = null;
  }
}
