// Package turn is icegate's STUN/TURN relay over pion/turn: it opens the
// listeners, puts the gate in front of pion's read loops, relays data on its
// own fast path, hands pion a relay allocator that uses the whole port
// range, and reports what happens through slog and Prometheus. It takes its
// own Config (config.go); cmd/icegate translates the config file into it.
//
// A client's UDP packet goes: listener socket (the Linux event loops of
// internal/udploop, or Go's net package with Options.PortableIO) → gate
// (gate.go: the per-source limit for unauthenticated requests, Binding
// answered at once, credentials checked, limits and the peer policy applied
// where pion has no hook or the wrong error code) → then either the fast
// path (fastpath.go: ChannelData and Send indications of a known allocation
// go straight to its relay socket) or pion's read loop → our AuthHandler
// (gate.authHandler) → QuotaHandler (gate.quota) → a relay socket from our
// allocator (relay.go) → PermissionHandler (the PeerPolicy, peers.go) →
// pion's events, which feed the one allocation table (allocs.go) that the
// gate, the fast path, events and revocation read → metrics. TCP, TLS and
// DTLS clients come through the listeners of conn.go (connection caps,
// timeouts, STUN and ChannelData framing) into the same gate. A peer's
// datagram goes: relay socket → bandwidth cap and the server's own-address
// guard (PeerPolicy.SelfPort) → ChannelData or a Data indication to the
// client. pion is never forked; everything icegate adds wraps a
// net.PacketConn, a net.Listener or a RelayAddressGenerator.
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
	"icegate/internal/ratelog"
	"icegate/internal/udploop"
)

// pionRequestAttributes is pion's view of an authenticated request.
type pionRequestAttributes = pionturn.RequestAttributes

// Options are what a Server is given besides its Config: where its logs,
// metrics and events go, and how it does UDP I/O.
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
	// ShareTLS, when set, is offered each TLS listener's bound socket and
	// the relay's own TLS settings (certificate store, ALPN). When it
	// returns a listener, TURN is served on that one instead: its
	// connections come with the TLS handshake done, from a port shared
	// with HTTPS (internal/portshare), and closing it must close the
	// socket. When it returns nil, New terminates TLS on the socket itself.
	ShareTLS func(ln net.Listener, conf *tls.Config) (net.Listener, error)
	// Usage, when set, hears what allocations relayed per user id and
	// custom identifier (usage.go): the live ones' growth every
	// UsageInterval, from the server's own goroutine, and an ended one's
	// rest from pion's goroutine as it ends. It must not block.
	Usage func([]UsageReport)
	// UsageInterval is how often the live allocations' traffic is
	// reported to Usage; 0 means one minute.
	UsageInterval time.Duration
	// Alternate, when set, names another server for an Allocate this one
	// will not take because it is draining or at limits.allocations_total:
	// the client gets 300 Try Alternate with ALTERNATE-SERVER (RFC 8489
	// §10) instead of 508. transport is the request's ("udp", "tcp", "tls",
	// "dtls") and v6 its source's family, which the alternate's address
	// must share. false means none is known: 508 as without it. In a
	// cluster cmd/icegate passes the least loaded healthy node (steer). It
	// runs on the request's goroutine, once per refused Allocate, and must
	// answer from memory.
	Alternate func(transport string, v6 bool) (Alternate, bool)
	// UserElsewhere, when set, returns a user's allocations on other
	// servers, which limits.allocations_per_user then counts with this
	// server's own (a cluster-wide quota: cluster.user_quota = "cluster").
	// It is asked once per Allocate that passes the local count, from the
	// read loop of the listener the Allocate came on, so it must answer
	// within a bounded time (steer.UserCounts: one Redis round trip, at most
	// 100 ms, then this server's count alone). nil counts this server only.
	UserElsewhere func(userID string) int
}

// Alternate is the server a 300 Try Alternate sends a client to.
type Alternate struct {
	// Addr is its address and port for the request's transport
	// (ALTERNATE-SERVER, RFC 8489 §14.15).
	Addr netip.AddrPort
	// Domain is its host name, sent as ALTERNATE-DOMAIN (RFC 8489 §14.16)
	// over TLS and DTLS, where the client checks the alternate's
	// certificate against it; "" (an IP) sends none.
	Domain string
	// Realm is its REALM, sent in the 300: a client such as libwebrtc
	// takes REALM (and NONCE) from a 300 and authenticates with them at the
	// alternate. "" sends none.
	Realm string
	// Nonce is a NONCE the alternate accepts now (its Server.Nonce), sent
	// in the 300: libwebrtc allocates at the alternate with the 300's
	// nonce, or with the old one when there is none, and gives up on the
	// 438 (Stale Nonce) that earns. "" sends none.
	Nonce string
	// Node names it in logs and events (a cluster node id).
	Node string
}

// ListenAddr is one bound listener.
type ListenAddr struct {
	Transport string // udp, tcp, tls or dtls
	Addr      net.Addr
}

// Server is a running STUN/TURN server.
type Server struct {
	cfg Config // with its defaults; Auth and Policy as at start
	// alternate is Options.Alternate (nil: none).
	alternate func(transport string, v6 bool) (Alternate, bool)
	// userElsewhere is Options.UserElsewhere (nil: this server only).
	userElsewhere func(userID string) int
	// nonce is the last NONCE Nonce took from pion, at nonceAt.
	nonceMu sync.Mutex
	nonce   string
	nonceAt time.Time
	log     *slog.Logger
	limited *ratelog.Logger
	metrics *Metrics

	creds atomic.Pointer[auth.Credentials]
	// peers is the peer policy, swapped as a whole on reload and when
	// discovery changes an advertised address (publicaddr.go).
	peers atomic.Pointer[PeerPolicy]
	// peersMu orders those two swaps; policyCfg is the policy in force,
	// which a discovery change rebuilds peers from.
	peersMu   sync.Mutex
	policyCfg PolicyConfig
	// privateOK is RelayConfig.PrivateOK in force: read by every discovery
	// round (publicaddr.go), set at start and by each reload, since
	// relay.private_ok is applied at once (config/reload.go).
	privateOK atomic.Bool
	// relays is pion's RelayAddressGenerator.
	relays *relayAllocator
	// allocs is the allocation table, fed by pion's events: what the gate,
	// the fast path, events and revocation know of allocations (allocs.go).
	allocs  *allocTable
	revoked *prometheus.CounterVec
	// kicked counts allocations an operator ended (sessions.go).
	kicked prometheus.Counter
	gate   *gate
	// Counters the packet path uses, looked up once.
	bindingsAnswered   prometheus.Counter // Bindings answered on the fast path
	droppedRateLimited prometheus.Counter
	droppedSelfPort    prometheus.Counter
	slowQueueFull      prometheus.Counter // a listener's datagram dropped for a full queue to pion
	loops              []*udploop.Loop
	pending            []*udploop.Socket // listener sockets the loops start reading when New is done
	sockBuf            int
	freeBind           bool // IP_FREEBIND on sockets bound to a specific address (Listen.NoFreeBind)
	certs              *certStore
	unauth             *sourceLimiter
	streams            *streamConns // what the TCP, TLS and DTLS listeners share
	maxLifetime        time.Duration
	// allocState is allocating, draining or retired: one word, so that
	// an undrain racing the shutdown's Retire cannot resume allocations
	// after it.
	allocState atomic.Int32

	events func(Event)
	usage  func([]UsageReport)

	binding bindingSockets // Binding answers, RFC 5780 sockets (rfc5780.go)
	// ephemeralSecret is generated at start; it is the only credential
	// while ephemeralOn (nothing configured and auth.ephemeral_secret on).
	ephemeralSecret string
	ephemeralOn     atomic.Bool
	listeners       []ListenAddr
	kf              *offload // the kernel fast path; nil when off
	closers         []func() error
	pion            *pionturn.Server

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New binds every listener and starts serving. A zero setting of cfg means
// its default; a cfg the server cannot work with is refused with every
// problem named.
func New(cfg Config, opts Options) (_ *Server, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "turn")
	s := &Server{
		cfg:           cfg,
		log:           log,
		limited:       ratelog.New(log),
		metrics:       NewMetrics(opts.Registerer),
		unauth:        newSourceLimiter(cfg.Limits.UnauthenticatedRate, cfg.Limits.UnauthenticatedBurst),
		maxLifetime:   cfg.Limits.MaxLifetime,
		events:        opts.Events,
		usage:         opts.Usage,
		alternate:     opts.Alternate,
		userElsewhere: opts.UserElsewhere,
		revoked:       newRevokeCounter(opts.Registerer),
		kicked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "icegate_allocations_kicked_total",
			Help: "Live allocations ended by an operator (the admin API's kick).",
		}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.kicked)
	}
	s.gate = newGate(s)
	s.privateOK.Store(cfg.Relay.PrivateOK)
	s.allocs = newAllocTable(s.metrics)
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(newRelayedCollector(s.allocs))
	}
	s.streams = newStreamConns(cfg.Limits.ConnectionsPerSource, cfg.Limits.UnauthenticatedRate, cfg.Limits.UnauthenticatedBurst, s.metrics, s.limited)
	s.allocs.ended = s.streams.allocationEnded
	s.bindingsAnswered = s.metrics.Requests.WithLabelValues("Binding", "binding")
	s.droppedRateLimited = s.metrics.Dropped.WithLabelValues("rate_limited")
	s.droppedSelfPort = s.metrics.Dropped.WithLabelValues("self_port")
	s.slowQueueFull = s.metrics.Dropped.WithLabelValues("slow_queue_full")
	s.sockBuf = cfg.Listen.SocketBuffer
	s.freeBind = !cfg.Listen.NoFreeBind
	if !opts.PortableIO && udploop.Supported() {
		n := opts.Loops
		if n <= 0 {
			n = udploop.UnreservedProcs()
		}
		for range n {
			l, err := udploop.New(udploop.Config{NoSegmentation: cfg.Listen.NoSegmentation})
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
			_ = s.kf.close()
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
	peers, err := newPeerPolicy(cfg.Policy, cfg.Relay, s.selfAddrs())
	if err != nil {
		return nil, err
	}
	s.peers.Store(peers)
	s.policyCfg = cfg.Policy

	listen := cfg.Listen
	useTLS, useDTLS := !listen.NoTLS, !listen.NoDTLS
	if useTLS || useDTLS {
		if cfg.TLS.GetCertificate != nil {
			s.certs = newExtCertStore(cfg.TLS.GetCertificate, log, s.metrics)
		} else if s.certs, err = newCertStore(cfg.TLS.CertFile, cfg.TLS.KeyFile, s.certHosts(), log, s.metrics); err != nil {
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
		if !listen.NoUDP {
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
		if !listen.NoTCP {
			ln, err := s.bindConfig().Listen(context.Background(), "tcp"+v, plain.String())
			if err != nil {
				if err := bindErr("tcp", plain, err); err != nil {
					return nil, err
				}
			} else {
				s.track("tcp", ln.Addr(), ln.Close)
				lcs = append(lcs, s.listenerConfig(s.proxyListen(ln, "tcp"), "tcp", false))
			}
		}
		if useTLS {
			ln, err := s.bindConfig().Listen(context.Background(), "tcp"+v, secure.String())
			if err != nil {
				if err := bindErr("tls", secure, err); err != nil {
					return nil, err
				}
			} else {
				s.track("tls", ln.Addr(), ln.Close)
				// PROXY headers first (listen.proxy_from), under TLS and
				// under the HTTPS share alike.
				pln := s.proxyListen(ln, "tls")
				var tln net.Listener
				if opts.ShareTLS != nil {
					if tln, err = opts.ShareTLS(pln, s.tlsConfig()); err != nil {
						return nil, fmt.Errorf("sharing tls %s: %w", secure, err)
					}
				}
				if tln == nil {
					tln = tls.NewListener(pln, s.tlsConfig())
				}
				lcs = append(lcs, s.listenerConfig(tln, "tls", false))
			}
		}
		if useDTLS {
			ln, err := dtls.ListenWithOptions("udp"+v, net.UDPAddrFromAddrPort(secure),
				dtls.WithGetCertificate(func(h *dtls.ClientHelloInfo) (*tls.Certificate, error) {
					return s.certs.get(&tls.ClientHelloInfo{ServerName: h.ServerName})
				}),
				dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
				// RFC 7443's labels. pion/dtls answers a client that offers
				// only other protocols with no_application_protocol (RFC 7301
				// §3.2); one without ALPN is served as before.
				dtls.WithSupportedProtocols(ALPNProtocols()...),
				dtls.WithListenConfig(*s.bindConfig()))
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
	s.logNotUp()
	if len(pcs) == 0 && len(lcs) == 0 {
		return nil, errors.New("no listener could be opened (check Listen.Addrs and the transport switches)")
	}

	// The kernel fast path, before pion reports the first allocation; a
	// failure stops New only with Relay.KernelOffload = "on".
	if s.kf, err = openOffload(cfg, log); err != nil {
		return nil, err
	}
	s.allocs.kf = s.kf
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(newOffloadCollector(s.kf, s.allocs)); err != nil {
			return nil, fmt.Errorf("registering kernel offload metrics: %w", err)
		}
	}

	s.pion, err = pionturn.NewServer(pionturn.ServerConfig{
		PacketConnConfigs:  pcs,
		ListenerConfigs:    lcs,
		LoggerFactory:      pionLoggerFactory{log: log, limited: s.limited},
		Realm:              cfg.Realm,
		AuthHandler:        s.gate.authHandler,
		QuotaHandler:       s.gate.quota,
		AllocationLifetime: cfg.Limits.DefaultLifetime,
		EventHandler:       s.allocs.eventHandler(s.allocationEvent),
		ChannelBindTimeout: cfg.Relay.chanLife,
		PermissionTimeout:  cfg.Relay.permLife,
	})
	if err != nil {
		return nil, fmt.Errorf("starting pion: %w", err)
	}

	if opts.Registerer != nil && len(s.loops) > 0 {
		if err := opts.Registerer.Register(newLoopCollector(s.loops)); err != nil {
			return nil, fmt.Errorf("registering loop metrics: %w", err)
		}
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(newPoolCollector(s)); err != nil {
			return nil, fmt.Errorf("registering relay port metrics: %w", err)
		}
	}

	// Everything is set up: the loops may start reading the listeners.
	for _, sock := range s.pending {
		if err := sock.Start(); err != nil {
			return nil, err
		}
	}
	s.pending = nil
	if err := s.relays.startShared(s.wg.Go); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if s.certs != nil {
		s.wg.Go(func() { s.certs.watch(ctx, cfg.TLS.ReloadInterval) })
	}
	if cfg.Relay.IPv4Discover || cfg.Relay.IPv6Discover {
		s.wg.Go(func() { s.watchPublic(ctx) })
	}
	if s.usage != nil {
		every := opts.UsageInterval
		if every <= 0 {
			every = defaultUsageInterval
		}
		s.wg.Go(func() { s.watchUsage(ctx, every) })
	}
	return s, nil
}

// allocationEvent reports an allocation pion created or deleted, named with
// the user the allocation table knows.
func (s *Server) allocationEvent(created bool, a allocInfo) {
	e := Event{Kind: EventAllocationDeleted, Client: a.client, Transport: a.transport,
		Username: a.username, UserID: a.userID}
	if created {
		e.Kind, e.Detail = EventAllocationCreated, "relay "+a.relay
		s.emit(e)
		s.log.Debug("allocation created", "client", a.client, "user", a.userID, "relay", a.relay)
		return
	}
	// The usage event and line: what the allocation relayed in all.
	e.Detail = usageDetail(a)
	s.emit(e)
	s.logUsage(a)
	s.reportUsage(a.userID, a.customID, a.unreported)
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
		ReusePort: true, FreeBind: s.freeBind, Queue: 1024, Dropped: s.slowQueueFull.Inc,
	}
}

// logNotUp logs once, at start, each specific listen or relay address that
// is on no interface yet: with IP_FREEBIND its sockets are bound and will
// serve once the address appears (the server started before the network);
// the line says so, so that a mistyped address is not silent either.
func (s *Server) logNotUp() {
	if !s.freeBind || !freeBindSupported {
		return
	}
	up := map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				up[p.Addr().Unmap()] = true
			}
		}
	}
	seen := map[netip.Addr]bool{}
	check := func(role string, a netip.Addr) {
		a = a.Unmap().WithZone("") // interfaces list fe80::1, not fe80::1%eth0
		if !a.IsValid() || a.IsUnspecified() || up[a] || seen[a] {
			return
		}
		seen[a] = true
		s.log.Warn("bound before the address is up: "+a.String()+" is on no interface yet; its sockets serve once it appears",
			"addr", a.String(), "role", role)
	}
	for _, a := range s.cfg.Listen.Addrs {
		check("listen", a)
	}
	check("relay", s.relays.v4.bind)
	check("relay", s.relays.v6.bind)
}

// bindConfig is how the listeners Go's net package opens are bound: with
// IP_FREEBIND on a specific address (freebind_linux.go) unless
// Listen.NoFreeBind, so a server started before the network comes up
// binds anyway.
func (s *Server) bindConfig() *net.ListenConfig {
	if !s.freeBind {
		return &net.ListenConfig{}
	}
	return &net.ListenConfig{Control: freeBindControl}
}

// openUDP opens the UDP listener on ap: with event loops, one SO_REUSEPORT
// socket per loop (the kernel keeps each client on one of them, so one
// allocation's packets stay on one core); otherwise one socket.
func (s *Server) openUDP(v string, ap netip.AddrPort) ([]*gatePacketConn, error) {
	if len(s.loops) == 0 {
		pc, err := s.bindConfig().ListenPacket(context.Background(), "udp"+v, ap.String())
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
		probe, err := s.bindConfig().ListenPacket(context.Background(), "udp"+v, ap.String())
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

// setupRelays builds the relay allocator from the advertised address of
// each family (relayPublic, which policy explain's SelfAddrs uses too, or
// discovery, publicaddr.go) and refuses the classic coturn mistake:
// advertising an address peers cannot reach.
func (s *Server) setupRelays() error {
	r := s.cfg.Relay
	s.relays = &relayAllocator{
		min: r.MinPort, max: r.MaxPort, tcp: r.TCP,
		limit: s.cfg.Limits.AllocationsTotal, bps: s.cfg.Limits.BandwidthPerAllocation,
		metrics: s.metrics, res: newReservations(),
	}
	s.relays.self = func(peer netip.AddrPort) bool { return s.peers.Load().SelfPort(peer) }
	s.relays.selfDrop = s.dropSelfPort
	s.relays.table = s.allocs
	s.relays.dropNoPerm = s.metrics.Dropped.WithLabelValues("no_permission")
	s.relays.dropUnclaimed = s.metrics.Dropped.WithLabelValues("peer_unclaimed")
	s.relays.dropTaken = s.metrics.Dropped.WithLabelValues("peer_taken")
	s.relays.dropClaimsFull = s.metrics.Dropped.WithLabelValues("peer_claims_full")
	s.relays.dropQueue = s.metrics.Dropped.WithLabelValues("slow_queue_full")
	s.relays.loops = s.loops
	s.relays.sockBuf = s.sockBuf
	s.relays.freeBind = s.freeBind
	v4, v6, err := relayPublic(r)
	if err != nil {
		return err
	}
	if r.IPv4Discover {
		if v4, err = s.discoverAtStart(ipv4); err != nil {
			return err
		}
	}
	if r.IPv6Discover {
		if v6, err = s.discoverAtStart(ipv6); err != nil {
			return err
		}
	}
	if v4.IsValid() {
		s.relays.v4 = relayFamily{bind: r.IPv4Bind, public: v4}
	}
	if v6.IsValid() {
		s.relays.v6 = relayFamily{bind: r.IPv6Bind, public: v6}
	} else if r.IPv6Bind.IsValid() {
		s.log.Info("relay: no global IPv6 address on this host, IPv6 relays are off (RFC 6156 requests get 440); set relay.ipv6_public to enable them")
	}
	mode := "port per allocation"
	if r.Shared {
		// Bound now, before "listening": a shared port that cannot be
		// bound fails the start, not the first Allocate.
		if err := s.relays.openShared(); err != nil {
			return err
		}
		s.closers = append(s.closers, func() error { s.relays.closeShared(); return nil })
		mode = "shared"
	}
	s.relays.publics.Store(&[2]netip.Addr{s.relays.v4.public, s.relays.v6.public})
	for _, fam := range []publicFamily{ipv4, ipv6} {
		f := fam.of(s.relays)
		if !f.enabled() {
			continue
		}
		s.log.Info("relay addresses", "advertised", f.public.String(), "bind", f.bind.String(),
			"ports", strconv.Itoa(r.MinPort)+"-"+strconv.Itoa(r.MaxPort), "mode", mode)
		what := auth.NonPublic(f.public)
		if what == "" || r.PrivateOK {
			continue
		}
		if derived(f.bind, fam.configured(r), fam.discover(r)) {
			// Nothing configured: the embedded defaults on a laptop, or a
			// first try. Refusing would make the defaults useless there;
			// the operator hears what to set.
			s.log.Warn("!!! the advertised relay address, picked from this host's interfaces, is "+what+
				": peers on the internet cannot reach relays there. Behind 1:1 NAT (AWS, GCP) set relay."+fam.name+"_public to the public IP "+
				"or to \"auto\" with relay.discover_with; if this is a LAN or a test, set relay.private_ok = true to silence this warning.",
				"advertised", f.public.String())
			continue
		}
		return fmt.Errorf("relay: the advertised %s address %s (%s) is %s: peers on the internet cannot reach relays there; "+
			"advertise the public address (behind 1:1 NAT, the provider's, or \"auto\" with relay.discover_with), or set relay.private_ok = true for a LAN or a test",
			fam.label, f.public, fam.source(r), what)
	}
	return nil
}

// selfAddrs are the advertised relay addresses in force, SelfAddrs as the
// server found them (and discovery since): what a client names as the peer
// when it talks to another client's relay.
func (s *Server) selfAddrs() []netip.Addr {
	var out []netip.Addr
	pubs := s.relays.publics.Load()
	for i, f := range []relayFamily{s.relays.v4, s.relays.v6} {
		if f.enabled() {
			out = append(out, pubs[i])
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

// buildCredentials turns cfg.Auth into credentials. With nothing
// configured and NoEphemeralSecret off, the secret generated at start is the
// one credential (ephemeral true), which EphemeralSecret then returns.
func (s *Server) buildCredentials(cfg Config) (_ *auth.Credentials, ephemeral bool, _ error) {
	a := cfg.Auth
	secrets := a.Secrets
	if len(a.Users) == 0 && len(secrets) == 0 && !a.NoEphemeralSecret {
		secrets, ephemeral = []string{s.ephemeralSecret}, true
	}
	creds, err := auth.NewCredentials(cfg.Realm, a.Users, secrets, a.Separator)
	return creds, ephemeral, err
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
	d := s.peers.Load().Decide(ip)
	if !d.Allowed {
		s.metrics.PeerDenials.WithLabelValues(ruleLabel(d.Rule)).Inc()
		s.limited.Log(slog.LevelInfo, "peer-denied", "peer refused by policy (403)",
			"client", client.String(), "peer", ip.String(), "rule", d.Rule, "why", d.String())
		s.emit(Event{Kind: EventPermissionDenied, Client: client.String(), Peer: ip.String(), Detail: d.String()})
	}
	return d
}

// refuseSelfPort reports whether a channel or TCP connection to peer is
// refused for being this server outside the relay ports; a refusal is
// counted, logged and sent to the event handler, so it is never silent.
func (s *Server) refuseSelfPort(client net.Addr, peer netip.AddrPort) bool {
	if !s.relays.selfPort(peer) {
		return false
	}
	s.metrics.PeerDenials.WithLabelValues(SelfPortRule).Inc()
	s.limited.Log(slog.LevelInfo, "peer-denied", "peer refused by policy (403)",
		"client", client.String(), "peer", peer.String(), "rule", SelfPortRule, "why", selfPortWhy)
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

// PeerPolicy returns the peer policy in force.
func (s *Server) PeerPolicy() *PeerPolicy { return s.peers.Load() }

// Credentials returns the credentials in force.
func (s *Server) Credentials() *auth.Credentials { return s.creds.Load() }

// Metrics returns the server's collectors.
func (s *Server) Metrics() *Metrics { return s.metrics }

// AllocationCount returns the number of live allocations.
func (s *Server) AllocationCount() int { return s.pion.AllocationCount() }

// Reload applies the live parts of a new, validated config at once; see
// PrepareReload.
func (s *Server) Reload(cfg Config) error {
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
	cfg       Config
	creds     *auth.Credentials
	ephemeral bool
	peers     *PeerPolicy
	self      []netip.Addr // the advertised addresses peers was built around
	certs     *certSource  // nil: keep the running one
}

// PrepareReload builds the live parts of a new config: credentials (Auth),
// peer policy (Policy, around the relay addresses found at start) and the
// TLS/DTLS certificate (TLS.CertFile and KeyFile, loaded from disk again,
// so a reload also picks up a renewed pair), and Relay.PrivateOK for the
// discovery rounds after it (publicaddr.go). It changes nothing; an error
// means the reload must not happen. Settings read only at start
// (listeners, relay addresses and ports, limits, RFC 5780) are not looked
// at: which they are, and naming those that changed, is the config file's
// business (config.KeepRestartOnly). The realm must not change, since pion
// puts the one it started with in every challenge.
func (s *Server) PrepareReload(cfg Config) (*PreparedReload, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Realm != s.cfg.Realm {
		return nil, fmt.Errorf("realm changed from %q to %q: that needs a restart", s.cfg.Realm, cfg.Realm)
	}
	creds, ephemeral, err := s.buildCredentials(cfg)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	self := s.selfAddrs()
	peers, err := newPeerPolicy(cfg.Policy, s.cfg.Relay, self)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p := &PreparedReload{s: s, cfg: cfg, creds: creds, ephemeral: ephemeral, peers: peers, self: self}
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
	s.peersMu.Lock()
	if !s.samePublics(p.self) {
		// Discovery changed an advertised address since PrepareReload: the
		// policy validated there, around the addresses in force now.
		if peers, err := newPeerPolicy(p.cfg.Policy, s.cfg.Relay, s.selfAddrs()); err == nil {
			p.peers = peers
		}
	}
	s.peers.Store(p.peers)
	s.policyCfg = p.cfg.Policy
	s.peersMu.Unlock()
	s.privateOK.Store(p.cfg.Relay.PrivateOK)
	if p.certs != nil {
		s.certs.cur.Store(p.certs)
	}
	r := s.revoke(p.creds, p.peers)
	s.log.Debug("reloaded credentials, peer policy and certificates",
		"users", len(p.cfg.Auth.Users), "secrets", len(p.cfg.Auth.Secrets),
		"allocations_ended", r.Allocations, "peers_blocked", r.Peers)
	return r
}

// The allocation states (Server.allocState).
const (
	allocating int32 = iota
	draining
	retired
)

// ErrRetired is ResumeAllocating's answer once the server is shutting
// down (Retire, Drain): the drain of a shutdown is not taken back.
var ErrRetired = errors.New("turn: shutting down: new allocations stay refused")

// StopAllocating refuses new allocations from now on (508 "Server is
// draining", counted as outcome draining) while the live ones keep relaying
// and refreshing. It does not wait; Drain does. It reports whether the
// server was allocating until now.
func (s *Server) StopAllocating() bool { return s.allocState.CompareAndSwap(allocating, draining) }

// ResumeAllocating takes back StopAllocating: new allocations are
// accepted again (the admin API's undrain). It reports whether the server
// was draining until now; once Retire (or Drain) was called it changes
// nothing and returns ErrRetired.
func (s *Server) ResumeAllocating() (bool, error) {
	if s.allocState.CompareAndSwap(draining, allocating) {
		return true, nil
	}
	if s.allocState.Load() == retired {
		return false, ErrRetired
	}
	return false, nil
}

// Retire refuses new allocations for good: the first step of a shutdown,
// which nothing takes back (ResumeAllocating returns ErrRetired).
func (s *Server) Retire() { s.allocState.Store(retired) }

// Retired reports whether the server is shutting down (Retire, Drain).
func (s *Server) Retired() bool { return s.allocState.Load() == retired }

// Draining reports whether new allocations are refused.
func (s *Server) Draining() bool { return s.allocState.Load() != allocating }

// Drain retires the server (new allocations refused for good) and waits
// until the live ones are gone or ctx ends, whichever is first. Existing
// allocations keep relaying meanwhile.
func (s *Server) Drain(ctx context.Context) int {
	s.Retire()
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
		// The kernel stops relaying before pion does.
		s.allocs.stopOffload()
		if s.pion != nil {
			s.closeErr = s.pion.Close()
			if s.relays != nil {
				s.relays.closeShared() // after pion closed the allocations on them
			}
		} else {
			s.closeAll()
		}
		if s.relays != nil {
			s.relays.res.close() // ports held for EVEN-PORT tokens
		}
		s.wg.Wait()
		// stopOffload took every flow out of the kernel: now the program
		// is detached and its maps go.
		if err := s.kf.close(); err != nil {
			s.log.Warn("kernel offload: detaching", "err", err)
		}
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
