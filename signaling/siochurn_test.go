package signaling

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// sioChurn are the ways TestSIOConnectClose ends a connection right after
// it opened: at each step of the handshake, politely or by dropping the
// TCP connection, over WebSocket and polling.
var sioChurn = []struct {
	name string
	run  func(c *sioWire, room string)
}{
	{"ws: drop after the open packet", func(c *sioWire, _ string) {}},
	{"ws: drop right after CONNECT", func(c *sioWire, _ string) { c.send("0") }},
	{"ws: drop after CONNECT's answer", func(c *sioWire, _ string) { c.send("0"); <-c.in }},
	{"ws: drop right after a join", func(c *sioWire, room string) { c.send("0"); c.send(`2["join",` + strconv.Quote(room) + `]`) }},
	{"ws: joined, then the close packet", func(c *sioWire, room string) {
		c.send("0")
		c.send(`2["create or join",` + strconv.Quote(room) + `]`)
		<-c.in
		c.raw("1")
		<-c.done
	}},
	{"ws: close frame after CONNECT", func(c *sioWire, _ string) {
		c.send("0")
		c.wmu.Lock()
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.wmu.Unlock()
		<-c.done
	}},
	{"polling: close packet before CONNECT", func(c *sioWire, _ string) { c.raw("1"); <-c.done }},
	{"polling: CONNECT, join and close in one payload", func(c *sioWire, room string) {
		c.raw("40\x1e42[\"join\"," + strconv.Quote(room) + "]\x1e1")
		<-c.done
	}},
	{"polling: DISCONNECT after CONNECT's answer", func(c *sioWire, _ string) { c.send("0"); <-c.in; c.send("1"); <-c.done }},
	// Gone without a word, a poll in flight: the pings find it (the
	// test's ping interval is short).
	{"polling: vanish after CONNECT", func(c *sioWire, _ string) { c.send("0"); <-c.in }},
}

// TestSIOConnectClose opens thousands of socket.io connections and ends
// each right after it opened, in every way of sioChurn, many at once: the
// server is left with nothing (connections, peers, rooms, Engine.IO
// sessions, goroutines back to where they were).
func TestSIOConnectClose(t *testing.T) {
	n := 3000
	if raceEnabled || testing.Short() {
		n = 1000 // a few seconds on two cores with the race detector
	}
	s := newTestServer(t, func(c *Config) { c.PingInterval = 300 * time.Millisecond })
	hs, _ := sioHTTPServer(t, s)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	hc := &http.Client{Transport: tr}
	base := runtime.NumGoroutine()

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || t.Failed() {
					return
				}
				way := sioChurn[i%len(sioChurn)]
				transport := "websocket"
				if way.name[0] == 'p' {
					transport = "polling"
				}
				c := &sioWire{t: t, base: hs.URL, hc: hc, in: make(chan string, 256), done: make(chan struct{})}
				c.ctx, c.cancel = context.WithTimeout(context.Background(), 5*time.Second)
				if err := c.open(transport); err != nil {
					t.Errorf("%s: %v", way.name, err)
					c.cancel()
					return
				}
				way.run(c, "churn-"+strconv.Itoa(i))
				c.cancel()
				if c.ws != nil {
					c.ws.Close()
				}
				<-c.done
			}
		}()
	}
	wg.Wait()
	t.Logf("%d connections opened and ended in %v", n, time.Since(start).Round(time.Millisecond))
	tr.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The server's waiter, started by the first WebSocket session
		// (watch.go), lives as long as the server.
		st, sessions, g := s.Stats(), s.eio.Sessions(), runtime.NumGoroutine()-goroutinesIn("signaling.(*poller).wait")
		if st == (Stats{}) && sessions == 0 && g <= base {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("left behind: %+v, %d engine.io sessions, %d goroutines (%d before)\n%s", st, sessions, g, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
