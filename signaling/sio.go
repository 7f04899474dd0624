package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"icegate/signaling/engineio"
	"icegate/signaling/socketio"
)

// socket.io on /socket.io/: the third protocol on the session core, for
// the clients people already have (docs/signaling.md, "socket.io"). The
// Engine.IO server (engineio) carries socket.io packets (socketio) as
// messages; sioTransport makes an Engine.IO session a Transport, and
// sioProto translates two event vocabularies into bus calls, and the
// session's logged /ws messages back into events:
//
//	rooms:   join(room) → joined(room, id); the others otherjoin(room, id)
//	         full(room, id) at capacity; message(room, data) → the others
//	         message(room, data); leave(room) → leaved(room, id), the
//	         others bye(room, id); a disconnect → bye(room, id)
//	codelab: "create or join"(room) → created(room, id) to the first,
//	         joined(room, id) to a later one and join(room) to those in;
//	         full(room); message(data) → the rest of the sender's rooms;
//	         bye(room) leaves; log([…]) diagnostics
//
// Both are served at once: their client events do not collide. Each
// client gets the replies of the vocabulary it speaks (sioProto.vocab).
// Acks are answered with the /ws ack or error object; ice-servers comes on
// connect, on renewal and on request.

// connectTimeout is how long a socket.io client has after the Engine.IO
// handshake to send its CONNECT packet (socket.io's connectTimeout is 45 s;
// its client sends CONNECT at once).
const connectTimeout = 10 * time.Second

// closeProtocolError ends a connection that broke the socket.io protocol
// (RFC 6455 section 7.4.1's 1002, as /ws would).
const closeProtocolError = 1002

// The vocabularies a socket.io client may speak.
const (
	vocabRooms   = 'r'
	vocabCodelab = 'c'
)

// binaryFrames is what the socket.io protocol asks of a Transport beyond
// text frames: whether the frame ReadFrame returned was binary (a
// socket.io attachment). Only sioTransport has it; the protocol asserts it,
// so the Transport interface stays as /ws needs it.
type binaryFrames interface {
	FrameBinary() bool
}

// sioTransport is an Engine.IO session as a Transport. A frame written may
// hold several socket.io packets separated by 0x1e, the record separator,
// which cannot occur in their JSON text (Engine.IO's polling payload relies
// on the same): each goes out as a message of its own.
type sioTransport struct {
	es     *engineio.Session
	binary bool
	// nc is the idleConn the session's WebSocket reads through, when it
	// opened over WebSocket through upgradeIdle (newSIOTransport); else
	// nil, and the reader uses ReadFrame. answerPing answers a
	// WebSocket ping on that connection.
	nc         *idleConn
	answerPing func(payload []byte)
	// c is the connection, once the waiter serves it (watched): the
	// session reports its pongs and its end to it (engineio.Watcher).
	c *conn
	// timedOut: the timer loop found the client silent past its
	// heartbeat (readTimedOut); Close ends the session as engine.io's
	// ping timeout.
	timedOut atomic.Bool
}

// watched implements watchable: Engine.IO's heartbeat deadline moves from
// the connection's read deadline to the timer loop, which keeps it on
// c.w.last, where Ponged stores each pong. A client must answer a ping
// within pingTimeout; pinged every pingInterval, one that answered the
// last is silent past pingInterval + pingTimeout only when it left the
// next unanswered for pingTimeout (engine.io's server: socket.ts clears
// its ping timeout on a pong, and on nothing else).
func (t *sioTransport) watched(c *conn) (*idleConn, time.Duration, bool) {
	t.c = c
	t.es.Watch(t)
	interval, timeout := t.es.Heartbeat()
	return t.nc, interval + timeout, true
}

// Ponged implements engineio.Watcher.
func (t *sioTransport) Ponged() { t.c.w.last.Store(time.Now().UnixNano()) }

// Ended implements engineio.Watcher: the session ended on its own (the
// server's Close, a failed write), and the connection, which may be
// waiting in the waiter, ends too, as its reader's read would have
// failed.
func (t *sioTransport) Ended() { t.c.kill(closeNormal, "") }

// pongTaken implements pongTaker: the waiter took an Engine.IO pong off
// the socket (skimPongs).
func (t *sioTransport) pongTaken() { t.es.TakePong() }

// queued implements pongTaker.
func (t *sioTransport) queued() bool { return t.es.Queued() }

// readTimedOut implements silenceNoter.
func (t *sioTransport) readTimedOut() { t.timedOut.Store(true) }

// ReadFrame implements Transport. Without a buffer given it reads into
// one from the frame pool, taken once a message has come, as wsTransport
// does: the reader gives it back once the message is handled, so an idle
// session holds none (issue 15).
func (t *sioTransport) ReadFrame(buf []byte, limit int) ([]byte, error) {
	var b []byte
	var binary bool
	var err error
	if buf == nil {
		// One frame at a time, so that the reader can look again
		// (canWait) once the session has upgraded to a WebSocket:
		// errIdle after a control packet, and at the upgrade; and none
		// once it can wait (upgraded before this was called), so that
		// the reader's own stack never reads a frame.
		if t.nc == nil && t.canWait() {
			return nil, errIdle
		}
		b, binary, err = t.es.ReadWebSocketOnce(frameBufPool{})
		if err == nil && b == nil {
			return nil, errIdle
		}
	} else {
		b, binary, err = t.es.ReadMessage(buf)
	}
	return t.frame(b, binary, err, limit)
}

// frame is ReadFrame's answer for what the session gave.
func (t *sioTransport) frame(b []byte, binary bool, err error, limit int) ([]byte, error) {
	if err != nil {
		switch {
		case errors.Is(err, engineio.ErrClientClosed):
			return nil, &CloseError{Code: closeNormal, Text: "client closed"}
		case errors.Is(err, engineio.ErrTooLarge):
			return nil, errors.Join(ErrReadLimit, err)
		}
		return nil, err
	}
	t.binary = binary
	if len(b) > limit {
		return b[:limit], ErrFrameTooLarge
	}
	return b, nil
}

// canWait implements idleReader: a session over a WebSocket made by
// upgradeIdle, with a raw socket under it. One that opened over polling
// cannot while it polls; its reader waits in ReadFrame for a POST's
// messages, which returns errIdle once the upgrade is done, and the
// reader asks again (conn.readLoop).
func (t *sioTransport) canWait() bool {
	if t.nc == nil {
		t.nc, t.answerPing = sioIdleConn(t.es)
	}
	return t.nc != nil && t.nc.raw != nil
}

// idle implements idleReader.
func (t *sioTransport) idle() *idleConn { return t.nc }

// waitInput implements idleReader.
func (t *sioTransport) waitInput() {
	t.nc.wait()
}

// readIdle implements idleReader, as wsTransport's does: WebSocket pings
// and pongs at the head of the input are taken by idleConn.skipControl,
// and an Engine.IO control packet (the client's pong "3" to the
// server's ping, a ping, a noop) by ReadWebSocketOnce, which then returns
// no message; either way, if nothing more is buffered, the short-lived
// goroutine ends instead of blocking, deep, for the next message. After
// each frame probe learns whether crypto/tls holds more, for the next
// wait.
func (t *sioTransport) readIdle(limit int) ([]byte, error) {
	if t.nc.skipControl(func() {}, t.answerPing) {
		t.nc.probe()
		if !t.nc.buffered() {
			return nil, errIdle
		}
	}
	b, binary, err := t.es.ReadWebSocketOnce(frameBufPool{})
	if err == nil {
		t.nc.probe()
		if b == nil {
			return nil, errIdle
		}
	}
	return t.frame(b, binary, err, limit)
}

// frameBufPool is the frame pool as Engine.IO's BufferPool.
type frameBufPool struct{}

func (frameBufPool) Get() []byte  { return getFrameBuf() }
func (frameBufPool) Put(b []byte) { putFrameBuf(b) }

// FrameBinary implements binaryFrames.
func (t *sioTransport) FrameBinary() bool { return t.binary }

// WriteFrame implements Transport.
func (t *sioTransport) WriteFrame(deadline time.Time, head, body []byte) error {
	if len(head) > 0 {
		return t.es.WriteText(deadline, head, body)
	}
	for {
		i := bytes.IndexByte(body, 0x1e)
		if i < 0 {
			return t.es.WriteText(deadline, nil, body)
		}
		if err := t.es.WriteText(deadline, nil, body[:i]); err != nil {
			return err
		}
		body = body[i+1:]
	}
}

// Ping implements Transport: an Engine.IO ping, answered within the
// announced pingTimeout or the session ends.
func (t *sioTransport) Ping(deadline time.Time) error { return t.es.Ping(deadline) }

// Close implements Transport. A close the client should not undo by
// reconnecting (a kick, a token that expired, too slow) first sends
// socket.io's DISCONNECT, which socket.io-client takes as "io server
// disconnect" and does not retry; a shutdown or capacity close does not,
// so the client reconnects, as it would to a /ws close code 1001 or 1013.
func (t *sioTransport) Close(code int, reason string) error {
	if t.timedOut.Load() {
		// A ping timeout (watch.go): the close engine.io makes, no
		// DISCONNECT, which would keep the client from reconnecting.
		t.es.TimeOut()
		return nil
	}
	if code == 0 {
		t.es.Drop()
		return nil
	}
	switch code {
	case closeGoingAway, closeServiceRestart, closeTryAgainLater:
	default:
		if reason != "bye" {
			_ = t.es.WriteText(time.Now().Add(time.Second), nil, []byte("41"))
		}
	}
	return t.es.Close()
}

// ExpireWrites implements Transport.
func (t *sioTransport) ExpireWrites(deadline time.Time) { t.es.ExpireWrites(deadline) }

// RemoteAddr implements Transport.
func (t *sioTransport) RemoteAddr() string { return t.es.RemoteAddr() }

// engineConfig is the Engine.IO side of st: the signaling writer pings
// every PingInterval (ManualPing), the client has pongWait (at most the
// interval) to answer, and messages up to the hard read limit are read.
func (st *settings) engineConfig(checkOrigin func(*http.Request) bool) engineio.Config {
	return engineio.Config{
		PingInterval: st.PingInterval,
		PingTimeout:  min(pongWait, st.PingInterval),
		MaxPayload:   int(st.hardReadLimit),
		ManualPing:   true,
		CheckOrigin:  checkOrigin,
		Upgrade:      upgradeIdle,
	}
}

// serveSocketIO answers /socket.io/: the client library, then the origin,
// capacity and query-token checks before a session opens (as /ws does
// before its upgrade), then Engine.IO.
func (s *Server) serveSocketIO(w http.ResponseWriter, r *http.Request) {
	originOK := s.checkOrigin(r)
	if origin := r.Header.Get("Origin"); origin != "" && originOK {
		// socket.io-client's long-polling from another origin uses
		// CORS (XHR with credentials off by default).
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
	}
	if !originOK {
		s.refuseOrigin(w, r)
		return
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	q := r.URL.Query()
	if q.Get("sid") == "" && q.Get("EIO") == "4" {
		if s.full() {
			s.refuse(w, r, http.StatusServiceUnavailable, "capacity", "too many connections (signaling.max_connections)")
			return
		}
		if s.descriptorsLow(r) {
			s.refuseDescriptors(w, r)
			return
		}
		if !s.waitOpeningFree(r.Context()) {
			s.refuseBusy(w, r)
			return
		}
		// A token in the query is checked now; one in the CONNECT
		// packet's auth when it comes (sioConnect).
		if tok := q.Get("token"); tok != "" && len(s.settings().TokenSecrets) > 0 {
			if _, err := s.verifyToken(tok, time.Now()); err != nil {
				reason := "token"
				if errors.Is(err, ErrTokenExpired) {
					reason = "token-expired"
				}
				s.refuse(w, r, http.StatusUnauthorized, reason, err.Error())
				return
			}
		}
	}
	s.eio.ServeHTTP(w, r)
}

// serveSIOSession runs one Engine.IO session: it waits for the socket.io
// CONNECT to the main namespace, checks its token, and serves the session
// core with sioProto until the connection ends.
func (s *Server) serveSIOSession(es *engineio.Session) {
	p := &sioProto{}
	// Counted from here until it connects (serve's enter counts it then)
	// or ends: without it, sessions that never send CONNECT would escape
	// max_connections. A handshake answered before this goroutine runs
	// is not counted yet, the same window /ws has between its capacity
	// check and enter.
	s.sioPending.Add(1)
	// The CONNECT is read and checked (JSON, the token) on a handler
	// goroutine, so that this one, the session's reader from here to
	// its end, starts serve with the 2 KiB stack it was given and waits
	// in it (issue 15; see serve). The handler is held until the CONNECT
	// comes, at most connectTimeout; socket.io's client sends it at once.
	var claims *Claims
	var ok bool
	s.shallow(func() { claims, ok = s.sioConnect(es, p) })
	s.sioPending.Add(-1)
	if !ok {
		return
	}
	s.serveSIO(newSIOTransport(es), &AcceptOptions{Claims: claims, Host: hostOf(es.Host())}, p)
}

// serveSIO serves a socket.io session's connection: on this goroutine,
// its reader, while it polls (ReadFrame waits for the POSTs' messages),
// and in the server's waiter once it is over a WebSocket with a raw
// socket (watch.go): at once when it opened over one, or when its
// upgrade is done (ReadFrame returns errIdle then, and readLoop hands
// it over). Frames that came behind the upgrade's "5", read ahead into
// gorilla's buffer or crypto/tls's, are handled at the hand-over
// (watchConn). This goroutine then ends; the Engine.IO session goes on
// (Detach) until the connection ends.
func (s *Server) serveSIO(t *sioTransport, opts *AcceptOptions, p protocol) {
	var c *conn
	var stop func() bool
	var err error
	s.shallow(func() { c, stop, err = s.open(context.Background(), t, opts, p) })
	if err != nil {
		return
	}
	pl := s.waiter()
	clean, waitable := c.readLoop(pl != nil)
	if waitable {
		done := t.es.Detach()
		s.watchConn(pl, c, t, func() bool {
			r := stop()
			done()
			return r
		})
		return
	}
	s.shallow(func() { s.teardown(c, clean) })
	stop()
	s.exit(c)
}

// sioConnect reads packets until the CONNECT to "/" (answering CONNECTs
// to other namespaces with an error, as socket.io's server does). It
// reports false when the session is to end: no CONNECT in time, a packet
// that breaks the protocol, or a token refused (told with CONNECT_ERROR).
func (s *Server) sioConnect(es *engineio.Session, p *sioProto) (*Claims, bool) {
	timer := time.AfterFunc(connectTimeout, es.Drop)
	defer timer.Stop()
	var buf []byte
	for {
		b, binary, err := es.ReadMessage(buf)
		if err != nil {
			return nil, false
		}
		buf = b
		pkt, err := p.dec.Decode(b, binary)
		if err != nil || (pkt != nil && pkt.Type != socketio.Connect) {
			s.metrics.messages.WithLabelValues("other", "socketio-protocol").Inc()
			es.Drop()
			return nil, false
		}
		if pkt == nil {
			continue
		}
		if pkt.Namespace != "/" {
			e := socketio.Packet{Type: socketio.ConnectError, Namespace: pkt.Namespace, Data: json.RawMessage(`{"message":"Invalid namespace"}`)}
			if es.WriteText(time.Now().Add(writeWait), nil, e.Append(nil)) != nil {
				return nil, false
			}
			continue
		}
		st := s.settings()
		if len(st.TokenSecrets) == 0 {
			return nil, true
		}
		var auth struct {
			Token string `json:"token"`
		}
		if pkt.Data != nil {
			_ = json.Unmarshal(pkt.Data, &auth)
		}
		tok := auth.Token
		if tok == "" {
			tok = es.Query().Get("token")
		}
		err = ErrTokenMissing
		if tok != "" {
			var c *Claims
			if c, err = s.verifyToken(tok, time.Now()); err == nil {
				return c, true
			}
		}
		reason := "token"
		if errors.Is(err, ErrTokenExpired) {
			reason = "token-expired"
		}
		s.metrics.refused.WithLabelValues(reason).Inc()
		body, _ := json.Marshal(map[string]any{"message": err.Error(), "data": map[string]string{"code": CodeBadToken}})
		e := socketio.Packet{Type: socketio.ConnectError, Data: body}
		_ = es.WriteText(time.Now().Add(writeWait), nil, e.Append(nil))
		_ = es.Close()
		return nil, false
	}
}

// hostOf is the host part of a Host header (requestHost for a stored one).
func hostOf(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// sioProto is the socket.io protocol of one connection. dec and rooms are
// the reader's; vocab is read by the writer too.
type sioProto struct {
	dec   socketio.Decoder
	rooms []string // rooms joined through this connection, in join order
	vocab atomic.Uint32
}

func (*sioProto) resumable() bool { return false }

// vocabulary is the vocabulary the client speaks: the rooms one until it
// joined (a 0 would put a NUL byte in the ack ids of sioID, which then
// fail to encode, so an event acked before a join got no ack).
func (p *sioProto) vocabulary() byte {
	if v := byte(p.vocab.Load()); v != 0 {
		return v
	}
	return vocabRooms
}

// greet answers the CONNECT with the socket.io session id (the peer id),
// followed by the ice-servers event, the /ws hello's iceServers, as a
// second packet of the greeting (0x1e between them, as render does). The
// greeting is written first and then dropped: the event is not logged on
// the bus, where a session that cannot resume would keep it for its
// whole life (issue 15).
func (p *sioProto) greet(c *conn, h *helloMsg) []byte {
	b, _ := json.Marshal(struct {
		SID string `json:"sid"`
	}{c.id})
	g := append([]byte{'0'}, b...) // CONNECT to "/"
	ice, _ := json.Marshal(struct {
		ICEServers any        `json:"iceServers"`
		Expires    *time.Time `json:"expires,omitempty"`
		TTL        int        `json:"ttl,omitempty"`
	}{h.ICEServers, h.Expires, h.TTL})
	pkt := socketio.Packet{Type: socketio.Event, Data: socketio.EventData("ice-servers", ice)}
	return pkt.Append(append(g, 0x1e))
}

func (p *sioProto) ended(*conn) {}

// sioICE is the ice-servers event's object: an RTCConfiguration's
// iceServers, and when the credentials in it expire. ID carries an ack.
type sioICE struct {
	Type       string          `json:"type"`
	ID         json.RawMessage `json:"id,omitempty"`
	ICEServers any             `json:"iceServers"`
	Expires    *time.Time      `json:"expires,omitempty"`
	TTL        int             `json:"ttl,omitempty"`
}

// sioID is the /ws message id a socket.io event travels with: the
// vocabulary it was spoken in and its ack id ("" for none), so the reply
// renders as that vocabulary's event and the ack.
func sioID(vocab byte, pkt *socketio.Packet) json.RawMessage {
	b := append([]byte(`"sio:`), vocab, ':')
	if pkt.HasID {
		b = strconv.AppendUint(b, pkt.ID, 10)
	}
	return append(b, '"')
}

// ackID is sioID, or nil when the event wants no ack (a message's ack is
// all its id is for).
func ackID(vocab byte, pkt *socketio.Packet) json.RawMessage {
	if !pkt.HasID {
		return nil
	}
	return sioID(vocab, pkt)
}

// peekID implements idPeeker: the ack id of a socket.io EVENT or
// BINARY_EVENT dropped unparsed (over messages_per_second, or cut at
// max_message_bytes), read from its header (type, attachment count,
// namespace, id: socket.io-protocol "Packet encoding"), so the refusal
// answers the client's ack as any other refusal does; without it an
// emitWithAck waits out its timeout. nil for other packets, binary frames
// and other namespaces.
func (p *sioProto) peekID(c *conn, b []byte) json.RawMessage {
	if bt, ok := c.t.(binaryFrames); ok && bt.FrameBinary() {
		return nil
	}
	if len(b) == 0 || (b[0] != '0'+byte(socketio.Event) && b[0] != '0'+byte(socketio.BinaryEvent)) {
		return nil
	}
	i := 1
	if b[0] == '0'+byte(socketio.BinaryEvent) {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == len(b) || b[i] != '-' {
			return nil
		}
		i++
	}
	if i < len(b) && b[i] == '/' {
		return nil // a namespace: only "/" is served, and it is not written
	}
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' && j-i < 19 {
		j++
	}
	if j == i || j == len(b) || b[j] != '[' {
		return nil
	}
	id, err := strconv.ParseUint(string(b[i:j]), 10, 64)
	if err != nil {
		return nil
	}
	return sioID(p.vocabulary(), &socketio.Packet{ID: id, HasID: true})
}

// parseSIOID reads sioID back.
func parseSIOID(id json.RawMessage) (vocab byte, ack uint64, hasAck, ok bool) {
	var s string
	if json.Unmarshal(id, &s) != nil || len(s) < 6 || !strings.HasPrefix(s, "sio:") || s[5] != ':' {
		return 0, 0, false, false
	}
	vocab = s[4]
	if s[6:] != "" {
		n, err := strconv.ParseUint(s[6:], 10, 64)
		if err != nil {
			return 0, 0, false, false
		}
		return vocab, n, true, true
	}
	return vocab, 0, false, true
}

// handle answers one socket.io packet (or one of its attachments).
func (p *sioProto) handle(c *conn, frame []byte, st *settings) {
	binary := false
	if bt, ok := c.t.(binaryFrames); ok {
		binary = bt.FrameBinary()
	}
	pkt, err := p.dec.Decode(frame, binary)
	if err != nil {
		// socket.io's server closes the connection on a packet it cannot
		// decode; so does this, and says why in the log and metrics.
		c.s.metrics.messages.WithLabelValues("other", "socketio-protocol").Inc()
		c.kill(closeProtocolError, "invalid socket.io packet")
		return
	}
	if pkt == nil {
		return
	}
	if pkt.Namespace != "/" {
		if pkt.Type == socketio.Connect {
			e := socketio.Packet{Type: socketio.ConnectError, Namespace: pkt.Namespace, Data: json.RawMessage(`{"message":"Invalid namespace"}`)}
			c.send(encode(sioRaw{Type: "socketio", Packet: string(e.Append(nil))}))
		}
		return
	}
	switch pkt.Type {
	case socketio.Disconnect:
		c.kill(closeNormal, "bye")
		return
	case socketio.Event, socketio.BinaryEvent:
	default:
		return // the server asks no acks; a second CONNECT changes nothing
	}
	name, args, _ := socketio.EventName(pkt.Data)
	if len(pkt.Attachments) > 0 {
		c.s.metrics.messages.WithLabelValues("other", CodeBadField).Inc()
		p.fail(c, pkt, name, perr(CodeBadField, "binary arguments are not relayed: send JSON (base64 for bytes)"))
		return
	}
	p.event(c, pkt, name, args, st)
}

// fail answers an event that could not be done: its ack when it has one,
// otherwise an "error" event.
func (p *sioProto) fail(c *conn, pkt *socketio.Packet, name string, e *protoError) {
	c.sendError(ackID(p.vocabulary(), pkt), name, e)
}

// stringArg returns args[i] when it is a JSON string.
func stringArg(args []json.RawMessage, i int) (string, bool) {
	if i >= len(args) {
		return "", false
	}
	var s string
	if json.Unmarshal(args[i], &s) != nil {
		return "", false
	}
	return s, true
}

// event maps one client event onto the session core.
func (p *sioProto) event(c *conn, pkt *socketio.Packet, name string, args []json.RawMessage, st *settings) {
	var outcome *protoError
	label := name
	switch name {
	case "join", "create or join":
		vocab := byte(vocabRooms)
		if name == "create or join" {
			vocab = vocabCodelab
		}
		p.vocab.Store(uint32(vocab))
		label = TypeJoin
		room, _ := stringArg(args, 0)
		m := &inbound{Type: TypeJoin, ID: sioID(vocab, pkt), Room: room, MaxPeers: st.SocketIORoomSize}
		if outcome = checkRoom(room); outcome == nil {
			outcome = c.join(m, st)
		}
		if outcome != nil && outcome.code == CodeRoomFull {
			// The vocabulary's own answer; the ack (if asked) carries the
			// error object as for any other refusal.
			full := socketio.EventData("full", mustJSON(room), mustJSON(c.id))
			if vocab == vocabCodelab {
				full = socketio.EventData("full", mustJSON(room))
			}
			pkt := socketio.Packet{Type: socketio.Event, Data: full}
			c.send(encode(sioRaw{Type: "socketio", Packet: string(pkt.Append(nil))}))
		}
		if outcome != nil {
			c.sendError(m.ID, TypeJoin, outcome)
		} else if !containsRoom(p.rooms, room) {
			p.rooms = append(p.rooms, room)
		}
	case "leave", "bye":
		label = TypeLeave
		room, _ := stringArg(args, 0)
		if name == "bye" && !containsRoom(p.rooms, room) {
			break // codelab's goodbye for a room it is not in: nothing to do
		}
		m := &inbound{Type: TypeLeave, ID: sioID(p.vocabulary(), pkt), Room: room}
		if outcome = checkRoom(room); outcome == nil {
			outcome = c.leave(m)
		}
		if outcome != nil {
			c.sendError(m.ID, TypeLeave, outcome)
		}
		p.rooms = removeRoom(p.rooms, room)
	case "message":
		label = TypeBroadcast
		// message(room, data) goes to that room; message(data) to the
		// sender's rooms.
		rooms := p.rooms
		var data json.RawMessage
		if room, ok := stringArg(args, 0); ok && len(args) >= 2 {
			rooms, data = []string{room}, args[1]
		} else if len(args) >= 1 {
			data = args[0]
		} else {
			data = json.RawMessage("null")
		}
		if len(rooms) == 0 {
			outcome = perr(CodeNotInRoom, "not in a room: join one first")
			p.fail(c, pkt, name, outcome)
			break
		}
		for _, room := range rooms {
			m := &inbound{Type: TypeBroadcast, ID: ackID(p.vocabulary(), pkt), Room: room, Data: data}
			if outcome = checkRoom(room); outcome == nil {
				outcome = c.broadcast(m)
			}
			if outcome != nil {
				c.sendError(m.ID, TypeBroadcast, outcome)
			}
		}
	case "ice-servers":
		label = TypeRenew
		servers, exp, ok := c.s.iceServers(c.host, c.id)
		msg := sioICE{Type: TypeICEServers, ID: ackID(p.vocabulary(), pkt), ICEServers: servers}
		if ok {
			msg.Expires, msg.TTL = &exp, int(time.Until(exp)/time.Second)
		}
		c.send(encode(msg))
	case "auth":
		label = TypeAuth
		tok, _ := stringArg(args, 0)
		m := &inbound{Type: TypeAuth, ID: ackID(p.vocabulary(), pkt), Token: tok}
		if tok == "" {
			outcome = perr(CodeBadField, "auth needs the token as its argument")
		} else {
			outcome = c.auth(m, st)
		}
		if outcome != nil {
			c.sendError(m.ID, TypeAuth, outcome)
		}
	default:
		label = "other"
		if pkt.HasID {
			outcome = perr(CodeUnknownType, "unknown event %q", safeText(name))
			p.fail(c, pkt, name, outcome)
		}
	}
	code := "ok"
	if outcome != nil {
		code = outcome.code
	}
	c.s.metrics.messages.WithLabelValues(label, code).Inc()
}

// mustJSON encodes a string.
func mustJSON(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

func containsRoom(rooms []string, r string) bool {
	for _, x := range rooms {
		if x == r {
			return true
		}
	}
	return false
}

func removeRoom(rooms []string, r string) []string {
	for i, x := range rooms {
		if x == r {
			return append(rooms[:i:i], rooms[i+1:]...)
		}
	}
	return rooms
}

// sioRaw is a socket.io packet queued as it is (a CONNECT_ERROR for a
// namespace this server does not have); only its own session logs it.
type sioRaw struct {
	Type   string `json:"type"`
	Packet string `json:"packet"`
}

// sioOut is what render reads of a logged /ws message.
type sioOut struct {
	Type     string          `json:"type"`
	ID       json.RawMessage `json:"id"`
	Room     string          `json:"room"`
	Peer     string          `json:"peer"`
	Peers    []string        `json:"peers"`
	From     string          `json:"from"`
	Data     json.RawMessage `json:"data"`
	Code     string          `json:"code"`
	Error    string          `json:"error"`
	Event    json.RawMessage `json:"event"`
	Packet   string          `json:"packet"`
	ICE      json.RawMessage `json:"iceServers"`
	ICEWS    json.RawMessage `json:"ice_servers"`
	Expires  json.RawMessage `json:"expires"`
	TTL      int             `json:"ttl"`
	FromUser string          `json:"from_user"`
}

// render turns a logged /ws message into socket.io packets, 0x1e between
// them (sioTransport.WriteFrame sends each as its own message).
func (p *sioProto) render(c *conn, _ uint64, body, _ []byte) ([]byte, []byte, bool) {
	if len(body) > 0 && body[0] != '{' {
		return nil, body, true // the greeting: a socket.io packet already
	}
	var m sioOut
	if json.Unmarshal(body, &m) != nil {
		return nil, nil, false
	}
	vocab, ack, hasAck, fromSIO := parseSIOID(m.ID)
	if !fromSIO {
		vocab = p.vocabulary()
	}
	var out []byte
	emit := func(name string, args ...json.RawMessage) {
		if len(out) > 0 {
			out = append(out, 0x1e)
		}
		pkt := socketio.Packet{Type: socketio.Event, Data: socketio.EventData(name, args...)}
		out = pkt.Append(out)
	}
	ackWith := func(obj []byte) {
		if !hasAck {
			return
		}
		if len(out) > 0 {
			out = append(out, 0x1e)
		}
		pkt := socketio.Packet{Type: socketio.Ack, ID: ack, HasID: true, Data: socketio.ArrayData(obj)}
		out = pkt.Append(out)
	}
	str := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	room, me := str(m.Room), str(c.id)
	switch m.Type {
	case TypeJoined:
		if vocab == vocabCodelab {
			if len(m.Peers) == 0 {
				emit("log", str("Client ID "+c.id+" created room "+m.Room))
				emit("created", room, me)
			} else {
				emit("log", str("Client ID "+c.id+" joined room "+m.Room))
				emit("joined", room, me)
			}
		} else {
			emit("joined", room, me)
		}
		ackWith(body)
	case TypePeerJoined:
		if vocab == vocabCodelab {
			emit("join", room)
		} else {
			emit("otherjoin", room, str(m.Peer))
		}
	case TypePeerLeft:
		emit("bye", room, str(m.Peer))
	case TypeLeft:
		emit("leaved", room, me)
		ackWith(body)
	case TypeBroadcast, TypeMessage, TypeOffer, TypeAnswer, TypeCandidate:
		if vocab == vocabCodelab || m.Room == "" {
			emit("message", m.Data)
		} else {
			emit("message", room, m.Data)
		}
	case TypeAck:
		ackWith(body)
	case TypeError:
		// A refused join was answered with full already (event).
		if !hasAck && (m.Code != CodeRoomFull || !fromSIO) {
			emit("error", body)
		}
		ackWith(body)
	case TypeICEServers:
		// /ws's ice_servers (a renewal) and the socket.io shape
		// (iceServers, as an RTCConfiguration names them) alike.
		ice := m.ICE
		if ice == nil {
			ice = m.ICEWS
		}
		obj := struct {
			ICEServers json.RawMessage `json:"iceServers"`
			Expires    json.RawMessage `json:"expires,omitempty"`
			TTL        int             `json:"ttl,omitempty"`
		}{ice, m.Expires, m.TTL}
		b, _ := json.Marshal(obj)
		emit("ice-servers", b)
		ackWith(b)
	case TypePush:
		if m.Room != "" {
			emit("push", m.Data, room)
		} else {
			emit("push", m.Data)
		}
	case TypeTURN:
		emit("turn", m.Event)
	case "socketio":
		out = append(out, m.Packet...)
	default:
		return nil, nil, false // pong, hello: nothing a socket.io client asked for
	}
	return nil, out, len(out) > 0
}
