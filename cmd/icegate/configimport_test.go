package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigImportDebian imports Debian's own turnserver.conf: all
// comments but four flags, so the output is the defaults plus notes, and
// it checks.
func TestConfigImportDebian(t *testing.T) {
	out, stderr, err := runCLI("config", "import", "../../config/testdata/coturn/debian-4.6.1.conf")
	if err != nil {
		t.Fatalf("config import: %v\n%s", err, stderr)
	}
	for _, want := range []string{
		"debian-4.6.1.conf:529: not carried over: syslog: ",
		"debian-4.6.1.conf:779: already icegate's behaviour: no-rfc5780: ",
		"debian-4.6.1.conf: different in icegate: no credentials in the file",
		"config check of the output: ok",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(out, "#   line 529: syslog: ") {
		t.Errorf("the output does not list syslog:\n%s", out)
	}
	checkOutput(t, out)
}

// checkOutput runs `config check` on an import's output, as a user would
// after `config import ... > icegate.hcl`.
func checkOutput(t *testing.T, out string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "icegate.hcl")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runCLI("config", "check", path); err != nil || stderr != "" {
		t.Fatalf("config check of the output: %v\n%s\n%s", err, stderr, out)
	}
}

// TestConfigImportProduction imports a production file with a secret,
// users, a certificate and unsupported options: the secrets reach the
// output, never stderr, and the result checks.
func TestConfigImportProduction(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"cert.pem", "key.pem"} {
		b, err := os.ReadFile(filepath.Join("../../config/testdata/tls", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "turnserver.conf")
	src := "listening-port=3478\ntls-listening-port=5349\nexternal-ip=198.51.100.20/10.0.0.7\n" +
		"min-port=50000\nmax-port=50999\nrealm=turn.example.net\nlt-cred-mech\n" +
		"user=alice:Sup3r-Secret-Passw0rd\nuser=bob:0x7c4a8d09ca3762af61e59520943dc264\n" +
		"cert=" + filepath.Join(dir, "cert.pem") + "\npkey=" + filepath.Join(dir, "key.pem") + "\n" +
		"pkey-pwd=Sup3r-Secret-Passw0rd\ncli-password=Sup3r-Secret-Passw0rd\n" +
		"denied-peer-ip=172.16.0.0-172.31.255.255\nuser-quota=4\ntotal-quota=500\nno-tcp-relay\nno-dtls\nprometheus\nmobility\n"
	if err := os.WriteFile(conf, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runCLI("config", "import", conf)
	if err != nil {
		t.Fatalf("config import: %v\n%s", err, stderr)
	}
	if strings.Contains(stderr, "Sup3r") || strings.Contains(stderr, "7c4a8d09") {
		t.Errorf("stderr echoes a secret:\n%s", stderr)
	}
	// Compared with white space folded: the output's alignment is
	// hclwrite's.
	folded := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{`password = "Sup3r-Secret-Passw0rd"`, `key = "0x7c4a8d09ca3762af61e59520943dc264"`,
		`ipv4_public = "198.51.100.20"`, `ipv4_bind = "10.0.0.7"`, `"172.16.0.0/12"`, `dtls = false`} {
		if !strings.Contains(folded, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	for _, want := range []string{":12: not carried over: pkey-pwd: ", ":13: not carried over: cli-password: ", ":20: not carried over: mobility: "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	checkOutput(t, out)
}

// TestConfigImportInvalid: a result that does not validate is still
// written, and the command fails naming the problem.
func TestConfigImportInvalid(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "turnserver.conf")
	if err := os.WriteFile(conf, []byte("min-port=80\nmax-port=90\nstatic-auth-secret=0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runCLI("config", "import", conf)
	if err == nil || !strings.Contains(err.Error(), "does not validate") {
		t.Fatalf("config import: %v, want a validation failure", err)
	}
	if !strings.Contains(stderr, "imported.hcl:") || !strings.Contains(stderr, "relay.min_port: 80 is outside 1024-65535") {
		t.Errorf("stderr does not name the problem:\n%s", stderr)
	}
	if !strings.Contains(out, "min_port = 80") {
		t.Errorf("output:\n%s", out)
	}
}

// TestConfigImportStdin reads "-" from standard input.
func TestConfigImportStdin(t *testing.T) {
	orig := stdinReader
	t.Cleanup(func() { stdinReader = orig })
	stdinReader = strings.NewReader("realm=stdin.example\nstatic-auth-secret=0123456789abcdef0123\n")
	out, stderr, err := runCLI("config", "import", "-")
	if err != nil || !strings.Contains(out, `realm = "stdin.example"`) || !strings.Contains(stderr, "<stdin>: 3 note(s); config check of the output: ok") {
		t.Fatalf("config import -: %v\n%s\n%s", err, out, stderr)
	}
}

// TestConfigImportUsage: a missing or unreadable file is an error.
func TestConfigImportUsage(t *testing.T) {
	if _, _, err := runCLI("config", "import"); !errors.Is(err, errUsage) {
		t.Errorf("no file: %v, want a usage error", err)
	}
	if _, _, err := runCLI("config", "import", filepath.Join(t.TempDir(), "missing.conf")); err == nil || errors.Is(err, errUsage) {
		t.Errorf("missing file: %v", err)
	}
}
