package signaling

import (
	"time"

	"icegate/auth"
)

// TURNNode is a relay that handed-out iceServers may name: this node's own
// (Config.TURNHost and Config.Relay) or, in a cluster, another node's
// (Options.Steer).
type TURNNode struct {
	// Node is the cluster node id; "" for this node.
	Node string
	// Host is the host name or IP of its stun:/turn:/turns: URLs.
	Host string
	// Relay are its ports and transports.
	Relay Relay
}

// iceServers mints fresh TURN credentials for user (the user part of the
// time-limited username: a peer id, so the relay's decisions about requests
// made with them can be routed back to that peer) valid for the configured
// credential lifetime, and returns the iceServers for the relay to use.
func (s *Server) iceServers(host, user string) (servers []auth.ICEServer, expires time.Time, ok bool) {
	return s.iceServersTTL(host, user, s.settings().CredentialTTL)
}

// iceServersTTL is iceServers with a lifetime of ttl. The relay is the one
// Options.Steer picks (in a cluster, the least loaded healthy node) or
// else this node's, as reached at host (signaling.turn_host wins). ok is
// false when no secret can mint, or when this node's relay is the only
// choice and it is draining (it would refuse the Allocate); the list then
// holds only the STUN URL.
func (s *Server) iceServersTTL(host, user string, ttl time.Duration) (servers []auth.ICEServer, expires time.Time, ok bool) {
	n, draining := s.turnNode(host)
	r := n.Relay
	t := auth.Transports{UDP: r.UDP, TCP: r.TCP, TLS: r.TLS}
	secret := s.secret()
	if secret == "" || draining {
		return auth.ICEServers(n.Host, r.Port, r.TLSPort, t, "", ""), time.Time{}, false
	}
	st := s.settings()
	username, password, exp := auth.MintREST(secret, user, ttl, time.Now(), st.Separator)
	return auth.ICEServers(n.Host, r.Port, r.TLSPort, t, username, password), exp, true
}

// turnNode is the relay iceServers name: the one Options.Steer picks, or
// this node's own as reached at host, with whether that one is draining.
// A node Steer picks is never draining (Steer leaves those out).
func (s *Server) turnNode(host string) (TURNNode, bool) {
	if n, ok := s.steer(); ok {
		return n, false
	}
	st := s.settings()
	if st.TURNHost != "" {
		host = st.TURNHost
	}
	if host == "" {
		host = "localhost"
	}
	return TURNNode{Host: host, Relay: st.Relay}, s.relayDraining()
}
