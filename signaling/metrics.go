package signaling

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the signaling server's collectors. Labels are bounded: message
// types come from the protocol's list, reasons from this package's codes.
type metrics struct {
	connections prometheus.Gauge
	peers       prometheus.GaugeFunc
	rooms       prometheus.GaugeFunc
	messages    *prometheus.CounterVec // type, outcome
	dropped     *prometheus.CounterVec // reason
	refused     *prometheus.CounterVec // reason
	resumes     *prometheus.CounterVec // outcome
	api         *prometheus.CounterVec // endpoint, status
	sessions    *sessionCollector
}

// newMetrics makes the collectors; peers and rooms are read at scrape time.
func newMetrics(reg prometheus.Registerer, peers, rooms func() float64, counts func(context.Context) (map[string]int, error)) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "icegate_signaling_connections", Help: "Open signaling WebSockets.",
		}),
		peers: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "icegate_signaling_peers", Help: "Signaling peers connected to this node.",
		}, peers),
		rooms: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "icegate_signaling_rooms", Help: "Signaling rooms with at least one peer, in the whole cluster.",
		}, rooms),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_signaling_messages_total", Help: "Client messages by type and outcome (ok, or the error code).",
		}, []string{"type", "outcome"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_signaling_dropped_total", Help: "Server messages not queued, by reason.",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_signaling_refused_total", Help: "Requests refused before a WebSocket upgrade or API answer, by reason.",
		}, []string{"reason"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_signaling_resumes_total", Help: "Resume attempts by outcome.",
		}, []string{"outcome"}),
		api: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_signaling_api_requests_total", Help: "Server API (/api/v1/) requests by endpoint and HTTP status.",
		}, []string{"endpoint", "status"}),
		sessions: &sessionCollector{counts: counts, desc: prometheus.NewDesc("icegate_signaling_sessions",
			"Signaling sessions in the whole cluster (on one node: this one), by state: connected (a node holds its connection), held (its connection dropped; it may resume until its grace ends).",
			[]string{"state"}, nil)},
	}
	// The drop reasons are few and known: exported at 0 from the start, so
	// that a rate() over them (a dashboard, an alert) has a series before
	// the first drop.
	for _, reason := range []string{"queue-full", "reply", "token-expired", "turn-event"} {
		m.dropped.WithLabelValues(reason)
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.peers, m.rooms, m.messages, m.dropped, m.refused, m.resumes, m.api, m.sessions)
	}
	return m
}

// sessionCollector reads the bus's session counts at scrape time (one
// operation, on Redis in a cluster). When the bus does not answer it
// exports nothing: a scrape without the series says so, and a stale count
// would not.
type sessionCollector struct {
	counts func(context.Context) (map[string]int, error)
	desc   *prometheus.Desc
}

func (c *sessionCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *sessionCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), busWait)
	defer cancel()
	counts, err := c.counts(ctx)
	if err != nil {
		return
	}
	var connected int
	for node, n := range counts {
		if node != "" {
			connected += n
		}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(connected), "connected")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[""]), "held")
}

// typeLabel bounds the type label to the protocol's types.
func typeLabel(t string) string {
	switch t {
	case TypeJoin, TypeLeave, TypeOffer, TypeAnswer, TypeCandidate, TypeMessage, TypeBroadcast,
		TypePing, TypeRenew, TypeTURNEvents, TypeBye, TypeAuth, "login":
		return t
	}
	return "other"
}
