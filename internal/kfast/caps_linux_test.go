//go:build linux

package kfast

import (
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenWithoutCapabilities opens the program on a thread that dropped
// CAP_BPF, CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_PERFMON (capabilities are
// per thread): Open fails with ErrPermission, which is what
// relay.kernel_offload = "auto" reports, and nothing panics.
func TestOpenWithoutCapabilities(t *testing.T) {
	needRoot(t)
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread without capabilities exits with the
		// goroutine instead of going back to the scheduler.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		for _, c := range []uint{unix.CAP_BPF, unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_PERFMON} {
			data[c/32].Effective &^= 1 << (c % 32)
			data[c/32].Permitted &^= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		p, err := Open(Config{})
		if p != nil {
			_ = p.Close()
			err = errors.New("Open succeeded without capabilities")
		}
		errc <- err
	}()
	err := <-errc
	if !errors.Is(err, ErrPermission) {
		t.Fatalf("Open without capabilities: %v, want ErrPermission", err)
	}
	t.Logf("as reported: %v", err)
}
