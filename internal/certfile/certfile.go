// Package certfile serves a PEM certificate and key from disk to TLS
// handshakes and loads them again when they change, so a renewed
// certificate is used from the next handshake on without a restart, and a
// broken renewal is logged while the previous certificate stays in use.
// The relay's TLS and DTLS listeners and the HTTP listener share it.
package certfile

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// Pair is a certificate and key file and what was last loaded from them.
type Pair struct {
	cert              atomic.Pointer[tls.Certificate]
	certFile, keyFile string
	stamp             stamp // of the files at the last load attempt; only Watch writes it after Load
	log               *slog.Logger
	reloaded          func(ok bool)
}

// stamp tells a changed file by its size and modification time.
type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func stampOf(certFile, keyFile string) (stamp, error) {
	c, err := os.Stat(certFile)
	if err != nil {
		return stamp{}, err
	}
	k, err := os.Stat(keyFile)
	if err != nil {
		return stamp{}, err
	}
	return stamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// Load loads the pair now (an error if it cannot) and logs what it loaded.
// reloaded, if not nil, is told of each later reload and whether it
// worked (for a metric).
func Load(certFile, keyFile string, log *slog.Logger, reloaded func(ok bool)) (*Pair, error) {
	p := &Pair{certFile: certFile, keyFile: keyFile, log: log, reloaded: reloaded}
	if err := p.load(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Pair) load() error {
	st, err := stampOf(p.certFile, p.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	p.stamp = st
	cert, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		return fmt.Errorf("tls: loading %s and %s: %w", p.certFile, p.keyFile, err)
	}
	p.cert.Store(&cert)
	if leaf := cert.Leaf; leaf != nil {
		p.log.Info("tls: certificate loaded", "file", p.certFile, "subject", leaf.Subject.CommonName,
			"names", leaf.DNSNames, "expires", leaf.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// Get returns the certificate to serve: the last one that loaded.
func (p *Pair) Get() *tls.Certificate { return p.cert.Load() }

// GetCertificate serves tls.Config.GetCertificate.
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.Get(), nil }

// Watch checks the files every `every` until ctx ends and loads them again
// when their size or modification time changed. A pair that does not load
// (half written, or broken) is logged, the previous certificate is kept,
// and it is not tried again until the files change once more.
func (p *Pair) Watch(ctx context.Context, every time.Duration) { Poll(ctx, every, p.Check) }

// Poll calls check every `every` until ctx ends; with every <= 0 it returns
// at once. Watchers whose pair a reload swaps call it with a check that
// follows the pair in force.
func Poll(ctx context.Context, every time.Duration, check func()) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		check()
	}
}

// Check is one step of Watch: it loads the pair again if the files changed.
func (p *Pair) Check() {
	st, err := stampOf(p.certFile, p.keyFile)
	if err != nil || st == p.stamp {
		return
	}
	err = p.load()
	if err != nil {
		p.log.Error("tls: certificate changed on disk but cannot be loaded; keeping the previous one", "err", err)
	}
	if p.reloaded != nil {
		p.reloaded(err == nil)
	}
}
