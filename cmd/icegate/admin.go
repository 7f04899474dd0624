package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"icegate/signaling"
	"icegate/steer"
	"icegate/turn"
	usagerec "icegate/usage"
)

// The admin API: what an operator asks of one node, under /api/v1/admin/
// on the metrics listener, with the server API's keys (api.keys, as
// "Authorization: Bearer KEY"). docs/operations.md, "Admin API":
//
//	GET    /api/v1/admin/allocations[?user=&custom_id=&client=]
//	GET    /api/v1/admin/allocations/{id}
//	DELETE /api/v1/admin/allocations/{id}            kick one
//	DELETE /api/v1/admin/allocations?user=U          kick every allocation of a user
//	GET    /api/v1/admin/sessions                    signaling sessions in rooms (cluster-wide)
//	DELETE /api/v1/admin/sessions/{id}               end one
//	DELETE /api/v1/admin/sessions?user=SUB           end every session of a user
//	GET    /api/v1/admin/drain                       status
//	POST   /api/v1/admin/drain                       as SIGUSR1
//	POST   /api/v1/admin/undrain                     take it back
//	GET    /api/v1/admin/usage[?user=&custom_id=&from=&to=&step=&scope=]
//	GET    /api/v1/admin/nodes                       the cluster's nodes and their load

// adminAPI is the admin API's state: the parts it acts on.
type adminAPI struct {
	relay *turn.Server
	// hub is the signaling server, nil without HTTP.
	hub func() *signaling.Server
	// keys are api.keys in force (a reload changes them).
	keys func() []string
	// usage answers usage queries: this node's store, and the cluster's
	// Redis record when there is a cluster.
	usage usageQuery
	// drained is told of every change by drain and undrain (the systemd
	// STATUS line, as SIGUSR1 updates it); nil does nothing.
	drained func()
	// nodes returns the cluster's nodes as the steering directory last
	// read them (this one included); nil without a cluster.
	nodes func() []steer.Node
	log   *slog.Logger
}

// handler routes the admin API; every route checks the key first.
func (a *adminAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/admin/allocations", a.listAllocations)
	mux.HandleFunc("DELETE /api/v1/admin/allocations", a.kickUser)
	mux.HandleFunc("GET /api/v1/admin/allocations/{id}", a.showAllocation)
	mux.HandleFunc("DELETE /api/v1/admin/allocations/{id}", a.kickAllocation)
	mux.HandleFunc("GET /api/v1/admin/sessions", a.listSessions)
	mux.HandleFunc("DELETE /api/v1/admin/sessions", a.endUserSessions)
	mux.HandleFunc("DELETE /api/v1/admin/sessions/{id}", a.endSession)
	mux.HandleFunc("GET /api/v1/admin/drain", a.drainStatus)
	mux.HandleFunc("POST /api/v1/admin/drain", a.drain)
	mux.HandleFunc("POST /api/v1/admin/undrain", a.undrain)
	mux.HandleFunc("GET /api/v1/admin/usage", a.queryUsage)
	mux.HandleFunc("GET /api/v1/admin/nodes", a.listNodes)
	mux.HandleFunc("/api/v1/admin/", func(w http.ResponseWriter, r *http.Request) {
		adminError(w, http.StatusNotFound, "not-found", "no admin endpoint "+r.Method+" "+r.URL.Path+" (see docs/operations.md, \"Admin API\")")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys := a.keys()
		if len(keys) == 0 {
			adminError(w, http.StatusNotFound, "api-disabled", "the admin API is off: set api { keys = [\"…\"] } and reload")
			return
		}
		if !keyMatches(keys, r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="icegate"`)
			adminError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong \"Authorization: Bearer KEY\" (one of api.keys)")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// keyMatches reports whether r carries one of keys, comparing digests in
// constant time against every key (as the server API does).
func keyMatches(keys []string, r *http.Request) bool {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	cred = strings.TrimSpace(cred)
	if !ok || !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return false
	}
	got := sha256.Sum256([]byte(cred))
	match := 0
	for _, k := range keys {
		want := sha256.Sum256([]byte(k))
		match |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	return match == 1
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func adminError(w http.ResponseWriter, status int, code, msg string) {
	adminJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (a *adminAPI) listAllocations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	list := a.relay.Allocations(turn.AllocationFilter{User: q.Get("user"), CustomID: q.Get("custom_id"), Client: q.Get("client")})
	adminJSON(w, http.StatusOK, map[string]any{"allocations": list})
}

func (a *adminAPI) showAllocation(w http.ResponseWriter, r *http.Request) {
	info, ok := a.relay.Allocation(r.PathValue("id"))
	if !ok {
		adminError(w, http.StatusNotFound, "no-such-allocation", "no live allocation "+strconv.Quote(r.PathValue("id")))
		return
	}
	adminJSON(w, http.StatusOK, info)
}

func (a *adminAPI) kickAllocation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !a.relay.Kick(id, "admin API") {
		adminError(w, http.StatusNotFound, "no-such-allocation", "no live allocation "+strconv.Quote(id))
		return
	}
	a.log.Info("admin API: allocation kicked", "id", id, "remote", r.RemoteAddr)
	adminJSON(w, http.StatusOK, map[string]int{"kicked": 1})
}

func (a *adminAPI) kickUser(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if user == "" {
		adminError(w, http.StatusBadRequest, "bad-request", "name the user: DELETE /api/v1/admin/allocations?user=NAME (or one allocation by its id)")
		return
	}
	n := a.relay.KickUser(user, "admin API")
	a.log.Info("admin API: allocations of a user kicked", "user", user, "kicked", n, "remote", r.RemoteAddr)
	adminJSON(w, http.StatusOK, map[string]int{"kicked": n})
}

// signalingOr answers 404 when signaling is off.
func (a *adminAPI) signalingOr(w http.ResponseWriter) *signaling.Server {
	if a.hub != nil {
		if h := a.hub(); h != nil {
			return h
		}
	}
	adminError(w, http.StatusNotFound, "signaling-off", "signaling is off (http.listen = \"\")")
	return nil
}

func (a *adminAPI) listSessions(w http.ResponseWriter, r *http.Request) {
	h := a.signalingOr(w)
	if h == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var list []signaling.SessionInfo
	var err error
	if user := r.URL.Query().Get("user"); user != "" {
		var ids []string
		ids, err = h.SessionsOf(ctx, user)
		for _, id := range ids {
			list = append(list, signaling.SessionInfo{Member: signaling.Member{Peer: id, User: user}})
		}
	} else {
		list, err = h.Sessions(ctx)
	}
	if err != nil {
		adminError(w, http.StatusServiceUnavailable, "cluster-unavailable", err.Error())
		return
	}
	adminJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

func (a *adminAPI) endSession(w http.ResponseWriter, r *http.Request) {
	h := a.signalingOr(w)
	if h == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	id := r.PathValue("id")
	ok, err := h.EndSession(ctx, id, 0, "ended by an operator")
	switch {
	case err != nil:
		adminError(w, http.StatusServiceUnavailable, "cluster-unavailable", err.Error())
	case !ok:
		adminError(w, http.StatusNotFound, "no-such-session", "no session "+strconv.Quote(id))
	default:
		a.log.Info("admin API: session ended", "session", id, "remote", r.RemoteAddr)
		adminJSON(w, http.StatusOK, map[string]int{"ended": 1})
	}
}

func (a *adminAPI) endUserSessions(w http.ResponseWriter, r *http.Request) {
	h := a.signalingOr(w)
	if h == nil {
		return
	}
	user := r.URL.Query().Get("user")
	if user == "" {
		adminError(w, http.StatusBadRequest, "bad-request", "name the user: DELETE /api/v1/admin/sessions?user=SUB (or one session by its id)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	ids, err := h.SessionsOf(ctx, user)
	n := 0
	for _, id := range ids {
		if err != nil {
			break
		}
		var ok bool
		ok, err = h.EndSession(ctx, id, 0, "ended by an operator")
		if ok {
			n++
		}
	}
	if err != nil {
		adminError(w, http.StatusServiceUnavailable, "cluster-unavailable", err.Error())
		return
	}
	a.log.Info("admin API: sessions of a user ended", "user", user, "ended", n, "remote", r.RemoteAddr)
	adminJSON(w, http.StatusOK, map[string]int{"ended": n})
}

// drainState is the drain endpoints' answer.
type drainState struct {
	Draining    bool `json:"draining"`
	Allocations int  `json:"allocations"`
	// Changed is false when the server was already in that state.
	Changed *bool `json:"changed,omitempty"`
}

// nodeList is GET /api/v1/admin/nodes: scope "cluster" with every node's
// steering record (its TURN host and ports, allocations and capacity,
// relayed bit rate, CPU, draining, when it wrote it), or scope "node" and
// no nodes without a cluster (this node's own figures are on /metrics).
type nodeList struct {
	Scope string       `json:"scope"`
	Nodes []steer.Node `json:"nodes"`
}

func (a *adminAPI) listNodes(w http.ResponseWriter, _ *http.Request) {
	out := nodeList{Scope: scopeNode, Nodes: []steer.Node{}}
	if a.nodes != nil {
		out.Scope = scopeCluster
		for _, n := range a.nodes() {
			n.Nonce = "" // a credential of sorts for 300s: not for display
			out.Nodes = append(out.Nodes, n)
		}
	}
	adminJSON(w, http.StatusOK, out)
}

func (a *adminAPI) drainStatus(w http.ResponseWriter, _ *http.Request) {
	adminJSON(w, http.StatusOK, drainState{Draining: a.relay.Draining(), Allocations: a.relay.AllocationCount()})
}

func (a *adminAPI) drain(w http.ResponseWriter, r *http.Request) {
	changed := a.relay.StopAllocating()
	if changed && a.drained != nil {
		a.drained()
	}
	n := a.relay.AllocationCount()
	a.log.Info("admin API: draining: new allocations refused, live ones continue", "allocations", n, "was_draining", !changed, "remote", r.RemoteAddr)
	adminJSON(w, http.StatusOK, drainState{Draining: true, Allocations: n, Changed: &changed})
}

func (a *adminAPI) undrain(w http.ResponseWriter, r *http.Request) {
	changed, err := a.relay.ResumeAllocating()
	if err != nil {
		// The shutdown's drain is not taken back: its grace period
		// lets live allocations end, it does not invite new ones.
		adminError(w, http.StatusConflict, "shutting-down", "the server is shutting down: new allocations stay refused")
		return
	}
	if changed && a.drained != nil {
		a.drained()
	}
	n := a.relay.AllocationCount()
	a.log.Info("admin API: undrained: new allocations accepted again", "allocations", n, "was_draining", changed, "remote", r.RemoteAddr)
	adminJSON(w, http.StatusOK, drainState{Draining: false, Allocations: n, Changed: &changed})
}

// queryUsage answers a usage query: from and to are RFC 3339 times or
// durations back from now ("1h"); step a duration of whole minutes.
func (a *adminAPI) queryUsage(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Query()
	q := usagerec.Query{User: p.Get("user"), CustomID: p.Get("custom_id")}
	now := time.Now()
	var err error
	if q.From, err = parseWhen(p.Get("from"), now); err != nil {
		adminError(w, http.StatusBadRequest, "bad-request", "from: "+err.Error())
		return
	}
	if q.To, err = parseWhen(p.Get("to"), now); err != nil {
		adminError(w, http.StatusBadRequest, "bad-request", "to: "+err.Error())
		return
	}
	if s := p.Get("step"); s != "" {
		if q.Step, err = time.ParseDuration(s); err != nil || q.Step < time.Minute || q.Step%time.Minute != 0 {
			adminError(w, http.StatusBadRequest, "bad-request", "step: a whole number of minutes, like 1m or 1h")
			return
		}
	}
	scope := p.Get("scope")
	if scope != "" && scope != scopeNode && scope != scopeCluster {
		adminError(w, http.StatusBadRequest, "bad-request", "scope: node or cluster")
		return
	}
	if scope == scopeCluster && a.usage.cluster == nil {
		adminError(w, http.StatusBadRequest, "bad-request", "scope=cluster: this node has no cluster block")
		return
	}
	// The live allocations' traffic up to now, so the current minute is
	// complete (on this node; the others book theirs every minute).
	a.relay.FlushUsage()
	if scope == scopeNode || a.usage.cluster == nil {
		adminJSON(w, http.StatusOK, usageAnswer{Scope: scopeNode, Usage: a.usage.local.Query(q)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	rows, err := a.usage.clusterQuery(ctx, q)
	switch {
	case err == nil:
		adminJSON(w, http.StatusOK, usageAnswer{Scope: scopeCluster, Usage: rows})
	case scope == scopeCluster:
		adminError(w, http.StatusServiceUnavailable, "cluster-unavailable", err.Error())
	default:
		// Redis away: this node's own record, saying so, rather than
		// nothing; scope=cluster asks for an error instead.
		adminJSON(w, http.StatusOK, usageAnswer{Scope: scopeNode, Usage: a.usage.local.Query(q), ClusterError: err.Error()})
	}
}

// The usage answer's scopes: this node's record, or every node's.
const (
	scopeNode    = "node"
	scopeCluster = "cluster"
)

// usageAnswer is the usage query's answer.
type usageAnswer struct {
	// Scope says whose traffic the rows hold: "cluster" (every node's,
	// from Redis) or "node" (this node's own record).
	Scope string         `json:"scope"`
	Usage []usagerec.Row `json:"usage"`
	// ClusterError says why a cluster node answered from its own record.
	ClusterError string `json:"cluster_error,omitempty"`
}

var errWhen = errors.New("an RFC 3339 time (2026-12-07T10:00:00Z) or a duration back from now (90m)")

// parseWhen reads an RFC 3339 time or a duration before now; "" is zero.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, errWhen
}

// usageQuery is where usage queries are answered: this node's store, and
// the cluster's Redis record (nil without a cluster block).
type usageQuery struct {
	local   *usagerec.Store
	cluster *usagerec.Redis
}

// clusterQuery books this node's pending minutes into Redis, then reads
// every node's.
func (u usageQuery) clusterQuery(ctx context.Context, q usagerec.Query) ([]usagerec.Row, error) {
	if err := u.cluster.Flush(ctx); err != nil {
		return nil, err
	}
	return u.cluster.Query(ctx, q)
}

// usageHook books the relay's usage reports into sinks.
func usageHook(sinks ...usagerec.Sink) func([]turn.UsageReport) {
	return func(reports []turn.UsageReport) {
		for _, r := range reports {
			c := usagerec.Counters(r.Traffic)
			for _, s := range sinks {
				s.Add(r.Time, usagerec.Key{User: r.User, CustomID: r.CustomID}, c)
			}
		}
	}
}
