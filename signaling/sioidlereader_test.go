package signaling

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The idle reader's guarantees for socket.io over an Engine.IO WebSocket
// beyond the cases both protocols share (idleproto_test.go): ping rounds,
// the upgrade from polling.

// dialSIOIdle connects an idleClient to hs's /socket.io/ over an
// Engine.IO WebSocket (over TLS if hs is a TLS server), reads the open
// packet, and connects to socket.io's main namespace.
func dialSIOIdle(t *testing.T, hs *httptest.Server) *idleClient {
	t.Helper()
	c := dialSIOWS(t, hs, wsURL(hs, "/socket.io/?EIO=4&transport=websocket"))
	_ = c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	defer c.ws.SetReadDeadline(time.Time{})
	if _, b, err := c.ws.ReadMessage(); err != nil || !bytes.HasPrefix(b, []byte("0{")) {
		t.Fatalf("open: %q %v", b, err)
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte("40")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.ws.ReadMessage(); err != nil || !bytes.HasPrefix(b, []byte("40{")) {
		t.Fatalf("connect: %q %v", b, err)
	}
	return c
}

// dialSIOWS dials url, an Engine.IO WebSocket of hs's (over TLS if hs
// is a TLS server), as an idleClient, and reads nothing.
func dialSIOWS(t *testing.T, hs *httptest.Server, url string) *idleClient {
	t.Helper()
	c, err := dialWire(hs, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ws.Close() })
	return c
}

// sioAsk is a text frame with a socket.io event that the server acks
// with ack id id (socket.io's EVENT with an id, Engine.IO message 4).
func sioAsk(id int) []byte {
	return frame(websocket.TextMessage, fmt.Appendf(nil, `42%d["ice-servers"]`, id))
}

// eioPong is a client's Engine.IO pong packet, what an idle client sends.
func eioPong() []byte { return frame(websocket.TextMessage, []byte("3")) }

// expectAcks reads until each of ids has been acked (socket.io ACK, "43"
// and the id), answering the server's Engine.IO pings, far within the
// ping interval: a message left buffered above the socket would wait for
// the next packet.
func (c *idleClient) expectAcks(t *testing.T, ids ...int) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[fmt.Sprint(id)] = true
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	defer c.ws.SetReadDeadline(time.Time{})
	for len(want) > 0 {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for acks %v: %v", want, err)
		}
		if rest, ok := bytes.CutPrefix(b, []byte("43")); ok {
			if i := bytes.IndexByte(rest, '['); i > 0 {
				delete(want, string(rest[:i]))
			}
		}
	}
}

// A session opened over polling and upgraded to WebSocket (engine.io's
// probe, then "5") takes the idle path once upgraded: its reader, which
// waited for POSTs in ReadFrame, waits on the socket, and messages and
// Engine.IO pongs on the WebSocket are handled as on one opened over it.
func TestSIOIdleReaderUpgraded(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the shallow wait is Linux-only; elsewhere the reader blocks in gorilla")
	}
	idleServers(t, 500*time.Millisecond, func(t *testing.T, s *Server, hs *httptest.Server) {
		ws := upgradeSIO(t, hs).ws
		acks := make(chan string, 16)
		done := make(chan struct{})
		var wmu sync.Mutex // the client's writes: the pongs and ask's
		go func() {
			defer close(done)
			for {
				_, b, err := ws.ReadMessage()
				if err != nil {
					return
				}
				switch {
				case string(b) == "2":
					wmu.Lock()
					_ = ws.WriteMessage(websocket.TextMessage, []byte("3"))
					wmu.Unlock()
				case bytes.HasPrefix(b, []byte("43")):
					acks <- string(b)
				}
			}
		}()
		ask := func(id int) {
			t.Helper()
			wmu.Lock()
			err := ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `42%d["ice-servers"]`, id))
			wmu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			select {
			case a := <-acks:
				if !strings.HasPrefix(a, fmt.Sprint("43", id, "[")) {
					t.Fatalf("ack %q, want id %d", a, id)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("no ack for %d", id)
			}
		}
		ask(1)
		// Ping rounds answered on the WebSocket keep the session (its
		// pong is due within the ping interval).
		time.Sleep(2 * time.Second)
		if got := s.nconns.Load(); got != 1 {
			t.Fatalf("%d connections, want 1", got)
		}
		ask(2)
		expectSIOIdle(t, s, 1)
		ws.Close()
		<-done
		if !waitUntil(3*time.Second, func() bool { return s.nconns.Load() == 0 }) {
			t.Fatalf("%d connections still open", s.nconns.Load())
		}
	})
}

// expectSIOIdle checks that n idle socket.io sessions are where they wait:
// in the server's waiter, with no goroutine reading any of them (or, with
// a reader goroutine each, s.noWaiter, each reader waiting on its socket),
// none in gorilla.
func expectSIOIdle(t *testing.T, s *Server, n int) {
	t.Helper()
	if s.noWaiter {
		ok := waitUntil(3*time.Second, func() bool {
			return goroutinesIn("signaling.(*idleConn).wait") == n && goroutinesIn("engineio.(*Session).readWS") == 0
		})
		if !ok {
			t.Errorf("%d readers waiting on the socket, %d in gorilla; want %d, 0",
				goroutinesIn("signaling.(*idleConn).wait"), goroutinesIn("engineio.(*Session).readWS"), n)
		}
		return
	}
	count := func() int {
		if p := s.poll.Load(); p != nil {
			return p.count()
		}
		return 0
	}
	ok := waitUntil(3*time.Second, func() bool {
		return goroutinesIn("signaling.(*poller).wait") == 1 && goroutinesIn("signaling.(*conn).readLoop") == 0 &&
			goroutinesIn("signaling.(*Server).serveSIOSession") == 0 &&
			goroutinesIn("engineio.(*Session).readWS") == 0 && count() == n
	})
	if !ok {
		t.Errorf("%d waiters, %d readers, %d session goroutines, %d in gorilla, %d registered; want 1, 0, 0, 0, %d",
			goroutinesIn("signaling.(*poller).wait"), goroutinesIn("signaling.(*conn).readLoop"),
			goroutinesIn("signaling.(*Server).serveSIOSession"), goroutinesIn("engineio.(*Session).readWS"),
			count(), n)
	}
}
