//go:build linux

package netnstest

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestRelayAndUDPStats builds the Relay topology and checks what the
// tests built on it rely on: a socket opened with ListenUDP is the
// namespace's (the server reaches the client's and the peer's on their
// links, the client does not reach the peer: no route), and UDPStats
// counts in that namespace alone what its receivers drop (a datagram for
// a port nobody holds, one that finds the receive buffer full).
func TestRelayAndUDPStats(t *testing.T) {
	Need(t, "netnstest", "ethtool")
	r := NewRelay(t, "icent", false)
	for _, fam := range []struct{ client, listen, relay, peer netip.Addr }{
		{ClientIP4, ListenIP4, RelayIP4, PeerIP4}, {ClientIP6, ListenIP6, RelayIP6, PeerIP6},
	} {
		client := ListenUDP(t, r.Client, netip.AddrPortFrom(fam.client, 0))
		peer := ListenUDP(t, r.Peer, netip.AddrPortFrom(fam.peer, 0))
		server := ListenUDP(t, r.Server, netip.AddrPortFrom(fam.listen, 0))
		for _, to := range []*net.UDPConn{client, peer} {
			if _, err := server.WriteToUDPAddrPort([]byte("x"), to.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
				t.Fatalf("server to %v: %v", to.LocalAddr(), err)
			}
			buf := make([]byte, 16)
			if n, _, err := to.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "x" {
				t.Fatalf("at %v: %q, %v", to.LocalAddr(), buf[:n], err)
			}
		}
		if _, err := client.WriteToUDPAddrPort([]byte("x"), peer.LocalAddr().(*net.UDPAddr).AddrPort()); err == nil {
			t.Errorf("the client reached the peer %v directly: the topology must route through nothing", peer.LocalAddr())
		}
	}

	if l := Links(t, r.Server); len(l) != 3 || l["s0"] != (LinkDrops{}) || l["s1"] != (LinkDrops{}) {
		t.Errorf("the server namespace's devices: %v, want lo, s0 and s1 with no drops", l)
	}
	_ = BacklogDrops(t)

	// Drops in the client namespace: one datagram to a closed port, and a
	// burst into a small buffer nobody reads.
	c4, _ := UDPStats(t, r.Client)
	s4, _ := UDPStats(t, r.Server)
	sink := ListenUDP(t, r.Client, netip.AddrPortFrom(ClientIP4, 0))
	if err := sink.SetReadBuffer(1); err != nil { // the kernel's minimum
		t.Fatal(err)
	}
	server := ListenUDP(t, r.Server, netip.AddrPortFrom(ListenIP4, 0))
	if _, err := server.WriteToUDPAddrPort([]byte("x"), netip.AddrPortFrom(ClientIP4, 9)); err != nil {
		t.Fatal(err)
	}
	to := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	for range 200 {
		if _, err := server.WriteToUDPAddrPort(make([]byte, 1000), to); err != nil {
			t.Fatal(err)
		}
	}
	// Delivery over the veth is asynchronous; InDatagrams counts what the
	// socket's reader takes.
	_ = sink.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		if _, _, err := sink.ReadFromUDPAddrPort(make([]byte, 2048)); err != nil {
			break
		}
	}
	c, _ := UDPStats(t, r.Client)
	d := c.Sub(c4)
	t.Logf("client namespace: %v", d)
	if d.NoPorts != 1 || d.RcvbufErrors == 0 || d.InErrors < d.RcvbufErrors || d.InDatagrams+d.RcvbufErrors != 200 {
		t.Errorf("client namespace counted %v; want 1 for no port and 200 datagrams either received or dropped for the buffer", d)
	}
	if s, _ := UDPStats(t, r.Server); s.Sub(s4).InErrors != 0 || s.Sub(s4).NoPorts != 0 {
		t.Errorf("the server namespace counted the client's drops: %v", s.Sub(s4))
	}
}
