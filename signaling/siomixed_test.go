package signaling

import (
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"icegate/internal/nodetest"
)

// TestSIOMeetsWS: the npm socket.io-client and a /ws client in one room
// on one node, in both vocabularies and over both transports: each sees
// the other join and leave, and messages go both ways (docs/signaling.md,
// the table of how the two shapes map).
func TestSIOMeetsWS(t *testing.T) {
	s := newTestServer(t, nil)
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	for _, vocab := range []string{"rooms", "codelab"} {
		for _, transport := range []string{"polling", "websocket"} {
			t.Run(vocab+"/"+transport, func(t *testing.T) {
				room := "mixed-" + vocab + "-" + transport
				sio := nodetest.StartSIO(t, hs.URL, map[string]any{"transports": []string{transport}})
				ws := connect(t, s, pipeOpts{})
				meetWS(t, sio, vocab, room, ws.send, ws.expect, ws.id())
				sio.Close()
				if m := ws.expect("peer-left"); m["peer"] != sio.ID {
					t.Fatalf("/ws client: %v, want peer-left %s", m, sio.ID)
				}
				ws.send(`{"type":"bye"}`) // no resume to wait for
				ws.waitClosed()
			})
		}
	}
	eventually(t, "nothing left", func() bool {
		st := s.Stats()
		return st.Connections == 0 && st.Rooms == 0 && s.eio.Sessions() == 0
	})
}

// meetWS runs a socket.io client (speaking vocab) and a /ws client,
// given by its send, expect and id, through one room: the socket.io
// client creates it, the /ws client joins, they exchange a message each
// way, the /ws client leaves and comes back. tools/cluster's
// TestSocketIOAcrossNodes does the same with the two on other nodes.
func meetWS(t *testing.T, sio *nodetest.SIO, vocab, room string, send func(any), expect func(string) map[string]any, wsID string) {
	t.Helper()
	q := strconv.Quote
	eq := func(got []json.RawMessage, want ...string) {
		t.Helper()
		b, _ := json.Marshal(got)
		w, _ := json.Marshal(func() []json.RawMessage {
			r := make([]json.RawMessage, len(want))
			for i, x := range want {
				r[i] = json.RawMessage(x)
			}
			return r
		}())
		if string(b) != string(w) {
			t.Fatalf("socket.io client got %s, want %s", b, w)
		}
	}
	if vocab == "rooms" {
		sio.Emit("join", room)
		eq(sio.Event("joined"), q(room), q(sio.ID))
	} else {
		sio.Emit("create or join", room)
		eq(sio.Event("created"), q(room), q(sio.ID))
	}
	send(`{"type":"join","room":` + q(room) + `}`)
	if m := expect("joined"); str(m["peers"]) != `["`+sio.ID+`"]` {
		t.Fatalf("/ws joined: %v, want the socket.io peer %s in it", m, sio.ID)
	}
	if vocab == "rooms" {
		eq(sio.Event("otherjoin"), q(room), q(wsID))
	} else {
		eq(sio.Event("join"), q(room))
	}
	// socket.io → /ws.
	if vocab == "rooms" {
		sio.Emit("message", room, map[string]any{"type": "offer", "sdp": "v=0"})
	} else {
		sio.Emit("message", map[string]any{"type": "offer", "sdp": "v=0"})
	}
	if m := expect("broadcast"); m["from"] != sio.ID || m["room"] != room || str(m["data"]) != `{"sdp":"v=0","type":"offer"}` {
		t.Fatalf("/ws client got %v", m)
	}
	// /ws → socket.io: to the room, and to the peer.
	send(`{"type":"broadcast","room":` + q(room) + `,"id":6,"data":{"type":"answer","sdp":"v=0"}}`)
	if vocab == "rooms" {
		eq(sio.Event("message"), q(room), `{"type":"answer","sdp":"v=0"}`)
	} else {
		eq(sio.Event("message"), `{"type":"answer","sdp":"v=0"}`)
	}
	if m := expect("ack"); str(m["delivered"]) != "1" {
		t.Fatalf("/ws ack of the broadcast: %v", m)
	}
	send(`{"type":"candidate","to":` + q(sio.ID) + `,"id":7,"data":{"candidate":"c1"}}`)
	eq(sio.Event("message"), `{"candidate":"c1"}`)
	if m := expect("ack"); str(m["id"]) != "7" {
		t.Fatalf("/ws ack of the candidate: %v", m)
	}
	// The /ws client leaves and comes back.
	send(`{"type":"leave","room":` + q(room) + `}`)
	expect("left")
	eq(sio.Event("bye"), q(room), q(wsID))
	send(`{"type":"join","room":` + q(room) + `}`)
	expect("joined")
	if vocab == "rooms" {
		eq(sio.Event("otherjoin"), q(room), q(wsID))
	} else {
		eq(sio.Event("join"), q(room))
	}
	sio.Quiet("message", 50*time.Millisecond)
}
