package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"icegate/internal/tokenbucket"
)

// conn is one connection to a session: exactly one reader at a time (the
// goroutine in ServeTransport, or for a connection in the server's waiter
// the handler its input was handed to, watch.go) and at most one writer
// at a time (writer), which runs only while there is something to write:
// an idle connection holds no goroutine in the waiter, else one, blocked
// in its read (issue 15). The session itself (its id,
// rooms, log and resume token) lives on the Bus and outlives the
// connection: within the resume grace a new connection, on this node or
// another, takes it over.
type conn struct {
	s      *Server
	t      Transport
	host   string
	id     string   // the session's
	epoch  uint64   // the session's epoch when this connection took it
	claims *Claims  // nil when no token is required
	proto  protocol // the wire format: /ws, /ws/simple, …
	out    *outbox

	turnEvents atomic.Bool
	// expiry is the Unix time the token expires (0: no token); an auth
	// message moves it (reauth).
	expiry atomic.Int64
	ended  atomic.Bool // the session ends with the connection: it is not held

	done       chan struct{}
	writerDone chan struct{} // closed once the transport is closed
	killOnce   sync.Once
	closeCode  int // set before done closes
	closeText  string
	killedAt   time.Time

	// The writer's state and the timed duties, under wmu. A duty (todo)
	// is marked by kick; the writer runs while any is marked.
	wmu       sync.Mutex
	todo      uint8
	writing   bool   // a writer goroutine runs
	started   bool   // the hello may go: writers may run
	finished  bool   // the transport is closed: nothing more is written
	hello     []byte // the greeting, written first (then nil)
	pingEvery time.Duration
	pingAt    int64 // Unix ns of the next ping
	renewAt   int64 // Unix ns of the next credential renewal (0: none)
	expFired  bool  // the expiry duty was handed to the writer
	tm        timerSlot

	// w is the connection's part in the server's waiter, when it has no
	// reader goroutine (watch.go).
	w watch

	// Reader-only state.
	rate  tokenbucket.Bucket // messages_per_second, messages_burst
	name  string             // /ws/simple login name
	other string             // /ws/simple: the name it last exchanged an offer or answer with
}

// The writer's duties (conn.todo).
const (
	todoFlush  = 1 << iota // the outbox has something
	todoPing               // a keepalive is due
	todoRenew              // fresh credentials are due
	todoExpiry             // the token may have expired
	todoClose              // done closed: flush and close
)

// kill ends the connection: the writer sends a close frame with code and
// text and closes the socket, which ends the reader. It never blocks.
func (c *conn) kill(code int, text string) {
	c.killOnce.Do(func() {
		c.markKilled(code, text)
		// Unblock a writer stuck on a reader that does not read.
		c.t.ExpireWrites(time.Now().Add(time.Second))
		c.kick(todoClose)
	})
}

// markKilled is kill's part that records the end, under killOnce; the
// caller sees to the writer (kill kicks one; endDropped is it).
func (c *conn) markKilled(code int, text string) {
	c.closeCode, c.closeText = code, text
	c.killedAt = time.Now()
	close(c.done)
}

// kick marks duties for the writer and starts one unless it runs (it
// will see them) or the connection is not started or finished.
func (c *conn) kick(todo uint8) {
	c.wmu.Lock()
	c.todo |= todo
	start := c.started && !c.writing && !c.finished
	if start {
		c.writing = true
	}
	c.wmu.Unlock()
	if start {
		go c.writer()
	}
}

// start lets the writer run, hello first, and the timers begin.
func (c *conn) start(hello []byte, renew time.Duration, pingEvery time.Duration) {
	now := time.Now()
	c.wmu.Lock()
	c.hello = hello
	c.started = true
	c.pingEvery = pingEvery
	c.pingAt = now.Add(pingEvery).UnixNano()
	if renew > 0 {
		c.renewAt = now.Add(renew).UnixNano()
	}
	c.rescheduleLocked()
	c.wmu.Unlock()
	c.kick(todoFlush)
}

// expiryAt is when the session ends for its token (Unix ns; 0: never):
// its exp plus the leeway tokens get at the door.
func (c *conn) expiryAt() int64 {
	if exp := c.expiry.Load(); exp != 0 {
		return time.Unix(exp, 0).Add(c.s.leeway).UnixNano()
	}
	return 0
}

// reauth moves the session's end to the token's new expiry.
func (c *conn) reauth() {
	c.wmu.Lock()
	c.expFired = false
	c.rescheduleLocked()
	c.wmu.Unlock()
}

// rescheduleLocked puts c in the server's timers at its earliest
// deadline. wmu is held, so two goroutines rescheduling c cannot leave a
// stale deadline behind.
func (c *conn) rescheduleLocked() {
	when := int64(0)
	if c.started && !c.finished {
		when = c.pingAt
		if c.renewAt != 0 && c.renewAt < when {
			when = c.renewAt
		}
		if e := c.expiryAt(); e != 0 && !c.expFired && e < when {
			when = e
		}
		if c.w.readAt != 0 && c.w.readAt < when {
			when = c.w.readAt
		}
		when = gridUp(when, timerGrain(c.pingEvery))
	}
	c.s.timers.schedule(c, when)
}

// maxTimerGrain bounds how late a timed duty may run: a ping, a renewal
// or an expiry check waits for the next multiple of the grain (Unix
// time), so the connections whose deadlines fall in one grain are handled
// in one wake-up of the timer loop instead of one each, and their pings
// (and the pongs that answer them) come in bursts the runtime's poller
// takes together. At 17,000 connections pinged every 25 s that is 40
// wake-ups a second at most instead of 680 (issue 15, idle CPU). A 25 ms
// delay is nothing to a 25 s ping or a credential renewed at 80% of its
// life; the pong wait counts from the ping sent.
const maxTimerGrain = 25 * time.Millisecond

// timerGrain is the grain for a ping interval: a thousandth of it, at
// most maxTimerGrain (the tests' 200 ms pings get 200 µs).
func timerGrain(pingEvery time.Duration) int64 {
	return int64(min(pingEvery/1000, maxTimerGrain))
}

// gridUp rounds t (Unix ns) up to a multiple of grain.
func gridUp(t, grain int64) int64 {
	if grain <= 1 || t <= 0 {
		return t
	}
	return (t + grain - 1) / grain * grain
}

// due is called by the timer loop when c's earliest deadline passed: it
// marks what is due for the writer and schedules the next deadline. It
// never blocks. When a ping is all that is due and no writer runs, it
// claims the writer role for it and reports true: the loop pings such
// connections in batches (pings.go) instead of a writer goroutine each.
func (c *conn) due(now int64) (pingOnly bool) {
	var todo uint8
	c.wmu.Lock()
	if c.pingAt <= now {
		todo |= todoPing
		c.pingAt = now + int64(c.pingEvery)
	}
	if c.renewAt != 0 && c.renewAt <= now {
		todo |= todoRenew
		c.renewAt = 0 // the writer sets the next from the new credentials
	}
	if e := c.expiryAt(); e != 0 && !c.expFired && e <= now {
		todo |= todoExpiry
		c.expFired = true
	}
	silent := c.readTimedOut(now)
	c.rescheduleLocked()
	if silent {
		if n, ok := c.t.(silenceNoter); ok {
			n.readTimedOut()
		}
		// As a read past its deadline ends a reader goroutine's
		// connection: the writer closes it, and the session is held
		// for resume (watch.go).
		c.wmu.Unlock()
		c.kill(closeNormal, "")
		c.kick(todo)
		return false
	}
	if todo == todoPing && c.todo == 0 && c.started && !c.writing && !c.finished && c.hello == nil {
		c.writing = true
		c.wmu.Unlock()
		return true
	}
	c.wmu.Unlock()
	c.kick(todo)
	return false
}

// AcceptOptions describe a connection that passed the HTTP checks.
type AcceptOptions struct {
	// Claims are the verified token's, nil when no token is required.
	Claims *Claims
	// Resume and LastSeq ask to take over a peer within its resume grace:
	// its resume token and the last seq the client received (0 for none).
	Resume  string
	LastSeq uint64
	// Host names this server in the iceServers URLs handed out (the host
	// the client reached; signaling.turn_host overrides it).
	Host string
	// Simple selects the classic tutorial protocol (/ws/simple).
	Simple bool
	// opening: the caller took a place of Config.MaxOpening for this
	// connection already (serveWS, before the upgrade); serve gives it
	// back once the session is attached.
	opening bool
}

// ServeTransport serves one client connection until it closes or ctx ends.
// It runs the connection's reader on the calling goroutine, and a writer
// goroutine while there is something to write; it returns after both have
// finished. The server owns t from
// here on. Accept is the same for a gorilla/websocket connection.
func (s *Server) ServeTransport(ctx context.Context, t Transport, opts AcceptOptions) error {
	return s.serve(ctx, t, &opts, opts.proto())
}

// serve is ServeTransport for protocol p. The calling goroutine is the
// connection's reader for its whole life, and an idle connection's only
// goroutine: all it does itself is wait (readLoop), and everything else
// runs on short-lived goroutines (shallow), so that its stack never grows
// past the 2 KiB a goroutine starts with. It would not come back down:
// the collector halves a stack only while less than a quarter of it,
// counting an 800-byte reserve, is in use, which a 4 KiB stack waiting
// in the poller never is (issue 15; runtime.shrinkstack).
func (s *Server) serve(ctx context.Context, t Transport, opts *AcceptOptions, p protocol) error {
	var c *conn
	var stop func() bool
	var err error
	s.shallow(func() { c, stop, err = s.open(ctx, t, opts, p) })
	if err != nil {
		return err
	}
	defer s.exit(c)
	defer stop()
	clean, _ := c.readLoop(false)
	s.shallow(func() { s.teardown(c, clean) })
	return nil
}

// open admits a connection and attaches its session (serve). On success
// the caller owns the returned conn's place (Server.exit) and stop, which
// ends the watch on ctx; on an error the client was told why and nothing
// is left to undo.
func (s *Server) open(ctx context.Context, t Transport, opts *AcceptOptions, p protocol) (_ *conn, stop func() bool, err error) {
	c := &conn{s: s, t: t, host: opts.Host, claims: opts.Claims, proto: p,
		done: make(chan struct{}), writerDone: make(chan struct{}), tm: timerSlot{index: -1}}
	if c.claims != nil {
		c.expiry.Store(c.claims.Expiry)
	}
	if !opts.opening && !s.waitOpening(ctx) {
		s.metrics.refused.WithLabelValues("busy").Inc()
		_ = t.Close(closeTryAgainLater, ErrBusy.Error())
		return nil, nil, ErrBusy
	}
	if err := s.enter(c); err != nil {
		s.doneOpening()
		code, reason := closeTryAgainLater, "capacity"
		if errors.Is(err, ErrClosed) {
			code, reason = closeGoingAway, "closing"
		}
		// Counted before the client can see the close.
		s.metrics.refused.WithLabelValues(reason).Inc()
		_ = t.Close(code, err.Error())
		return nil, nil, err
	}
	// A context that never ends (serveWS's; the server's Close kills its
	// connections itself) needs no watch, and no watcher held for the
	// connection's life.
	// unwatch, not the result stop: a return on an error sets stop to
	// nil before the deferred undo runs (each connection refused for an
	// unreachable bus panicked there, and its place was never given back).
	unwatch := func() bool { return true }
	if ctx.Done() != nil {
		unwatch = context.AfterFunc(ctx, func() { c.kill(closeGoingAway, "server shutting down") })
	}
	ok, attached := false, false
	defer func() {
		if !ok { // an error, or a panic on its way up
			if !attached {
				// attach panicked: its place at the door and the
				// socket were not given back on the way.
				s.doneOpening()
				_ = t.Close(0, "")
			}
			unwatch()
			s.exit(c)
		}
	}()

	st := s.settings()
	c.rate = tokenbucket.Full(float64(st.MessagesBurst), time.Now())
	// Replies to a burst the client may send never overflow its queue.
	c.out = newOutbox(st.SendQueue + st.MessagesBurst)
	c.out.notify = func() { c.kick(todoFlush) }
	hello, renew, err := s.attach(ctx, c, *opts)
	attached = true
	s.doneOpening()
	if err != nil {
		s.metrics.refused.WithLabelValues("cluster-unavailable").Inc()
		s.limited.Log(slog.LevelWarn, "attach", "cannot open a session", "err", err)
		_ = t.Close(closeTryAgainLater, CodeClusterUnavailable)
		return nil, nil, err
	}
	c.start(hello, renew, st.PingInterval)
	ok = true
	return c, unwatch, nil
}

// limits are the bus limits of a session under st. When a connection
// drops, its client may lack everything its outbox held (up to SendQueue +
// MessagesBurst) and the batch its writer had taken from it (as many
// again): the log keeps that many written messages, so a resume replays
// every acked one.
func (st *settings) limits() Limits {
	return Limits{Queue: st.SendQueue, Keep: 2 * (st.SendQueue + st.MessagesBurst), Grace: st.ResumeGrace}
}

// attach binds c to a session: the one its resume token names, or a new
// one. It returns what to send first (the protocol's greeting) and when to
// renew the credentials in it.
func (s *Server) attach(ctx context.Context, c *conn, opts AcceptOptions) ([]byte, time.Duration, error) {
	st := s.settings()
	ctx, cancel := context.WithTimeout(ctx, busWait)
	defer cancel()
	user := ""
	if c.claims != nil {
		user = c.claims.Subject
	}
	var res Resumed
	resumed := false
	resumeErr := ""
	token := ""
	if c.proto.resumable() {
		token = newToken()
	}
	if opts.Resume != "" && c.proto.resumable() {
		var err error
		res, err = s.bus.Resume(ctx, ResumeRequest{Token: opts.Resume, NewToken: token, User: user, Last: opts.LastSeq, Limits: st.limits()})
		switch {
		case err == nil:
			resumed = true
		case errors.Is(err, ErrOtherUser):
			resumeErr = "resume token belongs to another user; this is a new peer"
			s.metrics.resumes.WithLabelValues("other-user").Inc()
		case errors.Is(err, ErrUnknownSession):
			resumeErr = "unknown or expired resume token; this is a new peer"
			s.metrics.resumes.WithLabelValues("unknown").Inc()
		default:
			return nil, 0, err
		}
	}
	if resumed {
		c.id, c.epoch = res.ID, res.Epoch
		// Messages logged after Resume ran are delivered to whichever
		// connection is registered; register, then catch up on what
		// arrived in between (the outbox drops what it has twice).
		c.out.reset(res.From, res.Msgs)
		s.register(c)
		from, msgs, _, err := s.bus.Replay(ctx, c.id, res.From+uint64(len(res.Msgs))-1)
		if err != nil {
			// Without the catch-up a message may be missing for good:
			// give the session back (held) and let the client resume
			// again rather than serve it with a hole.
			if s.unregister(c) {
				_ = s.bus.Hold(ctx, c.id, c.epoch, res.From-1, st.ResumeGrace)
			}
			return nil, 0, err
		}
		c.out.putAll(from, msgs)
	} else {
		c.id, c.epoch = newID(), 1
		s.register(c)
		if err := s.bus.Open(ctx, Session{ID: c.id, User: user, Token: token, Limits: st.limits()}); err != nil {
			s.unregister(c)
			return nil, 0, err
		}
	}
	rooms := res.Rooms
	if rooms == nil {
		rooms = []string{}
	}
	h := helloMsg{
		Type: TypeHello, Peer: c.id, ResumeToken: token, Resumed: resumed, ResumeError: resumeErr,
		Rooms:        rooms,
		PingInterval: int(st.PingInterval / time.Second),
		Limits: helloLimits{
			MaxMessageBytes: st.MaxMessageBytes, MessagesPerSecond: st.MessagesPerSecond,
			PeersPerRoom: st.PeersPerRoom, RoomsPerPeer: st.RoomsPerPeer,
			ResumeGrace: int(st.ResumeGrace / time.Second),
		},
		Server:   serverInfo{Version: s.version, TURNSCertificate: "configured", TURNEvents: !st.NoTURNEvents},
		NATProbe: st.natProbe,
		User:     user,
	}
	if c.claims != nil {
		exp := time.Unix(c.claims.Expiry, 0).UTC()
		h.TokenExpires = &exp
	}
	if st.Relay.SelfSignedCert {
		h.Server.TURNSCertificate = "self-signed"
	}
	var exp time.Time
	h.ICEServers, exp, h.Server.Credentials = s.iceServers(c.host, c.id)
	// Draining matters to the client only when no other relay was vended
	// instead (Options.Steer): then ice_servers hold STUN only.
	h.Server.RelayDraining = s.relayDraining() && !h.Server.Credentials
	if h.Server.Credentials {
		h.Expires = &exp
		h.TTL = int(time.Until(exp) / time.Second)
	}
	if resumed {
		h.Replay = &replayInfo{From: res.From, Gap: res.Gap}
		outcome := "ok"
		if res.Gap {
			outcome = "gap"
		}
		s.metrics.resumes.WithLabelValues(outcome).Inc()
	}
	g := c.proto.greet(c, &h)
	if g == nil {
		return nil, 0, nil // no greeting, no renewals (/ws/simple)
	}
	return g, renewAfter(exp), nil
}

// register makes c the connection deliveries for its session go to.
func (s *Server) register(c *conn) {
	s.mu.Lock()
	old := s.local[c.id]
	s.local[c.id] = c
	s.mu.Unlock()
	if old != nil && old != c {
		old.kill(closeReplaced, "replaced by a resumed connection")
	}
}

// unregister forgets c as its session's connection, unless another took
// over; it reports whether c was still the one.
func (s *Server) unregister(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.local[c.id] != c {
		return false
	}
	delete(s.local, c.id)
	return true
}

// renewAfter says when to send fresh credentials: at 80% of their life,
// leaving a client a margin to use them before the old ones expire.
func renewAfter(exp time.Time) time.Duration {
	if exp.IsZero() {
		return 0
	}
	return max(time.Until(exp)*4/5, time.Second)
}

// release ends c's hold on its session after the connection ended
// (detach, detaches.go): a goodbye removes the session, a broken
// connection's is held for the resume grace.
func (s *Server) release(c *conn, clean bool) {
	if !s.unregister(c) {
		return // replaced by a resumed connection
	}
	st := s.settings()
	ctx, cancel := context.WithTimeout(context.Background(), busWait)
	defer cancel()
	var free func(context.Context) error
	c.proto.ended(c)
	if clean || st.ResumeGrace <= 0 || !c.proto.resumable() || c.ended.Load() {
		free = func(ctx context.Context) error { return s.bus.Remove(ctx, c.id, c.epoch) }
		s.log.Debug("peer gone", "peer", c.id, "why", "disconnected")
	} else {
		written, grace := c.out.written(), st.ResumeGrace
		free = func(ctx context.Context) error { return s.bus.Hold(ctx, c.id, c.epoch, written, grace) }
	}
	err := free(ctx)
	if err != nil {
		s.limited.Log(slog.LevelWarn, "detach", "cannot release a session on the bus", "peer", c.id, "err", err)
	}
	if !errors.Is(err, ErrUnavailable) {
		return
	}
	// The bus could not be reached: the session would stay a member of
	// its rooms with no connection for as long as this node lives. Try
	// again until the bus answers (the epoch keeps a late release from
	// touching a session resumed meanwhile), or the server closes (then
	// the cluster holds this node's sessions as after its death).
	s.wg.Add(1) // within this connection's or its detach worker's place: Close waits for it
	go func() {
		defer s.wg.Done()
		backoff := 100 * time.Millisecond
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), busWait)
			err := free(ctx)
			cancel()
			if !errors.Is(err, ErrUnavailable) {
				return
			}
		}
	}()
}

// readLoop reads and handles messages until the connection fails. It
// returns whether the client closed it on purpose. A transport that can
// (idleReader) waits for input here, on the reader's small stack, and
// each read and its message are handled on a short-lived goroutine;
// otherwise the reader blocks in ReadFrame and only the handling runs on
// one (issue 15; idleconn.go).
//
// A transport that cannot wait yet may become able to (a socket.io
// session upgraded from polling to WebSocket): its ReadFrame returns
// errIdle then, and the reader asks canWait again. With handOff it then
// returns, reporting waitable, for the caller to hand the connection to
// the waiter (serveSIO).
func (c *conn) readLoop(handOff bool) (clean, waitable bool) {
	w, _ := c.t.(idleReader)
	for {
		if w != nil && w.canWait() {
			if handOff {
				return false, true
			}
			// What was read before (socket.io's CONNECT, its
			// upgrade's probe) may have left records in crypto/tls,
			// which the socket will not report: look, on a
			// short-lived goroutine (decrypting is deep).
			c.s.shallow(w.idle().probe)
			for {
				w.waitInput()
				c.s.idleWakes.Add(1)
				end := false
				c.s.shallow(func() { end, clean = c.step(w) })
				if end {
					return clean, false
				}
			}
		}
		end, clean := c.step(nil)
		if end {
			return clean, false
		}
	}
}

// idPeeker is a protocol whose frames carry their reply id otherwise than
// /ws's "id" field (socket.io's ack id).
type idPeeker interface {
	peekID(c *conn, frame []byte) json.RawMessage
}

// peekID is the reply id of a frame dropped unparsed (over its rate, or
// cut at the size limit), as the connection's protocol carries it.
func (c *conn) peekID(b []byte) json.RawMessage {
	if p, ok := c.proto.(idPeeker); ok {
		return p.peekID(c, b)
	}
	return peekID(b)
}

// step reads one message and handles it, and reports whether the
// connection ended (and if so whether the client closed it on purpose).
// With w it reads through w.readIdle and handles the message on the
// calling goroutine, which is a short-lived one already; else it blocks
// in ReadFrame and handles the message on a short-lived goroutine.
func (c *conn) step(w idleReader) (end, clean bool) {
	st := c.s.settings()
	// No buffer while waiting: the transport takes one from the pool
	// once a frame arrives (an idle connection holds none), and it goes
	// back after the message was handled, which keeps no reference to
	// it.
	var b []byte
	var err error
	if w != nil {
		b, err = w.readIdle(st.MaxMessageBytes)
		if err == errIdle {
			return false, false
		}
	} else {
		b, err = c.t.ReadFrame(nil, st.MaxMessageBytes)
		if err == errIdle {
			return false, false // no message; readLoop looks again
		}
	}
	defer putFrameBuf(b)
	tooLarge := errors.Is(err, ErrFrameTooLarge)
	if err != nil && !tooLarge {
		if errors.Is(err, ErrReadLimit) {
			c.s.metrics.messages.WithLabelValues("other", CodeTooLarge).Inc()
		}
		var ce *CloseError
		// A close frame without a status code (1005, RFC 6455 §7.1.5)
		// is what a browser's ws.close() sends: a client closing on
		// purpose, as with 1000. Only a connection that broke (no close
		// frame: 1006) or was closed with another code is held for
		// resume.
		if errors.As(err, &ce) && (ce.Code == closeNormal || ce.Code == closeGoingAway || ce.Code == closeNoStatus) {
			// A client echoing the close the server started (a
			// shutdown's 1001) is not saying goodbye: on a cluster its
			// session is held, to resume on another node.
			select {
			case <-c.done:
			default:
				return true, true
			}
		}
		return true, c.bye()
	}
	// Both errors answer with the message's id, when it can be found
	// (for a message too large, in its first max_message_bytes).
	if tooLarge {
		c.s.metrics.messages.WithLabelValues("other", CodeTooLarge).Inc()
		c.sendError(c.peekID(b), "", perr(CodeTooLarge, "message larger than %d bytes (signaling.max_message_bytes)", st.MaxMessageBytes))
		return false, false
	}
	if !c.allow(st) {
		c.s.metrics.messages.WithLabelValues("other", CodeRateLimited).Inc()
		c.sendError(c.peekID(b), "", perr(CodeRateLimited, "more than %d messages per second (signaling.messages_per_second); message dropped", st.MessagesPerSecond))
		return false, false
	}
	if w != nil {
		c.proto.handle(c, b, st)
	} else {
		c.s.shallow(func() { c.proto.handle(c, b, st) })
	}
	if c.bye() {
		return true, true
	}
	return false, false
}

// shallow runs f on one of the server's handler goroutines and waits for
// it. The reader runs what handles a message (JSON, the bus, minting
// credentials) this way so its own stack stays as small as waiting for a
// frame needs (handlers.go). A panic in f is raised again on the caller's
// goroutine, as if f had run there.
func (s *Server) shallow(f func()) { s.handlers.run(f) }

// bye reports whether the peer asked to leave for good.
func (c *conn) bye() bool {
	select {
	case <-c.done:
		return c.closeText == "bye"
	default:
		return false
	}
}

// allow takes a token from the connection's bucket.
func (c *conn) allow(st *settings) bool {
	return c.rate.Take(time.Now(), float64(st.MessagesPerSecond), float64(st.MessagesBurst), 1)
}

// send logs a reply for this connection's own session. A held session
// (the connection is going) cannot take more: the reply is dropped. When
// the bus is unreachable the reply goes to this connection only.
func (c *conn) send(body []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), busWait)
	defer cancel()
	err := c.s.bus.Push(ctx, c.id, body)
	if errors.Is(err, ErrUnavailable) && c.out.putDirect(body) {
		// The client still learns what became of its message (an error,
		// typically cluster-unavailable), without a seq: it is not in
		// the log, so a resume cannot replay it.
		return
	}
	if err != nil {
		c.s.metrics.dropped.WithLabelValues("reply").Inc()
		c.s.limited.Log(slog.LevelDebug, "reply-"+c.id, "reply not queued", "peer", c.id, "err", err)
	}
}

func (c *conn) sendError(id json.RawMessage, forType string, e *protoError) {
	c.send(encode(errorMsg{Type: TypeError, ID: id, Code: e.code, Error: e.msg, For: forType}))
}

// writer is the connection's writer: it runs while duties are marked
// (kick) and ends when none are left, so an idle connection has none. It
// writes the hello first, then the outbox as it fills, pings, and fresh
// credentials before they expire; once the connection is killed it
// flushes, sends the close and closes the transport. Only one runs at a
// time (conn.writing), so the Transport sees one writer.
func (c *conn) writer() {
	for {
		c.wmu.Lock()
		todo, hello := c.todo, c.hello
		c.todo, c.hello = 0, nil
		if todo == 0 || c.finished {
			c.writing = false
			c.wmu.Unlock()
			return
		}
		c.wmu.Unlock()
		if c.work(todo, hello) != nil {
			c.finish(0, "")
		}
	}
}

// work does the duties in todo; an error means the connection is
// broken (or too slow) and is to be closed.
func (c *conn) work(todo uint8, hello []byte) error {
	if hello != nil {
		if err := c.write(0, hello); err != nil {
			return err
		}
	}
	select {
	case <-c.done:
		// Ending on purpose (bye, shutdown, replaced): what is queued
		// goes out first, within a second (see write). A slow reader
		// gets nothing more.
		if err := c.flush(); err != nil {
			return err
		}
		c.finish(c.closeCode, c.closeText)
		return nil
	default:
	}
	if todo&todoFlush != 0 {
		if err := c.flush(); err != nil {
			return err
		}
	}
	if todo&todoPing != 0 {
		c.lazyPing()
		if err := c.t.Ping(time.Now().Add(writeWait)); err != nil {
			return err
		}
	}
	if todo&todoExpiry != 0 {
		if exp := c.expiryAt(); exp != 0 && time.Now().UnixNano() < exp {
			c.reauth() // a fresh token came meanwhile
		} else if exp != 0 {
			c.s.metrics.dropped.WithLabelValues("token-expired").Inc()
			c.ended.Store(true)
			c.send(encode(errorMsg{Type: TypeError, Code: CodeTokenExpired,
				Error: "your token expired and no fresh one came (send {\"type\":\"auth\",\"token\":…} before it does); the session ends"}))
			c.kill(closeTokenExpired, "token expired")
		}
	}
	if todo&todoRenew != 0 {
		servers, exp, ok := c.s.iceServers(c.host, c.id)
		if ok {
			c.send(encode(iceServersMsg{Type: TypeICEServers, ICEServers: servers, Expires: &exp, TTL: int(time.Until(exp) / time.Second)}))
			c.wmu.Lock()
			c.renewAt = time.Now().Add(renewAfter(exp)).UnixNano()
			c.rescheduleLocked()
			c.wmu.Unlock()
		}
	}
	return nil
}

// finish closes the transport, first with a close frame when code > 0,
// and leaves the timers: nothing more is written. The reader's read
// fails, and serve, waiting on writerDone, ends the connection.
func (c *conn) finish(code int, text string) {
	c.wmu.Lock()
	if c.finished {
		c.wmu.Unlock()
		return
	}
	c.finished = true
	watched := c.w.p != nil
	c.rescheduleLocked()
	c.wmu.Unlock()
	// A connection waiting in the waiter leaves it before its socket
	// closes, and is ended from here (watch.go).
	ended := watched && c.unwatchForClose()
	if code > 0 {
		_ = c.t.Close(code, text)
	}
	_ = c.t.Close(0, "")
	close(c.writerDone)
	if ended {
		c.s.handlers.start(c, true)
	}
}

// flush writes what the outbox holds.
func (c *conn) flush() error {
	for _, m := range c.out.takeDirect() {
		if err := c.write(0, m); err != nil {
			return err
		}
	}
	seq, msgs := c.out.take()
	for i, m := range msgs {
		if err := c.write(seq+uint64(i), m); err != nil {
			return err
		}
	}
	return nil
}

// write sends one message as the protocol renders it (for /ws, with
// "seq" added unless seq is 0). Once the connection is being killed, a
// write gets a second at most, and none at all when the peer is too slow.
func (c *conn) write(seq uint64, body []byte) error {
	deadline := time.Now().Add(writeWait)
	select {
	case <-c.done:
		if c.closeCode == closePolicyViolation {
			return errSlow
		}
		deadline = c.killedAt.Add(time.Second)
	default:
	}
	var pre [32]byte
	head, rest, ok := c.proto.render(c, seq, body, pre[:0])
	if !ok {
		return nil
	}
	err := c.t.WriteFrame(deadline, head, rest)
	if err != nil {
		c.s.limited.Log(slog.LevelDebug, "write-"+c.id, "write failed", "peer", c.id, "remote", c.t.RemoteAddr(), "err", err)
	}
	return err
}
