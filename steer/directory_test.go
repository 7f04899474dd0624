package steer

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"icegate/internal/redistest"
)

// TestDirectory runs two nodes' directories on a real redis-server: each
// sees the other's record and load, a draining node is left out, and a node
// that stops is forgotten (its Run removes its record).
func TestDirectory(t *testing.T) {
	srv := redistest.Start(t)
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var allocsA, allocsB atomic.Int64
	var drainB atomic.Bool
	mk := func(id string, allocs *atomic.Int64, drain *atomic.Bool) *Directory {
		d, err := New(Options{Client: client, Prefix: "t:", NodeID: id, TTL: 2 * time.Second, Interval: time.Hour,
			Self: func(context.Context) Node {
				n := Node{Host: "127.0.0.1", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Port: 3478, UDP: true,
					Load: Load{Allocations: int(allocs.Load()), Capacity: 100, BitRate: -1}}
				if drain != nil {
					n.Draining = drain.Load()
				}
				return n
			}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, b := mk("a", &allocsA, nil), mk("b", &allocsB, &drainB)
	ctx := context.Background()
	refresh := func() {
		t.Helper()
		for _, d := range []*Directory{a, b, a} {
			if err := d.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	picks := func() (string, string) {
		pa, _ := a.Pick()
		pb, _ := b.Pick()
		return pa.ID, pb.ID
	}
	refresh()
	if pa, pb := picks(); pa != "a" || pb != "b" {
		t.Errorf("equal load: a picks %q, b picks %q; want each itself", pa, pb)
	}
	allocsA.Store(10)
	refresh()
	if pa, pb := picks(); pa != "b" || pb != "b" {
		t.Errorf("a loaded: a picks %q, b picks %q; want b", pa, pb)
	}
	if n, ap, ok := a.PickAlternate("udp", false); !ok || n.ID != "b" || ap.String() != "127.0.0.1:3478" {
		t.Errorf("a's alternate: %q %v %v", n.ID, ap, ok)
	}
	drainB.Store(true)
	refresh()
	if pa, pb := picks(); pa != "a" || pb != "a" {
		t.Errorf("b draining: a picks %q, b picks %q; want a", pa, pb)
	}
	if _, _, ok := a.PickAlternate("udp", false); ok {
		t.Error("a names draining b as its alternate")
	}

	// b stops: its record goes with it.
	drainB.Store(false)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { b.Run(rctx); close(done) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.Nodes(); len(got) != 1 || got[0].ID != "a" {
		t.Errorf("after b stopped a sees %+v", got)
	}

	// Redis away: a falls back to itself once the others' records are a
	// TTL old.
	allocsB.Store(0)
	refresh()
	srv.Stop()
	if err := a.Refresh(ctx); err == nil {
		t.Fatal("Refresh with Redis stopped succeeded")
	}
	if p, _ := a.Pick(); p.ID != "b" {
		t.Errorf("just after Redis went: a picks %q, want b (its last reading)", p.ID)
	}
	time.Sleep(2100 * time.Millisecond)
	if p, _ := a.Pick(); p.ID != "a" {
		t.Errorf("a TTL after Redis went: a picks %q, want a", p.ID)
	}
}
