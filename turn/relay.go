package turn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/transport/v5/reuseport"
	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"icegate/internal/udploop"
)

// relayFamily is one address family's relay addresses.
type relayFamily struct {
	bind   netip.Addr // local address relays bind to
	public netip.Addr // address advertised in XOR-RELAYED-ADDRESS (at start; see relayAllocator.publics)
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
	v4, v6 relayFamily
	// publics are the advertised addresses in force, v4 and v6: those of
	// v4 and v6 at start (nil: those), replaced as a whole when discovery
	// (publicaddr.go) finds a new one. family reads them, so a change
	// reaches the next allocation; live ones keep the address they got.
	publics  atomic.Pointer[[2]netip.Addr]
	min, max int
	tcp      bool
	limit    int // total live relays, 0 = no cap
	bps      int // bandwidth per allocation and direction, 0 = no cap

	metrics *Metrics
	self    func(netip.AddrPort) bool // this server's own address outside the relay ports (PeerPolicy.SelfPort)
	// selfDrop counts and logs relayed data dropped by selfPort.
	selfDrop func(netip.AddrPort)
	sockBuf  int             // socket buffer bytes, 0 = the system's default
	freeBind bool            // IP_FREEBIND on relay sockets (Listen.NoFreeBind)
	loops    []*udploop.Loop // event loops relay sockets are spread over; none = portable path
	next     atomic.Uint32

	// table registers every relay socket and listener handed to pion, by
	// relayed address, until it closes (allocs.go).
	table *allocTable
	// dropNoPerm counts peer datagrams discarded for want of a permission
	// (icegate_packets_dropped_total{reason="no_permission"}).
	dropNoPerm prometheus.Counter

	// res holds EVEN-PORT reservations and the gate's allocation intents
	// for the whole server (reserve.go).
	res *reservations

	// shared are the shared relay sockets by network ("udp4", "udp6") in
	// shared mode (RelayConfig.Shared, shared.go); nil otherwise.
	shared map[string][]*sharedSocket
	// sharedLast is the index of the shared socket chosen last, by
	// network, under mu.
	sharedLast map[string]int
	// dropUnclaimed counts peer datagrams on a shared socket from an
	// address:port no allocation claimed (reason="peer_unclaimed"),
	// dropTaken data an allocation sent to a peer another allocation on
	// its shared socket owns (reason="peer_taken"), dropQueue datagrams for
	// a stream client's shared allocation that found pion's queue full
	// (reason="slow_queue_full"), dropClaimsFull data to a new peer from
	// an allocation that holds maxClaims claims (reason="peer_claims_full").
	dropUnclaimed, dropTaken, dropQueue, dropClaimsFull prometheus.Counter

	mu    sync.Mutex
	inUse map[string][]uint64 // network ("udp4", ...) -> bitmap over [min, max]
	live  int                 // relay sockets and held ports
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
			f := r.v4
			if p := r.publics.Load(); p != nil {
				f.public = p[0]
			}
			return f, nil
		}
	case "udp6", "tcp6":
		if r.v6.enabled() {
			f := r.v6
			if p := r.publics.Load(); p != nil {
				f.public = p[1]
			}
			return f, nil
		}
	}
	return relayFamily{}, fmt.Errorf("%w: %s", errFamilyDisabled, network)
}

// full reports whether limits.allocations_total is reached: the next
// Allocate would fail with errTotalQuota.
func (r *relayAllocator) full() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.limit > 0 && r.live >= r.limit
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

// reserve claims ports for network and binds them: one port (want, or any
// free one when want is 0; with even, an even one), or with pair an even
// port P and P+1 (RFC 8656 §7.2 step 6: EVEN-PORT asks for an even port,
// and with the R bit for P+1 to be reserved too). bind binds one port and returns how to undo it.
//
// A port another program holds (EADDRINUSE) is skipped and the scan goes on;
// any other bind error (the address is not up, permission denied, out of
// descriptors) would fail for every port alike and is returned at once as a
// *bindError, so that the client and the log hear what actually failed.
func (r *relayAllocator) reserve(network string, want int, even, pair bool, bind func(port int) (undo func(), err error)) (int, error) {
	n := 1
	if pair {
		n = 2
	}
	r.mu.Lock()
	if r.limit > 0 && r.live+n > r.limit {
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
	r.live += n // counted now so concurrent callers respect the limit
	r.mu.Unlock()

	isSet := func(i int) bool { return bits[i/64]&(1<<(i%64)) != 0 }
	// claim marks ports i..i+n-1 in use, all or none.
	claim := func(i int) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for k := range n {
			if isSet(i + k) {
				return false
			}
		}
		for k := range n {
			bits[(i+k)/64] |= 1 << ((i + k) % 64)
		}
		return true
	}
	unclaim := func(i int) {
		r.mu.Lock()
		for k := range n {
			bits[(i+k)/64] &^= 1 << ((i + k) % 64)
		}
		r.mu.Unlock()
	}
	fail := func(err error) (int, error) {
		r.mu.Lock()
		r.live -= n
		r.mu.Unlock()
		return 0, err
	}
	// try binds the claimed ports from i; false with a nil error means a
	// port was taken by another program.
	try := func(i int) (bool, error) {
		var undos []func()
		for k := range n {
			undo, err := bind(r.min + i + k)
			if err != nil {
				for _, u := range undos {
					u()
				}
				unclaim(i)
				if errors.Is(err, syscall.EADDRINUSE) {
					return false, nil
				}
				return false, err
			}
			undos = append(undos, undo)
		}
		return true, nil
	}

	if want != 0 {
		i := want - r.min
		if i < 0 || i+n > size || !claim(i) {
			return fail(fmt.Errorf("%w: requested port %d unavailable", errRangeFull, want))
		}
		ok, err := try(i)
		switch {
		case err != nil:
			return fail(err)
		case !ok:
			return fail(&bindError{port: want, err: syscall.EADDRINUSE})
		}
		return want, nil
	}
	start := rand.IntN(size)
	for k := range size {
		i := (start + k) % size
		if (even || pair) && (r.min+i)%2 != 0 || pair && i+1 >= size {
			continue
		}
		if !claim(i) {
			continue
		}
		ok, err := try(i)
		if err != nil {
			return fail(err)
		}
		if ok {
			return r.min + i, nil
		}
	}
	return fail(errRangeFull)
}

// bindError is a relay socket that could not be bound for a reason other
// than its port being taken: the relay address is not up
// (EADDRNOTAVAIL), or the process may not bind it, or has no descriptor
// left. It is a server error, never "insufficient capacity".
type bindError struct {
	addr netip.AddrPort
	port int // when addr is not known
	err  error
}

func (e *bindError) Error() string {
	var op *net.OpError
	if errors.As(e.err, &op) && op.Addr != nil {
		return "relay socket: " + e.err.Error() // names the address already
	}
	where := e.addr.String()
	if !e.addr.IsValid() {
		where = "port " + strconv.Itoa(e.port)
	}
	return "relay socket " + where + ": " + e.err.Error()
}

func (e *bindError) Unwrap() error { return e.err }

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

// openUDP binds a relay socket on ap, not yet read: start makes it live.
func (r *relayAllocator) openUDP(network string, fam relayFamily, ap netip.AddrPort) (*relayConn, error) {
	rc := &relayConn{alloc: r, network: network, port: int(ap.Port()), out: newRateBucket(r.bps), in: newRateBucket(r.bps)}
	rc.public = netip.AddrPortFrom(fam.public, ap.Port())
	if loop := r.nextLoop(); loop != nil {
		s, err := loop.Open(ap, rc.socketConfig())
		if err != nil {
			return nil, asBindError(ap, err)
		}
		rc.sock = s
		return rc, nil
	}
	pc, err := r.bindConfig(nil).ListenPacket(context.Background(), network, ap.String())
	if err != nil {
		return nil, asBindError(ap, err)
	}
	rc.sock = udploop.NetSocket(pc.(*net.UDPConn), rc.socketConfig())
	return rc, nil
}

// asBindError wraps err as a *bindError, except a taken port, which the
// scan skips.
func asBindError(ap netip.AddrPort, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	return &bindError{addr: ap, err: err}
}

// start makes rc live: its loop reads it and the allocation table knows it.
func (r *relayAllocator) start(rc *relayConn) error {
	if err := rc.sock.Start(); err != nil {
		return err
	}
	r.table.addRelay(rc.key(), rc)
	return nil
}

// discard closes a relay socket that never went live, without releasing
// its port (the caller unclaims it).
func (rc *relayConn) discard() {
	rc.closed.Store(true)
	_ = rc.sock.Close()
}

// AllocatePacketConn implements pionturn.RelayAddressGenerator for UDP
// relays. The realm pion passes names the gate's intent for the request
// (reserve.go): any port, an even port (EVEN-PORT), an even port with P+1
// held (EVEN-PORT with R=1), or the port a RESERVATION-TOKEN holds.
func (r *relayAllocator) AllocatePacketConn(conf pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	in := r.res.take(conf.Realm)
	rc, err := r.allocateUDP(conf, in)
	r.metrics.AllocationsMade.WithLabelValues(outcomeOf(err)).Inc()
	if err != nil {
		r.res.fail(in, err)
		return nil, nil, err
	}
	return rc, net.UDPAddrFromAddrPort(rc.public), nil
}

func (r *relayAllocator) allocateUDP(conf pionturn.AllocateListenerConfig, in *allocIntent) (*relayConn, error) {
	fam, err := r.family(conf.Network)
	if err != nil {
		return nil, err
	}
	if in != nil && in.token != 0 {
		rc, err := r.res.redeem(in.token, conf.Network)
		if err != nil {
			return nil, err
		}
		if rc.shared != nil {
			return r.redeemShared(rc, in), nil
		}
		if err := r.start(rc); err != nil {
			_ = rc.Close()
			return nil, err
		}
		return rc, nil
	}
	if r.shared != nil {
		return r.allocateShared(conf.Network, in)
	}
	even := in != nil && in.even
	reserve := in != nil && in.reserve
	var rc, next *relayConn
	_, err = r.reserve(conf.Network, conf.RequestedPort, even, reserve, func(port int) (func(), error) {
		c, err := r.openUDP(conf.Network, fam, netip.AddrPortFrom(fam.bind, uint16(port)))
		if err != nil {
			return nil, err
		}
		if rc == nil {
			rc = c
		} else {
			next = c
		}
		return func() {
			c.discard()
			if c == rc {
				rc = nil
			}
		}, nil
	})
	if err != nil {
		return nil, err
	}
	if next != nil {
		if _, err := r.res.hold(next, in.txKey, in.key); err != nil {
			_ = next.Close()
			_ = rc.Close()
			return nil, err
		}
	}
	if err := r.start(rc); err != nil {
		_ = rc.Close()
		return nil, err
	}
	return rc, nil
}

func outcomeOf(err error) string {
	var be *bindError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, errTotalQuota):
		return "total_quota"
	case errors.Is(err, errRangeFull):
		return "range_full"
	case errors.Is(err, errFamilyDisabled):
		return "family_disabled"
	case errors.Is(err, errTokenInvalid), errors.Is(err, errTokenFamily):
		return "token_invalid"
	case errors.Is(err, errTCPRelayOff):
		return "tcp_disabled"
	case errors.As(err, &be):
		return "bind_error"
	default:
		return "error"
	}
}

// AllocateListener implements RFC 6062 TCP relays.
func (r *relayAllocator) AllocateListener(conf pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	in := r.res.take(conf.Realm)
	ln, addr, err := r.allocateTCP(conf)
	r.metrics.AllocationsMade.WithLabelValues(outcomeOf(err)).Inc()
	if err != nil {
		r.res.fail(in, err)
		return nil, nil, err
	}
	return ln, addr, nil
}

func (r *relayAllocator) allocateTCP(conf pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	if !r.tcp {
		return nil, nil, errTCPRelayOff
	}
	fam, err := r.family(conf.Network)
	if err != nil {
		return nil, nil, err
	}
	lc := r.bindConfig(reuseport.Control)
	var ln net.Listener
	port, err := r.reserve(conf.Network, conf.RequestedPort, false, false, func(port int) (func(), error) {
		ap := netip.AddrPortFrom(fam.bind, uint16(port))
		l, err := lc.Listen(context.Background(), conf.Network, ap.String())
		if err != nil {
			return nil, asBindError(ap, err)
		}
		ln = l
		return func() { _ = l.Close() }, nil
	})
	if err != nil {
		return nil, nil, err
	}
	rl := &relayListener{Listener: ln, alloc: r, network: conf.Network, port: port,
		public: &net.TCPAddr{IP: fam.public.AsSlice(), Port: port}}
	r.table.addRelay(relayKeyOf(rl.public), rl)
	return rl, rl.public, nil
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
		Control:   r.bindConfig(reuseport.Control).Control,
		Timeout:   30 * time.Second, // RFC 6062 §5.2: at least 30 s
	}
	conn, err := d.Dial(conf.Network, conf.RemoteAddr.String())
	if err != nil {
		return nil, err
	}
	if l := r.table.tcpRelay(conf.LocalAddr); l != nil {
		return &countedConn{Conn: conn, traffic: &l.traffic}, nil
	}
	return conn, nil
}

// bindConfig is how relay sockets Go's net package opens are bound: with
// also (SO_REUSEPORT for TCP relays, whose listener and outgoing
// connections share a port), and with IP_FREEBIND on a specific relay
// address unless Listen.NoFreeBind.
func (r *relayAllocator) bindConfig(also func(network, address string, c syscall.RawConn) error) *net.ListenConfig {
	if !r.freeBind {
		return &net.ListenConfig{Control: also}
	}
	if also == nil {
		return &net.ListenConfig{Control: freeBindControl}
	}
	return &net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		if err := also(network, address, c); err != nil {
			return err
		}
		return freeBindControl(network, address, c)
	}}
}

// nextLoop picks the event loop for a new relay socket, round robin.
func (r *relayAllocator) nextLoop() *udploop.Loop {
	if len(r.loops) == 0 {
		return nil
	}
	return r.loops[int(r.next.Add(1))%len(r.loops)]
}

// selfPort reports whether peer is one of this server's own addresses on a
// port outside the relay range (its STUN, HTTP or metrics port, a service
// beside it), which relays may not reach: the peer policy in force says
// (PeerPolicy.SelfPort).
func (r *relayAllocator) selfPort(peer netip.AddrPort) bool {
	return r.self != nil && r.self(peer)
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

	// shared is the shared relay socket this allocation is served from
	// (RelayConfig.Shared, shared.go), nil when it has a socket of its own
	// (sock is then the shared socket's). tag is the allocation intent's
	// number, its key in the allocation table beside the relayed address
	// that many allocations share. claims are the peer address:ports it
	// owns on shared (under shared.mu); queue holds a stream client's
	// datagrams for pion's read until done closes.
	shared *sharedSocket
	tag    uint64
	claims map[netip.AddrPort]struct{}
	queue  chan sharedPacket
	done   chan struct{}

	// The fast path's view of the allocation (fastpath.go), written only
	// by the allocation table (allocs.go): the client to send ChannelData
	// to, the channels bound and the peers permitted.
	link  atomic.Pointer[clientLink]
	chans atomic.Pointer[chanTable]
	perms atomic.Pointer[map[netip.Addr]struct{}]
	// blocked are peers a reload's policy denies while pion's permission
	// or channel for them lives on (revoke.go); nil when none.
	blocked atomic.Pointer[map[netip.Addr]struct{}]

	// traffic counts what this allocation relayed, each way (traffic.go):
	// written by the socket's own loop (peer to client) and the client's
	// listener loop or pion (client to peer), read at scrape time.
	traffic trafficCounters
	// kfAlloc is the allocation id under which the kernel fast path holds
	// this relay's flows and counters (offload.go); 0 when it holds none.
	kfAlloc atomic.Uint64
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

func (c *relayConn) LocalAddr() net.Addr { return c.sock.LocalAddr() }

func (c *relayConn) SetDeadline(t time.Time) error {
	if c.shared != nil {
		return sharedDeadline(t)
	}
	return c.sock.SetDeadline(t)
}

func (c *relayConn) SetReadDeadline(t time.Time) error {
	if c.shared != nil {
		return sharedDeadline(t)
	}
	return c.sock.SetReadDeadline(t)
}

func (c *relayConn) SetWriteDeadline(t time.Time) error {
	if c.shared != nil {
		return sharedDeadline(t)
	}
	return c.sock.SetWriteDeadline(t)
}

// key is the relay's key in the allocation table.
func (c *relayConn) key() relayKey {
	return relayKey{addr: canonical(c.public), tag: c.tag}
}

// Close closes the socket, takes it out of the allocation table and frees
// its port. Closing it again is not an error: a revocation closes it
// (revoke.go), and pion closes it once more when it deletes the allocation,
// and would log an error.
func (c *relayConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if c.shared != nil {
		return c.closeShared()
	}
	// The kernel stops relaying for the allocation before its socket goes
	// (and with it pion's relaying): never after.
	c.alloc.table.releaseRelay(c)
	err := c.sock.Close()
	c.alloc.table.removeRelay(c.key(), c)
	c.alloc.release(c.network, c.port)
	return err
}

// relayListener is an RFC 6062 TCP relay's listening socket.
type relayListener struct {
	net.Listener
	alloc   *relayAllocator
	network string
	port    int
	public  *net.TCPAddr // the advertised relay address
	closed  atomic.Bool
	// traffic counts what the allocation's peer connections carried,
	// each way (countedConn), as relayConn.traffic does for UDP.
	traffic trafficCounters
}

// Accept hands pion a peer's connection to the relayed address (RFC 6062
// §5.3) wrapped so that what it carries is counted.
func (l *relayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, traffic: &l.traffic}, nil
}

// countedConn is an RFC 6062 peer connection (accepted on the relayed
// address or dialled for a Connect) that counts the bytes pion copies
// through it: what it reads from the peer goes to the client
// (peer_to_client), what pion writes to it came from the client
// (client_to_peer). TCP has no datagrams, so a "packet" is one read or
// one write, as many bytes as the kernel had or pion's copy buffer took
// (at most 32 KiB: pion copies with io.Copy). The copy loses nothing by
// the wrapper: the client's side of the copy is never a bare
// *net.TCPConn (icegate frames and times it), so the kernel's splice was
// never used.
type countedConn struct {
	net.Conn
	traffic *trafficCounters
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.traffic.toClient(n)
	}
	return n, err
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.traffic.toPeer(n)
	}
	return n, err
}

// Close is relayConn.Close for a TCP relay.
func (l *relayListener) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := l.Listener.Close()
	l.alloc.table.removeRelay(relayKeyOf(l.public), l)
	l.alloc.release(l.network, l.port)
	return err
}
