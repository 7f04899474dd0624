package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"icegate/internal/redistest"
	"icegate/turn"
)

// healthConfig writes an icegate config for the health tests: loopback
// listeners (TLS from certFile), metrics, and extra (the http block, a
// cluster) appended.
func healthConfig(t *testing.T, path string, port, tlsPort, metricsPort int, certFile, keyFile, extra string) {
	t.Helper()
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
  min_port    = 47100
  max_port    = 47199
  ipv4_bind   = "127.0.0.1"
  ipv4_public = "127.0.0.1"
  ipv6_bind   = ""
  private_ok  = true
}
auth { secrets = ["health-test-secret-0123456789"] }
policy { presets = ["loopback"] }
metrics { listen = "127.0.0.1:%d" }
shutdown_grace = "1s"
%s`, port, tlsPort, certFile, keyFile, metricsPort, extra)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

// getReport fetches a health endpoint: its status code and its report.
func getReport(t *testing.T, url string) (int, report) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var rep report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("%s: %d, not JSON: %v\n%s", url, resp.StatusCode, err, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", url, ct)
	}
	if (resp.StatusCode == http.StatusOK) != (rep.Status == "ok") {
		t.Errorf("%s: status code %d with report status %q", url, resp.StatusCode, rep.Status)
	}
	return resp.StatusCode, rep
}

// checkOf returns the named check of a report.
func checkOf(t *testing.T, rep report, name string) check {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, rep)
	return check{}
}

// waitReport polls url until its status code is want, and returns the report.
func waitReport(t *testing.T, url string, want int, within time.Duration) report {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, rep := getReport(t, url)
		if code == want {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %d after %v, want %d: %+v", url, code, within, want, rep)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHealthEndpoints runs the binary: /healthz and /readyz answer 200
// with every check named on the metrics listener and (with
// http.health_endpoints) the HTTP listener; SIGUSR1 turns /readyz to 503
// naming the drain while /healthz stays 200; a reload that switches
// http.health_endpoints off takes them off HTTP only. The scrape carries
// the build info, the relay port pool and the TLS certificate's expiry.
func TestHealthEndpoints(t *testing.T) {
	dir := t.TempDir()
	port, tlsPort, metricsPort, httpPort := freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t)
	certFile, keyFile := writeCert(t, dir, "cert-health")
	cfg := filepath.Join(dir, "icegate.hcl")
	httpBlock := func(on bool) string {
		return fmt.Sprintf("http {\n  listen = \"127.0.0.1:%d\"\n  health_endpoints = %t\n}\n", httpPort, on)
	}
	healthConfig(t, cfg, port, tlsPort, metricsPort, certFile, keyFile, httpBlock(true))
	p := startServe(t, cfg)
	p.waitLog(0, "icegate ready")
	metricsBase := fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	httpBase := fmt.Sprintf("http://127.0.0.1:%d", httpPort)

	for _, base := range []string{metricsBase, httpBase} {
		code, rep := getReport(t, base+"/healthz")
		if code != http.StatusOK {
			t.Fatalf("%s/healthz: %d %+v", base, code, rep)
		}
		if c := checkOf(t, rep, "relay_event_loops"); !c.OK || !strings.Contains(c.Detail, "answered") && runtime.GOOS == "linux" {
			t.Errorf("relay_event_loops: %+v", c)
		}
		for _, name := range []string{"control_loop", "relay_allocations"} {
			if c := checkOf(t, rep, name); !c.OK {
				t.Errorf("%s: %+v", name, c)
			}
		}
		code, rep = getReport(t, base+"/readyz")
		if code != http.StatusOK {
			t.Fatalf("%s/readyz: %d %+v", base, code, rep)
		}
		l := checkOf(t, rep, "listeners")
		for _, want := range []string{fmt.Sprintf("udp 127.0.0.1:%d", port), fmt.Sprintf("tls 127.0.0.1:%d", tlsPort),
			fmt.Sprintf("metrics 127.0.0.1:%d", metricsPort), fmt.Sprintf("http 127.0.0.1:%d", httpPort)} {
			if !strings.Contains(l.Detail, want) {
				t.Errorf("listeners %q lacks %q", l.Detail, want)
			}
		}
	}

	metricsURL := metricsBase + "/metrics"
	if v := metric(t, metricsURL, fmt.Sprintf(`icegate_build_info{goversion=%q,version=%q}`, runtime.Version(), "dev")); v != "1" {
		// A plain go build records a VCS version or a pseudo-version:
		// look for the series whatever its version.
		if !scrapeHas(t, metricsURL, `icegate_build_info{goversion="`+runtime.Version()+`",version="`) {
			t.Errorf("icegate_build_info missing")
		}
	}
	if v := metric(t, metricsURL, `icegate_relay_ports{family="ipv4",transport="udp"}`); v != "100" {
		t.Errorf("icegate_relay_ports ipv4 udp = %q, want 100", v)
	}
	if v := metric(t, metricsURL, `icegate_relay_ports_in_use{family="ipv4",transport="udp"}`); v != "0" {
		t.Errorf("icegate_relay_ports_in_use ipv4 udp = %q, want 0", v)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	exp := metric(t, metricsURL, fmt.Sprintf(`icegate_certificate_expiry_timestamp_seconds{name=%q,source="tls"}`, certFile))
	if f, err := strconv.ParseFloat(exp, 64); err != nil || int64(f) != pair.Leaf.NotAfter.Unix() {
		t.Errorf("certificate expiry %q, want %d", exp, pair.Leaf.NotAfter.Unix())
	}

	mark := p.stderr.Len()
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	p.waitLog(mark, "SIGUSR1: draining")
	for _, base := range []string{metricsBase, httpBase} {
		rep := waitReport(t, base+"/readyz", http.StatusServiceUnavailable, 5*time.Second)
		if c := checkOf(t, rep, "draining"); c.OK || !strings.Contains(c.Detail, "draining") {
			t.Errorf("draining check while draining: %+v", c)
		}
		if c := checkOf(t, rep, "listeners"); !c.OK {
			t.Errorf("listeners while draining: %+v", c)
		}
		if code, rep := getReport(t, base+"/healthz"); code != http.StatusOK {
			t.Errorf("%s/healthz while draining: %d %+v (draining is not a reason to restart)", base, code, rep)
		}
	}

	// Off on HTTP by a reload; the metrics listener keeps them.
	healthConfig(t, cfg, port, tlsPort, metricsPort, certFile, keyFile, httpBlock(false))
	p.hup("configuration reloaded")
	resp, err := http.Get(httpBase + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("HTTP /readyz with health_endpoints off: %d, want 404", resp.StatusCode)
	}
	if code, _ := getReport(t, metricsBase+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("metrics /readyz after the reload: %d, want 503 (still draining)", code)
	}
}

// scrapeHas reports whether a line of the scrape at url starts with prefix.
func scrapeHas(t *testing.T, url, prefix string) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}

// TestReadyzClusterBus: with a cluster block, /readyz follows the bus: 200
// while Redis answers, 503 naming cluster_bus once a real redis-server is
// killed, 200 again when it is back. /healthz stays 200 throughout (Redis
// away is not cured by restarting icegate).
func TestReadyzClusterBus(t *testing.T) {
	redis := redistest.Start(t)
	dir := t.TempDir()
	port, tlsPort, metricsPort, httpPort := freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t)
	certFile, keyFile := writeCert(t, dir, "cert-bus")
	cfg := filepath.Join(dir, "icegate.hcl")
	healthConfig(t, cfg, port, tlsPort, metricsPort, certFile, keyFile, fmt.Sprintf(`http { listen = "127.0.0.1:%d" }
cluster {
  redis_url = %q
  node_id   = "health-a"
}
`, httpPort, redis.URL()))
	p := startServe(t, cfg)
	p.waitLog(0, "icegate ready")
	base := fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	rep := waitReport(t, base+"/readyz", http.StatusOK, 10*time.Second)
	if c := checkOf(t, rep, "cluster_bus"); !c.OK {
		t.Fatalf("cluster_bus with Redis up: %+v", c)
	}
	if !scrapeHas(t, base+"/metrics", `icegate_signaling_sessions{state="connected"} 0`) {
		t.Errorf("no icegate_signaling_sessions in the scrape")
	}

	redis.Stop()
	rep = waitReport(t, base+"/readyz", http.StatusServiceUnavailable, 20*time.Second)
	if c := checkOf(t, rep, "cluster_bus"); c.OK || !strings.Contains(c.Detail, "redis") {
		t.Errorf("cluster_bus with Redis down: %+v", c)
	}
	if c := checkOf(t, rep, "draining"); !c.OK {
		t.Errorf("draining with Redis down: %+v", c)
	}
	if code, rep := getReport(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with Redis down: %d %+v", code, rep)
	}

	redis.Restart()
	waitReport(t, base+"/readyz", http.StatusOK, 30*time.Second)
}

// TestHealthzControlLoopStuck: a serving process whose control loop does
// not come round (stuck in a reload, say) fails /healthz with 503 naming
// it, within the probe's timeout; while starting or stopping the check
// passes (a restart then would only cut the start or the drain short).
func TestHealthzControlLoopStuck(t *testing.T) {
	cfg := loadFile(t, t.TempDir(), `listen {
  addresses = ["127.0.0.1"]
  tls       = false
  dtls      = false
}
relay {
  min_port    = 47200
  max_port    = 47299
  ipv4_bind   = "127.0.0.1"
  ipv4_public = "127.0.0.1"
  ipv6_bind   = ""
  private_ok  = true
}
metrics { listen = "" }
`)
	tc := turnConfig(cfg)
	tc.Listen.Port = 0 // a port the system picks
	srv, err := turn.New(tc, turn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h := newHealth(srv)
	ts := httptest.NewServer(h.handler(nil))
	defer ts.Close()

	if code, rep := getReport(t, ts.URL+"/healthz"); code != http.StatusOK || checkOf(t, rep, "control_loop").Detail != "starting" {
		t.Fatalf("starting: %d %+v", code, rep)
	}
	if code, rep := getReport(t, ts.URL+"/readyz"); code != http.StatusServiceUnavailable || checkOf(t, rep, "listeners").OK {
		t.Fatalf("readyz while starting: %d %+v", code, rep)
	}

	// Serving, with a loop that answers.
	h.state.Store(stateServing)
	stop := make(chan struct{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			select {
			case done := <-h.control:
				close(done)
			case <-stop:
				return
			}
		}
	}()
	if code, rep := getReport(t, ts.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("serving: %d %+v", code, rep)
	}
	close(stop)
	<-served

	// Serving, with nobody at the loop.
	start := time.Now()
	code, rep := getReport(t, ts.URL+"/healthz")
	if code != http.StatusServiceUnavailable || checkOf(t, rep, "control_loop").OK {
		t.Fatalf("stuck loop: %d %+v", code, rep)
	}
	if took := time.Since(start); took > healthProbeTimeout+time.Second {
		t.Fatalf("the stuck loop's probe took %v", took)
	}
	if c := checkOf(t, rep, "relay_allocations"); !c.OK {
		t.Fatalf("relay_allocations: %+v", c)
	}

	h.state.Store(stateStopping)
	if code, rep := getReport(t, ts.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("stopping: %d %+v", code, rep)
	}
	if code, rep := getReport(t, ts.URL+"/readyz"); code != http.StatusServiceUnavailable || checkOf(t, rep, "listeners").Detail != "shutting down" {
		t.Fatalf("readyz while stopping: %d %+v", code, rep)
	}
	resp, err := http.Post(ts.URL+"/readyz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /readyz: %d", resp.StatusCode)
	}
}
