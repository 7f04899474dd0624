package signaling

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"
)

// No goroutine per idle connection (issue 15).
//
// A connection serveWS upgraded with a raw socket under it (idleconn.go)
// is served without a reader goroutine of its own: once open, it is
// registered with the server's waiter (poller_linux.go), and the goroutine
// that opened it ends. When input arrives the waiter hands the connection
// to a handler (handlers.start), which runs the same step the reader
// goroutine runs (readIdle: keepalives, probe, the message), repeats while
// input is buffered above the socket (a message in gorilla's buffer or in
// crypto/tls's must not wait for the next packet), and re-arms the
// registration. An idle connection then costs its conn, its idleConn and
// gorilla's state, its slot in the waiter: no stack, no g.
//
// Ownership is one word, watch.state: the goroutine that moved it to
// watchRunning (the opener, or a handler the waiter claimed it for) is
// the only one that reads the connection, until it moves it to
// watchArmed and re-arms. Whoever moves it to watchEnded ends the
// connection, once: a handler whose read failed, or, for a connection
// killed while it waited (the API, shutdown, the read timeout), the
// writer as it closes the transport (conn.finish). finish sets closing
// before it tries; a handler re-arming looks at closing after it armed;
// so one of the two always sees the other, and the end runs.
//
// The read timeout is not a read deadline reset per pong (a runtime
// timer change each): the waiter notes the time of each input
// (watch.last), and the server's timer loop, when the deadline it
// scheduled comes, ends the connection if no input came since, or moves
// the deadline on (conn.due).
//
// A socket.io session is served the same way once it is over a
// WebSocket with a raw socket under it: at once when it opened over one,
// or when its upgrade from long-polling is done (serveSIO). Its read
// timeout is Engine.IO's heartbeat: the client must answer a ping within
// pingTimeout, so only its pongs are input for watch.last (the session
// reports them, engineio.Watcher), and a session silent past pingInterval
// + pingTimeout since its last pong ends as engine.io's ping timeout
// does (no socket.io DISCONNECT, so its client reconnects). A polling
// session, and one still polling before its upgrade, keeps its reader
// goroutine, which waits for the POSTs' messages (sioTransport.ReadFrame).
//
// ServeTransport and connections without a raw socket keep a reader
// goroutine (serve, readLoop): their callers and transports count on it.

// The states of a watched connection (watch.state).
const (
	watchRunning = iota // a goroutine owns it: the opener or a handler
	watchArmed          // registered, waiting for input
	watchEnded          // ending, or ended
)

// watch is a conn's part in the waiter, set before it is registered.
type watch struct {
	p     *poller // nil: the connection has a reader goroutine
	raw   syscall.RawConn
	nc    *idleConn
	slot  int32
	gen   int32
	added bool // registered with epoll once; the owner's
	state atomic.Int32
	// closing is set by finish before it tries to end the connection.
	closing atomic.Bool
	// last is the Unix ns of the last input seen; readTimeout is how
	// long the client may be silent.
	last        atomic.Int64
	readTimeout int64
	// pongsOnly: only keepalive answers are input for last (socket.io,
	// whose transport stores them); else any input is.
	pongsOnly bool
	readAt    int64       // the read deadline scheduled, under conn.wmu; 0: none
	stop      func() bool // ends the watch on ctx (open)
}

// waiter returns the server's waiter, starting it on first use; nil when
// there is none (another platform, or the server is closed).
func (s *Server) waiter() *poller {
	if p := s.poll.Load(); p != nil {
		return p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.poll.Load(); p != nil || s.closed || s.noWaiter || s.pollFailed {
		return p
	}
	p, err := newPoller(s.handlers.start, s.dropped)
	if err != nil {
		s.pollFailed = true
		s.log.Info("no shared waiter for idle connections: one goroutine each", "err", err)
		return nil
	}
	s.poll.Store(p)
	return p
}

// watchable is a transport the waiter can serve: an idleReader over an
// idleConn with a raw socket (canWait).
type watchable interface {
	idleReader
	// watched hands the transport's read timeout to the timer loop,
	// for c, which the waiter is to serve: no read deadline from here
	// on. It returns the idleConn under the transport, the timeout,
	// and whether only keepalive answers are input for it (socket.io's
	// heartbeat: the transport stores each pong in c.w.last) rather
	// than any input (/ws).
	watched(c *conn) (nc *idleConn, readTimeout time.Duration, pongsOnly bool)
}

// serveWatched serves a connection serveWS upgraded: with the waiter
// when it can, else as serve does. It returns once the connection is
// registered (or ended), not when it ends.
func (s *Server) serveWatched(t *wsTransport, opts *AcceptOptions, p protocol) {
	pl := s.waiter()
	if pl == nil || !t.canWait() {
		_ = s.serve(context.Background(), t, opts, p)
		return
	}
	c, stop, err := s.open(context.Background(), t, opts, p)
	if err != nil {
		return
	}
	s.watchConn(pl, c, t, stop)
}

// watchConn hands c, open and read by nobody else, to the waiter pl: it
// returns once c is registered, or ended. stop is what ends c's watch on
// its context (open's), and anything else the caller holds for c.
func (s *Server) watchConn(pl *poller, c *conn, t watchable, stop func() bool) {
	// From here the read timeout is the timer loop's: no read deadline.
	nc, readTimeout, pongsOnly := t.watched(c)
	now := time.Now().UnixNano()
	c.w.raw, c.w.nc, c.w.stop = nc.raw, nc, stop
	c.w.readTimeout, c.w.pongsOnly = int64(readTimeout), pongsOnly
	c.w.last.Store(now)
	pl.add(c)
	c.wmu.Lock()
	if c.finished {
		// Killed already (replaced, shutdown): the writer did not see
		// the waiter, so this goroutine ends it, as serve would.
		c.wmu.Unlock()
		pl.release(c)
		c.w.state.Store(watchEnded)
		clean, _ := c.readLoop(false)
		s.endConn(c, clean, stop)
		return
	}
	c.w.p = pl
	c.w.readAt = now + c.w.readTimeout
	c.rescheduleLocked()
	c.wmu.Unlock()
	// Input may wait above the socket: what the HTTP server or the
	// upgrade read ahead of the frames so far (socket.io's CONNECT, its
	// probe), in gorilla's buffer or in crypto/tls's.
	nc.probe()
	if nc.buffered() {
		c.pump()
		return
	}
	c.arm()
}

// pump handles c's input on the goroutine that owns it (watchRunning):
// steps while input is buffered above the socket, then re-arms, or ends
// the connection when a step says so.
func (c *conn) pump() {
	w := c.t.(idleReader)
	for {
		end, clean := c.stepWatched(w)
		if end {
			c.w.state.Store(watchEnded)
			c.unwatch()
			c.s.endConn(c, clean, c.w.stop)
			return
		}
		if !c.w.pongsOnly {
			c.w.last.Store(time.Now().UnixNano())
		}
		if !c.w.nc.buffered() {
			break
		}
	}
	c.arm()
}

// stepWatched is step for a handler: a panic in it ends the connection
// (logged, as net/http logs a handler's) instead of the process.
func (c *conn) stepWatched(w idleReader) (end, clean bool) {
	defer func() {
		if p := recover(); p != nil {
			c.s.log.Error("panic serving a connection", "panic", p, "stack", string(debug.Stack()))
			end, clean = true, false
		}
	}()
	return c.step(w)
}

// arm hands c back to the waiter: registered (the first time) or re-armed
// for its next input. If that fails (the socket closed) or the writer
// began closing the connection meanwhile, c is ended here, unless the
// waiter or the writer claimed it first.
func (c *conn) arm() {
	if c.rearm() {
		c.s.endConn(c, c.bye(), c.w.stop)
	}
}

// rearm is arm's part that never blocks (the waiter re-arms too): it
// reports whether c is the caller's to end, having left the waiter.
func (c *conn) rearm() (end bool) {
	if nc := c.w.nc; nc.lowatOn && !nc.pongDue.Load() {
		// No pong is coming: every byte is input again (lazyPing).
		nc.lowatOn = !nc.setLowat(1)
	}
	op := pollMod
	if !c.w.added {
		op = pollAdd
		c.w.added = true
	}
	c.w.state.Store(watchArmed)
	err := c.w.p.ctl(c, op)
	if (err != nil || c.w.closing.Load()) && c.w.state.CompareAndSwap(watchArmed, watchEnded) {
		c.unwatch()
		return true
	}
	return false
}

// skimPongs is the waiter's shortcut for the input an idle connection
// gets most, the pong answering the server's keepalive (RFC 6455
// §5.5.3; for socket.io, Engine.IO's pong packet "3" in a text frame of
// its own, 7 bytes masked): when the socket of a plain (not TLS)
// connection holds nothing but whole pongs, the waiter takes them off the
// socket itself and re-arms, with no hand-off to a handler and no
// goroutine woken. Anything else, or any doubt, is the handler's, which
// reads it all as before. The connection is the caller's (watchRunning),
// and nothing is buffered above its socket (it was armed), so gorilla is
// at a frame boundary. peek and take are the waiter's recv(2) with and
// without MSG_PEEK, non-blocking, on c's socket.
func (c *conn) skimPongs(peek, take func(c *conn, n int) (int, bool)) bool {
	if c.w.nc.tls != nil {
		return false
	}
	n, ok := peek(c, pongSkim)
	if !ok || n == 0 {
		return false // end of stream, an error, or nothing: the handler's
	}
	end, eio := 0, 0
	for end < n {
		b := c.w.p.skim[end:n]
		if l := eioPongFrame(b); l > 0 && c.w.pongsOnly {
			end += l
			eio++
			continue
		}
		// A client's pong: FIN and opcode 0xA, no RSV bits, masked
		// (§5.3), a payload of at most 125 bytes (§5.5).
		if len(b) < 2 || b[0] != 0x8A || b[1]&0x80 == 0 || b[1]&0x7F > 125 {
			return false
		}
		l := 6 + int(b[1]&0x7F)
		if l > len(b) {
			return false // not all there yet
		}
		end += l
	}
	if eio > 0 && c.t.(pongTaker).queued() {
		// Messages a POST brought behind the upgrade wait in the
		// session: the handler reads them first (the pong after).
		return false
	}
	c.w.nc.pongDue.Store(false)
	m, ok := take(c, end)
	if m > 0 && m < end {
		// Cannot happen (what was peeked is there, and only the owner
		// reads): what was taken goes to the handler, ahead of the
		// rest, as if gorilla had not read it yet.
		c.w.nc.pend = append([]byte(nil), c.w.p.skim[:m]...)
		return false
	}
	if ok && m == end && eio > 0 {
		// The session learns of its pong as if it had read it.
		c.t.(pongTaker).pongTaken()
	}
	return ok && m == end
}

// pongTaker is a transport whose keepalive answers are packets of its
// own protocol (socket.io), which the waiter may take off the socket for
// it (skimPongs): pongTaken tells the session one came.
type pongTaker interface {
	pongTaken()
	// queued reports whether the session holds input that did not
	// come through the socket (a POST's, behind the upgrade).
	queued() bool
}

// eioPongFrame is the length of Engine.IO's pong packet "3" in a client's
// text frame at the head of b (FIN, opcode 0x1, no RSV bits, masked, a
// payload of one byte: RFC 6455 §5.2; engine.io-protocol's packet types),
// or 0 when b does not start with one (or not all of it).
func eioPongFrame(b []byte) int {
	if len(b) < 7 || b[0] != 0x81 || b[1] != 0x81 || b[6]^b[2] != '3' {
		return 0
	}
	return 7
}

// lazyPing is lazy pongs (idleconn_linux.go, beforePing) for a watched
// connection, run by the pinger before it pings: when the connection is
// armed, the pinger claims it, takes the last ping's pong if it waits
// alone in the socket (an input: the read timeout moves on), has the
// socket not report the coming pong alone (SO_RCVLOWAT a pong and a
// byte: epoll sees the socket readable only past it, so the waiter is
// not woken for the pong either), and re-arms. Anything else that comes
// makes more than a pong and is reported at once; rearm sets the mark
// back to one byte whenever no pong is due. A connection some other
// goroutine owns is left to it.
func (c *conn) lazyPing() {
	nc := c.w.nc
	if c.w.p == nil || nc == nil || !nc.lazy || c.w.pongsOnly {
		return // socket.io's pongs are Engine.IO packets: no lazy pongs
	}
	if !c.w.state.CompareAndSwap(watchArmed, watchRunning) {
		nc.pongDue.Store(true)
		return
	}
	// The pong taken is an input; so, for the read timeout, is a ping
	// to a client that answered the last one (or was never asked): its
	// pong will wait in the socket until the next ping takes it, so the
	// deadline must fall after that ping, not at it.
	took, empty := nc.takePong()
	if took {
		c.w.p.taken.Add(1)
	}
	if took || !nc.pongDue.Load() {
		c.w.last.Store(time.Now().UnixNano())
	}
	nc.markForPong(took || empty)
	nc.pongDue.Store(true)
	if c.rearm() {
		// The socket closed: ended elsewhere than on the writer
		// (the caller), whose end the teardown waits for.
		go c.s.endConn(c, c.bye(), c.w.stop)
	}
}

// pongSkim is how much of a socket skimPongs looks at: a few pongs.
const pongSkim = 128

// unwatch removes c from the waiter: from epoll (before its socket
// closes, where the caller can see to that; a closed socket left epoll by
// itself) and from its slot. The caller moved c to watchEnded.
func (c *conn) unwatch() {
	_ = c.w.p.ctl(c, pollDel)
	c.w.p.release(c)
}

// unwatchForClose is finish's part, before it closes the transport: it
// reports whether the connection was waiting in the waiter, and so is
// finish's to end (after the close; endFinished).
func (c *conn) unwatchForClose() bool {
	c.w.closing.Store(true)
	if !c.w.state.CompareAndSwap(watchArmed, watchEnded) {
		return false // its owner sees closing, or its read fails
	}
	c.unwatch()
	return true
}

// endFinished ends a connection finish claimed from the waiter, on a
// handler: detach may wait for the bus.
func (c *conn) endFinished() {
	c.s.endConn(c, c.bye(), c.w.stop)
}

// readTimedOut is conn.due's part: with wmu held, it reports whether the
// client has been silent past its read timeout, else moves the deadline
// to the last input's.
func (c *conn) readTimedOut(now int64) bool {
	if c.w.p == nil || c.w.readAt == 0 || c.w.readAt > now {
		return false
	}
	dl := c.w.last.Load() + c.w.readTimeout
	if dl <= now {
		c.w.readAt = 0
		return true
	}
	c.w.readAt = dl
	return false
}

// endConn is what follows the end of a connection's reading, on every
// path: teardown, the watch on ctx stopped, the place given back.
func (s *Server) endConn(c *conn, clean bool, stop func() bool) {
	s.teardown(c, clean)
	stop()
	s.exit(c)
}

// teardown ends c after its reading ended: the writer flushes and closes
// the transport, then the session is released or held (detach). Every
// way a connection ends comes through here.
func (s *Server) teardown(c *conn, clean bool) {
	c.kill(closeNormal, "")
	<-c.writerDone
	s.detach(c, clean)
}
