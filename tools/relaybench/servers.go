package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"icegate/internal/benchproc"
	turnutils "icegate/internal/coturn" // coturn names the server kind here
	"icegate/internal/icegatebin"
)

// The servers, by the names the table gives them. A round runs icegate,
// then coturn; with -offload it runs icegate with the kernel fast path
// first, then icegate without it, then coturn. coturn is always last: the
// table compares every other server with it.
const (
	icegate        = "icegate"
	icegateOffload = "icegate offload"
	coturn         = "coturn"
)

// hosts are the IPv4 addresses a run uses: where the servers listen, where
// they relay from, and where the echo peer listens. Everything is on
// 127.0.0.1 unless -offload moves it onto the veth topology (topo_linux.go).
type hosts struct {
	listen, relay, peer netip.Addr
}

func loopbackHosts() hosts {
	l := turnutils.Loopback
	return hosts{listen: l, relay: l, peer: l}
}

func (h hosts) loopback() bool { return h.listen.IsLoopback() }

// env is what every measurement needs: the binaries, a directory for
// configs and logs, the port picker and the running processes.
type env struct {
	dir string
	at  hosts
	// serverNS and peerNS are the network namespaces the servers and the
	// echo peer run in ("" for this process's own).
	serverNS, peerNS string
	icegate          string // path to the icegate binary
	version          string // what `icegate version` printed
	coturnV          string // coturn's version line, from its first log
	bins             map[string]string
	ports            *portPicker
	procs            benchproc.Set
	log              io.Writer
	seq              int // numbers log files
}

// coturnBins are Debian's coturn package programs the benchmark drives.
var coturnBins = []string{"turnserver", "turnutils_uclient", "turnutils_peer"}

func newEnv(ctx context.Context, icegatePath string, log io.Writer) (*env, error) {
	e := &env{bins: map[string]string{}, log: log, at: loopbackHosts()}
	var missing []string
	for _, name := range coturnBins {
		p, err := exec.LookPath(name)
		if err != nil {
			missing = append(missing, name)
			continue
		}
		e.bins[name] = p
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s not found in PATH: relaybench needs Debian's coturn package (run tools/install-test-deps.sh, or apt-get install coturn)",
			strings.Join(missing, ", "))
	}
	pp, err := newPortPicker()
	if err != nil {
		return nil, err
	}
	e.ports = pp
	e.dir, err = os.MkdirTemp("", "relaybench-")
	if err != nil {
		return nil, err
	}
	if icegatePath == "" {
		icegatePath = filepath.Join(e.dir, "icegate")
		if err := buildIcegate(ctx, icegatePath, log); err != nil {
			return e, err
		}
	}
	e.icegate = icegatePath
	out, err := exec.CommandContext(ctx, icegatePath, "version").Output()
	if err != nil {
		return e, fmt.Errorf("%s version: %w", icegatePath, err)
	}
	e.version = strings.TrimPrefix(strings.TrimSpace(string(out)), "icegate ")
	return e, nil
}

// buildIcegate builds icegate/cmd/icegate of the working tree (run
// relaybench inside the checkout), stamped with `git describe --always
// --dirty` so the table says what it measured.
func buildIcegate(ctx context.Context, out string, log io.Writer) error {
	version := icegatebin.Version(ctx)
	fmt.Fprintf(log, "building %s (%s)\n", icegatebin.Package, version)
	if err := icegatebin.Build(ctx, out, version); err != nil {
		return fmt.Errorf("%w\n(run relaybench inside the icegate checkout, or pass -icegate PATH)", err)
	}
	return nil
}

// close stops everything still running and removes the scratch directory,
// unless keep is set (after a failure, so the logs can be read).
func (e *env) close(keep bool) {
	e.procs.StopAll()
	if e.dir == "" {
		return
	}
	if keep {
		fmt.Fprintf(e.log, "logs and configs kept in %s\n", e.dir)
		return
	}
	_ = os.RemoveAll(e.dir)
}

func (e *env) path(name string) string {
	e.seq++
	return filepath.Join(e.dir, fmt.Sprintf("%03d-%s", e.seq, name))
}

// in returns the command line that runs bin with args in the network
// namespace ns (this process's own for ""). `ip netns exec` execs bin in
// place, so the process started is bin's, with its pid.
func in(ns, bin string, args ...string) (string, []string) {
	if ns == "" {
		return bin, args
	}
	return "ip", append([]string{"netns", "exec", ns, bin}, args...)
}

// server is one running icegate or coturn.
type server struct {
	kind               string
	host               netip.Addr // where it listens
	port               int        // STUN/TURN port, UDP and TCP
	metricsPort        int        // icegate offload's /metrics on host, else 0
	relayMin, relayMax int
	p                  *benchproc.Proc
}

func (s *server) pid() int { return s.p.Pid() }

// addr is the server's STUN/TURN address.
func (s *server) addr() netip.AddrPort { return netip.AddrPortFrom(s.host, uint16(s.port)) }

// usage samples the server's CPU time (ticks) and resident memory (KiB).
func (s *server) cpu() (int64, error) {
	if s.p.Exited() {
		return 0, fmt.Errorf("%s exited: %v\nlast log lines:\n%s", s.kind, s.p.Err(), s.p.LogTail(20))
	}
	return benchproc.CPUTicks(s.pid())
}

func (s *server) rss() (int64, error) {
	if s.p.Exited() {
		return 0, fmt.Errorf("%s exited: %v\nlast log lines:\n%s", s.kind, s.p.Err(), s.p.LogTail(20))
	}
	return benchproc.RSSKB(s.pid())
}

func (s *server) stop() { s.p.Stop() }

// warnings returns what icegate logged at warn level or above (its log level
// in the benchmark is warn, so that is every line but the startup notices),
// except the notice that stopping it closed the allocations still open
// (shutdown_grace is 0s on purpose).
func (s *server) warnings() []string {
	if s.kind != icegate {
		return nil
	}
	var out []string
	for _, l := range s.p.LogLines("level=WARN", "level=ERROR", "panic:", "fatal error:") {
		if !strings.Contains(l, "grace period over") {
			out = append(out, l)
		}
	}
	return out
}

// startServer starts kind with a relay range of relayPorts ports, both on
// ports picked free just before, and returns once it answers a STUN Binding.
// A start that fails (a port taken in between) is retried on other ports.
func (e *env) startServer(ctx context.Context, kind string, relayPorts int) (*server, error) {
	var lastErr error
	for range 4 {
		port, err := e.ports.block(1, true)
		if err != nil {
			return nil, err
		}
		relayMin, err := e.ports.block(relayPorts, false)
		if err != nil {
			return nil, err
		}
		if port >= relayMin && port < relayMin+relayPorts {
			continue
		}
		relayMax := relayMin + relayPorts - 1
		var p *benchproc.Proc
		metricsPort := 0
		switch kind {
		case icegate:
			p, err = e.startIcegate(ctx, port, relayMin, relayMax, 0)
		case icegateOffload:
			if metricsPort, err = e.ports.block(1, true); err != nil {
				return nil, err
			}
			p, err = e.startIcegate(ctx, port, relayMin, relayMax, metricsPort)
		case coturn:
			p, err = e.startCoturn(port, relayMin, relayMax)
		default:
			return nil, fmt.Errorf("unknown server %q", kind)
		}
		if err != nil {
			return nil, err
		}
		s := &server{kind: kind, host: e.at.listen, port: port, metricsPort: metricsPort, relayMin: relayMin, relayMax: relayMax, p: p}
		if err := waitBinding(ctx, s.addr(), p, 15*time.Second); err != nil {
			p.Stop()
			lastErr = fmt.Errorf("%s on %s: %w\nlast log lines:\n%s", kind, s.addr(), err, p.LogTail(15))
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		if kind == coturn && e.coturnV == "" {
			e.coturnV = coturnVersion(p)
		}
		return s, nil
	}
	return nil, lastErr
}

// icegateHCL is the icegate equivalent of the coturn command line below:
// UDP and TCP on one port, no TLS/DTLS, one static long-term user, the peer
// allowed (loopback peers on 127.0.0.1), no quotas and no per-source rate
// limit (coturn has none), no HTTP listener, warnings only in the log.
// Without a metrics port it has no metrics listener and kernel_offload is
// left at its default (what relaybench on loopback has always measured);
// with one (-offload) /metrics listens on the listener's host at that port,
// so relaybench can read the kernel's counters, and kernel_offload is "on";
// on a veth topology without it, it is "off".
func icegateHCL(at hosts, port, relayMin, relayMax, metricsPort int) string {
	policy := `policy { presets = ["loopback"] }`
	if !at.loopback() {
		policy = fmt.Sprintf("policy { allow = [%q] }", netip.PrefixFrom(at.peer, 32).String())
	}
	metrics, offload := `metrics { listen = "" }`, ""
	switch {
	case metricsPort != 0:
		metrics = fmt.Sprintf("metrics { listen = %q }", netip.AddrPortFrom(at.listen, uint16(metricsPort)).String())
		offload = "  kernel_offload = \"on\"\n"
	case !at.loopback():
		offload = "  kernel_offload = \"off\"\n"
	}
	return fmt.Sprintf(`# written by tools/relaybench
realm = "bench"
shutdown_grace = "0s"
log { level = "warn" }
listen {
  addresses = [%q]
  port = %d
  tls  = false
  dtls = false
}
relay {
  min_port    = %d
  max_port    = %d
  ipv4_bind   = %q
  ipv4_public = %q
  ipv6_bind   = ""
  private_ok  = true
%s}
auth {
  user "u" { password = "p" }
}
%s
limits {
  allocations_per_user = 0
  allocations_total    = 0
  unauthenticated_rate = 0
}
%s
http { listen = "" }
`, at.listen.String(), port, relayMin, relayMax, at.relay.String(), at.relay.String(), offload, policy, metrics)
}

func (e *env) startIcegate(ctx context.Context, port, relayMin, relayMax, metricsPort int) (*benchproc.Proc, error) {
	cfg := e.path("icegate.hcl")
	if err := os.WriteFile(cfg, []byte(icegateHCL(e.at, port, relayMin, relayMax, metricsPort)), 0o644); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, e.icegate, "config", "check", cfg).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("icegate config check %s: %w\n%s", cfg, err, out)
	}
	bin, args := in(e.serverNS, e.icegate, "serve", "-config", cfg)
	name := icegate
	if metricsPort != 0 {
		name = icegateOffload
	}
	return e.procs.Start(name, e.path("icegate.log"), nil, bin, args...)
}

// coturnArgs is coturn's command line (see docs/performance.md). The pid
// file and user database are kept in the scratch directory so that the
// benchmark writes nothing under /var.
func coturnArgs(dir string, at hosts, port, relayMin, relayMax int) []string {
	return []string{
		"-n", "--no-cli", "--no-tls", "--no-dtls",
		"-L", at.listen.String(), "-E", at.relay.String(),
		"--listening-port", strconv.Itoa(port),
		"--min-port", strconv.Itoa(relayMin), "--max-port", strconv.Itoa(relayMax),
		"--lt-cred-mech", "--user", "u:p", "--realm", "bench",
		"--allow-loopback-peers",
		"--log-file", "stdout", "--simple-log",
		"--relay-threads", "2",
		"--pidfile", filepath.Join(dir, "turnserver.pid"),
		"--userdb", filepath.Join(dir, "turndb"),
	}
}

func (e *env) startCoturn(port, relayMin, relayMax int) (*benchproc.Proc, error) {
	bin, args := in(e.serverNS, e.bins["turnserver"], coturnArgs(e.dir, e.at, port, relayMin, relayMax)...)
	return e.procs.Start(coturn, e.path("coturn.log"), nil, bin, args...)
}

// coturnVersion returns "Coturn-4.6.1 'Gorst'" from a coturn log, or "".
func coturnVersion(p *benchproc.Proc) string {
	for _, l := range p.LogLines("Version Coturn-") {
		if _, v, ok := strings.Cut(l, "Version "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// startPeer runs turnutils_peer, the UDP echo uclient sends to through the
// relay, on a pair of ports picked free (it listens on port and port+1),
// and returns once it echoes (see turnutils.StartPeer).
func (e *env) startPeer(ctx context.Context) (*benchproc.Proc, int, error) {
	pick := func() (int, error) { return e.ports.block(2, false) }
	start := func(args ...string) (procView, error) {
		bin, args := in(e.peerNS, e.bins["turnutils_peer"], args...)
		p, err := e.procs.Start("turnutils_peer", e.path("peer.log"), nil, bin, args...)
		return procView{p}, err
	}
	p, port, err := turnutils.StartPeerAt(ctx, e.at.peer, 4, pick, start)
	return p.Proc, port, err
}

// procView is a proc as the functions of internal/coturn see it (its
// Process interface).
type procView struct{ *benchproc.Proc }

func (p procView) Exited() error {
	if p.Proc.Exited() {
		return fmt.Errorf("exited: %v", p.Err())
	}
	return nil
}

func (p procView) Output() string { return p.LogTail(10) }

// waitBinding sends STUN Binding requests to server every 100 ms until one
// is answered, p exits, or wait passes.
func waitBinding(ctx context.Context, server netip.AddrPort, p *benchproc.Proc, wait time.Duration) error {
	return turnutils.ProbeUDPAt(ctx, server.Addr(), int(server.Port()), procView{p}.Exited, wait, func() ([]byte, func([]byte) bool) {
		req := bindingRequest()
		return req, func(resp []byte) bool { return isBindingSuccess(resp, req) }
	})
}
