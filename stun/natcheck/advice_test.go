package natcheck

import (
	"slices"
	"strings"
	"testing"
)

// TestHolePunch checks the pair rule against the classic compatibility
// table (RFC 4787's behaviours meeting ICE's connectivity checks), written
// out by hand: hole punching fails only where one side's endpoint-dependent
// mapping meets the other's address-and-port-dependent filtering.
func TestHolePunch(t *testing.T) {
	kinds := map[string]side{
		"full cone":       {EndpointIndependent, EndpointIndependent},
		"restricted cone": {EndpointIndependent, AddressDependent},
		"port restricted": {EndpointIndependent, AddressAndPortDependent},
		"ADM+EIF":         {AddressDependent, EndpointIndependent},
		"ADM+ADF":         {AddressDependent, AddressDependent},
		"ADM+APDF":        {AddressDependent, AddressAndPortDependent},
		"symmetric+EIF":   {AddressAndPortDependent, EndpointIndependent},
		"symmetric+ADF":   {AddressAndPortDependent, AddressDependent},
		"symmetric":       {AddressAndPortDependent, AddressAndPortDependent},
	}
	// The pairs that need a relay; every other pair connects directly.
	fail := [][2]string{
		{"port restricted", "ADM+EIF"}, {"port restricted", "ADM+ADF"}, {"port restricted", "ADM+APDF"},
		{"port restricted", "symmetric+EIF"}, {"port restricted", "symmetric+ADF"}, {"port restricted", "symmetric"},
		{"ADM+APDF", "ADM+EIF"}, {"ADM+APDF", "ADM+ADF"}, {"ADM+APDF", "ADM+APDF"},
		{"ADM+APDF", "symmetric+EIF"}, {"ADM+APDF", "symmetric+ADF"}, {"ADM+APDF", "symmetric"},
		{"symmetric", "ADM+EIF"}, {"symmetric", "ADM+ADF"},
		{"symmetric", "symmetric+EIF"}, {"symmetric", "symmetric+ADF"}, {"symmetric", "symmetric"},
	}
	for an, a := range kinds {
		for bn, b := range kinds {
			want := !slices.ContainsFunc(fail, func(p [2]string) bool { return p == [2]string{an, bn} || p == [2]string{bn, an} })
			if got := holePunch(a, b); got != want {
				t.Errorf("%s meets %s: direct %v, want %v", an, bn, got, want)
			}
		}
	}
}

// TestAdvice covers every mapping × filtering combination natcheck can
// report, with and without NAT, including the unknowns: which peers need a
// relay, which connect directly, which depend on what was not learned, and
// what the advice says. The expectations are written out by hand.
func TestAdvice(t *testing.T) {
	const (
		fc   = "open internet or full cone"
		rc   = "restricted cone"
		prc  = "port restricted cone"
		symE = "symmetric, not filtering"
		symA = "symmetric, filtering by address"
		symP = "symmetric, filtering by address and port"
	)
	all := []string{fc, rc, prc, symE, symA, symP}
	sym := []string{symE, symA, symP}
	type want struct {
		classic string
		relay   []string
		unknown []string
		needed  *bool
	}
	no, yes := ptr(false), ptr(true)
	EI, AD, APD, U := EndpointIndependent, AddressDependent, AddressAndPortDependent, Unknown
	cases := []struct {
		nat        bool
		m, f       Behavior
		want       want
		adviceHas  []string
		adviceLack []string
	}{
		{false, EI, EI, want{"open internet", nil, nil, no}, []string{"any kind of NAT"}, nil},
		{false, EI, AD, want{"no NAT, firewall with address-dependent filtering (symmetric UDP firewall)", nil, nil, no}, []string{"any kind of NAT"}, nil},
		{false, EI, APD, want{"no NAT, firewall with address-and-port-dependent filtering (symmetric UDP firewall)", sym, nil, no}, nil, nil},
		{false, EI, U, want{"no NAT (filtering unknown)", nil, sym, no}, []string{"filtering test went unanswered"}, nil},
		{true, EI, EI, want{"full cone", nil, nil, no}, []string{"any kind of NAT"}, nil},
		{true, EI, AD, want{"restricted cone", nil, nil, no}, []string{"any kind of NAT"}, nil},
		// The case the issue found wrong: two port restricted cones connect
		// directly; only symmetric peers need a relay.
		{true, EI, APD, want{"port restricted cone", sym, nil, no},
			[]string{"also with peers that filter by address and port", "direct with: " + fc + "; " + rc + "; " + prc},
			[]string{"also filters by port"}},
		{true, EI, U, want{"unknown", nil, sym, no}, []string{"filtering test went unanswered"}, nil},
		{true, AD, EI, want{"symmetric", []string{prc, symP}, nil, yes}, []string{"direct with: " + fc + "; " + rc + "; " + symE + "; " + symA}, nil},
		{true, AD, AD, want{"symmetric", []string{prc, symP}, nil, yes}, nil, nil},
		{true, AD, APD, want{"symmetric", []string{prc, symE, symA, symP}, nil, yes}, []string{"direct with: " + fc + "; " + rc}, nil},
		{true, AD, U, want{"symmetric", []string{prc, symP}, []string{symE, symA}, yes}, nil, nil},
		{true, APD, EI, want{"symmetric", []string{prc, symP}, nil, yes}, nil, nil},
		{true, APD, AD, want{"symmetric", []string{prc, symP}, nil, yes}, nil, nil},
		{true, APD, APD, want{"symmetric", []string{prc, symE, symA, symP}, nil, yes}, nil, nil},
		{true, APD, U, want{"symmetric", []string{prc, symP}, []string{symE, symA}, yes}, nil, nil},
		{true, U, EI, want{"unknown", nil, []string{prc, symP}, nil}, []string{"mapping tests did not finish"}, nil},
		{true, U, AD, want{"unknown", nil, []string{prc, symP}, nil}, nil, nil},
		{true, U, APD, want{"unknown", sym, []string{prc}, nil}, nil, nil},
		{true, U, U, want{"unknown", nil, []string{prc, symE, symA, symP}, nil}, nil, nil},
	}
	for _, c := range cases {
		name := string(c.m) + " mapping, " + string(c.f) + " filtering"
		if !c.nat {
			name = "no NAT, " + string(c.f) + " filtering"
		}
		t.Run(name, func(t *testing.T) {
			ch := &checker{rep: &Report{Reach: Answered, UDP: ptr(true), NAT: ptr(c.nat), Mapping: c.m, Filtering: c.f, Confidence: High}}
			ch.conclude()
			rep := ch.rep
			var direct []string
			for _, k := range all {
				if !slices.Contains(c.want.relay, k) && !slices.Contains(c.want.unknown, k) {
					direct = append(direct, k)
				}
			}
			if rep.Classic != c.want.classic {
				t.Errorf("classic %q, want %q", rep.Classic, c.want.classic)
			}
			if !slices.Equal(rep.Peers.Relay, orEmpty(c.want.relay)) || !slices.Equal(rep.Peers.Unknown, orEmpty(c.want.unknown)) ||
				!slices.Equal(rep.Peers.Direct, orEmpty(direct)) {
				t.Errorf("peers %+v, want relay %q unknown %q direct %q", rep.Peers, c.want.relay, c.want.unknown, direct)
			}
			if (rep.RelayNeeded == nil) != (c.want.needed == nil) || (rep.RelayNeeded != nil && *rep.RelayNeeded != *c.want.needed) {
				t.Errorf("relay_needed %s, want %s", b(rep.RelayNeeded), b(c.want.needed))
			}
			// The advice names every peer that needs a relay.
			if len(c.want.relay) > 0 && !strings.Contains(rep.WebRTC, "a relay is needed against peers behind: "+strings.Join(c.want.relay, "; ")) {
				t.Errorf("advice %q does not name the relay peers %q", rep.WebRTC, c.want.relay)
			}
			if len(c.want.relay) == 0 && strings.Contains(rep.WebRTC, "relay is needed against") {
				t.Errorf("advice %q names relay peers, want none", rep.WebRTC)
			}
			for _, s := range c.adviceHas {
				if !strings.Contains(rep.WebRTC, s) {
					t.Errorf("advice %q lacks %q", rep.WebRTC, s)
				}
			}
			for _, s := range c.adviceLack {
				if strings.Contains(rep.WebRTC, s) {
					t.Errorf("advice %q says %q", rep.WebRTC, s)
				}
			}
		})
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
