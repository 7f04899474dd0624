package main

import (
	"context"
	"fmt"
	"io"
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

// The two servers, in the order each round runs them.
const (
	icegate = "icegate"
	coturn  = "coturn"
)

var servers = []string{icegate, coturn}

// env is what every measurement needs: the binaries, a directory for
// configs and logs, the port picker and the running processes.
type env struct {
	dir     string
	icegate string // path to the icegate binary
	version string // what `icegate version` printed
	coturnV string // coturn's version line, from its first log
	bins    map[string]string
	ports   *portPicker
	procs   benchproc.Set
	log     io.Writer
	seq     int // numbers log files
}

// coturnBins are Debian's coturn package programs the benchmark drives.
var coturnBins = []string{"turnserver", "turnutils_uclient", "turnutils_peer"}

func newEnv(ctx context.Context, icegatePath string, log io.Writer) (*env, error) {
	e := &env{bins: map[string]string{}, log: log}
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

// server is one running icegate or coturn.
type server struct {
	kind               string
	port               int // STUN/TURN port, UDP and TCP
	relayMin, relayMax int
	p                  *benchproc.Proc
}

func (s *server) pid() int { return s.p.Pid() }

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
		switch kind {
		case icegate:
			p, err = e.startIcegate(ctx, port, relayMin, relayMax)
		case coturn:
			p, err = e.startCoturn(port, relayMin, relayMax)
		default:
			return nil, fmt.Errorf("unknown server %q", kind)
		}
		if err != nil {
			return nil, err
		}
		s := &server{kind: kind, port: port, relayMin: relayMin, relayMax: relayMax, p: p}
		if err := waitBinding(ctx, port, p, 15*time.Second); err != nil {
			p.Stop()
			lastErr = fmt.Errorf("%s on 127.0.0.1:%d: %w\nlast log lines:\n%s", kind, port, err, p.LogTail(15))
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
// UDP and TCP on one loopback port, no TLS/DTLS, one static long-term user,
// loopback peers allowed, no quotas and no per-source rate limit (coturn has
// none), no metrics or HTTP listener, warnings only in the log.
func icegateHCL(port, relayMin, relayMax int) string {
	return fmt.Sprintf(`# written by tools/relaybench
realm = "bench"
shutdown_grace = "0s"
log { level = "warn" }
listen {
  addresses = ["127.0.0.1"]
  port = %d
  tls  = false
  dtls = false
}
relay {
  min_port    = %d
  max_port    = %d
  ipv4_bind   = "127.0.0.1"
  ipv4_public = "127.0.0.1"
  ipv6_bind   = ""
  private_ok  = true
}
auth {
  user "u" { password = "p" }
}
policy { presets = ["loopback"] }
limits {
  allocations_per_user = 0
  allocations_total    = 0
  unauthenticated_rate = 0
}
metrics { listen = "" }
http { listen = "" }
`, port, relayMin, relayMax)
}

func (e *env) startIcegate(ctx context.Context, port, relayMin, relayMax int) (*benchproc.Proc, error) {
	cfg := e.path("icegate.hcl")
	if err := os.WriteFile(cfg, []byte(icegateHCL(port, relayMin, relayMax)), 0o644); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, e.icegate, "config", "check", cfg).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("icegate config check %s: %w\n%s", cfg, err, out)
	}
	return e.procs.Start(icegate, e.path("icegate.log"), nil, e.icegate, "serve", "-config", cfg)
}

// coturnArgs is coturn's command line (see docs/performance.md). The pid
// file and user database are kept in the scratch directory so that the
// benchmark writes nothing under /var.
func coturnArgs(dir string, port, relayMin, relayMax int) []string {
	return []string{
		"-n", "--no-cli", "--no-tls", "--no-dtls",
		"-L", "127.0.0.1", "-E", "127.0.0.1",
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
	return e.procs.Start(coturn, e.path("coturn.log"), nil, e.bins["turnserver"],
		coturnArgs(e.dir, port, relayMin, relayMax)...)
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
		p, err := e.procs.Start("turnutils_peer", e.path("peer.log"), nil, e.bins["turnutils_peer"], args...)
		return procView{p}, err
	}
	p, port, err := turnutils.StartPeer(ctx, 4, pick, start)
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

// waitBinding sends STUN Binding requests to 127.0.0.1:port every 100 ms
// until one is answered, p exits, or wait passes.
func waitBinding(ctx context.Context, port int, p *benchproc.Proc, wait time.Duration) error {
	return turnutils.ProbeUDP(ctx, port, procView{p}.Exited, wait, func() ([]byte, func([]byte) bool) {
		req := bindingRequest()
		return req, func(resp []byte) bool { return isBindingSuccess(resp, req) }
	})
}
