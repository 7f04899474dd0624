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
	"time"

	"icegate/config"
	"icegate/internal/certfile"
	"icegate/signaling"
	"icegate/turn"
)

// serveHTTP binds http.listen and serves the signaling handler on it. It
// returns a function that stops it (closing upgraded WebSockets, which
// net/http does not track) and the test page's URL.
func serveHTTP(h *config.HTTP, sig *signaling.Server, log *slog.Logger) (func(), string, error) {
	ln, err := net.Listen("tcp", h.Listen)
	if err != nil {
		return nil, "", fmt.Errorf("http.listen %s: %w", h.Listen, err)
	}
	scheme := "http"
	stopWatch := func() {}
	if h.CertFile != "" {
		pair, err := certfile.Load(h.CertFile, h.KeyFile, log.With("listener", "http"), nil)
		if err != nil {
			ln.Close()
			return nil, "", fmt.Errorf("http.cert_file: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: pair.GetCertificate, NextProtos: []string{"http/1.1"}})
		scheme = "https"
		ctx, cancel := context.WithCancel(context.Background())
		stopWatch = cancel
		go pair.Watch(ctx, certCheckEvery)
	}
	srv := &http.Server{
		Handler:           sig.Handler(),
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
	url := pageURL(scheme, ln.Addr())
	log.Info("listening", "transport", scheme, "addr", ln.Addr().String(), "signaling", "/ws", "test_page", url)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx) // stops accepting; hijacked WebSockets are ours
			if err := sig.Close(ctx); err != nil {
				log.Warn("signaling connections still closing", "err", err)
			}
			<-done
			stopWatch()
		})
	}
	return stop, url, nil
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
