package natlab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// natAddr2 is the address the router's SNAT moves to halfway through
// TestNATLabAutoPublic (a cloud instance given a new public IP).
const natAddr2 = "203.0.113.2"

// TestNATLabAutoPublic runs icegate behind the lab's NAT with
// relay.ipv4_public = "auto", asking three sockets of the public icegate
// (the lab's RFC 5780 server) for its address: the relayed address an
// Allocate from coturn's uclient gets must be the NAT's, and after the
// router's SNAT address changes, the next discovery round must advertise
// the new one to the next Allocate.
func TestNATLabAutoPublic(t *testing.T) {
	if why := available(); why != "" {
		if os.Getenv("ICEGATE_REQUIRE_NATLAB") == "1" {
			t.Fatalf("NAT lab required (ICEGATE_REQUIRE_NATLAB=1) but cannot run: %s", why)
		}
		t.Skipf("NAT lab skipped: %s. turn's TestDiscoverPublic and stun/natcheck's vnet tests still ran.", why)
	}
	removeStale()
	bin := buildIcegate(t)
	l := newLab(t, scenario{name: "autopub", nft: `table ip lab {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" snat ip to ` + natAddr + `
  }
}`})
	l.must("ip", "-n", l.rtr, "addr", "add", natAddr2+"/24", "dev", "wan")
	l.startServers(bin)

	cfg := fmt.Sprintf(`realm = "natlab"
log {
  level = "debug"
}
listen {
  addresses = ["%[1]s"]
  port      = 3478
  tls       = false
  dtls      = false
}
relay {
  min_port          = 49152
  max_port          = 49999
  ipv4_bind         = "%[1]s"
  ipv4_public       = "auto"
  discover_with     = ["%[2]s:3478", "%[2]s:3479", "%[3]s:3478"]
  discover_interval = "10s"
  ipv6_bind         = ""
}
auth {
  user "%[4]s" {
    password = "%[5]s"
  }
}
policy {
  presets = ["documentation"]
}
metrics {
  listen = ""
}
`, clientIP, serverA1, serverA2, labUser, labPass)
	path := filepath.Join(l.dir, "natted.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(l.dir, "natted.log")
	l.start(l.cli, "natted.log", bin, "serve", "-config", path)
	waitLog := func(what string, within time.Duration) string {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			b, _ := os.ReadFile(logPath)
			if strings.Contains(string(b), what) {
				return string(b)
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the NATed icegate's log within %v:\n%s", what, within, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	logText := waitLog("relay public address discovered", 15*time.Second)
	if !strings.Contains(logText, "advertised="+natAddr) {
		t.Fatalf("discovered address is not the NAT's %s:\n%s", natAddr, logText)
	}
	waitLog("listening", 10*time.Second)

	// relayed runs uclient from the client namespace against the NATed
	// icegate (a peer on the public side) and returns the relayed address
	// it was given (printed with -v, "Received relay addr: A:P").
	relayed := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := l.run(ctx, l.cli, "", "turnutils_uclient", "-v", "-u", labUser, "-w", labPass, "-e", serverA1, "-r", peerPort,
			"-n", "5", "-m", "1", "-l", "100", "-z", "5", "-c", "-p", "3478", clientIP)
		m := regexp.MustCompile(`(?i)relay addr(?:ess)?:? *([0-9.]+):\d+`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("uclient printed no relayed address (err %v):\n%s", err, out)
		}
		// The relay works through the NAT too: the peer's echoes come back
		// to the advertised address.
		if !strings.Contains(out, "Total lost packets 0 ") {
			t.Errorf("echo through the relay lost packets:\n%s", out)
		}
		return m[1]
	}
	if got := relayed(); got != natAddr {
		t.Fatalf("relayed address %s, want the NAT's %s", got, natAddr)
	}

	// The NAT's public address changes; discovery (every 10 s) must follow.
	l.must("ip", "netns", "exec", l.rtr, "nft", "flush", "chain", "ip", "lab", "post")
	l.must("ip", "netns", "exec", l.rtr, "nft", "add", "rule", "ip", "lab", "post", "oifname", "wan", "snat", "ip", "to", natAddr2)
	l.flush()
	logText = waitLog("relay public address changed", 30*time.Second)
	if !strings.Contains(logText, "new="+natAddr2) {
		t.Fatalf("the change does not name %s:\n%s", natAddr2, logText)
	}
	if got := relayed(); got != natAddr2 {
		t.Fatalf("relayed address %s after the change, want %s", got, natAddr2)
	}
	if n := strings.Count(logText, "relay public address changed"); n != 1 {
		t.Errorf("%d change lines, want 1", n)
	}
}
