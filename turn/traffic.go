package turn

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Relayed traffic: per allocation bytes and packets each way, and the
// totals icegate_relayed_bytes_total and icegate_relayed_packets_total by
// direction and client transport.
//
// The packet path only adds to four atomics on the allocation's relay
// socket (relayConn.traffic): no allocation, no lock, no label lookup, and
// the atomics are written by at most the two loops that touch the
// allocation anyway. The totals are summed at scrape time over the
// allocation table: the live allocations' counters plus what the ended
// ones relayed (allocTable.retired, added when pion deletes them), so a
// total never goes down. What a relay socket counts after its allocation
// left the table (a datagram in flight while it closes) is not in the
// totals: a few packets at most, never counted twice.
//
// What is counted is the application data (the DATA of a Send or Data
// indication, the payload of ChannelData, RFC 8656 §11 and §12), as
// coturn's rb/sb count it, not the TURN framing: client_to_peer when a
// relay socket sends it to the peer, peer_to_client when it is handed to
// the client (on the fast path, or to pion's queue for a TCP, TLS or DTLS
// client). Data dropped by the bandwidth cap, the peer policy or for want
// of a permission is not counted. An RFC 6062 TCP relay's peer
// connections count on the relay's listener (relayListener.traffic): the
// bytes pion copies each way, and a read or a write as one packet, since
// TCP has no datagrams (countedConn).

// Traffic is what an allocation relayed: application bytes and packets
// client to peer and peer to client.
type Traffic struct {
	BytesToPeer     uint64 `json:"bytes_to_peer"`
	PacketsToPeer   uint64 `json:"packets_to_peer"`
	BytesToClient   uint64 `json:"bytes_to_client"`
	PacketsToClient uint64 `json:"packets_to_client"`
}

// Add returns t plus u.
func (t Traffic) Add(u Traffic) Traffic {
	return Traffic{t.BytesToPeer + u.BytesToPeer, t.PacketsToPeer + u.PacketsToPeer,
		t.BytesToClient + u.BytesToClient, t.PacketsToClient + u.PacketsToClient}
}

// Sub returns t minus u; counters only grow, so u is an earlier reading.
func (t Traffic) Sub(u Traffic) Traffic {
	return Traffic{t.BytesToPeer - u.BytesToPeer, t.PacketsToPeer - u.PacketsToPeer,
		t.BytesToClient - u.BytesToClient, t.PacketsToClient - u.PacketsToClient}
}

// IsZero reports whether nothing was relayed.
func (t Traffic) IsZero() bool { return t == Traffic{} }

// trafficCounters are one relay socket's counters.
type trafficCounters struct {
	bytesToPeer, packetsToPeer     atomic.Uint64
	bytesToClient, packetsToClient atomic.Uint64
}

// toPeer counts one datagram of n bytes sent to a peer.
func (c *trafficCounters) toPeer(n int) {
	c.bytesToPeer.Add(uint64(n))
	c.packetsToPeer.Add(1)
}

// toClient counts one datagram of n bytes relayed to the client.
func (c *trafficCounters) toClient(n int) {
	c.bytesToClient.Add(uint64(n))
	c.packetsToClient.Add(1)
}

// load reads the counters.
func (c *trafficCounters) load() Traffic {
	return Traffic{c.bytesToPeer.Load(), c.packetsToPeer.Load(), c.bytesToClient.Load(), c.packetsToClient.Load()}
}

// transports are the client transports the totals are labelled with, in
// the order of transportIndex.
var transports = [...]string{"udp", "tcp", "tls", "dtls"}

// transportIndex is t's index in transports; an unknown one counts as udp
// (the table names every allocation's transport, so none is unknown).
func transportIndex(t string) int {
	for i, s := range transports {
		if s == t {
			return i
		}
	}
	return 0
}

// relayedCollector exports icegate_relayed_bytes_total and
// icegate_relayed_packets_total, summed at scrape time from the allocation
// table.
type relayedCollector struct {
	table          *allocTable
	bytes, packets *prometheus.Desc
}

func newRelayedCollector(t *allocTable) *relayedCollector {
	labels := []string{"direction", "transport"}
	return &relayedCollector{
		table: t,
		bytes: prometheus.NewDesc("icegate_relayed_bytes_total",
			"Application bytes relayed (DATA and ChannelData payloads, not TURN framing), by direction (client_to_peer, peer_to_client) and the client's transport (udp, tcp, tls, dtls). For RFC 6062 TCP relays, the bytes of their peer connections.",
			labels, nil),
		packets: prometheus.NewDesc("icegate_relayed_packets_total",
			"Datagrams relayed, by direction (client_to_peer, peer_to_client) and the client's transport (udp, tcp, tls, dtls). For RFC 6062 TCP relays, reads from and writes to their peer connections.",
			labels, nil),
	}
}

func (c *relayedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.packets
}

func (c *relayedCollector) Collect(ch chan<- prometheus.Metric) {
	sums := c.table.relayedTotals()
	for i, t := range sums {
		tr := transports[i]
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(t.BytesToPeer), "client_to_peer", tr)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(t.BytesToClient), "peer_to_client", tr)
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(t.PacketsToPeer), "client_to_peer", tr)
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(t.PacketsToClient), "peer_to_client", tr)
	}
}

// RelayedTotals returns what the server relayed since it started, by
// client transport (udp, tcp, tls, dtls): the sums behind
// icegate_relayed_bytes_total and icegate_relayed_packets_total.
func (s *Server) RelayedTotals() map[string]Traffic {
	sums := s.allocs.relayedTotals()
	out := make(map[string]Traffic, len(sums))
	for i, t := range sums {
		out[transports[i]] = t
	}
	return out
}
