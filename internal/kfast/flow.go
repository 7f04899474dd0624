package kfast

import (
	"net/netip"
	"time"
)

// DefaultMaxFlows is how many channel bindings the program holds when
// Config.MaxFlows is zero.
const DefaultMaxFlows = 65536

// Config is how the program's maps are sized.
type Config struct {
	// MaxFlows bounds the channel bindings the kernel holds (each map's
	// max_entries: flows per direction, and allocations with counters).
	// Default 65536 (DefaultMaxFlows); a full map makes Bind fail and the
	// flow stays in user space.
	MaxFlows int
	// Clsact attaches the program as a classic tc filter (a clsact qdisc
	// and a bpf filter in direct-action mode) even where the kernel has
	// TCX. Default false: TCX where the kernel has it (Linux ≥ 6.6), the
	// classic filter only on older kernels.
	Clsact bool
}

func (c Config) maxFlows() int {
	if c.MaxFlows <= 0 {
		return DefaultMaxFlows
	}
	return c.MaxFlows
}

// Flow is one channel binding of a UDP client's allocation (RFC 8656 §12),
// both directions: ChannelData on Channel from Client to Listener goes out
// as UDP from Relay to Peer, and UDP from Peer to Relay goes out as
// ChannelData on Channel from Listener to Client. All four addresses are of
// one family (an IPv4 client with an IPv6 peer stays in user space).
type Flow struct {
	// Alloc is the allocation's id: the key of its counters, and what
	// RemoveAllocation removes by.
	Alloc uint64
	// Client is the client's address as the server sees it, and Listener
	// the server address it sends to (the 5-tuple, RFC 8656 §2).
	// Listener may be the unspecified address with the listener's port
	// (a socket bound to 0.0.0.0 or [::], which also takes IPv4): the
	// program then takes the client's datagrams on any local address, and
	// answers from the address the kernel would pick for that socket (the
	// route's preferred source to the client), as the user-space path
	// does.
	Client, Listener netip.AddrPort
	// Relay is the relayed transport address as this host's sockets see
	// it (the local address, not an address a NAT maps to it); it may be
	// unspecified like Listener. Peer is the peer the channel is bound to.
	Relay, Peer netip.AddrPort
	// Channel is the channel number, 0x4000-0x7FFF (stunwire.ValidChannel).
	Channel uint16
	// Expires is when the kernel stops relaying this flow whatever user
	// space does: no later than pion's channel binding and permission
	// would lapse.
	Expires time.Time
}

// Counters are what the kernel relayed for one allocation: packets, and
// bytes of application data (the ChannelData payload, without headers, as
// the user-space path counts them), each way.
type Counters struct {
	ToPeerPackets, ToPeerBytes     uint64
	ToClientPackets, ToClientBytes uint64
}
