package signaling

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The server API: what an application's backend asks of the signaling
// cluster, as goim's /push/* and Centrifugo's server API give it. Under
// /api/v1/, JSON in and out, authenticated with the keys of api.keys
// ("Authorization: Bearer KEY"). Every operation goes through the Bus, so
// any node answers for the whole cluster (docs/signaling.md, "Server API"):
//
//	POST /api/v1/push          {"room"|"peer"|"user": …, "data": any JSON}
//	POST /api/v1/disconnect    {"peer"|"user": …, "code": 4100-4999, "reason": …}
//	GET  /api/v1/rooms         rooms with their member counts and caps
//	GET  /api/v1/rooms/{room}  a room's members: peer, user, node, joined
//	GET  /api/v1/nodes         sessions per node
//	GET  /api/v1/users/{sub}   a user's session ids
//	POST /api/v1/turn/credentials {"ttl": s, "custom_identifier": …} → 201 {"iceServers": […]} (apiturn.go)

const apiPrefix = "/api/v1/"

// Bounds of the server API's requests.
const (
	// apiEnvelope is how much larger than signaling.max_message_bytes a
	// push's body may be: the "data" is bounded by that setting, the rest
	// of the body (the target) by this.
	apiEnvelope = 4096
	// apiBodyBytes bounds the body of a request that carries no data.
	apiBodyBytes = 4096
	// maxReasonBytes bounds a disconnect's reason: a WebSocket close frame
	// carries at most 123 bytes of reason (RFC 6455 §5.5: a control frame's
	// payload is at most 125 bytes, 2 of which are the code).
	maxReasonBytes = 120
	// maxUserBytes bounds a user id (a token's "sub") in a request.
	maxUserBytes = 1024
	// The close codes a disconnect may give: RFC 6455 §7.4.2 leaves
	// 4000-4999 to applications; 4000-4099 are this protocol's own
	// (closeReplaced), 4100-4999 the application's.
	minAppCloseCode     = 4100
	maxAppCloseCode     = 4999
	defaultAppCloseCode = 4100
)

// Error codes of the server API, in {"error":{"code":…,"message":…}}.
const (
	apiCodeDisabled     = "api-disabled"
	apiCodeUnauthorized = "unauthorized"
	apiCodeNotFound     = "not-found"
	apiCodeMethod       = "method-not-allowed"
	apiCodeMediaType    = "unsupported-media-type"
	apiCodeTooLarge     = "too-large"
	apiCodeBadRequest   = "bad-request"
	apiCodeNoSuchPeer   = "no-such-peer"
	apiCodeNoSuchRoom   = "no-such-room"
	apiCodeInternal     = "internal"
	apiCodeNoSecret     = "no-secret"
	apiCodeDraining     = "draining"
)

// apiError is an answer other than 200.
type apiError struct {
	status        int
	code, message string
}

func apiErr(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// busErr maps a bus error no endpoint expects: the cluster cannot be
// reached (503), or something else went wrong (500).
func busErr(err error) *apiError {
	if errors.Is(err, ErrUnavailable) {
		return apiErr(http.StatusServiceUnavailable, CodeClusterUnavailable, "the cluster is unavailable (%v): the request may have been carried out in part or not at all", err)
	}
	return apiErr(http.StatusInternalServerError, apiCodeInternal, "%v", err)
}

// apiEndpoint is one route of the server API.
type apiEndpoint struct {
	// name labels the metric and the log: push, disconnect, rooms, room,
	// nodes, user.
	name, method string
	// body bounds the request body; nil means the request has none.
	body  func(st *settings) int64
	serve func(s *Server, ctx context.Context, r *apiRequest) (any, *apiError)
}

// apiRequest is what an endpoint gets: the path's argument (the room or
// the user), the body, and the settings in force.
type apiRequest struct {
	arg  string
	body []byte
	st   *settings
}

var (
	epPush       = apiEndpoint{name: "push", method: http.MethodPost, serve: (*Server).apiPush, body: func(st *settings) int64 { return int64(st.MaxMessageBytes + apiEnvelope) }}
	epDisconnect = apiEndpoint{name: "disconnect", method: http.MethodPost, serve: (*Server).apiDisconnect, body: func(*settings) int64 { return apiBodyBytes }}
	epRooms      = apiEndpoint{name: "rooms", method: http.MethodGet, serve: (*Server).apiRooms}
	epRoom       = apiEndpoint{name: "room", method: http.MethodGet, serve: (*Server).apiRoom}
	epNodes      = apiEndpoint{name: "nodes", method: http.MethodGet, serve: (*Server).apiNodes}
	epUser       = apiEndpoint{name: "user", method: http.MethodGet, serve: (*Server).apiUser}
)

// route finds the endpoint of path (under apiPrefix) and its argument;
// nil for none.
func route(path string) (*apiEndpoint, string) {
	rest := strings.TrimPrefix(path, apiPrefix)
	switch {
	case rest == "push":
		return &epPush, ""
	case rest == "disconnect":
		return &epDisconnect, ""
	case rest == "rooms":
		return &epRooms, ""
	case strings.HasPrefix(rest, "rooms/"):
		return &epRoom, rest[len("rooms/"):]
	case rest == "nodes":
		return &epNodes, ""
	case strings.HasPrefix(rest, "users/"):
		return &epUser, rest[len("users/"):]
	case rest == "turn/credentials":
		return &epTURNCredentials, ""
	}
	return nil, ""
}

// serveAPI answers every request under /api/v1/: the keys, the route, the
// method, the body's type and size, then the endpoint. Every answer is
// JSON, counted by endpoint and status, and logged with the index of the
// key that authorized it (never the key).
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	st := s.settings()
	ep, arg := route(r.URL.Path)
	name := "other"
	if ep != nil {
		name = ep.name
	}
	key := -1
	res, aerr := s.apiAnswer(w, r, st, ep, arg, &key)
	status := http.StatusOK
	if c, ok := res.(*created); ok {
		status, res = http.StatusCreated, c.v
	}
	if aerr != nil {
		status = aerr.status
		res = map[string]any{"error": map[string]string{"code": aerr.code, "message": aerr.message}}
	}
	writeJSON(w, status, res)
	s.metrics.api.WithLabelValues(name, strconv.Itoa(status)).Inc()

	attrs := []any{"endpoint", name, "status", status, "key", key, "remote", r.RemoteAddr}
	switch {
	case aerr != nil && key < 0:
		// Without a key (or with the API off) anyone may send many:
		// rate-limited.
		s.limited.Log(slog.LevelInfo, "api-"+aerr.code, "server API request refused", append(attrs, "why", aerr.message)...)
	case aerr != nil:
		s.log.Info("server API", append(attrs, "code", aerr.code, "why", aerr.message)...)
	case ep.method == http.MethodPost:
		s.log.Info("server API", attrs...)
	default:
		s.log.Debug("server API", attrs...)
	}
}

// apiAnswer runs the checks in order and then the endpoint. It sets the
// headers a refusal needs (WWW-Authenticate, Allow) and *key to the index
// of the key that matched.
func (s *Server) apiAnswer(w http.ResponseWriter, r *http.Request, st *settings, ep *apiEndpoint, arg string, key *int) (any, *apiError) {
	if len(st.apiKeys) == 0 {
		return nil, apiErr(http.StatusNotFound, apiCodeDisabled,
			"the server API is off: set api { keys = [\"…\"] } in the config (each key at least %d random characters) and reload", MinAPIKeyBytes)
	}
	if *key = matchKey(st.apiKeys, r); *key < 0 {
		// RFC 6750 §3: a Bearer challenge, with invalid_token when a key
		// was sent and is not one of ours.
		challenge := `Bearer realm="icegate"`
		msg := "missing \"Authorization: Bearer KEY\" (one of api.keys)"
		if _, ok := bearer(r); ok {
			challenge += `, error="invalid_token"`
			msg = "the key is not one of api.keys"
		} else if keyInQuery(r) {
			msg += "; a key in the query string is never accepted, since URLs end up in logs"
		}
		w.Header().Set("WWW-Authenticate", challenge)
		return nil, apiErr(http.StatusUnauthorized, apiCodeUnauthorized, "%s", msg)
	}
	if ep == nil {
		return nil, apiErr(http.StatusNotFound, apiCodeNotFound, "no endpoint %s (see docs/signaling.md, \"Server API\")", safeText(r.URL.Path))
	}
	if r.Method != ep.method {
		w.Header().Set("Allow", ep.method)
		return nil, apiErr(http.StatusMethodNotAllowed, apiCodeMethod, "use %s for %s", ep.method, safeText(r.URL.Path))
	}
	req := &apiRequest{arg: arg, st: st}
	if ep.body != nil {
		if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
			return nil, apiErr(http.StatusUnsupportedMediaType, apiCodeMediaType, "the body must be JSON, sent with Content-Type: application/json (got %q)", safeText(ct))
		}
		limit := ep.body(st)
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, apiErr(http.StatusRequestEntityTooLarge, apiCodeTooLarge, "the body is larger than %d bytes (a push's data may be up to signaling.max_message_bytes, %d)", limit, st.MaxMessageBytes)
		case err != nil:
			return nil, apiErr(http.StatusBadRequest, apiCodeBadRequest, "reading the body: %v", err)
		}
		req.body = b
	}
	ctx, cancel := context.WithTimeout(r.Context(), busWait)
	defer cancel()
	return ep.serve(s, ctx, req)
}

// hashKeys digests the keys: compared as digests, keys of any length take
// the same time, so a timing never tells how long a key is.
func hashKeys(keys []string) [][sha256.Size]byte {
	out := make([][sha256.Size]byte, len(keys))
	for i, k := range keys {
		out[i] = sha256.Sum256([]byte(k))
	}
	return out
}

// matchKey returns the index of the key r's Authorization header carries,
// or -1. It compares against every key in constant time, and does not stop
// at a match, so the time taken tells nothing about which key, if any,
// matched.
func matchKey(keys [][sha256.Size]byte, r *http.Request) int {
	got, ok := bearer(r)
	if !ok {
		return -1
	}
	h := sha256.Sum256([]byte(got))
	found := -1
	for i := range keys {
		eq := subtle.ConstantTimeCompare(h[:], keys[i][:])
		found = subtle.ConstantTimeSelect(eq&subtle.ConstantTimeEq(int32(found), -1), i, found)
	}
	return found
}

// bearer returns the credentials of an "Authorization: Bearer …" header
// (RFC 6750 §2.1; the scheme is case-insensitive, RFC 9110 §11.1).
func bearer(r *http.Request) (string, bool) {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}

// keyInQuery reports whether the query looks like it carries a key, to
// say why it is not accepted.
func keyInQuery(r *http.Request) bool {
	q := r.URL.Query()
	for _, k := range []string{"key", "api_key", "apikey", "token", "access_token"} {
		if q.Has(k) {
			return true
		}
	}
	return false
}

// isJSON reports whether a Content-Type is JSON.
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// decodeBody decodes a request body into v: one JSON object, no field v
// does not have, nothing after it. The error names the field.
func decodeAPIBody(b []byte, v any) *apiError {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	err := d.Decode(v)
	if err == nil && d.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		// The target's fields are promoted from an embedded struct,
		// which encoding/json names in the path.
		return apiErr(http.StatusBadRequest, apiCodeBadRequest, "field %q must be a %s", strings.TrimPrefix(te.Field, "target."), te.Type.String())
	}
	return apiErr(http.StatusBadRequest, apiCodeBadRequest, "the body is not the JSON object this endpoint takes: %s", jsonErrText(err))
}

// target is the one of room, peer and user a request names.
type target struct {
	Room string `json:"room"`
	Peer string `json:"peer"`
	User string `json:"user"`
}

// check accepts exactly one target, well-formed, among the allowed kinds.
func (t *target) check(room bool) *apiError {
	n := 0
	for _, f := range []string{t.Room, t.Peer, t.User} {
		if f != "" {
			n++
		}
	}
	want := `"peer" or "user"`
	if room {
		want = `"room", "peer" or "user"`
	}
	switch {
	case n != 1:
		return apiErr(http.StatusBadRequest, apiCodeBadRequest, "name exactly one of %s", want)
	case t.Room != "" && !room:
		return apiErr(http.StatusBadRequest, apiCodeBadRequest, "field \"room\": name %s", want)
	case t.Room != "":
		if e := checkRoom(t.Room); e != nil {
			return apiErr(http.StatusBadRequest, apiCodeBadRequest, "field \"room\": %s", e.msg)
		}
	case t.Peer != "" && len(t.Peer) > maxPeerBytes:
		return apiErr(http.StatusBadRequest, apiCodeBadRequest, "field \"peer\": a peer id is at most %d bytes", maxPeerBytes)
	case t.User != "":
		if e := checkUser(t.User); e != nil {
			return e
		}
	}
	return nil
}

// checkUser accepts a user id as a token's "sub" may be.
func checkUser(u string) *apiError {
	if len(u) > maxUserBytes || !utf8.ValidString(u) {
		return apiErr(http.StatusBadRequest, apiCodeBadRequest, "user: at most %d bytes of UTF-8", maxUserBytes)
	}
	return nil
}

// pushRequest is POST /api/v1/push.
type pushRequest struct {
	target
	Data json.RawMessage `json:"data"`
}

// pushResult counts the sessions a push reached: delivered (logged for
// them, so a held one gets it when it resumes) and dropped (held with a
// full queue). Sessions counts a user's sessions.
type pushResult struct {
	Delivered int  `json:"delivered"`
	Dropped   int  `json:"dropped"`
	Sessions  *int `json:"sessions,omitempty"`
}

// apiPush sends {"type":"push",…} to a room's members, a peer, or every
// session of a user. It is logged like every server message: it has a seq
// and a resume replays it.
func (s *Server) apiPush(ctx context.Context, r *apiRequest) (any, *apiError) {
	var p pushRequest
	if e := decodeAPIBody(r.body, &p); e != nil {
		return nil, e
	}
	if e := p.check(true); e != nil {
		return nil, e
	}
	switch {
	case len(p.Data) == 0:
		return nil, apiErr(http.StatusBadRequest, apiCodeBadRequest, "field \"data\" is missing (any JSON value)")
	case len(p.Data) > r.st.MaxMessageBytes:
		return nil, apiErr(http.StatusRequestEntityTooLarge, apiCodeTooLarge, "field \"data\" is %d bytes, more than signaling.max_message_bytes (%d)", len(p.Data), r.st.MaxMessageBytes)
	}
	body := encode(pushMsg{Type: TypePush, Room: p.Room, Data: p.Data})
	var res pushResult
	switch {
	case p.Room != "":
		d, x, err := s.bus.Broadcast(ctx, BroadcastRequest{Room: p.Room, Body: body})
		if err != nil {
			return nil, busErr(err)
		}
		if d+x == 0 {
			return nil, apiErr(http.StatusNotFound, apiCodeNoSuchRoom, "room %q has no members", p.Room)
		}
		res.Delivered, res.Dropped = d, x
	case p.Peer != "":
		switch err := s.bus.Push(ctx, p.Peer, body); {
		case err == nil:
			res.Delivered = 1
		case errors.Is(err, ErrQueueFull):
			res.Dropped = 1
		case errors.Is(err, ErrUnknownSession):
			return nil, apiErr(http.StatusNotFound, apiCodeNoSuchPeer, "no peer %s", safeText(p.Peer))
		default:
			return nil, busErr(err)
		}
	default:
		ids, err := s.bus.SessionsOf(ctx, p.User)
		if err != nil {
			return nil, busErr(err)
		}
		n := len(ids)
		res.Sessions = &n
		for _, id := range ids {
			switch err := s.bus.Push(ctx, id, body); {
			case err == nil:
				res.Delivered++
			case errors.Is(err, ErrQueueFull):
				res.Dropped++
			case errors.Is(err, ErrUnknownSession):
				// Ended since it was listed: it needs nothing.
			default:
				return nil, busErr(err)
			}
		}
	}
	return res, nil
}

// disconnectRequest is POST /api/v1/disconnect.
type disconnectRequest struct {
	target
	Code   *int   `json:"code"`
	Reason string `json:"reason"`
}

// apiDisconnect ends a peer's session, or every session of a user, for
// good: its connection closes with the code and reason given, it cannot
// resume, and the others in its rooms get peer-left. A held session (its
// connection dropped) ends too.
func (s *Server) apiDisconnect(ctx context.Context, r *apiRequest) (any, *apiError) {
	var d disconnectRequest
	if e := decodeAPIBody(r.body, &d); e != nil {
		return nil, e
	}
	if e := d.check(false); e != nil {
		return nil, e
	}
	code := defaultAppCloseCode
	if d.Code != nil {
		code = *d.Code
	}
	switch {
	case code < minAppCloseCode || code > maxAppCloseCode:
		return nil, apiErr(http.StatusBadRequest, apiCodeBadRequest, "field \"code\": %d is not an application close code (%d-%d)", code, minAppCloseCode, maxAppCloseCode)
	case len(d.Reason) > maxReasonBytes:
		return nil, apiErr(http.StatusBadRequest, apiCodeBadRequest, "field \"reason\": %d bytes, more than %d (a close frame's limit)", len(d.Reason), maxReasonBytes)
	case strings.IndexFunc(d.Reason, unicode.IsControl) >= 0:
		return nil, apiErr(http.StatusBadRequest, apiCodeBadRequest, "field \"reason\": control characters")
	}
	ids := []string{d.Peer}
	if d.User != "" {
		var err error
		if ids, err = s.bus.SessionsOf(ctx, d.User); err != nil {
			return nil, busErr(err)
		}
	}
	n := 0
	for _, id := range ids {
		ended, err := s.endSession(ctx, id, code, d.Reason)
		if err != nil {
			return nil, busErr(err)
		}
		if ended {
			n++
		}
	}
	if d.Peer != "" && n == 0 {
		return nil, apiErr(http.StatusNotFound, apiCodeNoSuchPeer, "no peer %s", safeText(d.Peer))
	}
	return map[string]int{"disconnected": n}, nil
}

// endSession closes session id's connection, wherever it is, with code
// and reason, and removes the session (Bus.Kick, then Bus.Remove: a held
// session has no connection to close but is removed all the same). It
// reports false for a session that does not exist.
func (s *Server) endSession(ctx context.Context, id string, code int, reason string) (bool, error) {
	switch err := s.bus.Kick(ctx, id, code, reason); {
	case errors.Is(err, ErrUnknownSession):
		return false, nil
	case err != nil:
		return false, err
	}
	// Epoch 0: whichever connection holds it now, also one that resumed
	// between the two calls.
	if err := s.bus.Remove(ctx, id, 0); err != nil {
		return false, err
	}
	return true, nil
}

// apiRooms lists the rooms.
func (s *Server) apiRooms(ctx context.Context, _ *apiRequest) (any, *apiError) {
	rooms, err := s.bus.Rooms(ctx)
	if err != nil {
		return nil, busErr(err)
	}
	return map[string]any{"rooms": rooms}, nil
}

// apiRoom lists a room's members.
func (s *Server) apiRoom(ctx context.Context, r *apiRequest) (any, *apiError) {
	if e := checkRoom(r.arg); e != nil {
		return nil, apiErr(http.StatusBadRequest, apiCodeBadRequest, "the room in the path: %s", e.msg)
	}
	members, err := s.bus.Members(ctx, r.arg)
	if err != nil {
		return nil, busErr(err)
	}
	if len(members) == 0 {
		return nil, apiErr(http.StatusNotFound, apiCodeNoSuchRoom, "room %q has no members", r.arg)
	}
	return map[string]any{"room": r.arg, "members": members}, nil
}

// nodeCount is one node in GET /api/v1/nodes.
type nodeCount struct {
	Node     string `json:"node"`
	Sessions int    `json:"sessions"`
}

// apiNodes counts the sessions each node holds, and the held ones.
func (s *Server) apiNodes(ctx context.Context, _ *apiRequest) (any, *apiError) {
	counts, err := s.bus.Counts(ctx)
	if err != nil {
		return nil, busErr(err)
	}
	nodes := make([]nodeCount, 0, len(counts))
	for n, c := range counts {
		if n != "" {
			nodes = append(nodes, nodeCount{Node: n, Sessions: c})
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Node < nodes[j].Node })
	return map[string]any{"node": s.bus.NodeID(), "nodes": nodes, "held": counts[""]}, nil
}

// apiUser lists a user's sessions; a user without any has an empty list.
func (s *Server) apiUser(ctx context.Context, r *apiRequest) (any, *apiError) {
	if r.arg == "" {
		return nil, apiErr(http.StatusBadRequest, apiCodeBadRequest, "name the user: /api/v1/users/{sub}")
	}
	if e := checkUser(r.arg); e != nil {
		return nil, e
	}
	ids, err := s.bus.SessionsOf(ctx, r.arg)
	if err != nil {
		return nil, busErr(err)
	}
	return map[string]any{"user": r.arg, "sessions": ids}, nil
}
