package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

const testRealm = "example.org"

// refKey computes a time-limited credential's key the slow, obvious way,
// with crypto/hmac, independently of the precomputed pads in restKeys.
func refKey(secret, username, realm string) []byte {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(username))
	pw := base64.StdEncoding.EncodeToString(m.Sum(nil))
	k := md5.Sum([]byte(username + ":" + realm + ":" + pw))
	return k[:]
}

func TestLongTermKey(t *testing.T) {
	// MD5("alice:example.org:secret"), computed independently.
	want := "543e1aec5d3614f03141652d6ada51b2"
	if got := hex.EncodeToString(LongTermKey("alice", testRealm, "secret")); got != want {
		t.Fatalf("LongTermKey = %s, want %s", got, want)
	}
}

func TestRESTPasswordVector(t *testing.T) {
	// openssl: printf 1700000000:alice | openssl dgst -sha1 -hmac north -binary | base64
	const want = "Cd/49soE35ICqcJF/bCTn8Z4OyE="
	got := RESTPassword("north", "1700000000:alice")
	if got != want {
		t.Fatalf("RESTPassword = %q, want %q", got, want)
	}
	m := hmac.New(sha1.New, []byte("north"))
	m.Write([]byte("1700000000:alice"))
	if indep := base64.StdEncoding.EncodeToString(m.Sum(nil)); indep != got {
		t.Fatalf("independent HMAC = %q, RESTPassword = %q", indep, got)
	}
	// And the key a server derives from it.
	wantKey := "d9a6a3d964467baeffd2fce41704a913"
	if k := hex.EncodeToString(LongTermKey("1700000000:alice", testRealm, got)); k != wantKey {
		t.Fatalf("key = %s, want %s", k, wantKey)
	}
}

func TestParseFormatKey(t *testing.T) {
	k := LongTermKey("alice", testRealm, "secret")
	s := FormatKey(k)
	if s != "0x543e1aec5d3614f03141652d6ada51b2" {
		t.Fatalf("FormatKey = %s", s)
	}
	for _, in := range []string{s, strings.TrimPrefix(s, "0x"), "0X" + strings.ToUpper(s[2:])} {
		got, err := ParseKey(in)
		if err != nil || !bytes.Equal(got, k) {
			t.Errorf("ParseKey(%q) = %x, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0x", "0x1234", s + "00", "0x543e1aec5d3614f03141652d6ada51zz", "0x0X" + s[2:]} {
		if _, err := ParseKey(in); err == nil {
			t.Errorf("ParseKey(%q): want error", in)
		}
	}
}

func TestMintREST(t *testing.T) {
	now := time.Unix(1_700_000_000, 500_000_000)
	tests := []struct {
		user, sep    string
		ttl          time.Duration
		wantUsername string
	}{
		{"alice", "", time.Hour, "1700003600:alice"},
		{"alice", ":", 10 * time.Second, "1700000010:alice"},
		{"", "", time.Hour, "1700003600"},
		{"bob", "-", time.Minute, "1700000060-bob"},
		{"a:b", ":", 0, "1700000000:a:b"},
	}
	for _, tt := range tests {
		u, p, exp := MintREST("north", tt.user, tt.ttl, now, tt.sep)
		if u != tt.wantUsername {
			t.Errorf("MintREST(%q, %v, %q) username = %q, want %q", tt.user, tt.ttl, tt.sep, u, tt.wantUsername)
		}
		if p != RESTPassword("north", u) {
			t.Errorf("MintREST(%q) password = %q, want RESTPassword", tt.user, p)
		}
		if want := now.Add(tt.ttl).Truncate(time.Second); !exp.Equal(want) {
			t.Errorf("MintREST(%q) expires = %v, want %v", tt.user, exp, want)
		}
	}
}

func TestKeys(t *testing.T) {
	precomputed := LongTermKey("carol", testRealm, "hunter2")
	users := []StaticUser{
		{Name: "alice", Password: "secret"},
		{Name: "carol", Key: precomputed},
		{Name: "1800000000", Password: "ts-looking"},       // a static user that looks like a timestamp
		{Name: "1600000000:dave", Password: "old-looking"}, // and one that looks like an expired REST name
		{Name: "erin", Password: "old"},
		{Name: "erin", Password: "new"},
	}
	secrets := []string{"north", "south"}
	rest := func(username string) [][]byte {
		return [][]byte{refKey("north", username, testRealm), refKey("south", username, testRealm)}
	}
	tests := []struct {
		name     string
		users    []StaticUser
		secrets  []string
		sep      string
		username string
		now      time.Time

		wantUser   string
		wantKeys   [][]byte
		wantReason Reason
		wantBy     time.Duration
	}{
		{name: "static password", users: users, username: "alice",
			wantUser: "alice", wantKeys: [][]byte{LongTermKey("alice", testRealm, "secret")}},
		{name: "static key", users: users, username: "carol",
			wantUser: "carol", wantKeys: [][]byte{precomputed}},
		{name: "static duplicate name gives both keys", users: users, username: "erin",
			wantUser: "erin", wantKeys: [][]byte{LongTermKey("erin", testRealm, "old"), LongTermKey("erin", testRealm, "new")}},
		{name: "static timestamp-looking name", users: users, secrets: secrets, username: "1800000000",
			wantUser: "1800000000", wantKeys: [][]byte{LongTermKey("1800000000", testRealm, "ts-looking")}},
		{name: "static wins over expired REST form", users: users, secrets: secrets, username: "1600000000:dave",
			wantUser: "1600000000:dave", wantKeys: [][]byte{LongTermKey("1600000000:dave", testRealm, "old-looking")}},
		{name: "static unknown", users: users, username: "bob", wantReason: ReasonUnknownUser},
		{name: "static only, REST-looking name", users: users, username: "1800000000:bob", wantReason: ReasonUnknownUser},
		{name: "nothing configured", username: "alice", wantReason: ReasonNoCredentials},

		{name: "EXPIRY:USER", secrets: secrets, username: "1700000060:alice",
			wantUser: "alice", wantKeys: rest("1700000060:alice")},
		{name: "EXPIRY:USER expiring this second", secrets: secrets, username: "1700000000:alice",
			wantUser: "alice", wantKeys: rest("1700000000:alice")},
		{name: "EXPIRY:USER user contains separator", secrets: secrets, username: "1700000060:alice:room1",
			wantUser: "alice:room1", wantKeys: rest("1700000060:alice:room1")},
		{name: "EXPIRY:USER numeric user", secrets: secrets, username: "1700000060:42",
			wantUser: "42", wantKeys: rest("1700000060:42")},
		{name: "USER:EXPIRY", secrets: secrets, username: "alice:1700000060",
			wantUser: "alice", wantKeys: rest("alice:1700000060")},
		{name: "USER:EXPIRY mixed user", secrets: secrets, username: "a1b2:1700000060",
			wantUser: "a1b2", wantKeys: rest("a1b2:1700000060")},
		{name: "bare EXPIRY", secrets: secrets, username: "1700000060",
			wantUser: "1700000060", wantKeys: rest("1700000060")},
		{name: "EXPIRY: empty user", secrets: secrets, username: "1700000060:",
			wantUser: "1700000060:", wantKeys: rest("1700000060:")},
		{name: "leading separator", secrets: secrets, username: ":1700000060",
			wantUser: ":1700000060", wantKeys: rest(":1700000060")},
		{name: "leading separator with user", secrets: secrets, username: ":1700000060:alice",
			wantUser: "alice", wantKeys: rest(":1700000060:alice")},
		{name: "custom separator", secrets: secrets, sep: "-", username: "1700000060-alice",
			wantUser: "alice", wantKeys: rest("1700000060-alice")},
		{name: "custom separator USER-EXPIRY", secrets: secrets, sep: "-", username: "alice-1700000060",
			wantUser: "alice", wantKeys: rest("alice-1700000060")},
		{name: "custom separator leaves colon alone", secrets: secrets, sep: "-", username: "1700000060:alice",
			wantReason: ReasonUnknownUser},
		{name: "REST and static side by side", users: users, secrets: secrets, username: "1700000060:alice",
			wantUser: "alice", wantKeys: rest("1700000060:alice")},

		{name: "expired by 42s", secrets: secrets, username: "1699999958:alice", wantReason: ReasonExpired, wantBy: 42 * time.Second},
		{name: "USER:EXPIRY expired", secrets: secrets, username: "alice:1699999999", wantReason: ReasonExpired, wantBy: time.Second},
		{name: "bare expired", secrets: secrets, username: "0", wantReason: ReasonExpired, wantBy: 1_700_000_000 * time.Second},
		{name: "expired by fraction rounds in seconds", secrets: secrets, username: "1699999999:alice",
			now: time.Unix(1_700_000_000, 900_000_000), wantReason: ReasonExpired, wantBy: time.Second},

		{name: "unknown plain name", secrets: secrets, username: "bob", wantReason: ReasonUnknownUser},
		{name: "empty username", users: users, secrets: secrets, username: "", wantReason: ReasonMalformedUsername},
		{name: "non-numeric expiry", secrets: secrets, username: "alice:bob", wantReason: ReasonMalformedUsername},
		{name: "USER: empty expiry", secrets: secrets, username: "alice:", wantReason: ReasonMalformedUsername},
		{name: "lone separator", secrets: secrets, username: ":", wantReason: ReasonMalformedUsername},
		{name: "leading separator garbage", secrets: secrets, username: ":alice", wantReason: ReasonMalformedUsername},
		{name: "double leading separator", secrets: secrets, username: "::1700000060", wantReason: ReasonMalformedUsername},
		{name: "overflow", secrets: secrets, username: "99999999999999999999:alice", wantReason: ReasonMalformedUsername},
		{name: "overflow USER:EXPIRY", secrets: secrets, username: "alice:9223372036854775808", wantReason: ReasonMalformedUsername},
		{name: "max int64 is fine", secrets: secrets, username: "alice:9223372036854775807",
			wantUser: "alice", wantKeys: rest("alice:9223372036854775807")},
		{name: "signed expiry", secrets: secrets, username: "alice:+1700000060", wantReason: ReasonMalformedUsername},
		{name: "trailing junk", secrets: secrets, username: "alice:1700000060:x", wantReason: ReasonMalformedUsername},
		{name: "spaces", secrets: secrets, username: "alice: 1700000060", wantReason: ReasonMalformedUsername},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCredentials(testRealm, tt.users, tt.secrets, tt.sep)
			if err != nil {
				t.Fatal(err)
			}
			now := tt.now
			if now.IsZero() {
				now = time.Unix(1_700_000_000, 0)
			}
			user, keys, err := c.Keys(tt.username, now)
			if tt.wantReason != "" {
				var r *Refusal
				if !errors.As(err, &r) {
					t.Fatalf("Keys(%q) = %q, %x, %v; want refusal %s", tt.username, user, keys, err, tt.wantReason)
				}
				if r.Reason != tt.wantReason || r.ExpiredBy != tt.wantBy || r.Username != tt.username {
					t.Fatalf("Keys(%q) refusal = %+v, want reason %s by %v", tt.username, *r, tt.wantReason, tt.wantBy)
				}
				if user != "" || keys != nil {
					t.Fatalf("Keys(%q) returned %q, %x with an error", tt.username, user, keys)
				}
				return
			}
			if err != nil {
				t.Fatalf("Keys(%q): %v", tt.username, err)
			}
			if user != tt.wantUser {
				t.Errorf("Keys(%q) userID = %q, want %q", tt.username, user, tt.wantUser)
			}
			if len(keys) != len(tt.wantKeys) {
				t.Fatalf("Keys(%q) = %d keys, want %d", tt.username, len(keys), len(tt.wantKeys))
			}
			for i := range keys {
				if !bytes.Equal(keys[i], tt.wantKeys[i]) {
					t.Errorf("Keys(%q)[%d] = %x, want %x", tt.username, i, keys[i], tt.wantKeys[i])
				}
			}
		})
	}
}

// integrity stands in for MESSAGE-INTEGRITY (RFC 8489 §14.5): an HMAC-SHA1
// of the message under the long-term key.
func integrity(key []byte, msg string) []byte {
	m := hmac.New(sha1.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func TestVerifyRotatedSecrets(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c, err := NewCredentials(testRealm, []StaticUser{{Name: "alice", Password: "secret"}}, []string{"old", "new"}, "")
	if err != nil {
		t.Fatal(err)
	}
	const msg = "a STUN request"
	// client simulates a browser: it only knows username and password and
	// derives the key itself.
	client := func(username, password string) func([]byte) bool {
		mi := integrity(LongTermKey(username, testRealm, password), msg)
		return func(key []byte) bool { return hmac.Equal(integrity(key, msg), mi) }
	}
	for _, secret := range []string{"old", "new"} {
		u, p, _ := MintREST(secret, "bob", time.Hour, now, "")
		user, key, err := c.Verify(u, now, client(u, p))
		if err != nil {
			t.Fatalf("secret %q: Verify: %v", secret, err)
		}
		if user != "bob" || !bytes.Equal(key, LongTermKey(u, testRealm, p)) {
			t.Fatalf("secret %q: Verify = %q, %x", secret, user, key)
		}
	}
	u, p, _ := MintREST("third", "bob", time.Hour, now, "")
	_, _, err = c.Verify(u, now, client(u, p))
	if !errors.Is(err, ErrBadIntegrity) {
		t.Fatalf("third secret: Verify err = %v, want ErrBadIntegrity", err)
	}
	if _, _, err := c.Verify("alice", now, client("alice", "secret")); err != nil {
		t.Fatalf("static: %v", err)
	}
	if _, _, err := c.Verify("alice", now, client("alice", "wrong")); !errors.Is(err, ErrBadIntegrity) {
		t.Fatalf("static wrong password: %v", err)
	}
	// An expired credential is refused before any key is tried.
	u, p, _ = MintREST("old", "bob", -time.Minute, now, "")
	_, _, err = c.Verify(u, now, func([]byte) bool { t.Fatal("check called for expired credential"); return true })
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v (password %s)", err, p)
	}
}

func TestRefusal(t *testing.T) {
	tests := []struct {
		r    *Refusal
		msg  string
		sent error
	}{
		{&Refusal{Reason: ReasonExpired, Username: "1:a", ExpiredBy: 42 * time.Second}, "credential expired by 42s", ErrExpired},
		{&Refusal{Reason: ReasonUnknownUser, Username: "bob"}, `unknown user "bob"`, ErrUnknownUser},
		{&Refusal{Reason: ReasonBadIntegrity, Username: "alice"}, `bad message integrity for "alice"`, ErrBadIntegrity},
		{&Refusal{Reason: ReasonMalformedUsername, Username: "a:b", Detail: "empty expiry"}, `malformed username "a:b": empty expiry`, ErrMalformedUsername},
		{&Refusal{Reason: ReasonNoCredentials}, "no credentials configured", ErrNoCredentials},
		{&Refusal{Reason: ReasonUnknownUser, Username: "x\ny"}, `unknown user "x\ny"`, ErrUnknownUser},
		{&Refusal{Reason: ReasonUnknownUser, Username: strings.Repeat("a", 100)}, `unknown user "` + strings.Repeat("a", maxQuoted) + `"...`, ErrUnknownUser},
	}
	all := []error{ErrExpired, ErrUnknownUser, ErrBadIntegrity, ErrMalformedUsername, ErrNoCredentials}
	for _, tt := range tests {
		if got := tt.r.Error(); got != tt.msg {
			t.Errorf("Error() = %q, want %q", got, tt.msg)
		}
		for _, s := range all {
			if got := errors.Is(tt.r, s); got != (s == tt.sent) {
				t.Errorf("errors.Is(%q, %v) = %v", tt.msg, s, got)
			}
		}
	}
}

func TestNewCredentialsErrors(t *testing.T) {
	tests := []struct {
		name    string
		realm   string
		users   []StaticUser
		secrets []string
		sep     string
		want    string
	}{
		{"no realm", "", []StaticUser{{Name: "a", Password: "b"}}, nil, "", "realm"},
		{"long realm", strings.Repeat("r", 764), nil, []string{"s"}, "", "realm"},
		{"bad utf8 realm", "\xff", nil, []string{"s"}, "", "realm"},
		{"empty name", testRealm, []StaticUser{{Password: "b"}}, nil, "", "users[0]"},
		{"long name", testRealm, []StaticUser{{Name: strings.Repeat("n", 514), Password: "b"}}, nil, "", "users[0]"},
		{"both", testRealm, []StaticUser{{Name: "a", Password: "b", Key: make([]byte, 16)}}, nil, "", "both"},
		{"neither", testRealm, []StaticUser{{Name: "a"}}, nil, "", "neither"},
		{"short key", testRealm, []StaticUser{{Name: "a", Key: make([]byte, 15)}}, nil, "", "key is 15 bytes"},
		{"empty secret", testRealm, nil, []string{"s", ""}, "", "secrets[1]"},
		{"two-byte separator", testRealm, nil, []string{"s"}, "::", "separator"},
		{"digit separator", testRealm, nil, []string{"s"}, "5", "separator"},
		{"non-ASCII separator", testRealm, nil, []string{"s"}, "é", "separator"},
	}
	for _, tt := range tests {
		_, err := NewCredentials(tt.realm, tt.users, tt.secrets, tt.sep)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tt.name, err, tt.want)
		}
	}
	c, err := NewCredentials("", nil, nil, "")
	if err != nil || !c.Empty() {
		t.Fatalf("empty credentials: %v, Empty=%v", err, c != nil && c.Empty())
	}
	c, err = NewCredentials(testRealm, nil, []string{"s"}, "")
	if err != nil || c.Empty() || c.Realm() != testRealm {
		t.Fatalf("secret-only credentials: %v", err)
	}
}

// TestNewCredentialsCopiesKey: changing the caller's slice afterwards must
// not change the credentials, which are immutable.
func TestNewCredentialsCopiesKey(t *testing.T) {
	key := LongTermKey("carol", testRealm, "pw")
	want := bytes.Clone(key)
	c, err := NewCredentials(testRealm, []StaticUser{{Name: "carol", Key: key}}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	key[0] ^= 0xff
	_, keys, _ := c.Keys("carol", time.Now())
	if !bytes.Equal(keys[0], want) {
		t.Fatal("credentials share the caller's key slice")
	}
}

func TestStaticUserRedacts(t *testing.T) {
	u := StaticUser{Name: "alice", Password: "hunter2", Key: []byte("k")}
	for _, s := range []string{u.String(), u.LogValue().String()} {
		if strings.Contains(s, "hunter2") || !strings.Contains(s, "alice") {
			t.Errorf("redaction: %q", s)
		}
	}
}

// TestRESTKeysLongInputs exercises the heap fallbacks of restKeys (username
// longer than RFC 8489 allows) and RFC 2104's hashing of secrets longer
// than a block, against crypto/hmac.
func TestRESTKeysLongInputs(t *testing.T) {
	long := strings.Repeat("s", 200)
	c, err := NewCredentials(strings.Repeat("r", maxRealmLen), nil, []string{long, "short", strings.Repeat("x", 64)}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 400, 513, 514, 2000} {
		username := "4000000000:" + strings.Repeat("u", n)
		_, keys, err := c.Keys(username, time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range []string{long, "short", strings.Repeat("x", 64)} {
			if want := refKey(s, username, c.Realm()); !bytes.Equal(keys[i], want) {
				t.Errorf("user len %d secret %d: key %x, want %x", n, i, keys[i], want)
			}
		}
	}
}

func TestKeysAllocs(t *testing.T) {
	c, err := NewCredentials(testRealm, []StaticUser{{Name: "alice", Password: "secret"}}, []string{"a", "b", "c"}, "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	if n := testing.AllocsPerRun(100, func() { c.Keys("alice", now) }); n != 0 {
		t.Errorf("static Keys allocates %v times, want 0", n)
	}
	// The returned [][]byte and its backing array, nothing else.
	if n := testing.AllocsPerRun(100, func() { c.Keys("1700000060:bob", now) }); n > 2 {
		t.Errorf("REST Keys allocates %v times, want <= 2", n)
	}
}

func FuzzKeys(f *testing.F) {
	for _, s := range []string{"", "alice", "1700000060:alice", "alice:1700000060", "1700000060", ":1700000060",
		":", "::", "a:b:c", "99999999999999999999", "1700000060:", "\x00:1", "9223372036854775807:x"} {
		f.Add(s)
	}
	c, err := NewCredentials(testRealm, []StaticUser{{Name: "alice", Password: "secret"}}, []string{"north", "south"}, "")
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, username string) {
		user, keys, err := c.Keys(username, now)
		if err != nil {
			var r *Refusal
			if !errors.As(err, &r) || r.Username != username || r.Error() == "" {
				t.Fatalf("Keys(%q) error %v is not a proper *Refusal", username, err)
			}
			if user != "" || keys != nil {
				t.Fatalf("Keys(%q) returned values with an error", username)
			}
			return
		}
		if user == "" || len(keys) == 0 {
			t.Fatalf("Keys(%q) = %q, %d keys", username, user, len(keys))
		}
		if !strings.Contains(username, user) {
			t.Fatalf("Keys(%q) userID %q is not part of the username", username, user)
		}
		if username == "alice" {
			return
		}
		for i, s := range []string{"north", "south"} {
			if want := refKey(s, username, testRealm); !bytes.Equal(keys[i], want) {
				t.Fatalf("Keys(%q)[%d] = %x, want %x", username, i, keys[i], want)
			}
		}
		// Whatever was accepted must round-trip: the same credential
		// minted for the parsed user is accepted with the same user id
		// (unless the user id is the whole username, i.e. there was none).
		if user != username {
			u, _, _ := MintREST("north", user, time.Hour, now, "")
			if got, _, err := c.Keys(u, now); err != nil || got != user {
				t.Fatalf("minted %q for user %q: Keys = %q, %v", u, user, got, err)
			}
		}
	})
}

// TestICEServersBracketedIPv6: an IPv6 host, bracketed or not (config
// accepts both for signaling.turn_host), gives URLs bracketed once.
func TestICEServersBracketedIPv6(t *testing.T) {
	for _, host := range []string{"2001:db8::7", "[2001:db8::7]"} {
		s := ICEServers(host, 3478, 5349, Transports{UDP: true, TLS: true}, "u", "p")
		if got := s[0].URLs[0]; got != "stun:[2001:db8::7]:3478" {
			t.Fatalf("%s: %q", host, got)
		}
		if got := s[1].URLs[1]; got != "turns:[2001:db8::7]:5349?transport=tcp" {
			t.Fatalf("%s: %q", host, got)
		}
	}
}

// TestAccepts: what a reload asks of each live allocation. The key the
// allocation authenticated with must still verify under the new
// credentials; expiry does not matter.
func TestAccepts(t *testing.T) {
	now := time.Now()
	rest, _, _ := MintREST("secret-one", "carol", time.Hour, now, "")
	expired, _, _ := MintREST("secret-one", "dave", -time.Hour, now, "")
	aliceKey := LongTermKey("alice", testRealm, "pw1")
	restKey := refKey("secret-one", rest, testRealm)
	expiredKey := refKey("secret-one", expired, testRealm)

	for _, tc := range []struct {
		name     string
		users    []StaticUser
		secrets  []string
		username string
		key      []byte
		ok       bool
		reason   Reason
	}{
		{"static user kept", []StaticUser{{Name: "alice", Password: "pw1"}}, nil, "alice", aliceKey, true, ""},
		{"old and new password both listed", []StaticUser{{Name: "alice", Password: "pw2"}, {Name: "alice", Password: "pw1"}}, nil, "alice", aliceKey, true, ""},
		{"static user removed", []StaticUser{{Name: "bob", Password: "x"}}, nil, "alice", aliceKey, false, ReasonUnknownUser},
		{"password changed", []StaticUser{{Name: "alice", Password: "pw2"}}, nil, "alice", aliceKey, false, ReasonBadIntegrity},
		{"key given instead, same key", []StaticUser{{Name: "alice", Key: aliceKey}}, nil, "alice", aliceKey, true, ""},
		{"everything removed", nil, nil, "alice", aliceKey, false, ReasonNoCredentials},
		{"secret kept", nil, []string{"secret-two", "secret-one"}, rest, restKey, true, ""},
		{"secret removed", nil, []string{"secret-two"}, rest, restKey, false, ReasonBadIntegrity},
		{"secrets gone, users left", []StaticUser{{Name: "bob", Password: "x"}}, nil, rest, restKey, false, ReasonUnknownUser},
		{"expired but secret kept", nil, []string{"secret-one"}, expired, expiredKey, true, ""},
		{"static name with secrets only", nil, []string{"secret-one"}, "alice", aliceKey, false, ReasonUnknownUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCredentials(testRealm, tc.users, tc.secrets, "")
			if err != nil {
				t.Fatal(err)
			}
			ok, reason := c.Accepts(tc.username, tc.key)
			if ok != tc.ok || reason != tc.reason {
				t.Errorf("Accepts = %v %q, want %v %q", ok, reason, tc.ok, tc.reason)
			}
		})
	}
}
