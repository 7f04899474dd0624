package turn

import (
	"net/netip"
	"testing"

	pionstun "github.com/pion/stun/v4"
)

// additional is an ADDITIONAL-ADDRESS-FAMILY attribute (RFC 8656 §18.11).
func additional(f byte) pionstun.Setter {
	return rawAttr{attrAdditionalAddressFamily, []byte{f, 0, 0, 0}}
}

// additionalDraft is the same attribute as coturn's clients send it.
func additionalDraft(f byte) pionstun.Setter {
	return rawAttr{attrAdditionalAddressFamilyDraft, []byte{f, 0, 0, 0}}
}

// checkSigned fails unless m's MESSAGE-INTEGRITY verifies with the test
// user's key and its FINGERPRINT is right.
func checkSigned(t *testing.T, m *pionstun.Message) {
	t.Helper()
	if err := pionstun.NewLongTermIntegrity(testUser, testRealm, testPass).Check(m); err != nil {
		t.Fatalf("MESSAGE-INTEGRITY: %v", err)
	}
	if err := pionstun.Fingerprint.Check(m); err != nil {
		t.Fatalf("FINGERPRINT: %v", err)
	}
}

func reasonOf(t *testing.T, m *pionstun.Message) string {
	t.Helper()
	var ec pionstun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		t.Fatal(err)
	}
	return string(ec.Reason)
}

// TestDualAllocation: an Allocate with ADDITIONAL-ADDRESS-FAMILY (RFC 8656
// §7.2) gets one IPv4 relayed address and an ADDRESS-ERROR-CODE saying IPv6
// was not allocated (440), signed; a retransmission gets the same answer;
// with REQUESTED-ADDRESS-FAMILY, or with the family IPv4, it is a 400.
func TestDualAllocation(t *testing.T) {
	srv := startServer(t, nil)
	for _, tc := range []struct {
		name     string
		listener string
		attr     func(byte) pionstun.Setter
		answer   pionstun.AttrType
	}{
		{"rfc8656/listener=ipv4", "4", additional, attrAddressErrorCode},
		{"rfc8656/listener=ipv6", "6", additional, attrAddressErrorCode},
		{"coturn/listener=ipv4", "4", additionalDraft, attrAddressErrorCodeDraft},
	} {
		listener := tc.listener
		t.Run(tc.name, func(t *testing.T) {
			local := map[string]string{"4": "127.0.0.1", "6": "::1"}[listener]
			c := newRawClient(t, local, srv.addr(t, "udp", listener))
			c.challenge()
			req, err := pionstun.Build(pionstun.TransactionID, pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest),
				requestedUDP(), tc.attr(0x02), pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm),
				pionstun.NewNonce(c.nonce), pionstun.NewLongTermIntegrity(testUser, testRealm, testPass), pionstun.Fingerprint)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 { // the second is a retransmission
				resp, err := c.send(req.Raw, req.TransactionID)
				if err != nil {
					t.Fatal(err)
				}
				if code := errorCode(resp); code != 0 {
					t.Fatalf("dual Allocate #%d: %d %s", i, code, reasonOf(t, resp))
				}
				checkSigned(t, resp)
				var relayed pionstun.XORMappedAddress
				if err := relayed.GetFromAs(resp, pionstun.AttrXORRelayedAddress); err != nil {
					t.Fatal(err)
				}
				if relayed.IP.To4() == nil {
					t.Fatalf("relayed address %v, want the IPv4 one", relayed.IP)
				}
				v, err := resp.Get(tc.answer)
				if err != nil {
					t.Fatalf("dual Allocate #%d: no ADDRESS-ERROR-CODE", i)
				}
				if len(v) < 4 || v[0] != 0x02 || int(v[2])*100+int(v[3]) != 440 || string(v[4:]) != "Address Family not Supported" {
					t.Fatalf("ADDRESS-ERROR-CODE %x, want IPv6 440", v)
				}
			}
		})
	}

	c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
	c.challenge()
	for name, attrs := range map[string][]pionstun.Setter{
		"with REQUESTED-ADDRESS-FAMILY": {requestedUDP(), additional(0x02), rawAttr{pionstun.AttrRequestedAddressFamily, []byte{0x01, 0, 0, 0}}},
		"IPv4":                          {requestedUDP(), additional(0x01)},
		"IPv4, coturn's numbering":      {requestedUDP(), additionalDraft(0x01)},
		"malformed":                     {requestedUDP(), rawAttr{attrAdditionalAddressFamily, []byte{0x02}}},
	} {
		resp := c.authed(pionstun.MethodAllocate, testUser, testPass, attrs...)
		if code := errorCode(resp); code != 400 {
			t.Fatalf("%s: %d, want 400", name, code)
		}
	}
}

// TestDualAllocationIPv6Only: with no IPv4 relay, a dual Allocate gets the
// IPv6 address and an ADDRESS-ERROR-CODE for IPv4.
func TestDualAllocationIPv6Only(t *testing.T) {
	srv := startServer(t, func(c *Config) {
		c.Relay.IPv4Bind, c.Relay.IPv4Public, c.Relay.NoIPv4 = netip.Addr{}, netip.Addr{}, true
	})
	c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
	c.challenge()
	resp := c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), additional(0x02))
	if code := errorCode(resp); code != 0 {
		t.Fatalf("dual Allocate: %d", code)
	}
	var relayed pionstun.XORMappedAddress
	if err := relayed.GetFromAs(resp, pionstun.AttrXORRelayedAddress); err != nil || relayed.IP.To4() != nil {
		t.Fatalf("relayed address %v (%v), want IPv6", relayed.IP, err)
	}
	if v, err := resp.Get(attrAddressErrorCode); err != nil || v[0] != 0x01 {
		t.Fatalf("ADDRESS-ERROR-CODE %x (%v), want IPv4", v, err)
	}
}

// TestErrorReasonPhrase: pion's error responses reach the client with the
// standard reason phrase (RFC 8489 §14.8), and one pion signed is still
// signed correctly.
func TestErrorReasonPhrase(t *testing.T) {
	srv := startServer(t, nil)
	c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
	c.challenge()
	if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	// A second Allocate on the same 5-tuple: pion's 437, unsigned.
	resp := c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())
	if code, reason := errorCode(resp), reasonOf(t, resp); code != 437 || reason != "Allocation Mismatch" {
		t.Fatalf("second Allocate: %d %q, want 437 \"Allocation Mismatch\"", code, reason)
	}
	if err := pionstun.Fingerprint.Check(resp); resp.Contains(pionstun.AttrFingerprint) && err != nil {
		t.Fatalf("FINGERPRINT: %v", err)
	}
	// An IPv6 peer on an IPv4 allocation: pion's 443, signed.
	resp = c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("::1", 5000))
	if code, reason := errorCode(resp), reasonOf(t, resp); code != 443 || reason != "Peer Address Family Mismatch" {
		t.Fatalf("CreatePermission: %d %q, want 443 \"Peer Address Family Mismatch\"", code, reason)
	}
	if !resp.Contains(pionstun.AttrMessageIntegrity) {
		t.Fatal("pion's signed 443 lost its MESSAGE-INTEGRITY")
	}
	if err := pionstun.NewLongTermIntegrity(testUser, testRealm, testPass).Check(resp); err != nil {
		t.Fatalf("MESSAGE-INTEGRITY: %v", err)
	}
	// A 401 challenge is unsigned and gets its phrase too.
	resp, err := c.do(pionstun.NewType(pionstun.MethodRefresh, pionstun.ClassRequest))
	if err != nil {
		t.Fatal(err)
	}
	if code, reason := errorCode(resp), reasonOf(t, resp); code != 401 || reason != "Unauthorized" {
		t.Fatalf("challenge: %d %q", code, reason)
	}
	srv.gate.mu.Lock()
	left := len(srv.gate.passed)
	srv.gate.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d passed requests left behind", left)
	}
}

// TestAllocationAttemptsAddUp: every authenticated, well-formed Allocate
// the gate passes to pion moves exactly one outcome of
// icegate_allocation_attempts_total: ok, pion's 437 (mismatch) and 420
// (error), and the user quota's 486.
func TestAllocationAttemptsAddUp(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Limits.AllocationsPerUser = 2 })
	server := srv.addr(t, "udp", "4")
	allocate := func(c *rawClient, attrs ...pionstun.Setter) int {
		return errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, append([]pionstun.Setter{requestedUDP()}, attrs...)...))
	}
	a, b, q, df := newRawClient(t, "127.0.0.1", server), newRawClient(t, "127.0.0.1", server),
		newRawClient(t, "127.0.0.1", server), newRawClient(t, "127.0.0.1", server)
	for _, c := range []*rawClient{a, b, q, df} {
		c.challenge()
	}
	for _, step := range []struct {
		c     *rawClient
		attrs []pionstun.Setter
		want  int
	}{
		{a, nil, 0},
		{a, nil, 437},
		{df, []pionstun.Setter{rawAttr{pionstun.AttrDontFragment, nil}}, 420},
		{b, nil, 0},
		{q, nil, 486},
	} {
		if code := allocate(step.c, step.attrs...); code != step.want {
			t.Fatalf("Allocate: %d, want %d", code, step.want)
		}
	}
	passed := counterValue(t, srv.metrics.Requests.WithLabelValues("Allocate", "pass"))
	want := map[string]float64{"ok": 2, "mismatch": 1, "error": 1, "user_quota": 1}
	var sum float64
	for _, outcome := range []string{"ok", "mismatch", "error", "user_quota", "total_quota", "range_full", "bind_error"} {
		got := counterValue(t, srv.metrics.AllocationsMade.WithLabelValues(outcome))
		if got != want[outcome] {
			t.Errorf("outcome %s: %v, want %v", outcome, got, want[outcome])
		}
		sum += got
	}
	if sum != passed || passed != 5 {
		t.Fatalf("outcomes add up to %v, Allocates passed to pion %v (want 5 each)", sum, passed)
	}
}
