package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"icegate/auth"
	"icegate/turn"
)

// TestBrowserTryAlternate: Chromium's WebRTC stack follows a draining
// relay's 300 Try Alternate (RFC 8489 §10) to the server it names and gets
// a relay candidate there. Relay A (127.0.0.1:3478, relays from
// 50000-50999) drains with relay B (127.0.0.1:3480, realm of its own,
// relays from 51000-51999) as its alternate; the page is given only A's
// turn: URL. Like TestBrowser it re-runs itself in a namespace with only
// loopback, where relay B's address (198.51.100.2, on lo) is not a
// loopback address: Chromium ignores a 300 naming one.
func TestBrowserTryAlternate(t *testing.T) {
	if os.Getenv(insideEnv) == "1" {
		insideAlternate(t)
		return
	}
	unshare := browserNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Relay B gets an address of its own on lo, inside the namespace only
	// (never the root one): libwebrtc refuses a redirect to a loopback
	// address (TurnPort::SetAlternateServer, crbug.com/649118).
	args := []string{"-n", "sh", "-c", `ip link set lo up && ip addr add ` + relayB.String() + `/32 dev lo && exec "$0" -test.run '^TestBrowserTryAlternate$' -test.v -test.count=1`, os.Args[0]}
	cmd := exec.CommandContext(ctx, unshare, args...)
	cmd.Env = append(os.Environ(), insideEnv+"=1")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Log(line)
	}
	if err != nil {
		if strings.Contains(string(out), "unshare failed") || strings.Contains(string(out), "Operation not permitted") {
			skipOrFail(t, "cannot create a network namespace here: %v", err)
		}
		t.Fatalf("the browser test failed inside its namespace: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestBrowserTryAlternate") {
		t.Fatal("the browser test did not pass inside its namespace")
	}
}

// relayB is relay B's address inside the test's namespace.
var relayB = netip.MustParseAddr("198.51.100.2")

// alternatePage gathers relay candidates for the iceServers in its query
// (relay only) and leaves them in window.icegate.done.
const alternatePage = `<!doctype html><meta charset="utf-8"><title>try alternate</title><script>
const q = new URLSearchParams(location.search);
const servers = JSON.parse(q.get('servers'));
window.icegate = {};
window.icegate.done = new Promise((resolve) => {
  const pc = new RTCPeerConnection({iceServers: servers, iceTransportPolicy: 'relay'});
  const out = {candidates: [], errors: []};
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) out.candidates.push({address: e.candidate.address, port: e.candidate.port, type: e.candidate.type});
    if (!e.candidate) resolve(out);
  };
  pc.onicecandidateerror = (e) => out.errors.push(e.errorCode + ' ' + e.errorText + ' ' + e.url);
  pc.createDataChannel('x');
  pc.createOffer().then((o) => pc.setLocalDescription(o));
  setTimeout(() => resolve(out), 15000);
});
</script>`

func insideAlternate(t *testing.T) {
	log := slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
	lo := netip.MustParseAddr("127.0.0.1")
	relay := func(realm string, ip netip.Addr, port, minPort int, alt func(string, bool) (turn.Alternate, bool)) *turn.Server {
		srv, err := turn.New(turn.Config{
			Realm:  realm,
			Listen: turn.ListenConfig{Addrs: []netip.Addr{ip}, Port: port, TLSPort: port + 2000, NoTLS: true, NoDTLS: true},
			Relay: turn.RelayConfig{MinPort: minPort, MaxPort: minPort + 999,
				IPv4Bind: ip, IPv4Public: ip, NoIPv6: true, PrivateOK: true},
			Auth:   turn.AuthConfig{Secrets: []string{secret}},
			Policy: turn.PolicyConfig{Presets: []string{"loopback"}},
		}, turn.Options{Logger: log.With("relay", realm), Alternate: alt})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		return srv
	}
	const portA, portB = 3478, 3480
	rb := relay("relay-b.e2e", relayB, portB, 51000, nil)
	a := relay("relay-a.e2e", lo, portA, 50000, func(transport string, v6 bool) (turn.Alternate, bool) {
		if transport != "udp" || v6 {
			return turn.Alternate{}, false
		}
		// As a cluster node publishes it (cmd/icegate's steering).
		nonce, err := rb.Nonce(context.Background())
		if err != nil {
			t.Errorf("relay B's nonce: %v", err)
		}
		return turn.Alternate{Addr: netip.AddrPortFrom(relayB, portB), Realm: "relay-b.e2e", Nonce: nonce, Node: "b"}, true
	})
	a.StopAllocating()

	ln, err := net.Listen("tcp", httpListen)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, alternatePage)
	})}
	go func() { _ = hs.Serve(ln) }()
	defer func() { _ = hs.Close() }()

	user, pass, _ := auth.MintREST(secret, "chromium", time.Hour, time.Now(), "")
	servers := fmt.Sprintf(`[{"urls":["turn:127.0.0.1:%d?transport=udp"],"username":%q,"credential":%q}]`, portA, user, pass)
	b := startBrowser(t, chromium())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	page := b.open(ctx, "alternate", "http://"+httpListen+"/?servers="+urlQueryEscape(servers))
	var res struct {
		Candidates []struct {
			Address string
			Port    int
			Type    string
		}
		Errors []string
	}
	if err := page.eval(ctx, "window.icegate.done", &res); err != nil {
		t.Fatal(err)
	}
	t.Logf("candidates %+v, errors %q", res.Candidates, res.Errors)
	got := false
	for _, c := range res.Candidates {
		switch {
		case c.Type != "relay":
		case c.Address == relayB.String() && c.Port >= 51000 && c.Port <= 51999:
			got = true
		default:
			t.Errorf("relay candidate %s:%d is not from relay B's range", c.Address, c.Port)
		}
	}
	if !got {
		t.Fatal("Chromium got no relay candidate from relay B: it did not follow A's 300 Try Alternate")
	}
	if n := a.AllocationCount(); n != 0 {
		t.Errorf("draining relay A holds %d allocations", n)
	}
	if err := ctx.Err(); errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}

// urlQueryEscape escapes s for a query value.
func urlQueryEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
