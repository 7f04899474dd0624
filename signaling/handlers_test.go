package signaling

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// goid is the calling goroutine's number, from its stack header.
func goid() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := bytes.Fields(buf)
	if len(f) < 2 {
		return ""
	}
	return string(f[1])
}

// Work handed off one after another runs on the same warm goroutine (its
// grown stack reused), a panic comes back to the caller, an idle handler
// ends, and after close nothing is left and work still runs.
func TestHandlers(t *testing.T) {
	hs := &handlers{idleFor: 200 * time.Millisecond}
	var first, second string
	hs.run(func() { first = goid() })
	hs.run(func() { second = goid() })
	if first == "" || first != second || first == goid() {
		t.Errorf("ran on goroutines %q and %q (caller %q): want one handler, not the caller", first, second, goid())
	}
	func() {
		defer func() {
			hp, ok := recover().(*handedPanic)
			if !ok || hp.value != "boom" || !strings.Contains(fmt.Sprint(hp), "handlers_test.go") {
				t.Errorf("recovered %v, want the handler's panic with the stack where it was raised", hp)
			}
		}()
		hs.run(func() { panic("boom") })
	}()
	hs.run(func() {}) // the handler survived the panic
	if !waitUntil(5*time.Second, func() bool { return goroutinesIn("signaling.(*handlers).loop") == 0 }) {
		t.Fatalf("%d handlers still there after idling", goroutinesIn("signaling.(*handlers).loop"))
	}
	hs.run(func() {}) // a fresh one
	hs.close()
	if n := goroutinesIn("signaling.(*handlers).loop"); n != 0 {
		t.Errorf("%d handlers after close", n)
	}
	ran := false
	hs.run(func() { ran = true })
	if !ran {
		t.Error("work handed off after close did not run")
	}
}

// After a burst, the idle handlers end (each taken out of the idle list
// in turn, wherever it is in it) and the list stays consistent.
func TestHandlersBurst(t *testing.T) {
	hs := &handlers{idleFor: 100 * time.Millisecond}
	defer hs.close()
	const n = 200
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hs.run(func() { <-release })
		}()
	}
	if !waitUntil(5*time.Second, func() bool { return goroutinesIn("signaling.(*handlers).loop") == n }) {
		t.Fatalf("%d handlers for %d at once", goroutinesIn("signaling.(*handlers).loop"), n)
	}
	close(release)
	wg.Wait()
	hs.mu.Lock()
	for i, h := range hs.idle {
		if h.idx != i {
			t.Errorf("idle handler %d says it is at %d", i, h.idx)
		}
	}
	idle := len(hs.idle)
	hs.mu.Unlock()
	if idle != n {
		t.Errorf("%d idle handlers after the burst, want %d", idle, n)
	}
	if !waitUntil(5*time.Second, func() bool { return goroutinesIn("signaling.(*handlers).loop") == 0 }) {
		t.Fatalf("%d handlers left after idling", goroutinesIn("signaling.(*handlers).loop"))
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if len(hs.idle) != 0 {
		t.Errorf("%d handlers still listed idle", len(hs.idle))
	}
}

// Closing the handlers as idle ones' timers fire: a handler whose select
// takes the timer rather than its closed work channel finds itself out of
// the (emptied) idle list, and ends without touching it (it indexed the
// empty list with its old place, and the process panicked).
func TestHandlersCloseAsIdleEnds(t *testing.T) {
	for range 200 {
		hs := &handlers{idleFor: time.Millisecond}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { hs.run(func() {}) })
		}
		wg.Wait()
		// The idle timers (1 ms; re-armed for a quarter of that) fire
		// about now.
		time.Sleep(time.Millisecond)
		hs.close()
	}
}
