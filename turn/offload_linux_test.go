//go:build linux

package turn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"icegate/auth"
	"icegate/internal/coturn"
	"icegate/internal/kfast"
	"icegate/internal/netnstest"
	"icegate/internal/testutil"
	"icegate/internal/udploop"
)

// The kernel fast path through a whole server, on netnstest's Relay
// topology: client, server and peer namespaces of the test's own joined by
// two veth pairs, on 10.200.0.0/16 and fd00::/8 only (nothing is added to
// the root namespace).
//
// The server's sockets are opened by whichever thread pion runs on, so
// the test runs itself again as a whole process in the server namespace
// (netnstest.Rerun); there the client's and the peer's sockets are opened
// on a thread moved into their namespaces (a socket stays in the
// namespace it was made in).

// offloadNSEnv carries the client and peer namespace names to the test
// process running in the server namespace.
const offloadNSEnv = "ICEGATE_TEST_OFFLOAD_NS"

// inOffloadNS runs the calling test again in a fresh topology's server
// namespace and reports true; in that process it reports false and the
// test goes on.
func inOffloadNS(t *testing.T) (clientNS, peerNS string, outer bool) {
	t.Helper()
	if v := os.Getenv(offloadNSEnv); v != "" {
		c, p, _ := strings.Cut(v, ",")
		return c, p, false
	}
	netnstest.Need(t, "kernel offload: the program (CAP_BPF, CAP_NET_ADMIN) and the namespaces", "ethtool")
	tp := netnstest.NewRelay(t, "icekt", false)
	out, err := netnstest.Rerun(t, tp.Server, offloadNSEnv+"="+tp.Client+","+tp.Peer)
	t.Logf("in the server namespace:\n%s", out)
	switch {
	case err != nil:
		t.Fatalf("the run in the server namespace failed: %v", err)
	case bytes.Contains(out, []byte("--- SKIP")):
		t.Skip("skipped in the server namespace (see its output)")
	}
	return "", "", true
}

// offloadFamily is one address family of the topology.
type offloadFamily struct {
	name                        string
	client, listen, relay, peer netip.Addr
	pionFamily                  pionturn.RequestedAddressFamily
}

var offloadFamilies = []offloadFamily{
	{"ipv4", netnstest.ClientIP4, netnstest.ListenIP4, netnstest.RelayIP4, netnstest.PeerIP4, pionturn.RequestedAddressFamilyIPv4},
	{"ipv6", netnstest.ClientIP6, netnstest.ListenIP6, netnstest.RelayIP6, netnstest.PeerIP6, pionturn.RequestedAddressFamilyIPv6},
}

// offloadConfig is the servers' config on the topology, changed by more.
func offloadConfig(mode string, permLife time.Duration, more func(*Config)) func(*Config) {
	return func(c *Config) {
		f4, f6 := offloadFamilies[0], offloadFamilies[1]
		c.Listen = ListenConfig{Addrs: []netip.Addr{f4.listen, f6.listen}, Port: 3478, NoTCP: true, NoTLS: true, NoDTLS: true}
		c.Relay.IPv4Bind, c.Relay.IPv4Public = f4.relay, f4.relay
		c.Relay.IPv6Bind, c.Relay.IPv6Public = f6.relay, f6.relay
		c.Relay.KernelOffload = mode
		c.Relay.permLife = permLife
		c.Policy = PolicyConfig{Allow: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16"), netip.MustParsePrefix("fd00::/8")}}
		if more != nil {
			more(c)
		}
	}
}

// offloadServer starts a server on the topology with kernel_offload =
// mode, and the lifetimes pion gives permissions and channels.
func offloadServer(t *testing.T, mode string, permLife time.Duration, events func(Event), more func(*Config)) (*testServer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	loops := udploop.UnreservedProcs()
	t.Cleanup(udploop.ReserveProcs(loops))
	ts := startServerWith(t, offloadConfig(mode, permLife, more), Options{Loops: loops, Registerer: reg, Events: events})
	if got := ts.kf != nil; got != (mode == OffloadOn) {
		t.Fatalf("kernel_offload = %q: offload loaded %v\n%s", mode, got, ts.log.String())
	}
	return ts, reg
}

// onlyAlloc returns the server's one allocation's user-space counters,
// its kernel counters and whether it is in the kernel.
func (ts *testServer) onlyAlloc(t testing.TB) (user, kernel Traffic, offloaded bool) {
	t.Helper()
	ts.allocs.mu.RLock()
	defer ts.allocs.mu.RUnlock()
	if len(ts.allocs.allocs) != 1 {
		t.Fatalf("%d allocations, want 1", len(ts.allocs.allocs))
	}
	for _, a := range ts.allocs.allocs {
		user = a.rc.traffic.load()
		if ts.kf != nil && a.rc.kfAlloc.Load() != 0 {
			c, err := ts.kf.prog.Counters(a.id)
			if err != nil {
				t.Fatal(err)
			}
			kernel, offloaded = kernelTraffic(c), true
		}
	}
	return user, kernel, offloaded
}

// offloadPeer counts and keeps what the peer receives.
type offloadPeer struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  [][]byte
	from netip.AddrPort
	done chan struct{}
}

func newOffloadPeer(t *testing.T, ns string, ap netip.AddrPort) *offloadPeer {
	p := &offloadPeer{conn: netnstest.ListenUDP(t, ns, ap), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		buf := make([]byte, 2048)
		for {
			n, from, err := p.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.got = append(p.got, append([]byte(nil), buf[:n]...))
			p.from = from
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = p.conn.Close(); <-p.done })
	return p
}

func (p *offloadPeer) received() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.got...)
}

// offloadWait polls cond for up to 5 s.
func offloadWait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// payload is packet i of a run: distinct bytes, 100-1099 bytes long.
func payload(dir byte, i int) []byte {
	b := make([]byte, 100+i*37%1000)
	for j := range b {
		b[j] = byte(i*131+j*7) ^ dir
	}
	b[0], b[1] = dir, byte(i)
	return b
}

// TestKernelOffload relays with a pion TURN client in channel mode
// through a server with kernel_offload "on" and "off", IPv4 and IPv6: the
// peer and the client get exactly the bytes sent; with "on" the channel's
// packets take the kernel path (the kernel's counters grow by what was
// sent, the relay socket's by nothing) and the relayed totals, the usage
// line and the metrics count them; a ChannelData on an unbound channel is
// not relayed, deleting the allocation takes its flows out at once, and
// at shutdown the program is detached and its maps gone.
func TestKernelOffload(t *testing.T) {
	clientNS, peerNS, outer := inOffloadNS(t)
	if outer {
		return
	}
	for _, fam := range offloadFamilies {
		for _, mode := range []string{OffloadOn, OffloadOff} {
			t.Run(fam.name+"/"+mode, func(t *testing.T) { offloadRun(t, fam, mode, clientNS, peerNS, nil) })
		}
	}
	// Sockets bound to the unspecified addresses (icegate's defaults): the
	// program matches any local address and answers from the route's
	// source, and the interfaces are every Ethernet one of the namespace.
	wildcard := func(c *Config) {
		c.Listen.Addrs = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
		c.Relay.IPv4Bind, c.Relay.IPv6Bind = netip.IPv4Unspecified(), netip.IPv6Unspecified()
	}
	for _, fam := range offloadFamilies {
		t.Run(fam.name+"-wildcard/on", func(t *testing.T) { offloadRun(t, fam, OffloadOn, clientNS, peerNS, wildcard) })
	}
}

func offloadRun(t *testing.T, fam offloadFamily, mode, clientNS, peerNS string, more func(*Config)) {
	var evMu sync.Mutex
	var ended []string
	ts, reg := offloadServer(t, mode, 0, func(e Event) {
		if e.Kind == EventAllocationDeleted {
			evMu.Lock()
			ended = append(ended, e.Detail)
			evMu.Unlock()
		}
	}, more)
	server := net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.listen, 3478))
	peer := newOffloadPeer(t, peerNS, netip.AddrPortFrom(fam.peer, 0))
	peerAddr := net.UDPAddrFromAddrPort(peer.conn.LocalAddr().(*net.UDPAddr).AddrPort())
	cconn := netnstest.ListenUDP(t, clientNS, netip.AddrPortFrom(fam.client, 0))
	client := newClient(t, cconn, server, testUser, testPass, fam.pionFamily)
	relay, err := client.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v\n%s", err, ts.log.String())
	}
	relayAP := relay.LocalAddr().(*net.UDPAddr).AddrPort()

	// The first datagram makes pion's client create the permission and
	// bind a channel; it goes as a Send indication meanwhile.
	sentToPeer := 0
	if _, err := relay.WriteTo([]byte("hello"), peerAddr); err != nil {
		t.Fatal(err)
	}
	sentToPeer++
	offloadWait(t, "the channel", func() bool {
		ts.allocs.mu.RLock()
		defer ts.allocs.mu.RUnlock()
		for _, a := range ts.allocs.allocs {
			return len(a.chans) == 1 && (mode == OffloadOff || len(a.kflows) == 1)
		}
		return false
	})
	offloadWait(t, "the hello", func() bool { return len(peer.received()) == 1 })
	// pion's client switches to ChannelData once its ChannelBind is
	// answered; give it that moment.
	time.Sleep(100 * time.Millisecond)
	user0, kern0, _ := ts.onlyAlloc(t)
	totals0 := ts.RelayedTotals()["udp"]

	// Both ways, N datagrams each, paced so that no socket buffer drops.
	const n = 40
	var want Traffic
	for i := range n {
		p := payload(0xC1, i)
		if _, err := relay.WriteTo(p, peerAddr); err != nil {
			t.Fatal(err)
		}
		want.PacketsToPeer++
		want.BytesToPeer += uint64(len(p))
		time.Sleep(time.Millisecond)
	}
	sentToPeer += n
	offloadWait(t, "the peer's datagrams", func() bool { return len(peer.received()) == 1+n })
	for i, got := range peer.received()[1:] {
		if !bytes.Equal(got, payload(0xC1, i)) {
			t.Fatalf("peer datagram %d: %d bytes differ from the %d sent", i, len(got), len(payload(0xC1, i)))
		}
	}
	if peer.from != relayAP {
		t.Errorf("peer got datagrams from %v, want the relayed address %v", peer.from, relayAP)
	}
	gotc := make(chan [][]byte, 1)
	go func() {
		var got [][]byte
		buf := make([]byte, 2048)
		_ = relay.SetReadDeadline(time.Now().Add(5 * time.Second))
		for len(got) < n {
			k, from, err := relay.ReadFrom(buf)
			if err != nil {
				break
			}
			if from.String() == peerAddr.String() {
				got = append(got, append([]byte(nil), buf[:k]...))
			}
		}
		gotc <- got
	}()
	for i := range n {
		p := payload(0x5E, i)
		if _, err := peer.conn.WriteToUDPAddrPort(p, relayAP); err != nil {
			t.Fatal(err)
		}
		want.PacketsToClient++
		want.BytesToClient += uint64(len(p))
		time.Sleep(time.Millisecond)
	}
	got := <-gotc
	if len(got) != n {
		t.Fatalf("client got %d of %d datagrams from the peer", len(got), n)
	}
	for i := range got {
		if !bytes.Equal(got[i], payload(0x5E, i)) {
			t.Fatalf("client datagram %d differs from what the peer sent", i)
		}
	}

	user1, kern1, offloaded := ts.onlyAlloc(t)
	totals1 := ts.RelayedTotals()["udp"]
	if d := totals1.Sub(totals0); d != want {
		t.Errorf("relayed totals grew by %+v, want %+v", d, want)
	}
	switch mode {
	case OffloadOn:
		if !offloaded {
			t.Fatal("the allocation is not in the kernel")
		}
		if d := kern1.Sub(kern0); d != want {
			t.Errorf("kernel counters grew by %+v, want %+v", d, want)
		}
		if d := user1.Sub(user0); !d.IsZero() {
			t.Errorf("the relay socket's path relayed %+v; the kernel should have taken every channel datagram", d)
		}
		checkOffloadMetrics(t, reg, 1)

		// ChannelData on a channel nobody bound (RFC 8656 §12.4: the
		// server discards it): not relayed, by the kernel or otherwise.
		stray := append([]byte{0x7A, 0xBC, 0, 4}, "lost"...)
		if _, err := cconn.WriteToUDPAddrPort(stray, netip.AddrPortFrom(fam.listen, 3478)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if k := len(peer.received()); k != sentToPeer {
			t.Errorf("peer got %d datagrams, want %d: the unbound channel's was relayed", k, sentToPeer)
		}
		if _, kern2, _ := ts.onlyAlloc(t); kern2 != kern1 {
			t.Errorf("kernel counters moved on an unbound channel: %+v -> %+v", kern1, kern2)
		}
	case OffloadOff:
		if d := user1.Sub(user0); d != want {
			t.Errorf("user-space counters grew by %+v, want %+v", d, want)
		}
		checkOffloadMetrics(t, reg, -1)
	}

	// Deleting the allocation (Refresh, lifetime 0) takes its flows out
	// before pion answers, and the usage line has everything it relayed.
	if err := relay.Close(); err != nil {
		t.Fatal(err)
	}
	offloadWait(t, "the usage line", func() bool { evMu.Lock(); defer evMu.Unlock(); return len(ended) == 1 })
	if ts.kf != nil {
		if k := ts.kf.prog.Flows(); k != 0 {
			t.Errorf("%d flows left in the kernel after the allocation was deleted", k)
		}
	}
	before := len(peer.received())
	_, _ = peer.conn.WriteToUDPAddrPort([]byte("late"), relayAP)
	_, _ = cconn.WriteToUDPAddrPort(append([]byte{0x40, 0x00, 0, 4}, "late"...), netip.AddrPortFrom(fam.listen, 3478))
	wantDetail := fmt.Sprintf("rp=%d rb=%d sp=%d sb=%d", sentToPeer, uint64(len("hello"))+want.BytesToPeer, n, want.BytesToClient)
	if !strings.Contains(ended[0], wantDetail) {
		t.Errorf("usage line %q, want %q", ended[0], wantDetail)
	}
	time.Sleep(100 * time.Millisecond)
	if k := len(peer.received()); k != before {
		t.Errorf("relayed after the allocation was deleted")
	}

	if mode == OffloadOn {
		checkDetached(t, ts)
	}
}

// checkOffloadMetrics checks icegate_kernel_offload_enabled and, when
// flows >= 0, icegate_kernel_offload_flows.
func checkOffloadMetrics(t *testing.T, reg *prometheus.Registry, flows int) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				vals[mf.GetName()] += m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				vals[mf.GetName()] += m.GetCounter().GetValue()
			}
		}
	}
	on := 0.0
	if flows >= 0 {
		on = 1
		if vals["icegate_kernel_offload_flows"] != float64(flows) {
			t.Errorf("icegate_kernel_offload_flows %v, want %d", vals["icegate_kernel_offload_flows"], flows)
		}
		if v := vals["icegate_kernel_offload_failures_total"]; v != 0 {
			t.Errorf("icegate_kernel_offload_failures_total %v", v)
		}
	}
	if vals["icegate_kernel_offload_enabled"] != on {
		t.Errorf("icegate_kernel_offload_enabled %v, want %v", vals["icegate_kernel_offload_enabled"], on)
	}
}

// checkDetached closes the server and checks that nothing of the program
// is left: no TCX program on its interfaces, its maps gone.
func checkDetached(t *testing.T, ts *testServer) {
	t.Helper()
	var progIDs []ebpf.ProgramID
	var mapIDs []ebpf.MapID
	for _, name := range []string{"s0", "s1"} {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			t.Fatal(err)
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: ifi.Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range res.Programs {
			progIDs = append(progIDs, p.ID)
			prog, err := ebpf.NewProgramFromID(p.ID)
			if err != nil {
				t.Fatal(err)
			}
			info, err := prog.Info()
			_ = prog.Close()
			if err != nil {
				t.Fatal(err)
			}
			ids, _ := info.MapIDs()
			mapIDs = append(mapIDs, ids...)
		}
	}
	if len(progIDs) != 2 || len(mapIDs) == 0 {
		t.Fatalf("attached: programs %v, maps %v; want one program on each of s0 and s1", progIDs, mapIDs)
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	offloadWait(t, "the program and its maps to go", func() bool {
		for _, id := range progIDs {
			if p, err := ebpf.NewProgramFromID(id); err == nil {
				_ = p.Close()
				return false
			}
		}
		for _, id := range mapIDs {
			if m, err := ebpf.NewMapFromID(id); err == nil {
				_ = m.Close()
				return false
			}
		}
		return true
	})
}

// TestKernelOffloadPermissionExpiry: the kernel stops relaying a channel
// before pion's permission for its peer lapses; the datagram then reaches
// user space, which still relays it while pion's permission lives.
func TestKernelOffloadPermissionExpiry(t *testing.T) {
	clientNS, peerNS, outer := inOffloadNS(t)
	if outer {
		return
	}
	fam := offloadFamilies[0]
	const permLife = 6 * time.Second // the kernel's deadline: 4 s
	ts, _ := offloadServer(t, OffloadOn, permLife, nil, nil)
	server := net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.listen, 3478))
	peer := newOffloadPeer(t, peerNS, netip.AddrPortFrom(fam.peer, 0))
	peerAddr := net.UDPAddrFromAddrPort(peer.conn.LocalAddr().(*net.UDPAddr).AddrPort())
	client := newClient(t, netnstest.ListenUDP(t, clientNS, netip.AddrPortFrom(fam.client, 0)), server, testUser, testPass, fam.pionFamily)
	relay, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := relay.WriteTo([]byte("hello"), peerAddr); err != nil {
		t.Fatal(err)
	}
	offloadWait(t, "the flow", func() bool { return ts.kf.prog.Flows() == 1 })
	time.Sleep(100 * time.Millisecond)
	if _, err := relay.WriteTo([]byte("in the kernel"), peerAddr); err != nil {
		t.Fatal(err)
	}
	offloadWait(t, "two datagrams", func() bool { return len(peer.received()) == 2 })
	user1, kern1, _ := ts.onlyAlloc(t)
	if kern1.PacketsToPeer != 1 {
		t.Fatalf("kernel relayed %d datagrams, want 1", kern1.PacketsToPeer)
	}
	time.Sleep(time.Until(start.Add(permLife - offloadMargin + 500*time.Millisecond)))
	if time.Since(start) > permLife-500*time.Millisecond {
		t.Skip("the machine was too slow to send inside pion's permission")
	}
	if _, err := relay.WriteTo([]byte("past the deadline"), peerAddr); err != nil {
		t.Fatal(err)
	}
	offloadWait(t, "three datagrams", func() bool { return len(peer.received()) == 3 })
	user2, kern2, _ := ts.onlyAlloc(t)
	if kern2 != kern1 {
		t.Errorf("the kernel relayed past its deadline: %+v -> %+v", kern1, kern2)
	}
	if d := user2.Sub(user1); d.PacketsToPeer != 1 {
		t.Errorf("user space relayed %d datagrams past the kernel's deadline, want 1", d.PacketsToPeer)
	}
}

// TestOffloadInterfaces: the interfaces come from the listen and relay
// addresses; loopback never counts.
func TestOffloadInterfaces(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	_, _, err := offloadInterfaces(Config{Listen: ListenConfig{Addrs: []netip.Addr{lo}}, Relay: RelayConfig{IPv4Bind: lo, NoIPv6: true}})
	if err == nil {
		t.Error("loopback addresses gave interfaces to attach to")
	}
	names, why, err := offloadInterfaces(Config{Relay: RelayConfig{KernelOffloadInterfaces: []string{"eth9"}}})
	if err != nil || len(names) != 1 || names[0] != "eth9" || why == "" {
		t.Errorf("listed interfaces: %v %q %v", names, why, err)
	}
	// "auto" over loopback only runs in user space, with one line why.
	ts := startServer(t, func(c *Config) { c.Relay.KernelOffload = OffloadAuto })
	if ts.kf != nil {
		t.Fatal("offload on over loopback")
	}
	if !strings.Contains(ts.log.String(), "kernel offload off") {
		t.Errorf("no log line says why offload is off:\n%s", ts.log.String())
	}
	var oe *OffloadError
	if _, err := New(testConfig(t, func(c *Config) { c.Relay.KernelOffload = OffloadOn }), Options{}); !errors.As(err, &oe) {
		t.Errorf(`"on" without anything to attach to: got %v, want an *OffloadError`, err)
	} else if strings.Contains(err.Error(), "Relay.KernelOffload") {
		t.Errorf("the error names the Go field, not what the user wrote: %v", err)
	}
	var _ = kfast.ErrNotSupported
}

// waitOneChannel waits until the server's one allocation has its
// channel bound.
func (ts *testServer) waitOneChannel(t *testing.T) {
	t.Helper()
	offloadWait(t, "the channel", func() bool {
		ts.allocs.mu.RLock()
		defer ts.allocs.mu.RUnlock()
		for _, a := range ts.allocs.allocs {
			return len(a.chans) == 1
		}
		return false
	})
}

// offloadAllocate makes a pion client's allocation on fam and a peer,
// sends one datagram so that pion's client binds a channel, and waits for
// the channel.
func offloadAllocate(t *testing.T, ts *testServer, fam offloadFamily, clientNS, peerNS string) (net.PacketConn, *offloadPeer, net.Addr) {
	t.Helper()
	server := net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.listen, 3478))
	peer := newOffloadPeer(t, peerNS, netip.AddrPortFrom(fam.peer, 0))
	peerAddr := net.UDPAddrFromAddrPort(peer.conn.LocalAddr().(*net.UDPAddr).AddrPort())
	client := newClient(t, netnstest.ListenUDP(t, clientNS, netip.AddrPortFrom(fam.client, 0)), server, testUser, testPass, fam.pionFamily)
	relay, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := relay.WriteTo([]byte("hello"), peerAddr); err != nil {
		t.Fatal(err)
	}
	ts.waitOneChannel(t)
	offloadWait(t, "the hello", func() bool { return len(peer.received()) == 1 })
	return relay, peer, peerAddr
}

// TestKernelOffloadChecks: what the kernel cannot check stays in user
// space. An allocation with a bandwidth cap is never offloaded; a reload
// whose policy denies a peer takes its flow out of the kernel at once,
// and a reload that allows it again puts it back.
func TestKernelOffloadChecks(t *testing.T) {
	clientNS, peerNS, outer := inOffloadNS(t)
	if outer {
		return
	}
	fam := offloadFamilies[0]
	t.Run("bandwidth-cap", func(t *testing.T) {
		ts, _ := offloadServer(t, OffloadOn, 0, nil, func(c *Config) { c.Limits.BandwidthPerAllocation = 10 << 20 })
		relay, peer, peerAddr := offloadAllocate(t, ts, fam, clientNS, peerNS)
		for i := range 10 {
			if _, err := relay.WriteTo(payload(1, i), peerAddr); err != nil {
				t.Fatal(err)
			}
		}
		offloadWait(t, "the datagrams", func() bool { return len(peer.received()) == 11 })
		if n := ts.kf.prog.Flows(); n != 0 {
			t.Errorf("%d flows in the kernel for a capped allocation", n)
		}
		if user, _, offloaded := ts.onlyAlloc(t); offloaded || user.PacketsToPeer != 11 {
			t.Errorf("offloaded %v, user space relayed %d of 11", offloaded, user.PacketsToPeer)
		}
	})
	// A channel the kernel cannot take (here a peer on this server's own
	// relay address, reached over loopback, as uclient -y does) is counted
	// as refused once, not once for every later event of the allocation
	// that offers it again, and is relayed in user space.
	t.Run("refused-once", func(t *testing.T) {
		ts, reg := offloadServer(t, OffloadOn, 0, nil, nil)
		server := net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.listen, 3478))
		local, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.relay, 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = local.Close() })
		client := newClient(t, netnstest.ListenUDP(t, clientNS, netip.AddrPortFrom(fam.client, 0)), server, testUser, testPass, fam.pionFamily)
		relay, err := client.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		send := func(what string) {
			t.Helper()
			if _, err := relay.WriteTo([]byte(what), local.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			_ = local.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, _, err := local.ReadFrom(buf); err != nil || string(buf[:n]) != what {
				t.Fatalf("the local peer got %q, %v; want %q", buf[:n], err, what)
			}
		}
		send("hello")
		ts.waitOneChannel(t)
		// Each reload offers the allocation's flows to the kernel again.
		for range 3 {
			if err := ts.Reload(testConfig(t, offloadConfig(OffloadOn, 0, nil))); err != nil {
				t.Fatal(err)
			}
		}
		send("through user space")
		if n := ts.kf.prog.Flows(); n != 0 {
			t.Errorf("%d flows in the kernel for a peer over loopback", n)
		}
		checkOffloadMetrics(t, reg, 0)
		if got := ts.kf.refused.Load(); got != 1 {
			t.Errorf("icegate_kernel_offload_refused_total = %d, want 1 (one channel binding refused)", got)
		}
	})
	t.Run("reload-denies-peer", func(t *testing.T) {
		ts, _ := offloadServer(t, OffloadOn, 0, nil, nil)
		relay, peer, peerAddr := offloadAllocate(t, ts, fam, clientNS, peerNS)
		offloadWait(t, "the flow", func() bool { return ts.kf.prog.Flows() == 1 })
		deny := offloadConfig(OffloadOn, 0, func(c *Config) {
			c.Policy.Deny = []netip.Prefix{netip.PrefixFrom(fam.peer, 32)}
		})
		p, err := ts.PrepareReload(testConfig(t, deny))
		if err != nil {
			t.Fatal(err)
		}
		if r := p.Commit(); r.Peers != 1 {
			t.Fatalf("reload blocked %+v, want one peer", r)
		}
		if n := ts.kf.prog.Flows(); n != 0 {
			t.Fatalf("%d flows left in the kernel for a denied peer", n)
		}
		_, kern0, _ := ts.onlyAlloc(t)
		for i := range 5 {
			if _, err := relay.WriteTo(payload(2, i), peerAddr); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond)
		if n := len(peer.received()); n != 1 {
			t.Errorf("the denied peer got %d datagrams after the reload", n-1)
		}
		if _, kern1, _ := ts.onlyAlloc(t); kern1 != kern0 {
			t.Errorf("the kernel relayed for a denied peer: %+v -> %+v", kern0, kern1)
		}
		// Allowed again: the next event that touches the allocation (here
		// the reload itself) binds it again.
		if err := ts.Reload(testConfig(t, offloadConfig(OffloadOn, 0, nil))); err != nil {
			t.Fatal(err)
		}
		offloadWait(t, "the flow back", func() bool { return ts.kf.prog.Flows() == 1 })
		if _, err := relay.WriteTo([]byte("again"), peerAddr); err != nil {
			t.Fatal(err)
		}
		offloadWait(t, "the datagram", func() bool { return len(peer.received()) == 2 })
		if _, kern2, _ := ts.onlyAlloc(t); kern2.PacketsToPeer != kern0.PacketsToPeer+1 {
			t.Errorf("kernel relayed %d, want %d", kern2.PacketsToPeer, kern0.PacketsToPeer+1)
		}
	})
}

// TestKernelOffloadUclient: coturn's turnutils_uclient in channel mode
// (-c: no RTCP allocations; ChannelData by default) to turnutils_peer, the
// echo, over IPv4 and IPv6: every message comes back, and the kernel
// relayed the channel traffic both ways.
func TestKernelOffloadUclient(t *testing.T) {
	clientNS, peerNS, outer := inOffloadNS(t)
	if outer {
		return
	}
	uclient, err1 := exec.LookPath("turnutils_uclient")
	peerBin, err2 := exec.LookPath("turnutils_peer")
	if err := errors.Join(err1, err2); err != nil {
		if os.Getenv("ICEGATE_REQUIRE_INTEROP") == "1" {
			t.Fatalf("coturn's clients: %v", err)
		}
		t.Skipf("coturn's clients: %v (apt-get install coturn)", err)
	}
	const peerPort = 3480
	peer := exec.Command("ip", "netns", "exec", peerNS, peerBin,
		"-L", offloadFamilies[0].peer.String(), "-L", offloadFamilies[1].peer.String(), "-p", fmt.Sprint(peerPort))
	var peerOut testutil.SyncBuffer // written by exec's copier while a failing run reads it
	peer.Stdout, peer.Stderr = &peerOut, &peerOut
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Process.Kill(); _ = peer.Wait() })
	// Ready when it echoes (this process is in the server namespace,
	// which reaches the peer's).
	probe, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(offloadFamilies[0].peer, peerPort)))
	if err != nil {
		t.Fatal(err)
	}
	offloadWait(t, "turnutils_peer to echo", func() bool {
		_, _ = probe.Write([]byte("ping"))
		_ = probe.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := probe.Read(make([]byte, 16))
		return err == nil
	})
	_ = probe.Close()

	const clients, messages = 4, 200
	for _, mode := range []string{OffloadOn, OffloadOff} {
		t.Run(mode, func(t *testing.T) {
			ts, _ := offloadServer(t, mode, 0, nil, func(c *Config) {
				c.Auth.Users = append(c.Auth.Users, auth.StaticUser{Name: "test", Password: "test"})
				c.Limits.AllocationsPerUser = NoLimit
			})
			for _, fam := range offloadFamilies {
				t.Run(fam.name, func(t *testing.T) {
					uclientRun(t, ts, fam, uclient, clientNS, peerNS, peerPort, clients, messages, &peerOut)
				})
			}
		})
	}
}

// uclientRun runs turnutils_uclient in channel mode to the echo at
// peerPort and checks that every message came back and what was relayed.
func uclientRun(t *testing.T, ts *testServer, fam offloadFamily, uclient, clientNS, peerNS string, peerPort, clients, messages int, peerOut *testutil.SyncBuffer) {
	before, kbefore := ts.RelayedTotals()["udp"], ts.allocs.kernelTotals()
	drops := udpDropsSince(t, clientNS, peerNS)
	args := []string{"netns", "exec", clientNS, uclient, "-c", "-u", "test", "-w", "test",
		"-e", fam.peer.String(), "-r", fmt.Sprint(peerPort),
		"-n", fmt.Sprint(messages), "-m", fmt.Sprint(clients), "-l", "120", "-z", "5",
		"-p", "3478"}
	if fam.name == "ipv6" {
		args = append(args, "-x") // an IPv6 relay (REQUESTED-ADDRESS-FAMILY)
	} else {
		args = append(args, "-X")
	}
	args = append(args, fam.listen.String())
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	res, perr := coturn.ParseUclientSummary(string(out))
	// A veth hands each datagram to the receiving CPU's input backlog
	// (net.core.netdev_max_backlog), which every namespace and device on
	// the machine shares: on a loaded machine it overflows and the veth
	// drops the datagram, with or without offload, and counts it (TX
	// dropped). uclient may miss exactly those messages and no others.
	report, veth := drops()
	var rw, rd uint64
	if ts.kf != nil {
		rw, rd, _ = ts.kf.prog.Failures()
	}
	d := ts.RelayedTotals()["udp"].Sub(before)
	kern := ts.allocs.kernelTotals().Sub(kbefore)
	if err != nil || perr != nil || res.Sent != clients*messages || res.Recv != res.Sent-res.Lost || uint64(res.Lost) > veth {
		t.Fatalf("uclient: %v %v: %+v (lost more than the %d datagrams the veths dropped); relayed %+v, by the kernel %+v, program failures %d/%d\nUDP receive counters during the run: %s\n%s\npeer:\n%s\nserver log:\n%s",
			err, perr, res, veth, d, kern, rw, rd, report, out, peerOut.String(), ts.log.String())
	}
	t.Logf("uclient: sent %d, received %d, lost %d; relayed %+v, by the kernel %+v; UDP receive counters: %s", res.Sent, res.Recv, res.Lost, d, kern, report)
	if res.Lost > 0 {
		t.Logf("uclient lost %d messages, all of them among the %d datagrams the veths dropped (a full CPU backlog: the machine was loaded)", res.Lost, veth)
	}
	// What was relayed, and the kernel's part of it: uclient sends after
	// its channels are bound, so with offload on, all of it. What a veth
	// dropped before the server never reached it.
	if rw != 0 || rd != 0 {
		t.Errorf("the program dropped datagrams: %d rewrite, %d redirect failures", rw, rd)
	}
	if d.PacketsToPeer+veth < uint64(res.Sent) || d.PacketsToClient < uint64(res.Recv) {
		t.Errorf("the relayed totals grew by %+v, want at least %d (less %d the veths dropped) to the peer and %d to the client", d, res.Sent, veth, res.Recv)
	}
	switch {
	case ts.kf != nil && (kern.PacketsToPeer+veth < uint64(res.Sent) || kern.PacketsToClient < uint64(res.Recv)):
		t.Errorf("the kernel relayed %+v, want at least %d (less %d the veths dropped) to the peer and %d to the client", kern, res.Sent, veth, res.Recv)
	case ts.kf == nil && !kern.IsZero():
		t.Errorf("the kernel relayed %+v with offload off", kern)
	}
}

// udpDropsSince reads the UDP receive counters of the client's, the
// server's (this process's) and the peer's namespaces, their devices'
// drop counters and the machine's backlog drops, and returns a func that
// says what each counted since, and how many datagrams the topology's
// veths dropped (TX dropped of c0, s0, s1 and p0): where a datagram
// uclient misses was dropped (a full receive buffer at uclient or
// turnutils_peer, a bad checksum, a veth whose other end's CPU backlog was
// full), or that no receiver dropped it.
func udpDropsSince(t *testing.T, clientNS, peerNS string) func() (report string, vethDrops uint64) {
	t.Helper()
	type reading struct {
		v4, v6 netnstest.UDPCounters
		links  map[string]netnstest.LinkDrops
	}
	nss := []string{clientNS, "", peerNS}
	read := func() (r [3]reading, backlog uint64) {
		for i, ns := range nss {
			r[i].v4, r[i].v6 = netnstest.UDPStats(t, ns)
			r[i].links = netnstest.Links(t, ns)
		}
		return r, netnstest.BacklogDrops(t)
	}
	before, backlog0 := read()
	return func() (string, uint64) {
		after, backlog := read()
		var b strings.Builder
		var veth uint64
		for i, name := range []string{"client", "server", "peer"} {
			fmt.Fprintf(&b, "\n  %s namespace: IPv4 %v; IPv6 %v; device drops", name,
				after[i].v4.Sub(before[i].v4), after[i].v6.Sub(before[i].v6))
			for dev, d := range after[i].links {
				tx := d.TX - before[i].links[dev].TX
				fmt.Fprintf(&b, " %s rx %d tx %d", dev, d.RX-before[i].links[dev].RX, tx)
				if dev != "lo" {
					veth += tx
				}
			}
		}
		fmt.Fprintf(&b, "\n  the machine's CPU backlogs (all namespaces) dropped %d", backlog-backlog0)
		return b.String(), veth
	}
}

// TestKernelOffloadRebind drives the channel by hand: a ChannelBind that
// refreshes the channel moves the kernel's deadline (the kernel relays
// past the first one); when pion's channel lapses the flow is gone, and
// the channel number bound again to another peer goes there, in the
// kernel, at once.
func TestKernelOffloadRebind(t *testing.T) {
	clientNS, peerNS, outer := inOffloadNS(t)
	if outer {
		return
	}
	fam := offloadFamilies[0]
	const chanLife = 6 * time.Second // the kernel's deadline: 4 s after a bind
	ts, _ := offloadServer(t, OffloadOn, 0, nil, func(c *Config) { c.Relay.chanLife = chanLife })
	server := netip.AddrPortFrom(fam.listen, 3478)
	c := &rawClient{t: t, conn: netnstest.ListenUDP(t, clientNS, netip.AddrPortFrom(fam.client, 0)), server: net.UDPAddrFromAddrPort(server)}
	c.challenge()
	if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	peerA := newOffloadPeer(t, peerNS, netip.AddrPortFrom(fam.peer, 0))
	peerB := newOffloadPeer(t, peerNS, netip.AddrPortFrom(fam.peer, 0))
	chn := rawAttr{pionstun.AttrChannelNumber, []byte{0x40, 0x01, 0, 0}}
	bind := func(p *offloadPeer) {
		t.Helper()
		ap := p.conn.LocalAddr().(*net.UDPAddr).AddrPort()
		if code := errorCode(c.authed(pionstun.MethodChannelBind, testUser, testPass, chn, peer(ap.Addr().String(), int(ap.Port())))); code != 0 {
			t.Fatalf("channel bind: %d", code)
		}
	}
	send := func(s string) {
		t.Helper()
		frame := append([]byte{0x40, 0x01, 0, byte(len(s))}, s...)
		if _, err := c.conn.WriteToUDPAddrPort(frame, server); err != nil {
			t.Fatal(err)
		}
	}
	kernelToPeer := func() uint64 { _, k, _ := ts.onlyAlloc(t); return k.PacketsToPeer }

	start := time.Now()
	bind(peerA)
	if n := ts.kf.prog.Flows(); n != 1 {
		t.Fatalf("%d flows after the ChannelBind's answer, want 1", n)
	}
	send("one")
	offloadWait(t, "one", func() bool { return len(peerA.received()) == 1 })
	time.Sleep(time.Until(start.Add(3 * time.Second)))
	bind(peerA) // refreshes the channel (RFC 8656 §12.2): pion without an event
	time.Sleep(time.Until(start.Add(5 * time.Second)))
	send("two") // past the first deadline (4 s), before the refreshed one (7 s)
	offloadWait(t, "two", func() bool { return len(peerA.received()) == 2 })
	if k := kernelToPeer(); k != 2 {
		t.Errorf("kernel relayed %d datagrams, want 2: the refresh did not move its deadline", k)
	}

	// pion's channel lapses 6 s after the refresh; then it is gone from
	// the kernel too, and the number is free for another peer.
	offloadWait(t, "the channel to lapse", func() bool {
		ts.allocs.mu.RLock()
		defer ts.allocs.mu.RUnlock()
		for _, a := range ts.allocs.allocs {
			return len(a.chans) == 0
		}
		return false
	})
	if n := ts.kf.prog.Flows(); n != 0 {
		t.Fatalf("%d flows after the channel lapsed", n)
	}
	bind(peerB)
	send("three")
	offloadWait(t, "three at B", func() bool { return len(peerB.received()) == 1 })
	if got := string(peerB.received()[0]); got != "three" {
		t.Errorf("B got %q", got)
	}
	if n := len(peerA.received()); n != 2 {
		t.Errorf("A got %d datagrams, want 2", n)
	}
	if k := kernelToPeer(); k != 3 {
		t.Errorf("kernel relayed %d datagrams, want 3", k)
	}
}
