package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// notifier speaks systemd's notification protocol (sd_notify(3)): one
// datagram of newline-separated KEY=VALUE assignments to the unix socket
// named by $NOTIFY_SOCKET. That is the whole protocol, so it is written
// here rather than imported (docs/dependencies.md). Without
// $NOTIFY_SOCKET (not run by systemd, or not Type=notify) every method is a
// no-op.
type notifier struct {
	conn *net.UnixConn
	// watchdog is how often systemd wants WATCHDOG=1: half of
	// $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises; 0 when off.
	watchdog time.Duration
}

// newNotifier reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID. It
// unsets them, as sd_notify's unset_environment does, so that nothing this
// process starts talks to systemd in its name.
func newNotifier() (*notifier, error) {
	n := &notifier{}
	path := os.Getenv("NOTIFY_SOCKET")
	usec, pid := os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID")
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		os.Unsetenv(k)
	}
	if path == "" {
		return n, nil
	}
	// An abstract socket is written with a leading '@' (sd_notify(3)),
	// which is also how Go's net package names one.
	if path[0] != '/' && path[0] != '@' {
		return n, fmt.Errorf("NOTIFY_SOCKET %q: only unix socket paths are supported", path)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return n, fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	n.conn = conn
	// WATCHDOG_PID names the process the watchdog is meant for; a
	// variable inherited by another process is not ours.
	if usec != "" && (pid == "" || pid == strconv.Itoa(os.Getpid())) {
		if us, err := strconv.ParseUint(usec, 10, 63); err == nil && us > 0 {
			n.watchdog = time.Duration(us) * time.Microsecond / 2
		}
	}
	return n, nil
}

// send sends one notification; the assignments are joined by newlines.
func (n *notifier) send(assignments ...string) error {
	if n.conn == nil {
		return nil
	}
	_, err := n.conn.Write([]byte(strings.Join(assignments, "\n") + "\n"))
	return err
}

// reloading is RELOADING=1 with MONOTONIC_USEC, the CLOCK_MONOTONIC time the
// reload began, which systemd 253 and later require (Type=notify-reload,
// and ExecReload= with Type=notify) to tell this reload's READY=1 from an
// earlier one.
func reloading() []string {
	return []string{"RELOADING=1", "MONOTONIC_USEC=" + strconv.FormatUint(monotonicUsec(), 10)}
}

// close closes the socket.
func (n *notifier) close() {
	if n.conn != nil {
		n.conn.Close()
	}
}
