//go:build !linux

package turn

import (
	"errors"
	"net/netip"
)

// On systems other than Linux, every socket takes the portable path.

type ioLoop struct {
	stats loopStats
	noGSO bool
}

func ioLoopSupported() bool { return false }

var errNoLoop = errors.New("event loop only on Linux")

func newIOLoop(func()) (*ioLoop, error) { return nil, errNoLoop }

func (l *ioLoop) openSocket(netip.AddrPort, bool, int, func(sender, []byte, int, netip.AddrPort) bool) (*udpSocket, error) {
	return nil, errNoLoop
}

func (l *ioLoop) remove(*udpSocket) error                 { return errNoLoop }
func (l *ioLoop) start(*udpSocket) error                  { return errNoLoop }
func (l *ioLoop) close()                                  {}
func (l *ioLoop) flushOutbox()                            {}
func (l *ioLoop) send(*udpSocket, []byte, netip.AddrPort) {}

func (s *udpSocket) resume() {}

func sendto(int, bool, []byte, netip.AddrPort) error { return errNoLoop }
