package signaling

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// panicOpenBus panics in Open, as a bus with a bug would.
type panicOpenBus struct{ *MemoryBus }

func (b panicOpenBus) Open(ctx context.Context, s Session) error { panic("bus bug") }

// A connection whose attach panics gives back its place at the door
// (Config.MaxOpening) along with its connection's, and its socket is
// closed: before, open's undo
// gave back only the latter, and each such panic shrank the door for
// good (and kept detach queueing, as if an open were always in flight),
// and left the socket open until the client gave up.
func TestOpenPanicGivesBackItsPlace(t *testing.T) {
	s, err := New(testConfig(nil), Options{Bus: panicOpenBus{NewMemoryBus()}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		_ = s.Close(context.Background())
	})
	for range 3 {
		start := time.Now()
		ws, _, err := websocket.DefaultDialer.Dial(wsURL(hs, "/ws"), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := ws.ReadMessage(); err == nil || time.Since(start) > 2*time.Second {
			t.Fatalf("read %v after %v: the socket was left open", err, time.Since(start))
		}
		ws.Close()
	}
	if !waitUntil(2*time.Second, func() bool { return s.Connections() == 0 && s.opening.Load() == 0 }) {
		t.Fatalf("%d connections and %d places at the door still taken", s.Connections(), s.opening.Load())
	}
}
