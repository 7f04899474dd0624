//go:build !linux

package turn

import "syscall"

// freeBindSupported: this system has no IP_FREEBIND.
const freeBindSupported = false

// freeBindControl does nothing here: IP_FREEBIND is Linux's; elsewhere an
// address that is not up yet fails to bind (and a relay says so with a
// 500, never a 508).
func freeBindControl(string, string, syscall.RawConn) error { return nil }
