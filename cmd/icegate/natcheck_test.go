package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"icegate/config"
	"icegate/stun/natcheck"
	"icegate/turn"
)

func TestParseSTUNURI(t *testing.T) {
	for in, want := range map[string]string{
		"stun:203.0.113.10":              "203.0.113.10:3478",
		"stun:203.0.113.10:3479":         "203.0.113.10:3479",
		"203.0.113.10":                   "203.0.113.10:3478",
		"stun:example.com":               "example.com:3478",
		"stun:example.com:19302":         "example.com:19302",
		"stun:[2001:db8::1]:3478":        "[2001:db8::1]:3478",
		"stun:2001:db8::1":               "[2001:db8::1]:3478",
		"stun:example.com?transport=udp": "example.com:3478",
	} {
		got, err := parseSTUNURI(in)
		if err != nil || got != want {
			t.Errorf("parseSTUNURI(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"stun:", "turn:example.com", "stuns:example.com", "stun::3478"} {
		if got, err := parseSTUNURI(bad); err == nil {
			t.Errorf("parseSTUNURI(%q) = %q, want an error", bad, got)
		}
	}
	if _, _, err := runCLI("natcheck", "-interval", "10ms", "stun:127.0.0.1"); !errors.Is(err, errUsage) {
		t.Errorf("-interval 10ms: %v, want a usage error", err)
	}
}

// freePort finds a port free on both loopback addresses.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		pc2, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.2:%d", port))
		_ = pc.Close()
		if err == nil {
			_ = pc2.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// TestNatcheckAgainstIcegate runs the command against an icegate with RFC
// 5780 on 127.0.0.1 and 127.0.0.2: no NAT on loopback, so the verdict is
// "open internet", with every test answered as RFC 5780 says.
func TestNatcheckAgainstIcegate(t *testing.T) {
	p1, p2 := freePort(t), freePort(t)
	for p2 == p1 {
		p2 = freePort(t)
	}
	hcl := fmt.Sprintf(`
listen {
  addresses = ["127.0.0.1"]
  port      = %d
  tcp = false
  tls = false
  dtls = false
}
relay {
  min_port   = 40000
  max_port   = 40999
  ipv4_bind  = "127.0.0.1"
  ipv6_bind  = ""
  private_ok = true
}
stun {
  alternate_address = "127.0.0.2"
  alternate_port    = %d
}
metrics {
  listen = ""
}
`, p1, p2)
	cfg, diags := config.Parse([]byte(hcl), "natcheck.hcl")
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	srv, err := turn.New(turnConfig(cfg), turn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	out, _, err := runCLI("natcheck", "-json", "-timeout", "300ms", "-interval", "100ms", fmt.Sprintf("stun:127.0.0.1:%d", p1))
	if err != nil {
		t.Fatal(err)
	}
	var rep natcheck.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Classic != "open internet" || rep.NAT == nil || *rep.NAT || rep.Mapping != natcheck.EndpointIndependent ||
		rep.Filtering != natcheck.EndpointIndependent || rep.ServerProblem != "" || rep.RelayNeeded == nil || *rep.RelayNeeded ||
		rep.Confidence != natcheck.High || len(rep.Peers.Relay) != 0 {
		t.Errorf("report:\n%s", out)
	}

	// -lifetime: progress on stderr, one JSON document on stdout, and the
	// test over within -lifetime-max (no NAT on loopback: the binding
	// outlives every probe).
	start := time.Now()
	out, errOut, err := runCLI("natcheck", "-json", "-timeout", "200ms", "-interval", "100ms", "-lifetime", "-lifetime-max", "2s",
		fmt.Sprintf("stun:127.0.0.1:%d", p1))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("natcheck -lifetime -lifetime-max 2s took %s", d)
	}
	rep = natcheck.Report{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	if rep.Lifetime == nil || rep.Lifetime.Result != "outlived every probe" || rep.Lifetime.BelowSeconds != nil {
		t.Errorf("lifetime %+v", rep.Lifetime)
	}
	if !strings.Contains(errOut, "natcheck: lifetime: opening ") || !strings.Contains(errOut, "alive after") || strings.Contains(out, "natcheck: lifetime") {
		t.Errorf("progress belongs on stderr only:\nstderr:\n%s\nstdout:\n%s", errOut, out)
	}

	text, _, err := runCLI("natcheck", "-timeout", "300ms", fmt.Sprintf("127.0.0.1:%d", p1))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"verdict   open internet", "mapping   endpoint-independent", "evidence:", "filtering II", "confidence high"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
}

// TestNatcheckClosedPort: against a UDP port nothing listens on (ICMP port
// unreachable), the command says the server is not answering there, not
// that UDP is blocked, and -json has null for what it could not learn.
func TestNatcheckClosedPort(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close()
	text, _, err := runCLI("natcheck", "-timeout", "200ms", "stun:"+addr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "verdict   server not answering on that port") ||
		!strings.Contains(text, "(ICMP port unreachable / connection refused)") ||
		strings.Contains(text, "UDP blocked") || strings.Contains(text, "transport=tcp") {
		t.Errorf("text report:\n%s", text)
	}
	out, _, err := runCLI("natcheck", "-json", "-timeout", "200ms", "stun:"+addr)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{"reach": "port unreachable", "udp": nil, "nat": nil, "relay_needed": nil, "mapping": "unknown"} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("JSON %q = %v (present %v), want %v\n%s", key, v, ok, want, out)
		}
	}
}

// TestFormatLifetime: the printed bounds contain the measured ones.
func TestFormatLifetime(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	for _, c := range []struct {
		l    natcheck.Lifetime
		want string
	}{
		{natcheck.Lifetime{AtLeastSeconds: f(3.75), BelowSeconds: f(5), Result: "measured", Confidence: natcheck.High}, "3.7-5.0 s (idle UDP binding)"},
		{natcheck.Lifetime{AtLeastSeconds: f(4.44), BelowSeconds: f(5.01), Result: "measured", Confidence: natcheck.High}, "4.4-5.1 s (idle UDP binding)"},
		{natcheck.Lifetime{AtLeastSeconds: f(0.3), BelowSeconds: f(0.7), Result: "measured", Confidence: natcheck.High}, "0.3-0.7 s (idle UDP binding)"},
		{natcheck.Lifetime{AtLeastSeconds: f(7.5), Result: "outlived every probe", Confidence: natcheck.High}, "at least 7.5 s (outlived every probe)"},
		{natcheck.Lifetime{AtLeastSeconds: f(7.99), Result: "outlived every probe", Confidence: natcheck.High}, "at least 7.9 s (outlived every probe)"},
		{natcheck.Lifetime{AtLeastSeconds: f(29.5), BelowSeconds: f(31.2), Result: "measured", Confidence: natcheck.Low}, "29.5-31.2 s (idle UDP binding), confidence low"},
		{natcheck.Lifetime{Result: "no result", Note: "the server refused RESPONSE-PORT (error 420)"}, "no result: the server refused RESPONSE-PORT (error 420)"},
	} {
		if got := formatLifetime(&c.l); !strings.HasPrefix(got, c.want) {
			t.Errorf("formatLifetime(%+v) = %q, want %q", c.l, got, c.want)
		}
	}
}
