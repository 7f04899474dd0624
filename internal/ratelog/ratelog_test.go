package ratelog

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func newTestLogger(level slog.Level) (*Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))), &buf
}

// TestBurstThenSuppressed: a flood under one key writes the burst, then
// nothing; the next line that gets through says how many were left out,
// and another key is not affected.
func TestBurstThenSuppressed(t *testing.T) {
	l, buf := newTestLogger(slog.LevelInfo)
	for range 100 {
		l.Log(slog.LevelWarn, "flood", "bad request")
	}
	if n := strings.Count(buf.String(), "bad request"); n != 20 {
		t.Fatalf("%d lines of a flood of 100, want the burst of 20", n)
	}
	l.Log(slog.LevelWarn, "other", "another thing")
	if !strings.Contains(buf.String(), "another thing") {
		t.Fatal("another key was suppressed too")
	}
	time.Sleep(150 * time.Millisecond) // more than one interval
	buf.Reset()
	l.Log(slog.LevelWarn, "flood", "bad request")
	if !strings.Contains(buf.String(), "suppressed=80") {
		t.Fatalf("the line after the flood does not count it: %q", buf.String())
	}
}

// TestLazyArgs: arguments are built only for lines that are written, and
// not at all below the level.
func TestLazyArgs(t *testing.T) {
	l, buf := newTestLogger(slog.LevelInfo)
	calls := 0
	args := func() []any { calls++; return []any{"n", calls} }
	l.LogLazy(slog.LevelDebug, "k", "debug line", args)
	for range 30 {
		l.LogLazy(slog.LevelInfo, "k", "info line", args)
	}
	if calls != 20 || strings.Count(buf.String(), "info line") != 20 {
		t.Fatalf("args built %d times for %d lines, want 20 and 20", calls, strings.Count(buf.String(), "info line"))
	}
}

// TestKeysBounded: keys that name clients cannot grow the map without end.
func TestKeysBounded(t *testing.T) {
	l, _ := newTestLogger(slog.LevelInfo)
	for i := range maxKeys + 10 {
		l.Log(slog.LevelInfo, fmt.Sprint("peer-", i), "x")
	}
	if n := len(l.keys); n > maxKeys {
		t.Fatalf("%d keys kept, want at most %d", n, maxKeys)
	}
}
