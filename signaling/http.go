package signaling

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/gorilla/websocket"

	"icegate/internal/fdcount"
)

// Handler returns the HTTP handler for every path icegate serves over HTTP:
//
//	GET /ws               the signaling WebSocket (docs/signaling.md)
//	GET /ws/simple        the classic tutorial protocol
//	    /socket.io/       socket.io v4 (Engine.IO polling and WebSocket, sio.go)
//	GET /socket.io/socket.io.js  the socket.io client library (sioclient.go)
//	GET /api/turn         TURN credentials, TURN REST API draft shape
//	GET /api/ice-servers  {"iceServers": [...]}, ready for new RTCPeerConnection
//	    /api/v1/...       the server API for an application's backend (api.go)
//	GET /icegate.js       the ES-module client for /ws (page.go)
//	GET /                 the test page (http.test_page)
//
// The Host check runs first, on every path (checkHost); origin and token
// checks run before a WebSocket upgrade and before the credential API
// answers; the server API checks its own keys.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) { s.serveWS(w, r, false) })
	mux.HandleFunc("GET /ws/simple", func(w http.ResponseWriter, r *http.Request) { s.serveWS(w, r, true) })
	mux.HandleFunc("/socket.io/", s.serveSocketIO)
	handleSIOClient(mux)
	mux.HandleFunc("/api/turn", s.serveTURN)
	mux.HandleFunc("/api/ice-servers", s.serveICEServers)
	mux.HandleFunc(apiPrefix, s.serveAPI)
	page := pageHandler()
	mux.HandleFunc("GET /icegate.js", clientHandler(page))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		if s.settings().NoTestPage {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		page.ServeHTTP(w, r)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.checkHost(r) {
			s.refuseHost(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// checkHost defends against DNS rebinding. A page on evil.example whose
// name the attacker re-points at this server's address is, to the browser,
// same-origin with evil.example: its requests reach us with Host and
// Origin both naming evil.example, so the origin check (which takes an
// Origin naming the request's own Host for the server's page) lets them
// through. Only the Host tells: it must be one of the names the server is
// known by (Config.Hosts, TURNHost, localhost). An IP address is always
// accepted, since rebinding needs a DNS name, and so is a request without
// Host, which no browser sends.
func (s *Server) checkHost(r *http.Request) bool {
	if r.Host == "" {
		return true
	}
	host := requestHost(r)
	if isIPHost(host) {
		return true
	}
	st := s.settings()
	return hostAllowed(st.Hosts, st.TURNHost, host)
}

// isIPHost reports whether the host part of a Host header is an IP
// address ("192.0.2.1", "::1"; requestHost strips IPv6's brackets).
func isIPHost(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// hostAllowed matches a Host's name (without port) against the names the
// server is known by. DNS names are case-insensitive and a trailing dot
// names the same host (RFC 1034 §3.1).
func hostAllowed(hosts []string, turnHost, host string) bool {
	host = strings.TrimSuffix(host, ".")
	if strings.EqualFold(host, "localhost") || (turnHost != "" && strings.EqualFold(host, strings.TrimSuffix(turnHost, "."))) {
		return true
	}
	for _, h := range hosts {
		h = strings.TrimSuffix(h, ".")
		switch suffix, wild := strings.CutPrefix(h, "*"); {
		case h == "*":
			return true
		case wild:
			// "*.example.com": any name under example.com, at any depth,
			// not example.com itself (as certificates and allowed_origins).
			if len(host) > len(suffix) && strings.EqualFold(host[len(host)-len(suffix):], suffix) {
				return true
			}
		case strings.EqualFold(h, host):
			return true
		}
	}
	return false
}

// refuseHost answers a request whose Host is not one of the server's
// names, saying what the operator sets when the name is theirs. RFC 9110
// §15.5.20: 421 "indicates that the request was directed at a server that
// is unable or unwilling to produce an authoritative response for the
// target URI"; a client may retry on another connection, which for a
// rebinding page never helps.
func (s *Server) refuseHost(w http.ResponseWriter, r *http.Request) {
	s.refuse(w, r, http.StatusMisdirectedRequest, "host",
		"host "+strconv.Quote(safeText(requestHost(r)))+" is not a name of this server: if clients reach it by that name, list the name in http.hosts (or set signaling.turn_host to it); this check keeps pages whose DNS name rebinds to this server's address out")
}

// checkOrigin applies signaling.allowed_origins to a browser's Origin. A
// request without Origin is not from a browser page and passes: the
// protection is against other sites' pages, which always send one.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	return originAllowed(s.settings().AllowedOrigins, origin, r.Host)
}

// originAllowed matches origin against allowed. The server's own origin
// (the Origin naming the host:port the request was sent to) is always
// allowed: it is the test page, and the Host check has made sure that
// host is one of the server's names, so a rebinding page cannot pass for
// it. An empty list also allows loopback origins.
func originAllowed(allowed []string, origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false
	}
	// Either scheme: behind a proxy that terminates TLS the page is
	// https:// while the request reaching us is plain HTTP.
	if strings.EqualFold(u.Host, host) {
		return true
	}
	if len(allowed) == 0 {
		switch strings.ToLower(u.Hostname()) {
		case "localhost", "127.0.0.1", "::1":
			return true
		}
		return false
	}
	for _, a := range allowed {
		if a == "*" || strings.EqualFold(a, origin) {
			return true
		}
		au, err := url.Parse(a)
		if err != nil || au.Scheme != u.Scheme || au.Port() != u.Port() {
			continue
		}
		if suffix, ok := strings.CutPrefix(au.Hostname(), "*"); ok &&
			strings.HasSuffix(strings.ToLower(u.Hostname()), strings.ToLower(suffix)) {
			return true
		}
	}
	return false
}

// tokenRules are the checks a token passes under the settings in force.
func (st *settings) tokenRules() TokenRules {
	return TokenRules{Secrets: st.TokenSecrets, Audience: st.TokenAudience, MaxLifetime: st.MaxTokenLifetime}
}

// verifyToken checks a token under the settings in force (secrets,
// audience, lifetime cap) at time now; the HTTP checks and a session's
// fresh token go through it alike.
func (s *Server) verifyToken(tok string, now time.Time) (*Claims, error) {
	return s.settings().tokenRules().Verify(tok, now)
}

// authorize checks the token, when tokens are required.
func (s *Server) authorize(r *http.Request) (*Claims, error) {
	if len(s.settings().TokenSecrets) == 0 {
		return nil, nil
	}
	tok := r.URL.Query().Get("token")
	if tok == "" {
		if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			tok = strings.TrimSpace(h)
		}
	}
	if tok == "" {
		return nil, ErrTokenMissing
	}
	return s.verifyToken(tok, time.Now())
}

// admit runs the checks shared by the WebSocket and the API, given the
// result of checkOrigin (computed once by the caller). It answers the
// request itself when it refuses.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, originOK bool) (*Claims, bool) {
	if !originOK {
		s.refuseOrigin(w, r)
		return nil, false
	}
	claims, err := s.authorize(r)
	if err != nil {
		reason := "token"
		if errors.Is(err, ErrTokenExpired) {
			reason = "token-expired"
		}
		s.refuse(w, r, http.StatusUnauthorized, reason, err.Error())
		return nil, false
	}
	return claims, true
}

// refuseOrigin answers a request whose Origin is not allowed.
func (s *Server) refuseOrigin(w http.ResponseWriter, r *http.Request) {
	s.refuse(w, r, http.StatusForbidden, "origin", "origin "+safeText(r.Header.Get("Origin"))+" is not allowed (signaling.allowed_origins)")
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, reason, msg string) {
	s.metrics.refused.WithLabelValues(reason).Inc()
	s.limited.Log(slog.LevelInfo, "refuse-"+reason, "request refused", "path", r.URL.Path,
		"remote", r.RemoteAddr, "status", status, "why", msg)
	writeJSON(w, status, map[string]string{"code": reason, "error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// requestHost is the host part of the Host the client used.
func requestHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		return h
	}
	return strings.Trim(r.Host, "[]")
}

// fdGuard is the Server's descriptor reserve (Config.DescriptorReserve).
type fdGuard = fdcount.Guard

// newFDGuard keeps s's DescriptorReserve in force (a reload changes it at
// once); between counts of /proc/self/fd the estimate follows s's open
// connections and socket.io sessions waiting for CONNECT.
func newFDGuard(s *Server) *fdGuard {
	return fdcount.New(func() int64 { return s.nconns.Load() + s.sioPending.Load() },
		func(int) int { return s.settings().DescriptorReserve })
}

// descriptorsLow reports whether a new connection would eat into
// signaling.descriptor_reserve, logging it (rate-limited) when it would.
func (s *Server) descriptorsLow(r *http.Request) bool {
	if !s.fds.Full(time.Now()) {
		return false
	}
	open, limit, reserve := s.fds.Last()
	s.limited.Log(slog.LevelWarn, "descriptors",
		"connection refused: open file descriptors are near the limit (signaling.descriptor_reserve keeps the rest for the relay, listeners, Redis and logs)",
		"remote", r.RemoteAddr, "open", open, "limit", limit, "reserve", reserve)
	return true
}

// refuseDescriptors answers a request refused by descriptorsLow. RFC
// 9110 §15.6.4: 503 is temporary, and Retry-After spreads the retries of a
// crowd refused together.
func (s *Server) refuseDescriptors(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	s.refuse(w, r, http.StatusServiceUnavailable, "descriptors",
		"server at its open file limit (signaling.descriptor_reserve): try again later or another server")
}

// refuseBusy answers a connection beyond Config.MaxOpening. RFC 9110
// §15.6.4: 503 is temporary; Retry-After 1 because a place frees within a
// bus operation or two, and a client that honours it spreads a crowd's
// retries.
func (s *Server) refuseBusy(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "1")
	s.refuse(w, r, http.StatusServiceUnavailable, "busy",
		"too many sessions opening at once (signaling.max_opening): try again in a second")
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, simple bool) {
	claims, ok := s.admit(w, r, s.checkOrigin(r))
	if !ok {
		return
	}
	if s.full() {
		s.refuse(w, r, http.StatusServiceUnavailable, "capacity", "too many connections (signaling.max_connections)")
		return
	}
	if s.descriptorsLow(r) {
		s.refuseDescriptors(w, r)
		return
	}
	q := r.URL.Query()
	opts := AcceptOptions{Claims: claims, Host: requestHost(r), Simple: simple, Resume: q.Get("resume")}
	if last := q.Get("last"); last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			s.refuse(w, r, http.StatusBadRequest, "bad-request", "last must be the last seq received")
			return
		}
		opts.LastSeq = n
	}
	// The place is held from here to the end of attach (serve gives it
	// back), so the check and the work it bounds cannot drift apart. When
	// none is free the request waits a moment for one (waitOpening).
	if !s.waitOpening(r.Context()) {
		s.refuseBusy(w, r)
		return
	}
	opts.opening = true
	up := websocket.Upgrader{
		// An idle connection keeps only its read buffer (wsReadBuffer):
		// larger frames are read through it all the same. Write buffers
		// are lent from a pool for one message (issue 15).
		// ReadBufferSize 0 with a hijacked reader larger than 256 bytes
		// makes gorilla read through that reader (hijackWriter's, of
		// wsReadBuffer bytes): the reader can then see whether a message
		// is buffered before it waits on the socket (idleconn.go).
		ReadBufferSize:  0,
		WriteBufferSize: 4096,
		WriteBufferPool: &wsWriteBuffers,
		// Checked above already; the same rule again in case this
		// Upgrader is ever reached another way.
		CheckOrigin: s.checkOrigin,
	}
	hw := &hijackWriter{ResponseWriter: w}
	ws, err := up.Upgrade(hw, r, nil)
	if err != nil {
		s.doneOpening()
		return // Upgrade answered the client.
	}
	// The connection is served on a goroutine of its own and the handler
	// returns: net/http then drops what it held for the request (its
	// 4 KiB bufio reader and writer, the request, its context), and the
	// handler goroutine's stack, grown by the request and (for HTTPS) the
	// TLS handshake, goes with it; the new goroutine starts small. The
	// server (not the request's context, which ends with the handler)
	// owns the connection: Close closes it.
	// The transport is made here, on the handler's goroutine that ends,
	// and serve is called directly: the connection's goroutine starts as
	// shallow as it can (see serve).
	t := s.newWSTransport(ws, hw.nc)
	// With the waiter, the goroutine only opens the connection (its
	// reading is the waiter's after): a handler's, whose stack is grown
	// already. Without, it is the connection's reader, and starts small.
	pooled := s.waiter() != nil && t.canWait()
	if !s.spawnOn(func() { s.serveWatched(t, &opts, opts.proto()) }, pooled) {
		s.doneOpening()
		_ = t.Close(closeGoingAway, ErrClosed.Error())
	}
}

// wsWriteBuffers lends gorilla/websocket its write buffers for the
// duration of one message (Upgrader.WriteBufferPool).
var wsWriteBuffers sync.Pool

// cors answers a preflight and sets the CORS headers for an allowed
// origin, given the result of checkOrigin. It reports whether the request
// is done.
func (s *Server) cors(w http.ResponseWriter, r *http.Request, originOK bool) bool {
	origin := r.Header.Get("Origin")
	if origin != "" && originOK {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Allow-Headers", "Authorization")
		h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
		h.Set("Access-Control-Max-Age", "600")
	}
	if r.Method == http.MethodOptions {
		if !originOK {
			s.refuseOrigin(w, r)
			return true
		}
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, OPTIONS")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"code": "method", "error": "use GET"})
		return true
	}
	return false
}

// apiUser picks the user part of minted credentials: the token's subject,
// else what the client asked for (the TURN REST API draft's username).
func apiUser(claims *Claims, asked string) (string, bool) {
	if claims != nil {
		return claims.Subject, true
	}
	if len(asked) > 128 || strings.IndexFunc(asked, unicode.IsControl) >= 0 {
		return "", false
	}
	return asked, true
}

// openAPI runs what both API handlers start with, in this order: the
// preflight, CORS headers and method (cors), the origin and the token
// (admit), check on the query when check is not nil, and the username
// (apiUser). The origin is checked once, for both cors and admit. When a
// step refuses, openAPI answers the request itself and returns false;
// otherwise it returns the user part of the credentials to mint. check
// returns "" to accept the query, else the reason for a 400.
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request, check func(url.Values) string) (string, bool) {
	originOK := s.checkOrigin(r)
	if s.cors(w, r, originOK) {
		return "", false
	}
	claims, ok := s.admit(w, r, originOK)
	if !ok {
		return "", false
	}
	q := r.URL.Query()
	if check != nil {
		if msg := check(q); msg != "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"code": "bad-request", "error": msg})
			return "", false
		}
	}
	user, ok := apiUser(claims, q.Get("username"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"code": "bad-request", "error": "username must be at most 128 bytes without control characters"})
		return "", false
	}
	return user, true
}

// serveTURN implements the TURN REST API draft
// (draft-uberti-behave-turn-rest-00 §2): GET ?service=turn&username=U gives
// {username, password, ttl, uris}.
func (s *Server) serveTURN(w http.ResponseWriter, r *http.Request) {
	user, ok := s.openAPI(w, r, func(q url.Values) string {
		if svc := q.Get("service"); svc != "" && svc != "turn" {
			return "service must be \"turn\""
		}
		return ""
	})
	if !ok {
		return
	}
	servers, exp, minted := s.iceServers(requestHost(r), user)
	if !minted && s.relayDraining() {
		// RFC 9110 §15.6.4: temporary; the operator undrains with SIGUSR1
		// again or the process is on its way out.
		w.Header().Set("Retry-After", "30")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"code": "draining",
			"error": "the relay is draining (refusing new allocations): try another server or later"})
		return
	}
	if !minted {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"code": "no-secret",
			"error": "no shared secret to mint with: set auth.secrets (static users cannot be handed out)"})
		return
	}
	var uris []string
	var username, password string
	for _, sv := range servers {
		uris = append(uris, sv.URLs...)
		if sv.Username != "" {
			username, password = sv.Username, sv.Credential
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"username": username, "password": password,
		"ttl": int(time.Until(exp) / time.Second), "uris": uris,
	})
}

// serveICEServers answers {"iceServers": [...]}, an RTCConfiguration a page
// can pass straight to new RTCPeerConnection. With RFC 5780 configured it
// also carries "natProbe", the stun: URLs of the server's two addresses
// (RTCPeerConnection ignores members it does not know).
func (s *Server) serveICEServers(w http.ResponseWriter, r *http.Request) {
	user, ok := s.openAPI(w, r, nil)
	if !ok {
		return
	}
	servers, _, _ := s.iceServers(requestHost(r), user)
	body := map[string]any{"iceServers": servers}
	if probe := s.settings().natProbe; probe != nil {
		body["natProbe"] = probe
	}
	writeJSON(w, http.StatusOK, body)
}
