package signaling

import (
	"container/heap"
	"runtime"
	"sync"
	"time"
)

// timers is a server's one timer loop for every connection's timed duties:
// pings, credential renewals and token expiry (issue 15: a ticker and two
// timers per connection cost memory and a writer goroutine to wait on them;
// an idle connection should hold neither). Each connection is in the timers
// at most once, at its earliest deadline; when that passes the loop calls
// conn.due, which only marks what is due and starts the connection's writer
// (kick): the loop itself never writes to a client or calls the bus, so a
// slow client or a slow bus delays no one else. Pings go out from a
// goroutine per batch of connections (pings.go).
//
// The loop's goroutine runs only while some connection has a deadline: it
// starts with the first and ends when the last connection leaves.
type timers struct {
	mu sync.Mutex
	// buckets hold the connections by deadline: deadlines are rounded
	// to a grain (conn.rescheduleLocked), so thousands of connections
	// share a few hundred of them, and scheduling one is an append, not
	// a walk down a heap of every connection whose comparisons each
	// read another connection's memory (issue 15: that walk was 8% of
	// an idle node's CPU at 16,700 connections).
	buckets map[int64]*bucket
	// times is a min-heap of the buckets' deadlines. A bucket that
	// emptied leaves its time behind; the loop skips it.
	times   timeHeap
	n       int // connections in the buckets
	running bool
	wake    chan struct{} // the earliest deadline moved earlier
}

func newTimers() *timers {
	return &timers{buckets: map[int64]*bucket{}, wake: make(chan struct{}, 1)}
}

// bucket is the connections due at one deadline.
type bucket struct {
	conns []*conn
}

// timeHeap is a min-heap of Unix nanoseconds.
type timeHeap []int64

func (h timeHeap) Len() int           { return len(h) }
func (h timeHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h timeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *timeHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	*h = old[:n-1]
	return t
}

// timerSlot is a connection's place in the timers.
type timerSlot struct {
	when  int64 // Unix nanoseconds; the bucket it is in
	index int   // in its bucket; -1 when not in one
}

// earliest returns the earliest deadline of a bucket that has
// connections, dropping the times of buckets that emptied; ok is false
// when there is none. t.mu is held.
func (t *timers) earliest() (when int64, ok bool) {
	for len(t.times) > 0 {
		if t.buckets[t.times[0]] != nil {
			return t.times[0], true
		}
		heap.Pop(&t.times)
	}
	return 0, false
}

// remove takes c out of its bucket. t.mu is held.
func (t *timers) remove(c *conn) {
	b := t.buckets[c.tm.when]
	last := len(b.conns) - 1
	moved := b.conns[last]
	b.conns[c.tm.index] = moved
	moved.tm.index = c.tm.index
	b.conns[last] = nil
	b.conns = b.conns[:last]
	if last == 0 {
		delete(t.buckets, c.tm.when)
	}
	c.tm.index = -1
	t.n--
}

// schedule puts c in the timers at when (Unix nanoseconds), or takes it
// out for when 0.
func (t *timers) schedule(c *conn, when int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.tm.index >= 0 {
		if c.tm.when == when {
			return
		}
		t.remove(c)
	}
	if when == 0 {
		if t.n == 0 {
			t.signal() // the loop ends now, not at the old deadline
		}
		return
	}
	first, has := t.earliest()
	b := t.buckets[when]
	if b == nil {
		b = &bucket{}
		t.buckets[when] = b
		heap.Push(&t.times, when)
	}
	c.tm.when, c.tm.index = when, len(b.conns)
	b.conns = append(b.conns, c)
	t.n++
	switch {
	case !t.running:
		t.running = true
		go t.run()
	case !has || when < first:
		t.signal()
	}
}

func (t *timers) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// kicksPerYield bounds how many writers the loop starts before it lets
// them run: pings of connections opened together come due together, and
// a writer that has sent its ping ends, so this keeps the goroutines
// alive at once (and their stacks) few.
const kicksPerYield = 32

// run is the loop: it waits for the earliest deadline and hands the
// connections whose deadline passed to conn.due.
func (t *timers) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due, pings []*conn
	for {
		t.mu.Lock()
		now := time.Now().UnixNano()
		for {
			when, ok := t.earliest()
			if !ok || when > now {
				break
			}
			heap.Pop(&t.times)
			b := t.buckets[when]
			delete(t.buckets, when)
			for _, c := range b.conns {
				c.tm.index = -1
			}
			t.n -= len(b.conns)
			due = append(due, b.conns...)
		}
		if len(due) == 0 && t.n == 0 {
			t.running = false
			t.times = nil // an idle server keeps no heap
			t.mu.Unlock()
			return
		}
		var wait time.Duration
		if when, ok := t.earliest(); ok {
			wait = time.Duration(when - now)
		}
		t.mu.Unlock()
		for i, c := range due {
			if c.due(now) && !c.pingInline() {
				pings = append(pings, c)
			}
			due[i] = nil
			if (i+1)%kicksPerYield == 0 {
				runtime.Gosched()
			}
		}
		if len(pings) > 0 {
			startPings(pings) // the batches keep their own slices
			pings = nil
		}
		if len(due) > 0 {
			due = due[:0]
			if cap(due) > 1024 {
				due = nil // a burst's slice is not kept
			}
			continue // due may have scheduled something already past
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-t.wake: // Reset above discards the old deadline (Go 1.23 timers)
		}
	}
}
