package signaling

import (
	"bytes"
	"errors"
	"fmt"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// socket.io sessions in the server's waiter (watch.go, serveSIO).

// An idle socket.io session over a WebSocket holds no goroutine: opened
// over one, or upgraded to one from long-polling, it waits in the
// server's waiter, as an idle /ws connection does: no reader, no
// Engine.IO handler, no net/http handler. Without the waiter (another
// platform) each holds one, its reader. All leave nothing behind.
func TestSIOIdleSessionHoldsNoGoroutine(t *testing.T) {
	for _, reader := range []bool{false, true} {
		t.Run(map[bool]string{false: "waiter", true: "reader"}[reader], func(t *testing.T) {
			if !reader && runtime.GOOS != "linux" {
				t.Skip("the shared waiter is Linux-only")
			}
			s := newTestServer(t, nil)
			s.noWaiter = reader
			hs := httptest.NewServer(s.Handler())
			defer hs.Close()
			const opened, upgraded = 20, 2
			var clients []*websocket.Conn
			for i := range opened {
				c := dialSIOIdle(t, hs)
				clients = append(clients, c.ws)
				if _, err := c.wire.Write(frame(websocket.TextMessage, fmt.Appendf(nil, `42%d["join","r%d"]`, i+1, i/2))); err != nil {
					t.Fatal(err)
				}
				c.expectAcks(t, i+1)
			}
			for range upgraded {
				clients = append(clients, upgradeSIO(t, hs).ws)
			}
			const n = opened + upgraded
			if reader {
				ok := waitUntil(5*time.Second, func() bool {
					return goroutinesIn("signaling.(*conn).readLoop") == n && goroutinesIn("signaling.(*poller).wait") == 0
				})
				if !ok {
					t.Errorf("%d readers, %d waiters; want %d, 0", goroutinesIn("signaling.(*conn).readLoop"), goroutinesIn("signaling.(*poller).wait"), n)
				}
			} else {
				expectSIOIdle(t, s, n)
				// The polling requests' connections aside (kept
				// alive by the client), no net/http handler.
				hs.Client().CloseIdleConnections()
				if !waitUntil(3*time.Second, func() bool { return goroutinesIn("net/http.(*conn).serve(") == 0 }) {
					t.Errorf("%d net/http handlers left", goroutinesIn("net/http.(*conn).serve("))
				}
			}
			for _, ws := range clients {
				ws.Close()
			}
			ok := waitUntil(5*time.Second, func() bool {
				p := s.poll.Load()
				return goroutinesIn("signaling.(*conn).readLoop") == 0 && goroutinesIn("engineio.(*Server).start") == 0 &&
					(p == nil || p.count() == 0) && s.nconns.Load() == 0 && s.eio.Sessions() == 0
			})
			if !ok {
				t.Errorf("after closing: %d readers, %d Engine.IO handlers, %d connections, %d sessions",
					goroutinesIn("signaling.(*conn).readLoop"), goroutinesIn("engineio.(*Server).start"), s.nconns.Load(), s.eio.Sessions())
			}
		})
	}
}

// upgradeSIO opens a socket.io session over long-polling, connects it,
// and upgrades it to a WebSocket (engine.io's probe, then "5"); the
// client answers the server's pings until the test ends.
func upgradeSIO(t *testing.T, hs *httptest.Server) *idleClient {
	t.Helper()
	w := dialSIO(t, hs, hs.Client(), "polling", false)
	c := dialSIOWS(t, hs, w.url("websocket"))
	probeSIO(t, c)
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte("5")); err != nil {
		t.Fatal(err)
	}
	return c
}

// probeSIO runs the upgrade's probe on c.
func probeSIO(t *testing.T, c *idleClient) {
	t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	defer c.ws.SetReadDeadline(time.Time{})
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte("2probe")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.ws.ReadMessage(); err != nil || string(b) != "3probe" {
		t.Fatalf("probe answered %q %v", b, err)
	}
}

// Input that came behind the frames read before a session's first wait
// is handled at once: an event in the same segment as socket.io's
// CONNECT, or as the upgrade's "5", which over TLS only crypto/tls holds
// (a record of its own, read ahead with the one before), and which the
// socket will never report.
func TestSIOBufferedBehindOpening(t *testing.T) {
	idleServers(t, time.Minute, func(t *testing.T, s *Server, hs *httptest.Server) {
		held := func(c *idleClient, frames ...[]byte) {
			t.Helper()
			c.tcp.mu.Lock()
			c.tcp.hold = true
			c.tcp.mu.Unlock()
			for _, f := range frames {
				if _, err := c.wire.Write(f); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.tcp.flush(); err != nil {
				t.Fatal(err)
			}
		}
		c := dialSIOWS(t, hs, wsURL(hs, "/socket.io/?EIO=4&transport=websocket"))
		_ = c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, b, err := c.ws.ReadMessage(); err != nil || !bytes.HasPrefix(b, []byte("0{")) {
			t.Fatalf("open: %q %v", b, err)
		}
		held(c, frame(websocket.TextMessage, []byte("40")), sioAsk(1))
		c.expectAcks(t, 1)

		u := upgradeSIOHeld(t, hs, held)
		u.expectAcks(t, 2)
		if !s.noWaiter && runtime.GOOS == "linux" {
			expectSIOIdle(t, s, 2)
		}
	})
}

// upgradeSIOHeld is upgradeSIO with the "5" and an event (ack id 2) sent
// through held, in one segment.
func upgradeSIOHeld(t *testing.T, hs *httptest.Server, held func(*idleClient, ...[]byte)) *idleClient {
	t.Helper()
	w := dialSIO(t, hs, hs.Client(), "polling", false)
	c := dialSIOWS(t, hs, w.url("websocket"))
	probeSIO(t, c)
	held(c, frame(websocket.TextMessage, []byte("5")), sioAsk(2))
	return c
}

// The Engine.IO heartbeat of a session in the waiter is kept by the
// server's timer loop on the time of its last pong, not by a read
// deadline: a client that answers no ping is dropped pingTimeout after
// the first it left unanswered, and so is one that sends events but no
// pongs (engine.io's server clears its ping timeout on a pong only); both
// as engine.io's ping timeout ends a session, a close frame 1000 and no
// socket.io DISCONNECT (which would keep socket.io-client from
// reconnecting). One that answers stays, its pongs taken off the socket
// by the waiter itself over plain TCP. No goroutine reads any of them
// while they wait. The reader modes keep the read deadline, to the same
// effect.
func TestSIOPongDeadline(t *testing.T) {
	const interval = 500 * time.Millisecond // and pingTimeout as much: dropped 1 s after the last pong
	idleServers(t, interval, func(t *testing.T, s *Server, hs *httptest.Server) {
		type result struct {
			after  time.Duration
			err    error
			sawBye bool
		}
		kinds := []string{"silent", "talker", "answers"}
		results := make([]chan result, len(kinds))
		var wg sync.WaitGroup
		start := time.Now()
		for i, kind := range kinds {
			c := dialSIOIdle(t, hs)
			results[i] = make(chan result, 1)
			var wmu sync.Mutex
			stop := make(chan struct{})
			wg.Go(func() {
				defer close(stop)
				var r result
				for {
					_, b, err := c.ws.ReadMessage()
					if err != nil {
						r.after, r.err = time.Since(start), err
						results[i] <- r
						return
					}
					if string(b) == "41" {
						r.sawBye = true
					}
					if string(b) == "2" && kind == "answers" {
						wmu.Lock()
						_ = c.ws.WriteMessage(websocket.TextMessage, []byte("3"))
						wmu.Unlock()
					}
				}
			})
			if kind == "talker" {
				wg.Go(func() {
					for id := 100; ; id++ {
						select {
						case <-stop:
							return
						case <-time.After(100 * time.Millisecond):
						}
						wmu.Lock()
						_ = c.ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `42%d["ice-servers"]`, id))
						wmu.Unlock()
					}
				})
			}
		}
		if !s.noWaiter && runtime.GOOS == "linux" {
			time.Sleep(interval / 2)
			if r, q := goroutinesIn("signaling.(*conn).readLoop"), s.poll.Load(); r != 0 || q == nil || q.count() != len(kinds) {
				t.Errorf("%d readers, waiter %v; want 0, %d in the waiter", r, q != nil, len(kinds))
			}
		}
		for i, kind := range kinds[:2] {
			select {
			case r := <-results[i]:
				var ce *websocket.CloseError
				if !errors.As(r.err, &ce) || ce.Code != websocket.CloseNormalClosure {
					t.Errorf("%s: ended with %v, want close 1000", kind, r.err)
				}
				if r.sawBye {
					t.Errorf("%s: got socket.io's DISCONNECT before the close: a ping timeout sends none", kind)
				}
				// Pinged at 0.5 s, due by 1 s; the timer loop runs on
				// a grain, and the machine is shared.
				if r.after < 2*interval-100*time.Millisecond || r.after > 2*interval+1500*time.Millisecond {
					t.Errorf("%s: dropped after %v, want about %v", kind, r.after, 2*interval)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: not dropped", kind)
			}
		}
		select {
		case r := <-results[2]:
			t.Errorf("a client that answers was dropped after %v: %v", r.after, r.err)
		case <-time.After(4 * interval):
		}
		if got := s.nconns.Load(); got != 1 {
			t.Errorf("%d connections, want 1", got)
		}
		// Over plain TCP the waiter took the answering client's pongs
		// off the socket itself (skimPongs), with no hand-off; over
		// TLS it cannot.
		if p := s.poll.Load(); !s.noWaiter && p != nil && (hs.TLS == nil) != (p.skimmed.Load() > 0) {
			t.Errorf("%d connections' pongs taken by the waiter (TLS: %v)", p.skimmed.Load(), hs.TLS != nil)
		}
	})
}
