package signaling

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSocket is conn's socket for idleConn.wait, or nil when conn is not a
// bare TCP connection (a wrapper may hold bytes of its own, which the
// socket would not show). A wrapper that says it holds none any more
// (internal/hellosplit's, past the handshake) is seen through.
func rawSocket(conn net.Conn) syscall.RawConn {
	if w, ok := conn.(passingConn); ok && w.Passing() {
		conn = w.NetConn()
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// readable is idleConn.wait's syscall.RawConn.Read callback: it looks at
// the socket without taking anything from it (recv(2) with MSG_PEEK, one
// byte, MSG_DONTWAIT). EAGAIN means nothing is there yet, and returning
// false parks the goroutine in Go's poller until the socket is readable;
// data, end of stream or any other error ends the wait, and the deep read
// that follows finds out which.
//
// It is a raw system call (MSG_DONTWAIT: it cannot block) with no source
// address asked for: it runs on the waiting reader's stack, which must
// stay within the 2 KiB it started with (see Server.serve).
func readable(fd uintptr) bool {
	var b [1]byte
	_, _, errno := syscall.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return errno != unix.EAGAIN
}

// lonePong reports whether the n bytes at the head of a socket (peeked
// with room for one more) are a pong and nothing else.
func lonePong(b []byte, n uintptr) bool {
	return n == pongFrame && b[0] == 0x8A && b[1] == 0x80
}

// lazyPongs: on Linux a plain connection's socket can be told not to wake
// its reader for a lone pong (beforePing).
const lazyPongs = true

// beforePing runs before the server pings c's client (on the pinger, not
// the reader): it takes the last ping's pong if it waits alone in the
// socket, and has the socket not wake the reader for the coming pong
// alone: SO_RCVLOWAT a pong and one byte (socket(7); TCP wakes a reader
// only when that much is queued, tcp_data_ready). An idle client's answer
// then waits in the socket until the next ping, while anything else
// (which after a pong makes more than a pong) wakes the reader at once.
// Waking the reader for each pong and parking it again was most of what
// an idle connection cost besides the ping's write (issue 15). The reader
// sets the mark back to one byte when it waits with no pong due
// (idleConn.wait).
//
// It reports whether it took a pong, and whether the socket held nothing
// at all (no pong, no other input on its way to the reader). The pinger
// touches the socket only while the reader waits on it (the state
// idleWaiting, claimed as idleTaking); else it does nothing and reports
// neither, and the reader takes the pong as before.
func (c *idleConn) beforePing() (took, empty bool) {
	if !c.lazy || !c.state.CompareAndSwap(idleWaiting, idleTaking) {
		return false, false
	}
	defer c.state.Store(idleWaiting)
	took, empty = c.takePong()
	c.markForPong(took || empty)
	return took, empty
}

// markForPong sets the mark for the coming pong when the socket held
// nothing but (at most) the pong just taken (lone). Anything else there
// is a frame of 6 bytes or less that the mark hid from the reader (a
// close without a status code, an empty ping, sent while no pong waited
// before it): the mark goes back to one byte, which wakes the reader (or
// the waiter, at the re-arm) for it now rather than never. The caller
// holds the reader role.
func (c *idleConn) markForPong(lone bool) {
	switch {
	case lone && !c.lowatOn:
		c.lowatOn = c.setLowat(pongFrame + 1)
	case !lone && c.lowatOn:
		c.lowatOn = !c.setLowat(1)
	}
}

// takeWaitingPong is the reader's takePong, when it woke with a pong
// perhaps alone in the socket (its read deadline passed before the next
// ping took it).
func (c *idleConn) takeWaitingPong() bool {
	if !c.lowatOn {
		return false
	}
	took, _ := c.takePong()
	return took
}

// setLowat sets the socket's SO_RCVLOWAT, reporting whether it did. It
// runs on the waiting reader's shallow stack too: a raw system call.
func (c *idleConn) setLowat(n int32) bool {
	var errno syscall.Errno
	err := c.raw.Control(func(fd uintptr) {
		_, _, errno = syscall.RawSyscall6(unix.SYS_SETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT,
			uintptr(unsafe.Pointer(&n)), 4, 0)
	})
	return err == nil && errno == 0
}

// readableLazy is readable for a socket with lazy pongs: a lone pong is
// not input for the reader (it waits on; the pinger takes the pong),
// anything else is.
func readableLazy(fd uintptr) bool {
	var b [pongFrame + 1]byte
	n, _, errno := syscall.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return errno != unix.EAGAIN
	}
	if !lonePong(b[:], n) {
		return true
	}
	// A lone pong, as far as a peek sees: the end of the stream behind
	// it (a FIN, or a reset) shows only once the pong is taken, and Go's
	// poller reports the end once (edge-triggered), so it is input for
	// the reader now, or it would wait for the next ping.
	return !established(fd)
}

// tcpEstablished is TCP_ESTABLISHED, the first byte of struct tcp_info
// (linux/tcp.h, tcpi_state; include/net/tcp_states.h).
const tcpEstablished = 1

// established reports whether the TCP connection on fd is still open both
// ways: getsockopt TCP_INFO copies only as much as asked, here the state
// byte. A raw system call, for the waiting reader's shallow stack.
func established(fd uintptr) bool {
	var st [1]byte
	l := uint32(len(st))
	_, _, errno := syscall.RawSyscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&st[0])), uintptr(unsafe.Pointer(&l)), 0)
	return errno == 0 && st[0] == tcpEstablished
}

// takePong takes a pong waiting alone in the socket and reports whether
// it did, and whether the socket was empty. A pong followed by anything
// has woken the reader, which takes both. The caller holds the reader
// role. Raw system calls (MSG_DONTWAIT: they cannot block), as the
// reader's shallow stack may run it.
func (c *idleConn) takePong() (took, empty bool) {
	_ = c.raw.Control(func(fd uintptr) {
		var b [pongFrame + 1]byte
		n, _, errno := syscall.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EAGAIN {
			empty = true
			return
		}
		if errno != 0 || !lonePong(b[:], n) {
			return
		}
		n, _, errno = syscall.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), pongFrame,
			unix.MSG_DONTWAIT, 0, 0)
		took = errno == 0 && n == pongFrame
	})
	return took, empty
}

// inlinePings: a plain socket's ping can be sent without blocking
// (inlinePinger).
const inlinePings = true

// sendNow writes b to the socket with one non-blocking send(2) and
// reports how much went out: less than len(b) (perhaps nothing) when the
// socket buffer is full. It never waits: not for the socket (MSG_DONTWAIT)
// nor for its write lock (RawConn.Control; the caller keeps other writers
// away, idleConn.ctl).
func (c *idleConn) sendNow(b []byte) (int, error) {
	var n uintptr
	var errno syscall.Errno
	err := c.raw.Control(func(fd uintptr) {
		n, _, errno = syscall.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
	})
	switch {
	case err != nil:
		return 0, err
	case errno == unix.EAGAIN || errno == unix.EINTR:
		return 0, nil // the blocking write that follows finds out
	case errno != 0:
		return 0, errno
	}
	return int(n), nil
}
