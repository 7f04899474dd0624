package signaling

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// poller is a server's one waiter for its idle connections (issue 15;
// watch.go): one epoll instance, and one goroutine blocked in epoll_wait
// for all of them. A blocking system call holds a thread, not a P, so the
// waiter costs the scheduler nothing while it waits; a connection it
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
	epfd int
	evfd int // written by close: the waiter's wake-up to end
	// hand gives a reported connection (its input, or with end its
	// end) to a handler; it must not block for long (handlers.start).
	hand func(c *conn, end bool)

	// The waiter's own: skimPongs's buffer, and the recv it does inside
	// Control (made once: a closure per call would be an allocation
	// per pong).
	skim     []byte
	recvN    int
	recvOK   bool
	recvLen  int
	recvFlag int
	recvFn   func(fd uintptr)
	skimmed  atomic.Int64 // connections whose pongs the waiter took itself (tests)

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

// wakeSlot is the eventfd's event data: not a slot.
const wakeSlot = -1

// newPoller starts a waiter that gives reported connections to hand.
func newPoller(hand func(c *conn, end bool)) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		_ = unix.Close(evfd)
		_ = unix.Close(epfd)
		return nil, err
	}
	p := &poller{epfd: epfd, evfd: evfd, hand: hand, done: make(chan struct{}), skim: make([]byte, pongSkim)}
	p.recvFn = func(fd uintptr) {
		// Raw: MSG_DONTWAIT, it cannot block.
		r, _, errno := syscall.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.skim[0])), uintptr(p.recvLen),
			uintptr(p.recvFlag|unix.MSG_DONTWAIT), 0, 0)
		p.recvN, p.recvOK = int(r), errno == 0
	}
	go p.wait()
	return p, nil
}

// wait is the waiter goroutine. Each connection reported is claimed
// (armed → running) and handed off; one that is no longer armed (it is
// ending) or whose slot moved on is left alone. It ends when close writes
// the eventfd.
func (p *poller) wait() {
	defer close(p.done)
	evs := make([]unix.EpollEvent, pollEvents)
	for {
		n, err := unix.EpollWait(p.epfd, evs, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			// Cannot happen with a valid epfd and buffer; a waiter
			// that returned here would leave every connection
			// unread, so it tries again after a pause.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		now := time.Now().UnixNano()
		for i := range evs[:n] {
			if evs[i].Fd == wakeSlot {
				return
			}
			c := p.lookup(evs[i].Fd, evs[i].Pad)
			if c == nil || !c.w.state.CompareAndSwap(watchArmed, watchRunning) {
				continue
			}
			c.w.last.Store(now)
			if !c.skimPongs(p.peek, p.take) {
				p.hand(c, false)
				continue
			}
			p.skimmed.Add(1)
			if c.rearm() {
				p.hand(c, true)
			}
		}
		clear(evs[:n]) // no stale slot numbers kept around
	}
}

// peek and take are skimPongs's recv(2) into p.skim, with and without
// MSG_PEEK; ok is false on an error (EAGAIN included) or a closed socket.
func (p *poller) peek(c *conn, n int) (int, bool) { return p.recv(c, n, unix.MSG_PEEK) }
func (p *poller) take(c *conn, n int) (int, bool) { return p.recv(c, n, 0) }

func (p *poller) recv(c *conn, n, flag int) (int, bool) {
	p.recvLen, p.recvFlag, p.recvN, p.recvOK = n, flag, 0, false
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
		cerr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return cerr
}

// close ends the waiter and closes its descriptors. Every connection has
// left it (Server.Close calls it after they all ended).
func (p *poller) close() {
	one := [8]byte{1}
	for {
		_, err := unix.Write(p.evfd, one[:])
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	<-p.done
	_ = unix.Close(p.epfd)
	_ = unix.Close(p.evfd)
}

// count is how many connections hold a slot (tests).
func (p *poller) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
