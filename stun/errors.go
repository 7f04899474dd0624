package stun

import "errors"

// Errors callers branch on.
var (
	// ErrNotBindingRequest is returned when asked to answer something else.
	ErrNotBindingRequest = errors.New("stun: not a binding request")
	// ErrNotClassic is returned for bytes that are not an RFC 3489 Binding
	// Request, or by a Responder that does not answer those (see
	// Responder.Classic): they are not to be answered.
	ErrNotClassic = errors.New("stun: not an RFC 3489 binding request")
	// ErrClassicBadRequest is returned by ParseClassic for an RFC 3489
	// Binding Request whose attributes are malformed: it gets a 400.
	ErrClassicBadRequest = errors.New("stun: malformed RFC 3489 binding request")
)
