//go:build !linux

package signaling

import (
	"net"
	"syscall"
)

// rawSocket returns nil where idleConn has no way to wait for a socket
// without reading it: the reader blocks in ReadFrame, as it always did.
func rawSocket(net.Conn) syscall.RawConn { return nil }

// readable is never called without a raw socket.
func readable(uintptr) bool { return true }
