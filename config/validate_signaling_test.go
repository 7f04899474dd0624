package config

import (
	"strings"
	"testing"
)

// TestSignalingWarnings checks the warnings that cannot be testdata cases
// (those need an error): credentials handed to anyone who can reach HTTP.
func TestSignalingWarnings(t *testing.T) {
	for _, tc := range []struct {
		src, want string
	}{
		{"http {\n  listen = \":8080\"\n}\n", `signaling.token_secrets: empty while http.listen ":8080" is reachable from other hosts`},
		{"http {\n  listen = \"[::]:8080\"\n}\n", "reachable from other hosts"},
		{"http {\n  listen = \"localhost:8080\"\n}\n", ""},
		{"http {\n  listen = \"[::1]:8080\"\n}\n", ""},
		{"http {\n  listen = \":8080\"\n}\nsignaling {\n  token_secrets = [\"0123456789abcdef0123456789abcdef\"]\n}\n", ""},
		{"signaling {\n  allowed_origins = [\"*\"]\n}\n", `"*" lets every web site use`},
		{"signaling {\n  token_audience = \"x\"\n}\n", `signaling.token_audience: set while signaling.token_secrets is empty`},
		{"signaling {\n  max_token_lifetime = \"1h\"\n}\n", `signaling.max_token_lifetime: set while signaling.token_secrets is empty`},
		{"signaling {\n  max_token_lifetime = \"0s\"\n}\n", ""},
	} {
		c, diags := Parse([]byte(tc.src), "w.hcl")
		if c == nil {
			t.Fatalf("%q: %s", tc.src, FormatDiagnostics(diags))
		}
		got := strings.TrimSpace(FormatDiagnostics(diags))
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%q: diagnostics %q, want %q", tc.src, got, tc.want)
		}
	}
}

// TestHTTPListenErrorOnly checks that an http.listen that does not parse
// gets its error alone: whether it is reachable from other hosts cannot be
// told, so the token_secrets warning stays out.
func TestHTTPListenErrorOnly(t *testing.T) {
	for _, listen := range []string{"8080", ":http", "[::]:99999", "a:b:c"} {
		src := "http {\n  listen = \"" + listen + "\"\n}\n"
		c, diags := Parse([]byte(src), "h.hcl")
		got := FormatDiagnostics(diags)
		if c != nil || len(diags) != 1 || !strings.Contains(got, "error: http.listen: ") {
			t.Errorf("listen %q: want one error on http.listen, got:\n%s", listen, got)
		}
	}
}

// TestCertNames: Validate fills the DNS names of the certificates the
// HTTP server and the relay serve, which the Host check accepts.
func TestCertNames(t *testing.T) {
	src := "tls {\n  cert_file = \"testdata/tls/cert.pem\"\n  key_file = \"testdata/tls/key.pem\"\n}\n" +
		"http {\n  cert_file = \"testdata/tls/cert.pem\"\n  key_file = \"testdata/tls/key.pem\"\n}\n"
	c, diags := Parse([]byte(src), "c.hcl")
	if c == nil {
		t.Fatal(FormatDiagnostics(diags))
	}
	if strings.Join(c.HTTP.CertNames, ",") != "localhost" || strings.Join(c.TLS.CertNames, ",") != "localhost" {
		t.Errorf("cert names: http %q, tls %q", c.HTTP.CertNames, c.TLS.CertNames)
	}
	if c, _ := Parse(nil, "e.hcl"); c.HTTP.CertNames != nil || c.TLS.CertNames != nil {
		t.Errorf("no certificate, names %q %q", c.HTTP.CertNames, c.TLS.CertNames)
	}
}
