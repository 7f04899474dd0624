// Package engineio is an Engine.IO protocol 4 server: the transport under
// socket.io (github.com/socketio/engine.io-protocol). It owns the wire
// mechanics only: the handshake, HTTP long-polling with its batched
// payloads, WebSocket (gorilla/websocket), the upgrade from one to the
// other, server-driven ping/pong, close and the protocol's errors. Each
// session is handed to the owner's handler as a stream of messages; what
// the messages mean (socket.io packets, signaling) is the owner's.
//
// It imports nothing of icegate: the signaling package adapts a Session to
// its Transport, and the conformance harness (tools/sioconformance) serves
// it bare.
//
// Memory: a session costs no goroutine of its own. Its handler runs on one
// goroutine (the owner's reader); a long-polling session is otherwise
// fields and channels, woken by the HTTP requests that carry its packets;
// timers are time.AfterFunc, which hold no goroutine while they wait, and
// over WebSocket the pong's deadline is the connection's read deadline,
// so an idle WebSocket session holds no timer at all when its owner pings
// (ManualPing). An owner that waits for a WebSocket's input without a
// goroutine (signaling's shared epoll waiter) detaches the session from
// its handler (Session.Detach) and keeps the pong's deadline itself
// (Session.Watch): then nothing per session waits at all.
package engineio

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Config is a Server's settings. Zero values mean the defaults.
type Config struct {
	// PingInterval is how often the server pings; announced in the
	// handshake, the client closes the session when no ping comes for
	// PingInterval + PingTimeout. Default 25s (engine.io's).
	PingInterval time.Duration
	// PingTimeout is how long a pong may take; a session whose client does
	// not answer a ping within it is closed. Default 20s (engine.io's).
	PingTimeout time.Duration
	// MaxPayload caps a polling request's body and a WebSocket message, in
	// bytes; announced in the handshake. Larger ones close the session
	// (413 over polling, close code 1009 over WebSocket). Default 1000000
	// (engine.io's maxHttpBufferSize).
	MaxPayload int
	// ManualPing leaves the pings to the owner, who calls Session.Ping
	// every PingInterval (signaling's writer does, on its own ticker).
	// Default false: the server pings every PingInterval after the last
	// pong, as engine.io does.
	ManualPing bool
	// UpgradeTimeout bounds the upgrade from polling to WebSocket: the
	// probe and the upgrade packet must come within it. Default 10s
	// (engine.io's).
	UpgradeTimeout time.Duration
	// CheckOrigin decides a WebSocket's Origin (gorilla's Upgrader); nil
	// accepts any (the caller checks before calling ServeHTTP).
	CheckOrigin func(*http.Request) bool
	// Upgrade, when set, upgrades a request to a WebSocket in place of
	// up.Upgrade(w, r, nil), up being a copy of the server's Upgrader
	// (its origin check and buffers), so that the owner can have the
	// connection read through a net.Conn of its own (signaling's
	// idleConn, which lets an idle session's reader wait on the socket
	// itself; Session.WebSocket gives the connection back). It must
	// answer the client itself when it fails, as Upgrade does. Default
	// nil: the Upgrader's.
	Upgrade func(up websocket.Upgrader, w http.ResponseWriter, r *http.Request) (*websocket.Conn, error)
}

func (c Config) withDefaults() Config {
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 20 * time.Second
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = 1000000
	}
	if c.UpgradeTimeout <= 0 {
		c.UpgradeTimeout = 10 * time.Second
	}
	if c.CheckOrigin == nil {
		c.CheckOrigin = func(*http.Request) bool { return true }
	}
	return c
}

// Server serves Engine.IO sessions over HTTP. Mount it where the protocol
// is served (socket.io's is /socket.io/); every request it gets is an
// Engine.IO request. The zero value is not usable; call NewServer.
type Server struct {
	cfg     atomic.Pointer[Config]
	handler func(*Session)
	up      websocket.Upgrader

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool
	wg       sync.WaitGroup
}

// NewServer returns a Server that runs handler, on a goroutine of its own,
// for each new session; the session ends when handler returns (what it
// wrote still goes out).
func NewServer(cfg Config, handler func(*Session)) *Server {
	cfg = cfg.withDefaults()
	srv := &Server{
		handler: handler,
		up: websocket.Upgrader{
			// Small buffers: signaling messages are small and most
			// sessions idle (gorilla grows a write beyond the buffer
			// into more frames, and reads through it).
			ReadBufferSize:  1024,
			WriteBufferSize: 1024,
			WriteBufferPool: writePool,
			CheckOrigin:     cfg.CheckOrigin,
		},
		sessions: map[string]*Session{},
	}
	srv.cfg.Store(&cfg)
	return srv
}

// SetConfig applies new settings to the sessions opened from now on (each
// session keeps the ones its handshake announced). CheckOrigin is not
// changed: it is the one NewServer was given.
func (srv *Server) SetConfig(cfg Config) {
	cfg = cfg.withDefaults()
	srv.cfg.Store(&cfg)
}

// writePool lends WebSocket write buffers to writes only, so an idle
// connection holds none (gorilla's Upgrader.WriteBufferPool).
var writePool = &sync.Pool{}

// Error codes of the protocol's HTTP errors, as engine.io's server sends
// them ({"code":N,"message":…}, server.ts Server.errors).
const (
	codeUnknownTransport    = 0
	codeUnknownSID          = 1
	codeBadHandshakeMethod  = 2
	codeBadRequest          = 3
	codeForbidden           = 4
	codeUnsupportedProtocol = 5
)

var errorMessages = [...]string{
	codeUnknownTransport:    "Transport unknown",
	codeUnknownSID:          "Session ID unknown",
	codeBadHandshakeMethod:  "Bad handshake method",
	codeBadRequest:          "Bad request",
	codeForbidden:           "Forbidden",
	codeUnsupportedProtocol: "Unsupported protocol version",
}

// WriteError answers a request with the protocol's error code as
// engine.io's server does: 400 (403 for codeForbidden) and
// {"code":N,"message":…}. Exported for callers that refuse a request
// before it reaches the Server and want clients to read it the same way;
// code 4 (Forbidden) is the one they use.
func WriteError(w http.ResponseWriter, code int) {
	status := http.StatusBadRequest
	if code == codeForbidden {
		status = http.StatusForbidden
	}
	msg := ""
	if code >= 0 && code < len(errorMessages) {
		msg = errorMessages[code]
	}
	b, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// CodeForbidden is the error code for a request refused by policy.
const CodeForbidden = codeForbidden

// ServeHTTP implements http.Handler: the handshake, polling requests and
// WebSocket connections, told apart by the query (EIO, transport, sid).
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("EIO") != "4" {
		WriteError(w, codeUnsupportedProtocol)
		return
	}
	transport := q.Get("transport")
	if transport != "polling" && transport != "websocket" {
		WriteError(w, codeUnknownTransport)
		return
	}
	sid := q.Get("sid")
	if sid == "" {
		if transport == "polling" && r.Method != http.MethodGet {
			WriteError(w, codeBadHandshakeMethod)
			return
		}
		if transport == "websocket" && !websocket.IsWebSocketUpgrade(r) {
			WriteError(w, codeBadRequest)
			return
		}
		srv.handshake(w, r, transport)
		return
	}
	srv.mu.Lock()
	s := srv.sessions[sid]
	srv.mu.Unlock()
	if s == nil {
		WriteError(w, codeUnknownSID)
		return
	}
	switch {
	case transport == "websocket":
		if !websocket.IsWebSocketUpgrade(r) {
			WriteError(w, codeBadRequest)
			return
		}
		s.upgrade(w, r)
	case r.Method == http.MethodGet:
		s.poll(w, r)
	case r.Method == http.MethodPost:
		s.post(w, r)
	default:
		WriteError(w, codeBadRequest)
	}
}

// handshake opens a session (engine.io-protocol "Handshake"): over polling
// the open packet is the GET's answer; over WebSocket it is the first
// message, and the session has no upgrade to offer.
func (srv *Server) handshake(w http.ResponseWriter, r *http.Request, transport string) {
	s := newSession(srv, r, transport == "polling")
	open := s.openPacket(transport == "polling")
	if transport == "websocket" {
		ws, err := srv.upgradeWS(s.cfg, w, r)
		if err != nil {
			return // Upgrade answered the client
		}
		ws.SetReadLimit(int64(s.cfg.MaxPayload))
		s.state = stateWebSocket
		s.ws = ws
		if !srv.add(s) {
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "server closing"), time.Now().Add(time.Second))
			_ = ws.Close()
			return
		}
		s.wmu.Lock()
		_ = ws.SetWriteDeadline(time.Now().Add(writeWait))
		err = ws.WriteMessage(websocket.TextMessage, open)
		s.wmu.Unlock()
		if err != nil {
			s.end(errTransport(err), 0, false)
		}
		srv.start(s)
		return
	}
	if !srv.add(s) {
		http.Error(w, "server closing", http.StatusServiceUnavailable)
		return
	}
	writePoll(w, open)
	srv.start(s)
}

// upgradeWS upgrades r to a WebSocket, through cfg.Upgrade when set.
func (srv *Server) upgradeWS(cfg *Config, w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	if cfg.Upgrade != nil {
		return cfg.Upgrade(srv.up, w, r)
	}
	return srv.up.Upgrade(w, r, nil)
}

// writeWait bounds a write the server makes on its own (the open packet,
// a pong, the probe's answer).
const writeWait = 10 * time.Second

func (s *Session) openPacket(polling bool) []byte {
	upgrades := []string{}
	if polling {
		upgrades = []string{"websocket"}
	}
	b, _ := json.Marshal(struct {
		SID          string   `json:"sid"`
		Upgrades     []string `json:"upgrades"`
		PingInterval int64    `json:"pingInterval"`
		PingTimeout  int64    `json:"pingTimeout"`
		MaxPayload   int      `json:"maxPayload"`
	}{s.id, upgrades, s.cfg.PingInterval.Milliseconds(), s.cfg.PingTimeout.Milliseconds(), s.cfg.MaxPayload})
	return append([]byte{typeOpen}, b...)
}

// add registers s; false once the server is closed.
func (srv *Server) add(s *Session) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		return false
	}
	srv.sessions[s.id] = s
	srv.wg.Add(1)
	return true
}

// start runs the handler and the server's pings for s.
func (srv *Server) start(s *Session) {
	if !s.cfg.ManualPing {
		s.mu.Lock()
		s.pingAt = time.Now().Add(s.cfg.PingInterval)
		s.pingTimer = time.AfterFunc(s.cfg.PingInterval, s.autoPing)
		s.mu.Unlock()
	}
	go func() {
		srv.handler(s)
		if s.detached {
			return // the owner ends it (Detach's done)
		}
		_ = s.Close()
		srv.wg.Done()
	}()
}

// remove forgets s: requests naming its sid get "Session ID unknown".
func (srv *Server) remove(s *Session) {
	srv.mu.Lock()
	if srv.sessions[s.id] == s {
		delete(srv.sessions, s.id)
	}
	srv.mu.Unlock()
}

// Sessions returns the number of sessions the server knows.
func (srv *Server) Sessions() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return len(srv.sessions)
}

// Close ends every session and waits for their handlers to return.
func (srv *Server) Close() {
	srv.mu.Lock()
	srv.closed = true
	all := make([]*Session, 0, len(srv.sessions))
	for _, s := range srv.sessions {
		all = append(all, s)
	}
	srv.mu.Unlock()
	for _, s := range all {
		s.end(ErrServerClosed, typeClose, false)
	}
	srv.wg.Wait()
}

// newSID returns a random session id: 15 bytes, 20 characters of base64url
// (engine.io's base64id has the same length).
func newSID() string {
	b := make([]byte, 15)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// writePoll answers a polling GET with a payload.
func writePoll(w http.ResponseWriter, payload []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(len(payload)))
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(payload)
}

// Errors a session ends with (Session.Err, ReadMessage's error).
var (
	// ErrClientClosed: the client sent a close packet, or closed its
	// WebSocket with a close frame.
	ErrClientClosed = errors.New("engineio: the client closed the session")
	// ErrPingTimeout: no pong within PingTimeout of a ping.
	ErrPingTimeout = errors.New("engineio: ping timeout")
	// ErrClosed: the owner closed the session (Close).
	ErrClosed = errors.New("engineio: session closed")
	// ErrServerClosed: the server closed (Server.Close).
	ErrServerClosed = errors.New("engineio: server closed")
	// ErrDuplicatePoll: a second GET came while one was waiting, which
	// the protocol forbids.
	ErrDuplicatePoll = errors.New("engineio: overlapping poll requests")
	// ErrOverlapPost: a second POST came while one was being read.
	ErrOverlapPost = errors.New("engineio: overlapping post requests")
	// ErrTooLarge: a payload or message over MaxPayload.
	ErrTooLarge = errors.New("engineio: payload larger than maxPayload")
	// ErrWriteTimeout: a write could not be handed over before its
	// deadline (a polling client that stopped polling).
	ErrWriteTimeout = errors.New("engineio: write timed out")
)

// errTransport wraps a transport's own failure (a WebSocket read or write
// error, a broken connection).
func errTransport(err error) error {
	if errors.Is(err, io.EOF) {
		return ErrClientClosed
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ErrClientClosed
	}
	if errors.Is(err, websocket.ErrReadLimit) {
		return ErrTooLarge
	}
	return &TransportError{Err: err}
}

// TransportError is a session that ended because its transport failed.
type TransportError struct{ Err error }

func (e *TransportError) Error() string { return "engineio: transport error: " + e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }
