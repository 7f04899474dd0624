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
	"strings"
	"sync/atomic"
	"time"

	"icegate/internal/certfile"
)

// certStore holds the certificate TLS and DTLS hand out. Connections ask it
// for the certificate at each handshake, so a renewed certificate on disk is
// used from the next handshake on and established connections (and their
// allocations) carry on untouched: no signal, no restart. A reload may also
// name other files (or none): the new source is loaded and checked first,
// then swapped in whole.
type certStore struct {
	cur   atomic.Pointer[certSource]
	hosts []string
	log   *slog.Logger
	m     *Metrics
}

// certSource is where certificates come from: the configured files, an
// external source (ACME), or a certificate generated at start.
type certSource struct {
	pair *certfile.Pair   // the configured files, or nil
	self *tls.Certificate // generated when no files are configured
	// ext is TLSConfig.GetCertificate (an ACME manager): it renews and
	// swaps certificates itself, and a reload keeps it.
	ext func(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// newCertStore loads the configured files or, with none, generates a
// self-signed certificate for hosts.
func newCertStore(certFile, keyFile string, hosts []string, log *slog.Logger, m *Metrics) (*certStore, error) {
	s := &certStore{hosts: uniqueHosts(hosts), log: log, m: m}
	src, err := s.load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	s.cur.Store(src)
	return s, nil
}

func (s *certStore) load(certFile, keyFile string) (*certSource, error) {
	if certFile == "" {
		cert, err := selfSigned(s.hosts)
		if err != nil {
			return nil, fmt.Errorf("generating a self-signed certificate: %w", err)
		}
		s.log.Warn("tls: no certificate configured, generated a self-signed one; browsers will not trust it for turns: URLs (set tls.cert_file and tls.key_file, see docs/tls.md)",
			"hosts", s.hosts, "expires", cert.Leaf.NotAfter.Format(time.DateOnly))
		return &certSource{self: cert}, nil
	}
	pair, err := certfile.Load(certFile, keyFile, s.log, func(ok bool) {
		s.m.CertReloads.WithLabelValues(map[bool]string{true: "ok", false: "error"}[ok]).Inc()
	})
	if err != nil {
		return nil, err
	}
	return &certSource{pair: pair}, nil
}

// prepare builds the source a reload asks for: the files loaded again (a
// renewed pair is picked up at the reload, and a broken one fails it), or
// nil to keep a self-signed certificate that is still wanted.
func (s *certStore) prepare(certFile, keyFile string) (*certSource, error) {
	if cur := s.cur.Load(); cur.ext != nil || (certFile == "" && cur.self != nil) {
		return nil, nil
	}
	return s.load(certFile, keyFile)
}

// watch re-reads the configured files when they change, until ctx ends.
// It follows the source a reload swaps in.
func (s *certStore) watch(ctx context.Context, every time.Duration) {
	certfile.Poll(ctx, every, func() {
		if p := s.cur.Load().pair; p != nil {
			p.Check()
		}
	})
}

// newExtCertStore serves every handshake from get (TLSConfig.GetCertificate).
func newExtCertStore(get func(*tls.ClientHelloInfo) (*tls.Certificate, error), log *slog.Logger, m *Metrics) *certStore {
	s := &certStore{log: log, m: m}
	s.cur.Store(&certSource{ext: get})
	return s
}

// get serves tls.Config.GetCertificate and its DTLS twin (which passes a
// hello with only ServerName set).
func (s *certStore) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	src := s.cur.Load()
	if src.ext != nil {
		return src.ext(hello)
	}
	if src.pair != nil {
		return src.pair.Get(), nil
	}
	return src.self, nil
}

// uniqueHosts returns hosts without repeats, keeping the first spelling's
// order: the listen addresses and the relays' public addresses often name
// the loopback addresses already in the default list, and the certificate
// (and the log line naming its hosts) should list each once. IP addresses
// compare as addresses (an IPv4-mapped IPv6 address is its IPv4 address),
// names case-insensitively (RFC 4343).
func uniqueHosts(hosts []string) []string {
	seen := make(map[string]bool, len(hosts))
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		k := strings.ToLower(h)
		if ip, err := netip.ParseAddr(h); err == nil {
			k = ip.Unmap().String()
		}
		if h == "" || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, h)
	}
	return out
}

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
