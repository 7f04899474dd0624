package natcheck

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"

	"icegate/stun"
)

// TestDiscoverThroughNAT asks three servers (three sockets of the vnet
// server) from behind a NAT: each sees the NAT's address, and that is the
// majority. A fourth entry names a port nobody answers on: it is reported
// as unanswered, and three of four is still a majority.
func TestDiscoverThroughNAT(t *testing.T) {
	l := newLab(t, &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent}, true)
	addrs := fourAddrs(a1, a2)
	startVnetServer(t, l.server, addrs, addrs)
	servers := []string{addrs[0].String(), addrs[1].String(), addrs[2].String(), "203.0.113.10:4000"}
	start := time.Now()
	answers, err := Discover(t.Context(), DiscoverConfig{
		Bind: netip.MustParseAddr("10.200.1.2"), Servers: servers, Network: l.client, RTO: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Three attempts waiting 100, 200 and 400 ms bound the round.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("round took %v", d)
	}
	for i, a := range answers[:3] {
		if a.Err != nil || a.Mapped.Addr() != netip.MustParseAddr("203.0.113.1") || a.Server != servers[i] {
			t.Errorf("answer %d: %+v", i, a)
		}
	}
	if !errors.Is(answers[3].Err, ErrNoAnswer) {
		t.Errorf("silent server: %+v", answers[3])
	}
	got, ok := Majority(answers)
	if !ok || got != netip.MustParseAddr("203.0.113.1") {
		t.Errorf("majority %v %v of %s", got, ok, Summary(answers))
	}
	if s := Summary(answers); !strings.Contains(s, "203.0.113.10:4000: no answer") {
		t.Errorf("summary %q", s)
	}
}

// TestDiscoverDisagreement has one server that lies about the address (a
// server behind its own broken NAT, or a hostile one): with three servers
// the two honest ones still win; with two, nobody does.
func TestDiscoverDisagreement(t *testing.T) {
	l := newLab(t, &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent}, true)
	addrs := fourAddrs(a1, a2)
	honest, err := stun.NewResponder(stun.Config{})
	if err != nil {
		t.Fatal(err)
	}
	lie := netip.MustParseAddrPort("198.51.100.7:1234")
	startAnswering(t, l.server, addrs, func(r stun.Request) (stun.Reply, error) {
		on, src := r.On, r.Src
		if on == stun.AltBoth {
			r.Src = lie
		}
		rep, err := honest.Answer(r)
		// A server without an alternate answers from where it was asked,
		// to where the request came from.
		rep.From, rep.To = on, src
		return rep, err
	})
	bind := netip.MustParseAddr("10.200.1.2")
	for _, tc := range []struct {
		name    string
		servers []string
		want    netip.Addr
	}{
		{"two honest, one liar", []string{addrs[0].String(), addrs[1].String(), addrs[3].String()}, netip.MustParseAddr("203.0.113.1")},
		{"one honest, one liar", []string{addrs[0].String(), addrs[3].String()}, netip.Addr{}},
		{"one liar alone", []string{addrs[3].String()}, lie.Addr()},
		{"one answer of three", []string{addrs[0].String(), "203.0.113.10:4000", "203.0.113.10:4001"}, netip.Addr{}},
		{"name that does not resolve", []string{"no-such-host.invalid:3478"}, netip.Addr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answers, err := Discover(t.Context(), DiscoverConfig{Bind: bind, Servers: tc.servers, Network: l.client, RTO: 50 * time.Millisecond, Attempts: 2})
			if err != nil {
				t.Fatal(err)
			}
			got, ok := Majority(answers)
			if ok != tc.want.IsValid() || got != tc.want {
				t.Errorf("majority %v %v, want %v; answers %s", got, ok, tc.want, Summary(answers))
			}
		})
	}
}

func TestMajority(t *testing.T) {
	x := netip.MustParseAddrPort("203.0.113.1:1000")
	y := netip.MustParseAddrPort("203.0.113.2:1000")
	xOtherPort := netip.MustParseAddrPort("203.0.113.1:2000")
	ok := func(ap netip.AddrPort) Answer { return Answer{Mapped: ap} }
	bad := Answer{Err: ErrNoAnswer}
	for _, tc := range []struct {
		name string
		in   []Answer
		want netip.Addr
	}{
		{"none", nil, netip.Addr{}},
		{"one", []Answer{ok(x)}, x.Addr()},
		{"ports differ, address agrees", []Answer{ok(x), ok(xOtherPort)}, x.Addr()},
		{"tie", []Answer{ok(x), ok(y)}, netip.Addr{}},
		{"two of three", []Answer{ok(x), ok(y), ok(x)}, x.Addr()},
		{"failures vote for nothing", []Answer{ok(x), bad, bad}, netip.Addr{}},
		{"two of three with a failure", []Answer{ok(x), bad, ok(x)}, x.Addr()},
		{"half is not more than half", []Answer{ok(x), ok(x), ok(y), bad}, netip.Addr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, found := Majority(tc.in)
			if found != tc.want.IsValid() || got != tc.want {
				t.Errorf("Majority = %v %v, want %v", got, found, tc.want)
			}
		})
	}
}
