package auth

import (
	"net/netip"
	"testing"
)

func TestNonPublic(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1":       "a loopback address",
		"::1":             "a loopback address",
		"::ffff:10.1.2.3": "a private address",
		"192.168.1.1":     "a private address",
		"100.64.0.1":      "a private address", // RFC 6598
		"fd00::1":         "a private address",
		"169.254.1.1":     "a link-local address",
		"fe80::1":         "a link-local address",
		"0.0.0.0":         "unspecified",
		"203.0.113.10":    "", // documentation, but routable as far as this check goes
		"8.8.8.8":         "",
		"2001:4860::8888": "",
		"100.128.0.1":     "", // just outside 100.64.0.0/10
	} {
		if got := NonPublic(netip.MustParseAddr(addr)); got != want {
			t.Errorf("NonPublic(%s) = %q, want %q", addr, got, want)
		}
	}
	if got := NonPublic(netip.Addr{}); got != "" {
		t.Errorf("NonPublic(invalid) = %q", got)
	}
}
