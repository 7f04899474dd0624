// Package proxied accepts the PROXY protocol (HAProxy's "PROXY protocol"
// versions 1 and 2, https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt)
// on a TCP listener, from trusted sources only, with
// github.com/pires/go-proxyproto doing the parsing. It owns one decision:
// which address a connection comes from. Callers wrap a raw listener once
// with Listen and read the client's address from RemoteAddr, or call
// Resolve first where they must know whether the header was good.
//
// The header is read in the connection's own goroutine, on its first Read,
// RemoteAddr or Resolve, never in Accept: a proxy (or anyone) that connects
// and sends nothing must not stall the accept loop. It is read under
// Config.Timeout.
package proxied

import (
	"bufio"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"icegate/internal/ratelog"
)

// DefaultTimeout is how long a connection has to deliver its PROXY header
// when Config.Timeout is 0. nginx and haproxy send it with the connection's
// first bytes, so a few seconds is generous.
const DefaultTimeout = 5 * time.Second

// Outcomes counted for each connection whose header was looked at. The set
// is fixed, so they can be metric labels.
const (
	// OutcomeProxied: a trusted source sent a header with a client address
	// (PROXY command), which the connection now reports as its remote.
	OutcomeProxied = "proxied"
	// OutcomeLocal: a trusted source sent a header without a client
	// address (v2 LOCAL, v1 UNKNOWN): the proxy's own health check. The
	// connection keeps the proxy's address.
	OutcomeLocal = "local"
	// OutcomeMissing: a trusted source sent no header (or not within the
	// timeout): refused, since a receiver must not guess (spec §2.1).
	OutcomeMissing = "missing"
	// OutcomeMalformed: a trusted source sent a header that does not parse.
	OutcomeMalformed = "malformed"
	// OutcomeUntrusted: a source outside Config.From sent a header:
	// refused, or anyone could claim any address.
	OutcomeUntrusted = "untrusted"
)

// Config says whom to trust and where the outcomes go.
type Config struct {
	// From are the source ranges whose connections must begin with a PROXY
	// header. Empty (the default) switches the PROXY protocol off: Listen
	// returns the listener unchanged.
	From []netip.Prefix
	// Timeout bounds the wait for a header; 0 means DefaultTimeout.
	Timeout time.Duration
	// Listener names the listener in logs ("tcp", "tls", "http").
	Listener string
	// Count, when set, is called once for each connection that sent a
	// header, or came from a trusted source without one, with one of the
	// Outcome constants. It must not block.
	Count func(outcome string)
	// Log receives one rate-limited line per refusal; nil logs nothing.
	Log *ratelog.Logger
}

// Listen wraps ln so that connections from cfg.From must begin with a PROXY
// header whose client address they then report (RemoteAddr), and
// connections from elsewhere that begin with one are refused (their first
// Read fails). Connections from elsewhere without a header pass untouched
// in content: a listener can serve direct clients and a proxy at once.
// With no cfg.From, ln itself is returned.
func Listen(ln net.Listener, cfg Config) net.Listener {
	if len(cfg.From) == 0 {
		return ln
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &listener{Listener: ln, cfg: cfg}
}

type listener struct {
	net.Listener
	cfg Config
}

// Accept wraps each connection without reading from it: the header waits
// for the connection's goroutine.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	src := addrPort(c.RemoteAddr())
	return &Conn{Conn: c, cfg: &l.cfg, src: src, trusted: l.trusted(src.Addr())}, nil
}

func (l *listener) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range l.cfg.From {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// headerBuffer is what the header is read through: a v1 header is at most
// 107 bytes (spec §2.1); a v2 header longer than the buffer is read on
// through it by the parser, up to proxyproto.MaxV2HeaderSize.
const headerBuffer = 256

// Conn is a connection accepted by a PROXY listener. Its RemoteAddr is the
// client address the header carried (from a trusted source), else the
// socket's peer. Its LocalAddr stays the server's own socket address, not
// the proxy's front address the header names: the 5-tuple an allocation is
// kept under is this server's, and the relay family pion picks follows the
// listener.
type Conn struct {
	net.Conn
	cfg     *Config
	src     netip.AddrPort // the socket's peer: the proxy, or a direct client
	trusted bool

	once   sync.Once
	err    error
	client net.Addr      // the header's client address, or nil
	br     *bufio.Reader // bytes read past the header, until drained

	dmu      sync.Mutex
	deadline time.Time // the read deadline the caller set
}

// Resolve reads and judges the header (once; later calls return the first
// result): nil when the connection may go on, with RemoteAddr then final;
// an error when it must be closed (a trusted source without a valid
// header, an untrusted one with a header). The outcome is counted and a
// refusal logged here.
func (c *Conn) Resolve() error {
	c.once.Do(func() { c.err = c.readHeader() })
	return c.err
}

func (c *Conn) readHeader() error {
	c.dmu.Lock()
	user := c.deadline
	c.dmu.Unlock()
	by := time.Now().Add(c.cfg.Timeout)
	if !user.IsZero() && user.Before(by) {
		by = user
	}
	_ = c.Conn.SetReadDeadline(by)
	c.br = bufio.NewReaderSize(c.Conn, headerBuffer)
	h, err := proxyproto.Read(c.br)
	c.dmu.Lock()
	_ = c.Conn.SetReadDeadline(c.deadline)
	c.dmu.Unlock()
	if c.br.Buffered() == 0 {
		c.br = nil
	}
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout()
	outcome := ""
	switch {
	case !c.trusted && (errors.Is(err, proxyproto.ErrNoProxyProtocol) || timedOut):
		return nil // a direct client: no header, as it should be
	case !c.trusted && err == nil:
		outcome, err = OutcomeUntrusted, proxyproto.ErrSuperfluousProxyHeader
	case !c.trusted:
		// Something that began like a header and is not one, from a source
		// not allowed to send one anyway.
		outcome = OutcomeUntrusted
	case errors.Is(err, proxyproto.ErrNoProxyProtocol), timedOut:
		outcome = OutcomeMissing
	case err != nil:
		outcome = OutcomeMalformed
	case h.Command.IsLocal():
		outcome = OutcomeLocal
	default:
		if ta, ok := h.SourceAddr.(*net.TCPAddr); ok && h.TransportProtocol.IsStream() {
			outcome, c.client = OutcomeProxied, ta
		} else {
			// UNKNOWN (v1), a UDP or unix family (v2): no TCP client
			// address, so the proxy's own stands, as for LOCAL (§2.2).
			outcome = OutcomeLocal
		}
	}
	if c.cfg.Count != nil {
		c.cfg.Count(outcome)
	}
	if err == nil {
		return nil
	}
	c.br = nil
	if c.cfg.Log != nil {
		why := "malformed"
		switch outcome {
		case OutcomeUntrusted:
			why = "sent by a source that is not in proxy_from"
		case OutcomeMissing:
			why = "missing from a source in proxy_from (a trusted proxy must send one on every connection)"
		}
		c.cfg.Log.Log(slog.LevelWarn, "proxy-"+c.cfg.Listener+"-"+outcome, "connection refused: PROXY header "+why,
			"listener", c.cfg.Listener, "source", c.src.String(), "err", err.Error())
	}
	return &RefusedError{Outcome: outcome, Source: c.src, Err: err}
}

// Read reads the connection's data, after the header.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Resolve(); err != nil {
		return 0, err
	}
	if c.br != nil {
		n, err := c.br.Read(p)
		if c.br.Buffered() == 0 {
			c.br = nil
		}
		return n, err
	}
	return c.Conn.Read(p)
}

// Write writes to the connection once its header was judged: nothing goes
// back to a connection that is refused.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Resolve(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// SetDeadline sets both deadlines; the read deadline also bounds the wait
// for the header when it is earlier than the timeout.
func (c *Conn) SetDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline (see SetDeadline).
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.deadline = t
	return c.Conn.SetReadDeadline(t)
}

// RemoteAddr is the client's address: the header's from a trusted source,
// else the socket's peer. It reads the header first, so it blocks (up to the
// timeout) until the header is in; call it from the connection's goroutine.
func (c *Conn) RemoteAddr() net.Addr {
	if c.Resolve() == nil && c.client != nil {
		return c.client
	}
	return c.Conn.RemoteAddr()
}

// Peer is the socket's peer: the proxy, or a direct client. It never
// blocks.
func (c *Conn) Peer() netip.AddrPort { return c.src }

// Trusted reports whether the socket's peer is in Config.From: a proxy
// that must send a header, and whose connections carry many clients. It
// never blocks.
func (c *Conn) Trusted() bool { return c.trusted }

// NetConn returns the accepted socket.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// RefusedError is why a connection was refused.
type RefusedError struct {
	Outcome string         // OutcomeMissing, OutcomeMalformed or OutcomeUntrusted
	Source  netip.AddrPort // the socket's peer
	Err     error          // the parser's error
}

func (e *RefusedError) Error() string {
	return "PROXY header " + e.Outcome + " from " + e.Source.String() + ": " + e.Err.Error()
}

func (e *RefusedError) Unwrap() error { return e.Err }

// Of returns the PROXY connection c is or wraps (through NetConn, as
// crypto/tls's Conn and other wrappers expose), or nil: callers that must
// not block on the header (an accept loop) check this before RemoteAddr.
func Of(c net.Conn) *Conn {
	for range 8 {
		switch v := c.(type) {
		case *Conn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
