package cluster

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Senders on three nodes write to one receiver at once: each sender's
// messages arrive in the order it sent them, every one acked in order,
// none twice, and the receiver's seqs have no hole.
func TestOrderAcrossNodes(t *testing.T) {
	_, nodes := cluster(t, 3, conf{})
	rx := dial(t, nodes[0], "", 0)
	var senders []*peer
	for i := range 6 {
		senders = append(senders, dial(t, nodes[i%3], "", 0))
	}
	joinAll(t, "order", append([]*peer{rx}, senders...)...)

	// Within messages_burst (200): none is rate-limited.
	const n = 150
	var wg sync.WaitGroup
	errs := make(chan error, len(senders))
	for s, p := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range n {
				msg := fmt.Sprintf(`{"type":"message","to":%q,"id":%d,"data":{"s":%d,"k":%d}}`, rx.id(), k, s, k)
				if err := p.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for s, p := range senders {
		for k := range n {
			if m := p.expect("ack"); str(m["id"]) != strconv.Itoa(k) || m["held"] != nil {
				t.Fatalf("sender %d's ack %d: %v", s, k, m)
			}
		}
	}
	next := make([]int, len(senders))
	var seq float64
	for range n * len(senders) {
		m := rx.expect("message")
		if s := m["seq"].(float64); seq != 0 && s != seq+1 {
			t.Fatalf("seq %v after %v", s, seq)
		}
		seq = m["seq"].(float64)
		var d struct{ S, K int }
		if err := json.Unmarshal([]byte(str(m["data"])), &d); err != nil || d.S < 0 || d.S >= len(senders) {
			t.Fatalf("message: %v", m)
		}
		if m["from"] != senders[d.S].id() {
			t.Fatalf("message %v from %v, want %s", d, m["from"], senders[d.S].id())
		}
		if d.K != next[d.S] {
			t.Fatalf("sender %d's message %d arrived after %d", d.S, d.K, next[d.S]-1)
		}
		next[d.S]++
	}
	rx.quiet(200 * time.Millisecond)
}

// A peer resumes on another node while its old connection still looks
// alive: the old one is closed with 4000, the room sees no one leave, and
// messages go to the new one.
func TestResumeWhileOldConnectionAlive(t *testing.T) {
	_, nodes := cluster(t, 3, conf{})
	a := dial(t, nodes[0], "", 0)
	b := dial(t, nodes[1], "", 0)
	joinAll(t, "r", a, b)
	a.send(`{"type":"message","to":%q,"id":1,"data":1}`, b.id())
	a.expect("ack")
	b.expect("message")

	b2 := dial(t, nodes[2], b.token(), b.lastSeq())
	if b2.hello["resumed"] != true || b2.id() != b.id() || str(b2.hello["rooms"]) != `["r"]` {
		t.Fatalf("resume on another node: %v", b2.hello)
	}
	if code := b.closed(5 * time.Second); code != 4000 {
		t.Fatalf("the replaced connection closed with %d, want 4000", code)
	}
	a.send(`{"type":"message","to":%q,"id":2,"data":2}`, b.id())
	if m := a.expect("ack"); m["held"] != nil {
		t.Fatalf("ack to a resumed peer: %v", m)
	}
	if m := b2.expect("message"); str(m["data"]) != "2" {
		t.Fatalf("after the resume: %v", m)
	}
	b2.send(`{"type":"message","to":%q,"id":1,"data":"back"}`, a.id())
	b2.expect("ack")
	if m := a.expect("message"); m["data"] != "back" {
		t.Fatalf("from the resumed peer: %v", m)
	}
	a.quiet(300 * time.Millisecond) // no peer-left
	b2.quiet(0)
}

// drop breaks p's connection without a close frame (a network failure)
// and returns the data of the messages the client read before it broke.
func drop(p *peer) []string {
	_ = p.ws.UnderlyingConn().Close()
	var got []string
	for m := range p.in {
		if m["type"] == "message" {
			got = append(got, str(m["data"]))
		}
	}
	return got
}

// The connection drops during the resume itself, after the server sent
// its hello and maybe more: resuming again with the same token, on a third
// node, loses nothing and repeats nothing.
func TestDropDuringResume(t *testing.T) {
	_, nodes := cluster(t, 3, conf{})
	a := dial(t, nodes[0], "", 0)
	b := dial(t, nodes[1], "", 0)
	joinAll(t, "r", a, b)
	msg := func(i int) {
		t.Helper()
		a.send(`{"type":"message","to":%q,"id":%d,"data":%d}`, b.id(), i, i)
		if m := a.expect("ack"); str(m["id"]) != strconv.Itoa(i) {
			t.Fatalf("ack %d: %v", i, m)
		}
	}
	for i := 1; i <= 3; i++ {
		msg(i)
		b.expect("message")
	}
	token, last := b.token(), b.lastSeq()
	drop(b)
	for i := 4; i <= 6; i++ {
		msg(i)
	}
	// The resume reaches node3, which sends its hello (and the replay),
	// and then the connection drops: the client never learnt the new token
	// nor read what came after the hello.
	b2 := dial(t, nodes[2], token, last)
	if b2.hello["resumed"] != true {
		t.Fatalf("first resume: %v", b2.hello)
	}
	drop(b2)
	for i := 7; i <= 9; i++ {
		msg(i)
	}
	b3 := dial(t, nodes[0], token, last)
	if b3.hello["resumed"] != true || b3.id() != b.id() || str(b3.hello["rooms"]) != `["r"]` {
		t.Fatalf("second resume with the same token: %v", b3.hello)
	}
	for i := 4; i <= 9; i++ {
		if m := b3.expect("message"); str(m["data"]) != strconv.Itoa(i) {
			t.Fatalf("message %d: %v", i, m)
		}
	}
	b3.quiet(300 * time.Millisecond)
	a.quiet(0) // no peer-left
}

// A load balancer without sticky sessions sends each reconnect to another
// node, several times in a row: the peer keeps its id and rooms, and gets
// every acked message exactly once, in order, those sent while it was
// away included.
func TestResumeWithoutStickySessions(t *testing.T) {
	_, nodes := cluster(t, 3, conf{})
	a := dial(t, nodes[0], "", 0)
	b := dial(t, nodes[1], "", 0)
	joinAll(t, "r", a, b)
	id := b.id()
	sent := 0
	send := func() {
		t.Helper()
		a.send(`{"type":"message","to":%q,"id":%d,"data":%d}`, id, sent, sent)
		if m := a.expect("ack"); str(m["id"]) != strconv.Itoa(sent) {
			t.Fatalf("ack %d: %v", sent, m)
		}
		sent++
	}
	var got []string
	for round := range 6 {
		for range 3 {
			send() // to the connected peer
		}
		got = append(got, drop(b)...)
		for range 2 {
			send() // while it is away (held, or not noticed yet)
		}
		b = dial(t, nodes[(round+2)%3], b.token(), b.lastSeq())
		if b.hello["resumed"] != true || b.id() != id || str(b.hello["rooms"]) != `["r"]` {
			t.Fatalf("round %d: resume on %s: %v", round, nodes[(round+2)%3].name, b.hello)
		}
	}
	for len(got) < sent {
		got = append(got, str(b.expect("message")["data"]))
	}
	for i, d := range got {
		if d != strconv.Itoa(i) {
			t.Fatalf("message %d is %s (all: %v)", i, d, got)
		}
	}
	b.quiet(300 * time.Millisecond)
	a.quiet(0)
}
