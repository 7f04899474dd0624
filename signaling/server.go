package signaling

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"icegate/internal/ratelog"
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
}

// settings are a Server's Config with its defaults applied, and what is
// derived from it; swapped whole by Reload. ResumeGrace 0 means resuming
// is off.
type settings struct {
	Config
	hardReadLimit int64
	// natProbe holds the stun: URLs of NATProbe; nil when it is off.
	natProbe []string
}

// Timeouts that are not worth a config attribute.
const (
	// writeWait bounds one write to a client; a client that does not take a
	// message in this time is dead or too slow.
	writeWait = 10 * time.Second
	// pongWait is how long after a ping the pong may take.
	pongWait = 15 * time.Second
	// goneMemory is how long a departed peer id is remembered, to answer
	// "peer-gone" rather than "no-such-peer".
	goneMemory = 10 * time.Minute
	// maxGone bounds that memory.
	maxGone = 4096
)

// Server is the signaling server: a hub of peers and rooms. The zero value
// is not usable; call New.
type Server struct {
	log     *slog.Logger
	limited *ratelog.Logger
	metrics *metrics
	secret  func() string
	version string
	set     atomic.Pointer[settings]

	// byID mirrors peers for the TURN event hook, which must not wait for mu.
	byID sync.Map // id → *peer

	mu       sync.RWMutex
	peers    map[string]*peer
	byResume map[string]*peer
	rooms    map[string]*room
	names    map[string]*peer // /ws/simple logins
	// gone maps the ids of departed peers to when they left; goneOrder
	// holds the same departures, oldest first, so that pruning takes
	// entries from its front instead of scanning the map.
	gone      map[string]time.Time
	goneOrder []departure
	conns     map[*conn]struct{}
	closed    bool

	nconns atomic.Int64
	wg     sync.WaitGroup // Accept calls running
}

// departure is one entry of Server.goneOrder.
type departure struct {
	id string
	at time.Time
}

// room is a named set of peers, in join order. Guarded by Server.mu.
type room struct {
	name    string
	max     int
	members []*peer
}

func (r *room) has(p *peer) bool { return slices.Contains(r.members, p) }

// New returns a Server for cfg, or an error naming every value of cfg it
// cannot work with.
func New(cfg Config, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "signaling")
	s := &Server{
		log:      log,
		limited:  ratelog.New(log),
		metrics:  newMetrics(opts.Registerer),
		secret:   opts.Secret,
		version:  opts.Version,
		peers:    map[string]*peer{},
		byResume: map[string]*peer{},
		rooms:    map[string]*room{},
		names:    map[string]*peer{},
		gone:     map[string]time.Time{},
		conns:    map[*conn]struct{}{},
	}
	if s.secret == nil {
		s.secret = func() string { return "" }
	}
	if err := s.Reload(cfg); err != nil {
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
	if err := st.validate(); err != nil {
		return nil, err
	}
	st.natProbe = st.NATProbe.urls()
	// Messages up to MaxMessageBytes are read; larger ones up to this are
	// read and discarded with an error; beyond it the connection is closed
	// (1009), since a client sending those is not a signaling client.
	st.hardReadLimit = int64(max(4*st.MaxMessageBytes, st.MaxMessageBytes+64<<10))
	return func() { s.set.Store(st) }, nil
}

func (s *Server) settings() *settings { return s.set.Load() }

// Close closes every connection (with close code 1001, going away) and
// forgets every peer, waiting for the connections' goroutines until ctx
// ends. net/http does not close hijacked connections; this does.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	for _, p := range s.peers {
		if p.timer != nil {
			p.timer.Stop()
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.kill(closeGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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

func (s *Server) exit(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.nconns.Add(-1)
	s.metrics.connections.Dec()
	s.wg.Done()
}

// full reports whether a new connection would be refused for capacity.
func (s *Server) full() bool {
	return int(s.nconns.Load()) >= s.settings().MaxConnections
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

// register adds a new peer. Caller holds mu.
func (s *Server) registerLocked(p *peer) {
	for s.peers[p.id] != nil {
		p.id = newID()
	}
	s.peers[p.id] = p
	s.byID.Store(p.id, p)
	s.metrics.peers.Inc()
}

// removeLocked forgets p for good: its rooms are told it left. Caller holds
// mu.
func (s *Server) removeLocked(p *peer, why string) {
	if p.gone {
		return
	}
	p.gone = true
	if p.timer != nil {
		p.timer.Stop()
	}
	delete(s.peers, p.id)
	s.byID.Delete(p.id)
	if p.resume != "" {
		delete(s.byResume, p.resume)
	}
	for _, name := range slices.Clone(p.rooms) {
		s.leaveLocked(p, name)
	}
	if p.simple {
		s.simpleLogoutLocked(p)
	}
	s.rememberGoneLocked(p.id, time.Now())
	s.metrics.peers.Dec()
	s.log.Debug("peer gone", "peer", p.id, "why", why)
}

// rememberGoneLocked records that peer id left at now, for peerGoneLocked.
// It forgets departures older than goneMemory and, beyond maxGone, the
// oldest ones. Departures are recorded in time order (under mu, with the
// monotonic clock), so both are at the front of goneOrder: the cost is
// O(1) amortized per departure. Caller holds mu.
func (s *Server) rememberGoneLocked(id string, now time.Time) {
	s.gone[id] = now
	s.goneOrder = append(s.goneOrder, departure{id: id, at: now})
	n := 0
	for _, d := range s.goneOrder {
		if len(s.goneOrder)-n <= maxGone && now.Sub(d.at) < goneMemory {
			break
		}
		// An id that left again later has a newer entry; keep that one.
		if t, ok := s.gone[d.id]; ok && t.Equal(d.at) {
			delete(s.gone, d.id)
		}
		n++
	}
	if n > 0 {
		clear(s.goneOrder[:n]) // let the ids be collected
		s.goneOrder = s.goneOrder[n:]
	}
}

// leaveLocked takes p out of room name and tells the others. Caller holds mu.
func (s *Server) leaveLocked(p *peer, name string) bool {
	i := slices.Index(p.rooms, name)
	if i < 0 {
		return false
	}
	p.rooms = slices.Delete(p.rooms, i, i+1)
	r := s.rooms[name]
	if r == nil {
		return true
	}
	if j := slices.Index(r.members, p); j >= 0 {
		r.members = slices.Delete(r.members, j, j+1)
	}
	if len(r.members) == 0 {
		delete(s.rooms, name)
		s.metrics.rooms.Dec()
		return true
	}
	body := encode(roomMsg{Type: TypePeerLeft, Room: name, Peer: p.id})
	for _, o := range r.members {
		s.deliver(o, body, "peer-left")
	}
	return true
}

// deliver queues body for p; a full queue means p is too slow, and it is
// disconnected. Safe with or without mu held.
func (s *Server) deliver(p *peer, body []byte, what string) error {
	if _, err := p.out.push(body); err != nil {
		s.metrics.dropped.WithLabelValues("queue-full").Inc()
		s.limited.Log(slog.LevelInfo, "slow-"+p.id, "peer too slow: its queue is full, disconnecting it",
			"peer", p.id, "dropped", what, "queued", p.out.pending())
		p.kick()
		return err
	}
	return nil
}

// sharesRoom reports whether a and b are in a common room (room "" = any).
// Caller holds mu.
func sharesRoom(a, b *peer, room string) bool {
	if room != "" {
		return slices.Contains(a.rooms, room) && slices.Contains(b.rooms, room)
	}
	for _, r := range a.rooms {
		if slices.Contains(b.rooms, r) {
			return true
		}
	}
	return false
}

// peerGone reports whether id left recently. Caller holds mu (read).
func (s *Server) peerGoneLocked(id string) bool {
	t, ok := s.gone[id]
	return ok && time.Since(t) < goneMemory
}

// Stats is a snapshot for tests and the benchmark.
type Stats struct {
	Connections, Peers, Rooms int
}

// Stats returns the current counts.
func (s *Server) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Stats{Connections: int(s.nconns.Load()), Peers: len(s.peers), Rooms: len(s.rooms)}
}

// safeText trims client-supplied text for logs.
func safeText(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.ToValidUTF8(s, "?")
}
