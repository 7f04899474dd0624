package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"icegate/auth"
	"icegate/internal/testutil"
	"icegate/signaling"
)

func runCLI(args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"config"}, {"policy"}, {"cred", "stray"}} {
		_, _, err := runCLI(args...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	out, _, err := runCLI("version")
	if err != nil || !strings.HasPrefix(out, "icegate ") {
		t.Fatalf("version: %q %v", out, err)
	}
}

// TestHelp: every command and subcommand answers -h with its help and
// success (main exits 0 on flag.ErrHelp), never with a usage error.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"help"}, {"serve", "-h"}, {"config", "-h"}, {"config", "--help"}, {"config", "check", "-h"},
		{"config", "default", "-h"}, {"config", "import", "-h"}, {"cred", "-h"}, {"policy", "-h"}, {"policy", "explain", "-h"},
		{"token", "-h"}, {"natcheck", "-h"},
	} {
		out, errOut, err := runCLI(args...)
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%q: %v, want help", args, err)
		}
		if !strings.Contains(out+errOut, "Usage") {
			t.Errorf("%q printed no usage:\n%s%s", args, out, errOut)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	out, _, err := runCLI("config", "check", "../../docs/examples/local-testing.hcl")
	if err != nil || !strings.Contains(out, ": ok") {
		t.Fatalf("valid example: %q %v", out, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.hcl")
	if err := os.WriteFile(bad, []byte("relay {\n  min_port = 60000\n  max_port = 50000\n}\nnonsense = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runCLI("config", "check", bad)
	if err == nil {
		t.Fatal("invalid file accepted")
	}
	for _, want := range []string{"bad.hcl:2,", "min_port", "bad.hcl:5,", "nonsense"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, stderr)
		}
	}
	// A cluster URL icegate cannot use: named at its line, password unseen.
	if err := os.WriteFile(bad, []byte("cluster {\n  redis_url = \"redis://:hunter2@h:6379?dial_timeout=1s\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err = runCLI("config", "check", bad)
	if err == nil || !strings.Contains(stderr, `bad.hcl:2,3-56: error: cluster.redis_url: has the parameter "dial_timeout"`) || strings.Contains(stderr, "hunter2") {
		t.Errorf("bad cluster.redis_url: %v\n%s", err, stderr)
	}
	out, _, err = runCLI("config", "default")
	if err != nil || !strings.Contains(out, "min_port") {
		t.Fatalf("config default: %v", err)
	}
}

// TestCred: the minted password is base64(HMAC-SHA1(secret, username)), the
// username carries the expiry, and the JSON is the browser's iceServers.
func TestCred(t *testing.T) {
	out, _, err := runCLI("cred", "-secret", "s3cret", "-user", "alice", "-ttl", "1h", "-host", "turn.example.org", "-json")
	if err != nil {
		t.Fatal(err)
	}
	var servers []auth.ICEServer
	if err := json.Unmarshal([]byte(out), &servers); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(servers) != 2 || servers[1].Username == "" {
		t.Fatalf("iceServers %+v", servers)
	}
	user, pass := servers[1].Username, servers[1].Credential
	mac := hmac.New(sha1.New, []byte("s3cret"))
	mac.Write([]byte(user))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); pass != want {
		t.Fatalf("password %q, want %q", pass, want)
	}
	if !strings.HasSuffix(user, ":alice") {
		t.Fatalf("username %q", user)
	}
	if !strings.Contains(strings.Join(servers[1].URLs, " "), "turns:turn.example.org:5349") {
		t.Fatalf("urls %v", servers[1].URLs)
	}
	if _, _, err := runCLI("cred"); !errors.Is(err, errUsage) {
		t.Fatalf("cred without a secret: %v", err)
	}
}

// TestCredConfig: with -config, the URLs name the config's port, only the
// transports it switches on, and signaling.turn_host; -host overrides it.
func TestCredConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.hcl")
	src := `listen {
  port = 3490
  tcp  = false
  tls  = false
}
auth {
  secrets   = ["a-long-enough-secret-value"]
  separator = "|"
}
signaling {
  turn_host = "turn.example.net"
}
`
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		host string
	}{
		{nil, "turn.example.net"},
		{[]string{"-host", "192.0.2.7"}, "192.0.2.7"},
		{[]string{"-host", "[2001:db8::7]"}, "[2001:db8::7]"},
	} {
		out, _, err := runCLI(append([]string{"cred", "-config", cfg, "-user", "bob", "-json"}, tc.args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var servers []auth.ICEServer
		if err := json.Unmarshal([]byte(out), &servers); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		if len(servers) != 2 {
			t.Fatalf("%q: iceServers %+v", tc.args, servers)
		}
		if got, want := servers[0].URLs, []string{"stun:" + tc.host + ":3490"}; !slices.Equal(got, want) {
			t.Errorf("%q: STUN URLs %q, want %q", tc.args, got, want)
		}
		if got, want := servers[1].URLs, []string{"turn:" + tc.host + ":3490?transport=udp"}; !slices.Equal(got, want) {
			t.Errorf("%q: TURN URLs %q, want %q", tc.args, got, want)
		}
		if !strings.HasSuffix(servers[1].Username, "|bob") {
			t.Errorf("%q: username %q does not use the config's separator", tc.args, servers[1].Username)
		}
	}

	// A config without auth.secrets has nothing to mint with.
	if err := os.WriteFile(cfg, []byte("listen {\n  tcp = false\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI("cred", "-config", cfg); err == nil || !strings.Contains(err.Error(), "has no auth.secrets") {
		t.Errorf("config without secrets: %v", err)
	}
	// -secret needs none, and wins over the config's.
	if _, _, err := runCLI("cred", "-config", cfg, "-secret", "s3cret"); err != nil {
		t.Errorf("-secret with a config without secrets: %v", err)
	}
}

func TestToken(t *testing.T) {
	const secret = "token-secret-0123456789abcdef0123456789"
	out, _, err := runCLI("token", "-secret", secret, "-user", "alice", "-rooms", "a, team-*", "-ttl", "10m")
	if err != nil {
		t.Fatal(err)
	}
	c, err := signaling.VerifyToken([]string{secret}, strings.TrimSpace(out), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "alice" || strings.Join(c.Rooms, " ") != "a team-*" || time.Until(time.Unix(c.Expiry, 0)) > 10*time.Minute {
		t.Errorf("claims %+v", c)
	}
	if _, _, err := runCLI("token", "-secret", secret); !errors.Is(err, errUsage) {
		t.Errorf("without -user: %v", err)
	}
	cfg := filepath.Join(t.TempDir(), "c.hcl")
	os.WriteFile(cfg, []byte("signaling {\n  token_secrets = [\""+secret+"\"]\n}\n"), 0o600)
	out, _, err = runCLI("token", "-config", cfg, "-user", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signaling.VerifyToken([]string{secret}, strings.TrimSpace(out), time.Now()); err != nil {
		t.Errorf("token from -config: %v", err)
	}
}

// TestTokenClaims: -meta and -aud land in the token; room names no room
// can have, a meta that is not a small object, and a -ttl beyond the
// config's max_token_lifetime are refused before minting.
func TestTokenClaims(t *testing.T) {
	const secret = "token-secret-0123456789abcdef0123456789"
	out, _, err := runCLI("token", "-secret", secret, "-user", "alice", "-aud", "icegate, other", "-meta", ` { "name": "Alice", "n": [1, 2] } `)
	if err != nil {
		t.Fatal(err)
	}
	rules := signaling.TokenRules{Secrets: []string{secret}, Audience: "other"}
	c, err := rules.Verify(strings.TrimSpace(out), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Meta) != `{"name":"Alice","n":[1,2]}` || strings.Join(c.Audience, " ") != "icegate other" {
		t.Errorf("claims %+v, meta %s", c, c.Meta)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-rooms", "ok,has space"}, `room "has space"`},
		{[]string{"-rooms", strings.Repeat("r", 65)}, "longer than 64"},
		{[]string{"-rooms", "café-*"}, "printable ASCII"},
		{[]string{"-meta", `"a string"`}, "-meta must be a JSON object"},
		{[]string{"-meta", `{"a":`}, "-meta must be a JSON object"},
		{[]string{"-meta", `{"k":"` + strings.Repeat("x", 1100) + `"}`}, "more than 1024"},
	} {
		_, _, err := runCLI(append([]string{"token", "-secret", secret, "-user", "u"}, tc.args...)...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
	// From a config: its audience by default, and a -ttl it would refuse is
	// refused here.
	cfg := filepath.Join(t.TempDir(), "c.hcl")
	os.WriteFile(cfg, []byte("signaling {\n  token_secrets = [\""+secret+"\"]\n  token_audience = \"icegate\"\n  max_token_lifetime = \"2h\"\n}\n"), 0o600)
	out, _, err = runCLI("token", "-config", cfg, "-user", "bob", "-ttl", "2h")
	if err != nil {
		t.Fatal(err)
	}
	rules = signaling.TokenRules{Secrets: []string{secret}, Audience: "icegate", MaxLifetime: 2 * time.Hour}
	if _, err := rules.Verify(strings.TrimSpace(out), time.Now()); err != nil {
		t.Errorf("token from -config: %v", err)
	}
	if _, _, err := runCLI("token", "-config", cfg, "-user", "bob", "-ttl", "3h"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "max_token_lifetime") {
		t.Errorf("-ttl beyond max_token_lifetime: %v", err)
	}
}

func TestPolicyExplain(t *testing.T) {
	out, _, err := runCLI("policy", "explain", "::ffff:169.254.169.254")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "cloud-metadata") || !strings.Contains(strings.ToLower(out), "deny") {
		t.Fatalf("explain output:\n%s", out)
	}
	out, _, err = runCLI("policy", "explain", "127.0.0.1", "-config", "../../docs/examples/local-testing.hcl")
	if err != nil || !strings.Contains(strings.ToLower(out), "allow") {
		t.Fatalf("explain with the loopback preset: %v\n%s", err, out)
	}
	if _, _, err := runCLI("policy", "explain", "not-an-ip"); !errors.Is(err, errUsage) {
		t.Fatalf("bad IP: %v", err)
	}
}

// TestServeLifecycle builds the binary, starts it on loopback, waits for
// it to be ready and stops it with SIGTERM: it must exit 0 promptly.
func TestServeLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "icegate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "c.hcl")
	// Ports free now, not fixed ones: other checkouts run this test too.
	src := fmt.Sprintf(`listen {
  addresses = ["127.0.0.1"]
  port = %d
  tls_port = %d
}
relay {
  min_port = 45000
  max_port = 45100
  ipv4_bind = "127.0.0.1"
  ipv6_bind = ""
  private_ok = true
}
metrics { listen = "" }
http { listen = "127.0.0.1:0" }
shutdown_grace = "2s"
`, freeTCPUDPPort(t), freeTCPUDPPort(t))
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "-config", cfg)
	var stdout, stderr testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	// stdout and stderr are separate pipes, copied by separate goroutines:
	// "test page:" (stdout, written first) may arrive after "icegate ready"
	// (stderr), so wait for both.
	for !strings.Contains(stderr.String(), "icegate ready") || !strings.Contains(stdout.String(), "test page:") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("not ready:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(stdout.String(), "icegate cred -secret") {
		t.Errorf("no hint on minting credentials with the generated secret:\n%s", stdout.String())
	}
	// The test page is served, and its WebSocket hands out credentials.
	m := regexp.MustCompile(`test page: (http://localhost:\d+/)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no test page URL:\n%s", stdout.String())
	}
	page := strings.Replace(m[1], "localhost", "127.0.0.1", 1)
	resp, err := http.Get(page)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("test page: %d", resp.StatusCode)
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(page, "http")+"ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	var hello struct {
		ICEServers []auth.ICEServer `json:"ice_servers"`
	}
	if err := ws.ReadJSON(&hello); err != nil || len(hello.ICEServers) != 2 || hello.ICEServers[1].Username == "" {
		t.Fatalf("hello %+v %v", hello, err)
	}
	// Shutdown closes the upgraded WebSocket itself.
	defer ws.Close()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "stopped") {
		t.Fatalf("no orderly shutdown:\n%s", stderr.String())
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("WebSocket after shutdown: %v", err)
	}
}
