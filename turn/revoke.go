package turn

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
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
// handed pion; trackedRelays remembers them by relayed address.
//
// pion has no call to drop one permission either. A peer the new policy
// denies is instead blocked on the relay socket itself: relayConn refuses
// to send to it and drops what it sends (both paths, fast and pion's, pass
// through sendToPeer and loopPacket), at once, while pion's permission runs
// out on its own (RFC 8656 §9: five minutes unless refreshed, and a refresh
// is refused by the new policy). An RFC 6062 TCP relay's peer connections do
// not pass through relayConn, so such an allocation with a denied peer ends.

// grant is the credential a client last authenticated with: the username it
// sent and the key that verified it. Whether the allocation may live on is
// auth.Credentials.Accepts(username, key) under the new credentials.
type grant struct {
	username string
	key      []byte
}

// liveAlloc is one allocation as pion reported it.
type liveAlloc struct {
	src, dst net.Addr
	userID   string
	grant    grant
	relay    string // relayed address, the key of allocTable.relays
}

// allocTable follows allocations for revocation: who authenticated them
// with what, and which socket relays for them.
type allocTable struct {
	mu sync.Mutex
	// pending holds, per client address, the credential of an Allocate
	// that passed authentication, until pion reports the allocation.
	pending map[string]grant
	allocs  map[string]*liveAlloc   // allocKey(src, dst) -> allocation
	bySrc   map[string][]*liveAlloc // client address -> its allocations
	relays  map[string]io.Closer    // relayed address -> relayConn or relayListener
}

// maxPending bounds allocTable.pending: an entry stays behind only when an
// authenticated Allocate still fails (quota, capacity, a retransmission).
const maxPending = 10000

// authenticated records the credential a request from src passed with. An
// Allocate's is kept for the allocation pion is about to report; any other
// request (Refresh, CreatePermission, ChannelBind) from the same client and
// user id updates its allocations: the credential last used is the one
// that has to stay valid.
func (t *allocTable) authenticated(src net.Addr, username, userID string, key []byte, allocate bool) {
	g := grant{username: username, key: key}
	k := src.String()
	t.mu.Lock()
	defer t.mu.Unlock()
	if allocate {
		if t.pending == nil || len(t.pending) >= maxPending {
			t.pending = map[string]grant{}
		}
		t.pending[k] = g
		return
	}
	for _, a := range t.bySrc[k] {
		if a.userID == userID {
			a.grant = g
		}
	}
}

func (t *allocTable) created(src, dst net.Addr, userID string, relay net.Addr) {
	k := src.String()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.allocs == nil {
		t.allocs, t.bySrc = map[string]*liveAlloc{}, map[string][]*liveAlloc{}
	}
	a := &liveAlloc{src: src, dst: dst, userID: userID, grant: t.pending[k], relay: relay.String()}
	delete(t.pending, k)
	t.allocs[allocKey(src, dst)] = a
	t.bySrc[k] = append(t.bySrc[k], a)
}

func (t *allocTable) deleted(src, dst net.Addr) {
	key, k := allocKey(src, dst), src.String()
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.allocs[key]
	if a == nil {
		return
	}
	delete(t.allocs, key)
	list := t.bySrc[k]
	for i, b := range list {
		if b == a {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.bySrc, k)
	} else {
		t.bySrc[k] = list
	}
}

func (t *allocTable) addRelay(addr string, c io.Closer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.relays == nil {
		t.relays = map[string]io.Closer{}
	}
	t.relays[addr] = c
}

func (t *allocTable) removeRelay(addr string, c io.Closer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.relays[addr] == c {
		delete(t.relays, addr)
	}
}

// snapshot returns the live allocations with their relay sockets.
func (t *allocTable) snapshot() ([]liveAlloc, []io.Closer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	allocs := make([]liveAlloc, 0, len(t.allocs))
	closers := make([]io.Closer, 0, len(t.allocs))
	for _, a := range t.allocs {
		allocs = append(allocs, *a)
		closers = append(closers, t.relays[a.relay])
	}
	return allocs, closers
}

// trackedRelays is the RelayAddressGenerator pion is given: the relay
// allocator, with every relay socket and listener it hands out remembered
// by relayed address until it closes, so that a revoked allocation can be
// ended.
type trackedRelays struct {
	*relayAllocator
	t *allocTable
}

// AllocatePacketConn implements pionturn.RelayAddressGenerator.
func (r trackedRelays) AllocatePacketConn(conf pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, addr, err := r.relayAllocator.AllocatePacketConn(conf)
	if err != nil {
		return nil, nil, err
	}
	k := addr.String()
	r.t.addRelay(k, pc)
	return &trackedPacketConn{PacketConn: pc, forget: func() { r.t.removeRelay(k, pc) }}, addr, nil
}

// AllocateListener implements pionturn.RelayAddressGenerator.
func (r trackedRelays) AllocateListener(conf pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	ln, addr, err := r.relayAllocator.AllocateListener(conf)
	if err != nil {
		return nil, nil, err
	}
	k := addr.String()
	r.t.addRelay(k, ln)
	return &trackedListener{Listener: ln, forget: func() { r.t.removeRelay(k, ln) }}, addr, nil
}

type trackedPacketConn struct {
	net.PacketConn
	forget func()
}

// Close closes the relay socket. A socket a revocation closed already is
// not an error: pion closes it again when it deletes the allocation, and
// would log one.
func (c *trackedPacketConn) Close() error {
	c.forget()
	if err := c.PacketConn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

type trackedListener struct {
	net.Listener
	forget func()
}

func (l *trackedListener) Close() error {
	l.forget()
	if err := l.Listener.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// authorize is pion's AuthHandler: the gate's, with the credential that
// passed remembered for revocation.
func (s *Server) authorize(ra *pionRequestAttributes) (string, []byte, bool) {
	userID, key, ok := s.gate.authHandler(ra)
	if ok {
		s.allocs.authenticated(ra.SrcAddr, ra.Username, userID, key, ra.Method == pionstun.MethodAllocate)
	}
	return userID, key, ok
}

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
	allocs, closers := s.allocs.snapshot()
	for i, a := range allocs {
		closer := closers[i]
		if closer == nil {
			continue // its relay is closing already
		}
		if a.grant.key != nil {
			if ok, reason := creds.Accepts(a.grant.username, a.grant.key); !ok {
				s.end(a, closer, string(reason))
				out.Allocations++
				continue
			}
		}
		denied := s.deniedPeers(a, closer, pol)
		switch rc := closer.(type) {
		case *relayConn:
			fresh := rc.block(denied)
			out.Peers += len(fresh)
			for _, ip := range fresh {
				s.revoked.WithLabelValues("peer", "peer-denied").Inc()
				s.limited.Log(slog.LevelInfo, "revoked-peer", "reload: peer now denied by policy, relaying to it stopped",
					"client", a.src.String(), "user", a.userID, "peer", ip.String())
			}
		default:
			if len(denied) > 0 {
				s.end(a, closer, "peer-denied")
				out.Allocations++
			}
		}
	}
	return out
}

// end closes an allocation's relay; pion then deletes the allocation.
func (s *Server) end(a liveAlloc, closer io.Closer, reason string) {
	s.revoked.WithLabelValues("allocation", reason).Inc()
	s.limited.Log(slog.LevelInfo, "revoked-allocation", "reload: allocation ended, the new configuration no longer allows it",
		"client", a.src.String(), "user", a.userID, "relay", a.relay, "reason", reason)
	s.emit(Event{Kind: EventRefused, Client: a.src.String(), Detail: "allocation ended by a configuration reload: " + reason})
	_ = closer.Close()
}

// deniedPeers returns the peers of allocation a, with a permission or a
// channel (or already blocked), that pol denies.
func (s *Server) deniedPeers(a liveAlloc, closer io.Closer, pol *PeerPolicy) []netip.Addr {
	peers := map[netip.Addr]struct{}{}
	s.gate.mu.Lock()
	for ip := range s.gate.perms[allocKey(a.src, a.dst)] {
		peers[ip] = struct{}{}
	}
	s.gate.mu.Unlock()
	if rc, ok := closer.(*relayConn); ok {
		if t := rc.chans.Load(); t != nil {
			for p := range t.byPeer {
				peers[p.Addr().Unmap()] = struct{}{}
			}
		}
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
