package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"icegate/auth"
)

// PeerPolicy is which peers the relay may reach, as the server decides it:
// the operator's policy (auth.Policy) with this server's own relay addresses
// added, so that two clients can talk relay to relay, and those own
// addresses guarded: unless the operator allowed such an address explicitly
// (an allow entry or a preset), relays reach it only on relay ports, so a
// credential does not open the server's other services (SSH, the signaling
// port). The server holds one and swaps it on reload; `icegate policy
// explain` builds one with NewPeerPolicy, so both say the same. It is
// immutable and safe for concurrent use.
type PeerPolicy struct {
	policy *auth.Policy
	// guarded are this server's own addresses that relays may reach only
	// on relay ports.
	guarded          []netip.Addr
	minPort, maxPort int
}

// NewPeerPolicy builds the peer policy a Server started with cfg decides
// by, finding this server's own addresses with SelfAddrs.
func NewPeerPolicy(cfg Config) (*PeerPolicy, error) {
	cfg = cfg.withDefaults()
	self, err := SelfAddrs(cfg.Relay)
	if err != nil {
		return nil, err
	}
	return newPeerPolicy(cfg.Policy, cfg.Relay, self)
}

// newPeerPolicy builds the policy of pc around self, the advertised relay
// addresses; r has its defaults applied.
func newPeerPolicy(pc PolicyConfig, r RelayConfig, self []netip.Addr) (*PeerPolicy, error) {
	apc := auth.PolicyConfig{Presets: pc.Presets, Allow: pc.Allow, Deny: pc.Deny}
	withoutSelf, err := auth.NewPolicy(apc)
	if err != nil {
		return nil, err
	}
	apc.Self = self
	policy, err := auth.NewPolicy(apc)
	if err != nil {
		return nil, err
	}
	guarded := []netip.Addr{}
	for _, a := range self {
		// Allowed only as itself (or as any public address): guard it. An
		// explicit allow entry or preset is the operator opening it.
		if d := withoutSelf.Decide(a); !d.Allowed || d.Rule == auth.RulePublic {
			guarded = append(guarded, a.Unmap())
		}
	}
	return &PeerPolicy{policy: policy, guarded: guarded, minPort: r.MinPort, maxPort: r.MaxPort}, nil
}

// Decide decides a permission for ip (RFC 8656 §9: a permission names no
// port).
func (p *PeerPolicy) Decide(ip netip.Addr) auth.Decision { return p.policy.Decide(ip) }

// Guarded reports whether ip is one of this server's own addresses that
// relays may reach only on relay ports.
func (p *PeerPolicy) Guarded(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, a := range p.guarded {
		if a == ip {
			return true
		}
	}
	return false
}

// SelfPort reports whether peer is this server's own guarded address on a
// port outside the relay range (its STUN, HTTP or metrics port, a service
// beside it): a permission to the address is granted, but data to such a
// port is dropped and a ChannelBind or Connect to it refused (rule
// self_port). It runs on the packet path and does not allocate.
func (p *PeerPolicy) SelfPort(peer netip.AddrPort) bool {
	port := int(peer.Port())
	return (port < p.minPort || port > p.maxPort) && p.Guarded(peer.Addr())
}

// SelfPortRule is the rule name of a peer SelfPort refuses, in logs,
// events and the peer_denials metric.
const SelfPortRule = "self_port"

// selfPortWhy is what the log says about a peer SelfPort refuses.
const selfPortWhy = "this server's own address outside the relay ports; to reach a service there, list the address in policy.allow"

// Explain walks the policy's steps for peer as auth.Policy.Explain does and
// adds what the server does about its own addresses: for a guarded address,
// that only the relay ports are reachable, and with a port (not 0) outside
// them, the verdict the server reaches (rule self_port). A port of 0 asks
// about the permission alone.
func (p *PeerPolicy) Explain(peer netip.AddrPort) []string {
	ip := peer.Addr()
	lines := p.policy.Explain(ip)
	d := p.policy.Decide(ip)
	if !d.Allowed || !p.Guarded(ip) {
		return lines
	}
	verdict := lines[len(lines)-1]
	lines = append(lines[:len(lines)-1:len(lines)-1], fmt.Sprintf(
		"6. own address, relay ports only: relays reach %s on ports %d-%d only; data to its other ports is dropped and ChannelBind or Connect to them refused (rule %s)",
		ip.WithZone(""), p.minPort, p.maxPort, SelfPortRule))
	if peer.Port() != 0 && p.SelfPort(peer) {
		return append(lines, fmt.Sprintf("verdict: deny %s: rule %s (%s)",
			netip.AddrPortFrom(ip.WithZone(""), peer.Port()), SelfPortRule, selfPortWhy))
	}
	return append(lines, verdict)
}

// SelfAddrs returns this server's own relay addresses, as clients name them
// when they send to another client's relay: per family, the advertised
// address (IPv4Public or IPv6Public), else the bind address, else, for a
// wildcard bind, the one detectAddress finds on this host's interfaces. A
// family with nothing to advertise is off (IPv6), or an error (IPv4, which
// only a missing IPv4Bind switches off). A family whose address is
// discovered (IPv4Discover) is left out: only a running server asks the
// STUN servers. The server advertises exactly these in XOR-RELAYED-ADDRESS.
func SelfAddrs(r RelayConfig) ([]netip.Addr, error) {
	r = Config{Relay: r}.withDefaults().Relay
	v4, v6, err := relayPublic(r)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range []netip.Addr{v4, v6} {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out, nil
}

// relayPublic returns the advertised address of each relay family (see
// SelfAddrs); invalid means the family is off, or that its address is
// discovered (IPv4Discover, IPv6Discover), which only a running Server
// does. r has its defaults applied.
func relayPublic(r RelayConfig) (v4, v6 netip.Addr, err error) {
	resolve := func(bind, pub netip.Addr, v6 bool) netip.Addr {
		if !bind.IsValid() || pub.IsValid() {
			return pub
		}
		if bind.IsUnspecified() {
			return detectAddress(v6)
		}
		return bind
	}
	if !r.IPv4Discover {
		v4 = resolve(r.IPv4Bind, r.IPv4Public, false)
		if r.IPv4Bind.IsValid() && !v4.IsValid() {
			return netip.Addr{}, netip.Addr{}, errors.New("relay: no IPv4 address found on this host to advertise; set relay.ipv4_public")
		}
	}
	if !r.IPv6Discover {
		v6 = resolve(r.IPv6Bind, r.IPv6Public, true)
	}
	if !v4.IsValid() && !v6.IsValid() && !r.IPv4Discover && !r.IPv6Discover {
		return netip.Addr{}, netip.Addr{}, errors.New("relay: neither IPv4 nor IPv6 relays are configured")
	}
	return v4, v6, nil
}

// derived reports whether the advertised address of a family is picked
// from this host's interfaces (a wildcard bind, nothing configured or
// discovered): the one case where a private address only warns.
func derived(bind, pub netip.Addr, discover bool) bool {
	return bind.IsValid() && bind.IsUnspecified() && !pub.IsValid() && !discover
}

// detectAddress picks the address to advertise when the bind address is a
// wildcard and none is configured: a global address if the host has one,
// else a private one, else (IPv4 only) loopback. It only reads interface
// lists; no packet is sent.
func detectAddress(v6 bool) netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}
	}
	var global, priv, loop netip.Addr
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr()
		if ip.Is6() != v6 || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
			continue
		}
		switch {
		case ip.IsLoopback():
			if !loop.IsValid() {
				loop = ip
			}
		case private(ip):
			if !priv.IsValid() {
				priv = ip
			}
		case ip.IsGlobalUnicast():
			if !global.IsValid() {
				global = ip
			}
		}
	}
	switch {
	case global.IsValid():
		return global
	case priv.IsValid():
		return priv
	case !v6:
		return loop
	}
	return netip.Addr{}
}

// private reports addresses that peers on the internet cannot reach.
func private(a netip.Addr) bool { return auth.NonPublic(a) != "" }
