package signaling

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// poller is a server's one waiter for its idle connections (issue 15;
// watch.go): one epoll instance for all of them, and one goroutine that
// waits on it, parked in Go's own poller as a socket's reader is (the
// epoll instance is readable while it has events). A connection it
// reports is handed to the handler pool, and it waits again.
//
// A connection is registered level-triggered with EPOLLONESHOT: once
// reported it is disarmed until its handler re-arms it (EPOLL_CTL_MOD),
// so one connection is never handled on two goroutines, and input that
// arrived meanwhile is reported at once when it is re-armed (level, not
// edge). Its event data is a slot number and the slot's generation, never
// a descriptor or a pointer: an event read from the kernel just before
// its connection ended (and its descriptor number, perhaps, went to
// another) names a generation that is gone, and is ignored.
//
// Every epoll_ctl runs inside syscall.RawConn.Control, which holds the
// descriptor's reference: it cannot be closed, and its number reused,
// while the call runs. Control failing means the connection is closed.
type poller struct {
	file *os.File        // epfd's owner: Go's poller waits on it
	rc   syscall.RawConn // file's
	// drainFn is drain as RawConn.Read's callback (made once).
	drainFn func(fd uintptr) bool
	// hand gives a reported connection (its input, or with end its
	// end) to a handler; it must not block for long (handlers.start).
	hand func(c *conn, end bool)
	// drop takes a claimed connection whose socket is at its end with
	// nothing before it, to be ended (Server.dropped, ends.go); it must
	// not block.
	drop func(c *conn)

	// The waiter's own: skimPongs's buffer, and the recv it does inside
	// Control (made once: a closure per call would be an allocation
	// per pong).
	skim     []byte
	recvN    int
	recvOK   bool
	recvLen  int
	recvFlag int
	// recvGone is set by a peek that found the socket at its end: a
	// FIN with nothing before it (recv returns 0) or a reset.
	recvGone bool
	recvFn   func(fd uintptr)
	skimmed  atomic.Int64 // connections whose pongs the waiter took itself (tests)
	dropped  atomic.Int64 // connections the waiter found dropped (tests)
	woken    atomic.Int64 // connections the waiter claimed for input (tests)
	taken    atomic.Int64 // pongs the pinger took (lazyPing; tests)

	mu    sync.Mutex
	slots []pollSlot
	free  []int32 // slots not in use
	n     int     // slots in use

	done chan struct{} // closed when the waiter goroutine has ended
}

// pollSlot is one registered connection; gen counts the slot's uses.
type pollSlot struct {
	gen int32
	c   *conn
}

// pollEvents is how many events one epoll_wait may return.
const pollEvents = 256

// newPoller starts a waiter that gives reported connections to hand, or
// to drop when their socket is at its end.
func newPoller(hand func(c *conn, end bool), drop func(c *conn)) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// The epoll instance is itself readable while it has events, so it
	// waits in Go's own poller like a socket (see wait): non-blocking,
	// it becomes a pollable os.File, which then owns (and closes) it.
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	file := os.NewFile(uintptr(epfd), "signaling-epoll")
	rc, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, err
	}
	p := &poller{file: file, rc: rc, hand: hand, drop: drop, done: make(chan struct{}), skim: make([]byte, pongSkim)}
	p.recvFn = func(fd uintptr) {
		// Raw: MSG_DONTWAIT, it cannot block.
		r, _, errno := syscall.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.skim[0])), uintptr(p.recvLen),
			uintptr(p.recvFlag|unix.MSG_DONTWAIT), 0, 0)
		p.recvN, p.recvOK = int(r), errno == 0
		p.recvGone = p.recvFlag == unix.MSG_PEEK && (errno == 0 && r == 0 || errno == syscall.ECONNRESET)
	}
	evs := make([]unix.EpollEvent, pollEvents)
	p.drainFn = func(fd uintptr) bool { return p.drain(int(fd), evs) }
	go p.wait()
	return p, nil
}

// wait is the waiter goroutine. It parks in Go's poller on the epoll
// instance (RawConn.Read), not in a blocking epoll_wait of its own: the
// thread that polls the runtime's descriptors then finds the waiter ready
// along with them, so a burst of pongs wakes no thread of the waiter's
// own (the runtime's poller sees the sockets' input anyway: they stay
// registered there, for writes). It ends when close closes the file.
func (p *poller) wait() {
	defer close(p.done)
	for {
		if err := p.rc.Read(p.drainFn); err != nil {
			return // closed
		}
	}
}

// drain takes what the epoll instance has (epoll_wait without waiting)
// and reports false when it is empty, so that RawConn.Read parks until
// it is readable again. Each connection reported is claimed (armed →
// running) and handed off, or has its pongs taken here (skimPongs); one
// that is no longer armed (it is ending) or whose slot moved on is left
// alone.
func (p *poller) drain(epfd int, evs []unix.EpollEvent) bool {
	for {
		n, err := unix.EpollWait(epfd, evs, 0)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return true // cannot happen; Read is called again, and fails if closed
		}
		now := time.Now().UnixNano()
		for i := range evs[:n] {
			c := p.lookup(evs[i].Fd, evs[i].Pad)
			if c == nil || !c.w.state.CompareAndSwap(watchArmed, watchRunning) {
				continue
			}
			p.woken.Add(1)
			if !c.w.pongsOnly {
				c.w.last.Store(now)
			}
			p.recvGone = false
			if !c.skimPongs(p.peek, p.take) {
				if p.recvGone && p.drop != nil {
					// Nothing to read but the end: no handler's read
					// is needed to learn it (ends.go).
					p.dropped.Add(1)
					p.drop(c)
				} else {
					p.hand(c, false)
				}
				continue
			}
			p.skimmed.Add(1)
			if c.rearm() {
				p.hand(c, true)
			}
		}
		clear(evs[:n]) // no stale slot numbers kept around
		if n < len(evs) {
			return false
		}
	}
}

// peek and take are skimPongs's recv(2) into p.skim, with and without
// MSG_PEEK; ok is false on an error (EAGAIN included) or a closed socket.
func (p *poller) peek(c *conn, n int) (int, bool) { return p.recv(c, n, unix.MSG_PEEK) }
func (p *poller) take(c *conn, n int) (int, bool) { return p.recv(c, n, 0) }

func (p *poller) recv(c *conn, n, flag int) (int, bool) {
	p.recvLen, p.recvFlag, p.recvN, p.recvOK, p.recvGone = n, flag, 0, false, false
	if err := c.w.raw.Control(p.recvFn); err != nil {
		return 0, false
	}
	return p.recvN, p.recvOK
}

// lookup returns the connection in slot at generation gen, or nil when
// the slot has moved on.
func (p *poller) lookup(slot, gen int32) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slot < 0 || int(slot) >= len(p.slots) || p.slots[slot].gen != gen {
		return nil
	}
	return p.slots[slot].c
}

// add gives c a slot (c.w.slot, c.w.gen); it is not registered with
// epoll until arm.
func (p *poller) add(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var i int32
	if n := len(p.free); n > 0 {
		i = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		i = int32(len(p.slots))
		p.slots = append(p.slots, pollSlot{})
	}
	p.slots[i].c = c
	c.w.slot, c.w.gen = i, p.slots[i].gen
	p.n++
}

// release frees c's slot: an event still on its way names the old
// generation and is ignored.
func (p *poller) release(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &p.slots[c.w.slot]
	if s.c != c {
		return
	}
	s.c = nil
	s.gen++
	p.free = append(p.free, c.w.slot)
	p.n--
}

// Registrations (poller.ctl's op).
const (
	pollAdd = unix.EPOLL_CTL_ADD
	pollMod = unix.EPOLL_CTL_MOD
	pollDel = unix.EPOLL_CTL_DEL
)

// ctl registers (pollAdd), re-arms (pollMod) or removes (pollDel) c's
// socket, inside Control so that the descriptor stays c's meanwhile. An
// error means it could not: for add and mod, the connection is ending.
func (p *poller) ctl(c *conn, op int) error {
	// EPOLLRDHUP reports a peer's shutdown(SHUT_WR) or close as input, as
	// recv would see it: the handler's read finds the end.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: c.w.slot, Pad: c.w.gen}
	var cerr error
	err := c.w.raw.Control(func(fd uintptr) {
		// The epoll instance's reference is held too: a late re-arm
		// (a handler's, racing the connection's end and the server's
		// Close) cannot reach a closed, perhaps reused, descriptor.
		if err := p.rc.Control(func(epfd uintptr) {
			cerr = unix.EpollCtl(int(epfd), op, int(fd), &ev)
		}); err != nil {
			cerr = err
		}
	})
	if err != nil {
		return err
	}
	return cerr
}

// close ends the waiter and closes the epoll instance. Every connection
// has left it (Server.Close calls it after they all ended).
func (p *poller) close() {
	_ = p.file.Close() // wakes the waiter's Read, which fails
	<-p.done
}

// count is how many connections hold a slot (tests).
func (p *poller) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
