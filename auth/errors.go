package auth

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors for errors.Is. Every *Refusal unwraps to exactly one of
// the first five, chosen by its Reason, so a caller can branch with
// errors.Is(err, auth.ErrExpired) without a type assertion and still get the
// details (how long ago it expired, which username) from errors.As.
var (
	// ErrUnknownUser: the username is neither a static user nor a
	// time-limited username this server could have issued.
	ErrUnknownUser = errors.New("unknown user")
	// ErrExpired: a time-limited credential whose EXPIRY is in the past.
	ErrExpired = errors.New("credential expired")
	// ErrMalformedUsername: a username that looks like a time-limited one
	// but cannot be parsed (empty, non-numeric or overflowing EXPIRY).
	ErrMalformedUsername = errors.New("malformed username")
	// ErrBadIntegrity: the username is known but MESSAGE-INTEGRITY matched
	// none of its candidate keys (wrong password, wrong realm, or a secret
	// that has been rotated out).
	ErrBadIntegrity = errors.New("bad message integrity")
	// ErrNoCredentials: neither static users nor shared secrets are
	// configured, so every TURN request must be refused.
	ErrNoCredentials = errors.New("no credentials configured")

	// ErrUnknownPreset is returned (wrapped) by NewPolicy for a preset name
	// that Presets does not list.
	ErrUnknownPreset = errors.New("unknown peer policy preset")
)

// Reason says why a credential was refused. Its values are short, stable and
// few, so they are fit for a Prometheus label and a log attribute.
type Reason string

// The reasons a credential can be refused.
const (
	ReasonUnknownUser       Reason = "unknown-user"
	ReasonExpired           Reason = "expired"
	ReasonMalformedUsername Reason = "malformed-username"
	ReasonBadIntegrity      Reason = "bad-integrity"
	ReasonNoCredentials     Reason = "no-credentials"
)

// Refusal is the error returned by Credentials.Keys and Credentials.Verify.
// It is meant to be logged as is: the message says why, and for an expired
// credential by how much, which is what an operator needs to tell a clock
// skew from a client reusing an old credential.
type Refusal struct {
	// Reason is the machine-readable cause; use it as a metrics label.
	Reason Reason
	// Username is the username as received. It is not secret.
	Username string
	// ExpiredBy is how long ago a time-limited credential expired, whole
	// seconds, set only when Reason is ReasonExpired.
	ExpiredBy time.Duration
	// Detail says what is wrong with a malformed username.
	Detail string
}

// maxQuoted bounds how much of a client-chosen username ends up in one log
// line: a username may be up to 513 bytes (RFC 8489 §14.3) and pion does not
// enforce even that.
const maxQuoted = 64

func quoteUser(s string) string {
	if len(s) > maxQuoted {
		return fmt.Sprintf("%q...", s[:maxQuoted])
	}
	return fmt.Sprintf("%q", s)
}

// Error implements error. Messages are lowercase and quote the username
// with %q, so a hostile username cannot forge log lines.
func (r *Refusal) Error() string {
	switch r.Reason {
	case ReasonExpired:
		return fmt.Sprintf("credential expired by %s", r.ExpiredBy)
	case ReasonUnknownUser:
		return "unknown user " + quoteUser(r.Username)
	case ReasonMalformedUsername:
		if r.Detail == "" {
			return "malformed username " + quoteUser(r.Username)
		}
		return "malformed username " + quoteUser(r.Username) + ": " + r.Detail
	case ReasonBadIntegrity:
		return "bad message integrity for " + quoteUser(r.Username)
	case ReasonNoCredentials:
		return "no credentials configured"
	default:
		return "credential refused: " + string(r.Reason)
	}
}

// Unwrap returns the sentinel error for r.Reason, which is what makes
// errors.Is(err, ErrExpired) and friends work.
func (r *Refusal) Unwrap() error {
	switch r.Reason {
	case ReasonExpired:
		return ErrExpired
	case ReasonUnknownUser:
		return ErrUnknownUser
	case ReasonMalformedUsername:
		return ErrMalformedUsername
	case ReasonBadIntegrity:
		return ErrBadIntegrity
	case ReasonNoCredentials:
		return ErrNoCredentials
	default:
		return nil
	}
}
