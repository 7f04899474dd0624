// Package natcheck is the client side of RFC 5780 NAT behaviour discovery:
// it finds out what NAT (or firewall) lies between this host and a STUN
// server that has an alternate address, and says in RFC 4787 terms, in the
// classic names and in what it means for WebRTC, with the evidence of each
// test. `icegate natcheck` prints its Report.
//
// The tests are those of RFC 5780 §4: mapping tests I, II and III on one
// socket (§4.3), filtering tests on fresh sockets so that earlier tests
// leave no permission behind (§4.4), hairpinning (§4.5), and optionally the
// binding lifetime by binary search with RESPONSE-PORT (§4.6). A server
// without OTHER-ADDRESS, or whose OTHER-ADDRESS does not differ in both IP
// and port, is reported as such: the behaviour is then unknown, not guessed.
//
// Every request is paced (Options.Interval, under 10 a second) and every
// wait is short (Options.Timeout), so UDP blocked is a verdict within
// seconds, not a hang.
package natcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	pionstun "github.com/pion/stun/v4"

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
	// Attempts is how often a request is sent before the test counts as
	// unanswered. Default 2.
	Attempts int
	// Interval is the least time between two requests sent. Default 120ms,
	// so under 10 transactions a second.
	Interval time.Duration
	// Lifetime runs the binding lifetime test (RFC 5780 §4.6), which takes
	// about LifetimeMax.
	Lifetime bool
	// LifetimeMax bounds the lifetime search. Default 2m.
	LifetimeMax time.Duration
	// LifetimePrecision ends the binary search. Default LifetimeMax/16.
	LifetimePrecision time.Duration
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
	// Answered is false when no answer came within the attempts.
	Answered bool `json:"answered"`
	// From is where the answer came from, as the client saw it.
	From           string `json:"from,omitempty"`
	Mapped         string `json:"mapped,omitempty"`
	OtherAddress   string `json:"other_address,omitempty"`
	ResponseOrigin string `json:"response_origin,omitempty"`
	Error          string `json:"error,omitempty"`
	RTTMillis      int64  `json:"rtt_ms,omitempty"`
	Note           string `json:"note,omitempty"`
}

// Report is what Run found.
type Report struct {
	Server string `json:"server"`
	Local  string `json:"local,omitempty"`
	// UDP is false when the server never answered: UDP is blocked (or the
	// server is down).
	UDP bool `json:"udp"`
	// Mapped is the server-reflexive address of the first test.
	Mapped string `json:"mapped,omitempty"`
	// NAT is false when the mapped address is the local one.
	NAT       bool     `json:"nat"`
	Mapping   Behavior `json:"mapping"`
	Filtering Behavior `json:"filtering"`
	// Hairpinning is nil when untested (no NAT, or no mapping).
	Hairpinning *bool `json:"hairpinning,omitempty"`
	// ALG is true when MAPPED-ADDRESS and XOR-MAPPED-ADDRESS differ: a
	// middlebox rewrote the address it found in the payload (RFC 8489 §14.2
	// is why XOR-MAPPED-ADDRESS exists). Costs no extra packet.
	ALG *bool `json:"alg,omitempty"`
	// LifetimeSeconds is the binding lifetime found: at least this long,
	// less than LifetimeMaxSeconds (absent when the binding outlived the
	// longest wait, Options.LifetimeMax).
	LifetimeSeconds    *float64 `json:"lifetime_s,omitempty"`
	LifetimeMaxSeconds *float64 `json:"lifetime_max_s,omitempty"`
	// ServerProblem says why the server cannot tell mapping and filtering
	// apart (no RFC 5780, or misconfigured); empty when it can.
	ServerProblem string `json:"server_problem,omitempty"`
	// Classic is the RFC 3489 name: open internet, full cone, restricted
	// cone, port restricted cone, symmetric, UDP blocked, or a firewall;
	// "unknown" (or "no NAT (filtering unknown)") when a test needed for
	// the name could not be run.
	Classic string `json:"classic"`
	// WebRTC says what this means for a WebRTC call.
	WebRTC string `json:"webrtc"`
	// RelayNeeded is true when calls will often need TURN.
	RelayNeeded bool   `json:"relay_needed"`
	Tests       []Test `json:"tests"`
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
		rep: &Report{Server: srv.String(), Mapping: Unknown, Filtering: Unknown}}
	defer c.closeAll()
	if err := c.run(ctx); err != nil {
		return nil, err
	}
	c.conclude()
	return c.rep, nil
}

type checker struct {
	opts  Options
	srv   netip.AddrPort
	local netip.Addr
	rep   *Report
	last  time.Time
	socks []net.PacketConn
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
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	c.last = time.Now()
	return nil
}

// answer is a decoded response.
type answer struct {
	msg            *pionstun.Message
	from           netip.AddrPort
	mapped, plain  netip.AddrPort // XOR-MAPPED-ADDRESS, MAPPED-ADDRESS
	other, origin  netip.AddrPort
	code           int
	rtt            time.Duration
	answered       bool
	transportError error
}

// transact sends a Binding request from pc to `to` with the given extra
// attributes and waits for the answer on recv, recording the evidence under
// name. recv is nil for pc itself; it is another socket when RESPONSE-PORT
// sends the answer elsewhere, or for hairpinning, where the message that
// arrives with the transaction ID is the request itself. Each of
// Options.Attempts sends waits Options.Timeout; an answer is anything with
// the request's transaction ID.
func (c *checker) transact(ctx context.Context, name string, pc, recv net.PacketConn, to netip.AddrPort, change byte, respPort uint16) (answer, error) {
	t := Test{Name: name, Local: pc.LocalAddr().String(), To: to.String(), ResponsePort: int(respPort)}
	setters := []pionstun.Setter{pionstun.TransactionID, pionstun.BindingRequest, pionstun.NewSoftware("icegate natcheck")}
	switch change {
	case stun.ChangeIP:
		t.Change = "ip"
	case stun.ChangePort:
		t.Change = "port"
	case stun.ChangeIP | stun.ChangePort:
		t.Change = "ip+port"
	}
	if change != 0 {
		setters = append(setters, pionstun.RawAttribute{Type: pionstun.AttrChangeRequest, Value: []byte{0, 0, 0, change}})
	}
	if respPort != 0 {
		setters = append(setters, pionstun.RawAttribute{Type: pionstun.AttrResponsePort, Value: []byte{byte(respPort >> 8), byte(respPort), 0, 0}})
	}
	setters = append(setters, pionstun.Fingerprint)
	req, err := pionstun.Build(setters...)
	if err != nil {
		return answer{}, err
	}
	if recv == nil {
		recv = pc
	}
	var a answer
	buf := make([]byte, 2048)
	for attempt := 0; attempt < c.opts.Attempts && !a.answered; attempt++ {
		if err := c.pace(ctx); err != nil {
			return answer{}, err
		}
		sent := time.Now()
		if _, err := pc.WriteTo(req.Raw, net.UDPAddrFromAddrPort(to)); err != nil {
			a.transportError = err
			t.Error = err.Error()
			break
		}
		deadline := sent.Add(c.opts.Timeout)
		for {
			if ctx.Err() != nil {
				return answer{}, ctx.Err()
			}
			_ = recv.SetReadDeadline(deadline)
			n, from, err := recv.ReadFrom(buf)
			if err != nil {
				break // timeout: next attempt
			}
			m := &pionstun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if m.Decode() != nil || m.TransactionID != req.TransactionID {
				continue
			}
			a = decodeAnswer(m, from)
			a.rtt = time.Since(sent)
			break
		}
	}
	if a.answered {
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

func (c *checker) tests(ctx context.Context) error {
	rep := c.rep
	s1, err := c.socket()
	if err != nil {
		return err
	}
	rep.Local = s1.LocalAddr().String()

	// Mapping test I (RFC 5780 §4.3): the server's primary address.
	a1, err := c.transact(ctx, "mapping I", s1, nil, c.srv, 0, 0)
	if err != nil {
		return err
	}
	if !a1.answered {
		c.note("no answer: UDP is blocked on the way, or the server is down")
		return errStop
	}
	rep.UDP = true
	if a1.code != 0 || !a1.mapped.IsValid() {
		rep.ServerProblem = fmt.Sprintf("the server answered a plain Binding request with error %d or without a mapped address", a1.code)
		return errStop
	}
	m1 := a1.mapped
	rep.Mapped = m1.String()
	localAP, _ := netip.ParseAddrPort(s1.LocalAddr().String())
	rep.NAT = m1 != netip.AddrPortFrom(localAP.Addr().Unmap(), localAP.Port())
	if a1.plain.IsValid() && a1.mapped.IsValid() {
		alg := a1.plain != a1.mapped
		rep.ALG = &alg
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
	if rep.NAT {
		if err := c.hairpin(ctx, s1, m1); err != nil {
			return err
		}
	}
	if c.opts.Lifetime && rep.ServerProblem == "" {
		return c.lifetime(ctx)
	}
	return nil
}

// mapping runs tests II and III (RFC 5780 §4.3) on the socket of test I.
func (c *checker) mapping(ctx context.Context, s1 net.PacketConn, m1, other netip.AddrPort) error {
	rep := c.rep
	altIP := netip.AddrPortFrom(other.Addr(), c.srv.Port())
	a2, err := c.transact(ctx, "mapping II", s1, nil, altIP, 0, 0)
	if err != nil {
		return err
	}
	if !a2.answered || !a2.mapped.IsValid() {
		rep.ServerProblem = fmt.Sprintf("no answer from the alternate address %s that OTHER-ADDRESS advertises (a firewall in front of the server?)", altIP)
		c.note(rep.ServerProblem)
		return nil
	}
	if a2.mapped == m1 {
		rep.Mapping = EndpointIndependent
		c.note("same mapping as test I: endpoint-independent mapping")
		return nil
	}
	a3, err := c.transact(ctx, "mapping III", s1, nil, other, 0, 0)
	if err != nil {
		return err
	}
	if !a3.answered || !a3.mapped.IsValid() {
		rep.ServerProblem = fmt.Sprintf("no answer from %s, the server's OTHER-ADDRESS", other)
		c.note(rep.ServerProblem)
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
// socket that has talked only to the primary address.
func (c *checker) filtering(ctx context.Context, other netip.AddrPort) error {
	rep := c.rep
	probe := func(name string, change byte, want netip.AddrPort) (answered bool, ok bool, err error) {
		s, err := c.socket()
		if err != nil {
			return false, false, err
		}
		a, err := c.transact(ctx, name+" (open the mapping)", s, nil, c.srv, 0, 0)
		if err != nil || !a.answered {
			if err == nil {
				c.note("no answer to a plain request; filtering untested")
			}
			return false, false, err
		}
		a, err = c.transact(ctx, name, s, nil, c.srv, change, 0)
		if err != nil {
			return false, false, err
		}
		switch {
		case !a.answered:
			return false, true, nil
		case a.code != 0:
			rep.ServerProblem = fmt.Sprintf("the server refused CHANGE-REQUEST with error %d", a.code)
			c.note(rep.ServerProblem)
			return true, false, nil
		case a.from != want:
			rep.ServerProblem = fmt.Sprintf("the answer to CHANGE-REQUEST came from %s, not %s: the server ignores CHANGE-REQUEST", a.from, want)
			c.note(rep.ServerProblem)
			return true, false, nil
		}
		return true, true, nil
	}
	answered, ok, err := probe("filtering II", stun.ChangeIP|stun.ChangePort, other)
	if err != nil || !ok {
		return err
	}
	if answered {
		rep.Filtering = EndpointIndependent
		c.note("an answer from another IP and port came in: endpoint-independent filtering")
		return nil
	}
	c.note("nothing came in from another IP and port")
	answered, ok, err = probe("filtering III", stun.ChangePort, netip.AddrPortFrom(c.srv.Addr(), other.Port()))
	if err != nil || !ok {
		return err
	}
	if answered {
		rep.Filtering = AddressDependent
		c.note("an answer from the same IP, another port came in: address-dependent filtering")
	} else {
		rep.Filtering = AddressAndPortDependent
		c.note("nothing came in from another port either: address-and-port-dependent filtering")
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
	a, err := c.transact(ctx, "hairpinning", s, s1, m1, 0, 0)
	if err != nil {
		return err
	}
	got := a.answered
	if got {
		c.note("the request to our own mapped address came back in through the NAT")
	} else {
		c.note("the request to our own mapped address never arrived")
	}
	c.rep.Hairpinning = &got
	return nil
}

// lifetime finds how long an idle binding lives (RFC 5780 §4.6): a fresh
// socket X opens a binding, waits, then another socket asks the server to
// answer to X's mapped port (RESPONSE-PORT). X hears it while the binding
// lives. Binary search between 0 and LifetimeMax, a fresh X for each wait,
// so the whole test waits about LifetimeMax.
func (c *checker) lifetime(ctx context.Context) error {
	rep := c.rep
	probeSock, err := c.socket()
	if err != nil {
		return err
	}
	alive := func(wait time.Duration) (bool, error) {
		x, err := c.socket()
		if err != nil {
			return false, err
		}
		defer x.Close()
		a, err := c.transact(ctx, fmt.Sprintf("lifetime: open a binding, then wait %s", wait), x, nil, c.srv, 0, 0)
		if err != nil {
			return false, err
		}
		if !a.answered || !a.mapped.IsValid() {
			// transact has already sent it Options.Attempts times. A binding
			// that was never opened says nothing about how long one lives:
			// counting it as dead would pull the upper bound down, so the
			// search ends without a result instead.
			c.note("no answer with a mapped address, so no binding to time: the lifetime test stops without a result")
			return false, errStop
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
		b, err := c.transact(ctx, fmt.Sprintf("lifetime: answer to that binding after %s", wait), probeSock, x, c.srv, 0, a.mapped.Port())
		if err != nil {
			return false, err
		}
		if b.code != 0 {
			c.note(fmt.Sprintf("RESPONSE-PORT refused with error %d: the lifetime test stops without a result", b.code))
			return false, errStop
		}
		return b.answered, nil
	}
	lo, hi := time.Duration(0), c.opts.LifetimeMax
	for hi-lo > c.opts.LifetimePrecision {
		mid := (lo + hi) / 2
		ok, err := alive(mid)
		if err != nil {
			return err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	l, h := lo.Seconds(), hi.Seconds()
	rep.LifetimeSeconds = &l
	if hi < c.opts.LifetimeMax {
		rep.LifetimeMaxSeconds = &h
	} else {
		c.note("the binding outlived every wait: it lives at least this long")
	}
	return nil
}

// conclude names the result and what it means for WebRTC.
func (c *checker) conclude() {
	rep := c.rep
	switch {
	case !rep.UDP:
		rep.Classic = "UDP blocked"
		rep.WebRTC = "UDP is blocked (or the server is unreachable): WebRTC needs TURN over TCP or TLS, e.g. turns:HOST:443?transport=tcp"
		rep.RelayNeeded = true
		return
	case rep.ServerProblem != "":
		rep.Classic = "unknown"
		if !rep.NAT {
			rep.Classic = "no NAT (filtering unknown)"
		}
		rep.WebRTC = "unknown: this server cannot run the RFC 5780 tests (see server_problem); UDP works, so TURN over UDP does"
		return
	}
	eim := rep.Mapping == EndpointIndependent
	switch {
	// Filtering stays Unknown without a server problem when the plain
	// request that opens a filtering test went unanswered. Without NAT, or
	// with endpoint-independent mapping, the name depends on the filtering;
	// with a mapping that depends on the destination it is symmetric
	// whatever the filtering.
	case !rep.NAT && rep.Filtering == Unknown:
		rep.Classic = "no NAT (filtering unknown)"
	case eim && rep.Filtering == Unknown:
		rep.Classic = "unknown"
	case !rep.NAT && rep.Filtering == EndpointIndependent:
		rep.Classic = "open internet"
	case !rep.NAT:
		rep.Classic = "no NAT, firewall with " + string(rep.Filtering) + " filtering (symmetric UDP firewall)"
	case eim && rep.Filtering == EndpointIndependent:
		rep.Classic = "full cone"
	case eim && rep.Filtering == AddressDependent:
		rep.Classic = "restricted cone"
	case eim && rep.Filtering == AddressAndPortDependent:
		rep.Classic = "port restricted cone"
	case rep.Mapping == Unknown:
		rep.Classic = "unknown"
	default:
		rep.Classic = "symmetric"
	}
	switch {
	case eim || !rep.NAT:
		rep.WebRTC = "direct connection likely: the mapped address is the same for every peer, so server-reflexive candidates work; " +
			"a relay is needed only against a peer behind a symmetric NAT"
		switch rep.Filtering {
		case AddressAndPortDependent:
			rep.WebRTC += " (or behind one that also filters by port)"
		case Unknown:
			rep.WebRTC += "; the filtering test went unanswered, so how strictly incoming packets are filtered is unknown"
		}
	case rep.Mapping == Unknown:
		rep.WebRTC = "unknown: the mapping tests did not finish"
	default:
		rep.RelayNeeded = true
		rep.WebRTC = "a relay (TURN) will often be needed: the mapped port changes with the destination, so a peer cannot " +
			"reach the address the STUN server saw; direct connections work only with peers whose NAT filters endpoint-independently"
	}
}
