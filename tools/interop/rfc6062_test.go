package interop

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"icegate/internal/coturn"
	"icegate/turn"
)

// tcpRelay is serverConfig with RFC 6062 TCP relays on and IPv6 relays on
// ::1, for uclient's -x (RFC 6156: an IPv6 relay for a client on IPv4).
func tcpRelay(c *turn.Config) {
	lo6 := netip.MustParseAddr("::1")
	c.Relay.NoIPv6, c.Relay.IPv6Bind, c.Relay.IPv6Public = false, lo6, lo6
	c.Relay.TCP = true
}

// TestUclientTCPRelay runs turnutils_uclient's RFC 6062 modes against one
// server (twice, -P once): -T (two clients with TCP allocations Connect to each
// other's relayed address and talk over ConnectionBind data connections),
// -T -S (the same over TLS control and data connections), -T -x (IPv6 TCP
// relays) and -P (a plain TCP peer connects to the relayed address: the
// server sends a ConnectionAttempt and the client binds a data connection).
//
// uclient checks MESSAGE-INTEGRITY on every success response, so this is
// what caught pion's unsigned ConnectionBind response ("Wrong integrity",
// then a hang). In -P mode uclient's peer never counts what it receives
// (its read only peeks), so only the client's half comes back: coturn
// 4.6.1 itself reports 50% lost there; the test expects exactly that half.
//
// It also checks that the TCP relays' bytes are counted in the relayed
// totals (they were not before), exactly in the active modes.
func TestUclientTCPRelay(t *testing.T) {
	const payload = 120 // bytes per message (-l)
	bin := lookCoturn(t, "turnutils_uclient")
	srv := startServer(t, tcpRelay)

	modes := []struct {
		name    string
		flags   []string
		port    int
		passive bool
		runs    int
	}{
		{"T", []string{"-T"}, srv.port, false, 2},
		{"T-S", []string{"-T", "-S"}, srv.tlsPort, false, 2},
		{"T-x", []string{"-T", "-x"}, srv.port, false, 2},
		// Once: uclient waits about 15 s for the half it never counts.
		{"P", []string{"-P"}, srv.port, true, 1},
	}
	for _, mode := range modes {
		for run := range mode.runs {
			t.Run(fmt.Sprintf("%s/%d", mode.name, run+1), func(t *testing.T) {
				args := append([]string{}, mode.flags...)
				args = append(args, "-u", "test", "-w", "test",
					"-n", strconv.Itoa(messages), "-m", strconv.Itoa(clients),
					"-l", strconv.Itoa(payload), "-z", "5",
					"-p", strconv.Itoa(mode.port), "127.0.0.1")
				mark := srv.log.Len()
				transport := "tcp"
				if mode.port == srv.tlsPort {
					transport = "tls"
				}
				before := srv.RelayedTotals()[transport]
				out, err := runClient(t, bin["turnutils_uclient"], args...)
				failed := func(format string, a ...any) {
					t.Helper()
					t.Errorf("turnutils_uclient %s: %s\nuclient output:\n%s\nicegate log during the run:\n%s",
						strings.Join(args, " "), fmt.Sprintf(format, a...), out, srv.log.Since(mark))
				}
				if err != nil {
					failed("%v", err)
					return
				}
				if strings.Contains(out, "Wrong integrity") {
					failed("uclient refused a response's MESSAGE-INTEGRITY")
					return
				}
				res, perr := coturn.ParseUclientSummary(out)
				if perr != nil {
					failed("%v", perr)
					return
				}
				want := res.Sent
				if mode.passive {
					want = res.Sent / 2
				}
				if res.Sent != clients*messages || res.Recv != want {
					failed("sent %d (want %d), received %d (want %d)", res.Sent, clients*messages, res.Recv, want)
					return
				}
				// The TCP relays' bytes are counted (icegate_relayed_bytes_total
				// under the control connection's transport): every message
				// leaves through one allocation's peer connection and, but
				// for the half -P's peer keeps, arrives through another's.
				got := srv.RelayedTotals()[transport].Sub(before)
				if mode.passive {
					if got.BytesToPeer < uint64(res.Recv*payload) || got.BytesToClient < uint64(res.Recv*payload) {
						failed("relayed %+v over %s, want at least %d bytes each way", got, transport, res.Recv*payload)
						return
					}
				} else if got.BytesToPeer != uint64(res.Sent*payload) || got.BytesToClient != uint64(res.Recv*payload) {
					failed("relayed %+v over %s, want %d bytes to peers and %d to clients", got, transport, res.Sent*payload, res.Recv*payload)
					return
				}
				t.Logf("sent %d, received %d; relayed %d bytes to peers, %d to clients", res.Sent, res.Recv, got.BytesToPeer, got.BytesToClient)
			})
		}
	}
}
