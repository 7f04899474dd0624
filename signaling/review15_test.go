package signaling

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Review of issue 15's merged changes (ends.go, detaches.go).

// slowHoldBus is the in-process bus seen as a shared one (not
// *MemoryBus, as Redis is), whose Hold takes a slow round trip's time
// (Redis under load, or one being failed over) and counts how many run at
// once.
type slowHoldBus struct {
	*MemoryBus
	delay         time.Duration
	mu            sync.Mutex
	inFlight, max int
	held          int
}

func (b *slowHoldBus) Hold(ctx context.Context, id string, epoch, written uint64, grace time.Duration) error {
	b.mu.Lock()
	b.inFlight++
	b.max = max(b.max, b.inFlight)
	b.mu.Unlock()
	time.Sleep(b.delay)
	err := b.MemoryBus.Hold(ctx, id, epoch, written, grace)
	b.mu.Lock()
	b.inFlight--
	b.held++
	b.mu.Unlock()
	return err
}

// Clients whose network drops while the node is otherwise quiet (no open
// in flight, no release queued) are ended by the ender (ends.go), one
// goroutine, which runs each release inline (detach: nothing queued, none
// inline but its own): on a shared bus each is a round trip, so the drops
// are ended one round trip after another, and a connection's place
// (max_connections), its slot and its session wait behind every drop
// before it. Before ends.go each ended on a handler of its own, and
// their releases ran side by side. With Redis unreachable each waits
// busWait (5 s): 100 drops, 500 s.
func TestReviewDroppedReleasesSerialized(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the shared waiter is Linux-only")
	}
	const delay = 200 * time.Millisecond
	bus := &slowHoldBus{MemoryBus: NewMemoryBus(), delay: delay}
	s := newBusServer(t, bus)
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	const n = 8
	clients := make([]*idleClient, n)
	for i := range clients {
		clients[i] = dialIdle(t, hs)
	}
	if !waitUntil(5*time.Second, func() bool { return registered(s) == n }) {
		t.Fatalf("%d in the waiter, want %d", registered(s), n)
	}
	start := time.Now()
	for _, c := range clients {
		_ = c.tcp.Conn.Close() // the network drops: a FIN, no close frame
	}
	if !waitUntil(10*time.Second, func() bool { return s.nconns.Load() == 0 }) {
		t.Fatalf("%d connections left", s.nconns.Load())
	}
	took := time.Since(start)
	bus.mu.Lock()
	maxInFlight, held := bus.max, bus.held
	bus.mu.Unlock()
	t.Logf("%d drops ended in %v; %d holds, at most %d at once", n, took, held, maxInFlight)
	// Side by side (or queued to busDetachWorkers) they take a round
	// trip or two; one after another, n.
	if took > 4*delay {
		t.Errorf("%d dropped connections took %v to end with a %v bus round trip (at most %d releases at once): serialized on the ender",
			n, took, delay, maxInFlight)
	}
}

// A socket.io event that a long-polling POST brings in while the session
// upgrades to a WebSocket (the POST's body still on its way when the
// client sends "5": a slow client, or one that does not wait for its POST
// before upgrading) is queued in the Engine.IO session (its in), after
// the reader goroutine handed the connection to the waiter (serveSIO).
// The waiter only looks at the socket, and takes the client's Engine.IO
// pongs off it itself (skimPongs), so nothing reads the queued event
// until the client sends something else on the WebSocket: its ack never
// comes, however many pongs it sends (before siowait, the reader
// goroutine woke on the next pong and read it then). The POST waits
// meanwhile for the event to be read.
func TestReviewSIOPostBehindUpgrade(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the shared waiter is Linux-only")
	}
	// Pinged often: the client's pongs (expectAcks answers each) do not
	// bring the event in either.
	s := newTestServer(t, func(c *Config) { c.PingInterval = time.Second })
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	w := dialSIO(t, hs, hs.Client(), "polling", false)

	// The POST: its head and the first byte of its body, then a pause.
	body := `421["ice-servers"]`
	u, err := url.Parse(w.url("polling"))
	if err != nil {
		t.Fatal(err)
	}
	post, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer post.Close()
	fmt.Fprintf(post, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: %d\r\n\r\n%s",
		u.RequestURI(), u.Host, len(body), body[:1])
	time.Sleep(100 * time.Millisecond) // the POST handler reads its body

	c := dialSIOWS(t, hs, w.url("websocket"))
	probeSIO(t, c)
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte("5")); err != nil {
		t.Fatal(err)
	}
	expectSIOIdle(t, s, 1) // handed to the waiter
	if _, err := post.Write([]byte(body[1:])); err != nil {
		t.Fatal(err)
	}
	// The ack, within 3 s: the client answers every ping meanwhile.
	_ = c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	pongs := 0
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			t.Fatalf("no ack to the event the POST brought (%d pongs sent): %v", pongs, err)
		}
		if string(b) == "2" {
			if err := c.ws.WriteMessage(websocket.TextMessage, []byte("3")); err != nil {
				t.Fatal(err)
			}
			pongs++
		}
		if bytes.HasPrefix(b, []byte("431[")) {
			return
		}
	}
}
