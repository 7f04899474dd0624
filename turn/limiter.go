package turn

import (
	"net/netip"
	"sync"
	"time"
)

// sourceLimiter is a token bucket per source IP for requests that carry no
// valid credentials (RFC 8489 §9.2 challenges, Binding requests, failed
// authentications). One flooding source empties only its own bucket.
//
// Memory is bounded: buckets live in two generations that rotate every
// window; a source idle for two windows is forgotten, and when a generation
// is full new sources share one overflow bucket rather than growing the map.
type sourceLimiter struct {
	rate, burst float64
	window      time.Duration
	maxSources  int

	mu       sync.Mutex
	cur      map[netip.Addr]*bucket
	prev     map[netip.Addr]*bucket
	rotated  time.Time
	overflow bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newSourceLimiter(rate, burst int) *sourceLimiter {
	if burst < rate {
		burst = rate
	}
	return &sourceLimiter{
		rate: float64(rate), burst: float64(burst),
		window: 10 * time.Second, maxSources: 100000,
		cur: map[netip.Addr]*bucket{}, prev: map[netip.Addr]*bucket{},
	}
}

// allow takes one token for src, reporting false when the source is over its
// rate. A nil limiter or a zero rate allows everything.
func (l *sourceLimiter) allow(src netip.Addr, now time.Time) bool {
	if l == nil || l.rate <= 0 {
		return true
	}
	src = src.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.rotated) > l.window {
		l.prev, l.cur = l.cur, make(map[netip.Addr]*bucket, len(l.cur))
		l.rotated = now
	}
	b := l.cur[src]
	if b == nil {
		if old := l.prev[src]; old != nil {
			b = old
		} else if len(l.cur) >= l.maxSources {
			b = &l.overflow
		} else {
			b = &bucket{tokens: l.burst, last: now}
		}
		if b != &l.overflow {
			l.cur[src] = b
		}
	}
	b.tokens += now.Sub(b.last).Seconds() * l.rate
	if b.tokens > l.burst {
		b.tokens = l.burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// rateBucket is a byte-rate token bucket for one direction of one allocation.
type rateBucket struct {
	mu     sync.Mutex
	rate   float64 // bytes per second
	tokens float64
	last   time.Time
}

func newRateBucket(bytesPerSecond int) *rateBucket {
	if bytesPerSecond <= 0 {
		return nil
	}
	// A burst of one second's worth, and at least one full-size datagram.
	return &rateBucket{rate: float64(bytesPerSecond), tokens: float64(max(bytesPerSecond, 1500)), last: time.Now()}
}

// take reports whether n bytes fit the budget now.
func (b *rateBucket) take(n int) bool {
	if b == nil {
		return true
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	if limit := max(b.rate, 1500); b.tokens > limit {
		b.tokens = limit
	}
	b.last = now
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
