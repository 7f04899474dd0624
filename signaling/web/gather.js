// Candidate gathering in the browser: one peer connection per URL for the
// verdicts, and one for the NAT hint. What the results mean is decided in
// verdict.js and nat.js.
import { addRow, t0 } from './ui.js';
import { kindOf, formatPriority } from './verdict.js';
import { newNat, natCandidate, natError, bareAddress } from './nat.js';

/** gatherOne gathers against one server and resolves with what happened. */
export function gatherOne(server, showHost, timeout) {
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
        address: bareAddress(c.address), port: c.port, priority: c.priority, relayProtocol: c.relayProtocol || '',
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

/**
 * natGather gathers once against every target, from one peer connection
 * (Chromium sends every STUN and TURN request of a network interface from
 * one shared socket; separate connections would use separate sockets, and
 * so separate mappings), and, with credentials, a TURN/UDP allocation at
 * the same address. nat.js sorts what came back by server.
 */
export function natGather(targets, own, timeout) {
  const cred = own.find((s) => s.username && [].concat(s.urls).some((u) => /^turn:.*transport=udp/.test(u)));
  const nat = newNat(targets, cred);
  const iceServers = [];
  for (const p of nat.probes) {
    iceServers.push({ urls: p.url });
    if (cred) iceServers.push({ urls: 'turn:' + p.url.replace(/^stun:/, '') + '?transport=udp', username: cred.username, credential: cred.credential });
  }
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
    pc.onicecandidate = (e) => {
      if (!e.candidate) { finish(true); return; }
      const c = e.candidate;
      if (!c.candidate) return;
      natCandidate(nat, { type: c.type, protocol: c.protocol, address: c.address, port: c.port,
        relatedAddress: c.relatedAddress, relatedPort: c.relatedPort, url: c.url || e.url || '' });
    };
    pc.onicecandidateerror = (e) => natError(nat, { url: e.url, code: e.errorCode, text: e.errorText });
    pc.createDataChannel('nat');
    await pc.setLocalDescription(await pc.createOffer());
    setTimeout(() => finish(false), timeout);
  });
}
