//go:build unix

package main

import (
	"log/slog"
	"syscall"
)

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and logs
// the result once. Every TCP or TLS client and every relay holds a
// descriptor; distributions still start services with a soft limit of 1024.
// Go (1.19 and later) already raises it at start on Linux, so this mostly
// makes the limit visible; it matters where that did not happen. Raising the
// hard limit needs CAP_SYS_RESOURCE, which a relay should not hold: set it in
// the service manager (systemd's LimitNOFILE=). The line also names what
// signaling leaves free (signaling.descriptor_reserve) and warns when
// signaling.max_connections cannot be reached under the limit: the reserve
// refuses connections with 503 first.
func raiseFileLimit(log *slog.Logger, allocations, sigReserve, sigMax int) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read the file descriptor limit", "err", err)
		return
	}
	was := rl.Cur
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			log.Warn("cannot raise the file descriptor limit", "soft", rl.Cur, "hard", rl.Max, "err", err)
		} else {
			rl = want
		}
	}
	args := []any{"limit", rl.Cur, "hard", rl.Max, "signaling_reserve", sigReserve}
	if was != rl.Cur {
		args = append(args, "raised_from", was)
	}
	if allocations > 0 && rl.Cur < uint64(allocations) {
		log.Warn("file descriptor limit is below limits.allocations_total: each relay holds one, so allocations will fail first; raise LimitNOFILE", append(args, "allocations_total", allocations)...)
		return
	}
	if sigMax > 0 && rl.Cur < uint64(sigMax+sigReserve) {
		log.Warn("file descriptor limit is below signaling.max_connections plus signaling.descriptor_reserve: new signaling connections will be refused (503) before max_connections; raise LimitNOFILE or run more processes",
			append(args, "max_connections", sigMax)...)
		return
	}
	log.Info("file descriptor limit", args...)
}
