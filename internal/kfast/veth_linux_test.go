//go:build linux

package kfast

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"icegate/internal/netnstest"
)

// recv reads one datagram, failing the test after two seconds.
func recv(t *testing.T, c *net.UDPConn, what string) ([]byte, netip.AddrPort) {
	t.Helper()
	b := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return b[:n], canonical(from)
}

// quiet fails the test if c receives anything within a short time.
func quiet(t *testing.T, c *net.UDPConn, what string) {
	t.Helper()
	b := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, from, err := c.ReadFromUDPAddrPort(b); err == nil {
		t.Errorf("%s received %d bytes from %v", what, n, from)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("%s: %v", what, err)
	}
}

// attachedPrograms counts the TCX ingress programs on a server interface.
func attachedPrograms(t *testing.T, ns, iface string) int {
	t.Helper()
	var n int
	netnstest.In(t, ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: ifi.Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		n = len(res.Programs)
		return nil
	})
	return n
}

// TestRelayOverVeth relays between real sockets in three namespaces,
// the program attached in the server's: a client's ChannelData reaches the
// peer as the bare payload from the relayed address, the peer's reply
// reaches the client as ChannelData from the listener address, byte for
// byte, for IPv4 and IPv6 and sizes from 0 to 1400 bytes, with the
// senders' checksum offload on (the server sees CHECKSUM_PARTIAL skbs) and
// off (full checksums); the receivers count no checksum errors. Before
// Bind and after Unbind the datagrams reach the server's own sockets;
// Close leaves no program attached.
func TestRelayOverVeth(t *testing.T) {
	needRoot(t)
	for _, mode := range []struct {
		name        string
		senderTxOff bool
		wildcard    bool // the server's sockets bound to [::] (dual-stack)
		clsact      bool // the classic attachment instead of TCX
	}{
		{"partial-checksums", false, false, false},
		{"full-checksums", true, false, false},
		{"wildcard-sockets", false, true, false},
		{"clsact", false, false, true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			tp := newTopo(t, mode.senderTxOff)
			p := openWith(t, tp.Server, Config{Clsact: mode.clsact})
			netnstest.In(t, tp.Server, func() error { return p.Attach(netnstest.ServerIfaces...) })
			netnstest.In(t, tp.Server, func() error {
				if err := p.Attach("s1"); err == nil {
					return errors.New("attached twice to s1")
				}
				if err := p.Attach("nonesuch0"); err == nil {
					return errors.New("attached to an interface that does not exist")
				}
				return nil
			})
			// An L3 device has no Ethernet header for the program to skip.
			if out, err := exec.Command("ip", "-n", tp.Server, "tuntap", "add", "dev", "tun0", "mode", "tun").CombinedOutput(); err != nil {
				t.Fatalf("ip tuntap: %v\n%s", err, out)
			}
			netnstest.In(t, tp.Server, func() error {
				if err := p.Attach("tun0"); !errors.Is(err, ErrNotSupported) {
					return fmt.Errorf("Attach(tun0): %v, want ErrNotSupported", err)
				}
				return nil
			})
			wantKind, tcx := "tcx", 1
			if mode.clsact {
				wantKind, tcx = "clsact", 0
			}
			for _, iface := range netnstest.ServerIfaces {
				if n := attachedPrograms(t, tp.Server, iface); n != tcx {
					t.Fatalf("%d TCX programs on %s, want %d", n, iface, tcx)
				}
				if k := p.Attachments()[iface]; k != wantKind {
					t.Fatalf("attached to %s as %q, want %q", iface, k, wantKind)
				}
				if got := tcShow(t, tp.Server, iface); mode.clsact != strings.Contains(got, "icegate_relay") {
					t.Fatalf("tc on %s shows:\n%s", iface, got)
				}
			}
			for i, fam := range families {
				t.Run(fam.name, func(t *testing.T) {
					relayVeth(t, tp, p, fam, uint64(100+i), mode.wildcard)
				})
			}
			if rw, rd, err := p.Failures(); err != nil || rw != 0 || rd != 0 {
				t.Errorf("failures: rewrite %d, redirect %d, %v", rw, rd, err)
			}
			ids := objectIDs(t, p)
			if left := liveObjects(ids); len(left) != len(ids) {
				t.Fatalf("only %v of %v found by id before Close", left, ids)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			// Nothing is pinned: the program and its maps are freed once
			// their last descriptor is closed (the kernel frees them after
			// an RCU grace period, so give it a moment).
			deadline := time.Now().Add(3 * time.Second)
			for left := liveObjects(ids); len(left) > 0; left = liveObjects(ids) {
				if time.Now().After(deadline) {
					t.Errorf("still in the kernel after Close: %v", left)
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, iface := range netnstest.ServerIfaces {
				if n := attachedPrograms(t, tp.Server, iface); n != 0 {
					t.Errorf("%d programs still on %s after Close", n, iface)
				}
				if got := tcShow(t, tp.Server, iface); got != "" {
					t.Errorf("tc still shows on %s after Close:\n%s", iface, got)
				}
			}
			if err := p.Bind(Flow{}); !errors.Is(err, ErrClosed) && !errors.Is(err, ErrFlow) {
				t.Errorf("Bind after Close: %v", err)
			}
		})
	}
}

// relayVeth runs the exchanges of TestRelayOverVeth for one family. With
// wildcard, the server's listener and relay sockets are bound to [::]
// (taking IPv4 too) and the flow names the unspecified address, as with
// icegate's default listen.addresses and relay binds; the program then
// sends from the addresses the kernel would pick for those sockets.
func relayVeth(t *testing.T, tp *netnstest.Relay, p *Program, fam family, alloc uint64, wildcard bool) {
	client := netnstest.ListenUDP(t, tp.Client, netip.AddrPortFrom(fam.client, 0))
	peer := netnstest.ListenUDP(t, tp.Peer, netip.AddrPortFrom(fam.peer, 0))
	listenAddr := netip.AddrPortFrom(fam.listen, 3478)
	relayAddr := netip.AddrPortFrom(fam.relay, 50000)
	listenBind, relayBind := listenAddr, relayAddr
	if wildcard {
		listenBind = netip.AddrPortFrom(netip.IPv6Unspecified(), 3478)
		relayBind = netip.AddrPortFrom(netip.IPv6Unspecified(), 50000)
	}
	listener := netnstest.ListenUDP(t, tp.Server, listenBind)
	relay := netnstest.ListenUDP(t, tp.Server, relayBind)
	clientAddr := canonical(client.LocalAddr().(*net.UDPAddr).AddrPort())
	peerAddr := canonical(peer.LocalAddr().(*net.UDPAddr).AddrPort())
	const ch = 0x4abc
	c4, c6 := udpCsumErrors(t, tp.Client)
	p4, p6 := udpCsumErrors(t, tp.Peer)

	send := func(c *net.UDPConn, b []byte, to netip.AddrPort) {
		t.Helper()
		if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
			t.Fatal(err)
		}
	}
	// No entry: the server's sockets get the datagrams (user space).
	cd := channelData(ch, payload(10, 3), nil)
	send(client, cd, listenAddr)
	if got, from := recv(t, listener, "listener before Bind"); !bytes.Equal(got, cd) || from != clientAddr {
		t.Fatalf("listener before Bind got % x from %v", got, from)
	}
	send(peer, payload(10, 4), relayAddr)
	if got, from := recv(t, relay, "relay socket before Bind"); !bytes.Equal(got, payload(10, 4)) || from != peerAddr {
		t.Fatalf("relay socket before Bind got % x from %v", got, from)
	}

	f := Flow{Alloc: alloc, Client: clientAddr, Listener: listenBind, Relay: relayBind, Peer: peerAddr,
		Channel: ch, Expires: time.Now().Add(time.Minute)}
	if err := p.Bind(f); err != nil {
		t.Fatal(err)
	}
	var want Counters
	for _, n := range []int{0, 1, 3, 4, 5, 1000, 1400} {
		for _, pad := range [][]byte{nil, []byte{0xee, 0xdd, 0xcc}[:(4-n%4)%4]} {
			data := payload(n, byte(n))
			send(client, channelData(ch, data, pad), listenAddr)
			got, from := recv(t, peer, "peer")
			if !bytes.Equal(got, data) || from != relayAddr {
				t.Fatalf("peer got %d bytes from %v, want %d bytes from %v", len(got), from, n, relayAddr)
			}
			want.ToPeerPackets++
			want.ToPeerBytes += uint64(n)
		}
		data := payload(n, byte(n+1))
		send(peer, data, relayAddr)
		got, from := recv(t, client, "client")
		if exp := channelData(ch, data, nil); !bytes.Equal(got, exp) || from != listenAddr {
			t.Fatalf("client got % x from %v, want % x from %v", got, from, exp, listenAddr)
		}
		want.ToClientPackets++
		want.ToClientBytes += uint64(n)
	}
	// A peer's datagram that fills the MTU would not fit with the
	// ChannelData header: the program leaves it to user space.
	full := 1500 - 8 - 20
	if fam.client.Is6() {
		full = 1500 - 8 - 40
	}
	send(peer, payload(full, 5), relayAddr)
	if got, _ := recv(t, relay, "relay socket, a datagram over the MTU"); !bytes.Equal(got, payload(full, 5)) {
		t.Fatalf("relay socket got %d bytes, want %d", len(got), full)
	}
	quiet(t, listener, "the listener socket, while offloaded")
	quiet(t, relay, "the relay socket, while offloaded")
	if got, err := p.Counters(alloc); err != nil || got != want {
		t.Errorf("counters %+v, %v; want %+v", got, err, want)
	}
	if c4b, c6b := udpCsumErrors(t, tp.Client); c4b != c4 || c6b != c6 {
		t.Errorf("client namespace: InCsumErrors %d -> %d (IPv4), %d -> %d (IPv6)", c4, c4b, c6, c6b)
	}
	if p4b, p6b := udpCsumErrors(t, tp.Peer); p4b != p4 || p6b != p6 {
		t.Errorf("peer namespace: InCsumErrors %d -> %d (IPv4), %d -> %d (IPv6)", p4, p4b, p6, p6b)
	}

	// Removal takes effect at once: the next datagrams are user space's.
	p.Unbind(clientAddr, listenBind, ch)
	send(client, cd, listenAddr)
	if got, _ := recv(t, listener, "listener after Unbind"); !bytes.Equal(got, cd) {
		t.Fatalf("listener after Unbind got % x", got)
	}
	send(peer, payload(10, 4), relayAddr)
	if got, _ := recv(t, relay, "relay socket after Unbind"); !bytes.Equal(got, payload(10, 4)) {
		t.Fatalf("relay socket after Unbind got % x", got)
	}
	quiet(t, peer, "the peer, after Unbind")
	quiet(t, client, "the client, after Unbind")

	// And so does removing the allocation.
	if err := p.Bind(f); err != nil {
		t.Fatal(err)
	}
	send(client, cd, listenAddr)
	recv(t, peer, "peer after rebind")
	if _, err := p.RemoveAllocation(alloc); err != nil {
		t.Fatal(err)
	}
	send(client, cd, listenAddr)
	recv(t, listener, "listener after RemoveAllocation")
	if n := p.Flows(); n != 0 {
		t.Errorf("%d flows left", n)
	}

	// An entry past its deadline is the kernel's to refuse, whatever user
	// space does: the datagrams reach the server's sockets again.
	f.Expires = time.Now().Add(300 * time.Millisecond)
	if err := p.Bind(f); err != nil {
		t.Fatal(err)
	}
	send(client, cd, listenAddr)
	recv(t, peer, "peer before the deadline")
	time.Sleep(400 * time.Millisecond)
	send(client, cd, listenAddr)
	recv(t, listener, "listener after the deadline")
	send(peer, payload(10, 4), relayAddr)
	recv(t, relay, "relay socket after the deadline")
	quiet(t, peer, "the peer, after the deadline")
	quiet(t, client, "the client, after the deadline")
	if _, err := p.RemoveAllocation(alloc); err != nil {
		t.Fatal(err)
	}
}

// objectIDs are the kernel's ids of the program and its maps.
func objectIDs(t *testing.T, p *Program) map[string]uint32 {
	t.Helper()
	ids := map[string]uint32{}
	pi, err := p.objs.IcegateRelay.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := pi.ID()
	ids["program"] = uint32(id)
	for name, m := range map[string]*ebpf.Map{"c2p": p.objs.C2p, "p2c": p.objs.P2c, "stats": p.objs.Stats,
		"failures": p.objs.Failures, "scratch": p.objs.Scratch} {
		mi, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := mi.ID()
		ids[name] = uint32(id)
	}
	return ids
}

// liveObjects returns the names of those objects the kernel still has.
func liveObjects(ids map[string]uint32) []string {
	var left []string
	for name, id := range ids {
		var err error
		if name == "program" {
			var prog *ebpf.Program
			if prog, err = ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
				prog.Close()
			}
		} else {
			var m *ebpf.Map
			if m, err = ebpf.NewMapFromID(ebpf.MapID(id)); err == nil {
				m.Close()
			}
		}
		if err == nil {
			left = append(left, name)
		}
	}
	return left
}

// tcShow lists the classic tc filters on an interface's ingress and its
// clsact qdisc, as tc shows them (empty when there are none).
func tcShow(t *testing.T, ns, iface string) string {
	t.Helper()
	f, err := exec.Command("tc", "-n", ns, "filter", "show", "dev", iface, "ingress").CombinedOutput()
	if err != nil {
		f = nil // no clsact qdisc: no ingress hook to list
	}
	q, err := exec.Command("tc", "-n", ns, "qdisc", "show", "dev", iface).CombinedOutput()
	if err != nil {
		t.Fatalf("tc qdisc show: %v\n%s", err, q)
	}
	out := strings.TrimSpace(string(f))
	if strings.Contains(string(q), "clsact") {
		out += "\n" + strings.TrimSpace(string(q))
	}
	return strings.TrimSpace(out)
}

// TestClsactReplaces attaches a second program as a classic filter where
// one is attached already, as after a process that died without Close
// (a classic filter outlives its process): the new filter replaces the
// old one instead of failing or stacking, and after both Close calls
// nothing is left on the interface.
func TestClsactReplaces(t *testing.T) {
	needRoot(t)
	tp := newTopo(t, false)
	first := openWith(t, tp.Server, Config{Clsact: true})
	second := openWith(t, tp.Server, Config{Clsact: true})
	netnstest.In(t, tp.Server, func() error { return first.Attach("s0") })
	netnstest.In(t, tp.Server, func() error { return second.Attach("s0") })
	if got := tcShow(t, tp.Server, "s0"); strings.Count(got, "handle 0x1ce") != 1 {
		t.Fatalf("want one filter, tc shows:\n%s", got)
	}
	idOf := func(p *Program) string {
		info, err := p.objs.IcegateRelay.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		return fmt.Sprintf("id %d", id)
	}
	if got := tcShow(t, tp.Server, "s0"); !strings.Contains(got, idOf(second)) {
		t.Errorf("the filter is not the second program's (%s):\n%s", idOf(second), got)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tcShow(t, tp.Server, "s0"); got != "" {
		t.Errorf("left on s0:\n%s", got)
	}
}
