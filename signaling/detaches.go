package signaling

import (
	"runtime"
	"sync"
)

// Releasing a dropped connection's session (issue 15, the reconnect
// storm). When a node's clients lose their network together, each of
// their readers ends and releases its session: the bus holds it for the
// resume grace (Bus.Hold: the bus's lock, a grace timer, on a cluster a
// Redis script). Done by every reader at once, 15,000 releases competed
// with the storm's resumes and with fresh clients' joins for the handler
// goroutines, the bus's lock and the two cores, and a fresh client's join
// waited behind them (execution traces in docs/performance.md).
//
// Nothing waits for such a release: the session's members see no change
// (a held session stays in its rooms), and a resume that comes first
// finds the session still attached and takes it over all the same (the
// bus replaces a connection that still looks alive, and the epoch it
// bumps turns the late release into a no-op; the replaced connection is
// no longer the one this node delivers to, so detach skips it). So while
// the server is busy (an open in flight, another release running or
// queued) a dropped connection's release waits in detachQueue, and a few
// goroutines (one on the in-process bus, where a release is CPU; more on
// a shared bus, where it is a round trip) release them in order of
// arrival, each yielding to whatever else is runnable between two. A
// quiet server releases at once, as before.
//
// Releases that end a session (a goodbye, no resume grace, a protocol
// without resume, a session ended by the server) are not queued on the
// in-process bus: the session's rooms tell their members it left, and
// that should not wait for CPU. On a shared bus they are, like the
// others: there each is a round trip (Bus.Remove, a Redis script), and
// 50,000 clients closing at once put 50,000 of them in flight, past
// their deadline (1,600 warnings and unreleased sessions in a cluster
// run; docs/performance.md). Queued, at most busDetachWorkers and one
// inline are in flight per node, each with its whole deadline, and none
// is dropped (a late one still runs: the session is left for good). A
// resume that comes before its goodbye ran takes the session over, and
// the late Remove, naming the older epoch, leaves it alone.

// detachQueue holds the connections whose release waits (Server.detach).
// The zero value is ready.
type detachQueue struct {
	mu      sync.Mutex
	q       []detachItem // first in, first out: q[head:] wait
	head    int
	workers int // goroutines releasing from q
	inline  int // releases running on their callers (not queued)

	// wait, when set, runs before each queued release (tests hold the
	// queue with it to order a resume before a release).
	wait func()
}

// detachItem is one queued release: the connection, and whether its peer
// said goodbye (clean: the session is removed, not held).
type detachItem struct {
	c     *conn
	clean bool
}

const (
	// maxDetachQueue bounds the releases waiting. Beyond it a release
	// runs on its caller, as when the server is quiet: the queue never
	// drops one. A node holds at most max_connections (under the
	// 20,000-descriptor limit here), so it is reached only if releases
	// fall behind by several nodes' worth.
	maxDetachQueue = 1 << 16
	// memoryDetachWorkers release in parallel on the in-process bus: a
	// release there is a lock and a timer, CPU a join needs as well.
	memoryDetachWorkers = 1
	// busDetachWorkers release in parallel on a shared bus, where a
	// release is a round trip to Redis.
	busDetachWorkers = 16
)

// detach ends c's hold on its session after the connection ended. A peer
// that said goodbye (close code 1000 or 1001, a close frame without a
// code, or "bye") leaves at once; one whose connection broke keeps its id,
// rooms and queue for the resume grace, on the bus, where any node can
// take it over, and while the server is busy that is done behind
// everything else (see above). The caller holds a place in s.wg (its
// connection's), as queued releases add theirs within it.
func (s *Server) detach(c *conn, clean bool) { s.detachFrom(c, clean, false) }

// detachFrom is detach; ender says the caller is the ender (ends.go),
// which ends every dropped connection in turn: a release it ran inline
// would put each drop behind the one before's bus round trip (on Redis a
// few ms, busWait when it is unreachable), where on their own goroutines
// they ran side by side; on a shared bus its releases are queued, as
// when the server is busy (the in-process bus's take microseconds).
func (s *Server) detachFrom(c *conn, clean, ender bool) {
	dq := &s.detaches
	hold := !clean && c.proto.resumable() && s.settings().ResumeGrace > 0 && !c.ended.Load()
	_, memory := s.bus.(*MemoryBus)
	dq.mu.Lock()
	queued := len(dq.q) - dq.head
	if (hold || !memory) && queued < maxDetachQueue && (ender && !memory || queued > 0 || dq.inline > 0 || s.opening.Load() > 0) {
		dq.q = append(dq.q, detachItem{c, clean})
		start := dq.workers < s.detachWorkers()
		if start {
			dq.workers++
			s.wg.Add(1) // within the caller's place: Close waits for it
		}
		dq.mu.Unlock()
		if start {
			go s.detachWorker()
		}
		return
	}
	dq.inline++
	dq.mu.Unlock()
	defer func() {
		dq.mu.Lock()
		dq.inline--
		dq.mu.Unlock()
	}()
	s.release(c, clean)
}

// detachWorkers is how many goroutines release queued connections.
func (s *Server) detachWorkers() int {
	if _, ok := s.bus.(*MemoryBus); ok {
		return memoryDetachWorkers
	}
	return busDetachWorkers
}

// detachWorker releases queued connections until none is left.
func (s *Server) detachWorker() {
	defer s.wg.Done()
	dq := &s.detaches
	for {
		dq.mu.Lock()
		if dq.head == len(dq.q) {
			// Drop the array a storm grew, rather than hold it.
			dq.q, dq.head = nil, 0
			dq.workers--
			dq.mu.Unlock()
			return
		}
		it := dq.q[dq.head]
		dq.q[dq.head] = detachItem{}
		dq.head++
		if dq.head > 1024 && dq.head > len(dq.q)/2 {
			// Queued at the rate they are taken: move them down rather
			// than grow the array for good.
			n := copy(dq.q, dq.q[dq.head:])
			clear(dq.q[n:])
			dq.q, dq.head = dq.q[:n], 0
		}
		dq.mu.Unlock()
		if dq.wait != nil {
			dq.wait()
		}
		s.release(it.c, it.clean)
		// Behind the opens and joins: whatever became runnable while this
		// release ran goes first.
		runtime.Gosched()
	}
}

// pendingDetaches is the number of releases queued.
func (s *Server) pendingDetaches() int {
	dq := &s.detaches
	dq.mu.Lock()
	defer dq.mu.Unlock()
	return len(dq.q) - dq.head
}
