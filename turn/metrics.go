package turn

import (
	"github.com/prometheus/client_golang/prometheus"

	"icegate/internal/udploop"
)

// Metrics are the relay's Prometheus collectors. Labels are bounded: reasons,
// rules and transports come from fixed sets, never from users or addresses.
type Metrics struct {
	Requests        *prometheus.CounterVec // method, outcome
	AuthRefusals    *prometheus.CounterVec // reason
	PeerDenials     *prometheus.CounterVec // rule
	Dropped         *prometheus.CounterVec // reason
	Allocations     prometheus.Gauge
	AllocationsMade *prometheus.CounterVec // outcome
	Permissions     prometheus.Gauge
	Channels        prometheus.Gauge
	BandwidthDrops  prometheus.Counter
	CertReloads     *prometheus.CounterVec // outcome
	// ConnectionsRefused counts TCP and TLS connections closed at accept
	// (per_source, descriptor_reserve) and failed accepts (accept_error).
	ConnectionsRefused *prometheus.CounterVec // reason
	// ConnectionTimeouts counts TCP, TLS and DTLS connections closed for
	// idling, a frame left incomplete, or a handshake not finished in time.
	ConnectionTimeouts *prometheus.CounterVec // reason
	Connections        *prometheus.GaugeVec   // transport
	// PublicDiscoveries counts rounds of relay public address discovery
	// (relay.ipv4_public = "auto"): agreed (the majority is the address
	// in use), changed (a new majority, now advertised), no_majority (the
	// address in use is kept), refused_private (a private majority without
	// relay.private_ok, not taken).
	PublicDiscoveries *prometheus.CounterVec // family, outcome
	// ProxyHeaders counts PROXY protocol headers looked at on the TCP and
	// TLS listeners (and, through cmd/icegate, the HTTP listener), by
	// listener and outcome (internal/proxied: proxied, local, missing,
	// malformed, untrusted).
	ProxyHeaders *prometheus.CounterVec // listener, outcome
}

// NewMetrics creates the collectors and registers them with reg when reg is
// not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_turn_requests_total",
			Help: "STUN/TURN requests seen before pion, by method and how the gate handled them.",
		}, []string{"method", "outcome"}),
		AuthRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_auth_refusals_total",
			Help: "Requests refused for their credentials, by reason.",
		}, []string{"reason"}),
		PeerDenials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_peer_denials_total",
			Help: "Permissions and channel bindings refused by the peer policy, by rule.",
		}, []string{"rule"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_packets_dropped_total",
			Help: "Inbound packets dropped before pion, by reason.",
		}, []string{"reason"}),
		Allocations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "icegate_allocations",
			Help: "Live TURN allocations.",
		}),
		AllocationsMade: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_allocation_attempts_total",
			Help: "Allocate requests that asked for a relay, by outcome: ok, total_quota, range_full, bind_error, token_invalid, user_quota, draining, family_disabled, tcp_disabled, mismatch, error.",
		}, []string{"outcome"}),
		Permissions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "icegate_permissions",
			Help: "Live TURN permissions.",
		}),
		Channels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "icegate_channels",
			Help: "Live TURN channel bindings.",
		}),
		BandwidthDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "icegate_bandwidth_drops_total",
			Help: "Relayed packets dropped by the per-allocation bandwidth limit.",
		}),
		CertReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_tls_certificate_reloads_total",
			Help: "Certificate file reloads, by outcome.",
		}, []string{"outcome"}),
		ConnectionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_connections_refused_total",
			Help: "TCP and TLS connections refused at accept, and failed accepts, by reason.",
		}, []string{"reason"}),
		ConnectionTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_connection_timeouts_total",
			Help: "TCP, TLS and DTLS connections closed by a timeout, by reason.",
		}, []string{"reason"}),
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "icegate_connections",
			Help: "Open TCP, TLS and DTLS client connections, by transport.",
		}, []string{"transport"}),
		PublicDiscoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_relay_public_discoveries_total",
			Help: "Rounds of relay public address discovery (relay.ipv4_public = \"auto\"), by family (ipv4, ipv6) and outcome (agreed, changed, no_majority, refused_private).",
		}, []string{"family", "outcome"}),
		ProxyHeaders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_proxy_headers_total",
			Help: "PROXY protocol headers on connections from listen.proxy_from (or http.proxy_from), and headers refused from elsewhere, by listener and outcome: proxied, local, missing, malformed, untrusted.",
		}, []string{"listener", "outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.AuthRefusals, m.PeerDenials, m.Dropped, m.Allocations,
			m.AllocationsMade, m.Permissions, m.Channels, m.BandwidthDrops, m.CertReloads,
			m.ConnectionsRefused, m.ConnectionTimeouts, m.Connections, m.PublicDiscoveries, m.ProxyHeaders)
	}
	return m
}

// loopCollector exports the event loops' counters (udploop.Stats), summed
// over the loops, so that an operator (and the benchmark) can see how many
// datagrams each system call moves: the loops' whole point.
type loopCollector struct {
	loops []*udploop.Loop

	syscalls, datagrams, pauses *prometheus.Desc
}

func newLoopCollector(loops []*udploop.Loop) *loopCollector {
	return &loopCollector{
		loops: loops,
		syscalls: prometheus.NewDesc("icegate_loop_syscalls_total",
			"System calls made by the UDP event loops, by call (wakeup: epoll_wait returning ready sockets).",
			[]string{"call"}, nil),
		datagrams: prometheus.NewDesc("icegate_loop_datagrams_total",
			"Datagrams moved by the UDP event loops' batched calls, by direction (out_segmented: the part of out that left in UDP_SEGMENT trains).",
			[]string{"direction"}, nil),
		pauses: prometheus.NewDesc("icegate_loop_relay_pauses_total",
			"Times the UDP event loops stopped reading a relay socket of a TCP, TLS or DTLS client's allocation until pion caught up (flow control: the data waits in the socket's kernel buffer, nothing is dropped).",
			nil, nil),
	}
}

func (c *loopCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.syscalls
	ch <- c.datagrams
	ch <- c.pauses
}

func (c *loopCollector) Collect(ch chan<- prometheus.Metric) {
	var sum udploop.Stats
	for _, l := range c.loops {
		sum = sum.Add(l.Stats())
	}
	ch <- prometheus.MustNewConstMetric(c.syscalls, prometheus.CounterValue, float64(sum.Wakeups), "wakeup")
	ch <- prometheus.MustNewConstMetric(c.syscalls, prometheus.CounterValue, float64(sum.RecvCalls), "recv")
	ch <- prometheus.MustNewConstMetric(c.syscalls, prometheus.CounterValue, float64(sum.SendCalls), "send")
	ch <- prometheus.MustNewConstMetric(c.datagrams, prometheus.CounterValue, float64(sum.RecvDatagrams), "in")
	ch <- prometheus.MustNewConstMetric(c.datagrams, prometheus.CounterValue, float64(sum.SendDatagrams), "out")
	ch <- prometheus.MustNewConstMetric(c.datagrams, prometheus.CounterValue, float64(sum.TrainDatagrams), "out_segmented")
	ch <- prometheus.MustNewConstMetric(c.pauses, prometheus.CounterValue, float64(sum.Pauses))
}
