//go:build linux

package kfast

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// The tests build three network namespaces of their own, joined by two
// veth pairs, on 10.200.0.0/16 and fd00::/8 (ULA) only, and remove them
// when the test ends; nothing is added to the root namespace:
//
//	client ns  c0 10.200.1.2/24 fd00:1::2/64
//	   | veth
//	server ns  s0 10.200.1.1/24 fd00:1::1/64   (listener)
//	           s1 10.200.2.1/24 fd00:2::1/64   (relayed addresses)
//	   | veth
//	peer ns    p0 10.200.2.2/24 fd00:2::2/64
type topo struct {
	client, server, peer string // namespace names
}

var topoSeq atomic.Int32

// Addresses of the topology.
var (
	clientIP4   = netip.MustParseAddr("10.200.1.2")
	listenIP4   = netip.MustParseAddr("10.200.1.1")
	relayIP4    = netip.MustParseAddr("10.200.2.1")
	peerIP4     = netip.MustParseAddr("10.200.2.2")
	clientIP6   = netip.MustParseAddr("fd00:1::2")
	listenIP6   = netip.MustParseAddr("fd00:1::1")
	relayIP6    = netip.MustParseAddr("fd00:2::1")
	peerIP6     = netip.MustParseAddr("fd00:2::2")
	serverIface = []string{"s0", "s1"}
)

// needRoot skips a test that cannot run here, saying why.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kfast: needs root (CAP_BPF, CAP_NET_ADMIN) to load the program and build network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip is missing (tools/install-test-deps.sh installs iproute2)")
	}
}

// newTopo builds the three namespaces. senderTxOff turns checksum offload
// off on the client's and the peer's ends, so that their datagrams reach
// the server with a full checksum (CHECKSUM_NONE) instead of only the
// pseudo-header sum (CHECKSUM_PARTIAL). The server's ends always have it
// off, so that what the server sends leaves with a complete checksum
// (the kernel computes a CHECKSUM_PARTIAL datagram's in software) and the
// receiver verifies it: over a veth a CHECKSUM_PARTIAL skb would be
// trusted unverified.
func newTopo(t testing.TB, senderTxOff bool) *topo {
	t.Helper()
	base := fmt.Sprintf("icekf%d-%d", os.Getpid(), topoSeq.Add(1))
	tp := &topo{client: base + "c", server: base + "s", peer: base + "p"}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		for _, ns := range []string{tp.client, tp.server, tp.peer} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, ns := range []string{tp.client, tp.server, tp.peer} {
		run("ip", "netns", "add", ns)
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	run("ip", "link", "add", "c0", "netns", tp.client, "type", "veth", "peer", "name", "s0", "netns", tp.server)
	run("ip", "link", "add", "p0", "netns", tp.peer, "type", "veth", "peer", "name", "s1", "netns", tp.server)
	addr := func(ns, dev, a string) {
		// nodad: the IPv6 address is usable at once.
		if strings.Contains(a, ":") {
			run("ip", "-n", ns, "addr", "add", a, "dev", dev, "nodad")
		} else {
			run("ip", "-n", ns, "addr", "add", a, "dev", dev)
		}
	}
	addr(tp.client, "c0", "10.200.1.2/24")
	addr(tp.client, "c0", "fd00:1::2/64")
	addr(tp.server, "s0", "10.200.1.1/24")
	addr(tp.server, "s0", "fd00:1::1/64")
	addr(tp.server, "s1", "10.200.2.1/24")
	addr(tp.server, "s1", "fd00:2::1/64")
	addr(tp.peer, "p0", "10.200.2.2/24")
	addr(tp.peer, "p0", "fd00:2::2/64")
	for _, d := range [][2]string{{tp.client, "c0"}, {tp.server, "s0"}, {tp.server, "s1"}, {tp.peer, "p0"}} {
		run("ip", "-n", d[0], "link", "set", d[1], "up")
	}
	haveEthtool := exec.Command("ethtool", "--version").Run() == nil
	if !haveEthtool {
		t.Fatal("ethtool is missing (tools/install-test-deps.sh installs it)")
	}
	for _, d := range [][2]string{{tp.server, "s0"}, {tp.server, "s1"}} {
		run("ip", "netns", "exec", d[0], "ethtool", "-K", d[1], "tx", "off")
	}
	if senderTxOff {
		for _, d := range [][2]string{{tp.client, "c0"}, {tp.peer, "p0"}} {
			run("ip", "netns", "exec", d[0], "ethtool", "-K", d[1], "tx", "off")
		}
	}
	return tp
}

// inNetns runs f on a thread moved into the named namespace, so that the
// sockets, netlink lookups and interface names it uses belong to it, and
// moves the thread back.
func inNetns(t testing.TB, name string, f func() error) {
	t.Helper()
	if err := doInNetns(name, f); err != nil {
		t.Fatal(err)
	}
}

func doInNetns(name string, f func() error) error {
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
			errc <- errors.Join(ferr, fmt.Errorf("back to the original namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// udpCsumErrors reads InCsumErrors for UDP over IPv4 and IPv6 in a
// namespace: a datagram with a bad checksum is dropped silently there and
// counted only here.
func udpCsumErrors(t *testing.T, ns string) (v4, v6 uint64) {
	t.Helper()
	inNetns(t, ns, func() error {
		b, err := os.ReadFile("/proc/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Udp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i := range f {
				if i < len(names) && names[i] == "InCsumErrors" {
					v4, _ = strconv.ParseUint(f[i], 10, 64)
				}
			}
		}
		b, err = os.ReadFile("/proc/net/snmp6")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "Udp6InCsumErrors" {
				v6, _ = strconv.ParseUint(f[1], 10, 64)
			}
		}
		return nil
	})
	return v4, v6
}

// The independent packet builder of the tests: Ethernet, IPv4 (no
// options, DF) or IPv6, UDP, checksums computed from scratch.

var (
	ipID     = uint16(0x1234)
	flowWord = uint32(0x6000_0000 | 0x0abcde) // version 6, traffic class 0, a flow label
)

func buildUDP(src, dst netip.AddrPort, payload []byte, ttl uint8) []byte {
	v6 := src.Addr().Is6()
	eth := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00}
	ulen := 8 + len(payload)
	udp := make([]byte, ulen)
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(ulen))
	copy(udp[8:], payload)
	var ip []byte
	if !v6 {
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+ulen))
		binary.BigEndian.PutUint16(ip[4:], ipID)
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = ttl
		ip[9] = 17
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], ^fold(sum16(ip)))
	} else {
		eth[12], eth[13] = 0x86, 0xdd
		ip = make([]byte, 40)
		binary.BigEndian.PutUint32(ip[0:], flowWord)
		binary.BigEndian.PutUint16(ip[4:], uint16(ulen))
		ip[6] = 17
		ip[7] = ttl
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	binary.BigEndian.PutUint16(udp[6:], udpChecksum(src.Addr(), dst.Addr(), udp))
	return append(append(eth, ip...), udp...)
}

// udpChecksum is RFC 768's checksum (RFC 8200 §8.1 for IPv6) of a UDP
// datagram whose checksum field is zero; 0 is sent as 0xffff.
func udpChecksum(src, dst netip.Addr, udp []byte) uint16 {
	var ph []byte
	ph = append(ph, src.AsSlice()...)
	ph = append(ph, dst.AsSlice()...)
	if src.Is4() {
		ph = append(ph, 0, 17, byte(len(udp)>>8), byte(len(udp)))
	} else {
		ph = append(ph, 0, 0, byte(len(udp)>>8), byte(len(udp)), 0, 0, 0, 17)
	}
	c := ^fold(sum16(ph) + sum16(udp))
	if c == 0 {
		c = 0xffff
	}
	return c
}

func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// checkFrame verifies a frame's IPv4 header checksum and UDP checksum by
// summing them, independently of how they were produced.
func checkFrame(t testing.TB, f []byte) {
	t.Helper()
	var src, dst netip.Addr
	var udp []byte
	switch {
	case f[12] == 0x08:
		ip := f[14:34]
		if fold(sum16(ip)) != 0xffff {
			t.Errorf("IPv4 header checksum wrong: % x", ip)
		}
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		udp = f[34:]
	default:
		ip := f[14:54]
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		udp = f[54:]
	}
	u := append([]byte(nil), udp...)
	got := binary.BigEndian.Uint16(u[6:])
	u[6], u[7] = 0, 0
	if want := udpChecksum(src, dst, u); got != want {
		t.Errorf("UDP checksum %#04x, want %#04x", got, want)
	}
}
