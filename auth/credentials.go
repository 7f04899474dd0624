package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultSeparator separates the expiry from the user in a time-limited
// username, as coturn's rest-api-separator defaults to.
const DefaultSeparator = ":"

const (
	// KeySize is the size of a long-term key: an MD5 digest
	// (RFC 8489 §9.2.2; the SHA-256 variant of PASSWORD-ALGORITHM is not
	// supported by coturn's shared-secret mechanism, nor here).
	KeySize = md5.Size

	// maxUsernameLen is the USERNAME limit of RFC 8489 §14.3.
	maxUsernameLen = 513
	// maxRealmLen is the REALM limit of RFC 8489 §14.9.
	maxRealmLen = 763
	// restPasswordLen is len(base64(HMAC-SHA1)): 20 bytes in 28 characters.
	restPasswordLen = 28
)

// StaticUser is a user configured with a fixed password. Exactly one of
// Password and Key must be set.
type StaticUser struct {
	// Name is the USERNAME the client sends, compared byte for byte.
	Name string
	// Password is the plain password.
	Password string
	// Key is the precomputed long-term key MD5(Name ":" realm ":" password),
	// 16 bytes, so the password need not be stored; ParseKey reads the
	// 0x-prefixed hex form `turnadmin -k` prints. It must have been computed
	// with the same realm as the Credentials it is given to.
	Key []byte
}

// String redacts the password and key, so a StaticUser printed with %v by
// mistake does not leak them.
func (u StaticUser) String() string { return u.Name + " [credentials redacted]" }

// LogValue implements slog.LogValuer, logging only the name.
func (u StaticUser) LogValue() slog.Value { return slog.StringValue(u.String()) }

// LongTermKey returns the long-term credential key of RFC 8489 §9.2.2,
// MD5(username ":" realm ":" password). Like coturn and pion it does not
// apply the OpaqueString profile (RFC 8265) to username and password;
// clients in practice send ASCII.
func LongTermKey(username, realm, password string) []byte {
	k := md5.Sum([]byte(username + ":" + realm + ":" + password))
	return k[:]
}

// ParseKey parses a long-term key written as 32 hex digits, optionally
// prefixed with 0x (or 0X) as `turnadmin -k` prints it.
func ParseKey(s string) ([]byte, error) {
	h := s
	if len(h) >= 2 && h[0] == '0' && (h[1] == 'x' || h[1] == 'X') {
		h = h[2:]
	}
	if len(h) != 2*KeySize {
		return nil, fmt.Errorf("key must be %d hex digits, got %d", 2*KeySize, len(h))
	}
	k, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("key is not hex: %w", err)
	}
	return k, nil
}

// FormatKey formats a long-term key as 0x followed by lowercase hex, the form
// `turnadmin -k` prints and ParseKey reads.
func FormatKey(key []byte) string { return "0x" + hex.EncodeToString(key) }

// RESTPassword returns the password of a time-limited username:
// base64(HMAC-SHA1(secret, username)), standard base64 with padding, as
// coturn computes it for use-auth-secret.
func RESTPassword(secret, username string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// MintREST mints a time-limited credential valid for ttl from now: the
// username is "EXPIRY" sep "USER" (just "EXPIRY" when user is empty), EXPIRY
// being the Unix time in seconds at which it expires, and the password is
// RESTPassword(secret, username). sep should be the separator given to
// NewCredentials; "" means DefaultSeparator.
func MintREST(secret, user string, ttl time.Duration, now time.Time, sep string) (username, password string, expires time.Time) {
	if sep == "" {
		sep = DefaultSeparator
	}
	exp := now.Add(ttl).Unix()
	username = strconv.FormatInt(exp, 10)
	if user != "" {
		username += sep + user
	}
	return username, RESTPassword(secret, username), time.Unix(exp, 0)
}

// hmacKey is a shared secret prepared for HMAC-SHA1 (RFC 2104 §2): the key
// XORed with ipad and opad, computed once so a request costs two
// sha1.Sum calls per secret and no allocation, where crypto/hmac.New would
// allocate two digests and both pads per request.
type hmacKey struct {
	ipad, opad [sha1.BlockSize]byte
}

func newHMACKey(secret string) hmacKey {
	key := []byte(secret)
	if len(key) > sha1.BlockSize {
		// RFC 2104 §2: keys longer than B bytes are first hashed.
		sum := sha1.Sum(key)
		key = sum[:]
	}
	var k hmacKey
	for i := range k.ipad {
		var b byte
		if i < len(key) {
			b = key[i]
		}
		k.ipad[i] = b ^ 0x36
		k.opad[i] = b ^ 0x5c
	}
	return k
}

// Credentials holds the static users and shared secrets of one realm. It is
// immutable after NewCredentials and safe for concurrent use; a reload
// builds a new one.
type Credentials struct {
	realm   string
	sep     byte
	static  map[string][][]byte
	nUsers  int
	secrets []hmacKey
}

// NewCredentials validates users and secrets and precomputes every static
// user's key and every secret's HMAC pads. separator is coturn's
// rest-api-separator: one ASCII byte that is not a digit; "" means
// DefaultSeparator. A user name may appear more than once (to accept an old
// and a new password during a change); each adds a candidate key.
func NewCredentials(realm string, users []StaticUser, secrets []string, separator string) (*Credentials, error) {
	if separator == "" {
		separator = DefaultSeparator
	}
	if len(separator) != 1 || separator[0] >= utf8.RuneSelf || ('0' <= separator[0] && separator[0] <= '9') {
		return nil, fmt.Errorf("separator %q: must be one ASCII character that is not a digit", separator)
	}
	c := &Credentials{
		realm:  realm,
		sep:    separator[0],
		static: make(map[string][][]byte, len(users)),
		nUsers: len(users),
	}
	if len(users) == 0 && len(secrets) == 0 {
		return c, nil
	}
	// RFC 8489 §9.2: long-term credentials need a realm, and the key
	// depends on it.
	switch {
	case realm == "":
		return nil, errors.New("realm: must be set when users or secrets are configured")
	case len(realm) > maxRealmLen:
		return nil, fmt.Errorf("realm: %d bytes, RFC 8489 §14.9 allows at most %d", len(realm), maxRealmLen)
	case !utf8.ValidString(realm):
		return nil, errors.New("realm: not valid UTF-8")
	}
	for i, u := range users {
		switch {
		case u.Name == "":
			return nil, fmt.Errorf("users[%d]: empty name", i)
		case len(u.Name) > maxUsernameLen:
			return nil, fmt.Errorf("users[%d]: name is %d bytes, RFC 8489 §14.3 allows at most %d", i, len(u.Name), maxUsernameLen)
		case !utf8.ValidString(u.Name):
			return nil, fmt.Errorf("users[%d]: name is not valid UTF-8", i)
		case u.Password != "" && len(u.Key) != 0:
			return nil, fmt.Errorf("users[%d] %q: both password and key are set, want one", i, u.Name)
		case u.Password == "" && len(u.Key) == 0:
			return nil, fmt.Errorf("users[%d] %q: neither password nor key is set", i, u.Name)
		case len(u.Key) != 0 && len(u.Key) != KeySize:
			return nil, fmt.Errorf("users[%d] %q: key is %d bytes, want %d", i, u.Name, len(u.Key), KeySize)
		}
		var key []byte
		if u.Password != "" {
			key = LongTermKey(u.Name, realm, u.Password)
		} else {
			key = append([]byte(nil), u.Key...) // the caller's slice may change
		}
		c.static[u.Name] = append(c.static[u.Name], key)
	}
	seen := make(map[string]bool, len(secrets))
	for i, s := range secrets {
		if s == "" {
			return nil, fmt.Errorf("secrets[%d]: empty", i)
		}
		if seen[s] {
			continue // a duplicate would only cost a second HMAC per request
		}
		seen[s] = true
		c.secrets = append(c.secrets, newHMACKey(s))
	}
	return c, nil
}

// Realm returns the realm the keys are computed for, to be sent in REALM.
func (c *Credentials) Realm() string { return c.realm }

// Empty reports whether there are neither static users nor secrets. TURN
// must then be refused: an open relay is never a default.
func (c *Credentials) Empty() bool { return c.nUsers == 0 && len(c.secrets) == 0 }

// LogValue implements slog.LogValuer: realm and counts, never a secret.
func (c *Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("realm", c.realm),
		slog.Int("users", c.nUsers),
		slog.Int("secrets", len(c.secrets)),
	)
}

// Keys returns the candidate long-term keys for username at time now: one
// per configuration entry of a static user of that name, or one per secret
// for a time-limited username that has not expired. The caller checks
// MESSAGE-INTEGRITY (RFC 8489 §14.5) against each; see Verify.
//
// userID identifies the user across credentials: for a time-limited
// username it is the user part (so quotas and allocation matching survive a
// fresh credential with a new expiry), or the whole username when there is
// no user part; for a static user it is the name.
//
// The returned keys must not be modified: static users' keys are shared.
// For a static user Keys does not allocate; for a time-limited username it
// allocates only the returned slices.
//
// The error is a *Refusal.
func (c *Credentials) Keys(username string, now time.Time) (userID string, keys [][]byte, err error) {
	if c.Empty() {
		return "", nil, &Refusal{Reason: ReasonNoCredentials, Username: username}
	}
	if keys, ok := c.static[username]; ok {
		return username, keys, nil
	}
	if len(c.secrets) == 0 {
		return "", nil, &Refusal{Reason: ReasonUnknownUser, Username: username}
	}
	userID, expiry, res, detail := parseREST(username, c.sep)
	switch res {
	case restNotREST:
		return "", nil, &Refusal{Reason: ReasonUnknownUser, Username: username}
	case restMalformed:
		return "", nil, &Refusal{Reason: ReasonMalformedUsername, Username: username, Detail: detail}
	}
	// coturn refuses when ts < ctime, both in whole seconds.
	if nowSec := now.Unix(); expiry < nowSec {
		by := time.Duration(math.MaxInt64)
		if d := nowSec - expiry; d < int64(math.MaxInt64/time.Second) {
			by = time.Duration(d) * time.Second
		}
		return "", nil, &Refusal{Reason: ReasonExpired, Username: username, ExpiredBy: by}
	}
	return userID, c.restKeys(username), nil
}

// Verify returns the key among Keys(username, now) for which check reports
// true; check typically verifies MESSAGE-INTEGRITY of the request with the
// key. With rotated secrets several keys are tried, so check must be
// non-nil, cheap and free of side effects. The returned key must not be
// modified.
//
// The error is a *Refusal; ReasonBadIntegrity means the username was
// acceptable but no key matched.
func (c *Credentials) Verify(username string, now time.Time, check func(key []byte) bool) (userID string, key []byte, err error) {
	userID, keys, err := c.Keys(username, now)
	if err != nil {
		return "", nil, err
	}
	for _, k := range keys {
		if check(k) {
			return userID, k, nil
		}
	}
	return "", nil, &Refusal{Reason: ReasonBadIntegrity, Username: username}
}

// Accepts reports whether a request signed with key for username would
// still authenticate under c, expiry aside, and when not, why. A reload
// asks it of every live allocation with the key the allocation was last
// authenticated with: a static user removed (ReasonUnknownUser) or given
// another password or key, or the shared secret that signed a time-limited
// username removed (ReasonBadIntegrity), ends the allocation. Expiry is not
// checked: a time-limited credential is checked per request (RFC 8656
// §5), so an allocation outlives its credential only until its next
// Refresh, reload or not.
func (c *Credentials) Accepts(username string, key []byte) (bool, Reason) {
	if c.Empty() {
		return false, ReasonNoCredentials
	}
	if keys, ok := c.static[username]; ok {
		for _, k := range keys {
			if subtle.ConstantTimeCompare(k, key) == 1 {
				return true, ""
			}
		}
		return false, ReasonBadIntegrity
	}
	if len(c.secrets) == 0 {
		return false, ReasonUnknownUser
	}
	switch _, _, res, _ := parseREST(username, c.sep); res {
	case restNotREST:
		return false, ReasonUnknownUser
	case restMalformed:
		return false, ReasonMalformedUsername
	}
	for _, k := range c.restKeys(username) {
		if subtle.ConstantTimeCompare(k, key) == 1 {
			return true, ""
		}
	}
	return false, ReasonBadIntegrity
}

// restKeys computes MD5(username ":" realm ":" base64(HMAC-SHA1(secret,
// username))) for every secret. The two scratch buffers fit any username
// and realm RFC 8489 allows and stay on the stack, so only the returned
// slices are allocated.
func (c *Credentials) restKeys(username string) [][]byte {
	var innerBuf [sha1.BlockSize + maxUsernameLen]byte
	var inner []byte
	if n := sha1.BlockSize + len(username); n <= len(innerBuf) {
		inner = innerBuf[:n]
	} else {
		inner = make([]byte, n)
	}
	copy(inner[sha1.BlockSize:], username)

	var msgBuf [maxUsernameLen + 1 + maxRealmLen + 1 + restPasswordLen]byte
	var msg []byte
	if n := len(username) + 1 + len(c.realm) + 1 + restPasswordLen; n <= len(msgBuf) {
		msg = msgBuf[:n]
	} else {
		msg = make([]byte, n)
	}
	n := copy(msg, username)
	msg[n] = ':'
	n++
	n += copy(msg[n:], c.realm)
	msg[n] = ':'
	n++
	password := msg[n:]

	keys := make([][]byte, len(c.secrets))
	backing := make([]byte, len(c.secrets)*KeySize)
	var outer [sha1.BlockSize + sha1.Size]byte
	for i := range c.secrets {
		s := &c.secrets[i]
		copy(inner, s.ipad[:])
		innerSum := sha1.Sum(inner)
		copy(outer[:], s.opad[:])
		copy(outer[sha1.BlockSize:], innerSum[:])
		mac := sha1.Sum(outer[:])
		base64.StdEncoding.Encode(password, mac[:])
		sum := md5.Sum(msg)
		k := backing[i*KeySize : (i+1)*KeySize : (i+1)*KeySize]
		copy(k, sum[:])
		keys[i] = k
	}
	return keys
}

type restResult int

const (
	restOK        restResult = iota
	restNotREST              // cannot be a time-limited username at all
	restMalformed            // looks like one, but the expiry is unusable
)

// parseREST splits a time-limited username into its user id and expiry the
// way coturn's get_rest_api_timestamp and get_real_username (userdb.c) do,
// with sep the separator:
//
//   - "EXPIRY" sep "USER": the part before the first separator is all
//     digits. The user part is everything after it and may itself contain
//     the separator.
//   - "USER" sep "EXPIRY": the part before the first separator contains a
//     non-digit; coturn then reads the timestamp after the separator.
//   - "EXPIRY": no separator at all; the user id is the whole username.
//   - sep "EXPIRY" [sep "USER"]: a leading separator, which coturn skips.
//
// The user id is the user part, or the whole username when that is empty.
//
// coturn reads EXPIRY with atol, which takes leading blanks, a sign and
// trailing junk and turns garbage into 0 (an expired credential). Here
// EXPIRY must be plain decimal digits that fit in an int64: every
// credential a REST API server mints has that form, and a username that
// does not is reported as malformed instead of as expired since 1970.
func parseREST(username string, sep byte) (userID string, expiry int64, res restResult, detail string) {
	if username == "" {
		return "", 0, restMalformed, "empty username"
	}
	i := strings.IndexByte(username, sep)
	var exp, user string
	switch {
	case i < 0:
		if !allDigits(username) {
			// Not a static user and no expiry anywhere: say "unknown
			// user", which is what the operator needs to hear.
			return "", 0, restNotREST, ""
		}
		exp = username
	case i == 0:
		rest := username[1:]
		if j := strings.IndexByte(rest, sep); j >= 0 {
			exp, user = rest[:j], rest[j+1:]
		} else {
			exp = rest
		}
	case allDigits(username[:i]):
		exp, user = username[:i], username[i+1:]
	default:
		user, exp = username[:i], username[i+1:]
	}
	expiry, detail = parseExpiry(exp)
	if detail != "" {
		return "", 0, restMalformed, detail
	}
	if user == "" {
		user = username
	}
	return user, expiry, restOK, ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseExpiry parses a non-negative decimal Unix time. It returns a
// human-readable problem instead of an error so the caller can put it in a
// Refusal without wrapping.
func parseExpiry(s string) (int64, string) {
	if s == "" {
		return 0, "empty expiry"
	}
	var n int64
	for i := 0; i < len(s); i++ {
		d := s[i]
		if d < '0' || d > '9' {
			return 0, "expiry " + quoteUser(s) + " is not a decimal Unix time"
		}
		if n > (math.MaxInt64-int64(d-'0'))/10 {
			return 0, "expiry " + quoteUser(s) + " overflows"
		}
		n = n*10 + int64(d-'0')
	}
	return n, ""
}
