// Drives the real npm socket.io-client (4.8, tools/sioconformance's lock
// file) against a server a Go test started (sio_test.go): node
// sioclient.mjs URL SCENARIO TRANSPORTS. Prints "ok" and exits 0 when the
// scenario ran as expected, else prints what went wrong and exits 1.
import { io } from "socket.io-client";

const [url, scenario, transports, token] = process.argv.slice(2);
// Room names of their own per run, so runs against one server do not meet.
const R = (n) => n + "-" + (transports || "default");
const opts = { forceNew: true, reconnection: false, timeout: 5000 };
if (transports === "polling") opts.transports = ["polling"];
if (transports === "websocket") opts.transports = ["websocket"];
if (transports === "upgrade") opts.transports = ["polling", "websocket"];

function fail(msg) {
  console.log("FAIL " + msg);
  process.exit(1);
}
setTimeout(() => fail("timeout in " + scenario + " waiting for " + waiting), 15000).unref();

// client opens a socket that records every event it gets.
function client(extra = {}) {
  const s = io(url, { ...opts, ...extra });
  s.log = [];
  s.onAny((name, ...args) => s.log.push([name, ...args]));
  return s;
}
// next resolves with the arguments of the next event name on s (or one
// already received and not yet taken).
let waiting = "";
function next(s, name) {
  waiting = name;
  return new Promise((resolve) => {
    const i = s.log.findIndex((e) => e[0] === name);
    if (i >= 0) return resolve(s.log.splice(i, 1)[0].slice(1));
    const h = (n, ...args) => {
      if (n !== name) return;
      s.offAny(h);
      const j = s.log.findIndex((e) => e[0] === name);
      if (j >= 0) s.log.splice(j, 1);
      resolve(args);
    };
    s.onAny(h);
  });
}
function connected(s) {
  return new Promise((resolve, reject) => {
    if (s.connected) return resolve();
    s.once("connect", resolve);
    s.once("connect_error", reject);
  });
}
function eq(a, b, what) {
  if (JSON.stringify(a) !== JSON.stringify(b)) fail(`${what}: got ${JSON.stringify(a)}, want ${JSON.stringify(b)}`);
}

async function rooms() {
  const a = client(), b = client(), c = client();
  await Promise.all([connected(a), connected(b), connected(c)]);
  const [ice] = await next(a, "ice-servers");
  if (!Array.isArray(ice.iceServers) || ice.iceServers.length === 0) fail("ice-servers: " + JSON.stringify(ice));
  a.emit("join", R("r1"));
  eq(await next(a, "joined"), [R("r1"), a.id], "a joined");
  const ack = await b.emitWithAck("join", R("r1"));
  if (ack.type !== "joined") fail("join ack " + JSON.stringify(ack));
  eq(await next(b, "joined"), [R("r1"), b.id], "b joined");
  eq(await next(a, "otherjoin"), [R("r1"), b.id], "a sees b");
  c.emit("join", R("r1"));
  eq(await next(c, "full"), [R("r1"), c.id], "c full");
  const full = await c.emitWithAck("join", R("r1"));
  if (full.type !== "error" || full.code !== "room-full") fail("full ack " + JSON.stringify(full));
  const sent = await a.emitWithAck("message", R("r1"), { sdp: "x", n: 1 });
  if (sent.type !== "ack" || sent.delivered !== 1) fail("message ack " + JSON.stringify(sent));
  eq(await next(b, "message"), [R("r1"), { sdp: "x", n: 1 }], "b got the message");
  b.emit("leave", R("r1"));
  eq(await next(b, "leaved"), [R("r1"), b.id], "b leaved");
  eq(await next(a, "bye"), [R("r1"), b.id], "a bye on leave");
  const notIn = await b.emitWithAck("message", R("r1"), "x");
  if (notIn.code !== "not-in-room") fail("message after leave " + JSON.stringify(notIn));
  c.emit("join", R("r1"));
  eq(await next(c, "joined"), [R("r1"), c.id], "c joined after b left");
  eq(await next(a, "otherjoin"), [R("r1"), c.id], "a sees c");
  const unknown = await a.emitWithAck("no-such-event", 1);
  if (unknown.code !== "unknown-type") fail("unknown event ack " + JSON.stringify(unknown));
  const again = await a.emitWithAck("ice-servers");
  if (!Array.isArray(again.iceServers)) fail("ice-servers on request " + JSON.stringify(again));
  const cid = c.id;
  c.disconnect();
  eq(await next(a, "bye"), [R("r1"), cid], "a bye on disconnect");
  a.disconnect();
  b.disconnect();
}

async function codelab() {
  const a = client(), b = client(), c = client();
  await Promise.all([connected(a), connected(b), connected(c)]);
  a.emit("create or join", R("lab"));
  eq(await next(a, "created"), [R("lab"), a.id], "a created");
  const [log] = await next(a, "log");
  if (!Array.isArray(log) && typeof log !== "string") fail("log " + JSON.stringify(log));
  b.emit("create or join", R("lab"));
  eq(await next(b, "joined"), [R("lab"), b.id], "b joined");
  eq(await next(a, "join"), [R("lab")], "a told of b");
  c.emit("create or join", R("lab"));
  eq(await next(c, "full"), [R("lab")], "c full");
  a.emit("message", { type: "offer", sdp: "v=0" });
  eq(await next(b, "message"), [{ type: "offer", sdp: "v=0" }], "b got the offer");
  b.emit("message", "got user media");
  eq(await next(a, "message"), ["got user media"], "a got b's message");
  b.emit("bye", R("lab"));
  eq(await next(a, "bye"), [R("lab"), b.id], "a bye");
  a.disconnect();
  b.disconnect();
  c.disconnect();
}

async function tokens() {
  const bad = client();
  const err = await new Promise((resolve) => bad.once("connect_error", resolve));
  if (!err.data || err.data.code !== "bad-token") fail("no token: " + JSON.stringify(err.data) + " " + err.message);
  bad.close();
  const good = client({ auth: { token } });
  await connected(good);
  good.emit("join", R("t1"));
  eq(await next(good, "joined"), [R("t1"), good.id], "joined with a token");
  good.disconnect();
  const q = client({ query: { token } });
  await connected(q);
  q.disconnect();
}

// mixed: a polling-only client and a websocket-only client in one room.
async function mixed() {
  const a = client({ transports: ["polling"] }), b = client({ transports: ["websocket"] });
  await Promise.all([connected(a), connected(b)]);
  a.emit("join", R("mix"));
  await next(a, "joined");
  b.emit("join", R("mix"));
  await next(b, "joined");
  for (let i = 0; i < 20; i++) {
    a.emit("message", R("mix"), i);
    eq(await next(b, "message"), [R("mix"), i], "b got " + i);
    b.emit("message", R("mix"), -i);
    eq(await next(a, "message"), [R("mix"), -i], "a got " + i);
  }
  if (a.io.engine.transport.name !== "polling" || b.io.engine.transport.name !== "websocket") fail("transports");
  a.disconnect();
  b.disconnect();
}

// upgraded: the default client ends on WebSocket after starting polling.
async function upgraded() {
  const a = client();
  await connected(a);
  await new Promise((resolve) => {
    if (a.io.engine.transport.name === "websocket") return resolve();
    a.io.engine.once("upgrade", resolve);
  });
  a.emit("join", R("up"));
  eq(await next(a, "joined"), [R("up"), a.id], "joined after the upgrade");
  a.disconnect();
}

const scenarios = { rooms, codelab, tokens, mixed, upgraded };
try {
  await scenarios[scenario]();
  // Let the disconnects reach the server before the process ends.
  setTimeout(() => {
    console.log("ok");
    process.exit(0);
  }, 200);
} catch (e) {
  fail(scenario + ": " + (e && e.stack ? e.stack : e));
}
