// Package sioconformance runs the socket.io project's own protocol test
// suites (engine.io-protocol's and socket.io-protocol's test-suite/, copied
// under engineio/ and socketio/, see LICENSE) against icegate's Engine.IO
// server and socket.io codec. Each suite expects a small test server
// (echo, an "auth" event, a /custom namespace, ping interval 300 ms and
// timeout 200 ms): harness_test.go builds it over the packages, as a test
// harness, not as a mode of the product.
package sioconformance

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"icegate/internal/leakcheck"
	"icegate/internal/nodetest"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, "icegate/signaling/engineio.", "icegate/tools/sioconformance.")
}

// The settings both suites check in the handshake.
const (
	pingInterval = 300 * time.Millisecond
	pingTimeout  = 200 * time.Millisecond
	maxPayload   = 1000000
)

// serve runs h on a loopback port and returns its base URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: cors(h), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// cors lets the suites' index.html run in a browser against the harness
// (the suites' own servers allow any origin).
func cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" {
			w.Header().Set("Access-Control-Allow-Origin", o)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// runSuite runs suite/test-suite.js with mocha against base and fails the
// test unless all want tests pass. The suite names http://localhost:3000;
// a copy in a temporary directory names base instead, so that test
// binaries running at once do not fight over a port.
func runSuite(t *testing.T, suite, base string, want int) {
	t.Helper()
	dir, node := nodetest.Dir(t)
	tmp := t.TempDir()
	src, err := os.ReadFile(filepath.Join(dir, suite, "test-suite.js"))
	if err != nil {
		t.Fatal(err)
	}
	const url = `const URL = "http://localhost:3000";`
	if !bytes.Contains(src, []byte(url)) {
		t.Fatalf("%s/test-suite.js no longer says %s", suite, url)
	}
	src = bytes.Replace(src, []byte(url), []byte(`const URL = "`+base+`";`), 1)
	imports, err := os.ReadFile(filepath.Join(dir, suite, "node-imports.js"))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"test-suite.js": src, "node-imports.js": imports,
		"package.json": []byte(`{"type":"module"}`)} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nodetest.LinkModules(t, dir, tmp)
	// --retries: the suite's heartbeat tests allow a 200 ms pong
	// timeout (its own constants), which a client process starved on a
	// loaded two-core CI machine once missed (a poll answered 400 after
	// the session timed out); a real defect fails all three tries.
	cmd := exec.Command(node, filepath.Join(dir, "node_modules", "mocha", "bin", "mocha"), "--reporter", "json", "--retries", "2", "test-suite.js")
	cmd.Dir = tmp
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res struct {
		Stats struct {
			Tests, Passes, Failures, Pending int
		}
		Failures []struct {
			FullTitle string
			Err       struct{ Message string }
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("mocha: %v (%v)\nstdout: %s\nstderr: %s", err, runErr, stdout.String(), stderr.String())
	}
	for _, f := range res.Failures {
		t.Errorf("%s: %s", f.FullTitle, strings.TrimSpace(f.Err.Message))
	}
	if res.Stats.Passes != want || res.Stats.Failures != 0 || res.Stats.Pending != 0 {
		t.Fatalf("%s suite: %d of %d tests passed (%d failed, %d pending), want %d", suite,
			res.Stats.Passes, res.Stats.Tests, res.Stats.Failures, res.Stats.Pending, want)
	}
	t.Logf("%s suite: %d of %d tests passed", suite, res.Stats.Passes, want)
}

// TestEngineIOProtocol: engine.io-protocol's 24 tests.
func TestEngineIOProtocol(t *testing.T) {
	srv := newEchoServer()
	mux := http.NewServeMux()
	mux.Handle("/engine.io/", srv)
	base := serve(t, mux)
	defer srv.Close()
	runSuite(t, "engineio", base, 24)
}

// TestSocketIOProtocol: socket.io-protocol's 32 tests (its Engine.IO part
// runs at /socket.io/, then the socket.io packets).
func TestSocketIOProtocol(t *testing.T) {
	srv := newSocketIOServer()
	mux := http.NewServeMux()
	mux.Handle("/socket.io/", srv)
	base := serve(t, mux)
	defer srv.Close()
	runSuite(t, "socketio", base, 32)
}
