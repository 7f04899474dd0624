// The NAT hint's decisions, as pure functions (no DOM, no WebRTC): what
// the gathered candidates say about this browser's NAT. gather.js feeds
// them candidates; test/nat.test.js checks them with node --test.
//
// The hint asks each of the server's addresses, from one socket, what this
// browser's address looks like (RFC 5780 §4.3 tests I and III): the same
// external address through two server addresses that differ in IP and port
// is endpoint-independent mapping (RFC 4787 §4.1).
//
// Chromium reports a server-reflexive address once (a second server seeing
// the same one adds nothing) and not at all when it equals the host address
// (no NAT). So where credentials allow, each address is also asked for a
// TURN allocation over UDP: the relay candidate's related address is the
// mapped address from the Allocate response, reported per server.

/**
 * serverKey turns stun:/turn: URLs (and the url field of candidates and
 * errors) into "host port", to match them.
 */
export function serverKey(url) {
  const m = /^(stuns?|turns?):(\[[^\]]*\]|[^:?/]*)(?::(\d+))?/i.exec(url || '');
  if (!m) return '';
  const port = m[3] || (/s$/i.test(m[1]) ? '5349' : '3478');
  return m[2].replace(/^\[|\]$/g, '').toLowerCase() + ' ' + port;
}

/**
 * bareAddress removes the brackets around an IPv6 address. Chromium and
 * Safari give RTCIceCandidate.address and relatedAddress in URI form
 * ("[::1]": libwebrtc's SocketAddress::HostAsURIString), Firefox without
 * brackets; wrapping again made "[[::1]]:port", which matched no host or
 * loopback address and read as "There is a NAT".
 */
export function bareAddress(address) {
  return String(address == null ? '' : address).replace(/^\[(.*)\]$/, '$1');
}

/** ipPort writes an address and port as "192.0.2.1:3478" or "[2001:db8::1]:3478". */
export function ipPort(address, port) {
  const a = bareAddress(address);
  return (a.includes(':') ? '[' + a + ']' : a) + ':' + port;
}

/** isLoopback says whether an "address:port" (from ipPort) is a loopback address. */
export function isLoopback(at) {
  return /^127\.|^\[::1\]:|^\[::ffff:127\./i.test(at);
}

const unspecified = (a) => !a || a === '0.0.0.0' || a === '::';

/**
 * natTargets returns the stun: URLs to compare through: the server's two
 * RFC 5780 addresses from hello (nat_probe), or else its one STUN URL.
 */
export function natTargets(hello, iceServers) {
  const probe = hello && hello.nat_probe;
  if (probe && probe.length) return probe.slice();
  const own = (iceServers || []).flatMap((s) => [].concat(s.urls)).find((u) => /^stun:/.test(u));
  return own ? [own] : [];
}

/** newNat is the state one NAT hint collects into. */
export function newNat(targets, turn) {
  return {
    probes: targets.map((url) => ({ url, key: serverKey(url), mapped: [], errors: [] })),
    candidates: [], hosts: [], turn: !!turn, complete: false, unmatched: [],
  };
}

/**
 * natCandidate records one gathered candidate (the fields of an
 * RTCIceCandidate, with url: the server it came through) into nat.
 */
export function natCandidate(nat, c) {
  if (!c || c.protocol !== 'udp') return;
  const address = bareAddress(c.address);
  const related = bareAddress(c.relatedAddress);
  nat.candidates.push({ type: c.type, address, port: c.port, relatedAddress: related, relatedPort: c.relatedPort, url: c.url || '' });
  const add = (list, v) => { if (!list.includes(v)) list.push(v); };
  // Host candidates may be missing or mDNS names (.local): browsers hide
  // host addresses from pages without camera or microphone permission.
  if (c.type === 'host' && !/\.local$/i.test(address)) add(nat.hosts, ipPort(address, c.port));
  if (c.type !== 'srflx' && c.type !== 'relay') return;
  if (c.type === 'srflx' && !unspecified(related)) add(nat.hosts, ipPort(related, c.relatedPort));
  const p = nat.probes.find((x) => x.key === serverKey(c.url));
  // A relay candidate's related address is the mapped address; browsers
  // hide it (0.0.0.0) when they may not show reflexive addresses.
  const [a, port] = c.type === 'srflx' ? [address, c.port] : [related, c.relatedPort];
  if (!p) {
    if (!unspecified(a)) nat.unmatched.push(ipPort(a, port));
    return;
  }
  if (unspecified(a) || !port) return;
  const at = ipPort(a, port);
  const m = p.mapped.find((x) => x.at === at);
  if (!m) p.mapped.push({ at, via: c.type === 'srflx' ? 'server-reflexive candidate' : 'TURN allocation (relay candidate\'s related address)' });
  else if (c.type === 'relay') m.via += ' and TURN allocation';
}

/** natError records an icecandidateerror ({url, code, text}) against its server. */
export function natError(nat, e) {
  const p = nat.probes.find((x) => x.key === serverKey(e.url));
  if (p) p.errors.push({ url: e.url, code: e.code, text: e.text });
}

/**
 * natVerdict says what the mapped addresses mean, only as far as they
 * show: {mapping, status, text}. It also fills each probe's seen, silent
 * and answered.
 */
export function natVerdict(nat) {
  const ps = nat.probes;
  const secs = Math.round((nat.elapsed || 0) / 1000);
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
  const isHost = (a) => nat.hosts.includes(a) || isLoopback(a);
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
      : seen.join(', ') + (seen.every(isLoopback) ? ' (loopback: the server runs on this machine)' : ' (one of this browser\'s own addresses)');
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

/** natLabel is the short word for a mapping in the verdict table. */
export function natLabel(mapping) {
  return { 'no-nat': 'no NAT', 'endpoint-independent': 'endpoint-independent', 'dependent': 'per destination',
    'blocked': 'UDP blocked', 'mixed': 'mixed', 'unknown': 'cannot tell' }[mapping] || mapping;
}

/** seenNote says what an address the server saw is: one of the browser's own, or loopback. */
export function seenNote(nat, at) {
  return nat.hosts.includes(at) ? ' (a host address)' : isLoopback(at) ? ' (loopback)' : '';
}
