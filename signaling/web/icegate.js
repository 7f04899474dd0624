// icegate.js: a small client for icegate's signaling WebSocket (/ws), as an
// ES module with no dependencies. The protocol is docs/signaling.md; this
// file is served by icegate itself at /icegate.js.
//
//   import { connect } from '/icegate.js';
//   const ig = connect('/ws', { token });
//   const hello = await ig.ready;                 // peer id, iceServers, limits
//   ig.on('message', (m) => console.log(m.from, m.data));
//   await ig.join('call-42');
//   const ack = await ig.send(peerId, { chat: 'hi' });   // resolves on ack
//
// What it takes care of:
//   - every request carries an id; its promise resolves with the server's
//     answer (ack, joined, left, pong) and rejects with an IcegateError
//     carrying the error's code;
//   - after a dropped connection it reconnects with backoff and resumes
//     (?resume=TOKEN&last=SEQ): the server replays what this client missed,
//     and messages whose seq it has seen already are dropped, so nothing
//     acknowledged is lost and nothing is delivered twice. Requests made
//     while disconnected wait and go out after the resume;
//   - a resume the server refuses (resume_error: the grace ran out) makes
//     a new peer: the 'new-peer' event tells the application to rejoin;
//   - with a getToken hook, a fresh token goes out (auth) before
//     token_expires ends the session.

/** Error codes this client adds to the server's (docs/signaling.md). */
export const ClientCodes = Object.freeze({
  // The connection dropped after the request went out and no answer came
  // back after the resume: it may or may not have been delivered.
  CONNECTION_LOST: 'connection-lost',
  // The session could not be resumed: this client is a new peer now.
  NEW_PEER: 'new-peer',
  // close() was called, or the server ended the session for good.
  CLOSED: 'closed',
  // No answer within the request timeout.
  TIMEOUT: 'timeout',
});

/** IcegateError is what a request's promise rejects with. */
export class IcegateError extends Error {
  constructor(code, message, msg) {
    super(code + ': ' + message);
    this.name = 'IcegateError';
    /** The server's error code (room-full, no-such-peer, …) or one of ClientCodes. */
    this.code = code;
    /** The server's error message, when there is one. */
    this.msg = msg || null;
  }
}

// Close codes after which reconnecting is wrong (docs/signaling.md, close
// codes): 1000 the peer left, 4000 another connection took the session
// over, 4001 the token expired, 4100-4999 the application's backend
// disconnected it.
const finalClose = (code) => code === 1000 || code === 4000 || code === 4001 || (code >= 4100 && code <= 4999);
// 1012: the cluster lost the session; connect again as a new peer.
const sessionLost = (code) => code === 1012;

/**
 * backoffDelay is the wait before reconnect attempt n (1, 2, …): doubling
 * from min up to max, with the upper half jittered so that a server restart
 * does not bring every client back in the same millisecond.
 */
export function backoffDelay(n, min = 250, max = 5000, random = Math.random) {
  const d = Math.min(max, min * 2 ** Math.max(0, n - 1));
  return Math.round(d / 2 + (d / 2) * random());
}

/** tokenExpiry reads a JWT's exp claim (Unix seconds), or null. */
export function tokenExpiry(token) {
  try {
    const part = String(token).split('.')[1];
    const json = JSON.parse(atob(part.replace(/-/g, '+').replace(/_/g, '/')));
    return typeof json.exp === 'number' ? json.exp : null;
  } catch {
    return null;
  }
}

/** wsURL resolves url (absolute, or relative to the page) to a ws: or wss: URL. */
export function wsURL(url, base) {
  const u = new URL(url || '/ws', base || (typeof location !== 'undefined' ? location.href : undefined));
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  return u;
}

/**
 * connect opens a client for icegate's /ws. url is absolute or relative to
 * the page ('/ws' by default). Options:
 *   token       the JSON Web Token, sent as ?token=
 *   getToken    async () => a fresh token, asked before token_expires
 *   renewBefore seconds before token_expires to ask getToken (default 60)
 *   WebSocket   the WebSocket constructor (default globalThis.WebSocket)
 *   backoff     { min, max } reconnect delays in ms (default 250, 5000)
 *   retries     reconnect attempts in a row before giving up (default: no end)
 *   timeout     ms a request waits for its answer (default 15000; 0: none)
 *   heartbeat   false to send no ping of its own; by default a ping goes
 *               out every ping_interval and a missing pong counts as a
 *               dropped connection, which browsers may not notice
 *   pongTimeout ms to wait for that pong (default 10000)
 */
export function connect(url, options = {}) {
  return new IcegateClient(url, options);
}

/** IcegateClient is one peer's session with the signaling server. */
export class IcegateClient extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.url = wsURL(url, options.base);
    this.options = options;
    this.token = options.token || '';
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    /** 'connecting', 'open', 'reconnecting' or 'closed'. */
    this.state = 'connecting';
    /** The last hello; this peer's id, its rooms and iceServers. */
    this.hello = null;
    this.peer = null;
    this.iceServers = [];
    this.resumeToken = null;
    /** The last seq received from the current peer's session. */
    this.lastSeq = 0;
    this.attempt = 0;
    this.nextId = 1;
    this.ws = null;
    this.live = false; // a hello arrived on this.ws
    this.pending = new Map(); // id -> {resolve, reject, timer, sentOn}
    this.queue = []; // requests made while not live: {msg, entry}
    this.timers = new Set();
    this.ready = new Promise((resolve, reject) => { this._ready = { resolve, reject }; });
    this.ready.catch(() => {}); // a closed client rejects it; do not warn when unused
    this._open();
  }

  /** on adds a listener for an event's detail and returns a function that removes it. */
  on(type, fn) {
    const h = (e) => fn(e.detail, e);
    this.addEventListener(type, h);
    return () => this.removeEventListener(type, h);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this._emit('state', s);
  }

  _later(fn, ms) {
    const t = setTimeout(() => { this.timers.delete(t); fn(); }, ms);
    this.timers.add(t);
    return t;
  }

  _clear(t) {
    if (t == null) return;
    clearTimeout(t);
    this.timers.delete(t);
  }

  _open() {
    const u = new URL(this.url);
    if (this.token) u.searchParams.set('token', this.token);
    if (this.resumeToken) {
      u.searchParams.set('resume', this.resumeToken);
      u.searchParams.set('last', String(this.lastSeq));
    }
    let ws;
    try {
      ws = new this.WebSocket(u.toString());
    } catch (e) {
      this._dropped(ws, 1006, String(e.message || e));
      return;
    }
    this.ws = ws;
    this.live = false;
    ws.onmessage = (ev) => { if (ws === this.ws) this._onMessage(ev.data); };
    ws.onclose = (ev) => this._dropped(ws, ev.code, ev.reason);
    // A close event follows an error, except in some WebSocket
    // implementations (Node 20's) when the connection fails before the
    // handshake: drop it here then, a moment later so a close event with
    // its code comes first where there is one.
    ws.onerror = () => this._later(() => this._dropped(ws, 1006, 'connection failed'), 100);
  }

  _onMessage(text) {
    let m;
    try { m = JSON.parse(text); } catch { return; }
    if (!m || typeof m !== 'object') return;
    if (m.type === 'hello') { this._onHello(m); return; }
    if (typeof m.seq === 'number') {
      // A resume replays from the last seq this client gave; anything it
      // has seen already is dropped so nothing is delivered twice.
      if (m.seq <= this.lastSeq) return;
      this.lastSeq = m.seq;
    }
    this._heard();
    if (m.id != null && this._settle(m)) {
      if (m.type !== 'error') this._emit(m.type, m);
      return;
    }
    if (m.type === 'ice-servers') {
      this.iceServers = m.ice_servers || [];
      this._emit('ice-servers', { iceServers: this.iceServers, expires: m.expires || null, ttl: m.ttl || 0 });
      return;
    }
    this._emit(m.type, m);
  }

  _onHello(m) {
    const previous = this.peer;
    const wasResume = !!this.resumeToken;
    this.hello = m;
    this.peer = m.peer;
    this.resumeToken = m.resume_token || null;
    this.iceServers = m.ice_servers || [];
    this.attempt = 0;
    this.live = true;
    this._heard();
    if (!m.resumed) {
      // A new peer numbers its messages from 1 again: an earlier peer's
      // seq must not be sent as "last" when this one resumes.
      this.lastSeq = 0;
      if (wasResume && previous) {
        // What was waiting belonged to the old peer: its rooms are gone,
        // so the application decides what to redo.
        this._failAll(ClientCodes.NEW_PEER, 'the session could not be resumed (' + (m.resume_error || 'new peer') + '): rejoin rooms');
      }
    }
    this._setState('open');
    this._emit('hello', m);
    this._emit('ice-servers', { iceServers: this.iceServers, expires: m.expires || null, ttl: m.ttl || 0 });
    if (m.resumed) this._emit('resumed', { peer: m.peer, gap: !!(m.replay && m.replay.gap), rooms: m.rooms || [] });
    else if (previous) this._emit('new-peer', { previous, peer: m.peer, reason: m.resume_error || '' });
    this._scheduleAuth(m.token_expires);
    this._scheduleHeartbeat(m.ping_interval);
    this._ready.resolve(m);
    // Requests sent on the dropped connection: an answer the server had
    // logged came in the replay (before anything newer); what is still
    // unanswered after a ping round trip never reached the server or was
    // lost with the connection, so its outcome is unknown.
    const stale = [...this.pending].filter(([, p]) => p.sentOn !== this.ws).map(([id]) => id);
    if (stale.length) {
      this._request({ type: 'ping' }, true).then(() => {
        for (const id of stale) this._reject(id, ClientCodes.CONNECTION_LOST, 'the connection dropped before an answer came: the message may or may not have been delivered');
      }, () => {});
    }
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) this._write(q.msg, q.entry);
  }

  _settle(m) {
    const p = this.pending.get(m.id);
    if (!p) return false;
    this.pending.delete(m.id);
    this._clear(p.timer);
    if (m.type === 'error') p.reject(new IcegateError(m.code, m.error || m.code, m));
    else p.resolve(m);
    return true;
  }

  _reject(id, code, text) {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    this._clear(p.timer);
    p.reject(new IcegateError(code, text));
  }

  _failAll(code, text) {
    for (const id of [...this.pending.keys()]) this._reject(id, code, text);
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) {
      this._clear(q.entry.timer);
      q.entry.reject(new IcegateError(code, text));
    }
  }

  _dropped(ws, code, reason) {
    if (ws && ws !== this.ws) return; // an older connection, already replaced
    this.ws = null;
    this.live = false;
    this._clear(this.heartbeat);
    this._clear(this.authTimer);
    if (this.state === 'closed') return;
    if (finalClose(code)) {
      this._end(code, reason);
      return;
    }
    if (sessionLost(code)) {
      // The server says the session is gone: resuming is pointless.
      this.resumeToken = null;
      this.lastSeq = 0;
      this._failAll(ClientCodes.NEW_PEER, 'the server lost the session (' + code + '): rejoin rooms');
    }
    this.attempt++;
    if (this.attempt > (this.options.retries ?? Infinity)) {
      this._end(code, 'gave up after ' + (this.attempt - 1) + ' attempts' + (reason ? ': ' + reason : ''));
      return;
    }
    const b = this.options.backoff || {};
    const delay = backoffDelay(this.attempt, b.min, b.max);
    this._setState('reconnecting');
    this._emit('reconnecting', { attempt: this.attempt, delay, code, reason: reason || '', everConnected: !!this.hello });
    this._later(() => { if (this.state !== 'closed') this._open(); }, delay);
  }

  _end(code, reason) {
    if (this.state === 'closed') return;
    this._setState('closed');
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this._failAll(ClientCodes.CLOSED, 'the session ended (' + code + (reason ? ' ' + reason : '') + ')');
    this._ready.reject(new IcegateError(ClientCodes.CLOSED, 'closed before hello'));
    this._emit('closed', { code, reason: reason || '' });
  }

  _heard() {
    this.lastHeard = Date.now();
  }

  _scheduleHeartbeat(interval) {
    this._clear(this.heartbeat);
    if (this.options.heartbeat === false || !interval) return;
    const ws = this.ws;
    this.heartbeat = this._later(() => {
      if (ws !== this.ws) return;
      const t = this._later(() => {
        // No pong: the connection is dead though the browser has not
        // noticed. 3000 is not 1000/1001, so the server holds the session.
        if (ws === this.ws) { try { ws.close(3000, "no pong"); } catch { /* closed already */ } this._dropped(ws, 3000, "no pong"); }
      }, this.options.pongTimeout ?? 10000);
      this._request({ type: 'ping' }, true).then(() => { this._clear(t); this._scheduleHeartbeat(interval); }, () => this._clear(t));
    }, interval * 1000);
  }

  _scheduleAuth(expires) {
    this._clear(this.authTimer);
    if (!expires) return;
    const exp = Date.parse(expires);
    const before = (this.options.renewBefore ?? 60) * 1000;
    const wait = Math.max(0, exp - Date.now() - before);
    this.authTimer = this._later(() => this._renewToken(), wait);
  }

  async _renewToken() {
    if (!this.options.getToken) {
      this._emit('token-expiring', { expires: this.hello && this.hello.token_expires });
      return;
    }
    try {
      const token = await this.options.getToken();
      await this._request({ type: 'auth', token });
      this.token = token; // reconnects use the fresh one
      const exp = tokenExpiry(token);
      this._emit('token', { expires: exp ? new Date(exp * 1000).toISOString() : null });
      if (exp) this._scheduleAuth(new Date(exp * 1000).toISOString());
    } catch (e) {
      this._emit('token-error', { error: e });
    }
  }

  _write(msg, entry) {
    if (!this.live || !this.ws) {
      this.queue.push({ msg, entry });
      return;
    }
    entry.sentOn = this.ws;
    this.pending.set(msg.id, entry);
    try {
      this.ws.send(JSON.stringify(msg));
    } catch {
      // The close event follows; the entry is settled by the resume.
    }
  }

  // _request sends msg with a fresh id; the promise settles on its answer.
  // urgent skips the queue (a ping that only makes sense now).
  _request(msg, urgent) {
    if (this.state === 'closed') return Promise.reject(new IcegateError(ClientCodes.CLOSED, 'the client is closed'));
    msg = { ...msg, id: this.nextId++ };
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, timer: null, sentOn: null };
      const timeout = this.options.timeout ?? 15000;
      if (timeout > 0) {
        entry.timer = this._later(() => {
          this.pending.delete(msg.id);
          this.queue = this.queue.filter((q) => q.entry !== entry);
          reject(new IcegateError(ClientCodes.TIMEOUT, 'no answer to ' + msg.type + ' in ' + timeout + ' ms'));
        }, timeout);
      }
      if (urgent && (!this.live || !this.ws)) {
        this._clear(entry.timer);
        reject(new IcegateError(ClientCodes.CONNECTION_LOST, 'not connected'));
        return;
      }
      this._write(msg, entry);
    });
  }

  /** request sends any client message with an id and resolves with the server's answer. */
  request(msg) { return this._request(msg); }

  /** join enters a room; resolves with joined ({peers, members, max_peers}). */
  join(room, { maxPeers } = {}) {
    const m = { type: 'join', room };
    if (maxPeers) m.max_peers = maxPeers;
    return this._request(m);
  }

  /** leave leaves a room; resolves with left. */
  leave(room) { return this._request({ type: 'leave', room }); }

  /**
   * send sends data to one peer, as type 'message' unless opts.type says
   * offer, answer or candidate; resolves with the ack ({held: true} when
   * the peer is reconnecting and gets it when it is back).
   */
  send(to, data, { type = 'message', room } = {}) {
    const m = { type, to, data };
    if (room) m.room = room;
    return this._request(m);
  }

  /** signal sends an offer, answer or candidate to a peer. */
  signal(type, to, data) { return this.send(to, data, { type }); }

  /** broadcast sends data to the rest of a room; the ack counts delivered and dropped. */
  broadcast(room, data) { return this._request({ type: 'broadcast', room, data }); }

  /** renew asks for fresh TURN credentials now; they come as an 'ice-servers' event. */
  renew() {
    if (this.live && this.ws) this.ws.send(JSON.stringify({ type: 'renew' }));
  }

  /** turnEvents asks to see the relay's decisions about this peer's credentials ('turn' events). */
  turnEvents(on = true) { return this._request({ type: 'turn-events', on }); }

  /** ping is an application round trip; resolves with the pong. */
  ping() { return this._request({ type: 'ping' }); }

  /**
   * close leaves every room and ends the session (bye, then close 1000):
   * nothing resumes it. Waiting requests reject with code 'closed'.
   */
  async close() {
    if (this.state === 'closed') return;
    const ws = this.ws;
    if (this.live && ws) {
      const bye = this._request({ type: 'bye' });
      await Promise.race([bye.catch(() => {}), new Promise((r) => this._later(r, 1000))]);
    }
    if (ws) { try { ws.close(1000, 'bye'); } catch { /* closed already */ } }
    this.ws = null;
    this._end(1000, 'closed by the client');
  }
}
