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
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := CertificateLoader(cert, key); err == nil {
		t.Fatal("loaded missing files")
	}
	copyFile("../config/testdata/tls/cert.pem", cert)
	copyFile("../config/testdata/tls/key.pem", key)
	get, err := CertificateLoader(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := get(nil)
	if c1 == nil {
		t.Fatal("no certificate")
	}
	// A broken pair on disk keeps the old certificate.
	if err := os.WriteFile(cert, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	os.Chtimes(cert, future, future)
	c2, _ := get(nil)
	if c2 != c1 {
		t.Fatal("certificate changed to a broken pair")
	}
}
