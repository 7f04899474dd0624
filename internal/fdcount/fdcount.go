// Package fdcount counts the file descriptors this process holds against
// its RLIMIT_NOFILE, and keeps a reserve of them: a listener that accepts
// until accept(2) fails with EMFILE has no descriptor left to refuse a
// client politely, to open a relay socket, to reach Redis or to write a
// log. The relay (turn) and signaling each keep their own Guard; the
// counting is here, once.
package fdcount

import (
	"errors"
	"sync"
	"syscall"
	"time"
)

// ErrUnsupported means the count is not available on this system (it needs
// Linux's /proc/self/fd).
var ErrUnsupported = errors.New("descriptor count only on Linux")

// Guard says whether a new connection would eat into a reserve of
// descriptors: it refuses once the process holds more than the soft limit
// less the reserve. Counting /proc/self/fd costs a directory read (well
// under a millisecond at 20,000), so it is done at most once a second, or
// every 50 ms when within twice the reserve; in between, the estimate
// follows Own, the caller's own count of the connections it holds, since
// the last count. A Guard is safe for concurrent use; the zero value is not
// ready, use New.
type Guard struct {
	own     func() int64
	reserve func(limit int) int

	mu      sync.Mutex
	checked time.Time
	count   int // descriptors open at the last count, -1 = cannot count
	limit   int // the soft RLIMIT_NOFILE at the last count
	ownThen int64
	buf     []byte
}

// New returns a Guard whose estimate between counts follows own (nil: the
// count alone), keeping reserve(limit) descriptors free.
func New(own func() int64, reserve func(limit int) int) *Guard {
	if own == nil {
		own = func() int64 { return 0 }
	}
	return &Guard{own: own, reserve: reserve, count: -1}
}

// Full reports whether a new connection would eat into the reserve. Where
// descriptors cannot be counted it reports false: no reserve rather than
// refusing every client.
func (g *Guard) Full(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	est := g.estimate()
	interval := time.Second
	if g.count >= 0 && est >= g.limit-2*g.reserve(g.limit) {
		interval = 50 * time.Millisecond
	}
	if g.checked.IsZero() || now.Sub(g.checked) >= interval {
		g.recount(now)
		est = g.estimate()
	}
	if g.count < 0 {
		return false
	}
	return est >= g.limit-g.reserve(g.limit)
}

// Last returns the descriptors open by the last estimate, the limit, and
// the reserve kept under it (all 0 before the first Full).
func (g *Guard) Last() (open, limit, reserve int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.count < 0 {
		return 0, g.limit, 0
	}
	return g.estimate(), g.limit, g.reserve(g.limit)
}

func (g *Guard) estimate() int { return g.count + int(g.own()-g.ownThen) }

func (g *Guard) recount(now time.Time) {
	g.checked = now
	g.ownThen = g.own()
	limit, err := Limit()
	if err != nil || limit <= 0 {
		g.count = -1
		return
	}
	g.limit = limit
	n, err := Open(&g.buf)
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		n = limit // not even /proc/self/fd opens: the process is at its limit
	case err != nil:
		n = -1
	}
	g.count = n
}
