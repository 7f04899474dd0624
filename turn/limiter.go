package turn

import (
	"net/netip"
	"sync"
	"time"
)

// sourceLimiter bounds the requests without valid credentials (RFC 8489
// §9.2 challenges, Binding requests, failed authentications) that arrive
// over UDP, where a source address can be forged. It keeps two token
// buckets:
//
//   - one per source IP, port ignored, at rate and burst: what a forged
//     flood can make the server send towards one victim (reflection). The
//     port is left out of the key so that an attacker cannot get a fresh
//     budget by rotating ports (coturn's --unauthorized-ratelimit keys on the
//     IP for the same reason).
//   - one per source address (IP and port: one client socket) at a fifth of
//     that, so that a single socket flooding leaves four fifths of its IP's
//     budget to the other clients behind the same NAT. A crowd behind one
//     carrier-grade NAT shares the IP budget; one of them cannot take it all.
//
// TCP, TLS and DTLS connections never reach this limiter: their source has
// completed a handshake and cannot be forged, so each connection has its own
// bucket of the per-address size (gateConn.guard).
//
// Memory is bounded: buckets live in two generations that rotate every
// window; a source idle for two windows is forgotten. When the IP table is
// full, new IPs share one overflow bucket rather than growing the map; when
// the address table is full, new addresses are held to their IP's bucket only.
type sourceLimiter struct {
	rate, burst         float64 // per source IP
	addrRate, addrBurst float64 // per source address
	window              time.Duration
	maxSources          int

	mu       sync.Mutex
	cur      map[netip.Addr]*bucket
	prev     map[netip.Addr]*bucket
	curAddr  map[netip.AddrPort]*bucket
	prevAddr map[netip.AddrPort]*bucket
	rotated  time.Time
	overflow bucket
}

// addrShare is the part of a source IP's budget one source address may use.
const addrShare = 5

// bucket is a token bucket; its rate and burst are its owner's.
type bucket struct {
	tokens float64
	last   time.Time
}

// refill adds the tokens earned since the last call, up to burst, and
// reports whether one is there to take.
func (b *bucket) refill(rate, burst float64, now time.Time) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens += now.Sub(b.last).Seconds() * rate
	}
	if b.tokens > burst {
		b.tokens = burst
	}
	b.last = now
	return b.tokens >= 1
}

// take takes one token, reporting false when the bucket is empty.
func (b *bucket) take(rate, burst float64, now time.Time) bool {
	if !b.refill(rate, burst, now) {
		return false
	}
	b.tokens--
	return true
}

func newSourceLimiter(rate, burst int) *sourceLimiter {
	if burst < rate {
		burst = rate
	}
	l := &sourceLimiter{
		rate: float64(rate), burst: float64(burst),
		window: 10 * time.Second, maxSources: 100000,
		cur: map[netip.Addr]*bucket{}, prev: map[netip.Addr]*bucket{},
		curAddr: map[netip.AddrPort]*bucket{}, prevAddr: map[netip.AddrPort]*bucket{},
	}
	l.addrRate, l.addrBurst = streamGuard(rate, burst)
	return l
}

// streamGuard is the budget of one source address: a fifth of a source IP's,
// at least one request a second.
func streamGuard(rate, burst int) (float64, float64) {
	r := max(float64(rate)/addrShare, 1)
	return r, max(float64(burst)/addrShare, r)
}

// allow takes one token for src, reporting false when the source address or
// its IP is over its rate. A nil limiter or a zero rate allows everything.
// A request refused by the address bucket takes nothing from the IP's, so a
// flooding socket does not drain its neighbours' budget.
func (l *sourceLimiter) allow(src netip.AddrPort, now time.Time) bool {
	if l == nil || l.rate <= 0 {
		return true
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	ip := src.Addr()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.rotated) > l.window {
		l.prev, l.cur = l.cur, make(map[netip.Addr]*bucket, len(l.cur))
		l.prevAddr, l.curAddr = l.curAddr, make(map[netip.AddrPort]*bucket, len(l.curAddr))
		l.rotated = now
	}
	a := l.curAddr[src]
	if a == nil {
		if old := l.prevAddr[src]; old != nil {
			a = old
			l.curAddr[src] = a
		} else if len(l.curAddr) < l.maxSources {
			a = &bucket{}
			l.curAddr[src] = a
		}
	}
	if a != nil && !a.refill(l.addrRate, l.addrBurst, now) {
		return false
	}
	b := l.cur[ip]
	if b == nil {
		if old := l.prev[ip]; old != nil {
			b = old
		} else if len(l.cur) >= l.maxSources {
			b = &l.overflow
		} else {
			b = &bucket{}
		}
		if b != &l.overflow {
			l.cur[ip] = b
		}
	}
	if !b.take(l.rate, l.burst, now) {
		return false
	}
	if a != nil {
		a.tokens--
	}
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
