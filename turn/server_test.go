package turn

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"icegate/auth"
)

// TestRelayTransports allocates over every listener transport and family,
// permits an echo peer, sends through the relay and reads the echo.
func TestRelayTransports(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable], func(t *testing.T) {
			testRelayTransports(t, startServerIO(t, nil, portable))
		})
	}
}

func testRelayTransports(t *testing.T, srv *testServer) {
	echo4 := udpEcho(t, "127.0.0.1")
	echo6 := udpEcho(t, "::1")
	cases := []struct {
		transport, listenFamily string
		family                  pionturn.RequestedAddressFamily
		peer                    net.Addr
	}{
		{"udp", "4", pionturn.RequestedAddressFamilyIPv4, echo4},
		{"tcp", "4", pionturn.RequestedAddressFamilyIPv4, echo4},
		{"tls", "4", pionturn.RequestedAddressFamilyIPv4, echo4},
		{"dtls", "4", pionturn.RequestedAddressFamilyIPv4, echo4},
		{"udp", "6", pionturn.RequestedAddressFamilyIPv6, echo6},
		{"tcp", "6", pionturn.RequestedAddressFamilyIPv6, echo6},
		{"tls", "6", pionturn.RequestedAddressFamilyIPv6, echo6},
		{"dtls", "6", pionturn.RequestedAddressFamilyIPv6, echo6},
		// RFC 6156 cross-family relaying: an IPv6 relay for a client on IPv4.
		{"udp", "4", pionturn.RequestedAddressFamilyIPv6, echo6},
	}
	for _, tc := range cases {
		name := tc.transport + tc.listenFamily + "/relay" + map[bool]string{true: "6", false: "4"}[tc.family == pionturn.RequestedAddressFamilyIPv6]
		t.Run(name, func(t *testing.T) {
			server := srv.addr(t, tc.transport, tc.listenFamily)
			c := newClient(t, dialClient(t, tc.transport, server), server, testUser, testPass, tc.family)
			relay, err := c.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			defer relay.Close()
			wantFamily6 := tc.family == pionturn.RequestedAddressFamilyIPv6
			if got6 := relay.LocalAddr().(*net.UDPAddr).IP.To4() == nil; got6 != wantFamily6 {
				t.Fatalf("relay address %v, want IPv6=%v", relay.LocalAddr(), wantFamily6)
			}
			echoThrough(t, relay, tc.peer)
		})
	}
}

// TestStaticKeyUser authenticates with a precomputed key (turnadmin -k).
func TestStaticKeyUser(t *testing.T) {
	srv := startServer(t, nil)
	server := srv.addr(t, "udp", "4")
	c := newClient(t, dialClient(t, "udp", server), server, "bob", "builder", pionturn.RequestedAddressFamilyIPv4)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate with key user: %v", err)
	}
	defer relay.Close()
	echoThrough(t, relay, udpEcho(t, "127.0.0.1"))
}

// TestSharedSecretRotation: credentials minted with either live secret work.
func TestSharedSecretRotation(t *testing.T) {
	srv := startServer(t, nil)
	server := srv.addr(t, "udp", "4")
	echo := udpEcho(t, "127.0.0.1")
	for _, secret := range []string{testSecret, oldSecret} {
		user, pass, _ := auth.MintREST(secret, "carol", time.Hour, time.Now(), ":")
		c := newClient(t, dialClient(t, "udp", server), server, user, pass, pionturn.RequestedAddressFamilyIPv4)
		relay, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocate with secret %q: %v", secret, err)
		}
		echoThrough(t, relay, echo)
		_ = relay.Close()
	}
}

// TestTCPRelay is RFC 6062: a TCP allocation, Connect to a TCP echo peer,
// ConnectionBind on a second connection, data both ways.
func TestTCPRelay(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Relay.TCP = true })
	data := dialTCPRelay(t, srv, tcpEcho(t, "127.0.0.1"))
	want := "hello over an RFC 6062 relay"
	if _, err := data.Write([]byte(want)); err != nil {
		t.Fatal(err)
	}
	_ = data.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 100)
	n, err := data.Read(buf)
	if err != nil || string(buf[:n]) != want {
		t.Fatalf("echo %q, %v; want %q", buf[:n], err, want)
	}
}

// TestTCPRelayOffByDefault: 442 when relay.tcp is off.
func TestTCPRelayOffByDefault(t *testing.T) {
	srv := startServer(t, nil)
	server := srv.addr(t, "tcp", "4")
	c := newClient(t, dialClient(t, "tcp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	if _, err := c.AllocateTCP(); err == nil || !strings.Contains(err.Error(), "442") {
		t.Fatalf("TCP allocation with relay.tcp off: %v, want a 442", err)
	}
}

// TestAuthErrors checks the codes of RFC 8489 §9.2.4 with a raw client.
func TestAuthErrors(t *testing.T) {
	srv := startServer(t, nil)
	server := srv.addr(t, "udp", "4")
	expiredUser, expiredPass, _ := auth.MintREST(testSecret, "dave", -time.Minute, time.Now(), ":")
	strangerUser, strangerPass, _ := auth.MintREST("not-our-secret-0123456789", "eve", time.Hour, time.Now(), ":")
	cases := []struct {
		name, user, pass string
		want             int
	}{
		{"static user", testUser, testPass, 0},
		{"wrong password", testUser, "rabbit", 401},
		{"unknown user", "mallory", "x", 401},
		{"expired credential", expiredUser, expiredPass, 401},
		{"unknown secret", strangerUser, strangerPass, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newRawClient(t, "127.0.0.1", server)
			c.challenge()
			resp := c.authed(pionstun.MethodAllocate, tc.user, tc.pass, requestedUDP())
			if got := errorCode(resp); got != tc.want {
				t.Fatalf("code %d, want %d", got, tc.want)
			}
			if tc.want == 401 {
				// RFC 8489 §9.2.4: the 401 carries a fresh REALM and NONCE.
				var realm pionstun.Realm
				var nonce pionstun.Nonce
				if realm.GetFrom(resp) != nil || nonce.GetFrom(resp) != nil || realm.String() != testRealm {
					t.Fatalf("401 without realm/nonce: %v", resp)
				}
			}
		})
	}
	t.Run("stale nonce", func(t *testing.T) {
		c := newRawClient(t, "127.0.0.1", server)
		c.nonce = "bm90LWEtbm9uY2UtZnJvbS10aGlzLXNlcnZlcg"
		if got := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); got != 438 {
			t.Fatalf("code %d, want 438", got)
		}
	})
	if !strings.Contains(srv.log.String(), "credential expired by") {
		t.Errorf("the expired refusal was not logged with its reason:\n%s", srv.log.String())
	}
}

// TestNoCredentialsRefusesTURN: never an open relay.
func TestNoCredentialsRefusesTURN(t *testing.T) {
	srv := startServer(t, func(c *Config) {
		c.Auth.Users, c.Auth.Secrets, c.Auth.NoEphemeralSecret = nil, nil, true
	})
	c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
	resp, err := c.do(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP())
	if err != nil {
		t.Fatal(err)
	}
	if got := errorCode(resp); got != 403 {
		t.Fatalf("allocate with no credentials configured: code %d, want 403", got)
	}
	// STUN Binding still works.
	resp, err = c.do(pionstun.BindingRequest)
	if err != nil || resp.Type != pionstun.BindingSuccess {
		t.Fatalf("binding: %v %v", resp, err)
	}
}

// TestBinding: XOR-MAPPED-ADDRESS is the client's address.
func TestBinding(t *testing.T) {
	srv := startServer(t, nil)
	for _, fam := range []string{"4", "6"} {
		local := map[string]string{"4": "127.0.0.1", "6": "::1"}[fam]
		c := newRawClient(t, local, srv.addr(t, "udp", fam))
		resp, err := c.do(pionstun.BindingRequest, pionstun.Fingerprint)
		if err != nil {
			t.Fatal(err)
		}
		var xa pionstun.XORMappedAddress
		if err := xa.GetFrom(resp); err != nil {
			t.Fatal(err)
		}
		me := c.conn.LocalAddr().(*net.UDPAddr)
		if !xa.IP.Equal(me.IP) || xa.Port != me.Port {
			t.Fatalf("mapped %v, want %v", xa, me)
		}
		if err := pionstun.Fingerprint.Check(resp); err != nil {
			t.Fatalf("fingerprint: %v", err)
		}
	}
}

// TestIdleConnections: a TCP connection that never allocates is closed
// after the idle timeout; one holding an allocation stays.
func TestIdleConnections(t *testing.T) {
	srv := startServer(t, nil)
	srv.gate.idle.Store(int64(300 * time.Millisecond))
	server := srv.addr(t, "tcp", "4")

	idle, err := net.Dial("tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	c := newClient(t, dialClient(t, "tcp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()

	_ = idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	if _, err := idle.Read(make([]byte, 1)); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("idle connection not closed by the server (err %v after %v)", err, time.Since(start))
	}
	time.Sleep(500 * time.Millisecond)
	echoThrough(t, relay, udpEcho(t, "127.0.0.1"))
}

// TestEvents: the decisions a browser's page will be told about.
func TestEvents(t *testing.T) {
	var mu sync.Mutex
	var got []Event
	cfg := testConfig(t, defaultPolicy)
	srv, err := New(cfg, Options{Events: func(e Event) { mu.Lock(); got = append(got, e); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var server net.Addr
	for _, a := range srv.Addrs() {
		if a.Transport == "udp" && !strings.HasPrefix(a.Addr.String(), "[") {
			server = a.Addr
		}
	}
	user, pass, _ := auth.MintREST(testSecret, "peer-7", time.Hour, time.Now(), ":")
	c := newRawClient(t, "127.0.0.1", server)
	c.challenge()
	if code := errorCode(c.authed(pionstun.MethodAllocate, user, pass, requestedUDP())); code != 0 {
		t.Fatal(code)
	}
	c.authed(pionstun.MethodCreatePermission, user, pass, peer("169.254.169.254", 80))
	expired, epass, _ := auth.MintREST(testSecret, "peer-7", -time.Minute, time.Now(), ":")
	c2 := newRawClient(t, "127.0.0.1", server)
	c2.challenge()
	c2.authed(pionstun.MethodAllocate, expired, epass, requestedUDP())

	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{EventAuthenticated: false, EventAllocationCreated: false, EventPermissionDenied: false, EventAuthRefused: false}
	for _, e := range got {
		if _, ok := want[e.Kind]; ok && e.UserID == "peer-7" || e.Kind == EventAuthRefused && strings.Contains(e.Detail, "expired") {
			want[e.Kind] = true
		}
		if e.Kind == EventPermissionDenied && !strings.Contains(e.Detail, "cloud-metadata") {
			t.Errorf("permission event without its rule: %+v", e)
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no %s event naming the user; got %+v", k, got)
		}
	}
}

// TestCloseTwice: Close is idempotent (serve closes on shutdown and again
// in a defer).
func TestCloseTwice(t *testing.T) {
	for _, portable := range []bool{false, true} {
		srv := startServerIO(t, nil, portable)
		_ = srv.Close()
		_ = srv.Close()
	}
}

// TestPortsReusableAtOnce: with every port of a small range in use, a port
// freed by a deallocation (Refresh with LIFETIME 0) is handed out again
// immediately (coturn holds released ports for a while).
func TestPortsReusableAtOnce(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Relay.MinPort, c.Relay.MaxPort = 41100, 41101 })
	server := srv.addr(t, "udp", "4")
	var clients []*rawClient
	for range 2 {
		c := newRawClient(t, "127.0.0.1", server)
		c.challenge()
		if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 0 {
			t.Fatalf("allocate: %d", code)
		}
		clients = append(clients, c)
	}
	for round := range 20 {
		if code := errorCode(clients[0].authed(pionstun.MethodRefresh, testUser, testPass, lifetime(0))); code != 0 {
			t.Fatalf("round %d: refresh 0: %d", round, code)
		}
		c := newRawClient(t, "127.0.0.1", server)
		c.challenge()
		if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 0 {
			t.Fatalf("round %d: the released port was not reusable: %d", round, code)
		}
		clients[0] = c
	}
}

// TestPortInUse: a UDP port someone else holds is an error at start, not a
// silent SO_REUSEPORT share of the clients.
func TestPortInUse(t *testing.T) {
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	cfg := testConfig(t, func(c *Config) {
		c.Listen.Port = other.LocalAddr().(*net.UDPAddr).Port
		c.Listen.Addrs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	})
	srv, err := New(cfg, Options{})
	if err == nil {
		_ = srv.Close()
		t.Fatal("started on a UDP port another socket holds")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("error %v, want address already in use", err)
	}
}

// TestReloadKeepsRealm: pion challenges with the realm it started with, so
// a reload that changes the realm is refused as a whole (the old
// credentials and realm keep working); one that keeps it is applied.
func TestReloadKeepsRealm(t *testing.T) {
	srv := startServer(t, nil)
	err := srv.Reload(testConfig(t, func(c *Config) { c.Realm = "another" }))
	if err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("reload with another realm: %v, want an error asking for a restart", err)
	}
	allocated(t, srv, "127.0.0.1")
	if err := srv.Reload(testConfig(t, nil)); err != nil {
		t.Fatalf("reload with the same realm: %v", err)
	}
	allocated(t, srv, "127.0.0.1")
}
