// Package turn assembles icegate's STUN/TURN relay over pion/turn: it opens
// the listeners, puts the gate (credentials, limits, peer policy, Binding) in
// front of pion's read loops, hands pion a relay allocator that uses the whole
// port range, and reports what happens through slog and Prometheus.
//
// The data path is: socket → gate → pion read loop → our AuthHandler →
// QuotaHandler → relay from our allocator → PermissionHandler (peer policy) →
// relay → events → metrics. pion's events feed one allocation table
// (allocs.go), which the gate, the fast path and revocation read. pion is
// never forked; everything icegate adds
// wraps a net.PacketConn, a net.Listener or a RelayAddressGenerator.
package turn

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"icegate/auth"
	"icegate/config"
	"icegate/internal/ratelog"
	"icegate/internal/udploop"
)

// pionRequestAttributes is pion's view of an authenticated request.
type pionRequestAttributes = pionturn.RequestAttributes

// Options are the parts of a Server that do not come from the config file.
type Options struct {
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the Prometheus collectors; nil keeps them private.
	Registerer prometheus.Registerer
	// Events, when set, is called for each decision about a client's
	// control request (see Event). It runs on the request's goroutine and
	// must not block.
	Events func(Event)
	// PortableIO serves UDP with Go's net package instead of the Linux
	// event loops (tests cover both; other systems always use it).
	PortableIO bool
	// Loops is how many event loops serve UDP on Linux; 0 means one per P
	// the program has (udploop.UnreservedProcs: GOMAXPROCS, less what
	// udploop.ReserveProcs added). A loop keeps its P while traffic flows
	// only if the program reserved Ps for the loops with
	// udploop.ReserveProcs, a process-wide change New never makes itself;
	// otherwise the loops wait as ordinary system calls.
	Loops int
}

// ListenAddr is one bound listener.
type ListenAddr struct {
	Transport string // udp, tcp, tls or dtls
	Addr      net.Addr
}

// Server is a running STUN/TURN server.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	limited *ratelog.Logger
	metrics *Metrics

	creds atomic.Pointer[auth.Credentials]
	// peers is the peer policy, swapped as a whole on reload.
	peers atomic.Pointer[peerPolicy]
	// relays is pion's RelayAddressGenerator.
	relays *relayAllocator
	// allocs is the allocation table, fed by pion's events: what the gate,
	// the fast path, events and revocation know of allocations (allocs.go).
	allocs  *allocTable
	revoked *prometheus.CounterVec
	gate    *gate
	// Counters the packet path uses, looked up once.
	bindingsAnswered   prometheus.Counter // Bindings answered on the fast path
	droppedRateLimited prometheus.Counter
	droppedSelfPort    prometheus.Counter
	slowQueueFull      prometheus.Counter // a listener's datagram dropped for a full queue to pion
	loops              []*udploop.Loop
	pending            []*udploop.Socket // listener sockets the loops start reading when New is done
	sockBuf            int
	certs              *certStore
	unauth             *sourceLimiter
	streams            *streamConns // what the TCP, TLS and DTLS listeners share
	maxLifetime        time.Duration
	draining           atomic.Bool

	events func(Event)

	binding bindingSockets // Binding answers, RFC 5780 sockets (rfc5780.go)
	// ephemeralSecret is generated at start; it is the only credential
	// while ephemeralOn (nothing configured and auth.ephemeral_secret on).
	ephemeralSecret string
	ephemeralOn     atomic.Bool
	listeners       []ListenAddr
	closers         []func() error
	pion            *pionturn.Server

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New binds every listener and starts serving. cfg must have passed
// config.Validate.
func New(cfg *config.Config, opts Options) (_ *Server, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "turn")
	s := &Server{
		cfg:         cfg,
		log:         log,
		limited:     ratelog.New(log),
		metrics:     NewMetrics(opts.Registerer),
		unauth:      newSourceLimiter(cfg.Limits.UnauthRate, cfg.Limits.UnauthBurst),
		maxLifetime: cfg.Limits.MaxLifetimeDuration,
		events:      opts.Events,
		revoked:     newRevokeCounter(opts.Registerer),
	}
	s.gate = newGate(s)
	s.allocs = newAllocTable(s.metrics)
	s.streams = newStreamConns(cfg.Limits.ConnectionsPerSource, cfg.Limits.UnauthRate, cfg.Limits.UnauthBurst, s.metrics, s.limited)
	s.bindingsAnswered = s.metrics.Requests.WithLabelValues("Binding", "binding")
	s.droppedRateLimited = s.metrics.Dropped.WithLabelValues("rate_limited")
	s.droppedSelfPort = s.metrics.Dropped.WithLabelValues("self_port")
	s.slowQueueFull = s.metrics.Dropped.WithLabelValues("slow_queue_full")
	s.sockBuf = cfg.Listen.SocketBuffer
	if !opts.PortableIO && udploop.Supported() {
		n := opts.Loops
		if n <= 0 {
			n = udploop.UnreservedProcs()
		}
		for range n {
			l, err := udploop.New(udploop.Config{NoSegmentation: !cfg.Listen.SegmentationOn()})
			if err != nil {
				return nil, err
			}
			s.loops = append(s.loops, l)
		}
	}
	defer func() {
		if err != nil {
			s.closeAll()
			s.closeLoops()
		}
	}()

	if err := s.setupRelays(); err != nil {
		return nil, err
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	s.ephemeralSecret = base64.RawURLEncoding.EncodeToString(b)
	creds, ephemeral, err := s.buildCredentials(cfg)
	if err != nil {
		return nil, err
	}
	s.creds.Store(creds)
	s.ephemeralOn.Store(ephemeral)
	peers, err := s.buildPolicy(cfg)
	if err != nil {
		return nil, err
	}
	s.peers.Store(peers)

	listen := cfg.Listen
	useTLS, useDTLS := listen.TLSOn(), listen.DTLSOn()
	if useTLS || useDTLS {
		s.certs, err = newCertStore(cfg.TLS.CertFile, cfg.TLS.KeyFile, s.certHosts(), log, s.metrics)
		if err != nil {
			return nil, err
		}
	}

	var pcs []pionturn.PacketConnConfig
	var lcs []pionturn.ListenerConfig
	for _, addr := range listen.Addrs {
		v := "4"
		if addr.Is6() {
			v = "6"
		}
		plain := netip.AddrPortFrom(addr, uint16(listen.Port))
		secure := netip.AddrPortFrom(addr, uint16(listen.TLSPort))
		bindErr := func(transport string, ap netip.AddrPort, err error) error {
			if addr.Is6() && addr.IsUnspecified() {
				// A host without IPv6 cannot bind [::]; that is not worth failing
				// the default configuration for.
				s.log.Warn("cannot listen on IPv6, skipping", "transport", transport, "addr", ap.String(), "err", err)
				return nil
			}
			return fmt.Errorf("listen %s %s: %w", transport, ap, err)
		}
		if listen.UDPOn() {
			conns, err := s.openUDP(v, plain)
			if err != nil {
				if err := bindErr("udp", plain, err); err != nil {
					return nil, err
				}
			} else {
				for _, c := range conns {
					pcs = append(pcs, pionturn.PacketConnConfig{
						PacketConn:            c,
						RelayAddressGenerator: s.relays,
						PermissionHandler:     s.permission,
					})
				}
				alt, err := s.openAlternates(addr, conns[0])
				if err != nil {
					return nil, err
				}
				pcs = append(pcs, alt...)
			}
		}
		if listen.TCPOn() {
			ln, err := net.Listen("tcp"+v, plain.String())
			if err != nil {
				if err := bindErr("tcp", plain, err); err != nil {
					return nil, err
				}
			} else {
				s.track("tcp", ln.Addr(), ln.Close)
				lcs = append(lcs, s.listenerConfig(ln, "tcp", false))
			}
		}
		if useTLS {
			ln, err := net.Listen("tcp"+v, secure.String())
			if err != nil {
				if err := bindErr("tls", secure, err); err != nil {
					return nil, err
				}
			} else {
				s.track("tls", ln.Addr(), ln.Close)
				tln := tls.NewListener(ln, &tls.Config{
					MinVersion:     tls.VersionTLS12,
					GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.certs.get() },
				})
				lcs = append(lcs, s.listenerConfig(tln, "tls", false))
			}
		}
		if useDTLS {
			ln, err := dtls.Listen("udp"+v, net.UDPAddrFromAddrPort(secure), &dtls.Config{
				GetCertificate:       func(*dtls.ClientHelloInfo) (*tls.Certificate, error) { return s.certs.get() },
				ExtendedMasterSecret: dtls.RequestExtendedMasterSecret,
			})
			if err != nil {
				if err := bindErr("dtls", secure, err); err != nil {
					return nil, err
				}
			} else {
				s.track("dtls", ln.Addr(), ln.Close)
				lcs = append(lcs, s.listenerConfig(ln, "dtls", true))
			}
		}
	}
	if len(pcs) == 0 && len(lcs) == 0 {
		return nil, errors.New("no listener could be opened (check listen.addresses and the transport switches)")
	}

	s.pion, err = pionturn.NewServer(pionturn.ServerConfig{
		PacketConnConfigs:  pcs,
		ListenerConfigs:    lcs,
		LoggerFactory:      pionLoggerFactory{log: log, limited: s.limited},
		Realm:              cfg.Realm,
		AuthHandler:        s.gate.authHandler,
		QuotaHandler:       s.gate.quota,
		AllocationLifetime: cfg.Limits.DefaultLifetimeDuration,
		EventHandler:       s.allocs.eventHandler(s.allocationEvent),
	})
	if err != nil {
		return nil, fmt.Errorf("starting pion: %w", err)
	}

	if opts.Registerer != nil && len(s.loops) > 0 {
		if err := opts.Registerer.Register(newLoopCollector(s.loops)); err != nil {
			return nil, fmt.Errorf("registering loop metrics: %w", err)
		}
	}

	// Everything is set up: the loops may start reading the listeners.
	for _, sock := range s.pending {
		if err := sock.Start(); err != nil {
			return nil, err
		}
	}
	s.pending = nil

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if s.certs != nil {
		s.wg.Go(func() { s.certs.watch(ctx, cfg.TLS.ReloadIntervalDuration) })
	}
	return s, nil
}

// allocationEvent reports an allocation pion created or deleted, named with
// the user the allocation table knows.
func (s *Server) allocationEvent(created bool, a allocInfo) {
	e := Event{Kind: EventAllocationDeleted, Client: a.client, Transport: a.transport,
		Username: a.username, UserID: a.userID}
	msg := "allocation deleted"
	if created {
		e.Kind, e.Detail, msg = EventAllocationCreated, "relay "+a.relay, "allocation created"
	}
	s.emit(e)
	s.log.Debug(msg, "client", a.client, "user", a.userID, "relay", a.relay)
}

// udpListener wraps a UDP listening socket served by Go's net package in
// the gate and registers it with the allocation table for the fast path.
func (s *Server) udpListener(pc net.PacketConn) *gatePacketConn {
	l := &gatePacketConn{group: &udpGroup{}, g: s.gate}
	l.sock = udploop.NetSocket(pc.(*net.UDPConn), s.listenerSocket(l))
	s.allocs.addListener(l)
	return l
}

// listenerSocket is how a UDP listener's socket is set up: its datagrams go
// through the fast path first (gatePacketConn.loopPacket), then to pion; a
// listener queues every control message of its clients for pion and drops
// what does not fit, counted as slow_queue_full (UDP clients retransmit
// requests, RFC 8489 §6.2.1).
func (s *Server) listenerSocket(c *gatePacketConn) udploop.SocketConfig {
	return udploop.SocketConfig{
		Handler: c.loopPacket, Headroom: headroom, Tailroom: tailroom, Buffer: s.sockBuf,
		ReusePort: true, Queue: 1024, Dropped: s.slowQueueFull.Inc,
	}
}

// openUDP opens the UDP listener on ap: with event loops, one SO_REUSEPORT
// socket per loop (the kernel keeps each client on one of them, so one
// allocation's packets stay on one core); otherwise one socket.
func (s *Server) openUDP(v string, ap netip.AddrPort) ([]*gatePacketConn, error) {
	if len(s.loops) == 0 {
		pc, err := net.ListenPacket("udp"+v, ap.String())
		if err != nil {
			return nil, err
		}
		s.track("udp", pc.LocalAddr(), pc.Close)
		return []*gatePacketConn{s.udpListener(pc)}, nil
	}
	// SO_REUSEPORT would let these sockets join another process's group on
	// the same port and silently split the clients with it; a plain bind
	// first fails the way a second server should.
	if ap.Port() != 0 {
		probe, err := net.ListenPacket("udp"+v, ap.String())
		if err != nil {
			return nil, err
		}
		_ = probe.Close()
	}
	group := &udpGroup{}
	var out []*gatePacketConn
	for _, loop := range s.loops {
		c := &gatePacketConn{group: group, g: s.gate}
		sock, err := loop.Open(ap, s.listenerSocket(c))
		if err != nil {
			for _, o := range out {
				_ = o.Close()
			}
			return nil, err
		}
		c.sock = sock
		ap = sock.AddrPort() // a port 0 becomes the port the first socket got
		out = append(out, c)
		s.allocs.addListener(c)
		s.closers = append(s.closers, c.Close)
		s.pending = append(s.pending, sock)
	}
	s.listeners = append(s.listeners, ListenAddr{Transport: "udp", Addr: out[0].LocalAddr()})
	return out, nil
}

func (s *Server) track(transport string, addr net.Addr, closer func() error) {
	s.listeners = append(s.listeners, ListenAddr{Transport: transport, Addr: addr})
	s.closers = append(s.closers, closer)
}

func (s *Server) listenerConfig(ln net.Listener, transport string, datagram bool) pionturn.ListenerConfig {
	return pionturn.ListenerConfig{
		Listener:              &gateListener{Listener: ln, g: s.gate, transport: transport, datagram: datagram, streams: s.streams},
		RelayAddressGenerator: s.relays,
		PermissionHandler:     s.permission,
	}
}

// setupRelays resolves the bind and advertised address per family and warns
// about the classic coturn mistake: advertising an address peers cannot reach.
func (s *Server) setupRelays() error {
	r := s.cfg.Relay
	s.relays = &relayAllocator{
		min: r.MinPort, max: r.MaxPort, tcp: r.TCPOn(),
		limit: s.cfg.Limits.AllocationsTotal, bps: s.cfg.Limits.BandwidthPerAllocation,
		metrics: s.metrics, res: newReservations(),
	}
	s.relays.self = s.isGuarded
	s.relays.selfDrop = s.dropSelfPort
	s.relays.table = s.allocs
	s.relays.dropNoPerm = s.metrics.Dropped.WithLabelValues("no_permission")
	s.relays.loops = s.loops
	s.relays.sockBuf = s.sockBuf
	if r.IPv4BindAddr.IsValid() {
		pub := r.IPv4PublicAddr
		if !pub.IsValid() {
			pub = r.IPv4BindAddr
			if pub.IsUnspecified() {
				pub = detectAddress(false)
			}
		}
		if !pub.IsValid() {
			return errors.New("relay: no IPv4 address found on this host to advertise; set relay.ipv4_public")
		}
		s.relays.v4 = relayFamily{bind: r.IPv4BindAddr, public: pub}
	}
	if r.IPv6BindAddr.IsValid() {
		pub := r.IPv6PublicAddr
		if !pub.IsValid() {
			pub = r.IPv6BindAddr
			if pub.IsUnspecified() {
				pub = detectAddress(true)
			}
		}
		if pub.IsValid() {
			s.relays.v6 = relayFamily{bind: r.IPv6BindAddr, public: pub}
		} else {
			s.log.Info("relay: no global IPv6 address on this host, IPv6 relays are off (RFC 6156 requests get 440); set relay.ipv6_public to enable them")
		}
	}
	if !s.relays.v4.enabled() && !s.relays.v6.enabled() {
		return errors.New("relay: neither IPv4 nor IPv6 relays are configured")
	}
	for _, f := range []relayFamily{s.relays.v4, s.relays.v6} {
		if !f.enabled() {
			continue
		}
		s.log.Info("relay addresses", "advertised", f.public.String(), "bind", f.bind.String(),
			"ports", strconv.Itoa(r.MinPort)+"-"+strconv.Itoa(r.MaxPort))
		if private(f.public) && !r.PrivateAllowed() {
			s.log.Warn("!!! the advertised relay address is "+config.NonPublic(f.public)+
				": peers on the internet cannot reach relays there. Behind 1:1 NAT (AWS, GCP) set relay.ipv4_public to the public IP; "+
				"if this is a LAN or a test, set relay.private_ok = true to silence this warning.",
				"advertised", f.public.String())
		}
	}
	return nil
}

// private reports addresses that peers on the internet cannot reach.
func private(a netip.Addr) bool { return config.NonPublic(a) != "" }

// detectAddress picks the address to advertise when the bind address is a
// wildcard and none is configured: a global address if the host has one,
// else a private one, else (IPv4 only) loopback. It only reads interface
// lists; no packet is sent.
func detectAddress(v6 bool) netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}
	}
	var global, priv, loop netip.Addr
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr()
		if ip.Is6() != v6 || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
			continue
		}
		switch {
		case ip.IsLoopback():
			if !loop.IsValid() {
				loop = ip
			}
		case private(ip):
			if !priv.IsValid() {
				priv = ip
			}
		case ip.IsGlobalUnicast():
			if !global.IsValid() {
				global = ip
			}
		}
	}
	switch {
	case global.IsValid():
		return global
	case priv.IsValid():
		return priv
	case !v6:
		return loop
	}
	return netip.Addr{}
}

// isGuarded reports whether ip is one of this server's own addresses that
// relays may reach only on relay ports.
func (s *Server) isGuarded(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, a := range s.peers.Load().guarded {
		if a == ip {
			return true
		}
	}
	return false
}

// selfAddrs are the advertised relay addresses: what a client names as the
// peer when it talks to another client's relay.
func (s *Server) selfAddrs() []netip.Addr {
	var out []netip.Addr
	for _, f := range []relayFamily{s.relays.v4, s.relays.v6} {
		if f.enabled() {
			out = append(out, f.public)
		}
	}
	return out
}

func (s *Server) certHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	for _, f := range []relayFamily{s.relays.v4, s.relays.v6} {
		if f.enabled() {
			hosts = append(hosts, f.public.String())
		}
	}
	for _, a := range s.cfg.Listen.Addrs {
		if !a.IsUnspecified() {
			hosts = append(hosts, a.String())
		}
	}
	return hosts
}

// buildCredentials turns the auth block into credentials. With nothing
// configured and auth.ephemeral_secret on, the secret generated at start is
// the one credential (ephemeral true), which EphemeralSecret then returns.
func (s *Server) buildCredentials(cfg *config.Config) (_ *auth.Credentials, ephemeral bool, _ error) {
	a := cfg.Auth
	users := make([]auth.StaticUser, 0, len(a.Users))
	for _, u := range a.Users {
		users = append(users, auth.StaticUser{Name: u.Name, Password: u.Password, Key: u.KeyBytes})
	}
	secrets := a.Secrets
	if len(users) == 0 && len(secrets) == 0 && a.EphemeralSecretOn() {
		secrets, ephemeral = []string{s.ephemeralSecret}, true
	}
	creds, err := auth.NewCredentials(cfg.Realm, users, secrets, a.Separator)
	return creds, ephemeral, err
}

// buildPolicy builds the peer policy.
//
// The server's own relay addresses are always reachable so that two clients
// can talk relay to relay. That must not open the server's other services
// (SSH, the signaling port) to anyone with a credential, so unless the
// operator allowed such an address explicitly (an allow entry or a preset),
// relays reach it only on relay ports.
func (s *Server) buildPolicy(cfg *config.Config) (*peerPolicy, error) {
	pc := auth.PolicyConfig{
		Presets: cfg.Policy.Presets,
		Allow:   cfg.Policy.AllowPrefixes,
		Deny:    cfg.Policy.DenyPrefixes,
	}
	withoutSelf, err := auth.NewPolicy(pc)
	if err != nil {
		return nil, err
	}
	pc.Self = s.selfAddrs()
	policy, err := auth.NewPolicy(pc)
	if err != nil {
		return nil, err
	}
	guarded := []netip.Addr{}
	for _, a := range pc.Self {
		if d := withoutSelf.Decide(a); !d.Allowed || d.Rule == auth.RulePublic {
			guarded = append(guarded, a)
		}
	}
	return &peerPolicy{policy: policy, guarded: guarded}, nil
}

// peerPolicy is the policy and the server's own addresses it guards, one
// value so that a reader never sees one without the other.
type peerPolicy struct {
	policy *auth.Policy
	// guarded are this server's own addresses that relays may reach only
	// on relay ports.
	guarded []netip.Addr
}

// permission is pion's PermissionHandler: the peer policy, logged with the
// rule that decided when it refuses.
func (s *Server) permission(client net.Addr, peer net.IP) bool {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return false
	}
	return s.decide(client, ip).Allowed
}

func (s *Server) decide(client net.Addr, ip netip.Addr) auth.Decision {
	d := s.peers.Load().policy.Decide(ip)
	if !d.Allowed {
		s.metrics.PeerDenials.WithLabelValues(ruleLabel(d.Rule)).Inc()
		s.limited.Log(slog.LevelInfo, "peer-denied", "peer refused by policy (403)",
			"client", client.String(), "peer", ip.String(), "rule", d.Rule, "why", d.String())
		s.emit(Event{Kind: EventPermissionDenied, Client: client.String(), Peer: ip.String(), Detail: d.String()})
	}
	return d
}

// selfPortWhy is what the log says about a peer Server.relays.selfPort
// refuses.
const selfPortWhy = "this server's own address outside the relay ports; to reach a service there, list the address in policy.allow"

// refuseSelfPort reports whether a channel or TCP connection to peer is
// refused for being this server outside the relay ports; a refusal is
// counted, logged and sent to the event handler, so it is never silent.
func (s *Server) refuseSelfPort(client net.Addr, peer netip.AddrPort) bool {
	if !s.relays.selfPort(peer) {
		return false
	}
	s.metrics.PeerDenials.WithLabelValues("self_port").Inc()
	s.limited.Log(slog.LevelInfo, "peer-denied", "peer refused by policy (403)",
		"client", client.String(), "peer", peer.String(), "rule", "self_port", "why", selfPortWhy)
	s.emit(Event{Kind: EventPermissionDenied, Client: client.String(), Peer: peer.String(), Detail: selfPortWhy})
	return true
}

// dropSelfPort counts and logs relayed data dropped for going to this
// server outside the relay ports (through a permission, which names no
// port). It runs on the packet path: the log's arguments are built only
// when the line is written.
func (s *Server) dropSelfPort(peer netip.AddrPort) {
	s.droppedSelfPort.Inc()
	s.limited.LogLazy(slog.LevelWarn, "self-port", "relayed data dropped", func() []any {
		return []any{"peer", peer.String(), "why", selfPortWhy}
	})
}

// ruleLabel bounds the metric label: user rules carry a prefix.
func ruleLabel(rule string) string {
	for _, p := range []string{"deny ", "allow ", "preset "} {
		if len(rule) > len(p) && rule[:len(p)] == p {
			return p[:len(p)-1]
		}
	}
	return rule
}

// Addrs returns the bound listeners.
func (s *Server) Addrs() []ListenAddr { return append([]ListenAddr(nil), s.listeners...) }

// EphemeralSecret returns the secret generated at start while it is the
// credential in force, or "" when the config names credentials.
func (s *Server) EphemeralSecret() string {
	if !s.ephemeralOn.Load() {
		return ""
	}
	return s.ephemeralSecret
}

// RelayAddrs returns the advertised relay addresses (invalid when a family is off).
func (s *Server) RelayAddrs() (v4, v6 netip.Addr) { return s.relays.v4.public, s.relays.v6.public }

// Credentials returns the credentials in force.
func (s *Server) Credentials() *auth.Credentials { return s.creds.Load() }

// Metrics returns the server's collectors.
func (s *Server) Metrics() *Metrics { return s.metrics }

// AllocationCount returns the number of live allocations.
func (s *Server) AllocationCount() int { return s.pion.AllocationCount() }

// Reload applies the live parts of a new, validated config at once; see
// PrepareReload.
func (s *Server) Reload(cfg *config.Config) error {
	p, err := s.PrepareReload(cfg)
	if err != nil {
		return err
	}
	p.Commit()
	return nil
}

// PreparedReload is the relay's new live state, built and checked by
// PrepareReload; nothing of it is in force until Commit.
type PreparedReload struct {
	s         *Server
	cfg       *config.Config
	creds     *auth.Credentials
	ephemeral bool
	peers     *peerPolicy
	certs     *certSource // nil: keep the running one
}

// PrepareReload builds the live parts of a new, validated config:
// credentials, peer policy and the TLS/DTLS certificate (loaded from disk
// again, so a reload also picks up a renewed pair). It changes nothing; an
// error means the reload must not happen. Settings read only at start
// (listeners, relay addresses and ports, limits) are not looked at: the
// caller keeps them (config.KeepRestartOnly) and names those that changed.
// The realm must not change, since pion puts the one it started with in
// every challenge.
func (s *Server) PrepareReload(cfg *config.Config) (*PreparedReload, error) {
	if cfg.Realm != s.cfg.Realm {
		return nil, fmt.Errorf("realm changed from %q to %q: that needs a restart", s.cfg.Realm, cfg.Realm)
	}
	creds, ephemeral, err := s.buildCredentials(cfg)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	peers, err := s.buildPolicy(cfg)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p := &PreparedReload{s: s, cfg: cfg, creds: creds, ephemeral: ephemeral, peers: peers}
	if s.certs != nil {
		if p.certs, err = s.certs.prepare(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Commit puts the prepared state in force: new requests are judged by the
// new credentials and policy from here on, and the live allocations the new
// ones no longer allow end or lose the denied peers (see revoke.go).
func (p *PreparedReload) Commit() Revoked {
	s := p.s
	s.creds.Store(p.creds)
	s.ephemeralOn.Store(p.ephemeral)
	s.peers.Store(p.peers)
	if p.certs != nil {
		s.certs.cur.Store(p.certs)
	}
	r := s.revoke(p.creds, p.peers)
	s.log.Debug("reloaded credentials, peer policy and certificates",
		"users", len(p.cfg.Auth.Users), "secrets", len(p.cfg.Auth.Secrets),
		"allocations_ended", r.Allocations, "peers_blocked", r.Peers)
	return r
}

// Drain refuses new allocations and waits until the live ones are gone or
// ctx ends, whichever is first. Existing allocations keep relaying meanwhile.
func (s *Server) Drain(ctx context.Context) int {
	s.draining.Store(true)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		n := s.pion.AllocationCount()
		if n == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return n
		case <-t.C:
		}
	}
}

// Close closes every listener and allocation. It may be called more than
// once; later calls return the first call's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		if s.pion != nil {
			s.closeErr = s.pion.Close()
		} else {
			s.closeAll()
		}
		if s.relays != nil {
			s.relays.res.close() // ports held for EVEN-PORT tokens
		}
		s.wg.Wait()
		s.closeLoops()
	})
	return s.closeErr
}

// closeLoops stops the event loops; their sockets are closed.
func (s *Server) closeLoops() {
	for _, l := range s.loops {
		l.Close()
	}
}

func (s *Server) closeAll() {
	for _, c := range s.closers {
		_ = c()
	}
}
