package cluster

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"icegate/internal/redistest"
)

// The shared secret of the steering tests' nodes: a cluster's nodes must
// share one, so credentials vended on one node relay on another
// (docs/cluster.md, "TURN load steering").
const turnSecret = "cluster-test-turn-secret-0123456789abcdef"

// steerConf is a node of a steering cluster: its own realm, a turn_host
// (127.0.0.1), the shared secret and the server API.
func steerConf(realm string) conf {
	return conf{
		signaling: fmt.Sprintf("  turn_host = \"127.0.0.1\"\n  token_secrets = [%q]", tokenSecret),
		extra: fmt.Sprintf("realm = %q\nauth {\n  secrets = [%q]\n}\napi {\n  keys = [%q]\n}\npolicy {\n  presets = [\"loopback\"]\n}",
			realm, turnSecret, apiKey),
	}
}

// vended asks n's credential API and returns the TURN port its turn: URLs
// name, with the credential.
func vended(t *testing.T, n *node) (port int, user, pass string) {
	t.Helper()
	status, out := call(t, n, "POST", "turn/credentials", map[string]any{"ttl": 600, "custom_identifier": "steer-test"})
	if status != http.StatusCreated {
		t.Fatalf("credentials from %s: %d %v", n.name, status, out)
	}
	servers, _ := out["iceServers"].([]any)
	for _, s := range servers {
		m, _ := s.(map[string]any)
		user, _ := m["username"].(string)
		if user == "" {
			continue
		}
		pass, _ := m["credential"].(string)
		urls, _ := m["urls"].([]any)
		u, _ := urls[0].(string)
		_, p, _ := net.SplitHostPort(strings.Split(strings.TrimPrefix(u, "turn:"), "?")[0])
		port, _ = strconv.Atoi(p)
		return port, user, pass
	}
	t.Fatalf("no TURN entry from %s: %v", n.name, out)
	return 0, "", ""
}

// waitVended waits until n vends the TURN port want.
func waitVended(t *testing.T, n *node, want *node, why string) {
	t.Helper()
	deadline := time.Now().Add(4 * nodeTimeout)
	for {
		got, _, _ := vended(t, n)
		if got == want.turn {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s vends port %d, want %s's %d", why, n.name, got, want.name, want.turn)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// allocate makes an allocation on port with a pion client.
func allocate(t *testing.T, port int, user, pass, realm string) (*pionturn.Client, net.PacketConn) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c, err := pionturn.NewClient(&pionturn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: pc,
		Username: user, Password: pass, Realm: realm})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = pc.Close() })
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocating on %d: %v", port, err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	return c, relay
}

// echo relays a datagram to a UDP echo peer through relay and back.
func echo(t *testing.T, relay net.PacketConn) {
	t.Helper()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := peer.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = peer.WriteTo(buf[:n], from)
		}
	}()
	for range 20 {
		if _, err := relay.WriteTo([]byte("steer"), peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = relay.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		buf := make([]byte, 64)
		if n, _, err := relay.ReadFrom(buf); err == nil && string(buf[:n]) == "steer" {
			return
		}
	}
	t.Fatal("nothing came back through the relay")
}

// TestTURNSteering runs two `icegate serve` nodes on a real redis-server:
// equally loaded each vends its own relay; with allocations on one, both
// vend the other; a drained node vends the other and answers a new
// Allocate with 300 Try Alternate naming the other's address and realm,
// which a client follows to allocate and relay there.
func TestTURNSteering(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r.URL(), "steer-a", steerConf("a.example.org"))
	b := startNode(t, r.URL(), "steer-b", steerConf("b.example.org"))

	waitVended(t, a, a, "equal load")
	waitVended(t, b, b, "equal load")

	// Load a: three allocations, made with a credential vended by a.
	_, user, pass := vended(t, a)
	for range 3 {
		allocate(t, a.turn, user, pass, "a.example.org")
	}
	waitVended(t, a, b, "a holds 3 allocations, b none")
	waitVended(t, b, b, "a holds 3 allocations, b none")
	// The credential vended on a for b relays on b: one shared secret.
	port, user, pass := vended(t, a)
	_, relay := allocate(t, port, user, pass, "b.example.org")
	echo(t, relay)

	// Drain b (SIGUSR1): both vend a, though a holds more.
	if err := b.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitVended(t, b, a, "b draining")
	waitVended(t, a, a, "b draining")
	// The hello of a /ws peer on b names a too.
	p := dialAs(t, b, "carol", "")
	servers, _ := p.hello["ice_servers"].([]any)
	if !strings.Contains(fmt.Sprint(servers), "127.0.0.1:"+strconv.Itoa(a.turn)) {
		t.Errorf("hello on drained b: ice_servers %v, want a's port %d", servers, a.turn)
	}
	if sv, _ := p.hello["server"].(map[string]any); sv["relay_draining"] == true || sv["credentials"] != true {
		t.Errorf("hello on drained b steered to a: server %v, want credentials and no relay_draining", sv)
	}

	// A new Allocate on b: 300 Try Alternate, checked on the wire.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	bAddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: b.turn}
	roundTrip := func(setters ...pionstun.Setter) *pionstun.Message {
		t.Helper()
		m, err := pionstun.Build(append([]pionstun.Setter{pionstun.TransactionID,
			pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest),
			pionstun.RawAttribute{Type: pionstun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}}, setters...)...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.WriteTo(m.Raw, bAddr); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no answer from b: %v", err)
		}
		resp := &pionstun.Message{Raw: buf[:n]}
		if err := resp.Decode(); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	_, user, pass = vended(t, a)
	var nonce pionstun.Nonce
	if err := nonce.GetFrom(roundTrip()); err != nil {
		t.Fatalf("b's 401 has no NONCE: %v", err)
	}
	resp := roundTrip(pionstun.NewUsername(user), pionstun.NewRealm("b.example.org"), nonce,
		pionstun.NewLongTermIntegrity(user, "b.example.org", pass), pionstun.Fingerprint)
	var code pionstun.ErrorCodeAttribute
	if err := code.GetFrom(resp); err != nil || code.Code != pionstun.CodeTryAlternate {
		t.Fatalf("Allocate on drained b: %v %v, want 300", code, err)
	}
	var alt pionstun.AlternateServer
	if err := alt.GetFrom(resp); err != nil {
		t.Fatalf("300 without ALTERNATE-SERVER: %v", err)
	}
	if !alt.IP.Equal(net.IPv4(127, 0, 0, 1)) || alt.Port != a.turn {
		t.Fatalf("ALTERNATE-SERVER %v:%d, want 127.0.0.1:%d (a)", alt.IP, alt.Port, a.turn)
	}
	var realm pionstun.Realm
	if err := realm.GetFrom(resp); err != nil || realm.String() != "a.example.org" {
		t.Errorf("300's REALM %q (%v), want a's", realm.String(), err)
	}
	if err := pionstun.NewLongTermIntegrity(user, "b.example.org", pass).Check(resp); err != nil {
		t.Errorf("300 not signed with the request's key: %v", err)
	}
	// Its NONCE is one a accepts: an Allocate there with the 300's realm
	// and nonce succeeds at once, as libwebrtc sends it (a 438 would end
	// the browser's attempt).
	var altNonce pionstun.Nonce
	if err := altNonce.GetFrom(resp); err != nil {
		t.Fatalf("300 without NONCE: %v", err)
	}
	aAddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: a.turn}
	m, err := pionstun.Build(pionstun.TransactionID, pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest),
		pionstun.RawAttribute{Type: pionstun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}},
		pionstun.NewUsername(user), realm, altNonce, pionstun.NewLongTermIntegrity(user, realm.String(), pass), pionstun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteTo(m.Raw, aAddr); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer from a: %v", err)
	}
	got := &pionstun.Message{Raw: buf[:n]}
	if err := got.Decode(); err != nil || got.Type.Class != pionstun.ClassSuccessResponse {
		var ec pionstun.ErrorCodeAttribute
		_ = ec.GetFrom(got)
		t.Fatalf("Allocate at a with the 300's realm and nonce: %v %v (%v)", got.Type, ec, err)
	}
	// Follow it: the alternate's address and realm, the same credential.
	_, relay = allocate(t, alt.Port, user, pass, realm.String())
	echo(t, relay)
}

// TestClusterUserQuota: with cluster.user_quota = "cluster",
// limits.allocations_per_user counts a user's allocations on every node:
// a user at the cap on one node is refused (486) on the other, until the
// allocation ends; another user is not.
func TestClusterUserQuota(t *testing.T) {
	r := redistest.Start(t)
	mk := func(realm string) conf {
		c := steerConf(realm)
		c.cluster = `  user_quota = "cluster"`
		c.extra += "\nlimits {\n  allocations_per_user = 1\n}"
		return c
	}
	a := startNode(t, r.URL(), "quota-a", mk("a.example.org"))
	b := startNode(t, r.URL(), "quota-b", mk("b.example.org"))
	cred := func(n *node, id string) (string, string) {
		t.Helper()
		status, out := call(t, n, "POST", "turn/credentials", map[string]any{"custom_identifier": id})
		if status != http.StatusCreated {
			t.Fatalf("credentials: %d %v", status, out)
		}
		for _, s := range out["iceServers"].([]any) {
			m := s.(map[string]any)
			if u, _ := m["username"].(string); u != "" {
				return u, m["credential"].(string)
			}
		}
		t.Fatal("no TURN entry")
		return "", ""
	}
	try := func(port int, user, pass, realm string) (*pionturn.Client, net.PacketConn, error) {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		c, err := pionturn.NewClient(&pionturn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: pc,
			Username: user, Password: pass, Realm: realm})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Listen(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); _ = pc.Close() })
		relay, err := c.Allocate()
		return c, relay, err
	}

	user, pass := cred(a, "tenant-1")
	_, relayA, err := try(a.turn, user, pass, "a.example.org")
	if err != nil {
		t.Fatalf("first allocation on a: %v", err)
	}
	// b learns of it within a flush; until then b may still say yes.
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, relay, err := try(b.turn, user, pass, "b.example.org")
		if err != nil {
			if !strings.Contains(err.Error(), "486") {
				t.Fatalf("second allocation on b: %v, want 486 Allocation Quota Reached", err)
			}
			break
		}
		_ = relay.Close()
		if time.Now().After(deadline) {
			t.Fatal("b allocated for tenant-1, who holds the cluster-wide cap on a")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Another user is not affected.
	other, otherPass := cred(b, "tenant-2")
	if _, _, err := try(b.turn, other, otherPass, "b.example.org"); err != nil {
		t.Fatalf("tenant-2 on b: %v", err)
	}
	// The allocation on a ends: b takes tenant-1 again.
	_ = relayA.Close()
	deadline = time.Now().Add(3 * time.Second)
	for {
		_, _, err := try(b.turn, user, pass, "b.example.org")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant-1 on b after a's allocation ended: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
