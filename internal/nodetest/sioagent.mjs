// A socket.io-client 4.8 that a Go test drives line by line
// (nodetest.StartSIO): node sioagent.mjs URL OPTIONS_JSON. Each event the
// socket gets is printed as one JSON line {"ev":name,"args":[...]}, the
// connection as {"ev":"connect","id":…,"transport":…}; each line read is
// a JSON array emitted as it is (socket.emit(...array)), or "close",
// which disconnects and exits.
import { io } from "socket.io-client";
import readline from "node:readline";

const [url, optsJSON] = process.argv.slice(2);
const s = io(url, { forceNew: true, reconnection: false, timeout: 5000, ...JSON.parse(optsJSON || "{}") });
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
s.on("connect", () => out({ ev: "connect", id: s.id, transport: s.io.engine.transport.name }));
s.on("connect_error", (e) => out({ ev: "connect_error", args: [e.message, e.data ?? null] }));
s.on("disconnect", (reason) => out({ ev: "disconnect", args: [reason] }));
s.io.engine?.on?.("upgrade", (tr) => out({ ev: "upgrade", args: [tr.name] }));
s.onAny((ev, ...args) => out({ ev, args }));
const quit = () => {
  s.disconnect();
  setTimeout(() => process.exit(0), 50);
};
readline
  .createInterface({ input: process.stdin })
  .on("line", (line) => {
    if (line === "close") return quit();
    s.emit(...JSON.parse(line));
  })
  .on("close", quit);
