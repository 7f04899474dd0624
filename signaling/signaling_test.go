package signaling

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"icegate/auth"
)

func TestHello(t *testing.T) {
	s := newTestServer(t, nil)
	a := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Host: "turn.example.com"}})
	h := a.hello
	id := a.id()
	if len(id) != 16 || h["resume_token"] == "" || h["resumed"] != false {
		t.Fatalf("hello: %v", h)
	}
	servers := h["ice_servers"].([]any)
	if len(servers) != 2 {
		t.Fatalf("ice_servers: %v", servers)
	}
	turnSrv := servers[1].(map[string]any)
	urls := str(turnSrv["urls"])
	for _, want := range []string{"turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp", "turns:turn.example.com:5349?transport=tcp"} {
		if !strings.Contains(urls, want) {
			t.Errorf("urls %s lack %s", urls, want)
		}
	}
	user := turnSrv["username"].(string)
	if !strings.HasSuffix(user, ":"+id) {
		t.Errorf("username %q does not carry the peer id %s", user, id)
	}
	if turnSrv["credential"] != auth.RESTPassword(testSecret, user) {
		t.Errorf("credential does not match the secret")
	}
	exp, err := time.Parse(time.RFC3339, h["expires"].(string))
	if err != nil || time.Until(exp) < 59*time.Minute || time.Until(exp) > 61*time.Minute {
		t.Errorf("expires %v (%v), want in 1h", h["expires"], err)
	}
	srv := h["server"].(map[string]any)
	if srv["turns_certificate"] != "self-signed" || srv["credentials"] != true {
		t.Errorf("server: %v", srv)
	}

	// A renewal on request, and pings answered.
	a.send(`{"type":"renew"}`)
	r := a.expect("ice-servers")
	if r["seq"] == nil || len(r["ice_servers"].([]any)) != 2 {
		t.Errorf("renewal: %v", r)
	}
	a.send(`{"type":"ping","id":7}`)
	if p := a.expect("pong"); str(p["id"]) != "7" {
		t.Errorf("pong: %v", p)
	}
}

func TestNoSecretGivesSTUNOnly(t *testing.T) {
	cfg := testConfig(nil)
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	a := connect(t, s, pipeOpts{})
	servers := a.hello["ice_servers"].([]any)
	if len(servers) != 1 || a.hello["server"].(map[string]any)["credentials"] != false {
		t.Fatalf("hello without a secret: %v", a.hello)
	}
}

func TestRooms(t *testing.T) {
	s := newTestServer(t, nil)
	a := connect(t, s, pipeOpts{})
	b := connect(t, s, pipeOpts{})
	c := connect(t, s, pipeOpts{})

	a.send(`{"type":"join","room":"r1","id":"j1"}`)
	j := a.expect("joined")
	if j["room"] != "r1" || str(j["peers"]) != "[]" || str(j["id"]) != "j1" || str(j["max_peers"]) != "16" {
		t.Fatalf("joined: %v", j)
	}
	b.send(`{"type":"join","room":"r1"}`)
	if j := b.expect("joined"); str(j["peers"]) != `["`+a.id()+`"]` {
		t.Fatalf("b joined: %v", j)
	}
	if pj := a.expect("peer-joined"); pj["peer"] != b.id() || pj["room"] != "r1" {
		t.Fatalf("peer-joined: %v", pj)
	}
	if st := s.Stats(); st.Rooms != 1 || st.Peers != 3 || st.Connections != 3 {
		t.Fatalf("stats %+v", st)
	}

	// Directed messages carry the sender; ids are acked.
	a.send(`{"type":"offer","to":"` + b.id() + `","id":1,"data":{"type":"offer","sdp":"v=0..."}}`)
	o := b.expect("offer")
	if o["from"] != a.id() || str(o["data"]) != `{"sdp":"v=0...","type":"offer"}` {
		t.Fatalf("offer: %v", o)
	}
	if ack := a.expect("ack"); str(ack["id"]) != "1" || ack["held"] != nil {
		t.Fatalf("ack: %v", ack)
	}
	b.send(`{"type":"answer","to":"` + a.id() + `","data":{"type":"answer","sdp":"v=0"}}`)
	a.expect("answer")
	b.send(`{"type":"candidate","to":"` + a.id() + `","id":"c"}`) // end of candidates: null
	if m := a.expect("candidate"); m["data"] != nil {
		t.Fatalf("null candidate: %v", m)
	}
	b.expect("ack")
	b.send(`{"type":"message","to":"` + a.id() + `","room":"r1","data":[1,2,3]}`)
	if m := a.expect("message"); m["room"] != "r1" || str(m["data"]) != "[1,2,3]" {
		t.Fatalf("message: %v", m)
	}

	// c shares no room with a: it cannot reach a, nor broadcast to r1.
	c.send(`{"type":"message","to":"` + a.id() + `","id":2,"data":"hi"}`)
	if e := c.expect("error"); e["code"] != CodeNoSuchPeer || str(e["id"]) != "2" || e["for"] != "message" {
		t.Fatalf("error: %v", e)
	}
	c.send(`{"type":"broadcast","room":"r1","id":3,"data":"hi"}`)
	if e := c.expect("error"); e["code"] != CodeNotInRoom {
		t.Fatalf("error: %v", e)
	}

	// Broadcast reaches everyone else in the room.
	c.send(`{"type":"join","room":"r1"}`)
	c.expect("joined")
	a.expect("peer-joined")
	b.expect("peer-joined")
	a.send(`{"type":"broadcast","room":"r1","id":"b","data":{"x":1}}`)
	for _, p := range []*client{b, c} {
		if m := p.expect("broadcast"); m["from"] != a.id() || m["room"] != "r1" {
			t.Fatalf("broadcast: %v", m)
		}
	}
	if ack := a.expect("ack"); str(ack["delivered"]) != "2" {
		t.Fatalf("broadcast ack: %v", ack)
	}

	// Leave and disconnect tell the others; the empty room disappears.
	b.send(`{"type":"leave","room":"r1","id":9}`)
	if l := b.expect("left"); l["room"] != "r1" || str(l["id"]) != "9" {
		t.Fatalf("left: %v", l)
	}
	for _, p := range []*client{a, c} {
		if m := p.expect("peer-left"); m["peer"] != b.id() {
			t.Fatalf("peer-left: %v", m)
		}
	}
	b.send(`{"type":"leave","room":"r1"}`)
	if e := b.expect("error"); e["code"] != CodeNotInRoom {
		t.Fatalf("second leave: %v", e)
	}
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	if m := a.expect("peer-left"); m["peer"] != c.id() {
		t.Fatalf("peer-left on close: %v", m)
	}
	// c left for good: it is gone, not unknown.
	a.send(`{"type":"offer","to":"` + c.id() + `","id":4,"data":{}}`)
	if e := a.expect("error"); e["code"] != CodePeerGone {
		t.Fatalf("to a departed peer: %v", e)
	}
	a.send(`{"type":"offer","to":"nosuchpeer","id":5,"data":{}}`)
	if e := a.expect("error"); e["code"] != CodeNoSuchPeer {
		t.Fatalf("to an unknown peer: %v", e)
	}
	a.send(`{"type":"leave","room":"r1"}`)
	a.expect("left")
	eventually(t, "the room to disappear", func() bool { return s.Stats().Rooms == 0 })
}

func TestRoomFull(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.PeersPerRoom = 3 })
	var cs []*client
	for range 4 {
		cs = append(cs, connect(t, s, pipeOpts{}))
	}
	// The first joiner sets a smaller size.
	cs[0].send(`{"type":"join","room":"duo","max_peers":2}`)
	if j := cs[0].expect("joined"); str(j["max_peers"]) != "2" {
		t.Fatalf("joined: %v", j)
	}
	cs[1].send(`{"type":"join","room":"duo"}`)
	cs[1].expect("joined")
	cs[2].send(`{"type":"join","room":"duo","id":"x"}`)
	e := cs[2].expect("error")
	if e["code"] != CodeRoomFull || str(e["id"]) != "x" || !strings.Contains(e["error"].(string), "full (2 of 2 peers)") {
		t.Fatalf("room full: %v", e)
	}
	cs[0].expect("peer-joined")
	// A join asking for more than peers_per_room gets peers_per_room.
	for i, c := range cs {
		c.send(`{"type":"join","room":"big","max_peers":100}`)
		m := c.next()
		for m["type"] == "peer-joined" {
			m = c.next()
		}
		if i < 3 {
			if m["type"] != "joined" || str(m["max_peers"]) != "3" {
				t.Fatalf("joined: %v", m)
			}
		} else if m["code"] != CodeRoomFull {
			t.Fatalf("want room-full: %v", m)
		}
	}
}

func TestRoomsPerPeerAndTokenRooms(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.RoomsPerPeer = 1 })
	a := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Claims: &Claims{Subject: "alice", Rooms: []string{"team-*", "lobby"}}}})
	if a.hello["user"] != "alice" {
		t.Fatalf("hello user: %v", a.hello)
	}
	a.send(`{"type":"join","room":"secret"}`)
	if e := a.expect("error"); e["code"] != CodeRoomNotAllowed {
		t.Fatalf("room not allowed: %v", e)
	}
	a.send(`{"type":"join","room":"team-1"}`)
	a.expect("joined")
	a.send(`{"type":"join","room":"lobby"}`)
	if e := a.expect("error"); e["code"] != CodeTooManyRooms {
		t.Fatalf("too many rooms: %v", e)
	}
	// Joining a room one is in is harmless.
	a.send(`{"type":"join","room":"team-1"}`)
	a.expect("joined")
}

func TestMalformed(t *testing.T) {
	s := newTestServer(t, nil)
	a, b := pairInRoom(t, s, "r")
	for _, tc := range []struct{ in, code, id string }{
		{`not json`, CodeBadJSON, ""},
		{`[1,2]`, CodeBadJSON, ""},
		{`{"type":"nope","id":5}`, CodeUnknownType, "5"},
		{`{"id":"x"}`, CodeUnknownType, "x"},
		{`{"type":"offer","id":"y"}`, CodeBadField, "y"},
		{`{"type":"offer","to":"` + b.id() + `","id":"z"}`, CodeBadField, "z"},
		{`{"type":"join","room":"has space"}`, CodeBadField, ""},
		{`{"type":"join","room":"` + strings.Repeat("r", 65) + `"}`, CodeBadField, ""},
		{`{"type":"join","room":7,"id":8}`, CodeBadField, "8"},
		{`{"type":"ping","id":{"a":1}}`, CodeBadField, ""},
		{`{"type":"turn-events"}`, CodeBadField, ""},
		{"\xff\xfe", CodeBadJSON, ""},
	} {
		a.send(tc.in)
		e := a.expect("error")
		if e["code"] != tc.code || str(e["id"]) != tc.id || e["error"] == "" {
			t.Errorf("%s: got %v, want code %s id %q", tc.in, e, tc.code, tc.id)
		}
	}
	// The connection is fine and b saw none of it.
	a.send(`{"type":"message","to":"` + b.id() + `","data":"still here"}`)
	if m := b.expect("message"); m["data"] != "still here" {
		t.Fatalf("after malformed input: %v", m)
	}
}

func TestMessageSizeAndRate(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.MaxMessageBytes = 1024
		c.MessagesPerSecond = 1
		c.MessagesBurst = 2
	})
	a := connect(t, s, pipeOpts{})
	big := `{"type":"ping","id":"big","pad":"` + strings.Repeat("x", 2000) + `"}`
	a.send(big)
	if e := a.expect("error"); e["code"] != CodeTooLarge || !strings.Contains(e["error"].(string), "1024") || e["id"] != "big" {
		t.Fatalf("too large: %v", e)
	}
	a.send(`{"type":"ping"}`)
	a.expect("pong")
	a.send(`{"type":"ping"}`)
	a.expect("pong")
	a.send(`{"type":"ping","data":{"id":"inner"},"id":7}`) // the burst of 2 is used up
	if e := a.expect("error"); e["code"] != CodeRateLimited || str(e["id"]) != "7" {
		t.Fatalf("rate: %v", e)
	}
	time.Sleep(1100 * time.Millisecond)
	a.send(`{"type":"ping"}`)
	a.expect("pong")

	// Far beyond the limit, the connection is closed with 1009.
	// (The server may close before the client has written it all.)
	_ = a.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","pad":"`+strings.Repeat("x", 70000)+`"}`))
	if err := a.waitClosed(); closeCode(err) != websocket.CloseMessageTooBig {
		t.Fatalf("huge message: %v", err)
	}
}

func TestMaxConnections(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxConnections = 1 })
	connect(t, s, pipeOpts{})
	b := connect(t, s, pipeOpts{noHello: true})
	if err := b.waitClosed(); closeCode(err) != websocket.CloseTryAgainLater {
		t.Fatalf("second connection: %v", err)
	}
	if got := counterValue(t, s.metrics.refused.WithLabelValues("capacity")); got != 1 {
		t.Errorf("refused{reason=capacity} = %v, want 1", got)
	}
}

func TestSlowReaderDisconnected(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.SendQueue = 16 })
	a, b := pairInRoom(t, s, "r") // b reads hello, then stops reading below
	c := connect(t, s, pipeOpts{})
	c.send(`{"type":"join","room":"r","id":"j"}`)
	c.expect("joined")
	a.expect("peer-joined")
	// b stops reading: everything for it piles up on the server.
	b.raw.SetReadDeadline(time.Now()) // its reader fails; nothing reads the pipe any more
	eventually(t, "b's reader to stop", func() bool {
		select {
		case <-b.closed:
			return true
		default:
			return false
		}
	})
	// b's queue takes signaling.send_queue messages beyond a burst of its
	// own replies (messages_burst, 200): two senders, each within its own
	// burst, fill it.
	start := time.Now()
	full := false
	for i := 0; i < 180 && !full; i++ {
		for _, from := range []*client{a, c} {
			from.send(`{"type":"message","to":"` + b.id() + `","id":` + str(i) + `,"data":"x"}`)
			m := from.next()
			switch {
			case m["type"] == "ack":
			case m["type"] == "error" && m["code"] == CodeQueueFull:
				full = true
			default:
				t.Fatalf("unexpected %v", m)
			}
		}
	}
	if !full {
		t.Fatal("no queue-full error after 360 messages")
	}
	// The senders were never slowed down, and b's connection is closed.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the senders waited %v", d)
	}
	eventually(t, "the slow connection to close", func() bool { return s.Connections() == 2 })
}

func TestResume(t *testing.T) {
	s := newTestServer(t, nil)
	a, b := pairInRoom(t, s, "r")
	a.send(`{"type":"message","to":"` + b.id() + `","data":0}`)
	m := b.expect("message")
	lastSeq := str(m["seq"])

	// b's network drops (no close frame).
	b.raw.Close()
	eventually(t, "the server to notice", func() bool { return s.Connections() == 1 })
	for i := 1; i <= 5; i++ {
		a.send(`{"type":"message","to":"` + b.id() + `","id":` + str(i) + `,"data":` + str(i) + `}`)
		if ack := a.expect("ack"); ack["held"] != true {
			t.Fatalf("ack while b is away: %v", ack)
		}
	}
	a.quiet(100 * time.Millisecond) // no peer-left: b is within its grace

	var last uint64
	for _, c := range lastSeq {
		last = last*10 + uint64(c-'0')
	}
	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b.hello["resume_token"].(string), LastSeq: last}})
	h := b2.hello
	if h["resumed"] != true || h["peer"] != b.id() || str(h["rooms"]) != `["r"]` || h["resume_token"] == b.hello["resume_token"] {
		t.Fatalf("resumed hello: %v", h)
	}
	for i := 1; i <= 5; i++ {
		m := b2.expect("message")
		if str(m["data"]) != str(i) || m["from"] != a.id() {
			t.Fatalf("replay %d: %v", i, m)
		}
	}
	// Resuming while the old connection still looks alive replaces it,
	// and messages it was sent but may not have read come again.
	a.send(`{"type":"message","to":"` + b.id() + `","data":"again"}`)
	again := b2.expect("message")
	seq := str(again["seq"])
	var n uint64
	for _, c := range seq {
		n = n*10 + uint64(c-'0')
	}
	b4 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b2.hello["resume_token"].(string), LastSeq: n - 1}})
	if b4.hello["resumed"] != true {
		t.Fatalf("resume over a live connection: %v", b4.hello)
	}
	if m := b4.expect("message"); m["data"] != "again" {
		t.Fatalf("replayed: %v", m)
	}
	if err := b2.waitClosed(); closeCode(err) != 4000 {
		t.Fatalf("replaced connection closed with %v", err)
	}
	// Two resumes later, the first token is spent.
	b3 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b.hello["resume_token"].(string)}})
	if b3.hello["resumed"] != false || b3.hello["resume_error"] == nil {
		t.Fatalf("spent token: %v", b3.hello)
	}
}

// A connection that drops during the resume itself, before the client
// has read the hello with its new token, loses nothing: the token it used
// still works (once more).
func TestResumeTokenSurvivesDropDuringResume(t *testing.T) {
	s := newTestServer(t, nil)
	a, b := pairInRoom(t, s, "r")
	t0 := b.hello["resume_token"].(string)
	b.raw.Close()
	eventually(t, "the server to notice", func() bool { return s.Connections() == 1 })
	a.send(`{"type":"message","to":"` + b.id() + `","id":1,"data":"one"}`)
	a.expect("ack")
	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: t0}})
	if b2.hello["resumed"] != true {
		t.Fatalf("first resume: %v", b2.hello)
	}
	b2.raw.Close() // before the client saw the new token
	eventually(t, "the server to notice", func() bool { return s.Connections() == 1 })
	b3 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: t0}})
	if b3.hello["resumed"] != true || b3.hello["peer"] != b.id() {
		t.Fatalf("resume with the token used for the dropped resume: %v", b3.hello)
	}
	// Resumed with no last seq, everything is replayed: its joined, then
	// the message.
	b3.expect("joined")
	if m := b3.expect("message"); m["data"] != "one" {
		t.Fatalf("replay: %v", m)
	}
}

func TestResumeWithLastBeyondSent(t *testing.T) {
	s := newTestServer(t, nil)
	a, b := pairInRoom(t, s, "r") // b received seq 1, its joined
	b.raw.Close()
	eventually(t, "the server to notice", func() bool { return s.Connections() == 1 })
	a.send(`{"type":"message","to":"` + b.id() + `","id":1,"data":"held"}`)
	if ack := a.expect("ack"); ack["held"] != true {
		t.Fatalf("ack while b is away: %v", ack)
	}
	// A last that this peer was never sent (say, from an earlier peer's
	// connection): what was written before is not replayed, and the
	// hello says so; the message held since is delivered.
	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b.hello["resume_token"].(string), LastSeq: 50}})
	if b2.hello["resumed"] != true || str(b2.hello["replay"]) != `{"from":2,"gap":true}` {
		t.Fatalf("resume with a last beyond what was sent: %v", b2.hello)
	}
	if m := b2.expect("message"); m["data"] != "held" || str(m["seq"]) != "2" {
		t.Fatalf("held message: %v", m)
	}
	if got := counterValue(t, s.metrics.resumes.WithLabelValues("gap")); got != 1 {
		t.Errorf("resumes{outcome=gap} = %v, want 1", got)
	}
}

func TestGoneMemory(t *testing.T) {
	bus := NewMemoryBus()
	st := bus.st
	now := time.Now()
	st.mu.Lock()
	// Departures older than goneMemory are forgotten at the next one.
	st.rememberGoneLocked("old-1", now.Add(-goneMemory-time.Second))
	st.rememberGoneLocked("old-2", now.Add(-goneMemory))
	st.rememberGoneLocked("recent", now.Add(-goneMemory+time.Minute))
	st.rememberGoneLocked("now", now)
	if _, ok := st.gone["old-1"]; ok || len(st.gone) != 2 || len(st.goneOrder) != 2 {
		t.Fatalf("after expiry: %v", st.gone)
	}
	if !st.goneLocked("recent") || !st.goneLocked("now") || st.goneLocked("old-2") {
		t.Fatalf("goneLocked after expiry: %v", st.gone)
	}
	st.mu.Unlock()

	// Beyond maxGone the oldest are forgotten, one for one, through the
	// path a real departure takes.
	ctx := context.Background()
	var ids []string
	for i := range maxGone + 10 {
		id := fmt.Sprintf("p%05d", i)
		if err := bus.Open(ctx, Session{ID: id}); err != nil {
			t.Fatal(err)
		}
		bus.Remove(ctx, id, 0)
		ids = append(ids, id)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.gone) != maxGone || len(st.goneOrder) != maxGone {
		t.Fatalf("%d remembered, %d in order; want %d", len(st.gone), len(st.goneOrder), maxGone)
	}
	for _, id := range []string{"recent", "now", ids[0], ids[9]} {
		if st.goneLocked(id) {
			t.Errorf("%s still remembered", id)
		}
	}
	for _, id := range []string{ids[10], ids[len(ids)-1]} {
		if !st.goneLocked(id) {
			t.Errorf("%s forgotten", id)
		}
	}
	for i, d := range st.goneOrder {
		if d.id != ids[10+i] || !st.gone[d.id].Equal(d.at) {
			t.Fatalf("goneOrder[%d] = %v, want %s as in gone", i, d, ids[10+i])
		}
	}
}

func TestResumeGraceExpires(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.ResumeGrace = 300 * time.Millisecond })
	a, b := pairInRoom(t, s, "r")
	b.raw.Close()
	if m := a.expect("peer-left"); m["peer"] != b.id() {
		t.Fatalf("peer-left: %v", m)
	}
	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b.hello["resume_token"].(string)}})
	if b2.hello["resumed"] != false || b2.id() == b.id() {
		t.Fatalf("after the grace: %v", b2.hello)
	}
}

func TestResumeOtherUserRefused(t *testing.T) {
	s := newTestServer(t, nil)
	a := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Claims: &Claims{Subject: "alice"}}})
	a.raw.Close()
	eventually(t, "the drop", func() bool { return s.Connections() == 0 })
	m := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Claims: &Claims{Subject: "mallory"}, Resume: a.hello["resume_token"].(string)}})
	if m.hello["resumed"] != false || m.id() == a.id() {
		t.Fatalf("resume by another user: %v", m.hello)
	}
}

func TestKeepaliveAndDeadConnection(t *testing.T) {
	cfg := testConfig(func(c *Config) { c.PingInterval = 200 * time.Millisecond }) // below what the config file allows
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	pings := make(chan struct{}, 100)
	connect(t, s, pipeOpts{setup: func(ws *websocket.Conn) {
		ws.SetPingHandler(func(data string) error {
			pings <- struct{}{}
			return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
	}})
	connect(t, s, pipeOpts{setup: func(ws *websocket.Conn) {
		ws.SetPingHandler(func(string) error { return nil }) // never pongs
	}})
	time.Sleep(time.Second)
	if len(pings) < 3 {
		t.Errorf("%d pings in 1s at a 200ms interval", len(pings))
	}
	eventually(t, "the dead connection to be dropped", func() bool { return s.Connections() == 1 })
}

func TestTURNEvents(t *testing.T) {
	s := newTestServer(t, nil)
	a := connect(t, s, pipeOpts{})
	s.RelayEvent(RelayEvent{Kind: "authenticated", UserID: a.id()}) // not subscribed yet
	a.send(`{"type":"turn-events","on":true,"id":1}`)
	a.expect("ack")
	s.RelayEvent(RelayEvent{Kind: "auth-refused", UserID: a.id(), Detail: "credential expired by 42s", Transport: "udp"})
	s.RelayEvent(RelayEvent{Kind: "auth-refused", UserID: "someone-else"})
	m := a.expect("turn")
	ev := m["event"].(map[string]any)
	if ev["kind"] != "auth-refused" || ev["detail"] != "credential expired by 42s" || ev["transport"] != "udp" {
		t.Fatalf("turn event: %v", m)
	}
	a.quiet(50 * time.Millisecond)

	off := newTestServer(t, func(c *Config) { c.NoTURNEvents = true })
	b := connect(t, off, pipeOpts{})
	b.send(`{"type":"turn-events","on":true,"id":1}`)
	if e := b.expect("error"); e["code"] != CodeDisabled {
		t.Fatalf("disabled: %v", e)
	}
}

func TestBye(t *testing.T) {
	s := newTestServer(t, nil)
	a, b := pairInRoom(t, s, "r")
	b.send(`{"type":"bye","id":1}`)
	b.expect("ack")
	if m := a.expect("peer-left"); m["peer"] != b.id() {
		t.Fatalf("peer-left: %v", m)
	}
	if err := b.waitClosed(); closeCode(err) != websocket.CloseNormalClosure {
		t.Fatalf("bye close: %v", err)
	}
}

// TestCloseWithoutStatus: a close frame without a status code (what a
// browser's ws.close() and the npm ws client's close() send; RFC 6455
// §7.1.5 reports it as 1005) is the client closing on purpose: its peer
// leaves at once, as with 1000, rather than being held for resume_grace
// as a broken connection is.
func TestCloseWithoutStatus(t *testing.T) {
	s := newTestServer(t, nil)
	a, b := pairInRoom(t, s, "r")
	if err := b.ws.WriteControl(websocket.CloseMessage, nil, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if m := a.expect("peer-left"); m["peer"] != b.id() {
		t.Fatalf("peer-left: %v", m)
	}
	eventually(t, "the session to end", func() bool { return s.Connections() == 1 })
	a.send(`{"type":"offer","to":"` + b.id() + `","id":4,"data":{}}`)
	if e := a.expect("error"); e["code"] != CodePeerGone {
		t.Fatalf("to the peer that closed: %v", e)
	}
}

func TestShutdownClosesConnections(t *testing.T) {
	s, err := New(testConfig(nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := connect(t, s, pipeOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.waitClosed(); closeCode(err) != websocket.CloseGoingAway {
		t.Fatalf("close on shutdown: %v", err)
	}
	b := connect(t, s, pipeOpts{noHello: true})
	if err := b.waitClosed(); closeCode(err) != websocket.CloseGoingAway {
		t.Fatalf("after shutdown: %v", err)
	}
	// Counted as refused for what it was, not for capacity.
	closing := counterValue(t, s.metrics.refused.WithLabelValues("closing"))
	capacity := counterValue(t, s.metrics.refused.WithLabelValues("capacity"))
	if closing != 1 || capacity != 0 {
		t.Errorf("refused after shutdown: closing %v, capacity %v; want 1 and 0", closing, capacity)
	}
}

func TestSimpleProtocol(t *testing.T) {
	s := newTestServer(t, nil)
	simple := pipeOpts{AcceptOptions: AcceptOptions{Simple: true}, noHello: true}
	alice := connect(t, s, simple)
	bob := connect(t, s, simple)
	alice.send(`{"type":"offer","name":"bob","offer":{}}`)
	if e := alice.expect("error"); !strings.Contains(e["message"].(string), "log in") {
		t.Fatalf("before login: %v", e)
	}
	alice.send(`{"type":"login","name":"alice"}`)
	if l := alice.expect("login"); l["success"] != true || l["seq"] != nil {
		t.Fatalf("login: %v", l)
	}
	bob.send(`{"type":"login","name":"alice"}`)
	if l := bob.expect("login"); l["success"] != false {
		t.Fatalf("duplicate login: %v", l)
	}
	bob.send(`{"type":"login","name":"bob"}`)
	bob.expect("login")

	alice.send(`{"type":"offer","name":"bob","offer":{"type":"offer","sdp":"o"}}`)
	if o := bob.expect("offer"); o["name"] != "alice" || str(o["offer"]) != `{"sdp":"o","type":"offer"}` {
		t.Fatalf("offer: %v", o)
	}
	bob.send(`{"type":"answer","name":"alice","answer":{"type":"answer","sdp":"a"}}`)
	if a := alice.expect("answer"); str(a["answer"]) != `{"sdp":"a","type":"answer"}` || a["name"] != nil {
		t.Fatalf("answer: %v", a)
	}
	alice.send(`{"type":"candidate","name":"bob","candidate":{"candidate":"c"}}`)
	if c := bob.expect("candidate"); str(c["candidate"]) != `{"candidate":"c"}` {
		t.Fatalf("candidate: %v", c)
	}
	alice.send(`{"type":"leave","name":"bob"}`)
	bob.expect("leave")
	alice.send(`{"type":"dance"}`)
	if e := alice.expect("error"); e["message"] != "Command not found: dance" {
		t.Fatalf("unknown: %v", e)
	}
	alice.send(`{oops`)
	alice.expect("error")
	// A disconnect tells the peer of the last offer/answer.
	bob.send(`{"type":"offer","name":"alice","offer":{}}`)
	alice.expect("offer")
	bob.ws.Close()
	alice.expect("leave")
	eventually(t, "bob's name to be free", func() bool {
		st := s.bus.(*MemoryBus).st
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.names["bob"] == nil
	})
}

func TestCredentialsRenewedBeforeExpiry(t *testing.T) {
	cfg := testConfig(func(c *Config) { c.CredentialTTL = 2 * time.Second }) // below what the config file allows
	s, err := New(cfg, Options{Secret: func() string { return testSecret }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	a := connect(t, s, pipeOpts{})
	first := a.hello["ice_servers"].([]any)[1].(map[string]any)["username"]
	start := time.Now()
	m := a.expect("ice-servers") // at 80% of the lifetime
	if d := time.Since(start); d < 500*time.Millisecond || d > 2*time.Second {
		t.Errorf("renewed after %v, want 1-1.6s (80%% of a lifetime under 2s, at least 1s)", d)
	}
	if next := m["ice_servers"].([]any)[1].(map[string]any)["username"]; next == first || m["expires"] == nil {
		t.Errorf("renewal %v did not bring a new credential", m)
	}
}

// A session ends when its token expires, unless an auth message brings a
// fresh token of the same user first; ended, it does not resume.
func TestTokenExpiryAndAuth(t *testing.T) {
	const secret = "token-secret-0123456789abcdef0123456789"
	s := newTestServer(t, func(c *Config) { c.TokenSecrets = []string{secret} })
	s.leeway = 0
	mint := func(sub string, d time.Duration) string {
		tok, err := MintToken(secret, Claims{Subject: sub, Expiry: time.Now().Add(d).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	claims := func(tok string) *Claims {
		c, err := VerifyToken([]string{secret}, tok, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Claims: claims(mint("alice", 2*time.Second))}})
	if a.hello["token_expires"] == nil || a.hello["user"] != "alice" {
		t.Fatalf("hello: %v", a.hello)
	}
	// Another user's token, or a bad one, is refused and changes nothing.
	a.send(`{"type":"auth","id":1,"token":"` + mint("mallory", time.Hour) + `"}`)
	if e := a.expect("error"); e["code"] != CodeBadToken || str(e["id"]) != "1" {
		t.Fatalf("other user's token: %v", e)
	}
	a.send(`{"type":"auth","id":2,"token":"x.y.z"}`)
	if e := a.expect("error"); e["code"] != CodeBadToken {
		t.Fatalf("bad token: %v", e)
	}
	// A fresh token of the same user moves the end.
	a.send(`{"type":"auth","id":3,"token":"` + mint("alice", time.Hour) + `"}`)
	a.expect("ack")
	a.quiet(3 * time.Second)

	// Without one, the session ends at expiry: an error, then close 4001,
	// and the resume token no longer works.
	b := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Claims: claims(mint("bob", 2*time.Second))}})
	start := time.Now()
	if e := b.expect("error"); e["code"] != CodeTokenExpired {
		t.Fatalf("at expiry: %v", e)
	}
	if err := b.waitClosed(); closeCode(err) != closeTokenExpired {
		t.Fatalf("closed with %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("ended %v after connecting, token lived 2s", d)
	}
	eventually(t, "bob's session to end", func() bool { return s.Connections() == 1 })
	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Claims: claims(mint("bob", time.Hour)), Resume: b.hello["resume_token"].(string)}})
	if b2.hello["resumed"] != false {
		t.Fatalf("an expired session resumed: %v", b2.hello)
	}
}

// A client that sends its whole allowed burst before reading anything is
// not disconnected for the replies piling up: its queue holds a burst of
// its own replies beyond signaling.send_queue.
func TestBurstDoesNotOverflowOwnQueue(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.SendQueue = 16; c.MessagesBurst = 200 })
	c := connect(t, s, pipeOpts{noRead: true})
	for i := range 200 {
		c.send(`{"type":"ping","id":` + str(i) + `}`)
	}
	go c.readLoop()
	c.expect("hello")
	for i := range 200 {
		if m := c.expect("pong"); str(m["id"]) != str(i) {
			t.Fatalf("pong %d: %v", i, m)
		}
	}
}

// A kick meant for the connection a resume replaced (its epoch) arrives
// late, after the replacement registered: it leaves the replacement open.
// A kick at the replacement's epoch closes it.
func TestLateKickSparesNewerConnection(t *testing.T) {
	s := newTestServer(t, nil)
	a := connect(t, s, pipeOpts{})
	a.raw.Close()
	eventually(t, "the drop to be noticed", func() bool { return s.Connections() == 0 })
	a2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: a.hello["resume_token"].(string)}})
	if a2.hello["resumed"] != true {
		t.Fatalf("resume: %v", a2.hello)
	}
	node{s}.Kick(a.id(), 1, closeReplaced, "late")
	a2.send(`{"type":"ping","id":1}`)
	a2.expect("pong")
	node{s}.Kick(a.id(), 2, closeReplaced, "now")
	if err := a2.waitClosed(); closeCode(err) != closeReplaced {
		t.Fatalf("kick at the connection's epoch: %v", err)
	}
}
