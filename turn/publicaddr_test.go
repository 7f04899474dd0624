package turn

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"icegate/internal/testutil"
	"icegate/stun"
)

// reporter is a STUN server on loopback that answers Binding requests as a
// server across a NAT would: with the address it is set to say (the NAT's),
// built by the same stun.BindingResponse icegate answers with. Silent
// while the address is invalid.
type reporter struct {
	pc   net.PacketConn
	says atomic.Pointer[netip.Addr]
	wg   sync.WaitGroup
}

func startReporter(t *testing.T, says string) *reporter {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &reporter{pc: pc}
	r.set(says)
	r.wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m := &pionstun.Message{Raw: append([]byte(nil), buf[:n]...)}
			a := r.says.Load()
			if m.Decode() != nil || !a.IsValid() {
				continue
			}
			src := from.(*net.UDPAddr).AddrPort()
			out, err := stun.BindingResponse(m, netip.AddrPortFrom(*a, src.Port()))
			if err == nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	})
	t.Cleanup(func() { _ = pc.Close(); r.wg.Wait() })
	return r
}

func (r *reporter) set(s string) {
	var a netip.Addr
	if s != "" {
		a = netip.MustParseAddr(s)
	}
	r.says.Store(&a)
}

func (r *reporter) String() string { return r.pc.LocalAddr().String() }

func discoverConfig(interval time.Duration, privateOK bool, rs ...*reporter) func(*Config) {
	return func(c *Config) {
		c.Relay.IPv4Public, c.Relay.IPv4Discover = netip.Addr{}, true
		c.Relay.NoIPv6 = true
		c.Relay.PrivateOK = privateOK
		c.Relay.DiscoverInterval = interval
		c.Relay.DiscoverWith = nil
		for _, r := range rs {
			c.Relay.DiscoverWith = append(c.Relay.DiscoverWith, r.String())
		}
	}
}

// relayedAddr allocates a UDP relay as a pion client and returns the
// XOR-RELAYED-ADDRESS the server gave.
func relayedAddr(t *testing.T, ts *testServer) netip.Addr {
	t.Helper()
	server := ts.addr(t, "udp", "4")
	c := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()
	return relay.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

// TestDiscoverPublic starts a server whose IPv4 relay address is
// discovered from three STUN servers, then has two of them report a new
// address: new allocations get it after the next round, the change is
// logged once and counted, and the peer policy guards the new address as
// the server's own.
func TestDiscoverPublic(t *testing.T) {
	a, b, c := startReporter(t, "203.0.113.5"), startReporter(t, "203.0.113.5"), startReporter(t, "198.51.100.9")
	ts := startServer(t, discoverConfig(100*time.Millisecond, false, a, b, c))
	if got := relayedAddr(t, ts); got != netip.MustParseAddr("203.0.113.5") {
		t.Fatalf("relayed address %v, want the majority 203.0.113.5", got)
	}
	if !strings.Contains(ts.log.String(), "relay public address discovered") {
		t.Error("no log line for the discovered address")
	}

	// One server changing its mind is no majority for the new address:
	// the old one stays.
	a.set("203.0.113.6")
	deadline := time.Now().Add(10 * time.Second)
	for counterValue(t, ts.metrics.PublicDiscoveries.WithLabelValues("ipv4", "no_majority")) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no two rounds without a majority; log:\n%s", ts.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := ts.relays.publics.Load()[0]; got != netip.MustParseAddr("203.0.113.5") {
		t.Fatalf("advertised %v after one of three changed", got)
	}
	if !strings.Contains(ts.log.String(), "discovery servers do not agree") {
		t.Error("no log line for the round without a majority")
	}

	b.set("203.0.113.6")
	deadline = time.Now().Add(10 * time.Second)
	for ts.relays.publics.Load()[0] != netip.MustParseAddr("203.0.113.6") {
		if time.Now().After(deadline) {
			t.Fatalf("the new majority was not taken; log:\n%s", ts.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := relayedAddr(t, ts); got != netip.MustParseAddr("203.0.113.6") {
		t.Fatalf("relayed address %v after the change, want 203.0.113.6", got)
	}
	// More rounds, same majority: still one change line.
	for n := counterValue(t, ts.metrics.PublicDiscoveries.WithLabelValues("ipv4", "agreed")); counterValue(t, ts.metrics.PublicDiscoveries.WithLabelValues("ipv4", "agreed")) < n+2; {
		if time.Now().After(deadline) {
			t.Fatal("no further rounds")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(ts.log.String(), "relay public address changed"); n != 1 {
		t.Errorf("%d change lines, want 1", n)
	}
	if n := strings.Count(ts.log.String(), "discovery servers do not agree"); n != 1 {
		t.Errorf("%d no-majority lines for one run of such rounds, want 1", n)
	}
	if v := counterValue(t, ts.metrics.PublicDiscoveries.WithLabelValues("ipv4", "changed")); v != 1 {
		t.Errorf("changed counter %v, want 1", v)
	}
	if v := counterValue(t, ts.metrics.PublicDiscoveries.WithLabelValues("ipv4", "no_majority")); v < 1 {
		t.Errorf("no_majority counter %v", v)
	}
	p := ts.peers.Load()
	if !p.Guarded(netip.MustParseAddr("203.0.113.6")) || p.Guarded(netip.MustParseAddr("203.0.113.5")) {
		t.Error("the peer policy does not guard the new address (and only it) as the server's own")
	}

	// A private majority is not taken without PrivateOK.
	a.set("10.1.2.3")
	b.set("10.1.2.3")
	c.set("10.1.2.3")
	deadline = time.Now().Add(10 * time.Second)
	for counterValue(t, ts.metrics.PublicDiscoveries.WithLabelValues("ipv4", "refused_private")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a private majority was not refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := ts.relays.publics.Load()[0]; got != netip.MustParseAddr("203.0.113.6") {
		t.Errorf("advertised %v after a private majority", got)
	}
}

// TestDiscoverPublicRefusesStart: without a majority, or with a private
// one and no PrivateOK, New fails and says what each server said.
func TestDiscoverPublicRefusesStart(t *testing.T) {
	for _, tc := range []struct {
		name      string
		says      []string
		privateOK bool
		want      []string
	}{
		{"no majority", []string{"203.0.113.5", "198.51.100.9", ""}, false,
			[]string{"more than half of relay.discover_with", ": 203.0.113.5", ": 198.51.100.9", ": no answer"}},
		{"private", []string{"192.168.1.20", "192.168.1.20", "192.168.1.20"}, false,
			[]string{"192.168.1.20", "a private address", "discovered with relay.discover_with", "relay.private_ok"}},
		{"private allowed", []string{"192.168.1.20", "192.168.1.20", "192.168.1.20"}, true, nil},
		// private_ok allows a LAN, never an address no peer can send to.
		{"unspecified", []string{"0.0.0.0", "0.0.0.0", "0.0.0.0"}, true,
			[]string{"0.0.0.0", "not an address peers can send to"}},
		{"multicast", []string{"224.0.0.1", "224.0.0.1", "224.0.0.1"}, true,
			[]string{"224.0.0.1", "not an address peers can send to"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs []*reporter
			for _, s := range tc.says {
				rs = append(rs, startReporter(t, s))
			}
			srv, err := New(testConfig(t, discoverConfig(time.Minute, tc.privateOK, rs...)), Options{PortableIO: true})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				_ = srv.Close()
				return
			}
			if err == nil {
				_ = srv.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestPrivateAdvertisedRefused: a configured private or loopback address
// (IPv4Public, or a specific bind advertised as itself) stops New unless
// PrivateOK says a LAN or a test is meant.
func TestPrivateAdvertisedRefused(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"loopback public", func(c *Config) {}, "(relay.ipv4_public) is a loopback address"},
		{"loopback bind advertised", func(c *Config) { c.Relay.IPv4Public = netip.Addr{} },
			"(relay.ipv4_bind, advertised as itself since relay.ipv4_public is empty) is a loopback address"},
		{"private public", func(c *Config) { c.Relay.IPv4Bind, c.Relay.IPv4Public = lo, netip.MustParseAddr("10.0.0.5") },
			"10.0.0.5 (relay.ipv4_public) is a private address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, func(c *Config) {
				c.Relay.PrivateOK = false
				c.Relay.NoIPv6 = true
				tc.mutate(c)
			})
			srv, err := New(cfg, Options{PortableIO: true})
			if err == nil {
				_ = srv.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// TestDiscoverPrivateOKReload: relay.private_ok is applied at once by a
// reload (config/reload.go puts it in the live class), so the discovery
// round after a reload that sets it takes the private majority it refused
// before, and one after a reload that clears it refuses the next one.
func TestDiscoverPrivateOKReload(t *testing.T) {
	a, b, c := startReporter(t, "203.0.113.5"), startReporter(t, "203.0.113.5"), startReporter(t, "203.0.113.5")
	cfg := discoverConfig(50*time.Millisecond, false, a, b, c)
	ts := startServer(t, cfg)
	refused := ts.metrics.PublicDiscoveries.WithLabelValues("ipv4", "refused_private")
	waitFor := func(what string, done func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !done() {
			if time.Now().After(deadline) {
				t.Fatalf("%s; log:\n%s", what, ts.log.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, r := range []*reporter{a, b, c} {
		r.set("10.1.2.3")
	}
	waitFor("a private majority was not refused", func() bool { return counterValue(t, refused) > 0 })

	ts.mustReload(t, discoverConfig(50*time.Millisecond, true, a, b, c))
	waitFor("a private majority is still refused after a reload set private_ok",
		func() bool { return ts.relays.publics.Load()[0] == netip.MustParseAddr("10.1.2.3") })

	ts.mustReload(t, cfg)
	n := counterValue(t, refused)
	for _, r := range []*reporter{a, b, c} {
		r.set("10.9.9.9")
	}
	waitFor("a private majority was taken after a reload cleared private_ok",
		func() bool { return counterValue(t, refused) > n })
	if got := ts.relays.publics.Load()[0]; got != netip.MustParseAddr("10.1.2.3") {
		t.Errorf("advertised %v, want 10.1.2.3 kept", got)
	}
}

// TestDiscoverNoServerOfFamily: a DiscoverWith of only IPv4 literals
// leaves IPv6 discovery nobody to ask; New says so instead of failing
// discovery with an empty list of answers.
func TestDiscoverNoServerOfFamily(t *testing.T) {
	cfg := testConfig(t, func(c *Config) {
		c.Relay.IPv6Public, c.Relay.IPv6Discover, c.Relay.NoIPv6 = netip.Addr{}, true, false
		c.Relay.IPv6Bind = netip.MustParseAddr("::1")
		c.Relay.DiscoverWith = []string{"127.0.0.1:9"}
	})
	srv, err := New(cfg, Options{PortableIO: true})
	if err == nil {
		_ = srv.Close()
		t.Fatal("New succeeded")
	}
	if !strings.Contains(err.Error(), "Relay.IPv6Discover: Relay.DiscoverWith lists no IPv6 server") {
		t.Errorf("error %q does not name the missing IPv6 server", err)
	}
}

// TestDiscoverWaitsForTheNetwork: at start, while no discovery server
// answers at all (a server started before the network), New asks again
// instead of failing, says so once, and starts with the address the
// servers report once they answer; with none answering within the wait it
// fails and says what they said.
func TestDiscoverWaitsForTheNetwork(t *testing.T) {
	saved := discoverStartWait
	t.Cleanup(func() { discoverStartWait = saved })
	discoverStartWait = 20 * time.Second

	rs := []*reporter{startReporter(t, ""), startReporter(t, ""), startReporter(t, "")}
	// Longer than one discovery round (its own retries end within about
	// 3.5 s), so New has to ask again.
	time.AfterFunc(5*time.Second, func() {
		for _, r := range rs {
			r.set("203.0.113.7")
		}
	})
	logs := &testutil.SyncBuffer{}
	cfg := testConfig(t, discoverConfig(time.Minute, false, rs...))
	srv, err := New(cfg, Options{PortableIO: true, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("New: %v\n%s", err, logs)
	}
	defer srv.Close()
	if got := srv.selfAddrs(); len(got) != 1 || got[0] != netip.MustParseAddr("203.0.113.7") {
		t.Errorf("advertised %v, want 203.0.113.7", got)
	}
	if n := strings.Count(logs.String(), "no STUN server answered yet"); n != 1 {
		t.Errorf("%d waiting lines, want 1:\n%s", n, logs)
	}

	discoverStartWait = 3 * time.Second
	silent := startReporter(t, "")
	_, err = New(testConfig(t, discoverConfig(time.Minute, false, silent)), Options{PortableIO: true})
	if err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Errorf("New with a silent server: %v, want an error that says no answer", err)
	}
}
