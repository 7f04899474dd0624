package cluster

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"icegate/internal/nodetest"
)

// TestSocketIOAcrossNodes: the npm socket.io-client on node 1 (polling,
// then the upgrade), a /ws client on node 2 and a socket.io-client over
// WebSocket only on node 3, in one room: each sees the others join and
// leave, and messages go every way, through the Redis bus
// (docs/signaling.md: how the socket.io and /ws shapes map).
func TestSocketIOAcrossNodes(t *testing.T) {
	_, nodes := cluster(t, 3, conf{signaling: "socketio_room_size = 3"})
	const room = "sio-room"
	q := strconv.Quote
	eq := func(who string, got []json.RawMessage, want ...string) {
		t.Helper()
		b, _ := json.Marshal(got)
		if w := "[" + join(want) + "]"; string(b) != w {
			t.Fatalf("%s got %s, want %s", who, b, w)
		}
	}
	a := nodetest.StartSIO(t, "http://"+nodes[0].http, nil)
	c := nodetest.StartSIO(t, "http://"+nodes[2].http, map[string]any{"transports": []string{"websocket"}})
	b := dial(t, nodes[1], "", 0)

	a.Emit("join", room)
	eq("a", a.Event("joined"), q(room), q(a.ID))
	b.send(`{"type":"join","room":%q,"id":1}`, room)
	if m := b.expect("joined"); str(m["peers"]) != `["`+a.ID+`"]` {
		t.Fatalf("b joined: %v", m)
	}
	eq("a", a.Event("otherjoin"), q(room), q(b.id()))
	c.Emit("join", room)
	eq("c", c.Event("joined"), q(room), q(c.ID))
	eq("a", a.Event("otherjoin"), q(room), q(c.ID))
	if m := b.expect("peer-joined"); m["peer"] != c.ID {
		t.Fatalf("b: %v, want peer-joined %s", m, c.ID)
	}

	// socket.io on node 1 → /ws on node 2 and socket.io on node 3.
	a.Emit("message", room, map[string]any{"type": "offer", "sdp": "v=0"})
	if m := b.expect("broadcast"); m["from"] != a.ID || str(m["data"]) != `{"sdp":"v=0","type":"offer"}` {
		t.Fatalf("b got %v", m)
	}
	eq("c", c.Event("message"), q(room), `{"sdp":"v=0","type":"offer"}`)
	// /ws on node 2 → both socket.io clients; and to one of them.
	b.send(`{"type":"broadcast","room":%q,"id":2,"data":{"type":"answer","sdp":"v=0"}}`, room)
	if m := b.expect("ack"); str(m["delivered"]) != "2" {
		t.Fatalf("b's broadcast ack: %v", m)
	}
	eq("a", a.Event("message"), q(room), `{"type":"answer","sdp":"v=0"}`)
	eq("c", c.Event("message"), q(room), `{"type":"answer","sdp":"v=0"}`)
	b.send(`{"type":"candidate","to":%q,"id":3,"data":{"candidate":"c1"}}`, c.ID)
	if m := b.expect("ack"); str(m["id"]) != "3" {
		t.Fatalf("b's candidate ack: %v", m)
	}
	eq("c", c.Event("message"), `{"candidate":"c1"}`)
	// socket.io on node 3 → socket.io on node 1 and /ws on node 2.
	c.Emit("message", room, "hello")
	eq("a", a.Event("message"), q(room), `"hello"`)
	if m := b.expect("broadcast"); m["from"] != c.ID || m["data"] != "hello" {
		t.Fatalf("b got %v", m)
	}

	// Leaves are seen across nodes: /ws's leave, socket.io's leave, a
	// socket.io disconnect.
	b.send(`{"type":"leave","room":%q,"id":4}`, room)
	b.expect("left")
	eq("a", a.Event("bye"), q(room), q(b.id()))
	eq("c", c.Event("bye"), q(room), q(b.id()))
	b.send(`{"type":"join","room":%q,"id":5}`, room)
	b.expect("joined")
	eq("a", a.Event("otherjoin"), q(room), q(b.id()))
	eq("c", c.Event("otherjoin"), q(room), q(b.id()))
	c.Emit("leave", room)
	eq("c", c.Event("leaved"), q(room), q(c.ID))
	eq("a", a.Event("bye"), q(room), q(c.ID))
	if m := b.expect("peer-left"); m["peer"] != c.ID {
		t.Fatalf("b: %v, want peer-left %s", m, c.ID)
	}
	aID := a.ID
	a.Close()
	if m := b.expect("peer-left"); m["peer"] != aID {
		t.Fatalf("b: %v, want peer-left %s", m, aID)
	}
	b.quiet(200 * time.Millisecond)
	c.Quiet("message", 0)
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}
