package turn

import (
	"context"
	"net"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// poolOf returns the pool of family and transport from PortPools.
func poolOf(t *testing.T, s *Server, family, transport string) PortPool {
	t.Helper()
	for _, p := range s.PortPools() {
		if p.Family == family && p.Transport == transport {
			return p
		}
	}
	t.Fatalf("no %s %s pool in %+v", family, transport, s.PortPools())
	return PortPool{}
}

// TestPortPools: the pool's size is the relay range, and each allocation
// takes a port of its family until it ends; the exported gauges say the
// same as PortPools.
func TestPortPools(t *testing.T) {
	reg := prometheus.NewRegistry()
	loops := 1
	srv := startServerWith(t, func(c *Config) { c.Relay.MinPort, c.Relay.MaxPort = 41000, 41099 },
		Options{Registerer: reg, Loops: loops})
	if p := poolOf(t, srv.Server, "ipv4", "udp"); p.Size != 100 || p.InUse != 0 {
		t.Fatalf("ipv4 pool before any allocation: %+v", p)
	}
	server := srv.addr(t, "udp", "4")
	var relays []net.PacketConn
	for range 3 {
		c := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
		relay, err := c.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		relays = append(relays, relay)
	}
	if p := poolOf(t, srv.Server, "ipv4", "udp"); p.InUse != 3 {
		t.Fatalf("ipv4 pool with 3 allocations: %+v", p)
	}
	if p := poolOf(t, srv.Server, "ipv6", "udp"); p.Size != 100 || p.InUse != 0 {
		t.Fatalf("ipv6 pool: %+v", p)
	}
	// The exported gauges say what PortPools says.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	for key, v := range map[string]float64{
		"icegate_relay_ports,ipv4,udp": 100, "icegate_relay_ports_in_use,ipv4,udp": 3,
		"icegate_relay_ports,ipv6,udp": 100, "icegate_relay_ports_in_use,ipv6,udp": 0,
	} {
		if g, ok := got[key]; !ok || g != v {
			t.Errorf("%s = %v (exported: %v), want %v", key, g, ok, v)
		}
	}
	// Closing the client's relay deletes the allocation (Refresh 0).
	_ = relays[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for poolOf(t, srv.Server, "ipv4", "udp").InUse != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("ipv4 pool after one allocation ended: %+v", poolOf(t, srv.Server, "ipv4", "udp"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPortPoolsShared: in shared mode the pool is the shared sockets, and a
// socket counts as in use while it serves an allocation.
func TestPortPoolsShared(t *testing.T) {
	srv, _ := startShared(t, 3, false, nil)
	if p := poolOf(t, srv.Server, "ipv4", "udp"); p.Size != 3 || p.InUse != 0 {
		t.Fatalf("shared pool before any allocation: %+v", p)
	}
	server := srv.addr(t, "udp", "4")
	c := newClient(t, dialClient(t, "udp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	if _, err := c.Allocate(); err != nil {
		t.Fatal(err)
	}
	if p := poolOf(t, srv.Server, "ipv4", "udp"); p.Size != 3 || p.InUse != 1 {
		t.Fatalf("shared pool with one allocation: %+v", p)
	}
}

// TestCheckLoops: every event loop of a running server answers.
func TestCheckLoops(t *testing.T) {
	srv := startServer(t, nil)
	if srv.Loops() == 0 {
		t.Skip("no event loops on this system")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.CheckLoops(ctx); err != nil {
		t.Fatal(err)
	}
	portable := startServerIO(t, nil, true)
	if portable.Loops() != 0 || portable.CheckLoops(ctx) != nil {
		t.Fatalf("portable server: %d loops", portable.Loops())
	}
}

// TestCertificate: the relay says which certificate it serves, and where
// it comes from.
func TestCertificate(t *testing.T) {
	srv := startServer(t, nil)
	leaf, source := srv.Certificate()
	if source != "self_signed" || leaf == nil || time.Until(leaf.NotAfter) < 300*24*time.Hour {
		t.Fatalf("self-signed: %q %v", source, leaf)
	}
	files := startServer(t, func(c *Config) {
		c.TLS.CertFile, c.TLS.KeyFile = "../config/testdata/tls/cert.pem", "../config/testdata/tls/key.pem"
	})
	leaf, source = files.Certificate()
	if source != "file" || leaf == nil || leaf.NotAfter.IsZero() {
		t.Fatalf("from files: %q %v", source, leaf)
	}
	none := startServer(t, func(c *Config) { c.Listen.NoTLS, c.Listen.NoDTLS = true, true })
	if leaf, source := none.Certificate(); leaf != nil || source != "" {
		t.Fatalf("without TLS: %q %v", source, leaf)
	}
}
