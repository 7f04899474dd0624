package turn

import (
	"log/slog"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"icegate/auth"
)

// Revocation: a reload that removes a user or a secret, or denies a peer
// range, must bite on what is already relaying, not only on new requests.
//
// pion has no call to delete an allocation, but it deletes one by itself
// when its relay socket fails: the allocation's read loop
// (internal/allocation.packetConnHandler for UDP, connHandler for RFC 6062
// TCP relays) calls Manager.DeleteAllocation when ReadFrom or Accept
// returns an error, which closes the allocation's permissions, channels and
// TCP connections and reports OnAllocationDeleted. So to end an allocation,
// the server closes the relay socket or listener that its RelayAddressGenerator
// handed pion, which the allocation table (allocs.go) holds with the
// credential the allocation was last authenticated with.
//
// pion has no call to drop one permission either. A peer the new policy
// denies is instead blocked on the relay socket itself: relayConn refuses
// to send to it and drops what it sends (both paths, fast and pion's, pass
// through sendToPeer and loopPacket), at once, while pion's permission runs
// out on its own (RFC 8656 §9: five minutes unless refreshed, and a refresh
// is refused by the new policy). An RFC 6062 TCP relay's peer connections do
// not pass through relayConn, so such an allocation with a denied peer ends.

// Revoked is what a reload took away from live allocations.
type Revoked struct {
	// Allocations ended: their credential no longer verifies, or (an RFC
	// 6062 TCP relay) one of their peers is now denied.
	Allocations int
	// Peers newly blocked on live UDP relays because the policy denies them.
	Peers int
}

// newRevokeCounter registers icegate_reload_revocations_total.
func newRevokeCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "icegate_reload_revocations_total",
		Help: "Live allocations ended (what=allocation) and peers blocked on live relays (what=peer) by a configuration reload, by reason: an auth refusal reason (unknown-user, bad-integrity, no-credentials, malformed-username) or peer-denied.",
	}, []string{"what", "reason"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

// revoke applies new credentials and peer policy to the live allocations.
// It runs after both are swapped in, so a request racing with it is already
// judged by the new ones.
func (s *Server) revoke(creds *auth.Credentials, pol *PeerPolicy) Revoked {
	var out Revoked
	for _, a := range s.allocs.snapshot() {
		if a.sock == nil {
			continue // its relay is closing already
		}
		if a.cred.key != nil {
			if ok, reason := creds.Accepts(a.cred.username, a.cred.key); !ok {
				s.end(a, string(reason))
				out.Allocations++
				continue
			}
		}
		denied := deniedPeers(a, pol)
		switch rc := a.sock.(type) {
		case *relayConn:
			fresh := rc.block(denied)
			// The kernel relays no blocked peer: its flows to them go now.
			s.allocs.resyncOffload(a.key)
			out.Peers += len(fresh)
			for _, ip := range fresh {
				s.revoked.WithLabelValues("peer", "peer-denied").Inc()
				s.limited.Log(slog.LevelInfo, "revoked-peer", "reload: peer now denied by policy, relaying to it stopped",
					"client", a.src.String(), "user", a.cred.userID, "peer", ip.String())
			}
		default:
			if len(denied) > 0 {
				s.end(a, "peer-denied")
				out.Allocations++
			}
		}
	}
	return out
}

// end closes an allocation's relay; pion then deletes the allocation.
func (s *Server) end(a liveAlloc, reason string) {
	s.revoked.WithLabelValues("allocation", reason).Inc()
	s.limited.Log(slog.LevelInfo, "revoked-allocation", "reload: allocation ended, the new configuration no longer allows it",
		"client", a.src.String(), "user", a.cred.userID, "relay", a.relay, "reason", reason)
	s.emit(Event{Kind: EventRefused, Client: a.src.String(), Detail: "allocation ended by a configuration reload: " + reason})
	_ = a.sock.Close()
}

// deniedPeers returns the peers of allocation a, with a permission or a
// channel (or already blocked), that pol denies.
func deniedPeers(a liveAlloc, pol *PeerPolicy) []netip.Addr {
	peers := map[netip.Addr]struct{}{}
	for _, ip := range a.peers {
		peers[ip] = struct{}{}
	}
	if rc, ok := a.sock.(*relayConn); ok {
		if b := rc.blocked.Load(); b != nil {
			for ip := range *b {
				peers[ip] = struct{}{}
			}
		}
	}
	var denied []netip.Addr
	for ip := range peers {
		if !pol.Decide(ip).Allowed {
			denied = append(denied, ip)
		}
	}
	return denied
}

// block makes c refuse to relay to and from the peers in denied, replacing
// what it blocked before (a peer allowed again by a later reload relays
// again). It returns the peers newly blocked.
func (c *relayConn) block(denied []netip.Addr) []netip.Addr {
	old := c.blocked.Load()
	if len(denied) == 0 {
		c.blocked.Store(nil)
		return nil
	}
	next := make(map[netip.Addr]struct{}, len(denied))
	var fresh []netip.Addr
	for _, ip := range denied {
		next[ip] = struct{}{}
		if old == nil {
			fresh = append(fresh, ip)
		} else if _, had := (*old)[ip]; !had {
			fresh = append(fresh, ip)
		}
	}
	c.blocked.Store(&next)
	return fresh
}

// isBlocked reports whether relaying with peer was revoked by a reload. One
// atomic load on the packet path while nothing is blocked.
func (c *relayConn) isBlocked(peer netip.Addr) bool {
	b := c.blocked.Load()
	if b == nil {
		return false
	}
	_, ok := (*b)[peer.Unmap()]
	return ok
}
