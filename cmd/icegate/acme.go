package main

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"icegate/config"
	"icegate/internal/acmecert"
	"icegate/turn"
)

// newACME builds the ACME manager tls.acme asks for, or nil without the
// block. cfg must have passed config.Validate. It talks to no CA until
// Start, which serve calls once every listener is bound (a tls-alpn-01
// validation connects to the TLS listener).
func newACME(cfg *config.Config, log *slog.Logger) (*acmecert.Manager, error) {
	a := cfg.TLS.ACME
	if a == nil {
		return nil, nil
	}
	var roots *x509.CertPool
	if a.CARoot != "" {
		pem, err := os.ReadFile(a.CARoot)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme.ca_root: %s holds no PEM certificate", a.CARoot)
		}
	}
	// The storage holds private keys: only icegate reads it.
	if err := os.MkdirAll(a.StorageDir, 0o700); err != nil {
		return nil, fmt.Errorf("tls.acme.storage: %w", err)
	}
	return acmecert.New(acmecert.Config{
		Domains:       a.Domains,
		Email:         a.Email,
		CA:            a.CA,
		Roots:         roots,
		Storage:       a.StorageDir,
		TLSALPN:       a.HasChallenge(config.ChallengeTLSALPN),
		TLSALPNPort:   a.TLSALPNPort,
		HTTP:          a.HasChallenge(config.ChallengeHTTP),
		HTTPAddr:      a.HTTPListen,
		RenewalWindow: a.RenewalWindow,
		CheckEvery:    a.CheckIntervalDuration,
		Logger:        log,
	})
}

// withACME points the relay's TLS and DTLS listeners at the ACME manager,
// when there is one.
func withACME(tc turn.Config, m *acmecert.Manager) turn.Config {
	if m != nil {
		tc.TLS.GetCertificate = m.GetCertificate
		tc.TLS.NextProtos = m.NextProtos(tc.TLS.NextProtos)
	}
	return tc
}
