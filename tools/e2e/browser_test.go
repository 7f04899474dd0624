// Package e2e runs the test page in a real browser: Debian's headless
// Chromium opens the page served by an in-process icegate, gathers relay
// candidates over TURN/UDP and TURN/TCP, takes the NAT hint through both
// RFC 5780 addresses, makes relay-only data channel calls through icegate,
// and two windows call each other through the signaling.
//
// Everything runs inside a network namespace that has only loopback
// (unshare -n), so no candidate check can leave the machine: the test
// re-executes its own binary there. Without root, unshare or chromium it
// skips, unless ICEGATE_REQUIRE_E2E=1 (as `make test` sets), when it fails.
// ICEGATE_SCREENSHOT=FILE saves a screenshot of the page after the run.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"icegate/signaling"
	"icegate/turn"
)

const (
	requireEnv = "ICEGATE_REQUIRE_E2E"
	insideEnv  = "ICEGATE_E2E_INSIDE"
	shotEnv    = "ICEGATE_SCREENSHOT"
	secret     = "e2e-secret-0123456789abcdef"
)

// The relay binds and advertises 127.0.0.1 with loopback peers allowed, so
// relay-to-relay and loopback calls work. The namespace is fresh, so the
// standard ports are free. RFC 5780 runs on 127.0.0.2 as the alternate
// address (lo holds all of 127.0.0.0/8), for the page's NAT hint.
const (
	relayPort, relayTLSPort, alternatePort = 3478, 5349, 3479
	httpListen                             = "127.0.0.1:8080"
)

var (
	primaryAddr   = netip.MustParseAddr("127.0.0.1")
	alternateAddr = netip.MustParseAddr("127.0.0.2")
)

// relayConfig is the relay's own Config; signalingConfig below names what
// it serves, as cmd/icegate translates a config file.
func relayConfig() turn.Config {
	return turn.Config{
		Realm:  "icegate-e2e",
		Listen: turn.ListenConfig{Addrs: []netip.Addr{primaryAddr}, Port: relayPort, TLSPort: relayTLSPort},
		Relay: turn.RelayConfig{MinPort: 50000, MaxPort: 50999,
			IPv4Bind: primaryAddr, IPv4Public: primaryAddr, NoIPv6: true, PrivateOK: true},
		Auth:    turn.AuthConfig{Secrets: []string{secret}},
		Policy:  turn.PolicyConfig{Presets: []string{"loopback"}},
		RFC5780: turn.RFC5780Config{Alternate: alternateAddr, AlternatePort: alternatePort},
	}
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("%s (%s=1 makes this a failure)", msg, requireEnv)
	}
	t.Skipf("%s; set %s=1 to make this a failure", msg, requireEnv)
}

func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browserNamespace skips (or fails, with ICEGATE_REQUIRE_E2E) unless a
// browser test can run here: Linux, Chromium, unshare and root for a
// network namespace of its own. It returns unshare's path.
func browserNamespace(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		skipOrFail(t, "the browser test needs Linux network namespaces")
	}
	if chromium() == "" {
		skipOrFail(t, "chromium is not installed (tools/install-test-deps.sh installs Debian's)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		skipOrFail(t, "unshare is not installed (util-linux)")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "the browser test runs in its own network namespace (unshare -n), which needs root")
	}
	return unshare
}

// TestBrowser re-runs itself inside a fresh network namespace.
func TestBrowser(t *testing.T) {
	if os.Getenv(insideEnv) == "1" {
		inside(t)
		return
	}
	unshare := browserNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	args := []string{"-n", "sh", "-c", `ip link set lo up && exec "$0" -test.run '^TestBrowser$' -test.v -test.count=1`, os.Args[0]}
	cmd := exec.CommandContext(ctx, unshare, args...)
	cmd.Env = append(os.Environ(), insideEnv+"=1")
	if p := os.Getenv(shotEnv); p != "" {
		abs, _ := filepath.Abs(p)
		cmd.Env = append(cmd.Env, shotEnv+"="+abs)
	}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Log(line)
	}
	if err != nil {
		if strings.Contains(string(out), "unshare failed") || strings.Contains(string(out), "Operation not permitted") {
			skipOrFail(t, "cannot create a network namespace here: %v", err)
		}
		t.Fatalf("the browser test failed inside its namespace: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestBrowser") {
		t.Fatal("the browser test did not pass inside its namespace")
	}
}

// inside is the test proper, in a namespace with only lo.
func inside(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			t.Fatalf("interface %s in the namespace: the test must see loopback only", i.Name)
		}
	}
	base := startIcegate(t)
	b := startBrowser(t, chromium())
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	// 1. Candidates, the NAT hint, and relay-only calls over TURN/UDP and
	// TURN/TCP.
	start := time.Now()
	page := b.open(ctx, "alice", base+"/?auto=gather,nat,loopback,room&room=e2e&bytes=1048576")
	var res pageResults
	if err := page.eval(ctx, "window.icegate.done", &res); err != nil {
		t.Fatalf("page tests: %v", err)
	}
	t.Logf("gathering and relay-only calls took %v", time.Since(start).Round(time.Millisecond))
	kinds := map[string]gatherResult{}
	for url, g := range res.Gather {
		kinds[g.Kind] = g
		t.Logf("%-9s %-45s relay=%v srflx=%v errors=%v verdict=%s %q", g.Kind, url, g.Relay != nil, g.Srflx != nil, g.Errors, g.Verdict.Status, g.Verdict.Text)
	}
	for _, kind := range []string{"TURN/UDP", "TURN/TCP"} {
		g, ok := kinds[kind]
		switch {
		case !ok:
			t.Errorf("no %s test ran", kind)
		case g.Relay == nil || g.Verdict.Status != "ok":
			t.Errorf("%s: no relay candidate from icegate (%+v)", kind, g)
		case g.Relay.Address != "127.0.0.1" || g.Relay.Port < 50000 || g.Relay.Port > 50999:
			t.Errorf("%s: relay candidate %s:%d is not from icegate's relay range", kind, g.Relay.Address, g.Relay.Port)
		}
	}
	checkNAT(t, res.NAT)
	if len(res.Calls) < 2 {
		t.Errorf("relay-only calls: %+v", res.Calls)
	}
	for url, c := range res.Calls {
		t.Logf("relay-only call via %s: ok=%v open=%dms rtt=%.2fms %.1f Mbit/s pair=%q err=%q", url, c.OK, c.OpenMs, c.RTTMs, c.Mbit, pairText(c.Pair), c.Error)
		if !c.OK || c.Pair == nil || c.Pair.Local.Type != "relay" || c.Pair.Remote.Type != "relay" {
			t.Errorf("relay-only call via %s did not run through the relay: %+v", url, c)
		}
	}
	decided := map[string]int{}
	for _, d := range res.Decisions {
		decided[d.Kind]++
	}
	t.Logf("server decisions seen by the page: %v", decided)
	if decided["allocation-created"] == 0 || decided["authenticated"] == 0 {
		t.Errorf("the page did not get the server's decisions: %v", decided)
	}

	// 2. A second window joins the room the first one is in, and they
	// connect through the signaling.
	start = time.Now()
	w1 := page
	w2 := b.open(ctx, "bob", base+"/?room=e2e&auto=room")
	if err := w2.eval(ctx, "window.icegate.done.then(() => true)", nil); err != nil {
		t.Fatalf("second window: %v", err)
	}
	for _, w := range []*tab{w1, w2} {
		var peers map[string]peerResult
		deadline := time.Now().Add(30 * time.Second)
		for {
			if err := w.eval(ctx, "window.icegate.results.peers", &peers); err != nil {
				t.Fatal(err)
			}
			if connected(peers) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not connected to the other window in 30s: %+v", w.name, peers)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for id, p := range peers {
			t.Logf("%s ↔ %s: %s, pair %q, got %q", w.name, id, p.State, pairText(p.Pair), p.Message)
		}
	}
	t.Logf("room call connected in %v", time.Since(start).Round(time.Millisecond))

	if path := os.Getenv(shotEnv); path != "" {
		png, err := page.screenshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
}

func connected(peers map[string]peerResult) bool {
	for _, p := range peers {
		if p.Connected && p.Pair != nil && strings.HasPrefix(p.Message, "hello from ") {
			return true
		}
	}
	return false
}

type candidate struct {
	Type, Protocol, Address, RelayProtocol string
	Port                                   int
}

type gatherResult struct {
	Kind   string
	Relay  *candidate
	Srflx  *candidate
	Errors []struct {
		Code int
		Text string
	}
	Verdict struct {
		Status, Text string
	}
}

type pair struct {
	Local, Remote candidate
	Text          string
}

func pairText(p *pair) string {
	if p == nil {
		return ""
	}
	return p.Text
}

type callResult struct {
	OK     bool
	OpenMs int     `json:"openMs"`
	RTTMs  float64 `json:"rttMs"`
	Mbit   float64 `json:"mbitPerSec"`
	Pair   *pair
	Error  string
}

type peerResult struct {
	State     string
	Connected bool
	Pair      *pair
	Message   string
}

type natResult struct {
	Probes []struct {
		URL    string
		Seen   []string
		Errors []struct {
			Code int
			Text string
		}
	}
	Candidates []map[string]any
	SamePort   bool
	Elapsed    float64
	Verdict    struct{ Mapping, Status, Text string }
}

type pageResults struct {
	Gather    map[string]gatherResult
	NAT       *natResult `json:"nat"`
	Calls     map[string]callResult
	Decisions []struct{ Kind, Detail string }
}

// checkNAT checks the page's NAT hint: through both of the server's
// RFC 5780 addresses (127.0.0.1:3478 and 127.0.0.2:3479) the server saw the
// same address, which is the browser's own (no NAT on loopback).
func checkNAT(t *testing.T, nat *natResult) {
	t.Helper()
	if nat == nil {
		t.Error("the NAT hint did not run")
		return
	}
	for _, p := range nat.Probes {
		t.Logf("NAT hint: through %-20s saw %v errors %v", p.URL, p.Seen, p.Errors)
	}
	t.Logf("NAT hint: %s (%s) in %.0f ms: %q", nat.Verdict.Mapping, nat.Verdict.Status, nat.Elapsed, nat.Verdict.Text)
	if len(nat.Probes) != 2 || nat.Probes[0].URL != "stun:127.0.0.1:3478" || nat.Probes[1].URL != "stun:127.0.0.2:3479" {
		t.Errorf("NAT hint: probed %+v, want stun:127.0.0.1:3478 and stun:127.0.0.2:3479 from hello", nat.Probes)
		return
	}
	a, b := nat.Probes[0].Seen, nat.Probes[1].Seen
	if len(a) != 1 || len(b) != 1 || a[0] != b[0] || !strings.HasPrefix(a[0], "127.0.0.1:") {
		t.Errorf("NAT hint: mapped %v through the primary and %v through the alternate, want the same 127.0.0.1 port (candidates %v)", a, b, nat.Candidates)
	}
	if nat.Verdict.Mapping != "no-nat" || nat.Verdict.Status != "ok" || !nat.SamePort || !strings.Contains(nat.Verdict.Text, "No NAT") {
		t.Errorf("NAT hint verdict on loopback: %+v, want no NAT with the same port through both", nat.Verdict)
	}
}

// startIcegate runs the relay and the HTTP server as `icegate serve` does,
// and returns the page's base URL.
func startIcegate(t *testing.T) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
	// The signaling server's own Config, with the signaling settings at
	// their defaults: the relay's fixed ports and transports (all on, a
	// self-signed certificate), and the RFC 5780 pair for the page's NAT
	// hint.
	sig := signaling.Config{
		Relay: signaling.Relay{Port: relayPort, TLSPort: relayTLSPort, UDP: true, TCP: true, TLS: true, SelfSignedCert: true},
		NATProbe: signaling.NATProbe{
			Primary:   netip.AddrPortFrom(primaryAddr, relayPort),
			Alternate: netip.AddrPortFrom(alternateAddr, alternatePort),
		},
	}
	hub, err := signaling.New(sig, signaling.Options{Logger: log, Secret: func() string { return secret }, Version: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := turn.New(relayConfig(), turn.Options{Logger: log, Events: func(e turn.Event) { hub.RelayEvent(signaling.RelayEvent(e)) }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", httpListen)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: hub.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		if err := hub.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Error(err)
		}
		_ = srv.Close()
	})
	return "http://" + ln.Addr().String()
}

// testWriter sends logs to t.Log while the test runs, and to stderr
// after it: a relay's goroutine can log after its server's Close returned
// (an allocation pion deletes as the server closes), and t.Log after the
// test completed panics.
type testWriter struct {
	t    *testing.T
	mu   *sync.Mutex
	done *bool
}

// newTestWriter returns t's writer. Its cleanup, registered first, runs
// after every cleanup registered later (the servers' Close).
func newTestWriter(t *testing.T) testWriter {
	w := testWriter{t: t, mu: new(sync.Mutex), done: new(bool)}
	t.Cleanup(func() {
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if *w.done {
		return os.Stderr.Write(p)
	}
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
