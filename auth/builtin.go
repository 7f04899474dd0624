package auth

import (
	"net/netip"
	"slices"
)

// Rule is a named set of special-purpose ranges the peer policy denies by
// default. Name is short and stable: it appears in Decision.Rule, in logs
// and as a metrics label.
type Rule struct {
	Name     string
	Prefixes []netip.Prefix
	Why      string
}

// Rule names that are not built-in ranges.
const (
	RuleInvalid = "invalid" // the zero or otherwise unusable netip.Addr
	RuleSelf    = "self"    // one of the server's own relay addresses
	RulePublic  = "public"  // no rule matched: an ordinary public address
)

// How an IPv4 address was found inside an IPv6 address (Decision.Via).
const (
	ViaIPv4Mapped     = "ipv4-mapped"     // ::ffff:a.b.c.d, RFC 4291 §2.5.5.2
	ViaIPv4Compatible = "ipv4-compatible" // ::a.b.c.d, RFC 4291 §2.5.5.1
	ViaNAT64          = "nat64"           // 64:ff9b::/96 (RFC 6052), 64:ff9b:1::/48 (RFC 8215)
	Via6to4           = "6to4"            // 2002:AABB:CCDD::/48, RFC 3056 §2
	ViaTeredoServer   = "teredo-server"   // 2001:0::/32 bits 32-63, RFC 4380 §4
	ViaTeredoClient   = "teredo-client"   // 2001:0::/32 last 32 bits inverted, RFC 4380 §4
)

// ruleCloudMetadata is looked up by name: presets must never admit it.
const ruleCloudMetadata = "cloud-metadata"

func pfx(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

// builtinRules is evaluated in order, so a narrow rule comes before the
// broad one containing it (cloud-metadata before link-local, ipv6-loopback
// before ipv4-compatible) and names the match precisely.
var builtinRules = []Rule{
	{"this-network", pfx("0.0.0.0/8"),
		`"this host on this network" (RFC 1122 §3.2.1.3, RFC 6890); Linux delivers 0.0.0.0 to the local host`},
	{"loopback", pfx("127.0.0.0/8"),
		"the relay host itself (RFC 1122 §3.2.1.3): admin ports, databases, metadata proxies"},
	{ruleCloudMetadata, pfx("169.254.169.254/32", "100.100.100.200/32", "fd00:ec2::254/128"),
		"instance metadata services (AWS, GCP, Azure, OpenStack; Alibaba; AWS over IPv6) hand out cloud credentials"},
	{"link-local", pfx("169.254.0.0/16"),
		"IPv4 link-local (RFC 3927), only meaningful on the relay's own links"},
	{"rfc1918", pfx("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
		"private networks (RFC 1918) behind the relay"},
	{"cgnat", pfx("100.64.0.0/10"),
		"shared address space (RFC 6598): the provider's network behind the relay"},
	{"ietf-protocol", pfx("192.0.0.0/24"),
		"IETF protocol assignments (RFC 6890 §2.2.2), not general unicast destinations"},
	{"documentation", pfx("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"),
		"documentation ranges (RFC 5737, RFC 3849), never routed; allow them in test labs"},
	{"benchmarking", pfx("198.18.0.0/15", "2001:2::/48"),
		"benchmarking ranges (RFC 2544, RFC 5180), not for production traffic"},
	{"multicast", pfx("224.0.0.0/4"),
		"IPv4 multicast (RFC 5771): TURN relays to one unicast peer (RFC 8656 §2)"},
	{"broadcast", pfx("255.255.255.255/32"),
		"limited broadcast (RFC 919, RFC 8190) reaches every host on the relay's link"},
	{"reserved", pfx("240.0.0.0/4"),
		"reserved for future use (RFC 1112 §4), not routed"},
	{"ipv6-loopback", pfx("::1/128"),
		"the relay host itself (RFC 4291 §2.5.3)"},
	{"ipv6-unspecified", pfx("::/128"),
		"the unspecified address (RFC 4291 §2.5.2); connecting to it reaches the local host"},
	{"ipv4-compatible", pfx("::/96"),
		"deprecated IPv4-compatible addresses (RFC 4291 §2.5.5.1), which some stacks deliver to the embedded IPv4"},
	{"nat64", pfx("64:ff9b::/96", "64:ff9b:1::/48"),
		"NAT64 prefixes (RFC 6052, RFC 8215): a translator forwards to the embedded IPv4, which may be internal"},
	{"discard-only", pfx("100::/64"),
		"discard-only prefix (RFC 6666), a blackhole by definition"},
	{"teredo", pfx("2001::/32"),
		"Teredo tunnels (RFC 4380) reach the embedded IPv4 addresses through a tunnel relay"},
	{"6to4", pfx("2002::/16"),
		"6to4 (RFC 3056) reaches the embedded IPv4 address through a tunnel relay"},
	{"ipv6-ula", pfx("fc00::/7"),
		"unique local addresses (RFC 4193): private IPv6 networks behind the relay"},
	{"ipv6-site-local", pfx("fec0::/10"),
		"deprecated site-local addresses (RFC 3879), still private where used"},
	{"ipv6-link-local", pfx("fe80::/10"),
		"IPv6 link-local (RFC 4291 §2.5.6), only meaningful on the relay's own links"},
	{"ipv6-multicast", pfx("ff00::/8"),
		"IPv6 multicast (RFC 4291 §2.7): TURN relays to one unicast peer"},
}

// namedPrefix is one prefix with the rule name a match reports, built once
// so Decide never formats a string.
type namedPrefix struct {
	prefix netip.Prefix
	name   string
}

// builtin4 and builtin6 flatten builtinRules per address family, keeping
// the order, so a lookup scans only the prefixes that can match.
var builtin4, builtin6, metadata = flattenBuiltins()

func flattenBuiltins() (v4, v6, meta []namedPrefix) {
	for _, r := range builtinRules {
		for _, p := range r.Prefixes {
			np := namedPrefix{p, r.Name}
			if p.Addr().Is4() {
				v4 = append(v4, np)
			} else {
				v6 = append(v6, np)
			}
			if r.Name == ruleCloudMetadata {
				meta = append(meta, np)
			}
		}
	}
	return v4, v6, meta
}

// BuiltinRules returns the built-in deny rules in the order Decide applies
// them, for a program that lists them (`icegate policy explain` does not:
// Policy.Explain names only the rule that decides). An IPv4-mapped address
// (::ffff:0:0/96) has no rule of its own: it is judged as the IPv4 address
// it maps, with Via "ipv4-mapped". The result is a copy.
func BuiltinRules() []Rule {
	out := make([]Rule, len(builtinRules))
	for i, r := range builtinRules {
		out[i] = Rule{r.Name, slices.Clone(r.Prefixes), r.Why}
	}
	return out
}

// preset is a named allow list for a common deployment.
type preset struct {
	name     string
	prefixes []netip.Prefix
}

// presets are built from the built-in rules they undo, so the two cannot
// drift apart. 169.254.0.0/16 is deliberately in none: it holds the cloud
// metadata address.
var presets = []preset{
	{"lan", rulePrefixes("rfc1918", "ipv6-ula", "ipv6-link-local")},
	{"loopback", rulePrefixes("loopback", "ipv6-loopback")},
	{"cgnat", rulePrefixes("cgnat")},
	{"documentation", rulePrefixes("documentation")},
}

// rulePrefixes returns the prefixes of the named built-in rules, in the
// order given. An unknown name is a programming error and panics when the
// package is initialised.
func rulePrefixes(names ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, name := range names {
		i := slices.IndexFunc(builtinRules, func(r Rule) bool { return r.Name == name })
		if i < 0 {
			panic("auth: no built-in rule " + name)
		}
		out = append(out, builtinRules[i].Prefixes...)
	}
	return out
}

// presetPrefixes returns the prefixes of the named preset; ok is false for
// an unknown name. The result is shared and must not be modified.
func presetPrefixes(name string) (prefixes []netip.Prefix, ok bool) {
	for _, p := range presets {
		if p.name == name {
			return p.prefixes, true
		}
	}
	return nil, false
}

// Presets returns the names PolicyConfig.Presets accepts, sorted.
func Presets() []string {
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.name
	}
	slices.Sort(names)
	return names
}

// PresetPrefixes returns the prefixes a preset allows, or nil for an
// unknown name. The result is a copy.
func PresetPrefixes(name string) []netip.Prefix {
	prefixes, _ := presetPrefixes(name)
	return slices.Clone(prefixes)
}
