package config

import (
	"strings"
	"testing"
)

// TestSTUNWarnings checks the warning about stun.alternate_public that
// cannot be a testdata case (that needs an error): given only when the
// primary address is valid and has a public address the alternate lacks.
// stun_wildcard.hcl and stun_two_primaries.hcl check that an invalid
// primary gets no such warning.
func TestSTUNWarnings(t *testing.T) {
	const base = "listen {\n  addresses = [\"192.0.2.1\"]\n}\nstun {\n  alternate_address = \"192.0.2.2\"\n%s}\n"
	for _, tc := range []struct {
		relay, stun, want string
	}{
		{"relay {\n  ipv4_public = \"203.0.113.10\"\n}\n", "",
			`warning: stun.alternate_public: empty while relay.ipv4_public is set: OTHER-ADDRESS will name 192.0.2.2, the alternate's local address; set its public one`},
		{"relay {\n  ipv4_public = \"203.0.113.10\"\n}\n", "  alternate_public = \"203.0.113.11\"\n", ""},
		{"", "", ""},
	} {
		src := tc.relay + strings.Replace(base, "%s", tc.stun, 1)
		c, diags := Parse([]byte(src), "s.hcl")
		if c == nil {
			t.Fatalf("%q: %s", src, FormatDiagnostics(diags))
		}
		got := strings.TrimSpace(FormatDiagnostics(diags))
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%q: diagnostics %q, want %q", src, got, tc.want)
		}
	}
}
