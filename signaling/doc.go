// Package signaling owns icegate's HTTP side: the WebSocket signaling server
// (rooms, peers, directed and broadcast messages with delivery feedback,
// resume after a dropped connection), the TURN credentials it hands out, the
// classic-tutorial protocol on /ws/simple, the credential API (/api/turn,
// /api/ice-servers), the server API for an application's backend
// (/api/v1/, api.go: push, disconnect, listings, all through the Bus), and
// the embedded test page.
//
// The data path of a message is: GET /ws → origin and token checks before the
// upgrade → read limit → hello (peer id, iceServers) → one read loop per
// connection that parses and validates each message → the hub routes it →
// the target peer's bounded outbox (never blocks the sender; a full one
// disconnects the slow reader) → one writer goroutine per connection, with
// write deadlines and pings. Accept is the connection-level entry point:
// tests drive it over net.Pipe without an HTTP server, as derp's Accept.
//
// The session code (session.go, handle.go, simple.go, server.go) sees a
// connection only as a Transport (transport.go): frames in, frames out, a
// close with a code. gorilla/websocket is imported only by its Transport
// (transport_ws.go) and the HTTP upgrade (http.go), which a test pins, so
// another transport can take its place (issue 12).
//
// A Server is built from Config, a plain struct whose zero settings mean
// their defaults; cmd/icegate translates the config file into it, and this
// package never sees the file's schema (internal/layers pins that).
//
// docs/signaling.md specifies the protocol with an example of each message.
package signaling
