package signaling

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"icegate/auth"
)

// credsServer starts a Server with the server API on, minting with
// testSecret unless noSecret, its relay draining when drain says so and
// steered by steer (nil: no steering).
func credsServer(t *testing.T, mutate func(*Config), noSecret bool, drain *atomic.Bool, steer func() (TURNNode, bool)) *httptest.Server {
	t.Helper()
	opts := Options{Secret: func() string { return testSecret }, Steer: steer}
	if noSecret {
		opts.Secret = nil
	}
	if drain != nil {
		opts.RelayDraining = drain.Load
	}
	s, err := New(testConfig(func(c *Config) {
		c.APIKeys = []string{apiKey, apiKey2}
		if mutate != nil {
			mutate(c)
		}
	}), opts)
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
	return hs
}

// credsAnswer is a 201's body, decoded strictly.
type credsAnswer struct {
	ICEServers []auth.ICEServer `json:"iceServers"`
	TTL        int64            `json:"ttl"`
	Expires    int64            `json:"expires"`
}

func decodeCreds(t *testing.T, r apiResp) credsAnswer {
	t.Helper()
	if r.status != http.StatusCreated {
		t.Fatalf("status %d, want 201: %s", r.status, r.raw)
	}
	var a credsAnswer
	d := json.NewDecoder(strings.NewReader(r.raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&a); err != nil {
		t.Fatalf("answer %s: %v", r.raw, err)
	}
	return a
}

// checkMinted checks that a's TURN entry carries a credential the relay
// accepts (the same shared secret) for user id, expiring in ttl.
func checkMinted(t *testing.T, a credsAnswer, id string, ttl time.Duration) {
	t.Helper()
	var turnEntry *auth.ICEServer
	for i := range a.ICEServers {
		if a.ICEServers[i].Username != "" {
			turnEntry = &a.ICEServers[i]
		}
	}
	if turnEntry == nil {
		t.Fatalf("no TURN entry in %+v", a.ICEServers)
	}
	if a.TTL != int64(ttl/time.Second) {
		t.Errorf("ttl %d, want %d", a.TTL, int64(ttl/time.Second))
	}
	if d := time.Until(time.Unix(a.Expires, 0)) - ttl; d > 2*time.Second || d < -2*time.Second {
		t.Errorf("expires %v, %v off a ttl of %v", time.Unix(a.Expires, 0), d, ttl)
	}
	creds, err := auth.NewCredentials("example.org", nil, []string{testSecret}, "")
	if err != nil {
		t.Fatal(err)
	}
	user, keys, err := creds.Keys(turnEntry.Username, time.Now())
	if err != nil {
		t.Fatalf("the relay refuses %q: %v", turnEntry.Username, err)
	}
	wantUser := id
	if id == "" {
		wantUser = turnEntry.Username // no user part: the whole username
	}
	if user != wantUser {
		t.Errorf("user id %q, want %q (username %q)", user, wantUser, turnEntry.Username)
	}
	want := md5.Sum([]byte(turnEntry.Username + ":example.org:" + turnEntry.Credential))
	if !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, want[:]) }) {
		t.Errorf("credential %q is not the relay's password for %q", turnEntry.Credential, turnEntry.Username)
	}
}

func urlsOf(a credsAnswer) []string {
	var out []string
	for _, s := range a.ICEServers {
		out = append(out, s.URLs...)
	}
	return out
}

func TestAPITURNCredentials(t *testing.T) {
	const path = "/api/v1/turn/credentials"
	hs := credsServer(t, func(c *Config) { c.TURNHost = "turn.example.org" }, false, nil, nil)

	t.Run("good key, every transport", func(t *testing.T) {
		for _, key := range []string{apiKey, apiKey2} {
			a := decodeCreds(t, call(t, hs, "POST", path, key, `{"ttl": 600, "custom_identifier": "tenant-7.user@x"}`))
			want := []string{"stun:turn.example.org:3478", "turn:turn.example.org:3478?transport=udp",
				"turn:turn.example.org:3478?transport=tcp", "turns:turn.example.org:5349?transport=tcp"}
			if got := urlsOf(a); !slices.Equal(got, want) {
				t.Errorf("urls %q, want %q", got, want)
			}
			checkMinted(t, a, "tenant-7.user@x", 10*time.Minute)
		}
	})
	t.Run("defaults: credential_ttl, no identifier", func(t *testing.T) {
		for _, body := range []string{`{}`, ``, `{"ttl": null}`} {
			r := call(t, hs, "POST", path, apiKey, body)
			if body == "" {
				// No body at all: still JSON, as the other POSTs.
				req, _ := http.NewRequest("POST", hs.URL+path, nil)
				req.Header.Set("Authorization", "Bearer "+apiKey)
				req.Header.Set("Content-Type", "application/json")
				r = do(t, req)
			}
			a := decodeCreds(t, r)
			checkMinted(t, a, "", time.Hour)
		}
	})
	t.Run("ttl capped and floored", func(t *testing.T) {
		for _, c := range []struct {
			ttl  string
			want time.Duration
		}{
			{"86400", 24 * time.Hour},
			{"86401", 24 * time.Hour},
			{"9223372036854775807", 24 * time.Hour},
			{"60", time.Minute},
		} {
			a := decodeCreds(t, call(t, hs, "POST", path, apiKey, `{"ttl": `+c.ttl+`}`))
			checkMinted(t, a, "", c.want)
		}
		for _, ttl := range []string{"59", "0", "-5", `"3600"`, "1.5", "1e30"} {
			r := call(t, hs, "POST", path, apiKey, `{"ttl": `+ttl+`}`)
			if r.status != http.StatusBadRequest || r.errCode() != apiCodeBadRequest || !strings.Contains(r.errMessage(), "ttl") {
				t.Errorf("ttl %s: %d %s, want 400 naming ttl", ttl, r.status, r.raw)
			}
		}
	})
	t.Run("missing and bad keys", func(t *testing.T) {
		r := call(t, hs, "POST", path, "", `{"ttl": 600}`)
		if r.status != http.StatusUnauthorized || r.errCode() != apiCodeUnauthorized || r.header.Get("WWW-Authenticate") != `Bearer realm="icegate"` {
			t.Errorf("no key: %d %v %s", r.status, r.header, r.raw)
		}
		r = call(t, hs, "POST", path, apiKey+"x", `{"ttl": 600}`)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("bad key: %d %v %s", r.status, r.header, r.raw)
		}
		if strings.Contains(r.raw, "iceServers") {
			t.Errorf("a refused request got credentials: %s", r.raw)
		}
	})
	t.Run("bad bodies", func(t *testing.T) {
		for _, c := range []struct{ body, code string }{
			{`{"ttl": 600, "custom_identifier": "a:b"}`, apiCodeBadRequest}, // the separator
			{`{"custom_identifier": "a b"}`, apiCodeBadRequest},             // a space
			{`{"custom_identifier": "é"}`, apiCodeBadRequest},               // not ASCII
			{`{"custom_identifier": "` + strings.Repeat("a", 129) + `"}`, apiCodeBadRequest},
			{`{"ttl": 600, "user": "x"}`, apiCodeBadRequest}, // unknown field
			{`[]`, apiCodeBadRequest},
			{`{"ttl": 600} {}`, apiCodeBadRequest},
		} {
			r := call(t, hs, "POST", path, apiKey, c.body)
			if r.status != http.StatusBadRequest || r.errCode() != c.code {
				t.Errorf("%s: %d %s, want 400 %s", c.body, r.status, r.raw, c.code)
			}
		}
		a := decodeCreds(t, call(t, hs, "POST", path, apiKey, `{"custom_identifier": "`+strings.Repeat("a", 128)+`"}`))
		checkMinted(t, a, strings.Repeat("a", 128), time.Hour)
		r := call(t, hs, "GET", path, apiKey, "")
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
			t.Errorf("GET: %d %s", r.status, r.raw)
		}
		req, _ := http.NewRequest("POST", hs.URL+path, strings.NewReader(`{"ttl": 600}`))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Content-Type", "text/plain")
		if r := do(t, req); r.status != http.StatusUnsupportedMediaType {
			t.Errorf("text/plain: %d %s", r.status, r.raw)
		}
	})
}

// TestAPITURNCredentialsSettings: the cap, the separator and the
// transports come from the config; a draining relay or a missing secret
// is a 503, unless steering names another node.
func TestAPITURNCredentialsSettings(t *testing.T) {
	const path = "/api/v1/turn/credentials"
	t.Run("cap and separator", func(t *testing.T) {
		hs := credsServer(t, func(c *Config) { c.MaxCredentialTTL = 2 * time.Hour; c.Separator = "-" }, false, nil, nil)
		a := decodeCreds(t, call(t, hs, "POST", path, apiKey, `{"ttl": 86400}`))
		if a.TTL != 7200 {
			t.Errorf("ttl %d, want the cap 7200", a.TTL)
		}
		r := call(t, hs, "POST", path, apiKey, `{"custom_identifier": "a-b"}`)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errMessage(), "separator") {
			t.Errorf("an id with the separator \"-\": %d %s", r.status, r.raw)
		}
	})
	t.Run("transports", func(t *testing.T) {
		for _, c := range []struct {
			relay Relay
			want  []string
		}{
			{Relay{Port: 3478, UDP: true}, []string{"stun:h:3478", "turn:h:3478?transport=udp"}},
			{Relay{Port: 3478, TCP: true}, []string{"turn:h:3478?transport=tcp"}},
			// A shared TURNS+HTTPS port: listen.tls_port is the HTTPS port.
			{Relay{Port: 3478, TLSPort: 443, UDP: true, TLS: true}, []string{"stun:h:3478", "turn:h:3478?transport=udp", "turns:h:443?transport=tcp"}},
		} {
			hs := credsServer(t, func(cfg *Config) { cfg.Relay = c.relay; cfg.TURNHost = "h" }, false, nil, nil)
			if got := urlsOf(decodeCreds(t, call(t, hs, "POST", path, apiKey, `{}`))); !slices.Equal(got, c.want) {
				t.Errorf("%+v: %q, want %q", c.relay, got, c.want)
			}
		}
	})
	t.Run("no secret", func(t *testing.T) {
		hs := credsServer(t, nil, true, nil, nil)
		r := call(t, hs, "POST", path, apiKey, `{}`)
		if r.status != http.StatusServiceUnavailable || r.errCode() != apiCodeNoSecret {
			t.Errorf("%d %s", r.status, r.raw)
		}
	})
	t.Run("draining, then steered", func(t *testing.T) {
		var drain atomic.Bool
		var other atomic.Bool
		steer := func() (TURNNode, bool) {
			if !other.Load() {
				return TURNNode{}, false
			}
			return TURNNode{Node: "b", Host: "node-b.example.org", Relay: Relay{Port: 3479, UDP: true}}, true
		}
		hs := credsServer(t, func(c *Config) { c.TURNHost = "node-a.example.org" }, false, &drain, steer)
		drain.Store(true)
		r := call(t, hs, "POST", path, apiKey, `{}`)
		if r.status != http.StatusServiceUnavailable || r.errCode() != apiCodeDraining {
			t.Errorf("draining alone: %d %s", r.status, r.raw)
		}
		other.Store(true)
		a := decodeCreds(t, call(t, hs, "POST", path, apiKey, `{"custom_identifier": "u1"}`))
		if got, want := urlsOf(a), []string{"stun:node-b.example.org:3479", "turn:node-b.example.org:3479?transport=udp"}; !slices.Equal(got, want) {
			t.Errorf("steered: %q, want %q", got, want)
		}
		checkMinted(t, a, "u1", time.Hour)
		// The GET endpoints follow the same steering.
		req, _ := http.NewRequest("GET", hs.URL+"/api/ice-servers", nil)
		req.Header.Set("Origin", hs.URL)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ ICEServers []auth.ICEServer }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if len(body.ICEServers) != 2 || !strings.Contains(body.ICEServers[1].URLs[0], "node-b.example.org") {
			t.Errorf("/api/ice-servers: %+v", body.ICEServers)
		}
	})
}
