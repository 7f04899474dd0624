package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Bounds for the http and signaling blocks.
const (
	minMessageBytes = 1024
	maxMessageBytes = 16 << 20
	// A ping interval of 60 s or more lets nginx's default
	// proxy_read_timeout (60 s) cut idle sessions.
	maxPingInterval  = 55 * time.Second
	minPingInterval  = time.Second
	minCredentialTTL = time.Minute
	maxCredentialTTL = 7 * 24 * time.Hour
	maxResumeGrace   = 10 * time.Minute
	// A token lifetime cap beyond a year is a typo.
	maxTokenLifetime = 365 * 24 * time.Hour
	// minTokenSecretChars is the length below which a token secret draws a
	// warning (HS256 wants at least 256 bits of key).
	minTokenSecretChars = 32
)

func (h *HTTP) validate(v *validator) {
	if err := checkHTTPListen(h.Listen); err != nil {
		v.errorf(h.ListenRange, "http.listen", "%v", err)
	}
	h.CertNames = v.certPair("http", h.CertFile, h.CertFileRange, h.KeyFile, h.KeyFileRange)
	h.ProxyFromPrefixes = v.proxyFrom(h.ProxyFrom, h.ProxyFromRange, "http.proxy_from")
	for i, name := range h.Hosts {
		field := fmt.Sprintf("http.hosts[%d]", i)
		switch {
		case name == "*":
			v.warnf(h.HostsRange, field, "\"*\" accepts any Host: a page whose DNS name rebinds to this server's address can then reach signaling")
		case isIP(name):
			v.warnf(h.HostsRange, field, "%q is an IP address; requests naming an IP address are always accepted, so only DNS names need listing", name)
		case slices.Contains(h.Hosts[:i], name):
			v.errorf(h.HostsRange, field, "%q is listed twice", name)
		default:
			if err := checkHostName(name); err != nil {
				v.errorf(h.HostsRange, field, "%q %v", name, err)
			}
		}
	}
}

// isIP reports whether h is an IP address, IPv6 possibly in brackets.
func isIP(h string) bool {
	_, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil
}

// checkHostName accepts an http.hosts entry: a DNS name, possibly starting
// "*.".
func checkHostName(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return fmt.Errorf("has a \"*\" other than a leading \"*.\"")
	}
	if strings.Contains(name, ":") {
		return fmt.Errorf("has a port or scheme; give the name alone (any port matches)")
	}
	if err := checkHost(name); err != nil || isIP(name) {
		return fmt.Errorf("is not a DNS name")
	}
	return nil
}

// checkHTTPListen checks http.listen: "" (HTTP off) or host:port.
func checkHTTPListen(hostport string) error {
	if hostport == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q is not host:port (\"\" switches HTTP off)", hostport)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		// Port 0 picks a free port, which the start-up log names (tests).
		return fmt.Errorf("port %q is not a number 0-65535", port)
	}
	return nil
}

// loopbackListen reports whether a host:port only listens on loopback.
func loopbackListen(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (s *Signaling) validate(v *validator, h *HTTP) {
	for i, o := range s.AllowedOrigins {
		field := fmt.Sprintf("signaling.allowed_origins[%d]", i)
		if o == "*" {
			v.warnf(s.AllowedOriginsRange, field, "\"*\" lets every web site use this server's signaling and TURN credentials")
			continue
		}
		if err := checkOrigin(o); err != nil {
			v.errorf(s.AllowedOriginsRange, field, "%q %v", o, err)
		}
	}

	v.secrets(s.TokenSecrets, s.TokenSecretsRange, "signaling.token_secrets", minTokenSecretChars)
	if s.TokenAudience != "" {
		v.text(s.TokenAudience, s.TokenAudienceRange, "signaling.token_audience")
	}
	s.MaxTokenLifetimeDuration, _ = v.durationBetween(s.MaxTokenLifetime, s.MaxTokenLifetimeRange, "signaling.max_token_lifetime", 0, maxTokenLifetime,
		"0s (no cap)", "8760h")
	if len(s.TokenSecrets) == 0 {
		// Without secrets no token is asked for, so neither check runs.
		if s.TokenAudience != "" && v.wrote(s.TokenAudienceRange) {
			v.warnf(s.TokenAudienceRange, "signaling.token_audience", "set while signaling.token_secrets is empty: no token is asked for, so it checks nothing")
		}
		if s.MaxTokenLifetimeDuration > 0 && v.wrote(s.MaxTokenLifetimeRange) {
			v.warnf(s.MaxTokenLifetimeRange, "signaling.max_token_lifetime", "set while signaling.token_secrets is empty: no token is asked for, so it checks nothing")
		}
	}

	if s.TURNHost != "" {
		if err := checkHost(s.TURNHost); err != nil {
			v.errorf(s.TURNHostRange, "signaling.turn_host", "%q %v", s.TURNHost, err)
		}
	}

	s.CredentialTTLDuration, _ = v.durationBetween(s.CredentialTTL, s.CredentialTTLRange, "signaling.credential_ttl", minCredentialTTL, maxCredentialTTL, "1m", "168h")
	s.ResumeGraceDuration, _ = v.durationBetween(s.ResumeGrace, s.ResumeGraceRange, "signaling.resume_grace", 0, maxResumeGrace, "0s", "10m")
	s.PingIntervalDuration, _ = v.durationBetween(s.PingInterval, s.PingIntervalRange, "signaling.ping_interval", minPingInterval, maxPingInterval,
		"1s", "55s (proxies cut WebSockets idle for 60s)")

	atLeast := func(n, lo int, rng hcl.Range, field string) {
		if n < lo {
			v.errorf(rng, field, "%d is below %d", n, lo)
		}
	}
	atLeast(s.MaxConnections, 1, s.MaxConnectionsRange, "signaling.max_connections")
	// Below 32 the listeners, Redis and the logs could be left without one.
	atLeast(s.DescriptorReserve, 32, s.DescriptorReserveRange, "signaling.descriptor_reserve")
	atLeast(s.MaxOpening, 0, s.MaxOpeningRange, "signaling.max_opening")
	atLeast(s.MessagesPerSecond, 1, s.MessagesPerSecondRange, "signaling.messages_per_second")
	atLeast(s.PeersPerRoom, 2, s.PeersPerRoomRange, "signaling.peers_per_room")
	atLeast(s.RoomsPerPeer, 1, s.RoomsPerPeerRange, "signaling.rooms_per_peer")
	if s.SocketIORoomSize < 2 || s.SocketIORoomSize > max(s.PeersPerRoom, 2) {
		v.errorf(s.SocketIORoomSizeRange, "signaling.socketio_room_size", "%d is outside 2-%d (signaling.peers_per_room)", s.SocketIORoomSize, max(s.PeersPerRoom, 2))
	}
	atLeast(s.SendQueue, 16, s.SendQueueRange, "signaling.send_queue")
	if s.MaxMessageBytes < minMessageBytes || s.MaxMessageBytes > maxMessageBytes {
		v.errorf(s.MaxMessageBytesRange, "signaling.max_message_bytes", "%d is outside %d-%d (an SDP offer takes a few kilobytes)",
			s.MaxMessageBytes, minMessageBytes, maxMessageBytes)
	}
	v.burst(s.MessagesPerSecond, s.MessagesPerSecondRange, "signaling.messages_per_second", s.MessagesBurst, s.MessagesBurstRange, "signaling.messages_burst")

	// An http.listen that does not parse has its error already; whether it
	// is reachable cannot be told.
	if h.Listen != "" && checkHTTPListen(h.Listen) == nil && !loopbackListen(h.Listen) && len(s.TokenSecrets) == 0 {
		v.warnf(v.at(s.TokenSecretsRange, h.ListenRange), "signaling.token_secrets",
			"empty while http.listen %q is reachable from other hosts: anyone who can reach it gets TURN credentials", h.Listen)
	}
}

// checkOrigin accepts scheme://host[:port], host possibly starting "*.".
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	switch {
	case err != nil:
		return fmt.Errorf("is not an origin (write \"https://app.example.com\")")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("is not an http or https origin (write \"https://app.example.com\")")
	case u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("is not an origin: give only scheme://host[:port], as browsers send it")
	case u.Path == "/":
		return fmt.Errorf("ends in \"/\"; browsers send origins without it")
	}
	host := strings.TrimPrefix(u.Hostname(), "*.")
	if strings.Contains(host, "*") {
		return fmt.Errorf("has a \"*\" other than a leading \"*.\"")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("has port %q, not a number 1-65535", port)
		}
	}
	return checkHost(host)
}

// checkHost accepts an IP address or a DNS name.
func checkHost(h string) error {
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("is longer than 253 characters")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("is not a host name or IP address")
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return fmt.Errorf("is not a host name or IP address (no scheme or port)")
			}
		}
	}
	return nil
}
