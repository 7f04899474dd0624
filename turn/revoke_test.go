package turn

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"icegate/auth"
)

// relayed allocates over UDP with pion's client and checks that data to
// peer goes through.
func relayed(t *testing.T, srv *testServer, user, pass string, peer net.Addr) (*pionturn.Client, net.PacketConn) {
	t.Helper()
	server := srv.addr(t, "udp", "4")
	c := newClient(t, dialClient(t, "udp", server), server, user, pass, pionturn.RequestedAddressFamilyIPv4)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate as %s: %v", user, err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	echoThrough(t, relay, peer)
	return c, relay
}

// silent reports whether nothing comes back from peer through relay
// anymore: a few datagrams, each given a moment for its echo.
func silent(t *testing.T, relay net.PacketConn, peer net.Addr) bool {
	t.Helper()
	buf := make([]byte, 1500)
	for range 3 {
		if _, err := relay.WriteTo([]byte("still there?"), peer); err != nil {
			return true // the client knows its allocation is gone
		}
		_ = relay.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, _, err := relay.ReadFrom(buf); err == nil {
			return false
		}
	}
	return true
}

// waitAllocations waits until the server holds n allocations.
func waitAllocations(t *testing.T, srv *testServer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for srv.AllocationCount() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d allocations, want %d", srv.AllocationCount(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func withoutUser(name string) func(*Config) {
	return func(c *Config) {
		c.Auth.Users = slices.DeleteFunc(slices.Clone(c.Auth.Users), func(u auth.StaticUser) bool { return u.Name == name })
	}
}

// TestReloadRevokesCredentials: a reload that removes a static user,
// changes its password or drops the shared secret a credential was minted
// with ends those users' live allocations (pion deletes them: the count
// drops and relayed data stops), counts them by reason, and
// leaves every allocation whose credential still verifies relaying.
func TestReloadRevokesCredentials(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable], func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				mutate func(*Config)
				reason auth.Reason
				user   func() (string, string)
			}{
				{"user removed", withoutUser(testUser), auth.ReasonUnknownUser, func() (string, string) { return testUser, testPass }},
				{"password changed", func(c *Config) {
					withoutUser(testUser)(c)
					c.Auth.Users = append(c.Auth.Users, auth.StaticUser{Name: testUser, Password: "looking-glass"})
				}, auth.ReasonBadIntegrity, func() (string, string) { return testUser, testPass }},
				{"secret removed", func(c *Config) { c.Auth.Secrets = []string{testSecret} }, auth.ReasonBadIntegrity,
					func() (string, string) {
						u, p, _ := auth.MintREST(oldSecret, "carol", time.Hour, time.Now(), ":")
						return u, p
					}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					srv := startServerIO(t, nil, portable)
					echo := udpEcho(t, "127.0.0.1")
					user, pass := tc.user()
					_, revoked := relayed(t, srv, user, pass, echo)
					// bob (a key) and a credential of the kept secret stay.
					_, bob := relayed(t, srv, "bob", "builder", echo)
					ru, rp, _ := auth.MintREST(testSecret, "erin", time.Hour, time.Now(), ":")
					_, erin := relayed(t, srv, ru, rp, echo)
					waitAllocations(t, srv, 3)

					p, err := srv.PrepareReload(testConfig(t, tc.mutate))
					if err != nil {
						t.Fatal(err)
					}
					if r := p.Commit(); r.Allocations != 1 {
						t.Errorf("reload ended %d allocations, want 1", r.Allocations)
					}
					waitAllocations(t, srv, 2)
					if !silent(t, revoked, echo) {
						t.Error("the revoked allocation still relays")
					}
					echoThrough(t, bob, echo)
					echoThrough(t, erin, echo)
					if got := counterValue(t, srv.revoked.WithLabelValues("allocation", string(tc.reason))); got != 1 {
						t.Errorf("icegate_reload_revocations_total{allocation,%s} = %v, want 1", tc.reason, got)
					}
					if !strings.Contains(srv.log.String(), "allocation ended") {
						t.Error("the revocation is not logged")
					}
				})
			}
		})
	}
}

// TestReloadDeniesPeer: a peer the new policy denies gets nothing from
// live allocations and sends nothing to them, right away, on the fast path
// (ChannelData, Send) and pion's alike; other peers keep relaying, the
// allocation lives on, and a later reload that allows the peer again
// restores it.
func TestReloadDeniesPeer(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable], func(t *testing.T) {
			srv := startServerIO(t, nil, portable)
			kept := udpEcho(t, "127.0.0.1")
			denied := udpEcho(t, "127.0.0.2")
			_, relay := relayed(t, srv, testUser, testPass, kept)
			echoThrough(t, relay, denied)
			// Again, now that pion's client has bound channels: ChannelData.
			echoThrough(t, relay, denied)

			deny := func(c *Config) { c.Policy.Deny = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")} }
			p, err := srv.PrepareReload(testConfig(t, deny))
			if err != nil {
				t.Fatal(err)
			}
			if r := p.Commit(); r.Peers != 1 || r.Allocations != 0 {
				t.Errorf("reload revoked %+v, want one peer", r)
			}
			if !silent(t, relay, denied) {
				t.Error("the denied peer still gets through")
			}
			echoThrough(t, relay, kept)
			waitAllocations(t, srv, 1)
			if got := counterValue(t, srv.revoked.WithLabelValues("peer", "peer-denied")); got != 1 {
				t.Errorf("peer revocations = %v, want 1", got)
			}

			// A reload that changes nothing blocks nothing new.
			if r := srv.mustReload(t, deny); r.Peers != 0 {
				t.Errorf("second identical reload blocked %d peers", r.Peers)
			}
			srv.mustReload(t, nil)
			echoThrough(t, relay, denied)
		})
	}
}

func (srv *testServer) mustReload(t *testing.T, mutate func(*Config)) Revoked {
	t.Helper()
	p, err := srv.PrepareReload(testConfig(t, mutate))
	if err != nil {
		t.Fatal(err)
	}
	return p.Commit()
}

// TestReloadEndsTCPRelayWithDeniedPeer: an RFC 6062 TCP relay's peer
// connection does not pass through the relay socket, so its allocation
// ends when its peer is denied.
func TestReloadEndsTCPRelayWithDeniedPeer(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Relay.TCP = true })
	data := dialTCPRelay(t, srv, tcpEcho(t, "127.0.0.2"))
	waitAllocations(t, srv, 1)
	r := srv.mustReload(t, func(c *Config) {
		c.Relay.TCP = true
		c.Policy.Deny = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	})
	if r.Allocations != 1 {
		t.Errorf("reload ended %d allocations, want 1", r.Allocations)
	}
	waitAllocations(t, srv, 0)
	_ = data.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _ = data.Write([]byte("anyone?"))
	if n, err := data.Read(make([]byte, 16)); err == nil {
		t.Errorf("the peer connection still relays (%d bytes)", n)
	}
}

// TestReloadBrokenChangesNothing: a reload whose credentials cannot be
// built fails before anything is swapped.
func TestReloadBrokenChangesNothing(t *testing.T) {
	srv := startServer(t, nil)
	echo := udpEcho(t, "127.0.0.1")
	_, relay := relayed(t, srv, testUser, testPass, echo)
	before := srv.Credentials()
	_, err := srv.PrepareReload(testConfig(t, func(c *Config) {
		withoutUser(testUser)(c)
		c.Auth.Separator = "12" // NewCredentials refuses it
	}))
	if err == nil {
		t.Fatal("a broken auth block was prepared")
	}
	if srv.Credentials() != before {
		t.Error("credentials changed by a failed reload")
	}
	echoThrough(t, relay, echo)
	waitAllocations(t, srv, 1)
}
