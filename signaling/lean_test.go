package signaling

import (
	"bytes"
	"net/http/httptest"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// goroutinesIn counts the goroutines whose stack has fn in it.
func goroutinesIn(fn string) int {
	buf := make([]byte, 4<<20)
	n := 0
	for g := range bytes.SplitSeq(buf[:runtime.Stack(buf, true)], []byte("\n\n")) {
		if bytes.Contains(g, []byte(fn)) {
			n++
		}
	}
	return n
}

// An idle /ws connection served over HTTP holds no goroutine: it waits
// in the server's one waiter (watch.go); no reader, no writer, no
// net/http handler, and no timer of its own: the server's one timer loop
// serves them all and ends with the last connection (issue 15). Without
// the waiter (another platform) it holds one, its reader.
func TestIdleConnectionHoldsNoGoroutine(t *testing.T) {
	for _, reader := range []bool{false, true} {
		t.Run(map[bool]string{false: "waiter", true: "reader"}[reader], func(t *testing.T) {
			if !reader && runtime.GOOS != "linux" {
				t.Skip("the shared waiter is Linux-only")
			}
			testIdleConnectionGoroutines(t, reader)
		})
	}
}

func testIdleConnectionGoroutines(t *testing.T, reader bool) {
	s := newTestServer(t, nil)
	s.noWaiter = reader
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	const n = 20
	var clients []*websocket.Conn
	for i := range n {
		ws, _, err := websocket.DefaultDialer.Dial(wsURL(hs, "/ws"), nil)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, ws)
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil || m["type"] != "hello" {
			t.Fatalf("hello: %v %v", m, err)
		}
		if err := ws.WriteJSON(map[string]any{"type": "join", "room": "r" + string(rune('a'+i/2))}); err != nil {
			t.Fatal(err)
		}
		if err := ws.ReadJSON(&m); err != nil || m["type"] != "joined" {
			t.Fatalf("joined: %v %v", m, err)
		}
	}
	readers, waiters, registered := n, 0, 0
	if !reader {
		readers, waiters, registered = 0, 1, n
	}
	count := func() int {
		if p := s.poll.Load(); p != nil {
			return p.count()
		}
		return 0
	}
	ok := waitUntil(5*time.Second, func() bool {
		return goroutinesIn("signaling.(*conn).readLoop") == readers && goroutinesIn("signaling.(*conn).writer") == 0 &&
			goroutinesIn("net/http.(*conn).serve(") == 0 && goroutinesIn("signaling.(*timers).run") == 1 &&
			goroutinesIn("signaling.(*poller).wait") == waiters && count() == registered
	})
	if !ok {
		t.Errorf("idle: %d readers, %d writers, %d handlers, %d timer loops, %d waiters, %d registered; want %d, 0, 0, 1, %d, %d",
			goroutinesIn("signaling.(*conn).readLoop"), goroutinesIn("signaling.(*conn).writer"),
			goroutinesIn("net/http.(*conn).serve("), goroutinesIn("signaling.(*timers).run"),
			goroutinesIn("signaling.(*poller).wait"), count(), readers, waiters, registered)
	}
	for _, ws := range clients {
		ws.Close()
	}
	if !waitUntil(5*time.Second, func() bool {
		return goroutinesIn("signaling.(*conn).readLoop") == 0 && goroutinesIn("signaling.(*timers).run") == 0 &&
			count() == 0 && s.nconns.Load() == 0
	}) {
		t.Errorf("after closing: %d readers, %d timer loops, %d registered, %d connections",
			goroutinesIn("signaling.(*conn).readLoop"), goroutinesIn("signaling.(*timers).run"), count(), s.nconns.Load())
	}
}

// The timers keep connections in deadline order through moves and
// removals, connections due at one deadline share its bucket, and the
// loop ends once the last has left.
func TestTimersHeap(t *testing.T) {
	tm := newTimers()
	far := time.Now().Add(time.Hour).UnixNano()
	cs := make([]*conn, 6)
	for i, off := range []int64{3, 1, 4, 0, 2, 1} {
		cs[i] = &conn{tm: timerSlot{index: -1}}
		tm.schedule(cs[i], far+off)
	}
	tm.schedule(cs[2], 0)     // leaves
	tm.schedule(cs[0], far-1) // moves to the front
	tm.schedule(cs[2], 0)     // leaving twice is harmless
	tm.schedule(cs[4], far+2) // the same deadline again: no change
	for i, want := range [][]*conn{{cs[0]}, {cs[3]}, {cs[1], cs[5]}, {cs[4]}} {
		tm.mu.Lock()
		when, ok := tm.earliest()
		var got []*conn
		if ok {
			got = slices.Clone(tm.buckets[when].conns)
		}
		n := tm.n
		tm.mu.Unlock()
		if !ok || len(got) != len(want) || !slices.Contains(got, want[0]) || !slices.Contains(got, want[len(want)-1]) {
			t.Fatalf("step %d: the earliest bucket holds %d connections, not the %d of the earliest deadline", i, len(got), len(want))
		}
		if n != 5-i-(i/3) {
			t.Errorf("step %d: %d connections counted", i, n)
		}
		for _, c := range got {
			if c.tm.when != when || tm.buckets[when].conns[c.tm.index] != c {
				t.Fatalf("step %d: a connection's slot does not point at itself", i)
			}
			tm.schedule(c, 0)
		}
	}
	if !waitUntil(5*time.Second, func() bool { tm.mu.Lock(); defer tm.mu.Unlock(); return !tm.running }) {
		t.Fatal("the timer loop runs on with nothing to wait for")
	}
	if tm.n != 0 || len(tm.buckets) != 0 {
		t.Errorf("%d connections in %d buckets after all left", tm.n, len(tm.buckets))
	}
}

// Deadlines go to the timers rounded up to the grain (a thousandth
// of the ping interval, at most 25 ms), never earlier than they are, so
// connections due within one grain share one wake-up of the loop.
func TestTimerGrain(t *testing.T) {
	for _, c := range []struct {
		ping time.Duration
		want int64
	}{{25 * time.Second, int64(25 * time.Millisecond)}, {time.Hour, int64(25 * time.Millisecond)}, {200 * time.Millisecond, int64(200 * time.Microsecond)}, {0, 0}} {
		if got := timerGrain(c.ping); got != c.want {
			t.Errorf("timerGrain(%v) = %d, want %d", c.ping, got, c.want)
		}
	}
	s := &Server{timers: newTimers()}
	var cs []*conn
	defer func() {
		for _, c := range cs {
			s.timers.schedule(c, 0) // the loop ends
		}
	}()
	grain := int64(25 * time.Millisecond)
	base := time.Now().Add(time.Hour).UnixNano() / grain * grain
	var whens []int64
	for _, off := range []int64{0, 1, grain / 2, grain - 1, grain, grain + 1} {
		c := &conn{s: s, tm: timerSlot{index: -1}, started: true, pingEvery: 25 * time.Second, pingAt: base + off}
		cs = append(cs, c)
		c.wmu.Lock()
		c.rescheduleLocked()
		c.wmu.Unlock()
		if c.tm.when < c.pingAt || c.tm.when-c.pingAt >= grain || c.tm.when%grain != 0 {
			t.Errorf("ping at base+%d scheduled at base+%d", off, c.tm.when-base)
		}
		whens = append(whens, c.tm.when-base)
	}
	if want := []int64{0, grain, grain, grain, grain, 2 * grain}; !slices.Equal(whens, want) {
		t.Errorf("scheduled at %v, want %v", whens, want)
	}
}
