package signaling

import (
	"errors"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsAllowed are the only non-test files that may import gorilla/websocket:
// the Transport adapter and the HTTP upgrade. Everything else (the session
// and room code) goes through Transport, so another transport can replace
// gorilla without touching it (issue 12).
var wsAllowed = map[string]bool{"transport_ws.go": true, "http.go": true}

func TestWebSocketOnlyBehindTransport(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/gorilla/websocket") && !wsAllowed[name] {
				t.Errorf("%s imports %s; only %v may (use Transport)", name, path, wsAllowed)
			}
		}
	}
	// The check must have seen the session code, or it proves nothing.
	if _, err := os.Stat("session.go"); err != nil || checked < 5 {
		t.Fatalf("checked %d files (session.go: %v); run from the signaling directory", checked, err)
	}
}

// TestWSCloseAfterConnGone: once the client's TCP connection ended
// without a close frame, the transport writes none (RFC 6455 §7.1.1);
// after a clean close frame it still echoes one (§5.5.1).
func TestWSCloseAfterConnGone(t *testing.T) {
	for _, tc := range []struct {
		name      string
		end       func(*websocket.Conn) error
		wantClose bool
	}{
		{"fin without close frame", func(ws *websocket.Conn) error { return ws.NetConn().(*net.TCPConn).CloseWrite() }, false},
		{"close frame", func(ws *websocket.Conn) error {
			return ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
				if err != nil {
					done <- err
					return
				}
				tr := newWSTransport(ws, nil, 1<<16, 5*time.Second)
				_, err = tr.ReadFrame(nil, 1024)
				if err == nil {
					done <- errors.New("read a frame, want the end")
					return
				}
				done <- tr.Close(closeNormal, "")
			}))
			defer hs.Close()
			ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			if err := tc.end(ws); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			// Raw bytes after the handshake: a close frame starts 0x88.
			_ = ws.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(ws.NetConn())
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatal(err)
			}
			if got := len(b) > 0 && b[0] == 0x88; got != tc.wantClose {
				t.Errorf("close frame written: %v (%x), want %v", got, b, tc.wantClose)
			}
		})
	}
}
