package signaling

import (
	"net/netip"
	"time"

	"icegate/auth"
	"icegate/config"
)

// iceServers mints fresh TURN credentials for user (the user part of the
// time-limited username: a peer id, so the relay's decisions about requests
// made with them can be routed back to that peer) and returns the iceServers
// for this server as reached at host. ok is false when no secret can mint,
// and the list then holds only the STUN URL.
func (s *Server) iceServers(host, user string) (servers []auth.ICEServer, expires time.Time, ok bool) {
	st := s.settings()
	if st.sig.TURNHost != "" {
		host = st.sig.TURNHost
	}
	if host == "" {
		host = "localhost"
	}
	t := auth.Transports{
		UDP: st.listen.UDPOn(),
		TCP: st.listen.TCPOn(),
		TLS: st.listen.TLSOn(),
	}
	secret := s.secret()
	if secret == "" {
		return auth.ICEServers(host, st.listen.Port, st.listen.TLSPort, t, "", ""), time.Time{}, false
	}
	username, password, exp := auth.MintREST(secret, user, st.sig.CredentialTTLDuration, time.Now(), st.separator)
	return auth.ICEServers(host, st.listen.Port, st.listen.TLSPort, t, username, password), exp, true
}

// natProbeURLs returns the stun: URLs a browser compares its server-reflexive
// address through (the test page's NAT hint): the primary address and port
// (RFC 5780 test I) and the alternate address and port (test III), as
// clients reach them (the public addresses behind a 1:1 NAT). Both address
// and port differ, so the same mapped address through both means
// endpoint-independent mapping (RFC 4787 §4.1); a second port on the same
// address could not tell that from address-dependent mapping. nil when
// RFC 5780 is off: one server address cannot tell anything about mapping.
func natProbeURLs(st *config.STUN, port int) []string {
	if !st.Enabled() {
		return nil
	}
	return []string{
		"stun:" + netip.AddrPortFrom(st.PrimaryPublicAddr, uint16(port)).String(),
		"stun:" + netip.AddrPortFrom(st.AlternatePublicAddr, uint16(st.AlternatePort)).String(),
	}
}
