package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"icegate/config"
	"icegate/internal/acmecert"
	"icegate/internal/certfile"
	"icegate/internal/hellosplit"
	"icegate/internal/portshare"
	"icegate/internal/proxied"
	"icegate/internal/ratelog"
	"icegate/signaling"
	"icegate/turn"
)

// httpServer is the running HTTP listener.
type httpServer struct {
	// stop stops it, closing upgraded WebSockets (which net/http does not
	// track) itself.
	stop func()
	// url is the test page's URL.
	url string
	// pair is the certificate pair HTTPS serves; nil for plain HTTP.
	pair      atomic.Pointer[certfile.Pair]
	certFile  string
	keyFile   string
	log       *slog.Logger
	stopWatch func()
	// acme serves HTTPS's certificate when http.acme is on (and pair is
	// nil); challenges answers ACME http-01 challenges on plain HTTP.
	acme, challenges *acmecert.Manager
	// wrap, when set before serve, wraps the signaling handler (the
	// health endpoints, http.health_endpoints).
	wrap func(http.Handler) http.Handler
	// addrs are the addresses serve listens on.
	addrs []string
}

// getCertificate is HTTPS's certificate source: the ACME manager, or the
// pair of http.cert_file.
func (web *httpServer) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if web.acme != nil {
		return web.acme.GetCertificate(hello)
	}
	return web.pair.Load().Get(), nil
}

// https reports whether HTTP speaks TLS.
func (web *httpServer) https() bool { return web.acme != nil || web.pair.Load() != nil }

// newHTTPServer loads HTTPS's certificate pair, when http.cert_file is
// set; it binds nothing yet (serve does), so the pair is there for a port
// the relay shares with HTTPS before HTTP serves. certs is the ACME
// manager (tls.acme), or nil: with http.acme HTTPS serves its
// certificate, and plain HTTP answers its http-01 challenges.
func newHTTPServer(h *config.HTTP, certs *acmecert.Manager, log *slog.Logger) (*httpServer, error) {
	web := &httpServer{certFile: h.CertFile, keyFile: h.KeyFile, log: log.With("listener", "http"), stopWatch: func() {}}
	if h.ACME {
		web.acme = certs
	}
	if certs != nil && h.CertFile == "" && !h.ACME {
		web.challenges = certs
	}
	if h.CertFile != "" {
		pair, err := certfile.Load(h.CertFile, h.KeyFile, web.log, nil)
		if err != nil {
			return nil, fmt.Errorf("http.cert_file: %w", err)
		}
		web.pair.Store(pair)
	}
	return web, nil
}

// serve serves the signaling handler: on http.listen, bound here, or, when
// shared is not empty, on those listeners, the HTTP sides of sockets
// shared with the relay's TLS listener (their connections are TLS already,
// and PROXY headers on them are the relay's listen.proxy_from, which config
// check holds equal to http.proxy_from). proxyHeaders counts PROXY headers
// on http.listen (http.proxy_from) by listener and outcome; it may be nil.
func (web *httpServer) serve(h *config.HTTP, sig *signaling.Server, shared []net.Listener, log *slog.Logger, proxyHeaders *prometheus.CounterVec) error {
	scheme := "http"
	if web.https() {
		scheme = "https"
	}
	handler := sig.Handler()
	if web.wrap != nil {
		handler = web.wrap(handler)
	}
	if web.challenges != nil {
		handler = web.challenges.HTTPHandler(handler)
	}
	var lns []net.Listener
	if len(shared) > 0 {
		lns = shared
		// A connection routed by its first bytes is not a *tls.Conn, and
		// net/http leaves Request.TLS nil on it; these fill it in.
		handler = portshare.WithTLS(handler)
	} else {
		raw, err := net.Listen("tcp", h.Listen)
		if err != nil {
			return fmt.Errorf("http.listen %s: %w", h.Listen, err)
		}
		ln := proxyHTTP(raw, h.ProxyFromPrefixes, web.log, proxyHeaders)
		if scheme == "https" {
			protos := []string{"http/1.1"}
			if web.acme != nil {
				// "acme-tls/1" lets a tls-alpn-01 validation on this
				// port through; the manager answers it.
				protos = web.acme.NextProtos(protos)
			}
			// hellosplit re-frames the client's handshake records so
			// that crypto/tls keeps a small record buffer for the
			// connection's life, not one the size of the ClientHello
			// (issue 15).
			ln = tls.NewListener(hellosplit.Listen(ln), &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: protos, GetCertificate: web.getCertificate})
		}
		lns = []net.Listener{ln}
	}
	if web.pair.Load() != nil {
		ctx, cancel := context.WithCancel(context.Background())
		web.stopWatch = cancel
		go web.watch(ctx, certCheckEvery)
	}
	srv := &http.Server{
		Handler:           handler,
		ConnContext:       portshare.ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	var served sync.WaitGroup
	for _, ln := range lns {
		web.addrs = append(web.addrs, ln.Addr().String())
		served.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server", "err", err)
			}
		})
		log.Info("listening", "transport", scheme, "addr", ln.Addr().String(), "signaling", "/ws",
			"test_page", pageURL(scheme, ln.Addr()), "shared_with_turn", len(shared) > 0)
	}
	web.url = pageURL(scheme, lns[0].Addr())
	var once sync.Once
	web.stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx) // stops accepting; hijacked WebSockets are ours
			if err := sig.Close(ctx); err != nil {
				log.Warn("signaling connections still closing", "err", err)
			}
			served.Wait()
			web.stopWatch()
		})
	}
	return nil
}

// proxyHTTP puts the PROXY protocol (http.proxy_from) on the HTTP
// listener, under any TLS: connections from those ranges must begin with a
// PROXY v1 or v2 header, and its client address is what net/http gives the
// handlers as Request.RemoteAddr (signaling's logs, a WebSocket's remote
// address). net/http asks for RemoteAddr in the connection's goroutine, so
// the header is never read in the accept loop. Without ranges it returns ln.
func proxyHTTP(ln net.Listener, from []netip.Prefix, log *slog.Logger, counts *prometheus.CounterVec) net.Listener {
	cfg := proxied.Config{From: from, Listener: "http", Log: ratelog.New(log)}
	if counts != nil {
		cfg.Count = func(outcome string) { counts.WithLabelValues("http", outcome).Inc() }
	}
	return proxied.Listen(ln, cfg)
}

// watch loads the pair in force again when its files change, until ctx
// ends; it follows the pair a reload swaps in.
func (w *httpServer) watch(ctx context.Context, every time.Duration) {
	certfile.Poll(ctx, every, func() { w.pair.Load().Check() })
}

// prepareCert loads http.cert_file and http.key_file again for a reload
// (whether HTTP speaks TLS is fixed at start; the files' contents are
// not): a renewed pair is served from the next handshake once the returned
// function runs, and a broken one fails the reload.
func (w *httpServer) prepareCert() (func(), error) {
	if w.pair.Load() == nil {
		return func() {}, nil
	}
	pair, err := certfile.Load(w.certFile, w.keyFile, w.log, nil)
	if err != nil {
		return nil, fmt.Errorf("http.cert_file: %w", err)
	}
	return func() { w.pair.Store(pair) }, nil
}

// certCheckEvery is how often http.cert_file and http.key_file are checked
// for a renewed pair.
const certCheckEvery = 5 * time.Second

// pageURL is where a person on this machine opens the test page.
func pageURL(scheme string, a net.Addr) string {
	host, port := "localhost", 0
	if ta, ok := a.(*net.TCPAddr); ok {
		port = ta.Port
		if ip := ta.IP; !ip.IsUnspecified() && !ip.IsLoopback() {
			host = ip.String()
		}
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/"
}

// mintingSecret is the secret the signaling server mints TURN credentials
// with: the first auth.secrets, else the one the relay generated.
func mintingSecret(cfg *config.Config, relay *turn.Server) string {
	if cfg != nil && len(cfg.Auth.Secrets) > 0 {
		return cfg.Auth.Secrets[0]
	}
	if relay != nil {
		return relay.EphemeralSecret()
	}
	return ""
}
