package turn

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"icegate/internal/testutil"
	"icegate/internal/udploop"
)

// startShared starts a server in shared mode on n consecutive relay ports
// that are free on 127.0.0.1 and ::1 now (other packages' tests allocate
// relays from 40000-40999 at the same time, so the ports are picked outside
// that range and the start is retried on another base if one is taken).
func startShared(t testing.TB, n int, portable bool, mutate func(*Config)) (*testServer, []int) {
	return startSharedAt(t, n, 0, portable, mutate)
}

// startSharedAt is startShared from a first port of the given parity (0:
// even).
func startSharedAt(t testing.TB, n, parity int, portable bool, mutate func(*Config)) (*testServer, []int) {
	t.Helper()
	for range 20 {
		base := 45000 + 2*rand.IntN(2000) + parity
		if !portsFree(base, n) {
			continue
		}
		cfg := func(c *Config) {
			c.Relay.Shared = true
			c.Relay.MinPort, c.Relay.MaxPort = base, base+n-1
			if mutate != nil {
				mutate(c)
			}
		}
		loops := udploop.UnreservedProcs()
		release := func() {}
		if !portable {
			release = udploop.ReserveProcs(loops)
		}
		logs := &testutil.SyncBuffer{}
		srv, err := New(testConfig(t, cfg), Options{PortableIO: portable, Loops: loops,
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			release()
			t.Logf("shared ports %d-%d: %v; trying others", base, base+n-1, err)
			continue // a port was taken in between
		}
		t.Cleanup(func() {
			_ = srv.Close()
			release()
			if t.Failed() {
				t.Logf("server log:\n%s", logs.String())
			}
		})
		var ports []int
		for p := base; p < base+n; p++ {
			ports = append(ports, p)
		}
		return &testServer{Server: srv, log: logs}, ports
	}
	t.Fatal("no free run of relay ports found")
	return nil, nil
}

// portsFree reports whether UDP ports base..base+n-1 are free on both
// loopback addresses.
func portsFree(base, n int) bool {
	for p := base; p < base+n; p++ {
		for _, ip := range []string{"127.0.0.1", "::1"} {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip), Port: p})
			if err != nil {
				return false
			}
			_ = c.Close()
		}
	}
	return true
}

// TestSharedSpreadAndDemux: six pion clients on three shared relay ports,
// each with its own echo peer, each relayed address one of the shared ones,
// two allocations per port, and every client gets its own peer's echoes
// only, over Send indications and then the channel pion's client binds.
func TestSharedSpreadAndDemux(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable], func(t *testing.T) {
			srv, ports := startShared(t, 3, portable, nil)
			server := srv.addr(t, "udp", "4")
			perPort := map[int]int{}
			type path struct {
				relay net.PacketConn
				peer  *net.UDPAddr
			}
			var paths []path
			for range 6 {
				c := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
				relay, err := c.Allocate()
				if err != nil {
					t.Fatalf("allocate: %v", err)
				}
				t.Cleanup(func() { _ = relay.Close() })
				ra := relay.LocalAddr().(*net.UDPAddr)
				if ra.Port < ports[0] || ra.Port > ports[len(ports)-1] {
					t.Fatalf("relayed address %v is not a shared port %v", ra, ports)
				}
				perPort[ra.Port]++
				paths = append(paths, path{relay: relay, peer: udpEcho(t, "127.0.0.1")})
			}
			for _, p := range ports {
				if perPort[p] != 2 {
					t.Fatalf("allocations per shared port %v, want 2 each", perPort)
				}
			}
			// Twice: the second round goes over the channels pion's client
			// binds after its first Send indications.
			for round := range 2 {
				for i, p := range paths {
					want := []byte(fmt.Sprintf("round %d client %d", round, i))
					echoPayload(t, p.relay, p.peer, want)
				}
			}
			if got := counterValue(t, srv.metrics.Dropped.WithLabelValues("peer_taken")); got != 0 {
				t.Fatalf("peer_taken %v with every client on its own peer", got)
			}
		})
	}
}

// TestSharedConsecutiveApart: two allocations made one after the other go
// to different shared ports even when one port holds two fewer allocations
// than the others (the least loaded port would take both): on one port they
// would share a relayed address and could not relay to each other, as the
// two ends of a call through this server must.
func TestSharedConsecutiveApart(t *testing.T) {
	srv, ports := startShared(t, 3, false, nil)
	server := srv.addr(t, "udp", "4")
	allocate := func() (net.PacketConn, int) {
		t.Helper()
		c := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
		relay, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocate: %v", err)
		}
		t.Cleanup(func() { _ = relay.Close() })
		return relay, relay.LocalAddr().(*net.UDPAddr).Port
	}
	// Two on each port, then the two on the first port end: loads 0, 2, 2.
	var onFirst []net.PacketConn
	for range 6 {
		relay, port := allocate()
		if port == ports[0] {
			onFirst = append(onFirst, relay)
		}
	}
	if len(onFirst) != 2 {
		t.Fatalf("%d allocations on port %d, want 2", len(onFirst), ports[0])
	}
	for _, r := range onFirst {
		_ = r.Close()
	}
	waitAllocations(t, srv, 4)

	a, portA := allocate()
	b, portB := allocate()
	if portA != ports[0] {
		t.Errorf("first allocation on port %d, want the empty port %d", portA, ports[0])
	}
	if portA == portB {
		t.Fatalf("two consecutive allocations on one shared port %d (ports %v)", portA, ports)
	}
	// And they relay to each other: a permission each, then a datagram
	// each way.
	for _, x := range []struct {
		from, to net.PacketConn
		msg      string
	}{{a, b, "a to b"}, {b, a, "b to a"}, {a, b, "a to b again"}} {
		if _, err := x.from.WriteTo([]byte(x.msg), x.to.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range []struct {
		conn net.PacketConn
		want string
	}{{b, "a to b"}, {a, "b to a"}} {
		buf := make([]byte, 64)
		_ = x.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			n, _, err := x.conn.ReadFrom(buf)
			if err != nil {
				t.Fatalf("waiting for %q: %v", x.want, err)
			}
			if string(buf[:n]) == x.want || strings.HasPrefix(string(buf[:n]), x.want) {
				break
			}
		}
	}
}

// echoPayload sends want through relay to peer and expects exactly want
// back from peer (a datagram meant for another allocation would differ).
func echoPayload(t testing.TB, relay net.PacketConn, peer net.Addr, want []byte) {
	t.Helper()
	buf := make([]byte, 1500)
	for try := range 5 {
		if _, err := relay.WriteTo(want, peer); err != nil {
			t.Fatalf("relay write: %v", err)
		}
		_ = relay.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := relay.ReadFrom(buf)
		if err == nil {
			if string(buf[:n]) != string(want) || from.String() != peer.String() {
				t.Fatalf("got %q from %v, want %q from %v", buf[:n], from, want, peer)
			}
			return
		}
		t.Logf("try %d: %v", try, err)
	}
	t.Fatalf("no echo from %v through the relay", peer)
}

// sharedAlloc is a raw client with an allocation on a one-port shared
// relay, so that every allocation shares one socket.
func sharedAlloc(t *testing.T, srv *testServer, attrs ...pionstun.Setter) *rawClient {
	t.Helper()
	c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
	c.challenge()
	if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, append([]pionstun.Setter{requestedUDP()}, attrs...)...)); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	return c
}

func channelBind(c *rawClient, number byte, ap netip.AddrPort) *pionstun.Message {
	c.t.Helper()
	chn := rawAttr{pionstun.AttrChannelNumber, []byte{0x40, number, 0, 0}}
	return c.authed(pionstun.MethodChannelBind, testUser, testPass, chn, peer(ap.Addr().String(), int(ap.Port())))
}

func reason(m *pionstun.Message) string {
	var ec pionstun.ErrorCodeAttribute
	_ = ec.GetFrom(m)
	return string(ec.Reason)
}

// TestSharedPeerCollision: two allocations on one shared socket cannot own
// one peer address and port: the second's ChannelBind gets 403 with a
// reason, its Send indications to that peer are dropped and counted, and
// the peer's datagrams keep going to the first. The same IP on another
// port is free, and CreatePermission (an IP, no port) is never refused.
// When the first allocation ends, the peer is free for the second.
func TestSharedPeerCollision(t *testing.T) {
	srv, _ := startShared(t, 1, false, nil)
	a := sharedAlloc(t, srv)
	b := sharedAlloc(t, srv)
	echo := udpEcho(t, "127.0.0.1")
	other := udpEcho(t, "127.0.0.1")
	ep, op := echo.AddrPort(), other.AddrPort()

	if code := errorCode(channelBind(a, 0, ep)); code != 0 {
		t.Fatalf("first ChannelBind: %d", code)
	}
	resp := channelBind(b, 0, ep)
	if code := errorCode(resp); code != 403 || !strings.Contains(reason(resp), "in use by another allocation") {
		t.Fatalf("second ChannelBind to the same peer: %d %q, want 403 naming the other allocation", code, reason(resp))
	}
	if code := errorCode(b.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("127.0.0.1", echo.Port))); code != 0 {
		t.Fatalf("CreatePermission for the same IP: %d", code)
	}
	if code := errorCode(channelBind(b, 1, op)); code != 0 {
		t.Fatalf("ChannelBind to the same IP on another port: %d", code)
	}

	// b's Send indication to a's peer is dropped and counted.
	taken := srv.metrics.Dropped.WithLabelValues("peer_taken")
	before := counterValue(t, taken)
	send := pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodSend, pionstun.ClassIndication),
		peer("127.0.0.1", echo.Port), rawAttr{pionstun.AttrData, []byte("not yours")})
	if _, err := b.conn.WriteTo(send.Raw, b.server); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return counterValue(t, taken) > before }, "peer_taken counted")

	// a's channel still works, and b's to the other peer.
	chanEcho(t, a, 0x4000)
	chanEcho(t, b, 0x4001)

	// a ends (Refresh with LIFETIME 0): the peer is free for b.
	if code := errorCode(a.authed(pionstun.MethodRefresh, testUser, testPass, lifetime(0))); code != 0 {
		t.Fatalf("refresh 0: %d", code)
	}
	waitUntil(t, func() bool { return errorCode(channelBind(b, 2, ep)) == 0 }, "peer freed by the end of the first allocation")
	chanEcho(t, b, 0x4002)
}

// TestSharedExpiryFreesPeer: an allocation that expires on its own
// (a short LIFETIME, never refreshed) gives its peer up.
func TestSharedExpiryFreesPeer(t *testing.T) {
	srv, _ := startShared(t, 1, false, nil)
	a := sharedAlloc(t, srv, lifetime(2))
	b := sharedAlloc(t, srv)
	echo := udpEcho(t, "127.0.0.1")
	if code := errorCode(channelBind(a, 0, echo.AddrPort())); code != 0 {
		t.Fatalf("ChannelBind: %d", code)
	}
	if code := errorCode(channelBind(b, 0, echo.AddrPort())); code != 403 {
		t.Fatalf("ChannelBind while a holds the peer: %d, want 403", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for errorCode(channelBind(b, 0, echo.AddrPort())) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the peer was not freed when the allocation expired")
		}
		time.Sleep(200 * time.Millisecond)
	}
	chanEcho(t, b, 0x4000)
}

// TestSharedFailedBindReleases: a ChannelBind pion refuses after the gate
// claimed the peer (the channel number is bound to another peer already,
// RFC 8656 §12.2: 400) does not keep the peer from another allocation.
func TestSharedFailedBindReleases(t *testing.T) {
	srv, _ := startShared(t, 1, false, nil)
	a := sharedAlloc(t, srv)
	b := sharedAlloc(t, srv)
	p1, p2 := udpEcho(t, "127.0.0.1").AddrPort(), udpEcho(t, "127.0.0.2").AddrPort()
	if code := errorCode(channelBind(a, 0, p1)); code != 0 {
		t.Fatalf("ChannelBind: %d", code)
	}
	if code := errorCode(channelBind(a, 0, p2)); code != 400 {
		t.Fatalf("ChannelBind of a bound number to another peer: %d, want 400", code)
	}
	if code := errorCode(channelBind(b, 0, p2)); code != 0 {
		t.Fatalf("ChannelBind to the peer a failed to bind: %d, want it free", code)
	}
}

// TestSharedEvenPort: EVEN-PORT is served from an even shared port, with
// the R bit from an even port whose neighbour is shared too, and the
// RESERVATION-TOKEN then gives another client that neighbour, once
// (RFC 8656 §7.2 steps 5 and 6).
func TestSharedEvenPort(t *testing.T) {
	srv, ports := startShared(t, 2, false, nil)
	c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
	c.challenge()
	resp := c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), rawAttr{pionstun.AttrEvenPort, []byte{0x80}})
	if code := errorCode(resp); code != 0 {
		t.Fatalf("EVEN-PORT R=1: %d %q", code, reason(resp))
	}
	var relayed pionstun.XORMappedAddress
	if err := relayed.GetFromAs(resp, pionstun.AttrXORRelayedAddress); err != nil || relayed.Port != ports[0] {
		t.Fatalf("relayed %v (%v), want the even shared port %d", relayed, err, ports[0])
	}
	tok, err := resp.Get(pionstun.AttrReservationToken)
	if err != nil {
		t.Fatal("no RESERVATION-TOKEN")
	}
	d := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
	d.challenge()
	resp = d.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), rawAttr{pionstun.AttrReservationToken, tok})
	if code := errorCode(resp); code != 0 {
		t.Fatalf("RESERVATION-TOKEN: %d %q", code, reason(resp))
	}
	if err := relayed.GetFromAs(resp, pionstun.AttrXORRelayedAddress); err != nil || relayed.Port != ports[1] {
		t.Fatalf("token's relayed %v (%v), want the next shared port %d", relayed, err, ports[1])
	}
	e := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
	e.challenge()
	if code := errorCode(e.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), rawAttr{pionstun.AttrReservationToken, tok})); code != 508 {
		t.Fatalf("token redeemed twice: %d, want 508", code)
	}
}

// TestSharedNoEvenPort: one odd shared port has no even port for EVEN-PORT
// and no pair for its R bit: 508 with a reason that says so.
func TestSharedNoEvenPort(t *testing.T) {
	srv, _ := startSharedAt(t, 1, 1, false, nil)
	c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
	c.challenge()
	for _, tc := range []struct {
		v    byte
		want string
	}{{0x00, "No even port among the shared relay ports"}, {0x80, "No even shared relay port with the next port shared too"}} {
		resp := c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), rawAttr{pionstun.AttrEvenPort, []byte{tc.v}})
		if code := errorCode(resp); code != 508 || reason(resp) != tc.want {
			t.Fatalf("EVEN-PORT %#x: %d %q, want 508 %q", tc.v, code, reason(resp), tc.want)
		}
	}
}

// TestSharedUnclaimedDropped: a datagram to a shared port from an address
// no allocation claimed is dropped and counted, also from an IP that has a
// permission.
func TestSharedUnclaimedDropped(t *testing.T) {
	srv, ports := startShared(t, 1, false, nil)
	c := sharedAlloc(t, srv)
	if code := errorCode(c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("127.0.0.1", 9))); code != 0 {
		t.Fatalf("CreatePermission: %d", code)
	}
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	unclaimed := srv.metrics.Dropped.WithLabelValues("peer_unclaimed")
	before := counterValue(t, unclaimed)
	if _, err := stranger.WriteToUDP([]byte("hello?"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ports[0]}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return counterValue(t, unclaimed) > before }, "peer_unclaimed counted")
	_ = c.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 1500)
	if n, _, err := c.conn.ReadFrom(buf); err == nil {
		t.Fatalf("client got %d bytes from an unclaimed peer", n)
	}
}

// TestSharedStreamClients: TCP and TLS clients' allocations on shared
// ports relay through pion (their datagrams queue per allocation), beside
// a UDP client on the same socket.
func TestSharedStreamClients(t *testing.T) {
	srv, _ := startShared(t, 1, false, nil)
	var wg sync.WaitGroup
	for _, transport := range []string{"udp", "tcp", "tls"} {
		server := srv.addr(t, transport, "4")
		c := newClient(t, dialClient(t, transport, server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
		relay, err := c.Allocate()
		if err != nil {
			t.Fatalf("%s allocate: %v", transport, err)
		}
		t.Cleanup(func() { _ = relay.Close() })
		peer := udpEcho(t, "127.0.0.1")
		wg.Go(func() {
			for i := range 3 {
				echoPayload(t, relay, peer, []byte(fmt.Sprintf("%s %d", transport, i)))
			}
		})
	}
	wg.Wait()
}

// TestSharedFastPathAllocs: ChannelData both ways through a shared relay
// socket costs no allocation either.
func TestSharedFastPathAllocs(t *testing.T) {
	srv, _ := startShared(t, 2, false, nil)
	sharedAlloc(t, srv) // another allocation on the socket set
	p := newChannelPath(t, srv, 100)
	_ = p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	p.roundTrip(t)
	if allocs := allocsPerRun(2000, func() { p.roundTrip(t) }); allocs > 0.05 {
		t.Fatalf("%.2f allocations per relayed round trip on a shared port, want 0", allocs)
	}
}

// TestSharedConfig: a range wider than MaxSharedPorts, and TCP relays,
// are refused in shared mode.
func TestSharedConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"wide", func(c *Config) { c.Relay.Shared, c.Relay.MinPort, c.Relay.MaxPort = true, 50000, 50064 }, "more than the 64"},
		{"tcp", func(c *Config) {
			c.Relay.Shared, c.Relay.MinPort, c.Relay.MaxPort, c.Relay.TCP = true, 50000, 50002, true
		}, "TCP relays need a port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(testConfig(t, tc.mutate), Options{PortableIO: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// chanEcho sends ChannelData on number through c and expects the echo.
func chanEcho(t *testing.T, c *rawClient, number uint16) {
	t.Helper()
	frame := []byte{byte(number >> 8), byte(number), 0, 4, 'p', 'i', 'n', 'g'}
	buf := make([]byte, 1500)
	for range 5 {
		if _, err := c.conn.WriteTo(frame, c.server); err != nil {
			t.Fatal(err)
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := c.conn.ReadFrom(buf)
		if err == nil && n == len(frame) && string(buf[:n]) == string(frame) {
			return
		}
	}
	t.Fatalf("no ChannelData echo on channel %#x", number)
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSharedClaimsBounded: one allocation cannot claim peer address:ports
// without end (a permission names an IP, and every port of it is a claim
// in the socket's table, which every allocation on the socket shares):
// past maxClaims its Send indications to new ports are dropped and
// counted (peer_claims_full), a ChannelBind to a new port gets 508 with a
// reason, and the peers it claimed before still relay. Another allocation
// on the socket can still claim peers.
func TestSharedClaimsBounded(t *testing.T) {
	srv, _ := startShared(t, 1, false, nil)
	a := sharedAlloc(t, srv)
	echo := udpEcho(t, "127.0.0.1")
	if code := errorCode(channelBind(a, 0, echo.AddrPort())); code != 0 {
		t.Fatalf("ChannelBind: %d", code)
	}
	full := srv.metrics.Dropped.WithLabelValues("peer_claims_full")
	before := counterValue(t, full)
	// Ports of 127.0.0.3, which nothing listens on: the datagrams go
	// nowhere, the claims are what counts.
	if code := errorCode(a.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("127.0.0.3", 9))); code != 0 {
		t.Fatalf("CreatePermission: %d", code)
	}
	extra := 50
	for port := 1; port <= maxClaims+extra; port++ {
		send := pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodSend, pionstun.ClassIndication),
			peer("127.0.0.3", port), rawAttr{pionstun.AttrData, []byte("x")})
		if _, err := a.conn.WriteTo(send.Raw, a.server); err != nil {
			t.Fatal(err)
		}
		if port%200 == 0 {
			time.Sleep(5 * time.Millisecond) // leave the listener's queue room
		}
	}
	// Every Send indication was handled (claimed or refused) once the
	// refusals add up; UDP to the server on loopback can still drop a few
	// under load, so wait for most of them.
	waitUntil(t, func() bool { return counterValue(t, full)-before >= float64(extra)/2 }, "claims past the bound refused")
	ss := srv.relays.shared["udp4"][0]
	ss.mu.RLock()
	n := len(ss.owners)
	ss.mu.RUnlock()
	if n > maxClaims {
		t.Fatalf("%d claims on the socket, want at most %d", n, maxClaims)
	}
	other := udpEcho(t, "127.0.0.1")
	resp := channelBind(a, 1, other.AddrPort())
	if code := errorCode(resp); code != 508 || !strings.Contains(reason(resp), "Too many peers") {
		t.Fatalf("ChannelBind past the bound: %d %q, want 508 Too many peers", code, reason(resp))
	}
	chanEcho(t, a, 0x4000)

	b := sharedAlloc(t, srv)
	if code := errorCode(channelBind(b, 0, other.AddrPort())); code != 0 {
		t.Fatalf("another allocation's ChannelBind: %d", code)
	}
	chanEcho(t, b, 0x4000)
}
