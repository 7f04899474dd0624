//go:build !linux

package signaling

import (
	"errors"
	"sync/atomic"
)

// poller is the waiter for idle connections where there is one
// (poller_linux.go). Elsewhere newPoller fails and every connection's
// reader waits on its own goroutine, as ServeTransport's do.
type poller struct {
	skim []byte
	// The counters poller_linux.go keeps (lazyPing and the tests name
	// them); always 0 here.
	skimmed, woken, taken, dropped atomic.Int64
}

// Registrations (poller.ctl's op); unused without a poller.
const (
	pollAdd = iota
	pollMod
	pollDel
)

func newPoller(func(*conn, bool), func(*conn)) (*poller, error) {
	return nil, errors.New("signaling: no shared waiter on this platform")
}

func (*poller) add(*conn)     {}
func (*poller) release(*conn) {}
func (*poller) ctl(*conn, int) error {
	return errors.New("signaling: no shared waiter on this platform")
}
func (*poller) close()     {}
func (*poller) count() int { return 0 }
