package turn

import (
	"net"

	"icegate/internal/proxied"
)

// proxyListen puts the PROXY protocol on a TCP or TLS TURN listener, under
// any TLS: with Listen.ProxyFrom set, connections from those ranges must
// begin with a PROXY v1 or v2 header whose client address then stands for
// the connection everywhere (XOR-MAPPED-ADDRESS, authentication and peer
// policy events, limits.connections_per_source, logs), and a header from
// anywhere else refuses the connection. It is the one place each stream
// listener gets it: anything that wraps the raw listener further (TLS, a
// demultiplexer) wraps what this returns, and reads the header through it.
// Without ProxyFrom it returns ln.
func (s *Server) proxyListen(ln net.Listener, transport string) net.Listener {
	return proxied.Listen(ln, proxied.Config{
		From:     s.cfg.Listen.ProxyFrom,
		Listener: transport,
		Count:    func(outcome string) { s.metrics.ProxyHeaders.WithLabelValues(transport, outcome).Inc() },
		Log:      s.limited,
	})
}
