package turn

import (
	"net"
	"net/netip"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"icegate/stun"
)

// rfc5780Server starts a server with the primary address 127.0.0.1 and the
// alternate 127.0.0.2 (both loopback on Linux), and returns its four UDP
// sockets in stun.Socket order. mutate, if any, changes the config further.
func rfc5780Server(t *testing.T, mutate ...func(*Config)) (*testServer, [4]netip.AddrPort) {
	t.Helper()
	ts := startServer(t, func(c *Config) {
		c.Listen.Addrs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		c.RFC5780.Alternate = netip.MustParseAddr("127.0.0.2")
		for _, m := range mutate {
			m(c)
		}
	})
	var socks [4]netip.AddrPort
	n := 0
	for _, l := range ts.Addrs() {
		if l.Transport != "udp" {
			continue
		}
		ap, _ := netip.ParseAddrPort(l.Addr.String())
		i := ts.binding.index[l.Addr.String()]
		socks[i] = ap
		n++
	}
	if n != 4 {
		t.Fatalf("%d UDP listeners, want 4: %v", n, ts.Addrs())
	}
	return ts, socks
}

// TestRFC5780Sockets sends a Binding request with each CHANGE-REQUEST to
// each of the four sockets and checks where the answer really comes from
// (RFC 5780 Table 1), that RESPONSE-ORIGIN says so, and OTHER-ADDRESS.
func TestRFC5780Sockets(t *testing.T) {
	_, socks := rfc5780Server(t)
	if socks[stun.Primary].Addr() == socks[stun.AltIP].Addr() || socks[stun.Primary].Port() == socks[stun.AltPort].Port() ||
		socks[stun.AltIP].Port() != socks[stun.Primary].Port() || socks[stun.AltBoth].Port() != socks[stun.AltPort].Port() {
		t.Fatalf("sockets %v are not two IPs times two ports", socks)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 1500)
	for on := stun.Primary; on <= stun.AltBoth; on++ {
		for _, flags := range []byte{0, stun.ChangePort, stun.ChangeIP, stun.ChangeIP | stun.ChangePort} {
			req := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest,
				pionstun.RawAttribute{Type: pionstun.AttrChangeRequest, Value: []byte{0, 0, 0, flags}})
			if _, err := conn.WriteToUDPAddrPort(req.Raw, socks[on]); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("to %s flags %#x: %v", on, flags, err)
			}
			want := on ^ stun.Socket(flags>>1&1) ^ stun.Socket(flags>>2&1)<<1
			if from != socks[want] {
				t.Errorf("to %s flags %#x: answer from %v, want %v (%s)", on, flags, from, socks[want], want)
			}
			m := &pionstun.Message{Raw: buf[:n]}
			if err := m.Decode(); err != nil {
				t.Fatal(err)
			}
			var ro pionstun.ResponseOrigin
			var oa pionstun.OtherAddress
			if ro.GetFrom(m) != nil || oa.GetFrom(m) != nil {
				t.Fatalf("to %s flags %#x: RESPONSE-ORIGIN or OTHER-ADDRESS missing", on, flags)
			}
			if ro.String() != socks[want].String() || oa.String() != socks[on^stun.AltBoth].String() {
				t.Errorf("to %s flags %#x: RESPONSE-ORIGIN %s OTHER-ADDRESS %s, want %s %s", on, flags, ro, oa, socks[want], socks[on^stun.AltBoth])
			}
		}
	}

	// RESPONSE-PORT sends the answer to another port of the source IP.
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	port := uint16(other.LocalAddr().(*net.UDPAddr).Port)
	req := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest,
		pionstun.RawAttribute{Type: pionstun.AttrResponsePort, Value: []byte{byte(port >> 8), byte(port), 0, 0}})
	if _, err := conn.WriteToUDPAddrPort(req.Raw, socks[stun.AltBoth]); err != nil {
		t.Fatal(err)
	}
	_ = other.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := other.ReadFromUDPAddrPort(buf)
	if err != nil || from != socks[stun.AltBoth] {
		t.Fatalf("RESPONSE-PORT: %v from %v", err, from)
	}
	m := &pionstun.Message{Raw: buf[:n]}
	var xa pionstun.XORMappedAddress
	if m.Decode() != nil || xa.GetFrom(m) != nil || xa.String() != conn.LocalAddr().String() {
		t.Errorf("RESPONSE-PORT: mapped %v, want the requesting socket %v", xa, conn.LocalAddr())
	}
}

// TestRFC5780TURN: TURN works on every one of the four sockets.
func TestRFC5780TURN(t *testing.T) {
	_, socks := rfc5780Server(t)
	peer := udpEcho(t, "127.0.0.1")
	for _, s := range socks {
		srv := net.UDPAddrFromAddrPort(s)
		c := newClient(t, dialClient(t, "udp", srv), srv, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
		relay, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocate on %v: %v", s, err)
		}
		echoThrough(t, relay, peer)
		_ = relay.Close()
	}
}

// TestNoRFC5780: without an alternate address CHANGE-REQUEST gets 420 and
// no response carries OTHER-ADDRESS.
func TestNoRFC5780(t *testing.T) {
	ts := startServer(t, nil)
	c := newRawClient(t, "127.0.0.1", ts.addr(t, "udp", "4"))
	m, err := c.do(pionstun.BindingRequest)
	if err != nil || m.Type != pionstun.BindingSuccess || m.Contains(pionstun.AttrOtherAddress) {
		t.Fatalf("binding: %v %v other-address %v", err, m, m != nil && m.Contains(pionstun.AttrOtherAddress))
	}
	m, err = c.do(pionstun.BindingRequest, pionstun.RawAttribute{Type: pionstun.AttrChangeRequest, Value: []byte{0, 0, 0, 6}})
	if err != nil || errorCode(m) != 420 {
		t.Fatalf("CHANGE-REQUEST: %v code %d, want 420", err, errorCode(m))
	}
}
