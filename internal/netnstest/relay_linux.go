//go:build linux

package netnstest

import (
	"net/netip"
	"testing"
)

// Relay is the topology of the relay tests (the kernel fast path, a TURN
// server in the middle): three namespaces joined by two veth pairs, on
// 10.200.0.0/16 and fd00::/8 (ULA) only:
//
//	client ns  c0 10.200.1.2/24 fd00:1::2/64
//	   | veth
//	server ns  s0 10.200.1.1/24 fd00:1::1/64   (listener)
//	           s1 10.200.2.1/24 fd00:2::1/64   (relayed addresses)
//	   | veth
//	peer ns    p0 10.200.2.2/24 fd00:2::2/64
//
// The client and the peer reach only the server's address on their own
// link (no routes through it): a relay is what joins them.
type Relay struct {
	*Topology
	Client, Server, Peer string // the namespaces' system names
}

// Addresses of the Relay topology.
var (
	ClientIP4 = netip.MustParseAddr("10.200.1.2")
	ListenIP4 = netip.MustParseAddr("10.200.1.1")
	RelayIP4  = netip.MustParseAddr("10.200.2.1")
	PeerIP4   = netip.MustParseAddr("10.200.2.2")
	ClientIP6 = netip.MustParseAddr("fd00:1::2")
	ListenIP6 = netip.MustParseAddr("fd00:1::1")
	RelayIP6  = netip.MustParseAddr("fd00:2::1")
	PeerIP6   = netip.MustParseAddr("fd00:2::2")
)

// ServerIfaces are the server namespace's devices: s0 towards the client,
// s1 towards the peer.
var ServerIfaces = []string{"s0", "s1"}

// NewRelay builds the Relay topology, its namespaces named after prefix.
// The server's devices send complete checksums (TxChecksumOff), so that
// the client and the peer verify what the server, or a program on its
// devices, wrote. senderTxOff turns it off on the client's and the peer's
// devices too, so that their datagrams reach the server with a full
// checksum (CHECKSUM_NONE) instead of only the pseudo-header sum
// (CHECKSUM_PARTIAL).
func NewRelay(t testing.TB, prefix string, senderTxOff bool) *Relay {
	t.Helper()
	tp := New(t, prefix, "c", "s", "p")
	r := &Relay{Topology: tp, Client: tp.NS("c"), Server: tp.NS("s"), Peer: tp.NS("p")}
	tp.Veth("c", "c0", "s", "s0", 0)
	tp.Veth("p", "p0", "s", "s1", 0)
	tp.Addr("c", "c0", "10.200.1.2/24", "fd00:1::2/64")
	tp.Addr("s", "s0", "10.200.1.1/24", "fd00:1::1/64")
	tp.Addr("s", "s1", "10.200.2.1/24", "fd00:2::1/64")
	tp.Addr("p", "p0", "10.200.2.2/24", "fd00:2::2/64")
	tp.TxChecksumOff("s", ServerIfaces...)
	if senderTxOff {
		tp.TxChecksumOff("c", "c0")
		tp.TxChecksumOff("p", "p0")
	}
	return r
}
