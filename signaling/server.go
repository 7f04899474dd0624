package signaling

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"icegate/internal/ratelog"
	"icegate/signaling/engineio"
)

// Options are the parts of a Server that are not settings: where it logs
// and counts, and what it asks of the process as it runs (the minting
// secret, the version).
type Options struct {
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the Prometheus collectors; nil keeps them private.
	Registerer prometheus.Registerer
	// Secret returns the shared secret TURN credentials are minted with: the
	// first auth.secrets, or the one the relay generated. "" (or a nil
	// Secret) means none can be minted, and iceServers hold STUN URLs only.
	Secret func() string
	// Version is shown to clients in hello.
	Version string
	// RelayDraining reports whether the relay refuses new allocations
	// (SIGUSR1, or shutting down). While it does, iceServers hold the STUN
	// URL only and no credentials are minted: a turn: URL would only earn
	// the browser a refused Allocate. nil means never.
	RelayDraining func() bool
	// Bus holds the sessions and rooms; nil is a new in-process bus (one
	// node, no cluster).
	Bus Bus
	// Steer picks the relay handed-out iceServers name when it is not
	// this node's own: in a cluster, the least loaded healthy node
	// (cmd/icegate's steering on the Redis bus). false means this node's
	// own relay. It is called for every set of credentials minted, so it
	// must answer from memory. It must never return a draining node. nil
	// means always this node's.
	Steer func() (TURNNode, bool)
}

// settings are a Server's Config with its defaults applied, and what is
// derived from it; swapped whole by Reload. ResumeGrace 0 means resuming
// is off.
type settings struct {
	Config
	hardReadLimit int64
	// natProbe holds the stun: URLs of NATProbe; nil when it is off.
	natProbe []string
	// apiKeys are the SHA-256 digests of APIKeys, compared in constant
	// time (api.go).
	apiKeys [][sha256.Size]byte
}

// Timeouts that are not worth a config attribute.
const (
	// writeWait bounds one write to a client; a client that does not take a
	// message in this time is dead or too slow.
	writeWait = 10 * time.Second
	// pongWait is how long after a ping the pong may take.
	pongWait = 15 * time.Second
	// busWait bounds one bus operation made for a client's message.
	busWait = 5 * time.Second
)

// Server is the signaling server: the connections of this process, on a
// Bus that holds the sessions, rooms and messages they share (in process
// by default, Redis in a cluster). The zero value is not usable; call New.
type Server struct {
	log     *slog.Logger
	limited *ratelog.Logger
	metrics *metrics
	secret  func() string
	version string
	// relayDraining is Options.RelayDraining, never nil.
	relayDraining func() bool
	// steer is Options.Steer, never nil.
	steer func() (TURNNode, bool)
	set   atomic.Pointer[settings]
	bus   Bus
	// eio serves /socket.io/'s Engine.IO sessions (sio.go).
	eio *engineio.Server

	mu     sync.RWMutex
	local  map[string]*conn // by session id: the connections this node holds
	conns  map[*conn]struct{}
	closed bool
	stop   chan struct{} // closed by Close

	// leeway is how long past its token's exp a session lasts: the clock
	// skew tokens are allowed at the door (tokenLeeway; tests shorten it).
	leeway time.Duration

	// timers runs every connection's pings, renewals and token expiry
	// (timers.go).
	timers *timers
	// handlers run what readers hand off (shallow, handlers.go), and
	// the waiter's connections' input (watch.go).
	handlers handlers
	// detaches queues dropped connections' releases while the server is
	// busy (detaches.go).
	detaches detachQueue
	// ends queues connections the waiter found dropped, to be ended on
	// one goroutine behind everything else (ends.go).
	ends endQueue
	// poll is the waiter for idle connections, started by the first
	// (Server.waiter); pollFailed, under mu, says it could not be.
	// noWaiter (tests) keeps every connection on a reader goroutine.
	poll       atomic.Pointer[poller]
	pollFailed bool
	noWaiter   bool

	// eventSlots bounds the relay events on their way to the bus.
	eventSlots chan struct{}

	nconns atomic.Int64
	// idleWakes counts the times a waiting reader woke (the tests of
	// lazy pongs: an idle client's pong wakes none).
	idleWakes atomic.Int64
	// pingsInline counts the pings the timer loop sent whole itself,
	// pingsFinished those whose send a goroutine finished (the socket
	// buffer was full, or the send failed): pings.go, inlinePinger.
	pingsInline, pingsFinished atomic.Int64
	// sioPending counts Engine.IO sessions waiting for their socket.io
	// CONNECT (up to connectTimeout): each holds a session and a
	// goroutine, so it takes a place under max_connections as well.
	sioPending atomic.Int64
	// opening counts sessions between admission and the end of attach
	// (Config.MaxOpening).
	opening atomic.Int64
	// openWaiters counts WebSockets waiting at the door for a place
	// (waitOpening); placeFreed wakes one of them per place given back.
	openWaiters atomic.Int64
	placeFreed  chan struct{}
	openWait    time.Duration // openingWait; tests lengthen it
	// fds keeps Config.DescriptorReserve free (fdcount.Guard); its
	// estimate between counts follows nconns and sioPending.
	fds *fdGuard
	wg  sync.WaitGroup // Accept calls running, detach workers, and retried releases (release)
}

// relayEventsInFlight bounds Server.eventSlots.
const relayEventsInFlight = 256

// New returns a Server for cfg, or an error naming every value of cfg it
// cannot work with.
func New(cfg Config, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "signaling")
	s := &Server{
		log:     log,
		limited: ratelog.New(log),
		secret:  opts.Secret,
		version: opts.Version,
		bus:     opts.Bus,
		local:   map[string]*conn{},
		conns:   map[*conn]struct{}{},
		stop:    make(chan struct{}),

		eventSlots: make(chan struct{}, relayEventsInFlight),
		placeFreed: make(chan struct{}, placeFreedSlots),
		openWait:   openingWait,
		leeway:     tokenLeeway,
		timers:     newTimers(),
	}
	if s.secret == nil {
		s.secret = func() string { return "" }
	}
	s.relayDraining = opts.RelayDraining
	if s.relayDraining == nil {
		s.relayDraining = func() bool { return false }
	}
	s.steer = opts.Steer
	if s.steer == nil {
		s.steer = func() (TURNNode, bool) { return TURNNode{}, false }
	}
	if s.bus == nil {
		s.bus = NewMemoryBus()
	}
	s.fds = newFDGuard(s)
	s.metrics = newMetrics(opts.Registerer, func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return float64(len(s.local))
	}, func() float64 { return float64(s.Stats().Rooms) }, func(ctx context.Context) (map[string]int, error) {
		return s.bus.Counts(ctx)
	})
	if err := s.Reload(cfg); err != nil {
		return nil, err
	}
	s.eio = engineio.NewServer(s.settings().engineConfig(s.checkOrigin), s.serveSIOSession)
	if err := s.bus.Start(node{s}); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload applies a new config: origins, token secrets, limits, credential
// lifetime, the relay's URLs. Open connections keep running; new limits
// apply to what they do next. On an error nothing changes.
func (s *Server) Reload(cfg Config) error {
	apply, err := s.PrepareReload(cfg)
	if err != nil {
		return err
	}
	apply()
	return nil
}

// PrepareReload builds and checks the settings of a new config without
// applying them; the returned function applies them. A reload of the whole
// server prepares every part first and applies them only when all are
// ready. cfg.Relay names the ports the iceServers URLs carry: the caller
// passes the ports the relay actually serves.
func (s *Server) PrepareReload(cfg Config) (apply func(), err error) {
	st := &settings{Config: cfg.withDefaults()}
	if st.MaxOpening == 0 {
		st.MaxOpening = s.autoMaxOpening()
	}
	if err := st.validate(); err != nil {
		return nil, err
	}
	st.natProbe = st.NATProbe.urls()
	st.apiKeys = hashKeys(st.APIKeys)
	// Messages up to MaxMessageBytes are read; larger ones up to this are
	// read and discarded with an error; beyond it the connection is closed
	// (1009), since a client sending those is not a signaling client.
	st.hardReadLimit = int64(max(4*st.MaxMessageBytes, st.MaxMessageBytes+64<<10))
	return func() {
		s.set.Store(st)
		if s.eio != nil {
			s.eio.SetConfig(st.engineConfig(s.checkOrigin))
		}
	}, nil
}

func (s *Server) settings() *settings { return s.set.Load() }

// Close closes every connection (with close code 1001, going away),
// waiting for the connections' goroutines until ctx ends, then the bus.
// On the in-process bus every peer is forgotten; on a shared one, this
// node's peers are held for their resume grace, to resume on another node.
// net/http does not close hijacked connections; this does.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		close(s.stop)
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.kill(closeGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() {
		// Engine.IO sessions still waiting for their CONNECT end too.
		s.eio.Close()
		s.wg.Wait()
		// Every connection has ended, and left the waiter; no new one
		// starts it (closed).
		if p := s.poll.Load(); p != nil {
			p.close()
		}
		s.handlers.close()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.bus.Close(ctx)
}

// Connections returns the number of open WebSockets.
func (s *Server) Connections() int { return int(s.nconns.Load()) }

// enter admits a connection, or says why not.
func (s *Server) enter(c *conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if int(s.nconns.Load()) >= s.settings().MaxConnections {
		return ErrCapacity
	}
	s.nconns.Add(1)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.metrics.connections.Inc()
	return nil
}

// spawn runs f on a goroutine of its own that Close waits for, unless the
// server is closed (then it reports false and f does not run). A panic in
// f is logged and ends only f, as net/http does for a handler, where f
// would otherwise have run.
func (s *Server) spawn(f func()) bool {
	return s.spawnOn(f, false)
}

// spawnOn is spawn; with pooled, f runs on one of the handler goroutines
// when one can be had (handlers.goRun), for work that ends soon, such as
// opening a connection the waiter then holds: a handler keeps the stack
// it grew, where a new goroutine grows its own, copying, while it opens
// a session (attach, the hello's JSON: 9% of a node's CPU in a
// reconnect storm, docs/performance.md).
func (s *Server) spawnOn(f func(), pooled bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	run := func() {
		defer s.wg.Done()
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic serving a connection", "panic", p, "stack", string(debug.Stack()))
			}
		}()
		f()
	}
	if !pooled || !s.handlers.goRun(run) {
		go run()
	}
	return true
}

func (s *Server) exit(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.nconns.Add(-1)
	s.metrics.connections.Dec()
	s.wg.Done()
}

// full reports whether a new connection would be refused for capacity:
// open connections and socket.io sessions not yet connected together.
func (s *Server) full() bool {
	return int(s.nconns.Load()+s.sioPending.Load()) >= s.settings().MaxConnections
}

// autoMaxOpening is Config.MaxOpening's default for this server's bus.
func (s *Server) autoMaxOpening() int {
	if _, ok := s.bus.(*MemoryBus); ok {
		return memoryMaxOpeningPerCPU * runtime.GOMAXPROCS(0)
	}
	return defaultMaxOpening
}

// tryOpening takes one of Config.MaxOpening's places for a session being
// opened or resumed; false when none is free. doneOpening gives it back.
func (s *Server) tryOpening() bool {
	if int(s.opening.Add(1)) > s.settings().MaxOpening {
		s.opening.Add(-1)
		return false
	}
	return true
}

func (s *Server) doneOpening() {
	s.opening.Add(-1)
	s.signalFreed()
}

// signalFreed wakes a waiter at the door, if any (a wake-up nobody takes
// is harmless: its taker finds the places full and waits on).
func (s *Server) signalFreed() {
	select {
	case s.placeFreed <- struct{}{}:
	default:
	}
}

// Waiting at the door for a place of Config.MaxOpening. A 503 costs the
// server nearly what an open does (an accepted connection, a request read
// and answered, a close) and costs its client at least half a second
// (Retry-After: 1, jittered), and a crowd refused together comes back
// together: a place frees within an open or two (a millisecond on the
// in-process bus, a few Redis round trips on a cluster), so a connection
// that finds none waits for one first, blocked (a goroutine and its
// request, no CPU), in order of arrival. At most openingWaitersPer places'
// worth wait, for openingWait at most; beyond either, 503 as before.
const (
	openingWait       = time.Second
	openingWaitersPer = 4
	// placeFreedSlots holds wake-ups not yet taken.
	placeFreedSlots = 256
)

// waitOpening is tryOpening, waiting for a place while one may free soon
// (see openingWait); false when none came, or ctx ended.
func (s *Server) waitOpening(ctx context.Context) bool {
	return s.waitPlace(ctx, s.tryOpening)
}

// waitOpeningFree waits as waitOpening does until a place is free, without
// taking it: the socket.io handshake's check (its place is taken at
// CONNECT, with waitOpening).
func (s *Server) waitOpeningFree(ctx context.Context) bool {
	if !s.openingFull() {
		return true
	}
	return s.waitPlace(ctx, func() bool {
		if s.openingFull() {
			return false
		}
		// The wake-up this may have used goes on to a waiter that takes
		// places: this one took none.
		s.signalFreed()
		return true
	})
}

// waitPlace calls try until it succeeds, at each place given back, for
// openingWait at most, while openingWaitersPer places' worth wait.
func (s *Server) waitPlace(ctx context.Context, try func() bool) bool {
	if try() {
		return true
	}
	maxOpening := s.settings().MaxOpening
	if int(s.openWaiters.Add(1)) > openingWaitersPer*maxOpening {
		s.openWaiters.Add(-1)
		return false
	}
	defer s.openWaiters.Add(-1)
	t := time.NewTimer(s.openWait)
	defer t.Stop()
	for {
		select {
		case <-s.placeFreed:
			if try() {
				return true
			}
		case <-t.C:
			return try()
		case <-ctx.Done():
			return false
		}
	}
}

// openingFull reports whether Config.MaxOpening sessions are being opened
// now (the socket.io handshake's check; its place is taken at CONNECT).
func (s *Server) openingFull() bool {
	return int(s.opening.Load()) >= s.settings().MaxOpening
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns a random peer id: 16 lowercase letters and digits, which
// never contain a TURN username separator.
func newID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return idEncoding.EncodeToString(b)
}

// newToken returns a random resume token.
func newToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Stats is a snapshot for tests and the benchmark.
type Stats struct {
	Connections, Peers, Rooms int
}

// Stats returns the current counts: this node's connections, and the
// cluster's peers and rooms.
func (s *Server) Stats() Stats {
	st := Stats{Connections: int(s.nconns.Load())}
	ctx, cancel := context.WithTimeout(context.Background(), busWait)
	defer cancel()
	if counts, err := s.bus.Counts(ctx); err == nil {
		for _, n := range counts {
			st.Peers += n
		}
	}
	if rooms, err := s.bus.Rooms(ctx); err == nil {
		st.Rooms = len(rooms)
	}
	return st
}

// safeText trims client-supplied text for logs.
func safeText(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.ToValidUTF8(s, "?")
}

// node is the Server as the bus sees it.
type node struct{ s *Server }

// Deliver implements Node: the message goes to the session's connection on
// this node, if it still has one (after a drop the bus holds it). A
// connection whose queue is full is not reading: it is closed, and its
// session held, so a resume gets what it missed from the bus's log.
func (n node) Deliver(id string, seq uint64, body []byte) {
	s := n.s
	s.mu.RLock()
	c := s.local[id]
	s.mu.RUnlock()
	if c == nil || c.out.put(seq, body) {
		return
	}
	s.metrics.dropped.WithLabelValues("queue-full").Inc()
	s.limited.Log(slog.LevelInfo, "slow-"+id, "peer too slow: its queue is full, disconnecting it",
		"peer", id, "queued", c.out.pending())
	c.kill(closePolicyViolation, "too slow: outbox full")
	// Hold it now rather than when its writer gives up (up to a second),
	// so that senders are told its queue is full. Off the bus's call.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), busWait)
		defer cancel()
		grace := s.settings().ResumeGrace
		if !c.proto.resumable() {
			grace = 0
		}
		_ = s.bus.Hold(ctx, id, c.epoch, c.out.written(), grace)
	}()
}

// Kick implements Node.
func (n node) Kick(id string, epoch uint64, code int, reason string) {
	n.s.mu.RLock()
	c := n.s.local[id]
	n.s.mu.RUnlock()
	if c != nil && c.epoch <= epoch {
		c.kill(code, reason)
	}
}

// Resync implements Node: every connection asks the bus for what it may
// have missed. A connection whose session the bus no longer knows is
// closed (1012), so its client reconnects as a new peer.
func (n node) Resync() {
	s := n.s
	s.mu.RLock()
	conns := make([]*conn, 0, len(s.local))
	for _, c := range s.local {
		conns = append(conns, c)
	}
	s.mu.RUnlock()
	go func() {
		// A replay that fails (Redis loading after a restart, a blip)
		// leaves a hole in the connection's outbox that every later
		// message would wait behind: try again, then close the
		// connection so its client resumes and gets the log.
		backoff := 100 * time.Millisecond
		for attempt := 0; len(conns) > 0; attempt++ {
			if attempt > 0 {
				time.Sleep(backoff)
				backoff *= 2
			}
			failed := conns[:0]
			for _, c := range conns {
				select {
				case <-c.done:
					continue // ending: a resume replays the log
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), busWait)
				from, msgs, _, err := s.bus.Replay(ctx, c.id, c.out.written())
				cancel()
				switch {
				case err == nil:
					c.out.putAll(from, msgs)
				case errors.Is(err, ErrUnknownSession):
					// The bus lost the session (a Redis restarted without its
					// data): the client starts over with a new one.
					c.ended.Store(true)
					c.kill(closeServiceRestart, "session lost by the cluster; reconnect")
				case attempt == resyncAttempts-1:
					c.kill(closeTryAgainLater, "cannot catch up with the cluster; resume")
				default:
					failed = append(failed, c)
				}
			}
			conns = failed
		}
	}()
}

// resyncAttempts bounds the replays Resync tries for one connection (with
// backoff from 100 ms: about 3 s in all).
const resyncAttempts = 5
