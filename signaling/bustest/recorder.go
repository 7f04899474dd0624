// Package bustest checks that a signaling.Bus keeps its contract, through
// the interface only, with a recording signaling.Node on each bus: Run
// takes a constructor and runs the same tests on any implementation (the
// in-process bus, where two "nodes" are two handles on one shared state,
// and the Redis bus, where they are two Bus instances on one redis-server).
package bustest

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// Delivery is one Node.Deliver call.
type Delivery struct {
	Seq  uint64
	Body string
}

// KickCall is one Node.Kick call.
type KickCall struct {
	ID     string
	Epoch  uint64
	Code   int
	Reason string
}

// Recorder is a signaling.Node that records what a bus calls it with. It
// flags a delivery whose seq is not above the session's previous one (the
// contract: each session's deliveries come in seq order).
type Recorder struct {
	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every call
	delivered map[string][]Delivery
	kicks     []KickCall
	resyncs   int
	disorder  []string
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{changed: make(chan struct{}), delivered: map[string][]Delivery{}}
}

func (r *Recorder) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Deliver records a delivery.
func (r *Recorder) Deliver(id string, seq uint64, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.delivered[id]
	if n := len(d); n > 0 && seq <= d[n-1].Seq {
		r.disorder = append(r.disorder, fmt.Sprintf("%s: seq %d after %d", id, seq, d[n-1].Seq))
	}
	r.delivered[id] = append(d, Delivery{Seq: seq, Body: string(body)})
	r.notify()
}

// Kick records a kick.
func (r *Recorder) Kick(id string, epoch uint64, code int, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kicks = append(r.kicks, KickCall{ID: id, Epoch: epoch, Code: code, Reason: reason})
	r.notify()
}

// Resync records a resync.
func (r *Recorder) Resync() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resyncs++
	r.notify()
}

// Delivered returns the deliveries to session id so far.
func (r *Recorder) Delivered(id string) []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.delivered[id]...)
}

// Kicks returns the kicks so far.
func (r *Recorder) Kicks() []KickCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]KickCall(nil), r.kicks...)
}

// Resyncs returns how many times Resync was called.
func (r *Recorder) Resyncs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resyncs
}

// Disorder lists deliveries that came out of seq order.
func (r *Recorder) Disorder() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.disorder...)
}

// WaitFor waits up to d for cond (checked under the recorder's lock after
// every call) and reports whether it held.
func (r *Recorder) WaitFor(d time.Duration, cond func(r *Recorder) bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if cond(r) {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return cond(r)
		}
	}
}

// WaitDeliveries waits until session id has at least n deliveries and
// returns them; it fails t after 5 s.
func (r *Recorder) WaitDeliveries(t testing.TB, id string, n int) []Delivery {
	t.Helper()
	if !r.WaitFor(5*time.Second, func(r *Recorder) bool { return len(r.Delivered(id)) >= n }) {
		t.Fatalf("session %s: %d deliveries after 5s, want %d: %v", id, len(r.Delivered(id)), n, r.Delivered(id))
	}
	return r.Delivered(id)
}
