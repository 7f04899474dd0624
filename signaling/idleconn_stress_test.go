package signaling

import (
	"math/rand/v2"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Messages, keepalive pongs and client pings cut at random byte offsets
// into writes (and so TLS records) and segments, some sent late: every
// message is answered within a time far below the read timeout and the
// ping interval, whatever the cuts (a message left buffered above the
// socket would wait for one of those).
func TestIdleReaderRandomCuts(t *testing.T) {
	idleServers(t, time.Minute, func(t *testing.T, s *Server, hs *httptest.Server) {
		for round := range 4 {
			rng := rand.New(rand.NewPCG(uint64(round), 7))
			c := dialIdle(t, hs)
			var stream []byte
			var ids []int
			var ends []int // where frames end in stream
			add := func(f []byte) {
				stream = append(stream, f...)
				ends = append(ends, len(stream))
			}
			for i := range 60 {
				switch rng.IntN(4) {
				case 0:
					add(frame(websocket.PongMessage, nil))
				case 1:
					add(frame(websocket.PingMessage, []byte("p")))
				}
				id := 1000*round + i
				add(ping(id))
				ids = append(ids, id)
			}
			sent := 0
			for len(stream) > 0 {
				// A segment of one or more writes (records, over TLS).
				c.tcp.mu.Lock()
				c.tcp.hold = true
				c.tcp.mu.Unlock()
				for range 1 + rng.IntN(3) {
					// Half the cuts at a frame's end: a record that ends
					// where a message does, with more records behind it,
					// is what only crypto/tls's buffers know of.
					n := min(len(stream), 1+rng.IntN(80))
					if rng.IntN(2) == 0 {
						for len(ends) > 0 && ends[0] <= sent {
							ends = ends[1:]
						}
						if len(ends) > 0 {
							n = ends[0] - sent
						}
					}
					if _, err := c.wire.Write(stream[:n]); err != nil {
						t.Fatal(err)
					}
					stream = stream[n:]
					sent += n
				}
				if err := c.tcp.flush(); err != nil {
					t.Fatal(err)
				}
				if rng.IntN(4) == 0 {
					time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
				}
			}
			c.expectPongs(t, ids...)
			c.ws.Close()
		}
	})
}
