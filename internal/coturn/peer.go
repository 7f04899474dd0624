// Package coturn holds what the tools that run Debian's coturn programs
// against icegate share (tools/interop, tools/relaybench): starting
// turnutils_peer, the UDP echo uclient sends to through the relay, and
// waiting until it echoes; probing a UDP service (on 127.0.0.1 unless an
// address is given) until it answers; and reading the counters turnutils_uclient prints.
//
// How a program is started, tracked and stopped (process group, Pdeathsig,
// log file, cleanup) stays with each tool: the functions here take it as
// callbacks.
package coturn

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Process is a program a tool started, as the tool tracks it.
type Process interface {
	// Exited returns nil while the program runs, and an error saying how it
	// ended once it has.
	Exited() error
	// Stop ends the program and returns once it has been waited for.
	Stop()
	// Output returns the end of the program's output, for error messages.
	Output() string
}

// PeerArgs is turnutils_peer's command line for a UDP echo on
// 127.0.0.1:port. turnutils_peer listens on port+1 as well.
func PeerArgs(port int) []string { return PeerArgsAt(Loopback, port) }

// PeerArgsAt is PeerArgs for a UDP echo on host:port.
func PeerArgsAt(host netip.Addr, port int) []string {
	return []string{"-L", host.String(), "-p", strconv.Itoa(port)}
}

// Loopback is 127.0.0.1, where the functions without an address argument
// run and probe.
var Loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// PeerWait is how long StartPeer waits for a started turnutils_peer to echo.
const PeerWait = 5 * time.Second

// StartPeer starts turnutils_peer and returns it with its port once it
// echoes. Each of tries attempts takes a port from pick and has start run
// turnutils_peer with PeerArgs(port). turnutils_peer binds with address
// reuse, so a port taken in between does not make it fail: readiness is an
// echo within PeerWait, not a successful start. A peer that does not echo
// is stopped and the next attempt takes another port. An error from pick or
// start ends the attempts at once; so does ctx.
func StartPeer[P Process](ctx context.Context, tries int, pick func() (int, error), start func(args ...string) (P, error)) (P, int, error) {
	return StartPeerAt(ctx, Loopback, tries, pick, start)
}

// StartPeerAt is StartPeer for an echo on host (an address of this machine,
// or of a network namespace this one routes to).
func StartPeerAt[P Process](ctx context.Context, host netip.Addr, tries int, pick func() (int, error), start func(args ...string) (P, error)) (P, int, error) {
	var zero P
	var errs []error
	for range tries {
		port, err := pick()
		if err != nil {
			return zero, 0, err
		}
		p, err := start(PeerArgsAt(host, port)...)
		if err != nil {
			return zero, 0, err
		}
		err = WaitEchoAt(ctx, host, port, p.Exited, PeerWait)
		if err == nil {
			return p, port, nil
		}
		p.Stop()
		if ctx.Err() != nil {
			return zero, 0, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("turnutils_peer on %s: %w\noutput:\n%s", netip.AddrPortFrom(host, uint16(port)), err, p.Output()))
	}
	return zero, 0, errors.Join(errs...)
}

// WaitEcho sends a random 16-byte probe to the UDP echo on 127.0.0.1:port
// every 100 ms until the probe comes back, exited returns an error (the
// program is gone), ctx ends, or wait passes.
func WaitEcho(ctx context.Context, port int, exited func() error, wait time.Duration) error {
	return WaitEchoAt(ctx, Loopback, port, exited, wait)
}

// WaitEchoAt is WaitEcho for the echo on host:port.
func WaitEchoAt(ctx context.Context, host netip.Addr, port int, exited func() error, wait time.Duration) error {
	return ProbeUDPAt(ctx, host, port, exited, wait, func() ([]byte, func([]byte) bool) {
		probe := make([]byte, 16)
		_, _ = rand.Read(probe)
		return probe, func(resp []byte) bool { return bytes.Equal(resp, probe) }
	})
}

// ProbeUDP sends a message to 127.0.0.1:port every 100 ms until an answer
// passes the check that came with it, exited returns an error, ctx ends,
// or wait passes. next returns each message and its check. The error says
// which of these ended the wait.
func ProbeUDP(ctx context.Context, port int, exited func() error, wait time.Duration, next func() ([]byte, func([]byte) bool)) error {
	return ProbeUDPAt(ctx, Loopback, port, exited, wait, next)
}

// ProbeUDPAt is ProbeUDP for the service on host:port.
func ProbeUDPAt(ctx context.Context, host netip.Addr, port int, exited func() error, wait time.Duration, next func() ([]byte, func([]byte) bool)) error {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, uint16(port))))
	if err != nil {
		return err
	}
	defer conn.Close()
	buf := make([]byte, 1500)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := exited(); err != nil {
			return err
		}
		msg, ok := next()
		if _, err := conn.Write(msg); err != nil {
			// ECONNREFUSED from an earlier probe: not listening yet.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break
			}
			if ok(buf[:n]) {
				return nil
			}
		}
	}
	return errors.New("no answer within " + wait.String())
}
