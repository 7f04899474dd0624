package signaling

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
