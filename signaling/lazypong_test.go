package signaling

import (
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// lazyServers runs f against a plain /ws server pinging every pingEvery,
// where lazy pongs apply (Linux, plain TCP; idleconn_linux.go): with the
// shared waiter (watch.go) and with a reader goroutine per connection.
func lazyServers(t *testing.T, pingEvery time.Duration, f func(t *testing.T, s *Server, hs *httptest.Server)) {
	if runtime.GOOS != "linux" {
		t.Skip("lazy pongs need Linux's SO_RCVLOWAT")
	}
	for _, mode := range []string{"waiter", "reader"} {
		t.Run(mode, func(t *testing.T) {
			s := newTestServer(t, func(c *Config) { c.PingInterval = pingEvery })
			s.noWaiter = mode == "reader"
			hs := httptest.NewServer(s.Handler())
			t.Cleanup(hs.Close)
			f(t, s, hs)
		})
	}
}

// wakes is how often s woke for input on idle connections: reader
// goroutines that returned from their wait, and connections the waiter
// claimed.
func wakes(s *Server) int64 {
	n := s.idleWakes.Load()
	if p := s.poll.Load(); p != nil {
		n += p.woken.Load()
	}
	return n
}

// answerPings reads c's connection in the background, so that gorilla
// answers the server's pings, until the test ends.
func answerPings(t *testing.T, c *idleClient) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if _, _, err := c.ws.ReadMessage(); err != nil {
				return
			}
		}
	})
	t.Cleanup(func() { c.ws.Close(); wg.Wait() })
}

// An idle client's pongs do not wake its reader: each waits in the
// socket until the next ping takes it, and the connection stays up for
// many read timeouts.
func TestLazyPongsNoWakeups(t *testing.T) {
	const every = 100 * time.Millisecond
	lazyServers(t, every, func(t *testing.T, s *Server, hs *httptest.Server) {
		const n = 5
		for range n {
			answerPings(t, dialIdle(t, hs))
		}
		time.Sleep(3 * every) // the opening's own wake-ups
		start := wakes(s)
		time.Sleep(20 * every) // ten read timeouts (every + every)
		if got := s.nconns.Load(); got != n {
			t.Fatalf("%d connections of %d left: taken pongs did not keep them", got, n)
		}
		// Without lazy pongs every ping round wakes every reader: 20 × 5.
		// With them, at most one wake each (a read deadline that fell
		// before the next ping took the pong).
		if woke := wakes(s) - start; woke > n {
			t.Errorf("woke %d times in 20 ping rounds of %d idle clients; want at most %d", woke, n, n)
		}
	})
}

// A client that stops answering pings is dropped at the next ping after
// the one it left unanswered, as its read timeout would have.
func TestLazyPongsSilentClient(t *testing.T) {
	const every = 200 * time.Millisecond
	lazyServers(t, every, func(t *testing.T, s *Server, hs *httptest.Server) {
		_ = dialIdle(t, hs) // never reads: gorilla answers no ping
		if !waitUntil(4*every+time.Second, func() bool { return s.nconns.Load() == 0 }) {
			t.Fatalf("a client answering no ping was still connected after %v", 4*every+time.Second)
		}
	})
}

// A close frame without a status code is 6 bytes, as a pong is: it wakes
// the reader at once whether a pong waits before it in the socket (the
// client is idle) or not (it has just sent a message, which took the
// pong with it).
func TestLazyPongsBareClose(t *testing.T) {
	const every = 400 * time.Millisecond
	for _, afterMessage := range []bool{false, true} {
		name := "pong waiting"
		if afterMessage {
			name = "after a message"
		}
		t.Run(name, func(t *testing.T) {
			lazyServers(t, every, func(t *testing.T, s *Server, hs *httptest.Server) {
				c := dialIdle(t, hs)
				answerPings(t, c)
				time.Sleep(every + every/4) // one ping answered, its pong in the socket
				if afterMessage {
					if _, err := c.wire.Write(ping(1)); err != nil {
						t.Fatal(err)
					}
					time.Sleep(20 * time.Millisecond)
				}
				if _, err := c.wire.Write(frame(websocket.CloseMessage, nil)); err != nil {
					t.Fatal(err)
				}
				// Well before the next ping (every/2 away) could take a pong
				// and wake it.
				if !waitUntil(every/4, func() bool { return s.nconns.Load() == 0 }) {
					t.Fatalf("a close without a status code was not seen within %v", every/4)
				}
			})
		})
	}
}
