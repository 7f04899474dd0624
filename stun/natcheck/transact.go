package natcheck

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"syscall"
	"time"

	pionstun "github.com/pion/stun/v4"

	"icegate/stun"
)

// lossChanceLimit is how unlikely it must be that packet loss alone explains
// a run of missing answers before natcheck treats the absence as a fact (a
// filter, a dead binding, no hairpinning). Above it the verdict is still
// given, with confidence "low" and a caveat that says why.
const lossChanceLimit = 0.001

// lossModel counts the attempts of transactions whose answer did come
// (eventually, or to a control): their missing answers are packet loss,
// not filtering. It is the evidence for how much a missing answer means.
type lossModel struct {
	sent, lost int
}

// chanceAllLost is the probability that n attempts in a row all go
// unanswered by loss alone, given the losses seen so far: the predictive
// probability under a Beta(lost+½, answered+½) belief about the per-attempt
// loss rate (Jeffreys' prior), Π_{i<n} (α+i)/(α+β+i). It is larger than
// the point estimate's p^n while little has been seen, so a few lucky
// answers early on do not make natcheck sure too soon.
func (m lossModel) chanceAllLost(n int) float64 {
	a := float64(m.lost) + 0.5
	b := float64(m.sent-m.lost) + 0.5
	p := 1.0
	for i := range n {
		p *= (a + float64(i)) / (a + b + float64(i))
	}
	return p
}

// txn is one STUN transaction: a Binding request sent up to an adaptive
// number of times with the same transaction ID (RFC 8489 §6.2.1: a
// retransmission is the same request).
type txn struct {
	name     string
	pc       net.PacketConn // sends
	recv     net.PacketConn // receives; nil for pc
	to       netip.AddrPort
	change   byte
	respPort uint16
	// fixed, when positive, is the number of attempts, not adapted: for
	// the first request, before anything is known about the path.
	fixed int
	// control sends a plain request from pc to the primary address after
	// each unanswered attempt: its answer (or not) says whether the path
	// works at that moment and adds to the loss model. Used where the
	// absence of an answer decides a verdict.
	control bool
}

// answer is a decoded response and how it came.
type answer struct {
	msg            *pionstun.Message
	from           netip.AddrPort
	mapped, plain  netip.AddrPort // XOR-MAPPED-ADDRESS, MAPPED-ADDRESS
	other, origin  netip.AddrPort
	code           int
	rtt            time.Duration
	answered       bool
	transportError error
	// attempts is how often the request was sent.
	attempts int
	// firstSent and lastSent are when the first and last attempt left.
	firstSent, lastSent time.Time
	// received is when the answer arrived.
	received time.Time
	// chanceLost, for an unanswered transaction, is the chance that loss
	// alone explains it (chanceAllLost of its attempts).
	chanceLost float64
}

// keep returns a with the attempt counts and times of prev, the unanswered
// attempts that came before it.
func (a answer) keep(prev answer) answer {
	a.attempts, a.firstSent, a.lastSent = prev.attempts, prev.firstSent, prev.lastSent
	return a
}

// sure says whether an unanswered transaction's absence is a fact.
func (a answer) sure() bool { return a.chanceLost < lossChanceLimit }

func buildRequest(change byte, respPort uint16) (*pionstun.Message, string, error) {
	setters := []pionstun.Setter{pionstun.TransactionID, pionstun.BindingRequest, pionstun.NewSoftware("icegate natcheck")}
	label := ""
	switch change {
	case stun.ChangeIP:
		label = "ip"
	case stun.ChangePort:
		label = "port"
	case stun.ChangeIP | stun.ChangePort:
		label = "ip+port"
	}
	if change != 0 {
		setters = append(setters, pionstun.RawAttribute{Type: pionstun.AttrChangeRequest, Value: []byte{0, 0, 0, change}})
	}
	if respPort != 0 {
		setters = append(setters, pionstun.RawAttribute{Type: pionstun.AttrResponsePort, Value: []byte{byte(respPort >> 8), byte(respPort), 0, 0}})
	}
	setters = append(setters, pionstun.Fingerprint)
	m, err := pionstun.Build(setters...)
	return m, label, err
}

// transact runs x and records its evidence as a Test. How many attempts:
// x.fixed if set; otherwise at least Options.Attempts, and while no answer
// comes, more (up to Options.MaxAttempts) until the chance that loss alone
// took every answer falls under lossChanceLimit. On a clean path that is
// two to four attempts; at 20% loss each way, up to ten.
func (c *checker) transact(ctx context.Context, x txn) (answer, error) {
	t := Test{Name: x.name, Local: x.pc.LocalAddr().String(), To: x.to.String(), ResponsePort: int(x.respPort)}
	req, label, err := buildRequest(x.change, x.respPort)
	if err != nil {
		return answer{}, err
	}
	t.Change = label
	recv := x.recv
	if recv == nil {
		recv = x.pc
	}
	var a answer
	for {
		if err := c.pace(ctx); err != nil {
			return answer{}, err
		}
		sent := time.Now()
		if a.attempts == 0 {
			a.firstSent = sent
		}
		a.lastSent = sent
		a.attempts++
		c.rep.Requests++
		if a.attempts > 1 {
			c.rep.Retries++
		}
		if _, err := x.pc.WriteTo(req.Raw, net.UDPAddrFromAddrPort(x.to)); err != nil {
			a.transportError = err
			break
		}
		got, err := c.await(ctx, recv, sent.Add(c.opts.Timeout), req.TransactionID)
		if err != nil {
			if ctx.Err() != nil {
				return answer{}, ctx.Err()
			}
			a.transportError = err
			break
		}
		if got.answered {
			a = got.keep(a)
			a.rtt = a.received.Sub(sent)
			break
		}
		if x.control {
			late, err := c.controlProbe(ctx, x.pc, recv, req.TransactionID, &t)
			if err != nil {
				return answer{}, err
			}
			if late.answered {
				a = late.keep(a)
				a.rtt = a.received.Sub(a.lastSent)
				break
			}
		}
		if x.fixed > 0 {
			if a.attempts >= x.fixed {
				break
			}
			continue
		}
		if a.attempts < c.opts.Attempts {
			continue
		}
		if a.attempts >= c.opts.MaxAttempts || c.loss.chanceAllLost(a.attempts) < lossChanceLimit {
			break
		}
	}
	t.Attempts = a.attempts
	if a.answered {
		// Its missing answers were loss: evidence for the model.
		c.loss.sent += a.attempts
		c.loss.lost += a.attempts - 1
		if a.rtt > c.maxRTT {
			c.maxRTT = a.rtt
		}
		t.Answered = true
		t.From = a.from.String()
		t.RTTMillis = a.rtt.Milliseconds()
		if a.mapped.IsValid() {
			t.Mapped = a.mapped.String()
		}
		if a.other.IsValid() {
			t.OtherAddress = a.other.String()
		}
		if a.origin.IsValid() {
			t.ResponseOrigin = a.origin.String()
		}
		if a.code != 0 {
			t.Error = fmt.Sprintf("error response %d", a.code)
		}
	} else if a.transportError != nil {
		t.Error = describeTransportError(a.transportError)
	} else {
		a.chanceLost = c.loss.chanceAllLost(a.attempts)
		cl := a.chanceLost
		t.ChanceLost = &cl
	}
	c.rep.Tests = append(c.rep.Tests, t)
	return a, nil
}

// controlProbe sends one plain Binding request from pc to the primary
// address and waits for its answer, watching for a late answer to the
// transaction under test (testID) meanwhile: on pc when that is where it
// comes, else with a quick look at recv afterwards.
func (c *checker) controlProbe(ctx context.Context, pc, recv net.PacketConn, testID [pionstun.TransactionIDSize]byte, t *Test) (answer, error) {
	req, _, err := buildRequest(0, 0)
	if err != nil {
		return answer{}, err
	}
	if err := c.pace(ctx); err != nil {
		return answer{}, err
	}
	sent := time.Now()
	c.rep.Requests++
	t.ControlsSent++
	c.loss.sent++
	if _, err := pc.WriteTo(req.Raw, net.UDPAddrFromAddrPort(c.srv)); err != nil {
		c.loss.lost++
		return answer{}, nil //nolint:nilerr // a failed control is a lost one
	}
	deadline := sent.Add(c.opts.Timeout)
	var late answer
	for {
		ids := [][pionstun.TransactionIDSize]byte{req.TransactionID}
		if recv == pc {
			ids = append(ids, testID)
		}
		got, err := c.await(ctx, pc, deadline, ids...)
		if err != nil {
			if ctx.Err() != nil {
				return answer{}, ctx.Err()
			}
			c.loss.lost++
			return late, nil
		}
		if !got.answered {
			c.loss.lost++
			break
		}
		if got.msg.TransactionID == testID {
			late = got
			continue // still wait for the control's own answer
		}
		t.ControlsAnswered++
		break
	}
	if !late.answered && recv != pc {
		// The test's answer goes to another socket; it may have come
		// while this control waited.
		got, err := c.await(ctx, recv, time.Now().Add(time.Millisecond), testID)
		if err == nil && got.answered {
			late = got
		}
	}
	return late, nil
}

// await reads conn until deadline for a STUN message with one of ids. A
// timeout is an unanswered result, not an error; any other read error
// (ICMP port unreachable surfacing as ECONNREFUSED, on systems that report
// it on unconnected sockets too) is returned.
func (c *checker) await(ctx context.Context, conn net.PacketConn, deadline time.Time, ids ...[pionstun.TransactionIDSize]byte) (answer, error) {
	buf := c.buf[:]
	for {
		if err := ctx.Err(); err != nil {
			return answer{}, err
		}
		_ = conn.SetReadDeadline(deadline)
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return answer{}, nil
			}
			return answer{}, err
		}
		m := &pionstun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() != nil {
			continue
		}
		for _, id := range ids {
			if m.TransactionID == id {
				a := decodeAnswer(m, from)
				a.received = time.Now()
				return a, nil
			}
		}
	}
}

// refused says whether err is what an ICMP port unreachable becomes on a
// socket: ECONNREFUSED (Linux, BSDs, on a connected socket) or ECONNRESET
// (Windows reports it so, also on unconnected sockets).
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// unreachable says whether err reports ICMP host or network unreachable.
func unreachable(err error) bool {
	return errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

func describeTransportError(err error) string {
	switch {
	case refused(err):
		return "ICMP port unreachable (connection refused): nothing listens on that port: " + err.Error()
	case unreachable(err):
		return "ICMP host or network unreachable: " + err.Error()
	}
	return err.Error()
}

// reach runs when the first request got no answer at all: it sends the same
// request from a connected socket, which is where the kernel reports an
// ICMP port unreachable (as ECONNREFUSED, on the next send or read; an
// unconnected socket never hears of it on Linux). It tells a server that is
// not listening from a path that drops UDP.
func (c *checker) reach(ctx context.Context, attempts int) (answer, error) {
	conn, err := c.opts.Net.Dial("udp", c.srv.String())
	if err != nil {
		return answer{}, fmt.Errorf("natcheck: open a connected socket to %s: %w", c.srv, err)
	}
	defer conn.Close()
	t := Test{Name: "reach (connected socket)", Local: conn.LocalAddr().String(), To: c.srv.String()}
	req, _, err := buildRequest(0, 0)
	if err != nil {
		return answer{}, err
	}
	var a answer
	buf := c.buf[:]
	for a.attempts < attempts && !a.answered && a.transportError == nil {
		if err := c.pace(ctx); err != nil {
			return answer{}, err
		}
		a.attempts++
		c.rep.Requests++
		if a.attempts > 1 {
			c.rep.Retries++
		}
		sent := time.Now()
		if _, err := conn.Write(req.Raw); err != nil {
			a.transportError = err
			break
		}
		for {
			if err := ctx.Err(); err != nil {
				return answer{}, err
			}
			_ = conn.SetReadDeadline(sent.Add(c.opts.Timeout))
			n, err := conn.Read(buf)
			if err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					a.transportError = err
				}
				break
			}
			m := &pionstun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if m.Decode() != nil || m.TransactionID != req.TransactionID {
				continue
			}
			a = decodeAnswer(m, conn.RemoteAddr()).keep(a)
			a.rtt = time.Since(sent)
			break
		}
	}
	t.Attempts = a.attempts
	switch {
	case a.answered:
		t.Answered, t.From, t.RTTMillis = true, a.from.String(), a.rtt.Milliseconds()
		if a.mapped.IsValid() {
			t.Mapped = a.mapped.String()
		}
	case a.transportError != nil:
		t.Error = describeTransportError(a.transportError)
	}
	c.rep.Tests = append(c.rep.Tests, t)
	return a, nil
}

func decodeAnswer(m *pionstun.Message, from net.Addr) answer {
	a := answer{msg: m, answered: true}
	a.from, _ = netip.ParseAddrPort(from.String())
	a.from = netip.AddrPortFrom(a.from.Addr().Unmap(), a.from.Port())
	if m.Type.Class == pionstun.ClassErrorResponse {
		var ec pionstun.ErrorCodeAttribute
		if ec.GetFrom(m) == nil {
			a.code = int(ec.Code)
		} else {
			a.code = 500
		}
		return a
	}
	var xa pionstun.XORMappedAddress
	if xa.GetFrom(m) == nil {
		a.mapped = toAP(xa.IP, xa.Port)
	}
	get := func(t pionstun.AttrType) netip.AddrPort {
		var ma pionstun.MappedAddress
		if ma.GetFromAs(m, t) != nil {
			return netip.AddrPort{}
		}
		return toAP(ma.IP, ma.Port)
	}
	a.plain = get(pionstun.AttrMappedAddress)
	a.other = get(pionstun.AttrOtherAddress)
	a.origin = get(pionstun.AttrResponseOrigin)
	if !a.mapped.IsValid() {
		a.mapped = a.plain
	}
	return a
}

func toAP(ip net.IP, port int) netip.AddrPort {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// doubt records that a verdict rests on an absence that loss could explain
// (a.chanceLost at or above lossChanceLimit): the report's confidence is
// then low and a caveat says what and why.
func (c *checker) doubt(a answer, test, verdict string) {
	if a.answered || a.transportError != nil || a.sure() {
		return
	}
	c.rep.Confidence = Low
	c.rep.Caveats = append(c.rep.Caveats, fmt.Sprintf(
		"%s: no answer to %d requests, but with the loss seen (%d of %d answers missing) loss alone does that %s of the time "+
			"(natcheck wants under %s); %s rests on it and may be wrong: run again, or raise -max-attempts",
		test, a.attempts, c.loss.lost, c.loss.sent, percent(a.chanceLost), percent(lossChanceLimit), verdict))
}

func percent(p float64) string {
	switch {
	case p >= 0.1:
		return fmt.Sprintf("%.0f%%", p*100)
	case p >= 0.001:
		return fmt.Sprintf("%.2g%%", p*100)
	}
	return fmt.Sprintf("%.2g%%", math.Max(p, 0)*100)
}
