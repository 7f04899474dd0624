package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"icegate/internal/testutil"
)

// notifySocket is a fake systemd: the unixgram socket $NOTIFY_SOCKET names,
// collecting every notification the server sends.
type notifySocket struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n := &notifySocket{path: path, msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// next returns the next notification that is not a bare WATCHDOG=1 ping
// (unless want is WATCHDOG=1), failing unless its first line is want.
func (n *notifySocket) next(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed waiting for %s", want)
			}
			if m == "WATCHDOG=1\n" && want != "WATCHDOG=1" {
				continue
			}
			if first, _, _ := strings.Cut(m, "\n"); first != want {
				t.Fatalf("notification %q, want %s first", m, want)
			}
			return m
		case <-timeout:
			t.Fatalf("no %s notification", want)
			return ""
		}
	}
}

// until skips notifications until one whose first line is want.
func (n *notifySocket) until(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed waiting for %s", want)
			}
			if first, _, _ := strings.Cut(m, "\n"); first == want {
				return m
			}
		case <-timeout:
			t.Fatalf("no %s notification", want)
			return ""
		}
	}
}

// startServe starts `icegate serve -config cfg` with extra environment
// variables, stopping it with SIGTERM at the end of the test.
func startServe(t *testing.T, cfg string, env ...string) *process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, icegateBinary(t), "serve", "-config", cfg)
	cmd.Env = append(os.Environ(), env...)
	p := &process{t: t, cmd: cmd, stderr: &testutil.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = io.Discard, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("server log:\n%s", p.stderr.String())
		}
	})
	return p
}

// TestSystemdNotify runs the binary under a fake NOTIFY_SOCKET with
// WATCHDOG_USEC set: READY=1 comes only once the TURN and HTTP listeners
// accept, WATCHDOG=1 pings follow at about half of WATCHDOG_USEC, SIGHUP
// is RELOADING=1 (with a MONOTONIC_USEC of now) and then READY=1, SIGTERM
// is STOPPING=1 before the process exits 0, in that order.
func TestSystemdNotify(t *testing.T) {
	notify := listenNotify(t)
	port, httpPort := freeTCPUDPPort(t), freeTCPUDPPort(t)
	cfg := filepath.Join(t.TempDir(), "icegate.hcl")
	src := fmt.Sprintf(`log { format = "json" }
listen {
  addresses = ["127.0.0.1"]
  port      = %d
  tls_port  = %d
  dtls      = false
}
relay {
  min_port   = 46000
  max_port   = 46100
  ipv4_bind  = "127.0.0.1"
  ipv6_bind  = ""
  private_ok = true
}
metrics { listen = "" }
http { listen = "127.0.0.1:%d" }
shutdown_grace = "1s"
`, port, freeTCPUDPPort(t), httpPort)
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	const watchdogUsec = 300000 // pings every 150 ms
	p := startServe(t, cfg, "NOTIFY_SOCKET="+notify.path, "WATCHDOG_USEC="+strconv.Itoa(watchdogUsec))

	ready := notify.next(t, "READY=1")
	if !strings.Contains(ready, "STATUS=serving") {
		t.Errorf("READY=1 without a STATUS: %q", ready)
	}
	// Ready means bound: both listeners answer at once.
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("TURN TCP listener not accepting at READY=1: %v", err)
	}
	c.Close()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/ice-servers", httpPort))
	if err != nil {
		t.Fatalf("HTTP listener not serving at READY=1: %v", err)
	}
	resp.Body.Close()

	start := time.Now()
	notify.next(t, "WATCHDOG=1")
	notify.next(t, "WATCHDOG=1")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("two watchdog pings took %v, want about 300ms", d)
	}

	before := monotonicUsec()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	m := notify.next(t, "RELOADING=1")
	var usec uint64
	for line := range strings.Lines(m) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "MONOTONIC_USEC="); ok {
			usec, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	if after := monotonicUsec(); usec < before || usec > after {
		t.Errorf("RELOADING=1 MONOTONIC_USEC=%d, want between %d and %d (CLOCK_MONOTONIC at the signal): %q", usec, before, after, m)
	}
	notify.next(t, "READY=1")
	p.waitLog(0, "configuration reloaded")

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notify.next(t, "STOPPING=1")
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// TestSignalsDrainAndCerts: SIGUSR1 makes the server refuse new
// allocations with a 508 that says it is draining, while a live
// allocation keeps relaying, icegate_draining turns 1, the process keeps
// running and systemd's STATUS says so; a second SIGUSR1 and a SIGHUP keep
// it draining. SIGUSR2 loads the TLS certificate files again, and SIGTERM
// then ends the server.
func TestSignalsDrainAndCerts(t *testing.T) {
	notify := listenNotify(t)
	dir := t.TempDir()
	port, tlsPort, metricsPort, httpPort := freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t)
	certA, keyA := writeCert(t, dir, "cert-a")
	cfg := filepath.Join(dir, "icegate.hcl")
	src := fmt.Sprintf(`log { format = "json" }
listen {
  addresses = ["127.0.0.1"]
  port      = %d
  tls_port  = %d
  dtls      = false
}
tls {
  cert_file = %q
  key_file  = %q
}
relay {
  min_port    = 46200
  max_port    = 46300
  ipv4_bind   = "127.0.0.1"
  ipv4_public = "127.0.0.1"
  ipv6_bind   = ""
  private_ok  = true
}
auth {
  user "alice" { password = "rabbit" }
  secrets = ["drain-test-secret"]
}
policy { presets = ["loopback"] }
metrics { listen = "127.0.0.1:%d" }
http { listen = "127.0.0.1:%d" }
shutdown_grace = "1s"
`, port, tlsPort, certA, keyA, metricsPort, httpPort)
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, cfg, "NOTIFY_SOCKET="+notify.path)
	notify.next(t, "READY=1")
	server := fmt.Sprintf("127.0.0.1:%d", port)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	signal := func(sig os.Signal, wantLog string) {
		t.Helper()
		mark := p.stderr.Len()
		if err := p.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		p.waitLog(mark, wantLog)
	}

	peer := udpEchoPeer(t, "127.0.0.1")
	live, err := turnRelay(t, server, "alice", "rabbit")
	if err != nil {
		t.Fatal(err)
	}
	if !echoes(live, peer) {
		t.Fatal("no relaying before the drain")
	}
	if v := metric(t, metricsURL, "icegate_draining"); v != "0" {
		t.Fatalf("icegate_draining %q before SIGUSR1", v)
	}
	// What signaling hands out: a turn: URL while serving, none while
	// draining (a browser would only be refused).
	iceServers := func() string {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/ice-servers", httpPort))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if s := iceServers(); !strings.Contains(s, "turn:") {
		t.Fatalf("no turn: URL before the drain: %s", s)
	}

	signal(syscall.SIGUSR1, "SIGUSR1: draining")
	if m := notify.next(t, "STATUS=draining: new allocations refused"); m == "" {
		t.Fatal("no STATUS")
	}
	_, err = turnRelay(t, server, "alice", "rabbit")
	if err == nil || !strings.Contains(err.Error(), "draining") || !strings.Contains(err.Error(), "508") {
		t.Fatalf("Allocate while draining: %v, want a 508 that says the server is draining", err)
	}
	if !echoes(live, peer) {
		t.Fatal("the live allocation stopped relaying when the drain began")
	}
	if v := metric(t, metricsURL, "icegate_draining"); v != "1" {
		t.Fatalf("icegate_draining %q after SIGUSR1", v)
	}
	if s := iceServers(); strings.Contains(s, "turn:") || strings.Contains(s, "turns:") || !strings.Contains(s, "stun:") {
		t.Fatalf("signaling hands out TURN while draining: %s", s)
	}
	signal(syscall.SIGUSR1, "SIGUSR1: already draining")
	signal(syscall.SIGHUP, "configuration reloaded")
	if _, err := turnRelay(t, server, "alice", "rabbit"); err == nil {
		t.Fatal("a SIGHUP ended the drain")
	}
	if p.cmd.ProcessState != nil {
		t.Fatal("the server exited while draining")
	}

	servedCN := func() string {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tlsPort), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := servedCN(); cn != "cert-a" {
		t.Fatalf("TLS serves %q, want cert-a", cn)
	}
	// The renewed pair replaces the files in place, as certbot's hooks do.
	certB, keyB := writeCert(t, t.TempDir(), "cert-b")
	for from, to := range map[string]string{certB: certA, keyB: keyA} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	signal(syscall.SIGUSR2, "SIGUSR2: certificates loaded again")
	if cn := servedCN(); cn != "cert-b" {
		t.Fatalf("TLS serves %q after SIGUSR2, want cert-b", cn)
	}
	if !echoes(live, peer) {
		t.Fatal("the live allocation stopped relaying at SIGUSR2")
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notify.until(t, "STOPPING=1")
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}
