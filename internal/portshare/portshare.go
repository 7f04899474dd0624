// Package portshare serves two protocols on one TCP port behind TLS:
// TURN over TLS (RFC 8656 §3.1, "turns:") and HTTPS, as on a host where
// both must be reached on 443. It owns the TLS handshake for the port and
// hands each connection, handshake done, to the side it belongs to, each an
// ordinary net.Listener (pion/turn's ListenerConfig takes one, and so does
// http.Server.Serve).
//
// A connection is routed by the ALPN protocol it negotiated (RFC 7301):
// RFC 7443's "stun.turn" and "stun.nat-discovery" go to TURN, "http/1.1"
// to HTTP. A client without ALPN (most TURN clients: browsers' libwebrtc
// offers none) is routed by the first bytes it sends once TLS is up: a
// STUN header (RFC 8489 §5: the two top bits zero and the magic cookie
// 0x2112A442 at offset 4) goes to TURN, anything else to HTTP.
//
// ChannelData is not taken for TURN there, although TURN sends it on
// streams: a channel exists only on an allocation (RFC 8656 §12), and an
// allocation over TCP or TLS belongs to the one connection that made it
// (its 5-tuple, RFC 8656 §2.2), so a connection's first message is always a
// STUN request; and ChannelData's first byte (0x40-0x7F, the channel number)
// is where every HTTP method's first letter lies ("GET" starts 0x47).
//
// Handshake and first bytes run under one deadline in a goroutine per
// connection, so a slow or silent client holds only itself; the accept loop
// never waits for one.
package portshare

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Route is where a connection goes.
type Route int

// The two sides of a shared port.
const (
	TURN Route = iota
	HTTP
)

func (r Route) String() string {
	if r == TURN {
		return "turn"
	}
	return "http"
}

// Config is how a Mux terminates TLS and routes. The zero value of a field
// means its default; GetCertificate is required.
type Config struct {
	// GetCertificate picks the certificate for each handshake. It sees the
	// ClientHello (server name, offered ALPN), so an ACME certificate source
	// answers a TLS-ALPN-01 challenge (ALPN "acme-tls/1", RFC 8737) here:
	// name that protocol in CloseProtos.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// TURNProtos are the ALPN protocols routed to TURN, offered first.
	// Default ["stun.turn", "stun.nat-discovery"] (RFC 7443).
	TURNProtos []string
	// HTTPProtos are the ALPN protocols routed to HTTP, offered next.
	// Default ["http/1.1"]. List "h2" only when the HTTP server serves
	// HTTP/2 on the connections it is handed.
	HTTPProtos []string
	// CloseProtos are offered last; a connection that negotiates one ends
	// when its handshake is done, which is the whole exchange for RFC 8737
	// §3's "acme-tls/1". Default none.
	CloseProtos []string
	// Timeout bounds the handshake and the wait for a client's first bytes
	// together. Default 10s.
	Timeout time.Duration
	// MaxPending caps connections between accept and their side's Accept
	// (handshaking, or waiting to be taken); one beyond is closed at once
	// and counted as "overloaded". Default 1024.
	MaxPending int
	// MaxPendingPerSource caps the pending connections from one source
	// address (Source), so that one client holding silent connections
	// open cannot take every MaxPending slot and shut everyone else out of
	// the port for Timeout at a time; one beyond is closed at once and
	// counted as "per_source". A handshake takes milliseconds, so even a
	// crowd behind one NAT address rarely has more than a few pending.
	// Default 64, or MaxPending when that is smaller.
	MaxPendingPerSource int
	// Source says which address a connection counts against for
	// MaxPendingPerSource, without reading from it (it runs in the accept
	// loop); limited false exempts the connection from the per-source cap
	// (a trusted PROXY source, which carries many clients). Default: the
	// IP address of c.RemoteAddr(), which must not block.
	Source func(c net.Conn) (src netip.Addr, limited bool)
	// Logger receives debug lines about failed handshakes; nil discards them.
	Logger *slog.Logger
}

// Defaults of Config.
const (
	defaultTimeout             = 10 * time.Second
	defaultMaxPending          = 1024
	defaultMaxPendingPerSource = 64
)

// Outcomes a connection can have, the label values of Mux.Counts.
const (
	OutcomeTURN       = "turn"       // handed to TURN
	OutcomeHTTP       = "http"       // handed to HTTP
	OutcomeClosed     = "closed"     // negotiated one of CloseProtos; closed after the handshake
	OutcomeHandshake  = "handshake"  // the TLS handshake failed
	OutcomeTimeout    = "timeout"    // handshake or first bytes not done within Timeout
	OutcomeSilent     = "silent"     // the client closed after the handshake without sending anything
	OutcomeOverloaded = "overloaded" // MaxPending connections were pending already
	OutcomePerSource  = "per_source" // MaxPendingPerSource connections from its source were pending already
	OutcomeNoTaker    = "no_taker"   // its side's listener was closed
)

// Outcomes lists every outcome, in a fixed order, for metrics.
var Outcomes = []string{OutcomeTURN, OutcomeHTTP, OutcomeClosed, OutcomeHandshake, OutcomeTimeout,
	OutcomeSilent, OutcomeOverloaded, OutcomePerSource, OutcomeNoTaker}

// Mux demultiplexes one listener. Its accept loop runs from New until
// Close; connections wait for their side's Accept.
type Mux struct {
	ln      net.Listener
	cfg     Config
	tlsConf *tls.Config
	log     *slog.Logger
	sides   [2]*side
	pending chan struct{} // a token per pending connection
	counts  map[string]*atomic.Uint64

	smu      sync.Mutex
	bySource map[netip.Addr]int // pending connections per limited source

	ctx    context.Context // canceled by Close: every pending connection ends
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New starts demultiplexing ln, which the Mux owns from now on: Close
// closes it. ln yields plain TCP connections (possibly from a wrapper that
// reads a PROXY protocol header first); the Mux speaks TLS on them.
func New(ln net.Listener, cfg Config) (*Mux, error) {
	if cfg.GetCertificate == nil {
		return nil, errors.New("portshare: Config.GetCertificate is required")
	}
	if cfg.TURNProtos == nil {
		cfg.TURNProtos = []string{"stun.turn", "stun.nat-discovery"}
	}
	if cfg.HTTPProtos == nil {
		cfg.HTTPProtos = []string{"http/1.1"}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = defaultMaxPending
	}
	if cfg.MaxPendingPerSource <= 0 {
		cfg.MaxPendingPerSource = min(defaultMaxPendingPerSource, cfg.MaxPending)
	}
	if cfg.Source == nil {
		cfg.Source = peerSource
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	protos := slices.Concat(cfg.TURNProtos, cfg.HTTPProtos, cfg.CloseProtos)
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mux{
		ln: ln, cfg: cfg, log: log,
		tlsConf:  ALPNConfig(&tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cfg.GetCertificate}, protos),
		pending:  make(chan struct{}, cfg.MaxPending),
		counts:   make(map[string]*atomic.Uint64, len(Outcomes)),
		bySource: make(map[netip.Addr]int),
		ctx:      ctx, cancel: cancel,
	}
	for _, o := range Outcomes {
		m.counts[o] = new(atomic.Uint64)
	}
	for i := range m.sides {
		m.sides[i] = &side{m: m, ch: make(chan net.Conn), closed: make(chan struct{})}
	}
	m.wg.Go(m.acceptLoop)
	return m, nil
}

// ALPNConfig returns base offering protos, in the server's order of
// preference, where a client that offers none of them completes the
// handshake as with a server without ALPN. RFC 7301 §3.2 asks for a
// no_application_protocol alert there; a TURN server that spoke no ALPN
// before served every client, and a client whose TLS library offers a
// default protocol must not be cut off for it (coturn answers the same
// way). base is not changed.
func ALPNConfig(base *tls.Config, protos []string) *tls.Config {
	without := base.Clone()
	without.NextProtos = nil
	out := base.Clone()
	out.NextProtos = slices.Clone(protos)
	out.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		for _, p := range hello.SupportedProtos {
			if slices.Contains(protos, p) {
				return nil, nil // out itself: Go picks the first of protos the client offers
			}
		}
		return without, nil
	}
	return out
}

// Listener returns the side of route: connections routed there, TLS
// handshake done. Closing it stops routing there (later connections for it
// are closed and counted as no_taker); the port stays open until Close.
func (m *Mux) Listener(r Route) net.Listener { return m.sides[r] }

// Addr is the shared listener's address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Close closes the shared listener, both sides and every pending
// connection, and waits for the Mux's goroutines. Connections already
// handed to a side are the side's.
func (m *Mux) Close() error {
	var err error
	m.once.Do(func() {
		m.cancel()
		err = m.ln.Close()
		for _, s := range m.sides {
			s.Close()
		}
		m.wg.Wait()
	})
	return err
}

// Counts returns how many connections had each outcome so far.
func (m *Mux) Counts() map[string]uint64 {
	out := make(map[string]uint64, len(m.counts))
	for k, v := range m.counts {
		out[k] = v.Load()
	}
	return out
}

func (m *Mux) count(outcome string) { m.counts[outcome].Add(1) }

func (m *Mux) acceptLoop() {
	defer func() {
		// The port is gone: nothing more will come for either side.
		for _, s := range m.sides {
			s.Close()
		}
	}()
	var backoff time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if m.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: wait, as net/http does,
			// rather than spin or give the port up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.log.Warn("shared port: accept failed, retrying", "addr", m.ln.Addr().String(), "err", err, "retry_in", backoff.String())
			select {
			case <-time.After(backoff):
				continue
			case <-m.ctx.Done():
				return
			}
		}
		backoff = 0
		select {
		case m.pending <- struct{}{}:
		default:
			m.count(OutcomeOverloaded)
			_ = c.Close()
			continue
		}
		src, limited := m.cfg.Source(c)
		if limited && !m.takeSource(src) {
			<-m.pending
			m.count(OutcomePerSource)
			_ = c.Close()
			continue
		}
		m.wg.Go(func() {
			defer func() {
				if limited {
					m.giveSource(src)
				}
				<-m.pending
			}()
			m.route(c)
		})
	}
}

// takeSource counts one more pending connection from src, or reports
// false when src has MaxPendingPerSource pending already.
func (m *Mux) takeSource(src netip.Addr) bool {
	m.smu.Lock()
	defer m.smu.Unlock()
	if m.bySource[src] >= m.cfg.MaxPendingPerSource {
		return false
	}
	m.bySource[src]++
	return true
}

// giveSource counts one pending connection from src less.
func (m *Mux) giveSource(src netip.Addr) {
	m.smu.Lock()
	defer m.smu.Unlock()
	if m.bySource[src]--; m.bySource[src] <= 0 {
		delete(m.bySource, src)
	}
}

// peerSource is Config.Source's default: the socket peer's IP address.
func peerSource(c net.Conn) (netip.Addr, bool) {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// route runs the handshake, decides the side and hands the connection over.
func (m *Mux) route(raw net.Conn) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Timeout)
	defer cancel()
	// Close ends everything pending: a handshake or first read in progress
	// returns at once.
	stop := context.AfterFunc(m.ctx, func() { _ = raw.Close() })
	defer stop()
	deadline, _ := ctx.Deadline()
	_ = raw.SetDeadline(deadline)

	tc := tls.Server(raw, m.tlsConf)
	if err := tc.HandshakeContext(ctx); err != nil {
		m.fail(ctx, raw, err, OutcomeHandshake)
		return
	}
	proto := tc.ConnectionState().NegotiatedProtocol
	var conn net.Conn = tc
	var r Route
	switch {
	case slices.Contains(m.cfg.TURNProtos, proto):
		r = TURN
	case slices.Contains(m.cfg.HTTPProtos, proto):
		r = HTTP
	case proto != "": // one of CloseProtos
		m.count(OutcomeClosed)
		_ = tc.Close()
		return
	default:
		var first []byte
		var err error
		r, first, err = sniff(tc)
		if err != nil {
			m.fail(ctx, raw, err, OutcomeSilent)
			return
		}
		conn = &peekedConn{Conn: tc, first: first}
	}
	_ = raw.SetDeadline(time.Time{})
	if !stop() {
		return // Close came first and closed raw
	}
	m.sides[r].hand(conn)
}

// fail closes a connection that did not get routed and counts why: the
// deadline's outcome when it passed, else the one given.
func (m *Mux) fail(ctx context.Context, raw net.Conn, err error, outcome string) {
	_ = raw.Close()
	if m.ctx.Err() != nil {
		return // closing: not the client's doing
	}
	if ctx.Err() != nil || isTimeout(err) {
		outcome = OutcomeTimeout
	}
	m.count(outcome)
	m.log.Debug("shared port: connection dropped", "client", raw.RemoteAddr().String(), "outcome", outcome, "err", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// magicCookie is STUN's fixed value at offset 4 (RFC 8489 §6).
const magicCookie = 0x2112A442

// sniff reads a client's first bytes and says whose they are: TURN for a
// STUN header, HTTP for anything else. It returns what it read, which the
// side must see first. It reads at most a STUN header's first 8 bytes and
// stops as soon as the first byte rules STUN out (every HTTP method starts
// with a letter, which has a top bit set).
func sniff(c net.Conn) (Route, []byte, error) {
	buf := make([]byte, 0, 8)
	for {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if r, ok := classify(buf); ok {
			return r, buf, nil
		}
		if err != nil {
			return 0, nil, err
		}
	}
}

// classify decides a connection's side from its first bytes; ok is false
// while it needs more. A STUN message starts with two zero bits and has the
// magic cookie at offset 4 (RFC 8489 §6).
func classify(b []byte) (r Route, ok bool) {
	switch {
	case len(b) == 0:
		return 0, false
	case b[0]&0xC0 != 0:
		return HTTP, true
	case len(b) < 8:
		return 0, false
	case binary.BigEndian.Uint32(b[4:8]) == magicCookie:
		return TURN, true
	}
	return HTTP, true
}

// peekedConn is a TLS connection whose first bytes were read to route it:
// Read returns them first. ConnectionState comes from the TLS connection.
type peekedConn struct {
	*tls.Conn
	first []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// side is one protocol's listener: Accept takes routed connections.
type side struct {
	m      *Mux
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

// hand gives c to the side's Accept, or closes it when the side or the Mux
// is closed first.
func (s *side) hand(c net.Conn) {
	select {
	case s.ch <- c:
		if s == s.m.sides[TURN] {
			s.m.count(OutcomeTURN)
		} else {
			s.m.count(OutcomeHTTP)
		}
	case <-s.closed:
		s.m.count(OutcomeNoTaker)
		_ = c.Close()
	case <-s.m.ctx.Done():
		_ = c.Close()
	}
}

// Accept returns the next connection routed to this side, or net.ErrClosed
// once the side or the Mux is closed.
func (s *side) Accept() (net.Conn, error) {
	select {
	case c := <-s.ch:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	}
}

// Close stops routing to this side; it does not close the port.
func (s *side) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// Addr is the shared port's address.
func (s *side) Addr() net.Addr { return s.m.ln.Addr() }

// ConnectionState returns the TLS state of a connection a Mux handed out,
// which net/http does not find by itself on a connection whose first bytes
// were read to route it (it knows only *tls.Conn); ok is false for any
// other connection.
func ConnectionState(c net.Conn) (st tls.ConnectionState, ok bool) {
	switch tc := c.(type) {
	case *tls.Conn:
		return tc.ConnectionState(), true
	case *peekedConn:
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

type tlsStateKey struct{}

// ConnContext is an http.Server's ConnContext for a Mux's HTTP side: it
// keeps each connection's TLS state for WithTLS.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if st, ok := ConnectionState(c); ok {
		return context.WithValue(ctx, tlsStateKey{}, &st)
	}
	return ctx
}

// WithTLS sets Request.TLS, where net/http left it nil, from the state
// ConnContext kept: net/http fills it only for a *tls.Conn, and a
// connection routed by its first bytes is not one.
func WithTLS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
				r.TLS = st
			}
		}
		h.ServeHTTP(w, r)
	})
}
