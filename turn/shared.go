package turn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"icegate/internal/udploop"
)

// Shared relay ports (RelayConfig.Shared, HCL relay.mode = "shared"), as
// coturn 4.12+ does with --multiplex-peer.
//
// In the default mode every allocation has a relay socket, and so a port, of
// its own: a peer's datagram belongs to whichever allocation owns the port it
// arrived on. A container that has to publish each port then publishes
// thousands. In shared mode the relay sockets are relay.min_port..max_port
// (a handful), bound once at start, and every UDP allocation is served from
// one of them: its XOR-RELAYED-ADDRESS is that socket's public address. The
// port no longer tells allocations apart, so the peer's address and port do:
//
//   - an allocation claims a peer address:port on its socket when it binds a
//     channel to it (the gate claims it before pion sees the ChannelBind) or
//     sends data to it (a Send indication, or ChannelData pion relays);
//   - a peer's datagram goes to the allocation that claimed the peer's
//     address:port on that socket, and then through the same checks as in
//     the default mode (a permission or a channel, RFC 8656 §9, §11.3,
//     §12.5); a datagram from an address:port nobody claimed is dropped and
//     counted (peer_unclaimed);
//   - one allocation claims at most maxClaims peer address:ports at once;
//     past that a ChannelBind to a new one gets 508 and data to one is
//     dropped and counted (peer_claims_full);
//   - two allocations on one socket cannot claim the same peer address:port
//     at once: a ChannelBind for a claimed peer gets 403 with a reason, a
//     Send indication or ChannelData to one is dropped and counted
//     (peer_taken). CreatePermission names only an IP (§9), claims nothing
//     and is never refused for this;
//   - a claim ends when the allocation holds neither a permission for the
//     peer's IP nor a channel to the address:port (pion reports each
//     expiry), and with the allocation.
//
// EVEN-PORT is served from an even shared port, and with the R bit the
// RESERVATION-TOKEN names the shared port above it (RFC 8656 §7.2 steps 5
// and 6): an RTP/RTCP pair gets P even and P+1, but neither port is the
// pair's alone. When the shared ports hold no even one (or none with its
// neighbour) the answer is 508 with a reason phrase that says so. RFC 6062
// TCP relays need a port per allocation and cannot be configured with
// shared ports.
//
// The fast path (fastpath.go) is unchanged apart from one read-locked map
// lookup per packet in each direction; datagrams for an allocation whose
// client talks TCP, TLS or DTLS wait for pion in a queue of the allocation's
// own (sharedQueue), which drops (slow_queue_full) rather than pausing the
// socket, since pausing a shared socket would stall every allocation on it.

// sharedSocket is one relay socket that serves many allocations.
type sharedSocket struct {
	sock    *udploop.Socket
	network string
	public  netip.AddrPort // advertised address at start; an allocation takes the one in force (attach)
	alloc   *relayAllocator
	live    atomic.Int32 // allocations served from it, for spreading new ones

	mu sync.RWMutex
	// owners is which allocation claimed each peer address:port; each
	// owner's claims are in its relayConn.claims, also under mu.
	owners map[netip.AddrPort]*relayConn
}

// sharedQueue is how many datagrams of a TCP, TLS or DTLS client's
// allocation wait for pion (see relayConn.socketConfig for the default
// mode's equivalent).
const sharedQueue = 64

// sharedPacket is a peer datagram waiting for pion's read.
type sharedPacket struct {
	buf  *[]byte
	n    int
	from netip.AddrPort
}

var sharedPool = sync.Pool{New: func() any { b := make([]byte, udploop.BufSize); return &b }}

var (
	errSharedNoEven = fmt.Errorf("%w: no even port among the shared relay ports (EVEN-PORT)", errRangeFull)
	errSharedNoPair = fmt.Errorf("%w: no even shared relay port P with P+1 shared too (EVEN-PORT with R=1)", errRangeFull)
	errNoDeadlines  = errors.New("deadlines are not supported on a shared relay port")
)

// openShared binds the shared relay sockets of every enabled family, one
// per port of the range. They are read once started (startShared).
func (r *relayAllocator) openShared() error {
	r.shared = map[string][]*sharedSocket{}
	r.sharedLast = map[string]int{"udp4": -1, "udp6": -1}
	for _, f := range []struct {
		network string
		fam     relayFamily
	}{{"udp4", r.v4}, {"udp6", r.v6}} {
		if !f.fam.enabled() {
			continue
		}
		for port := r.min; port <= r.max; port++ {
			ap := netip.AddrPortFrom(f.fam.bind, uint16(port))
			ss := &sharedSocket{network: f.network, alloc: r, owners: map[netip.AddrPort]*relayConn{},
				public: netip.AddrPortFrom(f.fam.public, uint16(port))}
			cfg := udploop.SocketConfig{Handler: ss.loopPacket, Headroom: headroom, Tailroom: tailroom,
				Buffer: r.sockBuf, FreeBind: r.freeBind, Queue: 1}
			if loop := r.nextLoop(); loop != nil {
				s, err := loop.Open(ap, cfg)
				if err != nil {
					r.closeShared()
					return &bindError{addr: ap, err: err}
				}
				ss.sock = s
			} else {
				pc, err := r.bindConfig(nil).ListenPacket(context.Background(), f.network, ap.String())
				if err != nil {
					r.closeShared()
					return &bindError{addr: ap, err: err}
				}
				ss.sock = udploop.NetSocket(pc.(*net.UDPConn), cfg)
			}
			r.shared[f.network] = append(r.shared[f.network], ss)
		}
	}
	return nil
}

// startShared makes the shared sockets live: the event loops read them, or,
// on the portable path, one goroutine each, which run calls and waits for.
func (r *relayAllocator) startShared(run func(func())) error {
	for _, list := range r.shared {
		for _, ss := range list {
			if err := ss.sock.Start(); err != nil {
				return err
			}
			if ss.sock.Loop() == nil {
				run(ss.drive)
			}
		}
	}
	return nil
}

// drive reads a portable-path shared socket until it closes: Recv runs the
// handler on every datagram, and the handler takes them all.
func (ss *sharedSocket) drive() {
	buf := make([]byte, udploop.BufSize)
	for {
		if _, _, err := ss.sock.Recv(buf); err != nil {
			return
		}
	}
}

// closeShared closes the shared sockets; the allocations on them are gone
// (pion closed them) or their reads end with the socket's.
func (r *relayAllocator) closeShared() {
	for _, list := range r.shared {
		for _, ss := range list {
			_ = ss.sock.Close()
		}
	}
}

// allocateShared serves a new allocation from the least loaded shared
// socket of its family. The scan starts after the socket chosen last, so
// that with equal loads consecutive allocations (such as a client's pair of
// relays talking to each other) land on different sockets and do not claim
// the same peer. With unequal loads the socket chosen last is passed over
// too, while another fits: two allocations on one socket share its relayed
// address and cannot relay to each other (a datagram from the socket to
// itself names neither), and the two ends of a call through this server,
// made one after the other, would otherwise both go to a socket that holds
// two or more allocations fewer than the rest (seen with two browsers'
// relay-only TURN/TCP call after a burst of allocations ended elsewhere).
// The loads stay within reach: the next allocation may take it again.
//
// EVEN-PORT (RFC 8656 §7.2 step 6) is served from an even shared port; with
// the R bit, from an even port P whose P+1 is shared too, and the
// RESERVATION-TOKEN names P+1 (reserve.go holds a place on that socket for
// the token's life). Nothing is exclusive on a shared port, so nothing is
// taken from other allocations: what an RTP/RTCP pair needs, P even and
// P+1 beside it, holds. Without such a port the answer is 508.
func (r *relayAllocator) allocateShared(network string, in *allocIntent) (*relayConn, error) {
	list := r.shared[network]
	if len(list) == 0 {
		return nil, errFamilyDisabled
	}
	even := in != nil && in.even
	pair := in != nil && in.reserve
	fits := func(i int) bool {
		p := list[i].public.Port()
		switch {
		case pair:
			return p%2 == 0 && i+1 < len(list) && list[i+1].public.Port() == p+1
		case even:
			return p%2 == 0
		}
		return true
	}
	n := 1
	if pair {
		n = 2
	}
	r.mu.Lock()
	if r.limit > 0 && r.live+n > r.limit {
		r.mu.Unlock()
		return nil, errTotalQuota
	}
	last := r.sharedLast[network]
	// better reports whether socket i is a better pick than j: any socket
	// but the last one chosen beats it, then the fewer allocations win.
	better := func(i, j int) bool {
		if (i == last) != (j == last) {
			return j == last
		}
		return list[i].live.Load() < list[j].live.Load()
	}
	best := -1
	for k := range list {
		i := (last + 1 + k) % len(list)
		if fits(i) && (best < 0 || better(i, best)) {
			best = i
		}
	}
	if best < 0 {
		r.mu.Unlock()
		if pair {
			return nil, errSharedNoPair
		}
		return nil, errSharedNoEven
	}
	r.live += n
	r.sharedLast[network] = best
	r.mu.Unlock()

	rc := list[best].attach(r)
	if in != nil {
		rc.tag = in.seq
	}
	if pair {
		next := list[best+1].attach(r)
		if _, err := r.res.hold(next, in.txKey, in.key); err != nil {
			_ = next.Close()
			_ = rc.Close()
			return nil, err
		}
	}
	r.table.addRelay(rc.key(), rc)
	return rc, nil
}

// attach makes an allocation's relayConn on ss; r.live counts it already.
func (ss *sharedSocket) attach(r *relayAllocator) *relayConn {
	ss.live.Add(1)
	// The advertised address in force (relay.ipv4_public = "auto" may have
	// changed it since the socket was opened).
	public := ss.public
	if f, err := r.family(ss.network); err == nil {
		public = netip.AddrPortFrom(f.public, ss.public.Port())
	}
	return &relayConn{alloc: r, network: ss.network, port: int(ss.public.Port()), public: public,
		out: newRateBucket(r.bps), in: newRateBucket(r.bps), sock: ss.sock, shared: ss,
		claims: map[netip.AddrPort]struct{}{}, queue: make(chan sharedPacket, sharedQueue), done: make(chan struct{})}
}

// redeemShared makes the place a RESERVATION-TOKEN held on a shared socket
// the allocation of the Allocate that redeemed it.
func (r *relayAllocator) redeemShared(rc *relayConn, in *allocIntent) *relayConn {
	rc.tag = in.seq
	r.table.addRelay(rc.key(), rc)
	return rc
}

// loopPacket is a shared socket's handler (udploop.Handler): it finds the
// allocation that claimed the peer and lets that allocation's handler relay
// the datagram, or queues it for pion when the client talks TCP, TLS or
// DTLS. It takes every datagram.
func (ss *sharedSocket) loopPacket(out udploop.Sender, b []byte, n int, from netip.AddrPort) bool {
	from = canonical(from)
	ss.mu.RLock()
	rc := ss.owners[from]
	ss.mu.RUnlock()
	if rc == nil {
		ss.alloc.dropUnclaimed.Inc()
		return true
	}
	if !rc.loopPacket(out, b, n, from) {
		rc.enqueue(b[headroom:headroom+n], from)
	}
	return true
}

// enqueue copies a datagram for pion's read (ReadFrom), dropping it when
// the allocation's queue is full or the allocation is gone.
func (c *relayConn) enqueue(p []byte, from netip.AddrPort) {
	if c.closed.Load() {
		return
	}
	buf := sharedPool.Get().(*[]byte)
	n := copy(*buf, p)
	select {
	case c.queue <- sharedPacket{buf: buf, n: n, from: from}:
	default:
		sharedPool.Put(buf)
		c.alloc.dropQueue.Inc()
	}
}

// recvShared is ReadFrom for an allocation on a shared socket.
func (c *relayConn) recvShared(p []byte) (int, net.Addr, error) {
	select {
	case pkt := <-c.queue:
		n := copy(p, (*pkt.buf)[:pkt.n])
		sharedPool.Put(pkt.buf)
		return n, net.UDPAddrFromAddrPort(pkt.from), nil
	case <-c.done:
		return 0, nil, net.ErrClosed
	}
}

// maxClaims bounds the peer address:ports one allocation may claim on its
// shared socket at once. A permission names an IP (RFC 8656 §9), so
// without a bound one client could claim every port of every IP it
// permits (64 × 65,535 with the default limits.permissions_per_allocation)
// and grow the socket's table, which every allocation on it reads, by
// millions of entries. An ICE agent claims one per remote candidate it
// sends to, a handful to a few dozen.
const maxClaims = 256

// claimResult is what claim decided.
type claimResult uint8

const (
	claimed    claimResult = iota // rc owns the peer (now or already)
	claimTaken                    // another allocation owns it, or rc is closing
	claimsFull                    // rc owns maxClaims peers already
)

// claim makes rc the owner of peer on its socket, unless another
// allocation owns it or rc holds maxClaims claims already. Claiming a peer
// rc owns already costs one read-locked lookup and no allocation.
func (ss *sharedSocket) claim(rc *relayConn, peer netip.AddrPort) claimResult {
	peer = canonical(peer)
	ss.mu.RLock()
	owner := ss.owners[peer]
	ss.mu.RUnlock()
	if owner != nil {
		return ownedBy(owner, rc)
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if owner := ss.owners[peer]; owner != nil {
		return ownedBy(owner, rc)
	}
	if rc.closed.Load() {
		return claimTaken // closing: detach has run or is about to
	}
	if len(rc.claims) >= maxClaims {
		return claimsFull
	}
	ss.owners[peer] = rc
	rc.claims[peer] = struct{}{}
	return claimed
}

func ownedBy(owner, rc *relayConn) claimResult {
	if owner == rc {
		return claimed
	}
	return claimTaken
}

// owner returns the allocation that claimed peer, or nil.
func (ss *sharedSocket) owner(peer netip.AddrPort) *relayConn {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	return ss.owners[canonical(peer)]
}

// release ends rc's claims for which keep reports false; keep nil ends all.
func (ss *sharedSocket) release(rc *relayConn, keep func(netip.AddrPort) bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for p := range rc.claims {
		if keep != nil && keep(p) {
			continue
		}
		delete(rc.claims, p)
		if ss.owners[p] == rc {
			delete(ss.owners, p)
		}
	}
}

// settle ends rc's claim on peer unless rc holds a permission for its IP or
// a channel to it: after a ChannelBind that claimed it failed.
func (ss *sharedSocket) settle(rc *relayConn, peer netip.AddrPort) {
	peer = canonical(peer)
	ss.release(rc, func(p netip.AddrPort) bool { return p != peer || rc.permitted(p) })
}

// detach ends all of rc's claims, when its allocation ends.
func (ss *sharedSocket) detach(rc *relayConn) {
	ss.release(rc, nil)
	ss.live.Add(-1)
}

// closeShared is relayConn.Close for an allocation on a shared socket: the
// socket stays, the allocation's claims and its place end.
func (c *relayConn) closeShared() error {
	c.shared.detach(c)
	close(c.done)
	c.alloc.table.removeRelay(c.key(), c)
	c.alloc.mu.Lock()
	c.alloc.live--
	c.alloc.mu.Unlock()
	return nil
}

// sharedDeadline answers pion's deadlines on a shared allocation: a
// deadline on the socket would hold for every allocation on it.
func sharedDeadline(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	return errNoDeadlines
}
