//go:build unix

package main

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Signals coturn users know (docs/operations.md, "Signals"): SIGUSR1
// drains without exiting, SIGUSR2 loads the certificates again.
var (
	sigDrain     os.Signal = syscall.SIGUSR1
	sigCertsLoad os.Signal = syscall.SIGUSR2
)

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd's
// MONOTONIC_USEC is read against.
func monotonicUsec() uint64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return uint64(ts.Nano() / 1000)
}
