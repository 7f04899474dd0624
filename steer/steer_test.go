package steer

import (
	"net/netip"
	"testing"
)

func node(id string, allocs int, mod ...func(*Node)) Node {
	n := Node{ID: id, Host: id + ".example.org", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		Port: 3478, TLSPort: 5349, UDP: true, TCP: true, TLS: true,
		Load: Load{Allocations: allocs, Capacity: 100, BitRate: -1}}
	for _, m := range mod {
		m(&n)
	}
	return n
}

func TestPick(t *testing.T) {
	draining := func(n *Node) { n.Draining = true }
	hot := func(n *Node) { n.CPU = 0.95 }
	noHost := func(n *Node) { n.Host = "" }
	bits := func(b float64) func(*Node) { return func(n *Node) { n.BitRate = b } }
	for _, c := range []struct {
		name  string
		nodes []Node
		self  string
		want  string // "" means none
	}{
		{"alone", []Node{node("a", 50)}, "a", "a"},
		{"all equal: self", []Node{node("a", 5), node("b", 5), node("c", 5)}, "b", "b"},
		{"least allocations", []Node{node("a", 5), node("b", 1), node("c", 3)}, "a", "b"},
		{"share of capacity, not count", []Node{node("a", 10), node("b", 15, func(n *Node) { n.Capacity = 1000 })}, "a", "b"},
		{"equal others: lowest id", []Node{node("a", 9), node("c", 1), node("b", 1)}, "a", "b"},
		{"never draining", []Node{node("a", 5), node("b", 0, draining)}, "a", "a"},
		{"never full", []Node{node("a", 100), node("b", 100)}, "a", ""},
		{"self draining: another", []Node{node("a", 0, draining), node("b", 7)}, "a", "b"},
		{"all draining", []Node{node("a", 0, draining), node("b", 0, draining)}, "a", ""},
		{"hot CPU last", []Node{node("a", 50), node("b", 1, hot)}, "a", "a"},
		{"all hot: by allocations", []Node{node("a", 50, hot), node("b", 1, hot)}, "a", "b"},
		{"no host is not vended", []Node{node("a", 50), node("b", 1, noHost)}, "a", "a"},
		{"self without a host still counts", []Node{node("a", 1, noHost), node("b", 50)}, "a", "a"},
		{"bit rate breaks a clear tie", []Node{node("a", 5, bits(50e6)), node("b", 5, bits(10e6))}, "a", "b"},
		{"bit rate within a fifth: self", []Node{node("a", 5, bits(11e6)), node("b", 5, bits(10e6))}, "a", "a"},
		{"bit rate unknown on one side", []Node{node("a", 5, bits(50e6)), node("b", 5)}, "a", "a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Pick(c.nodes, c.self)
			if !ok && c.want != "" || ok && got.ID != c.want {
				t.Errorf("Pick = %q %v, want %q", got.ID, ok, c.want)
			}
		})
	}
}

func TestPickAlternate(t *testing.T) {
	v6 := func(n *Node) { n.Addrs = []netip.Addr{netip.MustParseAddr("2001:db8::2")} }
	udpOnly := func(n *Node) { n.TCP, n.TLS = false, false }
	nodes := []Node{node("a", 0), node("b", 9, udpOnly), node("c", 20, v6)}
	for _, c := range []struct {
		transport string
		v6        bool
		want      string
		ap        string
	}{
		{"udp", false, "b", "192.0.2.1:3478"}, // never self, even the least loaded
		{"tcp", false, "", ""},                // b serves no TCP, c no IPv4
		{"udp", true, "c", "[2001:db8::2]:3478"},
		{"tls", true, "c", "[2001:db8::2]:5349"},
		{"dtls", true, "", ""}, // nobody serves DTLS
		{"sctp", false, "", ""},
	} {
		n, ap, ok := PickAlternate(nodes, "a", c.transport, c.v6)
		if !ok && c.want != "" || ok && (n.ID != c.want || ap.String() != c.ap) {
			t.Errorf("%s v6=%v: %q %v %v, want %q %s", c.transport, c.v6, n.ID, ap, ok, c.want, c.ap)
		}
	}
	// A draining or full node is never the alternate.
	nodes[1].Draining = true
	if n, _, ok := PickAlternate(nodes, "a", "udp", false); ok {
		t.Errorf("picked draining %q", n.ID)
	}
}
