// Package steer owns the TURN side of a cluster: what each node tells the
// others about its relay (its public URLs and addresses, its load, whether
// it is draining or full) and the choice, made from those, of the node new
// TURN clients should go to. The signaling side vends that node's URLs in
// iceServers, and the relay names it in a 300 Try Alternate (RFC 8489 §10)
// when it will not take an Allocate itself.
//
// The records live in Redis with a TTL heartbeat (Directory); the choice
// (Pick, PickAlternate) is a pure function of them. The package knows
// neither the relay nor signaling: cmd/icegate feeds it this node's Load
// and hands its choices to both.
package steer

import (
	"cmp"
	"net/netip"
	"slices"
)

// Node is what one node publishes about its relay, its heartbeat record.
type Node struct {
	// ID is the cluster node id (cluster.node_id).
	ID string `json:"id"`
	// Host is the host name or IP of its stun:/turn:/turns: URLs
	// (signaling.turn_host). A node without one is never vended to
	// clients of other nodes: they could not reach it by its name.
	Host string `json:"host,omitempty"`
	// Addrs are the IP addresses clients reach its relay at: Host itself
	// when it is an IP, else what Host resolved to. ALTERNATE-SERVER
	// carries an address, not a name (RFC 8489 §14.15), so a node without
	// one is never named in a 300.
	Addrs []netip.Addr `json:"addrs,omitempty"`
	// Port is its UDP and TCP port, TLSPort its TLS and DTLS port.
	Port    int `json:"port"`
	TLSPort int `json:"tls_port,omitempty"`
	// UDP, TCP, TLS and DTLS are the transports its relay serves.
	UDP  bool `json:"udp,omitempty"`
	TCP  bool `json:"tcp,omitempty"`
	TLS  bool `json:"tls,omitempty"`
	DTLS bool `json:"dtls,omitempty"`
	// Realm is its REALM (auth.realm): a 300 carries it, so a client
	// such as libwebrtc authenticates with the alternate's realm.
	Realm string `json:"realm,omitempty"`
	// Nonce is a NONCE its relay accepts for at least half an hour from
	// Updated (turn.Server.Nonce): a 300 naming it carries it, since
	// libwebrtc allocates at the alternate with the 300's nonce and fails
	// on a 438.
	Nonce string `json:"nonce,omitempty"`
	// Load is what the node measured at Updated.
	Load
	// Updated is when the record was written, Unix milliseconds of the
	// writer's clock.
	Updated int64 `json:"updated"`
}

// Load is a node's relay load.
type Load struct {
	// Allocations are its live allocations; Capacity its
	// limits.allocations_total (0: no cap, counted as 10000 when
	// comparing).
	Allocations int `json:"allocations"`
	Capacity    int `json:"capacity,omitempty"`
	// BitRate is the bit rate it relayed over the last heartbeat, both
	// directions, in bits per second; -1 when the relay does not count
	// bytes.
	BitRate float64 `json:"bit_rate"`
	// CPU is the process's CPU time over the last heartbeat as a share of
	// all the host's cores, 0 to 1.
	CPU float64 `json:"cpu"`
	// Draining says it refuses new allocations (SIGUSR1, shutting down).
	Draining bool `json:"draining,omitempty"`
}

// Defaults and thresholds of the choice.
const (
	// defaultCapacity stands in for a Capacity of 0 (no cap): the default
	// of limits.allocations_total, so that a node without a cap is
	// compared as one with the usual one.
	defaultCapacity = 10000
	// HotCPU is the CPU share above which a node is taken only when every
	// candidate is as hot: past it a relay starts to lose packets before it
	// runs out of allocations (the relay is CPU bound; docs/performance.md).
	HotCPU = 0.9
)

// Full reports whether the node is at its allocation cap.
func (l Load) Full() bool { return l.Capacity > 0 && l.Allocations >= l.Capacity }

// usable reports whether n may take new allocations: not draining, not
// full.
func (n *Node) usable() bool { return !n.Draining && !n.Full() }

// share is the node's allocations as a share of its capacity.
func (n *Node) share() float64 {
	c := n.Capacity
	if c <= 0 {
		c = defaultCapacity
	}
	return float64(n.Allocations) / float64(c)
}

// compare orders two usable nodes by load: a hot CPU last, then the share
// of allocations, then (when both count bytes and differ by more than a
// fifth) the bit rate. 0 means as loaded as each other.
func compare(a, b *Node) int {
	if c := cmp.Compare(boolInt(a.CPU >= HotCPU), boolInt(b.CPU >= HotCPU)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.share(), b.share()); c != 0 {
		return c
	}
	if a.BitRate >= 0 && b.BitRate >= 0 {
		// Bit rates move with every packet; only a clear difference
		// counts, or the choice would swing between equal nodes at every
		// heartbeat.
		lo, hi := min(a.BitRate, b.BitRate), max(a.BitRate, b.BitRate)
		if hi > 1.2*lo+1e6 {
			return cmp.Compare(a.BitRate, b.BitRate)
		}
	}
	return 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Pick chooses the node new TURN clients should go to, among nodes (every
// record, self's included, as Directory.Nodes gives them) for the node
// self: the least loaded usable node with a Host (or self), self when it is usable
// and as little loaded as the best, else the lowest id among the best
// (so every node picks the same). A draining or full node is never picked.
// ok is false when none is usable.
func Pick(nodes []Node, self string) (Node, bool) {
	// Self without a Host is still a choice: its own clients reach it by
	// the name they reached signaling at.
	return pick(nodes, self, func(n *Node) bool { return n.Host != "" || n.ID == self })
}

// PickAlternate chooses the node a 300 Try Alternate names for an
// Allocate this node will not take (RFC 8489 §10): as Pick, but never self,
// and only a node that serves transport ("udp", "tcp", "tls", "dtls") at an
// address of the client's family (the alternate must be reachable the
// same way: RFC 8489 §14.15 carries one address and port). It returns
// that node and the address and port to name.
func PickAlternate(nodes []Node, self, transport string, v6 bool) (Node, netip.AddrPort, bool) {
	addr := func(n *Node) (netip.AddrPort, bool) {
		port := n.Port
		switch transport {
		case "udp":
			if !n.UDP {
				return netip.AddrPort{}, false
			}
		case "tcp":
			if !n.TCP {
				return netip.AddrPort{}, false
			}
		case "tls", "dtls":
			if transport == "tls" && !n.TLS || transport == "dtls" && !n.DTLS {
				return netip.AddrPort{}, false
			}
			port = n.TLSPort
		default:
			return netip.AddrPort{}, false
		}
		if port <= 0 || port > 65535 {
			return netip.AddrPort{}, false
		}
		for _, a := range n.Addrs {
			if a = a.Unmap(); a.Is6() == v6 && a.IsValid() && !a.IsUnspecified() {
				return netip.AddrPortFrom(a, uint16(port)), true
			}
		}
		return netip.AddrPort{}, false
	}
	n, ok := pick(nodes, "", func(n *Node) bool {
		_, ok := addr(n)
		return n.ID != self && ok
	})
	if !ok {
		return Node{}, netip.AddrPort{}, false
	}
	ap, _ := addr(&n)
	return n, ap, true
}

// pick is the choice of Pick among the usable nodes that pass eligible.
func pick(nodes []Node, self string, eligible func(*Node) bool) (Node, bool) {
	var best []*Node
	for i := range nodes {
		n := &nodes[i]
		if !n.usable() || !eligible(n) {
			continue
		}
		switch {
		case len(best) == 0:
			best = append(best, n)
		default:
			switch c := compare(n, best[0]); {
			case c < 0:
				best = append(best[:0], n)
			case c == 0:
				best = append(best, n)
			}
		}
	}
	if len(best) == 0 {
		return Node{}, false
	}
	if i := slices.IndexFunc(best, func(n *Node) bool { return n.ID == self }); i >= 0 {
		return *best[i], true
	}
	return *slices.MinFunc(best, func(a, b *Node) int { return cmp.Compare(a.ID, b.ID) }), true
}
