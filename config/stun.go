package config

import (
	"net/netip"
	"slices"

	"github.com/hashicorp/hcl/v2"
)

// STUN configures RFC 5780 NAT behaviour discovery: with an alternate
// address, icegate answers Binding on four UDP sockets (the primary and
// alternate IPs times listen.port and alternate_port) with OTHER-ADDRESS and
// CHANGE-REQUEST support, and serves TURN on all four. Off by default.
type STUN struct {
	// AlternateAddress is the second IP address of this host (coturn's second
	// listening-ip). "" (the default) switches RFC 5780 off: no OTHER-ADDRESS,
	// and CHANGE-REQUEST gets 420. When set, listen.addresses must hold
	// exactly one address of the same family, a specific one: the primary.
	AlternateAddress      string    `hcl:"alternate_address,optional"`
	AlternateAddressRange hcl.Range `hcl:"alternate_address,attr_range"`
	// AlternatePort is the second UDP port, opened on both addresses
	// (coturn's alt-listening-port). Default 3479.
	AlternatePort      int       `hcl:"alternate_port,optional"`
	AlternatePortRange hcl.Range `hcl:"alternate_port,attr_range"`
	// AlternatePublic is the alternate address as clients see it behind a 1:1
	// NAT (the primary's is relay.ipv4_public or relay.ipv6_public). ""
	// means alternate_address. Default "".
	AlternatePublic      string    `hcl:"alternate_public,optional"`
	AlternatePublicRange hcl.Range `hcl:"alternate_public,attr_range"`
	// RFC3489 serves clients older than RFC 5780: it adds the classic
	// CHANGED-ADDRESS and SOURCE-ADDRESS attributes to Binding responses,
	// and on an IPv4 pair of addresses answers RFC 3489 Binding requests
	// (no magic cookie) on the four sockets, honouring CHANGE-REQUEST but
	// never RESPONSE-ADDRESS (the answer goes to the source). Default false.
	RFC3489      *bool     `hcl:"rfc3489,optional"`
	RFC3489Range hcl.Range `hcl:"rfc3489,attr_range"`

	// Filled by Validate; invalid (zero) when RFC 5780 is off.
	PrimaryAddr, AlternateAddr, PrimaryPublicAddr, AlternatePublicAddr netip.Addr
}

// Enabled reports whether RFC 5780 is configured (after Validate).
func (s *STUN) Enabled() bool { return s != nil && s.AlternateAddr.IsValid() }

func (s *STUN) validate(v *validator, l *Listen, r *Relay) {
	s.PrimaryAddr, s.AlternateAddr, s.PrimaryPublicAddr, s.AlternatePublicAddr = netip.Addr{}, netip.Addr{}, netip.Addr{}, netip.Addr{}
	portOK := v.port(s.AlternatePort, s.AlternatePortRange, "stun.alternate_port")
	if s.AlternateAddress == "" {
		if s.AlternatePublic != "" {
			v.conflict(
				s.AlternatePublicRange, "stun.alternate_public", "set while stun.alternate_address is empty (RFC 5780 off)",
				s.AlternateAddressRange, "stun.alternate_address", "empty (RFC 5780 off) while stun.alternate_public is set")
		}
		if s.RFC3489On() {
			v.conflict(
				s.RFC3489Range, "stun.rfc3489", "true while stun.alternate_address is empty; CHANGED-ADDRESS needs a second address",
				s.AlternateAddressRange, "stun.alternate_address", "empty while stun.rfc3489 is true; CHANGED-ADDRESS needs a second address")
		}
		return
	}

	alt := v.hostAddr(s.AlternateAddress, s.AlternateAddressRange, "stun.alternate_address")
	if !alt.IsValid() {
		return
	}
	family := "IPv4"
	if alt.Is6() {
		family = "IPv6"
	}
	ok := portOK
	var primary netip.Addr
	var same []netip.Addr
	for _, a := range l.Addrs {
		if a.Is4() == alt.Is4() {
			same = append(same, a)
		}
	}
	switch {
	case slices.Contains(l.Addrs, alt):
		v.errorf(s.AlternateAddressRange, "stun.alternate_address", "%s is also in listen.addresses; list only the primary address there", alt)
		ok = false
	case len(same) != 1:
		v.errorf(v.at(s.AlternateAddressRange, l.AddressesRange), "stun.alternate_address",
			"RFC 5780 needs listen.addresses to hold exactly one %s address, the primary; it holds %d", family, len(same))
		ok = false
	case same[0].IsUnspecified():
		v.errorf(v.at(s.AlternateAddressRange, l.AddressesRange), "stun.alternate_address",
			"RFC 5780 needs a specific primary address in listen.addresses, not %s: a wildcard socket cannot say which address answered", same[0])
		ok = false
	default:
		primary = same[0]
	}
	if !l.UDPOn() {
		v.conflict(
			s.AlternateAddressRange, "stun.alternate_address", "set while listen.udp is false; RFC 5780 runs over UDP",
			l.UDPRange, "listen.udp", "false while stun.alternate_address is set; RFC 5780 runs over UDP")
		ok = false
	}
	if portOK {
		switch {
		case s.AlternatePort == l.Port:
			v.errorf(v.at(s.AlternatePortRange, l.PortRange), "stun.alternate_port", "%d is also listen.port; the alternate port must differ", s.AlternatePort)
			ok = false
		case s.AlternatePort == l.TLSPort && l.DTLSOn():
			v.errorf(v.at(s.AlternatePortRange, l.TLSPortRange), "stun.alternate_port", "%d is also listen.tls_port, which DTLS uses", s.AlternatePort)
			ok = false
		case s.AlternatePort >= r.MinPort && s.AlternatePort <= r.MaxPort:
			v.warnf(v.at(s.AlternatePortRange, r.MinPortRange, r.MaxPortRange), "stun.alternate_port", "%d is inside the relay port range %d-%d; relays cannot get that port", s.AlternatePort, r.MinPort, r.MaxPort)
		}
	}

	pub := alt
	if s.AlternatePublic != "" {
		pub = v.hostAddr(s.AlternatePublic, s.AlternatePublicRange, "stun.alternate_public")
		switch {
		case !pub.IsValid():
			ok = false
		case pub.Is4() != alt.Is4():
			v.errorf(s.AlternatePublicRange, "stun.alternate_public", "%s is not an %s address like stun.alternate_address", pub, family)
			ok = false
		}
	}
	// OTHER-ADDRESS and the four public addresses are fixed at start; a
	// discovered primary that changes would leave them naming the old one.
	if auto, field := r.IPv4PublicAuto, "relay.ipv4_public"; alt.Is4() && auto || alt.Is6() && r.IPv6PublicAuto {
		if alt.Is6() {
			field = "relay.ipv6_public"
		}
		v.conflict(
			s.AlternateAddressRange, "stun.alternate_address", "set while "+field+" is \"auto\": RFC 5780 answers name fixed public addresses, and a discovered one may change",
			r.rangeOf(field), field, "\"auto\" while stun.alternate_address is set: name the primary's public address for RFC 5780")
		ok = false
	}
	primaryPub := primary
	if p := r.IPv4PublicAddr; alt.Is4() && p.IsValid() {
		primaryPub = p
	}
	if p := r.IPv6PublicAddr; alt.Is6() && p.IsValid() {
		primaryPub = p
	}
	field := "relay.ipv4_public"
	if alt.Is6() {
		field = "relay.ipv6_public"
	}
	// Without a valid primary address its error says enough: the warning
	// would only compare a public address with nothing.
	if primary.IsValid() && primaryPub != primary && s.AlternatePublic == "" {
		v.warnf(s.AlternateAddressRange, "stun.alternate_public",
			"empty while %s is set: OTHER-ADDRESS will name %s, the alternate's local address; set its public one", field, alt)
	}
	if ok && primaryPub.IsValid() && pub.IsValid() && primaryPub == pub {
		v.errorf(v.at(s.AlternatePublicRange, s.AlternateAddressRange), "stun.alternate_public",
			"%s is also %s, the primary's public address; clients would see one IP", pub, field)
		ok = false
	}
	if ok {
		s.PrimaryAddr, s.AlternateAddr, s.PrimaryPublicAddr, s.AlternatePublicAddr = primary, alt, primaryPub, pub
	}
}

// hostAddr parses a specific unicast IP address.
func (v *validator) hostAddr(s string, rng hcl.Range, field string) netip.Addr {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		v.errorf(rng, field, "%q is not an IP address", s)
	case a.Zone() != "":
		v.errorf(rng, field, "%q has a zone; write the address alone", s)
	case a.Is4In6():
		v.errorf(rng, field, "%q is IPv4-mapped; write %s", s, a.Unmap())
	case a.IsUnspecified() || a.IsMulticast():
		v.errorf(rng, field, "%s is not a unicast host address", a)
	default:
		return a
	}
	return netip.Addr{}
}

// rangeOf is the source range of relay.ipv4_public or relay.ipv6_public.
func (r *Relay) rangeOf(field string) hcl.Range {
	if field == "relay.ipv6_public" {
		return r.IPv6PublicRange
	}
	return r.IPv4PublicRange
}
