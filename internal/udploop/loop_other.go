//go:build !linux

package udploop

import (
	"context"
	"errors"
	"net/netip"
)

// On systems other than Linux there are no event loops: every socket takes
// the portable path (NetSocket).

// Loop is an event loop (Linux only; see loop_linux.go).
type Loop struct {
	stats counters
}

// Config is what a Loop is asked to do (Linux only).
type Config struct {
	// NoSegmentation sends every datagram alone, never in a UDP_SEGMENT train.
	NoSegmentation bool
}

// Supported reports whether this system has event loops: not this one.
func Supported() bool { return false }

var errNoLoop = errors.New("event loop only on Linux")

// New fails: no event loops here.
func New(Config) (*Loop, error) { return nil, errNoLoop }

// Open fails: no event loops here.
func (l *Loop) Open(netip.AddrPort, SocketConfig) (*Socket, error) { return nil, errNoLoop }

// Ping fails: no event loops here.
func (l *Loop) Ping(context.Context) error { return errNoLoop }

// Close does nothing.
func (l *Loop) Close() {}

// Send sends at once.
func (l *Loop) Send(s *Socket, p []byte, to netip.AddrPort) { _ = s.SendTo(p, to) }

// Start does nothing: a portable socket is read by Recv.
func (s *Socket) Start() error { return nil }

func (l *Loop) remove(*Socket) error { return errNoLoop }

func (s *Socket) resume() {}

func sendto(int, bool, []byte, netip.AddrPort) error { return errNoLoop }
