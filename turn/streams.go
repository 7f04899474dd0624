package turn

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"icegate/internal/ratelog"
	"icegate/internal/tokenbucket"
)

// Bounds on what one TCP, TLS or DTLS connection may hold before it proves
// itself (see docs/operations.md, "Connections").
const (
	// idleTimeout closes a connection without an allocation that has sent
	// no complete message for this long, so idle sockets cannot pile up.
	idleTimeout = 60 * time.Second
	// frameTimeout bounds the time from the first byte of a STUN message
	// or ChannelData frame to its last: a client that trickles a byte every
	// few seconds re-arms no timer and is cut off.
	frameTimeout = 10 * time.Second
	// handshakeTimeout bounds a TLS or DTLS handshake.
	handshakeTimeout = 10 * time.Second
)

// streamConns is what every TCP, TLS and DTLS listener of a server shares:
// the open connections per source IP for limits.connections_per_source, the
// descriptor reserve that keeps UDP relays possible, the timeouts, and the
// per-connection budget for unauthenticated requests.
type streamConns struct {
	perSource int // limits.connections_per_source, 0 = no cap
	// guardRate and guardBurst are each connection's budget of
	// unauthenticated requests a second (connGuard); a zero rate means no
	// limit, as limits.unauthenticated_rate = 0 does.
	guardRate, guardBurst float64
	fds                   *fdGuard
	limited               *ratelog.Logger

	// Timeouts in nanoseconds, atomics so tests can shorten them.
	frame, handshake atomic.Int64

	refusedPerSource, refusedReserve, acceptFailed prometheus.Counter
	timeoutIdle, timeoutFrame, timeoutHandshake    prometheus.Counter
	open                                           *prometheus.GaugeVec

	mu       sync.Mutex
	bySource map[netip.Addr]int
	total    atomic.Int64 // open TCP and TLS connections: each holds a descriptor

	// byKey is every open connection by its 5-tuple (allocKey), so that
	// the end of an allocation reaches the connection that made it.
	keyMu sync.Mutex
	byKey map[string]*gateConn
}

func newStreamConns(perSource, unauthRate, unauthBurst int, m *Metrics, limited *ratelog.Logger) *streamConns {
	t := &streamConns{
		perSource: perSource,
		limited:   limited,
		bySource:  map[netip.Addr]int{},
		byKey:     map[string]*gateConn{},

		refusedPerSource: m.ConnectionsRefused.WithLabelValues("per_source"),
		refusedReserve:   m.ConnectionsRefused.WithLabelValues("descriptor_reserve"),
		acceptFailed:     m.ConnectionsRefused.WithLabelValues("accept_error"),
		timeoutIdle:      m.ConnectionTimeouts.WithLabelValues("idle"),
		timeoutFrame:     m.ConnectionTimeouts.WithLabelValues("incomplete_frame"),
		timeoutHandshake: m.ConnectionTimeouts.WithLabelValues("handshake"),
		open:             m.Connections,
	}
	if unauthRate > 0 {
		t.guardRate, t.guardBurst = streamGuard(unauthRate, max(unauthBurst, unauthRate))
	}
	t.fds = newFDGuard(&t.total)
	t.frame.Store(int64(frameTimeout))
	t.handshake.Store(int64(handshakeTimeout))
	return t
}

// admit decides on a connection just accepted from src, reporting false
// when it is refused (counted and logged here). DTLS connections share the
// UDP socket and hold no descriptor of their own, so only the timeouts and
// the per-connection budget apply to them.
func (t *streamConns) admit(transport string, src netip.Addr, datagram bool) bool {
	if datagram {
		t.open.WithLabelValues(transport).Inc()
		return true
	}
	if t.fds.full(time.Now()) {
		t.refusedReserve.Inc()
		open, limit := t.fds.last()
		t.limited.Log(slog.LevelWarn, "conn-fd-reserve",
			"connection refused: open file descriptors are near the limit, the rest is kept for UDP relays",
			"transport", transport, "client", src.String(), "open", open, "limit", limit)
		return false
	}
	t.mu.Lock()
	n := t.bySource[src]
	if t.perSource > 0 && n >= t.perSource {
		t.mu.Unlock()
		t.refusedPerSource.Inc()
		t.limited.Log(slog.LevelWarn, "conn-per-source",
			"connection refused: too many connections from one address (limits.connections_per_source)",
			"transport", transport, "client", src.String(), "limit", t.perSource)
		return false
	}
	t.bySource[src] = n + 1
	t.mu.Unlock()
	t.total.Add(1)
	t.open.WithLabelValues(transport).Inc()
	return true
}

// release gives back what admit took.
func (t *streamConns) release(transport string, src netip.Addr, datagram bool) {
	t.open.WithLabelValues(transport).Dec()
	if datagram {
		return
	}
	t.total.Add(-1)
	t.mu.Lock()
	if n := t.bySource[src]; n <= 1 {
		delete(t.bySource, src)
	} else {
		t.bySource[src] = n - 1
	}
	t.mu.Unlock()
}

// register makes c reachable by its 5-tuple until unregister.
func (t *streamConns) register(c *gateConn) {
	t.keyMu.Lock()
	t.byKey[c.key] = c
	t.keyMu.Unlock()
}

func (t *streamConns) unregister(c *gateConn) {
	t.keyMu.Lock()
	if t.byKey[c.key] == c {
		delete(t.byKey, c.key)
	}
	t.keyMu.Unlock()
}

// allocationEnded is the allocation table's word that the allocation of
// the 5-tuple key is gone (pion's OnAllocationDeleted): its connection, if
// it is one of ours, starts its idle clock. Without this a TCP or TLS client
// that vanished without a FIN, or a DTLS client that sent no close_notify
// (coturn's uclient -S), would hold the connection, its descriptor or DTLS
// state and pion's goroutines until the process ends: nothing else reads
// from it, and the read in progress had no deadline.
func (t *streamConns) allocationEnded(key string) {
	t.keyMu.Lock()
	c := t.byKey[key]
	t.keyMu.Unlock()
	if c != nil {
		c.allocationEnded(time.Now())
	}
}

// closeKey closes the connection of the 5-tuple key, if it is one of
// ours: an operator's kick (sessions.go) ends the client's connection with
// its allocation, so the client's next send fails instead of going
// nowhere.
func (t *streamConns) closeKey(key string) {
	t.keyMu.Lock()
	c := t.byKey[key]
	t.keyMu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// acceptError counts and logs a failed accept: with the process out of
// descriptors (EMFILE, ENFILE) the client stays in the kernel's backlog
// until the listener can take it.
func (t *streamConns) acceptError(transport string, err error) {
	t.acceptFailed.Inc()
	t.limited.Log(slog.LevelWarn, "accept-"+transport, "accept failed, retrying", "transport", transport, "err", err)
}

// connGuard is one connection's budget of unauthenticated requests. Its
// source cannot be forged, so it is not a reflection limit, only a brake on a
// flood down one connection. Only the connection's reading goroutine uses it.
type connGuard struct {
	rate, burst float64
	b           tokenbucket.Bucket
}

// newConnGuard returns a full budget, or no limit when the rate is 0.
func (t *streamConns) newConnGuard() connGuard {
	return connGuard{rate: t.guardRate, burst: t.guardBurst, b: tokenbucket.Full(t.guardBurst, time.Now())}
}

func (g *connGuard) allow(now time.Time) bool {
	return g.rate <= 0 || g.b.Take(now, g.rate, g.burst, 1)
}

// fdGuard keeps a reserve of file descriptors for UDP relay sockets: TCP and
// TLS connections are refused once the process has more than the limit less
// the reserve open. Counting /proc/self/fd costs a directory read, so it is
// done at most once a second, or every 50 ms near the threshold; in between,
// the estimate follows the TCP and TLS connections opened and closed since.
type fdGuard struct {
	own *atomic.Int64 // open TCP and TLS connections

	mu      sync.Mutex
	checked time.Time
	count   int   // descriptors open at the last count, -1 = cannot count
	limit   int   // the soft RLIMIT_NOFILE at the last count
	ownThen int64 // own at the last count
	buf     []byte
}

func newFDGuard(own *atomic.Int64) *fdGuard { return &fdGuard{own: own, count: -1} }

// fdReserve is the part of the descriptor limit kept from TCP and TLS
// connections: a tenth, at least 32.
func fdReserve(limit int) int { return max(limit/10, 32) }

// full reports whether a new TCP or TLS connection would eat into the reserve.
func (f *fdGuard) full(now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	est := f.estimate()
	interval := time.Second
	if f.count >= 0 && est >= f.limit-2*fdReserve(f.limit) {
		interval = 50 * time.Millisecond
	}
	if f.checked.IsZero() || now.Sub(f.checked) >= interval {
		f.recount(now)
		est = f.estimate()
	}
	if f.count < 0 {
		return false // no way to count here: no reserve
	}
	return est >= f.limit-fdReserve(f.limit)
}

func (f *fdGuard) estimate() int {
	return f.count + int(f.own.Load()-f.ownThen)
}

func (f *fdGuard) recount(now time.Time) {
	f.checked = now
	f.ownThen = f.own.Load()
	limit, err := fileLimit()
	if err != nil || limit <= 0 {
		f.count = -1
		return
	}
	f.limit = limit
	n, err := countOpenFiles(&f.buf)
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		n = limit // not even /proc/self/fd opens: the process is at its limit
	case err != nil:
		n = -1 // no /proc: no reserve, rather than refusing every client
	}
	f.count = n
}

// last returns the descriptors open at the last count and the limit.
func (f *fdGuard) last() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.estimate(), f.limit
}

// sourceAddr is the IP a connection comes from, IPv4-mapped addresses as
// IPv4 so that one client counts once whichever listener it reached.
func sourceAddr(a net.Addr) netip.Addr { return addrPortOf(a).Addr().Unmap() }
