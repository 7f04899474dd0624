package main

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"icegate/config"
	"icegate/internal/acmecert"
	"icegate/internal/portshare"
	"icegate/internal/proxied"
	"icegate/turn"
)

// sharedPorts puts TURN over TLS and HTTPS on one socket where the config
// names the same address and port for both (config.HTTP.SharedTLS; see
// docs/tls.md, "Sharing 443"). The relay binds the socket, as it binds
// every listener of its own (turn.Options.ShareTLS hands it over here), a
// portshare.Mux terminates TLS on it, and HTTP serves the Mux's HTTP side
// instead of binding http.listen.
type sharedPorts struct {
	addrs []netip.AddrPort // the shared sockets: listen address × tls_port
	log   *slog.Logger
	// httpCert is HTTPS's certificate source (httpServer.getCertificate).
	httpCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// acme is the ACME manager (tls.acme), or nil: its tls-alpn-01
	// validations reach a shared port too.
	acme *acmecert.Manager

	mu    sync.Mutex
	muxes []*portshare.Mux
}

// newSharedPorts returns the shared sockets cfg asks for, or nil when
// HTTP has a socket of its own.
func newSharedPorts(cfg *config.Config, httpCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), acme *acmecert.Manager, log *slog.Logger) *sharedPorts {
	if len(cfg.HTTP.SharedTLS) == 0 {
		return nil
	}
	p := &sharedPorts{log: log, httpCert: httpCert, acme: acme}
	for _, a := range cfg.HTTP.SharedTLS {
		p.addrs = append(p.addrs, netip.AddrPortFrom(a, uint16(cfg.Listen.TLSPort)))
	}
	return p
}

// share is turn.Options.ShareTLS: the relay's TLS socket on a shared
// address gets a Mux, whose TURN side the relay serves; closing that side
// (the relay's Close) closes the Mux and the socket.
func (p *sharedPorts) share(ln net.Listener, turnTLS *tls.Config) (net.Listener, error) {
	ta, ok := ln.Addr().(*net.TCPAddr)
	if !ok || !slices.Contains(p.addrs, netip.AddrPortFrom(netip.AddrFrom16([16]byte(ta.IP.To16())).Unmap(), uint16(ta.Port))) {
		return nil, nil
	}
	m, err := portshare.New(ln, p.muxConfig(turnTLS))
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.muxes = append(p.muxes, m)
	p.mu.Unlock()
	p.log.Info("shared port: TURN over TLS and HTTPS on one socket, routed by ALPN or the first bytes", "addr", ln.Addr().String())
	return &ownerSide{Listener: m.Listener(portshare.TURN), m: m}, nil
}

// muxConfig is the one place that says how a shared socket's handshakes
// go: which certificate (getCertificate), which ALPN protocols go where.
// ACME's TLS-ALPN-01 plugs in here: its certificate source's
// GetCertificate answers "acme-tls/1" hellos, and CloseProtos names that
// protocol so the validation connection ends after the handshake.
func (p *sharedPorts) muxConfig(turnTLS *tls.Config) portshare.Config {
	var closeProtos []string
	if p.acme != nil {
		closeProtos = p.acme.NextProtos(nil) // "acme-tls/1" with tls-alpn-01 on
	}
	return portshare.Config{
		GetCertificate: p.getCertificate(turnTLS.GetCertificate),
		CloseProtos:    closeProtos,
		TURNProtos:     turn.ALPNProtocols(),
		// http/1.1 only: the HTTP server offers no h2 (a WebSocket over
		// HTTP/2 needs RFC 8441, which the signaling server does not speak).
		HTTPProtos: []string{"http/1.1"},
		Source:     pendingSource,
		Logger:     p.log,
	}
}

// pendingSource is the address a shared socket's pending connection
// counts against (portshare.Config.Source), read without blocking: the
// accept loop calls it before any PROXY header is in. A connection from a
// trusted proxy (listen.proxy_from) is not limited per source, since it
// carries a crowd of clients; any other counts against its socket peer.
func pendingSource(c net.Conn) (netip.Addr, bool) {
	if pc := proxied.Of(c); pc != nil {
		if pc.Trusted() {
			return netip.Addr{}, false
		}
		return pc.Peer().Addr().Unmap(), true
	}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// getCertificate picks the certificate of a shared socket's handshake:
// the relay's (tls.cert_file, or its self-signed one) for a client that
// offers only TURN's ALPN protocols, HTTPS's (http.cert_file) for one that
// offers only HTTP's; otherwise (no ALPN, the usual TURN client, or both)
// the first of HTTPS's and the relay's whose names match the server name
// the client asked for, else HTTPS's. With one certificate for both names,
// as most deployments have, that is simply it.
func (p *sharedPorts) getCertificate(relay func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	turnProtos := turn.ALPNProtocols()
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if p.acme != nil && slices.Contains(hello.SupportedProtos, acmecert.ALPNProto) {
			// A tls-alpn-01 validation (RFC 8737): the manager answers.
			return p.acme.GetCertificate(hello)
		}
		var wantsTURN, wantsHTTP bool
		for _, proto := range hello.SupportedProtos {
			wantsTURN = wantsTURN || slices.Contains(turnProtos, proto)
			wantsHTTP = wantsHTTP || proto == "http/1.1" || proto == "h2"
		}
		https, err := p.httpCert(hello)
		if err != nil {
			return nil, err
		}
		switch {
		case wantsTURN && !wantsHTTP:
			return relay(hello)
		case wantsHTTP && !wantsTURN:
			return https, nil
		}
		if hello.ServerName != "" && hello.SupportsCertificate(https) != nil {
			if c, err := relay(hello); err == nil && hello.SupportsCertificate(c) == nil {
				return c, nil
			}
		}
		return https, nil
	}
}

// httpListeners are the HTTP sides of the shared sockets the relay bound.
func (p *sharedPorts) httpListeners() []net.Listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]net.Listener, 0, len(p.muxes))
	for _, m := range p.muxes {
		out = append(out, m.Listener(portshare.HTTP))
	}
	return out
}

// closeAll closes every Mux: after a failed start, when the relay never
// served (and so never closed) its side.
func (p *sharedPorts) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.muxes {
		_ = m.Close()
	}
}

// collector reports every Mux's connection outcomes as
// icegate_shared_port_connections_total{outcome}.
func (p *sharedPorts) collector() prometheus.Collector { return sharedCollector{p} }

var sharedDesc = prometheus.NewDesc("icegate_shared_port_connections_total",
	"Connections to a port shared by TURN over TLS and HTTPS, by outcome: turn or http (routed), closed (an ALPN protocol that ends at the handshake), handshake (TLS failed), timeout (handshake or first bytes too slow), silent (closed before sending), overloaded (too many pending), per_source (too many pending from one address), no_taker (its side closed).",
	[]string{"outcome"}, nil)

type sharedCollector struct{ p *sharedPorts }

func (c sharedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sharedDesc }

func (c sharedCollector) Collect(ch chan<- prometheus.Metric) {
	sum := map[string]uint64{}
	c.p.mu.Lock()
	for _, m := range c.p.muxes {
		for k, v := range m.Counts() {
			sum[k] += v
		}
	}
	c.p.mu.Unlock()
	for _, o := range portshare.Outcomes {
		ch <- prometheus.MustNewConstMetric(sharedDesc, prometheus.CounterValue, float64(sum[o]), o)
	}
}

// ownerSide is the Mux's TURN side as the relay holds it: the relay owns
// the socket, so its Close closes the Mux.
type ownerSide struct {
	net.Listener
	m *portshare.Mux
}

func (o *ownerSide) Close() error { return o.m.Close() }
