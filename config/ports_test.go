package config

import (
	"net/netip"
	"slices"
	"testing"
)

// TestSharedTLS: Validate names the listen addresses whose TURN over TLS
// socket HTTPS shares, and none when HTTP has its own port.
func TestSharedTLS(t *testing.T) {
	for _, tc := range []struct {
		path string
		want []netip.Addr
	}{
		{"testdata/valid/shared_443.hcl", []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		{"testdata/valid/shared_443_dual.hcl", []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}},
		{"testdata/valid/signaling.hcl", nil},
		{"testdata/valid/full.hcl", nil},
	} {
		c, diags := Load(tc.path)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", tc.path, FormatDiagnostics(diags))
		}
		if !slices.Equal(c.HTTP.SharedTLS, tc.want) {
			t.Errorf("%s: SharedTLS %v, want %v", tc.path, c.HTTP.SharedTLS, tc.want)
		}
	}
}

func TestTCPBindOverlaps(t *testing.T) {
	b := func(a string, dual bool, port int) tcpBind {
		return tcpBind{addr: netip.MustParseAddr(a), dual: dual, port: port}
	}
	for _, tc := range []struct {
		a, b tcpBind
		want bool
	}{
		{b("127.0.0.1", false, 443), b("127.0.0.1", false, 443), true},
		{b("127.0.0.1", false, 443), b("127.0.0.1", false, 444), false},
		{b("0.0.0.0", false, 443), b("127.0.0.1", false, 443), true},
		{b("127.0.0.1", false, 443), b("127.0.0.2", false, 443), false},
		{b("::", false, 443), b("0.0.0.0", false, 443), false}, // tcp6 sockets are IPv6-only
		{b("::", true, 443), b("127.0.0.1", false, 443), true}, // net.Listen("tcp", ":443")
		{b("::", false, 443), b("::1", false, 443), true},
		{b("127.0.0.1", false, 0), b("127.0.0.1", false, 0), false}, // port 0: the system picks two
	} {
		if got := tc.a.overlaps(tc.b); got != tc.want {
			t.Errorf("%v overlaps %v = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := tc.b.overlaps(tc.a); got != tc.want {
			t.Errorf("%v overlaps %v = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}
