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
	"sync/atomic"
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
//
// Every connection asks it, before its upgrade: the last count is read
// without a lock, and one caller at a time recounts while the others go
// on with the last one. Under one mutex held across the recount, the
// accepts of a 15,000-client reconnect storm queued behind each directory
// read (issue 15: the lock the storm's new connections waited on longest,
// once the signaling server's own were split).
type Guard struct {
	own     func() int64
	reserve func(limit int) int

	last atomic.Pointer[fdCount] // nil before the first count
	mu   sync.Mutex              // held by the caller recounting; guards buf
	buf  []byte
}

// fdCount is one count of the descriptors.
type fdCount struct {
	checked time.Time
	n       int // descriptors open, -1 = cannot count
	limit   int // the soft RLIMIT_NOFILE
	ownThen int64
}

// New returns a Guard whose estimate between counts follows own (nil: the
// count alone), keeping reserve(limit) descriptors free.
func New(own func() int64, reserve func(limit int) int) *Guard {
	if own == nil {
		own = func() int64 { return 0 }
	}
	return &Guard{own: own, reserve: reserve}
}

// Full reports whether a new connection would eat into the reserve. Where
// descriptors cannot be counted it reports false: no reserve rather than
// refusing every client.
func (g *Guard) Full(now time.Time) bool {
	c := g.last.Load()
	switch {
	case c == nil:
		// The first count: everyone waits for it.
		g.mu.Lock()
		c = g.countIfDue(now)
		g.mu.Unlock()
	case g.due(c, now) && g.mu.TryLock():
		c = g.countIfDue(now)
		g.mu.Unlock()
	}
	if c.n < 0 {
		return false
	}
	return g.estimate(c) >= c.limit-g.reserve(c.limit)
}

// due reports whether count c is too old at now.
func (g *Guard) due(c *fdCount, now time.Time) bool {
	interval := time.Second
	if c.n >= 0 && g.estimate(c) >= c.limit-2*g.reserve(c.limit) {
		interval = 50 * time.Millisecond
	}
	return now.Sub(c.checked) >= interval
}

// countIfDue recounts unless another caller did meanwhile, and returns
// the count in force. g.mu is held.
func (g *Guard) countIfDue(now time.Time) *fdCount {
	if c := g.last.Load(); c != nil && !g.due(c, now) {
		return c
	}
	c := g.recount(now)
	g.last.Store(c)
	return c
}

// Last returns the descriptors open by the last estimate, the limit, and
// the reserve kept under it (all 0 before the first Full).
func (g *Guard) Last() (open, limit, reserve int) {
	c := g.last.Load()
	if c == nil {
		return 0, 0, 0
	}
	if c.n < 0 {
		return 0, c.limit, 0
	}
	return g.estimate(c), c.limit, g.reserve(c.limit)
}

func (g *Guard) estimate(c *fdCount) int { return c.n + int(g.own()-c.ownThen) }

// recount counts the descriptors now. g.mu is held.
func (g *Guard) recount(now time.Time) *fdCount {
	c := &fdCount{checked: now, ownThen: g.own()}
	limit, err := Limit()
	if err != nil || limit <= 0 {
		c.n = -1
		return c
	}
	c.limit = limit
	n, err := Open(&g.buf)
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		n = limit // not even /proc/self/fd opens: the process is at its limit
	case err != nil:
		n = -1
	}
	c.n = n
	return c
}
