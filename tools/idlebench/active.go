package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"icegate/internal/benchproc"
)

// Active peers (issue #15: "message latency at 10,000 active peers, rooms
// of 2, 5 msg/s, no worse than today's at 2,000"). With -active R every
// connection, once all are up, sends R messages a second to the other of
// its room for -active-time, from the worker processes (the two of a room
// are in one worker, so one clock times a message from its send to its
// arrival). Each count of -active-conns gets fresh servers and workers, in
// one run, so the counts are compared on the same machine under the same
// conditions.

// activeLoad is one count of -active-conns: connections and the
// messages a second each sends.
type activeLoad struct {
	conns int
	rate  float64
}

// activeStats is what a worker's connections measured in the send phase.
type activeStats struct {
	sent, received, errors atomic.Int64
	mu                     sync.Mutex
	hist                   map[int64]int64 // latency bucket (µs, see bucketUS) → count
}

// active is the worker process's: its readers count into it.
var active = activeStats{hist: map[int64]int64{}}

// delivered counts a message that took d from its send to its arrival.
func (a *activeStats) delivered(d time.Duration) {
	a.received.Add(1)
	b := bucketUS(d.Microseconds())
	a.mu.Lock()
	a.hist[b]++
	a.mu.Unlock()
}

// bucketUS rounds a latency in µs down to two significant digits (1 µs
// steps below 100 µs, 10 µs to 1 ms, …): the quantiles are exact to 10%,
// and a worker's histogram stays a few hundred buckets whatever the count.
func bucketUS(us int64) int64 {
	if us < 100 {
		return max(us, 0)
	}
	p := int64(1)
	for us/p >= 100 {
		p *= 10
	}
	return us / p * p
}

// sendersPerWorker are the goroutines a worker sends with: each paces a
// share of its connections over the interval, rather than a goroutine and
// a ticker per connection, so that at 10,000 peers the load generator's
// own timers do not take the cores the server needs.
const sendersPerWorker = 4

// sendPhase has every connection whose room partner is in this worker
// send rate messages a second to it for d, their sends spread evenly over
// the interval, then waits up to 5 s for the last to arrive. It returns
// "sent SENT DELIVERED ERRORS LATE BUCKET:COUNT,…": LATE counts sends
// that went out more than one interval after their slot (the worker could
// not keep up: the offered load was then lower than asked).
func sendPhase(ctx context.Context, conns []*client, rate float64, d time.Duration) string {
	var pairs []*client
	var to []string
	for i := 0; i+1 < len(conns); i += 2 { // conns 2k and 2k+1 share a room
		a, b := conns[i], conns[i+1]
		if a == nil || b == nil {
			continue
		}
		pairs = append(pairs, a, b)
		to = append(to, b.peer, a.peer)
	}
	interval := time.Duration(float64(time.Second) / rate)
	var late atomic.Int64
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for s := range sendersPerWorker {
		var mine []int
		for i := s; i < len(pairs); i += sendersPerWorker {
			mine = append(mine, i)
		}
		if len(mine) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Send k of this sender (k = 0, 1, …) is connection
			// mine[k mod n]'s, due at start + k·interval/n, the
			// senders offset from each other by a share of the step.
			n := int64(len(mine))
			step := interval / time.Duration(n)
			offset := step * time.Duration(s) / sendersPerWorker
			var buf []byte
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for k := int64(0); ; {
				now := time.Now()
				if !now.Before(end) || ctx.Err() != nil {
					return
				}
				for ; ; k++ {
					slot := start.Add(offset + time.Duration(k)*step)
					if slot.After(now) {
						break
					}
					if now.Sub(slot) > interval {
						late.Add(1)
					}
					i := mine[k%n]
					c := pairs[i]
					buf = append(buf[:0], `{"type":"message","to":"`...)
					buf = append(buf, to[i]...)
					buf = append(buf, `","data":{"t":`...)
					buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
					buf = append(buf, "}}"...)
					_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if c.ws.WriteMessage(websocket.TextMessage, buf) == nil {
						active.sent.Add(1)
					}
				}
				<-tick.C
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for active.received.Load()+active.errors.Load() < active.sent.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	active.mu.Lock()
	var hist []string
	for _, k := range slices.Sorted(maps.Keys(active.hist)) {
		hist = append(hist, fmt.Sprintf("%d:%d", k, active.hist[k]))
	}
	active.mu.Unlock()
	if len(hist) == 0 {
		hist = []string{"-"}
	}
	return fmt.Sprintf("sent %d %d %d %d %s", active.sent.Load(), active.received.Load(), active.errors.Load(), late.Load(), strings.Join(hist, ","))
}

// activeResult is one count's send phase, all workers together.
type activeResult struct {
	conns                     int
	rate                      float64
	sent, delivered, errors   int64
	late                      int64
	hist                      map[int64]int64
	elapsed                   time.Duration // the send phase and its drain
	serverCPU, workerCPU      time.Duration // over elapsed
	loadStart, loadEnd        string
	connectErrors, lostAfter  int
	goroutinesBusy, rssBusyKB int64
}

// parseSent adds a worker's "sent …" line to r.
func (r *activeResult) parseSent(line string) error {
	f := strings.Fields(line)
	if len(f) != 6 || f[0] != "sent" {
		return fmt.Errorf("worker said %q", line)
	}
	n := make([]int64, 4)
	for i := range n {
		v, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return fmt.Errorf("worker said %q", line)
		}
		n[i] = v
	}
	r.sent += n[0]
	r.delivered += n[1]
	r.errors += n[2]
	r.late += n[3]
	if f[5] == "-" {
		return nil
	}
	for _, kv := range strings.Split(f[5], ",") {
		k, v, _ := strings.Cut(kv, ":")
		bk, err1 := strconv.ParseInt(k, 10, 64)
		bv, err2 := strconv.ParseInt(v, 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("worker histogram %q", kv)
		}
		r.hist[bk] += bv
	}
	return nil
}

// quantile is the q quantile (0 ≤ q ≤ 1) of the latencies, at the
// histogram's resolution; q = 1 is the largest bucket.
func (r *activeResult) quantile(q float64) time.Duration {
	var total int64
	for _, v := range r.hist {
		total += v
	}
	if total == 0 {
		return 0
	}
	want := min(int64(math.Ceil(q*float64(total))), total)
	want = max(want, 1)
	var seen int64
	for _, k := range slices.Sorted(maps.Keys(r.hist)) {
		seen += r.hist[k]
		if seen >= want {
			return time.Duration(k) * time.Microsecond
		}
	}
	return 0
}

// runActive runs the send phase at each count of o.activeConns, each on
// fresh servers (one process, or the cluster), and reports them side by
// side with the ratio of each p99 to the first count's.
func runActive(ctx context.Context, procs *benchproc.Set, self string, o options, dir, cert, key string, out io.Writer) ([]activeResult, error) {
	var rows []activeResult
	for _, l := range o.activeConns {
		on := o
		on.conns, on.activeRate = l.conns, l.rate
		// Even, so that the two of a room are in one worker.
		on.perWorker = (l.conns + o.activeProcs - 1) / o.activeProcs
		on.perWorker += on.perWorker % 2
		g, err := startGroup(ctx, procs, "icegate", "plain", on, dir, cert, key)
		if err != nil {
			return rows, err
		}
		r, err := measureActive(ctx, procs, g, self, on)
		g.stop()
		if err != nil {
			return rows, fmt.Errorf("%d active peers: %w", l.conns, err)
		}
		fmt.Fprintln(out, r.line(on))
		rows = append(rows, r)
	}
	fmt.Fprintf(out, "\n| active peers | msg/s each | sent/s | delivered | lost | errors | late sends | p50 | p99 | max | server CPU (%% of a core) | load generator CPU | load average start → end |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		fmt.Fprintf(out, "| %d | %g | %.0f | %d | %d | %d | %d | %s | %s | %s | %.0f | %.0f | %s → %s |\n", r.conns, r.rate, float64(r.sent)/o.activeTime.Seconds(),
			r.delivered, r.sent-r.delivered-r.errors, r.errors, r.late, ms(r.quantile(0.5)), ms(r.quantile(0.99)), ms(r.quantile(1)),
			100*r.serverCPU.Seconds()/r.elapsed.Seconds(), 100*r.workerCPU.Seconds()/r.elapsed.Seconds(), r.loadStart, r.loadEnd)
	}
	if len(rows) > 1 {
		base := rows[0].quantile(0.99)
		for _, r := range rows[1:] {
			p99 := r.quantile(0.99)
			ratio := float64(p99) / float64(max(base, time.Microsecond))
			fmt.Fprintf(out, "target (issue #15): latency at %d active peers × %g msg/s no worse than at %d × %g: %s (p99 %s against %s, %.2f×; at the histogram's 10%% resolution)\n",
				r.conns, r.rate, rows[0].conns, rows[0].rate, verdict(p99 <= base+base/10 && r.delivered >= r.sent*99/100), ms(p99), ms(base), ratio)
		}
	}
	for _, r := range rows {
		// As signaling-bench: a run that lost messages measured
		// something else than latency.
		if r.sent == 0 || r.delivered < r.sent*99/100 || r.connectErrors > 0 || r.lostAfter > 0 {
			return rows, fmt.Errorf("%d active peers: %d of %d messages delivered, %d connections failed to open, %d ended by the server",
				r.conns, r.delivered, r.sent, r.connectErrors, r.lostAfter)
		}
	}
	return rows, nil
}

func (r activeResult) line(o options) string {
	return fmt.Sprintf("%d active peers × %g msg/s for %v from %d worker processes: %d sent, %d delivered, %d errors, %d sends late; p50 %s, p99 %s, max %s; server CPU %.0f%% of a core, load generator %.0f%%; %d goroutines and %.1f KiB RSS per peer on the servers while sending; load average %s → %s",
		r.conns, o.activeRate, o.activeTime, (r.conns+o.perWorker-1)/o.perWorker, r.sent, r.delivered, r.errors, r.late, ms(r.quantile(0.5)), ms(r.quantile(0.99)), ms(r.quantile(1)),
		100*r.serverCPU.Seconds()/r.elapsed.Seconds(), 100*r.workerCPU.Seconds()/r.elapsed.Seconds(),
		r.goroutinesBusy, float64(r.rssBusyKB)/float64(max(r.conns, 1)), r.loadStart, r.loadEnd)
}

// measureActive opens o.conns connections to g from workers, lets them
// settle, runs the send phase and closes them.
func measureActive(ctx context.Context, procs *benchproc.Set, g *group, self string, o options) (activeResult, error) {
	r := activeResult{conns: o.conns, rate: o.activeRate, hist: map[int64]int64{}}
	time.Sleep(2 * time.Second)
	var rss0 int64
	for _, n := range g.nodes {
		kb, _ := benchproc.RSSKB(n.p.Pid())
		rss0 += kb
	}
	workers, errs, err := startWorkers(procs, g, self, o, nil)
	defer stopWorkers(workers)
	if err != nil {
		return r, err
	}
	r.connectErrors = errs
	if err := sleepCtx(ctx, o.settle); err != nil {
		return r, err
	}
	cpu := func() (server, load int64) {
		for _, n := range g.nodes {
			t, _ := benchproc.CPUTicks(n.p.Pid())
			server += t
		}
		if g.redis != nil {
			t, _ := benchproc.CPUTicks(g.redis.Pid())
			server += t
		}
		for _, w := range workers {
			t, _ := benchproc.CPUTicks(w.p.Pid())
			load += t
		}
		return server, load
	}
	r.loadStart = benchproc.LoadAvg()
	s0, l0 := cpu()
	t0 := time.Now()
	var prof chan error
	if o.pprof {
		prof = make(chan error, len(g.nodes))
		for _, n := range g.nodes {
			go func() {
				prof <- n.cpuProfile(ctx, filepath.Join(o.profDir, fmt.Sprintf("active-%d-%g-%s.pprof", o.conns, o.activeRate, n.p.Name)), o.activeTime)
			}()
		}
	}
	for _, w := range workers {
		if _, err := fmt.Fprintf(w.stdin, "send %g %d\n", o.activeRate, o.activeTime.Milliseconds()); err != nil {
			return r, err
		}
	}
	// Half-way through, what the servers hold while busy.
	if err := sleepCtx(ctx, o.activeTime/2); err != nil {
		return r, err
	}
	r.goroutinesBusy = int64(g.goroutines())
	for _, n := range g.nodes {
		kb, _ := benchproc.RSSKB(n.p.Pid())
		r.rssBusyKB += kb
	}
	r.rssBusyKB -= rss0
	for _, w := range workers {
		line, err := w.read()
		if err != nil {
			return r, err
		}
		if err := r.parseSent(line); err != nil {
			return r, fmt.Errorf("%s: %w", w.p.Name, err)
		}
	}
	r.elapsed = time.Since(t0)
	s1, l1 := cpu()
	r.loadEnd = benchproc.LoadAvg()
	r.serverCPU = time.Duration(s1-s0) * time.Second / benchproc.TicksPerSecond
	r.workerCPU = time.Duration(l1-l0) * time.Second / benchproc.TicksPerSecond
	for range cap(prof) {
		if err := <-prof; err != nil {
			fmt.Fprintln(os.Stderr, "cpu profile:", err)
		}
	}
	lost, _, err := closeWorkers(workers)
	r.lostAfter = lost
	return r, err
}
