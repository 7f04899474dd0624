package signaling

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Waiting for input on a shallow stack (issue 15).
//
// On Linux an idle /ws connection that serveWS upgraded has no goroutine
// at all: it waits in the server's shared epoll waiter (watch.go,
// poller_linux.go), and its input is read on a handler goroutine. The
// rest of this comment is about what that relies on, and about the
// connections that keep a reader goroutine (ServeTransport's, socket.io's,
// and every connection on other platforms).
//
// Such a connection's one goroutine is its reader, and a goroutine's
// stack stays as large as the deepest call it is blocked in: blocked in
// gorilla → bufio → tls.Conn.Read → the socket, it keeps the 8 KiB that
// decrypting a record grew it to. So where the platform allows
// (idleconn_linux.go), the reader waits for the socket to become readable
// without reading it (syscall.RawConn.Read with a MSG_PEEK probe), at a
// shallow depth where the collector can shrink its stack to 2 KiB, and does
// the deep read (gorilla, crypto/tls, the message) on a short-lived
// goroutine.
//
// Waiting on the socket (in the waiter or on the reader's stack) is only
// right when nothing is buffered above it (buffered, probe):
// a message already in gorilla's bufio.Reader or in crypto/tls's buffers
// would wait for the next packet, perhaps forever. idleConn is the
// net.Conn gorilla reads through, and it keeps that knowledge:
//
//   - gorilla's read buffer is ours: the upgrade goes through
//     hijackWriter, whose Hijack hands gorilla idleConn.br, and an Upgrader
//     with ReadBufferSize 0 takes a hijacked reader larger than 256 bytes
//     as its own (gorilla/websocket v1.5.3, server.go). Between messages
//     the reader asks it how much it holds (Buffered).
//   - crypto/tls holds decrypted bytes and whole records it read ahead
//     (tls.Conn.readFromUntil reads what the socket has). After each deep
//     read, probe reads one byte from the tls.Conn with a read deadline in
//     the past: the deadline makes the socket read fail at once (no
//     system call), so the byte comes only from what crypto/tls holds, and
//     the timeout is not sticky in crypto/tls (readRecordOrCCS keeps an
//     error only if it is not a net.Error's Temporary; a deadline is), nor
//     does it lose a partial record (it stays in rawInput). A byte found
//     is kept in pend and handed to gorilla first; any other error is kept
//     and handed to gorilla as its next read's.
//   - keepalives: gorilla's NextReader reads past control frames and then
//     blocks, deep, for the next data frame, so the reader would be deep
//     after every ping round. skipControl consumes the pongs (and a
//     client's pings, answered as gorilla would) waiting at a message
//     boundary itself and returns to the shallow wait.
//
// A connection whose socket is not a *net.TCPConn (behind a PROXY header
// listener, or one the shared port's mux routed by its first bytes, which
// buffer bytes of their own), or on a platform without MSG_PEEK, has no
// raw socket: it reads as before, blocking in ReadFrame. One the mux
// routed by ALPN is the *tls.Conn over the socket itself, and waits on it
// (TestIdleReaderSharedPort).

// wsReadBuffer is gorilla's read buffer per connection, held for its
// life, so as small as it can be: gorilla takes a hijacked reader only if
// it is larger than 256 bytes, and it must hold a control frame (125
// bytes and a header of up to 14) for Peek; 288 is an allocation size
// class. A payload longer than the buffer is read straight into the
// caller's slice (bufio.Reader.Read), so larger frames cost no copy,
// only a read more.
const wsReadBuffer = 288

// pongFrame is the size of a client's pong to the server's empty ping: a
// masked frame with no payload (RFC 6455 §5.2, §5.5.3).
const pongFrame = 6

// errIdle is readIdle's answer when the input was only keepalives and
// nothing more is buffered: the reader goes back to waiting.
var errIdle = errors.New("signaling: only keepalives; nothing buffered")

// idleConn is the net.Conn a WebSocket upgraded by serveWS (or by the
// Engine.IO server for socket.io, upgradeIdle) reads through. Read and the
// probes run on one goroutine at a time (the reader, or the short-lived
// goroutine it waits for); Write, Close and the deadlines may be used
// from others, as net.Conn allows: the Engine.IO session sets its pong's
// read deadline from the writer's goroutine (Session.Ping), so the read
// deadline's bookkeeping is under mu, and probe holds mu while the
// deadline is in the past, or a Ping's deadline set meanwhile would be
// undone by probe's restore.
type idleConn struct {
	net.Conn
	br   *bufio.Reader   // gorilla's read buffer, reading from this conn
	tls  *tls.Conn       // the TLS layer, or nil for plain TCP
	raw  syscall.RawConn // the TCP socket, or nil: no shallow wait
	pend []byte          // input taken from below before gorilla asked
	one  [1]byte         // where probe's byte lands (pend points here)
	perr error           // an error found before gorilla asked, kept
	mu   sync.Mutex      // rdl, and the read deadline while probe runs
	rdl  time.Time       // the read deadline last set

	// Lazy pongs (idleconn_linux.go): while a pong is due, the socket
	// does not wake the reader for it alone; the next ping takes it.
	lazy     bool         // plain TCP on Linux: lazy pongs possible
	lowatOn  bool         // SO_RCVLOWAT is a pong and a byte; owned by the reader role
	pongDue  atomic.Bool  // a ping went out and its pong was not seen
	state    atomic.Int32 // idleStepping, idleWaiting, idleTaking
	readable func(uintptr) bool

	// ctl keeps the timer loop's raw ping apart from the control frames
	// that readers write through gorilla beside the writer (a pong to a
	// client's ping, the answer to its close): ctlPinging while the ping
	// is on the socket, ctlWriter per control write in progress
	// (ctlWrite, wsTransport.pingInline).
	ctl atomic.Int32
}

// The reader's states for lazy pongs: the pinger may take a pong from
// the socket only while the reader waits on it (it reads nothing then).
const (
	idleStepping = iota // the reader reads (or is about to)
	idleWaiting         // the reader waits on the socket
	idleTaking          // the pinger takes a pong from the socket
)

// newIdleConn wraps conn, the connection net/http hijacked.
func newIdleConn(conn net.Conn) *idleConn {
	c := &idleConn{Conn: conn}
	c.br = bufio.NewReaderSize(c, wsReadBuffer)
	if t, ok := conn.(*tls.Conn); ok {
		c.tls = t
		c.raw = rawSocket(t.NetConn())
	} else {
		c.raw = rawSocket(conn)
		c.lazy = c.raw != nil && lazyPongs
	}
	c.readable = readable
	if c.lazy {
		c.readable = readableLazy
	}
	return c
}

// Read implements net.Conn for gorilla's bufio.Reader: what was taken
// from below early first, then the connection.
func (c *idleConn) Read(p []byte) (int, error) {
	if len(c.pend) > 0 {
		n := copy(p, c.pend)
		c.pend = c.pend[n:]
		return n, nil
	}
	if c.perr != nil {
		return 0, c.perr
	}
	return c.Conn.Read(p)
}

// SetReadDeadline implements net.Conn, remembering t for probe.
func (c *idleConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline implements net.Conn, remembering t for probe.
func (c *idleConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	return c.Conn.SetDeadline(t)
}

// buffered reports whether input waits above the socket: in gorilla's
// read buffer, taken early by probe, or an error found early. Only valid
// between messages, after probe.
func (c *idleConn) buffered() bool {
	return len(c.pend) > 0 || c.perr != nil || c.br.Buffered() > 0
}

// probe finds out whether crypto/tls holds input (decrypted bytes, or
// whole records read ahead from the socket) that would never make the
// socket readable: it reads at most one byte with a deadline in the past,
// so the socket itself is not read (internal/poll fails a read past its
// deadline before the system call). Plain TCP has nothing between the
// socket and gorilla's buffer. It runs deep in the stack (decrypting), so
// on the short-lived goroutine, never on the waiting reader.
func (c *idleConn) probe() {
	if c.tls == nil || c.raw == nil || c.buffered() {
		return
	}
	// The read cannot block (its deadline is past), so holding mu over
	// it delays a SetReadDeadline from another goroutine by no more than
	// decrypting what crypto/tls holds.
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.Conn.SetReadDeadline(time.Unix(1, 0)); err != nil {
		c.perr = err // closed: let gorilla find out
		return
	}
	n, err := c.tls.Read(c.one[:])
	if derr := c.Conn.SetReadDeadline(c.rdl); derr != nil && err == nil {
		err = derr
	}
	if n > 0 {
		c.pend = c.one[:n]
	}
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		c.perr = err
	}
}

// wait blocks, on the caller's (shallow) stack, until input may be there:
// something is buffered above the socket, the socket is readable (data,
// end of stream or an error), its read deadline passed, or it was closed.
// A spurious return costs only a deep read that blocks as before.
func (c *idleConn) wait() {
	if c.raw == nil || c.buffered() {
		return
	}
	if c.lowatOn && !c.pongDue.Load() {
		// No pong is coming: every byte wakes the reader again, so
		// a lone small frame (a close without a status code, which
		// is 6 bytes, like a pong) is never left waiting.
		c.lowatOn = !c.setLowat(1)
	}
	c.state.Store(idleWaiting)
	_ = c.raw.Read(c.readable)
	for !c.state.CompareAndSwap(idleWaiting, idleStepping) {
		runtime.Gosched() // the pinger is taking a pong: one system call
	}
}

// skipControl consumes the complete pings and pongs at the head of the
// input, calling onPong for each pong and onPing with each ping's
// payload, and reports whether it consumed any. It is called between
// messages only, where gorilla's reader is at a frame boundary. A pong is
// what an idle client sends (RFC 6455 §5.5.3, the answer to the server's
// keepalive ping), a ping what some clients send on their own (§5.5.2:
// it must be answered with a pong carrying its payload); anything else,
// or a frame not yet complete, is left to gorilla, which checks every
// frame in full. The test here is narrow on purpose: FIN set, no RSV
// bits, opcode 0x9 or 0xA, masked as a client's frames must be (§5.3),
// and a payload of at most 125 bytes (§5.5).
func (c *idleConn) skipControl(onPong func(), onPing func(payload []byte)) (skipped bool) {
	for c.br.Buffered() > 0 || !skipped {
		// Peek reads (and may block, deep) only when the buffer holds
		// less: the socket was readable, so something is coming.
		h, err := c.br.Peek(2)
		if err != nil {
			c.keep(err)
			return skipped
		}
		if (h[0] != 0x8A && h[0] != 0x89) || h[1]&0x80 == 0 || h[1]&0x7F > 125 {
			return skipped
		}
		n := 2 + 4 + int(h[1]&0x7F)
		f, err := c.br.Peek(n)
		if err != nil {
			c.keep(err)
			return skipped
		}
		if f[0] == 0x8A {
			_, _ = c.br.Discard(n)
			onPong()
		} else {
			var buf [125]byte
			payload := buf[:n-6]
			for i := range payload {
				payload[i] = f[6+i] ^ f[2+i%4]
			}
			_, _ = c.br.Discard(n)
			onPing(payload)
		}
		skipped = true
	}
	return skipped
}

// keep saves err, met by a read of ours, for gorilla's next read: bufio
// hands an error out once, and gorilla must see the connection fail.
func (c *idleConn) keep(err error) {
	if c.perr == nil {
		c.perr = err
	}
}

// passingConn is a net.Conn wrapper that can say it holds no input of its
// own (from then on the wrapped connection is all there is to read):
// internal/hellosplit's Conn, which cmd/icegate puts under crypto/tls.
type passingConn interface {
	net.Conn
	Passing() bool
	NetConn() net.Conn
}

// hijackWriter is the http.ResponseWriter serveWS upgrades through: its
// Hijack wraps net/http's connection in an idleConn and hands gorilla the
// idleConn's read buffer.
type hijackWriter struct {
	http.ResponseWriter
	nc *idleConn // set by Hijack
}

// Hijack implements http.Hijacker.
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("signaling: the response writer cannot hijack its connection")
	}
	conn, brw, err := h.Hijack()
	if err != nil {
		return nil, nil, err
	}
	nc := newIdleConn(conn)
	// A client that sent bytes after its request, before the 101 (RFC
	// 6455 §4.1 says it must wait), had them read by net/http: they are
	// the first gorilla reads (gorilla itself would refuse the upgrade).
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		nc.pend = append([]byte(nil), b...)
	}
	// crypto/tls may have read ahead while net/http read the request.
	// (net/http's background read after a request without a body
	// usually takes the first such byte already, and it arrives above as
	// buffered; this is for whatever it did not take.)
	nc.probe()
	w.nc = nc
	return nc, bufio.NewReadWriter(nc.br, brw.Writer), nil
}

// ctlPinging is idleConn.ctl's bit for the timer loop's ping on the
// socket; each control write in progress adds ctlWriter.
const (
	ctlPinging = 1
	ctlWriter  = 2
)

// ctlWrite runs write, a control frame written through gorilla beside the
// writer, once no raw ping is on the socket, and keeps the next one off
// it meanwhile. The ping it waits for is a non-blocking send (or, when
// that was cut short, the rest of two bytes), so it yields rather than
// sleeps at first.
func (c *idleConn) ctlWrite(write func()) {
	for i := 0; ; i++ {
		v := c.ctl.Load()
		if v&ctlPinging == 0 && c.ctl.CompareAndSwap(v, v+ctlWriter) {
			break
		}
		if i < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	defer c.ctl.Add(-ctlWriter)
	write()
}
