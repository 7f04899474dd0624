package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

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
	srv, err := turn.New(cfg, turn.Options{})
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
	if rep.Classic != "open internet" || rep.NAT || rep.Mapping != natcheck.EndpointIndependent ||
		rep.Filtering != natcheck.EndpointIndependent || rep.ServerProblem != "" || rep.RelayNeeded {
		t.Errorf("report:\n%s", out)
	}

	text, _, err := runCLI("natcheck", "-timeout", "300ms", fmt.Sprintf("127.0.0.1:%d", p1))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"verdict   open internet", "mapping   endpoint-independent", "evidence:", "filtering II"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
}
