//go:build linux

package turn

import (
	"net/netip"
	"strings"
	"syscall"

	"icegate/internal/udploop"
)

// freeBindSupported: this system binds addresses that are not up.
const freeBindSupported = true

// freeBindControl is a net.ListenConfig (or net.Dialer) Control func that
// sets IP_FREEBIND or IPV6_FREEBIND on a socket about to be bound to a
// specific address, so that a listener or relay configured on an address
// that is not up yet (the server started before the network) binds
// anyway and serves once the address appears. A wildcard bind needs no
// such thing.
func freeBindControl(network, address string, c syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || ap.Addr().IsUnspecified() {
		return nil
	}
	v6 := strings.HasSuffix(network, "6") || ap.Addr().Is6() && !ap.Addr().Is4In6()
	var serr error
	if err := c.Control(func(fd uintptr) { serr = udploop.SetFreeBind(int(fd), v6) }); err != nil {
		return err
	}
	return serr
}
