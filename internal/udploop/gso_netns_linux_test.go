//go:build linux

package udploop

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSegmentationOverDevices sends segment trains over a real device (a
// veth pair between two network namespaces of the test's own, on
// 198.51.100.0/24) rather than loopback: with a 1500-byte MTU the train
// arrives as datagrams; with a 1280-byte MTU the kernel refuses 1300-byte
// segments (EINVAL) and the loop sends them one by one; with the device's
// checksum offload off, older kernels cannot segment at all (EIO: the loop
// stops trying on that socket) and newer ones segment in software. Every
// datagram arrives whole and in order.
// It needs root (for the namespaces), ip and ethtool; `make test` runs it
// as root in CI.
func TestSegmentationOverDevices(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, tool := range []string{"ip", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (tools/install-test-deps.sh installs it)", tool)
		}
	}
	for _, tc := range []struct {
		name   string
		mtu    int
		txOff  bool
		size   int
		trains uint64 // in the first flush
		calls  uint64 // system calls of the first flush
		limit  int32  // the socket's segment limit after it
	}{
		{name: "mtu-1500", mtu: 1500, size: 1200, trains: 1, calls: 1, limit: gsoMaxSegment},
		// A failed sendmmsg, then 20 sendmsg; no trains of 1300 again.
		{name: "mtu-1280-refused", mtu: 1280, size: 1300, trains: 0, calls: 21, limit: 1299},
		{name: "no-checksum-offload", mtu: 1500, txOff: true, size: 1200, trains: 1, calls: 1, limit: gsoMaxSegment},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nsA, nsB := vethPair(t, tc.mtu, tc.txOff)
			l, err := New(Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Close)
			var s *Socket
			inNetns(t, nsA, func() error {
				s, err = l.Open(netip.MustParseAddrPort("198.51.100.1:0"), SocketConfig{Buffer: 1 << 20})
				return err
			})
			t.Cleanup(func() { _ = s.Close() })
			var rc *net.UDPConn
			inNetns(t, nsB, func() error {
				rc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 51, 100, 2)})
				return err
			})
			t.Cleanup(func() { _ = rc.Close() })
			_ = rc.SetReadBuffer(1 << 20)
			to := rc.LocalAddr().(*net.UDPAddr).AddrPort()

			var want [][]byte
			for i := range 20 {
				p := datagram(i, tc.size)
				want = append(want, p)
				l.Send(s, p, to)
			}
			l.flush()
			expectDatagrams(t, rc, want)
			if tc.txOff && s.gsoMax.Load() == 0 {
				// This kernel refused (EIO): one by one, and no trains again.
				t.Log("the kernel does not segment without checksum offload (EIO)")
				tc.trains, tc.calls, tc.limit = 0, 21, 0
			}
			if got := l.stats.trains.Load(); got != tc.trains {
				t.Errorf("%d segment trains sent, want %d", got, tc.trains)
			}
			if got := l.stats.sendCalls.Load(); got != tc.calls {
				t.Errorf("%d send calls, want %d", got, tc.calls)
			}
			if got := s.gsoMax.Load(); got != tc.limit {
				t.Errorf("the socket's segment limit is %d, want %d", got, tc.limit)
			}
			// The next flush goes the way the socket now knows works: one
			// sendmmsg, as a train only if the size is still allowed.
			want = want[:0]
			for i := range 5 {
				p := datagram(100+i, tc.size)
				want = append(want, p)
				l.Send(s, p, to)
			}
			l.flush()
			expectDatagrams(t, rc, want)
			wantTrains := tc.trains
			if int32(tc.size) <= tc.limit {
				wantTrains++
			}
			if got := l.stats.trains.Load(); got != wantTrains {
				t.Errorf("second flush: %d segment trains in all, want %d", got, wantTrains)
			}
			if got := l.stats.sendCalls.Load(); got != tc.calls+1 {
				t.Errorf("second flush: %d send calls in all, want %d", got, tc.calls+1)
			}
		})
	}
}

// vethPair creates two namespaces joined by a veth pair, 198.51.100.1 in
// the first and .2 in the second, and removes them when the test ends.
func vethPair(t *testing.T, mtu int, txOff bool) (string, string) {
	t.Helper()
	base := fmt.Sprintf("icegso%d", os.Getpid())
	nsA, nsB := base+"a", base+"b"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", nsA).Run()
		_ = exec.Command("ip", "netns", "del", nsB).Run()
	})
	run("ip", "netns", "add", nsA)
	run("ip", "netns", "add", nsB)
	run("ip", "link", "add", "va", "netns", nsA, "mtu", fmt.Sprint(mtu), "type", "veth", "peer", "name", "vb", "netns", nsB, "mtu", fmt.Sprint(mtu))
	run("ip", "-n", nsA, "addr", "add", "198.51.100.1/24", "dev", "va")
	run("ip", "-n", nsB, "addr", "add", "198.51.100.2/24", "dev", "vb")
	for _, ns := range []string{nsA, nsB} {
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	run("ip", "-n", nsA, "link", "set", "va", "up")
	run("ip", "-n", nsB, "link", "set", "vb", "up")
	if txOff {
		run("ip", "netns", "exec", nsA, "ethtool", "-K", "va", "tx", "off")
	}
	return nsA, nsB
}

// inNetns runs f on a thread moved into the named namespace, so the
// sockets f creates belong to it (a socket keeps its namespace wherever it
// is used from), and moves the thread back.
func inNetns(t *testing.T, name string, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and dies with the goroutine.
			errc <- fmt.Errorf("back to the original namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
