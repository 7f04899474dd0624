package signaling

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"icegate/internal/testutil"
)

// openOutageBus fails Open and Resume as a Redis bus does when Redis does
// not answer in time.
type openOutageBus struct{ *MemoryBus }

func (b openOutageBus) Open(ctx context.Context, s Session) error {
	return errors.Join(ErrUnavailable, context.DeadlineExceeded)
}

func (b openOutageBus) Resume(ctx context.Context, r ResumeRequest) (Resumed, error) {
	return Resumed{}, errors.Join(ErrUnavailable, context.DeadlineExceeded)
}

// A connection whose session the bus cannot open is refused with 1013 and
// the code cluster-unavailable, and nothing else happens: no panic (one
// did, for each such connection, when Redis timed out in a reconnect
// storm: the attach's failure left the connection half made).
func TestOpenBusUnavailable(t *testing.T) {
	var logs testutil.SyncBuffer
	s, err := New(testConfig(nil), Options{Bus: openOutageBus{NewMemoryBus()},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		_ = s.Close(context.Background())
	})
	for _, q := range []string{"", "?resume=abc&last=0"} {
		ws, _, err := websocket.DefaultDialer.Dial(wsURL(hs, "/ws")+q, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err = ws.ReadMessage()
		ws.Close()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != closeTryAgainLater || ce.Text != CodeClusterUnavailable {
			t.Errorf("%q: %v, want close %d %s", q, err, closeTryAgainLater, CodeClusterUnavailable)
		}
	}
	if !waitUntil(2*time.Second, func() bool { return s.Connections() == 0 }) {
		t.Errorf("%d connections left", s.Connections())
	}
	if l := logs.String(); strings.Contains(l, "panic") {
		t.Fatalf("a refused open panicked:\n%s", l)
	}
}
