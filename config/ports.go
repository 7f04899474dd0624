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
	c.checkACMEPorts(v, turnTCP, turnTLS, others)
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

// checkACMEPorts refuses a tls.acme challenge port that one of the
// config's own sockets holds without answering that challenge. certmagic
// binds the challenge port only while a challenge runs and, finding it
// taken, assumes its own server is there; a socket that does not answer
// (plain TURN over TCP, metrics, HTTPS from http.cert_file for
// tls-alpn-01, anything but plain HTTP for http-01) makes every validation
// of that challenge fail at the CA, which counts against its rate limits
// (Let's Encrypt: 5 failed validations per hour per name). Answering:
// tls-alpn-01 on listen.tls_port and on HTTPS with http.acme or sharing
// listen.tls_port; http-01 on plain HTTP (which gets the challenge handler).
func (c *Config) checkACMEPorts(v *validator, turnTCP, turnTLS, others []tcpBind) {
	a := c.TLS.ACME
	if a == nil {
		return
	}
	host, _, _ := net.SplitHostPort(a.HTTPListen)
	at := func(rng hcl.Range) hcl.Range {
		if rng == (hcl.Range{}) {
			return a.DefRange
		}
		return rng
	}
	// The challenge socket as certmagic binds it: the http_listen host
	// (ListenHost) for both challenges, a wildcard when it is empty.
	chal := func(field string, rng hcl.Range, role string, port int) (tcpBind, bool) {
		b := tcpBind{field, at(rng), role, netip.IPv6Unspecified(), true, port}
		if host != "" {
			addr, err := netip.ParseAddr(host)
			if err != nil || addr.Zone() != "" {
				return b, false // a host name: resolved only when bound
			}
			b.addr, b.dual = addr.Unmap(), false
		}
		return b, true
	}
	report := func(b, o tcpBind, why string) {
		v.conflict(
			b.rng, b.field, fmt.Sprintf("%s (%s) is held by %s %s (%s), which %s", b, b.role, o.field, o, o.role, why),
			o.rng, o.field, fmt.Sprintf("%s (%s) holds %s %s (%s) but %s", o, o.role, b.field, b, b.role, why))
	}
	if a.HasChallenge(ChallengeTLSALPN) {
		if b, ok := chal("tls.acme.tls_alpn_port", a.TLSALPNPortRange, "ACME tls-alpn-01", a.TLSALPNPort); ok {
			for _, o := range slices.Concat(turnTCP, others) {
				answers := o.role == "HTTPS" && (c.HTTP.ACME || len(c.HTTP.SharedTLS) > 0)
				if !answers && b.overlaps(o) {
					report(b, o, "does not answer tls-alpn-01 validations; point tls.acme.tls_alpn_port at listen.tls_port or an http.acme listener, or drop \"tls-alpn-01\" from tls.acme.challenges")
					break
				}
			}
		}
	}
	if a.HasChallenge(ChallengeHTTP) {
		if b, ok := chal("tls.acme.http_listen", a.HTTPListenRange, "ACME http-01", httpListenPort(a.HTTPListen)); ok {
			for _, o := range slices.Concat(turnTCP, turnTLS, others) {
				if o.role != "HTTP" && b.overlaps(o) {
					report(b, o, "does not answer http-01 validations (only plain HTTP does); give tls.acme.http_listen a port of its own or plain http.listen's, or drop \"http-01\" from tls.acme.challenges")
					break
				}
			}
		}
	}
}

// httpListenPort is the port of a validated host:port, or 0.
func httpListenPort(hostport string) int {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
