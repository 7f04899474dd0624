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
