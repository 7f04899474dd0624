package auth

import (
	"fmt"
	"net/netip"
	"strings"
)

// PolicyConfig configures a Policy. The zero value is the secure default:
// only public addresses are allowed.
type PolicyConfig struct {
	// Presets names allow lists from Presets(), e.g. "lan" for a relay
	// that serves clients on the same private network. Default none.
	Presets []string
	// Allow lists extra ranges peers may be in, overriding the built-in
	// rules (step 3 of the package doc). Default none.
	Allow []netip.Prefix
	// Deny lists ranges peers may never be in, overriding everything
	// (step 1). Default none.
	Deny []netip.Prefix
	// Self lists the server's own relay addresses, always allowed unless
	// denied (step 2), so two clients of one server can reach each other's
	// relayed addresses. Default none.
	Self []netip.Addr
}

// Policy decides whether the relay may send to a peer address. It is
// immutable after NewPolicy and safe for concurrent use. A nil *Policy
// behaves like NewPolicy(PolicyConfig{}), so a missing policy fails closed.
type Policy struct {
	deny  []namedPrefix
	allow []namedPrefix // user allows first, then presets
	// preset marks which allow entries came from a preset: presets never
	// admit a cloud-metadata address (the lan preset's fc00::/7 contains
	// AWS's fd00:ec2::254).
	preset []bool
	self   map[netip.Addr]struct{}
}

var defaultPolicy = &Policy{}

// NewPolicy validates cfg and builds a Policy. IPv4-mapped prefixes
// (::ffff:10.0.0.0/104) are rewritten to the IPv4 prefix they map, and host
// bits are masked, so each range is compared in one canonical form.
func NewPolicy(cfg PolicyConfig) (*Policy, error) {
	p := &Policy{self: make(map[netip.Addr]struct{}, len(cfg.Self))}
	for i, pr := range cfg.Deny {
		np := NormalizePrefix(pr)
		if !np.IsValid() {
			return nil, fmt.Errorf("deny[%d]: invalid prefix %q", i, pr.String())
		}
		p.deny = append(p.deny, namedPrefix{np, "deny " + np.String()})
	}
	for i, pr := range cfg.Allow {
		np := NormalizePrefix(pr)
		if !np.IsValid() {
			return nil, fmt.Errorf("allow[%d]: invalid prefix %q", i, pr.String())
		}
		p.allow = append(p.allow, namedPrefix{np, "allow " + np.String()})
		p.preset = append(p.preset, false)
	}
	seen := map[string]bool{}
	for _, name := range cfg.Presets {
		prefixes, ok := presetPrefixes(name)
		if !ok {
			return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownPreset, name, strings.Join(Presets(), ", "))
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		for _, pr := range prefixes {
			p.allow = append(p.allow, namedPrefix{pr, "preset " + name + " " + pr.String()})
			p.preset = append(p.preset, true)
		}
	}
	for i, a := range cfg.Self {
		if !a.IsValid() {
			return nil, fmt.Errorf("self[%d]: invalid address", i)
		}
		p.self[a.WithZone("").Unmap()] = struct{}{}
	}
	return p, nil
}

// NormalizePrefix returns p in the one form a Policy compares prefixes in:
// an IPv4-mapped prefix (::ffff:10.0.0.0/104) becomes the IPv4 prefix it
// maps (10.0.0.0/8), and host bits are masked off. An invalid p gives the
// invalid Prefix.
func NormalizePrefix(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return netip.Prefix{}
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() && bits >= 96 {
		return netip.PrefixFrom(a.Unmap(), bits-96).Masked()
	}
	return p.Masked()
}

// Decision is the outcome of Policy.Decide. It is a value with no pointers
// to policy state, cheap to return and to log.
type Decision struct {
	// Allowed reports whether the relay may send to Addr.
	Allowed bool
	// Rule names what decided: a built-in rule name (BuiltinRules),
	// "deny <prefix>", "allow <prefix>", "preset <name> <prefix>",
	// RuleSelf, RulePublic or RuleInvalid. The set is bounded by the
	// configuration, never by traffic, so it is fit for a metrics label.
	Rule string
	// Via says how Embedded was found in Addr (the Via* constants), or ""
	// when Addr itself matched.
	Via string
	// Embedded is the IPv4 address embedded in Addr that decided, if any.
	Embedded netip.Addr
	// Addr is the address decided on, its zone stripped.
	Addr netip.Addr
}

// String renders the decision as one sentence for a log line or a CLI, e.g.
// "deny 64:ff9b::a9fe:a9fe: rule cloud-metadata via nat64 (169.254.169.254)".
func (d Decision) String() string {
	var b strings.Builder
	if d.Allowed {
		b.WriteString("allow ")
	} else {
		b.WriteString("deny ")
	}
	b.WriteString(d.Addr.String())
	b.WriteString(": rule ")
	b.WriteString(d.Rule)
	if d.Via != "" {
		b.WriteString(" via ")
		b.WriteString(d.Via)
	}
	if d.Embedded.IsValid() {
		b.WriteString(" (")
		b.WriteString(d.Embedded.String())
		b.WriteString(")")
	}
	return b.String()
}

// embedded is an IPv4 address found inside an IPv6 address.
type embedded struct {
	addr netip.Addr
	via  string
}

// embeddings holds at most two: only Teredo carries two IPv4 addresses,
// and the formats are mutually exclusive. A fixed array keeps Decide free
// of allocation.
type embeddings struct {
	n int
	e [2]embedded
}

func (es *embeddings) add(a netip.Addr, via string) {
	es.e[es.n] = embedded{a, via}
	es.n++
}

func (es *embeddings) list() []embedded { return es.e[:es.n] }

// embeddedIPv4 returns every IPv4 address a packet to a may end up at.
func embeddedIPv4(a netip.Addr) embeddings {
	var es embeddings
	if !a.Is6() {
		return es
	}
	if a.Is4In6() {
		es.add(a.Unmap(), ViaIPv4Mapped)
		return es
	}
	b := a.As16()
	last4 := func() netip.Addr { return netip.AddrFrom4([4]byte(b[12:16])) }
	switch {
	case isZero(b[:12]):
		// RFC 4291 §2.5.5.1; :: and ::1 are the unspecified and loopback
		// addresses, not IPv4-compatible ones.
		if a != netip.IPv6Unspecified() && a != netip.IPv6Loopback() {
			es.add(last4(), ViaIPv4Compatible)
		}
	case b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && isZero(b[4:12]):
		// RFC 6052 §2.1 well-known prefix 64:ff9b::/96.
		es.add(last4(), ViaNAT64)
	case b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0x00 && b[5] == 0x01:
		// RFC 8215 local-use prefix 64:ff9b:1::/48, taken as used with a
		// /96 translation prefix (IPv4 in the last 32 bits). A deployment
		// using a shorter RFC 6052 §2.2 layout is still caught by the
		// built-in "nat64" rule covering the whole /48.
		es.add(last4(), ViaNAT64)
	case b[0] == 0x20 && b[1] == 0x02:
		// RFC 3056 §2: 2002:V4ADDR::/48.
		es.add(netip.AddrFrom4([4]byte(b[2:6])), Via6to4)
	case b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x00 && b[3] == 0x00:
		// RFC 4380 §4: prefix, server IPv4, flags, port, client IPv4 with
		// every bit inverted. The client is where the traffic goes, so it
		// is checked first.
		es.add(netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), ViaTeredoClient)
		es.add(netip.AddrFrom4([4]byte(b[4:8])), ViaTeredoServer)
	}
	return es
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// Decide decides whether the relay may send to ip, in the order the package
// doc gives. It runs on every CreatePermission and ChannelBind, so it does
// not allocate and never panics; any invalid input is denied.
func (p *Policy) Decide(ip netip.Addr) Decision {
	if p == nil {
		p = defaultPolicy
	}
	a := ip.WithZone("")
	if !a.IsValid() {
		return Decision{Rule: RuleInvalid, Addr: a}
	}
	es := embeddedIPv4(a)
	if d, ok := p.denyStep(a, &es); ok {
		return d
	}
	if d, ok := p.selfStep(a); ok {
		return d
	}
	if d, ok := p.allowStep(a); ok {
		return d
	}
	if d, ok := builtinStep(a, &es); ok {
		return d
	}
	return Decision{Allowed: true, Rule: RulePublic, Addr: a}
}

// denyStep is step 1: the operator's deny list, matched against the address
// and everything embedded in it.
func (p *Policy) denyStep(a netip.Addr, es *embeddings) (Decision, bool) {
	for _, np := range p.deny {
		if np.prefix.Contains(a) {
			return Decision{Rule: np.name, Addr: a}, true
		}
		for _, e := range es.list() {
			if np.prefix.Contains(e.addr) {
				return Decision{Rule: np.name, Via: e.via, Embedded: e.addr, Addr: a}, true
			}
		}
	}
	return Decision{}, false
}

// selfStep is step 2: the server's own relay addresses.
func (p *Policy) selfStep(a netip.Addr) (Decision, bool) {
	u := a.Unmap()
	if _, ok := p.self[u]; !ok {
		return Decision{}, false
	}
	d := Decision{Allowed: true, Rule: RuleSelf, Addr: a}
	if a.Is4In6() {
		d.Via, d.Embedded = ViaIPv4Mapped, u
	}
	return d, true
}

// allowStep is step 3: the operator's allow list and presets, matched
// against the address with only IPv4-mapping undone (see the package doc
// for why the other embeddings are not).
func (p *Policy) allowStep(a netip.Addr) (Decision, bool) {
	u := a.Unmap()
	for i, np := range p.allow {
		if !np.prefix.Contains(u) {
			continue
		}
		if p.preset[i] && isCloudMetadata(u) {
			continue
		}
		d := Decision{Allowed: true, Rule: np.name, Addr: a}
		if a.Is4In6() {
			d.Via, d.Embedded = ViaIPv4Mapped, u
		}
		return d, true
	}
	return Decision{}, false
}

func isCloudMetadata(a netip.Addr) bool {
	for _, np := range metadata {
		if np.prefix.Contains(a) {
			return true
		}
	}
	return false
}

// builtinStep is step 4: embedded IPv4 addresses against the built-in IPv4
// rules first (they name the more specific danger: "loopback via nat64"
// rather than just "nat64"), then the address itself.
func builtinStep(a netip.Addr, es *embeddings) (Decision, bool) {
	for _, e := range es.list() {
		if np, ok := match(builtin4, e.addr); ok {
			return Decision{Rule: np.name, Via: e.via, Embedded: e.addr, Addr: a}, true
		}
	}
	table := builtin6
	if a.Is4() {
		table = builtin4
	}
	if np, ok := match(table, a); ok {
		return Decision{Rule: np.name, Addr: a}, true
	}
	return Decision{}, false
}

func match(table []namedPrefix, a netip.Addr) (namedPrefix, bool) {
	for _, np := range table {
		if np.prefix.Contains(a) {
			return np, true
		}
	}
	return namedPrefix{}, false
}

// Explain walks the steps of Decide for ip and says what each concluded,
// for `icegate policy explain`. Every step is shown, including those after
// the deciding one (marked "not reached"), so an operator can see, say,
// that an allow overrides a built-in rule. The last line is the verdict,
// Decide(ip).String().
func (p *Policy) Explain(ip netip.Addr) []string {
	if p == nil {
		p = defaultPolicy
	}
	final := p.Decide(ip)
	a := ip.WithZone("")
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	if !a.IsValid() {
		add("address: invalid")
		add("verdict: %s", final)
		return lines
	}
	if z := ip.Zone(); z != "" {
		add("address: %s (zone %q stripped)", a, z)
	} else {
		add("address: %s", a)
	}
	es := embeddedIPv4(a)
	if es.n == 0 {
		add("embedded IPv4: none")
	}
	for _, e := range es.list() {
		add("embedded IPv4: %s via %s", e.addr, e.via)
	}

	decided := false
	// step formats one step: its own conclusion, and whether it decided.
	step := func(n int, what string, d Decision, matched bool, none string) {
		switch {
		case !matched:
			add("%d. %s: %s", n, what, none)
		case decided:
			add("%d. %s: not reached (would %s)", n, what, d)
		default:
			add("%d. %s: %s (decides)", n, what, d)
			decided = true
		}
	}

	d, ok := p.denyStep(a, &es)
	step(1, "deny prefixes", d, ok, countNone(len(p.deny), "no match"))

	d, ok = p.selfStep(a)
	step(2, "own relay addresses", d, ok, countNone(len(p.self), "not one of them"))

	d, ok = p.allowStep(a)
	none := countNone(len(p.allow), "no match")
	if a.Is4In6() {
		none += fmt.Sprintf(" (compared as %s)", a.Unmap())
	} else if es.n > 0 {
		none += fmt.Sprintf(" (embedded IPv4 is not compared: %s is routed via %s, not to %s directly)", a, es.e[0].via, es.e[0].addr)
	}
	step(3, "allow prefixes and presets", d, ok, none)

	d, ok = builtinStep(a, &es)
	step(4, "built-in rules", d, ok, "no match")

	step(5, "default", Decision{Allowed: true, Rule: RulePublic, Addr: a}, true, "")
	add("verdict: %s", final)
	return lines
}

func countNone(n int, s string) string {
	if n == 0 {
		return "none configured"
	}
	return s
}
