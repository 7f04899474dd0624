package signaling

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// gateBus is the in-process bus whose Open waits for the test to let it
// through: a session stays "opening" as long as the test wants, as one
// does when the cluster's Redis is slow in a reconnect storm.
type gateBus struct {
	*MemoryBus
	entered chan struct{}
	gate    chan struct{}
}

func (b *gateBus) Open(ctx context.Context, s Session) error {
	b.entered <- struct{}{}
	select {
	case <-b.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.MemoryBus.Open(ctx, s)
}

// TestMaxOpening: with signaling.max_opening sessions being opened, one
// more /ws is answered 503 "busy" with Retry-After before the upgrade (not
// queued behind them), and is served again as soon as a place frees.
func TestMaxOpening(t *testing.T) {
	bus := &gateBus{MemoryBus: NewMemoryBus(), entered: make(chan struct{}, 8), gate: make(chan struct{})}
	s, err := New(testConfig(func(c *Config) { c.MaxOpening = 2 }), Options{Bus: bus, Secret: func() string { return testSecret }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		_ = s.Close(context.Background())
		hs.Close()
	})
	url := wsURL(hs, "/ws")
	type dialed struct {
		ws  *websocket.Conn
		err error
	}
	held := make(chan dialed, 2)
	for range 2 {
		go func() {
			ws, _, err := websocket.DefaultDialer.Dial(url, nil)
			held <- dialed{ws, err}
		}()
		select {
		case <-bus.entered:
		case <-time.After(5 * time.Second):
			t.Fatal("a connection within max_opening did not reach the bus")
		}
	}
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection while two open: %v %v, want 503", resp, err)
	}
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body["code"] != "busy" {
		t.Fatalf("503 body %v %v, want code busy", body, err)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Fatalf("Retry-After %q, want 1", ra)
	}
	if got := testutil.ToFloat64(s.metrics.refused.WithLabelValues("busy")); got != 1 {
		t.Fatalf("refused{busy} = %v, want 1", got)
	}
	// Let the two through: both get their hello, and a place is free again.
	close(bus.gate)
	for range 2 {
		d := <-held
		if d.err != nil {
			t.Fatalf("held connection: %v", d.err)
		}
		var hello map[string]any
		if err := d.ws.ReadJSON(&hello); err != nil || hello["type"] != "hello" {
			t.Fatalf("hello %v %v", hello, err)
		}
		d.ws.Close()
	}
	if n := s.opening.Load(); n != 0 {
		t.Fatalf("%d places still taken after the sessions opened", n)
	}
	go func() { <-bus.entered }()
	if code, body, hello := dialWS(t, url, nil); code != http.StatusSwitchingProtocols || hello["type"] != "hello" {
		t.Fatalf("after the storm: %d %s %v", code, body, hello)
	}
}

// TestOpeningWaits: a /ws that finds every max_opening place taken waits
// at the door for one (no 503, no retry) while up to four places' worth
// wait; one more is refused at once; as places free the waiters get in.
func TestOpeningWaits(t *testing.T) {
	bus := &gateBus{MemoryBus: NewMemoryBus(), entered: make(chan struct{}, 8), gate: make(chan struct{})}
	s, err := New(testConfig(func(c *Config) { c.MaxOpening = 1 }), Options{Bus: bus, Secret: func() string { return testSecret }})
	if err != nil {
		t.Fatal(err)
	}
	s.openWait = time.Minute // the waiters outlast any slowness of the machine
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		_ = s.Close(context.Background())
		hs.Close()
	})
	url := wsURL(hs, "/ws")
	type dialed struct {
		ws  *websocket.Conn
		err error
	}
	in := make(chan dialed, 5)
	dial := func() {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		in <- dialed{ws, err}
	}
	go dial()
	select {
	case <-bus.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the first connection did not reach the bus")
	}
	for range openingWaitersPer {
		go dial()
	}
	for deadline := time.Now().Add(5 * time.Second); s.openWaiters.Load() != openingWaitersPer; {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiting at the door, want %d", s.openWaiters.Load(), openingWaitersPer)
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("one more while %d wait: %v %v, want 503", openingWaitersPer, resp, err)
	}
	// The gate opens: the first and every waiter get their hello, one
	// place at a time (bus.entered has room for their four entries).
	close(bus.gate)
	for range 1 + openingWaitersPer {
		d := <-in
		if d.err != nil {
			t.Fatalf("waiting connection: %v", d.err)
		}
		var hello map[string]any
		if err := d.ws.ReadJSON(&hello); err != nil || hello["type"] != "hello" {
			t.Fatalf("hello %v %v", hello, err)
		}
		d.ws.Close()
	}
	if got := testutil.ToFloat64(s.metrics.refused.WithLabelValues("busy")); got != 1 {
		t.Fatalf("refused{busy} = %v, want 1 (the one beyond the waiters)", got)
	}
	if n, w := s.opening.Load(), s.openWaiters.Load(); n != 0 || w != 0 {
		t.Fatalf("%d places taken, %d waiting after all opened", n, w)
	}
}

// TestMaxOpeningAuto: max_opening 0 is 4 per CPU on the in-process bus
// (an open is CPU work there) and 64 on any other (a cluster's, where an
// open waits on Redis); a value set is kept on both.
func TestMaxOpeningAuto(t *testing.T) {
	for _, tc := range []struct {
		name string
		bus  Bus
		set  int
		want int
	}{
		{"in-process", NewMemoryBus(), 0, 4 * runtime.GOMAXPROCS(0)},
		{"shared", &gateBus{MemoryBus: NewMemoryBus()}, 0, 64},
		{"in-process, set", NewMemoryBus(), 100, 100},
		{"shared, set", &gateBus{MemoryBus: NewMemoryBus()}, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(testConfig(func(c *Config) { c.MaxOpening = tc.set }), Options{Bus: tc.bus})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			if got := s.settings().MaxOpening; got != tc.want {
				t.Errorf("MaxOpening %d, want %d", got, tc.want)
			}
		})
	}
}
