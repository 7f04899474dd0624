// The verdicts' decisions, as pure functions (no DOM, no WebRTC): what a
// gathering result means, what to say when the page cannot test TURN, and
// how to show the relay's decisions. test/verdict.test.js checks them with
// node --test.

/** kindOf names what a URL tests: STUN, TURN/UDP, TURN/TCP or TURNS. */
export function kindOf(url) {
  if (/^stun:/.test(url)) return 'STUN';
  if (/^turns:/.test(url)) return 'TURNS';
  if (/transport=tcp/.test(url)) return 'TURN/TCP';
  return 'TURN/UDP';
}

/** formatPriority splits an ICE priority (RFC 8445 §5.1.2.1) into type | local | component. */
export function formatPriority(p) {
  return (p >>> 24) + ' | ' + ((p >>> 8) & 0xffff) + ' | ' + (p & 0xff);
}

// Rules whose denials a working call produces by itself: ICE pairs every
// candidate of one peer with every candidate of the other, so a peer's
// relay asks for permissions towards the other peer's private host
// addresses, which the relay's policy refuses (RFC 8656 §9: the server
// may refuse a permission by policy). The call goes on over another pair.
const privateRules = new Set(['rfc1918', 'ipv6-ula', 'ipv6-link-local', 'link-local', 'ipv6-site-local', 'cgnat', 'loopback', 'ipv6-loopback']);

/** denialRule returns the rule a permission-denied decision names ("deny 10.0.0.5: rule rfc1918"), or ''. */
export function denialRule(e) {
  const m = /\brule ([a-z0-9-]+)/.exec((e && e.detail) || '');
  return m ? m[1] : '';
}

/**
 * expectedDenial says whether a relay decision is the expected refusal of
 * a peer's private address (not a failure of anything).
 */
export function expectedDenial(e) {
  return !!e && e.kind === 'permission-denied' && privateRules.has(denialRule(e));
}

/** The one explanation shown with the first expected denial. */
export const expectedDenialNote = 'Expected, not a failure: ICE tries every pair of candidates, so your relay is asked to reach the other browser\'s private (host) addresses too, and the relay\'s peer policy refuses private networks (policy.presets). The call uses another pair: see the selected pair above.';

/** decisionView says how to show one relay decision: {label, cls}; cls "calm" for expected denials. */
export function decisionView(e) {
  const label = { 'authenticated': 'authenticated', 'auth-refused': 'credential refused', 'allocation-created': 'allocation created',
    'allocation-deleted': 'allocation deleted', 'permission-denied': 'permission denied', 'refused': 'refused' }[e.kind] || e.kind;
  if (expectedDenial(e)) return { label: label + ' (expected)', cls: 'calm' };
  return { label, cls: /refused|denied/.test(e.kind) ? 'fail' : 'ok' };
}

/**
 * explain turns a gathering result into a verdict: [status, ms or null,
 * text]. all is every result of the run (a STUN row may lean on a TURN
 * one); ctx holds decisions (the relay's, as seen so far) and selfSigned
 * (the server's turns: certificate is self-signed).
 */
export function explain(r, all, ctx = {}) {
  const secs = Math.round((r.elapsed || 0) / 1000);
  const codes = r.errors.map((e) => e.code);
  const refused = (ctx.decisions || []).filter((d) => (d.kind === 'auth-refused' || d.kind === 'refused' || d.kind === 'permission-denied') && !expectedDenial(d));
  const serverSays = refused.length ? ' The server says: ' + refused.map((d) => d.kind + (d.detail ? ' (' + d.detail + ')' : '')).join('; ') + '.' : '';
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
  if (r.kind === 'TURNS' && ctx.selfSigned) {
    return ['fail', null, 'The server has a self-signed certificate (tls.cert_file is not set); browsers refuse turns: with it. Configure a real certificate for the host name in the URL.'];
  }
  if (codes.includes(701)) {
    return ['fail', null, 'Could not reach the server over ' + (r.kind === 'TURN/UDP' ? 'UDP' : 'TCP') + ' (701): a firewall blocks the port, or the host name does not resolve.' + serverSays];
  }
  if (serverSays) return ['fail', null, 'No relay candidate.' + serverSays];
  return ['fail', null, 'No relay candidate within ' + secs + ' s and no error: the ' + (r.kind === 'TURN/UDP' ? 'UDP' : 'TCP') + ' port is probably blocked on the way.'];
}

/**
 * turnURLs suggests the TURN URLs of the server a stun: URL names, for a
 * user who brings a static user's password.
 */
export function turnURLs(stunURL) {
  const m = /^stun:(.*)$/.exec(stunURL || '');
  if (!m) return [];
  return ['turn:' + m[1] + '?transport=udp', 'turn:' + m[1] + '?transport=tcp'];
}

/**
 * noCredentials returns the verdict rows that stand for the TURN tests the
 * page cannot run: the server said in hello that it mints no credentials
 * (server.credentials false: static users only, no auth.secrets). Empty
 * when it can, or when the user brought TURN servers of their own.
 * Each row: {kind, url, status, text}.
 */
export function noCredentials(hello, servers) {
  if (!hello || !hello.server || hello.server.credentials !== false) return [];
  if ((servers || []).some((s) => /^turns?:/.test(s.urls))) return [];
  const stun = (hello.ice_servers || []).flatMap((s) => [].concat(s.urls)).find((u) => /^stun:/.test(u));
  const urls = turnURLs(stun);
  const example = urls.length ? urls[0] : 'turn:HOST:3478?transport=udp';
  return [{
    kind: 'TURN', url: '', status: 'warn',
    text: 'Not tested: this relay has only static users (auth.user blocks) and no shared secret (auth.secrets), so this page cannot mint TURN credentials for itself. ' +
      'To test TURN, add its URL with a static user\'s name and password under "ICE servers" below (' + example + (urls[1] ? ', and ' + urls[1] : '') + ') and run the tests again, ' +
      'or give the server a shared secret (auth.secrets) so that it mints them.',
  }];
}
