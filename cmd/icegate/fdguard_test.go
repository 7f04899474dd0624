//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"icegate/internal/testutil"
)

// fdGuardLimit is the RLIMIT_NOFILE (soft and hard) the server runs under
// in TestDescriptorGuard, and fdGuardReserve its
// signaling.descriptor_reserve.
const (
	fdGuardLimit   = 256
	fdGuardReserve = 64
)

// TestDescriptorGuard runs the real binary under a small RLIMIT_NOFILE
// (prlimit) and opens /ws connections until one is refused: the server
// logs its limit and reserve at start; the refusal is a 503 with code
// "descriptors" before the upgrade, counted in
// icegate_signaling_refused_total; further WebSockets and socket.io
// handshakes are refused at once (answered, so accept still works), plain
// HTTP is still served, no accept ever fails with EMFILE (net/http logs
// those at debug level, on here); and once connections close, new ones
// are accepted again.
func TestDescriptorGuard(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("needs prlimit (util-linux)")
	}
	bin := icegateBinary(t)
	dir := t.TempDir()
	httpPort, metricsPort := freeTCPUDPPort(t), freeTCPUDPPort(t)
	cfg := filepath.Join(dir, "icegate.hcl")
	// TURN on UDP only (one socket) so that signaling's share of the
	// descriptors is most of them; max_connections well above what the
	// limit allows, so that only the reserve refuses.
	src := fmt.Sprintf(`log {
  level  = "debug"
  format = "json"
}
listen {
  addresses = ["127.0.0.1"]
  port = %d
  tcp  = false
  tls  = false
  dtls = false
}
relay {
  ipv4_bind  = "127.0.0.1"
  ipv6_bind  = ""
  private_ok = true
}
http { listen = "127.0.0.1:%d" }
metrics { listen = "127.0.0.1:%d" }
signaling {
  max_connections    = 1000
  descriptor_reserve = %d
}
`, freeTCPUDPPort(t), httpPort, metricsPort, fdGuardReserve)
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prlimit, fmt.Sprintf("--nofile=%d:%d", fdGuardLimit, fdGuardLimit), "--", bin, "serve", "-config", cfg)
	p := &process{t: t, cmd: cmd, stderr: &testutil.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = io.Discard, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("server log (last 4 KiB):\n%s", tail(p.stderr.String(), 4096))
		}
	}()
	rec := p.waitLog(0, "file descriptor limit")
	if rec["limit"] != float64(fdGuardLimit) || rec["hard"] != float64(fdGuardLimit) || rec["signaling_reserve"] != float64(fdGuardReserve) {
		t.Fatalf("limit logged as %v", rec)
	}
	p.waitLog(0, "listening")

	wsURL := fmt.Sprintf("ws://127.0.0.1:%d/ws", httpPort)
	dial := func() (*websocket.Conn, int, string, error) {
		d := websocket.Dialer{HandshakeTimeout: 3 * time.Second}
		c, resp, err := d.Dial(wsURL, nil)
		if err != nil {
			if resp == nil {
				return nil, 0, "", err
			}
			var body struct{ Code string }
			_ = json.NewDecoder(resp.Body).Decode(&body)
			return nil, resp.StatusCode, body.Code, err
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		var hello struct{ Type string }
		if err := c.ReadJSON(&hello); err != nil || hello.Type != "hello" {
			c.Close()
			return nil, 0, "", fmt.Errorf("no hello: %v %q", err, hello.Type)
		}
		return c, 101, "", nil
	}
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	refusedAt := -1
	for i := range fdGuardLimit {
		c, status, code, err := dial()
		if err != nil {
			if status != http.StatusServiceUnavailable || code != "descriptors" {
				t.Fatalf("connection %d: %v (status %d, code %q), want 503 descriptors", i, err, status, code)
			}
			refusedAt = i
			break
		}
		conns = append(conns, c)
	}
	// The server holds a few dozen descriptors of its own (listeners,
	// epoll, the log, /proc/self/fd while counting).
	if refusedAt < fdGuardLimit-fdGuardReserve-60 || refusedAt > fdGuardLimit-fdGuardReserve {
		t.Fatalf("refused after %d connections; want a little under %d (limit %d less reserve %d)",
			refusedAt, fdGuardLimit-fdGuardReserve, fdGuardLimit, fdGuardReserve)
	}
	t.Logf("refused after %d connections", refusedAt)

	// Refused at once, again and again: accept keeps working.
	for i := range 50 {
		start := time.Now()
		_, status, code, err := dial()
		if err == nil || status != http.StatusServiceUnavailable || code != "descriptors" {
			t.Fatalf("attempt %d past the reserve: %v (status %d, code %q)", i, err, status, code)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("attempt %d took %v to be refused", i, d)
		}
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/socket.io/?EIO=4&transport=polling", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"descriptors"`) {
		t.Fatalf("socket.io handshake past the reserve: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the test page past the reserve: %d", resp.StatusCode)
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	if v := metric(t, metricsURL, `icegate_signaling_refused_total{reason="descriptors"}`); v != "52" {
		t.Fatalf("refusals counted: %q, want 52 (51 WebSockets, 1 socket.io)", v)
	}

	// Room again once connections close.
	for _, c := range conns[:20] {
		c.Close()
	}
	conns = conns[20:]
	var again *websocket.Conn
	for deadline := time.Now().Add(5 * time.Second); again == nil; {
		c, _, _, err := dial()
		if err == nil {
			again = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after 20 closed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	conns = append(conns, again)

	for _, bad := range []string{"too many open files", "Accept error"} {
		if strings.Contains(p.stderr.String(), bad) {
			t.Fatalf("the server log has %q", bad)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
