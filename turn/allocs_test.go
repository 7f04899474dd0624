package turn

import (
	"net"
	"net/netip"
	"testing"

	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"icegate/internal/udploop"
)

func gaugeValue(t testing.TB, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// tableRig is an allocation table with what feeds it in the server: a
// relay allocator that registers the relay sockets it hands out, and a UDP
// listener socket, both real sockets on loopback (Go's net package serves
// them, as on the portable path). The events are what pion's allocation
// manager would report, called in the order a test chooses.
type tableRig struct {
	t        *testing.T
	m        *Metrics
	tab      *allocTable
	relays   *relayAllocator
	listener *gatePacketConn
}

func newTableRig(t *testing.T) *tableRig {
	t.Helper()
	m := NewMetrics(nil)
	tab := newAllocTable(m)
	lo := netip.MustParseAddr("127.0.0.1")
	r := &relayAllocator{
		v4: relayFamily{bind: lo, public: lo}, min: 43000, max: 43999,
		metrics: m, res: newReservations(), table: tab,
		dropNoPerm: m.Dropped.WithLabelValues("no_permission"),
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	l := &gatePacketConn{sock: udploop.NetSocket(pc, udploop.SocketConfig{}), group: &udpGroup{}}
	tab.addListener(l)
	t.Cleanup(func() { _ = l.Close(); r.res.close() })
	return &tableRig{t: t, m: m, tab: tab, relays: r, listener: l}
}

// relay is the allocator handing pion a UDP relay socket.
func (g *tableRig) relay() (*relayConn, net.Addr) {
	g.t.Helper()
	pc, addr, err := g.relays.AllocatePacketConn(pionturn.AllocateListenerConfig{Network: "udp4"})
	if err != nil {
		g.t.Fatal(err)
	}
	rc := pc.(*relayConn)
	g.t.Cleanup(func() { _ = rc.Close() })
	return rc, addr
}

// gauges returns icegate_allocations, icegate_permissions and icegate_channels.
func (g *tableRig) gauges() [3]float64 {
	return [3]float64{gaugeValue(g.t, g.m.Allocations), gaugeValue(g.t, g.m.Permissions), gaugeValue(g.t, g.m.Channels)}
}

func (g *tableRig) wantGauges(want [3]float64) {
	g.t.Helper()
	if got := g.gauges(); got != want {
		g.t.Errorf("gauges (allocations, permissions, channels) = %v, want %v", got, want)
	}
}

// empty checks that nothing is left of any allocation.
func (g *tableRig) empty() {
	g.t.Helper()
	g.tab.mu.RLock()
	defer g.tab.mu.RUnlock()
	if n := len(g.tab.allocs) + len(g.tab.bySrc) + len(g.tab.perUser); n != 0 {
		g.t.Errorf("table holds %d allocations, %d clients, %d users after the end", len(g.tab.allocs), len(g.tab.bySrc), len(g.tab.perUser))
	}
	g.wantGauges([3]float64{})
}

// canonAP is how the fast path spells an address: net.IPv4 makes 16-byte
// IPv4-mapped addresses, which the table unmaps.
func canonAP(a net.Addr) netip.AddrPort { return canonical(addrPortOf(a)) }

var (
	tableClient = &net.UDPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 50000}
	tablePeer   = &net.UDPAddr{IP: net.IPv4(198, 51, 100, 9), Port: 6000}
	tablePeer2  = &net.UDPAddr{IP: net.IPv4(198, 51, 100, 10), Port: 6001}
)

// TestAllocTableLifecycle drives the table with the events pion reports for
// one allocation, in pion's order (allocate, permission, channel, its
// refreshes, then on the end: permissions and channels removed, the relay
// socket closed, the allocation deleted), and checks what each reader
// sees: the gate's quota and permission count, the fast path's views on
// the relay socket and the listener, the names for events and what a
// revocation would act on.
func TestAllocTableLifecycle(t *testing.T) {
	g := newTableRig(t)
	src, dst := tableClient, g.listener.LocalAddr()
	key := allocKey(src, dst)
	g.tab.granted(src, grant{username: "123:alice", userID: "alice", key: []byte("k1"), transport: "udp"}, true)
	if u, id := g.tab.names(src.String()); u != "123:alice" || id != "alice" {
		t.Errorf("names before the allocation = %q, %q: an Allocate in flight is named", u, id)
	}
	rc, relayAddr := g.relay()

	info := g.tab.created(src, dst, "alice", "", relayAddr)
	if info.username != "123:alice" || info.transport != "udp" || info.relay != relayAddr.String() {
		t.Errorf("created reports %+v", info)
	}
	if !g.tab.has(key) || g.tab.userAllocations("alice") != 1 {
		t.Fatal("the allocation is not in the table")
	}
	g.wantGauges([3]float64{1, 0, 0})
	if g.listener.relayFor(addrPortOf(src)) != rc {
		t.Error("the listener does not lead the client to its relay")
	}
	if l := rc.link.Load(); l == nil || l.listener != g.listener || l.addr != canonAP(src) {
		t.Errorf("relay link = %+v", l)
	}

	peerIP := netip.MustParseAddr("198.51.100.9")
	g.tab.permission(src, dst, tablePeer.IP, true)
	g.tab.permission(src, dst, tablePeer.IP.To16(), true) // a refresh, spelled as pion may (16 bytes)
	g.wantGauges([3]float64{1, 1, 0})
	if p := rc.perms.Load(); p == nil || len(*p) != 1 {
		t.Fatalf("relay permissions = %v", p)
	} else if _, ok := (*p)[peerIP]; !ok {
		t.Errorf("relay permissions %v lack %v", *p, peerIP)
	}
	peers := []netip.AddrPort{canonAP(tablePeer), canonAP(tablePeer2), canonAP(tablePeer2)}
	if n := g.tab.permissionsAfter(key, peers); n != 2 {
		t.Errorf("permissions after adding a permitted peer and a new one twice = %d, want 2", n)
	}

	g.tab.channel(src, dst, tablePeer, 0x4001, true)
	g.wantGauges([3]float64{1, 1, 1})
	if c := rc.chans.Load(); c == nil || c.byNum[0x4001] != canonAP(tablePeer) || c.byPeer[canonAP(tablePeer)] != 0x4001 {
		t.Errorf("relay channels = %+v", c)
	}

	// A Refresh with a new credential of the same user: revocation judges
	// that one from now on.
	g.tab.granted(src, grant{username: "456:alice", userID: "alice", key: []byte("k2"), transport: "udp"}, false)
	snap := g.tab.snapshot()
	if len(snap) != 1 || snap[0].sock != rc || string(snap[0].cred.key) != "k2" || len(snap[0].peers) != 2 {
		t.Fatalf("snapshot = %+v", snap)
	}

	// The end, as pion's Allocation.Close and Manager.DeleteAllocation do it.
	g.tab.permission(src, dst, tablePeer.IP, false)
	g.tab.channel(src, dst, tablePeer, 0x4001, false)
	if p := rc.perms.Load(); p == nil || len(*p) != 0 {
		t.Errorf("relay permissions after removal = %v", p)
	}
	if c := rc.chans.Load(); c == nil || len(c.byNum)+len(c.byPeer) != 0 {
		t.Errorf("relay channels after removal = %+v", c)
	}
	_ = rc.Close()
	if rc.link.Load() != nil || g.listener.relayFor(addrPortOf(src)) != nil {
		t.Error("a closed relay is still linked to its client")
	}
	if a, ok := g.tab.deleted(src, dst); !ok || a.userID != "alice" {
		t.Errorf("deleted = %+v, %v", a, ok)
	}
	if g.tab.has(key) || g.tab.userAllocations("alice") != 0 {
		t.Error("the deleted allocation is still counted")
	}
	if u, _ := g.tab.names(src.String()); u != "" {
		t.Errorf("a client without allocation is still named %q", u)
	}
	if len(g.tab.relays) != 0 {
		t.Errorf("relay registry holds %d sockets after close", len(g.tab.relays))
	}
	g.empty()
}

// TestAllocTableOddOrders: the events that pion's timers and a revocation
// can deliver out of the usual order find the table consistent: late
// permission and channel events for an allocation that is gone change
// nothing, a delete for an unknown allocation changes nothing, what an
// allocation still holds when it is deleted is counted off, a duplicate
// event does not count twice, and a relay closed by a revocation is not
// handed out again by a snapshot.
func TestAllocTableOddOrders(t *testing.T) {
	t.Run("delete before permissions and channels", func(t *testing.T) {
		g := newTableRig(t)
		src, dst := tableClient, g.listener.LocalAddr()
		rc, relayAddr := g.relay()
		g.tab.created(src, dst, "alice", "", relayAddr)
		g.tab.permission(src, dst, tablePeer.IP, true)
		g.tab.permission(src, dst, tablePeer2.IP, true)
		g.tab.channel(src, dst, tablePeer, 0x7FFF, true)
		g.wantGauges([3]float64{1, 2, 1})
		_ = rc.Close()
		if _, ok := g.tab.deleted(src, dst); !ok {
			t.Fatal("delete not recorded")
		}
		g.wantGauges([3]float64{})
		// Timers that fired while the allocation closed report late.
		g.tab.permission(src, dst, tablePeer.IP, false)
		g.tab.permission(src, dst, tablePeer2.IP, true)
		g.tab.channel(src, dst, tablePeer, 0x7FFF, false)
		g.tab.channel(src, dst, tablePeer2, 0x4000, true)
		g.empty()
	})
	t.Run("unknown allocation", func(t *testing.T) {
		g := newTableRig(t)
		src, dst := tableClient, g.listener.LocalAddr()
		if _, ok := g.tab.deleted(src, dst); ok {
			t.Error("a delete for an unknown allocation was recorded")
		}
		g.tab.permission(src, dst, tablePeer.IP, true)
		g.tab.channel(src, dst, tablePeer, 0x4000, true)
		g.tab.permission(src, dst, tablePeer.IP, false)
		g.empty()
		if n := g.tab.permissionsAfter(allocKey(src, dst), []netip.AddrPort{canonAP(tablePeer)}); n != 1 {
			t.Errorf("permissions after one peer on no allocation = %d", n)
		}
	})
	t.Run("duplicates", func(t *testing.T) {
		g := newTableRig(t)
		src, dst := tableClient, g.listener.LocalAddr()
		_, relayAddr := g.relay()
		g.tab.created(src, dst, "alice", "", relayAddr)
		g.tab.created(src, dst, "alice", "", relayAddr) // pion refuses a duplicate 5-tuple; still, one record
		g.tab.permission(src, dst, tablePeer.IP, false)
		g.tab.permission(src, dst, tablePeer.IP, true)
		g.tab.permission(src, dst, tablePeer.IP, false)
		g.tab.permission(src, dst, tablePeer.IP, false)
		g.tab.channel(src, dst, tablePeer, 0x4000, true)
		g.tab.channel(src, dst, tablePeer2, 0x4000, false) // another peer's: not this binding
		g.wantGauges([3]float64{1, 0, 1})
		if g.tab.userAllocations("alice") != 1 {
			t.Errorf("user count %d, want 1", g.tab.userAllocations("alice"))
		}
		g.tab.deleted(src, dst)
		g.tab.deleted(src, dst)
		g.empty()
	})
	t.Run("revoked relay", func(t *testing.T) {
		g := newTableRig(t)
		src, dst := tableClient, g.listener.LocalAddr()
		rc, relayAddr := g.relay()
		g.tab.created(src, dst, "alice", "", relayAddr)
		_ = rc.Close() // a revocation: pion's events follow later
		if snap := g.tab.snapshot(); len(snap) != 1 || snap[0].sock != nil {
			t.Errorf("snapshot of an allocation whose relay is closing = %+v", snap)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("pion's second close: %v (pion would log it)", err)
		}
		g.tab.deleted(src, dst)
		g.empty()
	})
	t.Run("stream client", func(t *testing.T) {
		// A TCP client's UDP relay: pion relays its data, so no link, but the
		// relay socket still needs the permissions to discard strangers.
		g := newTableRig(t)
		src := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 8), Port: 50001}
		dst := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}
		rc, relayAddr := g.relay()
		info := g.tab.created(src, dst, "bob", "", relayAddr) // no pending credential: a purge
		if info.transport != "tcp" || info.userID != "bob" {
			t.Errorf("created reports %+v", info)
		}
		if rc.link.Load() != nil {
			t.Error("a TCP client's relay is linked to a UDP listener")
		}
		g.tab.permission(src, dst, tablePeer.IP, true)
		if !rc.permitted(canonAP(tablePeer)) || rc.permitted(canonAP(tablePeer2)) {
			t.Error("the relay socket does not see the TCP client's permissions")
		}
		if snap := g.tab.snapshot(); len(snap) != 1 || snap[0].cred.key != nil {
			t.Errorf("an allocation without a recorded credential carries a key: %+v", snap)
		}
		_ = rc.Close()
		g.tab.permission(src, dst, tablePeer.IP, false)
		g.tab.deleted(src, dst)
		g.empty()
	})
	t.Run("pending bounded", func(t *testing.T) {
		g := newTableRig(t)
		for i := range maxPending + 10 {
			src := &net.UDPAddr{IP: net.IPv4(10, 200, byte(i>>8), byte(i)), Port: 4000}
			g.tab.granted(src, grant{username: "u", userID: "u", key: []byte("k")}, true)
		}
		if n := len(g.tab.pending); n > maxPending {
			t.Errorf("%d pending credentials, bound is %d", n, maxPending)
		}
	})
}
