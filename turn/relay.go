package turn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5/reuseport"
	pionturn "github.com/pion/turn/v5"

	"icegate/internal/udploop"
)

// relayFamily is one address family's relay addresses.
type relayFamily struct {
	bind   netip.Addr // local address relays bind to
	public netip.Addr // address advertised in XOR-RELAYED-ADDRESS
}

func (f relayFamily) enabled() bool { return f.bind.IsValid() }

// relayAllocator hands out relay sockets from the configured port range. It is
// pion's RelayAddressGenerator.
//
// pion's own generator tries 10 random ports and gives up, which fails with
// 508 long before the range is full. This one keeps a bitmap of ports in use
// per family and transport and scans from a random start, so every free port
// in the range is found, and a port is free again the moment its socket
// closes (RFC 8656 does not ask the server to hold released ports).
type relayAllocator struct {
	v4, v6   relayFamily
	min, max int
	tcp      bool
	limit    int // total live relays, 0 = no cap
	bps      int // bandwidth per allocation and direction, 0 = no cap

	metrics *Metrics
	self    func(netip.Addr) bool // this server's own addresses (Server.isGuarded)
	// selfDrop counts and logs relayed data dropped by selfPort.
	selfDrop func(netip.AddrPort)
	fast     *fastPath
	sockBuf  int             // socket buffer bytes, 0 = the system's default
	loops    []*udploop.Loop // event loops relay sockets are spread over; none = portable path
	next     atomic.Uint32

	mu    sync.Mutex
	inUse map[string][]uint64 // network ("udp4", ...) -> bitmap over [min, max]
	live  int
}

var (
	errFamilyDisabled = errors.New("relay address family not configured")
	errTCPRelayOff    = errors.New("tcp relays are disabled (relay.tcp = false)")
	errTotalQuota     = errors.New("server allocation limit reached (limits.allocations_total)")
	errRangeFull      = errors.New("relay port range exhausted")
	errSelfPort       = errors.New("peer is this server outside the relay port range")
)

func (r *relayAllocator) family(network string) (relayFamily, error) {
	switch network {
	case "udp4", "tcp4":
		if r.v4.enabled() {
			return r.v4, nil
		}
	case "udp6", "tcp6":
		if r.v6.enabled() {
			return r.v6, nil
		}
	}
	return relayFamily{}, fmt.Errorf("%w: %s", errFamilyDisabled, network)
}

// Validate implements pionturn.RelayAddressGenerator.
func (r *relayAllocator) Validate() error {
	if !r.v4.enabled() && !r.v6.enabled() {
		return errFamilyDisabled
	}
	if r.min <= 0 || r.max < r.min || r.max > 65535 {
		return fmt.Errorf("bad relay port range %d-%d", r.min, r.max)
	}
	return nil
}

// reserve takes a free port for network, preferring want when it is not 0.
// try binds the port and reports whether that worked; a port some other
// program holds is skipped and the scan goes on.
func (r *relayAllocator) reserve(network string, want int, try func(port int) error) (int, error) {
	r.mu.Lock()
	if r.limit > 0 && r.live >= r.limit {
		r.mu.Unlock()
		return 0, errTotalQuota
	}
	if r.inUse == nil {
		r.inUse = map[string][]uint64{}
	}
	bits := r.inUse[network]
	size := r.max - r.min + 1
	if bits == nil {
		bits = make([]uint64, (size+63)/64)
		r.inUse[network] = bits
	}
	r.live++ // counted now so concurrent callers respect the limit
	r.mu.Unlock()

	isSet := func(i int) bool { return bits[i/64]&(1<<(i%64)) != 0 }
	claim := func(i int) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if isSet(i) {
			return false
		}
		bits[i/64] |= 1 << (i % 64)
		return true
	}
	unclaim := func(i int) {
		r.mu.Lock()
		bits[i/64] &^= 1 << (i % 64)
		r.mu.Unlock()
	}
	fail := func(err error) (int, error) {
		r.mu.Lock()
		r.live--
		r.mu.Unlock()
		return 0, err
	}

	if want != 0 {
		i := want - r.min
		if i < 0 || i >= size || !claim(i) {
			return fail(fmt.Errorf("%w: requested port %d unavailable", errRangeFull, want))
		}
		if err := try(want); err != nil {
			unclaim(i)
			return fail(err)
		}
		return want, nil
	}
	start := rand.IntN(size)
	for k := range size {
		i := (start + k) % size
		if !claim(i) {
			continue
		}
		if err := try(r.min + i); err != nil {
			unclaim(i)
			continue
		}
		return r.min + i, nil
	}
	return fail(errRangeFull)
}

// release frees port for network.
func (r *relayAllocator) release(network string, port int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if bits := r.inUse[network]; bits != nil {
		i := port - r.min
		bits[i/64] &^= 1 << (i % 64)
	}
	r.live--
}

// AllocatePacketConn implements pionturn.RelayAddressGenerator for UDP relays.
func (r *relayAllocator) AllocatePacketConn(conf pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	fam, err := r.family(conf.Network)
	if err != nil {
		return nil, nil, err
	}
	rc := &relayConn{alloc: r, network: conf.Network, out: newRateBucket(r.bps), in: newRateBucket(r.bps)}
	port, err := r.reserve(conf.Network, conf.RequestedPort, func(port int) error {
		ap := netip.AddrPortFrom(fam.bind, uint16(port))
		if loop := r.nextLoop(); loop != nil {
			s, err := loop.Open(ap, rc.socketConfig())
			if err != nil {
				return err
			}
			rc.sock = s
			if err := s.Start(); err != nil {
				_ = s.Close()
				return err
			}
			return nil
		}
		c, err := net.ListenUDP(conf.Network, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return err
		}
		rc.sock = udploop.NetSocket(c, rc.socketConfig())
		return nil
	})
	if err != nil {
		r.metrics.AllocationsMade.WithLabelValues(outcomeOf(err)).Inc()
		return nil, nil, err
	}
	r.metrics.AllocationsMade.WithLabelValues("ok").Inc()
	rc.port = port
	rc.public = netip.AddrPortFrom(fam.public, uint16(port))
	if r.fast != nil {
		r.fast.addRelay(rc)
	}
	return rc, net.UDPAddrFromAddrPort(rc.public), nil
}

func outcomeOf(err error) string {
	switch {
	case errors.Is(err, errTotalQuota):
		return "total_quota"
	case errors.Is(err, errRangeFull):
		return "range_full"
	case errors.Is(err, errFamilyDisabled):
		return "family_disabled"
	default:
		return "error"
	}
}

// AllocateListener implements RFC 6062 TCP relays.
func (r *relayAllocator) AllocateListener(conf pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	if !r.tcp {
		return nil, nil, errTCPRelayOff
	}
	fam, err := r.family(conf.Network)
	if err != nil {
		return nil, nil, err
	}
	lc := net.ListenConfig{Control: reuseport.Control}
	var ln net.Listener
	port, err := r.reserve(conf.Network, conf.RequestedPort, func(port int) error {
		l, err := lc.Listen(context.Background(), conf.Network, netip.AddrPortFrom(fam.bind, uint16(port)).String())
		if err != nil {
			return err
		}
		ln = l
		return nil
	})
	if err != nil {
		r.metrics.AllocationsMade.WithLabelValues(outcomeOf(err)).Inc()
		return nil, nil, err
	}
	r.metrics.AllocationsMade.WithLabelValues("ok").Inc()
	return &relayListener{Listener: ln, alloc: r, network: conf.Network, port: port},
		&net.TCPAddr{IP: fam.public.AsSlice(), Port: port}, nil
}

// AllocateConn dials a peer from the relayed address (RFC 6062 §4.3). pion
// passes the advertised address as LocalAddr; behind 1:1 NAT that address is
// not on this host, so the bind address is used instead.
func (r *relayAllocator) AllocateConn(conf pionturn.AllocateConnConfig) (net.Conn, error) {
	if !r.tcp {
		return nil, errTCPRelayOff
	}
	fam, err := r.family(conf.Network)
	if err != nil {
		return nil, err
	}
	local, ok := conf.LocalAddr.(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("unexpected relay address %v", conf.LocalAddr)
	}
	remote, err := netip.ParseAddrPort(conf.RemoteAddr.String())
	if err != nil {
		return nil, err
	}
	if r.selfPort(remote) {
		return nil, errSelfPort // the gate refused such a Connect already
	}
	d := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: fam.bind.AsSlice(), Port: local.Port},
		Control:   reuseport.Control,
		Timeout:   30 * time.Second, // RFC 6062 §5.2: at least 30 s
	}
	return d.Dial(conf.Network, conf.RemoteAddr.String())
}

// nextLoop picks the event loop for a new relay socket, round robin.
func (r *relayAllocator) nextLoop() *udploop.Loop {
	if len(r.loops) == 0 {
		return nil
	}
	return r.loops[int(r.next.Add(1))%len(r.loops)]
}

func (r *relayAllocator) inRange(port int) bool { return port >= r.min && port <= r.max }

// selfPort reports whether peer is one of this server's own addresses on a
// port outside the relay range (its STUN, HTTP or metrics port, a service
// beside it), which relays may not reach.
func (r *relayAllocator) selfPort(peer netip.AddrPort) bool {
	return r.self != nil && r.self(peer.Addr()) && !r.inRange(int(peer.Port()))
}

// relayConn is one allocation's relayed UDP socket. It returns its port to
// the allocator on Close, enforces the bandwidth cap in both directions, and
// refuses to send to this server's own addresses outside the relay port range:
// relay-to-relay traffic is allowed by the peer policy, but it must not become
// a way to reach the server's other services (SSH, the signaling HTTP port).
type relayConn struct {
	sock    *udploop.Socket
	alloc   *relayAllocator
	network string
	port    int
	public  netip.AddrPort // the advertised relay address
	out, in *rateBucket
	closed  atomic.Bool

	// The fast path (fastpath.go): the client to send ChannelData to, and
	// the channels bound on this allocation.
	link   atomic.Pointer[clientLink]
	chans  atomic.Pointer[chanTable]
	perms  atomic.Pointer[map[netip.Addr]struct{}]
	chanMu sync.Mutex
}

// WriteTo is pion's send to a peer (Send indications, and ChannelData pion
// handles itself); it shares sendToPeer's checks.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap := addrPortOf(addr)
	if !ap.IsValid() {
		return 0, fmt.Errorf("bad peer address %v", addr)
	}
	c.sendToPeer(udploop.Direct, p, ap)
	return len(p), nil
}

func (c *relayConn) LocalAddr() net.Addr                { return c.sock.LocalAddr() }
func (c *relayConn) SetDeadline(t time.Time) error      { return c.sock.SetDeadline(t) }
func (c *relayConn) SetReadDeadline(t time.Time) error  { return c.sock.SetReadDeadline(t) }
func (c *relayConn) SetWriteDeadline(t time.Time) error { return c.sock.SetWriteDeadline(t) }

func (c *relayConn) Close() error {
	err := c.sock.Close()
	if c.closed.CompareAndSwap(false, true) {
		if c.alloc.fast != nil {
			c.alloc.fast.removeRelay(c)
		}
		c.alloc.release(c.network, c.port)
	}
	return err
}

type relayListener struct {
	net.Listener
	alloc   *relayAllocator
	network string
	port    int
	closed  atomic.Bool
}

func (l *relayListener) Close() error {
	err := l.Listener.Close()
	if l.closed.CompareAndSwap(false, true) {
		l.alloc.release(l.network, l.port)
	}
	return err
}
