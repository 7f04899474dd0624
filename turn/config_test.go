package turn

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"icegate/config"
)

// TestConfigDefaults checks that the zero Config means the defaults the
// config file documents, so a Server built in Go behaves as one built from
// an empty file, except for the ports Config documents otherwise (0 is a
// port the system picks there).
func TestConfigDefaults(t *testing.T) {
	file, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	got := Config{}.withDefaults()
	l, r, a, m := file.Listen, file.Relay, file.Auth, file.Limits
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"Realm", got.Realm, file.Realm},
		{"Listen.Addrs", got.Listen.Addrs, l.Addrs},
		{"Listen.SocketBuffer", got.Listen.SocketBuffer, l.SocketBuffer},
		{"Listen.NoSegmentation", got.Listen.NoSegmentation, !l.SegmentationOn()},
		{"Listen.NoUDP", got.Listen.NoUDP, !l.UDPOn()},
		{"Listen.NoTCP", got.Listen.NoTCP, !l.TCPOn()},
		{"Listen.NoTLS", got.Listen.NoTLS, !l.TLSOn()},
		{"Listen.NoDTLS", got.Listen.NoDTLS, !l.DTLSOn()},
		{"TLS.CertFile", got.TLS.CertFile, file.TLS.CertFile},
		{"TLS.ReloadInterval", got.TLS.ReloadInterval, file.TLS.ReloadIntervalDuration},
		{"Relay.MinPort", got.Relay.MinPort, r.MinPort},
		{"Relay.MaxPort", got.Relay.MaxPort, r.MaxPort},
		{"Relay.IPv4Bind", got.Relay.IPv4Bind, r.IPv4BindAddr},
		{"Relay.IPv4Public", got.Relay.IPv4Public, r.IPv4PublicAddr},
		{"Relay.IPv6Bind", got.Relay.IPv6Bind, r.IPv6BindAddr},
		{"Relay.IPv6Public", got.Relay.IPv6Public, r.IPv6PublicAddr},
		{"Relay.PrivateOK", got.Relay.PrivateOK, r.PrivateAllowed()},
		{"Relay.TCP", got.Relay.TCP, r.TCPOn()},
		{"Auth.Separator", got.Auth.Separator, a.Separator},
		{"Auth.NoEphemeralSecret", got.Auth.NoEphemeralSecret, !a.EphemeralSecretOn()},
		{"Limits.AllocationsPerUser", got.Limits.AllocationsPerUser, m.AllocationsPerUser},
		{"Limits.AllocationsTotal", got.Limits.AllocationsTotal, m.AllocationsTotal},
		{"Limits.PermissionsPerAllocation", got.Limits.PermissionsPerAllocation, m.PermissionsPerAllocation},
		{"Limits.DefaultLifetime", got.Limits.DefaultLifetime, m.DefaultLifetimeDuration},
		{"Limits.MaxLifetime", got.Limits.MaxLifetime, m.MaxLifetimeDuration},
		{"Limits.BandwidthPerAllocation", got.Limits.BandwidthPerAllocation, m.BandwidthPerAllocation},
		{"Limits.UnauthenticatedRate", got.Limits.UnauthenticatedRate, m.UnauthRate},
		{"Limits.UnauthenticatedBurst", got.Limits.UnauthenticatedBurst, m.UnauthBurst},
		{"Limits.ConnectionsPerSource", got.Limits.ConnectionsPerSource, m.ConnectionsPerSource},
		{"RFC5780.On", got.RFC5780.On(), file.STUN.Enabled()},
		{"RFC5780.RFC3489", got.RFC5780.RFC3489, file.STUN.RFC3489On()},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("zero %s means %v, the config file's default is %v", c.name, c.got, c.want)
		}
	}
	// The documented exceptions: the file's standard ports, 0 here.
	if got.Listen.Port != 0 || got.Listen.TLSPort != 0 || got.RFC5780.AlternatePort != 0 {
		t.Errorf("zero ports became %d, %d, %d; 0 is a port the system picks", got.Listen.Port, got.Listen.TLSPort, got.RFC5780.AlternatePort)
	}
	if err := got.validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}

	// A burst left out follows a rate above its default; any negative cap
	// is NoLimit; the No* switches win over a value.
	c := Config{
		Listen: ListenConfig{SocketBuffer: 1 << 20, SystemSocketBuffer: true},
		Relay:  RelayConfig{IPv4Bind: netip.MustParseAddr("192.0.2.1"), NoIPv4: true},
		Limits: LimitsConfig{UnauthenticatedRate: 500, AllocationsTotal: -7},
	}.withDefaults()
	if c.Limits.UnauthenticatedBurst != 500 || c.Limits.AllocationsTotal != NoLimit {
		t.Errorf("rate 500 gives burst %d; cap -7 gives %d", c.Limits.UnauthenticatedBurst, c.Limits.AllocationsTotal)
	}
	if c.Listen.SocketBuffer != 0 || c.Relay.IPv4Bind.IsValid() {
		t.Errorf("SystemSocketBuffer gives %d, NoIPv4 gives bind %v", c.Listen.SocketBuffer, c.Relay.IPv4Bind)
	}
	// The caller's slices are copied.
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	d := Config{Listen: ListenConfig{Addrs: addrs}}.withDefaults()
	addrs[0] = netip.MustParseAddr("127.0.0.2")
	if d.Listen.Addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Error("withDefaults shares the caller's Listen.Addrs")
	}
}

// TestConfigInvalid checks that New refuses what a Server cannot work
// with, naming the field, every problem at once, and that a refused
// PrepareReload changes nothing.
func TestConfigInvalid(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"ports", func(c *Config) { c.Listen.Port, c.Listen.TLSPort = -1, 70000 }, []string{"Listen.Port -1", "Listen.TLSPort 70000"}},
		{"relay range", func(c *Config) { c.Relay.MinPort, c.Relay.MaxPort = 41000, 40000 }, []string{"Relay.MinPort 41000 is above Relay.MaxPort 40000"}},
		{"relay family", func(c *Config) { c.Relay.IPv4Bind = netip.MustParseAddr("::1") }, []string{"Relay.IPv4Bind ::1"}},
		{"no relay", func(c *Config) { c.Relay.NoIPv4, c.Relay.NoIPv6 = true, true }, []string{"NoIPv4 and NoIPv6"}},
		{"no transport", func(c *Config) {
			c.Listen.NoUDP, c.Listen.NoTCP, c.Listen.NoTLS, c.Listen.NoDTLS = true, true, true, true
		}, []string{"every transport is off"}},
		{"half a certificate", func(c *Config) { c.TLS.CertFile = "cert.pem" }, []string{"TLS.CertFile and TLS.KeyFile"}},
		{"lifetimes", func(c *Config) { c.Limits.DefaultLifetime, c.Limits.MaxLifetime = time.Hour, time.Minute }, []string{"Limits.DefaultLifetime 1h0m0s is above"}},
		{"burst", func(c *Config) { c.Limits.UnauthenticatedRate, c.Limits.UnauthenticatedBurst = 100, 10 }, []string{"UnauthenticatedBurst 10 is below"}},
		{"RFC 5780 wildcard primary", func(c *Config) {
			c.Listen.Addrs = []netip.Addr{netip.IPv4Unspecified()}
			c.RFC5780.Alternate = netip.MustParseAddr("127.0.0.2")
		}, []string{"specific primary"}},
		{"RFC 5780 two primaries", func(c *Config) {
			c.Listen.Addrs = []netip.Addr{lo, netip.MustParseAddr("127.0.0.3")}
			c.RFC5780.Alternate = netip.MustParseAddr("127.0.0.2")
		}, []string{"exactly one address"}},
		{"RFC 5780 off with its settings", func(c *Config) { c.RFC5780.RFC3489 = true }, []string{"need RFC5780.Alternate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := New(testConfig(t, tc.mutate), Options{})
			if err == nil {
				_ = srv.Close()
				t.Fatal("New accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}

	srv := startServer(t, nil)
	before := srv.Credentials()
	if _, err := srv.PrepareReload(testConfig(t, func(c *Config) {
		c.Auth.Secrets = nil
		c.Limits.UnauthenticatedRate, c.Limits.UnauthenticatedBurst = 100, 10
	})); err == nil {
		t.Fatal("PrepareReload accepted an invalid Config")
	}
	if srv.Credentials() != before {
		t.Error("a refused reload changed the credentials")
	}
}

// TestPeerPolicy checks what the server decides about its own addresses
// and what Explain says about them: the advertised relay addresses are
// reachable on relay ports only (self_port), unless the operator allowed
// them, and SelfAddrs finds what the server advertises.
func TestPeerPolicy(t *testing.T) {
	pub := netip.MustParseAddr("203.0.113.10")
	cfg := Config{Relay: RelayConfig{MinPort: 40000, MaxPort: 40999, IPv4Bind: netip.IPv4Unspecified(), IPv4Public: pub, NoIPv6: true}}
	p, err := NewPeerPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Decide(pub).Allowed || !p.Guarded(pub) {
		t.Fatalf("own address: decide %v, guarded %v", p.Decide(pub), p.Guarded(pub))
	}
	for _, tc := range []struct {
		port uint16
		self bool
	}{{40000, false}, {40999, false}, {39999, true}, {41000, true}, {22, true}} {
		if got := p.SelfPort(netip.AddrPortFrom(pub, tc.port)); got != tc.self {
			t.Errorf("SelfPort(%d) = %v, want %v", tc.port, got, tc.self)
		}
	}
	if p.SelfPort(netip.MustParseAddrPort("198.51.100.1:22")) {
		t.Error("another address is refused as the server's own")
	}
	lines := p.Explain(netip.AddrPortFrom(pub, 22))
	if v := lines[len(lines)-1]; !strings.Contains(v, "deny 203.0.113.10:22: rule self_port") {
		t.Errorf("explain port 22 verdict %q\n%s", v, strings.Join(lines, "\n"))
	}
	lines = p.Explain(netip.AddrPortFrom(pub, 0))
	if v := lines[len(lines)-1]; !strings.HasPrefix(v, "verdict: allow") || !slices.ContainsFunc(lines, func(l string) bool {
		return strings.Contains(l, "ports 40000-40999 only")
	}) {
		t.Errorf("explain without a port:\n%s", strings.Join(lines, "\n"))
	}

	// Allowed explicitly: not guarded, every port.
	cfg.Policy.Allow = []netip.Prefix{netip.PrefixFrom(pub, 32)}
	if p, err = NewPeerPolicy(cfg); err != nil {
		t.Fatal(err)
	}
	if p.Guarded(pub) || p.SelfPort(netip.AddrPortFrom(pub, 22)) {
		t.Error("an address the operator allowed is still guarded")
	}

	// A wildcard bind advertises what the server finds on this host, and
	// SelfAddrs finds the same.
	srv := startServer(t, func(c *Config) {
		c.Relay.IPv4Bind, c.Relay.IPv4Public = netip.IPv4Unspecified(), netip.Addr{}
	})
	self, err := SelfAddrs(srv.cfg.Relay)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(self, srv.selfAddrs()) || len(self) == 0 {
		t.Errorf("SelfAddrs %v, the server advertises %v", self, srv.selfAddrs())
	}
}
