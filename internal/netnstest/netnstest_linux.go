//go:build linux

package netnstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Need skips t unless it runs as root (namespaces, and CAP_BPF and
// CAP_NET_ADMIN for whatever the test loads), giving why as the reason,
// and fails it when one of the commands (besides ip, always needed) is
// missing: a test host that runs as root is meant to run these tests.
func Need(t testing.TB, why string, commands ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip(why + ": needs root to build network namespaces")
	}
	for _, c := range append([]string{"ip"}, commands...) {
		if _, err := exec.LookPath(c); err != nil {
			t.Fatalf("%s is missing (tools/install-test-deps.sh installs it)", c)
		}
	}
}

// Topology is a set of network namespaces of one test.
type Topology struct {
	t     testing.TB
	base  string
	names map[string]string
}

var seq atomic.Int32

// New creates one namespace for each of names, with its loopback up,
// named prefix, the process id, a sequence number and the name, and
// removes them when the test ends (registered before the first is made,
// so a failure half-way leaves nothing behind).
func New(t testing.TB, prefix string, names ...string) *Topology {
	t.Helper()
	tp := &Topology{t: t, base: fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), seq.Add(1)), names: map[string]string{}}
	t.Cleanup(func() {
		for _, n := range names {
			_ = exec.Command("ip", "netns", "del", tp.base+n).Run()
		}
	})
	for _, n := range names {
		tp.names[n] = tp.base + n
		tp.Run("ip", "netns", "add", tp.base+n)
		tp.Run("ip", "-n", tp.base+n, "link", "set", "lo", "up")
	}
	return tp
}

// NS is the system name of the namespace called name in New (for ip
// netns exec, Do, In).
func (tp *Topology) NS(name string) string {
	ns, ok := tp.names[name]
	if !ok {
		tp.t.Fatalf("netnstest: no namespace %q in this topology", name)
	}
	return ns
}

// Run runs a command and fails the test, with its output, when it fails.
func (tp *Topology) Run(args ...string) {
	tp.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		tp.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Veth joins namespace a's device devA to namespace b's devB with a veth
// pair made directly inside them, both up; mtu 0 keeps the default.
func (tp *Topology) Veth(a, devA, b, devB string, mtu int) {
	tp.t.Helper()
	args := []string{"ip", "link", "add", devA, "netns", tp.NS(a)}
	if mtu != 0 {
		args = append(args, "mtu", fmt.Sprint(mtu))
	}
	args = append(args, "type", "veth", "peer", "name", devB, "netns", tp.NS(b))
	if mtu != 0 {
		args = append(args, "mtu", fmt.Sprint(mtu))
	}
	tp.Run(args...)
	tp.Run("ip", "-n", tp.NS(a), "link", "set", devA, "up")
	tp.Run("ip", "-n", tp.NS(b), "link", "set", devB, "up")
}

// Addr adds addresses (with their prefix length) to a device of
// namespace ns; an IPv6 one skips duplicate address detection, so it is
// usable at once.
func (tp *Topology) Addr(ns, dev string, prefixes ...string) {
	tp.t.Helper()
	for _, p := range prefixes {
		args := []string{"ip", "-n", tp.NS(ns), "addr", "add", p, "dev", dev}
		if strings.Contains(p, ":") {
			args = append(args, "nodad")
		}
		tp.Run(args...)
	}
}

// Route adds a route inside namespace ns: ip route add dst via gw.
func (tp *Topology) Route(ns, dst, gw string) {
	tp.t.Helper()
	tp.Run("ip", "-n", tp.NS(ns), "route", "add", dst, "via", gw)
}

// TxChecksumOff turns transmit checksum offload off on devices of
// namespace ns (ethtool -K DEV tx off): what they send then leaves with
// a complete checksum computed in software, which a receiver verifies.
// Over a veth a CHECKSUM_PARTIAL datagram would be trusted unverified.
func (tp *Topology) TxChecksumOff(ns string, devs ...string) {
	tp.t.Helper()
	if _, err := exec.LookPath("ethtool"); err != nil {
		tp.t.Fatal("ethtool is missing (tools/install-test-deps.sh installs it)")
	}
	for _, d := range devs {
		tp.Run("ip", "netns", "exec", tp.NS(ns), "ethtool", "-K", d, "tx", "off")
	}
}

// Do runs f on a goroutine whose OS thread is locked and moved into the
// namespace named ns (a system name, such as NS returns), and moves the
// thread back: a socket f opens stays in ns wherever it is used from
// later. A thread that cannot go back stays locked and ends with its
// goroutine, so no other goroutine runs in the wrong namespace.
func Do(ns string, f func() error) error {
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
		h, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer h.Close()
		if err := unix.Setns(int(h.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("into namespace %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("back to the original namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// In is Do that fails the test on an error.
func In(t testing.TB, ns string, f func() error) {
	t.Helper()
	if err := Do(ns, f); err != nil {
		t.Fatal(err)
	}
}

// ListenUDP opens a UDP socket bound to addr in namespace ns, closed when
// the test ends.
func ListenUDP(t testing.TB, ns string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	In(t, ns, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Rerun runs the calling test again, alone, as a whole process of the test
// binary inside namespace ns (ip netns exec), with env added to its
// environment, and returns its combined output: for a test whose code
// opens sockets on whatever thread it likes (a server), so every socket of
// that process is the namespace's. The test tells the two runs apart by
// env.
func Rerun(t *testing.T, ns string, env ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0],
		"-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), env...)
	return cmd.CombinedOutput()
}
