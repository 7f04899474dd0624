package signaling

import (
	"time"

	"icegate/auth"
)

// iceServers mints fresh TURN credentials for user (the user part of the
// time-limited username: a peer id, so the relay's decisions about requests
// made with them can be routed back to that peer) and returns the iceServers
// for this server as reached at host. ok is false when no secret can mint
// or the relay is draining (it would refuse the Allocate), and the list
// then holds only the STUN URL.
func (s *Server) iceServers(host, user string) (servers []auth.ICEServer, expires time.Time, ok bool) {
	st := s.settings()
	if st.TURNHost != "" {
		host = st.TURNHost
	}
	if host == "" {
		host = "localhost"
	}
	r := st.Relay
	t := auth.Transports{UDP: r.UDP, TCP: r.TCP, TLS: r.TLS}
	secret := s.secret()
	if secret == "" || s.relayDraining() {
		return auth.ICEServers(host, r.Port, r.TLSPort, t, "", ""), time.Time{}, false
	}
	username, password, exp := auth.MintREST(secret, user, st.CredentialTTL, time.Now(), st.Separator)
	return auth.ICEServers(host, r.Port, r.TLSPort, t, username, password), exp, true
}
