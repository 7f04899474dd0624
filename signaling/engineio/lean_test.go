package engineio

import (
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestWebSocketPongDeadline: over WebSocket the pong's deadline is the
// connection's read deadline, not a timer of the session's (issue 15: an
// idle session holds none). A client that answers keeps its session
// through several pings; one that stops answering is ended with
// ErrPingTimeout about PingTimeout after the ping; neither has a timer.
// Nor does a WebSocket session keep wake channels or a parsed query.
func TestWebSocketPongDeadline(t *testing.T) {
	const timeout = 200 * time.Millisecond
	sessions := make(chan *Session, 1)
	ended := make(chan error, 1)
	srv := NewServer(Config{PingInterval: time.Hour, PingTimeout: timeout, ManualPing: true}, func(s *Session) {
		sessions <- s
		for {
			if _, _, err := s.ReadMessage(nil); err != nil {
				ended <- err
				return
			}
		}
	})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/engine.io/?EIO=4&transport=websocket&token=t1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, b, err := ws.ReadMessage(); err != nil || b[0] != '0' {
		t.Fatalf("open: %q %v", b, err)
	}
	s := <-sessions
	if s.inWake != nil || s.pollWake != nil {
		t.Error("a WebSocket session has polling's wake channels")
	}
	if got := s.Query().Get("token"); got != "t1" {
		t.Errorf("Query().Get(token) = %q", got)
	}
	for i := range 3 {
		if err := s.Ping(time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, b, err := ws.ReadMessage(); err != nil || string(b) != "2" {
			t.Fatalf("ping %d: %q %v", i, b, err)
		}
		if err := ws.WriteMessage(websocket.TextMessage, []byte("3")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(timeout * 3 / 2) // past the deadline: the pong cleared it
		select {
		case err := <-ended:
			t.Fatalf("ended after an answered ping %d: %v", i, err)
		default:
		}
	}
	start := time.Now()
	if err := s.Ping(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, ErrPingTimeout) {
			t.Fatalf("ended with %v, want ErrPingTimeout", err)
		}
		if d := time.Since(start); d < timeout {
			t.Fatalf("ended %v after the ping, before its timeout %v", d, timeout)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an unanswered ping did not end the session")
	}
	s.mu.Lock()
	pt := s.pongTimer
	s.mu.Unlock()
	if pt != nil {
		t.Error("a WebSocket session armed a pong timer")
	}
}

// countingPool is a BufferPool that counts the buffers lent out.
type countingPool struct{ out atomic.Int64 }

func (p *countingPool) Get() []byte  { p.out.Add(1); return make([]byte, 0, 64) }
func (p *countingPool) Put(b []byte) { p.out.Add(-1) }

// TestReadMessagePooled: ReadMessagePooled takes a buffer only once a
// packet has come, keeps it for a message (the caller's to give back) and
// gives it back itself for a control packet, so a reader waiting holds
// none.
func TestReadMessagePooled(t *testing.T) {
	var pool countingPool
	msgs := make(chan string, 4)
	sessions := make(chan *Session, 1)
	srv := NewServer(Config{PingInterval: time.Hour, PingTimeout: time.Hour, ManualPing: true}, func(s *Session) {
		sessions <- s
		for {
			b, _, err := s.ReadMessagePooled(&pool)
			if err != nil {
				return
			}
			msgs <- string(b)
			pool.Put(b)
		}
	})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/engine.io/?EIO=4&transport=websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, _, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	s := <-sessions
	if pool.out.Load() != 0 {
		t.Fatalf("%d buffers held by a reader that has read nothing", pool.out.Load())
	}
	for i := range 3 {
		if err := s.Ping(time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, b, err := ws.ReadMessage(); err != nil || string(b) != "2" {
			t.Fatalf("ping: %q %v", b, err)
		}
		_ = ws.WriteMessage(websocket.TextMessage, []byte("3"))
		_ = ws.WriteMessage(websocket.TextMessage, []byte("6"))
		_ = ws.WriteMessage(websocket.TextMessage, []byte("4m"+strconv.Itoa(i)))
		if got := <-msgs; got != "m"+strconv.Itoa(i) {
			t.Fatalf("message %q", got)
		}
	}
	if !waitFor(time.Second, func() bool { return pool.out.Load() == 0 }) {
		t.Fatalf("%d buffers held by a reader waiting after pongs, noops and messages", pool.out.Load())
	}
}
