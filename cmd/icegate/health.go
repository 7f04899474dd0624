package main

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"icegate/config"
	"icegate/internal/acmecert"
	"icegate/turn"
)

// Health endpoints (docs/operations.md, "Health"): /healthz says whether
// the process still serves, /readyz whether it should be sent new clients.
// Both answer JSON naming each check, 200 when all pass and 503 when one
// fails, on the metrics listener and, with http.health_endpoints, on the
// HTTP listener too.
//
// Liveness is about the serving loops, not the HTTP handler that answers:
// the control loop of serve (signals, reloads, the watchdog), every UDP
// event loop (udploop's Ping), and pion's allocation table (its lock, which
// every request takes). A failing /healthz is worth a restart; so it never
// fails for something a restart does not cure (Redis away, draining).
//
// Readiness: every listener is bound (the server has passed start-up and
// is not shutting down), the relay is not draining (SIGUSR1), and the
// cluster bus reaches Redis when a cluster is configured.

const (
	stateStarting int32 = iota
	stateServing
	stateStopping
)

// healthProbeTimeout bounds each liveness check: a loop that does not come
// round in this time is stuck, not busy.
const healthProbeTimeout = 2 * time.Second

// health holds what the checks look at.
type health struct {
	srv *turn.Server
	// bus is the cluster bus's health, nil without a cluster.
	bus func() bool
	// listeners names what is bound, for the readiness report; filled as
	// serve binds them.
	mu        sync.Mutex
	listeners []string

	state atomic.Int32
	// control is how a liveness check asks serve's loop to come round:
	// serve receives a channel and closes it.
	control chan chan struct{}
	// pionBusy is set while a probe of pion's allocation table waits for
	// its lock; a second probe does not start another goroutine behind a
	// deadlocked one but fails at once.
	pionBusy  atomic.Bool
	pionSince atomic.Int64 // unix nanoseconds the waiting probe started
}

func newHealth(srv *turn.Server) *health {
	h := &health{srv: srv, control: make(chan chan struct{})}
	for _, a := range srv.Addrs() {
		h.bound(a.Transport, a.Addr.String())
	}
	return h
}

// bound records a bound listener for the readiness report.
func (h *health) bound(what, addr string) {
	h.mu.Lock()
	h.listeners = append(h.listeners, what+" "+addr)
	h.mu.Unlock()
}

// check is one line of a report.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// report is the body of /healthz and /readyz.
type report struct {
	Status string  `json:"status"` // "ok" or "fail"
	Checks []check `json:"checks"`
}

func newReport(checks []check) report {
	r := report{Status: "ok", Checks: checks}
	for _, c := range checks {
		if !c.OK {
			r.Status = "fail"
		}
	}
	return r
}

// live runs the liveness checks, side by side so that one stuck part
// does not use up the others' time: the answer comes within
// healthProbeTimeout whatever is stuck.
func (h *health) live(ctx context.Context) report {
	ctx, cancel := context.WithTimeout(ctx, healthProbeTimeout)
	defer cancel()
	checks := make([]check, 3)
	var wg sync.WaitGroup
	wg.Go(func() { checks[0] = h.controlLoop(ctx) })
	wg.Go(func() { checks[1] = h.eventLoops(ctx) })
	wg.Go(func() { checks[2] = h.pion(ctx) })
	wg.Wait()
	return newReport(checks)
}

// controlLoop asks serve's loop (signals, reloads, the watchdog) to come
// round.
func (h *health) controlLoop(ctx context.Context) check {
	c := check{Name: "control_loop", OK: true}
	switch h.state.Load() {
	case stateStarting:
		c.Detail = "starting"
	case stateStopping:
		// The loop has handed over to the shutdown, which drains within
		// shutdown_grace; killing the process now would cut that short.
		c.Detail = "stopping: draining allocations"
	default:
		done := make(chan struct{})
		select {
		case h.control <- done:
			select {
			case <-done:
			case <-ctx.Done():
				c.OK, c.Detail = false, "took the request but did not answer"
			}
		case <-ctx.Done():
			c.OK, c.Detail = false, "does not answer (stuck in a reload or a signal)"
		}
	}
	return c
}

// eventLoops pings every UDP event loop of the relay.
func (h *health) eventLoops(ctx context.Context) check {
	c := check{Name: "relay_event_loops", OK: true}
	if n := h.srv.Loops(); n == 0 {
		c.Detail = "none (UDP through Go's net package)"
	} else if err := h.srv.CheckLoops(ctx); err != nil {
		c.OK, c.Detail = false, err.Error()
	} else {
		c.Detail = strconv.Itoa(n) + " answered"
	}
	return c
}

// pion takes pion's allocation table lock (AllocationCount), as every
// Allocate, Refresh and expiry does; a relay deadlocked on it answers
// nothing else either.
func (h *health) pion(ctx context.Context) check {
	c := check{Name: "relay_allocations", OK: true}
	if !h.pionBusy.CompareAndSwap(false, true) {
		since := time.Duration(time.Now().UnixNano() - h.pionSince.Load())
		c.OK, c.Detail = false, "pion's allocation table has not answered for "+since.Round(time.Millisecond).String()
		return c
	}
	h.pionSince.Store(time.Now().UnixNano())
	n := make(chan int, 1)
	go func() {
		defer h.pionBusy.Store(false)
		n <- h.srv.AllocationCount()
	}()
	select {
	case v := <-n:
		c.Detail = strconv.Itoa(v) + " allocations"
	case <-ctx.Done():
		c.OK, c.Detail = false, "pion's allocation table does not answer"
	}
	return c
}

// ready runs the readiness checks.
func (h *health) ready() report {
	c := check{Name: "listeners", OK: true}
	switch h.state.Load() {
	case stateStarting:
		c.OK, c.Detail = false, "starting: not every listener is bound yet"
	case stateStopping:
		c.OK, c.Detail = false, "shutting down"
	default:
		h.mu.Lock()
		c.Detail = strings.Join(h.listeners, ", ")
		h.mu.Unlock()
	}
	checks := []check{c}

	c = check{Name: "draining", OK: true, Detail: "allocating"}
	if h.srv.Draining() {
		c.OK, c.Detail = false, "draining: new allocations refused (SIGUSR1, or shutting down)"
	}
	checks = append(checks, c)

	if h.bus != nil {
		c = check{Name: "cluster_bus", OK: true, Detail: "redis answers"}
		if !h.bus() {
			c.OK, c.Detail = false, "redis does not answer, or this node's delivery channel is not subscribed"
		}
		checks = append(checks, c)
	}
	return newReport(checks)
}

// readyGauge is icegate_ready: /readyz as a metric, for alerts (a
// Prometheus rule cannot call /readyz).
func (h *health) readyGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "icegate_ready",
		Help: "1 when /readyz passes (listeners bound, not draining, cluster bus up when configured), 0 when it answers 503.",
	}, func() float64 {
		if h.ready().Status == "ok" {
			return 1
		}
		return 0
	})
}

// handler serves /healthz and /readyz; any other path is passed to next
// (nil: 404).
func (h *health) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rep report
		switch r.URL.Path {
		case "/healthz":
			rep = h.live(r.Context())
		case "/readyz":
			rep = h.ready()
		default:
			if next == nil {
				http.NotFound(w, r)
			} else {
				next.ServeHTTP(w, r)
			}
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if rep.Status != "ok" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
}

// withHealth puts /healthz and /readyz in front of the HTTP listener's
// handler while http.health_endpoints is on in the config in force (a
// reload switches it).
func withHealth(next http.Handler, h *health, cfg func() *config.Config) http.Handler {
	hh := h.handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.URL.Path == "/healthz" || r.URL.Path == "/readyz") && cfg().HTTP.HealthEndpoints {
			hh.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// buildInfo is icegate_build_info: 1, with the version and the Go release
// as labels (PromQL joins on it to show the version running).
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "icegate_build_info",
		Help:        "1, labelled with the running icegate's version and the Go release it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// certCollector exports when each certificate icegate serves expires, read
// at scrape time from what is in force (a reload, a renewal on disk or by
// ACME shows at the next scrape): the relay's TLS and DTLS certificate
// (source "tls": tls.cert_file by path, or the self-signed one), HTTPS's
// (source "http": http.cert_file by path) and ACME's (source "acme", by
// domain).
type certCollector struct {
	desc *prometheus.Desc
	srv  *turn.Server
	web  *httpServer // nil without HTTP; its certificate pair may change
	acme *acmecert.Manager
	cfg  func() *config.Config
}

func newCertCollector(srv *turn.Server, web *httpServer, acme *acmecert.Manager, cfg func() *config.Config) *certCollector {
	return &certCollector{
		desc: prometheus.NewDesc("icegate_certificate_expiry_timestamp_seconds",
			"When a certificate icegate serves expires (its NotAfter, Unix seconds), by source (tls: the relay's TLS and DTLS, http: HTTPS, acme) and name (the file, \"self-signed\", or the ACME domain).",
			[]string{"source", "name"}, nil),
		srv: srv, web: web, acme: acme, cfg: cfg,
	}
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	emit := func(source, name string, t time.Time) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(t.Unix()), source, name)
	}
	if leaf, from := c.srv.Certificate(); leaf != nil {
		name := "self-signed"
		if from == "file" {
			name = c.cfg().TLS.CertFile
		}
		emit("tls", name, leaf.NotAfter)
	}
	if web := c.web; web != nil {
		if p := web.pair.Load(); p != nil {
			if cert := p.Get(); cert != nil && cert.Leaf != nil {
				emit("http", web.certFile, cert.Leaf.NotAfter)
			}
		}
	}
	if c.acme != nil {
		for domain, t := range c.acme.Expiries() {
			emit("acme", domain, t)
		}
	}
}
