package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"icegate/auth"
	"icegate/config"
	"icegate/turn"
)

// loadFile writes src as a config file in dir and loads it.
func loadFile(t *testing.T, dir, src string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "icegate.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.Load(path)
	if diags.HasErrors() {
		t.Fatalf("config: %s", config.FormatDiagnostics(diags))
	}
	return cfg
}

// TestTurnConfig checks the translation of the config file into the
// relay's Config: every setting carried as the file states it, a cap of 0
// as turn.NoLimit, and every field of turn.Config set by some case, so a
// field the translation forgets fails here.
func TestTurnConfig(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "relay")
	bobKey := auth.LongTermKey("bob", "example.org", "builder")
	addr := netip.MustParseAddr
	prefix := netip.MustParsePrefix

	carried := map[string]bool{}
	for _, tc := range []struct {
		name string
		src  string
		want turn.Config
	}{{
		name: "defaults",
		want: turn.Config{
			Realm: "icegate",
			Listen: turn.ListenConfig{Addrs: []netip.Addr{addr("0.0.0.0"), addr("::")},
				Port: 3478, TLSPort: 5349, SocketBuffer: 4 << 20},
			TLS: turn.TLSConfig{ReloadInterval: 5 * time.Second},
			Relay: turn.RelayConfig{KernelOffload: "auto", KernelOffloadInterfaces: []string{}, MinPort: 49152, MaxPort: 65535, IPv4Bind: addr("0.0.0.0"), IPv6Bind: addr("::"),
				DiscoverWith: []string{}, DiscoverInterval: 5 * time.Minute},
			Auth:   turn.AuthConfig{Users: []auth.StaticUser{}, Secrets: []string{}, Separator: ":"},
			Policy: turn.PolicyConfig{Presets: []string{}},
			Limits: turn.LimitsConfig{AllocationsPerUser: 10, AllocationsTotal: 10000, PermissionsPerAllocation: 64,
				DefaultLifetime: 10 * time.Minute, MaxLifetime: time.Hour, BandwidthPerAllocation: turn.NoLimit,
				UnauthenticatedRate: 100, UnauthenticatedBurst: 200, ConnectionsPerSource: 256},
		},
	}, {
		name: "every setting changed, RFC 5780 on",
		src: fmt.Sprintf(`
realm = "example.org"
listen {
  addresses        = ["192.0.2.10"]
  port             = 4000
  tls_port         = 5000
  socket_buffer    = 0
  udp_segmentation = false
  freebind         = false
  tcp              = false
  tls              = false
}
tls {
  cert_file       = %q
  key_file        = %q
  reload_interval = "30s"
}
relay {
  min_port    = 40000
  max_port    = 40999
  ipv4_bind   = "192.0.2.10"
  ipv4_public = "203.0.113.10"
  ipv6_bind   = ""
  private_ok  = true
  tcp         = true
}
auth {
  secrets          = ["secret-0123456789abcdef"]
  separator        = "|"
  ephemeral_secret = false
  user "alice" { password = "wonderland" }
  user "bob" { key = "0x%x" }
}
policy {
  presets = ["lan"]
  allow   = ["198.51.100.0/24"]
  deny    = ["198.51.100.7"]
}
limits {
  allocations_per_user       = 0
  allocations_total          = 5
  permissions_per_allocation = 7
  default_lifetime           = "5m"
  max_lifetime               = "2h"
  bandwidth_per_allocation   = 100000
  unauthenticated_rate       = 0
  unauthenticated_burst      = 300
  connections_per_source     = 0
}
stun {
  alternate_address = "192.0.2.11"
  alternate_port    = 4001
  alternate_public  = "203.0.113.11"
  rfc3489           = true
}
`, certFile, keyFile, bobKey),
		want: turn.Config{
			Realm: "example.org",
			Listen: turn.ListenConfig{Addrs: []netip.Addr{addr("192.0.2.10")}, Port: 4000, TLSPort: 5000,
				SystemSocketBuffer: true, NoSegmentation: true, NoFreeBind: true, NoTCP: true, NoTLS: true},
			TLS: turn.TLSConfig{CertFile: certFile, KeyFile: keyFile, ReloadInterval: 30 * time.Second},
			Relay: turn.RelayConfig{KernelOffload: "auto", KernelOffloadInterfaces: []string{}, MinPort: 40000, MaxPort: 40999, IPv4Bind: addr("192.0.2.10"),
				IPv4Public: addr("203.0.113.10"), NoIPv6: true, PrivateOK: true, TCP: true,
				DiscoverWith: []string{}, DiscoverInterval: 5 * time.Minute},
			Auth: turn.AuthConfig{
				Users:     []auth.StaticUser{{Name: "alice", Password: "wonderland"}, {Name: "bob", Key: bobKey}},
				Secrets:   []string{"secret-0123456789abcdef"},
				Separator: "|", NoEphemeralSecret: true,
			},
			Policy: turn.PolicyConfig{Presets: []string{"lan"},
				Allow: []netip.Prefix{prefix("198.51.100.0/24")}, Deny: []netip.Prefix{prefix("198.51.100.7/32")}},
			Limits: turn.LimitsConfig{AllocationsPerUser: turn.NoLimit, AllocationsTotal: 5, PermissionsPerAllocation: 7,
				DefaultLifetime: 5 * time.Minute, MaxLifetime: 2 * time.Hour, BandwidthPerAllocation: 100000,
				UnauthenticatedRate: turn.NoLimit, UnauthenticatedBurst: 300, ConnectionsPerSource: turn.NoLimit},
			RFC5780: turn.RFC5780Config{Alternate: addr("192.0.2.11"), AlternatePort: 4001,
				PrimaryPublic: addr("203.0.113.10"), AlternatePublic: addr("203.0.113.11"), RFC3489: true},
		},
	}, {
		name: "IPv6 relays only, no UDP",
		src: `
listen {
  udp        = false
  dtls       = false
  proxy_from = ["10.0.0.5", "2001:db8::/64"]
}
relay {
  ipv4_bind   = ""
  ipv6_bind   = "2001:db8::10"
  ipv6_public = "2001:db8::20"
}
`,
		want: turn.Config{
			Realm: "icegate",
			Listen: turn.ListenConfig{Addrs: []netip.Addr{addr("0.0.0.0"), addr("::")},
				Port: 3478, TLSPort: 5349, SocketBuffer: 4 << 20, NoUDP: true, NoDTLS: true,
				ProxyFrom: []netip.Prefix{prefix("10.0.0.5/32"), prefix("2001:db8::/64")}},
			TLS: turn.TLSConfig{ReloadInterval: 5 * time.Second},
			Relay: turn.RelayConfig{KernelOffload: "auto", KernelOffloadInterfaces: []string{}, MinPort: 49152, MaxPort: 65535, NoIPv4: true,
				IPv6Bind: addr("2001:db8::10"), IPv6Public: addr("2001:db8::20"),
				DiscoverWith: []string{}, DiscoverInterval: 5 * time.Minute},
			Auth:   turn.AuthConfig{Users: []auth.StaticUser{}, Secrets: []string{}, Separator: ":"},
			Policy: turn.PolicyConfig{Presets: []string{}},
			Limits: turn.LimitsConfig{AllocationsPerUser: 10, AllocationsTotal: 10000, PermissionsPerAllocation: 64,
				DefaultLifetime: 10 * time.Minute, MaxLifetime: time.Hour, BandwidthPerAllocation: turn.NoLimit,
				UnauthenticatedRate: 100, UnauthenticatedBurst: 200, ConnectionsPerSource: 256},
		},
	}, {
		name: "public addresses discovered",
		src: `
relay {
  ipv4_public       = "auto"
  ipv6_public       = "auto"
  discover_with     = ["203.0.113.20:3478", "198.51.100.20:3478", "stun.example.net:3478"]
  discover_interval = "2m"
}
`,
		want: turn.Config{
			Realm: "icegate",
			Listen: turn.ListenConfig{Addrs: []netip.Addr{addr("0.0.0.0"), addr("::")},
				Port: 3478, TLSPort: 5349, SocketBuffer: 4 << 20},
			TLS: turn.TLSConfig{ReloadInterval: 5 * time.Second},
			Relay: turn.RelayConfig{KernelOffload: "auto", KernelOffloadInterfaces: []string{}, MinPort: 49152, MaxPort: 65535, IPv4Bind: addr("0.0.0.0"), IPv6Bind: addr("::"),
				IPv4Discover: true, IPv6Discover: true,
				DiscoverWith:     []string{"203.0.113.20:3478", "198.51.100.20:3478", "stun.example.net:3478"},
				DiscoverInterval: 2 * time.Minute},
			Auth:   turn.AuthConfig{Users: []auth.StaticUser{}, Secrets: []string{}, Separator: ":"},
			Policy: turn.PolicyConfig{Presets: []string{}},
			Limits: turn.LimitsConfig{AllocationsPerUser: 10, AllocationsTotal: 10000, PermissionsPerAllocation: 64,
				DefaultLifetime: 10 * time.Minute, MaxLifetime: time.Hour, BandwidthPerAllocation: turn.NoLimit,
				UnauthenticatedRate: 100, UnauthenticatedBurst: 200, ConnectionsPerSource: 256},
		},
	}, {
		name: "shared relay ports",
		src: `
relay {
  mode     = "shared"
  min_port = 50000
  max_port = 50002
}
`,
		want: turn.Config{
			Realm: "icegate",
			Listen: turn.ListenConfig{Addrs: []netip.Addr{addr("0.0.0.0"), addr("::")},
				Port: 3478, TLSPort: 5349, SocketBuffer: 4 << 20},
			TLS: turn.TLSConfig{ReloadInterval: 5 * time.Second},
			Relay: turn.RelayConfig{KernelOffload: "auto", KernelOffloadInterfaces: []string{}, MinPort: 50000, MaxPort: 50002, IPv4Bind: addr("0.0.0.0"),
				IPv6Bind: addr("::"), Shared: true, DiscoverWith: []string{}, DiscoverInterval: 5 * time.Minute},
			Auth:   turn.AuthConfig{Users: []auth.StaticUser{}, Secrets: []string{}, Separator: ":"},
			Policy: turn.PolicyConfig{Presets: []string{}},
			Limits: turn.LimitsConfig{AllocationsPerUser: 10, AllocationsTotal: 10000, PermissionsPerAllocation: 64,
				DefaultLifetime: 10 * time.Minute, MaxLifetime: time.Hour, BandwidthPerAllocation: turn.NoLimit,
				UnauthenticatedRate: 100, UnauthenticatedBurst: 200, ConnectionsPerSource: 256},
		},
	}} {
		got := turnConfig(loadFile(t, dir, tc.src))
		nonZeroFields(reflect.ValueOf(got), carried)
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("turnConfig:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	// tls.acme: withACME hands the relay the manager's GetCertificate and
	// the ALPN protocol of tls-alpn-01 (funcs do not compare, so checked
	// here rather than as a case above).
	acmeCfg := loadFile(t, dir, fmt.Sprintf(`tls {
  acme {
    domains = ["turn.example.com"]
    storage = %q
  }
}`, t.TempDir()))
	m, err := newACME(acmeCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got := withACME(turnConfig(acmeCfg), m)
	if got.TLS.GetCertificate == nil || !slices.Equal(got.TLS.NextProtos, []string{"acme-tls/1"}) || got.TLS.CertFile != "" {
		t.Errorf("withACME: TLS %+v", got.TLS)
	}
	nonZeroFields(reflect.ValueOf(got), carried)

	// Every field of turn.Config is set by some case above: a field added
	// to it that the translation forgets stays zero in all of them.
	all := map[string]bool{}
	walkFields(reflect.ValueOf(turn.Config{}), "", func(name string, _ reflect.Value) { all[name] = true })
	for name := range all {
		if !carried[name] {
			t.Errorf("turn.Config.%s is never set by turnConfig (or no case here sets it)", name)
		}
	}
	if len(all) < 40 {
		t.Fatalf("walked only %d fields of turn.Config: %v", len(all), all)
	}
}

// TestPolicyExplainIsTheServers checks that `icegate policy explain` says
// what a server started with the same file decides: with a wildcard relay
// bind the server's own address is one found on this host's interfaces,
// and explain finds the same one, guards it the same way (relay ports
// only, rule self_port elsewhere) and walks every address to the same
// verdict.
func TestPolicyExplainIsTheServers(t *testing.T) {
	dir := t.TempDir()
	const src = `
listen {
  addresses = ["127.0.0.1"]
  tcp       = false
  tls       = false
  dtls      = false
}
relay {
  min_port   = 53000
  max_port   = 53999
  ipv4_bind  = "0.0.0.0"
  ipv6_bind  = ""
  private_ok = true
}
policy {
  deny = ["198.51.100.0/24"]
}
metrics {
  listen = ""
}
`
	cfg := loadFile(t, dir, src)
	path := filepath.Join(dir, "icegate.hcl")
	tc := turnConfig(cfg)
	tc.Listen.Port = 0 // a port the system picks; the policy does not depend on it
	srv, err := turn.New(tc, turn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	server := srv.PeerPolicy()

	self, err := turn.SelfAddrs(tc.Relay)
	if err != nil || len(self) != 1 {
		t.Fatalf("SelfAddrs %v, %v", self, err)
	}
	own := self[0]
	if !server.Guarded(own) {
		t.Fatalf("the server does not guard %s, its own relay address", own)
	}
	for _, peer := range []string{
		own.String(), netip.AddrPortFrom(own, 22).String(), netip.AddrPortFrom(own, 53000).String(),
		"127.0.0.1", "169.254.169.254", "198.51.100.7", "8.8.8.8", "[2001:4860::8888]:443",
	} {
		out, _, err := runCLI("policy", "explain", peer, "-config", path)
		if err != nil {
			t.Fatalf("explain %s: %v", peer, err)
		}
		ap, err := parsePeer(peer)
		if err != nil {
			t.Fatal(err)
		}
		want := server.Explain(ap)
		if got := strings.Split(strings.TrimSpace(out), "\n"); !slices.Equal(got, want) {
			t.Errorf("explain %s:\n%s\nthe server's policy says:\n%s", peer, out, strings.Join(want, "\n"))
		}
	}
	out, _, err := runCLI("policy", "explain", netip.AddrPortFrom(own, 22).String(), "-config", path)
	if err != nil || !strings.Contains(out, "rule self_port") || !strings.Contains(out, "ports 53000-53999 only") {
		t.Errorf("explain of the server's own SSH port: %v\n%s", err, out)
	}
}
