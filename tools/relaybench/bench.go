package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"icegate/internal/benchproc"
)

// bench runs the measurements and collects the table's rows.
type bench struct {
	env      *env
	plan     plan
	rounds   int
	log      io.Writer
	rows     []*row
	warnings []string // icegate's warn/error log lines, all runs
	failed   int      // runs that failed and are missing from the table
}

func (b *bench) addRow(r *row) *row {
	b.rows = append(b.rows, r)
	return r
}

// each runs fn for every round and server, alternating icegate and coturn.
// A failed run is reported and skipped; Ctrl-C ends everything.
func (b *bench) each(ctx context.Context, what string, fn func(ctx context.Context, server string) (string, error)) error {
	for round := 1; round <= b.rounds; round++ {
		for _, s := range servers {
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
func (b *bench) uclientRun(ctx context.Context, kind string, p uclientParams) (uclientResult, float64, drops, error) {
	peer, peerPort, err := b.env.startPeer(ctx)
	if err != nil {
		return uclientResult{}, 0, drops{}, err
	}
	defer peer.Stop()
	var res uclientResult
	var cpu float64
	var d drops
	err = b.withServer(ctx, kind, b.plan.relayPorts, func(s *server) error {
		before, err := s.cpu()
		if err != nil {
			return err
		}
		res, err = b.env.runUclient(ctx, s.port, peerPort, p, b.env.path(kind+"-uclient.log"), func(pid int) {
			d.uclient, _ = benchproc.SocketDrops(pid)
		})
		if err != nil {
			return err
		}
		after, err := s.cpu()
		if err != nil {
			return err
		}
		d.server, _ = benchproc.SocketDrops(s.pid())
		d.peer, _ = benchproc.SocketDrops(peer.Pid())
		cpu = cpuSeconds(after - before)
		if cpu <= 0 {
			return fmt.Errorf("%s used no measurable CPU time for %d relayed packets", kind, res.relayed())
		}
		return nil
	})
	return res, cpu, d, err
}

// relay: relayed packets per server CPU-second and per second, and the
// round-trip loss, under uclient's saturating load (-z 0).
func (b *bench) relay(ctx context.Context) error {
	where := newRow("Where the packets lost at saturation were dropped (full receive buffers, all relay runs)", "", textOnly, 0, 0)
	total := map[string]*drops{icegate: {}, coturn: {}}
	defer func() {
		where.text[icegate], where.text[coturn] = total[icegate].String(), total[coturn].String()
		b.addRow(where)
	}()
	for _, p := range b.plan.relay {
		label := fmt.Sprintf("%d B, %d allocations", p.length, p.clients)
		perCPU := b.addRow(newRow("Relayed packets per server CPU-second, "+label, "", higherBetter, 1.2, 0))
		echoCPU := b.addRow(newRow("… counting only echoed packets (2 × received), "+label, "", higherBetter, 0, 0))
		rate := b.addRow(newRow("Relayed packets/s, "+label, "", higherBetter, 0, 0))
		loss := b.addRow(newRow("Round-trip loss at saturation (-z 0), "+label, " %", lossPoints, 0, 2))
		err := b.each(ctx, "relay "+label, func(ctx context.Context, kind string) (string, error) {
			res, cpu, d, err := b.uclientRun(ctx, kind, p)
			if err != nil {
				return "", err
			}
			total[kind].add(d)
			pc := float64(res.relayed()) / cpu
			perCPU.add(kind, pc)
			echoCPU.add(kind, float64(2*res.recv)/cpu)
			loss.add(kind, res.lostPct)
			r, ok := activeRate(res.samples, res.relayed())
			if ok {
				rate.add(kind, r)
			}
			return fmt.Sprintf("%s relayed, %.2f CPU-s: %s pkts/CPU-s, %s pkts/s, loss %.2f%% (drops: %v)",
				formatNum(float64(res.relayed()), 0), cpu, formatNum(pc, 0), formatNum(r, 0), res.lostPct, d), nil
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
		res, cpu, d, err := b.uclientRun(ctx, kind, p)
		if err != nil {
			return "", err
		}
		loss.add(kind, res.lostPct)
		perM := cpu / float64(res.relayed()) * 1e6
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
	total := map[string]*drops{icegate: {}, coturn: {}}
	defer func() {
		where.text[icegate], where.text[coturn] = total[icegate].named("relaybench"), total[coturn].named("relaybench")
		b.addRow(where)
	}()
	for _, p := range b.plan.media {
		label := fmt.Sprintf("%d allocations × %d B every %d ms", p.allocations, p.size, p.period.Milliseconds())
		perM := b.addRow(newRow("Server CPU-seconds per million relayed packets at media rate, "+label, "", lowerBetter, 0, 2))
		relayed := b.addRow(newRow(fmt.Sprintf("Relayed packets at media rate (%s msgs/s offered for %v), %s",
			formatNum(p.offered(), 0), p.duration, label), "", higherBetter, 0, 0))
		loss := b.addRow(newRow("Round-trip loss at media rate, "+label, " %", lossPoints, 1, 2))
		p50 := b.addRow(newRow("Round-trip time p50 at media rate, "+label, " ms", lowerBetter, 0, 3))
		p99 := b.addRow(newRow("Round-trip time p99 at media rate, "+label, " ms", lowerBetter, 0, 3))
		skipped := b.addRow(newRow("… sends the generator skipped, more than a period late (the load not fully offered), "+label, " %", lossPoints, 0, 2))
		err := b.each(ctx, "media "+label, func(ctx context.Context, kind string) (string, error) {
			res, cpu, gen, d, err := b.mediaRun(ctx, kind, p)
			if err != nil {
				return "", err
			}
			total[kind].add(d)
			m := cpu / float64(res.relayed()) * 1e6
			perM.add(kind, m)
			relayed.add(kind, float64(res.relayed()))
			loss.add(kind, res.lossPct())
			p50.add(kind, percentile(res.rtts, 0.50))
			p99.add(kind, percentile(res.rtts, 0.99))
			skipped.add(kind, res.skippedPct())
			return fmt.Sprintf("%s relayed, server %.2f CPU-s (%.0f%% of a core): %.2f CPU-s per million; loss %.3f%% (drops: %s); RTT p50 %.3f ms, p99 %.3f ms; generator %.2f CPU-s, %d sends late > 1 ms, %d skipped, %d refused",
				formatNum(float64(res.relayed()), 0), cpu, 100*cpu/p.duration.Seconds(), m, res.lossPct(), d.named("relaybench"),
				percentile(res.rtts, 0.50), percentile(res.rtts, 0.99), gen, res.late, res.skipped, res.sendErrs), nil
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
func (b *bench) mediaRun(ctx context.Context, kind string, p mediaParams) (res mediaResult, cpu, gen float64, d drops, err error) {
	peer, peerPort, err := b.env.startPeer(ctx)
	if err != nil {
		return res, 0, 0, d, err
	}
	defer peer.Stop()
	ports := max(b.plan.relayPorts, 2*p.allocations)
	err = b.withServer(ctx, kind, ports, func(s *server) error {
		clients, failures, err := setupMedia(ctx, s.port, peerPort, p.allocations, 8)
		if err != nil {
			return fmt.Errorf("setting up %d allocations (failures: %s): %w", p.allocations, formatFailures(failures), err)
		}
		defer closeMedia(clients)
		if len(failures) > 0 {
			fmt.Fprintf(b.log, "  %s: allocations retried after: %s\n", kind, formatFailures(failures))
		}
		self := os.Getpid()
		before, err := s.cpu()
		if err != nil {
			return err
		}
		genBefore, _ := benchproc.CPUTicks(self)
		res, err = runMedia(ctx, clients, p)
		if err != nil {
			return err
		}
		after, err := s.cpu()
		if err != nil {
			return err
		}
		genAfter, _ := benchproc.CPUTicks(self)
		d.server, _ = benchproc.SocketDrops(s.pid())
		d.uclient, _ = benchproc.SocketDrops(self)
		d.peer, _ = benchproc.SocketDrops(peer.Pid())
		cpu, gen = cpuSeconds(after-before), cpuSeconds(genAfter-genBefore)
		if res.sent == 0 || cpu <= 0 {
			return fmt.Errorf("%s: %d messages sent, %.2f server CPU-s: nothing to measure", kind, res.sent, cpu)
		}
		if res.skippedPct() > 100*mediaSkipLimit {
			return fmt.Errorf("the load generator fell behind: %d of %d sends skipped (more than a period late); the machine is too busy",
				res.skipped, res.sent+res.skipped)
		}
		return nil
	})
	return res, cpu, gen, d, err
}
