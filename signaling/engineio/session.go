package engineio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

type state uint8

const (
	statePolling state = iota
	stateWebSocket
	stateClosed
)

// Session is one Engine.IO session: messages in (ReadMessage, from the
// handler's goroutine only), messages out (WriteText, WriteBinary, from
// any goroutine: writes are serialized), pings, close. It moves from
// long-polling to WebSocket when the client upgrades, without the handler
// noticing.
type Session struct {
	srv    *Server
	cfg    *Config // the server's when the session opened
	id     string
	query  string // the opening request's, parsed by Query when asked
	host   string
	remote string

	mu    sync.Mutex
	state state
	err   error // why it ended, once stateClosed
	// in holds messages from POSTs the handler has not read; a POST waits
	// until it is empty (drained closes), so one payload at most.
	in      []packet
	inWake  chan struct{} // cap 1: in grew, or the WebSocket took over; nil for a WebSocket session
	drained chan struct{} // closed when in empties; nil when nobody waits
	// out holds packets for the next poll; room closes when a poll takes
	// them, for writers waiting on a full buffer.
	out      []packet
	outBytes int
	room     chan struct{}
	polling  bool          // a GET is waiting
	pollWake chan struct{} // cap 1: out grew; nil for a WebSocket session
	posting  bool          // a POST is being read
	// upgrading: a WebSocket asked to take over; probed: it sent its probe,
	// so polls are answered at once (the client is pausing polling).
	upgrading, probed bool
	probeWS           *websocket.Conn
	ws                *websocket.Conn
	closed            chan struct{}
	expireAt          time.Time // ExpireWrites, for polling writes

	// Keepalive: a ping arms pongDue; a pong disarms it. Over WebSocket
	// pongDue is the connection's read deadline (the reader's blocked
	// read fails at it), so an idle session keeps no timer of its own;
	// over polling pongTimer ends the session.
	pingTimer, pongTimer *time.Timer
	// pingAt is when the server's next own ping is due (ManualPing
	// false); zero once it has been sent. The pong deadline counts from
	// it, not from when the timer ran: a timer late under load must not
	// give the client longer than pingInterval + pingTimeout, which is
	// what both sides take as the connection's end.
	pingAt  time.Time
	pongDue time.Time
	// watcher, once set (Watch, under mu), keeps the pong's deadline
	// over WebSocket in the owner's place: no read deadline is set.
	watcher Watcher
	// detached: the handler returned, and the owner ends the session
	// (Detach); only the handler's goroutine touches it.
	detached bool

	wmu sync.Mutex // serializes WebSocket writes
}

// Watcher is an owner that serves a session's WebSocket without a reader
// goroutine of its own (signaling's shared waiter, issue 15), and so keeps
// the heartbeat's deadline itself (Session.Watch).
type Watcher interface {
	// Ponged is called for each pong the client sends (on the goroutine
	// reading it): the owner's deadline for the next one moves on.
	Ponged()
	// Ended is called once when the session ends otherwise than through
	// its reads (the server closing, a pong timer armed while it polled,
	// a failed write), before its WebSocket closes: the owner, whose
	// reader may be waiting on the socket, ends its side. It must not
	// block.
	Ended()
}

// newSession makes the session a handshake opens, over polling or over
// WebSocket. A WebSocket session never polls, so it has no wake channels
// (signal on nil does nothing), and it keeps the query as its string:
// both would be held for its life (issue 15).
func newSession(srv *Server, r *http.Request, polling bool) *Session {
	s := &Session{
		srv:    srv,
		cfg:    srv.cfg.Load(),
		id:     newSID(),
		query:  r.URL.RawQuery,
		host:   r.Host,
		remote: r.RemoteAddr,
		closed: make(chan struct{}),
	}
	if polling {
		s.inWake = make(chan struct{}, 1)
		s.pollWake = make(chan struct{}, 1)
	}
	return s
}

// ID is the session id (the handshake's sid).
func (s *Session) ID() string { return s.id }

// Query is the query string of the request that opened the session,
// parsed anew on each call.
func (s *Session) Query() url.Values {
	q, _ := url.ParseQuery(s.query)
	return q
}

// Host is the Host header of the request that opened the session.
func (s *Session) Host() string { return s.host }

// RemoteAddr is the address of the client that opened the session.
func (s *Session) RemoteAddr() string { return s.remote }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.closed }

// Err says why the session ended; nil while it runs.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Transport names the session's current transport: "polling" or
// "websocket".
func (s *Session) Transport() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ws != nil {
		return "websocket"
	}
	return "polling"
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// ReadMessage returns the next message, its data in buf's storage (grown
// as needed) and whether it is binary. Pings, pongs and the other control
// packets are handled on the way. Once the session ended it returns the
// reason (ErrClientClosed for a client's goodbye). Only one goroutine may
// call it.
func (s *Session) ReadMessage(buf []byte) ([]byte, bool, error) {
	return s.readMessage(buf, nil)
}

// BufferPool lends ReadMessagePooled its buffers: Get returns an empty
// one, Put takes one back.
type BufferPool interface {
	Get() []byte
	Put(b []byte)
}

// ReadMessagePooled is ReadMessage with a buffer from pool, taken only once
// a message has arrived: a reader waiting for the next message holds none
// (issue 15: most sessions wait most of their life). The message's data is
// in a buffer of the pool's, the caller's to give back once done with it;
// a control packet read on the way gives its buffer back itself.
func (s *Session) ReadMessagePooled(pool BufferPool) ([]byte, bool, error) {
	return s.readMessage(nil, pool)
}

// readMessage is ReadMessage, reading into buf or, when buf is nil and
// pool is not, into a buffer of pool's.
func (s *Session) readMessage(buf []byte, pool BufferPool) ([]byte, bool, error) {
	return s.readMessageOnce(buf, pool, false)
}

// readMessageOnce is readMessage; with once (ReadWebSocketOnce) it
// returns nil data and no error at the upgrade and after a control
// packet, where readMessage reads on.
func (s *Session) readMessageOnce(buf []byte, pool BufferPool, once bool) ([]byte, bool, error) {
	for waited := false; ; waited = true {
		s.mu.Lock()
		if len(s.in) > 0 {
			p := s.in[0]
			s.in[0] = packet{}
			s.in = s.in[1:]
			if len(s.in) == 0 {
				s.in = nil
				if s.drained != nil {
					close(s.drained)
					s.drained = nil
				}
			}
			s.mu.Unlock()
			if buf == nil && pool != nil {
				buf = pool.Get()
			}
			return append(buf[:0], p.data...), p.binary, nil
		}
		switch s.state {
		case stateClosed:
			err := s.err
			s.mu.Unlock()
			return nil, false, err
		case stateWebSocket:
			ws := s.ws
			s.mu.Unlock()
			if once && waited {
				return nil, false, nil // upgraded while this waited
			}
			b, binary, err := s.readWS(ws, buf, pool)
			if err != nil {
				if s.end(err, typeClose, false) {
					return nil, false, err
				}
				continue // ended already: report the first reason
			}
			if b == nil {
				if once {
					return nil, false, nil
				}
				continue // a control packet
			}
			return b, binary, nil
		}
		s.mu.Unlock()
		select {
		case <-s.inWake:
		case <-s.closed:
		}
	}
}

// ReadWebSocketOnce is ReadMessagePooled for an owner that waits for input
// itself, on the socket under the session's WebSocket (signaling's idle
// reader, issue 15), or that would start to once the session has one:
// over WebSocket it reads exactly one frame, and when that was a control
// packet it handled (a pong, a ping it answered, a noop) it returns nil
// data and no error instead of reading on, so that the caller can go back
// to waiting. A session still polling waits for a POST's messages as
// ReadMessagePooled does, and returns nil data and no error once the
// upgrade to WebSocket is done, with no frame read from it yet.
func (s *Session) ReadWebSocketOnce(pool BufferPool) ([]byte, bool, error) {
	return s.readMessageOnce(nil, pool, true)
}

// Watch hands the session's heartbeat deadline over WebSocket to w, the
// owner (issue 15): from now on Ping sets no read deadline on the
// connection (a runtime timer change per ping and per pong), and a pong
// clears none; w.Ponged is called for each pong instead, and the owner ends
// the session when the client answers no ping within PingTimeout
// (TimeOut). A read deadline a ping set before is cleared. If the session
// has ended already, w.Ended is called at once.
func (s *Session) Watch(w Watcher) {
	s.mu.Lock()
	ended := s.state == stateClosed
	if !ended {
		s.watcher = w
		if s.ws != nil {
			_ = s.ws.NetConn().SetReadDeadline(time.Time{})
		}
	}
	s.mu.Unlock()
	if ended {
		w.Ended()
	}
}

// TakePong is a pong packet the owner read off the session's WebSocket
// itself (signaling's waiter takes a client's lone pongs below gorilla,
// at a frame boundary, issue 15): the session handles it as if it had
// read it.
func (s *Session) TakePong() { s.pong() }

// Queued reports whether messages a long-polling POST brought wait to be
// read (ReadMessage and the like return them first): a POST whose body
// came in while the session upgraded to a WebSocket leaves them there,
// and an owner that waits on the WebSocket's socket (Watch) sees nothing
// of them there.
func (s *Session) Queued() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.in) > 0
}

// TimeOut ends the session as a pong that did not come within PingTimeout
// does (ErrPingTimeout): for an owner that keeps the deadline (Watch).
func (s *Session) TimeOut() {
	s.end(ErrPingTimeout, typeClose, false)
}

// Heartbeat is the session's ping interval and ping timeout.
func (s *Session) Heartbeat() (interval, timeout time.Duration) {
	return s.cfg.PingInterval, s.cfg.PingTimeout
}

// Detach lets the handler return while the session goes on, served by
// its owner from elsewhere (signaling's shared waiter); the handler calls
// it before it returns. The owner calls done once when it is finished
// with the session, which then ends as on a handler's return (Close), and
// the server's Close, which waits for handlers, waits for that.
func (s *Session) Detach() (done func()) {
	s.detached = true
	return func() {
		_ = s.Close()
		s.srv.wg.Done()
	}
}

// WebSocket is the session's WebSocket connection, or nil while it polls
// or once it ended without one. Its reads are the session's (ReadMessage's);
// the owner may use what gorilla allows beside a reader and a writer:
// WriteControl, NetConn's deadlines.
func (s *Session) WebSocket() *websocket.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ws
}

// readWS reads one WebSocket frame, into buf or (buf nil) a buffer of
// pool's taken once the frame has come. It returns nil data for a control
// packet it handled; then, and on an error, a buffer it took is back in
// pool.
func (s *Session) readWS(ws *websocket.Conn, buf []byte, pool BufferPool) ([]byte, bool, error) {
	typ, r, err := ws.NextReader()
	if err != nil {
		return nil, false, s.readErr(err)
	}
	taken := buf == nil && pool != nil
	if taken {
		buf = pool.Get()
	}
	b := bytes.NewBuffer(buf[:0])
	_, err = b.ReadFrom(r)
	data := b.Bytes()
	if err != nil {
		if taken {
			pool.Put(data[:0])
		}
		return nil, false, s.readErr(err)
	}
	if typ == websocket.BinaryMessage {
		return data, true, nil
	}
	p, err := decodeText(data)
	if err == nil && !p.binary && p.typ == typeMessage {
		n := copy(data, data[1:])
		return data[:n], false, nil
	}
	// Not a message: the buffer is done with once the packet is handled.
	if taken {
		defer pool.Put(data[:0])
	}
	if err != nil || p.binary {
		return nil, false, ErrBadPacket
	}
	switch p.typ {
	case typePong:
		s.pong()
	case typePing:
		// A client's ping (protocol 3's direction; a v4 client only
		// probes) is answered at once.
		_ = s.writeWS(time.Now().Add(writeWait), typePong, p.data, nil, false)
	case typeClose:
		return nil, false, ErrClientClosed
	case typeNoop:
	default:
		return nil, false, ErrBadPacket
	}
	return nil, false, nil
}

// readErr is the reason a WebSocket read failed: ErrPingTimeout when it
// was the pong's deadline (Ping), the transport's error otherwise.
func (s *Session) readErr(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.mu.Lock()
		late := !s.pongDue.IsZero() && !time.Now().Before(s.pongDue)
		s.mu.Unlock()
		if late {
			return ErrPingTimeout
		}
	}
	return errTransport(err)
}

// poll answers a long-polling GET: with the packets waiting, or when one
// comes (engine.io-protocol "HTTP long-polling": the server holds the
// request until it has something to send).
func (s *Session) poll(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.checkPong()
	switch {
	case s.state == stateClosed:
		// A session the owner closed lingers until its last packets
		// are fetched.
		out := s.takeOut()
		s.mu.Unlock()
		s.srv.remove(s)
		if len(out) == 0 {
			WriteError(w, codeUnknownSID)
			return
		}
		writePoll(w, appendPayload(nil, out))
		return
	case s.state == stateWebSocket:
		s.mu.Unlock()
		WriteError(w, codeBadRequest)
		return
	case s.polling:
		s.mu.Unlock()
		s.end(ErrDuplicatePoll, typeClose, false)
		WriteError(w, codeBadRequest)
		return
	}
	if len(s.out) == 0 {
		s.polling = true
		var grace <-chan time.Time
	wait:
		for {
			if s.probed && grace == nil {
				// The client is pausing polling for the upgrade: a poll
				// it had in flight gets a noop soon, so that it can send
				// the upgrade packet; a poll sent after that packet (and
				// raced here ahead of it) sees the upgrade done. This
				// holds for a poll that was already waiting when the
				// probe came, too: the probe's wake-up alone does not
				// answer it, or a 5 right behind the probe would find
				// it answered with a noop (engine.io's server, too,
				// sends the noop on its 100 ms check, not at the probe).
				t := time.NewTimer(noopGrace)
				defer t.Stop()
				grace = t.C
			}
			s.mu.Unlock()
			select {
			case <-s.pollWake:
			case <-s.closed:
			case <-r.Context().Done():
			case <-grace:
				s.mu.Lock()
				break wait
			}
			s.mu.Lock()
			if len(s.out) > 0 || s.state != statePolling || !s.probed || r.Context().Err() != nil {
				break
			}
		}
		s.polling = false
		if s.state == stateWebSocket {
			s.mu.Unlock()
			WriteError(w, codeBadRequest)
			return
		}
	}
	out := s.takeOut()
	ended := s.state == stateClosed
	s.mu.Unlock()
	if ended {
		s.srv.remove(s)
	}
	switch {
	case len(out) > 0:
		writePoll(w, appendPayload(nil, out))
	case ended:
		writePoll(w, []byte{typeClose})
	default:
		// Released for the upgrade, or the client went away.
		writePoll(w, []byte{typeNoop})
	}
}

// noopGrace is how long a poll waits during an upgrade before it is
// answered with a noop (engine.io's server checks every 100 ms).
const noopGrace = 100 * time.Millisecond

// takeOut takes the packets waiting for a poll (mu held).
func (s *Session) takeOut() []packet {
	out := s.out
	s.out, s.outBytes = nil, 0
	if s.room != nil {
		close(s.room)
		s.room = nil
	}
	return out
}

// post reads a long-polling POST: a payload of packets from the client.
func (s *Session) post(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.checkPong()
	if s.state != statePolling {
		s.mu.Unlock()
		if s.state == stateClosed {
			WriteError(w, codeUnknownSID)
		} else {
			WriteError(w, codeBadRequest)
		}
		return
	}
	if s.posting {
		s.mu.Unlock()
		s.end(ErrOverlapPost, typeClose, false)
		WriteError(w, codeBadRequest)
		return
	}
	s.posting = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.posting = false
		s.mu.Unlock()
	}()

	// One payload of unread messages at most: a POST is read only once
	// the handler has read what the previous one brought. The previous
	// POST waited for that too, but its client may have given up on it
	// (closed the connection) and sent the next; without this wait each
	// such POST would add a payload to in, without bound.
	s.mu.Lock()
	for len(s.in) > 0 && s.state != stateClosed {
		if s.drained == nil {
			s.drained = make(chan struct{})
		}
		wait := s.drained
		s.mu.Unlock()
		select {
		case <-wait:
		case <-s.closed:
		case <-r.Context().Done():
			return // the client is gone; the session goes on
		}
		s.mu.Lock()
	}
	s.mu.Unlock()

	max := s.cfg.MaxPayload
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	if err != nil {
		s.end(errTransport(err), typeClose, false)
		WriteError(w, codeBadRequest)
		return
	}
	if len(body) > max {
		s.end(ErrTooLarge, typeClose, false)
		http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
		return
	}
	var msgs []packet
	var closing bool
	err = decodePayload(body, func(p packet) error {
		switch p.typ {
		case typeMessage:
			msgs = append(msgs, p)
		case typePong:
			s.pong()
		case typePing:
			s.queue(packet{typ: typePong, data: p.data})
		case typeClose:
			closing = true
			return io.EOF
		case typeNoop, typeUpgrade:
		default:
			return ErrBadPacket
		}
		return nil
	})
	if err == ErrBadPacket {
		s.end(ErrBadPacket, typeClose, false)
		WriteError(w, codeBadRequest)
		return
	}
	var wait chan struct{}
	s.mu.Lock()
	if len(msgs) > 0 && s.state != stateClosed {
		s.in = append(s.in, msgs...)
		if s.drained == nil {
			s.drained = make(chan struct{})
		}
		wait = s.drained
		signal(s.inWake)
	}
	s.mu.Unlock()
	if closing {
		// The messages before the close are read first; the pending
		// poll gets a noop (engine.io's polling onClose).
		if wait != nil {
			select {
			case <-wait:
			case <-s.closed:
			case <-r.Context().Done():
			}
		}
		// Kept a moment with its noop, for a poll the client sent
		// alongside (requests on two connections race).
		s.end(ErrClientClosed, typeNoop, true)
	} else if wait != nil {
		// One payload at a time: the next POST's packets queue behind
		// this one's only once the handler has read them.
		select {
		case <-wait:
		case <-s.closed:
		case <-r.Context().Done():
		}
	}
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, "ok")
}

// upgrade takes a WebSocket that names this session (engine.io-protocol
// "Upgrade"): the client sends "2probe", the server answers "3probe" and
// releases the waiting poll with a noop, the client sends "5", and from
// then on the WebSocket carries everything, starting with what was
// waiting for a poll.
func (s *Session) upgrade(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.state != statePolling || s.upgrading {
		s.mu.Unlock()
		// As engine.io's server: the WebSocket is accepted, then closed
		// (the session has, or is getting, a WebSocket already).
		if ws, err := s.srv.upgradeWS(s.cfg, w, r); err == nil {
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "already upgraded"), time.Now().Add(time.Second))
			_ = ws.Close()
		}
		return
	}
	s.upgrading = true
	s.mu.Unlock()
	ws, err := s.srv.upgradeWS(s.cfg, w, r)
	if err != nil {
		s.mu.Lock()
		s.upgrading = false
		s.mu.Unlock()
		return
	}
	ws.SetReadLimit(int64(s.cfg.MaxPayload))
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		_ = ws.Close()
		return
	}
	s.probeWS = ws
	s.mu.Unlock()
	if err := s.probe(ws); err != nil {
		_ = ws.Close()
		s.mu.Lock()
		s.upgrading, s.probed, s.probeWS = false, false, nil
		s.mu.Unlock()
		return
	}
	// Take over: what waits for a poll goes out first, on the WebSocket,
	// before any later write (writers wait for wmu).
	_ = ws.SetReadDeadline(time.Time{})
	s.wmu.Lock()
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		s.wmu.Unlock()
		_ = ws.Close()
		return
	}
	out := s.takeOut()
	s.state, s.ws, s.probeWS = stateWebSocket, ws, nil
	signal(s.inWake)
	signal(s.pollWake)
	s.mu.Unlock()
	var werr error
	for _, p := range out {
		if werr = s.writeWSLocked(time.Now().Add(writeWait), p.typ, p.data, nil, p.binary); werr != nil {
			break
		}
	}
	s.wmu.Unlock()
	if werr != nil {
		s.end(errTransport(werr), 0, false)
	}
}

// probe runs the upgrade's exchange on ws, up to the client's "5".
func (s *Session) probe(ws *websocket.Conn) error {
	_ = ws.SetReadDeadline(time.Now().Add(s.cfg.UpgradeTimeout))
	for {
		typ, b, err := ws.ReadMessage()
		if err != nil {
			return err
		}
		if typ != websocket.TextMessage {
			return ErrBadPacket
		}
		switch {
		case string(b) == "2probe":
			s.wmu.Lock()
			_ = ws.SetWriteDeadline(time.Now().Add(writeWait))
			err := ws.WriteMessage(websocket.TextMessage, []byte("3probe"))
			s.wmu.Unlock()
			if err != nil {
				return err
			}
			// The waiting poll is released, and later ones answered at
			// once, so the client can pause polling.
			s.mu.Lock()
			s.probed = true
			signal(s.pollWake)
			s.mu.Unlock()
		case string(b) == "5":
			s.mu.Lock()
			probed := s.probed
			s.mu.Unlock()
			if !probed {
				return ErrBadPacket
			}
			return nil
		case string(b) == "6":
		default:
			return ErrBadPacket
		}
	}
}

// WriteText sends a text message: head then body (head may be nil), so a
// caller can put a prefix in front of a body without copying it. It gives
// up at deadline (or at ExpireWrites's).
func (s *Session) WriteText(deadline time.Time, head, body []byte) error {
	return s.write(deadline, typeMessage, head, body, false)
}

// WriteBinary sends a binary message.
func (s *Session) WriteBinary(deadline time.Time, data []byte) error {
	return s.write(deadline, typeMessage, nil, data, true)
}

func (s *Session) write(deadline time.Time, typ byte, head, body []byte, binary bool) error {
	s.mu.Lock()
	for {
		switch s.state {
		case stateClosed:
			err := s.err
			s.mu.Unlock()
			return err
		case stateWebSocket:
			s.mu.Unlock()
			return s.writeWS(deadline, typ, head, body, binary)
		}
		// Polling: queue for the next poll, unless the client has not
		// fetched what waits already (maxPayload of it).
		n := len(head) + len(body)
		if s.outBytes == 0 || s.outBytes+n <= s.cfg.MaxPayload {
			data := make([]byte, 0, n)
			data = append(append(data, head...), body...)
			s.out = append(s.out, packet{typ: typ, binary: binary, data: data})
			s.outBytes += n + 1
			signal(s.pollWake)
			s.mu.Unlock()
			return nil
		}
		if s.room == nil {
			s.room = make(chan struct{})
		}
		room := s.room
		if !s.expireAt.IsZero() && s.expireAt.Before(deadline) {
			deadline = s.expireAt
		}
		s.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-room:
		case <-s.closed:
		case <-t.C:
			return ErrWriteTimeout
		}
		t.Stop()
		s.mu.Lock()
	}
}

// queue adds a control packet for the next poll, or sends it on the
// WebSocket.
func (s *Session) queue(p packet) {
	_ = s.write(time.Now().Add(writeWait), p.typ, nil, p.data, false)
}

func (s *Session) writeWS(deadline time.Time, typ byte, head, body []byte, binary bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeWSLocked(deadline, typ, head, body, binary)
}

// writeWSLocked writes one packet as one frame (wmu held).
func (s *Session) writeWSLocked(deadline time.Time, typ byte, head, body []byte, binary bool) error {
	s.mu.Lock()
	ws := s.ws
	if ws == nil {
		ws = s.probeWS // the take-over flush, before ws is set
	}
	s.mu.Unlock()
	if ws == nil {
		return ErrClosed
	}
	_ = ws.SetWriteDeadline(deadline)
	mt := websocket.TextMessage
	if binary {
		mt = websocket.BinaryMessage
	}
	w, err := ws.NextWriter(mt)
	if err != nil {
		return err
	}
	if !binary {
		_, err = w.Write([]byte{typ})
	}
	if err == nil && len(head) > 0 {
		_, err = w.Write(head)
	}
	if err == nil {
		_, err = w.Write(body)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

// Ping sends a ping; without a pong within PingTimeout the session ends
// with ErrPingTimeout. A ping while one is unanswered keeps the first's
// deadline.
func (s *Session) Ping(deadline time.Time) error {
	s.mu.Lock()
	if s.state == stateClosed {
		err := s.err
		s.mu.Unlock()
		return err
	}
	if s.pongDue.IsZero() {
		s.pongDue = time.Now().Add(s.cfg.PingTimeout)
		if !s.pingAt.IsZero() && s.pingAt.Before(time.Now()) {
			s.pongDue = s.pingAt.Add(s.cfg.PingTimeout)
		}
		s.pingAt = time.Time{}
		switch {
		case s.watcher != nil:
			// The owner keeps the deadline (Watch).
		case s.ws != nil:
			// The reader's read fails at the deadline and ends the
			// session (readErr); a pong clears it. Setting it on the
			// net.Conn is safe beside the blocked read.
			_ = s.ws.NetConn().SetReadDeadline(s.pongDue)
		case s.pongTimer == nil:
			s.pongTimer = time.AfterFunc(time.Until(s.pongDue), s.pongTimedOut)
		default:
			s.pongTimer.Reset(time.Until(s.pongDue))
		}
	}
	s.mu.Unlock()
	return s.write(deadline, typePing, nil, nil, false)
}

// autoPing is the server's own ping (Config.ManualPing false).
func (s *Session) autoPing() {
	_ = s.Ping(time.Now().Add(writeWait))
}

func (s *Session) pongTimedOut() {
	s.mu.Lock()
	late := !s.pongDue.IsZero() && !time.Now().Before(s.pongDue)
	s.mu.Unlock()
	if late {
		s.end(ErrPingTimeout, typeClose, false)
	}
}

// checkPong ends the session if its pong is overdue, should a request
// arrive before the timer has run (mu held; the end runs after).
func (s *Session) checkPong() {
	due := s.pongDue
	if due.IsZero() && !s.pingAt.IsZero() {
		// The ping's timer has not run yet (a loaded machine): the
		// deadline is what it would have set.
		due = s.pingAt.Add(s.cfg.PingTimeout)
	}
	if s.state != stateClosed && !due.IsZero() && !time.Now().Before(due) {
		s.mu.Unlock()
		s.end(ErrPingTimeout, typeClose, false)
		s.mu.Lock()
	}
}

func (s *Session) pong() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watcher != nil {
		// Any pong shows the client alive (engine.io's socket clears
		// its ping timeout on each).
		s.watcher.Ponged()
	}
	if s.pongDue.IsZero() {
		return
	}
	s.pongDue = time.Time{}
	if s.pongTimer != nil {
		s.pongTimer.Stop() // armed while polling, if the ping came before an upgrade
	}
	if s.ws != nil && s.watcher == nil {
		_ = s.ws.NetConn().SetReadDeadline(time.Time{})
	}
	if s.pingTimer != nil && s.state != stateClosed {
		s.pingAt = time.Now().Add(s.cfg.PingInterval)
		s.pingTimer.Reset(s.cfg.PingInterval)
	}
}

// ExpireWrites makes writes waiting or in progress give up at deadline.
func (s *Session) ExpireWrites(deadline time.Time) {
	s.mu.Lock()
	ws := s.ws
	s.expireAt = deadline
	if s.room != nil {
		close(s.room) // waiting writers recompute their deadline
		s.room = nil
	}
	s.mu.Unlock()
	if ws != nil {
		_ = ws.NetConn().SetWriteDeadline(deadline)
	}
}

// Close ends the session from the server's side: the client gets a close
// packet (over polling, with what was waiting for its next poll, which is
// kept for it a short while). Closing twice is harmless.
func (s *Session) Close() error {
	s.end(ErrClosed, typeClose, true)
	return nil
}

// Drop ends the session at once, telling the client nothing more.
func (s *Session) Drop() {
	s.end(ErrClosed, 0, false)
}

// lingerWait is how long a closed polling session keeps its last packets
// for a poll that has not come yet.
const lingerWait = 5 * time.Second

// end closes the session with reason err, telling a polling client with
// packet pkt (0: nothing). linger keeps the session's last packets for
// the client's next poll. It reports whether this call ended it.
func (s *Session) end(err error, pkt byte, linger bool) bool {
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		return false
	}
	s.state, s.err = stateClosed, err
	ws, probe, watcher := s.ws, s.probeWS, s.watcher
	if ws == nil && pkt != 0 {
		s.out = append(s.out, packet{typ: pkt})
	}
	if s.pingTimer != nil {
		s.pingTimer.Stop()
	}
	if s.pongTimer != nil {
		s.pongTimer.Stop()
	}
	lingering := linger && ws == nil && !s.polling && len(s.out) > 0
	if !lingering && !s.polling {
		s.out = nil // nobody will fetch them
	}
	if s.room != nil {
		close(s.room)
		s.room = nil
	}
	close(s.closed)
	s.mu.Unlock()
	if watcher != nil {
		// Before the WebSocket closes: the owner's reader may be
		// waiting on its socket, where a close shows nothing.
		watcher.Ended()
	}
	if lingering {
		time.AfterFunc(lingerWait, func() { s.srv.remove(s) })
	} else if !s.pollingNow() {
		s.srv.remove(s)
	}
	for _, c := range []*websocket.Conn{ws, probe} {
		if c == nil {
			continue
		}
		code := websocket.CloseNormalClosure
		switch {
		case errors.Is(err, ErrTooLarge):
			code = websocket.CloseMessageTooBig
		case errors.Is(err, ErrBadPacket):
			code = websocket.CloseProtocolError
		case errors.Is(err, ErrServerClosed):
			code = websocket.CloseGoingAway
		}
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
		_ = c.Close()
	}
	return true
}

// pollingNow reports whether a GET waits: it removes the session itself
// once it has answered (so a request after the close gets "Session ID
// unknown", never a session half gone).
func (s *Session) pollingNow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polling
}
