package signaling

import (
	"sync"
	"sync/atomic"
	"time"
)

// A ping is most of what an idle connection costs the server (issue 15):
// starting a writer goroutine per ping, which ends right after, and the
// runtime waking a thread to run each, was a third of an idle node's CPU.
// The connections whose only duty is a ping, with no writer running, are
// pinged by one goroutine per batch of the timer loop instead (pingBatch).
//
// A ping write blocks only when the client's socket buffer is full; then
// that one connection must not hold up the rest of its batch, whose pongs
// are due within the pong wait. A watchdog starts another goroutine on
// the rest of the batch whenever the batch has made no progress for
// pingStall, so a stuck ping costs the others at most that much each, and
// one goroutine.

// pingBatchSize bounds a batch: the connections due in one wake-up are
// split into batches of at most this many, each its own goroutine.
const pingBatchSize = 64

// pingStall is how long a batch may make no progress before the watchdog
// starts another goroutine on its rest.
const pingStall = 50 * time.Millisecond

// pingBatch is connections to ping, each claimed by the writer role
// (conn.writing) for it.
type pingBatch struct {
	conns    []*conn
	next     atomic.Int64 // the next index to take
	finished atomic.Int64 // pinged (or failed) so far

	mu    sync.Mutex
	watch *time.Timer // the watchdog
	seen  int64       // finished when the watchdog last looked
}

// startPings pings conns from goroutines of their own, a batch each.
func startPings(conns []*conn) {
	for len(conns) > 0 {
		n := min(len(conns), pingBatchSize)
		b := &pingBatch{conns: conns[:n:n]}
		conns = conns[n:]
		b.mu.Lock()
		b.seen = -1
		b.watch = time.AfterFunc(pingStall, b.check)
		b.mu.Unlock()
		go b.run()
	}
}

// run pings the connections it takes until none is left.
func (b *pingBatch) run() {
	for {
		i := int(b.next.Add(1) - 1)
		if i >= len(b.conns) {
			return
		}
		b.conns[i].pingNow()
		if int(b.finished.Add(1)) == len(b.conns) {
			b.mu.Lock()
			b.watch.Stop()
			b.mu.Unlock()
		}
	}
}

// check is the watchdog: when nothing was pinged since it last looked and
// connections are left to take, one ping is stuck; another goroutine
// takes the rest.
func (b *pingBatch) check() {
	b.mu.Lock()
	defer b.mu.Unlock()
	done := b.finished.Load()
	if int(done) == len(b.conns) {
		return
	}
	if done == b.seen && int(b.next.Load()) < len(b.conns) {
		go b.run()
	}
	b.seen = done
	b.watch.Reset(pingStall)
}

// pingNow sends c's ping as its writer (the caller claimed the role) and
// gives the role back, or hands it to a writer goroutine when more duties
// came meanwhile (a message, a kill).
func (c *conn) pingNow() {
	c.lazyPing()
	if err := c.t.Ping(time.Now().Add(writeWait)); err != nil {
		c.finish(0, "")
	}
	c.wmu.Lock()
	more := c.todo != 0 && !c.finished
	if !more {
		c.writing = false
	}
	c.wmu.Unlock()
	if more {
		go c.writer()
	}
}
