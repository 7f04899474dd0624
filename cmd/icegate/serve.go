package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"icegate/config"
	"icegate/internal/adminpage"
	"icegate/internal/udploop"
	"icegate/signaling"
	"icegate/signaling/redisbus"
	"icegate/turn"
	usagerec "icegate/usage"
)

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "serve [-config FILE]")
	cfgPath := fs.String("config", "", "HCL config file (default: the embedded defaults, see `icegate config default`)")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: serve takes no arguments (got %q)", errUsage, pos)
	}
	cfg, warnings, err := loadForServe(*cfgPath, stderr)
	if err != nil {
		return err
	}

	level := new(slog.LevelVar)
	level.Set(parseLevel(cfg.Log.Level))
	log := slog.New(newLogHandler(stderr, cfg.Log.Format, level))
	if len(warnings) > 0 {
		log.Warn("config warnings", "config", cfg.Source, "problems", warnings)
	}
	raiseFileLimit(log, cfg.Limits.AllocationsTotal, cfg.Signaling.DescriptorReserve, cfg.Signaling.MaxConnections)
	notify, err := newNotifier()
	if err != nil {
		log.Warn("systemd notifications off", "err", err.Error())
	}
	defer notify.close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rl := &reloader{path: *cfgPath, level: level, log: log}
	rl.ok = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "icegate_config_last_reload_successful",
		Help: "1 if the last configuration reload (SIGHUP) succeeded: the file loaded and every part accepted it. 0 means nothing of it was applied.",
	})
	rl.ok.Set(1)
	rl.pending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "icegate_config_restart_pending",
		Help: "1 if the configuration in force differs from the file in settings only a restart applies (named in the reload's log line).",
	})
	reg.MustRegister(rl.ok, rl.pending)

	// Signals: the first SIGINT/SIGTERM drains, a second one forces.
	// SIGHUP, SIGUSR1 and SIGUSR2 act on the running server and never
	// force a shutdown (docs/operations.md, "Signals").
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctl := make(chan os.Signal, 4)
	signal.Notify(ctl, syscall.SIGHUP)
	for _, s := range []os.Signal{sigDrain, sigCertsLoad} {
		if s != nil {
			signal.Notify(ctl, s)
		}
	}
	defer signal.Stop(ctl)

	// The relay is built first: the signaling server hands out URLs for
	// the ports it actually serves. The signaling server in turn shows each
	// peer the relay's decisions about its own requests; events before it
	// exists have no peer to go to.
	// TURN load steering (a cluster): the relay asks it for a 300's
	// alternate and a user's allocations elsewhere from the start, and
	// its events feed the cluster-wide counts; it is given its Redis with
	// the bus below.
	var load steering
	defer load.Close()
	var events func(turn.Event)
	if cfg.HTTP.Listen != "" {
		events = func(e turn.Event) {
			load.count(e)
			if h := rl.hub.Load(); h != nil {
				h.RelayEvent(signaling.RelayEvent(e))
			}
		}
	}

	// One UDP event loop per P. A loop keeps its P while traffic flows, so
	// it wakes in microseconds; Ps of their own keep the rest of the server
	// (pion's control plane, signaling) from waiting for them. GOMAXPROCS
	// is the whole process's, so the choice is made here.
	loops := runtime.GOMAXPROCS(0)
	defer udploop.ReserveProcs(loops)()
	certs, err := newACME(cfg, log)
	if err != nil {
		return err
	}
	if certs != nil {
		defer certs.Close()
	}
	// Usage per user and custom identifier, in minute buckets for the
	// admin API (admin.go).
	usageStore := usagerec.NewStore(cfg.Usage.RetentionDuration)
	sinks := []usagerec.Sink{usageStore}
	// In a cluster, the minutes also go to Redis, through the one client
	// the signaling bus uses too; it is closed last, after the record's
	// final flush (defers run in reverse: the relay closes first and
	// reports the traffic of its last allocations).
	redisClient, err := clusterClient(cfg.Cluster)
	if err != nil {
		return err
	}
	var usageRedis *usagerec.Redis
	if redisClient != nil {
		defer redisClient.Close()
		usageRedis, err = usagerec.NewRedis(usagerec.RedisOptions{Client: redisClient, Prefix: cfg.Cluster.KeyPrefix,
			Retention: cfg.Usage.RetentionDuration, Logger: log, Registerer: reg})
		if err != nil {
			return err
		}
		sinks = append(sinks, usageRedis)
		usageCtx, stopUsage := context.WithCancel(context.Background())
		usageDone := make(chan struct{})
		go func() { usageRedis.Run(usageCtx); close(usageDone) }()
		defer func() { stopUsage(); <-usageDone }()
	}
	opts := turn.Options{Logger: log, Registerer: reg, Events: events, Loops: loops, Usage: usageHook(sinks...),
		Alternate: load.alternate, UserElsewhere: load.elsewhere}
	// HTTPS's certificate is loaded before the relay binds: a socket the
	// two share (http.listen on listen.tls_port) serves it from the start.
	var web *httpServer
	var shared *sharedPorts
	if cfg.HTTP.Listen != "" {
		if web, err = newHTTPServer(cfg.HTTP, certs, log); err != nil {
			return err
		}
		if shared = newSharedPorts(cfg, web.getCertificate, certs, log); shared != nil {
			opts.ShareTLS = shared.share
			reg.MustRegister(shared.collector())
		}
	}
	srv, err := turn.New(withACME(turnConfig(cfg), certs), opts)
	if err != nil {
		if shared != nil {
			shared.closeAll()
		}
		return offloadStartError(cfg, err)
	}
	defer srv.Close()
	rl.srv = srv
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "icegate_draining",
		Help: "1 while new allocations are refused (SIGUSR1, or shutting down); live ones keep relaying.",
	}, func() float64 {
		if srv.Draining() {
			return 1
		}
		return 0
	}))
	rl.current.Store(cfg)
	hl := newHealth(srv)
	reg.MustRegister(buildInfo(), hl.readyGauge(), newCertCollector(srv, web, certs, rl.current.Load))

	if cfg.HTTP.Listen != "" {
		bus, err := signalingBus(cfg.Cluster, redisClient, log, reg)
		if err != nil {
			return err
		}
		if b, ok := bus.(interface{ Healthy() bool }); ok {
			hl.bus = b.Healthy
		}
		if rb, ok := bus.(*redisbus.Bus); ok {
			if err := load.start(rb, cfg.Cluster, rl.current.Load, srv, log); err != nil {
				return err
			}
		}
		hub, err := signaling.New(signalingConfig(cfg, srv.Addrs()), signaling.Options{Logger: log, Registerer: reg, Version: version,
			Secret: func() string { return mintingSecret(rl.current.Load(), srv) }, Bus: bus,
			RelayDraining: srv.Draining, Steer: load.pick})
		if err != nil {
			return err
		}
		rl.hub.Store(hub)
	}

	var metricsSrv *http.Server
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics.listen %s: %w", cfg.Metrics.Listen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if cfg.Metrics.Pprof {
			// On this mux only: the package also registers them on
			// http.DefaultServeMux, which icegate never serves.
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		mux.Handle("/healthz", hl.handler(nil))
		mux.Handle("/readyz", hl.handler(nil))
		hl.bound("metrics", ln.Addr().String())
		admin := &adminAPI{relay: srv, hub: rl.hub.Load, keys: func() []string { return rl.current.Load().API.Keys },
			usage: usageQuery{local: usageStore, cluster: usageRedis}, log: log.With("component", "admin"),
			// As SIGUSR1 does: systemctl status shows the drain, and in a
			// cluster the steering record says so at once.
			drained: func() { load.publish(); _ = notify.send(statusLine(srv)) }}
		if redisClient != nil { // a cluster: its nodes, from the steering directory
			admin.nodes = load.nodes
		}
		mux.Handle("/api/v1/admin/", admin.handler())
		// The admin page calls the API above on this same origin; it
		// asks for a key itself, so it is served to anyone who can reach
		// the listener (docs/operations.md, "Admin page").
		mux.Handle(adminpage.Prefix, adminpage.Handler())
		mux.Handle(strings.TrimSuffix(adminpage.Prefix, "/"), adminpage.Handler())
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = metricsSrv.Serve(ln) }()
		defer metricsSrv.Close()
		log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	}

	closeHTTP := func() {}
	var pageURL string
	if hub := rl.hub.Load(); hub != nil {
		var lns []net.Listener
		if shared != nil {
			if lns = shared.httpListeners(); len(lns) == 0 {
				return fmt.Errorf("http.listen %s shares listen.tls_port, but the relay bound no TLS socket there", cfg.HTTP.Listen)
			}
		}
		web.wrap = func(next http.Handler) http.Handler { return withHealth(next, hl, rl.current.Load) }
		if err := web.serve(cfg.HTTP, hub, lns, log, srv.Metrics().ProxyHeaders); err != nil {
			return err
		}
		for _, a := range web.addrs {
			hl.bound("http", a)
		}
		closeHTTP, pageURL, rl.web = web.stop, web.url, web
		defer closeHTTP()
	}

	for _, a := range srv.Addrs() {
		log.Info("listening", "transport", a.Transport, "addr", a.Addr.String())
	}
	if certs != nil {
		// Every listener that answers a challenge is bound: obtain (or
		// load from storage) and renew in the background from here.
		if err := certs.Start(); err != nil {
			return fmt.Errorf("tls.acme: %w", err)
		}
	}
	if secret := srv.EphemeralSecret(); secret != "" {
		fmt.Fprintf(stdout, `
No credentials are configured, so icegate generated a shared secret for this run:

    %s

Mint a time-limited TURN credential (and the browser iceServers JSON) with:

    %s cred -secret '%s' -user alice

It is gone when the server stops; put secrets = ["..."] in an auth block to keep one.
`, secret, selfName(), secret)
	}
	if pageURL != "" {
		fmt.Fprintf(stdout, "\ntest page: %s\n\n", pageURL)
	}
	hl.state.Store(stateServing)
	log.Info("icegate ready", "version", version, "config", cfg.Source, "realm", cfg.Realm)
	// Every socket is bound by now (turn.New, the metrics and HTTP
	// listeners): a unit ordered After=icegate.service may use them.
	if err := notify.send("READY=1", statusLine(srv)); err != nil {
		log.Warn("systemd notification failed", "err", err.Error())
	}
	var watchdog <-chan time.Time
	if notify.watchdog > 0 {
		t := time.NewTicker(notify.watchdog)
		defer t.Stop()
		watchdog = t.C
		log.Info("systemd watchdog on", "ping_every", notify.watchdog.String())
	}

	for {
		select {
		case <-sigs:
		case <-ctx.Done():
		case done := <-hl.control:
			// A liveness check (/healthz): this loop still comes round.
			close(done)
			continue
		case <-watchdog:
			// The ping comes from this loop, so a wedged loop stops it;
			// AllocationCount takes pion's allocation table lock, so a
			// relay deadlocked on it stops it too.
			_ = srv.AllocationCount()
			_ = notify.send("WATCHDOG=1")
			continue
		case sig := <-ctl:
			switch sig {
			case syscall.SIGHUP:
				_ = notify.send(reloading()...)
				rl.reload()
				_ = notify.send("READY=1", statusLine(srv))
			case sigDrain:
				n := srv.AllocationCount()
				if srv.StopAllocating() {
					log.Info("SIGUSR1: draining: new allocations refused, live ones continue; SIGTERM stops the server", "allocations", n)
				} else {
					log.Info("SIGUSR1: already draining", "allocations", n)
				}
				load.publish()
				_ = notify.send(statusLine(srv))
			case sigCertsLoad:
				rl.reloadCerts()
			}
			continue
		}
		// For good: an undrain by the admin API during the grace period
		// is refused (409), it must not invite new allocations.
		srv.Retire()
		_ = notify.send("STOPPING=1", statusLine(srv))
		hl.state.Store(stateStopping)
		closeHTTP()
		srv.StopAllocating()
		load.publish()
		return shutdown(srv, rl.current.Load().ShutdownGraceDuration, sigs, log)
	}
}

// statusLine is the systemd STATUS= the relay's state calls for: serving,
// draining (SIGUSR1 or the admin API's drain) or stopping (the shutdown,
// which nothing takes back).
func statusLine(srv *turn.Server) string {
	switch {
	case srv.Retired():
		return "STATUS=stopping: draining allocations"
	case srv.Draining():
		return "STATUS=draining: new allocations refused"
	}
	return "STATUS=serving"
}

// reloadCerts loads the certificate files of the configuration in force
// again (SIGUSR2, as coturn does), for the relay's TLS and DTLS listeners
// and for HTTPS, without reading the config file. The files are also
// polled for changes; the signal is for a renewal hook that wants the new
// pair served now. A pair that does not load changes nothing.
func (r *reloader) reloadCerts() {
	cur := r.current.Load()
	relay, err := r.srv.PrepareReload(turnConfig(cur))
	applyHTTPCert := func() {}
	if err == nil && r.web != nil {
		applyHTTPCert, err = r.web.prepareCert()
	}
	if err != nil {
		r.log.Error("SIGUSR2: certificates not loaded, the running ones stay", "err", err.Error())
		return
	}
	relay.Commit()
	applyHTTPCert()
	r.log.Info("SIGUSR2: certificates loaded again", "tls_cert_file", cur.TLS.CertFile, "http_cert_file", cur.HTTP.CertFile)
}

// reloader applies SIGHUP as one step, like Caddy's Load: the whole new
// config is loaded and validated, every part builds and checks its new
// state, and only when all succeeded is any of it put in force; on any
// error nothing changes.
//
// Settings that only a restart applies (config.ReloadClassOf says which:
// listeners, relay addresses and ports, metrics and HTTP addresses, the
// realm, limits) keep their running values, and the reload names each one
// that changed in its log line and sets icegate_config_restart_pending. The
// rest is applied: a revocation (a user, a secret, a peer range) must never
// wait for a restart because the same edit also touched a port. Since the
// running values are kept, nothing hands out a URL for a port the server
// does not serve.
type reloader struct {
	path  string
	level *slog.LevelVar
	log   *slog.Logger
	srv   *turn.Server
	hub   atomic.Pointer[signaling.Server]
	web   *httpServer
	ok    prometheus.Gauge
	// pending is 1 while restart-only settings differ from the file.
	pending prometheus.Gauge

	// current is the config in force as the file gave it, restart-only
	// settings from the start. The signaling server's URLs name the ports
	// the listeners got (signalingConfig), not the file's.
	current atomic.Pointer[config.Config]
}

func (r *reloader) reload() {
	if r.path == "" {
		r.log.Info("SIGHUP: running on embedded defaults, nothing to reload")
		return
	}
	err := r.apply()
	if err != nil {
		r.ok.Set(0)
		var le *loadError
		if errors.As(err, &le) {
			r.log.Error("reload failed, nothing changed", "config", r.path, "err", le.Error(), "problems", le.problems)
		} else {
			r.log.Error("reload failed, nothing changed", "config", r.path, "err", err.Error())
		}
		return
	}
	r.ok.Set(1)
}

// loadError is a config file that did not load, with every problem as
// `file:line: error: ...`.
type loadError struct {
	path     string
	problems []string
}

func (e *loadError) Error() string {
	return fmt.Sprintf("%s: %d problem(s)", e.path, len(e.problems))
}

// loadForServe loads the file serve runs with. The logger does not exist
// before the config says its format, so errors are printed as config check
// prints them; warnings are returned for the logger.
func loadForServe(path string, stderr io.Writer) (*config.Config, []string, error) {
	if path == "" {
		cfg, err := config.Default()
		return cfg, nil, err
	}
	cfg, diags := config.Load(path)
	if diags.HasErrors() {
		fmt.Fprint(stderr, config.FormatDiagnostics(diags))
		return nil, nil, fmt.Errorf("%s: %d problem(s)", path, len(diags.Errs()))
	}
	return cfg, diagLines(diags), nil
}

// diagLines renders diagnostics one a line, for a log record.
func diagLines(diags hcl.Diagnostics) []string {
	var out []string
	for line := range strings.Lines(config.FormatDiagnostics(diags)) {
		out = append(out, strings.TrimSpace(line))
	}
	return out
}

func (r *reloader) apply() error {
	next, diags := config.Load(r.path)
	warnings := diagLines(diags)
	if diags.HasErrors() {
		return &loadError{path: r.path, problems: warnings}
	}
	eff, changes := config.KeepRestartOnly(r.current.Load(), next)

	// Build and check every part's new state; nothing is in force yet.
	relay, err := r.srv.PrepareReload(turnConfig(eff))
	if err != nil {
		return err
	}
	applySignaling := func() {}
	if hub := r.hub.Load(); hub != nil {
		if applySignaling, err = hub.PrepareReload(signalingConfig(eff, r.srv.Addrs())); err != nil {
			return err
		}
	}
	applyHTTPCert := func() {}
	if r.web != nil {
		if applyHTTPCert, err = r.web.prepareCert(); err != nil {
			return err
		}
	}

	// All ready: swap.
	r.level.Set(parseLevel(eff.Log.Level))
	r.current.Store(eff)
	revoked := relay.Commit()
	applySignaling()
	applyHTTPCert()

	attrs := []any{"config", r.path, "users", len(eff.Auth.Users), "secrets", len(eff.Auth.Secrets),
		"allocations_ended", revoked.Allocations, "peers_blocked", revoked.Peers}
	if len(warnings) > 0 {
		attrs = append(attrs, "warnings", warnings)
	}
	if len(changes) == 0 {
		r.pending.Set(0)
		r.log.Info("configuration reloaded", attrs...)
		return nil
	}
	r.pending.Set(1)
	names := make([]string, len(changes))
	for i, c := range changes {
		names[i] = c.String()
	}
	r.log.Warn("configuration reloaded except settings that need a restart; they keep their running values",
		append(attrs, "restart_needed", names)...)
	return nil
}

// shutdown lets allocations drain for up to grace, or until a second signal.
func shutdown(srv *turn.Server, grace time.Duration, sigs <-chan os.Signal, log *slog.Logger) error {
	n := srv.AllocationCount()
	log.Info("shutting down: refusing new allocations, draining live ones", "allocations", n, "grace", grace.String())
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			log.Warn("second signal: closing now")
			cancel()
		case <-ctx.Done():
		}
	}()
	if left := srv.Drain(ctx); left > 0 {
		log.Warn("grace period over, closing remaining allocations", "allocations", left)
	}
	if err := srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Warn("close", "err", err)
	}
	log.Info("stopped")
	return nil
}

// selfName is how the user ran this binary ("./bin/icegate" under make
// run), so a printed command can be pasted as it is.
func selfName() string {
	if strings.Contains(os.Args[0], "/") && !strings.Contains(os.Args[0], "go-build") {
		return os.Args[0]
	}
	return "icegate"
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}
