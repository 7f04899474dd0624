package redisbus

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"icegate/internal/redistest"
	"icegate/signaling"
	"icegate/signaling/bustest"
)

// TestStormKeepsNodesAlive is issue #15's failure in small: the clients of
// node b all resume on node a at once while Redis is slow (first hung
// longer than the node timeout, then busy with debug sleeps), so a's own
// calls queue for longer than the node timeout. Neither node may be taken
// for dead (the others' calls were equally slow), and no session may be
// kicked but the ones replaced by their own resume.
func TestStormKeepsNodesAlive(t *testing.T) {
	srv := redistest.Start(t)
	newBus := newBusFor(srv, srv.URL(), func(o *Options) {
		o.NodeTimeout = 900 * time.Millisecond
		o.ReapInterval = 100 * time.Millisecond
	})
	a := bustest.Start(t, newBus, "node-a")
	b := bustest.Start(t, newBus, "node-b")
	ctx := context.Background()
	l := signaling.Limits{Queue: 8, Keep: 8, Grace: time.Minute}
	const n = 3000
	tokens := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		tokens[i] = fmt.Sprintf("tok-%d", i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := b.Open(ctx, signaling.Session{ID: fmt.Sprintf("s%d", i), Token: tokens[i], Limits: l}); err != nil {
				t.Errorf("Open: %v", err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Let a beat go by so both nodes are fresh before the storm.
	time.Sleep(400 * time.Millisecond)

	// storm resumes every session still on b through a, all at once.
	var resumed atomic.Int64
	storm := func(round int) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				next := fmt.Sprintf("tok-%d-%d", i, round)
				_, err := a.Resume(ctx, signaling.ResumeRequest{Token: tokens[i], NewToken: next, Limits: l})
				if err == nil {
					resumed.Add(1)
					tokens[i] = next
				}
			}()
		}
		wg.Wait()
	}

	// Round 1: Redis hangs for longer than the node timeout with the
	// storm queued in front of everyone's heartbeat.
	done := make(chan struct{})
	go func() { storm(1); close(done) }()
	time.Sleep(50 * time.Millisecond)
	srv.Pause()
	time.Sleep(1300 * time.Millisecond)
	srv.Continue()
	<-done

	// Round 2: Redis busy (a debug sleep of 20 ms every few ms, from a
	// connection of its own) while a resumes everything again.
	rc := redisClient(t, srv)
	slow, stopSlow := context.WithCancel(ctx)
	var slowWG sync.WaitGroup
	slowWG.Add(1)
	go func() {
		defer slowWG.Done()
		for slow.Err() == nil {
			_ = rc.Do(slow, rc.B().Arbitrary("DEBUG", "SLEEP", "0.02").Build()).Error()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	storm(2)
	// Two more node timeouts of a slow Redis, for the reapers to act on
	// whatever the storm left them believing.
	time.Sleep(1800 * time.Millisecond)
	stopSlow()
	slowWG.Wait()
	time.Sleep(300 * time.Millisecond)

	for _, node := range []bustest.Node{a, b} {
		m := node.Bus.(*Bus).metrics
		if got := testutil.ToFloat64(m.lostMembership); got != 0 {
			t.Errorf("%s was taken for dead %v times during the storm", node.NodeID(), got)
		}
		if got := testutil.ToFloat64(m.nodesDead); got != 0 {
			t.Errorf("%s took over %v nodes during the storm", node.NodeID(), got)
		}
		for _, k := range node.Rec.Kicks() {
			if k.Code != closeReplaced {
				t.Errorf("%s: session %s dropped (%d %s)", node.NodeID(), k.ID, k.Code, k.Reason)
				break
			}
		}
	}
	c, err := b.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c[""] != 0 || c["node-a"]+c["node-b"] != n {
		t.Errorf("sessions after the storm: %v, want all %d live on a node", c, n)
	}
	t.Logf("resumes that succeeded: %d of %d; counts %v", resumed.Load(), 2*n, c)
}
