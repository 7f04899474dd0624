package kfast

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNotSupported means this kernel or platform cannot run the program:
	// no BPF, no TCX (Linux < 6.6), or not Linux.
	ErrNotSupported = errors.New("kfast: kernel offload not supported")
	// ErrPermission means the process lacks CAP_BPF or CAP_NET_ADMIN.
	ErrPermission = errors.New("kfast: kernel offload needs CAP_BPF and CAP_NET_ADMIN")
	// ErrFlow means a flow the kernel does not take (families differ, a
	// channel number outside 0x4000-0x7FFF, an address that is not a
	// unicast address, an expiry in the past); it stays in user space.
	ErrFlow = errors.New("kfast: flow not offloadable")
	// ErrNoRoute means the kernel has no unicast route out of an
	// interface to the client or the peer; the flow stays in user space.
	ErrNoRoute = errors.New("kfast: no route")
	// ErrClosed means the Program was closed.
	ErrClosed = errors.New("kfast: closed")
)

// LoadError is a program the verifier refused, with its log.
type LoadError struct {
	Err error
	// Log is the verifier's output, line by line.
	Log []string
}

func (e *LoadError) Error() string {
	tail := e.Log
	if len(tail) > 5 {
		tail = tail[len(tail)-5:]
	}
	return fmt.Sprintf("kfast: the verifier refused the program: %v (log ends: %s)", e.Err, strings.Join(tail, " | "))
}

func (e *LoadError) Unwrap() error { return e.Err }
