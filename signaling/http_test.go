package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"icegate/auth"
)

const tokenSecret = "token-secret-0123456789abcdef0123456789"

func httpServer(t *testing.T, mutate func(*Config)) (*Server, *httptest.Server) {
	t.Helper()
	s := newTestServer(t, mutate)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return s, hs
}

func wsURL(hs *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(hs.URL, "http") + path
}

// dialWS dials and returns the HTTP status and, on success, hello.
func dialWS(t *testing.T, url string, h http.Header) (int, string, map[string]any) {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, h)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	defer ws.Close()
	var hello map[string]any
	if err := ws.ReadJSON(&hello); err != nil {
		t.Fatal(err)
	}
	return http.StatusSwitchingProtocols, "", hello
}

func TestOriginCheck(t *testing.T) {
	_, hs := httpServer(t, nil)
	host := strings.TrimPrefix(hs.URL, "http://")
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"", 101},                      // not a browser
		{"http://" + host, 101},        // the page's own origin
		{"http://localhost:3000", 101}, // local development
		{"https://127.0.0.1", 101},
		{"https://evil.example", 403},
		{"http://" + host + ".evil.example", 403},
		{"null", 403},
	} {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		code, body, _ := dialWS(t, wsURL(hs, "/ws"), h)
		if code != tc.want {
			t.Errorf("origin %q: status %d (%s), want %d", tc.origin, code, body, tc.want)
		}
		if code == 403 && !strings.Contains(body, "signaling.allowed_origins") {
			t.Errorf("origin %q: body %q does not say why", tc.origin, body)
		}
	}
}

func TestOriginAllowed(t *testing.T) {
	list := []string{"https://app.example.com", "https://*.example.org", "http://localhost:3000"}
	for _, tc := range []struct {
		origin string
		want   bool
	}{
		{"https://app.example.com", true},
		{"HTTPS://APP.EXAMPLE.COM", true},
		{"http://app.example.com", false},
		{"https://app.example.com:8443", false},
		{"https://a.example.org", true},
		{"https://a.b.example.org", true},
		{"https://example.org", false},
		{"https://evilexample.org", false},
		{"http://localhost:3000", true},
		{"http://localhost:3001", false},
		{"http://server:8080", true},  // the own origin (the test page) stays allowed with a list
		{"https://server:8080", true}, // a proxy terminating TLS in front
		{"http://server:8081", false},
	} {
		if got := originAllowed(list, tc.origin, "server:8080"); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.origin, got, tc.want)
		}
	}
	if !originAllowed([]string{"*"}, "https://anything.example", "x") {
		t.Error("* does not allow everything")
	}
}

func TestTokenRefusedBeforeUpgrade(t *testing.T) {
	_, hs := httpServer(t, func(c *Config) { c.TokenSecrets = []string{tokenSecret} })
	now := time.Now()
	good, _ := MintToken(tokenSecret, Claims{Subject: "alice", Rooms: []string{"r"}, Expiry: now.Add(time.Hour).Unix()})
	expired, _ := MintToken(tokenSecret, Claims{Subject: "alice", Expiry: now.Add(-time.Hour).Unix()})
	forged, _ := MintToken("another-secret-0123456789abcdef012345", Claims{Subject: "alice", Expiry: now.Add(time.Hour).Unix()})
	for _, tc := range []struct {
		name, query, header string
		want                int
		body                string
	}{
		{"missing", "", "", 401, "token required"},
		{"expired", "?token=" + expired, "", 401, "token expired by 1h0m"},
		{"forged", "?token=" + forged, "", 401, "signature does not match"},
		{"garbage", "?token=abc", "", 401, "invalid token"},
		{"query", "?token=" + good, "", 101, ""},
		{"header", "", "Bearer " + good, 101, ""},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Authorization", tc.header)
		}
		code, body, hello := dialWS(t, wsURL(hs, "/ws"+tc.query), h)
		if code != tc.want || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, body, tc.want, tc.body)
		}
		if code == 101 && hello["user"] != "alice" {
			t.Errorf("%s: hello %v", tc.name, hello)
		}
	}
	// The API is behind the same token.
	resp, err := http.Get(hs.URL + "/api/ice-servers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("api without token: %d", resp.StatusCode)
	}
}

func TestCredentialAPI(t *testing.T) {
	_, hs := httpServer(t, nil)
	get := func(path, origin string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("GET", hs.URL+path, nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return resp, v
	}

	resp, v := get("/api/turn?service=turn&username=alice", "http://localhost:5173")
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" {
		t.Fatalf("api/turn: %d %v %v", resp.StatusCode, resp.Header, v)
	}
	user := v["username"].(string)
	if !strings.HasSuffix(user, ":alice") || v["password"] != auth.RESTPassword(testSecret, user) {
		t.Errorf("api/turn credential: %v", v)
	}
	if ttl := v["ttl"].(float64); ttl < 3500 || ttl > 3600 {
		t.Errorf("ttl %v", ttl)
	}
	uris := str(v["uris"])
	if !strings.Contains(uris, "turn:127.0.0.1:3478?transport=udp") || !strings.Contains(uris, "turns:127.0.0.1:5349?transport=tcp") {
		t.Errorf("uris %s", uris)
	}
	if resp, _ := get("/api/turn?service=stun", ""); resp.StatusCode != 400 {
		t.Errorf("service=stun: %d", resp.StatusCode)
	}

	resp, v = get("/api/ice-servers", "")
	servers, _ := v["iceServers"].([]any)
	if resp.StatusCode != 200 || len(servers) != 2 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("api/ice-servers: %d %v", resp.StatusCode, v)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("credentials may be cached: %v", resp.Header)
	}

	if resp, v := get("/api/ice-servers", "https://evil.example"); resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign origin: %d %v", resp.StatusCode, v)
	}
	// Preflight.
	req, _ := http.NewRequest("OPTIONS", hs.URL+"/api/ice-servers", nil)
	req.Header.Set("Origin", "http://localhost:5173")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if pre.StatusCode != 204 || !strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
}

func TestCredentialAPIRefusals(t *testing.T) {
	_, hs := httpServer(t, nil)
	do := func(method, path, origin string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, hs.URL+path, nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return resp, v
	}
	for _, path := range []string{"/api/turn", "/api/ice-servers"} {
		// A preflight from a foreign origin is refused, without CORS headers.
		resp, v := do("OPTIONS", path, "https://evil.example")
		if resp.StatusCode != 403 || v["code"] != "origin" || resp.Header.Get("Access-Control-Allow-Origin") != "" ||
			!strings.Contains(str(v["error"]), "https://evil.example is not allowed (signaling.allowed_origins)") {
			t.Errorf("%s: foreign preflight: %d %v %v", path, resp.StatusCode, resp.Header, v)
		}
		// A preflight without Origin is answered.
		if resp, _ := do("OPTIONS", path, ""); resp.StatusCode != 204 {
			t.Errorf("%s: preflight without origin: %d", path, resp.StatusCode)
		}
		// Other methods get 405, with CORS headers for an allowed origin.
		resp, v = do("POST", path, "http://localhost:5173")
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, OPTIONS" || v["code"] != "method" ||
			resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" {
			t.Errorf("%s: POST: %d %v %v", path, resp.StatusCode, resp.Header, v)
		}
		// A username the credentials cannot carry.
		resp, v = do("GET", path+"?username=a%0Ab", "")
		if resp.StatusCode != 400 || v["code"] != "bad-request" || v["error"] != "username must be at most 128 bytes without control characters" {
			t.Errorf("%s: bad username: %d %v", path, resp.StatusCode, v)
		}
	}
	// On /api/turn the service is checked before the username.
	resp, v := do("GET", "/api/turn?service=stun&username=a%0Ab", "")
	if resp.StatusCode != 400 || v["error"] != `service must be "turn"` {
		t.Errorf("service and username both wrong: %d %v", resp.StatusCode, v)
	}
	// /api/ice-servers has no service parameter.
	if resp, _ := do("GET", "/api/ice-servers?service=stun", ""); resp.StatusCode != 200 {
		t.Errorf("api/ice-servers?service=stun: %d", resp.StatusCode)
	}

	// The origin is checked before the token.
	_, tok := httpServer(t, func(c *Config) { c.TokenSecrets = []string{tokenSecret} })
	for _, tc := range []struct {
		origin string
		want   int
	}{{"https://evil.example", 403}, {"http://localhost:5173", 401}, {"", 401}} {
		req, _ := http.NewRequest("GET", tok.URL+"/api/ice-servers", nil)
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("token required, origin %q: %d, want %d", tc.origin, resp.StatusCode, tc.want)
		}
	}
}

func TestTestPage(t *testing.T) {
	_, hs := httpServer(t, nil)
	resp, err := http.Get(hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "icegate") || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("test page: %d %s", resp.StatusCode, b)
	}
	_, off := httpServer(t, func(c *Config) { c.NoTestPage = true })
	resp, err = http.Get(off.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("test_page = false: %d", resp.StatusCode)
	}
}

func TestTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tok, err := MintToken("s1", Claims{Subject: "u", Rooms: []string{"a", "team-*"}, Expiry: now.Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := VerifyToken([]string{"s0", "s1"}, tok, now)
	if err != nil || c.Subject != "u" {
		t.Fatalf("verify: %v %v", c, err)
	}
	for room, want := range map[string]bool{"a": true, "b": false, "team-": true, "team-7": true, "tea": false} {
		if c.AllowsRoom(room) != want {
			t.Errorf("AllowsRoom(%q) = %v", room, !want)
		}
	}
	if !(&Claims{Subject: "u"}).AllowsRoom("any") || !(*Claims)(nil).AllowsRoom("any") {
		t.Error("no rooms claim should allow any room")
	}
	parts := strings.Split(tok, ".")
	none := b64.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	hs512 := b64.EncodeToString([]byte(`{"alg":"HS512"}`)) + "." + parts[1] + "." + parts[2]
	for _, tc := range []struct {
		name, tok string
		now       time.Time
		want      error
	}{
		{"wrong secret", tok, now, ErrTokenInvalid},
		{"expired", tok, now.Add(2 * time.Minute), ErrTokenExpired},
		{"alg none", none, now, ErrTokenInvalid},
		{"alg hs512", hs512, now, ErrTokenInvalid},
		{"tampered", parts[0] + "." + b64.EncodeToString([]byte(`{"sub":"admin","exp":1900000000}`)) + "." + parts[2], now, ErrTokenInvalid},
		{"two parts", parts[0] + "." + parts[1], now, ErrTokenInvalid},
		{"huge", strings.Repeat("a", 5000), now, ErrTokenInvalid},
	} {
		secrets := []string{"s1"}
		if tc.name == "wrong secret" {
			secrets = []string{"s2"}
		}
		if _, err := VerifyToken(secrets, tc.tok, tc.now); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Within the leeway, an expired token still passes.
	if _, err := VerifyToken([]string{"s1"}, tok, now.Add(time.Minute+10*time.Second)); err != nil {
		t.Errorf("leeway: %v", err)
	}
	nbf, _ := MintToken("s1", Claims{Subject: "u", Expiry: now.Add(time.Hour).Unix(), NotBefore: now.Add(10 * time.Minute).Unix()})
	if _, err := VerifyToken([]string{"s1"}, nbf, now); !errors.Is(err, ErrTokenInvalid) {
		t.Errorf("nbf: %v", err)
	}
}

func TestOutbox(t *testing.T) {
	o := newOutbox(3)
	for i := range 3 {
		if !o.put(uint64(i+1), []byte{byte('a' + i)}) {
			t.Fatalf("put %d", i)
		}
	}
	if o.put(4, []byte("d")) {
		t.Fatal("put beyond the limit succeeded")
	}
	if o.put(2, []byte("x")) != true || o.pending() != 3 {
		t.Fatal("a seq it has is not ignored")
	}
	first, msgs := o.take()
	if first != 1 || len(msgs) != 3 || string(msgs[1]) != "b" || o.written() != 3 {
		t.Fatalf("take: %d %q", first, msgs)
	}
	// Out of order: 6 waits for 4 and 5; a seq already taken is ignored.
	o.put(6, []byte("f"))
	o.put(1, []byte("old"))
	if _, msgs := o.take(); msgs != nil {
		t.Fatalf("took across a hole: %q", msgs)
	}
	o.putAll(4, [][]byte{[]byte("d"), []byte("e")})
	if first, msgs := o.take(); first != 4 || len(msgs) != 3 || string(msgs[2]) != "f" {
		t.Fatalf("after the hole is filled: %d %q", first, msgs)
	}
	// A catch-up that starts beyond the next seq (the log lost the ones in
	// between) moves the writer on.
	o.putAll(9, [][]byte{[]byte("i")})
	if first, msgs := o.take(); first != 9 || len(msgs) != 1 {
		t.Fatalf("after a gap: %d %q", first, msgs)
	}
	o.reset(3, [][]byte{[]byte("c")})
	if first, msgs := o.take(); first != 3 || len(msgs) != 1 || o.last() != 3 {
		t.Fatalf("after reset: %d %q", first, msgs)
	}
}

func TestSimplePathOverHTTP(t *testing.T) {
	_, hs := httpServer(t, nil)
	ws, _, err := websocket.DefaultDialer.Dial(wsURL(hs, "/ws/simple"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]string{"type": "login", "name": "alice"}); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := ws.ReadJSON(&m); err != nil || m["type"] != "login" || m["success"] != true {
		t.Fatalf("login over /ws/simple: %v %v", m, err)
	}
}

// TestDrainingRelayHandsOutNoTURN: while the relay refuses new allocations
// (SIGUSR1), hello, /api/ice-servers and /api/turn hand out no turn: URL
// and mint nothing (the Allocate would be refused); undrained, they do
// again.
func TestDrainingRelayHandsOutNoTURN(t *testing.T) {
	var draining atomic.Bool
	draining.Store(true)
	s, err := New(testConfig(nil), Options{Secret: func() string { return testSecret }, RelayDraining: draining.Load})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	get := func(path string) (int, http.Header, map[string]any) {
		t.Helper()
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, resp.Header, v
	}

	a := connect(t, s, pipeOpts{})
	srv := a.hello["server"].(map[string]any)
	if servers := a.hello["ice_servers"].([]any); len(servers) != 1 || srv["credentials"] != false || srv["relay_draining"] != true {
		t.Errorf("hello while draining: %v", a.hello)
	}
	if servers := str(a.hello["ice_servers"]); strings.Contains(servers, "turn:") || strings.Contains(servers, "turns:") {
		t.Errorf("a TURN URL while draining: %s", servers)
	}
	if code, _, v := get("/api/ice-servers"); code != 200 || len(v["iceServers"].([]any)) != 1 {
		t.Errorf("/api/ice-servers while draining: %d %v", code, v)
	}
	if code, h, v := get("/api/turn?service=turn&username=alice"); code != 503 || v["code"] != "draining" || h.Get("Retry-After") == "" {
		t.Errorf("/api/turn while draining: %d %v %v", code, h, v)
	}

	draining.Store(false)
	b := connect(t, s, pipeOpts{})
	srv = b.hello["server"].(map[string]any)
	if servers := b.hello["ice_servers"].([]any); len(servers) != 2 || srv["credentials"] != true || srv["relay_draining"] != nil {
		t.Errorf("hello undrained: %v", b.hello)
	}
	if code, _, v := get("/api/turn?service=turn&username=alice"); code != 200 || v["password"] == "" {
		t.Errorf("/api/turn undrained: %d %v", code, v)
	}
}
