package signaling

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCertificateLoaderReloads(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	write := func(to string, b []byte, age time.Duration) {
		t.Helper()
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(age)
		if err := os.Chtimes(to, at, at); err != nil {
			t.Fatal(err)
		}
	}
	certPEM, err := os.ReadFile("../config/testdata/tls/cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile("../config/testdata/tls/key.pem")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CertificateLoader(cert, key); err == nil {
		t.Fatal("loaded missing files")
	}
	write(cert, certPEM, -time.Hour)
	write(key, keyPEM, -time.Hour)
	if _, err := CertificateLoader(cert, key); err != nil {
		t.Fatal(err)
	}
	l := &certLoader{certFile: cert, keyFile: key} // checks on every handshake
	if err := l.load(); err != nil {
		t.Fatal(err)
	}
	c1, _ := l.get(nil)
	// A half-written pair keeps the old certificate.
	write(cert, []byte("garbage"), -time.Minute)
	if c2, _ := l.get(nil); c2 != c1 {
		t.Fatal("switched to a broken pair")
	}
	// A complete new pair is picked up.
	write(cert, certPEM, 0)
	if c3, _ := l.get(nil); c3 == c1 || c3 == nil {
		t.Fatal("did not reload the changed pair")
	}
}
