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
	c.pingDone()
}

// inlinePinger is a Transport whose ping can be sent without blocking:
// /ws over a plain TCP socket on Linux (wsTransport).
//
// Even a batch goroutine per wake-up of the timer loop cost an idle node
// a goroutine start, a watchdog timer and the runtime waking a second
// thread to run it (wakep), some 40 times a second at 16,700 connections,
// and gorilla's WriteControl a channel timer and a socket write deadline
// (a runtime timer that fires writeWait later) per ping (issue 15). A
// ping is two bytes: a non-blocking send(2) either takes them or says
// the client's socket buffer is full, so the timer loop sends them
// itself, and only a connection whose send did not finish gets a
// goroutine, which blocks for it as pingNow does.
type inlinePinger interface {
	// canPingInline reports whether pingInline works here.
	canPingInline() bool
	// pingInline does Ping's work except that the frame is sent with a
	// non-blocking send: it reports how many of the ping frame's bytes
	// went out (an error ends the connection).
	pingInline() (sent int, err error)
	// pingRest sends the ping frame from byte sent on, blocking until
	// deadline at most.
	pingRest(sent int, deadline time.Time) error
}

// pingInline sends c's ping from the timer loop as its writer (the loop
// claimed the role in conn.due) when its transport can without blocking;
// it reports false when it cannot, and the ping goes in a batch
// (startPings). A send that did not finish, or failed, is finished on a
// goroutine of its own, as pingNow would.
func (c *conn) pingInline() bool {
	p, ok := c.t.(inlinePinger)
	if !ok || !p.canPingInline() {
		return false
	}
	c.lazyPing()
	sent, err := p.pingInline()
	if err != nil || sent < len(pingFrame) {
		c.s.pingsFinished.Add(1)
		go c.pingFinish(p, sent, err)
		return true
	}
	c.s.pingsInline.Add(1)
	c.pingDone()
	return true
}

// pingFinish sends the rest of a ping that pingInline began, blocking as
// pingNow's write does, and gives the writer role back.
func (c *conn) pingFinish(p inlinePinger, sent int, err error) {
	if err == nil {
		err = p.pingRest(sent, time.Now().Add(writeWait))
	}
	if err != nil {
		c.finish(0, "")
	}
	c.pingDone()
}

// pingDone gives back the writer role a ping held, or hands it to a
// writer goroutine when more duties came meanwhile (a message, a kill).
func (c *conn) pingDone() {
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
