// Package config owns icegate's configuration: the HCL schema, the embedded
// defaults, and validation that reports every problem with its file:line.
//
// A Config is produced by decoding the embedded defaults (default.hcl) and then
// the user's file on top of them, so an attribute the user leaves out keeps its
// default and an attribute the user does not know about is an error. Durations
// and addresses are kept as the strings the user wrote; Validate parses them and
// stores the parsed values in the fields marked "Filled by Validate", so the
// rest of the program never parses config text again.
//
// Every attribute has a sibling Range field (hcl tag "attr_range") holding
// where its value was written: in the user's file, or in the embedded
// defaults when the user left it out. Validate reports problems there, and
// FormatDiagnostics renders them as `icegate.hcl:14,3-20: error: ...`.
//
// The package opens no sockets; Validate reads the TLS certificate and key
// files when they are set.
package config

import (
	"net/netip"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Config is the whole configuration file.
type Config struct {
	// Realm is the long-term credential realm (RFC 8489 §9.2). Default "icegate".
	Realm      string    `hcl:"realm,optional"`
	RealmRange hcl.Range `hcl:"realm,attr_range"`

	// ShutdownGrace is how long SIGINT/SIGTERM lets allocations drain before
	// closing them. Default "10s".
	ShutdownGrace      string    `hcl:"shutdown_grace,optional"`
	ShutdownGraceRange hcl.Range `hcl:"shutdown_grace,attr_range"`

	Log     *Log     `hcl:"log,block"`
	Listen  *Listen  `hcl:"listen,block"`
	TLS     *TLS     `hcl:"tls,block"`
	Relay   *Relay   `hcl:"relay,block"`
	Auth    *Auth    `hcl:"auth,block"`
	Policy  *Policy  `hcl:"policy,block"`
	Limits  *Limits  `hcl:"limits,block"`
	Metrics *Metrics `hcl:"metrics,block"`
	Usage   *Usage   `hcl:"usage,block"`

	HTTP      *HTTP      `hcl:"http,block"`
	Signaling *Signaling `hcl:"signaling,block"`
	API       *API       `hcl:"api,block"`
	STUN      *STUN      `hcl:"stun,block"`
	// Cluster is nil without a cluster block (one process, no Redis); it
	// is the one block the embedded defaults leave out.
	Cluster *Cluster `hcl:"cluster,block"`

	// Filled by Validate.
	ShutdownGraceDuration time.Duration
	// Source is the file name the config came from ("<embedded defaults>" when none).
	Source string
}

// Log configures structured logging.
type Log struct {
	// Level is debug, info, warn or error. Default "info".
	Level      string    `hcl:"level,optional"`
	LevelRange hcl.Range `hcl:"level,attr_range"`
	// Format is text or json. Default "text".
	Format      string    `hcl:"format,optional"`
	FormatRange hcl.Range `hcl:"format,attr_range"`
}

// Listen configures the STUN/TURN listeners.
type Listen struct {
	// Addresses are the IPs to listen on, one socket per address and transport.
	// Default ["0.0.0.0", "::"].
	Addresses      []string  `hcl:"addresses,optional"`
	AddressesRange hcl.Range `hcl:"addresses,attr_range"`
	// Port is the UDP and TCP port. Default 3478.
	Port      int       `hcl:"port,optional"`
	PortRange hcl.Range `hcl:"port,attr_range"`
	// TLSPort is the TLS (TCP) and DTLS (UDP) port. Default 5349.
	TLSPort      int       `hcl:"tls_port,optional"`
	TLSPortRange hcl.Range `hcl:"tls_port,attr_range"`
	// SocketBuffer is the receive and send buffer of every UDP socket
	// (listeners and relays), in bytes; 0 keeps the system's default
	// (208 KB on Linux, which overflows in bursts). Default 4194304 (4 MiB,
	// coturn's size).
	SocketBuffer      int       `hcl:"socket_buffer,optional"`
	SocketBufferRange hcl.Range `hcl:"socket_buffer,attr_range"`
	// UDPSegmentation lets the Linux event loops send datagrams for one
	// destination as UDP GSO trains (UDP_SEGMENT). Default true.
	UDPSegmentation      *bool     `hcl:"udp_segmentation,optional"`
	UDPSegmentationRange hcl.Range `hcl:"udp_segmentation,attr_range"`
	// FreeBind binds listener and relay sockets on a specific address
	// that is not up yet (Linux IP_FREEBIND/IPV6_FREEBIND), so a server
	// started before the network serves once the address appears.
	// Default true.
	FreeBind      *bool     `hcl:"freebind,optional"`
	FreeBindRange hcl.Range `hcl:"freebind,attr_range"`
	// UDP, TCP, TLS and DTLS switch each transport on or off. Default true.
	UDP       *bool     `hcl:"udp,optional"`
	UDPRange  hcl.Range `hcl:"udp,attr_range"`
	TCP       *bool     `hcl:"tcp,optional"`
	TCPRange  hcl.Range `hcl:"tcp,attr_range"`
	TLS       *bool     `hcl:"tls,optional"`
	TLSRange  hcl.Range `hcl:"tls,attr_range"`
	DTLS      *bool     `hcl:"dtls,optional"`
	DTLSRange hcl.Range `hcl:"dtls,attr_range"`
	// ProxyFrom are the source ranges (CIDRs or addresses of load balancers
	// and proxies) whose TCP and TLS connections must begin with a PROXY
	// protocol v1 or v2 header; the client address it carries is the one
	// authentication, peer policy, limits and logs see. A header from any
	// other source refuses the connection; direct clients without one are
	// served as usual. UDP and DTLS are not covered. Default [] (off).
	ProxyFrom      []string  `hcl:"proxy_from,optional"`
	ProxyFromRange hcl.Range `hcl:"proxy_from,attr_range"`

	// Filled by Validate.
	Addrs             []netip.Addr
	ProxyFromPrefixes []netip.Prefix
}

// TLS configures the certificate for TLS and DTLS.
type TLS struct {
	// CertFile and KeyFile are PEM files. Both empty (the default) means a
	// self-signed certificate is generated at start.
	CertFile      string    `hcl:"cert_file,optional"`
	CertFileRange hcl.Range `hcl:"cert_file,attr_range"`
	KeyFile       string    `hcl:"key_file,optional"`
	KeyFileRange  hcl.Range `hcl:"key_file,attr_range"`
	// ReloadInterval is how often the files are checked for changes. Default "5s".
	ReloadInterval      string    `hcl:"reload_interval,optional"`
	ReloadIntervalRange hcl.Range `hcl:"reload_interval,attr_range"`
	// ACME, when present, gets the certificate from an ACME CA instead of
	// files (acme.go). Default absent.
	ACME *ACME `hcl:"acme,block"`

	// Filled by Validate.
	ReloadIntervalDuration time.Duration
	// CertNames are the DNS names the certificate is for (its subject
	// alternative names), when CertFile is set and loads.
	CertNames []string
}

// Relay configures relayed transport addresses.
type Relay struct {
	// MinPort and MaxPort bound the relay port range. Default 49152-65535.
	MinPort      int       `hcl:"min_port,optional"`
	MinPortRange hcl.Range `hcl:"min_port,attr_range"`
	MaxPort      int       `hcl:"max_port,optional"`
	MaxPortRange hcl.Range `hcl:"max_port,attr_range"`
	// IPv4Bind is the local IPv4 address relays bind to; "" disables IPv4
	// relays. Default "0.0.0.0".
	IPv4Bind      string    `hcl:"ipv4_bind,optional"`
	IPv4BindRange hcl.Range `hcl:"ipv4_bind,attr_range"`
	// IPv4Public is the IPv4 address advertised in XOR-RELAYED-ADDRESS (coturn's
	// external-ip). "" means the bind address, or when that is unspecified the
	// first usable address of this host's interfaces. "auto" asks the STUN
	// servers of DiscoverWith at start and every DiscoverInterval. Default "".
	IPv4Public      string    `hcl:"ipv4_public,optional"`
	IPv4PublicRange hcl.Range `hcl:"ipv4_public,attr_range"`
	// IPv6Bind and IPv6Public are the same for IPv6 (RFC 6156). Default "::" and "".
	IPv6Bind        string    `hcl:"ipv6_bind,optional"`
	IPv6BindRange   hcl.Range `hcl:"ipv6_bind,attr_range"`
	IPv6Public      string    `hcl:"ipv6_public,optional"`
	IPv6PublicRange hcl.Range `hcl:"ipv6_public,attr_range"`
	// DiscoverWith are the STUN servers (host:port) that ipv4_public =
	// "auto" and ipv6_public = "auto" ask, from the relay bind address, for
	// the address they see; more than half must agree. Default [].
	DiscoverWith      []string  `hcl:"discover_with,optional"`
	DiscoverWithRange hcl.Range `hcl:"discover_with,attr_range"`
	// DiscoverInterval is how often "auto" asks again after start; a new
	// majority is advertised to new allocations. 10s to 24h. Default "5m".
	DiscoverInterval      string    `hcl:"discover_interval,optional"`
	DiscoverIntervalRange hcl.Range `hcl:"discover_interval,attr_range"`
	// PrivateOK says a private or loopback advertised address is intended
	// (a LAN or a test). Without it, such an ipv4_public/ipv6_public, or a
	// specific ipv4_bind/ipv6_bind advertised as itself, is a Validate
	// error, a discovered one stops the start, and one picked from this
	// host's interfaces (a wildcard bind, nothing configured) is a start-up
	// warning. Default false.
	PrivateOK      *bool     `hcl:"private_ok,optional"`
	PrivateOKRange hcl.Range `hcl:"private_ok,attr_range"`
	// TCP enables RFC 6062 TCP relays. Default false (browsers never use them).
	TCP      *bool     `hcl:"tcp,optional"`
	TCPRange hcl.Range `hcl:"tcp,attr_range"`
	// Mode is how relayed addresses are handed out: "dedicated", a relay
	// port per allocation from min_port..max_port; or "shared", every UDP
	// allocation served from the few relay ports min_port..max_port (at most
	// 64; a handful such as 3 is the point), peers told apart by their
	// address and port, as coturn's --multiplex-peer does. Shared serves
	// EVEN-PORT from an even shared port (508 when there is none) and
	// cannot go with tcp = true. Default "dedicated". Restart to change.
	Mode      string    `hcl:"mode,optional"`
	ModeRange hcl.Range `hcl:"mode,attr_range"`
	// KernelOffload is whether the kernel relays the ChannelData of UDP
	// clients with a bound channel (an eBPF TC program, docs/operations.md
	// "Kernel offload"): "auto" uses it when the kernel, CAP_BPF and
	// CAP_NET_ADMIN and the interfaces allow, and otherwise logs one line
	// why not and relays in user space; "on" refuses to start without it;
	// "off" never loads it. Default "auto". Restart to change.
	KernelOffload      string    `hcl:"kernel_offload,optional"`
	KernelOffloadRange hcl.Range `hcl:"kernel_offload,attr_range"`
	// KernelOffloadInterfaces are the interfaces the program attaches to.
	// Default []: the Ethernet interfaces that hold a listen or relay
	// address (every one for a wildcard address). Restart to change.
	KernelOffloadInterfaces      []string  `hcl:"kernel_offload_interfaces,optional"`
	KernelOffloadInterfacesRange hcl.Range `hcl:"kernel_offload_interfaces,attr_range"`

	// Filled by Validate. Invalid (zero) addresses mean "not set".
	IPv4BindAddr, IPv4PublicAddr netip.Addr
	IPv6BindAddr, IPv6PublicAddr netip.Addr
	// IPv4PublicAuto and IPv6PublicAuto are ipv4_public = "auto" and
	// ipv6_public = "auto"; DiscoverIntervalDuration is DiscoverInterval.
	IPv4PublicAuto, IPv6PublicAuto bool
	DiscoverIntervalDuration       time.Duration
}

// User is a static long-term credential (coturn's user=name:password).
type User struct {
	Name string `hcl:"name,label"`
	// Password in clear. Exactly one of password and key is set.
	Password      string    `hcl:"password,optional"`
	PasswordRange hcl.Range `hcl:"password,attr_range"`
	// Key is MD5(name:realm:password) in hex, optionally prefixed 0x, as
	// coturn's `turnadmin -k` prints it.
	Key      string    `hcl:"key,optional"`
	KeyRange hcl.Range `hcl:"key,attr_range"`
	DefRange hcl.Range `hcl:",def_range"`

	// Filled by Validate when Key is set.
	KeyBytes []byte
}

// Auth configures long-term credentials.
type Auth struct {
	// Secrets are shared secrets for time-limited credentials (coturn's
	// use-auth-secret / static-auth-secret). Any of them is accepted, so a new
	// secret can be added before the old one is removed. The first one mints.
	// Default [].
	Secrets      []string  `hcl:"secrets,optional"`
	SecretsRange hcl.Range `hcl:"secrets,attr_range"`
	// Separator splits expiry and user id in time-limited usernames. Default ":".
	Separator      string    `hcl:"separator,optional"`
	SeparatorRange hcl.Range `hcl:"separator,attr_range"`
	// EphemeralSecret generates a random secret at start when no secret and no
	// user is configured, and prints how to mint credentials with it. When
	// false and nothing is configured, TURN is refused. Default true.
	EphemeralSecret      *bool     `hcl:"ephemeral_secret,optional"`
	EphemeralSecretRange hcl.Range `hcl:"ephemeral_secret,attr_range"`
	// Users are static users: user "alice" { password = "..." }.
	Users []*User `hcl:"user,block"`
}

// Policy configures which peer addresses relays may reach.
type Policy struct {
	// Presets are named allow lists: "lan", "loopback", "cgnat",
	// "documentation". Default [].
	Presets      []string  `hcl:"presets,optional"`
	PresetsRange hcl.Range `hcl:"presets,attr_range"`
	// Allow lists CIDRs or addresses admitted although a built-in rule denies
	// them. Default [].
	Allow      []string  `hcl:"allow,optional"`
	AllowRange hcl.Range `hcl:"allow,attr_range"`
	// Deny lists CIDRs or addresses refused on top of the built-in rules; it
	// wins over allow. Default [].
	Deny      []string  `hcl:"deny,optional"`
	DenyRange hcl.Range `hcl:"deny,attr_range"`

	// Filled by Validate.
	AllowPrefixes, DenyPrefixes []netip.Prefix
}

// Limits bounds what clients may use.
type Limits struct {
	// AllocationsPerUser caps live allocations per user id (486 beyond). 0 means
	// no cap. Default 10.
	AllocationsPerUser      int       `hcl:"allocations_per_user,optional"`
	AllocationsPerUserRange hcl.Range `hcl:"allocations_per_user,attr_range"`
	// AllocationsTotal caps live allocations on the server (508 beyond). 0
	// means no cap. Default 10000.
	AllocationsTotal      int       `hcl:"allocations_total,optional"`
	AllocationsTotalRange hcl.Range `hcl:"allocations_total,attr_range"`
	// PermissionsPerAllocation caps peer permissions per allocation (508
	// beyond). 0 means no cap. Default 64.
	PermissionsPerAllocation      int       `hcl:"permissions_per_allocation,optional"`
	PermissionsPerAllocationRange hcl.Range `hcl:"permissions_per_allocation,attr_range"`
	// DefaultLifetime is the allocation lifetime when the client asks none.
	// Default "10m" (RFC 8656).
	DefaultLifetime      string    `hcl:"default_lifetime,optional"`
	DefaultLifetimeRange hcl.Range `hcl:"default_lifetime,attr_range"`
	// MaxLifetime caps the lifetime a client may ask. Default "1h".
	MaxLifetime      string    `hcl:"max_lifetime,optional"`
	MaxLifetimeRange hcl.Range `hcl:"max_lifetime,attr_range"`
	// BandwidthPerAllocation caps relayed bytes per second per allocation and
	// direction; excess packets are dropped. 0 means no cap. Default 0.
	BandwidthPerAllocation      int       `hcl:"bandwidth_per_allocation,optional"`
	BandwidthPerAllocationRange hcl.Range `hcl:"bandwidth_per_allocation,attr_range"`
	// UnauthRate is the sustained rate of unauthenticated UDP requests
	// accepted per source IP per second; excess is dropped. One source
	// address (IP and port) gets at most a fifth of it, and each TCP, TLS or
	// DTLS connection has a budget of that fifth of its own instead. 0 means
	// no limit. Default 100.
	UnauthRate      int       `hcl:"unauthenticated_rate,optional"`
	UnauthRateRange hcl.Range `hcl:"unauthenticated_rate,attr_range"`
	// UnauthBurst is the burst above UnauthRate. Default 200.
	UnauthBurst      int       `hcl:"unauthenticated_burst,optional"`
	UnauthBurstRange hcl.Range `hcl:"unauthenticated_burst,attr_range"`
	// ConnectionsPerSource caps the TCP and TLS client connections open at
	// once from one IP address; beyond it a new connection is closed at
	// accept. 0 means no cap. Default 256.
	ConnectionsPerSource      int       `hcl:"connections_per_source,optional"`
	ConnectionsPerSourceRange hcl.Range `hcl:"connections_per_source,attr_range"`

	// Filled by Validate.
	DefaultLifetimeDuration, MaxLifetimeDuration time.Duration
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is the HTTP address serving /metrics; "" disables it.
	// Default "127.0.0.1:9641".
	Listen      string    `hcl:"listen,optional"`
	ListenRange hcl.Range `hcl:"listen,attr_range"`
	// Pprof also serves Go's runtime profiles (net/http/pprof) under
	// /debug/pprof/ on Listen: heap, goroutine, CPU. They show what the
	// process holds (docs/performance.md reads them at 10,000 idle
	// connections), so they are off unless asked for, and only as
	// reachable as the metrics. Default false.
	Pprof      bool      `hcl:"pprof,optional"`
	PprofRange hcl.Range `hcl:"pprof,attr_range"`
}

// Usage configures the usage record: relayed traffic per user and custom
// identifier in minute buckets, which the admin API's usage query reads
// (docs/operations.md, "Usage").
type Usage struct {
	// Retention is how long minute buckets are kept, in memory and (in a
	// cluster) in Redis. Default "24h"; from "1m" to "744h" (31 days).
	Retention      string    `hcl:"retention,optional"`
	RetentionRange hcl.Range `hcl:"retention,attr_range"`

	// RetentionDuration is Retention parsed, filled by Validate.
	RetentionDuration time.Duration
}

// HTTP configures the HTTP server that carries the signaling WebSocket, the
// credential API and the test page.
type HTTP struct {
	// Listen is the host:port to serve on; "" switches HTTP (and with it
	// signaling, the credential API and the test page) off.
	// Default "127.0.0.1:8080".
	Listen      string    `hcl:"listen,optional"`
	ListenRange hcl.Range `hcl:"listen,attr_range"`
	// CertFile and KeyFile are a PEM certificate chain and key for HTTPS.
	// Both empty (the default) serves plain HTTP.
	CertFile      string    `hcl:"cert_file,optional"`
	CertFileRange hcl.Range `hcl:"cert_file,attr_range"`
	KeyFile       string    `hcl:"key_file,optional"`
	KeyFileRange  hcl.Range `hcl:"key_file,attr_range"`
	// ACME serves HTTPS with tls.acme's certificate (which then also
	// covers the names HTTPS is reached by); it needs tls.acme and
	// excludes cert_file. Default false.
	ACME      bool      `hcl:"acme,optional"`
	ACMERange hcl.Range `hcl:"acme,attr_range"`
	// TestPage serves the NAT traversal test page at /. Default true.
	TestPage      *bool     `hcl:"test_page,optional"`
	TestPageRange hcl.Range `hcl:"test_page,attr_range"`
	// Hosts are the DNS names clients reach this server by
	// ("signal.example.com", or "*.example.com" for any name under it),
	// checked against each request's Host so that DNS rebinding cannot
	// reach signaling from a foreign page. On top of them: localhost,
	// signaling.turn_host, the names in http.cert_file's and tls.cert_file's
	// certificates, and any IP address. "*" turns the check off. Default [].
	Hosts      []string  `hcl:"hosts,optional"`
	HostsRange hcl.Range `hcl:"hosts,attr_range"`
	// ProxyFrom is listen.proxy_from for the HTTP listener (before any
	// TLS): connections from these ranges must begin with a PROXY v1 or v2
	// header, whose client address the signaling, the credential API and
	// their logs then see. X-Forwarded-For is never read. Its own setting,
	// since the proxy in front of HTTP is often not the one in front of
	// TURN. Default [] (off).
	ProxyFrom      []string  `hcl:"proxy_from,optional"`
	ProxyFromRange hcl.Range `hcl:"proxy_from,attr_range"`
	// HealthEndpoints serves /healthz and /readyz on this listener too (for
	// a load balancer or an orchestrator that reaches only it); they are
	// always on metrics.listen. Default false.
	HealthEndpoints      bool      `hcl:"health_endpoints,optional"`
	HealthEndpointsRange hcl.Range `hcl:"health_endpoints,attr_range"`

	// Filled by Validate.
	// CertNames are the DNS names of the HTTPS certificate, when CertFile
	// is set and loads.
	CertNames []string
	// SharedTLS are the listen.addresses whose TURN over TLS socket
	// (at listen.tls_port) is also http.listen: one socket serves both,
	// demultiplexed (docs/tls.md, "Sharing 443"). Empty when HTTP has a
	// socket of its own.
	SharedTLS []netip.Addr
	// ProxyFromPrefixes are ProxyFrom parsed.
	ProxyFromPrefixes []netip.Prefix
}

// Signaling configures the WebSocket signaling server and the TURN
// credentials it hands out.
type Signaling struct {
	// AllowedOrigins are the browser origins ("https://app.example.com",
	// "https://*.example.com") allowed to open the WebSocket and call the
	// credential API. Empty (the default) allows the page's own origin (the
	// Origin naming the Host the request was sent to) and http(s)://localhost,
	// 127.0.0.1 and [::1] on any port. "*" allows every origin.
	AllowedOrigins      []string  `hcl:"allowed_origins,optional"`
	AllowedOriginsRange hcl.Range `hcl:"allowed_origins,attr_range"`
	// TokenSecrets are HMAC-SHA256 secrets for the tokens (HS256 JWTs) a
	// client must present; empty (the default) needs no token. Any of them is
	// accepted; the first mints (`icegate token`).
	TokenSecrets      []string  `hcl:"token_secrets,optional"`
	TokenSecretsRange hcl.Range `hcl:"token_secrets,attr_range"`
	// TokenAudience, when not "", must be one of a token's "aud" values
	// (RFC 7519 §4.1.3, a string or an array). Default "" (not checked).
	TokenAudience      string    `hcl:"token_audience,optional"`
	TokenAudienceRange hcl.Range `hcl:"token_audience,attr_range"`
	// MaxTokenLifetime refuses tokens whose exp - iat is longer, and tokens
	// without iat; "0s" puts no cap. Default "0s".
	MaxTokenLifetime      string    `hcl:"max_token_lifetime,optional"`
	MaxTokenLifetimeRange hcl.Range `hcl:"max_token_lifetime,attr_range"`
	// TURNHost is the host name or IP put in the stun:/turn:/turns: URLs
	// handed out. "" (the default) uses the host the client reached the
	// HTTP server at.
	TURNHost      string    `hcl:"turn_host,optional"`
	TURNHostRange hcl.Range `hcl:"turn_host,attr_range"`
	// CredentialTTL is how long handed-out TURN credentials stay valid; a
	// connected peer gets fresh ones before they expire. Default "1h".
	CredentialTTL      string    `hcl:"credential_ttl,optional"`
	CredentialTTLRange hcl.Range `hcl:"credential_ttl,attr_range"`
	// MaxConnections caps open signaling connections (WebSockets and
	// socket.io sessions). Default 10000.
	MaxConnections      int       `hcl:"max_connections,optional"`
	MaxConnectionsRange hcl.Range `hcl:"max_connections,attr_range"`
	// DescriptorReserve is how many file descriptors under the soft
	// RLIMIT_NOFILE new signaling connections leave free (for relay
	// sockets, accepts, Redis, logs): beyond, 503 before the upgrade.
	// Default 512.
	DescriptorReserve      int       `hcl:"descriptor_reserve,optional"`
	DescriptorReserveRange hcl.Range `hcl:"descriptor_reserve,attr_range"`
	// MaxOpening caps the sessions opened or resumed at once (from the
	// handshake to the hello, a bus operation or two): one more gets 503
	// "busy" before the upgrade (a WebSocket first waits up to a second
	// for a place). Default 0: automatic, 64 on a cluster, 4 per CPU
	// (GOMAXPROCS) with the in-process bus.
	MaxOpening      int       `hcl:"max_opening,optional"`
	MaxOpeningRange hcl.Range `hcl:"max_opening,attr_range"`
	// MaxMessageBytes caps one client message. Default 65536.
	MaxMessageBytes      int       `hcl:"max_message_bytes,optional"`
	MaxMessageBytesRange hcl.Range `hcl:"max_message_bytes,attr_range"`
	// MessagesPerSecond is the sustained rate of messages one peer may send;
	// MessagesBurst the burst above it. Defaults 50 and 200.
	MessagesPerSecond      int       `hcl:"messages_per_second,optional"`
	MessagesPerSecondRange hcl.Range `hcl:"messages_per_second,attr_range"`
	MessagesBurst          int       `hcl:"messages_burst,optional"`
	MessagesBurstRange     hcl.Range `hcl:"messages_burst,attr_range"`
	// SocketIORoomSize caps a room a socket.io client creates (its event
	// vocabularies cannot ask for a size). Default 2.
	SocketIORoomSize      int       `hcl:"socketio_room_size,optional"`
	SocketIORoomSizeRange hcl.Range `hcl:"socketio_room_size,attr_range"`
	// PeersPerRoom caps a room's size (a join may ask for less). Default 16.
	PeersPerRoom      int       `hcl:"peers_per_room,optional"`
	PeersPerRoomRange hcl.Range `hcl:"peers_per_room,attr_range"`
	// RoomsPerPeer caps the rooms one peer is in at once. Default 8.
	RoomsPerPeer      int       `hcl:"rooms_per_peer,optional"`
	RoomsPerPeerRange hcl.Range `hcl:"rooms_per_peer,attr_range"`
	// SendQueue is how many messages may wait for one peer; beyond it the
	// peer is too slow and is disconnected. Default 256.
	SendQueue      int       `hcl:"send_queue,optional"`
	SendQueueRange hcl.Range `hcl:"send_queue,attr_range"`
	// ResumeGrace is how long a dropped peer keeps its id, rooms and missed
	// messages for a reconnect; "0s" turns resuming off. Default "30s".
	ResumeGrace      string    `hcl:"resume_grace,optional"`
	ResumeGraceRange hcl.Range `hcl:"resume_grace,attr_range"`
	// PingInterval is how often an idle WebSocket is pinged; below 60s so
	// proxies with 60 s idle timeouts keep it. Default "25s".
	PingInterval      string    `hcl:"ping_interval,optional"`
	PingIntervalRange hcl.Range `hcl:"ping_interval,attr_range"`
	// TURNEvents lets a peer ask for the server's decisions about its own
	// TURN requests (the test page shows them). Default true.
	TURNEvents      *bool     `hcl:"turn_events,optional"`
	TURNEventsRange hcl.Range `hcl:"turn_events,attr_range"`

	// Filled by Validate.
	CredentialTTLDuration, ResumeGraceDuration, PingIntervalDuration time.Duration
	MaxTokenLifetimeDuration                                         time.Duration
}

// switchOr reads an optional switch, nil meaning def. After Load or Default
// the switches are set (the embedded defaults write them all), but a Config
// built in code, or a user's `udp = null`, leaves them nil. The accessors in
// switches.go are its only callers.
func switchOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}
