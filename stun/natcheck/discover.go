package natcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	pionstun "github.com/pion/stun/v4"
)

// Discovery defaults: three attempts per server, the first waiting 500 ms
// and each next one twice as long (RFC 8489 §6.2.1's doubling, with fewer
// attempts than its Rc = 7: a relay starting up should not wait 39.5 s
// per server), so one round ends within 3.5 s whatever the servers do.
const (
	defaultDiscoverAttempts = 3
	defaultDiscoverRTO      = 500 * time.Millisecond
)

// DiscoverConfig is one round of public address discovery.
type DiscoverConfig struct {
	// Bind is the local address the request socket binds to (port 0): the
	// relay bind address, so that the mapping found is the one relay
	// sockets get from the NAT in front of them.
	Bind netip.Addr
	// Servers are the STUN servers asked, as host:port; a name is resolved
	// each round, to an address of Bind's family.
	Servers []string
	// Attempts is how often a request is sent to a server that has not
	// answered. Default 3.
	Attempts int
	// RTO is the wait after the first attempt; it doubles after each one.
	// Default 500ms.
	RTO time.Duration
	// Network opens the socket and resolves names. Default System.
	Network Network
}

// Answer is what one discovery server said.
type Answer struct {
	// Server is the server as configured (host:port).
	Server string
	// Mapped is the XOR-MAPPED-ADDRESS it reported (MAPPED-ADDRESS from a
	// server too old for the XOR form); invalid when Err is set.
	Mapped netip.AddrPort
	// Err says why there is no address: no answer, an error response, a
	// name that does not resolve.
	Err error
}

// String is "server: address" or "server: error", for logs.
func (a Answer) String() string {
	if a.Err != nil {
		return a.Server + ": " + a.Err.Error()
	}
	return a.Server + ": " + a.Mapped.Addr().String()
}

// ErrNoAnswer is an Answer's Err when a server did not answer any attempt.
var ErrNoAnswer = errors.New("no answer")

// Discover asks every server of cfg, from one socket bound to cfg.Bind, for
// the address it sees the requests come from (a Binding request, RFC 8489
// §3: the reflexive transport address). All servers are asked at once and
// retransmissions go to those that have not answered yet, with the same
// transaction ID (RFC 8489 §6.2.1), so a round is bounded by the attempts'
// waits, about 3.5 s with the defaults. The answers come in the order of
// cfg.Servers. Only a socket that cannot be opened is an error.
func Discover(ctx context.Context, cfg DiscoverConfig) ([]Answer, error) {
	if cfg.Attempts <= 0 {
		cfg.Attempts = defaultDiscoverAttempts
	}
	if cfg.RTO <= 0 {
		cfg.RTO = defaultDiscoverRTO
	}
	if cfg.Network == nil {
		cfg.Network = System
	}
	network := "udp4"
	if cfg.Bind.Is6() && !cfg.Bind.Is4In6() {
		network = "udp6"
	}
	pc, err := cfg.Network.ListenPacket(network, netip.AddrPortFrom(cfg.Bind, 0).String())
	if err != nil {
		return nil, fmt.Errorf("discovery socket on %s: %w", cfg.Bind, err)
	}
	defer pc.Close()
	stop := context.AfterFunc(ctx, func() { _ = pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	type pending struct {
		to  net.Addr
		req *pionstun.Message
	}
	answers := make([]Answer, len(cfg.Servers))
	open := map[[pionstun.TransactionIDSize]byte]int{} // transaction -> index
	reqs := make([]pending, len(cfg.Servers))
	for i, srv := range cfg.Servers {
		answers[i].Server = srv
		ua, err := cfg.Network.ResolveUDPAddr(network, srv)
		if err != nil {
			answers[i].Err = fmt.Errorf("resolve: %w", err)
			continue
		}
		req, _, err := buildRequest(0, 0)
		if err != nil {
			return nil, err
		}
		reqs[i] = pending{to: ua, req: req}
		open[req.TransactionID] = i
		answers[i].Err = ErrNoAnswer
	}
	buf := make([]byte, 1500)
	wait := cfg.RTO
	for attempt := 0; attempt < cfg.Attempts && len(open) > 0; attempt++ {
		for _, i := range open {
			if _, err := pc.WriteTo(reqs[i].req.Raw, reqs[i].to); err != nil {
				answers[i].Err = fmt.Errorf("send: %w", err)
			}
		}
		deadline := time.Now().Add(wait)
		wait *= 2
		for len(open) > 0 {
			if ctx.Err() != nil {
				return answers, nil
			}
			_ = pc.SetReadDeadline(deadline)
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				// ICMP errors surface on some systems; the attempt's
				// wait still bounds the round.
				if time.Now().After(deadline) {
					break
				}
				continue
			}
			m := &pionstun.Message{Raw: slices.Clone(buf[:n])}
			if m.Decode() != nil {
				continue
			}
			i, ok := open[m.TransactionID]
			if !ok {
				continue
			}
			delete(open, m.TransactionID)
			a := decodeAnswer(m, from)
			switch {
			case a.code != 0:
				answers[i].Err = fmt.Errorf("error response %d", a.code)
			case !a.mapped.IsValid():
				answers[i].Err = errors.New("response without a mapped address")
			default:
				answers[i].Mapped, answers[i].Err = a.mapped, nil
			}
		}
	}
	return answers, nil
}

// Majority returns the address more than half of answers report (answers
// that failed count as a vote for nothing, so that one server answering
// while the others are down is not a majority). ok is false without one.
// Only the IP address is compared: relay sockets each get their own port.
func Majority(answers []Answer) (addr netip.Addr, ok bool) {
	votes := map[netip.Addr]int{}
	for _, a := range answers {
		if a.Err == nil {
			votes[a.Mapped.Addr().Unmap()]++
		}
	}
	for a, n := range votes {
		if 2*n > len(answers) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// Summary lists what each server said, "a: 203.0.113.1, b: no answer",
// for log lines and errors.
func Summary(answers []Answer) string {
	parts := make([]string, len(answers))
	for i, a := range answers {
		parts[i] = a.String()
	}
	return strings.Join(parts, ", ")
}
