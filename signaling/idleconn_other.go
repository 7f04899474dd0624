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

// lazyPongs: only Linux has SO_RCVLOWAT that holds back a wake-up.
const lazyPongs = false

func readableLazy(uintptr) bool                    { return true }
func (c *idleConn) beforePing() (took, empty bool) { return false, false }
func (c *idleConn) takeWaitingPong() bool          { return false }
func (c *idleConn) setLowat(int32) bool            { return false }

// takePong never takes a pong where lazyPongs is off.
func (c *idleConn) takePong() (took, empty bool) { return false, false }

// markForPong does nothing where lazyPongs is off.
func (c *idleConn) markForPong(bool) {}

// inlinePings is off where there is no raw socket to send on.
const inlinePings = false

// sendNow is never called where inlinePings is off.
func (c *idleConn) sendNow([]byte) (int, error) { return 0, syscall.ENOTSUP }
