package certfile

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReload: a missing pair fails to load; a changed pair is loaded; a
// broken one is logged and counted, and the previous certificate stays
// until the files change again.
func TestReload(t *testing.T) {
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
	certPEM, err := os.ReadFile("../../config/testdata/tls/cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile("../../config/testdata/tls/key.pem")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var oks, errs int
	reloaded := func(ok bool) {
		if ok {
			oks++
		} else {
			errs++
		}
	}
	if _, err := Load(cert, key, log, reloaded); err == nil {
		t.Fatal("loaded missing files")
	}
	write(cert, certPEM, -time.Hour)
	write(key, keyPEM, -time.Hour)
	p, err := Load(cert, key, log, reloaded)
	if err != nil {
		t.Fatal(err)
	}
	c1 := p.Get()
	p.Check()
	if p.Get() != c1 || oks+errs != 0 {
		t.Fatal("reloaded unchanged files")
	}
	// A half-written pair keeps the old certificate, once.
	write(cert, []byte("garbage"), -time.Minute)
	p.Check()
	p.Check()
	if p.Get() != c1 || errs != 1 {
		t.Fatalf("after a broken pair: same certificate %v, %d errors counted, want true and 1", p.Get() == c1, errs)
	}
	if !strings.Contains(logs.String(), "cannot be loaded") {
		t.Fatalf("the broken pair is not logged:\n%s", logs.String())
	}
	// A complete new pair is picked up.
	write(cert, certPEM, 0)
	p.Check()
	if c3 := p.Get(); c3 == c1 || c3 == nil || oks != 1 {
		t.Fatalf("did not reload the changed pair (%d reloads counted)", oks)
	}
	if c, _ := p.GetCertificate(nil); c != p.Get() {
		t.Fatal("GetCertificate serves another certificate")
	}
}
