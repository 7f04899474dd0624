package signaling

import (
	"math"
	"slices"
	"sync"
)

// outbox is one connection's queue of messages to write: its session's
// log entries from the bus, by seq. The bus delivers them in seq order;
// a resume adds a replay in front and a catch-up that may overlap what was
// delivered meanwhile, so put ignores seqs it has had and keeps the rest
// in order. The writer takes only a run without holes: a hole is filled
// by the catch-up (or, after the bus lost deliveries, by a resync).
//
// Messages not yet taken by the writer are bounded by limit: beyond it
// the client is not reading, and put fails, so a sender never waits for a
// slow reader. The log itself (for a resume) is the bus's, not this.
type outbox struct {
	mu   sync.Mutex
	next uint64 // the seq the writer takes next
	msgs []entry
	// direct are replies the bus could not log (it was unreachable): they
	// go out without a seq, are never replayed, and count toward limit.
	direct [][]byte
	limit  int
	// notify is called after something was queued: it starts the
	// connection's writer (conn.kick). nil in tests that drain by hand.
	notify func()
}

type entry struct {
	seq  uint64
	body []byte
}

func newOutbox(limit int) *outbox {
	return &outbox{next: 1, limit: limit}
}

// put queues body as message seq. It reports false when the queue is full.
func (o *outbox) put(seq uint64, body []byte) bool {
	o.mu.Lock()
	ok := o.putLocked(seq, body, o.limit)
	o.mu.Unlock()
	o.signal()
	return ok
}

// putLocked queues body as message seq unless limit messages wait.
func (o *outbox) putLocked(seq uint64, body []byte, limit int) bool {
	if seq < o.next {
		return true // had it
	}
	n := len(o.msgs)
	if n == 0 || o.msgs[n-1].seq < seq {
		if n >= limit {
			return false
		}
		o.msgs = append(o.msgs, entry{seq, body})
		return true
	}
	i, found := slices.BinarySearchFunc(o.msgs, seq, func(e entry, s uint64) int {
		switch {
		case e.seq < s:
			return -1
		case e.seq > s:
			return 1
		}
		return 0
	})
	if found {
		return true
	}
	if n >= limit {
		return false
	}
	o.msgs = slices.Insert(o.msgs, i, entry{seq, body})
	return true
}

// putDirect queues a reply that has no seq. It reports false when the
// queue is full.
func (o *outbox) putDirect(body []byte) bool {
	o.mu.Lock()
	ok := len(o.msgs)+len(o.direct) < o.limit
	if ok {
		o.direct = append(o.direct, body)
	}
	o.mu.Unlock()
	o.signal()
	return ok
}

// takeDirect returns the replies without a seq, in the order they came.
func (o *outbox) takeDirect() [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	d := o.direct
	o.direct = nil
	return d
}

// putAll queues msgs, the first of which is message from. A from beyond
// the next seq to write means the ones between are lost (no longer in the
// bus's log): the writer skips them. Like reset, it takes them all, beyond
// limit: they are a replay from the bus's log, which bounds them, and one
// left out would be a hole that stalls every later message.
func (o *outbox) putAll(from uint64, msgs [][]byte) {
	o.mu.Lock()
	if from > o.next && (len(o.msgs) == 0 || o.msgs[0].seq > o.next) {
		o.next = from
		if len(o.msgs) > 0 {
			o.next = min(from, o.msgs[0].seq)
		}
	}
	for i, m := range msgs {
		o.putLocked(from+uint64(i), m, math.MaxInt)
	}
	o.mu.Unlock()
	o.signal()
}

// reset starts the queue at seq from with msgs (a resume's replay).
func (o *outbox) reset(from uint64, msgs [][]byte) {
	o.mu.Lock()
	o.next = from
	o.msgs = o.msgs[:0]
	for i, m := range msgs {
		o.msgs = append(o.msgs, entry{from + uint64(i), m})
	}
	o.mu.Unlock()
	o.signal()
}

func (o *outbox) signal() {
	if o.notify != nil {
		o.notify()
	}
}

// take returns the messages ready to write (a run from next without a
// hole) and the seq of the first, marking them taken. The slice is the
// caller's.
func (o *outbox) take() (uint64, [][]byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	first := o.next
	n := 0
	for n < len(o.msgs) && o.msgs[n].seq == first+uint64(n) {
		n++
	}
	if n == 0 {
		return first, nil
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = o.msgs[i].body
	}
	rest := copy(o.msgs, o.msgs[n:])
	clear(o.msgs[rest:])
	o.msgs = o.msgs[:rest]
	if rest == 0 && cap(o.msgs) > 64 {
		o.msgs = nil // an idle connection holds no big buffer
	}
	o.next = first + uint64(n)
	return first, out
}

// written returns the last seq taken by the writer (0 for none).
func (o *outbox) written() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.next - 1
}

// last returns the highest seq queued or taken.
func (o *outbox) last() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n := len(o.msgs); n > 0 {
		return o.msgs[n-1].seq
	}
	return o.next - 1
}

// pending returns how many messages wait for the writer.
func (o *outbox) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.msgs)
}
