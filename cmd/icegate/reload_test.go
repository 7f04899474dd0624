package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"icegate/auth"
	"icegate/internal/testutil"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// icegateBinary builds the command once for the tests that run it.
func icegateBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "icegate-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "icegate")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// freeTCPUDPPort returns a port free for both UDP and TCP on 127.0.0.1.
func freeTCPUDPPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// writeCert writes a self-signed certificate for 127.0.0.1 with common
// name cn, and its key.
func writeCert(t *testing.T, dir, cn string, dnsNames ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     dnsNames,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// process is a running icegate serve.
type process struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *testutil.SyncBuffer
}

// waitLog waits for a JSON log record, written after mark, whose msg
// contains msg, and returns it.
func (p *process) waitLog(mark int, msg string) map[string]any {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for line := range strings.Lines(p.stderr.Since(mark)) {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && strings.Contains(fmt.Sprint(rec["msg"]), msg) {
				return rec
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("no log record %q:\n%s", msg, p.stderr.Since(mark))
	return nil
}

// hup sends SIGHUP and returns the reload's log record.
func (p *process) hup(wantMsg string) map[string]any {
	p.t.Helper()
	mark := p.stderr.Len()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		p.t.Fatal(err)
	}
	return p.waitLog(mark, wantMsg)
}

// metric returns the value of the sample named exactly name (with its
// labels as Prometheus prints them) at the metrics endpoint.
func metric(t *testing.T, url, name string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}

// vendedICEServers asks the signaling server what it hands out.
func vendedICEServers(t *testing.T, httpAddr string) []auth.ICEServer {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/api/ice-servers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		ICEServers []auth.ICEServer `json:"iceServers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("ice-servers: %d %v", resp.StatusCode, err)
	}
	return body.ICEServers
}

// udpEchoPeer echoes UDP datagrams on ip until the test ends.
func udpEchoPeer(t *testing.T, ip string) net.Addr {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr()
}

// turnRelay allocates at server as user with pion's client.
func turnRelay(t *testing.T, server, user, pass string) (net.PacketConn, error) {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: pass, Realm: "icegate",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	relay, err := c.Allocate()
	if err == nil {
		t.Cleanup(func() { relay.Close() })
	}
	return relay, err
}

// echoes reports whether a datagram sent through relay to peer comes back.
func echoes(relay net.PacketConn, peer net.Addr) bool {
	buf := make([]byte, 1500)
	for range 4 {
		if _, err := relay.WriteTo([]byte("ping"), peer); err != nil {
			return false
		}
		_ = relay.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
		if n, from, err := relay.ReadFrom(buf); err == nil && string(buf[:n]) == "ping" && from.String() == peer.String() {
			return true
		}
	}
	return false
}

// TestSIGHUP runs the binary and reloads it: a changed listen.port and
// metrics.listen are reported by name in one log line and keep serving
// where they were, with the URLs handed out unchanged; users, secrets,
// policy and the relay's certificate are applied; a removed user's and a
// removed secret's live allocations end, a newly denied peer stops getting
// data; a broken file changes nothing; every log line is JSON, addresses
// as strings.
func TestSIGHUP(t *testing.T) {
	bin := icegateBinary(t)
	dir := t.TempDir()
	port, tlsPort, metricsPort, httpPort := freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t)
	certA, keyA := writeCert(t, dir, "cert-a")
	certB, keyB := writeCert(t, dir, "cert-b")
	const secret1, secret2 = "first-shared-secret-0123456789", "second-shared-secret-0123456789"
	cfgFile := filepath.Join(dir, "icegate.hcl")
	const apiKey1, apiKey2 = "first-api-key-0123456789abcdef0123", "second-api-key-0123456789abcdef012"
	write := func(port, metricsPort int, secret, users, deny, cert, key, apiKey string) {
		src := fmt.Sprintf(`log { format = "json" }
listen {
  addresses = ["127.0.0.1"]
  port      = %d
  tls_port  = %d
  dtls      = false
}
tls {
  cert_file = %q
  key_file  = %q
}
relay {
  min_port   = 21000
  max_port   = 21999
  ipv4_bind  = "127.0.0.1"
  ipv4_public = "127.0.0.1"
  ipv6_bind  = ""
  private_ok = true
}
auth {
  secrets = [%q]
%s}
policy {
  presets = ["loopback"]
  deny    = [%s]
}
metrics { listen = "127.0.0.1:%d" }
http { listen = "127.0.0.1:%d" }
api { keys = [%q] }
shutdown_grace = "1s"
`, port, tlsPort, cert, key, secret, users, deny, metricsPort, httpPort, apiKey)
		if err := os.WriteFile(cfgFile, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const alice, dave = `  user "alice" { password = "rabbit" }` + "\n", `  user "dave" { password = "diver" }` + "\n"
	write(port, metricsPort, secret1, alice+dave, "", certA, keyA, apiKey1)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "-config", cfgFile)
	p := &process{t: t, cmd: cmd, stderr: &testutil.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = io.Discard, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", p.stderr.String())
		}
	}()
	p.waitLog(0, "icegate ready")
	server := fmt.Sprintf("127.0.0.1:%d", port)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	wantURL := fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", port)

	servedCN := func() string {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tlsPort), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := servedCN(); cn != "cert-a" {
		t.Fatalf("TLS serves %q, want cert-a", cn)
	}
	if got := apiStatus(t, httpAddr, apiKey1); got != 200 {
		t.Fatalf("server API with api.keys[0]: %d", got)
	}

	near, far := udpEchoPeer(t, "127.0.0.1"), udpEchoPeer(t, "127.0.0.3")
	aliceRelay, err := turnRelay(t, server, "alice", "rabbit")
	if err != nil {
		t.Fatal(err)
	}
	restUser, restPass, _ := auth.MintREST(secret1, "carol", time.Hour, time.Now(), ":")
	carolRelay, err := turnRelay(t, server, restUser, restPass)
	if err != nil {
		t.Fatal(err)
	}
	daveRelay, err := turnRelay(t, server, "dave", "diver")
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]net.PacketConn{"alice": aliceRelay, "carol": carolRelay, "dave": daveRelay} {
		if !echoes(r, near) {
			t.Fatalf("%s: no relaying before the reload", name)
		}
	}
	if !echoes(daveRelay, far) {
		t.Fatal("dave: no relaying to 127.0.0.3 before the reload")
	}

	// The reload: new port and metrics address (restart-only), alice gone,
	// bob added, the secret rotated, 127.0.0.3 denied, another certificate.
	const bob = `  user "bob" { password = "builder" }` + "\n"
	write(freeTCPUDPPort(t), freeTCPUDPPort(t), secret2, bob+dave, `"127.0.0.3/32"`, certB, keyB, apiKey2)
	rec := p.hup("configuration reloaded except settings that need a restart")
	restart := fmt.Sprint(rec["restart_needed"])
	if !strings.Contains(restart, "listen.port") || !strings.Contains(restart, "metrics.listen") {
		t.Errorf("restart_needed = %s, want listen.port and metrics.listen named", restart)
	}
	if fmt.Sprint(rec["allocations_ended"]) != "2" || fmt.Sprint(rec["peers_blocked"]) != "1" {
		t.Errorf("reload record %v: want 2 allocations ended (alice, carol), 1 peer blocked", rec)
	}

	// The old metrics address still serves, and says what happened.
	for name, want := range map[string]string{
		"icegate_config_last_reload_successful":                                      "1",
		"icegate_config_restart_pending":                                             "1",
		`icegate_reload_revocations_total{reason="unknown-user",what="allocation"}`:  "1",
		`icegate_reload_revocations_total{reason="bad-integrity",what="allocation"}`: "1",
		`icegate_reload_revocations_total{reason="peer-denied",what="peer"}`:         "1",
	} {
		if got := metric(t, metricsURL, name); got != want {
			t.Errorf("%s = %q, want %s", name, got, want)
		}
	}
	// The URLs handed out still name the port the relay serves, with a
	// credential of the new secret.
	servers := vendedICEServers(t, httpAddr)
	if len(servers) != 2 || !strings.Contains(strings.Join(servers[1].URLs, " "), wantURL) {
		t.Fatalf("iceServers after the reload: %+v, want %s", servers, wantURL)
	}
	if servers[1].Credential != auth.RESTPassword(secret2, servers[1].Username) {
		t.Error("the credential handed out is not minted with the new secret")
	}
	if _, err := turnRelay(t, server, servers[1].Username, servers[1].Credential); err != nil {
		t.Errorf("the credential handed out does not allocate: %v", err)
	}

	// Revocation: alice's and carol's relays are dead, dave keeps relaying
	// but not to the denied peer; bob is new; alice is refused.
	if echoes(aliceRelay, near) || echoes(carolRelay, near) {
		t.Error("a revoked allocation still relays")
	}
	if !echoes(daveRelay, near) {
		t.Error("dave's allocation stopped relaying")
	}
	if echoes(daveRelay, far) {
		t.Error("the denied peer still gets data")
	}
	if _, err := turnRelay(t, server, "bob", "builder"); err != nil {
		t.Errorf("bob, added by the reload: %v", err)
	}
	if _, err := turnRelay(t, server, "alice", "rabbit"); err == nil {
		t.Error("alice, removed by the reload, still allocates")
	}
	if cn := servedCN(); cn != "cert-b" {
		t.Errorf("TLS serves %q after the reload, want cert-b", cn)
	}
	// The API key was replaced.
	if a, b := apiStatus(t, httpAddr, apiKey1), apiStatus(t, httpAddr, apiKey2); a != 401 || b != 200 {
		t.Errorf("server API after the reload: old key %d, new key %d; want 401 and 200", a, b)
	}

	// A broken file changes nothing, and says so in one JSON record.
	if err := os.WriteFile(cfgFile, []byte("listen {\n  port = \"many\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec = p.hup("reload failed, nothing changed")
	if problems := fmt.Sprint(rec["problems"]); !strings.Contains(problems, "icegate.hcl:") {
		t.Errorf("the failure's record names no file:line: %v", rec)
	}
	if got := metric(t, metricsURL, "icegate_config_last_reload_successful"); got != "0" {
		t.Errorf("last_reload_successful = %q after a broken file, want 0", got)
	}
	if !echoes(daveRelay, near) {
		t.Error("dave's allocation stopped relaying after a failed reload")
	}
	if servers := vendedICEServers(t, httpAddr); !strings.Contains(strings.Join(servers[1].URLs, " "), wantURL) {
		t.Errorf("iceServers after a failed reload: %+v", servers)
	}
	if _, err := turnRelay(t, server, "bob", "builder"); err != nil {
		t.Errorf("bob after a failed reload: %v", err)
	}

	// Every line on stderr is a JSON record; addresses are strings.
	sawClient := false
	for line := range strings.Lines(p.stderr.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON log record: %q", line)
			continue
		}
		if c, ok := rec["client"]; ok {
			sawClient = true
			if s, ok := c.(string); !ok || !strings.HasPrefix(s, "127.0.0.1:") {
				t.Errorf("client is %#v, want an \"IP:port\" string: %s", c, line)
			}
		}
	}
	if strings.Contains(p.stderr.String(), apiKey1) || strings.Contains(p.stderr.String(), apiKey2) {
		t.Error("the log shows an API key")
	}
	if strings.Contains(p.stderr.String(), "Failed to close") {
		t.Error("ending a revoked allocation made pion log a failure")
	}
	if !sawClient {
		t.Error("no record named a client (alice's refusal should have)")
	}
}

// apiStatus is the status of GET /api/v1/nodes with key.
func apiStatus(t *testing.T, httpAddr, key string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/api/v1/nodes", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestLogAddrs: the log handler writes a net.Addr as "IP:port" in JSON and
// text alike.
func TestLogAddrs(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log := slog.New(newLogHandler(&buf, format, slog.LevelInfo))
		log.Info("x", "client", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 3478},
			"peer", &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}, "none", (*net.UDPAddr)(nil))
		out := buf.String()
		want := map[string][]string{
			"json": {`"client":"192.0.2.1:3478"`, `"peer":"[2001:db8::1]:443"`, `"none":"<nil>"`},
			"text": {`client=192.0.2.1:3478`, `peer=[2001:db8::1]:443`},
		}[format]
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: %q lacks %s", format, out, w)
			}
		}
	}
}
