//go:build linux

package turn

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	pionturn "github.com/pion/turn/v5"

	"icegate/internal/netnstest"
)

// TestFreeBindBeforeAddressIsUp is the server started before the network:
// in a network namespace of its own, the relay listens and relays on
// 10.200.9.1 (event loops) and 10.200.9.3 (Go's net package) while no
// interface has them, logs so, and once the addresses are added a pion
// client allocates and relays through each. The test re-runs itself inside
// the namespace (ip netns exec), so every socket the server opens later
// (the relays) is the namespace's. It needs root and ip; it skips without
// them unless ICEGATE_REQUIRE_NATLAB=1.
func TestFreeBindBeforeAddressIsUp(t *testing.T) {
	if os.Getenv("ICEGATE_FREEBIND_CHILD") == "1" {
		freeBindChild(t)
		return
	}
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root to create a network namespace"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "ip is missing"
	}
	if why != "" {
		if os.Getenv("ICEGATE_REQUIRE_NATLAB") == "1" {
			t.Fatalf("namespace required (ICEGATE_REQUIRE_NATLAB=1) but cannot run: %s", why)
		}
		t.Skip(why)
	}
	ns := netnstest.New(t, "icefreebind", "x").NS("x")
	out, err := netnstest.Rerun(t, ns, "ICEGATE_FREEBIND_CHILD=1")
	if err != nil || !strings.Contains(string(out), "relayed through 10.200.9.1") || !strings.Contains(string(out), "relayed through 10.200.9.3") {
		t.Fatalf("in namespace %s: %v\n%s", ns, err, out)
	}
}

// freeBindChild is the test's half inside the namespace.
func freeBindChild(t *testing.T) {
	for _, tc := range []struct {
		name     string
		addr     string
		portable bool
	}{{"loops", "10.200.9.1", false}, {"portable", "10.200.9.3", true}} {
		t.Run(tc.name, func(t *testing.T) {
			a := netip.MustParseAddr(tc.addr)
			if isUp(t, a) {
				t.Fatalf("%s is up before the test added it", a)
			}
			srv := startServerIO(t, func(c *Config) {
				c.Listen.Addrs = []netip.Addr{a}
				c.Relay.IPv4Bind, c.Relay.IPv4Public = a, a
				c.Relay.NoIPv6 = true
				c.Policy.Allow = []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")}
			}, tc.portable)
			want := "bound before the address is up: " + tc.addr
			if got := strings.Count(srv.log.String(), want); got != 1 {
				t.Fatalf("%d log lines %q, want one", got, want)
			}
			// The network comes up.
			for _, ip := range []string{tc.addr, "10.200.9.2"} {
				out, err := exec.Command("ip", "addr", "replace", ip+"/32", "dev", "lo").CombinedOutput()
				if err != nil {
					t.Fatalf("ip addr add %s: %v\n%s", ip, err, out)
				}
			}
			server := srv.addr(t, "udp", "4")
			c := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
			relay, err := c.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			defer relay.Close()
			if got := relay.LocalAddr().(*net.UDPAddr).IP.String(); got != tc.addr {
				t.Fatalf("relayed address %s, want %s", got, tc.addr)
			}
			echoThrough(t, relay, udpEcho(t, "10.200.9.2"))
			t.Logf("relayed through %s", tc.addr)
		})
	}
}

func isUp(t *testing.T, a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range addrs {
		if p, err := netip.ParsePrefix(x.String()); err == nil && p.Addr() == a {
			return true
		}
	}
	return false
}
