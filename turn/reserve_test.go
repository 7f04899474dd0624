package turn

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"

	"icegate/internal/udploop"
)

// startLoops starts a server with four event loops, so that the kernel
// spreads clients over four SO_REUSEPORT listener sockets even on a machine
// with fewer cores.
func startLoops(t *testing.T, mutate func(*Config)) *testServer {
	t.Helper()
	if !udploop.Supported() {
		t.Skip("no event loops on this system")
	}
	srv := startServerWith(t, mutate, Options{Loops: 4})
	if len(srv.loops) != 4 {
		t.Fatalf("%d event loops, want 4", len(srv.loops))
	}
	return srv
}

func evenPort(r bool) pionstun.Setter {
	v := byte(0)
	if r {
		v = 0x80
	}
	return rawAttr{pionstun.AttrEvenPort, []byte{v}}
}

func tokenAttr(tok []byte) pionstun.Setter { return rawAttr{pionstun.AttrReservationToken, tok} }

var family6 = rawAttr{pionstun.AttrRequestedAddressFamily, []byte{2, 0, 0, 0}}

// relayedPort returns the port of the XOR-RELAYED-ADDRESS in a success response.
func relayedPort(t *testing.T, m *pionstun.Message) int {
	t.Helper()
	var a pionstun.XORMappedAddress
	if err := a.GetFromAs(m, pionstun.AttrXORRelayedAddress); err != nil {
		t.Fatalf("no XOR-RELAYED-ADDRESS in %v: %v", m, err)
	}
	return a.Port
}

// signed checks that m carries a MESSAGE-INTEGRITY made with alice's key
// (RFC 8489 §9.2.4: responses to authenticated requests are signed).
func signed(t *testing.T, m *pionstun.Message) {
	t.Helper()
	if err := pionstun.NewLongTermIntegrity(testUser, testRealm, testPass).Check(m); err != nil {
		t.Fatalf("response not signed with the request's key: %v (%v)", err, m)
	}
	if m.Contains(pionstun.AttrFingerprint) {
		if err := pionstun.Fingerprint.Check(m); err != nil {
			t.Fatalf("bad FINGERPRINT in the response: %v", err)
		}
	}
}

// challenged returns a raw UDP client from local with a nonce.
func challenged(t *testing.T, srv *testServer, local, family string) *rawClient {
	t.Helper()
	c := newRawClient(t, local, srv.addr(t, "udp", family))
	c.challenge()
	return c
}

// reserveEven allocates with EVEN-PORT and the R bit and returns the even
// relay port and the token.
func reserveEven(t *testing.T, c *rawClient, extra ...pionstun.Setter) (int, []byte) {
	t.Helper()
	resp := c.authed(pionstun.MethodAllocate, testUser, testPass, append([]pionstun.Setter{requestedUDP(), evenPort(true)}, extra...)...)
	if code := errorCode(resp); code != 0 {
		t.Fatalf("EVEN-PORT Allocate: code %d", code)
	}
	signed(t, resp)
	port := relayedPort(t, resp)
	if port%2 != 0 {
		t.Fatalf("EVEN-PORT gave odd port %d", port)
	}
	tok, err := resp.Get(pionstun.AttrReservationToken)
	if err != nil || len(tok) != 8 {
		t.Fatalf("no 8-byte RESERVATION-TOKEN with R=1: % x, %v", tok, err)
	}
	return port, tok
}

// TestReservationAcrossSockets: the RTP/RTCP pair of turnutils_uclient's
// default mode (EVEN-PORT with R=1, then RESERVATION-TOKEN from another
// client port) works whatever listener socket the kernel hands each request
// to. With four sockets and twelve pairs, a per-socket reservation table
// (pion's) fails this with probability 1-(1/4)^12. The token works once, the
// relay it gives relays, and the attempts metric counts two allocations per
// pair and no probe sockets.
func TestReservationAcrossSockets(t *testing.T) {
	srv := startLoops(t, func(c *Config) { c.Limits.AllocationsPerUser = NoLimit })
	echo := udpEcho(t, "127.0.0.1")
	const pairs = 12
	for i := range pairs {
		port, tok := reserveEven(t, challenged(t, srv, "127.0.0.1", "4"))
		c2 := challenged(t, srv, "127.0.0.1", "4")
		resp := c2.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), tokenAttr(tok))
		if code := errorCode(resp); code != 0 {
			t.Fatalf("pair %d: token Allocate: code %d", i, code)
		}
		signed(t, resp)
		if got := relayedPort(t, resp); got != port+1 {
			t.Fatalf("pair %d: token gave port %d, want %d", i, got, port+1)
		}
		if resp.Contains(pionstun.AttrReservationToken) {
			t.Fatalf("pair %d: the token Allocate got a token of its own", i)
		}
		if i == 0 {
			rawEcho(t, c2, echo)
		}
		// RFC 8656 §7.2 step 5: a used token is no longer valid: 508.
		c3 := challenged(t, srv, "127.0.0.1", "4")
		again := c3.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), tokenAttr(tok))
		if code := errorCode(again); code != 508 {
			t.Fatalf("pair %d: reused token: code %d, want 508", i, code)
		}
		signed(t, again)
	}
	if got := counterValue(t, srv.metrics.AllocationsMade.WithLabelValues("ok")); got != 2*pairs {
		t.Errorf("allocation attempts ok = %v, want %d (no probe sockets)", got, 2*pairs)
	}
	if got := counterValue(t, srv.metrics.AllocationsMade.WithLabelValues("token_invalid")); got != pairs {
		t.Errorf("allocation attempts token_invalid = %v, want %d", got, pairs)
	}
}

// rawEcho relays one datagram through c's allocation to the echo peer with a
// Send indication and expects it back in a Data indication (RFC 8656 §11).
func rawEcho(t *testing.T, c *rawClient, peerAddr *net.UDPAddr) {
	t.Helper()
	ip := peerAddr.IP.String()
	if code := errorCode(c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer(ip, peerAddr.Port))); code != 0 {
		t.Fatalf("CreatePermission: code %d", code)
	}
	want := []byte("through the reserved port")
	for range 5 {
		ind := pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodSend, pionstun.ClassIndication),
			peer(ip, peerAddr.Port), rawAttr{pionstun.AttrData, want})
		if _, err := c.conn.WriteTo(ind.Raw, c.server); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		_ = c.conn.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			continue
		}
		m := &pionstun.Message{Raw: buf[:n]}
		if m.Decode() != nil || m.Type.Method != pionstun.MethodData {
			continue
		}
		if d, err := m.Get(pionstun.AttrData); err == nil && string(d) == string(want) {
			return
		}
	}
	t.Fatal("no echo through the relay")
}

// twoPorts makes the relay range exactly one even port P and P+1, both
// free on 127.0.0.1 just now (other test processes share the machine), and
// returns P.
func twoPorts(t *testing.T) (func(*Config), int) {
	t.Helper()
	for p := 47000 + 2*rand.IntN(1000); ; p += 2 {
		if p > 48998 {
			p = 47000
		}
		a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		if err != nil {
			continue
		}
		b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p + 1})
		_ = a.Close()
		if err != nil {
			continue
		}
		_ = b.Close()
		return func(c *Config) { c.Relay.MinPort, c.Relay.MaxPort = p, p+1 }, p
	}
}

// TestReservationHoldsNextPort: P+1 is held for the token, against a plain
// allocation (which finds the range exhausted and says so) and against
// another program (the port is bound), until the token takes it.
func TestReservationHoldsNextPort(t *testing.T) {
	mutate, p := twoPorts(t)
	srv := startServer(t, mutate)
	port, tok := reserveEven(t, challenged(t, srv, "127.0.0.1", "4"))
	if port != p {
		t.Fatalf("even port %d, want %d", port, p)
	}
	plain := challenged(t, srv, "127.0.0.1", "4").authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())
	if code := errorCode(plain); code != 508 {
		t.Fatalf("plain Allocate while %d is reserved: code %d, want 508", p+1, code)
	}
	signed(t, plain)
	var ec pionstun.ErrorCodeAttribute
	_ = ec.GetFrom(plain)
	if !strings.Contains(string(ec.Reason), "range exhausted") {
		t.Errorf("508 reason %q, want the range named", ec.Reason)
	}
	if pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p + 1}); err == nil {
		_ = pc.Close()
		t.Fatalf("another program could bind the reserved port %d", p+1)
	}
	resp := challenged(t, srv, "127.0.0.1", "4").authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), tokenAttr(tok))
	if code := errorCode(resp); code != 0 || relayedPort(t, resp) != p+1 {
		t.Fatalf("token Allocate: code %d", code)
	}
	if got := counterValue(t, srv.metrics.AllocationsMade.WithLabelValues("range_full")); got != 1 {
		t.Errorf("allocation attempts range_full = %v, want 1", got)
	}
}

// TestReservationExpires: an unused token ends after its life (30 s, here
// shortened): P+1 is free again for anyone and the token is refused.
func TestReservationExpires(t *testing.T) {
	mutate, p := twoPorts(t)
	srv := startServer(t, mutate)
	srv.relays.res.life.Store(int64(200 * time.Millisecond))
	_, tok := reserveEven(t, challenged(t, srv, "127.0.0.1", "4"))
	deadline := time.Now().Add(5 * time.Second)
	for srv.relays.res.heldCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reservation never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p + 1})
	if err != nil {
		t.Fatalf("port %d still bound after the token expired: %v", p+1, err)
	}
	_ = pc.Close()
	resp := challenged(t, srv, "127.0.0.1", "4").authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), tokenAttr(tok))
	if code := errorCode(resp); code != 508 {
		t.Fatalf("expired token: code %d, want 508", code)
	}
	// The port is the allocator's again.
	plain := challenged(t, srv, "127.0.0.1", "4").authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())
	if code := errorCode(plain); code != 0 || relayedPort(t, plain) != p+1 {
		t.Fatalf("plain Allocate after expiry: code %d", code)
	}
}

// TestEvenPortWithoutReservation: R=0 asks for an even port only (RFC 8656
// §14.6): no token, and P+1 stays free for anyone.
func TestEvenPortWithoutReservation(t *testing.T) {
	mutate, p := twoPorts(t)
	srv := startServer(t, mutate)
	resp := challenged(t, srv, "127.0.0.1", "4").authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), evenPort(false))
	if code := errorCode(resp); code != 0 || relayedPort(t, resp) != p {
		t.Fatalf("EVEN-PORT R=0: code %d", code)
	}
	if resp.Contains(pionstun.AttrReservationToken) {
		t.Fatal("a token for R=0")
	}
	plain := challenged(t, srv, "127.0.0.1", "4").authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())
	if code := errorCode(plain); code != 0 || relayedPort(t, plain) != p+1 {
		t.Fatalf("plain Allocate next to an R=0 allocation: code %d", code)
	}
}

// TestReservationRefusals: the combinations RFC 8656 §7.2 step 5 and RFC
// 6062 §5.1 forbid are 400, an unknown token 508, all signed.
func TestReservationRefusals(t *testing.T) {
	srv := startServer(t, nil)
	_, tok := reserveEven(t, challenged(t, srv, "127.0.0.1", "4"))
	cases := []struct {
		name  string
		attrs []pionstun.Setter
		code  int
	}{
		{"token with EVEN-PORT", []pionstun.Setter{requestedUDP(), tokenAttr(tok), evenPort(false)}, 400},
		{"token with family", []pionstun.Setter{requestedUDP(), tokenAttr(tok), family6}, 400},
		{"unknown token", []pionstun.Setter{requestedUDP(), tokenAttr([]byte("12345678"))}, 508},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := challenged(t, srv, "127.0.0.1", "4").authed(pionstun.MethodAllocate, testUser, testPass, tc.attrs...)
			if code := errorCode(resp); code != tc.code {
				t.Fatalf("code %d, want %d", code, tc.code)
			}
			signed(t, resp)
		})
	}
	// The refusals did not spend the token.
	resp := challenged(t, srv, "127.0.0.1", "4").authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), tokenAttr(tok))
	if code := errorCode(resp); code != 0 {
		t.Fatalf("token after refusals: code %d", code)
	}
}

// TestReservationIPv6AndTCP: the pair works for IPv6 relays (the token
// names the family, so the token Allocate over IPv4 gets the IPv6 port), and
// for clients on TCP control connections, which pion serves with one
// allocation manager per listener.
func TestReservationIPv6AndTCP(t *testing.T) {
	srv := startLoops(t, nil)
	port, tok := reserveEven(t, challenged(t, srv, "::1", "6"), family6)
	resp := challenged(t, srv, "127.0.0.1", "4").authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), tokenAttr(tok))
	if code := errorCode(resp); code != 0 {
		t.Fatalf("IPv6 token Allocate: code %d", code)
	}
	var a pionstun.XORMappedAddress
	if err := a.GetFromAs(resp, pionstun.AttrXORRelayedAddress); err != nil || a.IP.To4() != nil || a.Port != port+1 {
		t.Fatalf("IPv6 token gave %v (%v), want [::1]:%d", a, err, port+1)
	}

	tcp := func() *rawClient {
		server := srv.addr(t, "tcp", "4")
		c := &rawClient{t: t, server: server, stream: dialClient(t, "tcp", server)}
		t.Cleanup(func() { _ = c.stream.Close() })
		c.challenge()
		return c
	}
	port, tok = reserveEven(t, tcp())
	second := tcp()
	resp = second.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), tokenAttr(tok))
	if code := errorCode(resp); code != 0 || relayedPort(t, resp) != port+1 {
		t.Fatalf("token Allocate over TCP: code %d", code)
	}
	signed(t, resp)
	if code := errorCode(tcp().authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), tokenAttr(tok))); code != 508 {
		t.Fatalf("reused token over TCP: code %d, want 508", code)
	}
}

// TestRelayBindFailure: a relay address that is not up (EADDRNOTAVAIL,
// with IP_FREEBIND off: Listen.NoFreeBind) is a
// 500 naming the bind failure, never 508 "insufficient capacity"; the log
// says which address and why, and the attempts metric counts it.
func TestRelayBindFailure(t *testing.T) {
	srv := startServer(t, func(c *Config) {
		c.Relay.IPv4Bind = netip.MustParseAddr("203.0.113.77") // documentation range, not on this host
		c.Relay.IPv4Public = netip.MustParseAddr("203.0.113.77")
		c.Listen.NoFreeBind = true // with IP_FREEBIND the bind would succeed
	})
	resp := challenged(t, srv, "127.0.0.1", "4").authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())
	if code := errorCode(resp); code != 500 {
		t.Fatalf("code %d, want 500", code)
	}
	signed(t, resp)
	var ec pionstun.ErrorCodeAttribute
	_ = ec.GetFrom(resp)
	if !strings.Contains(string(ec.Reason), "bound") {
		t.Errorf("reason %q does not say the bind failed", ec.Reason)
	}
	waitLog(t, srv, "203.0.113.77")
	if log := srv.log.String(); !strings.Contains(log, syscall.EADDRNOTAVAIL.Error()) || strings.Contains(log, "insufficient capacity") {
		t.Errorf("log does not name the bind error:\n%s", log)
	}
	if got := counterValue(t, srv.metrics.AllocationsMade.WithLabelValues("bind_error")); got != 1 {
		t.Errorf("allocation attempts bind_error = %v, want 1", got)
	}
}

// TestNoFreeBindLineForAddressesUp: addresses on an interface (the test
// server's loopback listeners and relays) bring no "bound before the
// address is up" line; a wildcard relay none either.
func TestNoFreeBindLineForAddressesUp(t *testing.T) {
	for _, wild := range []bool{false, true} {
		srv := startServer(t, func(c *Config) {
			if wild {
				c.Relay.IPv4Bind = netip.IPv4Unspecified()
			}
		})
		if log := srv.log.String(); strings.Contains(log, "bound before the address is up") {
			t.Errorf("wildcard relay %v: a line for an address that is up:\n%s", wild, log)
		}
	}
}

func waitLog(t *testing.T, srv *testServer, s string) {
	t.Helper()
	for range 100 {
		if strings.Contains(srv.log.String(), s) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("log never mentioned %q:\n%s", s, srv.log.String())
}

// TestChannelNumbers: ChannelBind takes RFC 5766's 0x4000-0x7FFF, which
// libwebrtc and uclient use, and refuses what no RFC allows with a signed 400.
func TestChannelNumbers(t *testing.T) {
	srv := startServer(t, nil)
	c := allocated(t, srv, "127.0.0.1")
	for i, tc := range []struct {
		n  uint16
		ok bool
	}{
		{0x0000, false}, {0x0001, false}, {0x3FFF, false},
		{0x4000, true}, {0x4FFF, true}, {0x5000, true}, {0x7FFF, true},
		{0x8000, false}, {0xBFFF, false}, {0xFFFF, false},
	} {
		num := rawAttr{pionstun.AttrChannelNumber, []byte{byte(tc.n >> 8), byte(tc.n), 0, 0}}
		resp := c.authed(pionstun.MethodChannelBind, testUser, testPass, num, peer("127.0.0.1", 20000+i))
		code := errorCode(resp)
		if tc.ok && code != 0 || !tc.ok && code != 400 {
			t.Errorf("channel %#04x: code %d, want accepted=%v (400 otherwise)", tc.n, code, tc.ok)
		}
		signed(t, resp)
	}
}

// TestMalformedAttributes: an attribute of the wrong size or an unknown
// value is a 400 signed with the request's key, not taken as absent. A
// request other than an Allocate is sent on an allocation, as a client
// would: without one, a well-formed request missing an attribute its
// method needs gets 437 first (RFC 8656 §5, TestAllocationMismatchRaw).
func TestMalformedAttributes(t *testing.T) {
	srv := startServer(t, nil)
	r := func(typ pionstun.AttrType, v ...byte) pionstun.Setter { return rawAttr{typ, v} }
	cases := []struct {
		name   string
		method pionstun.Method
		attrs  []pionstun.Setter
	}{
		{"LIFETIME 2 bytes", pionstun.MethodAllocate, []pionstun.Setter{requestedUDP(), r(pionstun.AttrLifetime, 0, 1)}},
		{"LIFETIME 1 byte on Refresh", pionstun.MethodRefresh, []pionstun.Setter{r(pionstun.AttrLifetime, 0)}},
		{"EVEN-PORT 0 bytes", pionstun.MethodAllocate, []pionstun.Setter{requestedUDP(), r(pionstun.AttrEvenPort)}},
		{"EVEN-PORT 4 bytes", pionstun.MethodAllocate, []pionstun.Setter{requestedUDP(), r(pionstun.AttrEvenPort, 0x80, 0, 0, 0)}},
		{"RESERVATION-TOKEN 3 bytes", pionstun.MethodAllocate, []pionstun.Setter{requestedUDP(), r(pionstun.AttrReservationToken, 1, 2, 3)}},
		{"REQUESTED-TRANSPORT 1 byte", pionstun.MethodAllocate, []pionstun.Setter{r(pionstun.AttrRequestedTransport, 17)}},
		{"REQUESTED-TRANSPORT missing", pionstun.MethodAllocate, nil},
		{"REQUESTED-ADDRESS-FAMILY 1 byte", pionstun.MethodAllocate, []pionstun.Setter{requestedUDP(), r(pionstun.AttrRequestedAddressFamily, 1)}},
		{"REQUESTED-ADDRESS-FAMILY 0x03", pionstun.MethodAllocate, []pionstun.Setter{requestedUDP(), r(pionstun.AttrRequestedAddressFamily, 3, 0, 0, 0)}},
		{"XOR-PEER-ADDRESS 5 bytes", pionstun.MethodCreatePermission, []pionstun.Setter{r(pionstun.AttrXORPeerAddress, 0, 1, 0, 0, 0)}},
		{"XOR-PEER-ADDRESS family 3", pionstun.MethodCreatePermission, []pionstun.Setter{r(pionstun.AttrXORPeerAddress, 0, 3, 0, 0, 1, 2, 3, 4)}},
		{"XOR-PEER-ADDRESS missing", pionstun.MethodCreatePermission, nil},
		{"CHANNEL-NUMBER 2 bytes", pionstun.MethodChannelBind, []pionstun.Setter{r(pionstun.AttrChannelNumber, 0x40, 0), peer("127.0.0.1", 9)}},
		{"CHANNEL-NUMBER missing", pionstun.MethodChannelBind, []pionstun.Setter{peer("127.0.0.1", 9)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := challenged(t, srv, "127.0.0.1", "4")
			if tc.method != pionstun.MethodAllocate {
				if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 0 {
					t.Fatalf("Allocate: %d", code)
				}
			}
			resp := c.authed(tc.method, testUser, testPass, tc.attrs...)
			if code := errorCode(resp); code != 400 {
				t.Fatalf("code %d, want 400", code)
			}
			signed(t, resp)
		})
	}
}

// TestBadFingerprintDropped: a Binding whose FINGERPRINT is wrong is
// discarded unanswered and counted (RFC 8489 §7.3), on the fast Binding path
// (both I/O paths), on the full path (a Binding with other attributes) and
// over TCP.
func TestBadFingerprintDropped(t *testing.T) {
	corrupt := func(extra ...pionstun.Setter) []byte {
		m := pionstun.MustBuild(append(append([]pionstun.Setter{pionstun.TransactionID, pionstun.BindingRequest}, extra...), pionstun.Fingerprint)...)
		raw := append([]byte(nil), m.Raw...)
		raw[len(raw)-1] ^= 0xFF
		return raw
	}
	for _, portable := range []bool{false, true} {
		srv := startServerIO(t, nil, portable)
		c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
		for _, raw := range [][]byte{corrupt(), corrupt(pionstun.NewUsername("x"))} {
			var tx [pionstun.TransactionIDSize]byte
			copy(tx[:], raw[8:20])
			if resp, err := c.send(raw, tx); !errors.Is(err, errTimeout) {
				t.Fatalf("portable=%v: a Binding with a bad FINGERPRINT was answered: %v", portable, resp)
			}
		}
		// The same requests with a good FINGERPRINT are answered.
		if _, err := c.do(pionstun.BindingRequest, pionstun.Fingerprint); err != nil {
			t.Fatalf("portable=%v: good Binding: %v", portable, err)
		}
		if got := counterValue(t, srv.metrics.Dropped.WithLabelValues("bad_fingerprint")); got != 2 {
			t.Errorf("portable=%v: bad_fingerprint drops = %v, want 2", portable, got)
		}
		if portable {
			continue
		}
		server := srv.addr(t, "tcp", "4")
		tc := &rawClient{t: t, server: server, stream: dialClient(t, "tcp", server)}
		raw := corrupt()
		var tx [pionstun.TransactionIDSize]byte
		copy(tx[:], raw[8:20])
		if resp, err := tc.send(raw, tx); !errors.Is(err, errTimeout) {
			t.Fatalf("TCP: a Binding with a bad FINGERPRINT was answered: %v", resp)
		}
		_ = tc.stream.Close()
	}
}

// TestReservationRetransmit: a retransmitted EVEN-PORT Allocate (same
// transaction, RFC 8489 §6.2.1) gets pion's cached success with the same
// token again, not a 437 and not a second reservation.
func TestReservationRetransmit(t *testing.T) {
	srv := startServer(t, nil)
	c := challenged(t, srv, "127.0.0.1", "4")
	req := pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest),
		requestedUDP(), evenPort(true), pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm),
		pionstun.NewNonce(c.nonce), pionstun.NewLongTermIntegrity(testUser, testRealm, testPass), pionstun.Fingerprint)
	var tokens [2][]byte
	for i := range tokens {
		resp, err := c.send(req.Raw, req.TransactionID)
		if err != nil {
			t.Fatalf("try %d: %v", i, err)
		}
		if code := errorCode(resp); code != 0 {
			t.Fatalf("try %d: code %d", i, code)
		}
		signed(t, resp)
		if tokens[i], err = resp.Get(pionstun.AttrReservationToken); err != nil {
			t.Fatalf("try %d: no token", i)
		}
	}
	if string(tokens[0]) != string(tokens[1]) {
		t.Fatalf("retransmission got token % x, first answer % x", tokens[1], tokens[0])
	}
	if n := srv.relays.res.heldCount(); n != 1 {
		t.Fatalf("%d ports held, want 1", n)
	}
}
