// What a page that loads <script src="/socket.io/socket.io.js"> gets
// (sioclient_test.go): node sioscript.mjs URL. It fetches the script from
// the server, runs it as a classic script in a fresh global (a vm
// context, as a browser window would: no require, no module), checks it
// defined io, and uses that io over WebSocket (the npm ws package stands
// in for the browser's WebSocket) to join a room. Prints "ok".
import vm from "node:vm";
import WebSocket from "ws";

const url = process.argv[2];
function fail(msg) {
  console.log("FAIL " + msg);
  process.exit(1);
}
setTimeout(() => fail("timeout"), 10000).unref();

const resp = await fetch(url + "/socket.io/socket.io.js");
if (resp.status !== 200) fail("GET /socket.io/socket.io.js: " + resp.status);
const src = await resp.text();
const window = { WebSocket, setTimeout, clearTimeout, setInterval, clearInterval, console };
window.window = window;
window.self = window;
vm.createContext(window);
vm.runInContext(src, window, { filename: "socket.io.js" });
if (typeof window.io !== "function") fail("the script did not define io: " + typeof window.io);

const s = window.io(url, { transports: ["websocket"], reconnection: false, forceNew: true });
s.on("connect_error", (e) => fail("connect_error " + e.message));
s.on("joined", (room, id) => {
  if (room !== "page-room" || id !== s.id) fail(`joined ${room} ${id}, want page-room ${s.id}`);
  s.disconnect();
  console.log("ok");
  process.exit(0);
});
s.on("connect", () => s.emit("join", "page-room"));
