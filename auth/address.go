package auth

import "net/netip"

// cgnat is the shared address space of RFC 6598, private to a carrier.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// NonPublic says why peers on the internet cannot reach a: "a loopback
// address", "a private address" (RFC 1918, RFC 4193, RFC 6598),
// "a link-local address" or "unspecified"; "" for an address they can reach
// (and for the invalid Addr). The relay's start-up check of a detected
// address and config check use it alike.
func NonPublic(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return ""
	case a.IsLoopback():
		return "a loopback address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsPrivate() || cgnat.Contains(a):
		return "a private address"
	}
	return ""
}
