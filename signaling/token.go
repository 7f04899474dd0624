package signaling

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
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
	// IssuedAt is informational ("iat").
	IssuedAt int64 `json:"iat,omitempty"`
}

// tokenHeader is the only JOSE header accepted: fixing the algorithm keeps
// "alg": "none" and algorithm-confusion tokens out.
const tokenHeader = `{"alg":"HS256","typ":"JWT"}`

var b64 = base64.RawURLEncoding

// tokenLeeway absorbs clock skew between the minting backend and icegate.
const tokenLeeway = 30 * time.Second

// maxTokenBytes bounds what is parsed.
const maxTokenBytes = 4096

// MintToken returns a token for c signed with secret.
func MintToken(secret string, c Claims) (string, error) {
	if c.Subject == "" || c.Expiry == 0 {
		return "", fmt.Errorf("a token needs a subject and an expiry")
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
// claims. Errors wrap ErrTokenInvalid or ErrTokenExpired and say why.
func VerifyToken(secrets []string, token string, now time.Time) (*Claims, error) {
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
	return &c, nil
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
