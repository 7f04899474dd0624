package signaling

import (
	"runtime"
	"testing"
	"time"
)

// An acked message is never lost: a peer that stops reading piles up to
// send_queue + messages_burst messages in its outbox before it counts as
// too slow; when its connection then drops, a resume must replay every one
// of them, so the bus must keep at least that many (here send_queue is
// below messages_burst, which the config allows).
func TestResumeReplaysEverythingAnOutboxHeld(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.SendQueue = 16 })
	a, b := pairInRoom(t, s, "r") // b has read its joined, seq 1
	b.raw.SetReadDeadline(time.Now())
	eventually(t, "b's reader to stop", func() bool {
		select {
		case <-b.closed:
			return true
		default:
			return false
		}
	})
	const n = 60 // above Keep+Queue (32), below the outbox's 216
	for i := 1; i <= n; i++ {
		a.send(`{"type":"message","to":"` + b.id() + `","id":` + str(i) + `,"data":` + str(i) + `}`)
		if ack := a.expect("ack"); ack["held"] == true {
			t.Fatalf("ack %d says held: b was still connected", i)
		}
	}
	b.raw.Close()
	eventually(t, "the server to notice", func() bool { return s.Connections() == 1 })
	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b.hello["resume_token"].(string), LastSeq: 1}})
	if b2.hello["resumed"] != true || str(b2.hello["replay"]) != `{"from":2}` {
		t.Fatalf("resumed hello: %v", b2.hello)
	}
	for i := 1; i <= n; i++ {
		if m := b2.expect("message"); str(m["data"]) != str(i) {
			t.Fatalf("replay %d: %v", i, m)
		}
	}
}

// The same when the writer had taken a whole batch from the outbox and was
// stuck writing its first message: the batch was never received either.
// A connection can have taken one outbox-full and hold another when it
// drops.
func TestResumeReplaysTakenBatch(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.SendQueue = 16 })
	a := connect(t, s, pipeOpts{})
	a.send(`{"type":"join","room":"r"}`)
	a.expect("joined")
	b := connect(t, s, pipeOpts{noRead: true})
	read := func() map[string]any {
		t.Helper()
		b.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		var m map[string]any
		if err := b.ws.ReadJSON(&m); err != nil {
			t.Fatalf("b read: %v", err)
		}
		return m
	}
	hello := read()
	bID := hello["peer"].(string)
	b.send(`{"type":"join","room":"r"}`)
	if m := read(); m["type"] != "joined" || str(m["seq"]) != "1" {
		t.Fatalf("b: %v", m)
	}
	a.expect("peer-joined")
	s.mu.RLock()
	bc := s.local[bID]
	s.mu.RUnlock()
	ctx, cancel := busCtx()
	defer cancel()
	msg := func(i int) {
		t.Helper()
		if _, err := s.bus.Send(ctx, SendRequest{From: a.id(), To: bID, Room: "r",
			Body: []byte(`{"type":"message","from":"` + a.id() + `","data":` + str(i) + `}`)}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	msg(1) // the writer takes it and blocks: b is not reading
	eventually(t, "the writer to take message 1", func() bool { return bc.out.pending() == 0 })
	for i := 2; i <= 201; i++ {
		msg(i)
	}
	if m := read(); str(m["data"]) != "1" { // seq 2
		t.Fatalf("b: %v", m)
	}
	// The writer takes 2..201 in one batch and blocks on message 2.
	eventually(t, "the writer to take the batch", func() bool { return bc.out.pending() == 0 })
	for i := 202; i <= 401; i++ {
		msg(i)
	}
	b.raw.Close()
	eventually(t, "the server to notice", func() bool { return s.Connections() == 1 })
	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: hello["resume_token"].(string), LastSeq: 2}})
	if b2.hello["resumed"] != true || str(b2.hello["replay"]) != `{"from":3}` {
		t.Fatalf("resumed hello: %v", b2.hello)
	}
	for i := 2; i <= 401; i++ {
		if m := b2.expect("message"); str(m["data"]) != str(i) {
			t.Fatalf("replay %d: %v", i, m)
		}
	}
}

// A replay (putAll) longer than the outbox's limit is taken whole: a
// message left out would be a hole that every later one waits behind.
func TestOutboxReplayBeyondLimit(t *testing.T) {
	o := newOutbox(4)
	msgs := make([][]byte, 10)
	for i := range msgs {
		msgs[i] = []byte(str(i + 1))
	}
	o.putAll(1, msgs)
	var got []string
	for _, m := range drain(o) {
		got = append(got, string(m))
	}
	if !o.put(11, []byte("11")) {
		t.Fatal("put after the replay was drained: queue full")
	}
	for _, m := range drain(o) {
		got = append(got, string(m))
	}
	if len(got) != 11 || got[10] != "11" {
		t.Fatalf("taken %q, want 1..11", got)
	}
}

func drain(o *outbox) [][]byte {
	_, m := o.take()
	return m
}

// Connections that come and go (bye, drop, resume, replaced) leave no
// goroutine behind on the in-process bus, and no session.
func TestNoGoroutinePerConnection(t *testing.T) {
	s := newTestServer(t, nil)
	a := connect(t, s, pipeOpts{})
	a.send(`{"type":"join","room":"r"}`)
	a.expect("joined")
	go func() {
		for range a.msgs {
		}
	}()
	base := runtime.NumGoroutine()
	for i := range 100 {
		b := connect(t, s, pipeOpts{})
		b.send(`{"type":"join","room":"r"}`)
		b.expect("joined")
		b.raw.Close() // dropped: held
		eventually(t, "the drop", func() bool { return s.Connections() == 1 })
		b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b.hello["resume_token"].(string)}})
		if i%2 == 0 {
			// Replaced by a third connection, which says bye.
			b3 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b2.hello["resume_token"].(string)}})
			b3.send(`{"type":"bye"}`)
			b3.waitClosed()
		} else {
			b2.send(`{"type":"bye"}`)
		}
		b2.waitClosed()
		<-b.done
	}
	eventually(t, "the connections to end", func() bool { return s.Connections() == 1 })
	eventually(t, "one session left", func() bool { return s.Stats().Peers == 1 })
	if !waitUntil(5*time.Second, func() bool { return runtime.NumGoroutine() <= base+2 }) {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after\n%s", base, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
}

func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
