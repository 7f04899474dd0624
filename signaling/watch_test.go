package signaling

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http/httptest"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// waiterServers runs f against idleServers' servers that use the shared
// waiter (watch.go): plain TCP and TLS.
func waiterServers(t *testing.T, pingEvery time.Duration, f func(t *testing.T, s *Server, hs *httptest.Server)) {
	if runtime.GOOS != "linux" {
		t.Skip("the shared waiter is Linux-only")
	}
	idleServers(t, pingEvery, func(t *testing.T, s *Server, hs *httptest.Server) {
		if s.noWaiter {
			t.Skip("the reader goroutine's path: covered by the idle reader tests")
		}
		f(t, s, hs)
	})
}

// registered is how many connections wait in s's waiter.
func registered(s *Server) int {
	if p := s.poll.Load(); p != nil {
		return p.count()
	}
	return 0
}

// Many connections wait in the waiter, then all talk at once: every one
// is handed to a handler, answered, and back in the waiter; pairs in a
// room reach each other.
func TestWaiterManyIdleThenAllTalk(t *testing.T) {
	waiterServers(t, time.Minute, func(t *testing.T, s *Server, hs *httptest.Server) {
		const n = 60
		clients := make([]*idleClient, n)
		ids := make([]string, n)
		for i := range clients {
			c := dialIdle(t, hs)
			clients[i] = c
			if err := c.ws.WriteJSON(map[string]any{"type": "join", "room": fmt.Sprint("r", i/2)}); err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := c.ws.ReadJSON(&m); err != nil || m["type"] != "joined" {
				t.Fatalf("joined: %v %v", m, err)
			}
			ids[i] = c.hello["peer"].(string)
		}
		// The odd one of each pair saw its partner join first.
		for i := 1; i < n; i += 2 {
			var m map[string]any
			if err := clients[i-1].ws.ReadJSON(&m); err != nil || m["type"] != "peer-joined" {
				t.Fatalf("peer-joined: %v %v", m, err)
			}
		}
		if !waitUntil(5*time.Second, func() bool { return registered(s) == n }) {
			t.Fatalf("%d of %d connections in the waiter", registered(s), n)
		}
		for round := range 3 {
			var wg sync.WaitGroup
			errs := make(chan error, n)
			start := make(chan struct{})
			for i, c := range clients {
				wg.Go(func() {
					<-start
					// A request and a message for the partner.
					to := ids[i^1]
					if err := c.ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"type":"ping","id":%d}`, round))); err != nil {
						errs <- err
						return
					}
					if err := c.ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"type":"message","to":%q,"data":%d}`, to, i))); err != nil {
						errs <- err
						return
					}
					gotPong, gotMsg := false, false
					_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
					for !gotPong || !gotMsg {
						var m map[string]any
						if err := c.ws.ReadJSON(&m); err != nil {
							errs <- fmt.Errorf("client %d round %d: %v", i, round, err)
							return
						}
						switch m["type"] {
						case "pong":
							gotPong = true
						case "message":
							if fmt.Sprint(m["data"]) != fmt.Sprint(i^1) {
								errs <- fmt.Errorf("client %d: message %v from the wrong peer", i, m)
								return
							}
							gotMsg = true
						}
					}
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if !waitUntil(5*time.Second, func() bool { return registered(s) == n }) {
				t.Fatalf("round %d: %d of %d connections back in the waiter", round, registered(s), n)
			}
		}
		if got := s.nconns.Load(); got != n {
			t.Fatalf("%d connections of %d", got, n)
		}
	})
}

// A client that closes its connection while it waits in the waiter (a
// close frame, or only the TCP connection) is ended: its place given
// back, its slot freed, a clean goodbye leaving at once and a broken
// connection held for resume.
func TestWaiterClientCloses(t *testing.T) {
	waiterServers(t, time.Minute, func(t *testing.T, s *Server, hs *httptest.Server) {
		for _, how := range []string{"close-frame", "tcp"} {
			c := dialIdle(t, hs)
			if !waitUntil(5*time.Second, func() bool { return registered(s) == 1 }) {
				t.Fatalf("%s: not in the waiter", how)
			}
			if how == "close-frame" {
				if err := c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
					t.Fatal(err)
				}
			} else {
				_ = c.tcp.Conn.Close()
			}
			if !waitUntil(5*time.Second, func() bool { return s.nconns.Load() == 0 && registered(s) == 0 }) {
				t.Fatalf("%s: %d connections, %d in the waiter", how, s.nconns.Load(), registered(s))
			}
		}
	})
}

// openFDs counts this process's descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(es)
}

// Connections killed while they wait in the waiter, by the API and by
// the server's shutdown, close with the code given; Close returns, the
// waiter goroutine ends, and no descriptor or goroutine is left.
func TestWaiterKillAndShutdown(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the shared waiter is Linux-only")
	}
	for _, mode := range []string{"plain", "tls"} {
		t.Run(mode, func(t *testing.T) {
			fds, gs := openFDs(t), runtime.NumGoroutine()
			s, err := New(testConfig(func(c *Config) {
				c.PingInterval = time.Minute
			}), Options{Secret: func() string { return testSecret }, Version: "test"})
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewUnstartedServer(s.Handler())
			if mode == "tls" {
				hs.StartTLS()
			} else {
				hs.Start()
			}
			const n = 10
			clients := make([]*idleClient, n)
			for i := range clients {
				clients[i] = dialIdle(t, hs)
			}
			if !waitUntil(5*time.Second, func() bool { return registered(s) == n }) {
				t.Fatalf("%d of %d in the waiter", registered(s), n)
			}
			if goroutinesIn("signaling.(*poller).wait") != 1 {
				t.Fatalf("%d waiters", goroutinesIn("signaling.(*poller).wait"))
			}
			// The API ends one for good.
			var ids []string
			s.mu.RLock()
			for id := range s.local {
				ids = append(ids, id)
			}
			s.mu.RUnlock()
			victim := ids[0]
			// What the API's disconnect does (apiDisconnect).
			if ended, err := s.endSession(context.Background(), victim, 4100, "kicked"); err != nil || !ended {
				t.Fatalf("endSession: %v %v", ended, err)
			}
			var ended sync.WaitGroup
			codes := make([]chan error, n)
			for i, c := range clients {
				codes[i] = make(chan error, 1)
				ended.Go(func() {
					for {
						if _, _, err := c.ws.ReadMessage(); err != nil {
							codes[i] <- err
							return
						}
					}
				})
			}
			closedBy := func(code int, text string) int {
				closed := 0
				for i := range clients {
					select {
					case err := <-codes[i]:
						ce, ok := err.(*websocket.CloseError)
						if !ok || ce.Code != code || ce.Text != text {
							t.Fatalf("client %d: %v, want close %d %q", i, err, code, text)
						}
						closed++
					case <-time.After(100 * time.Millisecond):
					}
				}
				return closed
			}
			if got := closedBy(4100, "kicked"); got != 1 {
				t.Fatalf("%d clients closed by the API, want 1", got)
			}
			if !waitUntil(5*time.Second, func() bool { return registered(s) == n-1 && s.nconns.Load() == n-1 }) {
				t.Fatalf("after the API's disconnect: %d in the waiter, %d connections", registered(s), s.nconns.Load())
			}
			// Shutdown ends the rest, each with 1001.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := closedBy(closeGoingAway, "server shutting down"); got != n-1 {
				t.Fatalf("%d clients closed by the shutdown, want %d", got, n-1)
			}
			ended.Wait()
			for _, c := range clients {
				c.ws.Close()
			}
			hs.Close()
			if registered(s) != 0 || s.nconns.Load() != 0 {
				t.Fatalf("after Close: %d in the waiter, %d connections", registered(s), s.nconns.Load())
			}
			if !waitUntil(5*time.Second, func() bool {
				return goroutinesIn("signaling.(*poller).wait") == 0 && openFDs(t) <= fds && runtime.NumGoroutine() <= gs+2
			}) {
				buf := make([]byte, 1<<20)
				t.Fatalf("left: %d waiters, %d descriptors (%d before), %d goroutines (%d before)\n%s",
					goroutinesIn("signaling.(*poller).wait"), openFDs(t), fds, runtime.NumGoroutine(), gs, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}

// The read timeout: a client that answers no ping is dropped once it has
// been silent for the ping interval and the pong wait (and its session
// held for resume: it did not say goodbye); one that answers stays, many
// read timeouts long. Both paths: the waiter's timer duty and the reader
// goroutine's read deadline.
func TestWaiterReadTimeout(t *testing.T) {
	idleServers(t, 300*time.Millisecond, func(t *testing.T, s *Server, hs *httptest.Server) {
		// The read timeout is 600 ms: 300 ms pings, and as long again
		// for the pong. (At 200 ms, a loaded CI machine sometimes ran
		// a ping late enough to drop the client answering them: with
		// lazy pongs its answer counts when the next ping takes it.)
		start := time.Now() // before the silent client's dial, not after the talker's
		silent := dialIdle(t, hs)
		talker := dialIdle(t, hs)
		done := make(chan struct{})
		go func() { // reading answers the pings (gorilla's ping handler)
			defer close(done)
			for {
				if _, _, err := talker.ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
		if !waitUntil(5*time.Second, func() bool { return s.nconns.Load() == 1 }) {
			t.Fatalf("the silent client was not dropped: %d connections", s.nconns.Load())
		}
		if d := time.Since(start); d < 450*time.Millisecond {
			t.Fatalf("dropped after %v, before its read timeout", d)
		}
		// The one that answers stays for ten read timeouts.
		time.Sleep(4 * time.Second)
		if got := s.nconns.Load(); got != 1 {
			t.Fatalf("%d connections: the client answering pings was dropped", got)
		}
		talker.ws.Close()
		<-done
		// The silent one was held (no goodbye): it resumes.
		silent.ws.Close()
		d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		ws, _, err := d.Dial(wsURL(hs, "/ws")+"?resume="+silent.hello["resume_token"].(string), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil || m["type"] != "hello" || m["resumed"] != true || m["peer"] != silent.hello["peer"] {
			t.Fatalf("resume after the read timeout: %v %v", m, err)
		}
	})
}

// Connections opened and closed fast, on many goroutines, beside idle
// ones: descriptor numbers are reused at once, so the waiter sees events
// of connections that are gone (their slot's generation moved on) and
// must hand none to the wrong connection. The idle ones still answer, and
// nothing is left registered.
func TestWaiterChurn(t *testing.T) {
	waiterServers(t, time.Minute, func(t *testing.T, s *Server, hs *httptest.Server) {
		const idle = 10
		stay := make([]*idleClient, idle)
		for i := range stay {
			stay[i] = dialIdle(t, hs)
		}
		const workers, each = 6, 15
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					c, err := dialIdleErr(hs)
					if err != nil {
						errs <- fmt.Errorf("worker %d: dial %d: %v", w, i, err)
						return
					}
					switch i % 3 {
					case 0: // talks, then closes the TCP connection
						_ = c.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":1}`))
						_ = c.tcp.Conn.Close()
					case 1: // says goodbye
						_ = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
						c.ws.Close()
					default: // a ping round trip, then gone
						if err := c.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":2}`)); err != nil {
							errs <- err
							return
						}
						var m map[string]any
						_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
						if err := c.ws.ReadJSON(&m); err != nil || m["type"] != "pong" {
							errs <- fmt.Errorf("worker %d: %v %v", w, m, err)
							return
						}
						c.ws.Close()
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for i, c := range stay {
			if err := c.ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"type":"ping","id":%d}`, i))); err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := c.ws.ReadJSON(&m); err != nil || m["type"] != "pong" || fmt.Sprint(m["id"]) != fmt.Sprint(i) {
				t.Fatalf("idle client %d: %v %v", i, m, err)
			}
		}
		if !waitUntil(5*time.Second, func() bool { return s.nconns.Load() == idle && registered(s) == idle }) {
			t.Fatalf("%d connections, %d in the waiter; want %d", s.nconns.Load(), registered(s), idle)
		}
	})
}
