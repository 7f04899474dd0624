//go:build linux

package udploop

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Loop is an epoll event loop that owns a set of UDP sockets (in icegate:
// listener sockets, one SO_REUSEPORT socket per loop and address, and relay
// sockets). It blocks in epoll_wait, reads each ready socket with recvmmsg,
// and runs the socket's handler on its own thread: no goroutine wakes up per
// datagram, and a burst costs one system call to read and one per socket to
// send. Datagrams the handler does not take go to the socket's Recv through
// its queue.
type Loop struct {
	epfd, evfd int

	mu  sync.RWMutex
	eps map[int32]*Socket

	// Per-loop batch state, used only by the loop's goroutine.
	msgs  [batch]mmsghdr
	iovs  [batch]unix.Iovec
	names [batch]unix.RawSockaddrInet6
	bufs  [batch][]byte

	// The outbox: datagrams the handlers sent while a batch was handled,
	// flushed with one sendmmsg per socket before the buffers are reused.
	out    [outboxSize]outMsg
	nOut   int
	smsgs  [outboxSize]mmsghdr
	siovs  [outboxSize]unix.Iovec
	snames [outboxSize]unix.RawSockaddrInet6
	scmsgs [outboxSize][3]uint64 // a UDP_SEGMENT control message per message (cmsg-aligned)
	sstats [outboxSize]int       // datagrams in each message

	done chan struct{}
	stop chan struct{}

	stats counters
	// noGSO: no UDP_SEGMENT trains on this loop's sockets (the kernel lacks
	// it, or Config.NoSegmentation).
	noGSO bool

	// pings are the Ping calls waiting for the loop to come round; the
	// loop closes them when it handles its eventfd. pingMu also orders
	// writes to evfd against Close (pingsClosed), so a late Ping never
	// writes to a closed (and perhaps reused) descriptor.
	pingMu      sync.Mutex
	pings       []chan struct{}
	pingsClosed bool
}

// Config is what a Loop is asked to do; the zero value is the default.
type Config struct {
	// NoSegmentation sends every datagram alone, never in a UDP_SEGMENT
	// train (by default trains are used where the kernel knows them).
	NoSegmentation bool
}

// batch is how many datagrams one recvmmsg reads at most.
const batch = 32

// outboxSize is how many datagrams wait for one flush: each datagram read
// makes at most one.
const outboxSize = batch

type outMsg struct {
	s  *Socket
	p  []byte
	to netip.AddrPort
}

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// Supported reports whether this system has event loops (Linux); where it
// has not, New fails and every socket takes the portable path (NetSocket).
func Supported() bool { return true }

// New starts an event loop. Close stops it, after its sockets are closed.
func New(cfg Config) (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(evfd)
		return nil, err
	}
	l := &Loop{epfd: epfd, evfd: evfd, eps: map[int32]*Socket{}, done: make(chan struct{}),
		stop: make(chan struct{}), noGSO: cfg.NoSegmentation || !gsoOnce()}
	for i := range batch {
		l.bufs[i] = make([]byte, BufSize)
		l.msgs[i].hdr.Iov = &l.iovs[i]
		l.msgs[i].hdr.SetIovlen(1)
		l.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&l.names[i]))
	}
	procs.loops.Add(1)
	go l.run()
	return l, nil
}

// Open creates a non-blocking UDP socket bound to ap, set up as cfg says,
// to be read by the loop once started (Socket.Start).
func (l *Loop) Open(ap netip.AddrPort, cfg SocketConfig) (*Socket, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Socket, error) {
		_ = unix.Close(fd)
		return nil, err
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail(err)
		}
	}
	if cfg.ReusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail(err)
		}
	}
	if cfg.FreeBind && !ap.Addr().IsUnspecified() {
		if err := SetFreeBind(fd, family == unix.AF_INET6); err != nil {
			return fail(err)
		}
	}
	if cfg.Buffer > 0 {
		setBuffer(fd, cfg.Buffer)
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Addr: ap.Addr().Unmap().As4(), Port: int(ap.Port())}
	} else {
		sa = &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail(&net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(ap), Err: err})
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return fail(err)
	}
	var local netip.AddrPort
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		local = netip.AddrPortFrom(netip.AddrFrom4(b.Addr), uint16(b.Port))
	case *unix.SockaddrInet6:
		local = netip.AddrPortFrom(netip.AddrFrom16(b.Addr), uint16(b.Port))
	}
	s := &Socket{
		local: net.UDPAddrFromAddrPort(local), localAP: local, cfg: cfg, loop: l, fd: fd, v6: family == unix.AF_INET6,
		slow: make(chan slowPacket, max(cfg.Queue, 1)),
	}
	if !l.noGSO {
		s.gsoMax.Store(gsoMaxSegment)
		if s.v6 {
			s.gsoMax.Store(gsoMaxSegment6)
		}
	}
	return s, nil
}

// Start registers s with its loop: from now on the loop reads it. It is
// separate from Open so that whoever owns s finishes setting it up before
// the first datagram is handled. On the portable path it does nothing.
func (s *Socket) Start() error {
	l := s.loop
	if l == nil {
		return nil
	}
	l.mu.Lock()
	l.eps[int32(s.fd)] = s
	l.mu.Unlock()
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, s.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(s.fd)}); err != nil {
		l.mu.Lock()
		delete(l.eps, int32(s.fd))
		l.mu.Unlock()
		return err
	}
	return nil
}

// setBuffer sizes the socket buffers like coturn (SO_RCVBUFFORCE when
// allowed, so the size does not depend on net.core.rmem_max).
func setBuffer(fd, n int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, n)
	}
}

// remove unregisters and closes s; s.closed is already set, so no other
// goroutine will use the descriptor again.
func (l *Loop) remove(s *Socket) error {
	l.mu.Lock()
	delete(l.eps, int32(s.fd))
	l.mu.Unlock()
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
	s.mu.Lock() // wait for a read in progress
	err := unix.Close(s.fd)
	s.mu.Unlock()
	return err
}

// Close stops the loop; its sockets must be closed first.
func (l *Loop) Close() {
	close(l.stop)
	l.wake()
	<-l.done
	l.pingMu.Lock()
	l.pingsClosed = true
	l.pingMu.Unlock()
	_ = unix.Close(l.epfd)
	_ = unix.Close(l.evfd)
	procs.loops.Add(-1)
}

// wake makes the loop's epoll_wait return with its eventfd ready.
func (l *Loop) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(l.evfd, one[:])
}

// errLoopClosed: Ping on a loop that Close stopped.
var errLoopClosed = errors.New("udploop: loop closed")

// Ping asks the loop to come round once and waits until it has, or until
// ctx ends: the health check that the loop's goroutine still serves (is
// not stuck in a handler or a system call). It costs the loop one eventfd
// read when it is idle, nothing per datagram.
func (l *Loop) Ping(ctx context.Context) error {
	ch := make(chan struct{})
	l.pingMu.Lock()
	if l.pingsClosed {
		l.pingMu.Unlock()
		return errLoopClosed
	}
	l.pings = append(l.pings, ch)
	l.wake()
	l.pingMu.Unlock()
	select {
	case <-ch:
		return nil
	case <-l.done:
		return errLoopClosed
	case <-ctx.Done():
		// Forget ch, so that a loop that never comes back does not
		// collect one channel per health check.
		l.pingMu.Lock()
		for i, c := range l.pings {
			if c == ch {
				l.pings = append(l.pings[:i], l.pings[i+1:]...)
				break
			}
		}
		l.pingMu.Unlock()
		return ctx.Err()
	}
}

// answerPings clears the eventfd (level-triggered epoll would report it
// again and again) and releases the Ping calls waiting.
func (l *Loop) answerPings() {
	var buf [8]byte
	_, _ = unix.Read(l.evfd, buf[:])
	l.pingMu.Lock()
	for _, ch := range l.pings {
		close(ch)
	}
	l.pings = l.pings[:0]
	l.pingMu.Unlock()
}

func (l *Loop) run() {
	defer close(l.done)
	events := make([]unix.EpollEvent, 64)
	// Busy waits keep the P, which is only fair while Ps are reserved for
	// the loops (see procs.go); otherwise wait the ordinary way.
	idle := false
	raw := mayHold()
	for {
		var n int
		var err error
		if idle || !raw {
			n, err = epollWaitIdle(l.epfd, events)
		} else {
			n, err = epollWait(l.epfd, events)
		}
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		// After a quiet spell the loop waits as an ordinary system call, so
		// an idle server costs nothing; traffic switches it back.
		if n == 0 {
			idle = true
			continue
		}
		if idle || !raw {
			idle, raw = false, mayHold() // out of an ordinary wait: ask again
		}
		l.stats.wakeups.Add(1)
		for i := range n {
			fd := events[i].Fd
			if int(fd) == l.evfd {
				select {
				case <-l.stop:
					return
				default:
				}
				l.answerPings()
				continue
			}
			l.mu.RLock()
			s := l.eps[fd]
			l.mu.RUnlock()
			if s != nil {
				l.drain(s)
			}
		}
	}
}

// drain reads what s has, a few batches at most so one busy socket cannot
// starve the others (epoll is level-triggered: the rest comes next round).
//
// A socket with SocketConfig.Pause reads no more datagrams than its queue
// has room for, and when the queue is full it is taken out of the loop's
// interest until Recv has emptied half of it (Socket.Recv puts it back).
// Meanwhile the datagrams wait in the socket's kernel buffer, exactly as
// they would for a reader whose path is slow, and nothing is dropped in user
// space; stopping the read costs two epoll_ctl calls per half queue, only
// while the reader is behind.
func (l *Loop) drain(s *Socket) {
	h, room := s.cfg.Headroom, BufSize-s.cfg.Headroom-s.cfg.Tailroom
	for range 4 {
		want := batch
		if s.cfg.Pause {
			want = min(batch, cap(s.slow)-len(s.slow))
			if want == 0 {
				l.pause(s)
				return
			}
		}
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			return
		}
		for i := range want {
			l.msgs[i].hdr.Namelen = unix.SizeofSockaddrInet6
			l.iovs[i].Base = &l.bufs[i][h]
			l.iovs[i].SetLen(room)
		}
		r, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&l.msgs[0])),
			uintptr(want), unix.MSG_DONTWAIT, 0, 0)
		s.mu.RUnlock()
		if errno != 0 {
			return // EAGAIN, or the socket went away
		}
		n := int(r)
		l.stats.recvCalls.Add(1)
		l.stats.recvDgrams.Add(uint64(n))
		for i := range n {
			size := int(l.msgs[i].n)
			from := sockaddrToAddrPort(&l.names[i])
			buf := l.bufs[i]
			if s.cfg.Handler != nil && s.cfg.Handler(l, buf, size, from) {
				continue
			}
			l.queueSlow(s, buf[h:h+size], from)
		}
		// What the handlers sent points into the receive buffers: out it
		// goes before the next recvmmsg reuses them.
		l.flush()
		if n < want {
			return
		}
	}
}

// pause stops the loop reading socket s, whose queue is full, until Recv
// has taken half of it. The order matters, as Recv runs at the same time:
// the socket leaves epoll's interest before paused is set, so a resume that
// sees paused always comes after it; and after setting paused the loop
// looks at the queue once more, in case the reader emptied it before paused
// was set and so did not resume.
func (l *Loop) pause(s *Socket) {
	if !s.interest(false) {
		return
	}
	l.stats.pauses.Add(1)
	s.paused.Store(true)
	if len(s.slow) <= cap(s.slow)/2 && s.paused.CompareAndSwap(true, false) {
		s.interest(true)
	}
}

// interest adds s to its loop's epoll interest (read) or takes it out,
// reporting false when s is closed.
func (s *Socket) interest(read bool) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	ev := unix.EpollEvent{Fd: int32(s.fd)}
	if read {
		ev.Events = unix.EPOLLIN
	}
	return unix.EpollCtl(s.loop.epfd, unix.EPOLL_CTL_MOD, s.fd, &ev) == nil
}

// resume puts s back into its loop's interest after pause.
func (s *Socket) resume() { s.interest(true) }

// Send queues p for `to` on s, to go out when the loop flushes after the
// batch it is handling: the Loop is its handlers' Sender.
func (l *Loop) Send(s *Socket, p []byte, to netip.AddrPort) {
	if len(p) == 0 || s.conn != nil {
		// An empty datagram goes at once (an iovec for sendmmsg cannot point
		// into an empty slice; and in a train an empty last segment would be
		// lost); so does one for a socket of Go's net package, which is not
		// the loop's. What is queued goes first, so nothing overtakes it.
		if l.nOut > 0 {
			l.flush()
		}
		_ = s.SendTo(p, to)
		return
	}
	if l.nOut == outboxSize {
		l.flush()
	}
	l.out[l.nOut] = outMsg{s: s, p: p, to: to}
	l.nOut++
}

// flush sends the outbox with one sendmmsg per socket. Datagrams for the
// same destination (a client's burst to one peer, a peer's burst back) are
// gathered, in their order, into one message with UDP generic segmentation
// offload (UDP_SEGMENT) when they have the same size: the kernel then takes
// the train through the IP stack once and splits it at the far end (or in
// the device), instead of once per datagram.
func (l *Loop) flush() {
	n := l.nOut
	for i := range n {
		s := l.out[i].s
		if s == nil {
			continue // already gathered into an earlier socket's messages
		}
		nm, ni := 0, 0
		for j := i; j < n; j++ {
			if l.out[j].s != s {
				continue
			}
			nm, ni = l.gather(s, j, n, nm, ni)
		}
		l.sendBatch(s, l.smsgs[:nm])
	}
	for i := range n {
		l.out[i] = outMsg{}
	}
	l.nOut = 0
}

// gather makes message nm of l.smsgs from the outbox entry j and the later
// entries of s for the same destination that can follow it in one UDP_SEGMENT
// train (same size, or a shorter last one), stopping at the first that
// cannot so no datagram overtakes another to the same destination. It
// returns the messages and iovecs used so far.
func (l *Loop) gather(s *Socket, j, n, nm, ni int) (int, int) {
	first := &l.out[j]
	to, size := first.to, len(first.p)
	h := &l.smsgs[nm].hdr
	h.Iov = &l.siovs[ni]
	h.Name = (*byte)(unsafe.Pointer(&l.snames[nm]))
	h.Namelen = putSockaddr(&l.snames[nm], s.v6, to)
	h.Control, h.Controllen = nil, 0
	l.siovs[ni].Base = &first.p[0]
	l.siovs[ni].SetLen(size)
	first.s = nil
	segs, total := 1, size
	ni++
	if size <= int(s.gsoMax.Load()) {
		for k := j + 1; k < n; k++ {
			m := &l.out[k]
			if m.s != s || m.to != to {
				continue
			}
			if len(m.p) > size || segs == gsoMaxSegments || total+len(m.p) > gsoMaxBytes {
				break
			}
			l.siovs[ni].Base = &m.p[0]
			l.siovs[ni].SetLen(len(m.p))
			m.s = nil
			segs++
			total += len(m.p)
			ni++
			if len(m.p) < size {
				break // only the last segment may be shorter
			}
		}
	}
	h.SetIovlen(segs)
	if segs > 1 {
		c := (*[24]byte)(unsafe.Pointer(&l.scmsgs[nm]))
		hdr := (*unix.Cmsghdr)(unsafe.Pointer(c))
		hdr.Level = unix.SOL_UDP
		hdr.Type = unix.UDP_SEGMENT
		hdr.SetLen(unix.CmsgLen(2))
		*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(size)
		h.Control = &c[0]
		h.SetControllen(unix.CmsgSpace(2))
	}
	l.sstats[nm] = segs
	return nm + 1, ni
}

// UDP_SEGMENT limits: the kernel takes at most 64 segments (UDP_MAX_SEGMENTS
// before Linux 6.9) and one IP datagram's worth of bytes; a segment that
// would not fit a 1500-byte MTU with its IPv4 or IPv6 and UDP headers would
// be refused on such a path, so those go alone.
const (
	gsoMaxSegments = 64
	gsoMaxBytes    = 65000
	gsoMaxSegment  = 1500 - 20 - 8
	gsoMaxSegment6 = 1500 - 40 - 8
)

// sendBatch sends msgs on s with sendmmsg, going on after a partial send;
// a datagram the kernel refuses (a full buffer) is dropped, as UDP may. A
// train the kernel refuses to segment goes again as separate datagrams;
// when they go, the train was the problem, and the socket stops making
// trains of that segment size (EINVAL, EMSGSIZE: a path MTU below it) or at
// all (EIO, EOPNOTSUPP: a route that cannot segment).
func (l *Loop) sendBatch(s *Socket, msgs []mmsghdr) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	segs := l.sstats[:len(msgs)]
	for len(msgs) > 0 {
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&msgs[0])),
			uintptr(len(msgs)), 0, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			l.stats.sendCalls.Add(1)
			if segs[0] > 1 && refusedTrain(errno) && l.sendSegments(s, &msgs[0].hdr) {
				if errno == unix.EINVAL || errno == unix.EMSGSIZE {
					s.lowerGSOMax(int32(msgs[0].hdr.Iov.Len) - 1)
				} else {
					s.gsoMax.Store(0)
				}
			}
			r = 1 // skip the message the kernel refused
		case r == 0:
			l.stats.sendCalls.Add(1)
			return
		default:
			l.stats.sendCalls.Add(1)
			for _, k := range segs[:r] {
				l.stats.sendDgrams.Add(uint64(k))
				if k > 1 {
					l.stats.trains.Add(1)
					l.stats.trainDgrams.Add(uint64(k))
				}
			}
		}
		msgs, segs = msgs[r:], segs[r:]
	}
}

// refusedTrain tells the errors for which the kernel refused to segment a
// train (and its datagrams may go alone) from those that would refuse each
// datagram too (a full buffer, no route, a firewall).
func refusedTrain(errno unix.Errno) bool {
	switch errno {
	case unix.EINVAL, unix.EMSGSIZE, unix.EIO, unix.EOPNOTSUPP:
		return true
	}
	return false
}

// gsoOnce asks gsoSupported once per process.
var gsoOnce = sync.OnceValue(gsoSupported)

// gsoSupported reports whether the kernel knows UDP_SEGMENT (Linux 4.18 and
// later): an older one would ignore the option and send a train as one
// large datagram.
func gsoSupported() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	_, err = unix.GetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT)
	return err == nil
}

// sendSegments sends a refused train's datagrams one by one. If the first
// one fails too, the destination is the problem (port 0, say), not the
// train: it gives up on the rest and reports false.
func (l *Loop) sendSegments(s *Socket, h *unix.Msghdr) bool {
	one := *h
	one.Control, one.Controllen = nil, 0
	one.SetIovlen(1)
	iovs := unsafe.Slice(h.Iov, h.Iovlen)
	for i := range iovs {
		one.Iov = &iovs[i]
		_, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&one)), 0)
		l.stats.sendCalls.Add(1)
		if errno == 0 {
			l.stats.sendDgrams.Add(1)
		} else if i == 0 {
			return false
		}
	}
	return true
}

// putSockaddr writes `to` as a socket address for a socket of the given
// family and returns its length, or 0 for an IPv6 address on an IPv4
// socket (the kernel then refuses the datagram).
func putSockaddr(rsa *unix.RawSockaddrInet6, v6 bool, to netip.AddrPort) uint32 {
	if v6 {
		rsa.Family = unix.AF_INET6
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&rsa.Port))[:], to.Port())
		rsa.Flowinfo = 0
		rsa.Addr = to.Addr().As16()
		rsa.Scope_id = 0
		return unix.SizeofSockaddrInet6
	}
	a := to.Addr().Unmap()
	if !a.Is4() {
		return 0
	}
	sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
	sa.Family = unix.AF_INET
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], to.Port())
	sa.Addr = a.As4()
	sa.Zero = [8]byte{}
	return unix.SizeofSockaddrInet4
}

// queueSlow hands a datagram to Recv; the check of closed under the lock
// keeps it from sending on a closed queue.
func (l *Loop) queueSlow(s *Socket, p []byte, from netip.AddrPort) {
	sb := slowPool.Get().(*[]byte)
	m := copy(*sb, p)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		slowPool.Put(sb)
		return
	}
	select {
	case s.slow <- slowPacket{buf: sb, n: m, from: from}:
	default:
		slowPool.Put(sb)
		if s.cfg.Dropped != nil {
			s.cfg.Dropped()
		}
	}
}

// epollWait waits for ready sockets without telling the scheduler it is in a
// system call (RawSyscall): the loop keeps its P, which GOMAXPROCS accounts
// for (see ReserveProcs), and the runtime's monitor thread does not wake every
// 20 µs to consider taking the P away, which cost more CPU than relaying.
// A stop-the-world pause interrupts the wait: the runtime signals the
// thread (EINTR) and repeats the signal every 100 µs until the loop reaches
// the safe point at the next call. The short timeout ends busy mode: with
// nothing to read for that long, the loop waits with epollWaitIdle.
//
// It must not be inlined: its prologue is where the scheduler can stop the
// loop (a preemption request interrupts the wait with EINTR, and the next
// call notices it); inlined, an idle loop would never reach a safe point
// and a garbage collection would wait for the next packet.
//
//go:noinline
func epollWait(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), epollTimeoutMS, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

const epollTimeoutMS = 20

// epollWaitIdle blocks as an ordinary system call (the scheduler takes the
// P back while it waits, and nothing preempts an idle loop), for a server
// with no traffic.
func epollWaitIdle(epfd int, events []unix.EpollEvent) (int, error) {
	return unix.EpollWait(epfd, events, -1)
}

func sockaddrToAddrPort(rsa *unix.RawSockaddrInet6) netip.AddrPort {
	switch rsa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&rsa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(rsa.Addr), port)
	}
	return netip.AddrPort{}
}

// sendto sends p to `to` with no allocation: the address is built on the
// stack rather than as a unix.Sockaddr.
func sendto(fd int, v6 bool, p []byte, to netip.AddrPort) error {
	var buf unsafe.Pointer // an empty datagram is sent with a nil buffer
	if len(p) > 0 {
		buf = unsafe.Pointer(&p[0])
	}
	var sa unix.RawSockaddrInet6
	n := putSockaddr(&sa, v6, to)
	if n == 0 {
		return errors.New("IPv6 destination on an IPv4 socket")
	}
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(buf), uintptr(len(p)),
		0, uintptr(unsafe.Pointer(&sa)), uintptr(n))
	if errno != 0 {
		return errno
	}
	return nil
}

// SetFreeBind sets IP_FREEBIND, or IPV6_FREEBIND on an IPv6 socket, on fd
// before it is bound: the kernel then lets it bind an address that is not
// on any interface yet (ip(7), ipv6(7)), and delivers to it once the
// address appears.
func SetFreeBind(fd int, v6 bool) error {
	if v6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
}
