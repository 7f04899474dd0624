package signaling

import (
	"encoding/json"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A message whose last TCP segment is shorter than a pong and a byte
// (here its last 3 bytes, sent apart) must be read at once: the reader
// blocked mid-frame is woken by them only if SO_RCVLOWAT is back at one
// byte. A client idle across a ping leaves the mark at 7 (its pong is
// due), and before the fix the tail waited in the socket until the next
// ping's pong made 7 bytes of it (up to a ping interval later).
func TestLazyPongsShortTail(t *testing.T) {
	const every = time.Second
	lazyServers(t, every, func(t *testing.T, s *Server, hs *httptest.Server) {
		c := dialIdle(t, hs)
		pongs := make(chan string, 4)
		go func() {
			for {
				_, b, err := c.ws.ReadMessage() // gorilla answers the pings
				if err != nil {
					return
				}
				var m map[string]any
				if json.Unmarshal(b, &m) == nil && m["type"] == "pong" {
					pongs <- m["id"].(string)
				}
			}
		}()
		time.Sleep(every + every/4) // one ping answered: a pong is due, the mark is 7
		f := ping(7)
		if _, err := c.wire.Write(f[:len(f)-3]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // the reader takes it and blocks mid-frame
		if _, err := c.wire.Write(f[len(f)-3:]); err != nil {
			t.Fatal(err)
		}
		select {
		case id := <-pongs:
			if id != "7" {
				t.Fatalf("pong %q, want 7", id)
			}
		case <-time.After(every / 3): // well before the next ping at 2×every
			t.Fatalf("a message whose last 3 bytes came apart was not answered within %v", every/3)
		}
	})
}

// A client whose connection ends (FIN) while its last pong waits alone
// in the socket is seen gone at once, not at the next ping: a peek then
// shows the pong, and the end of stream only past it.
func TestLazyPongsEndAfterPong(t *testing.T) {
	const every = time.Second
	lazyServers(t, every, func(t *testing.T, s *Server, hs *httptest.Server) {
		c := dialIdle(t, hs)
		answerPings(t, c)
		time.Sleep(every + every/4) // one ping answered, its pong alone in the socket
		if err := c.tcp.Conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if !waitUntil(every/3, func() bool { return s.nconns.Load() == 0 }) {
			t.Fatalf("a connection ended after its pong was still open %v later", every/3)
		}
	})
}

// A close without a status code (6 bytes, as a pong) sent while no pong
// waits in the socket before it (the last ping's pong was taken, and the
// client does not answer the next) is read at the next ping, and ends
// the connection as a goodbye: before, the mark hid it until the read
// timeout dropped the connection as broken.
func TestLazyPongsBareCloseAlone(t *testing.T) {
	const every = time.Second
	lazyServers(t, every, func(t *testing.T, s *Server, hs *httptest.Server) {
		c := dialIdle(t, hs) // nothing reads: pongs are written here
		start := time.Now()
		time.Sleep(every + 3*every/10) // ping 1 went out
		if _, err := c.wire.Write(frame(websocket.PongMessage, nil)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(every) // ping 2 took the pong; its own is not sent
		if _, err := c.wire.Write(frame(websocket.CloseMessage, nil)); err != nil {
			t.Fatal(err)
		}
		// Ping 3 (at 3×every) sees it; the read timeout (2×every after
		// ping 2) would have come at 4×every.
		if !waitUntil(3*every+every/2-time.Since(start), func() bool { return s.nconns.Load() == 0 }) {
			t.Fatalf("a close without a status code, alone in the socket, was not seen by the next ping")
		}
	})
}
