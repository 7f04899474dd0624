package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Server API keys for the tests: 32 bytes and more, as config demands.
const (
	apiKey  = "api-key-0123456789abcdef0123456789"
	apiKey2 = "api-key-second-0123456789abcdef0123"
)

// apiServer starts a Server with the server API on (apiKey, apiKey2) over
// HTTP.
func apiServer(t *testing.T, mutate func(*Config)) (*Server, *httptest.Server) {
	t.Helper()
	return httpServer(t, func(c *Config) {
		c.APIKeys = []string{apiKey, apiKey2}
		if mutate != nil {
			mutate(c)
		}
	})
}

// apiResp is one answer of the server API.
type apiResp struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// errCode is the answer's {"error":{"code":…}}.
func (r apiResp) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	return str(e["code"])
}

func (r apiResp) errMessage() string {
	e, _ := r.body["error"].(map[string]any)
	return str(e["message"])
}

// call sends one request to the server API with key (none when "") and a
// JSON body (none when ""), and decodes the answer, which must be JSON.
func call(t *testing.T, hs *httptest.Server, method, path, key, body string) apiResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, hs.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) apiResp {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := apiResp{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, body %s", req.Method, req.URL.Path, ct, b)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&r.body); err != nil {
		t.Fatalf("%s %s: not a JSON object: %s", req.Method, req.URL.Path, b)
	}
	return r
}

// dialClient connects a test peer to hs over a real WebSocket with the
// given query (a token, a resume), and reads its hello.
func dialClient(t *testing.T, hs *httptest.Server, query string) *client {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(wsURL(hs, "/ws"+query), nil)
	if err != nil {
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("dial: %v: %d %s", err, resp.StatusCode, b)
		}
		t.Fatalf("dial: %v", err)
	}
	done := make(chan struct{})
	close(done)
	c := &client{t: t, ws: ws, raw: ws.NetConn(), msgs: make(chan map[string]any, 1024), closed: make(chan error, 1), done: done}
	t.Cleanup(func() { ws.Close() })
	go c.readLoop()
	c.hello = c.expect("hello")
	return c
}

// mintFor mints a token for user.
func mintFor(t *testing.T, user string) string {
	t.Helper()
	tok, err := MintToken(tokenSecret, Claims{Subject: user, Expiry: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (c *client) joinRoom(room string) {
	c.t.Helper()
	c.send(`{"type":"join","room":"` + room + `"}`)
	c.expect("joined")
}

func apiCount(t *testing.T, s *Server, endpoint, status string) float64 {
	t.Helper()
	return counterValue(t, s.metrics.api.WithLabelValues(endpoint, status))
}

func TestAPIDisabledWithoutKeys(t *testing.T) {
	s, hs := httpServer(t, nil)
	r := call(t, hs, "GET", "/api/v1/rooms", apiKey, "")
	if r.status != 404 || r.errCode() != "api-disabled" || !strings.Contains(r.errMessage(), "api { keys") {
		t.Fatalf("without keys: %d %s", r.status, r.raw)
	}
	if got := apiCount(t, s, "rooms", "404"); got != 1 {
		t.Errorf("api_requests_total{rooms,404} = %v", got)
	}
	// The credential API is untouched.
	if r := call(t, hs, "GET", "/api/ice-servers", "", ""); r.status != 200 {
		t.Errorf("/api/ice-servers: %d %s", r.status, r.raw)
	}
}

func TestAPIAuth(t *testing.T) {
	s, hs := apiServer(t, nil)
	for _, tc := range []struct {
		name, auth, query string
		want              int
		challenge         string
		msg               string
	}{
		{"no key", "", "", 401, `Bearer realm="icegate"`, "missing"},
		{"wrong key", "Bearer not-" + apiKey, "", 401, `Bearer realm="icegate", error="invalid_token"`, "not one of api.keys"},
		{"a prefix of a key", "Bearer " + apiKey[:32], "", 401, `Bearer realm="icegate", error="invalid_token"`, ""},
		{"another scheme", "Basic " + apiKey, "", 401, `Bearer realm="icegate"`, ""},
		{"key in the query", "", "?key=" + apiKey, 401, `Bearer realm="icegate"`, "query string is never accepted"},
		{"token in the query", "", "?access_token=" + apiKey, 401, `Bearer realm="icegate"`, "query string"},
		{"first key", "Bearer " + apiKey, "", 200, "", ""},
		{"second key", "Bearer " + apiKey2, "", 200, "", ""},
		{"scheme in lower case", "bearer " + apiKey, "", 200, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", hs.URL+"/api/v1/rooms"+tc.query, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			r := do(t, req)
			if r.status != tc.want {
				t.Fatalf("status %d (%s), want %d", r.status, r.raw, tc.want)
			}
			if got := r.header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			if tc.want == 401 && (r.errCode() != "unauthorized" || !strings.Contains(r.errMessage(), tc.msg)) {
				t.Errorf("refusal: %s", r.raw)
			}
			if strings.Contains(r.raw, apiKey) {
				t.Errorf("the answer shows the key: %s", r.raw)
			}
		})
	}
	if got := apiCount(t, s, "rooms", "401"); got != 6 {
		t.Errorf("api_requests_total{rooms,401} = %v, want 6", got)
	}

	// Keys reload: the old one stops working, the new one works.
	const fresh = "api-key-fresh-0123456789abcdef01234"
	if err := s.Reload(testConfig(func(c *Config) { c.APIKeys = []string{fresh} })); err != nil {
		t.Fatal(err)
	}
	if r := call(t, hs, "GET", "/api/v1/nodes", apiKey, ""); r.status != 401 {
		t.Errorf("old key after the reload: %d", r.status)
	}
	if r := call(t, hs, "GET", "/api/v1/nodes", fresh, ""); r.status != 200 {
		t.Errorf("new key after the reload: %d %s", r.status, r.raw)
	}
	// A short key is refused by New and Reload, without showing it.
	err := s.Reload(testConfig(func(c *Config) { c.APIKeys = []string{"short-key"} }))
	if err == nil || strings.Contains(err.Error(), "short-key") {
		t.Errorf("short key: %v", err)
	}
}

func TestMatchKey(t *testing.T) {
	keys := hashKeys([]string{apiKey, apiKey2, apiKey})
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"Bearer " + apiKey, 0}, // the first of two equal keys
		{"Bearer " + apiKey2, 1},
		{"Bearer  " + apiKey2 + " ", 1},
		{"Bearer " + apiKey + "x", -1},
		{"Bearer", -1},
		{"Bearer ", -1},
		{"", -1},
		{apiKey, -1},
	} {
		r := httptest.NewRequest("GET", "/api/v1/rooms", nil)
		r.Header.Set("Authorization", tc.auth)
		if got := matchKey(keys, r); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.auth, got, tc.want)
		}
	}
}

func TestAPIRequestErrors(t *testing.T) {
	s, hs := apiServer(t, func(c *Config) { c.MaxMessageBytes = 2048 })
	a := connect(t, s, pipeOpts{})
	a.joinRoom("r")
	big := `"` + strings.Repeat("x", 2100) + `"`
	huge := `"` + strings.Repeat("x", 2048+apiEnvelope) + `"`
	for _, tc := range []struct {
		name, method, path, ctype, body string
		status                          int
		code, msg                       string
	}{
		{"unknown endpoint", "GET", "/api/v1/channels", "", "", 404, "not-found", "/api/v1/channels"},
		{"GET push", "GET", "/api/v1/push", "", "", 405, "method-not-allowed", "use POST"},
		{"POST rooms", "POST", "/api/v1/rooms", "application/json", "{}", 405, "method-not-allowed", "use GET"},
		{"text body", "POST", "/api/v1/push", "text/plain", `{"room":"r","data":1}`, 415, "unsupported-media-type", "application/json"},
		{"no content type", "POST", "/api/v1/push", "", `{"room":"r","data":1}`, 415, "unsupported-media-type", ""},
		{"body too large", "POST", "/api/v1/push", "application/json", `{"room":"r","data":` + huge + `}`, 413, "too-large", "signaling.max_message_bytes"},
		{"data too large", "POST", "/api/v1/push", "application/json", `{"room":"r","data":` + big + `}`, 413, "too-large", "field \"data\""},
		{"not JSON", "POST", "/api/v1/push", "application/json", `room=r`, 400, "bad-request", "not the JSON object"},
		{"two values", "POST", "/api/v1/push", "application/json", `{"room":"r","data":1}{}`, 400, "bad-request", "more than one"},
		{"unknown field", "POST", "/api/v1/push", "application/json", `{"channel":"r","data":1}`, 400, "bad-request", `"channel"`},
		{"field of the wrong type", "POST", "/api/v1/push", "application/json", `{"room":5,"data":1}`, 400, "bad-request", `field "room"`},
		{"no target", "POST", "/api/v1/push", "application/json", `{"data":1}`, 400, "bad-request", "exactly one"},
		{"two targets", "POST", "/api/v1/push", "application/json", `{"room":"r","peer":"p","data":1}`, 400, "bad-request", "exactly one"},
		{"bad room", "POST", "/api/v1/push", "application/json", `{"room":"a b","data":1}`, 400, "bad-request", `field "room"`},
		{"no data", "POST", "/api/v1/push", "application/json", `{"room":"r"}`, 400, "bad-request", `field "data"`},
		{"unknown room", "POST", "/api/v1/push", "application/json", `{"room":"nowhere","data":1}`, 404, "no-such-room", "nowhere"},
		{"unknown peer", "POST", "/api/v1/push", "application/json", `{"peer":"nobody","data":1}`, 404, "no-such-peer", "nobody"},
		{"disconnect a room", "POST", "/api/v1/disconnect", "application/json", `{"room":"r"}`, 400, "bad-request", `field "room"`},
		{"code below 4100", "POST", "/api/v1/disconnect", "application/json", `{"peer":"` + a.id() + `","code":4000}`, 400, "bad-request", `field "code"`},
		{"code 1000", "POST", "/api/v1/disconnect", "application/json", `{"peer":"` + a.id() + `","code":1000}`, 400, "bad-request", `field "code"`},
		{"reason too long", "POST", "/api/v1/disconnect", "application/json", `{"peer":"` + a.id() + `","reason":"` + strings.Repeat("r", 121) + `"}`, 400, "bad-request", `field "reason"`},
		{"unknown peer disconnected", "POST", "/api/v1/disconnect", "application/json", `{"peer":"nobody"}`, 404, "no-such-peer", "nobody"},
		{"unknown room listed", "GET", "/api/v1/rooms/nowhere", "", "", 404, "no-such-room", "nowhere"},
		{"bad room listed", "GET", "/api/v1/rooms/a%20b", "", "", 400, "bad-request", "room"},
		{"no user", "GET", "/api/v1/users/", "", "", 400, "bad-request", "name the user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, hs.URL+tc.path, body)
			req.Header.Set("Authorization", "Bearer "+apiKey)
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			r := do(t, req)
			if r.status != tc.status || r.errCode() != tc.code || !strings.Contains(r.errMessage(), tc.msg) {
				t.Fatalf("got %d %s, want %d %s containing %q", r.status, r.raw, tc.status, tc.code, tc.msg)
			}
			if tc.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	// Nothing above reached a: no push, no close.
	a.quiet(50 * time.Millisecond)
	if got := apiCount(t, s, "push", "400"); got != 8 {
		t.Errorf("api_requests_total{push,400} = %v, want 8", got)
	}
	if got := apiCount(t, s, "other", "404"); got != 1 {
		t.Errorf("api_requests_total{other,404} = %v, want 1", got)
	}
}

// A push to a room reaches every member once, with a seq, and no one else;
// the answer counts them.
func TestAPIPushRoom(t *testing.T) {
	s, hs := apiServer(t, nil)
	var members []*client
	for range 3 {
		c := connect(t, s, pipeOpts{})
		c.joinRoom("call-1")
		members = append(members, c)
	}
	for i, c := range members {
		for range len(members) - 1 - i {
			c.expect("peer-joined")
		}
	}
	other := connect(t, s, pipeOpts{})
	other.joinRoom("call-2")

	r := call(t, hs, "POST", "/api/v1/push", apiKey, `{"room":"call-1","data":{"text":"hello, room"}}`)
	if r.status != 200 || str(r.body["delivered"]) != "3" || str(r.body["dropped"]) != "0" {
		t.Fatalf("push: %d %s", r.status, r.raw)
	}
	for i, c := range members {
		m := c.expect("push")
		if m["room"] != "call-1" || str(m["data"]) != `{"text":"hello, room"}` || m["seq"] == nil || m["from"] != nil {
			t.Fatalf("member %d got %v", i, m)
		}
	}
	for _, c := range append(members, other) {
		c.quiet(100 * time.Millisecond) // once, and not to call-2
	}
	if got := apiCount(t, s, "push", "200"); got != 1 {
		t.Errorf("api_requests_total{push,200} = %v", got)
	}
}

// A push to a user reaches each of its sessions (tokens with the same
// sub) and no one else's; GET /users/{sub} lists them.
func TestAPIPushUserAndPeer(t *testing.T) {
	_, hs := apiServer(t, func(c *Config) { c.TokenSecrets = []string{tokenSecret} })
	alice1 := dialClient(t, hs, "?token="+mintFor(t, "alice"))
	alice2 := dialClient(t, hs, "?token="+mintFor(t, "alice"))
	bob := dialClient(t, hs, "?token="+mintFor(t, "bob"))

	r := call(t, hs, "GET", "/api/v1/users/alice", apiKey, "")
	want := []string{alice1.id(), alice2.id()}
	slices.Sort(want)
	if r.status != 200 || r.body["user"] != "alice" || str(r.body["sessions"]) != str(want) {
		t.Fatalf("users/alice: %d %s, want sessions %v", r.status, r.raw, want)
	}
	if r := call(t, hs, "GET", "/api/v1/users/carol", apiKey, ""); r.status != 200 || str(r.body["sessions"]) != "[]" {
		t.Fatalf("users/carol: %d %s", r.status, r.raw)
	}

	r = call(t, hs, "POST", "/api/v1/push", apiKey, `{"user":"alice","data":"for alice"}`)
	if r.status != 200 || str(r.body["delivered"]) != "2" || str(r.body["sessions"]) != "2" {
		t.Fatalf("push to alice: %d %s", r.status, r.raw)
	}
	for _, c := range []*client{alice1, alice2} {
		if m := c.expect("push"); m["data"] != "for alice" || m["room"] != nil {
			t.Fatalf("alice's session got %v", m)
		}
	}
	bob.quiet(100 * time.Millisecond)

	r = call(t, hs, "POST", "/api/v1/push", apiKey, `{"peer":"`+bob.id()+`","data":[1,2]}`)
	if r.status != 200 || str(r.body["delivered"]) != "1" {
		t.Fatalf("push to bob's peer: %d %s", r.status, r.raw)
	}
	if m := bob.expect("push"); str(m["data"]) != "[1,2]" {
		t.Fatalf("bob got %v", m)
	}
	alice1.quiet(50 * time.Millisecond)
	alice2.quiet(50 * time.Millisecond)

	// A user without sessions: nothing to deliver, not an error.
	r = call(t, hs, "POST", "/api/v1/push", apiKey, `{"user":"carol","data":1}`)
	if r.status != 200 || str(r.body["delivered"]) != "0" || str(r.body["sessions"]) != "0" {
		t.Fatalf("push to carol: %d %s", r.status, r.raw)
	}
}

// A push to a held peer is logged for it: its resume replays it.
func TestAPIPushHeldPeerReplayed(t *testing.T) {
	s, hs := apiServer(t, nil)
	a := connect(t, s, pipeOpts{})
	a.raw.Close()
	eventually(t, "the drop", func() bool { return s.Connections() == 0 })
	r := call(t, hs, "POST", "/api/v1/push", apiKey, `{"peer":"`+a.id()+`","data":"while away"}`)
	if r.status != 200 || str(r.body["delivered"]) != "1" {
		t.Fatalf("push to a held peer: %d %s", r.status, r.raw)
	}
	a2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: a.hello["resume_token"].(string)}})
	if m := a2.expect("push"); m["data"] != "while away" || str(m["seq"]) != "1" {
		t.Fatalf("replayed: %v", m)
	}
}

// A disconnect closes the client with the code and reason given, ends its
// session for good (its resume token is spent), and the others in its
// room get peer-left.
func TestAPIDisconnect(t *testing.T) {
	s, hs := apiServer(t, nil)
	a, b := pairInRoom(t, s, "r")
	r := call(t, hs, "POST", "/api/v1/disconnect", apiKey, `{"peer":"`+b.id()+`","code":4321,"reason":"banned by the moderator"}`)
	if r.status != 200 || str(r.body["disconnected"]) != "1" {
		t.Fatalf("disconnect: %d %s", r.status, r.raw)
	}
	err := b.waitClosed()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4321 || ce.Text != "banned by the moderator" {
		t.Fatalf("b closed with %v", err)
	}
	if m := a.expect("peer-left"); m["peer"] != b.id() || m["room"] != "r" {
		t.Fatalf("a got %v", m)
	}
	a.quiet(100 * time.Millisecond) // once
	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b.hello["resume_token"].(string)}})
	if b2.hello["resumed"] != false || b2.id() == b.id() {
		t.Fatalf("resume after a disconnect: %v", b2.hello)
	}
	if r := call(t, hs, "POST", "/api/v1/disconnect", apiKey, `{"peer":"`+b.id()+`"}`); r.status != 404 {
		t.Fatalf("second disconnect: %d %s", r.status, r.raw)
	}
	// The default code.
	if r := call(t, hs, "POST", "/api/v1/disconnect", apiKey, `{"peer":"`+a.id()+`"}`); r.status != 200 {
		t.Fatalf("disconnect a: %d %s", r.status, r.raw)
	}
	if err := a.waitClosed(); closeCode(err) != 4100 {
		t.Fatalf("a closed with %v", err)
	}
	eventually(t, "the room to go", func() bool { return s.Stats().Rooms == 0 })
}

// A held session (its connection dropped) is disconnected too: the others
// get peer-left at once, not after the resume grace, and it cannot resume.
func TestAPIDisconnectHeld(t *testing.T) {
	s, hs := apiServer(t, func(c *Config) { c.ResumeGrace = time.Minute })
	a, b := pairInRoom(t, s, "r")
	b.raw.Close()
	eventually(t, "the drop", func() bool { return s.Connections() == 1 })
	a.quiet(50 * time.Millisecond) // held: no peer-left yet
	r := call(t, hs, "POST", "/api/v1/disconnect", apiKey, `{"peer":"`+b.id()+`","reason":"gone"}`)
	if r.status != 200 || str(r.body["disconnected"]) != "1" {
		t.Fatalf("disconnect: %d %s", r.status, r.raw)
	}
	if m := a.expect("peer-left"); m["peer"] != b.id() {
		t.Fatalf("a got %v", m)
	}
	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b.hello["resume_token"].(string)}})
	if b2.hello["resumed"] != false {
		t.Fatalf("resume after a disconnect: %v", b2.hello)
	}
}

// Disconnecting a user ends each of its sessions, connected or held.
func TestAPIDisconnectUser(t *testing.T) {
	s, hs := apiServer(t, func(c *Config) { c.TokenSecrets = []string{tokenSecret} })
	alice1 := dialClient(t, hs, "?token="+mintFor(t, "alice"))
	alice2 := dialClient(t, hs, "?token="+mintFor(t, "alice"))
	bob := dialClient(t, hs, "?token="+mintFor(t, "bob"))
	alice2.ws.NetConn().Close() // held
	eventually(t, "the drop", func() bool { return s.Connections() == 2 })

	r := call(t, hs, "POST", "/api/v1/disconnect", apiKey, `{"user":"alice","code":4999,"reason":"account closed"}`)
	if r.status != 200 || str(r.body["disconnected"]) != "2" {
		t.Fatalf("disconnect alice: %d %s", r.status, r.raw)
	}
	if err := alice1.waitClosed(); closeCode(err) != 4999 {
		t.Fatalf("alice1 closed with %v", err)
	}
	if r := call(t, hs, "GET", "/api/v1/users/alice", apiKey, ""); str(r.body["sessions"]) != "[]" {
		t.Fatalf("alice's sessions after: %s", r.raw)
	}
	bob.quiet(50 * time.Millisecond)
	if r := call(t, hs, "POST", "/api/v1/disconnect", apiKey, `{"user":"alice"}`); r.status != 200 || str(r.body["disconnected"]) != "0" {
		t.Fatalf("disconnect alice again: %d %s", r.status, r.raw)
	}
}

func TestAPIListings(t *testing.T) {
	s, hs := apiServer(t, func(c *Config) { c.TokenSecrets = []string{tokenSecret} })
	a := dialClient(t, hs, "?token="+mintFor(t, "alice"))
	b := dialClient(t, hs, "?token="+mintFor(t, "bob"))
	c := dialClient(t, hs, "?token="+mintFor(t, "carol"))
	a.send(`{"type":"join","room":"big","max_peers":5}`)
	a.expect("joined")
	before := time.Now()
	b.joinRoom("big")
	a.expect("peer-joined")
	b.joinRoom("small")
	c.ws.NetConn().Close() // held
	eventually(t, "the drop", func() bool { return s.Connections() == 2 })

	r := call(t, hs, "GET", "/api/v1/rooms", apiKey, "")
	if r.status != 200 || str(r.body["rooms"]) != `[{"max_peers":5,"members":2,"room":"big"},{"max_peers":16,"members":1,"room":"small"}]` {
		t.Fatalf("rooms: %d %s", r.status, r.raw)
	}
	r = call(t, hs, "GET", "/api/v1/rooms/big", apiKey, "")
	members, _ := r.body["members"].([]any)
	if r.status != 200 || r.body["room"] != "big" || len(members) != 2 {
		t.Fatalf("rooms/big: %d %s", r.status, r.raw)
	}
	for i, want := range []struct{ peer, user string }{{a.id(), "alice"}, {b.id(), "bob"}} {
		m := members[i].(map[string]any)
		joined, err := time.Parse(time.RFC3339Nano, str(m["joined"]))
		if m["peer"] != want.peer || m["user"] != want.user || m["node"] != "local" || err != nil ||
			(i == 1 && joined.Before(before.Add(-time.Second))) {
			t.Errorf("member %d: %v, want %v", i, m, want)
		}
	}
	r = call(t, hs, "GET", "/api/v1/nodes", apiKey, "")
	if r.status != 200 || r.body["node"] != "local" || str(r.body["nodes"]) != `[{"node":"local","sessions":2}]` || str(r.body["held"]) != "1" {
		t.Fatalf("nodes: %d %s", r.status, r.raw)
	}
	// A room name with a slash is one room.
	a.joinRoom("team/42")
	if r := call(t, hs, "GET", "/api/v1/rooms/team/42", apiKey, ""); r.status != 200 || r.body["room"] != "team/42" {
		t.Fatalf("rooms/team/42: %d %s", r.status, r.raw)
	}
	if got := apiCount(t, s, "room", "200"); got != 2 {
		t.Errorf("api_requests_total{room,200} = %v", got)
	}
}

// The API answers for the whole cluster on any node: two servers on one
// bus, the peers on one, the requests to the other.
func TestAPIClusterWide(t *testing.T) {
	bus := NewMemoryBus()
	start := func(b Bus) (*Server, *httptest.Server) {
		s, err := New(testConfig(func(c *Config) { c.APIKeys = []string{apiKey} }), Options{Bus: b})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(s.Handler())
		t.Cleanup(func() {
			hs.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.Close(ctx)
		})
		return s, hs
	}
	sa, _ := start(bus)
	_, hb := start(bus.Node("b"))
	p, q := pairInRoom(t, sa, "r")

	r := call(t, hb, "POST", "/api/v1/push", apiKey, `{"room":"r","data":"from b"}`)
	if r.status != 200 || str(r.body["delivered"]) != "2" {
		t.Fatalf("push through b: %d %s", r.status, r.raw)
	}
	p.expect("push")
	q.expect("push")
	r = call(t, hb, "GET", "/api/v1/nodes", apiKey, "")
	if r.body["node"] != "b" || str(r.body["nodes"]) != `[{"node":"local","sessions":2}]` {
		t.Fatalf("nodes through b: %s", r.raw)
	}
	r = call(t, hb, "POST", "/api/v1/disconnect", apiKey, `{"peer":"`+q.id()+`","code":4200}`)
	if r.status != 200 {
		t.Fatalf("disconnect through b: %d %s", r.status, r.raw)
	}
	if err := q.waitClosed(); closeCode(err) != 4200 {
		t.Fatalf("q closed with %v", err)
	}
	p.expect("peer-left")
}

// outageBus is the in-process bus with an outage switch: while down, the
// calls the server API makes fail as a Redis bus's do when Redis is
// unreachable.
type outageBus struct {
	*MemoryBus
	mu   sync.Mutex
	down bool
}

func (b *outageBus) err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return ErrUnavailable
	}
	return nil
}

func (b *outageBus) Rooms(ctx context.Context) ([]RoomInfo, error) {
	if err := b.err(); err != nil {
		return nil, err
	}
	return b.MemoryBus.Rooms(ctx)
}

func (b *outageBus) Broadcast(ctx context.Context, r BroadcastRequest) (int, int, error) {
	if err := b.err(); err != nil {
		return 0, 0, err
	}
	return b.MemoryBus.Broadcast(ctx, r)
}

func TestAPIClusterUnavailable(t *testing.T) {
	bus := &outageBus{MemoryBus: NewMemoryBus()}
	s, err := New(testConfig(func(c *Config) { c.APIKeys = []string{apiKey} }), Options{Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		_ = s.Close(context.Background())
	})
	a := connect(t, s, pipeOpts{})
	a.joinRoom("r")
	bus.mu.Lock()
	bus.down = true
	bus.mu.Unlock()
	for _, req := range [][3]string{{"GET", "/api/v1/rooms", ""}, {"POST", "/api/v1/push", `{"room":"r","data":1}`}} {
		r := call(t, hs, req[0], req[1], apiKey, req[2])
		if r.status != 503 || r.errCode() != "cluster-unavailable" {
			t.Errorf("%s %s while the bus is down: %d %s", req[0], req[1], r.status, r.raw)
		}
	}
	a.quiet(50 * time.Millisecond)
}

// recordingNode is a Node that keeps what the bus hands it.
type recordingNode struct {
	mu   sync.Mutex
	got  map[string][]string
	kick map[string]int
}

func (n *recordingNode) Deliver(id string, _ uint64, body []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got[id] = append(n.got[id], string(body))
}

func (n *recordingNode) Kick(id string, _ uint64, code int, _ string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.kick[id] = code
}

func (n *recordingNode) Resync() {}

// FuzzAPIRequest checks the server API's request parsing through the whole
// handler, on a real server with a peer in a room: any body to push or
// disconnect gets a JSON answer with a known status, and an error always
// has a code and a message.
func FuzzAPIRequest(f *testing.F) {
	for _, s := range []string{
		`{"room":"r","data":{"a":1}}`, `{"peer":"abcdefghijklmnop","data":null}`, `{"user":"alice","data":"x"}`,
		`{"peer":"abcdefghijklmnop","code":4100,"reason":"bye"}`, `{"user":"alice","code":4999}`,
		`{"room":"r","peer":"p","data":1}`, `{"code":"4100"}`, `{"reason":"\u0000"}`, `{}`, `[]`, `null`, "\xff", `{"data":1}{"data":2}`,
	} {
		f.Add(true, s)
		f.Add(false, s)
	}
	s, err := New(testConfig(func(c *Config) { c.APIKeys = []string{apiKey}; c.MaxMessageBytes = 1024 }), Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close(context.Background())
	h := s.Handler()
	known := map[int]bool{200: true, 400: true, 404: true, 413: true}
	f.Fuzz(func(t *testing.T, push bool, body string) {
		path := "/api/v1/disconnect"
		if push {
			path = "/api/v1/push"
		}
		req := httptest.NewRequest("POST", "http://127.0.0.1"+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if !known[w.Code] {
			t.Fatalf("%s %q: status %d: %s", path, body, w.Code, w.Body)
		}
		var ans struct {
			Error *struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil {
			t.Fatalf("%s %q: answer is not JSON: %s", path, body, w.Body)
		}
		if (w.Code != 200) != (ans.Error != nil) || (ans.Error != nil && (ans.Error.Code == "" || ans.Error.Message == "")) {
			t.Fatalf("%s %q: %d %s", path, body, w.Code, w.Body)
		}
	})
}
