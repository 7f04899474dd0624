package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.yaml.in/yaml/v3"

	"icegate/internal/redistest"
)

// alertRules is the part of a Prometheus rules file the test reads.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// grafanaPanel is the part of a dashboard panel the test reads.
type grafanaPanel struct {
	Title   string         `json:"title"`
	Type    string         `json:"type"`
	Panels  []grafanaPanel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

var metricName = regexp.MustCompile(`\bicegate_[a-z0-9_]+`)

// balanced reports whether expr's brackets pair up: a cheap guard against
// a PromQL expression cut short in editing (promtool is not installed
// here to check more).
func balanced(expr string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for _, r := range expr {
		switch {
		case r == '"':
			inString = !inString
		case inString:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !inString
}

// deployExprs parses deploy/grafana/icegate.json and
// deploy/prometheus/alerts.yml and returns every PromQL expression in
// them (with a name saying where it is) and every metric name they use.
func deployExprs(t *testing.T) (exprs map[string]string, names []string) {
	t.Helper()
	exprs = map[string]string{}
	raw, err := os.ReadFile("../../deploy/grafana/icegate.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string         `json:"title"`
		UID        string         `json:"uid"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("icegate.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("icegate.json: title %q uid %q, %d panels", dash.Title, dash.UID, len(dash.Panels))
	}
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("dashboard panel %q has no query", p.Title)
			}
			for i, tg := range p.Targets {
				exprs[fmt.Sprintf("panel %q query %d", p.Title, i)] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			exprs["variable "+v.Name] = v.Definition
		}
	}

	raw, err = os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true) // a misspelt key (exp: for expr:) is an error, as in Prometheus
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	if len(rules.Groups) == 0 {
		t.Fatal("alerts.yml: no groups")
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert rule %+v lacks a name, an expression, a severity or a summary", r)
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s twice", r.Alert)
			}
			alerts[r.Alert] = true
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			exprs["alert "+r.Alert] = r.Expr
			for k, a := range r.Annotations {
				exprs["alert "+r.Alert+" annotation "+k] = a
			}
		}
	}
	// What the issue asks the alerts to cover.
	for _, want := range []string{"icegate_ready", "icegate_draining", "icegate_certificate_expiry_timestamp_seconds",
		"icegate_relay_ports_in_use", "icegate_cluster_redis_errors_total", "icegate_allocation_attempts_total"} {
		found := false
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				found = found || strings.Contains(r.Expr, want)
			}
		}
		if !found {
			t.Errorf("no alert rule uses %s", want)
		}
	}

	seen := map[string]bool{}
	for where, e := range exprs {
		if !strings.Contains(where, "annotation") && !balanced(e) {
			t.Errorf("%s: unbalanced brackets in %q", where, e)
		}
		for _, n := range metricName.FindAllString(e, -1) {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return exprs, names
}

// scrapedNames returns the metric names a scrape of url exports, with a
// histogram's _bucket, _sum and _count series.
func scrapedNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = true
			if f[3] == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					out[f[2]+s] = true
				}
			}
		}
	}
	return out
}

// TestDeployMetrics: the Grafana dashboard is JSON and the alert rules
// YAML of the shape Prometheus reads, and every metric they name is one a
// running server exports. The server runs in a cluster on a real
// redis-server and is given the traffic that makes its labelled series
// appear (an allocation, a refused credential, a denied peer, a malformed
// datagram, a TCP connection, signaling messages and a refused origin,
// then Redis going away), since a counter with labels is exported only
// once it has one.
func TestDeployMetrics(t *testing.T) {
	_, names := deployExprs(t)
	redis := redistest.Start(t)
	dir := t.TempDir()
	port, tlsPort, metricsPort, httpPort := freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t)
	certFile, keyFile := writeCert(t, dir, "cert-deploy")
	cfg := filepath.Join(dir, "icegate.hcl")
	healthConfig(t, cfg, port, tlsPort, metricsPort, certFile, keyFile, fmt.Sprintf(`http { listen = "127.0.0.1:%d" }
cluster {
  redis_url = %q
  node_id   = "deploy-a"
}
`, httpPort, redis.URL()))
	// The denied peer range: a permission there is refused (counted by
	// rule), nothing is sent.
	src, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src = []byte(strings.Replace(string(src), `policy { presets = ["loopback"] }`,
		`policy {
  presets = ["loopback"]
  deny    = ["10.200.99.0/24"]
}`, 1))
	src = []byte(strings.Replace(string(src), `auth { secrets = ["health-test-secret-0123456789"] }`,
		`auth {
  user "alice" { password = "rabbit" }
}`, 1))
	if err := os.WriteFile(cfg, src, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, cfg)
	p.waitLog(0, "icegate ready")
	server := fmt.Sprintf("127.0.0.1:%d", port)

	relay, err := turnRelay(t, server, "alice", "rabbit")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = relay.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(10, 200, 99, 1), Port: 9})
	if _, err := turnRelay(t, server, "alice", "wrong"); err == nil {
		t.Fatal("a wrong password allocated")
	}
	if c, err := net.Dial("udp", server); err == nil {
		_, _ = c.Write([]byte("not stun, not channel data"))
		c.Close()
	}
	if c, err := net.Dial("tcp", server); err == nil {
		c.Close()
	}
	wsURL := fmt.Sprintf("ws://127.0.0.1:%d/ws", httpPort)
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Origin": {"https://elsewhere.example"}}); err == nil {
		t.Fatal("a foreign origin was let in")
	} else if resp != nil {
		resp.Body.Close()
	}
	ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var hello map[string]any
	if err := ws.ReadJSON(&hello); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteJSON(map[string]string{"type": "join", "room": "deploy-test"}); err != nil {
		t.Fatal(err)
	}
	var joined map[string]any
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := ws.ReadJSON(&joined); err != nil {
		t.Fatal(err)
	}

	// Scraped with Redis up (the session counts come from the bus), then
	// with Redis away (the bus counts its failed operations).
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	exported := scrapedNames(t, metricsURL)
	redis.Stop()
	waitReport(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", metricsPort), http.StatusServiceUnavailable, 20*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		maps.Copy(exported, scrapedNames(t, metricsURL))
		if exported["icegate_cluster_redis_errors_total"] || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range names {
		if exported[n] {
			continue
		}
		t.Errorf("the dashboard or the alerts use %s, which the server does not export", n)
	}
}
