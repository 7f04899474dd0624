package turn

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/bits"

	"github.com/prometheus/client_golang/prometheus"
)

// This file holds what an operator asks of a running relay besides its
// counters: whether its serving loops answer (the liveness check of
// /healthz), how full its relay port pool is, and which certificate TLS and
// DTLS serve. All of it is read when asked (a probe, a scrape); nothing
// here runs on the packet path.

// CheckLoops asks every UDP event loop to come round once (udploop's
// Ping) and returns an error naming the first that does not before ctx
// ends: a loop stuck in a handler or a system call serves none of its
// sockets, while the rest of the process looks fine. With Go's net package
// (Options.PortableIO, or not Linux) there are no loops and it returns nil.
func (s *Server) CheckLoops(ctx context.Context) error {
	for i, l := range s.loops {
		if err := l.Ping(ctx); err != nil {
			return fmt.Errorf("udp event loop %d of %d does not answer: %w", i+1, len(s.loops), err)
		}
	}
	return nil
}

// Loops returns how many UDP event loops serve the relay (0 with Go's net
// package).
func (s *Server) Loops() int { return len(s.loops) }

// PortPool is the relay port pool of one address family and transport.
type PortPool struct {
	Family    string // ipv4 or ipv6
	Transport string // udp, or tcp (RFC 6062 relays)
	// Size is how many relay ports the pool has: the relay port range, or
	// in shared mode (RelayConfig.Shared) the shared sockets.
	Size int
	// InUse is how many of them are taken: bound to an allocation or held
	// for a RESERVATION-TOKEN, or in shared mode the shared sockets that
	// serve at least one allocation.
	InUse int
}

// PortPools returns the relay port pools of the enabled families: UDP, and
// TCP when RFC 6062 relays are on. It takes the allocator's lock once.
func (s *Server) PortPools() []PortPool { return s.relays.pools() }

func (r *relayAllocator) pools() []PortPool {
	var out []PortPool
	size := r.max - r.min + 1
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range []struct {
		name string
		fam  relayFamily
		v    string
	}{{"ipv4", r.v4, "4"}, {"ipv6", r.v6, "6"}} {
		if !f.fam.enabled() {
			continue
		}
		if r.shared != nil {
			p := PortPool{Family: f.name, Transport: "udp", Size: len(r.shared["udp"+f.v])}
			for _, ss := range r.shared["udp"+f.v] {
				if ss.live.Load() > 0 {
					p.InUse++
				}
			}
			out = append(out, p)
			continue
		}
		out = append(out, PortPool{Family: f.name, Transport: "udp", Size: size, InUse: popcount(r.inUse["udp"+f.v])})
		if r.tcp {
			out = append(out, PortPool{Family: f.name, Transport: "tcp", Size: size, InUse: popcount(r.inUse["tcp"+f.v])})
		}
	}
	return out
}

func popcount(words []uint64) int {
	n := 0
	for _, w := range words {
		n += bits.OnesCount64(w)
	}
	return n
}

// poolCollector exports PortPools at scrape time, so that the allocator
// keeps no gauge of its own up to date.
type poolCollector struct {
	s          *Server
	size, used *prometheus.Desc
}

func newPoolCollector(s *Server) *poolCollector {
	labels := []string{"family", "transport"}
	return &poolCollector{
		s: s,
		size: prometheus.NewDesc("icegate_relay_ports",
			"Relay ports in the pool, by family (ipv4, ipv6) and transport (udp; tcp for RFC 6062 relays): the relay port range, or in shared mode the shared sockets.",
			labels, nil),
		used: prometheus.NewDesc("icegate_relay_ports_in_use",
			"Relay ports taken, by family and transport: bound to an allocation or held for a reservation token; in shared mode the shared sockets serving at least one allocation.",
			labels, nil),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.used
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.s.PortPools() {
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(p.Size), p.Family, p.Transport)
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(p.InUse), p.Family, p.Transport)
	}
}

// Certificate returns the certificate TLS and DTLS serve now, and where it
// comes from: "file" (tls.cert_file, as last loaded), "self_signed"
// (generated at start). It returns nil and "" when the relay has no TLS or
// DTLS listener, or when an external source (ACME) serves it: that source
// reports its own certificates.
func (s *Server) Certificate() (*x509.Certificate, string) {
	if s.certs == nil {
		return nil, ""
	}
	src := s.certs.cur.Load()
	switch {
	case src.ext != nil:
		return nil, ""
	case src.pair != nil:
		if c := src.pair.Get(); c != nil && c.Leaf != nil {
			return c.Leaf, "file"
		}
	case src.self != nil:
		return src.self.Leaf, "self_signed"
	}
	return nil, ""
}
