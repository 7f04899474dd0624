package turn

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
)

func writePair(t *testing.T, dir string) string {
	t.Helper()
	cert, err := selfSigned([]string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	// Write to temporary names and rename, as certbot and cert-manager do.
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	for name, data := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM} {
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return cert.Leaf.SerialNumber.String()
}

func servedSerial(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestCertificateReload: a certificate replaced on disk is served to new
// connections without a restart, and an allocation made over TLS before the
// change keeps relaying.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	first := writePair(t, dir)
	srv := startServer(t, func(c *Config) {
		c.TLS.CertFile, c.TLS.KeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		c.TLS.ReloadInterval = 50 * time.Millisecond
	})
	server := srv.addr(t, "tls", "4")
	if got := servedSerial(t, server.String()); got != first {
		t.Fatalf("serving serial %s, want the configured %s", got, first)
	}
	c := newClient(t, dialClient(t, "tls", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	echo := udpEcho(t, "127.0.0.1")
	echoThrough(t, relay, echo)

	// Let the modification time move on even on coarse file systems.
	time.Sleep(20 * time.Millisecond)
	second := writePair(t, dir)
	deadline := time.Now().Add(5 * time.Second)
	for servedSerial(t, server.String()) != second {
		if time.Now().After(deadline) {
			t.Fatal("the new certificate was not picked up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	echoThrough(t, relay, echo)

	// A broken pair on disk keeps the last good certificate.
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := servedSerial(t, server.String()); got != second {
		t.Fatalf("after a broken write the server serves %s, want the last good %s", got, second)
	}
}

// TestSelfSignedHostsUnique: the loopback addresses that the defaults, the
// relay's public addresses and the listen addresses all name appear once in
// the certificate and in the log line that lists its hosts.
func TestSelfSignedHostsUnique(t *testing.T) {
	in := []string{"localhost", "127.0.0.1", "::1", "127.0.0.1", "::1", "::ffff:127.0.0.1", "LocalHost", "", "turn.example.org", "::1"}
	got := uniqueHosts(in)
	want := []string{"localhost", "127.0.0.1", "::1", "turn.example.org"}
	if !slices.Equal(got, want) {
		t.Fatalf("uniqueHosts(%q) = %q, want %q", in, got, want)
	}
	s, err := newCertStore("", "", in, slog.New(slog.DiscardHandler), NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	leaf := s.cur.Load().self.Leaf
	if len(leaf.IPAddresses) != 2 || len(leaf.DNSNames) != 2 {
		t.Fatalf("certificate names IPs %v and DNS names %v, want each once", leaf.IPAddresses, leaf.DNSNames)
	}
}
