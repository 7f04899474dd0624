package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/hashicorp/hcl/v2"
)

// tcpBind is a TCP socket the config asks for, as the server binds it.
type tcpBind struct {
	field string // the attribute that names it
	rng   hcl.Range
	role  string // what it serves, for messages
	addr  netip.Addr
	// dual is a wildcard IPv6 address bound by Go's net.Listen("tcp"), as
	// http.listen and metrics.listen are: the socket takes IPv4 too.
	// listen.addresses are bound as tcp4 or tcp6, never dual.
	dual bool
	port int
}

func (b tcpBind) String() string { return netip.AddrPortFrom(b.addr, uint16(b.port)).String() }

// overlaps reports whether the kernel refuses to bind both: the same port
// and addresses that meet (the same address, or a wildcard of its family,
// or a dual-stack wildcard and anything).
func (b tcpBind) overlaps(o tcpBind) bool {
	if b.port == 0 || b.port != o.port {
		return false
	}
	if b.dual || o.dual {
		return true
	}
	if b.addr.Is4() != o.addr.Is4() {
		return false
	}
	return b.addr == o.addr || b.addr.IsUnspecified() || o.addr.IsUnspecified()
}

// httpBind parses a host:port attribute into the socket net.Listen("tcp")
// binds; ok is false for a host name (resolved only at bind time, so not
// compared) or a value already reported as malformed.
func httpBind(hostport string) (addr netip.Addr, dual bool, port int, ok bool) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.Addr{}, false, 0, false
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return netip.Addr{}, false, 0, false
	}
	if host == "" {
		return netip.IPv6Unspecified(), true, int(n), true
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false, 0, false
	}
	a = a.Unmap()
	return a, a == netip.IPv6Unspecified(), int(n), true
}

// checkTCPPorts refuses TCP sockets of different roles on one port where
// they would meet (the second bind fails at start), except the one pair
// that shares: TURN over TLS (listen.addresses × listen.tls_port) and HTTPS
// (http.listen with http.cert_file) on exactly the same address, which the
// server serves from one socket (docs/tls.md, "Sharing 443"). It fills
// HTTP.SharedTLS with those addresses. listen.port against listen.tls_port
// is Listen.validate's, and the UDP ports (UDP and DTLS) never meet HTTP.
func (c *Config) checkTCPPorts(v *validator) {
	l, h := c.Listen, c.HTTP
	h.SharedTLS = nil
	var turnTCP, turnTLS []tcpBind
	for _, a := range l.Addrs {
		if l.TCPOn() {
			turnTCP = append(turnTCP, tcpBind{"listen.port", l.PortRange, "TURN over TCP", a, false, l.Port})
		}
		if l.TLSOn() {
			turnTLS = append(turnTLS, tcpBind{"listen.tls_port", l.TLSPortRange, "TURN over TLS", a, false, l.TLSPort})
		}
	}
	var others []tcpBind // the HTTP and metrics sockets
	if h.Listen != "" {
		if a, dual, port, ok := httpBind(h.Listen); ok {
			role := "HTTP"
			if h.CertFile != "" || h.ACME {
				role = "HTTPS"
			}
			others = append(others, tcpBind{"http.listen", h.ListenRange, role, a, dual, port})
		}
	}
	if m := c.Metrics; m.Listen != "" {
		if a, dual, port, ok := httpBind(m.Listen); ok {
			others = append(others, tcpBind{"metrics.listen", m.ListenRange, "metrics", a, dual, port})
		}
	}

	report := func(b, o tcpBind, why string) {
		v.conflict(
			b.rng, b.field, fmt.Sprintf("%s (%s) collides with %s %s (%s)%s", b, b.role, o.field, o, o.role, why),
			o.rng, o.field, fmt.Sprintf("%s (%s) collides with %s %s (%s)%s", o, o.role, b.field, b, b.role, why))
	}
	for i, b := range others {
		for _, o := range others[i+1:] {
			if b.overlaps(o) {
				report(b, o, "; give each its own port")
			}
		}
		for _, o := range turnTCP {
			if b.overlaps(o) {
				report(b, o, "; only TURN over TLS and HTTPS can share a port (listen.tls_port)")
			}
		}
		var met []tcpBind
		for _, o := range turnTLS {
			if b.overlaps(o) {
				met = append(met, o)
			}
		}
		if len(met) == 0 {
			continue
		}
		switch {
		case b.role == "HTTP":
			report(b, met[0], ": one port is shared only by TURN over TLS and HTTPS; set http.cert_file and http.key_file (or http.acme with tls.acme) to share it")
		case b.role != "HTTPS":
			report(b, met[0], "; give each its own port")
		case sharesExactly(b, met):
			for _, o := range met {
				h.SharedTLS = append(h.SharedTLS, o.addr)
			}
		default:
			report(b, met[0], sharedHint(b, met))
		}
	}
	// One shared socket reads one PROXY header rule: the relay's
	// listen.proxy_from wraps it, before the TLS handshake that decides
	// whether a connection is TURN or HTTPS.
	if len(h.SharedTLS) > 0 && !slices.Equal(slices.Sorted(slices.Values(l.ProxyFrom)), slices.Sorted(slices.Values(h.ProxyFrom))) {
		v.conflict(
			l.ProxyFromRange, "listen.proxy_from", "differs from http.proxy_from, but TURN over TLS and HTTPS share one port (listen.tls_port and http.listen): one socket has one PROXY rule; give both the same ranges",
			h.ProxyFromRange, "http.proxy_from", "differs from listen.proxy_from, but TURN over TLS and HTTPS share one port (listen.tls_port and http.listen): one socket has one PROXY rule; give both the same ranges")
	}
}

// sharesExactly reports whether the TURN over TLS sockets met are exactly
// the HTTPS socket b: the same address, or, for a dual-stack wildcard, the
// two wildcards 0.0.0.0 and ::, which together take what it would.
func sharesExactly(b tcpBind, met []tcpBind) bool {
	if !b.dual {
		return len(met) == 1 && met[0].addr == b.addr
	}
	if len(met) != 2 {
		return false
	}
	var v4, v6 bool
	for _, o := range met {
		v4 = v4 || o.addr == netip.IPv4Unspecified()
		v6 = v6 || o.addr == netip.IPv6Unspecified()
	}
	return v4 && v6
}

// sharedHint says how to make an HTTPS socket that meets TURN over TLS
// sockets without being them share the port.
func sharedHint(b tcpBind, met []tcpBind) string {
	if b.dual {
		return fmt.Sprintf(", and http.listen %q takes IPv4 and IPv6 alike: to share the port, listen.addresses must hold both \"0.0.0.0\" and \"::\" and no other address, or http.listen names one of listen.addresses", b.String())
	}
	return fmt.Sprintf(" without being the same address: to share the port, name the same address in http.listen and listen.addresses (%s)", met[0].addr)
}
