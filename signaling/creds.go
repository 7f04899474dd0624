package signaling

import (
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
		UDP: config.Bool(st.listen.UDP, true),
		TCP: config.Bool(st.listen.TCP, true),
		TLS: config.Bool(st.listen.TLS, true),
	}
	secret := s.secret()
	if secret == "" {
		return auth.ICEServers(host, st.listen.Port, st.listen.TLSPort, t, "", ""), time.Time{}, false
	}
	username, password, exp := auth.MintREST(secret, user, st.sig.CredentialTTLDuration, time.Now(), st.separator)
	return auth.ICEServers(host, st.listen.Port, st.listen.TLSPort, t, username, password), exp, true
}
