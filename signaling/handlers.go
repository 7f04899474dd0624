package signaling

import (
	"cmp"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// handlers are the goroutines that run what a connection's reader hands
// off (shallow): handling a message, attaching a session. The reader
// hands it off so that its own stack stays as small as waiting for a
// frame needs (a goroutine's stack grows to the deepest call it made, and
// only a garbage collection halves it again: an idle reader that had
// decoded a join itself would keep 8 KiB where it needs 2-4; issue 15,
// measured in docs/performance.md).
//
// A fresh goroutine per message did the same, but under load it was a
// tenth of the server's CPU: each started with the smallest stack and
// grew it, copying, twice while decoding JSON (runtime.newstack and
// copystack in a profile of 2,000 peers sending 5 messages a second).
// These goroutines keep the stack they grew: the same work reuses it. One
// that has had nothing to run for handlerIdle ends, so an idle server
// holds none; a busy one holds as many as readers hand off at once.
type handlers struct {
	mu     sync.Mutex
	idle   []*handler // last in, first out: the warm ones are reused
	closed bool
	wg     sync.WaitGroup
	// idleFor is how long a handler waits for work before it ends
	// (0: handlerIdle; tests shorten it).
	idleFor time.Duration
}

// handlerIdle is how long a handler waits for work before it ends.
const handlerIdle = 2 * time.Second

// handler is one of the goroutines: work carries what it is to run, done
// what became of it (a panic's value, or nil).
type handler struct {
	work     chan handlerWork
	done     chan any
	lastUsed time.Time // under handlers.mu
	idx      int       // in handlers.idle, -1 while it runs work; under handlers.mu
}

// handlerWork is what a handler is handed: f to run for a caller that
// waits (run), or, with c set, c's input to handle for the waiter
// (start), which does not wait: the handler goes back to the idle list
// itself.
type handlerWork struct {
	f   func()
	c   *conn
	end bool // c's end (conn.endFinished), not its input (conn.pump)
	// alone: f is run for nobody (goRun): the handler goes back to the
	// idle list itself, as for c.
	alone bool
}

// take returns an idle handler, or starts a new one; nil when the
// handlers are closed.
func (hs *handlers) take() *handler {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if n := len(hs.idle); n > 0 {
		h := hs.idle[n-1]
		hs.idle[n-1] = nil
		hs.idle = hs.idle[:n-1]
		h.idx = -1
		return h
	}
	if hs.closed {
		return nil
	}
	// work holds one: take hands out a handler with nothing to do, so
	// the send never waits, and the waiter (start) goes on to its next
	// event instead of waiting for this handler to be scheduled: in a
	// reconnect storm that wait put a fresh client's input, reported in
	// the same epoll_wait, behind every goroutine the storm made
	// runnable.
	h := &handler{work: make(chan handlerWork, 1), done: make(chan any), idx: -1}
	hs.wg.Add(1)
	go hs.loop(h)
	return h
}

// start hands c's input (conn.pump), or with end c's end
// (conn.endFinished), to a handler without waiting for it: the waiter
// (poller_linux.go) calls it for each connection that has input, and
// must not wait on any of them. Once the handlers are closed it runs on a
// goroutine of its own.
func (hs *handlers) start(c *conn, end bool) {
	h := hs.take()
	if h == nil {
		go handleConn(c, end)
		return
	}
	h.work <- handlerWork{c: c, end: end}
}

// handleConn runs start's work.
func handleConn(c *conn, end bool) {
	if end {
		c.endFinished()
	} else {
		c.pump()
	}
}

// goRun runs f on a handler goroutine without waiting for it, and
// reports false (f not run) when the handlers are closed. f must not
// panic (the caller recovers inside it) and should not block for long.
func (hs *handlers) goRun(f func()) bool {
	h := hs.take()
	if h == nil {
		return false
	}
	h.work <- handlerWork{f: f, alone: true}
	return true
}

// run runs f on a handler goroutine and waits for it. A panic in f is
// raised again on the caller's goroutine, as if f had run there.
func (hs *handlers) run(f func()) {
	h := hs.take()
	if h == nil {
		// Closed (the server is shutting down while a reader still
		// handles a message): a goroutine of its own, as before.
		runAlone(f)
		return
	}
	h.work <- handlerWork{f: f}
	p := <-h.done
	hs.mu.Lock()
	if hs.closed {
		close(h.work)
	} else {
		h.lastUsed = time.Now()
		h.idx = len(hs.idle)
		hs.idle = append(hs.idle, h)
	}
	hs.mu.Unlock()
	if p != nil {
		panic(p)
	}
}

// loop is a handler's goroutine: it runs what it is handed until it has
// had nothing for handlerIdle or the handlers close.
func (hs *handlers) loop(h *handler) {
	defer hs.wg.Done()
	idleFor := cmp.Or(hs.idleFor, handlerIdle)
	idle := time.NewTimer(idleFor)
	defer idle.Stop()
	for {
		select {
		case w, ok := <-h.work:
			if !ok {
				return
			}
			if w.c == nil && !w.alone {
				h.done <- callRecover(w.f)
				continue
			}
			// The waiter's, or goRun's: nobody waits, so the handler
			// puts itself back (as run does for the others).
			if w.alone {
				w.f()
			} else {
				handleConn(w.c, w.end)
			}
			hs.mu.Lock()
			if hs.closed {
				hs.mu.Unlock()
				return
			}
			h.lastUsed = time.Now()
			h.idx = len(hs.idle)
			hs.idle = append(hs.idle, h)
			hs.mu.Unlock()
		case <-idle.C:
			// Ends only if it is still idle, and has been for
			// handlerIdle: taking it out of the list under the lock
			// means no reader can hand it work after this. The timer
			// is not reset per message (that would be a timer
			// operation per message); it is re-armed for what is left.
			hs.mu.Lock()
			wait := idleFor - time.Since(h.lastUsed)
			if i := h.idx; i >= 0 && wait <= 0 {
				// The last idle one takes its place: after a burst
				// (a reconnect storm) thousands end in turn, each in
				// constant time.
				last := len(hs.idle) - 1
				hs.idle[i] = hs.idle[last]
				hs.idle[i].idx = i
				hs.idle[last] = nil
				hs.idle = hs.idle[:last]
				h.idx = -1
				hs.mu.Unlock()
				return
			}
			hs.mu.Unlock()
			idle.Reset(max(wait, idleFor/4))
		}
	}
}

// callRecover runs f and returns the value of a panic in it (nil for none).
func callRecover(f func()) (p any) {
	defer func() {
		if r := recover(); r != nil {
			p = &handedPanic{value: r, stack: debug.Stack()}
		}
	}()
	f()
	return nil
}

// handedPanic is a panic raised on a handler goroutine, raised again on
// the goroutine that handed it the work: with the stack where it
// happened, which the second raise would lose (the server's log of a
// panic serving a connection showed only the hand-off).
type handedPanic struct {
	value any
	stack []byte
}

func (p *handedPanic) String() string {
	return fmt.Sprintf("%v\n[raised on a handler goroutine]\n%s", p.value, p.stack)
}

// runAlone runs f on a goroutine of its own and waits for it, raising a
// panic in it again here.
func runAlone(f func()) {
	done := make(chan any, 1)
	go func() { done <- callRecover(f) }()
	if p := <-done; p != nil {
		panic(p)
	}
}

// close ends the idle handlers and waits for every handler to end: the
// ones running work end when their reader has its answer. Work handed to
// run afterwards runs on a goroutine of its own.
func (hs *handlers) close() {
	hs.mu.Lock()
	hs.closed = true
	for _, h := range hs.idle {
		// Out of the list: its idle timer, if it fires before the
		// closed channel is seen (select picks either), must not
		// take it out again.
		h.idx = -1
		close(h.work)
	}
	hs.idle = nil
	hs.mu.Unlock()
	hs.wg.Wait()
}
