package signaling

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Adversarial tests of /socket.io/ (issue 13 review), over raw HTTP
// requests and raw WebSocket frames against the real handler.

// rawSIO is a socket.io client spoken by hand: Engine.IO over polling or
// WebSocket, socket.io packets as text.
type rawSIO struct {
	t    testing.TB
	base string // http://host/socket.io/
	sid  string
	ws   *websocket.Conn
	hc   *http.Client
	msgs chan string // Engine.IO messages (socket.io packets), in order
	done chan struct{}
}

func sioBase(hs *httptest.Server) string { return hs.URL + "/socket.io/" }

// dialSIOPolling opens a polling session and polls on a goroutine of its
// own, answering pings.
func dialSIOPolling(t testing.TB, base string) *rawSIO {
	t.Helper()
	c := &rawSIO{t: t, base: base, hc: &http.Client{Transport: &http.Transport{}}, msgs: make(chan string, 1000), done: make(chan struct{})}
	resp, err := c.hc.Get(base + "?EIO=4&transport=polling")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) == 0 || b[0] != '0' {
		t.Fatalf("handshake: %d %q", resp.StatusCode, b)
	}
	var open struct{ SID string }
	if err := json.Unmarshal(b[1:], &open); err != nil {
		t.Fatal(err)
	}
	c.sid = open.SID
	go c.pollLoop()
	t.Cleanup(c.close)
	return c
}

func (c *rawSIO) url() string { return c.base + "?EIO=4&transport=polling&sid=" + c.sid }

func (c *rawSIO) pollLoop() {
	defer close(c.msgs)
	for {
		select {
		case <-c.done:
			return
		default:
		}
		resp, err := c.hc.Get(c.url())
		if err != nil {
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return
		}
		for _, p := range strings.Split(string(b), "\x1e") {
			switch {
			case p == "2":
				c.post("3")
			case p == "1":
				return
			case strings.HasPrefix(p, "4"):
				c.msgs <- p[1:]
			}
		}
	}
}

// post sends an Engine.IO payload; it returns the status.
func (c *rawSIO) post(payload string) int {
	resp, err := c.hc.Post(c.url(), "text/plain;charset=UTF-8", strings.NewReader(payload))
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// dialSIOWebSocket opens a WebSocket session and reads it on a goroutine
// of its own, answering pings.
func dialSIOWebSocket(t testing.TB, base string) *rawSIO {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"?EIO=4&transport=websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawSIO{t: t, base: base, ws: ws, msgs: make(chan string, 1000), done: make(chan struct{})}
	_, b, err := ws.ReadMessage()
	if err != nil || len(b) == 0 || b[0] != '0' {
		t.Fatalf("open: %q %v", b, err)
	}
	var wmu sync.Mutex
	go func() {
		defer close(c.msgs)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			switch {
			case string(b) == "2":
				wmu.Lock()
				_ = ws.WriteMessage(websocket.TextMessage, []byte("3"))
				wmu.Unlock()
			case len(b) > 0 && b[0] == '4':
				c.msgs <- string(b[1:])
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *rawSIO) close() {
	select {
	case <-c.done:
		return
	default:
	}
	close(c.done)
	if c.ws != nil {
		c.ws.Close()
	} else {
		c.post("1")
		c.hc.CloseIdleConnections()
	}
}

// send sends one Engine.IO message (a socket.io packet).
func (c *rawSIO) send(pkt string) {
	if c.ws != nil {
		_ = c.ws.WriteMessage(websocket.TextMessage, []byte("4"+pkt))
		return
	}
	c.post("4" + pkt)
}

// expect waits for a socket.io packet starting with prefix, skipping
// others.
func (c *rawSIO) expect(prefix string) string {
	c.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				c.t.Fatalf("connection ended waiting for %q", prefix)
			}
			if strings.HasPrefix(m, prefix) {
				return m
			}
		case <-timeout:
			c.t.Fatalf("no %q", prefix)
		}
	}
}

// connectSIO sends the CONNECT and waits for its answer.
func (c *rawSIO) connect() {
	c.t.Helper()
	c.send("0")
	c.expect("0{")
}

// TestSocketIOPendingSessionsCountAgainstCapacity: an Engine.IO session
// that has not sent its socket.io CONNECT yet holds a session and a
// goroutine on the server; such sessions are counted by
// signaling.max_connections like any other, so a client cannot open
// more of them than the cap.
func TestSocketIOPendingSessionsCountAgainstCapacity(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxConnections = 3 })
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	base := sioBase(hs)
	accepted := 0
	for i := range 20 {
		resp, err := http.Get(base + "?EIO=4&transport=polling")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			accepted++
			// Let the session's goroutine start before the next.
			eventually(t, "the session to start", func() bool { return int(s.sioPending.Load()) == accepted })
		} else if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("handshake %d: %d", i, resp.StatusCode)
		}
	}
	if accepted > 3 {
		t.Fatalf("%d sessions open with signaling.max_connections 3", accepted)
	}
	// /ws is refused too while they hold the capacity.
	resp, err := http.Get(hs.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/ws while the capacity is held: %d", resp.StatusCode)
	}
}

// TestSocketIOGarbageLeavesNeighbours: malformed Engine.IO and socket.io
// packets over polling and WebSocket close the sender's connection (or
// are refused) and nothing else: the two well-behaved peers in the room
// keep talking.
func TestSocketIOGarbageLeavesNeighbours(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.SocketIORoomSize = 16 })
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	base := sioBase(hs)
	a := dialSIOWebSocket(t, base)
	a.connect()
	a.send(`2["join","r"]`)
	a.expect(`2["joined"`)
	b := dialSIOPolling(t, base)
	b.connect()
	b.send(`2["join","r"]`)
	b.expect(`2["joined"`)
	a.expect(`2["otherjoin"`)

	garbage := []string{
		"", "4", "9", "2", "2[", `2{"a":1}`, `2[]`, `2["connect"]`, `2[{}]`, "5-", "599-[]", "51-[\"x\",{\"_placeholder\":true,\"num\":0}]\x1e4\x1e4",
		"3", "0/nope,", "2/x,1[\"message\",1]", "2999999999999999999999[\"a\"]", "\xff\xfe", "1/x", "7", "6", "2[\"message\"," + strings.Repeat("[", 10000) + "]",
	}
	for i, g := range garbage {
		for _, transport := range []string{"polling", "websocket"} {
			var m *rawSIO
			if transport == "polling" {
				m = dialSIOPolling(t, base)
			} else {
				m = dialSIOWebSocket(t, base)
			}
			m.connect()
			m.send(`2["join","r"]`)
			m.expect(`2["joined"`)
			if m.ws != nil {
				_ = m.ws.WriteMessage(websocket.TextMessage, []byte(g))
				_ = m.ws.WriteMessage(websocket.BinaryMessage, []byte(g))
			} else {
				m.post(g)
				m.post("4" + g)
			}
			m.close()
			// The neighbours still talk, both ways.
			msg := fmt.Sprintf(`2["message","r","after %d %s"]`, i, transport)
			a.send(msg)
			b.expect(fmt.Sprintf(`2["message","r","after %d %s"]`, i, transport))
			b.send(msg)
			a.expect(fmt.Sprintf(`2["message","r","after %d %s"]`, i, transport))
		}
	}
	a.close()
	b.close()
	eventually(t, "every session gone", func() bool {
		st := s.Stats()
		return st.Connections == 0 && st.Peers == 0 && s.eio.Sessions() == 0
	})
}

// TestSocketIOAbandonedLeavesNothing: socket.io clients that vanish at
// every step (after CONNECT over polling with a poll or a POST in
// flight, mid-upgrade, after joining over WebSocket), many times: every
// session, peer and goroutine goes.
func TestSocketIOAbandonedLeavesNothing(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.PingInterval = 200 * time.Millisecond
		c.SocketIORoomSize = 16
	})
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	base := sioBase(hs)
	addr := hs.Listener.Addr().String()
	wsBase := "ws" + strings.TrimPrefix(base, "http")
	g0 := runtime.NumGoroutine()

	// A handshake and CONNECT by hand, without a poll loop.
	open := func(t *testing.T) string {
		resp, err := http.Get(base + "?EIO=4&transport=polling")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var o struct{ SID string }
		if err := json.Unmarshal(b[1:], &o); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		resp, err = http.Post(base+"?EIO=4&transport=polling&sid="+o.SID, "text/plain", strings.NewReader(`40`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return o.SID
	}
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"connected, then silent", func(t *testing.T) { open(t) }},
		{"poll abandoned", func(t *testing.T) {
			sid := open(t)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", sid)
			time.Sleep(2 * time.Millisecond)
			c.Close()
		}},
		{"post cut short", func(t *testing.T) {
			sid := open(t)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "POST /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n42[\"jo", sid)
			time.Sleep(2 * time.Millisecond)
			c.Close()
		}},
		{"joined, upgrade abandoned after probe", func(t *testing.T) {
			sid := open(t)
			resp, err := http.Post(base+"?EIO=4&transport=polling&sid="+sid, "text/plain", strings.NewReader(`42["join","r"]`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			ws, _, err := websocket.DefaultDialer.Dial(wsBase+"?EIO=4&transport=websocket&sid="+sid, nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = ws.WriteMessage(websocket.TextMessage, []byte("2probe"))
			_, _, _ = ws.ReadMessage()
			ws.Close()
		}},
		{"upgraded, joined, dropped", func(t *testing.T) {
			sid := open(t)
			ws, _, err := websocket.DefaultDialer.Dial(wsBase+"?EIO=4&transport=websocket&sid="+sid, nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = ws.WriteMessage(websocket.TextMessage, []byte("2probe"))
			_, _, _ = ws.ReadMessage()
			_ = ws.WriteMessage(websocket.TextMessage, []byte("5"))
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`42["join","r"]`))
			ws.Close()
		}},
		{"websocket connect and close", func(t *testing.T) {
			ws, _, err := websocket.DefaultDialer.Dial(wsBase+"?EIO=4&transport=websocket", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _, _ = ws.ReadMessage()
			_ = ws.WriteMessage(websocket.TextMessage, []byte("40"))
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`42["create or join","r"]`))
			ws.Close()
		}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			for range 20 {
				step.run(t)
			}
		})
	}
	http.DefaultClient.CloseIdleConnections()
	eventually(t, "every session gone", func() bool {
		st := s.Stats()
		return st.Connections == 0 && st.Peers == 0 && st.Rooms == 0 && s.eio.Sessions() == 0
	})
	if !waitUntil(10*time.Second, func() bool { return runtime.NumGoroutine() <= g0+1 }) {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after\n%s", g0, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
}

// TestSocketIOOriginOnEveryRequest: a foreign Origin is refused on the
// handshake, on a polling POST and GET of an open session, and on its
// upgrade.
func TestSocketIOOriginOnEveryRequest(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.AllowedOrigins = []string{"https://good.example"} })
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	base := sioBase(hs)
	c := dialSIOPolling(t, base)
	c.connect()
	bad := http.Header{"Origin": {"https://evil.example"}}
	for _, tc := range []struct{ method, url, body string }{
		{"GET", base + "?EIO=4&transport=polling", ""},
		{"POST", c.url(), `42["join","r"]`},
		{"GET", c.url(), ""},
	} {
		req, _ := http.NewRequest(tc.method, tc.url, strings.NewReader(tc.body))
		req.Header = bad.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s with a foreign origin: %d", tc.method, tc.url, resp.StatusCode)
		}
	}
	_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"?EIO=4&transport=websocket&sid="+c.sid, bad)
	if err == nil {
		t.Fatal("upgrade with a foreign origin accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("upgrade with a foreign origin: %v", resp)
	}
}

// TestSocketIOSlowPollerDropped: a polling client that stops polling while
// its room keeps talking is dropped as too slow; the sender is never held
// up (every one of its messages is acked at once) and its session lives.
func TestSocketIOSlowPollerDropped(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		// Its outbox holds 616 messages, its Engine.IO queue 64 of
		// these (maxPayload 256 KiB): 800 overflow them.
		c.SendQueue = 16
		c.MessagesPerSecond = 600
		c.MessagesBurst = 600
	})
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	base := sioBase(hs)
	a := dialSIOWebSocket(t, base)
	a.connect()
	a.send(`2["join","r"]`)
	a.expect(`2["joined"`)
	b := dialSIOPolling(t, base)
	b.connect()
	b.send(`2["join","r"]`)
	b.expect(`2["joined"`)
	a.expect(`2["otherjoin"`)
	close(b.done) // b stops polling (its last poll may still be answered)
	b.hc.CloseIdleConnections()
	payload := strings.Repeat("x", 4000)
	start := time.Now()
	// 800 delivered: a sender faster than messages_per_second's refill
	// has some refused (their ack says rate-limited), and those are sent
	// again, or fewer than 800 would reach the poller's queues.
	for i, sent := 0, 0; sent < 800; i++ {
		a.send(fmt.Sprintf(`2%d["message","r","%s"]`, i, payload))
		if ack := a.expect(fmt.Sprintf("3%d[", i)); strings.Contains(ack, CodeRateLimited) {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		sent++
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("800 messages to a room with a stalled poller took %v", d)
	}
	eventually(t, "the stalled poller dropped", func() bool { return s.Stats().Peers == 1 })
	a.send(`2["message","r","still here"]`)
	a.send(`2999["ice-servers"]`)
	a.expect(`3999[`)
}
