package signaling

import (
	"context"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Review of issue 15's merged changes (ends.go, detaches.go).

// slowHoldBus is the in-process bus seen as a shared one (not
// *MemoryBus, as Redis is), whose Hold takes a slow round trip's time
// (Redis under load, or one being failed over) and counts how many run at
// once.
type slowHoldBus struct {
	*MemoryBus
	delay         time.Duration
	mu            sync.Mutex
	inFlight, max int
	held          int
}

func (b *slowHoldBus) Hold(ctx context.Context, id string, epoch, written uint64, grace time.Duration) error {
	b.mu.Lock()
	b.inFlight++
	b.max = max(b.max, b.inFlight)
	b.mu.Unlock()
	time.Sleep(b.delay)
	err := b.MemoryBus.Hold(ctx, id, epoch, written, grace)
	b.mu.Lock()
	b.inFlight--
	b.held++
	b.mu.Unlock()
	return err
}

// Clients whose network drops while the node is otherwise quiet (no open
// in flight, no release queued) are ended by the ender (ends.go), one
// goroutine, which runs each release inline (detach: nothing queued, none
// inline but its own): on a shared bus each is a round trip, so the drops
// are ended one round trip after another, and a connection's place
// (max_connections), its slot and its session wait behind every drop
// before it. Before ends.go each ended on a handler of its own, and
// their releases ran side by side. With Redis unreachable each waits
// busWait (5 s): 100 drops, 500 s.
func TestReviewDroppedReleasesSerialized(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the shared waiter is Linux-only")
	}
	const delay = 200 * time.Millisecond
	bus := &slowHoldBus{MemoryBus: NewMemoryBus(), delay: delay}
	s, err := New(testConfig(nil), Options{Bus: bus, Secret: func() string { return testSecret }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	const n = 8
	clients := make([]*idleClient, n)
	for i := range clients {
		clients[i] = dialIdle(t, hs)
	}
	if !waitUntil(5*time.Second, func() bool { return registered(s) == n }) {
		t.Fatalf("%d in the waiter, want %d", registered(s), n)
	}
	start := time.Now()
	for _, c := range clients {
		_ = c.tcp.Conn.Close() // the network drops: a FIN, no close frame
	}
	if !waitUntil(10*time.Second, func() bool { return s.nconns.Load() == 0 }) {
		t.Fatalf("%d connections left", s.nconns.Load())
	}
	took := time.Since(start)
	bus.mu.Lock()
	maxInFlight, held := bus.max, bus.held
	bus.mu.Unlock()
	t.Logf("%d drops ended in %v; %d holds, at most %d at once", n, took, held, maxInFlight)
	// Side by side (or queued to busDetachWorkers) they take a round
	// trip or two; one after another, n.
	if took > 4*delay {
		t.Errorf("%d dropped connections took %v to end with a %v bus round trip (at most %d releases at once): serialized on the ender",
			n, took, delay, maxInFlight)
	}
}
