package natcheck

import (
	"fmt"
	"strings"
)

// side is one end of a call: its NAT's mapping and filtering (RFC 4787).
// No NAT is endpoint-independent mapping.
type side struct{ mapping, filtering Behavior }

// PeerKind names a kind of NAT a peer may be behind, for Report.Peers.
type PeerKind struct {
	Name               string
	Mapping, Filtering Behavior
}

// PeerKinds are the peer NATs Report.Peers speaks of: for hole punching,
// address-dependent and address-and-port-dependent mapping behave alike
// (the port changes with the destination), so six kinds cover RFC 4787's
// nine.
var PeerKinds = []PeerKind{
	{"open internet or full cone", EndpointIndependent, EndpointIndependent},
	{"restricted cone", EndpointIndependent, AddressDependent},
	{"port restricted cone", EndpointIndependent, AddressAndPortDependent},
	{"symmetric, not filtering", AddressAndPortDependent, EndpointIndependent},
	{"symmetric, filtering by address", AddressAndPortDependent, AddressDependent},
	{"symmetric, filtering by address and port", AddressAndPortDependent, AddressAndPortDependent},
}

// dependent says whether a mapping gives a new port per destination.
func dependent(m Behavior) bool { return m == AddressDependent || m == AddressAndPortDependent }

// holePunch says whether ICE (RFC 8445) connects a and b directly, each
// side knowing the other's server-reflexive address. Each side sends
// connectivity checks to the other's server-reflexive address; what it
// sends also opens its own NAT's filter towards that address.
//
//   - Both map endpoint-independently: each side's checks leave from its
//     server-reflexive address, the one the other side sends to, so each
//     NAT's filter is open for exactly the other's checks once it has sent
//     its own: direct, whatever the filtering, also port-dependent on both
//     sides (RFC 4787 §4.1 and REQ-8 are why EIM is asked of NATs).
//   - a maps per destination: a's checks to b leave from a port nobody
//     told b of. b's NAT lets them in unless it filters by port (RFC 4787
//     §5: address-and-port-dependent filtering drops a packet from Y:y
//     unless the internal endpoint sent to Y:y; with address-dependent
//     filtering b's own checks to a's IP already opened it). Once in, b
//     learns the port as a peer-reflexive candidate (RFC 8445 §7.3.1.3)
//     and answers there.
//
// So the only failing pairs: one side's endpoint-dependent mapping meets
// the other side's address-and-port-dependent filtering.
func holePunch(a, b side) bool {
	if dependent(a.mapping) && b.filtering == AddressAndPortDependent {
		return false
	}
	if dependent(b.mapping) && a.filtering == AddressAndPortDependent {
		return false
	}
	return true
}

// possible lists the values an undetermined behaviour may take.
func possible(b Behavior) []Behavior {
	if b == Unknown || b == "" {
		return []Behavior{EndpointIndependent, AddressDependent, AddressAndPortDependent}
	}
	return []Behavior{b}
}

// peers sorts every PeerKind by whether self connects to it directly: for
// sure (every value self's unknowns may take says so), a relay for sure,
// or unknown.
func peers(self side) Peers {
	p := Peers{Direct: []string{}, Relay: []string{}, Unknown: []string{}}
	for _, k := range PeerKinds {
		peer := side{k.Mapping, k.Filtering}
		yes, no := false, false
		for _, m := range possible(self.mapping) {
			for _, f := range possible(self.filtering) {
				if holePunch(side{m, f}, peer) {
					yes = true
				} else {
					no = true
				}
			}
		}
		switch {
		case yes && !no:
			p.Direct = append(p.Direct, k.Name)
		case no && !yes:
			p.Relay = append(p.Relay, k.Name)
		default:
			p.Unknown = append(p.Unknown, k.Name)
		}
	}
	return p
}

// conclude names the result and what it means for WebRTC.
func (c *checker) conclude() {
	rep := c.rep
	switch rep.Reach {
	case NoAnswer:
		rep.Classic = "UDP blocked"
		rep.WebRTC = "UDP is blocked (or the server is unreachable): WebRTC needs TURN over TCP or TLS, e.g. turns:HOST:443?transport=tcp"
		rep.RelayNeeded = ptr(true)
		rep.Peers = Peers{Direct: []string{}, Relay: names(PeerKinds), Unknown: []string{}}
		return
	case PortUnreachable:
		rep.Classic = "server not answering on that port"
		rep.WebRTC = "unknown: the server is not answering on that port (ICMP port unreachable / connection refused). " +
			"That is a server problem, not your network's: check that the STUN server runs and listens on " + rep.Server +
			" (a firewall in front of it that rejects UDP looks the same)"
		rep.Peers = peers(side{Unknown, Unknown})
		return
	case Unreachable:
		rep.Classic = "server unreachable"
		rep.WebRTC = "unknown: " + rep.ServerProblem
		rep.Peers = peers(side{Unknown, Unknown})
		return
	}
	noNAT := rep.NAT != nil && !*rep.NAT
	self := side{rep.Mapping, rep.Filtering}
	if noNAT {
		self.mapping = EndpointIndependent
	}
	rep.Peers = peers(self)
	if rep.ServerProblem != "" {
		rep.Classic = "unknown"
		if noNAT {
			rep.Classic = "no NAT (filtering unknown)"
		}
		rep.WebRTC = "unknown: this server cannot run the RFC 5780 tests (see server_problem); UDP works, so TURN over UDP does"
		if noNAT {
			rep.RelayNeeded = ptr(false)
		}
		return
	}
	eim := self.mapping == EndpointIndependent
	switch {
	// Filtering stays Unknown without a server problem when the plain
	// request that opens a filtering test went unanswered. Without NAT, or
	// with endpoint-independent mapping, the name depends on the filtering;
	// with a mapping that depends on the destination it is symmetric
	// whatever the filtering.
	case noNAT && rep.Filtering == Unknown:
		rep.Classic = "no NAT (filtering unknown)"
	case eim && rep.Filtering == Unknown:
		rep.Classic = "unknown"
	case noNAT && rep.Filtering == EndpointIndependent:
		rep.Classic = "open internet"
	case noNAT:
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
	rep.WebRTC = webrtcAdvice(self, rep.Peers)
	switch {
	case eim:
		rep.RelayNeeded = ptr(false)
	case dependent(self.mapping):
		// Port restricted cones (Linux's masquerade, most home routers)
		// and symmetric NATs are common peers: calls will often relay.
		rep.RelayNeeded = ptr(true)
	}
}

func names(ks []PeerKind) []string {
	var s []string
	for _, k := range ks {
		s = append(s, k.Name)
	}
	return s
}

// webrtcAdvice says in a sentence what self's NAT means for calls, from the
// peers table.
func webrtcAdvice(self side, p Peers) string {
	var b strings.Builder
	switch {
	case self.mapping == Unknown:
		b.WriteString("unknown: the mapping tests did not finish")
	case len(p.Relay) == 0 && len(p.Unknown) == 0:
		b.WriteString("direct connection likely with a peer behind any kind of NAT: the mapped address is the same for every destination, " +
			"and checks from a peer whose port changes per destination are let in and learned as peer-reflexive candidates")
	case self.mapping == EndpointIndependent && len(p.Direct) > 0:
		b.WriteString("direct connection likely: the mapped address is the same for every destination, so server-reflexive candidates work, " +
			"also with peers that filter by address and port")
	case dependent(self.mapping):
		b.WriteString("a relay (TURN) will often be needed: the mapped port changes with the destination, so a peer's NAT sees our checks " +
			"come from a port it never sent to, and one that filters by port drops them")
	}
	if len(p.Relay) > 0 {
		fmt.Fprintf(&b, "; a relay is needed against peers behind: %s", strings.Join(p.Relay, "; "))
		if self.filtering == AddressAndPortDependent && self.mapping == EndpointIndependent {
			b.WriteString(" (their checks come from a port this NAT never sent to, and it filters by port)")
		}
	}
	if len(p.Direct) > 0 && self.mapping != Unknown && (len(p.Relay) > 0 || len(p.Unknown) > 0) {
		fmt.Fprintf(&b, "; direct with: %s", strings.Join(p.Direct, "; "))
	}
	if len(p.Unknown) > 0 && self.mapping != Unknown {
		fmt.Fprintf(&b, "; with peers behind %s it depends on this NAT's filtering: the filtering test went unanswered", strings.Join(p.Unknown, "; "))
	}
	return b.String()
}
