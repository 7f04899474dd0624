package redisbus

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/rueidis"

	"icegate/internal/redistest"
	"icegate/signaling"
	"icegate/signaling/bustest"
)

// The tests here run signaling.Server on the Redis bus, with WebSocket
// clients over loopback: the session code and the bus together.

// testServer is one signaling node on a Redis bus, behind an HTTP server.
type testServer struct {
	*signaling.Server
	bus  *Bus
	http *httptest.Server
}

// startServer starts a node named node on srv, keyed under t's prefix.
func startServer(t *testing.T, srv *redistest.Server, node string, mutate func(*signaling.Config)) *testServer {
	t.Helper()
	b := newBusFor(srv, srv.URL(), nil)(t, node).(*Bus)
	cfg := signaling.Config{}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := signaling.New(cfg, signaling.Options{Bus: b})
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		h.Close()
	})
	return &testServer{Server: s, bus: b, http: h}
}

// wsClient is a peer: a WebSocket whose messages a goroutine decodes.
type wsClient struct {
	t     *testing.T
	ws    *websocket.Conn
	in    chan map[string]any
	hello map[string]any
}

// dial connects to s with the query q ("" or "resume=…&last=…") and reads
// hello.
func dial(t *testing.T, s *testServer, q string) *wsClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.http.URL, "http") + "/ws"
	if q != "" {
		u += "?" + q
	}
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	c := &wsClient{t: t, ws: ws, in: make(chan map[string]any, 4096)}
	t.Cleanup(func() { ws.Close() })
	go func() {
		defer close(c.in)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			d := json.NewDecoder(strings.NewReader(string(b)))
			d.UseNumber()
			if d.Decode(&m) == nil {
				c.in <- m
			}
		}
	}()
	c.hello = c.expect("hello")
	return c
}

func (c *wsClient) id() string { return c.hello["peer"].(string) }

func (c *wsClient) send(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next returns the next message within d, or nil.
func (c *wsClient) next(d time.Duration) map[string]any {
	select {
	case m := <-c.in:
		return m
	case <-time.After(d):
		return nil
	}
}

func (c *wsClient) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.next(5 * time.Second)
	if m == nil || m["type"] != typ {
		c.t.Fatalf("got %v, want a %q message", m, typ)
	}
	return m
}

// redisClient is a plain client on srv, for commands a test needs.
func redisClient(t *testing.T, srv *redistest.Server) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func do(t *testing.T, c rueidis.Client, args ...string) {
	t.Helper()
	if err := c.Do(context.Background(), c.B().Arbitrary(args...).Build()).Error(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
}

// After the delivery channel was down (deliveries lost), the node replays
// from each connection's last written message. A replay longer than the
// connection's outbox must not leave a hole that stalls every later
// message: each of them still arrives, in order.
func TestResyncLongerThanOutbox(t *testing.T) {
	srv := redistest.Start(t)
	s := startServer(t, srv, "node-a", func(c *signaling.Config) { c.SendQueue = 16 })
	rc := redisClient(t, srv)
	a, b := dial(t, s, ""), dial(t, s, "")
	for _, p := range []*wsClient{a, b} {
		p.send(`{"type":"join","room":"r"}`)
		p.expect("joined")
	}
	a.expect("peer-joined")
	// The delivery channel breaks and cannot come back for now.
	t.Cleanup(func() {
		_ = rc.Do(context.Background(), rc.B().Arbitrary("ACL", "SETUSER", "default", "+subscribe").Build())
	})
	do(t, rc, "ACL", "SETUSER", "default", "-subscribe")
	do(t, rc, "CLIENT", "KILL", "TYPE", "pubsub")
	if !waitFor(3*time.Second, func() bool { return !s.bus.Healthy() }) {
		t.Fatal("delivery channel still up")
	}
	// 300 messages for b meanwhile: logged, their deliveries lost. b's
	// outbox takes send_queue + messages_burst = 216.
	ctx := context.Background()
	const n = 300
	for i := 1; i <= n; i++ {
		if err := s.bus.Push(ctx, b.id(), []byte(`{"type":"message","data":`+itoa(i)+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	do(t, rc, "ACL", "SETUSER", "default", "+subscribe")
	if !waitFor(5*time.Second, s.bus.Healthy) {
		t.Fatal("delivery channel not back")
	}
	// And one more after the resync.
	a.send(`{"type":"message","to":"` + b.id() + `","id":1,"data":` + itoa(n+1) + `}`)
	a.expect("ack")
	for i := 1; i <= n+1; i++ {
		m := b.next(5 * time.Second)
		if m == nil {
			t.Fatalf("message %d never came", i)
		}
		if m["type"] != "message" || m["data"].(json.Number).String() != itoa(i) {
			t.Fatalf("message %d: %v", i, m)
		}
	}
}

// A resync whose replay fails (Redis answers the subscription but not yet
// the scripts: loading after a restart, a blip) must not leave the
// connection with a hole that stalls every later message: it tries again,
// or closes the connection so its client resumes.
func TestResyncReplayFails(t *testing.T) {
	srv := redistest.Start(t)
	s := startServer(t, srv, "node-a", nil)
	rc := redisClient(t, srv)
	a, b := dial(t, s, ""), dial(t, s, "")
	for _, p := range []*wsClient{a, b} {
		p.send(`{"type":"join","room":"r"}`)
		p.expect("joined")
	}
	a.expect("peer-joined")
	t.Cleanup(func() {
		_ = rc.Do(context.Background(), rc.B().Arbitrary("ACL", "SETUSER", "default", "+subscribe", "+evalsha", "+eval").Build())
	})
	do(t, rc, "ACL", "SETUSER", "default", "-subscribe")
	do(t, rc, "CLIENT", "KILL", "TYPE", "pubsub")
	if !waitFor(3*time.Second, func() bool { return !s.bus.Healthy() }) {
		t.Fatal("delivery channel still up")
	}
	ctx := context.Background()
	const n = 5
	for i := 1; i <= n; i++ {
		if err := s.bus.Push(ctx, b.id(), []byte(`{"type":"message","data":`+itoa(i)+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	// The channel comes back, the scripts only a little later.
	do(t, rc, "ACL", "SETUSER", "default", "+subscribe", "-evalsha", "-eval")
	if !waitFor(5*time.Second, s.bus.Healthy) {
		t.Fatal("delivery channel not back")
	}
	time.Sleep(300 * time.Millisecond)
	do(t, rc, "ACL", "SETUSER", "default", "+evalsha", "+eval")
	a.send(`{"type":"message","to":"` + b.id() + `","id":1,"data":` + itoa(n+1) + `}`)
	a.expect("ack")
	for i := 1; i <= n+1; i++ {
		m := b.next(5 * time.Second)
		if m == nil {
			t.Fatalf("message %d never came", i)
		}
		if m["type"] != "message" || m["data"].(json.Number).String() != itoa(i) {
			t.Fatalf("message %d: %v", i, m)
		}
	}
}

// Many connections come and go (bye, drop, resume, drop while messages
// flow to them); afterwards no goroutine and no per-session state of this
// node's bus is left behind.
func TestNoLeakPerConnection(t *testing.T) {
	srv := redistest.Start(t)
	s := startServer(t, srv, "node-a", nil)
	a := dial(t, s, "")
	a.send(`{"type":"join","room":"r"}`)
	a.expect("joined")
	go func() {
		for range a.in { // acks, peer-joined, peer-left
		}
	}()
	base := runtime.NumGoroutine()
	for i := range 60 {
		b := dial(t, s, "")
		b.send(`{"type":"join","room":"r"}`)
		b.expect("joined")
		// Messages flow to b while its connection drops.
		done := make(chan struct{})
		go func() {
			defer close(done)
			for j := range 20 {
				_, _ = s.bus.Send(context.Background(), signaling.SendRequest{From: a.id(), To: b.id(), Body: []byte(`{"type":"message","data":` + itoa(j) + `}`)})
			}
		}()
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		b.ws.UnderlyingConn().Close()
		<-done
		if i%2 == 0 {
			// Resume, then leave for good.
			b2 := dial(t, s, "resume="+b.hello["resume_token"].(string))
			if b2.hello["resumed"] != true {
				t.Fatalf("resume %d: %v", i, b2.hello)
			}
			b2.send(`{"type":"bye"}`)
			for b2.next(5*time.Second) != nil {
			}
		} else {
			// Ends when its grace does: remove it now through the API's path.
			ctx := context.Background()
			_ = s.bus.Kick(ctx, b.id(), 4100, "done")
			_ = s.bus.Remove(ctx, b.id(), 0)
		}
	}
	if !waitFor(5*time.Second, func() bool { return s.Connections() == 1 }) {
		t.Fatalf("%d connections left, want 1", s.Connections())
	}
	if !waitFor(5*time.Second, func() bool {
		s.bus.mu.Lock()
		defer s.bus.mu.Unlock()
		return len(s.bus.last) == 1
	}) {
		s.bus.mu.Lock()
		t.Errorf("the bus tracks %d sessions, want 1 (a's): %v", len(s.bus.last), s.bus.last)
		s.bus.mu.Unlock()
	}
	if !waitFor(5*time.Second, func() bool { return runtime.NumGoroutine() <= base+2 }) {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after\n%s", base, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
}

// The node tracks exactly the sessions it holds: a delivery that arrives
// after its session's Hold (published before it, on the other connection)
// brings back no entry, and a stale connection's Hold or Remove does not
// drop the entry of the later one that resumed on this node.
func TestTrackedSessions(t *testing.T) {
	srv := redistest.Start(t)
	n := bustest.Start(t, newBusFor(srv, srv.URL(), nil), "node-a")
	b := n.Bus.(*Bus)
	ctx := context.Background()
	l := signaling.Limits{Queue: 4, Keep: 4, Grace: time.Minute}
	tracked := func(id string) bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		_, ok := b.last[id]
		return ok
	}
	if err := b.Open(ctx, signaling.Session{ID: "s1", Token: "t1", Limits: l}); err != nil {
		t.Fatal(err)
	}
	if err := b.Hold(ctx, "s1", 1, 0, time.Minute); err != nil {
		t.Fatal(err)
	}
	b.onMessage(rueidis.PubSubMessage{Channel: b.channel, Message: "d1 2 s1{}"})
	if tracked("s1") {
		t.Error("a late delivery brought back the entry of a held session")
	}
	if err := b.Open(ctx, signaling.Session{ID: "s2", Token: "t2", Limits: l}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Resume(ctx, signaling.ResumeRequest{Token: "t2", NewToken: "t2b", Limits: l}); err != nil {
		t.Fatal(err)
	}
	if err := b.Hold(ctx, "s2", 1, 0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx, "s2", 1); err != nil {
		t.Fatal(err)
	}
	if !tracked("s2") {
		t.Error("the stale connection's Hold or Remove dropped the entry of the session it resumed here")
	}
	if err := b.Remove(ctx, "s2", 2); err != nil || tracked("s2") {
		t.Errorf("Remove at the current epoch: %v, tracked %v", err, tracked("s2"))
	}
}

// A peer that leaves while Redis cannot be reached must still leave once
// it can: the others get peer-left and the room forgets it, rather than
// keeping a member with no connection for as long as the node lives.
func TestLeaveWhileRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	s := startServer(t, srv, "node-a", nil)
	a, b := dial(t, s, ""), dial(t, s, "")
	for _, p := range []*wsClient{a, b} {
		p.send(`{"type":"join","room":"r"}`)
		p.expect("joined")
	}
	a.expect("peer-joined")
	srv.Pause()
	b.send(`{"type":"bye"}`)
	if !waitFor(5*time.Second, func() bool { return s.Connections() == 1 }) {
		t.Fatal("b's connection still open")
	}
	time.Sleep(2 * time.Second) // b's Remove fails: Redis does not answer
	srv.Continue()
	for {
		m := a.next(10 * time.Second)
		if m == nil {
			ms, err := s.bus.Members(context.Background(), "r")
			t.Fatalf("no peer-left for b; members of r: %+v, %v", ms, err)
		}
		if m["type"] == "peer-left" && m["peer"] == b.id() {
			break
		}
	}
}

// A node that shuts down closes its connections with 1001, and on a
// cluster their sessions are held, to resume on another node: a client
// echoing the close code is not a client saying goodbye.
func TestShutdownHoldsSessions(t *testing.T) {
	srv := redistest.Start(t)
	a := startServer(t, srv, "node-a", nil)
	b := startServer(t, srv, "node-b", nil)
	var peers []*wsClient
	for range 12 { // within a room's 16
		p := dial(t, a, "")
		p.send(`{"type":"join","room":"r"}`)
		p.expect("joined")
		peers = append(peers, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, p := range peers {
		r := dial(t, b, "resume="+p.hello["resume_token"].(string))
		if r.hello["resumed"] != true {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d sessions could not resume on another node after a shutdown", lost, len(peers))
	}
}
