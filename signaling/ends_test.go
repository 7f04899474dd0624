package signaling

import (
	"crypto/tls"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Clients whose network drops while they wait in the waiter (TCP closed,
// no close frame) are ended without a handler's read (ends.go) on plain
// TCP: their places and slots given back, their sessions held, not
// removed (their room hears nothing), and a resume gets what was acked
// meanwhile, once. Over TLS the handler's read ends them, as before.
func TestWaiterDroppedEnded(t *testing.T) {
	waiterServers(t, time.Minute, func(t *testing.T, s *Server, hs *httptest.Server) {
		const n = 14 // and stay: under peers_per_room (16)
		stay := dialIdle(t, hs)
		joinIdle(t, stay, "r")
		clients := make([]*idleClient, n)
		for i := range clients {
			clients[i] = dialIdle(t, hs)
			joinIdle(t, clients[i], "r")
			if m := readType(t, stay, "peer-joined"); m["peer"] != clients[i].hello["peer"] {
				t.Fatalf("peer-joined: %v", m)
			}
		}
		if !waitUntil(5*time.Second, func() bool { return registered(s) == n+1 }) {
			t.Fatalf("%d in the waiter, want %d", registered(s), n+1)
		}
		p := s.poll.Load()
		before := p.dropped.Load()
		for _, c := range clients {
			_ = c.tcp.Conn.Close()
		}
		if !waitUntil(5*time.Second, func() bool { return s.nconns.Load() == 1 && registered(s) == 1 }) {
			t.Fatalf("%d connections, %d in the waiter; want 1", s.nconns.Load(), registered(s))
		}
		dropped := p.dropped.Load() - before
		if hs.TLS == nil && dropped != n {
			t.Errorf("%d connections ended by the waiter's drop, want %d", dropped, n)
		}
		if hs.TLS != nil && dropped != 0 {
			t.Errorf("%d TLS connections ended by the waiter's drop, want 0 (a record must be read)", dropped)
		}
		for i, c := range clients {
			if !waitUntil(5*time.Second, func() bool { return heldOnBus(s, c.hello["peer"].(string)) }) {
				t.Fatalf("dropped client %d not held (%d ends, %d releases queued)", i, s.pendingEnds(), s.pendingDetaches())
			}
		}

		// Held: a message to each is acked as held, and nobody left.
		for i, c := range clients {
			if err := stay.ws.WriteJSON(map[string]any{"type": "message", "to": c.hello["peer"], "id": i + 1, "data": i}); err != nil {
				t.Fatal(err)
			}
			if ack := readType(t, stay, "ack"); ack["held"] != true {
				t.Fatalf("ack to dropped client %d: %v", i, ack)
			}
		}
		// Each resumes on a new connection and gets its message once.
		for i, c := range clients {
			r := dialResume(t, hs, c.hello["resume_token"].(string), 1)
			if r.hello["resumed"] != true || r.hello["peer"] != c.hello["peer"] {
				t.Fatalf("client %d resumed: %v", i, r.hello)
			}
			if m := readType(t, r, "message"); str(m["data"]) != strconv.Itoa(i) {
				t.Fatalf("client %d replay: %v", i, m)
			}
			_ = r.ws.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
			var m map[string]any
			if err := r.ws.ReadJSON(&m); err == nil {
				t.Fatalf("client %d: more than its message: %v", i, m)
			}
		}
		_ = stay.ws.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		var m map[string]any
		if err := stay.ws.ReadJSON(&m); err == nil {
			t.Fatalf("the client that stayed heard: %v", m)
		}
	})
}

// A dropped connection whose writer runs when the waiter finds it at its
// end (here: the writer role held, as a ping batch holds it) is ended
// after its writer, on a handler, and once.
func TestWaiterDroppedWhileWriting(t *testing.T) {
	waiterServers(t, time.Minute, func(t *testing.T, s *Server, hs *httptest.Server) {
		if hs.TLS != nil {
			t.Skip("the waiter's drop is plain TCP's")
		}
		c := dialIdle(t, hs)
		if !waitUntil(5*time.Second, func() bool { return registered(s) == 1 }) {
			t.Fatal("not in the waiter")
		}
		s.mu.Lock()
		var sc *conn
		for x := range s.conns {
			sc = x
		}
		s.mu.Unlock()
		// A writer is busy with it: the role is taken once the hello's
		// writer is done with it.
		if !waitUntil(5*time.Second, func() bool {
			sc.wmu.Lock()
			defer sc.wmu.Unlock()
			if sc.writing {
				return false
			}
			sc.writing = true
			return true
		}) {
			t.Fatal("the hello's writer still runs")
		}
		p := s.poll.Load()
		_ = c.tcp.Conn.Close()
		if !waitUntil(5*time.Second, func() bool { return p.dropped.Load() == 1 && registered(s) == 0 }) {
			t.Fatalf("dropped %d, %d in the waiter", p.dropped.Load(), registered(s))
		}
		time.Sleep(50 * time.Millisecond)
		if s.nconns.Load() != 1 {
			t.Fatalf("ended before its writer: %d connections", s.nconns.Load())
		}
		// The writer finishes: it sees the kill and closes the transport.
		go sc.writer()
		if !waitUntil(5*time.Second, func() bool { return s.nconns.Load() == 0 }) {
			t.Fatalf("%d connections after the writer ran", s.nconns.Load())
		}
	})
}

// joinIdle has c join room and reads its joined.
func joinIdle(t *testing.T, c *idleClient, room string) {
	t.Helper()
	if err := c.ws.WriteJSON(map[string]any{"type": "join", "room": room}); err != nil {
		t.Fatal(err)
	}
	readType(t, c, "joined")
}

// readType reads c's messages until one of type typ, within 5 s.
func readType(t *testing.T, c *idleClient, typ string) map[string]any {
	t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		var m map[string]any
		if err := c.ws.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m["type"] == typ {
			return m
		}
	}
}

// dialResume resumes a session on hs's /ws with its token and the last
// seq seen.
func dialResume(t *testing.T, hs *httptest.Server, token string, last uint64) *idleClient {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	ws, _, err := d.Dial(wsURL(hs, "/ws")+fmt.Sprintf("?resume=%s&last=%d", url.QueryEscape(token), last), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &idleClient{ws: ws}
	if err := ws.ReadJSON(&c.hello); err != nil {
		t.Fatal(err)
	}
	return c
}
