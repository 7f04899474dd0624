package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"icegate/config"
	"icegate/internal/udploop"
	"icegate/signaling"
	"icegate/turn"
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
	cfg, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		return err
	}

	level := new(slog.LevelVar)
	level.Set(parseLevel(cfg.Log.Level))
	var handler slog.Handler
	hopts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		handler = slog.NewJSONHandler(stderr, hopts)
	} else {
		handler = slog.NewTextHandler(stderr, hopts)
	}
	log := slog.New(handler)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reloadOK := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "icegate_config_last_reload_successful",
		Help: "1 if the last configuration reload (SIGHUP) succeeded.",
	})
	reloadOK.Set(1)
	reg.MustRegister(reloadOK)

	// Signals: the first SIGINT/SIGTERM drains, a second one forces.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// The signaling server mints credentials with the relay's secret and
	// shows each peer the relay's decisions about its own requests, so it
	// is built first and learns the relay once that exists.
	var relay atomic.Pointer[turn.Server]
	var current atomic.Pointer[config.Config]
	current.Store(cfg)
	var hub *signaling.Server
	var events func(turn.Event)
	if cfg.HTTP.Listen != "" {
		hub, err = signaling.New(cfg, signaling.Options{Logger: log, Registerer: reg, Version: version,
			Secret: func() string { return mintingSecret(current.Load(), relay.Load()) }})
		if err != nil {
			return err
		}
		events = func(e turn.Event) { hub.RelayEvent(signaling.RelayEvent(e)) }
	}

	// One UDP event loop per P. A loop keeps its P while traffic flows, so
	// it wakes in microseconds; Ps of their own keep the rest of the server
	// (pion's control plane, signaling) from waiting for them. GOMAXPROCS
	// is the whole process's, so the choice is made here.
	loops := runtime.GOMAXPROCS(0)
	defer udploop.ReserveProcs(loops)()
	srv, err := turn.New(cfg, turn.Options{Logger: log, Registerer: reg, Events: events, Loops: loops})
	if err != nil {
		return err
	}
	defer srv.Close()
	relay.Store(srv)

	var metricsSrv *http.Server
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics.listen %s: %w", cfg.Metrics.Listen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = metricsSrv.Serve(ln) }()
		defer metricsSrv.Close()
		log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	}

	closeHTTP := func() {}
	var pageURL string
	if hub != nil {
		if closeHTTP, pageURL, err = serveHTTP(cfg.HTTP, hub, log); err != nil {
			return err
		}
		defer closeHTTP()
	}

	for _, a := range srv.Addrs() {
		log.Info("listening", "transport", a.Transport, "addr", a.Addr.String())
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
	log.Info("icegate ready", "version", version, "config", cfg.Source, "realm", cfg.Realm)

	for {
		var sig os.Signal
		select {
		case sig = <-sigs:
		case <-ctx.Done():
			sig = syscall.SIGTERM
		}
		if sig == syscall.SIGHUP {
			if c := reload(*cfgPath, srv, level, reloadOK, log, stderr); c != nil {
				current.Store(c)
				if hub != nil {
					_ = hub.Reload(c)
				}
			}
			continue
		}
		closeHTTP()
		return shutdown(srv, cfg.ShutdownGraceDuration, sigs, log)
	}
}

// reload applies a changed config file: everything is loaded and validated
// first, and nothing changes unless all of it is valid.
func reload(path string, srv *turn.Server, level *slog.LevelVar, ok prometheus.Gauge, log *slog.Logger, stderr io.Writer) *config.Config {
	if path == "" {
		log.Info("SIGHUP: running on embedded defaults, nothing to reload")
		return nil
	}
	cfg, err := loadConfig(path, stderr)
	if err == nil {
		err = srv.Reload(cfg)
	}
	if err != nil {
		ok.Set(0)
		log.Error("reload failed, keeping the running configuration", "err", err)
		return nil
	}
	level.Set(parseLevel(cfg.Log.Level))
	ok.Set(1)
	return cfg
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
