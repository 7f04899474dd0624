// Package udploop owns the mechanics of icegate's UDP sockets: on Linux,
// epoll event loops that read datagrams in batches (recvmmsg), run a
// handler on each one on the loop's own thread, and send what the handlers
// queued in one sendmmsg per socket, as UDP_SEGMENT trains where the sizes
// allow; socket options and buffer sizing; a per-socket queue to a Go
// reader for what the handler does not take, with flow control; the
// counters that show how many datagrams each system call moves; and the
// portable path over Go's net package, used on other systems or when the
// caller asks for it.
//
// It knows nothing of what the datagrams mean: the caller decides what a
// handler does, how much room a header needs in front of a datagram, how
// long a socket's queue is and whether a full one drops or stops reading.
// It never changes process-wide settings on its own: ReserveProcs is the
// caller's explicit choice.
package udploop

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Socket is a UDP socket under a listener or a relay. Either Go's net
// package serves it (conn != nil, the portable path: Recv runs the handler
// inline), or a Loop does (loop != nil, Linux: the loop reads batches of
// datagrams, runs the handler itself and queues the rest for Recv).
type Socket struct {
	conn    *net.UDPConn
	local   net.Addr
	localAP netip.AddrPort
	cfg     SocketConfig

	loop *Loop
	fd   int
	v6   bool
	// gsoMax is the largest segment size the loops put in a UDP_SEGMENT
	// train on this socket, 0 for none; lowered when the kernel refuses a
	// train. Atomic: a loop also sends on sockets another loop reads.
	gsoMax atomic.Int32
	slow   chan slowPacket
	// paused: the loop has stopped reading this socket while its queue is
	// full (SocketConfig.Pause, Loop.pause).
	paused atomic.Bool

	// rmu and rbuf: the portable path's read buffer, with the configured
	// room around the datagram.
	rmu  sync.Mutex
	rbuf []byte

	// mu orders sends and reads on fd against Close, so that a closed
	// descriptor number, which the kernel may hand out again, is never used.
	mu        sync.RWMutex
	closed    bool
	closeOnce sync.Once
}

// SocketConfig says how a socket is set up and what happens to the
// datagrams it reads. The zero value is a socket with the system's buffer
// sizes, no handler (every datagram goes to Recv) and a queue of one.
type SocketConfig struct {
	// Handler is the socket's fast path (see Handler); nil hands every
	// datagram to Recv.
	Handler Handler
	// Headroom is the room kept in front of each datagram for a header
	// the handler writes in place; Tailroom the room kept after it (for
	// padding). Both are taken from BufSize.
	Headroom, Tailroom int
	// Buffer sizes the kernel's receive and send buffers in bytes
	// (SO_RCVBUFFORCE where allowed, so the size does not depend on
	// net.core.rmem_max, as coturn does); 0 keeps the system's default.
	Buffer int
	// ReusePort sets SO_REUSEPORT (event loops only), so that one socket
	// per loop can share a listening port: the kernel spreads clients over
	// them by their address, so a client stays on one.
	ReusePort bool
	// FreeBind sets IP_FREEBIND (IPV6_FREEBIND for IPv6) on a socket bound
	// to a specific address (event loops only; the portable path's caller
	// sets it through its own net.ListenConfig): the bind succeeds while
	// the address is not on any interface yet, as at boot before the
	// network is up, and the socket receives once the address appears.
	FreeBind bool
	// Queue is how many datagrams the handler did not take wait for Recv
	// (event loops only); at least 1.
	Queue int
	// Pause makes the loop stop reading the socket while its queue is
	// full, until Recv has taken half of it, so the datagrams wait in the
	// kernel's buffer instead of being dropped. Without it a datagram that
	// finds the queue full is dropped and Dropped is called.
	Pause bool
	// Dropped is called for each datagram dropped for a full queue; nil
	// counts nothing.
	Dropped func()
}

// BufSize is the size of the buffer each datagram is read into, room in
// front and behind included: it holds the largest datagram pion accepts
// (its InboundMTU, 1600) with room for a header.
const BufSize = 2048

// Handler handles a datagram at b[headroom:headroom+n] (headroom is the
// socket's SocketConfig.Headroom; b runs to the end of the read buffer, so
// the room before and after the datagram is the handler's to write in,
// until it returns). It either takes the datagram, sending what it sends
// through out, and returns true, or returns false to hand it to Recv. On an
// event loop out queues the sends and the loop flushes them after the
// batch, before the buffers are read into again; on the portable path out
// is Direct.
type Handler func(out Sender, b []byte, n int, from netip.AddrPort) bool

// Sender sends a datagram out of a socket: at once (Direct), or, on an
// event loop, queued with the others of the batch being handled, to go out
// in one sendmmsg per socket when the batch is done. p must stay unchanged
// until then.
type Sender interface {
	Send(s *Socket, p []byte, to netip.AddrPort)
}

// Direct sends at once, ignoring errors as UDP may; the portable path and
// writes from outside a handler use it.
var Direct Sender = direct{}

type direct struct{}

func (direct) Send(s *Socket, p []byte, to netip.AddrPort) { _ = s.SendTo(p, to) }

// slowPacket is a datagram the loop hands to Recv.
type slowPacket struct {
	buf  *[]byte
	n    int
	from netip.AddrPort
}

var slowPool = sync.Pool{New: func() any { b := make([]byte, BufSize); return &b }}

// NetSocket serves c through Go's net package (the portable path): Recv
// reads it and runs cfg.Handler inline. cfg.Buffer sizes its buffers;
// ReusePort, Queue, Pause and Dropped do not apply.
func NetSocket(c *net.UDPConn, cfg SocketConfig) *Socket {
	if cfg.Buffer > 0 {
		_ = c.SetReadBuffer(cfg.Buffer)
		_ = c.SetWriteBuffer(cfg.Buffer)
	}
	return &Socket{conn: c, local: c.LocalAddr(), localAP: c.LocalAddr().(*net.UDPAddr).AddrPort(), cfg: cfg, fd: -1}
}

// LocalAddr is the address the socket is bound to.
func (s *Socket) LocalAddr() net.Addr { return s.local }

// AddrPort is LocalAddr as a netip.AddrPort.
func (s *Socket) AddrPort() netip.AddrPort { return s.localAP }

// Loop is the event loop that reads s, nil on the portable path.
func (s *Socket) Loop() *Loop { return s.loop }

// SendTo sends one datagram at once without allocating.
func (s *Socket) SendTo(p []byte, to netip.AddrPort) error {
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
func (s *Socket) lowerGSOMax(n int32) {
	for {
		cur := s.gsoMax.Load()
		if n >= cur || s.gsoMax.CompareAndSwap(cur, max(n, 0)) {
			return
		}
	}
}

// Recv returns the next datagram the handler did not take, copied into p.
// On an event loop it waits for the loop's queue; on the portable path it
// reads the socket and runs the handler on each datagram first. One
// goroutine reads a socket at a time, as pion does.
func (s *Socket) Recv(p []byte) (int, netip.AddrPort, error) {
	if s.conn != nil {
		return s.recvNet(p)
	}
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

// recvNet is Recv on the portable path.
func (s *Socket) recvNet(p []byte) (int, netip.AddrPort, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.rbuf == nil {
		s.rbuf = make([]byte, BufSize)
	}
	h := s.cfg.Headroom
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(s.rbuf[h : BufSize-s.cfg.Tailroom])
		if err != nil {
			return 0, netip.AddrPort{}, err
		}
		if s.cfg.Handler != nil && s.cfg.Handler(Direct, s.rbuf, n, from) {
			continue
		}
		return copy(p, s.rbuf[h:h+n]), from, nil
	}
}

// Close closes the socket; a Recv waiting returns net.ErrClosed.
func (s *Socket) Close() error {
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

// ErrNoDeadlines is returned for a deadline set on an event-loop socket:
// its Recv waits on the loop's queue, which has none.
var ErrNoDeadlines = errors.New("deadlines are not supported on event-loop sockets")

// SetDeadline sets the read and write deadlines (portable path only; on an
// event loop only the zero time is accepted).
func (s *Socket) SetDeadline(t time.Time) error { return s.setDeadline(t, true, true) }

// SetReadDeadline sets the read deadline, as SetDeadline.
func (s *Socket) SetReadDeadline(t time.Time) error { return s.setDeadline(t, true, false) }

// SetWriteDeadline sets the write deadline, as SetDeadline.
func (s *Socket) SetWriteDeadline(t time.Time) error { return s.setDeadline(t, false, true) }

func (s *Socket) setDeadline(t time.Time, read, write bool) error {
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
	return ErrNoDeadlines
}
