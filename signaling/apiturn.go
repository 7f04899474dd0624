package signaling

import (
	"context"
	"net/http"
	"time"

	"icegate/auth"
)

// POST /api/v1/turn/credentials: TURN credentials for an application's
// backend, as the hosted TURN services sell them (Cloudflare's
// generate-ice-servers, Twilio's Tokens resource; docs/credentials.md puts
// the three side by side). The backend asks with its API key, chooses the
// lifetime and a custom identifier that tags the credential (an end user, a
// tenant), and passes the answer's iceServers to its page as they are.

// Bounds of a credential request.
const (
	// MinAPICredentialTTL is the shortest lifetime the credential API
	// mints: a credential that expires before a browser has gathered its
	// candidates and connected is a bug in the caller, so a shorter ttl is
	// refused (400), not raised.
	MinAPICredentialTTL = time.Minute
	// maxCustomIDBytes bounds a custom identifier. With the expiry and the
	// separator the username stays far below USERNAME's 513 bytes (RFC 8489
	// §14.3), and it is short enough for a log line and a metric's
	// exemplar.
	maxCustomIDBytes = 128
)

// credentialsRequest is the body of POST /api/v1/turn/credentials.
type credentialsRequest struct {
	// TTL is the credential's lifetime in seconds; absent (or null) means
	// signaling.credential_ttl. Above Config.MaxCredentialTTL it is
	// lowered to it (the answer's "ttl" says what was granted); below
	// MinAPICredentialTTL it is refused.
	TTL *int64 `json:"ttl"`
	// CustomIdentifier goes into the username, "EXPIRY:ID", so that the
	// relay's logs, events and usage name it.
	CustomIdentifier string `json:"custom_identifier"`
}

// credentialsResponse is its answer: iceServers in the browser's shape
// (RTCConfiguration.iceServers), the lifetime granted in seconds, and when
// the credential expires (Unix seconds).
type credentialsResponse struct {
	ICEServers []auth.ICEServer `json:"iceServers"`
	TTL        int64            `json:"ttl"`
	Expires    int64            `json:"expires"`
}

// epTURNCredentials is POST /api/v1/turn/credentials.
var epTURNCredentials = apiEndpoint{name: "turn-credentials", method: http.MethodPost, serve: (*Server).apiTURNCredentials, body: func(*settings) int64 { return apiBodyBytes }}

// apiTURNCredentials mints a credential for the backend. Its iceServers
// name the relay Options.Steer picks (in a cluster, the least loaded
// healthy node) with every transport it serves. Errors: 400 for a body
// that is not the object above or a ttl below the minimum, 503 when
// nothing can be minted (no shared secret, or this node alone and
// draining).
func (s *Server) apiTURNCredentials(_ context.Context, r *apiRequest) (any, *apiError) {
	var q credentialsRequest
	if len(r.body) > 0 {
		if e := decodeAPIBody(r.body, &q); e != nil {
			return nil, e
		}
	}
	ttl := min(r.st.CredentialTTL, r.st.MaxCredentialTTL)
	if q.TTL != nil {
		if *q.TTL < int64(MinAPICredentialTTL/time.Second) {
			return nil, apiErr(http.StatusBadRequest, apiCodeBadRequest, "field \"ttl\": %d seconds is below the minimum of %d", *q.TTL, int64(MinAPICredentialTTL/time.Second))
		}
		// Compare in seconds: a huge ttl would overflow a Duration.
		if max := int64(r.st.MaxCredentialTTL / time.Second); *q.TTL > max {
			ttl = time.Duration(max) * time.Second
		} else {
			ttl = time.Duration(*q.TTL) * time.Second
		}
	}
	if e := checkCustomID(q.CustomIdentifier, r.st.Separator); e != nil {
		return nil, e
	}
	servers, exp, ok := s.iceServersTTL("", q.CustomIdentifier, ttl)
	if !ok {
		if s.secret() == "" {
			return nil, apiErr(http.StatusServiceUnavailable, apiCodeNoSecret, "no shared secret to mint with: set auth.secrets (static users cannot be handed out)")
		}
		return nil, apiErr(http.StatusServiceUnavailable, apiCodeDraining, "the relay is draining (refusing new allocations) and no other node can take them: try again later")
	}
	return &created{credentialsResponse{ICEServers: servers, TTL: int64(ttl / time.Second), Expires: exp.Unix()}}, nil
}

// checkCustomID accepts a custom identifier: at most maxCustomIDBytes of
// letters, digits and "-._~@+=" (what an id, an e-mail address or a
// base64url token is made of), and never the username separator, which
// would split the identifier when the relay parses the username.
func checkCustomID(id, sep string) *apiError {
	if len(id) > maxCustomIDBytes {
		return apiErr(http.StatusBadRequest, apiCodeBadRequest, "field \"custom_identifier\": %d bytes, more than %d", len(id), maxCustomIDBytes)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		switch c {
		case '-', '.', '_', '~', '@', '+', '=':
			ok = true
		}
		if !ok || sep == string(c) {
			return apiErr(http.StatusBadRequest, apiCodeBadRequest, "field \"custom_identifier\": %q at byte %d; use letters, digits and \"-._~@+=\" (not the username separator %q)", safeText(string(c)), i, sep)
		}
	}
	return nil
}

// created marks an endpoint's answer as a new resource: 201 Created.
type created struct{ v any }
