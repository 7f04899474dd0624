package signaling

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Claims are what a signaling token says. A token is a JSON Web Token
// (RFC 7519) signed with HMAC-SHA256 ("HS256") under one of
// signaling.token_secrets, so an application's backend can mint one with
// any JWT library, or with `icegate token`.
type Claims struct {
	// Subject is the application's user id ("sub"). Required.
	Subject string `json:"sub"`
	// Rooms lists the rooms the holder may join ("rooms"): exact names, or
	// a prefix ending in "*" ("team-42-*"); "*" alone allows any room. Absent
	// or empty allows any room.
	Rooms []string `json:"rooms,omitempty"`
	// Expiry is the Unix time after which the token is refused ("exp").
	// Required.
	Expiry int64 `json:"exp"`
	// NotBefore, when set, is the Unix time before which it is refused ("nbf").
	NotBefore int64 `json:"nbf,omitempty"`
	// IssuedAt is when the token was minted ("iat"): informational, unless
	// signaling.max_token_lifetime is set, which then needs it.
	IssuedAt int64 `json:"iat,omitempty"`
	// Audience names the services the token is meant for ("aud", RFC 7519
	// §4.1.3: one string or an array of them). Checked only when
	// signaling.token_audience is set: it must then name that value.
	Audience Audience `json:"aud,omitempty"`
	// Meta is what the application says about the user ("meta"): a JSON
	// object of at most MaxMetaBytes bytes as encoded in the token, carried
	// verbatim (never parsed further, never re-encoded) so apps get back
	// exactly what their backend put in. Absent: nil.
	Meta json.RawMessage `json:"meta,omitempty"`
}

// MaxMetaBytes bounds the "meta" claim, as encoded in the token: it travels
// with the peer's identity in every message that names the peer, so it
// must stay small.
const MaxMetaBytes = 1024

// Audience is the "aud" claim. RFC 7519 §4.1.3: "In the general case, the
// "aud" value is an array of case-sensitive strings... In the special case
// when the JWT has one audience, the "aud" value MAY be a single
// case-sensitive string", so both forms decode; one audience encodes as a
// string, more as an array.
type Audience []string

// UnmarshalJSON accepts a string or an array of strings.
func (a *Audience) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*a = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = Audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("\"aud\" must be a string or an array of strings")
	}
	*a = many
	return nil
}

// MarshalJSON writes one audience as a string, several as an array.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// tokenHeader is the only JOSE header accepted: fixing the algorithm keeps
// "alg": "none" and algorithm-confusion tokens out.
const tokenHeader = `{"alg":"HS256","typ":"JWT"}`

var b64 = base64.RawURLEncoding

// tokenLeeway absorbs clock skew between the minting backend and icegate.
const tokenLeeway = 30 * time.Second

// maxTokenBytes bounds what is parsed.
const maxTokenBytes = 4096

// MintToken returns a token for c signed with secret. It refuses claims
// VerifyToken would refuse whatever the time: no subject or expiry, a meta
// claim that is not a JSON object of at most MaxMetaBytes, a room pattern
// no room can match (CheckRoomPattern).
func MintToken(secret string, c Claims) (string, error) {
	if c.Subject == "" || c.Expiry == 0 {
		return "", fmt.Errorf("a token needs a subject and an expiry")
	}
	if err := checkMeta(c.Meta); err != nil {
		return "", err
	}
	for _, r := range c.Rooms {
		if err := CheckRoomPattern(r); err != nil {
			return "", err
		}
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signing := b64.EncodeToString([]byte(tokenHeader)) + "." + b64.EncodeToString(payload)
	return signing + "." + b64.EncodeToString(sign(secret, signing)), nil
}

func sign(secret, signing string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(signing))
	return m.Sum(nil)
}

// VerifyToken checks token against secrets at time now and returns its
// claims. Errors wrap ErrTokenInvalid or ErrTokenExpired and say why. It
// checks neither audience nor lifetime: TokenRules.Verify does.
func VerifyToken(secrets []string, token string, now time.Time) (*Claims, error) {
	return TokenRules{Secrets: secrets}.Verify(token, now)
}

// TokenRules are what a token is checked against: the secrets that sign
// it and the limits the configuration puts on its claims.
type TokenRules struct {
	// Secrets are the HMAC-SHA256 secrets; any of them verifies.
	Secrets []string
	// Audience, when not "", must be one of the token's "aud" values.
	Audience string
	// MaxLifetime, when positive, caps exp - iat; a token without "iat" is
	// then refused, as its lifetime cannot be told.
	MaxLifetime time.Duration
}

// Verify checks token at time now and returns its claims. Errors wrap
// ErrTokenInvalid or ErrTokenExpired and say why.
func (tr TokenRules) Verify(token string, now time.Time) (*Claims, error) {
	secrets := tr.Secrets
	if len(token) > maxTokenBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrTokenInvalid, maxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not three dot-separated parts (a JWT)", ErrTokenInvalid)
	}
	header, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrTokenInvalid)
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(header, &h) != nil || h.Alg != "HS256" {
		return nil, fmt.Errorf("%w: algorithm must be HS256", ErrTokenInvalid)
	}
	mac, err := b64.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url", ErrTokenInvalid)
	}
	signing := parts[0] + "." + parts[1]
	ok := false
	for _, s := range secrets {
		if hmac.Equal(mac, sign(s, signing)) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w: signature does not match signaling.token_secrets", ErrTokenInvalid)
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrTokenInvalid)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: payload: %s", ErrTokenInvalid, jsonErrText(err))
	}
	switch {
	case c.Subject == "":
		return nil, fmt.Errorf("%w: no \"sub\"", ErrTokenInvalid)
	case c.Expiry == 0:
		return nil, fmt.Errorf("%w: no \"exp\"", ErrTokenInvalid)
	case now.Add(-tokenLeeway).Unix() > c.Expiry:
		return nil, fmt.Errorf("%w by %s", ErrTokenExpired, now.Sub(time.Unix(c.Expiry, 0)).Round(time.Second))
	case c.NotBefore != 0 && now.Add(tokenLeeway).Unix() < c.NotBefore:
		return nil, fmt.Errorf("%w: not valid for another %s", ErrTokenInvalid, time.Unix(c.NotBefore, 0).Sub(now).Round(time.Second))
	}
	if err := checkMeta(c.Meta); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	if tr.Audience != "" && !slices.Contains(c.Audience, tr.Audience) {
		if len(c.Audience) == 0 {
			return nil, fmt.Errorf("%w: no \"aud\" (signaling.token_audience is %q)", ErrTokenInvalid, tr.Audience)
		}
		return nil, fmt.Errorf("%w: \"aud\" %s does not name %q (signaling.token_audience)", ErrTokenInvalid, safeClaim(c.Audience), tr.Audience)
	}
	if tr.MaxLifetime > 0 {
		if c.IssuedAt == 0 {
			return nil, fmt.Errorf("%w: no \"iat\", so its lifetime cannot be checked against signaling.max_token_lifetime %s", ErrTokenInvalid, tr.MaxLifetime)
		}
		switch life := time.Duration(c.Expiry-c.IssuedAt) * time.Second; {
		case c.Expiry < c.IssuedAt:
			return nil, fmt.Errorf("%w: \"exp\" is before \"iat\"", ErrTokenInvalid)
		case life > tr.MaxLifetime:
			return nil, fmt.Errorf("%w: lifetime (exp - iat) %s is longer than signaling.max_token_lifetime %s", ErrTokenInvalid, life, tr.MaxLifetime)
		}
	}
	return &c, nil
}

// checkMeta accepts an absent meta claim or a JSON object of at most
// MaxMetaBytes bytes.
func checkMeta(m json.RawMessage) error {
	switch m = bytes.TrimSpace(m); {
	case len(m) == 0 || bytes.Equal(m, []byte("null")):
		return nil
	case len(m) > MaxMetaBytes:
		return fmt.Errorf("\"meta\" is %d bytes, more than %d", len(m), MaxMetaBytes)
	case m[0] != '{' || !json.Valid(m):
		return fmt.Errorf("\"meta\" must be a JSON object")
	}
	return nil
}

// safeClaim renders claim values for an error message a client sees,
// bounded and without control characters.
func safeClaim(v []string) string {
	b, _ := json.Marshal(v)
	s := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, string(b))
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// CheckRoomPattern says whether some room can match p as a "rooms" entry:
// a room name (1 to 64 printable ASCII characters without spaces, what a
// join accepts), the same followed by "*" for a prefix, or "*" alone.
// `icegate token` refuses what it rejects, since such a token could never
// join the room its minter meant.
func CheckRoomPattern(p string) error {
	if p == "*" {
		return nil
	}
	name := p
	if prefix, ok := strings.CutSuffix(p, "*"); ok {
		name = prefix
	}
	if err := checkRoom(name); err != nil {
		return fmt.Errorf("room %q: %s", p, err.msg)
	}
	return nil
}

// AllowsRoom reports whether the claims allow joining room.
func (c *Claims) AllowsRoom(room string) bool {
	if c == nil || len(c.Rooms) == 0 {
		return true
	}
	for _, r := range c.Rooms {
		if r == room || r == "*" || (strings.HasSuffix(r, "*") && strings.HasPrefix(room, r[:len(r)-1])) {
			return true
		}
	}
	return false
}
