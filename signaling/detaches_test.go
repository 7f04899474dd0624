package signaling

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"
)

// heldOnBus reports whether the in-process bus holds session id.
func heldOnBus(s *Server, id string) bool {
	st := s.bus.(*MemoryBus).st
	st.mu.Lock()
	defer st.mu.Unlock()
	ms := st.sessions[id]
	return ms != nil && ms.held
}

// busyDetaches makes s queue its releases (an open in flight, as in a
// reconnect storm) and holds its detach worker before each release until
// the returned gate is closed; waiting receives a value as the worker
// waits with one.
func busyDetaches(t *testing.T, s *Server) (waiting chan struct{}, gate chan struct{}) {
	t.Helper()
	waiting, gate = make(chan struct{}, 64), make(chan struct{})
	s.detaches.wait = func() {
		waiting <- struct{}{}
		<-gate
	}
	s.opening.Add(1)
	t.Cleanup(func() { s.opening.Add(-1) })
	return waiting, gate
}

// queuedRelease waits for the worker to wait before a release.
func queuedRelease(t *testing.T, waiting chan struct{}) {
	t.Helper()
	select {
	case <-waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("no release queued within 5s")
	}
}

func seqOf(t *testing.T, m map[string]any) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(str(m["seq"]), 10, 64)
	if err != nil {
		t.Fatalf("seq of %v: %v", m, err)
	}
	return n
}

// A resume that arrives while its dropped connection's release still
// waits in the queue takes the session over, gets every acked message
// once, and the late release leaves the resumed session alone.
func TestDetachQueuedResumeFirst(t *testing.T) {
	s := newTestServer(t, nil)
	waiting, gate := busyDetaches(t, s)
	a, b := pairInRoom(t, s, "r")
	a.send(`{"type":"message","to":"` + b.id() + `","data":0}`)
	last := seqOf(t, b.expect("message"))

	b.raw.Close()             // its network drops: no close frame
	queuedRelease(t, waiting) // its release is queued, and the worker waits
	eventually(t, "the server to notice", func() bool { return s.Connections() == 1 })
	if heldOnBus(s, b.id()) {
		t.Fatal("held before its release ran")
	}
	for i := 1; i <= 3; i++ {
		a.send(`{"type":"message","to":"` + b.id() + `","id":` + strconv.Itoa(i) + `,"data":` + strconv.Itoa(i) + `}`)
		a.expect("ack")
	}
	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b.hello["resume_token"].(string), LastSeq: last}})
	if b2.hello["resumed"] != true || b2.hello["peer"] != b.id() || str(b2.hello["rooms"]) != `["r"]` {
		t.Fatalf("resumed hello: %v", b2.hello)
	}
	for i := 1; i <= 3; i++ {
		if m := b2.expect("message"); str(m["data"]) != strconv.Itoa(i) {
			t.Fatalf("replay %d: %v", i, m)
		}
	}
	b2.quiet(50 * time.Millisecond)

	close(gate) // the late release runs
	eventually(t, "the queue to drain", func() bool {
		s.detaches.mu.Lock()
		defer s.detaches.mu.Unlock()
		return s.detaches.workers == 0
	})
	if heldOnBus(s, b.id()) {
		t.Fatal("the late release held the resumed session")
	}
	a.send(`{"type":"message","to":"` + b.id() + `","id":9,"data":"after"}`)
	if ack := a.expect("ack"); ack["held"] == true {
		t.Fatalf("ack after the resume: %v", ack)
	}
	if m := b2.expect("message"); m["data"] != "after" {
		t.Fatalf("after the late release: %v", m)
	}
	b2.quiet(50 * time.Millisecond)
	a.quiet(50 * time.Millisecond) // no peer-left
}

// A queued release still happens: the session is held then, and a resume
// after it gets what was acked before and after the hold, once.
func TestDetachQueuedThenResume(t *testing.T) {
	s := newTestServer(t, nil)
	waiting, gate := busyDetaches(t, s)
	a, b := pairInRoom(t, s, "r")
	last := uint64(1) // b's joined

	b.raw.Close()
	queuedRelease(t, waiting)
	a.send(`{"type":"message","to":"` + b.id() + `","id":1,"data":1}`)
	a.expect("ack")
	close(gate)
	eventually(t, "the queued release to hold the session", func() bool { return heldOnBus(s, b.id()) })
	a.send(`{"type":"message","to":"` + b.id() + `","id":2,"data":2}`)
	if ack := a.expect("ack"); ack["held"] != true {
		t.Fatalf("ack once held: %v", ack)
	}
	a.quiet(50 * time.Millisecond) // held, not gone: no peer-left

	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b.hello["resume_token"].(string), LastSeq: last}})
	if b2.hello["resumed"] != true {
		t.Fatalf("resumed hello: %v", b2.hello)
	}
	for i := 1; i <= 2; i++ {
		if m := b2.expect("message"); str(m["data"]) != strconv.Itoa(i) {
			t.Fatalf("replay %d: %v", i, m)
		}
	}
	b2.quiet(50 * time.Millisecond)
}

// Many connections dropped together while busy are all released, by one
// worker on the in-process bus; a goodbye among them is not queued (its
// room hears at once that it left).
func TestDetachQueueDrains(t *testing.T) {
	s := newTestServer(t, nil)
	s.opening.Add(1)
	defer s.opening.Add(-1)
	peers := make([]*client, 20)
	for i := range peers {
		peers[i] = connect(t, s, pipeOpts{})
	}
	watch := connect(t, s, pipeOpts{})
	watch.send(`{"type":"join","room":"bye"}`)
	watch.expect("joined")
	leaver := connect(t, s, pipeOpts{})
	leaver.send(`{"type":"join","room":"bye"}`)
	leaver.expect("joined")
	watch.expect("peer-joined")

	gate := make(chan struct{})
	s.detaches.wait = func() { <-gate }
	for _, p := range peers {
		p.raw.Close()
	}
	eventually(t, "the drops to queue", func() bool { return s.pendingDetaches() == len(peers)-1 })
	leaver.send(`{"type":"bye"}`)
	if m := watch.expect("peer-left"); m["peer"] != leaver.id() {
		t.Fatalf("peer-left: %v", m)
	}
	close(gate)
	for _, p := range peers {
		eventually(t, "every dropped session held", func() bool { return heldOnBus(s, p.id()) })
	}
	if s.pendingDetaches() != 0 {
		t.Fatalf("%d still queued", s.pendingDetaches())
	}
}

// On a quiet server a drop is released at once, before the connection's
// place is given back: an ack tells the sender the peer is away.
func TestDetachQuietInline(t *testing.T) {
	s := newTestServer(t, nil)
	s.detaches.wait = func() { t.Error("a release was queued on a quiet server") }
	a, b := pairInRoom(t, s, "r")
	b.raw.Close()
	eventually(t, "the server to notice", func() bool { return s.Connections() == 1 })
	if !heldOnBus(s, b.id()) {
		t.Fatal("not held once its connection's place was given back")
	}
	a.send(`{"type":"message","to":"` + b.id() + `","id":1,"data":1}`)
	if ack := a.expect("ack"); ack["held"] != true {
		t.Fatalf("ack: %v", ack)
	}
}

// Close waits for the releases still queued: a connection dropped just
// before a shutdown is held on the bus all the same (on a shared bus,
// where another node can resume it), not lost with the queue.
func TestDetachQueuedBeforeClose(t *testing.T) {
	s := newTestServer(t, nil)
	waiting, gate := busyDetaches(t, s)
	_, b := pairInRoom(t, s, "r")
	b.raw.Close()
	queuedRelease(t, waiting)
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		closed <- s.Close(ctx)
	}()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a release was queued", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !heldOnBus(s, b.id()) {
		t.Fatal("the queued release did not run before Close returned")
	}
}

// slowRemoveBus is the in-process bus seen as a shared one (not
// *MemoryBus: the server queues goodbyes as it does on Redis), whose
// Remove takes a round trip's time and counts how many run at once.
type slowRemoveBus struct {
	*MemoryBus
	mu            sync.Mutex
	inFlight, max int
	removed       int
}

func (b *slowRemoveBus) Remove(ctx context.Context, id string, epoch uint64) error {
	b.mu.Lock()
	b.inFlight++
	b.max = max(b.max, b.inFlight)
	b.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	err := b.MemoryBus.Remove(ctx, id, epoch)
	b.mu.Lock()
	b.inFlight--
	b.removed++
	b.mu.Unlock()
	return err
}

func (b *slowRemoveBus) stats() (maxInFlight, removed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.max, b.removed
}

func newSlowRemoveServer(t *testing.T) (*Server, *slowRemoveBus) {
	t.Helper()
	bus := &slowRemoveBus{MemoryBus: NewMemoryBus()}
	s := newBusServer(t, bus)
	return s, bus
}

// On a shared bus, many goodbyes at once (a shutdown of many clients) are
// bounded like releases: at most busDetachWorkers and one inline in
// flight; none is lost, every session is removed and its room hears it
// left. (Before: one Remove in flight per goodbye, 120 here.)
func TestDetachGoodbyesBounded(t *testing.T) {
	s, bus := newSlowRemoveServer(t)
	const n = 120
	peers := make([]*client, n)
	for i := range peers {
		peers[i] = connect(t, s, pipeOpts{})
	}
	watch := connect(t, s, pipeOpts{})
	watch.send(`{"type":"join","room":"bye"}`)
	watch.expect("joined")
	for _, p := range peers[:10] {
		p.send(`{"type":"join","room":"bye"}`)
		p.expect("joined")
		watch.expect("peer-joined")
	}
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() { p.send(`{"type":"bye"}`) })
	}
	wg.Wait()
	for range 10 {
		watch.expect("peer-left")
	}
	eventually(t, "every goodbye removed", func() bool {
		_, removed := bus.stats()
		return removed == n
	})
	eventually(t, "every connection ended", func() bool { return s.Connections() == 1 })
	if m, _ := bus.stats(); m > busDetachWorkers+1 {
		t.Fatalf("%d Removes in flight at once, want at most %d", m, busDetachWorkers+1)
	}
	st := bus.st
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, p := range peers {
		if st.sessions[p.id()] != nil {
			t.Fatalf("session %s left after its goodbye", p.id())
		}
	}
}

// A resume that comes while its goodbye waits in the queue wins: the
// session goes on with the resumed connection, and the late goodbye
// leaves it alone (it is no longer that connection's).
func TestDetachQueuedGoodbyeResumeFirst(t *testing.T) {
	s, bus := newSlowRemoveServer(t)
	waiting, gate := busyDetaches(t, s)
	a, b := pairInRoom(t, s, "r")
	b.send(`{"type":"bye"}`)
	queuedRelease(t, waiting)
	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b.hello["resume_token"].(string), LastSeq: 1}})
	if b2.hello["resumed"] != true || b2.hello["peer"] != b.id() {
		t.Fatalf("resumed hello: %v", b2.hello)
	}
	close(gate)
	eventually(t, "the queue to drain", func() bool {
		s.detaches.mu.Lock()
		defer s.detaches.mu.Unlock()
		return s.detaches.workers == 0
	})
	if _, removed := bus.stats(); removed != 0 {
		t.Fatalf("%d sessions removed by the late goodbye", removed)
	}
	a.send(`{"type":"message","to":"` + b.id() + `","id":1,"data":"after"}`)
	if ack := a.expect("ack"); ack["held"] == true {
		t.Fatalf("ack after the resume: %v", ack)
	}
	if m := b2.expect("message"); m["data"] != "after" {
		t.Fatalf("after the late goodbye: %v", m)
	}
	a.quiet(50 * time.Millisecond) // no peer-left
}
