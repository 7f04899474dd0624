package interop

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"icegate/internal/coturn"
	"icegate/turn"
)

// sharedPorts is how many relay ports the shared-mode server has: the
// handful a container would publish.
const sharedPorts = 4

// startSharedServer starts icegate with relay.mode = "shared" on
// sharedPorts relay ports (a run picked at random outside serverConfig's
// range; startServer retries on another one if a port is taken).
func startSharedServer(t *testing.T) (*testServer, int) {
	return startSharedPorts(t, sharedPorts, 0)
}

// startSharedPorts starts a shared-mode server on n relay ports from a base
// of the given parity (0 even: EVEN-PORT pairs fit).
func startSharedPorts(t *testing.T, n, parity int) (*testServer, int) {
	t.Helper()
	var base int
	srv := startServer(t, func(c *turn.Config) {
		base = 45000 + 2*rand.IntN(2000) + parity
		c.Relay.Shared = true
		c.Relay.MinPort, c.Relay.MaxPort = base, base+n-1
	})
	return srv, base
}

// TestUclientShared runs turnutils_uclient against icegate in shared mode,
// one long-running server per mode and several runs against it, each run's
// every message echoed and every relayed address one of the shared ports.
// uclient never releases its allocations, so they and their claims on
// peers outlive each run; the runs are laid out so that no two live
// allocations on one shared socket ever need the same peer address:port,
// which shared mode refuses (TestSharedPeerCollision in turn covers that
// refusal):
//
//   - to a peer (-e): with channels (-c), with Send/Data indications
//     (-c -s) and in uclient's default RTP mode (EVEN-PORT with the R bit,
//     then the RESERVATION-TOKEN): each run gets a turnutils_peer of its
//     own, one client (-m 1);
//   - client to client (-y), whose two allocations talk to each other's
//     relayed address, with -c: a run's pair needs a pair of shared sockets
//     no earlier run's pair claimed, which two runs on four ports always
//     find; in the default RTP mode one run (its four allocations are two
//     RTP/RTCP pairs on the four ports).
//
// uclient adds EVEN-PORT (R=0) to some Allocates even with -c; shared mode
// serves those from an even shared port.
func TestUclientShared(t *testing.T) {
	bin := lookCoturn(t, "turnutils_uclient", "turnutils_peer")
	const runs = 5
	for _, mode := range []struct {
		name    string
		flags   []string
		peer    bool
		clients int
		runs    int
	}{
		{"channel", nil, true, 1, runs},
		{"send", []string{"-s"}, true, 1, runs},
		{"rtp-peer", nil, true, 1, runs},
		{"client-to-client", []string{"-y"}, false, 1, 2},
		{"rtp-client-to-client", []string{"-y"}, false, 1, 1},
	} {
		t.Run(mode.name, func(t *testing.T) {
			srv, base := startSharedServer(t)
			for run := range mode.runs {
				args := append([]string{}, mode.flags...)
				if mode.peer {
					args = append(args, "-e", "127.0.0.1", "-r", strconv.Itoa(startPeer(t, bin["turnutils_peer"])))
				}
				if !strings.HasPrefix(mode.name, "rtp") {
					args = append(args, "-c")
				}
				args = append(args, "-u", "test", "-w", "test", "-X",
					"-n", strconv.Itoa(messages), "-m", strconv.Itoa(mode.clients),
					"-l", "120", "-z", "5",
					"-p", strconv.Itoa(srv.port), "127.0.0.1")
				mark := srv.log.Len()
				out, err := runClient(t, bin["turnutils_uclient"], args...)
				failed := func(format string, a ...any) {
					t.Helper()
					t.Fatalf("run %d/%d: turnutils_uclient %s: %s\nuclient output:\n%s\nicegate log during the run:\n%s",
						run+1, mode.runs, strings.Join(args, " "), fmt.Sprintf(format, a...), out, srv.log.Since(mark))
				}
				if err != nil {
					failed("%v", err)
				}
				res, perr := coturn.ParseUclientSummary(out)
				if perr != nil {
					failed("%v", perr)
				}
				want := mode.clients * messages
				if !mode.peer {
					want *= 2 // -y: both clients of the pair send
				}
				if res.Sent < mode.clients*messages || res.Recv != res.Sent || res.Lost != 0 {
					failed("sent %d (want %d), received %d, lost %d (want 0)", res.Sent, want, res.Recv, res.Lost)
				}
				if strings.Contains(out, "error 4") || strings.Contains(out, "error 5") {
					failed("a request was refused")
				}
				relayed := relayedPorts(srv.log.Since(mark))
				if len(relayed) == 0 {
					failed("no allocation in the log")
				}
				for _, p := range relayed {
					if p < base || p >= base+sharedPorts {
						failed("relayed port %d is not one of the shared ports %d-%d", p, base, base+sharedPorts-1)
					}
				}
			}
			t.Logf("%d runs, every message echoed", mode.runs)
		})
	}
}

// TestUclientSharedRTP: with one odd shared port there is no even port
// for uclient's default RTP mode (EVEN-PORT with the R bit): the 508 says
// why, and uclient prints the reason.
func TestUclientSharedRTP(t *testing.T) {
	bin := lookCoturn(t, "turnutils_uclient", "turnutils_peer")
	srv, _ := startSharedPorts(t, 1, 1)
	args := []string{"-y", "-u", "test", "-w", "test", "-X",
		"-n", strconv.Itoa(messages), "-m", "1", "-l", "120", "-z", "5",
		"-p", strconv.Itoa(srv.port), "127.0.0.1"}
	out, _ := runClient(t, bin["turnutils_uclient"], args...)
	if !strings.Contains(out, "error 508 (No even shared relay port with the next port shared too)") {
		t.Fatalf("turnutils_uclient %s: want a 508 saying no even shared port pair exists\nuclient output:\n%s",
			strings.Join(args, " "), out)
	}
}

// relayedPorts returns the ports of the relayed addresses in icegate's
// "allocation created" log lines (relay=127.0.0.1:P).
func relayedPorts(log string) []int {
	var out []int
	for line := range strings.Lines(log) {
		if !strings.Contains(line, "allocation created") {
			continue
		}
		_, rest, ok := strings.Cut(line, "relay=")
		if !ok {
			continue
		}
		addr, _, _ := strings.Cut(rest, " ")
		i := strings.LastIndexByte(addr, ':')
		if p, err := strconv.Atoi(strings.TrimSpace(addr[i+1:])); err == nil {
			out = append(out, p)
		}
	}
	return out
}
