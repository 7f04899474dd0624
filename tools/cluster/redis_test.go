package cluster

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// With Redis stopped, nothing a client asks of the cluster is acked: a
// join, a broadcast, a directed message and a leave each get
// cluster-unavailable with their id, and the connections stay open.
func TestRedisDownNoFalseAcks(t *testing.T) {
	r, nodes := cluster(t, 2, conf{})
	a := dial(t, nodes[0], "", 0)
	b := dial(t, nodes[1], "", 0)
	joinAll(t, "r", a, b)
	r.Stop()
	for _, c := range []struct{ msg, typ string }{
		{`{"type":"join","room":"r2","id":"j"}`, "join"},
		{`{"type":"broadcast","room":"r","id":"b","data":1}`, "broadcast"},
		{`{"type":"message","to":"` + b.id() + `","id":"m","data":1}`, "message"},
		{`{"type":"offer","to":"` + b.id() + `","id":"o","data":{"type":"offer","sdp":"v=0"}}`, "offer"},
		{`{"type":"leave","room":"r","id":"l"}`, "leave"},
	} {
		a.send("%s", c.msg)
		m := a.next()
		if m["type"] != "error" || m["code"] != "cluster-unavailable" || m["id"] != c.typ[:1] {
			t.Fatalf("%s with Redis down: %v, want a cluster-unavailable error", c.typ, m)
		}
	}
	// Still connected: a ping is answered (straight to the connection).
	for _, p := range []*peer{a, b} {
		p.send(`{"type":"ping","id":"p"}`)
		if m := p.next(); m["type"] != "pong" {
			t.Fatalf("ping with Redis down: %v", m)
		}
	}
	b.quiet(500 * time.Millisecond) // nothing of a's reached b
	a.quiet(0)
}

// Redis hangs (SIGSTOP) for less than node_timeout: when it continues,
// every session is intact (no node took another for dead, nobody was
// closed or left), messages acked before the pause are delivered, and
// messages flow both ways. Two hangs: one shorter than the bus's operation
// timeout (1.5 s), one longer, so that operations fail meanwhile.
func TestRedisPause(t *testing.T) {
	for _, c := range []struct {
		name               string
		pause, nodeTimeout time.Duration
	}{
		{"short", nodeTimeout / 3, nodeTimeout},
		// Heartbeats go every node_timeout/3: a hang of 2.5 s stays
		// clear of a 5 s timeout even with a beat just before it.
		{"past-op-timeout", 2500 * time.Millisecond, 5 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) { testRedisPause(t, c.pause, c.nodeTimeout) })
	}
}

func testRedisPause(t *testing.T, pause, timeout time.Duration) {
	r, nodes := cluster(t, 2, conf{nodeTimeout: timeout})
	a := dial(t, nodes[0], "", 0)
	b := dial(t, nodes[1], "", 0)
	joinAll(t, "r", a, b)
	const n = 50
	for i := range n {
		a.send(`{"type":"message","to":%q,"id":%d,"data":%d}`, b.id(), i, i)
	}
	for i := range n {
		if m := a.expect("ack"); str(m["id"]) != strconv.Itoa(i) {
			t.Fatalf("ack %d: %v", i, m)
		}
	}
	r.Pause()
	// A message sent while Redis hangs: acked once Redis answers (within
	// the bus's 1.5 s operation timeout), or refused; never both.
	a.send(`{"type":"message","to":%q,"id":"during","data":"during"}`, b.id())
	time.Sleep(pause)
	r.Continue()
	pausedAcked := false
	switch m := a.next(); {
	case m["type"] == "ack" && m["id"] == "during":
		pausedAcked = true
	case m["type"] == "error" && m["code"] == "cluster-unavailable" && m["id"] == "during":
	default:
		t.Fatalf("message sent while Redis hung: %v", m)
	}
	t.Logf("the message sent during the hang: acked %v", pausedAcked)
	for i := range n {
		if m := b.expect("message"); str(m["data"]) != strconv.Itoa(i) {
			t.Fatalf("message %d acked before the pause: %v", i, m)
		}
	}
	if pausedAcked {
		if m := b.expect("message"); m["data"] != "during" {
			t.Fatalf("message acked during the pause: %v", m)
		}
	}
	// Give a wrongly declared death time to show (the reaper runs every
	// second), then check both ways.
	time.Sleep(timeout - pause + time.Second)
	a.send(`{"type":"message","to":%q,"id":"after","data":"a"}`, b.id())
	if m := a.expect("ack"); m["held"] != nil {
		t.Fatalf("ack after the pause: %v", m)
	}
	if m := b.expect("message"); m["data"] != "a" {
		t.Fatalf("after the pause: %v", m)
	}
	b.send(`{"type":"broadcast","room":"r","id":"after","data":"b"}`)
	if m := b.expect("ack"); str(m["delivered"]) != "1" {
		t.Fatalf("broadcast ack after the pause: %v", m)
	}
	if m := a.expect("broadcast"); m["data"] != "b" {
		t.Fatalf("broadcast after the pause: %v", m)
	}
	a.quiet(200 * time.Millisecond) // no peer-left, no close (1012)
	b.quiet(0)
	for _, nd := range nodes {
		if log := nd.stderr.String(); strings.Contains(log, "taken for dead") || strings.Contains(log, "took over") {
			t.Errorf("%s: a pause shorter than node_timeout was taken for a death:\n%s", nd.name, log)
		}
	}
}

// The tutorial protocol across nodes: names are cluster-wide, an offer by
// name reaches the peer on another node, and a name is free again once
// its peer left.
func TestSimpleAcrossNodes(t *testing.T) {
	_, nodes := cluster(t, 3, conf{})
	login := func(p *peer, name string) map[string]any {
		t.Helper()
		p.send(`{"type":"login","name":%q}`, name)
		return p.expect("login")
	}
	alice := dialWS(t, nodes[0], "/ws/simple", nil)
	bob := dialWS(t, nodes[1], "/ws/simple", nil)
	other := dialWS(t, nodes[2], "/ws/simple", nil)
	if m := login(alice, "alice"); m["success"] != true {
		t.Fatalf("alice's login: %v", m)
	}
	if m := login(bob, "bob"); m["success"] != true {
		t.Fatalf("bob's login: %v", m)
	}
	if m := login(other, "alice"); m["success"] != false {
		t.Fatalf("alice's name on a third node: %v", m)
	}
	bob.send(`{"type":"offer","name":"alice","offer":{"type":"offer","sdp":"v=0"}}`)
	if m := alice.expect("offer"); m["name"] != "bob" || str(m["offer"]) != `{"sdp":"v=0","type":"offer"}` {
		t.Fatalf("offer by name across nodes: %v", m)
	}
	alice.send(`{"type":"answer","name":"bob","answer":{"type":"answer","sdp":"v=0"}}`)
	if m := bob.expect("answer"); str(m["answer"]) != `{"sdp":"v=0","type":"answer"}` {
		t.Fatalf("answer across nodes: %v", m)
	}
	bob.send(`{"type":"candidate","name":"alice","candidate":{"candidate":"c1"}}`)
	if m := alice.expect("candidate"); str(m["candidate"]) != `{"candidate":"c1"}` {
		t.Fatalf("candidate across nodes: %v", m)
	}
	// alice goes: bob, whom she answered last, is told; her name is free.
	alice.ws.Close()
	bob.expect("leave")
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := login(other, "alice")
		if m["success"] == true {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's name still taken after she left: %v", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	bob.send(`{"type":"offer","name":"alice","offer":{"type":"offer","sdp":"v=1"}}`)
	if m := other.expect("offer"); m["name"] != "bob" {
		t.Fatalf("offer to the name's new holder: %v", m)
	}
}
