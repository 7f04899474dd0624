// Package natcheck is the client side of RFC 5780 NAT behaviour discovery:
// it finds out what NAT (or firewall) lies between this host and a STUN
// server that has an alternate address, and says in RFC 4787 terms, in the
// classic names and in what it means for WebRTC, with the evidence of each
// test. `icegate natcheck` prints its Report.
//
// The tests are those of RFC 5780 §4: mapping tests I, II and III on one
// socket (§4.3), filtering tests on fresh sockets so that earlier tests
// leave no permission behind (§4.4), hairpinning (§4.5), and optionally the
// binding lifetime with RESPONSE-PORT (§4.6). A server without
// OTHER-ADDRESS, or whose OTHER-ADDRESS does not differ in both IP and
// port, is reported as such: the behaviour is then unknown, not guessed.
//
// Several verdicts rest on an answer that does not come (a filter, a dead
// binding, no hairpinning), and a lost packet looks the same. So natcheck
// keeps a model of the loss it has seen (answers that came only on a
// retry, and control requests sent between the attempts of such a test)
// and retries a missing answer until loss alone is an unlikely explanation
// (under 1 in 1000), up to Options.MaxAttempts. A verdict it could not make
// that sure of is given with Confidence "low" and a caveat that says why.
//
// Every request is paced (Options.Interval, under 10 a second) and every
// wait is short (Options.Timeout), so UDP blocked is a verdict within
// seconds, not a hang. A first request that gets no answer is repeated on a
// connected socket, where the kernel reports an ICMP port unreachable: a
// server not listening on that port is told from a network that drops UDP.
package natcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"icegate/stun"
)

// Network opens sockets: the host's (System) or a virtual one in tests
// (pion/transport's vnet.Net satisfies it).
type Network interface {
	ListenPacket(network, address string) (net.PacketConn, error)
	Dial(network, address string) (net.Conn, error)
	ResolveUDPAddr(network, address string) (*net.UDPAddr, error)
}

type system struct{}

func (system) ListenPacket(n, a string) (net.PacketConn, error) { return net.ListenPacket(n, a) }
func (system) Dial(n, a string) (net.Conn, error)               { return net.Dial(n, a) }
func (system) ResolveUDPAddr(n, a string) (*net.UDPAddr, error) { return net.ResolveUDPAddr(n, a) }

// System is the host's network.
var System Network = system{}

// Options configure a Run. Zero values mean the defaults.
type Options struct {
	// Server is the STUN server's host:port.
	Server string
	// Net opens sockets; default System.
	Net Network
	// LocalIP is the address to send from; default the one the host's
	// routing picks for Server.
	LocalIP netip.Addr
	// Timeout is how long one attempt waits for an answer. Default 500ms.
	Timeout time.Duration
	// Attempts is the least number of times a request is sent before its
	// answer counts as missing. Default 2. While answers go missing, a
	// test whose absence decides a verdict is sent more often, up to
	// MaxAttempts, until loss alone is an unlikely explanation.
	Attempts int
	// MaxAttempts is the most times one request is sent. Default 10, and
	// never below Attempts. The first request, before anything is known
	// about the path, is sent min(4, MaxAttempts) times (at least
	// Attempts), and as often again from a connected socket.
	MaxAttempts int
	// Interval is the least time between two requests sent. Default 120ms,
	// so under 10 transactions a second.
	Interval time.Duration
	// Lifetime runs the binding lifetime test (RFC 5780 §4.6).
	Lifetime bool
	// LifetimeMax bounds the lifetime test: it ends at most this long
	// after it starts (plus the retries of its last probe when answers go
	// missing), and the longest idle time it probes is a little shorter.
	// Default 2m.
	LifetimeMax time.Duration
	// LifetimePrecision is the step between the idle times probed.
	// Default LifetimeMax/16; at most 32 steps, each at least twice
	// Interval.
	LifetimePrecision time.Duration
	// Progress, when set, gets a line for each step of the lifetime test
	// and every 15 s while it waits. Default none.
	Progress io.Writer
}

func (o *Options) defaults() {
	if o.Net == nil {
		o.Net = System
	}
	if o.Timeout <= 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.Attempts <= 0 {
		o.Attempts = 2
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	o.MaxAttempts = max(o.MaxAttempts, o.Attempts)
	if o.Interval <= 0 {
		o.Interval = 120 * time.Millisecond
	}
	if o.LifetimeMax <= 0 {
		o.LifetimeMax = 2 * time.Minute
	}
	if o.LifetimePrecision <= 0 {
		o.LifetimePrecision = o.LifetimeMax / 16
	}
}

// Behavior is an RFC 4787 mapping or filtering behaviour.
type Behavior string

// The behaviours of RFC 4787 §4.1 and §5, and Unknown when a test could not
// tell.
const (
	EndpointIndependent     Behavior = "endpoint-independent"
	AddressDependent        Behavior = "address-dependent"
	AddressAndPortDependent Behavior = "address-and-port-dependent"
	Unknown                 Behavior = "unknown"
)

// Reach is what came back to the first request (mapping test I).
type Reach string

// The outcomes of the first request.
const (
	// Answered: the server answered; UDP works.
	Answered Reach = "answered"
	// NoAnswer: nothing came back, not even an ICMP error: UDP is blocked
	// on the way, or the server's host is down.
	NoAnswer Reach = "no answer"
	// PortUnreachable: an ICMP port unreachable came back (connection
	// refused): nothing listens on that port. A server problem, not the
	// user's network (unless a firewall rejects UDP that way).
	PortUnreachable Reach = "port unreachable"
	// Unreachable: another ICMP error (host or network unreachable) or a
	// local error; the evidence has it.
	Unreachable Reach = "unreachable"
)

// Confidence says how sure the verdict is.
type Confidence string

// The confidence levels.
const (
	// High: every answer the verdict rests on came, or went missing so
	// often that loss alone explains it less than once in 1000 runs.
	High Confidence = "high"
	// Low: some verdict rests on missing answers that loss could explain
	// (Report.Caveats says which); run again.
	Low Confidence = "low"
)

// Test is the evidence of one transaction.
type Test struct {
	Name string `json:"name"`
	// Local is the client socket it was sent from.
	Local string `json:"local"`
	// To is where the request went; Change its CHANGE-REQUEST ("ip",
	// "port", "ip+port") and ResponsePort its RESPONSE-PORT.
	To           string `json:"to"`
	Change       string `json:"change,omitempty"`
	ResponsePort int    `json:"response_port,omitempty"`
	// Attempts is how often the request was sent (with the same
	// transaction ID).
	Attempts int `json:"attempts"`
	// ControlsSent and ControlsAnswered count the plain requests to the
	// primary address sent between unanswered attempts, to see whether
	// the path worked meanwhile.
	ControlsSent     int `json:"controls_sent,omitempty"`
	ControlsAnswered int `json:"controls_answered,omitempty"`
	// Answered is false when no answer came within the attempts.
	Answered bool `json:"answered"`
	// ChanceLost, for an unanswered test, is the chance that packet loss
	// alone took every answer, given the loss seen so far in the run.
	ChanceLost *float64 `json:"chance_lost,omitempty"`
	// From is where the answer came from, as the client saw it.
	From           string `json:"from,omitempty"`
	Mapped         string `json:"mapped,omitempty"`
	OtherAddress   string `json:"other_address,omitempty"`
	ResponseOrigin string `json:"response_origin,omitempty"`
	Error          string `json:"error,omitempty"`
	RTTMillis      int64  `json:"rtt_ms,omitempty"`
	Note           string `json:"note,omitempty"`
}

// Lifetime is the binding lifetime test's result.
type Lifetime struct {
	// AtLeastSeconds is the longest idle time after which a binding was
	// seen alive; null when none was (no probe got through).
	AtLeastSeconds *float64 `json:"at_least_s"`
	// BelowSeconds is the shortest idle time after which one was seen
	// dead, above AtLeastSeconds; null when the bindings outlived every
	// probe.
	BelowSeconds *float64 `json:"below_s"`
	// MaxIdleSeconds is the longest idle time probed.
	MaxIdleSeconds float64 `json:"max_idle_s"`
	// Result is "measured" (both bounds), "outlived every probe",
	// "interrupted" or "no result"; Note says more.
	Result     string     `json:"result"`
	Confidence Confidence `json:"confidence"`
	Note       string     `json:"note,omitempty"`
}

// Peers is what a connection to peers behind each kind of NAT needs, by the
// rule of RFC 4787 and ICE (RFC 8445): hole punching fails only where one
// side's endpoint-dependent mapping meets the other's address-and-port-
// dependent filtering. Each list holds PeerKind names.
type Peers struct {
	// Direct: a direct connection is expected.
	Direct []string `json:"direct"`
	// Relay: a relay (TURN) is needed.
	Relay []string `json:"relay"`
	// Unknown: it depends on what natcheck could not determine.
	Unknown []string `json:"unknown"`
}

// Report is what Run found. Every field is present in its JSON form; what
// was not determined is null (or "unknown" for the behaviours), never a
// guess: docs/nat.md has the schema.
type Report struct {
	Server string `json:"server"`
	Local  string `json:"local"`
	// Reach is what came back to the first request.
	Reach Reach `json:"reach"`
	// UDP is true when the server answered, false when nothing came back
	// (UDP blocked on the way, or the server's host down), null when an
	// ICMP error came back instead (the path carries UDP to the host; the
	// port is closed or rejected).
	UDP *bool `json:"udp"`
	// Mapped is the server-reflexive address of the first test; null
	// without an answer.
	Mapped *string `json:"mapped"`
	// NAT is false when the mapped address is the local one; null without
	// a mapped address.
	NAT       *bool    `json:"nat"`
	Mapping   Behavior `json:"mapping"`
	Filtering Behavior `json:"filtering"`
	// Hairpinning is null when untested (no NAT, or no mapping).
	Hairpinning *bool `json:"hairpinning"`
	// ALG is true when MAPPED-ADDRESS and XOR-MAPPED-ADDRESS differ: a
	// middlebox rewrote the address it found in the payload (RFC 8489 §14.2
	// is why XOR-MAPPED-ADDRESS exists). Costs no extra packet. Null when
	// the answer lacked one of them.
	ALG *bool `json:"alg"`
	// Lifetime is null unless Options.Lifetime asked for the test.
	Lifetime *Lifetime `json:"lifetime"`
	// ServerProblem says why the server cannot tell mapping and filtering
	// apart (no RFC 5780, misconfigured, not listening); "" when none was
	// seen.
	ServerProblem string `json:"server_problem"`
	// Classic is the RFC 3489 name: open internet, full cone, restricted
	// cone, port restricted cone, symmetric, UDP blocked, or a firewall;
	// "unknown" (or "no NAT (filtering unknown)") when a test needed for
	// the name could not be run; "server not answering on that port" for
	// an ICMP port unreachable.
	Classic string `json:"classic"`
	// WebRTC says what this means for a WebRTC call.
	WebRTC string `json:"webrtc"`
	// Peers says, per kind of peer NAT, whether a call connects directly.
	Peers Peers `json:"peers"`
	// RelayNeeded is true when calls will often need TURN (the mapping
	// depends on the destination, or UDP is blocked), false when they
	// rarely will, null when unknown.
	RelayNeeded *bool `json:"relay_needed"`
	// Confidence is "high" or "low"; Caveats say why it is low (and any
	// other doubt about the verdict).
	Confidence Confidence `json:"confidence"`
	Caveats    []string   `json:"caveats"`
	// Requests counts every request sent, Retries the resends of a
	// request that had no answer yet, AnswersMissing the answers lost
	// among requests that were answered in the end (and controls): the
	// loss seen on the path.
	Requests       int    `json:"requests"`
	Retries        int    `json:"retries"`
	AnswersMissing int    `json:"answers_missing"`
	Tests          []Test `json:"tests"`
}

// Run performs the tests against opts.Server.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	server, err := opts.Net.ResolveUDPAddr("udp", opts.Server)
	if err != nil {
		return nil, fmt.Errorf("natcheck: resolve %s: %w", opts.Server, err)
	}
	srv := server.AddrPort()
	srv = netip.AddrPortFrom(srv.Addr().Unmap(), srv.Port())
	local := opts.LocalIP
	if !local.IsValid() {
		c, err := opts.Net.Dial("udp", srv.String())
		if err != nil {
			return nil, fmt.Errorf("natcheck: no route to %s: %w", srv, err)
		}
		ap, _ := netip.ParseAddrPort(c.LocalAddr().String())
		_ = c.Close()
		local = ap.Addr().Unmap()
	}
	c := &checker{opts: opts, srv: srv, local: local,
		rep: &Report{Server: srv.String(), Mapping: Unknown, Filtering: Unknown, Confidence: High,
			Caveats: []string{}, Tests: []Test{}}}
	defer c.closeAll()
	if err := c.run(ctx); err != nil {
		return nil, err
	}
	c.rep.AnswersMissing = c.loss.lost
	c.conclude()
	return c.rep, nil
}

type checker struct {
	opts   Options
	srv    netip.AddrPort
	local  netip.Addr
	rep    *Report
	last   time.Time
	socks  []net.PacketConn
	loss   lossModel
	maxRTT time.Duration
	buf    [2048]byte
}

func (c *checker) socket() (net.PacketConn, error) {
	network := "udp4"
	if c.local.Is6() {
		network = "udp6"
	}
	pc, err := c.opts.Net.ListenPacket(network, netip.AddrPortFrom(c.local, 0).String())
	if err != nil {
		return nil, fmt.Errorf("natcheck: open a socket on %s: %w", c.local, err)
	}
	c.socks = append(c.socks, pc)
	return pc, nil
}

func (c *checker) closeAll() {
	for _, s := range c.socks {
		_ = s.Close()
	}
}

// pace waits so that requests leave at most one per Interval.
func (c *checker) pace(ctx context.Context) error {
	if wait := time.Until(c.last.Add(c.opts.Interval)); wait > 0 {
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
	c.last = time.Now()
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *checker) note(msg string) {
	if n := len(c.rep.Tests); n > 0 {
		c.rep.Tests[n-1].Note = msg
	}
}

var errStop = errors.New("stop")

func (c *checker) run(ctx context.Context) error {
	err := c.tests(ctx)
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

func ptr[T any](v T) *T { return &v }

// firstAttempts is how often the first request is sent: nothing is known
// about loss yet, so the adaptive rule has nothing to go on.
func (c *checker) firstAttempts() int {
	return max(c.opts.Attempts, min(4, c.opts.MaxAttempts))
}

func (c *checker) tests(ctx context.Context) error {
	rep := c.rep
	s1, err := c.socket()
	if err != nil {
		return err
	}
	rep.Local = s1.LocalAddr().String()

	// Mapping test I (RFC 5780 §4.3): the server's primary address.
	a1, err := c.transact(ctx, txn{name: "mapping I", pc: s1, to: c.srv, fixed: c.firstAttempts()})
	if err != nil {
		return err
	}
	if !a1.answered {
		if a1.transportError == nil {
			c.note("no answer; asking again from a connected socket, which hears ICMP errors")
		}
		if err := c.unanswered(ctx, a1); err != nil {
			return err
		}
		if rep.Reach != Answered {
			return errStop
		}
		// The connected socket was answered: the first ones were lost.
		// Test I again, now that some loss has been seen.
		a1, err = c.transact(ctx, txn{name: "mapping I (again)", pc: s1, to: c.srv})
		if err != nil {
			return err
		}
		if !a1.answered {
			rep.ServerProblem = "the server answered a connected socket but not the test socket: heavy loss, or a firewall that treats them differently"
			c.note(rep.ServerProblem)
			return errStop
		}
	}
	rep.Reach, rep.UDP = Answered, ptr(true)
	if a1.code != 0 || !a1.mapped.IsValid() {
		rep.ServerProblem = fmt.Sprintf("the server answered a plain Binding request with error %d or without a mapped address", a1.code)
		return errStop
	}
	m1 := a1.mapped
	rep.Mapped = ptr(m1.String())
	localAP, _ := netip.ParseAddrPort(s1.LocalAddr().String())
	nat := m1 != netip.AddrPortFrom(localAP.Addr().Unmap(), localAP.Port())
	rep.NAT = &nat
	if a1.plain.IsValid() && a1.mapped.IsValid() {
		rep.ALG = ptr(a1.plain != a1.mapped)
	}

	other := a1.other
	switch {
	case !other.IsValid():
		rep.ServerProblem = "the server sent no OTHER-ADDRESS, so it does not do RFC 5780 behaviour discovery " +
			"(icegate: set stun.alternate_address); mapping and filtering cannot be told"
	case other.Addr() == c.srv.Addr() || other.Port() == c.srv.Port():
		rep.ServerProblem = fmt.Sprintf("the server's OTHER-ADDRESS %s does not differ from %s in both IP and port "+
			"(RFC 5780 §6 requires both); mapping and filtering cannot be told", other, c.srv)
	case other.Addr().Is4() != c.srv.Addr().Is4():
		rep.ServerProblem = fmt.Sprintf("the server's OTHER-ADDRESS %s is not of the family of %s", other, c.srv)
	}
	if a1.origin.IsValid() && a1.origin != c.srv {
		c.note(fmt.Sprintf("RESPONSE-ORIGIN %s is not the address asked; behind a 1:1 NAT the server should advertise its public addresses", a1.origin))
	}
	if rep.ServerProblem == "" {
		if err := c.mapping(ctx, s1, m1, other); err != nil {
			return err
		}
	}
	if rep.ServerProblem == "" {
		if err := c.filtering(ctx, other); err != nil {
			return err
		}
	}
	if nat {
		if err := c.hairpin(ctx, s1, m1); err != nil {
			return err
		}
	}
	if c.opts.Lifetime && rep.ServerProblem == "" {
		return c.lifetime(ctx)
	}
	return nil
}

// unanswered sorts out a first request without an answer: an error on the
// socket itself (ICMP reported on an unconnected socket, as on Windows), or
// else what a connected socket hears.
func (c *checker) unanswered(ctx context.Context, a1 answer) error {
	rep := c.rep
	a := a1
	if a.transportError == nil {
		var err error
		a, err = c.reach(ctx, c.firstAttempts())
		if err != nil {
			return err
		}
	}
	switch {
	case a.answered:
		rep.Reach = Answered
	case a.transportError != nil && refused(a.transportError):
		rep.Reach = PortUnreachable
		rep.ServerProblem = fmt.Sprintf("the server is not answering on %s (ICMP port unreachable / connection refused): "+
			"nothing listens on that port; is the STUN server running, and is the port right?", c.srv)
	case a.transportError != nil:
		rep.Reach = Unreachable
		rep.ServerProblem = fmt.Sprintf("%s is unreachable: %s", c.srv, describeTransportError(a.transportError))
	default:
		rep.Reach, rep.UDP = NoAnswer, ptr(false)
		c.note(fmt.Sprintf("no answer to %d requests from two sockets, and no ICMP error: UDP is blocked on the way, or the server is down",
			a1.attempts+a.attempts))
	}
	return nil
}

// mapping runs tests II and III (RFC 5780 §4.3) on the socket of test I.
func (c *checker) mapping(ctx context.Context, s1 net.PacketConn, m1, other netip.AddrPort) error {
	rep := c.rep
	altIP := netip.AddrPortFrom(other.Addr(), c.srv.Port())
	a2, err := c.transact(ctx, txn{name: "mapping II", pc: s1, to: altIP, control: true})
	if err != nil {
		return err
	}
	if !a2.answered || !a2.mapped.IsValid() {
		rep.ServerProblem = fmt.Sprintf("no answer from the alternate address %s that OTHER-ADDRESS advertises (a firewall in front of the server?)", altIP)
		c.note(rep.ServerProblem)
		c.doubt(a2, "mapping II", "the server problem reported")
		return nil
	}
	if a2.mapped == m1 {
		rep.Mapping = EndpointIndependent
		c.note("same mapping as test I: endpoint-independent mapping")
		return nil
	}
	a3, err := c.transact(ctx, txn{name: "mapping III", pc: s1, to: other, control: true})
	if err != nil {
		return err
	}
	if !a3.answered || !a3.mapped.IsValid() {
		rep.ServerProblem = fmt.Sprintf("no answer from %s, the server's OTHER-ADDRESS", other)
		c.note(rep.ServerProblem)
		c.doubt(a3, "mapping III", "the server problem reported")
		return nil
	}
	if a3.mapped == a2.mapped {
		rep.Mapping = AddressDependent
		c.note("same mapping as test II, which had the same IP: address-dependent mapping")
	} else {
		rep.Mapping = AddressAndPortDependent
		c.note("a new mapping for a new port: address-and-port-dependent mapping")
	}
	return nil
}

// filtering runs the filtering tests (RFC 5780 §4.4), each on a fresh
// socket that has talked only to the primary address. A missing answer is
// the verdict here, so each is retried (with controls between) until loss
// is an unlikely explanation.
func (c *checker) filtering(ctx context.Context, other netip.AddrPort) error {
	rep := c.rep
	// probe returns the answer to the CHANGE-REQUEST; ok is false when the
	// test could not be run (its plain request went unanswered) or the
	// server misbehaved.
	probe := func(name string, change byte, want netip.AddrPort) (answer, bool, error) {
		s, err := c.socket()
		if err != nil {
			return answer{}, false, err
		}
		a, err := c.transact(ctx, txn{name: name + " (open the mapping)", pc: s, to: c.srv})
		if err != nil || !a.answered {
			if err == nil {
				c.note("no answer to a plain request; filtering untested")
			}
			return answer{}, false, err
		}
		a, err = c.transact(ctx, txn{name: name, pc: s, to: c.srv, change: change, control: true})
		if err != nil {
			return answer{}, false, err
		}
		switch {
		case !a.answered:
			return a, true, nil
		case a.code != 0:
			rep.ServerProblem = fmt.Sprintf("the server refused CHANGE-REQUEST with error %d", a.code)
			c.note(rep.ServerProblem)
			return a, false, nil
		case a.from != want:
			rep.ServerProblem = fmt.Sprintf("the answer to CHANGE-REQUEST came from %s, not %s: the server ignores CHANGE-REQUEST", a.from, want)
			c.note(rep.ServerProblem)
			return a, false, nil
		}
		return a, true, nil
	}
	a, ok, err := probe("filtering II", stun.ChangeIP|stun.ChangePort, other)
	if err != nil || !ok {
		return err
	}
	if a.answered {
		rep.Filtering = EndpointIndependent
		c.note("an answer from another IP and port came in: endpoint-independent filtering")
		return nil
	}
	c.note(fmt.Sprintf("nothing came in from another IP and port (%d attempts)", a.attempts))
	aII := a
	a, ok, err = probe("filtering III", stun.ChangePort, netip.AddrPortFrom(c.srv.Addr(), other.Port()))
	if err != nil || !ok {
		return err
	}
	if a.answered {
		rep.Filtering = AddressDependent
		c.note("an answer from the same IP, another port came in: address-dependent filtering")
		c.doubt(aII, "filtering II", "\"address-dependent filtering\" (rather than endpoint-independent)")
	} else {
		rep.Filtering = AddressAndPortDependent
		c.note(fmt.Sprintf("nothing came in from another port either (%d attempts): address-and-port-dependent filtering", a.attempts))
		c.doubt(aII, "filtering II", "\"address-and-port-dependent filtering\"")
		c.doubt(a, "filtering III", "\"address-and-port-dependent filtering\" (rather than address-dependent)")
	}
	return nil
}

// hairpin sends a request from a fresh socket to the first socket's mapped
// address and sees whether the NAT loops it back (RFC 5780 §4.5): the
// request itself, arriving on the first socket, is the answer.
func (c *checker) hairpin(ctx context.Context, s1 net.PacketConn, m1 netip.AddrPort) error {
	s, err := c.socket()
	if err != nil {
		return err
	}
	a, err := c.transact(ctx, txn{name: "hairpinning", pc: s, recv: s1, to: m1, control: true})
	if err != nil {
		return err
	}
	got := a.answered
	if got {
		c.note("the request to our own mapped address came back in through the NAT")
	} else {
		c.note(fmt.Sprintf("the request to our own mapped address never arrived (%d attempts)", a.attempts))
		c.doubt(a, "hairpinning", "\"no hairpinning\"")
	}
	c.rep.Hairpinning = &got
	return nil
}
