// Package proxiedtest builds PROXY protocol headers for tests: what nginx
// or haproxy sends first on a connection it forwards.
package proxiedtest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pires/go-proxyproto"
)

// Header is a PROXY protocol header of version (1 or 2) for a client at
// client (address:port), as a proxy whose front address is 192.0.2.1:443
// (2001:db8::1 for an IPv6 client) sends it.
func Header(t testing.TB, version byte, client string) []byte {
	t.Helper()
	src := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client))
	dst := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 443}
	if src.IP.To4() == nil {
		dst = &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}
	}
	b, err := proxyproto.HeaderProxyFromAddrs(version, src, dst).Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
