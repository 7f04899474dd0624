package signaling

import (
	"runtime"
	"sync"
)

// Ending a dropped connection (issue 15, the reconnect storm).
//
// When a node's clients lose their network together, the waiter
// (poller_linux.go) is told of 15,000 sockets at their end at once. Each
// used to be handed to a handler, whose read found the end, and whose
// teardown started a writer goroutine only to close the socket, and
// waited for it. The waiter hands a connection over on an unbuffered
// channel, to a handler it may have to start: in a storm it went from
// one hand-off to the next behind those goroutines, and a fresh client's
// join, reported by the same epoll_wait, waited for it (the join's p99
// was 1.4 s in a 15,000-client storm; docs/performance.md).
//
// Now the waiter, when its look at a plain socket (skimPongs's peek)
// finds nothing but the end of the stream (a FIN) or a reset, queues the
// connection here and goes on; one goroutine ends the queued connections
// in order of arrival, yielding between a few so that opens, resumes and
// joins made runnable meanwhile go first. Ending one is what the read's
// failure would have led to, without the read (the peek saw there is
// nothing to read) and without a writer goroutine: this goroutine takes
// the writer's part, and closes the transport with no flush and no
// close frame (the peer is gone: RFC 6455 §7.1.1 has the server close
// the TCP connection; what the outbox held stays in the session's log,
// replayed on resume). A connection whose writer runs (a ping, a message
// on its way) is ended as before, on a handler, after its writer.
//
// Ownership (watch.go): the waiter claimed the connection (watchRunning)
// before it queued it, so nothing else reads it or ends it from the
// waiter's side; a kill meanwhile (a resume replacing it, shutdown)
// closes it on its writer, which finds it claimed and leaves the end to
// its owner, here.

// endQueue holds the dropped connections waiting to be ended
// (Server.dropped). The zero value is ready.
type endQueue struct {
	mu      sync.Mutex
	q       []*conn // q[head:] wait, first in first out
	head    int
	running bool // a goroutine ends them (Server.ender)
}

// endBatch is how many dropped connections the ender ends between two
// yields: each is a few microseconds (an epoll_ctl, a close(2)), and a
// yield per connection would have it wait behind every runnable goroutine
// 15,000 times.
const endBatch = 8

// dropped queues c, whose socket the waiter found at its end with
// nothing before it; c is the caller's (watchRunning). It never blocks:
// the waiter calls it.
func (s *Server) dropped(c *conn) {
	eq := &s.ends
	eq.mu.Lock()
	eq.q = append(eq.q, c)
	start := !eq.running
	eq.running = true
	eq.mu.Unlock()
	if start {
		s.wg.Add(1) // within c's place: Close waits for it
		go s.ender()
	}
}

// ender ends queued connections until none is left.
func (s *Server) ender() {
	defer s.wg.Done()
	eq := &s.ends
	for n := 1; ; n++ {
		eq.mu.Lock()
		if eq.head == len(eq.q) {
			// Drop the array a storm grew, rather than hold it.
			eq.q, eq.head, eq.running = nil, 0, false
			eq.mu.Unlock()
			return
		}
		c := eq.q[eq.head]
		eq.q[eq.head] = nil
		eq.head++
		eq.mu.Unlock()
		s.endDropped(c)
		if n%endBatch == 0 {
			// Behind the opens and joins: whatever became runnable
			// meanwhile goes first.
			runtime.Gosched()
		}
	}
}

// endDropped ends c, whose socket is at its end (dropped): as endConn
// would after the read failed, with this goroutine as the writer.
func (s *Server) endDropped(c *conn) {
	c.w.state.Store(watchEnded)
	// Its slot is freed; its epoll registration goes with its socket,
	// closed below (close(2) removes a descriptor's last reference from
	// every epoll instance: epoll(7)), so no EPOLL_CTL_DEL is spent on
	// it; an event already on its way names the freed slot's old
	// generation and is ignored. On the handler's path below (a writer
	// runs) the socket closes too, on that writer.
	c.w.p.release(c)
	if t, ok := c.t.(*wsTransport); ok {
		t.gone.Store(true) // no close frame to a dead socket
	}
	clean := c.bye() // as the read's failure reports it (step)
	c.wmu.Lock()
	switch {
	case c.finished:
		// Killed and closed already (a resume replaced it, shutdown):
		// its writer is closing the transport, or has.
		c.wmu.Unlock()
		<-c.writerDone
	case c.writing || !c.started:
		// A writer runs: it closes the transport once killed, and a
		// handler waits for it, as the read's failure would have.
		// (Not started cannot be: the waiter has only open ones.)
		c.wmu.Unlock()
		s.handlers.start(c, true)
		return
	default:
		// The writer's part is this goroutine's: no writer starts
		// (kick sees writing), and nothing is left to write to a
		// peer that is gone.
		c.writing = true
		c.wmu.Unlock()
		c.killOnce.Do(func() { c.markKilled(closeNormal, "") })
		c.finish(0, "")
		c.wmu.Lock()
		c.writing = false
		c.wmu.Unlock()
	}
	s.detachFrom(c, clean, true) // queued: never a round trip here
	c.w.stop()
	s.exit(c)
}

// pendingEnds is the number of dropped connections waiting to be ended
// (tests).
func (s *Server) pendingEnds() int {
	eq := &s.ends
	eq.mu.Lock()
	defer eq.mu.Unlock()
	return len(eq.q) - eq.head
}
