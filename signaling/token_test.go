package signaling

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// rawToken signs a payload as written, so tests can send claims MintToken
// would refuse or encode differently (an "aud" array of one, a bad meta).
func rawToken(secret, payload string) string {
	signing := b64.EncodeToString([]byte(tokenHeader)) + "." + b64.EncodeToString([]byte(payload))
	return signing + "." + b64.EncodeToString(sign(secret, signing))
}

// TestTokenMeta: meta comes back byte for byte; a meta that is not an
// object, or is larger than MaxMetaBytes, is refused by both ends.
func TestTokenMeta(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Hour).Unix()
	meta := `{"name":"Alice \u00e9","n":1.50, "tags":["a"]}`
	tok, err := MintToken("s", Claims{Subject: "u", Expiry: exp, Meta: json.RawMessage(meta)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := VerifyToken([]string{"s"}, tok, now)
	if err != nil {
		t.Fatal(err)
	}
	// MintToken's encoding/json compacts the RawMessage it marshals; what
	// was signed is what comes back.
	if string(c.Meta) != `{"name":"Alice \u00e9","n":1.50,"tags":["a"]}` {
		t.Errorf("meta %s", c.Meta)
	}
	// A token from another JWT library keeps its spacing: carried verbatim.
	spaced := `{ "x" : [1, 2] }`
	c, err = VerifyToken([]string{"s"}, rawToken("s", `{"sub":"u","exp":`+itoa(exp)+`,"meta":`+spaced+`}`), now)
	if err != nil || string(c.Meta) != spaced {
		t.Errorf("verbatim meta: %q, %v", c.Meta, err)
	}
	if c, err := VerifyToken([]string{"s"}, rawToken("s", `{"sub":"u","exp":`+itoa(exp)+`}`), now); err != nil || c.Meta != nil {
		t.Errorf("no meta: %q, %v", c.Meta, err)
	}

	big := `{"k":"` + strings.Repeat("x", MaxMetaBytes) + `"}`
	for _, m := range []string{`"a string"`, `[1,2]`, `42`, big} {
		if _, err := MintToken("s", Claims{Subject: "u", Expiry: exp, Meta: json.RawMessage(m)}); err == nil {
			t.Errorf("MintToken took meta %.30s", m)
		}
		_, err := VerifyToken([]string{"s"}, rawToken("s", `{"sub":"u","exp":`+itoa(exp)+`,"meta":`+m+`}`), now)
		if !errors.Is(err, ErrTokenInvalid) || !strings.Contains(err.Error(), `"meta"`) {
			t.Errorf("meta %.30s: %v", m, err)
		}
	}
	// Exactly MaxMetaBytes passes.
	edge := `{"k":"` + strings.Repeat("x", MaxMetaBytes-8) + `"}`
	if len(edge) != MaxMetaBytes {
		t.Fatalf("edge is %d bytes", len(edge))
	}
	if _, err := VerifyToken([]string{"s"}, rawToken("s", `{"sub":"u","exp":`+itoa(exp)+`,"meta":`+edge+`}`), now); err != nil {
		t.Errorf("meta of MaxMetaBytes: %v", err)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestTokenAudience: "aud" as a string or an array (RFC 7519 §4.1.3),
// checked only when an audience is configured.
func TestTokenAudience(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	exp := itoa(now.Add(time.Hour).Unix())
	rules := TokenRules{Secrets: []string{"s"}, Audience: "icegate"}
	for _, tc := range []struct {
		aud  string // the claim as JSON; "" for none
		want string // "" to pass, else a part of the error
	}{
		{`"icegate"`, ""},
		{`["other","icegate"]`, ""},
		{`["icegate"]`, ""},
		{`"other"`, `"aud" ["other"] does not name "icegate"`},
		{`["Icegate"]`, "does not name"}, // case-sensitive
		{`[]`, `no "aud"`},
		{``, `no "aud"`},
		{`7`, `"aud" must be a string or an array of strings`},
	} {
		payload := `{"sub":"u","exp":` + exp
		if tc.aud != "" {
			payload += `,"aud":` + tc.aud
		}
		tok := rawToken("s", payload+"}")
		_, err := rules.Verify(tok, now)
		if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, ErrTokenInvalid) || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("aud %s: %v, want %q", tc.aud, err, tc.want)
		}
		// Without a configured audience "aud" is not checked (a malformed
		// one still fails to decode).
		if _, err := VerifyToken([]string{"s"}, tok, now); (err != nil) != (tc.aud == "7") {
			t.Errorf("aud %s with no audience configured: %v", tc.aud, err)
		}
	}
	// One audience mints as a string, several as an array.
	for aud, want := range map[string]Audience{`"a"`: {"a"}, `["a","b"]`: {"a", "b"}} {
		tok, err := MintToken("s", Claims{Subject: "u", Expiry: now.Add(time.Hour).Unix(), Audience: want})
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := b64.DecodeString(strings.Split(tok, ".")[1])
		if !strings.Contains(string(payload), `"aud":`+aud) {
			t.Errorf("minted %s, want aud %s", payload, aud)
		}
	}
}

// TestTokenMaxLifetime: exp - iat is capped when configured, and a token
// without iat is then refused.
func TestTokenMaxLifetime(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	rules := TokenRules{Secrets: []string{"s"}, MaxLifetime: time.Hour}
	for _, tc := range []struct {
		name     string
		iat, exp int64
		want     string
	}{
		{"within", now.Unix(), now.Add(time.Hour).Unix(), ""},
		{"longer", now.Unix(), now.Add(time.Hour + time.Second).Unix(), "lifetime (exp - iat) 1h0m1s is longer than signaling.max_token_lifetime 1h0m0s"},
		{"no iat", 0, now.Add(time.Minute).Unix(), `no "iat"`},
		{"exp before iat", now.Add(2 * time.Minute).Unix(), now.Add(time.Minute).Unix(), `"exp" is before "iat"`},
	} {
		tok, err := MintToken("s", Claims{Subject: "u", IssuedAt: tc.iat, Expiry: tc.exp})
		if err != nil {
			t.Fatal(err)
		}
		_, err = rules.Verify(tok, now)
		if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, ErrTokenInvalid) || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if _, err := VerifyToken([]string{"s"}, tok, now); err != nil {
			t.Errorf("%s without a cap: %v", tc.name, err)
		}
	}
}

// TestCheckRoomPattern follows checkRoom, with a trailing "*".
func TestCheckRoomPattern(t *testing.T) {
	long := strings.Repeat("r", maxRoomBytes)
	for p, ok := range map[string]bool{
		"a": true, "team-*": true, "*": true, long: true, long + "*": true, "a*b": true,
		"": false, "a b": false, "a b*": false, long + "r": false, long + "r*": false, "caf\u00e9": false, "tab\t": false,
	} {
		if err := CheckRoomPattern(p); (err == nil) != ok {
			t.Errorf("CheckRoomPattern(%q) = %v, want ok %v", p, err, ok)
		}
	}
	if _, err := MintToken("s", Claims{Subject: "u", Expiry: 1, Rooms: []string{"ok", "not ok"}}); err == nil || !strings.Contains(err.Error(), `room "not ok"`) {
		t.Errorf("MintToken with a bad room: %v", err)
	}
}

// TestTokenRulesOverHTTP: the configured audience and lifetime cap apply
// before the upgrade, with the reason in the 401.
func TestTokenRulesOverHTTP(t *testing.T) {
	_, hs := httpServer(t, func(c *Config) {
		c.TokenSecrets = []string{tokenSecret}
		c.TokenAudience = "icegate"
		c.MaxTokenLifetime = time.Hour
	})
	now := time.Now()
	good, _ := MintToken(tokenSecret, Claims{Subject: "a", Audience: Audience{"icegate"}, IssuedAt: now.Unix(), Expiry: now.Add(time.Hour).Unix()})
	wrongAud, _ := MintToken(tokenSecret, Claims{Subject: "a", Audience: Audience{"x"}, IssuedAt: now.Unix(), Expiry: now.Add(time.Hour).Unix()})
	tooLong, _ := MintToken(tokenSecret, Claims{Subject: "a", Audience: Audience{"icegate"}, IssuedAt: now.Unix(), Expiry: now.Add(2 * time.Hour).Unix()})
	for _, tc := range []struct {
		tok  string
		code int
		body string
	}{
		{good, 101, ""},
		{wrongAud, 401, "signaling.token_audience"},
		{tooLong, 401, "signaling.max_token_lifetime"},
	} {
		code, body, _ := dialWS(t, wsURL(hs, "/ws?token="+tc.tok), nil)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("got %d %q, want %d %q", code, body, tc.code, tc.body)
		}
	}
}
