package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"icegate/config"
	"icegate/internal/acmecert"
	"icegate/internal/certfile"
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
}

// serveHTTP binds http.listen and serves the signaling handler on it.
// With certs (tls.acme), HTTPS serves its certificate when http.acme is
// on, and plain HTTP answers its http-01 challenges (when http.listen is
// where the CA connects, tls.acme.http_listen).
func serveHTTP(h *config.HTTP, sig *signaling.Server, certs *acmecert.Manager, log *slog.Logger) (*httpServer, error) {
	ln, err := net.Listen("tcp", h.Listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w", h.Listen, err)
	}
	web := &httpServer{certFile: h.CertFile, keyFile: h.KeyFile, log: log.With("listener", "http"), stopWatch: func() {}}
	scheme := "http"
	if h.CertFile != "" {
		pair, err := certfile.Load(h.CertFile, h.KeyFile, web.log, nil)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("http.cert_file: %w", err)
		}
		web.pair.Store(pair)
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return web.pair.Load().Get(), nil }})
		scheme = "https"
		ctx, cancel := context.WithCancel(context.Background())
		web.stopWatch = cancel
		go web.watch(ctx, certCheckEvery)
	}
	handler := sig.Handler()
	if h.ACME && certs != nil {
		// The manager renews and swaps the certificate itself; "acme-tls/1"
		// lets a tls-alpn-01 validation on this port through.
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12,
			NextProtos: certs.NextProtos([]string{"http/1.1"}), GetCertificate: certs.GetCertificate})
		scheme = "https"
	} else if certs != nil && h.CertFile == "" {
		handler = certs.HTTPHandler(handler)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	web.url = pageURL(scheme, ln.Addr())
	log.Info("listening", "transport", scheme, "addr", ln.Addr().String(), "signaling", "/ws", "test_page", web.url)
	var once sync.Once
	web.stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx) // stops accepting; hijacked WebSockets are ours
			if err := sig.Close(ctx); err != nil {
				log.Warn("signaling connections still closing", "err", err)
			}
			<-done
			web.stopWatch()
		})
	}
	return web, nil
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
