package signaling

import "sync"

// outbox is one peer's queue of server messages, which doubles as its replay
// log. Every message gets the next sequence number (1, 2, ...). Messages not
// yet handed to a writer are bounded by limit: a push beyond it fails with
// errQueueFull, so a sender never waits for a slow reader. Messages already
// written are kept (up to keep of them) because a connection that drops may
// not have delivered them; a resuming client says the last seq it received
// and the writer goes back to the one after it.
type outbox struct {
	mu    sync.Mutex
	msgs  [][]byte // msgs[i] has seq base+i
	base  uint64   // seq of msgs[0]
	sent  uint64   // seqs below sent were handed to a writer
	limit int      // unsent messages at most
	keep  int      // sent messages kept for a resume
	// wake has room for one signal: "there is something to send".
	wake chan struct{}
}

func newOutbox(limit, keep int) *outbox {
	return &outbox{base: 1, sent: 1, limit: limit, keep: keep, wake: make(chan struct{}, 1)}
}

// next returns the seq the next push gets. Caller holds mu.
func (o *outbox) next() uint64 { return o.base + uint64(len(o.msgs)) }

// push queues body, a JSON object, and returns its seq.
func (o *outbox) push(body []byte) (uint64, error) {
	o.mu.Lock()
	next := o.next()
	if next-o.sent >= uint64(o.limit) {
		o.mu.Unlock()
		return 0, errQueueFull
	}
	o.msgs = append(o.msgs, body)
	// Drop sent messages beyond keep, in batches so a push stays O(1)
	// amortized.
	if kept := int(o.sent - o.base); kept > 2*o.keep {
		drop := kept - o.keep
		n := copy(o.msgs, o.msgs[drop:])
		clear(o.msgs[n:])
		o.msgs = o.msgs[:n]
		o.base += uint64(drop)
	}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return next, nil
}

// take returns the unsent messages and the seq of the first, marking them
// sent. The slice is the caller's.
func (o *outbox) take() (uint64, [][]byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	first := o.sent
	i := int(first - o.base)
	if i >= len(o.msgs) {
		return first, nil
	}
	out := make([][]byte, len(o.msgs)-i)
	copy(out, o.msgs[i:])
	o.sent = o.next()
	return first, out
}

// rewind makes the messages after seq last unsent again, for a client
// that resumes having received up to last. It returns the first seq that
// will be sent and whether messages the client may not have received will
// not be sent: either they were already dropped, or last is a seq that was
// never handed to a writer (one from another peer, say), so which of the
// written messages arrived is unknown.
func (o *outbox) rewind(last uint64) (from uint64, gap bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var want uint64
	switch {
	case last >= o.sent:
		// The claim is impossible. What was never handed to a writer is
		// sent; what was is not replayed, and if there is any, that is a
		// gap. (Compared before adding 1, so the largest uint64 cannot
		// wrap to 0.)
		want = o.sent
		gap = o.sent > 1
	case last+1 < o.base:
		gap = true
		want = o.base
	default:
		want = last + 1
	}
	if want < o.sent {
		o.sent = want
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return want, gap
}

// pending returns how many messages wait for a writer.
func (o *outbox) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return int(o.next() - o.sent)
}
