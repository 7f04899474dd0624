package turn

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
)

// alternateAsk records what the gate asked Options.Alternate.
type alternateAsk struct {
	mu   sync.Mutex
	asks []string
}

func (a *alternateAsk) add(transport string, v6 bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fam := "4"
	if v6 {
		fam = "6"
	}
	a.asks = append(a.asks, transport+fam)
}

// checkTryAlternate checks a 300 on the wire: ALTERNATE-SERVER is want,
// REALM the alternate's, ALTERNATE-DOMAIN present exactly when domain is
// set, and the response signed with the request's key.
func checkTryAlternate(t *testing.T, resp *pionstun.Message, want netip.AddrPort, realm, domain string) {
	t.Helper()
	if code := errorCode(resp); code != 300 {
		t.Fatalf("code %d, want 300 Try Alternate", code)
	}
	var alt pionstun.AlternateServer
	if err := alt.GetFrom(resp); err != nil {
		t.Fatalf("no ALTERNATE-SERVER: %v", err)
	}
	ip, _ := netip.AddrFromSlice(alt.IP)
	if got := netip.AddrPortFrom(ip.Unmap(), uint16(alt.Port)); got != want {
		t.Errorf("ALTERNATE-SERVER %v, want %v", got, want)
	}
	var r pionstun.Realm
	if err := r.GetFrom(resp); err != nil || r.String() != realm {
		t.Errorf("REALM %q (%v), want the alternate's %q", r.String(), err, realm)
	}
	d, err := resp.Get(pionstun.AttrAlternateDomain)
	switch {
	case domain == "" && err == nil:
		t.Errorf("ALTERNATE-DOMAIN %q over a transport without TLS", d)
	case domain != "" && string(d) != domain:
		t.Errorf("ALTERNATE-DOMAIN %q (%v), want %q", d, err, domain)
	}
	if err := pionstun.NewLongTermIntegrity(testUser, testRealm, testPass).Check(resp); err != nil {
		t.Errorf("the 300 is not signed with the request's key: %v", err)
	}
	if err := pionstun.Fingerprint.Check(resp); err != nil {
		t.Errorf("FINGERPRINT: %v", err)
	}
}

// TestTryAlternate: a draining server answers a new Allocate with 300 Try
// Alternate naming the server Options.Alternate picks (RFC 8489 §10), and a
// client that follows it allocates and relays there; without an alternate
// it is 508 as before.
func TestTryAlternate(t *testing.T) {
	const realmB = "b.example.org"
	b := startServer(t, func(c *Config) { c.Realm = realmB })
	bUDP := addrPortOf(b.addr(t, "udp", "4"))
	bTLS := addrPortOf(b.addr(t, "tls", "4"))
	var asked alternateAsk
	var none atomic.Bool
	a := startServerWith(t, nil, Options{PortableIO: true, Alternate: func(transport string, v6 bool) (Alternate, bool) {
		asked.add(transport, v6)
		if none.Load() {
			return Alternate{}, false
		}
		ap := bUDP
		if transport == "tls" {
			ap = bTLS
		}
		return Alternate{Addr: ap, Realm: realmB, Domain: "b.example.org", Node: "b"}, true
	}})
	server := a.addr(t, "udp", "4")

	// A live allocation keeps relaying while new ones go elsewhere.
	c := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	echo := udpEcho(t, "127.0.0.1")
	a.StopAllocating()
	echoThrough(t, relay, echo)

	raw := newRawClient(t, "127.0.0.1", server)
	raw.challenge()
	resp := raw.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())
	checkTryAlternate(t, resp, bUDP, realmB, "")

	// Follow it as libwebrtc does: the alternate's address, the 300's
	// REALM; the allocation is made and relays there.
	var alt pionstun.AlternateServer
	_ = alt.GetFrom(resp)
	var realm pionstun.Realm
	_ = realm.GetFrom(resp)
	altAddr := &net.UDPAddr{IP: alt.IP, Port: alt.Port}
	pc := dialClient(t, "udp", altAddr)
	fc, err := pionturn.NewClient(&pionturn.ClientConfig{STUNServerAddr: altAddr.String(), TURNServerAddr: altAddr.String(),
		Conn: pc, Username: testUser, Password: testPass, Realm: realm.String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fc.Close(); _ = pc.Close() })
	if err := fc.Listen(); err != nil {
		t.Fatal(err)
	}
	relayB, err := fc.Allocate()
	if err != nil {
		t.Fatalf("allocating at the alternate: %v", err)
	}
	echoThrough(t, relayB, echo)
	if n := b.AllocationCount(); n != 1 {
		t.Errorf("the alternate holds %d allocations, want 1", n)
	}

	// Over TLS: the alternate's TLS port, and ALTERNATE-DOMAIN.
	tlsAddr := a.addr(t, "tls", "4")
	conn, err := tlsDial(tlsAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	rt := &rawClient{t: t, stream: pionturn.NewSTUNConn(conn), server: tlsAddr}
	rt.challenge()
	checkTryAlternate(t, rt.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP()), bTLS, realmB, "b.example.org")

	// IPv6 client: the family is asked for.
	raw6 := newRawClient(t, "::1", a.addr(t, "udp", "6"))
	raw6.challenge()
	checkTryAlternate(t, raw6.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP()), bUDP, realmB, "")
	asked.mu.Lock()
	if got := asked.asks; len(got) != 3 || got[0] != "udp4" || got[1] != "tls4" || got[2] != "udp6" {
		t.Errorf("Alternate asked for %q, want udp4 tls4 udp6", got)
	}
	asked.mu.Unlock()

	// No alternate known: 508 as before.
	none.Store(true)
	if code := errorCode(raw.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 508 {
		t.Errorf("draining without an alternate: %d, want 508", code)
	}
	if got := counterValue(t, a.metrics.Requests.WithLabelValues(methodLabel(pionstun.MethodAllocate), "try_alternate")); got != 3 {
		t.Errorf("try_alternate counted %v, want 3", got)
	}
	_ = relay.Close()
}

// TestTryAlternateFull: at limits.allocations_total a new Allocate gets
// 300 when an alternate is known, 508 when not; a retransmission of the
// Allocate that made the last allocation still gets its success.
func TestTryAlternateFull(t *testing.T) {
	alt := netip.MustParseAddrPort("127.0.0.1:3478")
	var none atomic.Bool
	a := startServerWith(t, func(c *Config) { c.Limits.AllocationsTotal = 1 }, Options{PortableIO: true,
		Alternate: func(string, bool) (Alternate, bool) { return Alternate{Addr: alt, Realm: testRealm}, !none.Load() }})
	server := a.addr(t, "udp", "4")
	raw := newRawClient(t, "127.0.0.1", server)
	raw.challenge()
	req, err := pionstun.Build(pionstun.TransactionID, pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP(),
		pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm), pionstun.NewNonce(raw.nonce),
		pionstun.NewLongTermIntegrity(testUser, testRealm, testPass), pionstun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := raw.send(req.Raw, req.TransactionID)
	if err != nil || ok.Type.Class != pionstun.ClassSuccessResponse {
		t.Fatalf("first Allocate: %v %v", ok, err)
	}
	again, err := raw.send(req.Raw, req.TransactionID)
	if err != nil || again.Type.Class != pionstun.ClassSuccessResponse {
		t.Fatalf("retransmitted Allocate at the cap: %v %v, want its success again", again, err)
	}
	other := newRawClient(t, "127.0.0.1", server)
	other.challenge()
	checkTryAlternate(t, other.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP()), alt, testRealm, "")
	none.Store(true)
	if code := errorCode(other.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 508 {
		t.Errorf("full without an alternate: %d, want 508", code)
	}
}

// TestNonce: Server.Nonce gives a nonce the server accepts at once (an
// authenticated Allocate with it succeeds, no 438), from a UDP listener or,
// without one, a TCP one; it is reused for half an hour.
func TestNonce(t *testing.T) {
	for _, noUDP := range []bool{false, true} {
		srv := startServer(t, func(c *Config) { c.Listen.NoUDP = noUDP })
		ctx := withTimeout(t, 5*time.Second)
		nonce, err := srv.Nonce(ctx)
		if err != nil || nonce == "" {
			t.Fatalf("noUDP=%v: Nonce: %q %v", noUDP, nonce, err)
		}
		again, _ := srv.Nonce(ctx)
		if again != nonce {
			t.Errorf("noUDP=%v: a second Nonce probed again (%q, then %q)", noUDP, nonce, again)
		}
		if noUDP {
			continue
		}
		raw := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
		raw.nonce = nonce // never challenged: the nonce came from Nonce
		if resp := raw.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP()); resp.Type.Class != pionstun.ClassSuccessResponse {
			t.Fatalf("Allocate with Nonce's nonce: code %d", errorCode(resp))
		}
	}
}
