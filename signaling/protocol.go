package signaling

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"icegate/auth"
)

// Client message types on /ws (docs/signaling.md).
const (
	TypeJoin       = "join"
	TypeLeave      = "leave"
	TypeOffer      = "offer"
	TypeAnswer     = "answer"
	TypeCandidate  = "candidate"
	TypeMessage    = "message" // application-defined, directed
	TypeBroadcast  = "broadcast"
	TypePing       = "ping"
	TypeRenew      = "renew"
	TypeTURNEvents = "turn-events"
	TypeBye        = "bye"
	TypeAuth       = "auth" // a fresh token before the current one expires
)

// Server message types on /ws.
const (
	TypeHello      = "hello"
	TypeJoined     = "joined"
	TypeLeft       = "left"
	TypePeerJoined = "peer-joined"
	TypePeerLeft   = "peer-left"
	TypeAck        = "ack"
	TypeError      = "error"
	TypePong       = "pong"
	TypeICEServers = "ice-servers"
	TypeTURN       = "turn"
	// TypePush is a message from the application's backend, sent through
	// the server API (POST /api/v1/push).
	TypePush = "push"
)

// Field bounds.
const (
	maxIDBytes   = 64 // a message id, as written in JSON
	maxRoomBytes = 64
	maxPeerBytes = 64
)

// inbound is one client message on /ws, as parsed and validated by parse.
type inbound struct {
	Type string `json:"type"`
	// ID, when set, asks for an ack or error; echoed verbatim (a JSON
	// string or number).
	ID       json.RawMessage `json:"id,omitempty"`
	To       string          `json:"to,omitempty"`
	Room     string          `json:"room,omitempty"`
	MaxPeers int             `json:"max_peers,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	On       *bool           `json:"on,omitempty"`
	Token    string          `json:"token,omitempty"`
}

// parse decodes and validates one client message. On error it still
// returns what it could read of the message (its id, to answer with), or
// nil when the message was not a JSON object.
func parse(b []byte) (*inbound, *protoError) {
	var m inbound
	if err := json.Unmarshal(b, &m); err != nil {
		// A message that is valid JSON but not an object of the right
		// shape still gets its id back when it has one.
		var idOnly struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(b, &idOnly) == nil && validID(idOnly.ID) {
			return &inbound{ID: idOnly.ID}, perr(CodeBadField, "%s", jsonErrText(err))
		}
		return nil, perr(CodeBadJSON, "not a JSON object: %s", jsonErrText(err))
	}
	if len(m.ID) > 0 && !validID(m.ID) {
		m.ID = nil
		return &m, perr(CodeBadField, "id must be a string or number of at most %d bytes", maxIDBytes)
	}
	switch m.Type {
	case "":
		return &m, perr(CodeUnknownType, "missing \"type\"")
	case TypeJoin:
		if err := checkRoom(m.Room); err != nil {
			return &m, err
		}
		if m.MaxPeers < 0 {
			return &m, perr(CodeBadField, "max_peers must be positive (or absent)")
		}
	case TypeLeave, TypeBroadcast:
		if err := checkRoom(m.Room); err != nil {
			return &m, err
		}
		if m.Type == TypeBroadcast && len(m.Data) == 0 {
			return &m, perr(CodeBadField, "missing \"data\"")
		}
	case TypeOffer, TypeAnswer, TypeCandidate, TypeMessage:
		if m.To == "" || len(m.To) > maxPeerBytes {
			return &m, perr(CodeBadField, "\"to\" must name a peer id")
		}
		if m.Room != "" {
			if err := checkRoom(m.Room); err != nil {
				return &m, err
			}
		}
		// A candidate may be null (end of candidates); the others carry a value.
		if len(m.Data) == 0 && m.Type != TypeCandidate {
			return &m, perr(CodeBadField, "missing \"data\"")
		}
	case TypeTURNEvents:
		if m.On == nil {
			return &m, perr(CodeBadField, "missing \"on\" (true or false)")
		}
	case TypeAuth:
		if m.Token == "" {
			return &m, perr(CodeBadField, "missing \"token\"")
		}
	case TypePing, TypeRenew, TypeBye:
	default:
		t := m.Type
		if len(t) > 32 || !utf8.ValidString(t) {
			t = "(too long or not UTF-8)"
		}
		return &m, perr(CodeUnknownType, "unknown type %q", t)
	}
	if len(m.Data) == 0 && m.Type == TypeCandidate {
		m.Data = json.RawMessage("null")
	}
	return &m, nil
}

// peekID finds the id of a message that is not parsed (dropped for its
// rate, or cut at the size limit): it walks the top-level keys until "id"
// and returns its value if valid, nil otherwise. A cut message yields its
// id only if the id comes before the cut.
func peekID(b []byte) json.RawMessage {
	d := json.NewDecoder(bytes.NewReader(b))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return nil
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil
		}
		if k == "id" {
			if validID(v) {
				return v
			}
			return nil
		}
	}
	return nil
}

// validID accepts a JSON string or number of bounded size.
func validID(id json.RawMessage) bool {
	if len(id) == 0 || len(id) > maxIDBytes {
		return false
	}
	switch c := id[0]; {
	case c == '"':
		var s string
		return json.Unmarshal(id, &s) == nil
	case c == '-' || (c >= '0' && c <= '9'):
		var n json.Number
		return json.Unmarshal(id, &n) == nil
	}
	return false
}

// checkRoom accepts 1 to 64 printable ASCII characters without spaces.
func checkRoom(r string) *protoError {
	if r == "" {
		return perr(CodeBadField, "missing \"room\"")
	}
	if len(r) > maxRoomBytes {
		return perr(CodeBadField, "room name longer than %d bytes", maxRoomBytes)
	}
	for i := 0; i < len(r); i++ {
		if r[i] <= ' ' || r[i] > '~' {
			return perr(CodeBadField, "room name must be printable ASCII without spaces")
		}
	}
	return nil
}

// jsonErrText shortens encoding/json's errors for a client.
func jsonErrText(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "json: ")
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// Server messages. Each is encoded once and queued; the writer adds the
// "seq" field (see outbox).

type helloMsg struct {
	Type        string           `json:"type"`
	Peer        string           `json:"peer"`
	ResumeToken string           `json:"resume_token,omitempty"`
	Resumed     bool             `json:"resumed"`
	ResumeError string           `json:"resume_error,omitempty"`
	Rooms       []string         `json:"rooms"`
	ICEServers  []auth.ICEServer `json:"ice_servers"`
	Expires     *time.Time       `json:"expires,omitempty"`
	TTL         int              `json:"ttl,omitempty"`
	User        string           `json:"user,omitempty"`
	// TokenExpires is when the session ends unless an auth message brings
	// a fresh token; absent without tokens.
	TokenExpires *time.Time  `json:"token_expires,omitempty"`
	PingInterval int         `json:"ping_interval"`
	Limits       helloLimits `json:"limits"`
	Server       serverInfo  `json:"server"`
	Replay       *replayInfo `json:"replay,omitempty"`
	// NATProbe holds the stun: URLs of the server's two RFC 5780 addresses,
	// for the test page's NAT hint; absent without the stun block.
	NATProbe []string `json:"nat_probe,omitempty"`
}

type helloLimits struct {
	MaxMessageBytes   int `json:"max_message_bytes"`
	MessagesPerSecond int `json:"messages_per_second"`
	PeersPerRoom      int `json:"peers_per_room"`
	RoomsPerPeer      int `json:"rooms_per_peer"`
	ResumeGrace       int `json:"resume_grace"`
}

// serverInfo tells a client (the test page) what to expect of the relay.
type serverInfo struct {
	Version string `json:"version,omitempty"`
	// TURNSCertificate is "configured" or "self-signed" (browsers refuse
	// turns: with a self-signed certificate).
	TURNSCertificate string `json:"turns_certificate"`
	TURNEvents       bool   `json:"turn_events"`
	// Credentials is false when no shared secret can mint TURN credentials
	// (static users only): ice_servers then hold only STUN URLs.
	Credentials bool `json:"credentials"`
	// RelayDraining is true while the relay refuses new allocations
	// (SIGUSR1) and no other node's relay is vended instead (a cluster
	// steers to one when it can): ice_servers then hold only STUN URLs,
	// and credentials is false.
	RelayDraining bool `json:"relay_draining,omitempty"`
}

type replayInfo struct {
	// From is the first seq replayed. Gap says messages the client may
	// not have received are not replayed: they were no longer kept, or
	// the client's last seq is beyond any this peer was sent.
	From uint64 `json:"from"`
	Gap  bool   `json:"gap,omitempty"`
}

// roomMsg is joined (up to the fields the bus adds, see JoinedBody), left,
// peer-joined and peer-left.
type roomMsg struct {
	Type string          `json:"type"`
	ID   json.RawMessage `json:"id,omitempty"`
	Room string          `json:"room"`
	Peer string          `json:"peer,omitempty"`
	// User is the peer's identity (its token's subject), when tokens are
	// on; Meta its token's meta claim, on peer-joined, when it has one.
	User string          `json:"user,omitempty"`
	Meta json.RawMessage `json:"meta,omitempty"`
}

// memberMsg is one member in a joined reply's "members".
type memberMsg struct {
	Peer string          `json:"peer"`
	User string          `json:"user,omitempty"`
	Meta json.RawMessage `json:"meta,omitempty"`
}

type relayedMsg struct {
	Type string `json:"type"`
	From string `json:"from"`
	// FromUser is the sender's identity (its token's subject), when
	// tokens are on.
	FromUser string          `json:"from_user,omitempty"`
	Room     string          `json:"room,omitempty"`
	Data     json.RawMessage `json:"data"`
}

// pushMsg is a message from the server API. Room names the room it was
// pushed to; a push to a peer or a user has none.
type pushMsg struct {
	Type string          `json:"type"`
	Room string          `json:"room,omitempty"`
	Data json.RawMessage `json:"data"`
}

type ackMsg struct {
	Type string          `json:"type"`
	ID   json.RawMessage `json:"id"`
	// Held: the target is reconnecting; it gets the message when it resumes.
	Held bool `json:"held,omitempty"`
	// Delivered and Dropped count the peers of a broadcast.
	Delivered *int `json:"delivered,omitempty"`
	Dropped   int  `json:"dropped,omitempty"`
}

type errorMsg struct {
	Type  string          `json:"type"`
	ID    json.RawMessage `json:"id,omitempty"`
	Code  string          `json:"code"`
	Error string          `json:"error"`
	// For is the type of the message the error answers, when known.
	For string `json:"for,omitempty"`
}

type iceServersMsg struct {
	Type       string           `json:"type"`
	ICEServers []auth.ICEServer `json:"ice_servers"`
	Expires    *time.Time       `json:"expires,omitempty"`
	TTL        int              `json:"ttl,omitempty"`
}

type turnMsg struct {
	Type  string    `json:"type"`
	Event turnEvent `json:"event"`
}

type turnEvent struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Detail    string    `json:"detail,omitempty"`
	Transport string    `json:"transport,omitempty"`
	Client    string    `json:"client,omitempty"`
	Peer      string    `json:"peer,omitempty"`
	Username  string    `json:"username,omitempty"`
}

type simpleMsg struct {
	Type string `json:"type"`
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types are encoded, and they always encode; a failure
		// is a bug, reported to the client rather than panicking.
		b, _ = json.Marshal(errorMsg{Type: TypeError, Code: "internal", Error: err.Error()})
	}
	return b
}
