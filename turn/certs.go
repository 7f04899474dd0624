package turn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
)

// certStore holds the certificate TLS and DTLS hand out. Connections ask it
// for the certificate at each handshake, so a renewed certificate on disk is
// used from the next handshake on and established connections (and their
// allocations) carry on untouched: no signal, no restart.
type certStore struct {
	cert              atomic.Pointer[tls.Certificate]
	certFile, keyFile string
	selfSigned        bool
	stamp             fileStamp
	log               *slog.Logger
	metrics           *Metrics
}

type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func stampOf(certFile, keyFile string) (fileStamp, error) {
	c, err := os.Stat(certFile)
	if err != nil {
		return fileStamp{}, err
	}
	k, err := os.Stat(keyFile)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// newCertStore loads the configured files or, with none, generates a
// self-signed certificate for hosts.
func newCertStore(certFile, keyFile string, hosts []string, log *slog.Logger, m *Metrics) (*certStore, error) {
	s := &certStore{certFile: certFile, keyFile: keyFile, log: log, metrics: m}
	if certFile == "" {
		cert, err := selfSigned(hosts)
		if err != nil {
			return nil, fmt.Errorf("generating a self-signed certificate: %w", err)
		}
		s.selfSigned = true
		s.cert.Store(cert)
		log.Warn("tls: no certificate configured, generated a self-signed one; browsers will not trust it for turns: URLs (set tls.cert_file and tls.key_file, see docs/tls.md)",
			"hosts", hosts, "expires", cert.Leaf.NotAfter.Format(time.DateOnly))
		return s, nil
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *certStore) load() error {
	stamp, err := stampOf(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("tls: loading %s and %s: %w", s.certFile, s.keyFile, err)
	}
	s.cert.Store(&cert)
	s.stamp = stamp
	leaf := cert.Leaf
	if leaf != nil {
		s.log.Info("tls: certificate loaded", "file", s.certFile, "subject", leaf.Subject.CommonName,
			"names", leaf.DNSNames, "expires", leaf.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// watch re-reads the files when their size or modification time changes,
// until ctx ends. A broken new pair is logged and the old certificate kept.
func (s *certStore) watch(ctx context.Context, every time.Duration) {
	if s.selfSigned || every <= 0 {
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
		stamp, err := stampOf(s.certFile, s.keyFile)
		if err != nil || stamp == s.stamp {
			continue
		}
		if err := s.load(); err != nil {
			s.metrics.CertReloads.WithLabelValues("error").Inc()
			s.log.Error("tls: certificate changed on disk but cannot be loaded; keeping the previous one", "err", err)
			s.stamp = stamp // do not retry until the files change again
			continue
		}
		s.metrics.CertReloads.WithLabelValues("ok").Inc()
	}
}

// get serves tls.Config.GetCertificate and its DTLS twin.
func (s *certStore) get() (*tls.Certificate, error) { return s.cert.Load(), nil }

// selfSigned makes an ECDSA P-256 certificate valid for a year.
func selfSigned(hosts []string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "icegate self-signed", Organization: []string{"icegate"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
