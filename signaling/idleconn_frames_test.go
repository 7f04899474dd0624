package signaling

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// rawFrame is a client frame with the first byte given whole (FIN, RSV
// and opcode), masked unless unmasked is set.
func rawFrame(b0 byte, payload []byte, unmasked bool) []byte {
	if len(payload) > 125 {
		panic("short frames only")
	}
	if unmasked {
		return append([]byte{b0, byte(len(payload))}, payload...)
	}
	f := frame(0, payload)
	f[0] = b0
	return f
}

// Frames the idle reader's keepalive shortcut (skipControl) must leave to
// gorilla or read whole: a fragmented message with a ping between its
// fragments (RFC 6455 §5.4: control frames may be injected), a ping
// whose bytes arrive in two segments, and an unmasked ping (§5.1: the
// server must close the connection).
func TestIdleReaderFrames(t *testing.T) {
	idleServers(t, time.Minute, func(t *testing.T, s *Server, hs *httptest.Server) {
		c := dialIdle(t, hs)
		pongs := make(chan string, 8)
		c.ws.SetPongHandler(func(p string) error { pongs <- p; return nil })
		write := func(b ...[]byte) {
			t.Helper()
			for _, p := range b {
				if _, err := c.wire.Write(p); err != nil {
					t.Fatal(err)
				}
			}
		}
		wantPong := func(payload string) {
			t.Helper()
			// The client's reader sees the pong while it reads the next
			// message: ask for one.
			write(ping(99))
			c.expectPongs(t, 99)
			select {
			case p := <-pongs:
				if p != payload {
					t.Fatalf("pong %q, want %q", p, payload)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("no pong for the ping %q", payload)
			}
		}
		msg := []byte(`{"type":"ping","id":"7"}`)
		// Fragmented, a ping between the fragments, in one segment...
		write(append(append(rawFrame(0x01, msg[:10], false), rawFrame(0x89, []byte("mid"), false)...), rawFrame(0x80, msg[10:], false)...))
		c.expectPongs(t, 7)
		wantPong("mid")
		// ...and in three, each late.
		msg = []byte(`{"type":"ping","id":"8"}`)
		for _, f := range [][]byte{rawFrame(0x01, msg[:3], false), rawFrame(0x89, []byte("mid2"), false), rawFrame(0x80, msg[3:], false)} {
			write(f)
			time.Sleep(30 * time.Millisecond)
		}
		c.expectPongs(t, 8)
		wantPong("mid2")
		// A ping split after its first byte and after its header.
		p := rawFrame(0x89, []byte("split"), false)
		write(p[:1])
		time.Sleep(30 * time.Millisecond)
		write(p[1:6])
		time.Sleep(30 * time.Millisecond)
		write(p[6:])
		wantPong("split")
		// An unmasked ping ends the connection (gorilla: protocol error).
		write(rawFrame(0x89, []byte("bad"), true))
		_ = c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			if _, _, err := c.ws.ReadMessage(); err != nil {
				if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseProtocolError {
					t.Fatalf("after an unmasked frame: %v, want close 1002", err)
				}
				return
			}
		}
	})
}
