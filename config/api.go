package config

import (
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// API configures the server API (/api/v1/ on the HTTP listener): what an
// application's backend uses to push messages to rooms, peers and users,
// disconnect them, and list rooms, members and nodes (docs/signaling.md,
// "Server API").
type API struct {
	// Keys are the keys a backend presents as "Authorization: Bearer KEY";
	// any of them is accepted, so a key is replaced by adding the new one,
	// moving the backends over and removing the old one, each step a
	// reload. At least 32 characters each. Empty (the default) switches
	// the server API off: it answers 404.
	Keys      []string  `hcl:"keys,optional"`
	KeysRange hcl.Range `hcl:"keys,attr_range"`
	// MaxCredentialTTL caps the lifetime a backend may ask of the
	// credential API (POST /api/v1/turn/credentials, docs/credentials.md):
	// a longer "ttl" is lowered to it, and the answer says what was
	// granted. From "1m" to "168h". Default "24h".
	MaxCredentialTTL      string    `hcl:"max_credential_ttl,optional"`
	MaxCredentialTTLRange hcl.Range `hcl:"max_credential_ttl,attr_range"`

	// Filled by Validate.
	MaxCredentialTTLDuration time.Duration
}

// Bounds of api.max_credential_ttl: signaling.MinAPICredentialTTL (config
// does not import signaling) and signaling.credential_ttl's maximum.
const (
	minAPICredentialTTL = time.Minute
	maxAPICredentialTTL = 7 * 24 * time.Hour
)

// minAPIKeyChars is the shortest API key accepted: 32 random characters
// are beyond guessing. signaling.MinAPIKeyBytes says the same (config does
// not import signaling).
const minAPIKeyChars = 32

// validate checks the keys: none shorter than minAPIKeyChars, none twice.
// Unlike a shared secret, a short key is an error: nothing outside icegate
// fixes its length, and a backend can always send a longer one. The key
// itself is never printed. With keys on a plain-HTTP listener that other
// hosts reach, the keys travel in clear: a warning.
func (a *API) validate(v *validator, h *HTTP) {
	for i, k := range a.Keys {
		field := fmt.Sprintf("api.keys[%d]", i)
		switch j := slices.Index(a.Keys[:i], k); {
		case utf8.RuneCountInString(k) < minAPIKeyChars:
			v.errorf(a.KeysRange, field, "%d characters; a key needs at least %d random ones (openssl rand -hex 32)", utf8.RuneCountInString(k), minAPIKeyChars)
		case j >= 0:
			v.errorf(a.KeysRange, field, "same as api.keys[%d]", j)
		}
	}
	a.MaxCredentialTTLDuration, _ = v.durationBetween(a.MaxCredentialTTL, a.MaxCredentialTTLRange, "api.max_credential_ttl", minAPICredentialTTL, maxAPICredentialTTL, "1m", "168h")
	if len(a.Keys) > 0 && h.Listen != "" && checkHTTPListen(h.Listen) == nil && !loopbackListen(h.Listen) && h.CertFile == "" {
		v.warnf(v.at(a.KeysRange, h.ListenRange), "api.keys",
			"sent in clear: http.listen %q is reachable from other hosts without http.cert_file (or put a TLS proxy in front)", h.Listen)
	}
}
