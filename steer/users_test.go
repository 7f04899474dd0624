package steer

import (
	"context"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"icegate/internal/redistest"
)

// TestUserCounts: two nodes' counts add up for each other; a node whose
// instance stops heartbeating stops counting, and one that stops removes
// its counts.
func TestUserCounts(t *testing.T) {
	srv := redistest.Start(t)
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	a := NewUserCounts(client, "t:", "a", time.Second, nil)
	b := NewUserCounts(client, "t:", "b", time.Second, nil)
	// Liveness as the Directory keeps it: the instance key with a TTL.
	live := func(u *UserCounts, ttl time.Duration) {
		t.Helper()
		if err := client.Do(ctx, client.B().Set().Key("t:turn:inst:"+u.Instance()).Value("1").PxMilliseconds(ttl.Milliseconds()).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	live(a, time.Minute)
	live(b, 500*time.Millisecond)
	a.Add("alice", 1)
	a.Add("alice", 1)
	a.Add("bob", 1)
	b.Add("alice", 1)
	a.flush(ctx)
	b.flush(ctx)
	for _, c := range []struct {
		u    *UserCounts
		user string
		want int
	}{{a, "alice", 1}, {b, "alice", 2}, {b, "bob", 1}, {a, "bob", 0}, {a, "carol", 0}} {
		if got := c.u.Elsewhere(c.user); got != c.want {
			t.Errorf("%s sees %d of %s's allocations elsewhere, want %d", c.u.Instance(), got, c.user, c.want)
		}
	}
	// Down to 0: the field goes.
	a.Add("bob", -1)
	a.flush(ctx)
	if n, _ := client.Do(ctx, client.B().Hlen().Key("t:turn:user:bob").Build()).AsInt64(); n != 0 {
		t.Errorf("bob's hash has %d fields after his last allocation ended", n)
	}
	// b's instance expires (it died): a stops counting it and removes it.
	time.Sleep(600 * time.Millisecond)
	if got := a.Elsewhere("alice"); got != 0 {
		t.Errorf("a counts %d of alice's allocations on dead b", got)
	}
	if ok, _ := client.Do(ctx, client.B().Hexists().Key("t:turn:user:alice").Field(b.Instance()).Build()).AsBool(); ok {
		t.Error("dead b's field is still there")
	}
	// a stops: its fields go.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.Run(rctx); close(done) }()
	cancel()
	<-done
	if n, _ := client.Do(ctx, client.B().Hlen().Key("t:turn:user:alice").Build()).AsInt64(); n != 0 {
		t.Errorf("alice's hash has %d fields after a stopped", n)
	}
	// Redis away: Elsewhere answers 0 within its timeout.
	srv.Stop()
	start := time.Now()
	if got := b.Elsewhere("alice"); got != 0 || time.Since(start) > 2*time.Second {
		t.Errorf("with Redis stopped: %d after %v", got, time.Since(start))
	}
}
