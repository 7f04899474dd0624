package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	pionturn "github.com/pion/turn/v5"

	"icegate/internal/icegatebin"
)

const (
	binEnv        = "ICEGATE_E2E_BIN"
	adminShotEnv  = "ICEGATE_ADMIN_SCREENSHOT"
	adminKey      = "e2e-admin-key-0123456789abcdef0123456789"
	adminMetrics  = "127.0.0.1:9641"
	adminHTTP     = "127.0.0.1:8080"
	otherOrigin   = "127.0.0.1:8081"
	adminPeerAddr = "127.0.0.1:40000"
)

// TestAdminPage runs the icegate binary and the admin page in headless
// Chromium, inside a fresh network namespace as TestBrowser does: a wrong
// key shows an error; the right key shows the allocation a pion client
// made, its traffic in the bit-rate chart and the top users, and a
// signaling session; Kick ends the allocation (the row goes, the client's
// next request fails); a page on another origin cannot call the admin API
// with the key. ICEGATE_ADMIN_SCREENSHOT=FILE saves the page before the
// kick.
func TestAdminPage(t *testing.T) {
	if os.Getenv(insideEnv) == "1" {
		adminInside(t)
		return
	}
	unshare := browserNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// Built out here: the namespace has no route to a module proxy.
	bin := filepath.Join(t.TempDir(), "icegate")
	if err := icegatebin.Build(ctx, bin, "e2e"); err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", "sh", "-c", `ip link set lo up && exec "$0" -test.run '^TestAdminPage$' -test.v -test.count=1`, os.Args[0]}
	cmd := exec.CommandContext(ctx, unshare, args...)
	cmd.Env = append(os.Environ(), insideEnv+"=1", binEnv+"="+bin)
	if p := os.Getenv(adminShotEnv); p != "" {
		abs, _ := filepath.Abs(p)
		cmd.Env = append(cmd.Env, adminShotEnv+"="+abs)
	}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Log(line)
	}
	if err != nil {
		if strings.Contains(string(out), "unshare failed") || strings.Contains(string(out), "Operation not permitted") {
			skipOrFail(t, "cannot create a network namespace here: %v", err)
		}
		t.Fatalf("the admin page test failed inside its namespace: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestAdminPage") {
		t.Fatal("the admin page test did not pass inside its namespace")
	}
}

// adminConfig is the node the page looks at: relay on 127.0.0.1, one
// static user, the admin API's key, signaling on.
const adminConfig = `realm = "icegate-e2e"
shutdown_grace = "0s"
listen {
  addresses = ["127.0.0.1"]
  dtls      = false
}
relay {
  min_port    = 50000
  max_port    = 50999
  ipv4_bind   = "127.0.0.1"
  ipv4_public = "127.0.0.1"
  ipv6_bind   = ""
  private_ok  = true
}
auth {
  user "alice" { password = "wonderland" }
}
policy { presets = ["loopback"] }
metrics { listen = %q }
http { listen = %q }
api { keys = [%q] }
`

func adminInside(t *testing.T) {
	bin := os.Getenv(binEnv)
	if bin == "" {
		t.Fatal(binEnv + " is not set: run TestAdminPage from outside")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "icegate.hcl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, adminConfig, adminMetrics, adminHTTP, adminKey), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	// The node, as its own process.
	srv := exec.Command(bin, "serve", "-config", cfg)
	logf, err := os.Create(filepath.Join(dir, "icegate.log"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("icegate's log:\n%s", b)
		}
	})
	base := "http://" + adminMetrics
	waitReady(t, base+"/readyz")

	// A pion client allocates, talks to an echo peer, and keeps sending
	// so that the chart has a rate to draw.
	peer := echoPeer(t)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: "127.0.0.1:3478", TURNServerAddr: "127.0.0.1:3478", Conn: conn,
		Username: "alice", Password: "wonderland", Realm: "icegate-e2e",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	defer func() { client.Close(); conn.Close() }()
	relay, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	t.Logf("pion client allocated %s", relay.LocalAddr())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // reads the echoes
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := relay.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	go func() { // 50 KB/s, until the kick or the end
		defer wg.Done()
		payload := make([]byte, 1000)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := relay.WriteTo(payload, peer); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); relay.Close(); wg.Wait() }()

	// A signaling session in a room, for the sessions table.
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+adminHTTP+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]any{"type": "join", "room": "ops-room", "id": 1}); err != nil {
		t.Fatal(err)
	}
	go func() { // drains the session's messages until it closes
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()

	// Another origin, to check the admin API refuses it.
	other := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<!doctype html><title>another origin</title><p>another origin</p>"))
	}), ReadHeaderTimeout: 5 * time.Second}
	oln, err := net.Listen("tcp", otherOrigin)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = other.Serve(oln) }()
	defer other.Close()

	b := startBrowser(t, chromium())
	page := b.openWhen(ctx, "admin", base+"/admin/", "!!window.icegateAdmin")

	// A wrong key: an error, and nothing shown.
	signIn(ctx, t, page, "not-the-key")
	waitFor(ctx, t, page, "wrong key refused", `window.icegateAdmin.error.startsWith('The key was refused') && !document.getElementById('error').hidden && document.getElementById('dashboard').hidden && !document.getElementById('login').hidden`)
	var msg string
	mustEval(ctx, t, page, `document.getElementById('error').textContent`, &msg)
	t.Logf("wrong key: %q", msg)

	// The right key: the allocation, its traffic, the session, top users.
	signIn(ctx, t, page, adminKey)
	waitFor(ctx, t, page, "the allocation listed", `document.getElementById('error').hidden && [...document.querySelectorAll('#allocations tbody tr[data-id]')].some(r => r.cells[1].textContent === 'alice' && r.cells[5].textContent === '`+relay.LocalAddr().String()+`')`)
	waitFor(ctx, t, page, "a relayed bit rate", `document.getElementById('line-to-peer').getAttribute('points').split(' ').length >= 3 && /[kM]bit\/s/.test(document.getElementById('rate-to-peer').textContent)`)
	waitFor(ctx, t, page, "the session listed", `[...document.querySelectorAll('#sessions tbody tr[data-id]')].some(r => r.cells[2].textContent === 'ops-room')`)
	waitFor(ctx, t, page, "alice among the top users", `[...document.querySelectorAll('#top-users tbody tr')].some(r => r.cells[0].textContent === 'alice' && !r.cells[4].textContent.startsWith('0 '))`)
	var card, rate string
	mustEval(ctx, t, page, `document.getElementById('nodes').innerText`, &card)
	mustEval(ctx, t, page, `document.getElementById('rate-to-peer').textContent`, &rate)
	t.Logf("node card:\n%s\nrate to peers: %s", card, rate)
	if !strings.Contains(card, "allocations\n1") && !strings.Contains(card, "allocations\t1") {
		t.Errorf("the node card does not show 1 allocation:\n%s", card)
	}

	// Cross-origin: the same request that works from the page (control)
	// fails from another origin, since the admin API sends no CORS
	// headers and the Authorization header needs a preflight.
	probe := `fetch('` + base + `/api/v1/admin/allocations', {headers: {Authorization: 'Bearer ` + adminKey + `'}}).then(r => 'status ' + r.status, e => 'refused: ' + e.message)`
	var same, cross string
	mustEval(ctx, t, page, probe, &same)
	otherTab := b.openWhen(ctx, "other", "http://"+otherOrigin+"/", "document.title === 'another origin'")
	mustEval(ctx, t, otherTab, probe, &cross)
	t.Logf("admin API from its own origin: %s; from http://%s: %s", same, otherOrigin, cross)
	if same != "status 200" || !strings.HasPrefix(cross, "refused") {
		t.Errorf("admin API: %q from the page's origin (want status 200), %q from another (want refused)", same, cross)
	}

	if path := os.Getenv(adminShotEnv); path != "" {
		// A few more samples so the chart shows a line, not a dot.
		time.Sleep(6 * time.Second)
		png, err := page.screenshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}

	// Kick: the row goes, and the API and the client agree.
	mustEval(ctx, t, page, `(() => { const r = [...document.querySelectorAll('#allocations tbody tr[data-id]')].find(r => r.cells[1].textContent === 'alice'); r.querySelector('button.kick').click(); return true; })()`, nil)
	waitFor(ctx, t, page, "the allocation gone", `document.querySelectorAll('#allocations tbody tr[data-id]').length === 0 && document.getElementById('alloc-count').textContent === '(0)'`)
	var list struct {
		Allocations []json.RawMessage `json:"allocations"`
	}
	adminGet(t, base+"/api/v1/admin/allocations", &list)
	if len(list.Allocations) != 0 {
		t.Errorf("after the kick the API lists %d allocations", len(list.Allocations))
	}
	// The allocation is gone on the server, so the client's next request
	// on it fails (docs/operations.md, "Admin API", Kick).
	if err := client.CreatePermission(peer); err == nil {
		t.Error("the pion client could still create a permission after the kick")
	} else {
		t.Logf("after the kick the client's CreatePermission: %v", err)
	}

	// End the session from the page too.
	mustEval(ctx, t, page, `(() => { document.querySelector('#sessions tbody tr[data-id] button.kick').click(); return true; })()`, nil)
	waitFor(ctx, t, page, "the session gone", `document.querySelectorAll('#sessions tbody tr[data-id]').length === 0`)
}

// signIn types key into the page's form and submits it.
func signIn(ctx context.Context, t *testing.T, page *tab, key string) {
	t.Helper()
	k, _ := json.Marshal(key)
	mustEval(ctx, t, page, `(() => { document.getElementById('key').value = `+string(k)+`; document.getElementById('login').requestSubmit(); return true; })()`, nil)
}

func mustEval(ctx context.Context, t *testing.T, page *tab, expr string, out any) {
	t.Helper()
	if err := page.eval(ctx, expr, out); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls expr in page until it is true, for up to 20 s.
func waitFor(ctx context.Context, t *testing.T, page *tab, what, expr string) {
	t.Helper()
	start := time.Now()
	for {
		var ok bool
		err := page.eval(ctx, "!!("+expr+")", &ok)
		if err == nil && ok {
			t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 20*time.Second {
			var text string
			_ = page.eval(ctx, "document.body.innerText", &text)
			t.Fatalf("%s: not seen in 20 s (%v); the page says:\n%s", what, err, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready in 20 s (%v)", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func adminGet(t *testing.T, url string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// echoPeer answers every datagram with itself.
func echoPeer(t *testing.T) net.Addr {
	t.Helper()
	pc, err := net.ListenPacket("udp4", adminPeerAddr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr()
}
