package main

import (
	"net"
	"net/netip"
	"slices"

	"icegate/config"
	"icegate/signaling"
	"icegate/turn"
)

// signalingConfig translates the config file's schema into the signaling
// server's own Config. relay are the addresses the relay actually listens
// on: the iceServers URLs carry their ports, which win over the file's, so
// that nothing hands out a URL for a port the server does not serve (a
// reload keeps the running ports, but the listeners are the authority).
// cfg must have passed config.Validate.
func signalingConfig(cfg *config.Config, relay []turn.ListenAddr) signaling.Config {
	s := cfg.Signaling
	port, tlsPort := servedPorts(relay)
	if port == 0 {
		port = cfg.Listen.Port
	}
	if tlsPort == 0 {
		tlsPort = cfg.Listen.TLSPort
	}
	out := signaling.Config{
		AllowedOrigins:    s.AllowedOrigins,
		TokenSecrets:      s.TokenSecrets,
		APIKeys:           cfg.API.Keys,
		TokenAudience:     s.TokenAudience,
		MaxTokenLifetime:  s.MaxTokenLifetimeDuration,
		Hosts:             publicNames(cfg),
		TURNHost:          s.TURNHost,
		CredentialTTL:     s.CredentialTTLDuration,
		MaxCredentialTTL:  cfg.API.MaxCredentialTTLDuration,
		MaxConnections:    s.MaxConnections,
		DescriptorReserve: s.DescriptorReserve,
		MaxOpening:        s.MaxOpening,
		MaxMessageBytes:   s.MaxMessageBytes,
		MessagesPerSecond: s.MessagesPerSecond,
		MessagesBurst:     s.MessagesBurst,
		PeersPerRoom:      s.PeersPerRoom,
		SocketIORoomSize:  s.SocketIORoomSize,
		RoomsPerPeer:      s.RoomsPerPeer,
		SendQueue:         s.SendQueue,
		ResumeGrace:       s.ResumeGraceDuration,
		NoResume:          s.ResumeGraceDuration == 0, // resume_grace = "0s"
		PingInterval:      s.PingIntervalDuration,
		NoTURNEvents:      !s.TURNEventsOn(),
		NoTestPage:        !cfg.HTTP.TestPageOn(),
		Separator:         cfg.Auth.Separator,
		Relay: signaling.Relay{
			Port:           port,
			TLSPort:        tlsPort,
			UDP:            cfg.Listen.UDPOn(),
			TCP:            cfg.Listen.TCPOn(),
			TLS:            cfg.Listen.TLSOn(),
			SelfSignedCert: cfg.TLS.CertFile == "",
		},
	}
	if st := cfg.STUN; st.Enabled() {
		// As clients reach them: the public addresses behind a 1:1 NAT
		// (config.Validate fills them with the bound ones otherwise). The
		// primary's port is listen.port, as served.
		out.NATProbe = signaling.NATProbe{
			Primary:   netip.AddrPortFrom(st.PrimaryPublicAddr, uint16(port)),
			Alternate: netip.AddrPortFrom(st.AlternatePublicAddr, uint16(st.AlternatePort)),
		}
	}
	return out
}

// publicNames are the DNS names the HTTP server answers to (the Host
// check against DNS rebinding): http.hosts, and the names in the
// certificates of http.cert_file and tls.cert_file, which clients reaching
// the server over TLS must be using anyway. signaling adds turn_host and
// localhost itself. nil when there are none.
func publicNames(cfg *config.Config) []string {
	var names []string
	for _, list := range [][]string{cfg.HTTP.Hosts, cfg.HTTP.CertNames, cfg.TLS.CertNames} {
		for _, n := range list {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

// servedPorts returns the ports the relay's listeners got: port for UDP and
// TCP, tlsPort for TLS and DTLS; 0 where it has no such listener.
func servedPorts(addrs []turn.ListenAddr) (port, tlsPort int) {
	for _, a := range addrs {
		p := 0
		switch v := a.Addr.(type) {
		case *net.UDPAddr:
			p = v.Port
		case *net.TCPAddr:
			p = v.Port
		}
		switch a.Transport {
		case "udp", "tcp":
			if port == 0 {
				port = p
			}
		case "tls", "dtls":
			if tlsPort == 0 {
				tlsPort = p
			}
		}
	}
	return port, tlsPort
}
