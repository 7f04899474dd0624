// Command cluster-bench measures icegate's signaling as a cluster: it
// starts its own redis-server and several `icegate serve` nodes on
// loopback (a build of the working tree), connects peers in rooms of 2 with
// the two peers of a room on different nodes, and has each send directed
// messages to its partner at a fixed rate. It reports the cross-node
// delivery latency (sender → node → Redis → other node → receiver, one
// clock), the messages delivered per second, and the CPU time of each node,
// of redis-server and of the load generator. Then, in the same run, it
// loads one `icegate serve` with no cluster block (the in-process bus) the
// same way and prints the ratios.
//
//	go run ./tools/cluster-bench                       # 2,000 peers × 5 msg/s, 20 s each
//	go run ./tools/cluster-bench -conns 500 -duration 5s
//
// Everything binds 127.0.0.1 on ports free at the time; every process it
// starts is stopped by its id at the end, on failure and on Ctrl-C, and the
// whole run is bounded by -timeout. The load generator (internal/sigload,
// shared with tools/signaling-bench) runs in this process: on a small
// machine it shares the cores with the nodes and Redis, which the output
// says.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"icegate/internal/benchproc"
	"icegate/internal/icegatebin"
	"icegate/internal/sigload"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cluster-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	load       sigload.Options
	nodes      int
	icegate    string
	redis      string
	skipSingle bool
	keep       bool
	timeout    time.Duration
}

// Targets of the issue (#12) the comparison is checked against.
const (
	targetP99        = 5 * time.Millisecond
	targetThroughput = 0.5 // cluster delivered/s at least half the single node's
)

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cluster-bench", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.load.Conns, "conns", 2000, "peers (WebSocket connections), spread over the nodes")
	fs.IntVar(&o.load.Room, "room", 2, "peers per room (up to -nodes keeps every member of a room on its own node)")
	fs.Float64Var(&o.load.Rate, "rate", 5, "messages per second each peer sends to the next peer of its room")
	fs.DurationVar(&o.load.Duration, "duration", 20*time.Second, "how long peers send, in each of the two runs")
	fs.IntVar(&o.load.Parallel, "parallel", 64, "connections opened at once")
	fs.IntVar(&o.nodes, "nodes", 3, "icegate nodes in the cluster")
	fs.StringVar(&o.icegate, "icegate", "", "icegate binary to run (default: build ./cmd/icegate of the working tree)")
	fs.StringVar(&o.redis, "redis-server", "redis-server", "redis-server binary")
	fs.BoolVar(&o.skipSingle, "skip-single", false, "run only the cluster, not the single-node comparison")
	fs.BoolVar(&o.keep, "keep", false, "keep the scratch directory (configs and logs)")
	fs.DurationVar(&o.timeout, "timeout", 0, "bound on the whole run (default: 4 × -duration + 3m)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.load.Targets = []string{"ws://127.0.0.1:1/ws"} // checked here; the nodes' come later
	if err := o.load.Check(); err != nil {
		return err
	}
	if o.nodes < 1 || o.nodes > 16 {
		return errors.New("-nodes must be 1-16")
	}
	if o.timeout <= 0 {
		o.timeout = 4*o.load.Duration + 3*time.Minute
	}
	redisBin, err := exec.LookPath(o.redis)
	if err != nil {
		return fmt.Errorf("%s not found (Debian/Ubuntu: apt-get install redis-server, or make deps): %w", o.redis, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	defer running.StopAll()

	dir, err := os.MkdirTemp("", "icegate-cluster-bench-")
	if err != nil {
		return err
	}
	failed := true
	defer func() {
		if o.keep || failed {
			fmt.Fprintf(os.Stderr, "configs and logs kept in %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()

	bin, version := o.icegate, "given binary"
	if bin == "" {
		bin = filepath.Join(dir, "icegate")
		version = icegatebin.Version(ctx)
		fmt.Fprintf(os.Stderr, "building %s (%s)\n", icegatebin.Package, version)
		if err := icegatebin.Build(ctx, bin, version); err != nil {
			return fmt.Errorf("%w\n(run cluster-bench inside the icegate checkout, or pass -icegate PATH)", err)
		}
	}
	redisVersion, _ := exec.CommandContext(ctx, redisBin, "--version").Output()

	fmt.Fprintf(out, "cluster bench: %d peers in rooms of %d, %g msg/s each to its partner for %s; icegate %s, %s\n",
		o.load.Conns, o.load.Room, o.load.Rate, o.load.Duration, version, strings.TrimSpace(firstWords(string(redisVersion), 3)))
	fmt.Fprintf(out, "machine: %d CPUs (nproc), Linux %s, load average %s at the start. The nodes, redis-server and this load\n"+
		"generator all share these cores: with few of them, the figures are the machine's as much as icegate's.\n",
		runtime.NumCPU(), benchproc.KernelRelease(), benchproc.LoadAvg())

	cl, err := clusterRun(ctx, o, bin, redisBin, dir, out)
	if err != nil {
		return err
	}
	if o.skipSingle {
		failed = false
		return cl.check(o.load)
	}
	single, err := singleRun(ctx, o, bin, dir, out)
	if err != nil {
		return err
	}
	compare(out, cl, single)
	fmt.Fprintf(out, "load average %s at the end\n", benchproc.LoadAvg())
	failed = false
	if err := cl.check(o.load); err != nil {
		return err
	}
	return single.check(o.load)
}

// measured is one run's figures.
type measured struct {
	name string
	r    sigload.Result
	// cpu is each process's CPU time during the message phase, in the
	// order started; gen is the load generator's.
	cpu     []procCPU
	gen     time.Duration
	scripts int64 // Redis scripts run during the message phase (cluster)
	// scriptTime is Redis's own time in them (INFO commandstats).
	scriptTime time.Duration
}

type procCPU struct {
	name string
	d    time.Duration
}

// serverCPU is the CPU time of everything but the load generator.
func (m measured) serverCPU() time.Duration {
	var t time.Duration
	for _, c := range m.cpu {
		t += c.d
	}
	return t
}

// check fails a run that lost messages: its latencies would flatter it.
func (m measured) check(o sigload.Options) error {
	if m.r.Delivered < m.r.Sent*99/100 {
		return fmt.Errorf("%s: only %d of %d messages delivered", m.name, m.r.Delivered, m.r.Sent)
	}
	return nil
}

// nodeConfig is an `icegate serve` config for the benchmark: loopback
// only, TURN listeners on free ports (they are not used), the HTTP server
// on httpPort, limits that let the load through, and cluster (an HCL
// block, or "" for the in-process bus).
func nodeConfig(o sigload.Options, httpPort int, cluster string) (string, error) {
	turn, err := freePort()
	if err != nil {
		return "", err
	}
	turnTLS, err := freePort()
	if err != nil {
		return "", err
	}
	rate := max(50, int(2*o.Rate))
	return fmt.Sprintf(`log { level = "warn" }
listen {
  addresses = ["127.0.0.1"]
  port = %d
  tls_port = %d
}
relay {
  ipv4_bind = "127.0.0.1"
  ipv6_bind = ""
  private_ok = true
}
metrics { listen = "" }
http { listen = "127.0.0.1:%d" }
signaling {
  max_connections = %d
  messages_per_second = %d
  messages_burst = %d
  peers_per_room = %d
}
%s
shutdown_grace = "1s"
`, turn, turnTLS, httpPort, o.Conns+10, rate, 4*rate, max(o.Room, 2), cluster), nil
}

// startNode writes a config and starts `icegate serve` with it, ready when
// its HTTP port accepts connections.
func startNode(ctx context.Context, o sigload.Options, bin, dir, name, cluster string) (*benchproc.Proc, string, error) {
	httpPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	src, err := nodeConfig(o, httpPort, cluster)
	if err != nil {
		return nil, "", err
	}
	cfg := filepath.Join(dir, name+".hcl")
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		return nil, "", err
	}
	p, err := running.Start(name, filepath.Join(dir, name+".log"), nil, bin, "serve", "-config", cfg)
	if err != nil {
		return nil, "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return p, "ws://" + addr + "/ws", nil
		}
		if p.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
			p.Stop()
			return nil, "", fmt.Errorf("%s did not start listening on %s:\n%s", name, addr, p.LogTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clusterRun measures o.nodes nodes on one redis-server.
func clusterRun(ctx context.Context, o options, bin, redisBin, dir string, out io.Writer) (measured, error) {
	rdir := filepath.Join(dir, "redis")
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return measured{}, err
	}
	redis, addr, err := running.StartRedis(ctx, redisBin, rdir)
	if err != nil {
		return measured{}, err
	}
	procs := []*benchproc.Proc{redis}
	defer func() {
		// The nodes first, so none sees Redis go away under it.
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].Stop()
		}
	}()
	var targets []string
	for i := range o.nodes {
		name := "node" + strconv.Itoa(i+1)
		p, url, err := startNode(ctx, o.load, bin, dir, name,
			fmt.Sprintf("cluster {\n  redis_url = %q\n  node_id = %q\n}", "redis://"+addr+"/0", name))
		if err != nil {
			return measured{}, err
		}
		procs = append(procs, p)
		targets = append(targets, url)
	}
	fmt.Fprintf(out, "\n== cluster: %d nodes on one redis-server (%s), peers spread so the two of a room are on different nodes ==\n",
		o.nodes, addr)
	lo := o.load
	lo.Targets = targets
	// Redis first in the CPU list, then the nodes.
	return measure(ctx, "cluster", lo, procs, addr, out)
}

// singleRun measures one node with the in-process bus.
func singleRun(ctx context.Context, o options, bin, dir string, out io.Writer) (measured, error) {
	p, url, err := startNode(ctx, o.load, bin, dir, "single", "")
	if err != nil {
		return measured{}, err
	}
	defer p.Stop()
	fmt.Fprintf(out, "\n== single node: one icegate serve, no cluster block (the in-process bus) ==\n")
	lo := o.load
	lo.Targets = []string{url}
	return measure(ctx, "single", lo, []*benchproc.Proc{p}, "", out)
}

// measure connects, joins and runs the message phase against lo.Targets,
// reading the CPU time of procs and of this process around the message
// phase (and Redis's script count when redisAddr is set).
func measure(ctx context.Context, name string, lo sigload.Options, procs []*benchproc.Proc, redisAddr string, out io.Writer) (measured, error) {
	m := measured{name: name}
	l, err := sigload.New(lo)
	if err != nil {
		return m, err
	}
	defer l.Close()
	c, err := l.Connect(ctx)
	if err != nil {
		return m, err
	}
	fmt.Fprintf(out, "connect: %d WebSockets with hello in %.2fs (%.0f/s); per connection %s\n",
		lo.Conns, c.Elapsed.Seconds(), float64(lo.Conns)/c.Elapsed.Seconds(), sigload.Summary(c.Each))
	j, err := l.Join(ctx)
	if err != nil {
		return m, err
	}
	fmt.Fprintf(out, "join: %d rooms in %.2fs; per join %s\n", l.Rooms(), j.Elapsed.Seconds(), sigload.Summary(j.Each))

	ticks0 := make([]int64, len(procs))
	for i, p := range procs {
		if ticks0[i], err = benchproc.CPUTicks(p.Pid()); err != nil {
			return m, fmt.Errorf("%s: %w", p.Name, err)
		}
	}
	var calls0, usec0 int64
	if redisAddr != "" {
		if calls0, usec0, err = scriptCalls(redisAddr); err != nil {
			return m, fmt.Errorf("redis INFO: %w", err)
		}
	}
	gen0 := sigload.CPUTime()
	m.r = l.Send(ctx)
	m.gen = sigload.CPUTime() - gen0
	for i, p := range procs {
		t, err := benchproc.CPUTicks(p.Pid())
		if err != nil {
			return m, fmt.Errorf("%s: %w", p.Name, err)
		}
		m.cpu = append(m.cpu, procCPU{p.Name, time.Duration(t-ticks0[i]) * time.Second / benchproc.TicksPerSecond})
	}
	if redisAddr != "" {
		calls, usec, err := scriptCalls(redisAddr)
		if err != nil {
			return m, fmt.Errorf("redis INFO: %w", err)
		}
		m.scripts = calls - calls0
		m.scriptTime = time.Duration(usec-usec0) * time.Microsecond
	}
	if err := ctx.Err(); err != nil {
		return m, err
	}

	r := m.r
	fmt.Fprintf(out, "messages: %d sent, %d delivered, %d errors", r.Sent, r.Delivered, r.Errors)
	for _, k := range slices.Sorted(maps.Keys(r.ErrCodes)) {
		fmt.Fprintf(out, " [%s: %d]", k, r.ErrCodes[k])
	}
	fmt.Fprintf(out, "; %.0f delivered/s\n", r.PerSecond())
	how := "send → node → receiver"
	if redisAddr != "" {
		how = "send → node → Redis → other node → receiver"
	}
	fmt.Fprintf(out, "latency (%s): %s\n", how, sigload.Summary(r.Latencies))
	secs := r.Elapsed.Seconds()
	fmt.Fprintf(out, "cpu in the message phase (%.1f s):", secs)
	for _, c := range m.cpu {
		fmt.Fprintf(out, " %s %.2f s (%.0f%% of a core);", c.name, c.d.Seconds(), 100*c.d.Seconds()/secs)
	}
	fmt.Fprintf(out, " load generator %.2f s (%.0f%%)\n", m.gen.Seconds(), 100*m.gen.Seconds()/secs)
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(max(r.Delivered, 1)) }
	fmt.Fprintf(out, "cpu per delivered message: servers %.1f µs, load generator %.1f µs\n", per(m.serverCPU()), per(m.gen))
	if redisAddr != "" {
		fmt.Fprintf(out, "redis: %d scripts run, %.2f per delivered message, %.1f µs each inside Redis (INFO commandstats; the rest of its CPU is network I/O)\n",
			m.scripts, float64(m.scripts)/float64(max(r.Delivered, 1)), float64(m.scriptTime.Nanoseconds())/1000/float64(max(m.scripts, 1)))
	}
	return m, nil
}

// compare prints the cluster's figures against the single node's, and the
// issue's targets.
func compare(out io.Writer, cl, single measured) {
	q := func(m measured, f float64) time.Duration { return sigload.Quantile(m.r.Latencies, f) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d.Microseconds())/1000) }
	ratio := func(a, b float64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f×", a/b)
	}
	fmt.Fprintf(out, "\n== cluster vs single node ==\n")
	fmt.Fprintf(out, "| | cluster | single node | cluster / single |\n|---|---:|---:|---:|\n")
	for _, row := range []struct {
		name string
		f    float64
	}{{"latency p50", 0.5}, {"latency p90", 0.9}, {"latency p99", 0.99}, {"latency max", 1}} {
		a, b := q(cl, row.f), q(single, row.f)
		fmt.Fprintf(out, "| %s | %s | %s | %s |\n", row.name, ms(a), ms(b), ratio(float64(a), float64(b)))
	}
	fmt.Fprintf(out, "| delivered/s | %.0f | %.0f | %s |\n", cl.r.PerSecond(), single.r.PerSecond(), ratio(cl.r.PerSecond(), single.r.PerSecond()))
	perMsg := func(m measured) float64 {
		return float64(m.serverCPU().Microseconds()) / float64(max(m.r.Delivered, 1))
	}
	fmt.Fprintf(out, "| server CPU per delivered message (nodes + redis) | %.1f µs | %.1f µs | %s |\n",
		perMsg(cl), perMsg(single), ratio(perMsg(cl), perMsg(single)))
	p99 := q(cl, 0.99)
	tput := cl.r.PerSecond() / single.r.PerSecond()
	fmt.Fprintf(out, "targets (issue #12): cluster p99 ≤ %v: %s (%s); cluster throughput ≥ %.1f× single: %s (%.2f×)\n",
		targetP99, verdict(p99 <= targetP99), ms(p99), targetThroughput, verdict(tput >= targetThroughput), tput)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	return strings.Join(f[:min(n, len(f))], " ")
}
