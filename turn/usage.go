package turn

import (
	"context"
	"fmt"
	"time"
)

// Usage reporting: what each user and custom identifier relayed, for an
// aggregator outside the relay (cmd/icegate keeps minute buckets and, in a
// cluster, adds them up in Redis). The relay reports the growth of every
// live allocation's counters every Options.UsageInterval and the rest when
// the allocation ends, so the aggregator's minute buckets hold what was
// relayed in that minute (to the interval's precision), not whole
// allocations booked at their end.

// UsageReport is a user's and custom identifier's relayed traffic since
// the previous report.
type UsageReport struct {
	// Time is when the traffic was read.
	Time     time.Time
	User     string
	CustomID string
	Traffic
}

// defaultUsageInterval is Options.UsageInterval's default: the
// aggregator's minute buckets need no finer reports.
const defaultUsageInterval = time.Minute

// usageDetail is the usage event's Detail: what an ended allocation
// relayed, in the usage line's terms (coturn's: rp and rb received from
// the client, sp and sb sent to it).
func usageDetail(a allocInfo) string {
	t := a.traffic
	return fmt.Sprintf("relay %s ended after %s: rp=%d rb=%d sp=%d sb=%d", a.relay,
		time.Since(a.start).Round(time.Millisecond), t.PacketsToPeer, t.BytesToPeer, t.PacketsToClient, t.BytesToClient)
}

// reportUsage hands an ended allocation's last traffic to the usage hook.
func (s *Server) reportUsage(user, customID string, t Traffic) {
	if s.usage == nil || t.IsZero() {
		return
	}
	s.usage([]UsageReport{{Time: time.Now(), User: user, CustomID: customID, Traffic: t}})
}

// watchUsage reports the live allocations' traffic every interval until
// ctx ends.
func (s *Server) watchUsage(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if r := s.allocs.usageSince(time.Now()); len(r) > 0 {
				s.usage(r)
			}
		}
	}
}

// FlushUsage reports the live allocations' traffic not yet reported to the
// usage hook now, without waiting for the interval: for a reader that
// wants the current minute complete (the admin API's usage query).
func (s *Server) FlushUsage() {
	if s.usage == nil {
		return
	}
	if r := s.allocs.usageSince(time.Now()); len(r) > 0 {
		s.usage(r)
	}
}

// usageSince collects the traffic the live allocations relayed since
// their last report, summed per user id and custom identifier, and marks
// it reported.
func (t *allocTable) usageSince(now time.Time) []UsageReport {
	type who struct{ user, custom string }
	sums := map[who]Traffic{}
	t.mu.Lock()
	for _, a := range t.allocs {
		cur := a.traffic()
		d := cur.Sub(a.reported)
		if d.IsZero() {
			continue
		}
		a.reported = cur
		k := who{a.cred.userID, a.cred.customID()}
		sums[k] = sums[k].Add(d)
	}
	t.mu.Unlock()
	out := make([]UsageReport, 0, len(sums))
	for k, d := range sums {
		out = append(out, UsageReport{Time: now, User: k.user, CustomID: k.custom, Traffic: d})
	}
	return out
}
