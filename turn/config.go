package turn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"icegate/auth"
)

// Config is everything a Server is told, as a plain struct: like pion's
// ServerConfig, the zero value of a setting means its documented default,
// and a test builds a Server without any config file. cmd/icegate
// translates the HCL schema (the realm and the listen, tls, relay, auth,
// policy, limits and stun blocks) into it; the HCL attribute behind each
// field is named in its comment, and so are the settings whose zero value
// here is not the file's default (the listener ports: 0 here is a port the
// system picks, as tests want).
//
// Which settings a reload applies and which need a restart is the config
// file's business (config.ReloadClassOf); PrepareReload reads only the live
// ones (Auth, Policy, the TLS files) and refuses a changed Realm.
type Config struct {
	// Realm is the long-term credential realm (RFC 8489 §9.2), sent in every
	// challenge. Default "icegate". HCL: realm.
	Realm string

	Listen  ListenConfig
	TLS     TLSConfig
	Relay   RelayConfig
	Auth    AuthConfig
	Policy  PolicyConfig
	Limits  LimitsConfig
	RFC5780 RFC5780Config
}

// ListenConfig is where clients reach the server.
type ListenConfig struct {
	// Addrs are the IPs to listen on, one socket per address and transport;
	// an unspecified address listens on every interface of its family.
	// Default 0.0.0.0 and ::. HCL: listen.addresses.
	Addrs []netip.Addr
	// Port is the UDP and TCP port. 0 (the default here) is a port the
	// system picks, which Server.Addrs reports; the config file's default
	// is 3478. HCL: listen.port.
	Port int
	// TLSPort is the TLS (TCP) and DTLS (UDP) port. 0 (the default here) is
	// a port the system picks; the config file's default is 5349.
	// HCL: listen.tls_port.
	TLSPort int
	// SocketBuffer is the receive and send buffer of every UDP socket
	// (listeners and relays), in bytes. Default 4 MiB (coturn's size; Linux's
	// own 208 KB overflows in bursts). HCL: listen.socket_buffer.
	SocketBuffer int
	// SystemSocketBuffer keeps the system's buffer sizes instead. Default
	// false. HCL: listen.socket_buffer = 0.
	SystemSocketBuffer bool
	// NoSegmentation stops the Linux event loops from sending datagrams
	// for one destination as UDP GSO trains (UDP_SEGMENT). Default false
	// (they do). HCL: listen.udp_segmentation = false.
	NoSegmentation bool
	// NoUDP, NoTCP, NoTLS and NoDTLS switch a transport off. Default false
	// (all on). HCL: listen.udp, listen.tcp, listen.tls, listen.dtls.
	NoUDP, NoTCP, NoTLS, NoDTLS bool
	// NoFreeBind binds listener and relay sockets only to addresses that
	// are up. Default false: on Linux a socket bound to a specific address
	// (a listen address, relay.ipv4_bind, relay.ipv6_bind) gets
	// IP_FREEBIND/IPV6_FREEBIND, so a server started before the network
	// binds anyway and serves once the address appears, and New logs
	// "bound before the address is up" for each such address. With it a
	// missing address fails the start (listeners) or each Allocate with a
	// 500 (relays). HCL: listen.freebind = false.
	NoFreeBind bool
	// ProxyFrom are the source ranges (load balancers, proxies) whose TCP
	// and TLS connections must begin with a PROXY protocol v1 or v2 header;
	// the client address it carries is the connection's from then on. A
	// header from any other source refuses the connection; direct clients
	// without one are served as usual. UDP and DTLS are not covered. Default
	// empty: the PROXY protocol is off. HCL: listen.proxy_from.
	ProxyFrom []netip.Prefix
}

// TLSConfig is the certificate of the TLS and DTLS listeners.
type TLSConfig struct {
	// CertFile and KeyFile are a PEM certificate chain and its key. Both
	// empty (the default) means a self-signed certificate generated at start.
	// HCL: tls.cert_file, tls.key_file.
	CertFile, KeyFile string
	// ReloadInterval is how often the files are checked for changes; a
	// changed pair is loaded without a restart. Default 5s.
	// HCL: tls.reload_interval.
	ReloadInterval time.Duration
	// GetCertificate, when set, is where every TLS and DTLS handshake gets
	// its certificate instead of the files (an ACME manager, HCL: tls.acme);
	// CertFile and KeyFile must then be empty. A DTLS handshake passes a
	// ClientHelloInfo with only ServerName set. Default nil.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// NextProtos are the ALPN protocols the TLS listener offers on top of
	// its own: "acme-tls/1" for ACME's tls-alpn-01 challenge (RFC 8737),
	// whose validation handshake GetCertificate answers. Default none.
	NextProtos []string
}

// RelayConfig is where relayed transport addresses come from.
type RelayConfig struct {
	// MinPort and MaxPort bound the relay port range. Default 49152-65535.
	// HCL: relay.min_port, relay.max_port.
	MinPort, MaxPort int
	// IPv4Bind is the local IPv4 address relays bind to. Default 0.0.0.0.
	// HCL: relay.ipv4_bind.
	IPv4Bind netip.Addr
	// NoIPv4 switches IPv4 relays off. Default false. HCL: relay.ipv4_bind = "".
	NoIPv4 bool
	// IPv4Public is the IPv4 address advertised in XOR-RELAYED-ADDRESS
	// (coturn's external-ip). The zero value (the default) means IPv4Bind,
	// or when that is unspecified the address SelfAddrs finds on this
	// host's interfaces. HCL: relay.ipv4_public.
	IPv4Public netip.Addr
	// IPv6Bind, NoIPv6 and IPv6Public are the same for IPv6 (RFC 6156);
	// IPv6Bind's default is ::. With no global IPv6 address on the host and
	// none configured, IPv6 relays are off. HCL: relay.ipv6_bind,
	// relay.ipv6_public.
	IPv6Bind   netip.Addr
	NoIPv6     bool
	IPv6Public netip.Addr
	// IPv4Discover and IPv6Discover find the advertised address of the
	// family at start by asking the STUN servers of DiscoverWith, from a
	// socket bound to IPv4Bind (IPv6Bind), what address they see: more
	// than half of them must agree, or New fails naming what each said.
	// It is asked again every DiscoverInterval; a new majority is
	// advertised to new allocations from then on. IPv4Public (IPv6Public)
	// must be unset. Default false. HCL: relay.ipv4_public = "auto",
	// relay.ipv6_public = "auto".
	IPv4Discover, IPv6Discover bool
	// DiscoverWith are the STUN servers (host:port) discovery asks; an odd
	// number (three) lets a majority survive one wrong or silent server.
	// Default none. HCL: relay.discover_with.
	DiscoverWith []string
	// DiscoverInterval is how often discovery runs again after start.
	// Default 5m. HCL: relay.discover_interval.
	DiscoverInterval time.Duration
	// PrivateOK says a private or loopback advertised address is intended
	// (a LAN or a test). Without it New refuses to start when the address
	// is configured (IPv4Public, a specific IPv4Bind advertised as itself,
	// the same for IPv6) or discovered, and only warns when it was picked
	// from this host's interfaces for a wildcard bind with nothing
	// configured (the embedded defaults on a laptop). Default false.
	// HCL: relay.private_ok.
	PrivateOK bool
	// TCP allows RFC 6062 TCP relays. Default false (browsers never use
	// them). HCL: relay.tcp.
	TCP bool
	// Shared serves every UDP allocation from a small fixed set of relay
	// sockets, one per port of MinPort..MaxPort and family, bound at start,
	// instead of a socket of its own per allocation (coturn 4.12+'s
	// --multiplex-peer): a container then maps a handful of ports. A peer's
	// datagram goes to the allocation on that socket that sent to, or bound a
	// channel to, the peer's exact address and port (shared.go). EVEN-PORT
	// is served from an even shared port, the RESERVATION-TOKEN from the one
	// above it (508 when the ports hold no such pair), and TCP may not be
	// set. At most MaxSharedPorts ports. Default false (a port per allocation). HCL:
	// relay.mode = "shared".
	Shared bool
	// KernelOffload is whether the kernel relays the ChannelData of UDP
	// clients with a bound channel (internal/kfast, docs/operations.md):
	// OffloadAuto ("auto": when the kernel, CAP_BPF and CAP_NET_ADMIN and
	// the interfaces allow, else one log line why not), OffloadOn ("on":
	// New fails when it cannot) or OffloadOff ("off"). Default "" = off for
	// this component, so that a Server built by a test or another program
	// never touches the host's interfaces; relay.kernel_offload (HCL)
	// defaults to "auto".
	KernelOffload string
	// KernelOffloadInterfaces are the interfaces the program attaches to.
	// Default none: the Ethernet interfaces that hold a listen or relay
	// address (all of them for a wildcard address). HCL:
	// relay.kernel_offload_interfaces.
	KernelOffloadInterfaces []string

	// chanLife and permLife are the lifetimes pion gives channels and
	// permissions; zero means pion's defaults (10m and 5m, RFC 8656 §12 and
	// §9). Only tests shorten them.
	chanLife, permLife time.Duration
}

// channelLifetime is the lifetime pion gives a channel binding.
func (r RelayConfig) channelLifetime() time.Duration {
	if r.chanLife > 0 {
		return r.chanLife
	}
	return pionChannelLifetime
}

// permissionLifetime is the lifetime pion gives a permission.
func (r RelayConfig) permissionLifetime() time.Duration {
	if r.permLife > 0 {
		return r.permLife
	}
	return pionPermissionLifetime
}

// MaxSharedPorts bounds the relay port range in shared mode
// (RelayConfig.Shared): each port is one socket per family bound at start,
// and the point of the mode is a handful of ports, not thousands.
const MaxSharedPorts = 64

// AuthConfig is the long-term credentials (RFC 8489 §9.2).
type AuthConfig struct {
	// Users are static users (coturn's user=), each with a password or a
	// key MD5(name:realm:password). Default none. HCL: auth.user blocks.
	Users []auth.StaticUser
	// Secrets are shared secrets for time-limited credentials (the TURN
	// REST API); any of them is accepted. Default none. HCL: auth.secrets.
	Secrets []string
	// Separator splits expiry and user id in time-limited usernames.
	// Default ":". HCL: auth.separator.
	Separator string
	// NoEphemeralSecret refuses every TURN request when no user and no
	// secret is configured. Default false: the server then generates a
	// secret at start (Server.EphemeralSecret). HCL: auth.ephemeral_secret
	// = false.
	NoEphemeralSecret bool
}

// PolicyConfig is the operator's part of the peer policy (see auth.Policy
// for the rules; NewPeerPolicy adds this server's own addresses).
type PolicyConfig struct {
	// Presets are named allow lists ("lan", "loopback", "cgnat",
	// "documentation"). Default none. HCL: policy.presets.
	Presets []string
	// Allow lists ranges admitted although a built-in rule denies them.
	// Default none. HCL: policy.allow.
	Allow []netip.Prefix
	// Deny lists ranges refused on top of the built-in rules; it wins over
	// everything. Default none. HCL: policy.deny.
	Deny []netip.Prefix
}

// NoLimit, given to a cap of LimitsConfig, means no cap: the zero value
// means the cap's default.
const NoLimit = -1

// LimitsConfig bounds what clients may use. A cap set to NoLimit (any
// negative value) is off.
type LimitsConfig struct {
	// AllocationsPerUser caps live allocations per user id (486 beyond).
	// Default 10. HCL: limits.allocations_per_user (0 there is NoLimit).
	AllocationsPerUser int
	// AllocationsTotal caps live allocations on the server (508 beyond).
	// Default 10000. HCL: limits.allocations_total (0 there is NoLimit).
	AllocationsTotal int
	// PermissionsPerAllocation caps peer permissions per allocation (508
	// beyond). Default 64. HCL: limits.permissions_per_allocation (0 there
	// is NoLimit).
	PermissionsPerAllocation int
	// DefaultLifetime is the allocation lifetime when the client asks none
	// (RFC 8656 §7.2). Default 10m. HCL: limits.default_lifetime.
	DefaultLifetime time.Duration
	// MaxLifetime caps the lifetime a client may ask. Default 1h.
	// HCL: limits.max_lifetime.
	MaxLifetime time.Duration
	// BandwidthPerAllocation caps relayed bytes per second per allocation
	// and direction; excess packets are dropped. Default 0: no cap.
	// HCL: limits.bandwidth_per_allocation.
	BandwidthPerAllocation int
	// UnauthenticatedRate is the sustained rate of unauthenticated UDP
	// requests accepted per source IP per second (one source address gets a
	// fifth of it, each TCP, TLS or DTLS connection a fifth of its own).
	// Default 100. HCL: limits.unauthenticated_rate (0 there is NoLimit).
	UnauthenticatedRate int
	// UnauthenticatedBurst is the burst above UnauthenticatedRate, not below
	// it. Default 200, or UnauthenticatedRate when that is higher.
	// HCL: limits.unauthenticated_burst.
	UnauthenticatedBurst int
	// ConnectionsPerSource caps the TCP and TLS connections open at once
	// from one IP address. Default 256. HCL: limits.connections_per_source
	// (0 there is NoLimit).
	ConnectionsPerSource int
}

// RFC5780Config switches RFC 5780 NAT behaviour discovery on: Binding (and
// TURN) on four UDP sockets, the primary and alternate addresses times
// Listen.Port and AlternatePort, with OTHER-ADDRESS and CHANGE-REQUEST.
type RFC5780Config struct {
	// Alternate is the second IP address of this host. The zero value (the
	// default) switches RFC 5780 off: no OTHER-ADDRESS, and CHANGE-REQUEST
	// gets 420. When set, Listen.Addrs must hold exactly one specific
	// address of its family, the primary, and UDP must be on.
	// HCL: stun.alternate_address.
	Alternate netip.Addr
	// AlternatePort is the second UDP port, opened on both addresses. 0
	// (the default here) is a port the system picks; the config file's
	// default is 3479. HCL: stun.alternate_port.
	AlternatePort int
	// PrimaryPublic and AlternatePublic are the two addresses as clients
	// see them behind a 1:1 NAT, named in OTHER-ADDRESS and
	// RESPONSE-ORIGIN. The zero value (the default) means the primary and
	// Alternate themselves. HCL: relay.ipv4_public or relay.ipv6_public,
	// and stun.alternate_public.
	PrimaryPublic, AlternatePublic netip.Addr
	// RFC3489 serves clients older than RFC 5780 (CHANGED-ADDRESS,
	// SOURCE-ADDRESS, Binding without the magic cookie on IPv4). Default
	// false. HCL: stun.rfc3489.
	RFC3489 bool
}

// On reports whether RFC 5780 is configured.
func (c RFC5780Config) On() bool { return c.Alternate.IsValid() }

// Defaults of Config, applied by withDefaults.
const (
	defaultRealm                = "icegate"
	defaultSocketBuffer         = 4 << 20
	defaultReloadInterval       = 5 * time.Second
	defaultDiscoverInterval     = 5 * time.Minute
	defaultMinPort              = 49152
	defaultMaxPort              = 65535
	defaultSeparator            = ":"
	defaultAllocationsPerUser   = 10
	defaultAllocationsTotal     = 10000
	defaultPermissionsPerAlloc  = 64
	defaultLifetime             = 10 * time.Minute
	defaultMaxLifetime          = time.Hour
	defaultUnauthenticatedRate  = 100
	defaultUnauthenticatedBurst = 200
	defaultConnectionsPerSource = 256
)

var (
	defaultListenAddrs = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	defaultIPv4Bind    = netip.IPv4Unspecified()
	defaultIPv6Bind    = netip.IPv6Unspecified()
)

// withDefaults returns c with every zero setting replaced by its default and
// its slices copied, so that the caller may reuse its own. In the result a
// cap below 0 means no cap, SocketBuffer 0 keeps the system's size, and an
// invalid IPv4Bind or IPv6Bind means that family is off.
func (c Config) withDefaults() Config {
	if c.Realm == "" {
		c.Realm = defaultRealm
	}
	l := &c.Listen
	l.Addrs = slices.Clone(l.Addrs)
	if len(l.Addrs) == 0 {
		l.Addrs = slices.Clone(defaultListenAddrs)
	}
	switch {
	case l.SystemSocketBuffer:
		l.SocketBuffer = 0
	case l.SocketBuffer == 0:
		l.SocketBuffer = defaultSocketBuffer
	}
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
	orDur(&c.TLS.ReloadInterval, defaultReloadInterval)

	r := &c.Relay
	r.DiscoverWith = slices.Clone(r.DiscoverWith)
	orDur(&r.DiscoverInterval, defaultDiscoverInterval)
	or(&r.MinPort, defaultMinPort)
	or(&r.MaxPort, defaultMaxPort)
	switch {
	case r.NoIPv4:
		r.IPv4Bind, r.IPv4Public, r.IPv4Discover = netip.Addr{}, netip.Addr{}, false
	case !r.IPv4Bind.IsValid():
		r.IPv4Bind = defaultIPv4Bind
	}
	switch {
	case r.NoIPv6:
		r.IPv6Bind, r.IPv6Public, r.IPv6Discover = netip.Addr{}, netip.Addr{}, false
	case !r.IPv6Bind.IsValid():
		r.IPv6Bind = defaultIPv6Bind
	}

	a := &c.Auth
	a.Users = slices.Clone(a.Users)
	a.Secrets = slices.Clone(a.Secrets)
	if a.Separator == "" {
		a.Separator = defaultSeparator
	}
	p := &c.Policy
	p.Presets, p.Allow, p.Deny = slices.Clone(p.Presets), slices.Clone(p.Allow), slices.Clone(p.Deny)

	m := &c.Limits
	or(&m.AllocationsPerUser, defaultAllocationsPerUser)
	or(&m.AllocationsTotal, defaultAllocationsTotal)
	or(&m.PermissionsPerAllocation, defaultPermissionsPerAlloc)
	orDur(&m.DefaultLifetime, defaultLifetime)
	orDur(&m.MaxLifetime, defaultMaxLifetime)
	or(&m.UnauthenticatedRate, defaultUnauthenticatedRate)
	or(&m.UnauthenticatedBurst, max(defaultUnauthenticatedBurst, m.UnauthenticatedRate))
	or(&m.ConnectionsPerSource, defaultConnectionsPerSource)
	for _, v := range []*int{&m.AllocationsPerUser, &m.AllocationsTotal, &m.PermissionsPerAllocation,
		&m.BandwidthPerAllocation, &m.UnauthenticatedRate, &m.ConnectionsPerSource} {
		if *v < 0 {
			*v = NoLimit
		}
	}
	return c
}

// primary returns the RFC 5780 primary address: the one address of
// Listen.Addrs in the alternate's family (validate checks there is one).
func (c *Config) primary() netip.Addr {
	var p netip.Addr
	for _, a := range c.Listen.Addrs {
		if a.Is4() == c.RFC5780.Alternate.Is4() {
			if p.IsValid() {
				return netip.Addr{}
			}
			p = a
		}
	}
	return p
}

// validate reports the values a Server cannot work with, all of them; c has
// its defaults applied. What a sensible deployment keeps (lifetimes between
// 30 s and 24 h, a relay range clear of the listener ports) is the config
// file's to check: tests go beyond it on purpose.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("turn: "+format, args...))
	}
	l := &c.Listen
	for _, a := range l.Addrs {
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			bad("Listen.Addrs: %q is not a plain IPv4 or IPv6 address", a)
		}
	}
	port := func(name string, p int) {
		if p < 0 || p > 65535 {
			bad("%s %d is not a port", name, p)
		}
	}
	port("Listen.Port", l.Port)
	port("Listen.TLSPort", l.TLSPort)
	port("RFC5780.AlternatePort", c.RFC5780.AlternatePort)
	if l.SocketBuffer < 0 {
		bad("Listen.SocketBuffer %d is negative (SystemSocketBuffer keeps the system's size)", l.SocketBuffer)
	}
	for _, p := range l.ProxyFrom {
		if !p.IsValid() || p.Addr().Is4In6() {
			bad("Listen.ProxyFrom: %q is not a plain IPv4 or IPv6 prefix", p)
		}
	}
	if l.NoUDP && l.NoTCP && l.NoTLS && l.NoDTLS {
		bad("Listen: every transport is off")
	}
	if c.TLS.GetCertificate != nil && c.TLS.CertFile != "" {
		bad("TLS.GetCertificate and TLS.CertFile are both set; the certificate comes from one")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("TLS.CertFile and TLS.KeyFile go together (both empty: a self-signed certificate)")
	}
	if c.TLS.ReloadInterval < 0 {
		bad("TLS.ReloadInterval %v is negative", c.TLS.ReloadInterval)
	}

	r := &c.Relay
	switch {
	case r.MinPort < 1 || r.MinPort > 65535 || r.MaxPort < 1 || r.MaxPort > 65535:
		bad("Relay.MinPort %d, Relay.MaxPort %d: not ports", r.MinPort, r.MaxPort)
	case r.MinPort > r.MaxPort:
		bad("Relay.MinPort %d is above Relay.MaxPort %d", r.MinPort, r.MaxPort)
	}
	for _, f := range []struct {
		name string
		a    netip.Addr
		v4   bool
	}{
		{"Relay.IPv4Bind", r.IPv4Bind, true}, {"Relay.IPv4Public", r.IPv4Public, true},
		{"Relay.IPv6Bind", r.IPv6Bind, false}, {"Relay.IPv6Public", r.IPv6Public, false},
	} {
		if f.a.IsValid() && (f.a.Is4() != f.v4 || f.a.Zone() != "") {
			bad("%s %s is not a plain IPv%s address", f.name, f.a, map[bool]string{true: "4", false: "6"}[f.v4])
		}
	}
	if r.NoIPv4 && r.NoIPv6 {
		bad("Relay: NoIPv4 and NoIPv6 leave no relay to allocate")
	}
	if r.Shared {
		if n := r.MaxPort - r.MinPort + 1; n > MaxSharedPorts {
			bad("Relay.Shared: the range %d-%d is %d ports, more than the %d shared relay sockets allowed", r.MinPort, r.MaxPort, n, MaxSharedPorts)
		}
		if r.TCP {
			bad("Relay.Shared and Relay.TCP: RFC 6062 TCP relays need a port per allocation")
		}
	}
	for _, f := range []struct {
		name     string
		discover bool
		public   netip.Addr
	}{{"IPv4", r.IPv4Discover, r.IPv4Public}, {"IPv6", r.IPv6Discover, r.IPv6Public}} {
		if !f.discover {
			continue
		}
		if f.public.IsValid() {
			bad("Relay.%sDiscover and Relay.%sPublic %s: discover the address or name it, not both", f.name, f.name, f.public)
		}
		if len(r.DiscoverWith) == 0 {
			bad("Relay.%sDiscover needs STUN servers in Relay.DiscoverWith", f.name)
		} else if fam := map[string]publicFamily{"IPv4": ipv4, "IPv6": ipv6}[f.name]; len(fam.servers(r.DiscoverWith)) == 0 {
			// publicFamily.servers skips literals of the other family.
			bad("Relay.%sDiscover: Relay.DiscoverWith lists no %s server (only addresses of the other family)", f.name, f.name)
		}
		if s := c.RFC5780; s.On() && s.Alternate.Is4() == (f.name == "IPv4") && !s.PrimaryPublic.IsValid() {
			bad("Relay.%sDiscover with RFC5780 on: the primary's public address (RFC5780.PrimaryPublic) must be named, OTHER-ADDRESS cannot follow a discovered one", f.name)
		}
	}
	for _, srv := range r.DiscoverWith {
		if _, port, err := net.SplitHostPort(srv); err != nil || port == "" || port == "0" {
			bad("Relay.DiscoverWith %q is not host:port", srv)
		}
	}
	if r.DiscoverInterval < 0 {
		bad("Relay.DiscoverInterval %v is negative", r.DiscoverInterval)
	}
	switch r.KernelOffload {
	case "", OffloadAuto, OffloadOn, OffloadOff:
	default:
		bad("Relay.KernelOffload %q is not %q, %q or %q", r.KernelOffload, OffloadAuto, OffloadOn, OffloadOff)
	}

	m := &c.Limits
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"Limits.DefaultLifetime", m.DefaultLifetime}, {"Limits.MaxLifetime", m.MaxLifetime}} {
		if f.v < 0 {
			bad("%s %v is negative", f.name, f.v)
		}
	}
	if m.DefaultLifetime > m.MaxLifetime {
		bad("Limits.DefaultLifetime %v is above Limits.MaxLifetime %v", m.DefaultLifetime, m.MaxLifetime)
	}
	if m.UnauthenticatedRate > 0 && m.UnauthenticatedBurst < m.UnauthenticatedRate {
		bad("Limits.UnauthenticatedBurst %d is below Limits.UnauthenticatedRate %d", m.UnauthenticatedBurst, m.UnauthenticatedRate)
	}

	if s := c.RFC5780; s.On() {
		p := c.primary()
		switch {
		case slices.Contains(l.Addrs, s.Alternate):
			bad("RFC5780.Alternate %s is also in Listen.Addrs; list only the primary there", s.Alternate)
		case !p.IsValid():
			bad("RFC5780 needs exactly one address of RFC5780.Alternate's family in Listen.Addrs, the primary")
		case p.IsUnspecified():
			bad("RFC5780 needs a specific primary address in Listen.Addrs, not %s: a wildcard socket cannot say which address answered", p)
		}
		if l.NoUDP {
			bad("RFC5780 runs over UDP, which Listen.NoUDP switches off")
		}
		if s.AlternatePort != 0 && s.AlternatePort == l.Port {
			bad("RFC5780.AlternatePort %d is also Listen.Port", s.AlternatePort)
		}
		for _, f := range []struct {
			name string
			a    netip.Addr
		}{{"RFC5780.PrimaryPublic", s.PrimaryPublic}, {"RFC5780.AlternatePublic", s.AlternatePublic}} {
			if f.a.IsValid() && f.a.Is4() != s.Alternate.Is4() {
				bad("%s %s is not of RFC5780.Alternate's family", f.name, f.a)
			}
		}
	} else if s.PrimaryPublic.IsValid() || s.AlternatePublic.IsValid() || s.RFC3489 {
		bad("RFC5780: PrimaryPublic, AlternatePublic and RFC3489 need RFC5780.Alternate")
	}
	return errors.Join(errs...)
}
