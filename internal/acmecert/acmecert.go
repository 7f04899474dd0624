// Package acmecert owns icegate's ACME certificates: it obtains them from
// an ACME CA (RFC 8555; Let's Encrypt by default) with certmagic, keeps them
// on disk, renews them inside their renewal window, and hands them to every
// TLS and DTLS listener through one GetCertificate, so TURN over TLS, TURN
// over DTLS and HTTPS serve the same, current certificate from the next
// handshake after a renewal, without a reload.
//
// Challenges are answered where the CA looks for them:
//   - tls-alpn-01 (RFC 8737) on a TLS listener: a ClientHello offering only
//     "acme-tls/1" gets the challenge certificate from GetCertificate, so a
//     listener's tls.Config must list NextProtos (which includes
//     "acme-tls/1"). When no icegate listener is on the challenge port,
//     certmagic binds it for the length of the challenge.
//   - http-01 (RFC 8555 §8.3) on the configured HTTP address: certmagic
//     binds it for the length of the challenge, or, when icegate's own
//     plain HTTP listener is there, HTTPHandler answers.
//
// The package opens no listener of its own outside a challenge; it does
// not know about TURN or signaling.
package acmecert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// LetsEncrypt is the default CA: Let's Encrypt's production directory.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// ALPNProto is the ALPN protocol of the tls-alpn-01 challenge (RFC 8737 §6.2).
const ALPNProto = "acme-tls/1"

// Config is what a Manager is told. Zero values mean the defaults stated.
type Config struct {
	// Domains are the DNS names the certificate is for; at least one. The
	// first also answers handshakes without SNI (TURN clients that dial an
	// IP address send none).
	Domains []string
	// Email is the ACME account's contact; "" registers without one.
	Email string
	// CA is the ACME directory URL. Default LetsEncrypt.
	CA string
	// Roots, when set, are the roots trusted for the CA's own HTTPS (a
	// private CA, or pebble in tests); nil uses the system's.
	Roots *x509.CertPool
	// Storage is the directory certificates, keys and the account are kept
	// in. Required.
	Storage string
	// TLSALPN answers tls-alpn-01 on TLSALPNPort, the port the CA connects
	// to (443 for a public CA). HTTP answers http-01 on HTTPAddr
	// ("host:port"; the CA connects to port 80). At least one must be on.
	TLSALPN     bool
	TLSALPNPort int
	HTTP        bool
	HTTPAddr    string
	// RenewalWindow is the share of a certificate's lifetime, counted back
	// from its expiry, in which it is renewed. Default 1/3 (certmagic's: a
	// 90-day certificate is renewed 30 days before it expires), unless the
	// CA suggests a window (ACME Renewal Information).
	RenewalWindow float64
	// CheckEvery is how often certificates are checked for renewal.
	// Default 10 minutes (certmagic's).
	CheckEvery time.Duration
	// Logger receives what happens (obtained, renewed, failed and why);
	// nil discards it.
	Logger *slog.Logger
}

// Manager obtains, stores and renews the certificate and serves it.
type Manager struct {
	cfg    Config
	cache  *certmagic.Cache
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
	log    *slog.Logger
	cancel context.CancelFunc
}

// New builds a Manager; it talks to no one until Start.
func New(cfg Config) (*Manager, error) {
	if len(cfg.Domains) == 0 {
		return nil, errors.New("acme: no domains")
	}
	if cfg.Storage == "" {
		return nil, errors.New("acme: no storage directory")
	}
	if !cfg.TLSALPN && !cfg.HTTP {
		return nil, errors.New("acme: no challenge enabled")
	}
	if cfg.CA == "" {
		cfg.CA = LetsEncrypt
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "acme")
	m := &Manager{cfg: cfg, log: log}
	zl := zap.New(newSlogCore(log))
	var magic *certmagic.Config
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		RenewCheckInterval: cfg.CheckEvery,
		Logger:             zl,
	})
	magic = certmagic.New(m.cache, certmagic.Config{
		RenewalWindowRatio: cfg.RenewalWindow,
		DefaultServerName:  cfg.Domains[0],
		Storage:            &certmagic.FileStorage{Path: cfg.Storage},
		Logger:             zl,
		OnEvent:            m.event,
		// OCSP stapling is off: Let's Encrypt ended its OCSP service in
		// 2025, and TURN clients do not ask for staples.
		OCSP: certmagic.OCSPConfig{DisableStapling: true},
	})
	host, port := "", 0
	if cfg.HTTP {
		h, p, err := splitHostPort(cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("acme: http-01 address %q: %w", cfg.HTTPAddr, err)
		}
		host, port = h, p
	}
	m.issuer = certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:     cfg.CA,
		Email:  cfg.Email,
		Agreed: true, // configuring tls.acme is agreeing to the CA's terms (docs/tls.md)
		// TestCA is used only with Let's Encrypt production: certmagic
		// tries staging first after a failure, sparing production's
		// rate limits.
		DisableHTTPChallenge:    !cfg.HTTP,
		DisableTLSALPNChallenge: !cfg.TLSALPN,
		ListenHost:              host,
		AltHTTPPort:             port,
		AltTLSALPNPort:          cfg.TLSALPNPort,
		TrustedRoots:            cfg.Roots,
		Logger:                  zl,
	})
	magic.Issuers = []certmagic.Issuer{m.issuer}
	m.magic = magic
	return m, nil
}

// Start manages the certificates from now until Close: one already in
// storage is loaded, a missing or expiring one is obtained, in the
// background, retried with backoff on failure (and logged with the reason).
// Call it once the listeners that answer challenges are bound.
func (m *Manager) Start() error {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.log.Info("acme: managing certificates", "domains", m.cfg.Domains, "ca", m.cfg.CA, "storage", m.cfg.Storage)
	return m.magic.ManageAsync(ctx, m.cfg.Domains)
}

// Close stops renewals and the goroutines of Start.
func (m *Manager) Close() {
	if m.cancel != nil {
		m.cancel()
	}
	m.cache.Stop()
}

// NextProtos returns protos with "acme-tls/1" added when tls-alpn-01 is on:
// the ALPN list a TLS listener's tls.Config must offer so that the CA's
// validation handshake (which offers only that protocol) negotiates it.
func (m *Manager) NextProtos(protos []string) []string {
	if !m.cfg.TLSALPN || slices.Contains(protos, ALPNProto) {
		return protos
	}
	return append(slices.Clip(protos), ALPNProto)
}

// GetCertificate serves tls.Config.GetCertificate: the challenge
// certificate for a tls-alpn-01 validation, else the managed certificate
// for the SNI name (the first domain without SNI). A hello without a
// connection (DTLS, whose ClientHelloInfo has none) is served from the
// cache directly.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.Conn != nil {
		return m.magic.GetCertificate(hello)
	}
	return m.Certificate(hello.ServerName)
}

// Certificate returns the managed certificate for name ("" means the first
// domain), the one that expires last when there are several (a renewal in
// flight).
func (m *Manager) Certificate(name string) (*tls.Certificate, error) {
	if name == "" {
		name = m.cfg.Domains[0]
	}
	name = strings.ToLower(name)
	var best *certmagic.Certificate
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if best == nil || c.Leaf.NotAfter.After(best.Leaf.NotAfter) {
			best = &c
		}
	}
	if best == nil && name != strings.ToLower(m.cfg.Domains[0]) {
		return m.Certificate("")
	}
	if best == nil {
		return nil, fmt.Errorf("acme: no certificate for %q yet", name)
	}
	return &best.Certificate, nil
}

// Expiries returns, for each configured domain that has a certificate in
// the cache, when the one that expires last expires: what a metric of
// certificate expiry reports. A domain not obtained yet is absent.
func (m *Manager) Expiries() map[string]time.Time {
	out := make(map[string]time.Time, len(m.cfg.Domains))
	for _, d := range m.cfg.Domains {
		for _, c := range m.cache.AllMatchingCertificates(strings.ToLower(d)) {
			if c.Leaf != nil && c.Leaf.NotAfter.After(out[d]) {
				out[d] = c.Leaf.NotAfter
			}
		}
	}
	return out
}

// HTTPHandler answers http-01 challenges (GET /.well-known/acme-challenge/)
// and passes every other request to next: for icegate's own plain HTTP
// listener when it is on the http-01 address.
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	if !m.cfg.HTTP {
		return next
	}
	return m.issuer.HTTPChallengeHandler(next)
}

// event logs the certificate's life at info level: what an operator
// watching a renewal wants to see without certmagic's debug detail.
func (m *Manager) event(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		renewal, _ := data["renewal"].(bool)
		m.log.Info("acme: certificate obtained", "identifier", data["identifier"], "renewal", renewal, "issuer", data["issuer"])
	case "cert_failed":
		renewal, _ := data["renewal"].(bool)
		m.log.Error("acme: obtaining a certificate failed", "identifier", data["identifier"], "renewal", renewal, "err", data["error"])
	}
	return nil
}

// splitHostPort parses "host:port" (host may be empty) with a port above 0.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}
