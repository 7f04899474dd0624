package signaling

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Config is everything a Server is told, as a plain struct: like pion's
// ServerConfig, the zero value of a setting means its documented default,
// and a test builds a Server without any config file. cmd/icegate
// translates the HCL schema (the http, signaling, listen, auth, tls and
// stun blocks) into it; the HCL attribute behind each field is named in
// its comment, and the error messages clients get name those attributes.
//
// The Relay and NATProbe fields are not settings but facts about the
// STUN/TURN relay, which this package does not run: they have no defaults,
// and the caller passes what the relay actually serves.
type Config struct {
	// AllowedOrigins are the browser origins ("https://app.example.com",
	// "https://*.example.com", or "*" for any) allowed to open the WebSocket
	// and call the credential API. Empty (the default) allows the page's own
	// origin and http(s)://localhost, 127.0.0.1 and [::1] on any port.
	// HCL: signaling.allowed_origins.
	AllowedOrigins []string
	// TokenSecrets are HMAC-SHA256 secrets for the tokens (HS256 JWTs) a
	// client must present; any of them verifies. Empty (the default) needs no
	// token. HCL: signaling.token_secrets.
	TokenSecrets []string
	// APIKeys are the keys an application's backend presents to the server
	// API (/api/v1/, as "Authorization: Bearer KEY"); any of them is
	// accepted, so a key can be replaced without a gap. Each is at least
	// MinAPIKeyBytes long. Empty (the default) switches the server API off:
	// it answers 404. HCL: api.keys.
	APIKeys []string
	// TokenAudience, when not "", must be one of a token's "aud" values
	// (RFC 7519 §4.1.3); "" (the default) does not check "aud".
	// HCL: signaling.token_audience.
	TokenAudience string
	// MaxTokenLifetime, when positive, refuses tokens whose exp - iat is
	// longer, and tokens without "iat". 0 (the default) puts no cap.
	// HCL: signaling.max_token_lifetime.
	MaxTokenLifetime time.Duration
	// Hosts are the DNS names clients reach this server by: exact names
	// ("signal.example.com"), "*.example.com" for any name under it, or "*"
	// for any name at all. A request whose Host names something else gets
	// 421 Misdirected Request, so that a foreign page whose DNS name
	// rebinds to this server's address cannot reach it (that page's Origin
	// names its own host, which the origin check takes for the server's
	// own). Always accepted besides these: "localhost", TURNHost, a Host
	// that is an IP address, and a request without Host. Empty (the
	// default) accepts only those. cmd/icegate passes http.hosts and the
	// DNS names in http.cert_file's and tls.cert_file's certificates.
	// HCL: http.hosts.
	Hosts []string
	// TURNHost is the host name or IP put in the stun:/turn:/turns: URLs
	// handed out. "" (the default) uses the host the client reached the HTTP
	// server at. HCL: signaling.turn_host.
	TURNHost string
	// CredentialTTL is how long handed-out TURN credentials stay valid; a
	// connected peer gets fresh ones before they expire. Default 1h.
	// HCL: signaling.credential_ttl.
	CredentialTTL time.Duration
	// MaxCredentialTTL caps the lifetime a backend may ask of the
	// credential API (POST /api/v1/turn/credentials): a longer ttl is
	// lowered to it. At least MinAPICredentialTTL. Default 24h.
	// HCL: api.max_credential_ttl.
	MaxCredentialTTL time.Duration
	// MaxConnections caps open connections: WebSockets, and socket.io
	// sessions from their Engine.IO handshake on. Default 10000.
	// HCL: signaling.max_connections.
	MaxConnections int
	// DescriptorReserve is how many file descriptors below the process's
	// soft RLIMIT_NOFILE new WebSockets and socket.io sessions leave free:
	// once the process holds more than the limit less this, they are
	// refused with 503 before the upgrade (counted as refused "descriptors"),
	// so the relay's sockets, the listeners' accepts, Redis and the logs
	// still get descriptors, and accept(2) never fails with EMFILE. Only on
	// Linux (it counts /proc/self/fd). Default 512.
	// HCL: signaling.descriptor_reserve.
	DescriptorReserve int
	// MaxOpening caps the sessions this server opens or resumes at once
	// (the bus's open and resume, from the handshake to the hello): one
	// more WebSocket or socket.io handshake waits up to a second for a
	// place (while at most four times MaxOpening wait), then is refused
	// with 503 (code "busy", Retry-After: 1) before the upgrade. A
	// reconnect storm then waits at the door, blocked
	// or in its clients' retries,
	// instead of in an unbounded queue of bus operations to Redis that
	// outlasts their timeout and makes every resume fail. Default 0:
	// automatic, 64 with a shared (cluster) bus, where each open waits on
	// Redis round trips, and 4 per CPU (GOMAXPROCS) with the in-process
	// bus, where an open is CPU work only and more at once only lengthen
	// the queues (the scheduler's, the locks') that established sessions'
	// requests wait in (measured in docs/performance.md, issue 15).
	// HCL: signaling.max_opening.
	MaxOpening int
	// MaxMessageBytes caps one client message. Default 65536.
	// HCL: signaling.max_message_bytes.
	MaxMessageBytes int
	// MessagesPerSecond is the sustained rate of messages one peer may send.
	// Default 50. HCL: signaling.messages_per_second.
	MessagesPerSecond int
	// MessagesBurst is the burst above MessagesPerSecond; it may not be
	// below it. Default 200, or MessagesPerSecond when that is higher.
	// HCL: signaling.messages_burst.
	MessagesBurst int
	// PeersPerRoom caps a room's size (a join may ask for less); a room is
	// where two peers meet, so 1 is refused. Default 16.
	// HCL: signaling.peers_per_room.
	PeersPerRoom int
	// SocketIORoomSize caps a room a socket.io client creates (/socket.io/:
	// its rooms and codelab vocabularies have no way to ask for a size; the
	// tutorials use 2, one uses 3). At least 2, at most PeersPerRoom.
	// Default 2. HCL: signaling.socketio_room_size.
	SocketIORoomSize int
	// RoomsPerPeer caps the rooms one peer is in at once. Default 8.
	// HCL: signaling.rooms_per_peer.
	RoomsPerPeer int
	// SendQueue is how many messages may wait for one peer; beyond it the
	// peer is too slow and is disconnected. Default 256.
	// HCL: signaling.send_queue.
	SendQueue int
	// ResumeGrace is how long a dropped peer keeps its id, rooms and missed
	// messages for a reconnect. Default 30s. HCL: signaling.resume_grace.
	ResumeGrace time.Duration
	// NoResume turns resuming off: a dropped peer is gone at once. Default
	// false. HCL: signaling.resume_grace = "0s".
	NoResume bool
	// PingInterval is how often an idle WebSocket is pinged. Default 25s.
	// HCL: signaling.ping_interval.
	PingInterval time.Duration
	// NoTURNEvents refuses peers' requests for the relay's decisions about
	// their own TURN requests. Default false (they may ask).
	// HCL: signaling.turn_events = false.
	NoTURNEvents bool
	// NoTestPage stops serving the NAT traversal test page at /. Default
	// false (it is served). HCL: http.test_page = false.
	NoTestPage bool
	// Separator splits expiry and user id in the time-limited TURN usernames
	// minted: one character, not a digit, not white space; it must be the
	// one the relay parses with. Default ":". HCL: auth.separator.
	Separator string

	// Relay is where and how the relay is reached: the iceServers URLs name
	// these ports and transports.
	Relay Relay
	// NATProbe are the server's two RFC 5780 addresses as clients reach
	// them, for the test page's NAT hint; the zero value (RFC 5780 off)
	// sends none. See NATProbe.
	NATProbe NATProbe
}

// Relay describes the STUN/TURN relay that handed-out iceServers point at.
// The caller fills it from what the relay actually serves (a port 0 in the
// config file is the port the system picked): a URL for a port or a
// transport the relay does not serve would send browsers nowhere. A
// transport switched on needs its port.
type Relay struct {
	// Port is the UDP and TCP port of stun: and turn: URLs.
	// HCL: listen.port, or the port the relay got.
	Port int
	// TLSPort is the port of turns: URLs. HCL: listen.tls_port, or the port
	// the relay got.
	TLSPort int
	// UDP, TCP and TLS say which transports the relay serves: stun: and
	// turn:?transport=udp need UDP, turn:?transport=tcp TCP, turns: TLS.
	// HCL: listen.udp, listen.tcp, listen.tls.
	UDP, TCP, TLS bool
	// SelfSignedCert says the relay's TLS certificate is one it generated
	// (tls.cert_file is empty). hello tells the test page, because browsers
	// refuse turns: with such a certificate.
	SelfSignedCert bool
}

// NATProbe are the server's two RFC 5780 addresses as clients reach them
// (the public addresses behind a 1:1 NAT): Primary is the primary address
// and port (RFC 5780 test I), Alternate the alternate address and port
// (test III). Both address and port differ, so the same mapped address
// through both means endpoint-independent mapping (RFC 4787 §4.1); a second
// port on the same address could not tell that from address-dependent
// mapping. Both are set or neither: one address cannot tell anything about
// mapping.
type NATProbe struct {
	Primary, Alternate netip.AddrPort
}

// On reports whether p names the two addresses.
func (p NATProbe) On() bool { return p.Primary.IsValid() && p.Alternate.IsValid() }

// urls returns the stun: URLs a browser compares its server-reflexive
// address through; nil when p is off.
func (p NATProbe) urls() []string {
	if !p.On() {
		return nil
	}
	return []string{"stun:" + p.Primary.String(), "stun:" + p.Alternate.String()}
}

// MinAPIKeyBytes is the shortest server API key accepted (Config.APIKeys):
// 32 random characters are beyond guessing.
const MinAPIKeyBytes = 32

// Defaults of Config, applied by withDefaults.
const (
	defaultCredentialTTL     = time.Hour
	defaultMaxCredentialTTL  = 24 * time.Hour
	defaultMaxConnections    = 10000
	defaultDescriptorReserve = 512
	defaultMaxOpening        = 64 // on a shared bus (Server.autoMaxOpening)
	memoryMaxOpeningPerCPU   = 4  // on the in-process bus
	defaultMaxMessageBytes   = 65536
	defaultMessagesPerSecond = 50
	defaultMessagesBurst     = 200
	defaultPeersPerRoom      = 16
	defaultSocketIORoomSize  = 2
	defaultRoomsPerPeer      = 8
	defaultSendQueue         = 256
	defaultResumeGrace       = 30 * time.Second
	defaultPingInterval      = 25 * time.Second
	defaultSeparator         = ":"
)

// withDefaults returns c with every zero setting replaced by its default
// and its slices copied, so that the caller may reuse its own. In the
// result ResumeGrace 0 means resuming is off.
func (c Config) withDefaults() Config {
	c.AllowedOrigins = slices.Clone(c.AllowedOrigins)
	c.TokenSecrets = slices.Clone(c.TokenSecrets)
	c.APIKeys = slices.Clone(c.APIKeys)
	c.Hosts = slices.Clone(c.Hosts)
	or := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	orDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	orDur(&c.CredentialTTL, defaultCredentialTTL)
	orDur(&c.MaxCredentialTTL, defaultMaxCredentialTTL)
	or(&c.MaxConnections, defaultMaxConnections)
	or(&c.DescriptorReserve, defaultDescriptorReserve)
	or(&c.MaxMessageBytes, defaultMaxMessageBytes)
	or(&c.MessagesPerSecond, defaultMessagesPerSecond)
	or(&c.MessagesBurst, max(defaultMessagesBurst, c.MessagesPerSecond))
	or(&c.PeersPerRoom, defaultPeersPerRoom)
	or(&c.SocketIORoomSize, defaultSocketIORoomSize)
	or(&c.RoomsPerPeer, defaultRoomsPerPeer)
	or(&c.SendQueue, defaultSendQueue)
	orDur(&c.PingInterval, defaultPingInterval)
	if c.NoResume {
		c.ResumeGrace = 0
	} else {
		orDur(&c.ResumeGrace, defaultResumeGrace)
	}
	if c.Separator == "" {
		c.Separator = defaultSeparator
	}
	return c
}

// validate reports the values a Server cannot work with, all of them; c
// has its defaults applied. The limits a sensible deployment keeps (a ping
// interval below proxies' idle timeouts, a credential lifetime of at least
// a minute) are the config file's to check: tests go below them on
// purpose.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("signaling: "+format, args...))
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxConnections", c.MaxConnections},
		{"MaxMessageBytes", c.MaxMessageBytes},
		{"MessagesPerSecond", c.MessagesPerSecond},
		{"MessagesBurst", c.MessagesBurst},
		{"RoomsPerPeer", c.RoomsPerPeer},
		{"SendQueue", c.SendQueue},
		{"DescriptorReserve", c.DescriptorReserve},
	} {
		if f.v < 1 {
			bad("%s %d is below 1", f.name, f.v)
		}
	}
	if c.MaxOpening < 0 { // 0: automatic (Server.autoMaxOpening)
		bad("MaxOpening %d is below 0", c.MaxOpening)
	}
	if c.SocketIORoomSize < 2 || c.SocketIORoomSize > c.PeersPerRoom {
		bad("SocketIORoomSize %d must be from 2 to PeersPerRoom (%d)", c.SocketIORoomSize, c.PeersPerRoom)
	}
	if c.PeersPerRoom < 2 {
		bad("PeersPerRoom %d is below 2: a room is where two peers meet", c.PeersPerRoom)
	}
	if c.MessagesBurst < c.MessagesPerSecond {
		bad("MessagesBurst %d is below MessagesPerSecond %d", c.MessagesBurst, c.MessagesPerSecond)
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"CredentialTTL", c.CredentialTTL},
		{"PingInterval", c.PingInterval},
	} {
		if f.v <= 0 {
			bad("%s %v is not positive", f.name, f.v)
		}
	}
	for i, k := range c.APIKeys {
		// The key itself is never printed.
		if len(k) < MinAPIKeyBytes {
			bad("APIKeys[%d] is %d bytes; a key needs at least %d random ones", i, len(k), MinAPIKeyBytes)
		}
	}
	for i, h := range c.Hosts {
		if h == "" || strings.ContainsAny(h, ":/ ") || strings.Contains(strings.TrimPrefix(h, "*."), "*") && h != "*" {
			bad("Hosts[%d] %q is not a DNS name, \"*.\" and a name, or \"*\"", i, h)
		}
	}
	if c.MaxCredentialTTL < MinAPICredentialTTL {
		bad("MaxCredentialTTL %v is below MinAPICredentialTTL %v", c.MaxCredentialTTL, MinAPICredentialTTL)
	}
	if c.MaxTokenLifetime < 0 {
		bad("MaxTokenLifetime %v is negative (0 puts no cap)", c.MaxTokenLifetime)
	}
	if c.ResumeGrace < 0 {
		bad("ResumeGrace %v is negative (NoResume turns resuming off)", c.ResumeGrace)
	}
	switch sep, _ := utf8.DecodeRuneInString(c.Separator); {
	case utf8.RuneCountInString(c.Separator) != 1:
		bad("Separator %q is not exactly one character", c.Separator)
	case unicode.IsDigit(sep) || unicode.IsSpace(sep) || unicode.IsControl(sep):
		// The expiry before it is a number, and a username is one token.
		bad("Separator %q is a digit, white space or a control character", c.Separator)
	}
	r := c.Relay
	for _, p := range []struct {
		name string
		port int
		on   bool
	}{
		{"Relay.Port", r.Port, r.UDP || r.TCP},
		{"Relay.TLSPort", r.TLSPort, r.TLS},
	} {
		switch {
		case p.port < 0 || p.port > 65535:
			bad("%s %d is not a port", p.name, p.port)
		case p.port == 0 && p.on:
			bad("%s is 0 while its transport is on: pass the port the relay got", p.name)
		}
	}
	n := c.NATProbe
	switch {
	case n.Primary.IsValid() != n.Alternate.IsValid():
		bad("NATProbe needs both addresses or neither (got %v and %v)", n.Primary, n.Alternate)
	case n.On() && (n.Primary.Port() == 0 || n.Alternate.Port() == 0):
		bad("NATProbe %v, %v: a port is 0", n.Primary, n.Alternate)
	case n.On() && n.Primary.Addr() == n.Alternate.Addr():
		bad("NATProbe %v, %v: the same address cannot tell endpoint-independent mapping (RFC 4787 §4.1)", n.Primary, n.Alternate)
	}
	return errors.Join(errs...)
}
