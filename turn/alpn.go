package turn

import (
	"crypto/tls"

	"icegate/internal/portshare"
)

// ALPN protocol IDs of RFC 7443 (registered in its IANA section): a client
// of the TLS or DTLS listeners may offer them to say which STUN usage it
// speaks. Both name the server this package runs, which answers TURN and
// plain STUN Binding (NAT discovery) on every listener.
const (
	// ALPNTURN is "stun.turn": TURN (RFC 8656) over TLS or DTLS.
	ALPNTURN = "stun.turn"
	// ALPNNATDiscovery is "stun.nat-discovery": STUN Binding and the NAT
	// discovery of RFC 5780 over TLS or DTLS.
	ALPNNATDiscovery = "stun.nat-discovery"
)

// ALPNProtocols are the protocols the TLS and DTLS listeners offer, in the
// server's order of preference.
func ALPNProtocols() []string { return []string{ALPNTURN, ALPNNATDiscovery} }

// tlsConfig is how the TLS listener's handshakes go: TLS 1.2 or later, the
// certificate of the store in force at each handshake (so a renewal is
// served at once), and ALPN offering ALPNProtocols. A client offering none
// of them (or no ALPN at all) is served as a server without ALPN would serve
// it: RFC 7301 §3.2 asks for a no_application_protocol alert there, but
// this listener answered every client before it spoke ALPN and coturn's
// still does, and a TURN client whose TLS library offers a default protocol
// ("http/1.1") must not be cut off for it. (DTLS cannot do the same:
// pion/dtls has no per-client hook and sends the alert, see docs/tls.md.)
func (s *Server) tlsConfig() *tls.Config {
	// TLS.NextProtos: "acme-tls/1" with ACME's tls-alpn-01, whose
	// validation handshake the certificate source (the ACME manager)
	// answers.
	protos := append(ALPNProtocols(), s.cfg.TLS.NextProtos...)
	return portshare.ALPNConfig(&tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.get}, protos)
}
