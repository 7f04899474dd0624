package signaling

import (
	"sync/atomic"
	"testing"
	"time"
)

// pingTransport is a Transport that only counts pings; a ping to a
// blocked one waits until it is released, as a write to a client whose
// socket buffer is full would.
type pingTransport struct {
	pings   atomic.Int64
	block   chan struct{} // nil: pings do not block
	closed  atomic.Bool
	pingErr error
}

func (t *pingTransport) ReadFrame([]byte, int) ([]byte, error)      { select {} }
func (t *pingTransport) WriteFrame(time.Time, []byte, []byte) error { return nil }
func (t *pingTransport) Close(int, string) error                    { t.closed.Store(true); return nil }
func (t *pingTransport) ExpireWrites(time.Time)                     {}
func (t *pingTransport) RemoteAddr() string                         { return "test" }
func (t *pingTransport) Ping(time.Time) error {
	if t.block != nil {
		<-t.block
	}
	t.pings.Add(1)
	return t.pingErr
}

// Connections due for a ping only are pinged in batches, the writer role
// taken and given back; a ping stuck on one connection holds up the
// others of its batch for no more than about pingStall; a failed ping
// closes its connection; a duty marked during a ping gets a writer.
func TestPingBatches(t *testing.T) {
	s := &Server{timers: newTimers()}
	const n = 2*pingBatchSize + 5
	block := make(chan struct{})
	var conns []*conn
	var ts []*pingTransport
	for i := range n {
		tr := &pingTransport{}
		if i == 3 || i == 4 { // two stuck in the first batch
			tr.block = block
		}
		c := &conn{s: s, t: tr, started: true, pingEvery: time.Hour, writing: true,
			done: make(chan struct{}), writerDone: make(chan struct{}), tm: timerSlot{index: -1}}
		conns = append(conns, c)
		ts = append(ts, tr)
	}
	failing := &pingTransport{pingErr: errSlow}
	bad := &conn{s: s, t: failing, started: true, pingEvery: time.Hour, writing: true,
		done: make(chan struct{}), writerDone: make(chan struct{}), tm: timerSlot{index: -1}}
	start := time.Now()
	startPings(append(conns, bad))
	ok := waitUntil(5*time.Second, func() bool {
		for _, tr := range ts {
			if tr.block == nil && tr.pings.Load() != 1 {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatal("the connections not stuck were not all pinged")
	}
	// Two stuck pings, each costing the rest at most a watchdog period
	// or two: far under a second even on a loaded machine.
	if d := time.Since(start); d > time.Second {
		t.Errorf("pinging the others took %v with two stuck", d)
	}
	close(block)
	if !waitUntil(5*time.Second, func() bool { return ts[3].pings.Load() == 1 && ts[4].pings.Load() == 1 }) {
		t.Error("the stuck pings were not sent once released")
	}
	if !waitUntil(5*time.Second, func() bool {
		for _, c := range conns {
			c.wmu.Lock()
			w := c.writing
			c.wmu.Unlock()
			if w {
				return false
			}
		}
		return true
	}) {
		t.Error("a pinged connection kept the writer role")
	}
	if !waitUntil(5*time.Second, func() bool { return failing.closed.Load() }) {
		t.Error("a failed ping did not close its connection")
	}
	select {
	case <-bad.writerDone:
	case <-time.After(5 * time.Second):
		t.Error("a failed ping did not finish its connection")
	}
}
