package turn

import (
	"time"
)

// Event is one decision the server made about a client's request, for
// whoever wants to explain a connection attempt (the signaling server shows
// them to the browser that made the attempt). Events are about control
// messages only, never about relayed packets.
type Event struct {
	Time time.Time
	// Kind is one of the Event* constants.
	Kind string
	// Username is the USERNAME the client sent, when known; UserID is the
	// user part the server derived from it (the same for static users).
	Username, UserID string
	// Client is the client's transport address; Transport is udp, tcp, tls or dtls.
	Client    string
	Transport string
	// Detail says why, in words: "credential expired by 42s", "rule
	// cloud-metadata", the relay address.
	Detail string
	// Peer is the peer address for permission events.
	Peer string
}

// Event kinds.
const (
	EventAuthenticated     = "authenticated"
	EventAuthRefused       = "auth-refused"
	EventAllocationCreated = "allocation-created"
	// EventAllocationDeleted is also the usage event: its Detail says what
	// the allocation relayed, as the usage log line does (usageDetail).
	EventAllocationDeleted = "allocation-deleted"
	EventPermissionDenied  = "permission-denied"
	EventRefused           = "refused" // quota, capacity, family, transport
)

// emit sends e to the configured handler, if any.
func (s *Server) emit(e Event) {
	if s.events == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Username == "" && e.Client != "" {
		// pion reports by address; the allocation table knows who that is.
		e.Username, e.UserID = s.allocs.names(e.Client)
	}
	s.events(e)
}
