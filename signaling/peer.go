package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"icegate/internal/tokenbucket"
)

// peer is one signaling client. It outlives a connection: within the resume
// grace a new connection can take it over.
type peer struct {
	id     string
	claims *Claims // nil when no token is required
	simple bool    // speaks the /ws/simple tutorial protocol
	out    *outbox

	turnEvents atomic.Bool
	// connPtr mirrors conn for kick, which runs without Server.mu.
	connPtr atomic.Pointer[conn]

	// Guarded by Server.mu.
	rooms  []string
	conn   *conn
	resume string
	timer  *time.Timer
	drops  int // connections lost so far, so a stale grace timer knows it is stale
	gone   bool
	name   string // /ws/simple login name
	other  string // /ws/simple: the name it last exchanged an offer or answer with
}

// kick disconnects p's current connection, if any (it may resume).
func (p *peer) kick() {
	if c := p.connPtr.Load(); c != nil {
		c.kill(closePolicyViolation, "too slow: outbox full")
	}
}

// conn is one connection to a peer: exactly one reader (the goroutine in
// ServeTransport) and one writer (writeLoop).
type conn struct {
	s    *Server
	p    *peer
	t    Transport
	host string

	done       chan struct{}
	writerDone chan struct{}
	killOnce   sync.Once
	closeCode  int // set before done closes
	closeText  string
	killedAt   time.Time

	// Reader-only state.
	rate tokenbucket.Bucket // messages_per_second, messages_burst
	buf  []byte
}

// kill ends the connection: the writer sends a close frame with code and
// text and closes the socket, which ends the reader. It never blocks.
func (c *conn) kill(code int, text string) {
	c.killOnce.Do(func() {
		c.closeCode, c.closeText = code, text
		c.killedAt = time.Now()
		close(c.done)
		// Unblock a writer stuck on a reader that does not read.
		c.t.ExpireWrites(time.Now().Add(time.Second))
	})
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
}

// ServeTransport serves one client connection until it closes or ctx ends.
// It runs the connection's reader on the calling goroutine and one writer
// goroutine, and returns after both have finished. The server owns t from
// here on. Accept is the same for a gorilla/websocket connection.
func (s *Server) ServeTransport(ctx context.Context, t Transport, opts AcceptOptions) error {
	c := &conn{s: s, t: t, host: opts.Host, done: make(chan struct{}), writerDone: make(chan struct{})}
	if err := s.enter(c); err != nil {
		code, reason := closeTryAgainLater, "capacity"
		if errors.Is(err, ErrClosed) {
			code, reason = closeGoingAway, "closing"
		}
		// Counted before the client can see the close.
		s.metrics.refused.WithLabelValues(reason).Inc()
		_ = t.Close(code, err.Error())
		return err
	}
	defer s.exit(c)
	stop := context.AfterFunc(ctx, func() { c.kill(closeGoingAway, "server shutting down") })
	defer stop()

	st := s.settings()
	c.rate = tokenbucket.Full(float64(st.MessagesBurst), time.Now())
	hello, renew := s.attach(c, opts)
	go c.writeLoop(hello, renew)
	clean := c.readLoop()
	c.kill(closeNormal, "")
	<-c.writerDone
	s.detach(c, clean)
	return nil
}

// attach binds c to a peer: the one its resume token names, or a new one.
// It returns the hello to send first (nil for /ws/simple) and when to renew
// the credentials in it.
func (s *Server) attach(c *conn, opts AcceptOptions) ([]byte, time.Duration) {
	st := s.settings()
	var p *peer
	var old *conn
	resumeErr := ""
	s.mu.Lock()
	if opts.Resume != "" && !opts.Simple {
		p = s.byResume[opts.Resume]
		switch {
		case p == nil:
			resumeErr = "unknown or expired resume token; this is a new peer"
			s.metrics.resumes.WithLabelValues("unknown").Inc()
		case !sameSubject(p.claims, opts.Claims):
			p = nil
			resumeErr = "resume token belongs to another user; this is a new peer"
			s.metrics.resumes.WithLabelValues("other-user").Inc()
		default:
			old = p.conn
			if p.timer != nil {
				p.timer.Stop()
				p.timer = nil
			}
			delete(s.byResume, p.resume)
		}
	}
	resumed := p != nil
	if p == nil {
		p = &peer{id: newID(), claims: opts.Claims, simple: opts.Simple,
			out: newOutbox(st.SendQueue, st.SendQueue)}
		s.registerLocked(p)
	}
	c.p = p
	p.conn = c
	p.connPtr.Store(c)
	if !p.simple {
		p.resume = newToken()
		s.byResume[p.resume] = p
	}
	rooms := slices.Clone(p.rooms)
	resume := p.resume
	s.mu.Unlock()

	if p.simple {
		return nil, 0
	}
	if old != nil {
		// The old connection must stop writing before the outbox rewinds,
		// or it could take messages the new one needs.
		old.kill(closeReplaced, "replaced by a resumed connection")
		<-old.writerDone
	}
	h := helloMsg{
		Type: TypeHello, Peer: p.id, ResumeToken: resume, Resumed: resumed, ResumeError: resumeErr,
		Rooms:        rooms,
		PingInterval: int(st.PingInterval / time.Second),
		Limits: helloLimits{
			MaxMessageBytes: st.MaxMessageBytes, MessagesPerSecond: st.MessagesPerSecond,
			PeersPerRoom: st.PeersPerRoom, RoomsPerPeer: st.RoomsPerPeer,
			ResumeGrace: int(st.ResumeGrace / time.Second),
		},
		Server:   serverInfo{Version: s.version, TURNSCertificate: "configured", TURNEvents: !st.NoTURNEvents},
		NATProbe: st.natProbe,
	}
	if st.Relay.SelfSignedCert {
		h.Server.TURNSCertificate = "self-signed"
	}
	if p.claims != nil {
		h.User = p.claims.Subject
	}
	if h.Rooms == nil {
		h.Rooms = []string{}
	}
	var exp time.Time
	h.ICEServers, exp, h.Server.Credentials = s.iceServers(c.host, p.id)
	if h.Server.Credentials {
		h.Expires = &exp
		h.TTL = int(time.Until(exp) / time.Second)
	}
	if resumed {
		from, gap := p.out.rewind(opts.LastSeq)
		h.Replay = &replayInfo{From: from, Gap: gap}
		outcome := "ok"
		if gap {
			outcome = "gap"
		}
		s.metrics.resumes.WithLabelValues(outcome).Inc()
	}
	return encode(h), renewAfter(exp)
}

// renewAfter says when to send fresh credentials: at 80% of their life,
// leaving a client a margin to use them before the old ones expire.
func renewAfter(exp time.Time) time.Duration {
	if exp.IsZero() {
		return 0
	}
	return max(time.Until(exp)*4/5, time.Second)
}

func sameSubject(a, b *Claims) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Subject == b.Subject
}

// detach unbinds c from its peer after the connection ended. A peer that
// said goodbye (close code 1000 or 1001, or "bye") leaves at once; one whose
// connection broke keeps its id, rooms and queue for the resume grace.
func (s *Server) detach(c *conn, clean bool) {
	st := s.settings()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := c.p
	if p == nil || p.conn != c {
		return // replaced by a resumed connection
	}
	p.conn = nil
	p.connPtr.Store(nil)
	grace := st.ResumeGrace
	if clean || grace <= 0 || p.simple || s.closed {
		s.removeLocked(p, "disconnected")
		return
	}
	p.drops++
	drop := p.drops
	p.timer = time.AfterFunc(grace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		// A timer stopped too late for an earlier drop must not cut this
		// grace short.
		if p.conn == nil && p.drops == drop {
			s.removeLocked(p, "resume grace expired")
		}
	})
}

// readLoop reads and handles messages until the connection fails. It
// returns whether the client closed it on purpose.
func (c *conn) readLoop() (clean bool) {
	if c.buf == nil {
		c.buf = make([]byte, 0, 4096)
	}
	for {
		st := c.s.settings()
		b, err := c.t.ReadFrame(c.buf, st.MaxMessageBytes)
		tooLarge := errors.Is(err, ErrFrameTooLarge)
		if err != nil && !tooLarge {
			if errors.Is(err, ErrReadLimit) {
				c.s.metrics.messages.WithLabelValues("other", CodeTooLarge).Inc()
			}
			var ce *CloseError
			return errors.As(err, &ce) && (ce.Code == closeNormal || ce.Code == closeGoingAway) || c.bye()
		}
		if err == nil {
			c.buf = b // keep the grown buffer for the next frame
		}
		if tooLarge {
			c.s.metrics.messages.WithLabelValues("other", CodeTooLarge).Inc()
			c.sendError(nil, "", perr(CodeTooLarge, "message larger than %d bytes (signaling.max_message_bytes)", st.MaxMessageBytes))
			continue
		}
		if !c.allow(st) {
			c.s.metrics.messages.WithLabelValues("other", CodeRateLimited).Inc()
			c.sendError(nil, "", perr(CodeRateLimited, "more than %d messages per second (signaling.messages_per_second); message dropped", st.MessagesPerSecond))
			continue
		}
		if c.p.simple {
			c.handleSimple(b)
		} else {
			c.handle(b, st)
		}
		if c.bye() {
			return true
		}
	}
}

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

// send queues a message for this connection's own peer. If its own queue
// is full it is not reading: disconnect it.
func (c *conn) send(body []byte) {
	_ = c.s.deliver(c.p, body, "reply")
}

func (c *conn) sendError(id json.RawMessage, forType string, e *protoError) {
	c.send(encode(errorMsg{Type: TypeError, ID: id, Code: e.code, Error: e.msg, For: forType}))
}

// writeLoop is the connection's only writer: hello first, then the outbox
// as it fills, pings while idle, and fresh credentials before they expire.
func (c *conn) writeLoop(hello []byte, renew time.Duration) {
	defer close(c.writerDone)
	defer c.t.Close(0, "")
	st := c.s.settings()
	ping := time.NewTicker(st.PingInterval)
	defer ping.Stop()
	var renewC <-chan time.Time
	if renew > 0 {
		t := time.NewTimer(renew)
		defer t.Stop()
		renewC = t.C
	}
	if hello != nil && c.write(0, hello) != nil {
		return
	}
	if c.flush() != nil {
		return
	}
	for {
		select {
		case <-c.done:
			// Ending on purpose (bye, shutdown, replaced): what is queued
			// goes out first, within a second (see write). A slow reader
			// gets nothing more.
			if c.flush() == nil {
				_ = c.t.Close(c.closeCode, c.closeText)
			}
			return
		case <-c.p.out.wake:
			if c.flush() != nil {
				return
			}
		case <-ping.C:
			if c.t.Ping(time.Now().Add(writeWait)) != nil {
				return
			}
		case <-renewC:
			servers, exp, ok := c.s.iceServers(c.host, c.p.id)
			if ok {
				c.send(encode(iceServersMsg{Type: TypeICEServers, ICEServers: servers, Expires: &exp, TTL: int(time.Until(exp) / time.Second)}))
				renewC = time.After(renewAfter(exp))
			}
		}
	}
}

// flush writes what the outbox holds.
func (c *conn) flush() error {
	seq, msgs := c.p.out.take()
	for i, m := range msgs {
		if err := c.write(seq+uint64(i), m); err != nil {
			return err
		}
	}
	return nil
}

// write sends one message, adding "seq" to it unless seq is 0 or the peer
// speaks /ws/simple. Once the connection is being killed, a write gets a
// second at most, and none at all when the peer is too slow.
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
	var err error
	if seq == 0 || c.p.simple || len(body) < 2 {
		err = c.t.WriteFrame(deadline, nil, body)
	} else {
		var pre [32]byte
		b := append(pre[:0], `{"seq":`...)
		b = strconv.AppendUint(b, seq, 10)
		b = append(b, ',')
		err = c.t.WriteFrame(deadline, b, body[1:])
	}
	if err != nil {
		c.s.limited.Log(slog.LevelDebug, "write-"+c.p.id, "write failed", "peer", c.p.id, "remote", c.t.RemoteAddr(), "err", err)
	}
	return err
}
