package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"icegate/internal/benchproc"
	"icegate/internal/sigload"
)

// startGroup starts what one measurement runs against: one server, or
// with -cluster a redis-server and o.cluster icegate nodes on it.
func startGroup(ctx context.Context, procs *benchproc.Set, name, mode string, o options, dir, cert, key string) (*group, error) {
	g := &group{name: name, mode: mode}
	if o.cluster == 0 {
		s, err := startServer(ctx, procs, name, mode, name+"-"+mode, "", o.conns+1000, o, dir, cert, key)
		if err != nil {
			return nil, err
		}
		g.nodes = []*server{s}
		return g, nil
	}
	g.name = fmt.Sprintf("icegate ×%d", o.cluster)
	bin, err := exec.LookPath(o.redis)
	if err != nil {
		return nil, fmt.Errorf("-cluster needs %s (Debian/Ubuntu: apt-get install redis-server, or make deps): %w", o.redis, err)
	}
	if g.redis, g.redisAddr, err = procs.StartRedis(ctx, bin, dir, "--maxclients", strconv.Itoa(redisMaxClients)); err != nil {
		return nil, err
	}
	// Each node's share, with room for the probes, the storm's moves (a
	// dropped node's clients resume on the others) and fresh clients; the
	// descriptor reserve still applies under it.
	perNode := o.conns/o.cluster + 1
	maxConns := perNode + 2*o.probePairs + 1000
	if o.storm {
		maxConns += perNode
	}
	for i := range o.cluster {
		nodeName := fmt.Sprintf("node%d", i+1)
		block := fmt.Sprintf("cluster {\n  redis_url = %q\n  node_id = %q\n}", "redis://"+g.redisAddr+"/0", nodeName)
		s, err := startServer(ctx, procs, name, mode, nodeName, block, maxConns, o, dir, cert, key)
		if err != nil {
			g.stop()
			return nil, err
		}
		s.p.Name = nodeName
		g.nodes = append(g.nodes, s)
	}
	return g, nil
}

// redisMaxClients is redis-server's --maxclients: each node holds a few
// connections (its pool and its subscriptions), far under this; Redis
// raises its own descriptor limit to this plus 32 when it can.
const redisMaxClients = 10000

// latencyResult is the cross-node probe run.
type latencyResult struct {
	pairs           int
	sent, delivered int64
	errors          int64
	lat             []time.Duration // sorted
	// gcs is the garbage collections of all nodes during the send;
	// wait the time their threads, Redis's and this process's (the
	// probes') spent runnable but not running (schedstat run_delay),
	// and slices how many times they were scheduled: where the tail
	// comes from when it is the machine's, not the path's.
	gcs                       int
	nodeWait, redisWait, self time.Duration
	nodeSlices                int64
	// cpu is the CPU over the send of the nodes, Redis, the probe
	// clients' process and the workers, in % of a core.
	cpu [4]float64
}

// crossNodeLatency runs o.probePairs rooms of two whose members sit on
// different nodes (sigload puts peer i on node i mod N), each sending to
// the other at o.probeRate, from this process, while the workers' idle
// connections stay up: the latency of a message crossing nodes through
// Redis at the measured connection count.
func crossNodeLatency(ctx context.Context, g *group, o options, workerPids []int) (*latencyResult, error) {
	var targets []string
	for _, n := range g.nodes {
		targets = append(targets, n.url)
	}
	l, err := sigload.New(sigload.Options{Targets: targets, Conns: 2 * o.probePairs, Room: 2, Parallel: 32,
		Rate: o.probeRate, Duration: o.probeTime})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if _, err := l.Connect(ctx); err != nil {
		return nil, err
	}
	if _, err := l.Join(ctx); err != nil {
		return nil, err
	}
	gc0 := gcCount(g)
	nw0, ns0 := runDelay(nodePids(g)...)
	var rw0, rw1 time.Duration
	if g.redis != nil {
		rw0, _ = runDelay(g.redis.Pid())
	}
	sw0, _ := runDelay(os.Getpid())
	pids := append([]int{os.Getpid()}, workerPids...)
	n0, r0, p0 := ticks(g, pids)
	w0 := time.Now()
	r := l.Send(ctx)
	n1, r1, p1 := ticks(g, pids)
	window := time.Since(w0)
	nw1, ns1 := runDelay(nodePids(g)...)
	if g.redis != nil {
		rw1, _ = runDelay(g.redis.Pid())
	}
	sw1, _ := runDelay(os.Getpid())
	return &latencyResult{pairs: o.probePairs, sent: r.Sent, delivered: r.Delivered, errors: r.Errors, lat: r.Latencies,
		gcs: gcCount(g) - gc0, nodeWait: nw1 - nw0, nodeSlices: ns1 - ns0, redisWait: rw1 - rw0, self: sw1 - sw0,
		cpu: probeCPU(window, n0, n1, r0, r1, p0, p1)}, nil
}

// probeCPU is the CPU of the nodes, Redis, the probe clients' process and
// the workers over the probes' send, in % of a core each.
func probeCPU(window time.Duration, n0, n1 []cpuTicks, r0, r1 cpuTicks, p0, p1 []cpuTicks) [4]float64 {
	pct := func(t int64) float64 {
		return 100 * float64(t) / benchproc.TicksPerSecond / window.Seconds()
	}
	var c [4]float64
	for i := range n0 {
		c[0] += pct(n1[i].total() - n0[i].total())
	}
	c[1] = pct(r1.total() - r0.total())
	c[2] = pct(p1[0].total() - p0[0].total())
	for i := 1; i < len(p0); i++ {
		c[3] += pct(p1[i].total() - p0[i].total())
	}
	return c
}

// nodePids returns the PIDs of g's nodes.
func nodePids(g *group) []int {
	var pids []int
	for _, n := range g.nodes {
		pids = append(pids, n.p.Pid())
	}
	return pids
}

// gcCount sums the nodes' completed garbage collections
// (go_gc_duration_seconds_count).
func gcCount(g *group) int {
	total := 0
	for _, n := range g.nodes {
		v, _ := promGauge("http://"+n.metrics+"/metrics", "go_gc_duration_seconds_count")
		total += v
	}
	return total
}

// runDelay sums, over every thread of pids, the time spent runnable on
// a run queue without a CPU and the times scheduled
// (/proc/PID/task/TID/schedstat: run time, run_delay, timeslices; see
// Documentation/scheduler/sched-stats.rst).
func runDelay(pids ...int) (wait time.Duration, slices int64) {
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid) + "/task"
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
			if err != nil {
				continue
			}
			f := strings.Fields(string(b))
			if len(f) < 3 {
				continue
			}
			d, _ := strconv.ParseInt(f[1], 10, 64)
			n, _ := strconv.ParseInt(f[2], 10, 64)
			wait += time.Duration(d)
			slices += n
		}
	}
	return wait, slices
}
