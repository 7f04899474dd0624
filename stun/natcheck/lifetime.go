package natcheck

import (
	"context"
	"fmt"
	"net"
	"time"
)

// lifetime finds how long an idle binding lives (RFC 5780 §4.6): a socket X
// opens a binding and stays quiet; after a wait, another socket asks the
// server to answer to X's mapped port (RESPONSE-PORT). X hears it while the
// binding lives.
//
// A binary search with one binding at a time waits 1/2 + 3/4 + 7/8 + ... of
// the longest wait, about three times LifetimeMax. Instead, k bindings are
// opened at the start (paced), and binding i is probed at start +
// (i+1)·LifetimeMax/k: each waits in parallel with the others, so the whole
// test ends by LifetimeMax after it starts, or at the first binding found
// dead. The idle times probed step by about LifetimeMax/k.
func (c *checker) lifetime(ctx context.Context) error {
	rep := c.rep
	o := c.opts
	lt := &Lifetime{Confidence: High}
	rep.Lifetime = lt
	k := int((o.LifetimeMax + o.LifetimePrecision - 1) / o.LifetimePrecision)
	k = min(k, 32, int(o.LifetimeMax/(2*o.Interval)))
	if k < 1 {
		lt.Result = "no result"
		lt.Note = fmt.Sprintf("-lifetime-max %s leaves no room for a probe at one request per %s", o.LifetimeMax, o.Interval)
		return nil
	}
	step := o.LifetimeMax / time.Duration(k)
	probeSock, err := c.socket()
	if err != nil {
		return err
	}
	type binding struct {
		x        net.PacketConn
		port     uint16
		openSent time.Time // the first attempt of the opening request
		opened   time.Time // its answer: the binding's last refresh
	}
	bs := make([]*binding, k)
	start := time.Now()
	due := func(i int) time.Time { return start.Add(time.Duration(i+1) * step) }
	c.progress("lifetime: opening %d bindings, then probing one every %s; done by %s from now at the latest (Ctrl-C stops with what was found)",
		k, step.Round(100*time.Millisecond), o.LifetimeMax)

	var alive, dead []float64 // idle seconds: seen alive after, seen dead by
	var deadChance = 1.0      // chance that loss alone made the dead probes since the last live one
	stop := ""
	opened := 0
	finish := func(result string) error {
		c.lifetimeResult(lt, alive, dead, deadChance, result)
		return errStop
	}
	for p := 0; p < k; {
		if err := ctx.Err(); err != nil {
			return finish("interrupted")
		}
		// Open bindings as soon as the pacing allows, unless a probe is
		// due; a binding is always opened before its probe.
		if opened < k && (opened <= p || time.Now().Before(due(p))) {
			i := opened
			opened++
			x, err := c.socket()
			if err != nil {
				return err
			}
			a, err := c.transact(ctx, txn{name: fmt.Sprintf("lifetime: open binding %d", i+1), pc: x, to: c.srv})
			if err != nil {
				if ctx.Err() != nil {
					return finish("interrupted")
				}
				return err
			}
			if !a.answered || !a.mapped.IsValid() {
				// A binding that was never opened says nothing about how
				// long one lives; its probe is skipped.
				c.note("no answer with a mapped address: this binding is not timed")
				continue
			}
			bs[i] = &binding{x: x, port: a.mapped.Port(), openSent: a.firstSent, opened: a.received}
			continue
		}
		i := p
		p++
		b := bs[i]
		if b == nil {
			continue
		}
		if err := c.waitUntil(ctx, due(i), start); err != nil {
			return finish("interrupted")
		}
		idle := time.Since(b.opened)
		a, err := c.transact(ctx, txn{name: fmt.Sprintf("lifetime: answer to binding %d after %.1f s idle", i+1, idle.Seconds()),
			pc: probeSock, recv: b.x, to: c.srv, respPort: b.port, control: true})
		if err != nil {
			if ctx.Err() != nil {
				return finish("interrupted")
			}
			return err
		}
		_ = b.x.Close()
		switch {
		case a.code != 0:
			c.note(fmt.Sprintf("RESPONSE-PORT refused with error %d: the lifetime test stops", a.code))
			lt.Note = fmt.Sprintf("the server refused RESPONSE-PORT (error %d)", a.code)
			return finish("no result")
		case a.transportError != nil:
			lt.Note = "the probe could not be sent: " + describeTransportError(a.transportError)
			return finish("no result")
		case a.answered:
			// Alive at least until the first attempt's answer passed the
			// NAT, which was after the first attempt left.
			s := a.firstSent.Sub(b.opened).Seconds()
			alive = append(alive, s)
			deadChance = 1
			c.note("alive")
			c.progress("lifetime: binding %d alive after %.1f s idle (%s of at most %s)", i+1, s, since(start), o.LifetimeMax)
		default:
			// Dead by the time the last attempt's answer would have
			// reached the NAT; the last refresh was no earlier than the
			// opening request.
			s := (a.lastSent.Sub(b.openSent) + c.maxRTT).Seconds()
			dead = append(dead, s)
			deadChance *= a.chanceLost
			c.note(fmt.Sprintf("no answer (%d attempts): the binding is gone", a.attempts))
			c.progress("lifetime: binding %d gone by %.1f s idle (%s of at most %s)", i+1, s, since(start), o.LifetimeMax)
			if deadChance < lossChanceLimit {
				// Bindings idle longer are gone too.
				stop = "measured"
			}
		}
		if stop != "" {
			break
		}
	}
	if stop == "" {
		stop = "outlived every probe"
	}
	return finish(stop)
}

// lifetimeResult fills lt from the idle times seen alive and dead.
func (c *checker) lifetimeResult(lt *Lifetime, alive, dead []float64, deadChance float64, result string) {
	lo := -1.0
	for _, s := range alive {
		lo = max(lo, s)
	}
	hi := -1.0
	for _, s := range dead {
		if s > lo && (hi < 0 || s < hi) {
			hi = s
		}
	}
	maxIdle := 0.0
	for _, s := range append(append([]float64(nil), alive...), dead...) {
		maxIdle = max(maxIdle, s)
	}
	lt.MaxIdleSeconds = maxIdle
	if lo >= 0 {
		lt.AtLeastSeconds = ptr(lo)
	}
	if hi >= 0 {
		lt.BelowSeconds = ptr(hi)
	}
	switch {
	case result == "interrupted":
		lt.Result = result
		if lt.Note == "" {
			lt.Note = "stopped before the last probe; the bounds hold for what was probed"
		}
	case lt.AtLeastSeconds == nil && lt.BelowSeconds == nil:
		lt.Result = "no result"
		if lt.Note == "" {
			lt.Note = "no binding could be opened and probed"
		}
	case lt.BelowSeconds == nil:
		lt.Result = "outlived every probe"
		lt.Note = "the bindings outlived every wait: they live at least this long"
	default:
		lt.Result = "measured"
	}
	if lt.BelowSeconds != nil && deadChance >= lossChanceLimit {
		lt.Confidence = Low
		c.rep.Confidence = Low
		c.rep.Caveats = append(c.rep.Caveats, fmt.Sprintf(
			"lifetime: the upper bound %.1f s rests on probes without an answer that loss alone explains %s of the time: it may be too low",
			*lt.BelowSeconds, percent(deadChance)))
	}
}

// waitUntil sleeps until t, telling Options.Progress every 15 s how long it
// has waited.
func (c *checker) waitUntil(ctx context.Context, t, start time.Time) error {
	const tick = 15 * time.Second
	for {
		d := time.Until(t)
		if d <= 0 {
			return ctx.Err()
		}
		if d > tick {
			d = tick
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
		if time.Until(t) > 0 {
			c.progress("lifetime: waiting, %s of at most %s", since(start), c.opts.LifetimeMax)
		}
	}
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Second) }

func (c *checker) progress(format string, args ...any) {
	if c.opts.Progress != nil {
		fmt.Fprintf(c.opts.Progress, "natcheck: "+format+"\n", args...)
	}
}
