package auth

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func mustPolicy(t testing.TB, cfg PolicyConfig) *Policy {
	t.Helper()
	p, err := NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type decideCase struct {
	ip       string
	allowed  bool
	rule     string
	via      string
	embedded string
}

func checkDecide(t *testing.T, p *Policy, tests []decideCase) {
	t.Helper()
	for _, tt := range tests {
		d := p.Decide(netip.MustParseAddr(tt.ip))
		var emb netip.Addr
		if tt.embedded != "" {
			emb = netip.MustParseAddr(tt.embedded)
		}
		if d.Allowed != tt.allowed || d.Rule != tt.rule || d.Via != tt.via || d.Embedded != emb {
			t.Errorf("Decide(%s) = %q, want allowed=%v rule %q via %q (%s)", tt.ip, d, tt.allowed, tt.rule, tt.via, tt.embedded)
		}
	}
}

func TestBuiltinRulesDenied(t *testing.T) {
	// One sample per built-in prefix.
	samples := map[string]string{
		"0.0.0.0/8":          "0.1.2.3",
		"127.0.0.0/8":        "127.1.2.3",
		"169.254.169.254/32": "169.254.169.254",
		"100.100.100.200/32": "100.100.100.200",
		"fd00:ec2::254/128":  "fd00:ec2::254",
		"169.254.0.0/16":     "169.254.1.1",
		"10.0.0.0/8":         "10.9.8.7",
		"172.16.0.0/12":      "172.31.255.1",
		"192.168.0.0/16":     "192.168.1.1",
		"100.64.0.0/10":      "100.127.0.1",
		"192.0.0.0/24":       "192.0.0.170",
		"192.0.2.0/24":       "192.0.2.1",
		"198.51.100.0/24":    "198.51.100.7",
		"203.0.113.0/24":     "203.0.113.9",
		"2001:db8::/32":      "2001:db8::1",
		"198.18.0.0/15":      "198.19.1.1",
		"2001:2::/48":        "2001:2::1",
		"224.0.0.0/4":        "239.255.255.250",
		"255.255.255.255/32": "255.255.255.255",
		"240.0.0.0/4":        "250.1.2.3",
		"::1/128":            "::1",
		"::/128":             "::",
		"::/96":              "::8.8.8.8",
		"64:ff9b::/96":       "64:ff9b::8.8.8.8",
		"64:ff9b:1::/48":     "64:ff9b:1:2::8.8.8.8",
		"100::/64":           "100::1",
		"2001::/32":          "2001:0:4136:e378:8000:63bf:f7f7:f7f7", // server 65.54.227.120, client 8.8.8.8
		"2002::/16":          "2002:808:808::1",                      // 6to4 of 8.8.8.8
		"fc00::/7":           "fd12:3456::1",
		"fec0::/10":          "fec0::1",
		"fe80::/10":          "fe80::1",
		"ff00::/8":           "ff02::1",
	}
	p := mustPolicy(t, PolicyConfig{})
	for _, r := range BuiltinRules() {
		if r.Name == "" || r.Why == "" || len(r.Prefixes) == 0 {
			t.Errorf("rule %+v is incomplete", r)
		}
		for _, pr := range r.Prefixes {
			s, ok := samples[pr.String()]
			if !ok {
				t.Errorf("no sample for %s (rule %s)", pr, r.Name)
				continue
			}
			a := netip.MustParseAddr(s)
			if !pr.Contains(a) {
				t.Errorf("sample %s is not in %s", a, pr)
			}
			d := p.Decide(a)
			if d.Allowed || d.Rule != r.Name {
				t.Errorf("Decide(%s) = %q, want deny by %s", a, d, r.Name)
			}
			if d.Via != "" || d.Embedded.IsValid() {
				t.Errorf("Decide(%s) = %q, want no embedded match", a, d)
			}
			// A nil *Policy is the default policy.
			if nd := (*Policy)(nil).Decide(a); nd != d {
				t.Errorf("nil policy Decide(%s) = %q, want %q", a, nd, d)
			}
		}
	}
}

func TestEmbeddedIPv4Denied(t *testing.T) {
	p := mustPolicy(t, PolicyConfig{})
	checkDecide(t, p, []decideCase{
		{"127.0.0.1", false, "loopback", "", ""},
		{"::ffff:127.0.0.1", false, "loopback", ViaIPv4Mapped, "127.0.0.1"},
		{"::ffff:7f00:1", false, "loopback", ViaIPv4Mapped, "127.0.0.1"},
		{"::127.0.0.1", false, "loopback", ViaIPv4Compatible, "127.0.0.1"},
		{"::7f00:1", false, "loopback", ViaIPv4Compatible, "127.0.0.1"},
		{"64:ff9b::7f00:1", false, "loopback", ViaNAT64, "127.0.0.1"},
		{"64:ff9b::127.0.0.1", false, "loopback", ViaNAT64, "127.0.0.1"},
		{"64:ff9b:1::7f00:1", false, "loopback", ViaNAT64, "127.0.0.1"},
		{"2002:7f00:1::1", false, "loopback", Via6to4, "127.0.0.1"},
		// Teredo: server 65.54.227.120, flags 8000, port, client ^127.0.0.1.
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", false, "loopback", ViaTeredoClient, "127.0.0.1"},
		// Teredo with the server field 127.0.0.1 and a public client.
		{"2001:0:7f00:1:0:0:f7f7:f7f7", false, "loopback", ViaTeredoServer, "127.0.0.1"},

		{"169.254.169.254", false, "cloud-metadata", "", ""},
		{"::ffff:169.254.169.254", false, "cloud-metadata", ViaIPv4Mapped, "169.254.169.254"},
		{"::ffff:a9fe:a9fe", false, "cloud-metadata", ViaIPv4Mapped, "169.254.169.254"},
		{"::169.254.169.254", false, "cloud-metadata", ViaIPv4Compatible, "169.254.169.254"},
		{"64:ff9b::a9fe:a9fe", false, "cloud-metadata", ViaNAT64, "169.254.169.254"},
		{"64:ff9b:1::a9fe:a9fe", false, "cloud-metadata", ViaNAT64, "169.254.169.254"},
		{"2002:a9fe:a9fe::", false, "cloud-metadata", Via6to4, "169.254.169.254"},
		{"2001:0:4136:e378:8000:63bf:5601:5601", false, "cloud-metadata", ViaTeredoClient, "169.254.169.254"},

		{"::ffff:10.1.2.3", false, "rfc1918", ViaIPv4Mapped, "10.1.2.3"},
		{"64:ff9b::192.168.0.1", false, "rfc1918", ViaNAT64, "192.168.0.1"},
		{"::2", false, "this-network", ViaIPv4Compatible, "0.0.0.2"},
		{"::ffff:0.0.0.0", false, "this-network", ViaIPv4Mapped, "0.0.0.0"},
		// Teredo with both embedded addresses private: the client decides.
		{"2001:0:a00:1::3f57:fefe", false, "rfc1918", ViaTeredoClient, "192.168.1.1"},
	})
}

func TestPublicAllowed(t *testing.T) {
	p := mustPolicy(t, PolicyConfig{})
	checkDecide(t, p, []decideCase{
		{"8.8.8.8", true, RulePublic, "", ""},
		{"1.1.1.1", true, RulePublic, "", ""},
		{"2606:4700::1111", true, RulePublic, "", ""},
		{"2a00:1450:4001:80b::200e", true, RulePublic, "", ""},
		// A mapped public address is the same destination as the address.
		{"::ffff:8.8.8.8", true, RulePublic, "", ""},
		// Next to, but outside, the built-in ranges.
		{"100.63.255.255", true, RulePublic, "", ""},
		{"100.128.0.0", true, RulePublic, "", ""},
		{"172.32.0.1", true, RulePublic, "", ""},
		{"169.253.255.255", true, RulePublic, "", ""},
		{"223.255.255.255", true, RulePublic, "", ""},
		{"2001:1::1", true, RulePublic, "", ""},
		{"2003::1", true, RulePublic, "", ""},
		// Translators and tunnels are denied even to a public IPv4.
		{"64:ff9b::8.8.8.8", false, "nat64", "", ""},
		{"2002:808:808::1", false, "6to4", "", ""},
	})
}

func TestZoneStripped(t *testing.T) {
	p := mustPolicy(t, PolicyConfig{})
	d := p.Decide(netip.MustParseAddr("fe80::1%eth0"))
	if d.Allowed || d.Rule != "ipv6-link-local" || d.Addr != netip.MustParseAddr("fe80::1") {
		t.Fatalf("Decide(fe80::1%%eth0) = %q (addr %v)", d, d.Addr)
	}
	d = mustPolicy(t, PolicyConfig{Presets: []string{"lan"}}).Decide(netip.MustParseAddr("fe80::1%eth0"))
	if !d.Allowed || d.Rule != "preset lan fe80::/10" || d.Addr.Zone() != "" {
		t.Fatalf("lan Decide(fe80::1%%eth0) = %q", d)
	}
}

func TestAllowOverrides(t *testing.T) {
	p := mustPolicy(t, PolicyConfig{Allow: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::ffff:10.0.0.0/104"), // written mapped; means 10.0.0.0/8
		netip.MustParsePrefix("64:ff9b::a00:0/104"),  // NAT64 to 10/8, explicitly
		netip.MustParsePrefix("192.168.1.77/24"),     // host bits are masked
	}})
	checkDecide(t, p, []decideCase{
		{"127.0.0.1", true, "allow 127.0.0.0/8", "", ""},
		// Same socket destination: allowed.
		{"::ffff:127.0.0.1", true, "allow 127.0.0.0/8", ViaIPv4Mapped, "127.0.0.1"},
		// Routed through a translator or tunnel: not covered by the allow.
		{"64:ff9b::7f00:1", false, "loopback", ViaNAT64, "127.0.0.1"},
		{"::127.0.0.1", false, "loopback", ViaIPv4Compatible, "127.0.0.1"},
		{"2002:7f00:1::1", false, "loopback", Via6to4, "127.0.0.1"},
		{"10.1.2.3", true, "allow 10.0.0.0/8", "", ""},
		{"64:ff9b::10.1.2.3", true, "allow 64:ff9b::a00:0/104", "", ""},
		{"192.168.1.5", true, "allow 192.168.1.0/24", "", ""},
		{"192.168.2.5", false, "rfc1918", "", ""},
		{"169.254.169.254", false, "cloud-metadata", "", ""},
	})
	// An explicit allow may admit a metadata address; only presets may not.
	p = mustPolicy(t, PolicyConfig{Allow: []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32")}})
	checkDecide(t, p, []decideCase{{"169.254.169.254", true, "allow 169.254.169.254/32", "", ""}})
}

func TestDenyBeatsAllowAndSelf(t *testing.T) {
	p := mustPolicy(t, PolicyConfig{
		Presets: []string{"lan"},
		Allow:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Deny: []netip.Prefix{
			netip.MustParsePrefix("10.1.0.0/16"),
			netip.MustParsePrefix("8.8.8.0/24"),
			netip.MustParsePrefix("2606:4700::/32"),
			netip.MustParsePrefix("::ffff:9.9.9.0/120"), // written mapped; means 9.9.9.0/24
		},
		Self: []netip.Addr{netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.5")},
	})
	checkDecide(t, p, []decideCase{
		{"10.1.2.3", false, "deny 10.1.0.0/16", "", ""},
		{"10.1.0.5", false, "deny 10.1.0.0/16", "", ""}, // deny beats self
		{"10.2.0.5", true, RuleSelf, "", ""},
		{"10.2.0.6", true, "allow 10.0.0.0/8", "", ""},
		{"192.168.0.1", true, "preset lan 192.168.0.0/16", "", ""},
		{"8.8.8.8", false, "deny 8.8.8.0/24", "", ""},
		{"::ffff:8.8.8.8", false, "deny 8.8.8.0/24", ViaIPv4Mapped, "8.8.8.8"},
		{"64:ff9b::8.8.8.8", false, "deny 8.8.8.0/24", ViaNAT64, "8.8.8.8"},
		{"2002:808:808::1", false, "deny 8.8.8.0/24", Via6to4, "8.8.8.8"},
		{"2001:0:4136:e378:8000:63bf:f7f7:f7f7", false, "deny 8.8.8.0/24", ViaTeredoClient, "8.8.8.8"},
		{"::ffff:10.1.0.1", false, "deny 10.1.0.0/16", ViaIPv4Mapped, "10.1.0.1"},
		{"2606:4700::1111", false, "deny 2606:4700::/32", "", ""},
		{"9.9.9.9", false, "deny 9.9.9.0/24", "", ""},
		{"8.8.4.4", true, RulePublic, "", ""},
	})
}

func TestSelf(t *testing.T) {
	p := mustPolicy(t, PolicyConfig{Self: []netip.Addr{
		netip.MustParseAddr("10.0.0.5"),
		netip.MustParseAddr("::ffff:192.168.7.7"), // mapped: same as 192.168.7.7
		netip.MustParseAddr("fe80::5%eth0"),       // zone ignored
		netip.MustParseAddr("fd00::5"),
	}})
	checkDecide(t, p, []decideCase{
		{"10.0.0.5", true, RuleSelf, "", ""},
		{"::ffff:10.0.0.5", true, RuleSelf, ViaIPv4Mapped, "10.0.0.5"},
		{"10.0.0.6", false, "rfc1918", "", ""},
		{"192.168.7.7", true, RuleSelf, "", ""},
		{"fe80::5", true, RuleSelf, "", ""},
		{"fd00::5", true, RuleSelf, "", ""},
		{"fd00::6", false, "ipv6-ula", "", ""},
		// Self is one address, not what may be embedded in another.
		{"64:ff9b::a00:5", false, "rfc1918", ViaNAT64, "10.0.0.5"},
	})
	d := p.Decide(netip.MustParseAddr("fe80::5%eth1"))
	if !d.Allowed || d.Rule != RuleSelf {
		t.Errorf("Decide(fe80::5%%eth1) = %q, want self", d)
	}
}

func TestPresets(t *testing.T) {
	if got, want := Presets(), []string{"cgnat", "documentation", "lan", "loopback"}; !slices.Equal(got, want) {
		t.Fatalf("Presets() = %v, want %v", got, want)
	}
	tests := []struct {
		preset string
		cases  []decideCase
	}{
		{"lan", []decideCase{
			{"10.1.1.1", true, "preset lan 10.0.0.0/8", "", ""},
			{"172.16.0.1", true, "preset lan 172.16.0.0/12", "", ""},
			{"192.168.1.1", true, "preset lan 192.168.0.0/16", "", ""},
			{"::ffff:192.168.1.1", true, "preset lan 192.168.0.0/16", ViaIPv4Mapped, "192.168.1.1"},
			{"fd12::1", true, "preset lan fc00::/7", "", ""},
			{"fe80::1", true, "preset lan fe80::/10", "", ""},
			{"169.254.169.254", false, "cloud-metadata", "", ""},
			{"169.254.1.1", false, "link-local", "", ""},
			{"fd00:ec2::254", false, "cloud-metadata", "", ""},
			{"127.0.0.1", false, "loopback", "", ""},
			{"100.64.0.1", false, "cgnat", "", ""},
		}},
		{"loopback", []decideCase{
			{"127.0.0.1", true, "preset loopback 127.0.0.0/8", "", ""},
			{"::1", true, "preset loopback ::1/128", "", ""},
			{"::ffff:127.0.0.1", true, "preset loopback 127.0.0.0/8", ViaIPv4Mapped, "127.0.0.1"},
			{"64:ff9b::7f00:1", false, "loopback", ViaNAT64, "127.0.0.1"},
			{"10.0.0.1", false, "rfc1918", "", ""},
		}},
		{"cgnat", []decideCase{
			{"100.64.0.1", true, "preset cgnat 100.64.0.0/10", "", ""},
			{"100.100.100.200", false, "cloud-metadata", "", ""},
		}},
		{"documentation", []decideCase{
			{"192.0.2.1", true, "preset documentation 192.0.2.0/24", "", ""},
			{"198.51.100.1", true, "preset documentation 198.51.100.0/24", "", ""},
			{"203.0.113.1", true, "preset documentation 203.0.113.0/24", "", ""},
			{"2001:db8::1", true, "preset documentation 2001:db8::/32", "", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.preset, func(t *testing.T) {
			checkDecide(t, mustPolicy(t, PolicyConfig{Presets: []string{tt.preset, tt.preset}}), tt.cases)
		})
	}
	for _, name := range Presets() {
		for _, pr := range PresetPrefixes(name) {
			if pr.Contains(netip.MustParseAddr("169.254.169.254")) {
				t.Errorf("preset %s contains the metadata address", name)
			}
		}
	}
	if PresetPrefixes("nope") != nil {
		t.Error("PresetPrefixes of an unknown name is not nil")
	}
}

func TestNewPolicyErrors(t *testing.T) {
	_, err := NewPolicy(PolicyConfig{Presets: []string{"lan", "wan"}})
	if !errors.Is(err, ErrUnknownPreset) || !strings.Contains(err.Error(), `"wan"`) {
		t.Errorf("unknown preset: err = %v", err)
	}
	for _, cfg := range []PolicyConfig{
		{Allow: []netip.Prefix{{}}},
		{Deny: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}}},
		{Self: []netip.Addr{{}}},
	} {
		if _, err := NewPolicy(cfg); err == nil {
			t.Errorf("NewPolicy(%+v): want error", cfg)
		}
	}
}

func TestInvalidAddr(t *testing.T) {
	for _, p := range []*Policy{nil, mustPolicy(t, PolicyConfig{Presets: []string{"lan"}, Allow: []netip.Prefix{netip.MustParsePrefix("::/0")}})} {
		d := p.Decide(netip.Addr{})
		if d.Allowed || d.Rule != RuleInvalid {
			t.Errorf("Decide(zero) = %q", d)
		}
		if got := d.String(); got != "deny invalid IP: rule invalid" {
			t.Errorf("String() = %q", got)
		}
		if lines := p.Explain(netip.Addr{}); lines[len(lines)-1] != "verdict: "+d.String() {
			t.Errorf("Explain(zero) = %q", lines)
		}
	}
}

func TestDecisionString(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"64:ff9b::a9fe:a9fe", "deny 64:ff9b::a9fe:a9fe: rule cloud-metadata via nat64 (169.254.169.254)"},
		{"8.8.8.8", "allow 8.8.8.8: rule public"},
		{"10.0.0.1", "deny 10.0.0.1: rule rfc1918"},
		{"::ffff:127.0.0.1", "deny ::ffff:127.0.0.1: rule loopback via ipv4-mapped (127.0.0.1)"},
	}
	for _, tt := range tests {
		if got := (*Policy)(nil).Decide(netip.MustParseAddr(tt.ip)).String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestExplain(t *testing.T) {
	p := mustPolicy(t, PolicyConfig{
		Presets: []string{"loopback"},
		Deny:    []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
		Self:    []netip.Addr{netip.MustParseAddr("198.51.100.1")},
	})
	tests := []struct {
		ip   string
		want []string // substrings, one per line
	}{
		{"::ffff:127.0.0.1", []string{
			"address: ::ffff:127.0.0.1",
			"embedded IPv4: 127.0.0.1 via ipv4-mapped",
			"1. deny prefixes: no match",
			"2. own relay addresses: not one of them",
			"3. allow prefixes and presets: allow ::ffff:127.0.0.1: rule preset loopback 127.0.0.0/8 via ipv4-mapped (127.0.0.1) (decides)",
			"4. built-in rules: not reached (would deny ::ffff:127.0.0.1: rule loopback via ipv4-mapped (127.0.0.1))",
			"5. default: not reached",
			"verdict: allow ::ffff:127.0.0.1: rule preset loopback 127.0.0.0/8 via ipv4-mapped (127.0.0.1)",
		}},
		{"64:ff9b::7f00:1", []string{
			"address: 64:ff9b::7f00:1",
			"embedded IPv4: 127.0.0.1 via nat64",
			"1. deny prefixes: no match",
			"2. own relay addresses: not one of them",
			"3. allow prefixes and presets: no match (embedded IPv4 is not compared",
			"4. built-in rules: deny 64:ff9b::7f00:1: rule loopback via nat64 (127.0.0.1) (decides)",
			"5. default: not reached",
			"verdict: deny 64:ff9b::7f00:1: rule loopback via nat64 (127.0.0.1)",
		}},
		{"fe80::1%eth0", []string{
			`address: fe80::1 (zone "eth0" stripped)`,
			"embedded IPv4: none",
			"1.", "2.", "3.",
			"4. built-in rules: deny fe80::1: rule ipv6-link-local (decides)",
			"5.",
			"verdict: deny fe80::1: rule ipv6-link-local",
		}},
		{"8.8.8.8", []string{
			"address: 8.8.8.8",
			"embedded IPv4: none",
			"1.", "2.", "3.",
			"4. built-in rules: no match",
			"5. default: allow 8.8.8.8: rule public (decides)",
			"verdict: allow 8.8.8.8: rule public",
		}},
	}
	for _, tt := range tests {
		lines := p.Explain(netip.MustParseAddr(tt.ip))
		if len(lines) != len(tt.want) {
			t.Errorf("Explain(%s) = %d lines, want %d:\n%s", tt.ip, len(lines), len(tt.want), strings.Join(lines, "\n"))
			continue
		}
		for i := range lines {
			if !strings.Contains(lines[i], tt.want[i]) {
				t.Errorf("Explain(%s) line %d = %q, want it to contain %q", tt.ip, i, lines[i], tt.want[i])
			}
		}
	}
	lines := (*Policy)(nil).Explain(netip.MustParseAddr("10.0.0.1"))
	if !strings.Contains(lines[2], "none configured") {
		t.Errorf("default policy Explain: %q", lines)
	}
}

func TestBuiltinRulesIsACopy(t *testing.T) {
	r := BuiltinRules()
	r[0].Prefixes[0] = netip.MustParsePrefix("8.8.8.0/24")
	if d := (*Policy)(nil).Decide(netip.MustParseAddr("8.8.8.8")); !d.Allowed {
		t.Fatal("modifying BuiltinRules() changed the policy")
	}
}

func TestDecideAllocs(t *testing.T) {
	p := mustPolicy(t, PolicyConfig{
		Presets: []string{"lan", "loopback"},
		Allow:   []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
		Deny:    []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
		Self:    []netip.Addr{netip.MustParseAddr("198.51.100.1")},
	})
	for _, s := range []string{"8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::7f00:1", "fe80::1%eth0", "2001:0:4136:e378:8000:63bf:80ff:fffe"} {
		ip := netip.MustParseAddr(s)
		if n := testing.AllocsPerRun(100, func() { p.Decide(ip) }); n != 0 {
			t.Errorf("Decide(%s) allocates %v times, want 0", s, n)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	p := mustPolicy(b, PolicyConfig{Presets: []string{"lan"}, Self: []netip.Addr{netip.MustParseAddr("198.51.100.1")}})
	for _, s := range []string{"8.8.8.8", "2606:4700::1111", "64:ff9b::7f00:1"} {
		ip := netip.MustParseAddr(s)
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(ip)
			}
		})
	}
}

func FuzzDecide(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "64:ff9b:1::7f00:1", "2002:7f00:1::1",
		"2001:0:4136:e378:8000:63bf:80ff:fffe", "::127.0.0.1", "8.8.8.8", "2606:4700::1111", "::", "::1"} {
		f.Add(netip.MustParseAddr(s).AsSlice())
	}
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	policies := []*Policy{
		nil,
		mustPolicy(f, PolicyConfig{}),
		mustPolicy(f, PolicyConfig{
			Presets: []string{"lan", "documentation"},
			Allow:   []netip.Prefix{netip.MustParsePrefix("64:ff9b::/96"), netip.MustParsePrefix("127.0.0.0/30")},
			Deny:    []netip.Prefix{netip.MustParsePrefix("8.8.8.0/24"), netip.MustParsePrefix("2001::/16")},
			Self:    []netip.Addr{netip.MustParseAddr("127.0.0.9"), netip.MustParseAddr("10.0.0.1")},
		}),
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ip netip.Addr
		switch {
		case len(b) >= 16:
			ip = netip.AddrFrom16([16]byte(b[:16]))
		case len(b) >= 4:
			ip = netip.AddrFrom4([4]byte(b[:4]))
		}
		es := embeddedIPv4(ip)
		for _, p := range policies {
			d := p.Decide(ip)
			if d.Rule == "" {
				t.Fatalf("Decide(%s): empty rule", ip)
			}
			overridden := d.Rule == RuleSelf || strings.HasPrefix(d.Rule, "allow ") || strings.HasPrefix(d.Rule, "preset ")
			if d.Allowed && !overridden && d.Rule != RulePublic {
				t.Fatalf("Decide(%s) = %q: allowed by an unexpected rule", ip, d)
			}
			if ip.Unmap().IsLoopback() && d.Allowed && !overridden {
				t.Fatalf("Decide(%s) = %q: loopback allowed", ip, d)
			}
			for _, e := range es.list() {
				if e.addr.IsLoopback() && d.Allowed && !overridden {
					t.Fatalf("Decide(%s) = %q: embedded loopback %s (%s) allowed", ip, d, e.addr, e.via)
				}
			}
			if !ip.IsValid() && (d.Allowed || d.Rule != RuleInvalid) {
				t.Fatalf("Decide(zero) = %q", d)
			}
			lines := p.Explain(ip)
			if got, want := lines[len(lines)-1], "verdict: "+d.String(); got != want {
				t.Fatalf("Explain(%s) verdict %q, Decide says %q", ip, got, want)
			}
		}
	})
}
