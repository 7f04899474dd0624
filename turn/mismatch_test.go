package turn

import (
	"errors"
	"testing"
	"time"

	"icegate/auth"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
)

// checkMismatch fails unless resp is a 437 with its reason phrase, signed
// with the test user's key and with a FINGERPRINT.
func checkMismatch(t *testing.T, what string, resp *pionstun.Message) {
	t.Helper()
	if code, reason := errorCode(resp), reasonOf(t, resp); code != 437 || reason != "Allocation Mismatch" {
		t.Fatalf("%s: %d %q, want 437 \"Allocation Mismatch\"", what, code, reason)
	}
	if !resp.Contains(pionstun.AttrFingerprint) {
		t.Fatalf("%s: 437 without FINGERPRINT", what)
	}
	checkSigned(t, resp)
}

// TestAllocationMismatch: a pion client whose allocation ended gets 437
// (Allocation Mismatch, RFC 8656 §5) on its next CreatePermission and
// Refresh, signed, at once, instead of waiting for its transaction to time
// out (pion drops such requests). Over UDP the allocation is kicked; over
// TCP a kick closes the connection as well (TestKick), so there the relay
// socket is closed as a reload's revocation closes it (Server.end), which
// leaves the connection open, as an expiry does.
func TestAllocationMismatch(t *testing.T) {
	for _, tc := range []struct{ transport, end string }{
		{"udp", "kick"},
		{"udp", "relay-closed"},
		{"tcp", "relay-closed"},
	} {
		t.Run(tc.transport+"/"+tc.end, func(t *testing.T) {
			srv := startServer(t, nil)
			echo := udpEcho(t, "127.0.0.1")
			other := udpEcho(t, "127.0.0.2") // a new peer IP: the client needs a CreatePermission
			server := srv.addr(t, tc.transport, "4")
			c := newClient(t, dialClient(t, tc.transport, server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
			relay, err := c.Allocate()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = relay.Close() })
			echoThrough(t, relay, echo)
			waitAllocations(t, srv, 1)

			live := srv.allocs.snapshot()
			if len(live) != 1 {
				t.Fatalf("%d live allocations, want 1", len(live))
			}
			switch tc.end {
			case "kick":
				list := srv.Allocations(AllocationFilter{User: testUser})
				if len(list) != 1 || !srv.Kick(list[0].ID, "test") {
					t.Fatalf("kick failed: %+v", list)
				}
			case "relay-closed":
				srv.end(live[0], "test")
			}
			waitAllocations(t, srv, 0)

			start := time.Now()
			err = c.CreatePermission(other)
			var te *pionstun.TurnError
			if !errors.As(err, &te) || te.ErrorCodeAttr.Code != pionstun.CodeAllocMismatch {
				t.Fatalf("CreatePermission after the allocation ended: %v (%T), want a 437 TurnError", err, err)
			}
			if string(te.ErrorCodeAttr.Reason) != "Allocation Mismatch" {
				t.Errorf("reason %q", te.ErrorCodeAttr.Reason)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the 437 took %v", d)
			}

			// Refresh through the client's own transactions: first without
			// credentials, which still gets its 401 (authentication comes
			// before the allocation check), then signed.
			refresh := func(setters ...pionstun.Setter) *pionstun.Message {
				t.Helper()
				msg, err := pionstun.Build(append([]pionstun.Setter{pionstun.TransactionID,
					pionstun.NewType(pionstun.MethodRefresh, pionstun.ClassRequest)}, setters...)...)
				if err != nil {
					t.Fatal(err)
				}
				res, err := c.PerformTransaction(msg, server, false)
				if err != nil {
					t.Fatalf("Refresh: %v", err)
				}
				return res.Msg
			}
			challenge := refresh()
			var nonce pionstun.Nonce
			if code := errorCode(challenge); code != 401 || nonce.GetFrom(challenge) != nil {
				t.Fatalf("unauthenticated Refresh: %d (nonce %q), want 401 with a NONCE", code, nonce)
			}
			resp := refresh(lifetime(600), pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm), nonce,
				pionstun.NewLongTermIntegrity(testUser, testRealm, testPass), pionstun.Fingerprint)
			checkMismatch(t, "Refresh", resp)

			for method, want := range map[string]float64{"CreatePermission": 1, "Refresh": 1} {
				if got := counterValue(t, srv.metrics.Requests.WithLabelValues(method, "mismatch")); got != want {
					t.Errorf("icegate_turn_requests_total{method=%q,outcome=\"mismatch\"} = %v, want %v", method, got, want)
				}
			}
		})
	}
}

// TestAllocationMismatchRaw: on a 5-tuple whose allocation was deleted
// (Refresh with LIFETIME 0) or expired, Refresh, CreatePermission and
// ChannelBind (and over TCP Connect) get a signed 437; a second delete too (RFC 8656 §7.4: the
// client takes that 437 as success). A request without credentials or with
// a wrong password still gets pion's 401, and the client may allocate
// again on the same 5-tuple.
func TestAllocationMismatchRaw(t *testing.T) {
	srv := startServer(t, nil)
	chn := rawAttr{pionstun.AttrChannelNumber, []byte{0x40, 0x00, 0, 0}}
	for _, transport := range []string{"udp", "tcp"} {
		for _, ending := range []string{"deleted", "expired"} {
			t.Run(transport+"/"+ending, func(t *testing.T) {
				server := srv.addr(t, transport, "4")
				c := newRawClient(t, "127.0.0.1", server)
				if transport == "tcp" {
					c.stream = dialClient(t, "tcp", server)
				}
				c.challenge()
				switch ending {
				case "deleted":
					if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 0 {
						t.Fatalf("Allocate: %d", code)
					}
					if code := errorCode(c.authed(pionstun.MethodRefresh, testUser, testPass, lifetime(0))); code != 0 {
						t.Fatalf("Refresh 0: %d", code)
					}
				case "expired":
					if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP(), lifetime(1))); code != 0 {
						t.Fatalf("Allocate: %d", code)
					}
				}
				waitAllocations(t, srv, 0)

				checkMismatch(t, "Refresh 0", c.authed(pionstun.MethodRefresh, testUser, testPass, lifetime(0)))
				checkMismatch(t, "Refresh", c.authed(pionstun.MethodRefresh, testUser, testPass, lifetime(600)))
				checkMismatch(t, "CreatePermission", c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("127.0.0.1", 9)))
				checkMismatch(t, "ChannelBind", c.authed(pionstun.MethodChannelBind, testUser, testPass, chn, peer("127.0.0.1", 9)))
				if transport == "tcp" {
					// RFC 6062 §5.2: a Connect on a control connection
					// without allocation is a 437 as well.
					checkMismatch(t, "Connect", c.authed(pionstun.MethodConnect, testUser, testPass, peer("127.0.0.1", 9)))
				}

				resp, err := c.do(pionstun.NewType(pionstun.MethodCreatePermission, pionstun.ClassRequest), peer("127.0.0.1", 9))
				if err != nil || errorCode(resp) != 401 {
					t.Fatalf("unauthenticated CreatePermission: %v %v, want 401", err, resp)
				}
				if code := errorCode(c.authed(pionstun.MethodCreatePermission, testUser, "wrong", peer("127.0.0.1", 9))); code != 401 {
					t.Fatalf("CreatePermission with a wrong password: %d, want 401", code)
				}

				if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 0 {
					t.Fatalf("Allocate again: %d", code)
				}
				if code := errorCode(c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("127.0.0.1", 9))); code != 0 {
					t.Fatalf("CreatePermission on the new allocation: %d", code)
				}
				if code := errorCode(c.authed(pionstun.MethodRefresh, testUser, testPass, lifetime(0))); code != 0 {
					t.Fatalf("Refresh 0 of the new allocation: %d", code)
				}
			})
		}
	}
	for method, want := range map[string]float64{"Refresh": 8, "CreatePermission": 4, "ChannelBind": 4, "Connect": 2} {
		if got := counterValue(t, srv.metrics.Requests.WithLabelValues(method, "mismatch")); got != want {
			t.Errorf("icegate_turn_requests_total{method=%q,outcome=\"mismatch\"} = %v, want %v", method, got, want)
		}
	}
}

// TestAllocationMismatchInFlight: while an Allocate of the client is in
// pion's hands the gate never answers 437 (the request goes to pion, which
// decides), and once pion has answered an Allocate, even a retransmission
// it answers from its cache, nothing of it stays behind to hold back a
// later 437.
func TestAllocationMismatchInFlight(t *testing.T) {
	srv := startServer(t, nil)
	c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
	c.challenge()
	src := c.conn.LocalAddr()
	createPermission := func() (*pionstun.Message, error) {
		return c.do(pionstun.NewType(pionstun.MethodCreatePermission, pionstun.ClassRequest), peer("127.0.0.1", 9),
			pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm), pionstun.NewNonce(c.nonce),
			pionstun.NewLongTermIntegrity(testUser, testRealm, testPass), pionstun.Fingerprint)
	}

	// The gate's record of an Allocate it passed to pion, as inspect
	// makes it, with no allocation reported yet: pion sees the request
	// and, finding no allocation, drops it.
	srv.allocs.granted(src, grant{username: testUser, userID: testUser, transport: "udp"}, true)
	if resp, err := createPermission(); !errors.Is(err, errTimeout) {
		t.Fatalf("CreatePermission with an Allocate in flight: %v, want pion's silence, not the gate's answer", resp)
	}
	srv.allocs.answered(src)
	if resp, err := createPermission(); err != nil {
		t.Fatal(err)
	} else {
		checkMismatch(t, "CreatePermission", resp)
	}

	// An Allocate and its retransmission (same transaction), which pion
	// answers from its cache without a new allocation.
	req, err := pionstun.Build(pionstun.TransactionID, pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest),
		requestedUDP(), pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm), pionstun.NewNonce(c.nonce),
		pionstun.NewLongTermIntegrity(testUser, testRealm, testPass), pionstun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		resp, err := c.send(req.Raw, req.TransactionID)
		if err != nil || errorCode(resp) != 0 {
			t.Fatalf("Allocate #%d: %v %v", i, err, resp)
		}
	}
	if !srv.allocs.holds(allocKey(src, srv.addr(t, "udp", "4")), src) {
		t.Fatal("the allocation is not in the table")
	}
	if code := errorCode(c.authed(pionstun.MethodRefresh, testUser, testPass, lifetime(0))); code != 0 {
		t.Fatalf("Refresh 0: %d", code)
	}
	if resp, err := createPermission(); err != nil {
		t.Fatalf("CreatePermission after the allocation was deleted: %v", err)
	} else {
		checkMismatch(t, "CreatePermission", resp)
	}
	srv.allocs.mu.RLock()
	left := len(srv.allocs.pending)
	srv.allocs.mu.RUnlock()
	if left != 0 {
		t.Fatalf("%d pending Allocates left behind", left)
	}
}

// TestWrongCredentials: a Refresh, CreatePermission or ChannelBind on a live
// allocation, signed with valid credentials of another user than the one
// that allocated, gets a 441 (Wrong Credentials, RFC 8656 §5) signed with
// the request's key, at once (pion drops it unanswered); a wrong password
// gets pion's 401; the allocation itself is untouched and its own user
// keeps refreshing it. A time-limited credential of the same user id with
// another expiry (a renewed REST credential) is the same user, as pion
// judges it, and refreshes.
func TestWrongCredentials(t *testing.T) {
	srv := startServer(t, nil)
	chn := rawAttr{pionstun.AttrChannelNumber, []byte{0x40, 0x00, 0, 0}}
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			server := srv.addr(t, transport, "4")
			c := newRawClient(t, "127.0.0.1", server)
			if transport == "tcp" {
				c.stream = dialClient(t, "tcp", server)
			}
			c.challenge()
			if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 0 {
				t.Fatalf("Allocate: %d", code)
			}
			waitAllocations(t, srv, 1)

			bobKey := pionstun.NewLongTermIntegrity("bob", testRealm, "builder")
			for name, attrs := range map[string][]pionstun.Setter{
				"Refresh":          {lifetime(600)},
				"Refresh 0":        {lifetime(0)},
				"CreatePermission": {peer("127.0.0.1", 9)},
				"ChannelBind":      {chn, peer("127.0.0.1", 9)},
			} {
				method := map[string]pionstun.Method{"Refresh": pionstun.MethodRefresh, "Refresh 0": pionstun.MethodRefresh,
					"CreatePermission": pionstun.MethodCreatePermission, "ChannelBind": pionstun.MethodChannelBind}[name]
				start := time.Now()
				resp := c.authed(method, "bob", "builder", attrs...)
				if code, reason := errorCode(resp), reasonOf(t, resp); code != 441 || reason != "Wrong Credentials" {
					t.Fatalf("%s as another user: %d %q, want 441 \"Wrong Credentials\"", name, code, reason)
				}
				if d := time.Since(start); d > 500*time.Millisecond {
					t.Errorf("%s: the 441 took %v", name, d)
				}
				if err := bobKey.Check(resp); err != nil {
					t.Fatalf("%s: 441 not signed with the request's key: %v", name, err)
				}
				if err := pionstun.Fingerprint.Check(resp); err != nil {
					t.Fatalf("%s: 441 without FINGERPRINT: %v", name, err)
				}
			}
			if code := errorCode(c.authed(pionstun.MethodRefresh, testUser, "wrong", lifetime(600))); code != 401 {
				t.Fatalf("Refresh with a wrong password: %d, want 401", code)
			}
			waitAllocations(t, srv, 1) // neither deleted it

			// A REST credential of user id "alice" is the same user as
			// the static alice to pion: accepted, as a renewal would be.
			rest, restPass, _ := auth.MintREST(testSecret, testUser, time.Hour, time.Now(), ":")
			if code := errorCode(c.authed(pionstun.MethodRefresh, rest, restPass, lifetime(600))); code != 0 {
				t.Fatalf("Refresh with a REST credential of the same user id: %d, want success", code)
			}
			if code := errorCode(c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("127.0.0.1", 9))); code != 0 {
				t.Fatalf("CreatePermission by the allocation's user: %d", code)
			}
			if code := errorCode(c.authed(pionstun.MethodRefresh, testUser, testPass, lifetime(0))); code != 0 {
				t.Fatalf("Refresh 0 by the allocation's user: %d", code)
			}
			waitAllocations(t, srv, 0)
		})
	}
	for method, want := range map[string]float64{"Refresh": 4, "CreatePermission": 2, "ChannelBind": 2} {
		if got := counterValue(t, srv.metrics.Requests.WithLabelValues(method, "wrong_credentials")); got != want {
			t.Errorf("icegate_turn_requests_total{method=%q,outcome=\"wrong_credentials\"} = %v, want %v", method, got, want)
		}
	}
}
