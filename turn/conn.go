package turn

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/prometheus/client_golang/prometheus"

	"icegate/internal/proxied"
	"icegate/internal/udploop"
)

// gatePacketConn is the UDP listening socket pion reads from: every datagram
// passes the gate first, and every message pion writes is observed.
// ChannelData from clients the fast path knows never reaches pion.
type gatePacketConn struct {
	sock  *udploop.Socket
	group *udpGroup
	g     *gate
}

// udpGroup is what the listening sockets of one address share: with
// SO_REUSEPORT there are several, and the kernel picks one per client.
type udpGroup struct {
	// clients is the fast path's client index (netip.AddrPort ->
	// *relayConn), read for every client packet by every loop: a sync.Map
	// reads without a lock.
	clients sync.Map
}

func (c *gatePacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.sock.Recv(p) // the fast path has run (loopPacket)
		if err != nil {
			return n, nil, err
		}
		addr := net.UDPAddrFromAddrPort(from)
		if n >= 4 && p[0]&0xC0 == 0x40 {
			c.countUnbound(p[:n], from)
			return n, addr, nil // ChannelData pion must look at itself
		}
		out, pass := c.g.inspect(inbound{
			data: p[:n], src: addr, local: c.sock.LocalAddr(), transport: "udp",
			reply: func(b []byte) { _ = c.sock.SendTo(b, from) },
		})
		if !pass {
			continue
		}
		if len(out) > len(p) {
			c.g.drop("too_large")
			continue
		}
		return copy(p, out), addr, nil
	}
}

// loopPacket is the listener socket's handler (udploop.Handler): the fast
// path, run by the event loop or, on the portable path, by Recv.
func (c *gatePacketConn) loopPacket(out udploop.Sender, b []byte, n int, from netip.AddrPort) bool {
	return c.fastPacket(out, b[headroom:headroom+n], b[headroom+(n+3)&^3:], from)
}

// fastPacket relays or answers a client's datagram p without pion, or
// reports false: ChannelData (RFC 8656 §12.4, first two bits 01), the
// relay's hot path; Send indications (§11.1, 0x0016); plain Binding
// requests, answered in scratch, the room after the request in the same
// buffer.
func (c *gatePacketConn) fastPacket(out udploop.Sender, p, scratch []byte, from netip.AddrPort) bool {
	n := len(p)
	switch {
	case n >= 4 && p[0]&0xC0 == 0x40:
		return c.relayChannelData(out, p, from)
	case n >= 20 && p[0] == 0x00 && p[1] == 0x16:
		return c.relaySend(out, p, from)
	case n >= 20 && p[0] == 0x00 && p[1] == 0x01:
		return c.answerBindingFast(out, p, scratch, from)
	}
	return false
}

func (c *gatePacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if err := c.sock.SendTo(c.g.observe(p, addr), addrPortOf(addr)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *gatePacketConn) LocalAddr() net.Addr                { return c.sock.LocalAddr() }
func (c *gatePacketConn) Close() error                       { return c.sock.Close() }
func (c *gatePacketConn) SetDeadline(t time.Time) error      { return c.sock.SetDeadline(t) }
func (c *gatePacketConn) SetReadDeadline(t time.Time) error  { return c.sock.SetReadDeadline(t) }
func (c *gatePacketConn) SetWriteDeadline(t time.Time) error { return c.sock.SetWriteDeadline(t) }

// gateListener wraps a TCP, TLS or DTLS listener so each accepted connection
// is framed and gated like UDP datagrams.
type gateListener struct {
	net.Listener
	g         *gate
	transport string
	datagram  bool // DTLS: each Read is one record holding whole messages
	streams   *streamConns
	closed    atomic.Bool

	mu    sync.Mutex
	conns map[*gateConn]struct{}
}

// Close stops accepting and closes the connections still open: pion closes
// a connection only when its read loop ends, and on shutdown nothing else
// would end it.
func (l *gateListener) Close() error {
	l.closed.Store(true)
	err := l.Listener.Close()
	l.mu.Lock()
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
	return err
}

func (l *gateListener) track(c *gateConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return false
	}
	if l.conns == nil {
		l.conns = map[*gateConn]struct{}{}
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *gateListener) forget(c *gateConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// Accept retries errors other than a closed listener: pion's accept loop
// ends on the first error, and running out of file descriptors for a moment
// must not stop a listener for good. It backs off (5 ms doubling to 1 s) so
// that a listener at the descriptor limit does not spin. A connection over
// limits.connections_per_source, or one that would eat into the descriptor
// reserve kept for UDP relays, is closed at once and never reaches pion.
func (l *gateListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			gc := &gateConn{
				Conn: c, g: l.g, transport: l.transport, datagram: l.datagram, l: l,
				guard: l.streams.newConnGuard(),
			}
			gc.lastMsg.Store(time.Now().UnixNano())
			// Behind a PROXY header the client's address is known only once
			// the header is read, which the connection's own goroutine does
			// (gateConn.Read): admission waits for it there, so a proxy that
			// connects and stalls cannot hold up this loop.
			gc.proxy = proxied.Of(c)
			if gc.proxy == nil && !gc.admit() {
				_ = c.Close()
				continue
			}
			if !l.track(gc) {
				_ = gc.Close()
				return nil, net.ErrClosed
			}
			return gc, nil
		}
		if errors.Is(err, net.ErrClosed) || l.closed.Load() {
			return nil, err
		}
		l.streams.acceptError(l.transport, err)
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// maxPionFrame is the largest frame handed to pion on a stream. pion's
// STUNConn (v5.1.2) computes a frame's size in 16 bits: a ChannelData frame
// of length 0xFFFC or more (4 + 65,532, padded, is 65,536) wraps to 0 and
// its read loop spins on the same bytes; a STUN message of length 0xFFEC or
// more wraps to a short frame and the stream loses its framing, ending the
// connection (fixed in pion/turn v5.1.3). RFC 8656 §12 allows ChannelData
// lengths up to 65,535, so such a frame is legal on the wire: it is dropped
// here, counted as too_large, and the stream stays aligned. pion drops
// anything of its inbound MTU (1,600 bytes) or more anyway, so nothing a
// client could have relayed is lost.
const maxPionFrame = 0xFFFF

// gateConn frames a stream into STUN messages and ChannelData (RFC 8656
// §12.5: ChannelData over TCP is padded to a multiple of four) and hands pion
// one gated frame at a time. A stream that stops making sense is closed: on
// TCP there is no way to find the next message boundary.
type gateConn struct {
	net.Conn
	g         *gate
	transport string
	datagram  bool

	handshake sync.Once
	buf       []byte // bytes read but not yet framed
	pending   []byte // a gated frame not yet handed to pion
	rec       []byte // DTLS record buffer
	raw       atomic.Bool
	l         *gateListener
	key       string // allocation key of this connection's 5-tuple, set at admission (admit)
	wmu       sync.Mutex
	bind      atomic.Pointer[connBind] // a ConnectionBind awaiting its signed answer (rfc6062.go)

	// proxy is the PROXY protocol connection under this one, nil without
	// listen.proxy_from: the client's address is its header's.
	proxy *proxied.Conn
	// proxyErr is why the PROXY header or the admission after it refused
	// the connection (counted there); only the reading goroutine touches it.
	proxyErr error
	// amu guards the listener's accounting: whether admit took it and
	// release gave it back, which may race at shutdown for a connection
	// still reading its PROXY header.
	amu      sync.Mutex
	admitted bool
	released bool
	src      netip.Addr // source IP, for limits.connections_per_source
	guard    connGuard  // unauthenticated requests on this connection
	// lastMsg is when the last complete message arrived (or the connection
	// was accepted), in Unix nanoseconds: the reading goroutine writes it,
	// allocationEnded reads it. frameStart is when the first byte of the
	// incomplete frame in buf did; only the reading goroutine touches it.
	lastMsg    atomic.Int64
	frameStart time.Time
	skipLeft   int // bytes of a frame too large for pion still to discard

	// dmu orders the read deadline's updates: the reading goroutine's before
	// each read and allocationEnded's, from pion's event, so that neither
	// overwrites the other's with a stale one.
	dmu     sync.Mutex
	ended   time.Time          // when this connection's allocation ended
	frameBy time.Time          // the incomplete frame's deadline, zero if none
	timeout prometheus.Counter // what the read deadline in force stands for
}

// Close gives back the listener's accounting once, however the connection
// ends: pion's read loop, pion's ConnectionBind copy (RFC 6062, which closes
// stunConn.Conn(), this connection), the listener's Close at shutdown.
func (c *gateConn) Close() error {
	c.release()
	return c.Conn.Close()
}

func (c *gateConn) release() {
	if c.l == nil {
		return
	}
	c.amu.Lock()
	defer c.amu.Unlock()
	if c.released {
		return
	}
	c.released = true
	c.l.forget(c)
	if c.admitted {
		c.l.streams.unregister(c)
		c.l.streams.release(c.transport, c.src, c.datagram)
	}
}

// admit applies the listener's admission (limits.connections_per_source,
// the descriptor reserve) to the connection's client address, reporting
// false when it is refused, and makes the connection reachable by its
// 5-tuple. For a PROXY connection it runs on the connection's goroutine,
// after the header: RemoteAddr is then the client's, not the proxy's.
func (c *gateConn) admit() bool {
	remote := c.RemoteAddr()
	src := sourceAddr(remote)
	key := allocKey(remote, c.LocalAddr())
	c.amu.Lock()
	defer c.amu.Unlock()
	if c.released || !c.l.streams.admit(c.transport, src, c.datagram) {
		return false
	}
	c.src, c.key, c.admitted = src, key, true
	c.l.streams.register(c)
	return true
}

// proxyHeader reads and judges the PROXY header, then admits the
// connection under the client's address; an error ends the connection.
func (c *gateConn) proxyHeader() error {
	if err := c.proxy.Resolve(); err != nil {
		return err
	}
	if !c.admit() {
		return errRefused
	}
	return nil
}

// errRefused ends a connection its admission refused.
var errRefused = errors.New("connection refused (limits.connections_per_source or the descriptor reserve)")

// readConn reads from the connection under the earliest of two deadlines:
// without an allocation, idleTimeout after the last complete message (not
// the last byte: a byte now and then must not keep a connection that does
// nothing) or after the connection's allocation ended, whichever is later;
// with an incomplete frame buffered, frameTimeout after its first byte,
// allocation or not. A connection with an allocation and nothing pending
// has no deadline while the allocation lives; when it ends (expired,
// refreshed to 0, revoked) allocationEnded re-arms the deadline of the read
// in progress, so a client that vanished without a FIN or a DTLS
// close_notify does not hold the connection and its goroutines for ever.
func (c *gateConn) readConn(p []byte) (int, error) {
	c.dmu.Lock()
	c.frameBy = time.Time{}
	if len(c.buf) > 0 || c.skipLeft > 0 {
		c.frameBy = c.frameStart.Add(time.Duration(c.g.s.streams.frame.Load()))
	}
	c.armLocked()
	c.dmu.Unlock()
	n, err := c.Conn.Read(p)
	if err != nil && isTimeout(err) {
		c.dmu.Lock()
		t := c.timeout
		c.dmu.Unlock()
		if t != nil {
			t.Inc()
		}
	}
	return n, err
}

// armLocked sets the read deadline from the connection's state. c.dmu is
// held.
func (c *gateConn) armLocked() {
	var deadline time.Time
	c.timeout = nil
	if !c.g.hasAllocation(c.key) {
		start := time.Unix(0, c.lastMsg.Load())
		if c.ended.After(start) {
			start = c.ended
		}
		deadline = start.Add(time.Duration(c.g.idle.Load()))
		c.timeout = c.g.s.streams.timeoutIdle
	}
	if !c.frameBy.IsZero() && (deadline.IsZero() || c.frameBy.Before(deadline)) {
		deadline = c.frameBy
		c.timeout = c.g.s.streams.timeoutFrame
	}
	_ = c.Conn.SetReadDeadline(deadline)
}

// allocationEnded is called when pion reports the allocation of this
// connection's 5-tuple deleted: the idle clock starts now, unless the last
// message came later. A connection carrying RFC 6062 data has no framing
// and no allocation of its own; its ConnectionBind copy ends with the peer.
func (c *gateConn) allocationEnded(now time.Time) {
	if c.raw.Load() {
		return
	}
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.ended = now
	c.armLocked()
}

// isTimeout reports whether a read failed on its deadline. crypto/tls and
// net return os.ErrDeadlineExceeded; pion/dtls its own TimeoutError (a
// net.Error wrapping context.DeadlineExceeded).
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var errBadFrame = errors.New("stream is not STUN or ChannelData")

// shake runs the TLS or DTLS handshake within the handshake timeout, so a
// client that stalls or trickles it cannot hold a goroutine and a socket:
// the context's deadline interrupts the reads in progress.
func (c *gateConn) shake() error {
	var do func(context.Context) error
	switch tc := c.Conn.(type) {
	case *tls.Conn:
		do = tc.HandshakeContext
	case *dtls.Conn:
		do = tc.HandshakeContext
	default:
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(c.g.s.streams.handshake.Load()))
	defer cancel()
	err := do(ctx)
	if err != nil && ctx.Err() != nil {
		c.g.s.streams.timeoutHandshake.Inc()
	}
	return err
}

func (c *gateConn) Read(p []byte) (int, error) {
	var herr error
	c.handshake.Do(func() {
		if c.proxy != nil {
			if c.proxyErr = c.proxyHeader(); c.proxyErr != nil {
				return
			}
		}
		herr = c.shake()
	})
	if c.proxyErr != nil {
		return 0, c.proxyErr
	}
	if herr != nil {
		if c.datagram {
			c.g.drop("dtls_handshake")
		} else {
			c.g.drop("tls_handshake")
		}
		return 0, herr
	}
	for {
		if len(c.pending) > 0 {
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		}
		if c.raw.Load() {
			if len(c.buf) > 0 {
				n := copy(p, c.buf)
				c.buf = c.buf[n:]
				return n, nil
			}
			return c.Conn.Read(p)
		}
		frame, err := c.next()
		if err != nil {
			return 0, err
		}
		if frame == nil {
			continue
		}
		if len(frame) >= 4 && frame[0]&0xC0 == 0x40 {
			c.pending = frame
			continue
		}
		out, pass := c.g.inspect(inbound{
			data: frame, src: c.RemoteAddr(), local: c.LocalAddr(), transport: c.transport,
			reply: func(b []byte) { _, _ = c.write(b) },
			guard: &c.guard,
		})
		if pass {
			c.pending = out
			// RFC 6062 §5.4: after ConnectionBind the connection carries the
			// peer's raw bytes, no longer STUN framing.
			if len(out) >= 2 && out[0] == 0x00 && out[1] == 0x0B {
				c.bind.Store(c.g.connectionBind(out))
				c.raw.Store(true)
				c.dmu.Lock()
				_ = c.Conn.SetReadDeadline(time.Time{})
				c.dmu.Unlock()
			}
		}
	}
}

// next returns one complete frame, nil to skip a malformed datagram, or an
// error that ends the connection.
func (c *gateConn) next() ([]byte, error) {
	if c.datagram {
		// The record buffer is reused: a frame is always handed to pion in
		// full before the next record is read.
		if c.rec == nil {
			c.rec = make([]byte, 8192)
		}
		n, err := c.readConn(c.rec)
		if err != nil {
			return nil, err
		}
		c.lastMsg.Store(time.Now().UnixNano())
		return c.datagramFrame(n), nil
	}
	for {
		want := 4096
		if c.skipLeft > 0 {
			// Discard the oversized frame as it arrives, under the frame
			// timeout of its first byte, so that the next frame starts
			// where the stream says it does.
			d := min(c.skipLeft, len(c.buf))
			c.buf = c.buf[d:]
			c.skipLeft -= d
			if c.skipLeft == 0 {
				now := time.Now()
				c.lastMsg.Store(now.UnixNano())
				c.frameStart = now
				c.g.drop("too_large")
				return nil, nil
			}
		} else if len(c.buf) >= 4 {
			l := frameLen(c.buf)
			if l == 0 {
				c.g.drop("malformed")
				return nil, errBadFrame
			}
			if l > maxPionFrame {
				c.skipLeft = l
				continue
			}
			if len(c.buf) >= l {
				frame := c.buf[:l:l]
				c.buf = c.buf[l:]
				// The rest came in the same read as the end of this frame.
				now := time.Now()
				c.lastMsg.Store(now.UnixNano())
				c.frameStart = now
				return frame, nil
			}
			want = l
		}
		// Grow once to the whole frame; earlier frames have been handed on,
		// so only the unframed tail is copied.
		if cap(c.buf) < max(want, len(c.buf)+512) {
			nb := make([]byte, len(c.buf), max(want, 4096))
			copy(nb, c.buf)
			c.buf = nb
		}
		n, err := c.readConn(c.buf[len(c.buf):cap(c.buf)])
		if err != nil {
			return nil, err
		}
		if len(c.buf) == 0 && n > 0 && c.skipLeft == 0 {
			c.frameStart = time.Now()
		}
		c.buf = c.buf[:len(c.buf)+n]
	}
}

// datagramFrame returns the frame in the DTLS record of n bytes in c.rec, or
// nil (counted) when there is none. A record carries one message (RFC 8656
// §12.5: over UDP and DTLS, ChannelData need not be padded), while pion
// reads every listener connection as a stream: the frame handed on must be
// exactly as long as its header says, padding included, or pion's framing
// would join it to the next record.
func (c *gateConn) datagramFrame(n int) []byte {
	if n < 4 {
		c.g.drop("malformed")
		return nil
	}
	l := frameLen(c.rec[:n])
	switch {
	case l == 0:
		c.g.drop("malformed")
		return nil
	case c.rec[0]&0xC0 == 0x40:
		data := 4 + int(binary.BigEndian.Uint16(c.rec[2:4]))
		if data > n || l > len(c.rec) {
			c.g.drop("malformed")
			return nil
		}
		clear(c.rec[data:l]) // the padding a stream would carry
		return c.rec[:l]
	case l > n:
		c.g.drop("malformed")
		return nil
	}
	return c.rec[:l]
}

// frameLen is the length of the frame starting at b (at least 4 bytes), or 0
// when b starts neither a STUN message nor ChannelData.
func frameLen(b []byte) int {
	l := int(binary.BigEndian.Uint16(b[2:4]))
	switch {
	case b[0]&0xC0 == 0x40: // ChannelData, padded to 4 on streams
		return 4 + (l+3)&^3
	case b[0]&0xC0 == 0 && l%4 == 0:
		return 20 + l
	}
	return 0
}

func (c *gateConn) write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.Write(b)
}

func (c *gateConn) Write(b []byte) (int, error) {
	if cb := c.bind.Load(); cb != nil {
		if signed := cb.sign(b); len(signed) != len(b) {
			c.bind.Store(nil)
			if _, err := c.write(signed); err != nil {
				return 0, err
			}
			return len(b), nil // what the caller asked to write
		}
	}
	if !c.raw.Load() {
		// The gate may send a rewrite of b (an Allocate response); pion is
		// told b went out.
		if _, err := c.write(c.g.observe(b, c.RemoteAddr())); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.write(b)
}
