// Package interop runs coturn's independent clients (turnutils_uclient,
// turnutils_stunclient, with turnutils_peer as the echo peer) against an
// in-process icegate on 127.0.0.1. They share no code with pion, so they catch
// what icegate's own pion-based tests cannot: wire details pion agrees with
// itself about.
//
// The binaries come from Debian's coturn package. Without them the tests
// skip, unless ICEGATE_REQUIRE_INTEROP=1 is set, when they fail: `make test`
// installs coturn first and must not pass silently without it.
package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"icegate/config"
	"icegate/internal/coturn"
	"icegate/internal/leakcheck"
	"icegate/internal/testutil"
	"icegate/turn"
)

const (
	secret = "interop-secret-0123456789"

	// Traffic per uclient run: clients × messages. Small, because this checks
	// correctness, not load; big enough that a dropped path shows.
	clients  = 2
	messages = 20

	// runTimeout bounds one coturn client run. A healthy uclient run takes
	// about 5 s here; one that loses everything waits about 15 s for echoes.
	runTimeout = 60 * time.Second

	// requireEnv turns a missing coturn into a failure instead of a skip.
	requireEnv = "ICEGATE_REQUIRE_INTEROP"
)

// serverHCL binds and advertises 127.0.0.1 only. The ports are set by
// startServer; the secret mints the REST credentials uclient makes with -W.
const serverHCL = `
realm = "icegate-test"
shutdown_grace = "0s"
listen { addresses = ["127.0.0.1"] }
relay {
  min_port    = 51000
  max_port    = 51999
  ipv4_bind   = "127.0.0.1"
  ipv4_public = "127.0.0.1"
  ipv6_bind   = ""
  private_ok  = true
}
auth {
  secrets = ["` + secret + `"]
  user "test" { password = "test" }
}
policy { presets = ["loopback"] }
# TestUclientCrowd runs 50 clients as one user.
limits { allocations_per_user = 0 }
metrics { listen = "" }
`

// TestMain fails the run when a goroutine of the server or a command the
// tests started outlives the tests: every server must be closed and every
// coturn process waited for.
func TestMain(m *testing.M) { leakcheck.Main(m, "icegate/", "github.com/pion/", "os/exec.") }

// TestUclient relays traffic from turnutils_uclient through icegate to
// turnutils_peer and back, over each client transport, with ChannelData
// (RFC 8656 §12) and with Send/Data indications (§11), with a static user and
// with REST credentials uclient mints itself from the shared secret.
//
// uclient's quirks shape the flags: -X asks for an IPv4 relay explicitly
// (REQUESTED-ADDRESS-FAMILY); -c skips the RTCP allocations so each client
// sends exactly -n messages; -g (DONT-FRAGMENT) is left out because uclient
// aborts on the 420 pion legitimately answers it with. uclient exits 0 even
// when every packet is lost, so the verdict comes from its summary lines.
// The subtests run one after another: parallel uclient processes against one
// server collide with 437 (Allocation Mismatch).
func TestUclient(t *testing.T) {
	bin := lookCoturn(t, "turnutils_uclient", "turnutils_peer")
	srv := startServer(t, nil)
	peerPort := startPeer(t, bin["turnutils_peer"])

	transports := []struct {
		name  string
		flags []string
		port  int
	}{
		{"udp", nil, srv.port},
		{"tcp", []string{"-t"}, srv.port},
		{"tls", []string{"-t", "-S"}, srv.tlsPort},
	}
	modes := []struct {
		name  string
		flags []string
	}{
		{"channel", nil},
		{"send", []string{"-s"}},
	}
	creds := []struct {
		name  string
		flags []string
	}{
		{"static", []string{"-u", "test", "-w", "test"}},
		{"secret", []string{"-u", "someuser", "-W", secret}},
	}

	for _, tr := range transports {
		for _, mode := range modes {
			for _, cred := range creds {
				t.Run(tr.name+"/"+mode.name+"/"+cred.name, func(t *testing.T) {
					args := append([]string{}, tr.flags...)
					args = append(args, mode.flags...)
					args = append(args, cred.flags...)
					args = append(args,
						"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
						"-X", "-c",
						"-n", strconv.Itoa(messages), "-m", strconv.Itoa(clients),
						"-l", "120", "-z", "5",
						"-p", strconv.Itoa(tr.port), "127.0.0.1")
					mark := srv.log.Len()
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
					res, perr := coturn.ParseUclientSummary(out)
					if perr != nil {
						failed("%v", perr)
						return
					}
					if res.Sent != clients*messages || res.Recv != res.Sent || res.Lost != 0 {
						failed("sent %d (want %d), received %d, lost %d (want 0)",
							res.Sent, clients*messages, res.Recv, res.Lost)
						return
					}
					t.Logf("sent %d, received %d, lost %d", res.Sent, res.Recv, res.Lost)
				})
			}
		}
	}
}

// TestUclientRTP runs turnutils_uclient in its default mode, without -c:
// each client allocates an RTP/RTCP pair, an Allocate with EVEN-PORT and the
// R bit, then, from another local port, one with the RESERVATION-TOKEN it got
// (RFC 8656 §7.2). The server has four event loops, so four SO_REUSEPORT
// listener sockets: the token Allocate usually reaches another socket than
// the one that reserved the pair, which is what failed with 508 when the
// reservation lived in pion's per-socket allocation manager. Ten runs in a
// row against one long-running server, to a peer and client to client (-y),
// every message echoed.
func TestUclientRTP(t *testing.T) {
	bin := lookCoturn(t, "turnutils_uclient", "turnutils_peer")
	if old := runtime.GOMAXPROCS(0); old < 4 {
		// The server starts one event loop per GOMAXPROCS.
		runtime.GOMAXPROCS(4)
		t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	}
	// uclient does not release its UDP allocations when it exits; they live
	// out their lifetime, so the per-user cap must hold ten runs' worth.
	srv := startServer(t, func(c *config.Config) { c.Limits.AllocationsPerUser = 0 })
	peerPort := startPeer(t, bin["turnutils_peer"])
	const runs = 10
	for _, mode := range []struct {
		name  string
		flags []string
	}{
		{"peer", []string{"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort)}},
		{"client-to-client", []string{"-y"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			for run := range runs {
				args := append([]string{}, mode.flags...)
				args = append(args, "-u", "test", "-w", "test", "-X",
					"-n", strconv.Itoa(messages), "-m", strconv.Itoa(clients),
					"-l", "120", "-z", "5",
					"-p", strconv.Itoa(srv.port), "127.0.0.1")
				mark := srv.log.Len()
				out, err := runClient(t, bin["turnutils_uclient"], args...)
				failed := func(format string, a ...any) {
					t.Helper()
					t.Fatalf("run %d/%d: turnutils_uclient %s: %s\nuclient output:\n%s\nicegate log during the run:\n%s",
						run+1, runs, strings.Join(args, " "), fmt.Sprintf(format, a...), out, srv.log.Since(mark))
				}
				if err != nil {
					failed("%v", err)
				}
				res, perr := coturn.ParseUclientSummary(out)
				if perr != nil {
					failed("%v", perr)
				}
				if res.Sent < clients*messages || res.Recv != res.Sent || res.Lost != 0 {
					failed("sent %d (want at least %d), received %d, lost %d (want 0)",
						res.Sent, clients*messages, res.Recv, res.Lost)
				}
				if strings.Contains(out, "error 508") || strings.Contains(out, "error 500") {
					failed("an Allocate was refused")
				}
			}
			t.Logf("%d runs, every message echoed", runs)
		})
	}
}

// TestUclientCrowd runs 50 turnutils_uclient clients at once over TCP and
// over TLS (`-t -m 50`, `-t -S -m 50`) from one address, as a crowd behind
// one NAT or an L4 proxy arrives. Each opens its own connection and sends
// its first Allocate without credentials; a TCP client does not retransmit,
// so one challenge dropped by a per-source limit would hang it for good
// (issue #11: the per-IP UDP bucket challenged 40 of them). Over TLS
// uclient opens about two connections per client while it finds a TLS
// version the server takes, 100 in all: under limits.connections_per_source.
func TestUclientCrowd(t *testing.T) {
	const crowd = 50
	bin := lookCoturn(t, "turnutils_uclient", "turnutils_peer")
	srv := startServer(t, nil)
	peerPort := startPeer(t, bin["turnutils_peer"])
	for _, tr := range []struct {
		name  string
		flags []string
		port  int
	}{
		{"tcp", []string{"-t"}, srv.port},
		{"tls", []string{"-t", "-S"}, srv.tlsPort},
	} {
		t.Run(tr.name, func(t *testing.T) {
			args := append([]string{}, tr.flags...)
			args = append(args, "-u", "test", "-w", "test",
				"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
				"-X", "-c", "-n", strconv.Itoa(messages), "-m", strconv.Itoa(crowd),
				"-l", "120", "-z", "5", "-p", strconv.Itoa(tr.port), "127.0.0.1")
			mark := srv.log.Len()
			out, err := runClient(t, bin["turnutils_uclient"], args...)
			failed := func(format string, a ...any) {
				t.Helper()
				t.Errorf("turnutils_uclient %s: %s\nuclient output (tail):\n%s\nicegate log during the run (tail):\n%s",
					strings.Join(args, " "), fmt.Sprintf(format, a...), tail(out, 40), tail(srv.log.Since(mark), 40))
			}
			if err != nil {
				failed("%v", err)
				return
			}
			res, perr := coturn.ParseUclientSummary(out)
			if perr != nil {
				failed("%v", perr)
				return
			}
			if res.Sent != crowd*messages || res.Recv != res.Sent || res.Lost != 0 {
				failed("sent %d (want %d), received %d, lost %d (want 0)", res.Sent, crowd*messages, res.Recv, res.Lost)
				return
			}
			t.Logf("sent %d, received %d, lost %d", res.Sent, res.Recv, res.Lost)
		})
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestStunclient checks the XOR-MAPPED-ADDRESS icegate gives coturn's STUN
// client (RFC 8489 §14.2). turnutils_stunclient prints, twice:
//
//	0: : IPv4. UDP reflexive addr: 127.0.0.1:56774
//
// It tries RFC 5780 (CHANGE-REQUEST) only with -f; then it waits forever
// for the changed-address answer, from icegate (issue #4) and from coturn with
// a single listening IP alike, so -f is not used and only the mapped address
// is checked.
func TestStunclient(t *testing.T) {
	bin := lookCoturn(t, "turnutils_stunclient")
	srv := startServer(t, nil)

	args := []string{"-p", strconv.Itoa(srv.port), "127.0.0.1"}
	mark := srv.log.Len()
	out, err := runClient(t, bin["turnutils_stunclient"], args...)
	if err != nil {
		t.Fatalf("turnutils_stunclient %s: %v\noutput:\n%s\nicegate log:\n%s",
			strings.Join(args, " "), err, out, srv.log.Since(mark))
	}
	mapped, err := parseStunclient(out)
	if err != nil {
		t.Fatalf("turnutils_stunclient %s: %v\noutput:\n%s\nicegate log:\n%s",
			strings.Join(args, " "), err, out, srv.log.Since(mark))
	}
	// The client's port is its own ephemeral one, which it does not print;
	// only the address is known here.
	if mapped.Addr() != netip.MustParseAddr("127.0.0.1") || mapped.Port() == 0 {
		t.Fatalf("mapped address %v, want 127.0.0.1 and a port\noutput:\n%s", mapped, out)
	}
	t.Logf("mapped address %v", mapped)
}

// lookCoturn finds coturn's binaries, skipping the test when one is missing
// or failing it when ICEGATE_REQUIRE_INTEROP=1.
func lookCoturn(t *testing.T, names ...string) map[string]string {
	t.Helper()
	paths := map[string]string{}
	for _, name := range names {
		p, err := exec.LookPath(name)
		if err != nil {
			msg := fmt.Sprintf("%s not found in PATH (Debian/Ubuntu: apt-get install coturn)", name)
			if os.Getenv(requireEnv) == "1" {
				t.Fatalf("%s, and %s=1 requires the interop tests", msg, requireEnv)
			}
			t.Skipf("%s; skipping (set %s=1 to make this a failure)", msg, requireEnv)
		}
		paths[name] = p
	}
	return paths
}

type testServer struct {
	*turn.Server
	port, tlsPort int
	log           *testutil.SyncBuffer
}

// startServer starts icegate on fixed ports: coturn's clients take one -p for
// UDP and TCP, so the two must share a number, which port 0 would not give.
// A port picked free can be taken before New binds it, hence the retries.
// mutate, when not nil, changes the parsed config.
func startServer(t *testing.T, mutate func(*config.Config)) *testServer {
	t.Helper()
	return startServerHCL(t, serverHCL, mutate)
}

// startServerHCL is startServer with another config.
func startServerHCL(t *testing.T, hcl string, mutate func(*config.Config)) *testServer {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var lastErr error
	for range 10 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		tlsPort, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		if port == tlsPort {
			continue
		}
		cfg, diags := config.Parse([]byte(hcl), "interop.hcl")
		if diags.HasErrors() {
			t.Fatalf("config: %s", config.FormatDiagnostics(diags))
		}
		cfg.Listen.Port, cfg.Listen.TLSPort = port, tlsPort
		if mutate != nil {
			mutate(cfg)
		}
		srv, err := turn.New(cfg, turn.Options{Logger: logger})
		if err != nil {
			lastErr = err
			continue
		}
		ts := &testServer{Server: srv, port: port, tlsPort: tlsPort, log: logs}
		t.Cleanup(func() {
			if err := srv.Close(); err != nil {
				t.Errorf("closing icegate: %v", err)
			}
		})
		return ts
	}
	t.Fatalf("starting icegate: %v\nlog:\n%s", lastErr, logs.String())
	return nil
}

// freePort returns a port free on 127.0.0.1 for both TCP and UDP just now.
func freePort() (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		_ = ln.Close()
		if err != nil {
			continue
		}
		_ = pc.Close()
		return port, nil
	}
	return 0, errors.New("no port free for both TCP and UDP on 127.0.0.1")
}

// startPeer runs turnutils_peer, a UDP echo, on 127.0.0.1 until the test
// ends, and returns its port once it echoes (see StartPeer in
// internal/coturn). The port is one the kernel just gave out and took back.
func startPeer(t *testing.T, bin string) int {
	t.Helper()
	pick := func() (int, error) {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port, nil
	}
	start := func(args ...string) (*peerProc, error) {
		p := &peerProc{out: &testutil.SyncBuffer{}, done: make(chan struct{})}
		p.cmd = exec.Command(bin, args...)
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		p.cmd.WaitDelay = 5 * time.Second
		if err := p.cmd.Start(); err != nil {
			return nil, fmt.Errorf("starting turnutils_peer: %w", err)
		}
		go func() {
			p.err = p.cmd.Wait()
			close(p.done)
		}()
		return p, nil
	}
	p, port, err := coturn.StartPeer(t.Context(), 5, pick, start)
	if err != nil {
		t.Fatalf("turnutils_peer never echoed: %v", err)
	}
	t.Cleanup(p.Stop)
	return port
}

// peerProc is a running turnutils_peer, as coturn.Process.
type peerProc struct {
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
	done chan struct{} // closed when Wait has returned
	err  error         // Wait's error, valid once done is closed
}

func (p *peerProc) Exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("exited: %v", p.err)
	default:
		return nil
	}
}

// Stop kills the process by its id and waits for it.
func (p *peerProc) Stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *peerProc) Output() string { return p.out.String() }

// runClient runs one coturn client to completion within runTimeout and
// returns its combined output. A non-zero exit or the timeout is an error.
func runClient(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.String(), fmt.Errorf("did not finish within %v (killed): %v", runTimeout, err)
	}
	return out.String(), err
}

// "0: : IPv4. UDP reflexive addr: 127.0.0.1:56774"
var stunReflexive = regexp.MustCompile(`reflexive addr: (\S+)`)

// parseStunclient returns the reflexive (mapped) address stunclient printed.
func parseStunclient(out string) (netip.AddrPort, error) {
	m := stunReflexive.FindStringSubmatch(out)
	if m == nil {
		return netip.AddrPort{}, errors.New("no \"reflexive addr:\" in the output")
	}
	return netip.ParseAddrPort(m[1])
}
