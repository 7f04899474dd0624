package signaling

import "strconv"

// protocol is one wire format served on the session core: /ws (wsProto),
// /ws/simple (simpleProto), socket.io (to come). A protocol translates the
// client's frames into session calls (join, send, broadcast: the bus does
// the room logic) and the session's logged messages, which are /ws JSON
// objects (docs/signaling.md), into its own frames. It holds no room
// state of its own beyond what it needs to speak (a login name, say).
type protocol interface {
	// resumable reports whether a session of this protocol is held for
	// resume_grace after its connection drops (and so has a resume token);
	// otherwise it ends with the connection.
	resumable() bool
	// greet returns what to send when the connection opens, given the /ws
	// hello; nil sends nothing, and the connection then gets no fresh
	// credentials before they expire either.
	greet(c *conn, h *helloMsg) []byte
	// handle answers one client frame. It runs on the connection's reader.
	handle(c *conn, frame []byte, st *settings)
	// render turns logged message seq (body, a /ws JSON object) into one
	// frame, head then rest (head may be nil, and may use buf's storage);
	// ok false skips the message. seq 0 is a reply that was not logged.
	render(c *conn, seq uint64, body, buf []byte) (head, rest []byte, ok bool)
	// ended runs once the connection is over, before the session is
	// released (removed, or held for a resume).
	ended(c *conn)
}

// wsProto is /ws: messages go out as logged, with "seq" added.
type wsProto struct{}

func (wsProto) resumable() bool                        { return true }
func (wsProto) greet(_ *conn, h *helloMsg) []byte      { return encode(h) }
func (wsProto) handle(c *conn, b []byte, st *settings) { c.handle(b, st) }
func (wsProto) ended(*conn)                            {}

// render adds "seq" in front of the object's first field, without copying
// the body: `{"seq":7,` then the body after its "{".
func (wsProto) render(_ *conn, seq uint64, body, buf []byte) ([]byte, []byte, bool) {
	if seq == 0 || len(body) < 2 {
		return nil, body, true
	}
	b := append(buf[:0], `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ',')
	return b, body[1:], true
}

// simpleProto is /ws/simple, the classic tutorial protocol (simple.go):
// no hello, no seq, no resume.
type simpleProto struct{}

func (simpleProto) resumable() bool                       { return false }
func (simpleProto) greet(*conn, *helloMsg) []byte         { return nil }
func (simpleProto) handle(c *conn, b []byte, _ *settings) { c.handleSimple(b) }
func (simpleProto) ended(c *conn)                         { c.simpleLogout() }
func (simpleProto) render(_ *conn, _ uint64, body, _ []byte) ([]byte, []byte, bool) {
	return nil, body, true
}
