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
// an idle connection should hold neither). Each connection is in the heap
// at most once, at its earliest deadline; when that passes the loop calls
// conn.due, which only marks what is due and starts the connection's writer
// (kick): the loop itself never writes to a client or calls the bus, so a
// slow client or a slow bus delays no one else.
//
// The loop's goroutine runs only while some connection has a deadline: it
// starts with the first and ends when the heap empties.
type timers struct {
	mu      sync.Mutex
	h       connHeap
	running bool
	wake    chan struct{} // the earliest deadline moved earlier
}

func newTimers() *timers {
	return &timers{wake: make(chan struct{}, 1)}
}

// connHeap orders connections by their timer's deadline.
type connHeap []*conn

func (h connHeap) Len() int           { return len(h) }
func (h connHeap) Less(i, j int) bool { return h[i].tm.when < h[j].tm.when }
func (h connHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].tm.index = i
	h[j].tm.index = j
}
func (h *connHeap) Push(x any) {
	c := x.(*conn)
	c.tm.index = len(*h)
	*h = append(*h, c)
}
func (h *connHeap) Pop() any {
	old := *h
	n := len(old)
	c := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	c.tm.index = -1
	return c
}

// timerSlot is a connection's place in the timers heap.
type timerSlot struct {
	when  int64 // Unix nanoseconds
	index int   // in the heap; -1 when not in it
}

// schedule puts c in the heap at when (Unix nanoseconds), or takes it out
// for when 0.
func (t *timers) schedule(c *conn, when int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if when == 0 {
		if c.tm.index >= 0 {
			heap.Remove(&t.h, c.tm.index)
			if len(t.h) == 0 {
				t.signal() // the loop ends now, not at the old deadline
			}
		}
		return
	}
	c.tm.when = when
	if c.tm.index >= 0 {
		heap.Fix(&t.h, c.tm.index)
	} else {
		heap.Push(&t.h, c)
	}
	switch {
	case !t.running:
		t.running = true
		go t.run()
	case t.h[0] == c:
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
	var due []*conn
	for {
		t.mu.Lock()
		now := time.Now().UnixNano()
		for len(t.h) > 0 && t.h[0].tm.when <= now {
			due = append(due, heap.Pop(&t.h).(*conn))
		}
		if len(due) == 0 && len(t.h) == 0 {
			t.running = false
			t.mu.Unlock()
			return
		}
		var wait time.Duration
		if len(t.h) > 0 {
			wait = time.Duration(t.h[0].tm.when - now)
		}
		t.mu.Unlock()
		for i, c := range due {
			c.due(now)
			due[i] = nil
			if (i+1)%kicksPerYield == 0 {
				runtime.Gosched()
			}
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
