package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	turnutils "icegate/internal/coturn" // coturn names the server kind here
)

// uclientParams is one turnutils_uclient load: clients allocations (-m),
// each sending messages (-n) of length bytes (-l) every intervalMS ms (-z;
// 0 sends as fast as uclient can, which is 50 messages per client per 1 ms
// timer tick).
type uclientParams struct {
	clients, length, messages, intervalMS int
}

func (p uclientParams) args(server netip.AddrPort, peer netip.Addr, peerPort int) []string {
	// -c: no RTCP allocations, so each client sends exactly -n messages.
	// -X: ask for an IPv4 relay explicitly. No -g: uclient aborts on the 420
	// pion legitimately answers DONT-FRAGMENT with.
	return []string{
		"-c", "-X", "-u", benchUser, "-w", benchPass,
		"-e", peer.String(), "-r", strconv.Itoa(peerPort),
		"-m", strconv.Itoa(p.clients), "-l", strconv.Itoa(p.length),
		"-n", strconv.Itoa(p.messages), "-z", strconv.Itoa(p.intervalMS),
		"-p", strconv.Itoa(int(server.Port())), server.Addr().String(),
	}
}

// uclientResult is what one uclient run reported.
type uclientResult struct {
	sent, recv int     // messages sent to the peer, echoes received back
	lostPct    float64 // round-trip loss, percent of sent
	summary    bool    // uclient printed its own final summary
	samples    []progress
}

// relayed counts relayed packets as issue #5 does: each message sent went
// client → peer through the relay once, each echo received came peer →
// client once. A message lost on the way still counts once, though the
// server may never have read it (it may have been dropped at the server's
// socket), so this is an upper bound; 2 × recv is the lower one.
func (r uclientResult) relayed() int { return r.sent + r.recv }

// progress is one of uclient's once-a-second counter lines, stamped with the
// time relaybench read it (uclient's own stamps are whole seconds).
type progress struct {
	at         time.Duration
	sent, recv int
}

// collect folds a run's lines into a result. Without uclient's own summary
// (relaybench stopped it early, see runUclient) the last progress line
// gives the totals and the loss is computed from them the way uclient does.
func collect(lines []timedLine) (uclientResult, error) {
	var r uclientResult
	var haveTotals, haveLost bool
	for _, l := range lines {
		p := turnutils.ParseUclientLine(l.text)
		switch p.Kind {
		case turnutils.ProgressLine:
			r.samples = append(r.samples, progress{at: l.at, sent: p.Sent, recv: p.Recv})
		case turnutils.TotalsLine:
			r.sent, r.recv, haveTotals = p.Sent, p.Recv, true
			// A run without loss ends at once, so the last progress line
			// may be well short of the totals: they are a sample too.
			r.samples = append(r.samples, progress{at: l.at, sent: p.Sent, recv: p.Recv})
		case turnutils.LostLine:
			r.lostPct, haveLost = p.LostPct, true
		}
	}
	r.summary = haveTotals && haveLost
	if !haveTotals {
		if len(r.samples) == 0 {
			return r, fmt.Errorf("no tot_send_msgs= line in uclient's output")
		}
		last := r.samples[len(r.samples)-1]
		r.sent, r.recv = last.sent, last.recv
	}
	if !haveLost {
		r.lostPct = lossPct(r.sent, r.recv)
	}
	return r, nil
}

func lossPct(sent, recv int) float64 {
	if sent <= 0 {
		return 0
	}
	lost := sent - recv
	if lost < 0 {
		lost = 0
	}
	return 100 * float64(lost) / float64(sent)
}

// activeRate is relayed packets per second while traffic flowed: uclient
// staggers its clients' starts over 1-6 s and idles up to 10 s at the end
// when anything was lost, so its run time says little. The rate is taken
// between the moments 5% and 95% of the final count had been relayed,
// interpolated linearly between the once-a-second progress samples.
func activeRate(samples []progress, total int) (float64, bool) {
	if total <= 0 || len(samples) == 0 {
		return 0, false
	}
	lo, hi := 0.05*float64(total), 0.95*float64(total)
	// Counting starts from zero at time zero in case uclient printed no
	// progress line before the traffic began.
	pts := append([]progress{{}}, samples...)
	t5, ok5 := crossing(pts, lo)
	t95, ok95 := crossing(pts, hi)
	if !ok5 || !ok95 || t95 <= t5 {
		return 0, false
	}
	return (hi - lo) / (t95 - t5).Seconds(), true
}

// crossing returns when the relayed count (sent+recv) first reached v.
func crossing(pts []progress, v float64) (time.Duration, bool) {
	for i := 1; i < len(pts); i++ {
		a, b := pts[i-1], pts[i]
		ca, cb := float64(a.sent+a.recv), float64(b.sent+b.recv)
		if cb >= v && cb > ca {
			if ca >= v {
				return a.at, true
			}
			f := (v - ca) / (cb - ca)
			return a.at + time.Duration(f*float64(b.at-a.at)), true
		}
	}
	return 0, false
}

type timedLine struct {
	at   time.Duration
	text string
}

const (
	// uclientTimeout bounds one run (connect, stagger, traffic, tail).
	uclientTimeout = 3 * time.Minute
	// quietStop ends a run whose every message was sent and whose counters
	// have not moved for this long: what is missing by then is lost, and
	// uclient would only idle 10 s more (STOPPING_TIME) before its summary.
	quietStop = 2500 * time.Millisecond
	// stallStop ends a run whose counters have not moved for this long
	// although messages are still to be sent: uclient is stuck.
	stallStop = 30 * time.Second
)

// runUclient runs turnutils_uclient to the end (or to quietStop) and returns
// its counters. Its output is kept in logPath.
//
// Before it stops a quiet uclient, it calls atQuiet with uclient's pid, so
// that the caller can read uclient's sockets while they are still open.
func (e *env) runUclient(ctx context.Context, server netip.AddrPort, peerPort int, p uclientParams, logPath string, atQuiet func(pid int)) (uclientResult, error) {
	ctx, cancel := context.WithTimeout(ctx, uclientTimeout)
	defer cancel()
	logFile, err := os.Create(logPath)
	if err != nil {
		return uclientResult{}, err
	}
	defer logFile.Close()

	pr, pw, err := os.Pipe()
	if err != nil {
		return uclientResult{}, err
	}
	uc, err := e.procs.Start("turnutils_uclient", logPath, pw, e.bins["turnutils_uclient"], p.args(server, e.at.peer, peerPort)...)
	_ = pw.Close() // the child holds the write end now
	if err != nil {
		_ = pr.Close()
		return uclientResult{}, err
	}
	defer uc.Stop()

	start := time.Now()
	lines := make(chan timedLine, 256)
	go func() {
		defer close(lines)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			lines <- timedLine{at: time.Since(start), text: sc.Text()}
		}
		// Drain whatever is left so the child never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, pr)
	}()

	want := p.clients * p.messages
	var got []timedLine
	var last progress
	lastChange := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	stopped := ""
loop:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break loop
			}
			fmt.Fprintln(logFile, l.text)
			got = append(got, l)
			if pl := turnutils.ParseUclientLine(l.text); pl.Kind == turnutils.ProgressLine {
				if pl.Sent != last.sent || pl.Recv != last.recv {
					last = progress{sent: pl.Sent, recv: pl.Recv}
					lastChange = time.Now()
				}
			}
		case <-tick.C:
			quiet := time.Since(lastChange)
			switch {
			case last.sent >= want && quiet > quietStop && stopped == "":
				stopped = "quiet"
				if atQuiet != nil {
					atQuiet(uc.Pid())
				}
				uc.Stop() // the reader sees EOF next
			case last.sent > 0 && quiet > stallStop && stopped == "":
				stopped = "stalled"
				uc.Stop()
			}
		case <-ctx.Done():
			uc.Stop()
			for l := range lines {
				got = append(got, l)
			}
			if ctx.Err() == context.DeadlineExceeded {
				return uclientResult{}, fmt.Errorf("turnutils_uclient did not finish within %v (stopped); output in %s", uclientTimeout, logPath)
			}
			return uclientResult{}, ctx.Err()
		}
	}
	<-uc.Done()
	if stopped == "stalled" {
		return uclientResult{}, fmt.Errorf("turnutils_uclient stalled at %d of %d messages sent; output in %s", last.sent, want, logPath)
	}
	if stopped == "" && uc.Err() != nil {
		return uclientResult{}, fmt.Errorf("turnutils_uclient %s: %v\n%s", strings.Join(p.args(server, e.at.peer, peerPort), " "), uc.Err(), tailLines(got, 10))
	}
	res, err := collect(got)
	if err != nil {
		return res, fmt.Errorf("%w; output in %s:\n%s", err, logPath, tailLines(got, 10))
	}
	if res.sent < want {
		return res, fmt.Errorf("turnutils_uclient sent %d of %d messages; output in %s:\n%s", res.sent, want, logPath, tailLines(got, 10))
	}
	return res, nil
}

func tailLines(lines []timedLine, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	return b.String()
}
