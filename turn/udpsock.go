package turn

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// udpSocket is the UDP socket under a listener or a relay. Either Go's net
// package serves it (conn != nil, the portable path: whoever reads it runs
// the fast path inline), or an ioLoop does (loop != nil, Linux: the loop
// reads batches of datagrams, relays ChannelData itself and queues the rest
// on slow for pion's goroutine).
type udpSocket struct {
	conn    *net.UDPConn
	local   net.Addr
	localAP netip.AddrPort

	loop *ioLoop
	fd   int
	v6   bool
	// gsoMax is the largest segment size the loops put in a UDP_SEGMENT
	// train on this socket, 0 for none; lowered when the kernel refuses a
	// train. Atomic: a loop also sends on sockets another loop reads.
	gsoMax atomic.Int32
	slow   chan slowPacket
	// flow: the loop stops reading this socket while slow is full rather
	// than drop (relay sockets); paused: it has stopped (ioLoop.pause).
	flow   bool
	paused atomic.Bool
	// handle is the loop's fast path for a datagram at
	// b[headroom:headroom+n] (the space before it takes a header); false
	// queues it for pion.
	handle func(out sender, b []byte, n int, from netip.AddrPort) bool

	// mu orders sends and reads on fd against Close, so that a closed
	// descriptor number, which the kernel may hand out again, is never used.
	mu        sync.RWMutex
	closed    bool
	closeOnce sync.Once
}

// bufSize holds the largest datagram pion accepts (its InboundMTU, 1600)
// plus the headroom for a header in front.
const bufSize = 2048

// sender sends a datagram out of a socket: at once (direct), or, on an
// event loop, queued with the others of the batch being handled, to go out
// in one sendmmsg per socket when the batch is done.
type sender interface {
	send(s *udpSocket, p []byte, to netip.AddrPort)
}

// direct sends at once; the portable path and pion's own writes use it.
type direct struct{}

func (direct) send(s *udpSocket, p []byte, to netip.AddrPort) { _ = s.sendTo(p, to) }

// slowPacket is a datagram the loop hands to pion's goroutine.
type slowPacket struct {
	buf  *[]byte
	n    int
	from netip.AddrPort
}

var slowPool = sync.Pool{New: func() any { b := make([]byte, 2048); return &b }}

func newNetSocket(c *net.UDPConn) *udpSocket {
	return &udpSocket{conn: c, local: c.LocalAddr(), localAP: addrPortOf(c.LocalAddr()), fd: -1}
}

// sendTo sends one datagram without allocating.
func (s *udpSocket) sendTo(p []byte, to netip.AddrPort) error {
	if s.conn != nil {
		_, err := s.conn.WriteToUDPAddrPort(p, to)
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return net.ErrClosed
	}
	return sendto(s.fd, s.v6, p, to)
}

// lowerGSOMax makes trains on s carry segments of at most n bytes.
func (s *udpSocket) lowerGSOMax(n int32) {
	for {
		cur := s.gsoMax.Load()
		if n >= cur || s.gsoMax.CompareAndSwap(cur, max(n, 0)) {
			return
		}
	}
}

// recvSlow returns the next datagram the loop queued for pion.
func (s *udpSocket) recvSlow(p []byte) (int, netip.AddrPort, error) {
	pkt, ok := <-s.slow
	if !ok {
		return 0, netip.AddrPort{}, net.ErrClosed
	}
	n := copy(p, (*pkt.buf)[:pkt.n])
	slowPool.Put(pkt.buf)
	if s.paused.Load() && len(s.slow) <= cap(s.slow)/2 && s.paused.CompareAndSwap(true, false) {
		s.resume() // half the queue is free: the loop may read again
	}
	return n, pkt.from, nil
}

func (s *udpSocket) close() error {
	if s.conn != nil {
		return s.conn.Close()
	}
	err := net.ErrClosed
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		err = s.loop.remove(s)
		close(s.slow)
	})
	return err
}

var errNoDeadlines = errors.New("deadlines are not supported on event-loop sockets")

func (s *udpSocket) setDeadline(t time.Time, read, write bool) error {
	if s.conn != nil {
		switch {
		case read && write:
			return s.conn.SetDeadline(t)
		case read:
			return s.conn.SetReadDeadline(t)
		default:
			return s.conn.SetWriteDeadline(t)
		}
	}
	if t.IsZero() {
		return nil
	}
	return errNoDeadlines
}

// Each event loop waits for packets inside epoll_wait and keeps its P (the
// scheduler's processor) meanwhile, like a goroutine in any long system
// call. So that the rest of the program (pion's control plane, the
// signaling server) is not left waiting for the scheduler to take those Ps
// back, GOMAXPROCS is raised by the number of live loops while they run.
var procs struct {
	sync.Mutex
	base, loops int
	live        atomic.Int32 // loops, readable without the lock
}

func addLoops(n int) {
	procs.Lock()
	defer procs.Unlock()
	if procs.loops == 0 {
		procs.base = runtime.GOMAXPROCS(0)
	}
	procs.loops += n
	procs.live.Store(int32(procs.loops))
	runtime.GOMAXPROCS(procs.base + procs.loops)
}
