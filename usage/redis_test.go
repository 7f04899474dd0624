package usage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/rueidis"

	"icegate/internal/redistest"
)

// client connects to srv as the cluster's client does (no cache, no
// automatic retries) and is closed when t ends.
func client(t *testing.T, srv *redistest.Server) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true,
		DisableRetry: true, ForceSingleClient: true, ConnWriteTimeout: time.Second,
		Dialer: net.Dialer{Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// node is one node's record on srv, under a prefix of t's own.
func node(t *testing.T, c rueidis.Client, mod func(*RedisOptions)) *Redis {
	t.Helper()
	sum := sha256.Sum256([]byte(t.Name()))
	o := RedisOptions{Client: c, Prefix: "t" + hex.EncodeToString(sum[:6]) + ":", Retention: time.Hour,
		OpTimeout: 500 * time.Millisecond, Registerer: prometheus.NewRegistry()}
	if mod != nil {
		mod(&o)
	}
	r, err := NewRedis(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRedisSumsNodes(t *testing.T) {
	srv := redistest.Start(t)
	t0 := time.Now().Truncate(time.Minute).Add(-9 * time.Minute)
	a, b := node(t, client(t, srv), nil), node(t, client(t, srv), nil)
	one := Counters{BytesToPeer: 100, PacketsToPeer: 1, BytesToClient: 200, PacketsToClient: 2}
	alice, tenant := Key{User: "alice"}, Key{User: "t:7", CustomID: "acme:7"}
	for i := range 10 {
		at := t0.Add(time.Duration(i)*time.Minute + time.Second)
		a.Add(at, alice, one)
		b.Add(at, alice, one)
		b.Add(at, tenant, one)
		if i == 4 { // two flushes: HINCRBY adds to what is there
			for _, n := range []*Redis{a, b} {
				if err := n.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, n := range []*Redis{a, b} {
		if err := n.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		q     Query
		rows  int
		first Counters
	}{
		{"total per key", Query{}, 2, Counters{2000, 20, 4000, 40}},
		{"one user", Query{User: "alice"}, 1, Counters{2000, 20, 4000, 40}},
		{"custom id with a colon", Query{CustomID: "acme:7"}, 1, Counters{1000, 10, 2000, 20}},
		{"per minute", Query{User: "alice", Step: time.Minute}, 10, Counters{200, 2, 400, 4}},
		{"per 5 minutes", Query{User: "alice", From: t0, Step: 5 * time.Minute}, 2, Counters{1000, 10, 2000, 20}},
		{"nobody", Query{User: "mallory"}, 0, Counters{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, n := range map[string]*Redis{"a": a, "b": b} { // either node answers for both
				rows, err := n.Query(context.Background(), tc.q)
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) != tc.rows {
					t.Fatalf("node %s: %d rows, want %d: %+v", name, len(rows), tc.rows, rows)
				}
				if tc.rows > 0 && rows[0].Counters != tc.first {
					t.Errorf("node %s: first row %+v, want %+v", name, rows[0], tc.first)
				}
			}
		})
	}
	if got := testutil.ToFloat64(a.flushes.WithLabelValues("ok")); got != 2 {
		t.Errorf("node a: %v flushes ok, want 2", got)
	}
}

// TestRedisAwayAndBack: a flush while Redis is stopped fails and is
// counted; the minutes are kept and booked once Redis is back. A flush
// that times out on a paused Redis, which then runs it on waking, is not
// booked twice when sent again.
func TestRedisAwayAndBack(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	n := node(t, c, nil)
	now := time.Now()
	k := Key{User: "bob"}
	one := Counters{BytesToPeer: 10, PacketsToPeer: 1}
	ctx := context.Background()

	srv.Stop()
	n.Add(now.Add(-2*time.Minute), k, one)
	n.Add(now, k, one)
	if err := n.Flush(ctx); err == nil {
		t.Fatal("flush with Redis stopped succeeded")
	}
	n.Add(now, k, one) // more while it is away
	if err := n.Flush(ctx); err == nil {
		t.Fatal("second flush with Redis stopped succeeded")
	}
	if got := testutil.ToFloat64(n.flushes.WithLabelValues("failed")); got != 2 {
		t.Errorf("%v failed flushes counted, want 2", got)
	}
	if testutil.ToFloat64(n.upMetric) != 0 {
		t.Error("icegate_usage_redis_up is 1 with Redis away")
	}
	srv.Restart()
	flushUntil(t, n)
	if got := total(t, n, Query{User: "bob"}); got.PacketsToPeer != 3 {
		t.Errorf("after Redis came back: %+v, want the 3 packets booked while it was away", got)
	}
	if testutil.ToFloat64(n.upMetric) != 1 {
		t.Error("icegate_usage_redis_up is 0 with Redis back")
	}

	// Paused: the pipeline reaches Redis's socket, the flush times out,
	// Redis runs it when it wakes; the retry must not count it again.
	n.Add(now, k, one)
	srv.Pause()
	err := n.Flush(ctx)
	srv.Continue()
	if err == nil {
		t.Fatal("flush to a paused Redis succeeded")
	}
	flushUntil(t, n)
	if got := total(t, n, Query{User: "bob"}); got.PacketsToPeer != 4 {
		t.Errorf("after the pause: %+v, want 4 packets (a retried batch booked once)", got)
	}
}

// flushUntil flushes until one succeeds (the client reconnects).
func flushUntil(t *testing.T, n *Redis) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := n.Flush(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("flush still failing: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func total(t *testing.T, n *Redis, q Query) Counters {
	t.Helper()
	rows, err := n.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var sum Counters
	for _, r := range rows {
		sum = sum.Add(r.Counters)
	}
	return sum
}

// TestRedisRetention: a minute's hash expires retention after its last
// write.
func TestRedisRetention(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	n := node(t, c, func(o *RedisOptions) { o.Retention = 1500 * time.Millisecond })
	now := time.Now()
	n.Add(now, Key{User: "carol"}, Counters{BytesToPeer: 1})
	if err := n.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	key := n.hashKey(minuteOf(now))
	ttl, err := c.Do(context.Background(), c.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil || ttl <= 0 || ttl > 1500 {
		t.Fatalf("PTTL %s = %d (%v), want 1..1500 ms", key, ttl, err)
	}
	if got := total(t, n, Query{}); got.BytesToPeer != 1 {
		t.Fatalf("before expiry: %+v", got)
	}
	time.Sleep(1700 * time.Millisecond)
	if e, err := c.Do(context.Background(), c.B().Exists().Key(key).Build()).AsInt64(); err != nil || e != 0 {
		t.Errorf("EXISTS %s = %d (%v) after the retention", key, e, err)
	}
	n.now = func() time.Time { return now } // the same minute, so only Redis's expiry can empty it
	if got := total(t, n, Query{}); got != (Counters{}) {
		t.Errorf("after expiry: %+v", got)
	}
}

// TestRedisBacklogBound: with Redis away, at most MaxBacklog minutes wait;
// older ones are dropped and counted.
func TestRedisBacklogBound(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	n := node(t, c, func(o *RedisOptions) { o.MaxBacklog = 3 })
	srv.Stop()
	now := time.Now().Truncate(time.Minute)
	for i := range 5 {
		n.Add(now.Add(time.Duration(i-5)*time.Minute), Key{User: "dave"}, Counters{PacketsToPeer: 1})
	}
	if got := testutil.ToFloat64(n.dropped); got != 2 {
		t.Errorf("%v minutes dropped, want 2", got)
	}
	if got := testutil.ToFloat64(n.backlog); got != 3 {
		t.Errorf("backlog %v minutes, want 3", got)
	}
	srv.Restart()
	flushUntil(t, n)
	if got := total(t, n, Query{}); got.PacketsToPeer != 3 {
		t.Errorf("booked %+v, want the newest 3 minutes", got)
	}
}

func FuzzParseField(f *testing.F) {
	f.Add("alice", "")
	f.Add("t:7", "acme:7")
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, user, custom string) {
		k := Key{User: user, CustomID: custom}
		tag, got, ok := parseField(field("bp", k))
		if !ok || tag != "bp" || got != k {
			t.Errorf("round trip of %+v: %q %+v %v", k, tag, got, ok)
		}
		_, _, _ = parseField(user + custom) // anything: no panic
	})
}
