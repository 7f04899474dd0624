package turn

import (
	"github.com/prometheus/client_golang/prometheus"
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
			Help: "Allocate requests that asked for a relay, by outcome: ok, total_quota, range_full, bind_error, token_invalid, user_quota, draining, family_disabled, tcp_disabled, error.",
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
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.AuthRefusals, m.PeerDenials, m.Dropped, m.Allocations,
			m.AllocationsMade, m.Permissions, m.Channels, m.BandwidthDrops, m.CertReloads,
			m.ConnectionsRefused, m.ConnectionTimeouts, m.Connections)
	}
	return m
}
