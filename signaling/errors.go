package signaling

import (
	"errors"
	"fmt"
)

// Error codes carried in the "code" field of an error message. Clients
// branch on the code; the "error" field says the same in words.
const (
	CodeBadJSON        = "bad-json"         // the message is not a JSON object
	CodeUnknownType    = "unknown-type"     // the type is missing or not one of the protocol's
	CodeBadField       = "bad-field"        // a field is missing or malformed
	CodeTooLarge       = "too-large"        // the message exceeds signaling.max_message_bytes
	CodeRateLimited    = "rate-limited"     // more than signaling.messages_per_second
	CodeNoSuchPeer     = "no-such-peer"     // no peer with that id shares a room with the sender
	CodePeerGone       = "peer-gone"        // the peer left or its connection ended for good
	CodeQueueFull      = "queue-full"       // the target's outbox is full (it is too slow and is being disconnected)
	CodeRoomFull       = "room-full"        // the room has its maximum number of peers
	CodeTooManyRooms   = "too-many-rooms"   // the sender is in signaling.rooms_per_peer rooms
	CodeNotInRoom      = "not-in-room"      // the sender is not in the room it names
	CodeRoomNotAllowed = "room-not-allowed" // the sender's token does not allow the room
	CodeDisabled       = "disabled"         // the feature is switched off in the config
	CodeBadToken       = "bad-token"        // an auth message's token is invalid, expired, or another user's
	CodeTokenExpired   = "token-expired"    // the session's token expired; the connection closes (4001)
	// CodeClusterUnavailable: the cluster's bus (Redis) cannot be reached;
	// the message was not delivered and is not acked.
	CodeClusterUnavailable = "cluster-unavailable"
	// CodeSessionEnded: the sender's session is gone from the bus (the
	// server API ended it, or Redis lost it); its connection is closing.
	CodeSessionEnded = "session-ended"
)

// protoError is an error answered to the client as an error message.
type protoError struct {
	code string
	msg  string
}

func (e *protoError) Error() string { return e.code + ": " + e.msg }

func perr(code, format string, args ...any) *protoError {
	return &protoError{code: code, msg: fmt.Sprintf(format, args...)}
}

// Errors of token verification and of the HTTP checks before an upgrade.
var (
	// ErrTokenMissing means signaling.token_secrets is set and the request
	// carried no token.
	ErrTokenMissing = errors.New("token required (signaling.token_secrets is set): pass ?token=... or Authorization: Bearer ...")
	// ErrTokenInvalid means the token is malformed or its signature does not
	// match any secret.
	ErrTokenInvalid = errors.New("invalid token")
	// ErrTokenExpired means the token's exp is past.
	ErrTokenExpired = errors.New("token expired")
	// ErrOrigin means the browser's Origin is not allowed.
	ErrOrigin = errors.New("origin not allowed")
	// ErrCapacity means signaling.max_connections are open.
	ErrCapacity = errors.New("too many connections")
	// ErrBusy means signaling.max_opening sessions are being opened or
	// resumed already (a reconnect storm): the client retries shortly.
	ErrBusy = errors.New("too many sessions opening at once (signaling.max_opening)")
	// ErrClosed means the server is shutting down.
	ErrClosed = errors.New("signaling server closed")
)

// errSlow ends the writes to a peer that is too slow.
var errSlow = errors.New("peer too slow")
