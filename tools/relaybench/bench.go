package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"icegate/internal/benchproc"
)

// bench runs the measurements and collects the table's rows.
type bench struct {
	env      *env
	plan     plan
	servers  []string // in the order a round runs them, coturn last
	offload  bool     // -offload: machine CPU rows, the offload check
	rounds   int
	log      io.Writer
	rows     []*row
	warnings []string // icegate's warn/error log lines, all runs
	failed   int      // runs that failed and are missing from the table
}

// serverTarget is a server-CPU row's target: the loopback benchmark's
// (issue #5), none with -offload, whose targets are on machine CPU.
func (b *bench) serverTarget(t float64) float64 {
	if b.offload {
		return 0
	}
	return t
}

func (b *bench) addRow(r *row) *row {
	b.rows = append(b.rows, r)
	return r
}

// each runs fn for every round and server, alternating the servers (icegate,
// coturn, icegate, coturn, ...). A failed run is reported and skipped;
// Ctrl-C ends everything.
func (b *bench) each(ctx context.Context, what string, fn func(ctx context.Context, server string) (string, error)) error {
	for round := 1; round <= b.rounds; round++ {
		for _, s := range b.servers {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			began := time.Now()
			summary, err := fn(ctx, s)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			took := time.Since(began).Seconds()
			if err != nil {
				b.failed++
				fmt.Fprintf(b.log, "[%s] round %d/%d %s: FAILED: %v\n", what, round, b.rounds, s, err)
				continue
			}
			fmt.Fprintf(b.log, "[%s] round %d/%d %s: %s (%.0f s)\n", what, round, b.rounds, s, summary, took)
		}
	}
	return nil
}

// withServer starts kind, runs fn, stops the server, and keeps icegate's
// warnings.
func (b *bench) withServer(ctx context.Context, kind string, relayPorts int, fn func(*server) error) error {
	s, err := b.env.startServer(ctx, kind, relayPorts)
	if err != nil {
		return err
	}
	err = fn(s)
	alive := !s.p.Exited()
	s.stop()
	if w := s.warnings(); len(w) > 0 {
		fmt.Fprintf(b.log, "  icegate logged %d warning/error line(s), e.g. %s\n", len(w), w[0])
		b.warnings = append(b.warnings, w...)
	}
	if err == nil && !alive {
		err = fmt.Errorf("%s exited during the run: %v\n%s", kind, s.p.Err(), s.p.LogTail(15))
	}
	return err
}

func cpuSeconds(ticks int64) float64 { return float64(ticks) / benchproc.TicksPerSecond }

// dropsByServer returns one empty drops per server.
func (b *bench) dropsByServer() map[string]*drops {
	m := map[string]*drops{}
	for _, s := range b.servers {
		m[s] = &drops{}
	}
	return m
}

// use is the CPU one run took, in CPU-seconds, from samples taken just
// before and just after the load.
type use struct {
	server float64 // the server process (all its threads)
	// machine is wall-clock time × CPUs − /proc/stat's idle and iowait
	// (measured by the kernel's idle clock on a NO_HZ kernel).
	machine float64
	ticked  float64 // /proc/stat's busy columns (tick samples, machineCPU.busy)
	softirq float64 // /proc/stat's softirq column (tick samples)
	gen     float64 // the load generator's processes and the echo peer
	// offloaded is the packets icegate's kernel fast path relayed in the
	// run (icegate offload only).
	offloaded float64
}

// sampler takes the samples for a use: the server, the machine, the echo
// peer and the load generator (this process for the media load; uclient,
// a child that has ended by the second sample, for the uclient loads).
type sampler struct {
	server  int64
	machine machineCPU
	at      time.Time // when machine was read
	peer    int64
	self    int64
	child   int64
}

func sample(s *server, peerPid int) (sampler, error) {
	var sm sampler
	var err error
	if sm.server, err = s.cpu(); err != nil {
		return sm, err
	}
	if sm.machine, err = readMachineCPU(); err != nil {
		return sm, err
	}
	sm.at = time.Now()
	if sm.peer, err = benchproc.CPUTicks(peerPid); err != nil {
		return sm, fmt.Errorf("the echo peer: %w", err)
	}
	if sm.self, err = benchproc.CPUTicks(os.Getpid()); err != nil {
		return sm, err
	}
	if sm.child, err = childrenTicks(); err != nil {
		return sm, err
	}
	return sm, nil
}

// since returns the use between before and a, counting this process as the
// generator when self is set, and the children that ended in between
// (uclient) otherwise.
func (a sampler) since(before sampler, self bool) use {
	m := a.machine.sub(before.machine)
	gen := a.peer - before.peer
	if self {
		gen += a.self - before.self
	} else {
		gen += a.child - before.child
	}
	wall := a.at.Sub(before.at).Seconds() * float64(m.cpus)
	return use{server: cpuSeconds(a.server - before.server), machine: wall - cpuSeconds(m.idle),
		ticked: cpuSeconds(m.busy), softirq: cpuSeconds(m.softirq), gen: cpuSeconds(gen)}
}

// offloadShareMin is the share of the relayed packets icegate's kernel fast
// path must have relayed in a run of "icegate offload"; below it the run
// fails, as it measured the user-space path under another name. Packets
// before a channel is bound (the Allocate, the ChannelBind, uclient's first
// messages if it sends before the bind's answer) take the user-space path.
const offloadShareMin = 0.5

// checkOffload reads icegate offload's counters after a run and fails it
// when the kernel did not relay most of it.
func checkOffload(ctx context.Context, s *server, relayed float64, u *use) error {
	if s.kind != icegateOffload {
		return nil
	}
	pk, enabled, err := offloadedPackets(ctx, netip.AddrPortFrom(s.host, uint16(s.metricsPort)))
	if err != nil {
		return fmt.Errorf("reading the kernel fast path's counters: %w", err)
	}
	if !enabled {
		return fmt.Errorf("icegate_kernel_offload_enabled is 0: the kernel fast path is not attached\n%s", s.p.LogTail(15))
	}
	u.offloaded = pk
	if pk < offloadShareMin*relayed {
		return fmt.Errorf("the kernel fast path relayed %.0f of %.0f packets (icegate_kernel_offload_relayed_packets_total): less than %.0f%%, so this run measured the user-space path",
			pk, relayed, 100*offloadShareMin)
	}
	return nil
}

// machineText renders the machine side of a use for the progress lines.
func (u use) machineText(relayed float64) string {
	s := fmt.Sprintf("machine %.2f CPU-s (by tick %.2f, softirq %.2f), generator+peer %.2f CPU-s", u.machine, u.ticked, u.softirq, u.gen)
	if u.offloaded > 0 {
		s += fmt.Sprintf(", kernel-relayed %.1f%%", 100*u.offloaded/relayed)
	}
	return s
}

// drops are receive-buffer drops by socket owner during one run: the
// server, the load generator (uclient, or relaybench's own sockets for the
// media load) and the echo peer.
type drops struct{ server, uclient, peer uint64 }

func (d drops) String() string { return d.named("uclient") }

// named renders the drops with the load generator called client.
func (d drops) named(client string) string {
	return fmt.Sprintf("server %s · %s %s · peer %s",
		formatNum(float64(d.server), 0), client, formatNum(float64(d.uclient), 0), formatNum(float64(d.peer), 0))
}

func (d *drops) add(o drops) { d.server += o.server; d.uclient += o.uclient; d.peer += o.peer }

// uclientRun starts the echo peer and a server, and runs one uclient load
// between CPU samples of the server. It also counts where packets were
// dropped: the server and peer start with no drops, and uclient's sockets
// are read before relaybench stops it.
func (b *bench) uclientRun(ctx context.Context, kind string, p uclientParams) (uclientResult, use, drops, error) {
	peer, peerPort, err := b.env.startPeer(ctx)
	if err != nil {
		return uclientResult{}, use{}, drops{}, err
	}
	defer peer.Stop()
	var res uclientResult
	var u use
	var d drops
	err = b.withServer(ctx, kind, b.plan.relayPorts, func(s *server) error {
		before, err := sample(s, peer.Pid())
		if err != nil {
			return err
		}
		res, err = b.env.runUclient(ctx, s.addr(), peerPort, p, b.env.path(kind+"-uclient.log"), func(pid int) {
			d.uclient, _ = benchproc.SocketDrops(pid)
		})
		if err != nil {
			return err
		}
		after, err := sample(s, peer.Pid())
		if err != nil {
			return err
		}
		d.server, _ = benchproc.SocketDrops(s.pid())
		d.peer, _ = benchproc.SocketDrops(peer.Pid())
		u = after.since(before, false)
		if err := checkOffload(ctx, s, float64(res.relayed()), &u); err != nil {
			return err
		}
		// The kernel fast path may leave the server process nothing to do.
		if u.server <= 0 && kind != icegateOffload {
			return fmt.Errorf("%s used no measurable CPU time for %d relayed packets", kind, res.relayed())
		}
		return nil
	})
	return res, u, d, err
}

// relay: relayed packets per server CPU-second and per second, and the
// round-trip loss, under uclient's saturating load (-z 0).
func (b *bench) relay(ctx context.Context) error {
	where := newRow("Where the packets lost at saturation were dropped (full receive buffers, all relay runs)", "", textOnly, 0, 0)
	total := b.dropsByServer()
	defer func() {
		for k, d := range total {
			where.text[k] = d.String()
		}
		b.addRow(where)
	}()
	for _, p := range b.plan.relay {
		label := fmt.Sprintf("%d B, %d allocations", p.length, p.clients)
		var perMachine, perTicked, perNotGen, perSoft, kshare *row
		if b.offload {
			perMachine = b.addRow(newRow("Relayed packets per machine CPU-second (wall × CPUs − idle), "+label, "", higherBetter, 3, 0))
			perTicked = b.addRow(newRow("… per machine CPU-second by tick (busy columns of /proc/stat), "+label, "", higherBetter, 0, 0))
			perNotGen = b.addRow(newRow("… per machine CPU-second minus the generator's processes (uclient, turnutils_peer), "+label, "", higherBetter, 0, 0))
			perSoft = b.addRow(newRow("Machine softirq CPU-seconds per million relayed packets (by tick), "+label, "", lowerBetter, 0, 2))
			kshare = b.addRow(newRow("Share of the relayed packets the kernel fast path relayed, "+label, " %", higherBetter, 0, 1))
		}
		perCPU := b.addRow(newRow("Relayed packets per server CPU-second, "+label, "", higherBetter, b.serverTarget(1.2), 0))
		echoCPU := b.addRow(newRow("… counting only echoed packets (2 × received), "+label, "", higherBetter, 0, 0))
		rate := b.addRow(newRow("Relayed packets/s, "+label, "", higherBetter, 0, 0))
		loss := b.addRow(newRow("Round-trip loss at saturation (-z 0), "+label, " %", lossPoints, 0, 2))
		err := b.each(ctx, "relay "+label, func(ctx context.Context, kind string) (string, error) {
			res, u, d, err := b.uclientRun(ctx, kind, p)
			if err != nil {
				return "", err
			}
			total[kind].add(d)
			cpu := u.server
			n := float64(res.relayed())
			if b.offload {
				perMachine.add(kind, n/u.machine)
				perTicked.add(kind, n/u.ticked)
				perNotGen.add(kind, n/(u.machine-u.gen))
				perSoft.add(kind, u.softirq/n*1e6)
				if kind == icegateOffload {
					kshare.add(kind, 100*u.offloaded/n)
				}
			}
			pc := n / cpu
			if cpu > 0 {
				perCPU.add(kind, pc)
				echoCPU.add(kind, float64(2*res.recv)/cpu)
			}
			loss.add(kind, res.lostPct)
			r, ok := activeRate(res.samples, res.relayed())
			if ok {
				rate.add(kind, r)
			}
			return fmt.Sprintf("%s relayed, %.2f CPU-s: %s pkts/CPU-s, %s pkts/s, loss %.2f%% (drops: %v); %s",
				formatNum(n, 0), cpu, formatNum(pc, 0), formatNum(r, 0), res.lostPct, d, u.machineText(n)), nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// loss: round-trip loss at a fixed offered load both servers can carry.
func (b *bench) loss(ctx context.Context) error {
	p := b.plan.fixed
	offered := p.clients * 1000 / p.intervalMS
	label := fmt.Sprintf("Round-trip loss at a fixed load (%d allocations × 1 msg/%d ms = %s msgs/s offered, %d B)",
		p.clients, p.intervalMS, formatNum(float64(offered), 0), p.length)
	loss := b.addRow(newRow(label, " %", lossPoints, 1, 2))
	perCPU := b.addRow(newRow("Server CPU-seconds per million relayed packets at that load", "", lowerBetter, 0, 2))
	return b.each(ctx, "loss at fixed load", func(ctx context.Context, kind string) (string, error) {
		res, u, d, err := b.uclientRun(ctx, kind, p)
		if err != nil {
			return "", err
		}
		loss.add(kind, res.lostPct)
		perM := u.server / float64(res.relayed()) * 1e6
		perCPU.add(kind, perM)
		return fmt.Sprintf("%s relayed, loss %.3f%% (drops: %v), %.2f CPU-s per million",
			formatNum(float64(res.relayed()), 0), res.lostPct, d, perM), nil
	})
}

// binding: STUN Binding requests answered per second and per server
// CPU-second by a closed loop of Go clients.
func (b *bench) binding(ctx context.Context) error {
	clients, w := b.plan.bindingClients, b.plan.bindingWorkers
	perSec := b.addRow(newRow(fmt.Sprintf("STUN Bindings/s (%d clients, each with one request in flight)", clients), "", higherBetter, 1.2, 0))
	perCPU := b.addRow(newRow("STUN Bindings per server CPU-second", "", higherBetter, 0, 0))
	return b.each(ctx, "binding", func(ctx context.Context, kind string) (string, error) {
		var summary string
		err := b.withServer(ctx, kind, 100, func(s *server) error {
			before, err := s.cpu()
			if err != nil {
				return err
			}
			res, err := bindingLoad(ctx, s.port, clients, w, b.plan.bindingFor)
			if err != nil {
				return err
			}
			after, err := s.cpu()
			if err != nil {
				return err
			}
			if res.responses == 0 {
				return fmt.Errorf("no Binding answered (%d timeouts)", res.timeouts)
			}
			rate := float64(res.responses) / res.elapsed.Seconds()
			pc := float64(res.responses) / cpuSeconds(after-before)
			perSec.add(kind, rate)
			perCPU.add(kind, pc)
			summary = fmt.Sprintf("%s/s, %s per CPU-s, %d timeouts", formatNum(rate, 0), formatNum(pc, 0), res.timeouts)
			return nil
		})
		return summary, err
	})
}

// churn: allocate, permit, release cycles per second on a 1000-port range.
func (b *bench) churn(ctx context.Context) error {
	w := b.plan.churnWorkers
	perSec := b.addRow(newRow(fmt.Sprintf("Allocations/s with churn (allocate, permit, refresh 0; %d clients, %d-port range)", w, b.plan.relayPorts), "", higherBetter, 2, 0))
	perCPU := b.addRow(newRow("Churn cycles per server CPU-second", "", higherBetter, 0, 0))
	fails := b.addRow(newRow("Churn failures (error code × count, all rounds)", "", textOnly, 0, 0))
	total := map[string]map[string]int64{icegate: {}, coturn: {}}
	err := b.each(ctx, "churn", func(ctx context.Context, kind string) (string, error) {
		var summary string
		err := b.withServer(ctx, kind, b.plan.relayPorts, func(s *server) error {
			before, err := s.cpu()
			if err != nil {
				return err
			}
			res, err := churnLoad(ctx, s.port, w, b.plan.churnFor)
			if err != nil {
				return err
			}
			after, err := s.cpu()
			if err != nil {
				return err
			}
			rate := float64(res.cycles) / res.elapsed.Seconds()
			perSec.add(kind, rate)
			if cpu := cpuSeconds(after - before); cpu > 0 {
				perCPU.add(kind, float64(res.cycles)/cpu)
			}
			for k, v := range res.failures {
				total[kind][k] += v
			}
			summary = fmt.Sprintf("%s cycles/s, failures: %s", formatNum(rate, 0), formatFailures(res.failures))
			return nil
		})
		return summary, err
	})
	fails.text[icegate] = formatFailures(total[icegate])
	fails.text[coturn] = formatFailures(total[coturn])
	return err
}

// memory: resident memory per 1000 allocations held open.
func (b *bench) memory(ctx context.Context) error {
	n := b.plan.holdN
	perK := b.addRow(newRow(fmt.Sprintf("RSS per 1000 allocations (%d held)", n), " KiB", lowerBetter, 1, 0))
	idle := b.addRow(newRow("RSS at start (before the allocations)", " KiB", lowerBetter, 0, 0))
	return b.each(ctx, "memory", func(ctx context.Context, kind string) (string, error) {
		var summary string
		err := b.withServer(ctx, kind, b.plan.holdPorts, func(s *server) error {
			// A few cycles first, so that one-time setup (the first
			// allocation, lazily built tables) is not charged to the
			// allocations; then a pause longer than coturn holds released
			// ports (about 1 s), so the range is whole again.
			if err := warmUp(ctx, s.port, 10); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
			if err := sleepCtx(ctx, 2*time.Second); err != nil {
				return err
			}
			before, err := s.rss()
			if err != nil {
				return err
			}
			held, failures, err := holdAllocations(ctx, s.port, n, b.plan.holdWorkers)
			defer func() {
				for _, c := range held {
					c.close()
				}
			}()
			if err != nil {
				return err
			}
			if len(held) == 0 {
				return fmt.Errorf("relay ports %d-%d: no allocation succeeded: %s", s.relayMin, s.relayMax, formatFailures(failures))
			}
			if err := sleepCtx(ctx, time.Second); err != nil {
				return err
			}
			after, err := s.rss()
			if err != nil {
				return err
			}
			per := float64(after-before) / float64(len(held)) * 1000
			perK.add(kind, per)
			idle.add(kind, float64(before))
			summary = fmt.Sprintf("relay ports %d-%d: %d held (failures: %s), RSS %s → %s KiB: %s KiB per 1000",
				s.relayMin, s.relayMax, len(held), formatFailures(failures), formatNum(float64(before), 0), formatNum(float64(after), 0), formatNum(per, 0))
			return nil
		})
		return summary, err
	})
}

// media: server CPU per relayed packet, loss and round-trip time under the
// media-rate load (mediaload.go): every allocation sends one message a
// period through a channel to the echo peer, phases spread evenly.
func (b *bench) media(ctx context.Context) error {
	where := newRow("Where the packets lost at media rate were dropped (full receive buffers, all media runs)", "", textOnly, 0, 0)
	total := b.dropsByServer()
	defer func() {
		for k, d := range total {
			where.text[k] = d.named("relaybench")
		}
		b.addRow(where)
	}()
	for _, p := range b.plan.media {
		label := fmt.Sprintf("%d allocations × %d B every %d ms", p.allocations, p.size, p.period.Milliseconds())
		var machineM, tickedM, notGenM, softM, kshare *row
		if b.offload {
			machineM = b.addRow(newRow("Machine CPU-seconds per million relayed packets at media rate (wall × CPUs − idle), "+label, "", lowerBetter, 0.3, 2))
			tickedM = b.addRow(newRow("… by tick (busy columns of /proc/stat), "+label, "", lowerBetter, 0, 2))
			notGenM = b.addRow(newRow("… minus the generator's processes (relaybench, turnutils_peer), "+label, "", lowerBetter, 0, 2))
			softM = b.addRow(newRow("… softirq column alone (by tick), "+label, "", lowerBetter, 0, 2))
			kshare = b.addRow(newRow("Share of the relayed packets the kernel fast path relayed, "+label, " %", higherBetter, 0, 1))
		}
		perM := b.addRow(newRow("Server CPU-seconds per million relayed packets at media rate, "+label, "", lowerBetter, 0, 2))
		relayed := b.addRow(newRow(fmt.Sprintf("Relayed packets at media rate (%s msgs/s offered for %v), %s",
			formatNum(p.offered(), 0), p.duration, label), "", higherBetter, 0, 0))
		loss := b.addRow(newRow("Round-trip loss at media rate, "+label, " %", lossPoints, 1, 2))
		p50 := b.addRow(newRow("Round-trip time p50 at media rate, "+label, " ms", lowerBetter, 0, 3))
		p99 := b.addRow(newRow("Round-trip time p99 at media rate, "+label, " ms", lowerBetter, 0, 3))
		skipped := b.addRow(newRow("… sends the generator skipped, more than a period late (the load not fully offered), "+label, " %", lossPoints, 0, 2))
		err := b.each(ctx, "media "+label, func(ctx context.Context, kind string) (string, error) {
			res, u, d, err := b.mediaRun(ctx, kind, p)
			if err != nil {
				return "", err
			}
			total[kind].add(d)
			cpu, gen := u.server, u.gen
			n := float64(res.relayed())
			if b.offload {
				machineM.add(kind, u.machine/n*1e6)
				tickedM.add(kind, u.ticked/n*1e6)
				notGenM.add(kind, (u.machine-u.gen)/n*1e6)
				softM.add(kind, u.softirq/n*1e6)
				if kind == icegateOffload {
					kshare.add(kind, 100*u.offloaded/n)
				}
			}
			m := cpu / n * 1e6
			perM.add(kind, m)
			relayed.add(kind, float64(res.relayed()))
			loss.add(kind, res.lossPct())
			p50.add(kind, percentile(res.rtts, 0.50))
			p99.add(kind, percentile(res.rtts, 0.99))
			skipped.add(kind, res.skippedPct())
			return fmt.Sprintf("%s relayed, server %.2f CPU-s (%.0f%% of a core): %.2f CPU-s per million; loss %.3f%% (drops: %s); RTT p50 %.3f ms, p99 %.3f ms; generator+peer %.2f CPU-s, %d sends late > 1 ms, %d skipped, %d refused; %s",
				formatNum(n, 0), cpu, 100*cpu/p.duration.Seconds(), m, res.lossPct(), d.named("relaybench"),
				percentile(res.rtts, 0.50), percentile(res.rtts, 0.99), gen, res.late, res.skipped, res.sendErrs, u.machineText(n)), nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// mediaSkipLimit is the share of sends the generator may skip (for being
// more than a period late) before a run is thrown out: beyond it the load
// was not the one the table names. Below it the share is in the table: on a
// shared machine other work takes the generator's thread off the core now
// and then, and CPU per relayed packet, the figure compared, barely moves
// with a percent less offered.
const mediaSkipLimit = 0.05

// mediaRun starts the echo peer and a server, makes the allocations, and
// runs one media-rate load between CPU samples of the server (and of
// relaybench itself, the generator). Drops are read while every socket is
// still open.
func (b *bench) mediaRun(ctx context.Context, kind string, p mediaParams) (res mediaResult, u use, d drops, err error) {
	peer, peerPort, err := b.env.startPeer(ctx)
	if err != nil {
		return res, u, d, err
	}
	defer peer.Stop()
	ports := max(b.plan.relayPorts, 2*p.allocations)
	err = b.withServer(ctx, kind, ports, func(s *server) error {
		clients, failures, err := setupMedia(ctx, s.addr(), netip.AddrPortFrom(b.env.at.peer, uint16(peerPort)), p.allocations, 8)
		if err != nil {
			return fmt.Errorf("setting up %d allocations (failures: %s): %w", p.allocations, formatFailures(failures), err)
		}
		defer closeMedia(clients)
		if len(failures) > 0 {
			fmt.Fprintf(b.log, "  %s: allocations retried after: %s\n", kind, formatFailures(failures))
		}
		before, err := sample(s, peer.Pid())
		if err != nil {
			return err
		}
		res, err = runMedia(ctx, clients, p)
		if err != nil {
			return err
		}
		after, err := sample(s, peer.Pid())
		if err != nil {
			return err
		}
		d.server, _ = benchproc.SocketDrops(s.pid())
		d.uclient, _ = benchproc.SocketDrops(os.Getpid())
		d.peer, _ = benchproc.SocketDrops(peer.Pid())
		u = after.since(before, true)
		if res.sent == 0 || (u.server <= 0 && kind != icegateOffload) {
			return fmt.Errorf("%s: %d messages sent, %.2f server CPU-s: nothing to measure", kind, res.sent, u.server)
		}
		if err := checkOffload(ctx, s, float64(res.relayed()), &u); err != nil {
			return err
		}
		if res.skippedPct() > 100*mediaSkipLimit {
			return fmt.Errorf("the load generator fell behind: %d of %d sends skipped (more than a period late); the machine is too busy",
				res.skipped, res.sent+res.skipped)
		}
		return nil
	})
	return res, u, d, err
}
