package turn

import (
	"net"
	"sync"
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
	EventAllocationDeleted = "allocation-deleted"
	EventPermissionDenied  = "permission-denied"
	EventRefused           = "refused" // quota, capacity, family, transport
)

// clientUsers maps a client address to the username of its last
// authenticated request, so that events pion reports by address (permission
// decisions) can name the user. Bounded like the other per-client maps.
type clientUsers struct {
	mu sync.Mutex
	m  map[string][2]string // client -> {username, userID}
}

func (c *clientUsers) set(client net.Addr, username, userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 100000 {
		c.m = map[string][2]string{}
	}
	c.m[client.String()] = [2]string{username, userID}
}

func (c *clientUsers) forget(client net.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, client.String())
}

// emit sends e to the configured handler, if any.
func (s *Server) emit(e Event) {
	if s.events == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Username == "" && e.Client != "" {
		e.Username, e.UserID = s.users.getString(e.Client)
	}
	s.events(e)
}

func (c *clientUsers) getString(client string) (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.m[client]
	return u[0], u[1]
}
