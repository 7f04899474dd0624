// Package acme tests icegate's ACME certificates (tls.acme) against Let's
// Encrypt's test CA, pebble, as a real ACME server: pebble runs in a
// network namespace of its own and validates the challenges by connecting
// to icegate's listeners across a veth pair (10.200.250.0/30: the end in
// this namespace must not take a 203.0.113.0/24 route, which would shadow
// whatever this machine reaches in that range, as its Go module proxy),
// resolving the test domain through a DNS server this test
// runs. Nothing is faked: PEBBLE_VA_ALWAYS_VALID is off, authorizations
// are not reused, and the certificate a TURNS, DTLS and HTTPS client sees
// is checked against pebble's root, before and after a renewal.
//
// It needs root (namespaces) on Linux and the pebble binary (on PATH, in
// $GOBIN or $GOPATH/bin, or at $ICEGATE_PEBBLE; `make deps` installs it).
// Without root it skips, unless ICEGATE_REQUIRE_NATLAB=1 (which make test
// sets as root on Linux); without pebble it skips, unless
// ICEGATE_REQUIRE_INTEROP=1, when it fails.
package acme

import (
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
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/pion/dtls/v3"
	"github.com/pion/stun/v4"

	"icegate/internal/icegatebin"
)

const (
	hostAddr  = "10.200.250.1" // icegate and the DNS server, in the test's namespace
	nsAddr    = "10.200.250.2" // pebble, in its own namespace
	domain    = "turn.acme.test"
	tlsPort   = 5001 // pebble's tlsPort: where it validates tls-alpn-01
	httpPort  = 5002 // pebble's httpPort: where it validates http-01
	httpsPort = 8443
	dnsPort   = 5353
)

// lookPebble finds pebble or skips (fails with ICEGATE_REQUIRE_INTEROP=1).
func lookPebble(t *testing.T) string {
	t.Helper()
	require := os.Getenv("ICEGATE_REQUIRE_INTEROP") == "1"
	miss := func(format string, args ...any) {
		t.Helper()
		if require {
			t.Fatalf(format+" (ICEGATE_REQUIRE_INTEROP=1)", args...)
		}
		t.Skipf(format, args...)
	}
	if runtime.GOOS != "linux" || os.Getuid() != 0 {
		// As the NAT lab: make test requires it only where it can run.
		if os.Getenv("ICEGATE_REQUIRE_NATLAB") == "1" {
			t.Fatal("needs root on Linux for a network namespace (ICEGATE_REQUIRE_NATLAB=1)")
		}
		t.Skip("needs root on Linux for a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		miss("no ip (iproute2)")
	}
	cands := []string{os.Getenv("ICEGATE_PEBBLE")}
	if p, err := exec.LookPath("pebble"); err == nil {
		cands = append(cands, p)
	}
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		f := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(f) == 2 {
			cands = append(cands, filepath.Join(f[0], "pebble"), filepath.Join(f[1], "bin", "pebble"))
		}
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && c != "" && !st.IsDir() {
			return c
		}
	}
	miss("no pebble (go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3, or make deps)")
	return ""
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// netns makes a namespace with a veth pair: hostAddr on this side, nsAddr
// inside. It returns the namespace's name.
func netns(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("igacme%d", os.Getpid())
	host, peer := fmt.Sprintf("iga%d", os.Getpid()%100000), fmt.Sprintf("igb%d", os.Getpid()%100000)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", host).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	})
	run(t, "ip", "netns", "add", ns)
	run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	run(t, "ip", "link", "set", peer, "netns", ns)
	run(t, "ip", "addr", "add", hostAddr+"/30", "dev", host)
	run(t, "ip", "link", "set", host, "up")
	run(t, "ip", "-n", ns, "addr", "add", nsAddr+"/30", "dev", peer)
	run(t, "ip", "-n", ns, "link", "set", peer, "up")
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// serveDNS answers A queries for domain with hostAddr, the way a public
// zone would point the name at the server.
func serveDNS(t *testing.T) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", fmt.Sprintf("%s:%d", hostAddr, dnsPort))
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA && strings.EqualFold(q.Name, domain+".") {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1},
					A: net.ParseIP(hostAddr)})
			}
		}
		if len(m.Answer) == 0 && !strings.EqualFold(r.Question[0].Name, domain+".") {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	// pebble asks over TCP as well as UDP.
	ln, err := net.Listen("tcp4", fmt.Sprintf("%s:%d", hostAddr, dnsPort))
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: mux}, {Listener: ln, Handler: mux}} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
}

// pebbleCerts writes a CA and a certificate for pebble's own HTTPS (at
// nsAddr) into dir; it returns the CA's PEM file.
func pebbleCerts(t *testing.T, dir string) string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "icegate test: pebble's HTTPS CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: nsAddr},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(nsAddr)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafT, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("pebble-cert.pem", "CERTIFICATE", leafDER)
	write("pebble-key.pem", "EC PRIVATE KEY", keyDER)
	return write("pebble-ca.pem", "CERTIFICATE", caDER)
}

// startPebble runs pebble in ns, issuing certificates valid for lifetime.
func startPebble(t *testing.T, bin, ns, dir string, lifetime time.Duration) {
	t.Helper()
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           nsAddr + ":14000",
		"managementListenAddress": nsAddr + ":15000",
		"certificate":             filepath.Join(dir, "pebble-cert.pem"),
		"privateKey":              filepath.Join(dir, "pebble-key.pem"),
		"httpPort":                httpPort,
		"tlsPort":                 tlsPort,
		"keyAlgorithm":            "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "short-lived, to see a renewal", "validityPeriod": int(lifetime.Seconds())}},
	}}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "-config", cfgPath, "-dnsserver", fmt.Sprintf("%s:%d", hostAddr, dnsPort))
	env := []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PEBBLE_") {
			env = append(env, e) // PEBBLE_VA_ALWAYS_VALID stays unset: challenges are really validated
		}
	}
	cmd.Env = env
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("pebble:\n%s", logs.String())
		}
	})
	waitTCP(t, nsAddr+":14000")
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never accepted: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// pebbleRoot fetches the root pebble issues under (it makes a new one at
// each start) from its management interface.
func pebbleRoot(t *testing.T, caPEM string) *x509.CertPool {
	t.Helper()
	trust := x509.NewCertPool()
	b, _ := os.ReadFile(caPEM)
	trust.AppendCertsFromPEM(b)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: trust}}}
	resp, err := c.Get("https://" + nsAddr + ":15000/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(body) {
		t.Fatalf("pebble's /roots/0 is no PEM: %q", body)
	}
	return roots
}

// startIcegate builds and runs icegate with tls.acme as acmeBlock says.
func startIcegate(t *testing.T, dir, acmeBlock string) *lockedBuffer {
	t.Helper()
	bin := filepath.Join(dir, "icegate")
	if err := icegatebin.Build(context.Background(), bin, "acme-test"); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
listen {
  addresses = [%[1]q]
  port      = 3478
  tls_port  = %[2]d
}
relay {
  ipv4_bind = %[1]q
  ipv6_bind = ""
  min_port  = 52000
  max_port  = 52999
  # 10.200.250.1: a test network.
  private_ok = true
}
auth { secrets = ["acme-test-secret-0123456789"] }
http {
  listen = "%[1]s:%[3]d"
  acme   = true
}
signaling { token_secrets = ["acme-test-token-secret-0123456789"] }
log { level = "info" }
tls {
%[4]s
}
`, hostAddr, tlsPort, httpsPort, acmeBlock)
	cfgPath := filepath.Join(dir, "icegate.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "config", "check", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("config check: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("icegate:\n%s", logs.String())
		}
	})
	return logs
}

// turnsCert connects over TLS as a TURNS client would (SNI, verified
// against pebble's root), checks that a STUN Binding is answered on the
// connection, and returns the certificate it saw; nil while none verifies.
func turnsCert(roots *x509.CertPool) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", fmt.Sprintf("%s:%d", hostAddr, tlsPort),
		&tls.Config{ServerName: domain, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := c.Write(req.Raw); err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("binding over TURNS: %w", err)
	}
	res := &stun.Message{Raw: buf[:n]}
	if err := res.Decode(); err != nil || res.Type != stun.BindingSuccess {
		return nil, fmt.Errorf("binding over TURNS: %v %v", res.Type, err)
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

// dtlsCert does a DTLS handshake as a TURN-over-DTLS client and returns the
// certificate it saw, verified against roots.
func dtlsCert(roots *x509.CertPool) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raddr := &net.UDPAddr{IP: net.ParseIP(hostAddr), Port: tlsPort}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(hostAddr)})
	if err != nil {
		return nil, err
	}
	c, err := dtls.Client(pc, raddr, &dtls.Config{ServerName: domain, RootCAs: roots})
	if err != nil {
		pc.Close()
		return nil, err
	}
	defer c.Close()
	if err := c.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	st, _ := c.ConnectionState()
	return x509.ParseCertificate(st.PeerCertificates[0])
}

// httpsCert gets the test page over HTTPS and returns the certificate.
func httpsCert(roots *x509.CertPool) (*x509.Certificate, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("%s:%d", hostAddr, httpsPort))
		}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	resp, err := c.Get(fmt.Sprintf("https://%s:%d/", domain, httpsPort))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /: %s", resp.Status)
	}
	return resp.TLS.PeerCertificates[0], nil
}

// waitCert polls get until it returns a certificate for domain that is not
// old, and returns it.
func waitCert(t *testing.T, what string, get func(*x509.CertPool) (*x509.Certificate, error), roots *x509.CertPool, old *x509.Certificate, within time.Duration) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		c, err := get(roots)
		if err == nil && (old == nil || c.SerialNumber.Cmp(old.SerialNumber) != 0) {
			if err := c.VerifyHostname(domain); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			return c
		}
		last = err
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: no new certificate within %v (last error: %v)", what, within, last)
	return nil
}

// TestACMEIssueAndRenew: with tls-alpn-01 answered on icegate's own TLS
// listener, icegate gets a certificate from pebble and serves it on TURNS,
// DTLS and HTTPS; it renews it inside the renewal window (a 30 s lifetime,
// half of it the window) and every listener serves the new one without a
// restart or reload.
func TestACMEIssueAndRenew(t *testing.T) {
	pebble := lookPebble(t)
	dir := t.TempDir()
	ns := netns(t)
	serveDNS(t)
	caPEM := pebbleCerts(t, dir)
	startPebble(t, pebble, ns, dir, 30*time.Second)
	roots := pebbleRoot(t, caPEM)
	logs := startIcegate(t, dir, fmt.Sprintf(`  acme {
    domains        = [%q]
    email          = "ops@acme.test"
    ca             = "https://%s:14000/dir"
    ca_root        = %q
    storage        = %q
    challenges     = ["tls-alpn-01"]
    tls_alpn_port  = %d
    renewal_window = 0.5
    check_interval = "1s"
  }`, domain, nsAddr, caPEM, filepath.Join(dir, "acme"), tlsPort))

	first := waitCert(t, "TURNS", turnsCert, roots, nil, 60*time.Second)
	if got := waitCert(t, "DTLS", dtlsCert, roots, nil, 10*time.Second); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("DTLS serves serial %v, TURNS %v", got.SerialNumber, first.SerialNumber)
	}
	if got := waitCert(t, "HTTPS", httpsCert, roots, nil, 10*time.Second); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("HTTPS serves serial %v, TURNS %v", got.SerialNumber, first.SerialNumber)
	}
	if !strings.Contains(logs.String(), "served key authentication certificate") {
		t.Error("icegate's log does not show the tls-alpn-01 challenge answered on its TLS listener")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "acme", "certificates", "*", domain, domain+".crt"))
	if len(files) != 1 {
		t.Errorf("certificate not stored under tls.acme.storage: %v", files)
	}
	t.Logf("issued serial %x, valid %s to %s", first.SerialNumber, first.NotBefore.Format(time.TimeOnly), first.NotAfter.Format(time.TimeOnly))

	// The renewal: a new certificate well before the first expires.
	renewed := waitCert(t, "TURNS after renewal", turnsCert, roots, first, 40*time.Second)
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate expires %v, not after the first's %v", renewed.NotAfter, first.NotAfter)
	}
	if time.Now().After(first.NotAfter) {
		t.Errorf("renewed only after the first certificate expired (%v)", first.NotAfter)
	}
	waitCert(t, "DTLS after renewal", dtlsCert, roots, first, 10*time.Second)
	waitCert(t, "HTTPS after renewal", httpsCert, roots, first, 10*time.Second)
	t.Logf("renewed serial %x, valid to %s", renewed.SerialNumber, renewed.NotAfter.Format(time.TimeOnly))
}

// TestACMEHTTP01: with only http-01 offered, icegate answers pebble's
// validation on tls.acme.http_listen (binding it for the challenge) and
// TURNS serves the issued certificate.
func TestACMEHTTP01(t *testing.T) {
	pebble := lookPebble(t)
	dir := t.TempDir()
	ns := netns(t)
	serveDNS(t)
	caPEM := pebbleCerts(t, dir)
	startPebble(t, pebble, ns, dir, time.Hour)
	roots := pebbleRoot(t, caPEM)
	startIcegate(t, dir, fmt.Sprintf(`  acme {
    domains     = [%q]
    ca          = "https://%s:14000/dir"
    ca_root     = %q
    storage     = %q
    challenges  = ["http-01"]
    http_listen = "%s:%d"
  }`, domain, nsAddr, caPEM, filepath.Join(dir, "acme"), hostAddr, httpPort))
	c := waitCert(t, "TURNS", turnsCert, roots, nil, 60*time.Second)
	t.Logf("issued serial %x over http-01", c.SerialNumber)
}
