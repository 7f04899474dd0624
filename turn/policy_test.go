package turn

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
)

// defaultPolicy drops the loopback preset of the base test config, so the
// built-in rules apply as in production, and advertises documentation
// addresses (as behind 1:1 NAT) so that loopback is not the server's own
// relay address.
func defaultPolicy(c *Config) {
	c.Policy.Presets = nil
	c.Relay.IPv4Public = netip.MustParseAddr("203.0.113.10")
	c.Relay.IPv6Public = netip.MustParseAddr("2001:db8::10")
}

// allocated returns a raw client holding a UDP allocation on srv.
func allocated(t *testing.T, srv *testServer, local string) *rawClient {
	t.Helper()
	c := newRawClient(t, local, srv.addr(t, "udp", "4"))
	c.challenge()
	if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 0 {
		t.Fatalf("allocate: code %d", code)
	}
	return c
}

// TestPolicyDenies: every built-in range and every IPv4-in-IPv6 spelling of
// loopback and the cloud metadata address get 403 for CreatePermission and
// ChannelBind (RFC 8656 §9.2, §11.2) on an allocation of the address's
// family; on the other family the refusal may be RFC 6156's 443 instead, but
// never a success.
func TestPolicyDenies(t *testing.T) {
	srv := startServer(t, defaultPolicy)
	c4 := allocated(t, srv, "127.0.0.1")
	c6 := newRawClient(t, "::1", srv.addr(t, "udp", "6"))
	c6.challenge()
	fam6 := rawAttr{pionstun.AttrRequestedAddressFamily, []byte{2, 0, 0, 0}}
	if code := errorCode(c6.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), fam6)); code != 0 {
		t.Fatalf("allocate v6: %d", code)
	}
	denied := []string{
		"127.0.0.1", "127.1.2.3", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1",
		"169.254.169.254", "169.254.1.1", "224.0.0.1", "255.255.255.255", "0.0.0.1", "240.0.0.1",
		"192.0.2.1", "198.51.100.1", "203.0.113.1", "198.18.0.1",
		// IPv4-in-IPv6 spellings of loopback and metadata (CVE-2026-27624 class).
		"::ffff:127.0.0.1", "::ffff:7f00:1", "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b:1::7f00:1",
		"2002:7f00:1::1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1",
		"2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo, client 127.0.0.1 obfuscated
		// IPv6 ranges.
		"::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1", "2001::1", "2002::1", "2001:db8::1",
	}
	chn := uint16(0x4000)
	for _, ip := range denied {
		t.Run(ip, func(t *testing.T) {
			a := netip.MustParseAddr(ip)
			own, other := c6, c4
			if a.Is4() || a.Is4In6() {
				own, other = c4, c6
			}
			for _, c := range []*rawClient{own, other} {
				chn++
				codes := []int{
					errorCode(c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer(ip, 9))),
					errorCode(c.authed(pionstun.MethodChannelBind, testUser, testPass,
						rawAttr{pionstun.AttrChannelNumber, []byte{byte(chn >> 8), byte(chn), 0, 0}}, peer(ip, 9))),
				}
				for i, code := range codes {
					method := []string{"CreatePermission", "ChannelBind"}[i]
					if c == own && code != 403 {
						t.Errorf("%s %s on its own family: code %d, want 403", method, ip, code)
					}
					if c == other && code != 403 && code != 443 {
						t.Errorf("%s %s on the other family: code %d, want 403 or 443", method, ip, code)
					}
				}
			}
		})
	}
	if !strings.Contains(srv.log.String(), "rule=cloud-metadata") {
		t.Errorf("denials are not logged with their rule:\n%s", srv.log.String())
	}
	// Public peers are admitted (nothing is sent to them).
	if code := errorCode(c4.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("8.8.8.8", 9))); code != 0 {
		t.Fatalf("public peer: code %d", code)
	}
	if code := errorCode(c6.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("2606:4700::1111", 9))); code != 0 {
		t.Errorf("public IPv6 peer: code %d", code)
	}
}

// TestPolicyAllowAndRelayToRelay: an allow entry admits a denied range, and
// two clients of one server can talk relay to relay although the relay
// address is loopback and loopback is denied.
func TestPolicyAllowAndRelayToRelay(t *testing.T) {
	srv := startServer(t, func(c *Config) {
		c.Policy.Presets = nil
		c.Policy.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	})
	server := srv.addr(t, "udp", "4")

	// Allowed by the allow entry: an echo peer on 127.0.0.2.
	ca := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	ra, err := ca.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	echoThrough(t, ra, udpEcho(t, "127.0.0.2"))

	// Relay to relay over the server's own (loopback) address.
	cb := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	rb, err := cb.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	// Each side permits the other's relay address.
	if err := ca.CreatePermission(rb.LocalAddr()); err != nil {
		t.Fatalf("A permits B's relay: %v", err)
	}
	if err := cb.CreatePermission(ra.LocalAddr()); err != nil {
		t.Fatalf("B permits A's relay: %v", err)
	}
	msg := []byte("relay to relay")
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 100)
		_ = rb.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := rb.ReadFrom(buf)
		if err == nil {
			got <- string(buf[:n])
		}
		close(got)
	}()
	for range 5 {
		if _, err := ra.WriteTo(msg, rb.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if s != string(msg) {
				t.Fatalf("B got %q", s)
			}
			goto done
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Fatal("relay to relay: nothing arrived")
done:
	// The server's own address is reachable only on relay ports: a service
	// on 127.0.0.1 outside the range is not.
	c := allocated(t, srv, "127.0.0.1")
	if code := errorCode(c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("127.0.0.3", 22))); code != 403 {
		t.Fatalf("other loopback address: code %d, want 403", code)
	}
	svc := udpEcho(t, "127.0.0.1")
	for svc.Port >= 40000 && svc.Port <= 40999 { // ephemeral ports overlap the test's relay range
		svc = udpEcho(t, "127.0.0.1")
	}
	ra2, err := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer ra2.Close()
	_, _ = ra2.WriteTo([]byte("probe"), svc)
	_ = ra2.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
	if _, _, err := ra2.ReadFrom(make([]byte, 100)); err == nil {
		t.Fatalf("relayed to a non-relay port on the server's own address %v", svc)
	}
	// The drop is counted and explained in the log, and a channel to that
	// port (which names the port) is refused outright, with its reason.
	if n := counterValue(t, srv.metrics.Dropped.WithLabelValues("self_port")); n < 1 {
		t.Fatalf("self_port drops counted: %v", n)
	}
	if log := srv.log.String(); !strings.Contains(log, "relayed data dropped") || !strings.Contains(log, "policy.allow") {
		t.Fatalf("the drop is not explained in the log:\n%s", log)
	}
	// (pion's client may have tried a channel for the probe already.)
	before := counterValue(t, srv.metrics.PeerDenials.WithLabelValues("self_port"))
	chn := rawAttr{pionstun.AttrChannelNumber, []byte{0x40, 0x01, 0, 0}}
	if code := errorCode(c.authed(pionstun.MethodChannelBind, testUser, testPass, chn, peer("127.0.0.1", svc.Port))); code != 403 {
		t.Fatalf("channel to a non-relay port on the server's own address: code %d, want 403", code)
	}
	if n := counterValue(t, srv.metrics.PeerDenials.WithLabelValues("self_port")); n != before+1 {
		t.Fatalf("self_port refusals counted: %v, want %v", n, before+1)
	}
	if !strings.Contains(srv.log.String(), "rule=self_port") {
		t.Fatalf("the refused channel is not explained in the log:\n%s", srv.log.String())
	}
	// So is an RFC 6062 Connect, which names the port too (the gate sees it
	// before pion, whatever the transport).
	if code := errorCode(c.authed(pionstun.MethodConnect, testUser, testPass, peer("127.0.0.1", svc.Port))); code != 403 {
		t.Fatalf("connect to a non-relay port on the server's own address: code %d, want 403", code)
	}
	if n := counterValue(t, srv.metrics.PeerDenials.WithLabelValues("self_port")); n != before+2 {
		t.Fatalf("self_port refusals counted: %v, want %v", n, before+2)
	}
}

// TestLimits: per-user quota 486, exhausted range 508, permission cap 508,
// lifetime cap, and 440 for an unconfigured family.
func TestLimits(t *testing.T) {
	t.Run("user quota 486", func(t *testing.T) {
		srv := startServer(t, func(c *Config) { c.Limits.AllocationsPerUser = 1 })
		allocated(t, srv, "127.0.0.1")
		c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
		c.challenge()
		if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 486 {
			t.Fatalf("second allocation: code %d, want 486", code)
		}
		// Another user is not affected.
		if code := errorCode(c.authed(pionstun.MethodAllocate, "bob", "builder", requestedUDP())); code != 0 {
			t.Fatalf("other user: code %d", code)
		}
	})
	t.Run("port range exhausted 508", func(t *testing.T) {
		srv := startServer(t, func(c *Config) { c.Relay.MinPort, c.Relay.MaxPort = 41000, 41002 })
		for i := range 3 {
			c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
			c.challenge()
			if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 0 {
				t.Fatalf("allocation %d of 3: code %d", i+1, code)
			}
		}
		c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
		c.challenge()
		if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 508 {
			t.Fatalf("allocation beyond the range: code %d, want 508", code)
		}
	})
	t.Run("total quota 508", func(t *testing.T) {
		srv := startServer(t, func(c *Config) { c.Limits.AllocationsTotal = 1 })
		allocated(t, srv, "127.0.0.1")
		c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
		c.challenge()
		if code := errorCode(c.authed(pionstun.MethodAllocate, "bob", "builder", requestedUDP())); code != 508 {
			t.Fatalf("allocation beyond the total: code %d, want 508", code)
		}
	})
	t.Run("permissions per allocation 508", func(t *testing.T) {
		srv := startServer(t, func(c *Config) { c.Limits.PermissionsPerAllocation = 2 })
		c := allocated(t, srv, "127.0.0.1")
		for _, ip := range []string{"8.8.8.8", "8.8.4.4", "8.8.8.8"} { // a refresh does not count
			if code := errorCode(c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer(ip, 9))); code != 0 {
				t.Fatalf("permission %s: code %d", ip, code)
			}
		}
		if code := errorCode(c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("1.1.1.1", 9))); code != 508 {
			t.Fatalf("third permission: code %d, want 508", code)
		}
	})
	t.Run("lifetime capped", func(t *testing.T) {
		srv := startServer(t, func(c *Config) { c.Limits.DefaultLifetime, c.Limits.MaxLifetime = time.Minute, 5*time.Minute })
		c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
		c.challenge()
		resp := c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), lifetime(3000))
		v, err := resp.Get(pionstun.AttrLifetime)
		if err != nil || len(v) != 4 {
			t.Fatalf("no lifetime in %v", resp)
		}
		if got := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3]); got != 300 {
			t.Fatalf("lifetime %d, want 300", got)
		}
	})
	t.Run("family not configured 440", func(t *testing.T) {
		srv := startServer(t, func(c *Config) { c.Relay.NoIPv6 = true })
		c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
		c.challenge()
		fam6 := rawAttr{pionstun.AttrRequestedAddressFamily, []byte{2, 0, 0, 0}}
		if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), fam6)); code != 440 {
			t.Fatalf("IPv6 allocation without IPv6 relays: code %d, want 440", code)
		}
		// A client on the IPv6 listener that names no family falls back to IPv4.
		c6 := newRawClient(t, "::1", srv.addr(t, "udp", "6"))
		c6.challenge()
		resp := c6.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())
		if code := errorCode(resp); code != 0 {
			t.Fatalf("IPv6 listener, no family: code %d", code)
		}
	})
}

// TestMalformedInput: garbage on every transport is counted and dropped;
// neighbours keep working and the server does not fall over.
func TestMalformedInput(t *testing.T) {
	srv := startServer(t, nil)
	server := srv.addr(t, "udp", "4")
	junk := [][]byte{
		{}, {0}, {0x00, 0x01, 0x00, 0x00}, // short
		append([]byte{0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42}, make([]byte, 12)...), // length beyond the data
		append([]byte{0x00, 0x03, 0x00, 0x04, 0x21, 0x12, 0xA4, 0x42}, make([]byte, 16)...), // attribute header cut
		{0x40, 0x00, 0xFF, 0xFF, 1, 2, 3}, // ChannelData with a lying length
		[]byte(strings.Repeat("GET / HTTP/1.1\r\n", 10)),
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, j := range junk {
		_, _ = pc.WriteTo(j, server)
	}
	// A TCP client sending garbage is disconnected; others are not.
	tc, err := net.Dial("tcp", srv.addr(t, "tcp", "4").String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tc.Write([]byte("\xff\xff\xff\xff not stun at all"))
	_ = tc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := tc.Read(make([]byte, 10)); err == nil {
		t.Fatal("garbage TCP stream was answered instead of closed")
	}
	tc.Close()

	// The neighbour still gets an allocation and relays.
	c := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	echoThrough(t, relay, udpEcho(t, "127.0.0.1"))
	if got := counterValue(t, srv.metrics.Dropped.WithLabelValues("malformed")); got < 3 {
		t.Fatalf("malformed drops counted: %v", got)
	}
}

// TestDrain: while draining, new allocations get 508 and live ones relay.
func TestDrain(t *testing.T) {
	srv := startServer(t, nil)
	server := srv.addr(t, "udp", "4")
	c := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	echo := udpEcho(t, "127.0.0.1")
	ctx := withTimeout(t, 400*time.Millisecond)
	if left := srv.Drain(ctx); left != 1 {
		t.Fatalf("drain left %d allocations, want 1 (the grace period ended first)", left)
	}
	echoThrough(t, relay, echo)
	raw := newRawClient(t, "127.0.0.1", server)
	raw.challenge()
	if code := errorCode(raw.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 508 {
		t.Fatalf("allocation while draining: %d, want 508", code)
	}
	_ = relay.Close() // refresh 0 deletes the allocation
	if left := srv.Drain(withTimeout(t, 3*time.Second)); left != 0 {
		t.Fatalf("drain after the client left: %d allocations", left)
	}
}

// TestUndrainAfterRetire: an undrain (the admin API's) takes back a drain,
// but not the shutdown's: once Drain (or Retire) began, a new Allocate
// still gets 508.
func TestUndrainAfterRetire(t *testing.T) {
	srv := startServer(t, nil)
	server := srv.addr(t, "udp", "4")
	allocate := func() int {
		raw := newRawClient(t, "127.0.0.1", server)
		raw.challenge()
		return errorCode(raw.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP()))
	}
	if !srv.StopAllocating() || srv.StopAllocating() {
		t.Fatal("StopAllocating: want true, then false")
	}
	if changed, err := srv.ResumeAllocating(); !changed || err != nil {
		t.Fatalf("undrain: %v %v, want true <nil>", changed, err)
	}
	if code := allocate(); code != 0 {
		t.Fatalf("allocation after undrain: %d, want success", code)
	}
	c := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	if _, err := c.Allocate(); err != nil { // keeps the drain below waiting
		t.Fatal(err)
	}
	done := make(chan int)
	go func() { done <- srv.Drain(withTimeout(t, 500*time.Millisecond)) }()
	deadline := time.Now().Add(2 * time.Second)
	for !srv.Draining() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if changed, err := srv.ResumeAllocating(); changed || !errors.Is(err, ErrRetired) {
		t.Fatalf("undrain during the shutdown's drain: %v %v, want false ErrRetired", changed, err)
	}
	if !srv.Draining() {
		t.Fatal("not draining after a refused undrain")
	}
	if code := allocate(); code != 508 {
		t.Fatalf("allocation after a refused undrain: %d, want 508", code)
	}
	<-done
}
