package turn

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"icegate/auth"
	"icegate/stun/natcheck"
)

// publicFamily names one relay address family for discovery and the
// private-address check.
type publicFamily struct {
	index int    // in relayAllocator.publics
	name  string // "ipv4": the config field's infix and the metric label
	label string // "IPv4", for messages
}

var (
	ipv4 = publicFamily{0, "ipv4", "IPv4"}
	ipv6 = publicFamily{1, "ipv6", "IPv6"}
)

func (f publicFamily) of(r *relayAllocator) relayFamily {
	if f.index == 0 {
		return r.v4
	}
	return r.v6
}

func (f publicFamily) bind(r RelayConfig) netip.Addr {
	if f.index == 0 {
		return r.IPv4Bind
	}
	return r.IPv6Bind
}

func (f publicFamily) configured(r RelayConfig) netip.Addr {
	if f.index == 0 {
		return r.IPv4Public
	}
	return r.IPv6Public
}

func (f publicFamily) discover(r RelayConfig) bool {
	if f.index == 0 {
		return r.IPv4Discover
	}
	return r.IPv6Discover
}

// servers are those of list that may answer fam: a literal address of the
// other family is left out (one list serves both families), a name is kept
// and resolved for fam.
func (f publicFamily) servers(list []string) []string {
	var out []string
	for _, srv := range list {
		host, _, err := net.SplitHostPort(srv)
		if a, perr := netip.ParseAddr(host); err == nil && perr == nil && a.Unmap().Is4() != (f.index == 0) {
			continue
		}
		out = append(out, srv)
	}
	return out
}

// source says where the family's advertised address came from, in the
// config file's words.
func (f publicFamily) source(r RelayConfig) string {
	switch {
	case f.discover(r):
		return "relay." + f.name + "_public = \"auto\", discovered with relay.discover_with"
	case f.configured(r).IsValid():
		return "relay." + f.name + "_public"
	case !f.bind(r).IsUnspecified():
		return "relay." + f.name + "_bind, advertised as itself since relay." + f.name + "_public is empty"
	}
	return "picked from this host's interfaces"
}

// discoverTimeout bounds one round of discovery: natcheck.Discover's own
// attempts end within about 3.5 s; this is the backstop.
const discoverTimeout = 10 * time.Second

// discover runs one round for fam: what each server said, and the
// majority if there is one.
func (s *Server) discover(ctx context.Context, fam publicFamily) (netip.Addr, []natcheck.Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, discoverTimeout)
	defer cancel()
	r := s.cfg.Relay
	answers, err := natcheck.Discover(ctx, natcheck.DiscoverConfig{Bind: fam.bind(r), Servers: fam.servers(r.DiscoverWith)})
	if err != nil {
		return netip.Addr{}, nil, err
	}
	addr, ok := natcheck.Majority(answers)
	if !ok {
		return netip.Addr{}, answers, nil
	}
	return addr, answers, nil
}

// discoverStartWait bounds how long New waits for relay.discover_with to
// answer at all: a server started before the network (boot, a bind
// address not up yet) asks again with backoff instead of failing at once.
// A variable for the tests.
var discoverStartWait = 60 * time.Second

// discoverAtStart finds fam's advertised address for New: the majority of
// relay.discover_with, asked from the relay bind address (so the mapping is
// the one a NAT gives relay sockets), or an error that names what each
// server said. While no server answers at all (or the bind address is not
// up yet) it asks again, with backoff, for up to discoverStartWait, and
// says so once in the log; servers that answer but disagree fail at once,
// as that is the configuration's problem, not the network's.
func (s *Server) discoverAtStart(fam publicFamily) (netip.Addr, error) {
	deadline := time.Now().Add(discoverStartWait)
	backoff := time.Second
	var addr netip.Addr
	var answers []natcheck.Answer
	var err error
	for waited := false; ; waited = true {
		addr, answers, err = s.discover(context.Background(), fam)
		if (err == nil && !noneAnswered(answers)) || !time.Now().Add(backoff).Before(deadline) {
			break
		}
		if !waited {
			why := natcheck.Summary(answers)
			if err != nil {
				why = err.Error()
			}
			s.log.Warn("relay public address discovery: no STUN server answered yet (is the network up?); asking again",
				"family", fam.name, "for", discoverStartWait.String(), "answers", why)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 8*time.Second)
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("relay.%s_public = \"auto\": %w", fam.name, err)
	}
	if !addr.IsValid() {
		s.metrics.PublicDiscoveries.WithLabelValues(fam.name, "no_majority").Inc()
		return netip.Addr{}, fmt.Errorf("relay.%s_public = \"auto\": more than half of relay.discover_with must report the same address, and they did not: %s",
			fam.name, natcheck.Summary(answers))
	}
	if addr.Is4() != (fam.index == 0) {
		return netip.Addr{}, fmt.Errorf("relay.%s_public = \"auto\": the servers report %s, not an %s address", fam.name, addr, fam.label)
	}
	if why := unusable(addr); why != "" {
		s.metrics.PublicDiscoveries.WithLabelValues(fam.name, "refused_private").Inc()
		return netip.Addr{}, fmt.Errorf("relay.%s_public = \"auto\": the servers report %s, %s: not an address peers can send to (relay.private_ok does not allow it)",
			fam.name, addr, why)
	}
	s.metrics.PublicDiscoveries.WithLabelValues(fam.name, "agreed").Inc()
	s.log.Info("relay public address discovered", "family", fam.name, "advertised", addr.String(),
		"answers", natcheck.Summary(answers))
	return addr, nil
}

// noneAnswered reports whether every server failed to give an address.
func noneAnswered(answers []natcheck.Answer) bool {
	for _, a := range answers {
		if a.Err == nil {
			return false
		}
	}
	return true
}

// watchPublic asks the discovery servers again every DiscoverInterval
// (cloud addresses change: a stopped and started instance, a moved
// elastic IP) until ctx ends. A new majority is advertised to new
// allocations from then on, logged once; live allocations keep the address
// they were given (a client cannot be told of another). No majority keeps
// the address in use, and is logged when it starts and when it ends, not
// every round.
func (s *Server) watchPublic(ctx context.Context) {
	r := s.cfg.Relay
	var fams []publicFamily
	for _, f := range []publicFamily{ipv4, ipv6} {
		if f.discover(r) && f.of(s.relays).enabled() {
			fams = append(fams, f)
		}
	}
	failing := map[string]bool{}
	t := time.NewTicker(r.DiscoverInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, fam := range fams {
			s.rediscover(ctx, fam, failing)
		}
	}
}

// rediscover is one round of watchPublic for fam; failing remembers which
// families are in a run of rounds without a usable majority.
func (s *Server) rediscover(ctx context.Context, fam publicFamily, failing map[string]bool) {
	addr, answers, err := s.discover(ctx, fam)
	if ctx.Err() != nil {
		return
	}
	cur := s.relays.publics.Load()[fam.index]
	fail := func(outcome, msg string) {
		s.metrics.PublicDiscoveries.WithLabelValues(fam.name, outcome).Inc()
		if !failing[fam.name] {
			failing[fam.name] = true
			s.log.Warn(msg, "family", fam.name, "advertised", cur.String(), "answers", natcheck.Summary(answers), "err", err)
		}
	}
	switch {
	case err != nil || !addr.IsValid() || addr.Is4() != (fam.index == 0):
		fail("no_majority", "relay public address: discovery servers do not agree (more than half must); keeping the address in use")
		return
	case unusable(addr) != "":
		fail("refused_private", "relay public address: discovery servers report "+addr.String()+", "+unusable(addr)+
			", not an address peers can send to; keeping the address in use")
		return
	case auth.NonPublic(addr) != "" && !s.privateOK.Load():
		fail("refused_private", "relay public address: discovery servers report "+addr.String()+", "+auth.NonPublic(addr)+
			"; keeping the address in use (relay.private_ok = true would accept it)")
		return
	}
	if failing[fam.name] {
		failing[fam.name] = false
		s.log.Info("relay public address: discovery servers agree again", "family", fam.name, "advertised", addr.String())
	}
	if addr == cur {
		s.metrics.PublicDiscoveries.WithLabelValues(fam.name, "agreed").Inc()
		return
	}
	s.setPublic(fam, addr)
	s.metrics.PublicDiscoveries.WithLabelValues(fam.name, "changed").Inc()
	s.log.Warn("relay public address changed: new allocations get the new one, live ones keep theirs",
		"family", fam.name, "old", cur.String(), "new", addr.String(), "answers", natcheck.Summary(answers))
}

// unusable says why addr cannot be a relayed address at all, whatever
// relay.private_ok says (it allows a LAN's or a test's addresses, not
// these): a discovery server that reports one is broken or lying. "" when
// addr is a unicast address.
func unusable(addr netip.Addr) string {
	switch {
	case addr.IsUnspecified():
		return "the unspecified address"
	case addr.IsMulticast():
		return "a multicast address"
	case addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	}
	return ""
}

// setPublic advertises addr for fam from now on, and makes the peer policy
// guard it as this server's own address (peers.go) in place of the old one.
func (s *Server) setPublic(fam publicFamily, addr netip.Addr) {
	s.peersMu.Lock()
	defer s.peersMu.Unlock()
	pubs := *s.relays.publics.Load()
	pubs[fam.index] = addr
	s.relays.publics.Store(&pubs)
	if p, err := newPeerPolicy(s.policyCfg, s.cfg.Relay, s.selfAddrs()); err == nil {
		s.peers.Store(p)
	} else {
		// The same policy built before with other self addresses: cannot
		// fail, but if it did, the old policy stays.
		s.log.Error("peer policy with the new relay address", "err", err)
	}
}

// samePublics reports whether self is still the set of advertised
// addresses (a reload prepared before a discovery change is rebuilt).
func (s *Server) samePublics(self []netip.Addr) bool { return slices.Equal(self, s.selfAddrs()) }
