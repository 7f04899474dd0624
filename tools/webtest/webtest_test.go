// Package webtest runs the JavaScript tests with Node's built-in runner
// (node --test): the test page's pure logic (signaling/web/test: verdicts,
// the NAT hint, the client's backoff and token helpers), the admin page's
// (internal/adminpage/web/test) and the client
// icegate.js against a real signaling server in this process, reached
// through a TCP proxy that the test cuts to drop connections mid-stream.
//
// Node 20 or newer is needed (20 has WebSocket behind
// --experimental-websocket, 22 has it on by default). Without it the tests
// skip, unless ICEGATE_REQUIRE_NODE=1 (as `make test` sets), when they fail.
package webtest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"icegate/internal/leakcheck"
	"icegate/signaling"
)

const (
	requireEnv  = "ICEGATE_REQUIRE_NODE"
	tokenSecret = "webtest-token-secret-0123456789abcdef"
)

// TestMain fails the run when a goroutine of the server outlives the tests.
func TestMain(m *testing.M) { leakcheck.Main(m, "icegate/", "os/exec.") }

// node returns the path of a Node.js of version 20 or newer, or skips
// (fails under ICEGATE_REQUIRE_NODE=1).
func node(t *testing.T) string {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv(requireEnv) == "1" {
			t.Fatalf("%s (%s=1 makes this a failure; `make deps` installs Node.js)", msg, requireEnv)
		}
		t.Skipf("%s; set %s=1 to make this a failure", msg, requireEnv)
	}
	path, err := exec.LookPath("node")
	if err != nil {
		skip("node is not installed: the JavaScript tests need Node.js 20 or newer")
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		skip("node --version: %v", err)
	}
	m := regexp.MustCompile(`^v(\d+)\.`).FindStringSubmatch(strings.TrimSpace(string(out)))
	if m == nil {
		skip("node --version said %q", out)
	}
	if major, _ := strconv.Atoi(m[1]); major < 20 {
		skip("node %s is too old: the JavaScript tests need Node.js 20 or newer", strings.TrimSpace(string(out)))
	}
	return path
}

// runNode runs node --test on files with env added, logging its output,
// and fails the test when any JavaScript test fails.
func runNode(t *testing.T, env []string, files ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// --experimental-websocket: Node 20 has WebSocket only behind it (on
	// 22 it is on by default and the flag is accepted).
	args := []string{"--experimental-websocket", "--no-warnings", "--test", "--test-reporter=spec"}
	// WEBTEST_RUN=PATTERN runs only the JavaScript tests whose name matches.
	if p := os.Getenv("WEBTEST_RUN"); p != "" {
		args = append(args, "--test-name-pattern="+p)
	}
	args = append(args, files...)
	cmd := exec.CommandContext(ctx, node(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	// Lines go to the test log as they come, so a hang shows where.
	var out bytes.Buffer
	lw := &lineWriter{t: t, all: &out}
	cmd.Stdout, cmd.Stderr = lw, lw
	err := cmd.Run()
	lw.flush()
	if err != nil {
		t.Fatalf("node --test %s: %v", strings.Join(files, " "), err)
	}
	// A runner that found no test passes silently: make sure some ran.
	if !regexp.MustCompile(`(?m)^ℹ pass [1-9]`).Match(out.Bytes()) {
		t.Fatalf("node --test ran no passing test")
	}
}

// TestPageLogic runs the unit tests of the test page's pure modules.
func TestPageLogic(t *testing.T) {
	files, err := filepath.Glob("../../signaling/web/test/*.test.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("no JavaScript unit tests under signaling/web/test (%v)", err)
	}
	runNode(t, nil, files...)
}

// TestAdminPageLogic runs the unit tests of the admin page's pure module
// (internal/adminpage/web/model.js): reading /metrics, bit rates, the
// chart, top users.
func TestAdminPageLogic(t *testing.T) {
	files, err := filepath.Glob("../../internal/adminpage/web/test/*.test.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("no JavaScript unit tests under internal/adminpage/web/test (%v)", err)
	}
	runNode(t, nil, files...)
}

// TestClient runs icegate.js against a signaling server: resume after a
// dropped connection (every acked message exactly once, in order), the
// resume_error path, acks and error codes, and the auth renewal hook.
func TestClient(t *testing.T) {
	node(t)
	srv := startServer(t, signaling.Config{
		// High enough that the stream in the test is not rate limited.
		MessagesPerSecond: 2000,
		// Short, so that a resume after it is refused within the test.
		ResumeGrace:  3 * time.Second,
		TokenSecrets: []string{tokenSecret},
		// The client pings as often as the server: once a second lets
		// the heartbeat test find a silent connection quickly.
		PingInterval: time.Second,
	})
	runNode(t, []string{
		"ICEGATE_URL=" + srv.URL,
		"ICEGATE_TOKEN_SECRET=" + tokenSecret,
		"ICEGATE_RESUME_GRACE_MS=3000",
	}, "client.test.mjs")
}

func startServer(t *testing.T, cfg signaling.Config) *httptest.Server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: logLevel()}))
	hub, err := signaling.New(cfg, signaling.Options{Logger: log, Version: "webtest"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hub.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hub.Close(ctx); err != nil {
			t.Error(err)
		}
		srv.Close()
	})
	return srv
}

// lineWriter logs node's output line by line and keeps all of it.
type lineWriter struct {
	t       *testing.T
	all     *bytes.Buffer
	partial []byte
	mu      sync.Mutex
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.t.Log(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.t.Log(string(w.partial))
		w.partial = nil
	}
}

// testWriter sends logs to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// logLevel is the server's log level: warnings, or everything with
// WEBTEST_DEBUG=1.
func logLevel() slog.Level {
	if os.Getenv("WEBTEST_DEBUG") == "1" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
