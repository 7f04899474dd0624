package redisbus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"icegate/internal/redistest"
	"icegate/signaling"
	"icegate/signaling/bustest"
)

// server is one redis-server for the package's tests; each test (and
// subtest) keys its buses under a prefix of its own.
var (
	serverOnce sync.Once
	shared     *redistest.Server
)

// newBusFor returns a constructor of buses on srv: nodes made for one t
// share a prefix derived from t's name.
func newBusFor(srv *redistest.Server, url string, mod func(*Options)) bustest.NewBus {
	return func(t *testing.T, node string) signaling.Bus {
		t.Helper()
		sum := sha256.Sum256([]byte(t.Name()))
		o := Options{URL: url, NodeID: node, Prefix: "t" + hex.EncodeToString(sum[:6]) + ":",
			NodeTimeout: 3 * time.Second, ReapInterval: 200 * time.Millisecond}
		if mod != nil {
			mod(&o)
		}
		b, err := New(o)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b
	}
}

func TestContract(t *testing.T) {
	srv := redistest.Start(t)
	bustest.Run(t, newBusFor(srv, srv.URL(), nil))
}

// TestContractSentinel runs the contract through a real Sentinel: the bus
// asks it for the master of the set named in the URL (the Sentinel form,
// redis://SENTINEL?master_set=NAME).
func TestContractSentinel(t *testing.T) {
	srv := redistest.Start(t)
	sen := redistest.StartSentinel(t, srv, "icegate-test")
	url := "redis://" + sen.Addr() + "?master_set=icegate-test"
	if err := ParseURL(url); err != nil {
		t.Fatal(err)
	}
	bustest.Run(t, newBusFor(srv, url, nil))
}

// TestContractUnix runs a few of the contract's tests over the unix socket.
func TestContractUnix(t *testing.T) {
	srv := redistest.Start(t)
	newBus := newBusFor(srv, srv.SocketURL(), nil)
	a := bustest.Start(t, newBus, "node-a")
	b := bustest.Start(t, newBus, "node-b")
	ctx := context.Background()
	if err := a.Open(ctx, signaling.Session{ID: "s1", Limits: signaling.Limits{Queue: 4, Keep: 4}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx, "s1", []byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	a.Rec.WaitDeliveries(t, "s1", 1)
}

// TestNodeDeath: a node stops heartbeating (killed, no Close); after the
// node timeout its sessions are held, messages to them are acked held, one
// resumes elsewhere with them, and the others are removed after their
// grace with peer-left to the rest exactly once.
func TestNodeDeath(t *testing.T) {
	srv := redistest.Start(t)
	newBus := newBusFor(srv, srv.URL(), func(o *Options) { o.NodeTimeout = 900 * time.Millisecond })
	a := bustest.Start(t, newBus, "node-a")
	b := bustest.Start(t, newBus, "node-b")
	ctx := context.Background()
	l := signaling.Limits{Queue: 8, Keep: 8, Grace: 1500 * time.Millisecond}
	for _, s := range []struct {
		n  bustest.Node
		id string
	}{{a, "dead1"}, {a, "dead2"}, {b, "live"}} {
		if err := s.n.Open(ctx, signaling.Session{ID: s.id, Token: "tok-" + s.id, Limits: l}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.n.Join(ctx, signaling.JoinRequest{Session: s.id, Room: "r", Max: 8, Member: []byte(`{}`),
			PeerJoined: []byte(`{"j":"` + s.id + `"}`), PeerLeft: []byte(`{"left":"` + s.id + `"}`), JoinedPrefix: []byte(`{"type":"joined",`)}); err != nil {
			t.Fatal(err)
		}
	}
	a.Bus.(*Bus).kill()
	// Held within the node timeout plus a reap interval or two.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := b.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c[""] == 2 && c["node-a"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead node's sessions not held: counts %v", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	held, err := b.Send(ctx, signaling.SendRequest{From: "live", To: "dead1", Body: []byte(`{"m":"while-held"}`), AckHeld: []byte(`{"ack":"held"}`)})
	if err != nil || !held {
		t.Fatalf("Send to a dead node's session = %v, %v", held, err)
	}
	res, err := b.Resume(ctx, signaling.ResumeRequest{Token: "tok-dead1", NewToken: "n1", Last: 0, Limits: l})
	if err != nil || res.ID != "dead1" || len(res.Rooms) != 1 {
		t.Fatalf("Resume = %+v, %v", res, err)
	}
	if got := string(res.Msgs[len(res.Msgs)-1]); got != `{"m":"while-held"}` {
		t.Fatalf("resumed without the message sent while held: %q", got)
	}
	// dead2 is removed after its grace: "live" and "dead1" get its
	// peer-left once.
	left := `{"left":"dead2"}`
	for _, id := range []string{"live", "dead1"} {
		if !b.Rec.WaitFor(6*time.Second, func(r *bustest.Recorder) bool {
			for _, d := range r.Delivered(id) {
				if d.Body == left {
					return true
				}
			}
			return false
		}) {
			t.Fatalf("%s: no peer-left of dead2: %+v", id, b.Rec.Delivered(id))
		}
	}
	time.Sleep(600 * time.Millisecond)
	n := 0
	for _, d := range b.Rec.Delivered("live") {
		if d.Body == left {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("live got %d peer-left, want 1", n)
	}
	// Replay of "live" agrees with what was delivered.
	_, msgs, _, err := b.Replay(ctx, "live", 0)
	if err != nil || len(msgs) != len(b.Rec.Delivered("live")) {
		t.Fatalf("Replay = %d msgs, %v; delivered %d", len(msgs), err, len(b.Rec.Delivered("live")))
	}
}

// TestRedisRestart: with Redis gone, every operation fails promptly with
// ErrUnavailable (no false success) and Healthy says so; once it is back
// the node resyncs and operations work again.
func TestRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	newBus := newBusFor(srv, srv.URL(), nil)
	a := bustest.Start(t, newBus, "node-a")
	ctx := context.Background()
	if err := a.Open(ctx, signaling.Session{ID: "s", Limits: signaling.Limits{Queue: 4, Keep: 4}}); err != nil {
		t.Fatal(err)
	}
	if !a.Bus.(*Bus).Healthy() {
		t.Fatal("not healthy with redis up")
	}
	srv.Stop()
	for i := range 5 {
		start := time.Now()
		err := a.Push(ctx, "s", []byte(`{}`))
		if !errors.Is(err, signaling.ErrUnavailable) {
			t.Fatalf("Push %d with redis down: %v", i, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Push with redis down took %v", d)
		}
	}
	if _, err := a.Join(ctx, signaling.JoinRequest{Session: "s", Room: "r"}); !errors.Is(err, signaling.ErrUnavailable) {
		t.Fatalf("Join with redis down: %v", err)
	}
	if !waitFor(3*time.Second, func() bool { return !a.Bus.(*Bus).Healthy() }) {
		t.Fatal("healthy with redis down")
	}
	resyncs := a.Rec.Resyncs()
	srv.Restart()
	if !waitFor(10*time.Second, func() bool { return a.Rec.Resyncs() > resyncs && a.Bus.(*Bus).Healthy() }) {
		t.Fatalf("no resync after redis came back (resyncs %d)", a.Rec.Resyncs())
	}
	// The restarted Redis is empty (nothing persisted): the session is
	// unknown, and a new one works end to end (scripts reloaded).
	if err := a.Push(ctx, "s", []byte(`{}`)); !errors.Is(err, signaling.ErrUnknownSession) {
		t.Fatalf("Push after an empty restart: %v", err)
	}
	if err := a.Open(ctx, signaling.Session{ID: "s2", Limits: signaling.Limits{Queue: 4, Keep: 4}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(ctx, "s2", []byte(`{"after":1}`)); err != nil {
		t.Fatal(err)
	}
	a.Rec.WaitDeliveries(t, "s2", 1)
	// The node found its membership gone and closed what it held before.
	if !a.Rec.WaitFor(5*time.Second, func(r *bustest.Recorder) bool {
		for _, k := range r.Kicks() {
			if k.ID == "s" && k.Code == closeServiceRestart {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no kick of the lost session: %+v", a.Rec.Kicks())
	}
	for _, k := range a.Rec.Kicks() {
		if k.ID == "s2" {
			t.Fatalf("kicked a session opened after the restart: %+v", k)
		}
	}
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// TestOrderConcurrent: many senders on three nodes to one target; every
// message arrives once, in seq order, each sender's in its order.
func TestOrderConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	newBus := newBusFor(srv, srv.URL(), nil)
	nodes := []bustest.Node{bustest.Start(t, newBus, "a"), bustest.Start(t, newBus, "b"), bustest.Start(t, newBus, "c")}
	ctx := context.Background()
	l := signaling.Limits{Queue: 4096, Keep: 16}
	if err := nodes[2].Open(ctx, signaling.Session{ID: "target", Limits: l}); err != nil {
		t.Fatal(err)
	}
	const senders, each = 30, 50
	var wg sync.WaitGroup
	for i := range senders {
		n := nodes[i%3]
		id := fmt.Sprint("from", i)
		if err := n.Open(ctx, signaling.Session{ID: id, Limits: l}); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				if _, err := n.Send(ctx, signaling.SendRequest{From: id, To: "target", Anyone: true, Body: []byte(fmt.Sprintf(`{"f":%d,"k":%d}`, i, k))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	d := nodes[2].Rec.WaitDeliveries(t, "target", senders*each)
	last := map[int]int{}
	for i, x := range d {
		if x.Seq != uint64(i+1) {
			t.Fatalf("delivery %d has seq %d", i, x.Seq)
		}
		var f, k int
		if _, err := fmt.Sscanf(x.Body, `{"f":%d,"k":%d}`, &f, &k); err != nil {
			t.Fatal(err)
		}
		if v, ok := last[f]; ok && k != v+1 {
			t.Fatalf("sender %d: %d after %d", f, k, v)
		}
		last[f] = k
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  string // "" when valid, else a part of the error
	}{
		{"redis://127.0.0.1:6379/0", ""},
		{"redis://user:pass@redis.example:6380/3", ""},
		{"rediss://redis.example:6380/0", ""},
		{"rediss://redis.example:6380/0?skip_verify=true", "unknown parameter"},
		{"unix:///run/redis/redis.sock?db=2", ""},
		{"redis://s1:26379?addr=s2:26379&addr=s3:26379&master_set=mymaster", ""},
		{"redis://127.0.0.1:6379/0?dial_timeout=2s", "unknown parameter"},
		{"http://127.0.0.1:6379", "scheme"},
		{"127.0.0.1:6379", "redis url"},
		{"redis://:6379/0", "no host"},
		{"redis://127.0.0.1:99999/0", "port"},
		{"redis://127.0.0.1:6379/zero", "database"},
		{"redis://127.0.0.1:6379/0?db=x", "db"},
		{"redis://127.0.0.1:6379/0?dbb=1", "unknown parameter"},
		{"redis://s1:26379?addr=s2:26379", "master_set"},
		{"unix://relative/redis.sock", "absolute"},
		{"unix:///run/redis.sock?master_set=x", "Sentinel"},
	} {
		err := ParseURL(tc.url)
		switch {
		case tc.ok == "" && err != nil:
			t.Errorf("ParseURL(%q) = %v, want ok", tc.url, err)
		case tc.ok != "" && (err == nil || !strings.Contains(err.Error(), tc.ok)):
			t.Errorf("ParseURL(%q) = %v, want an error about %q", tc.url, err, tc.ok)
		}
	}
}

// TestRedisHangs: a Redis that stops answering (paused, its sockets open)
// fails operations within OpTimeout instead of hanging the caller; they
// work again once it answers. An operation that failed is not done when
// Redis comes to it late: its caller has told its client so (it was found
// logged, and delivered, after a cluster-unavailable error).
func TestRedisHangs(t *testing.T) {
	srv := redistest.Start(t)
	newBus := newBusFor(srv, srv.URL(), nil)
	a := bustest.Start(t, newBus, "node-a")
	ctx := context.Background()
	if err := a.Open(ctx, signaling.Session{ID: "s", Limits: signaling.Limits{Queue: 4, Keep: 4}}); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	paused := true
	defer func() {
		if paused {
			srv.Continue()
		}
	}()
	start := time.Now()
	err := a.Push(ctx, "s", []byte(`{"n":1}`))
	if !errors.Is(err, signaling.ErrUnavailable) {
		t.Fatalf("Push to a hung redis: %v", err)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("Push to a hung redis took %v", d)
	}
	srv.Continue()
	paused = false
	if !waitFor(10*time.Second, func() bool { return a.Push(ctx, "s", []byte(`{"n":2}`)) == nil }) {
		t.Fatal("no Push succeeded after redis answered again")
	}
	// The Push that timed out reached Redis past its deadline: not done.
	d := a.Rec.WaitDeliveries(t, "s", 1)
	if len(d) != 1 || d[0].Body != `{"n":2}` || d[0].Seq != 1 {
		t.Fatalf("deliveries %+v, want only {\"n\":2} as seq 1", d)
	}
	if _, msgs, _, err := a.Replay(ctx, "s", 0); err != nil || len(msgs) != 1 {
		t.Fatalf("the log after a timed-out Push: %q %v, want only the second", msgs, err)
	}
}

// TestPartitionReclaim: a node that missed its heartbeats (a partition, a
// long pause) is taken for dead and its sessions held; when it beats again
// it reclaims those still held, keeps their connections, and resyncs, so
// what was sent to them meanwhile reaches them. One that resumed elsewhere
// meanwhile is kicked as replaced.
func TestPartitionReclaim(t *testing.T) {
	srv := redistest.Start(t)
	newBus := newBusFor(srv, srv.URL(), func(o *Options) { o.NodeTimeout = 900 * time.Millisecond })
	a := bustest.Start(t, newBus, "node-a")
	b := bustest.Start(t, newBus, "node-b")
	ctx := context.Background()
	l := signaling.Limits{Queue: 8, Keep: 8, Grace: time.Minute}
	for _, id := range []string{"stay", "moves"} {
		if err := a.Open(ctx, signaling.Session{ID: id, Token: "tok-" + id, Limits: l}); err != nil {
			t.Fatal(err)
		}
	}
	ab := a.Bus.(*Bus)
	ab.beating.Store(false)
	if !waitFor(5*time.Second, func() bool { c, _ := b.Counts(ctx); return c[""] == 2 }) {
		t.Fatal("the silent node's sessions were not held")
	}
	if err := b.Push(ctx, "stay", []byte(`{"while":"held"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Resume(ctx, signaling.ResumeRequest{Token: "tok-moves", NewToken: "n", Limits: l}); err != nil {
		t.Fatal(err)
	}
	resyncs := a.Rec.Resyncs()
	ab.beating.Store(true)
	if !waitFor(5*time.Second, func() bool { c, _ := b.Counts(ctx); return c["node-a"] == 1 && c["node-b"] == 1 }) {
		c, _ := b.Counts(ctx)
		t.Fatalf("not reclaimed: counts %v", c)
	}
	if !a.Rec.WaitFor(5*time.Second, func(r *bustest.Recorder) bool { return r.Resyncs() > resyncs }) {
		t.Fatal("no resync after the reclaim")
	}
	for _, k := range a.Rec.Kicks() {
		if k.ID == "stay" {
			t.Fatalf("a reclaimed session was kicked: %+v", k)
		}
	}
	if !a.Rec.WaitFor(5*time.Second, func(r *bustest.Recorder) bool {
		for _, k := range r.Kicks() {
			if k.ID == "moves" && k.Code == closeReplaced {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the session that resumed elsewhere was not kicked as replaced: %+v", a.Rec.Kicks())
	}
	// The message sent while held is in the log for the resync's Replay.
	if from, msgs, _, err := a.Replay(ctx, "stay", 0); err != nil || from != 1 || len(msgs) != 1 {
		t.Fatalf("Replay = %d, %q, %v", from, msgs, err)
	}
	// Deliveries flow to node-a again.
	if err := b.Push(ctx, "stay", []byte(`{"after":"reclaim"}`)); err != nil {
		t.Fatal(err)
	}
	if ds := a.Rec.WaitDeliveries(t, "stay", 1); ds[len(ds)-1].Body != `{"after":"reclaim"}` {
		t.Fatalf("after the reclaim: %+v", ds)
	}
}
