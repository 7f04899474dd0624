package redisbus

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"icegate/internal/redistest"
	"icegate/signaling"
)

// countNode counts deliveries and drops them.
type countNode struct{ n atomic.Int64 }

func (c *countNode) Deliver(string, uint64, []byte)   { c.n.Add(1) }
func (c *countNode) Kick(string, uint64, int, string) {}
func (c *countNode) Resync()                          {}

// BenchmarkSend sends directed messages between two sessions of a room, as
// the signaling's hot path does (tools/cluster-bench loads it end to end),
// with the log bounds of the default send_queue (256: Keep 256, Queue
// 256). Besides the Go side's ns/op it reports redis-µs/op: Redis's own
// time in the send script, from INFO commandstats, the figure that bounds
// how many messages one Redis carries.
func BenchmarkSend(b *testing.B) {
	srv := redistest.Start(b)
	bus, err := New(Options{URL: srv.URL(), NodeID: "bench", Prefix: "bench:"})
	if err != nil {
		b.Fatal(err)
	}
	node := &countNode{}
	if err := bus.Start(node); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bus.Close(context.Background()) })
	ctx := context.Background()
	l := signaling.Limits{Queue: 256, Keep: 256, Grace: time.Minute}
	for _, id := range []string{"a", "b"} {
		if err := bus.Open(ctx, signaling.Session{ID: id, Limits: l}); err != nil {
			b.Fatal(err)
		}
		if _, err := bus.Join(ctx, signaling.JoinRequest{Session: id, Room: "r", Member: []byte(`{}`),
			PeerJoined: []byte(`{}`), PeerLeft: []byte(`{}`), JoinedPrefix: []byte(`{"type":"joined",`)}); err != nil {
			b.Fatal(err)
		}
	}
	body := []byte(`{"type":"message","from":"a","data":{"t":1767225600000000000}}`)
	usec := func() int64 {
		s, err := bus.client.Do(ctx, bus.client.B().Info().Section("commandstats").Build()).ToString()
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.Lines(s) {
			if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:"); ok {
				for kv := range strings.SplitSeq(strings.TrimSpace(rest), ",") {
					if v, ok := strings.CutPrefix(kv, "usec="); ok {
						n, _ := strconv.ParseInt(v, 10, 64)
						return n
					}
				}
			}
		}
		return 0
	}
	// Fill the logs past their bound first: the steady state trims.
	for range 600 {
		if _, err := bus.Send(ctx, signaling.SendRequest{From: "a", To: "b", Body: body}); err != nil {
			b.Fatal(err)
		}
	}
	u0 := usec()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bus.Send(ctx, signaling.SendRequest{From: "a", To: "b", Body: body}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(usec()-u0)/float64(b.N), "redis-µs/op")
}
