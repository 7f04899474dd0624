// Command relaybench measures icegate side by side with Debian's coturn on
// 127.0.0.1 and prints a markdown table of medians and icegate/coturn
// ratios (issue #5; docs/performance.md explains the measurements):
//
//	go run ./tools/relaybench [-rounds 3] [-icegate PATH] [-quick] [-out FILE] [-only LIST]
//	go run ./tools/relaybench -media-only [-media-allocs 200,500] [-media-for 10s]
//	sudo go run ./tools/relaybench -offload [-quick] [-rounds 3] [-media-allocs 2000]
//
// Each measurement starts a fresh icegate and a fresh coturn with
// equivalent settings, alternating icegate, coturn, icegate, coturn, ...
// -rounds times each. Saturating relay load comes from coturn's
// turnutils_uclient with turnutils_peer as the echo; the media-rate load
// (hundreds of allocations at one message per 20 ms, to the same echo), STUN
// Binding rate, allocation churn and allocations held open come from Go load
// generators in this package.
// Server CPU time and memory are read from /proc. Progress goes to stderr,
// the table to stdout.
//
// -offload (issue #17, root only) measures the kernel fast path instead: on a
// veth topology in network namespaces of its own (topo_linux.go), icegate
// with relay.kernel_offload = "on", icegate with "off" and coturn, the
// saturating and the media-rate loads, CPU counted for the whole machine
// (/proc/stat), since the kernel relays in softirq context, outside any
// server process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"icegate/internal/benchproc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, selfArgv)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(os.Stderr, "relaybench: interrupted; everything it started has been stopped")
		os.Exit(130)
	default:
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(1)
	}
}

// measurements, in the order they run; -only picks some.
var measurements = []string{"relay", "loss", "media", "binding", "churn", "memory"}

// plan is the load for each measurement; -quick shrinks it.
type plan struct {
	relay          []uclientParams // saturating load, -z 0
	fixed          uclientParams   // loss at a fixed offered load
	media          []mediaParams   // media-rate loads, one per allocation count
	bindingClients int
	bindingWorkers int
	bindingFor     time.Duration
	churnWorkers   int
	churnFor       time.Duration
	relayPorts     int // relay range for the uclient loads and churn
	holdN          int // allocations held for the memory measurement
	holdWorkers    int
	holdPorts      int
}

func fullPlan() plan {
	return plan{
		// About 300,000 relayed packets per run (sent + echoed).
		relay: []uclientParams{
			{clients: 10, length: 100, messages: 15000},
			{clients: 50, length: 100, messages: 3000},
			{clients: 10, length: 1000, messages: 15000},
			{clients: 50, length: 1000, messages: 3000},
		},
		// 20 clients × 1 message/ms = 20,000 messages/s offered, 40,000
		// relayed packets/s: well under what either server relays here at
		// saturation.
		fixed: uclientParams{clients: 20, length: 100, messages: 4000, intervalMS: 1},
		// One leg of a video call each: 1000 B every 20 ms, 50 messages/s.
		// 500 allocations offer 25,000 messages/s (50,000 relayed packets/s),
		// spread evenly over the period, so a relay wakes for one or two
		// packets at a time.
		media:          mediaLoads([]int{200, 500}, 10*time.Second),
		bindingClients: 256,
		bindingWorkers: runtime.NumCPU(),
		bindingFor:     5 * time.Second,
		churnWorkers:   16,
		churnFor:       5 * time.Second,
		relayPorts:     1000,
		holdN:          1000,
		holdWorkers:    8,
		// Twice the allocations held, so that neither server's port choice
		// near a full range is what is measured.
		holdPorts: 2000,
	}
}

// mediaLoads is one media-rate load per allocation count: 1000 B every
// 20 ms for d, from one generator thread per core.
func mediaLoads(allocations []int, d time.Duration) []mediaParams {
	var out []mediaParams
	for _, n := range allocations {
		out = append(out, mediaParams{allocations: n, size: 1000, period: 20 * time.Millisecond,
			duration: d, workers: runtime.NumCPU()})
	}
	return out
}

// parseCounts parses a comma-separated list of allocation counts.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 5000 {
			return nil, fmt.Errorf("%q: want allocation counts from 1 to 5000, comma-separated", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// offloadPlan is -offload's load: the saturating load at 100 and 1000 B (50
// allocations each) and the media-rate load of issue #17, 2,000 allocations
// at 50 messages/s each way, 1000 B.
func offloadPlan() plan {
	p := fullPlan()
	p.relay = []uclientParams{
		{clients: 50, length: 100, messages: 3000},
		{clients: 50, length: 1000, messages: 3000},
	}
	p.media = mediaLoads([]int{2000}, 10*time.Second)
	return p
}

// selfArgv is the command line that runs this program again with args
// (-offload runs it inside the client namespace).
func selfArgv(args []string) ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return append([]string{exe}, args...), nil
}

// offloadMeasurements are the measurements -offload can run.
var offloadMeasurements = []string{"relay", "loss", "media"}

func quickPlan() plan {
	p := fullPlan()
	for i := range p.relay {
		p.relay[i].messages /= 15
	}
	p.fixed.messages = 500
	p.media = mediaLoads([]int{200}, 3*time.Second)
	p.bindingFor = time.Second
	p.churnFor = time.Second
	p.holdN = 200
	p.holdPorts = 400
	return p
}

// run is the program; again builds the command line that runs it again
// with other arguments (for -offload's run inside the client namespace).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, again func([]string) ([]string, error)) (err error) {
	fs := flag.NewFlagSet("relaybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rounds := fs.Int("rounds", 3, "runs of each measurement per server, alternating icegate and coturn (default 3; 1 with -quick)")
	icegatePath := fs.String("icegate", "", "icegate binary to measure (default: build ./cmd/icegate of the working tree into a temp dir)")
	quick := fs.Bool("quick", false, "a short smoke run: small loads, 1 round unless -rounds is given")
	out := fs.String("out", "", "also write the markdown table to this file")
	only := fs.String("only", strings.Join(measurements, ","), "comma-separated measurements to run: "+strings.Join(measurements, ", "))
	mediaOnly := fs.Bool("media-only", false, "run only the media-rate load (the same as -only media)")
	mediaAllocs := fs.String("media-allocs", "", "comma-separated allocation counts for the media-rate load (default 200,500; 200 with -quick)")
	mediaFor := fs.Duration("media-for", 0, "how long each media-rate run sends (default 10s; 3s with -quick)")
	offload := fs.Bool("offload", false, "issue #17: icegate with the kernel fast path, icegate without, and coturn, on a veth topology in network namespaces relaybench creates and removes, CPU counted for the whole machine; relay and media loads (-only relay,loss,media), media at 2000 allocations (200 with -quick); needs root")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	roundsSet := false
	fs.Visit(func(f *flag.Flag) { roundsSet = roundsSet || f.Name == "rounds" })
	p := fullPlan()
	if *quick {
		p = quickPlan()
		if !roundsSet {
			*rounds = 1
		}
	}
	topo, inner := innerTopology()
	onlySet := false
	fs.Visit(func(f *flag.Flag) { onlySet = onlySet || f.Name == "only" })
	if *offload {
		p = offloadPlan()
		if *quick {
			for i := range p.relay {
				p.relay[i].messages /= 15
			}
			p.fixed.messages = 500
			p.media = mediaLoads([]int{200}, 3*time.Second)
		}
		if !onlySet && !*mediaOnly {
			*only = "relay,media"
		}
		for _, m := range strings.Split(*only, ",") {
			if m = strings.TrimSpace(m); !slices.Contains(offloadMeasurements, m) {
				return fmt.Errorf("-offload: -only %q: it runs %s", m, strings.Join(offloadMeasurements, ", "))
			}
		}
	}
	if *mediaAllocs != "" || *mediaFor != 0 {
		counts := make([]int, 0, len(p.media))
		for _, m := range p.media {
			counts = append(counts, m.allocations)
		}
		d := p.media[0].duration
		if *mediaAllocs != "" {
			if counts, err = parseCounts(*mediaAllocs); err != nil {
				return fmt.Errorf("-media-allocs: %w", err)
			}
		}
		if *mediaFor != 0 {
			if *mediaFor < time.Second || *mediaFor > 10*time.Minute {
				return fmt.Errorf("-media-for %v: want 1s to 10m", *mediaFor)
			}
			d = *mediaFor
		}
		p.media = mediaLoads(counts, d)
	}
	if *mediaOnly {
		*only = "media"
	}
	if *rounds < 1 || *rounds > 50 {
		return fmt.Errorf("-rounds %d: want 1 to 50", *rounds)
	}
	selected := map[string]bool{}
	for _, m := range strings.Split(*only, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains(measurements, m) {
			return fmt.Errorf("-only: unknown measurement %q (have %s)", m, strings.Join(measurements, ", "))
		}
		selected[m] = true
	}

	if *offload && !inner {
		return runOffloadOuter(ctx, args, *icegatePath, stdout, stderr, again)
	}

	began := time.Now()
	loadStart := benchproc.LoadAvg()
	e, err := newEnv(ctx, *icegatePath, stderr)
	if e != nil {
		// Logs are kept after a failure, for reading; not after Ctrl-C.
		defer func() { e.close(err != nil && !errors.Is(err, context.Canceled)) }()
	}
	if err != nil {
		return err
	}
	if selected["media"] {
		most := 0
		for _, m := range p.media {
			most = max(most, m.allocations)
		}
		if lim := fileLimit(); lim != 0 && lim < uint64(most+100) {
			return fmt.Errorf("open file limit %d is too low for %d allocations (ulimit -n)", lim, most)
		}
	}
	if selected["memory"] {
		if lim := fileLimit(); lim != 0 && lim < uint64(p.holdN+100) {
			return fmt.Errorf("open file limit %d is too low to hold %d allocations (ulimit -n)", lim, p.holdN)
		}
	}
	servers, issue := []string{icegate, coturn}, "issue #5"
	if *offload {
		e.at, e.serverNS, e.peerNS = topoHosts(), topo.server, topo.peer
		servers, issue = []string{icegateOffload, icegate, coturn}, "issue #17"
	}
	fmt.Fprintf(stderr, "measuring icegate (%s, %s) against coturn (%s); %d round(s); scratch dir %s\n",
		e.version, e.icegate, e.bins["turnserver"], *rounds, e.dir)

	b := &bench{env: e, plan: p, servers: servers, offload: *offload, rounds: *rounds, log: stderr}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"relay", b.relay}, {"loss", b.loss}, {"media", b.media}, {"binding", b.binding}, {"churn", b.churn}, {"memory", b.memory},
	}
	for _, s := range steps {
		if !selected[s.name] {
			continue
		}
		if err := s.fn(ctx); err != nil {
			return err
		}
	}

	table := markdown(b.rows, servers, issue)
	took := time.Since(began).Round(time.Second)
	coturnV := e.coturnV
	if coturnV == "" {
		coturnV = "version not seen"
	}
	what := fmt.Sprintf("icegate %s vs coturn (%s)", e.version, coturnV)
	if *offload {
		what = fmt.Sprintf("icegate %s with relay.kernel_offload = \"on\" and \"off\" vs coturn (%s) on a veth topology (client, server, peer namespaces), kernel %s",
			e.version, coturnV, irqAccounting())
	}
	header := fmt.Sprintf("%s, %d round(s) each, medians. %s, %d CPUs, Linux %s, load average %s at the start and %s at the end; run took %v.\n\n",
		what, *rounds, began.UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), benchproc.KernelRelease(), loadStart, benchproc.LoadAvg(), took)
	fmt.Fprint(stdout, header+table)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(header+table), 0o644); err != nil {
			return err
		}
	}
	if len(b.warnings) > 0 {
		fmt.Fprintf(stderr, "\nicegate logged %d warning/error lines during the runs; the first ones:\n", len(b.warnings))
		for _, w := range b.warnings[:min(len(b.warnings), 10)] {
			fmt.Fprintln(stderr, "  "+w)
		}
	}
	fmt.Fprintf(stderr, "done in %v\n", took)
	if b.failed > 0 {
		return fmt.Errorf("%d run(s) failed (see above); their values are missing from the table", b.failed)
	}
	return nil
}
