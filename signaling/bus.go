package signaling

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Bus holds what the peers of a signaling cluster share: sessions (their
// resume tokens, rooms and message logs), rooms and their members, and the
// routes of messages between them. Every operation is atomic with respect
// to the others (the in-process bus takes one lock; the Redis bus runs one
// script), so single-node and multi-node run the same session code and
// see the same outcomes. Two implementations: NewMemoryBus (the default)
// and redisbus (a cluster).
//
// Every message a session is sent, its own replies included, is appended
// to that session's log with the session's next sequence number (1, 2, …)
// and handed, in sequence order, to Node.Deliver on the node that holds the
// session's connection. The log is what a resume replays; its length is
// bounded (Limits.Keep messages after the last one the node wrote, plus
// Limits.Queue unwritten ones while the session is held).
//
// Message bodies are JSON objects, built by the session code; a bus never
// parses them. Where a body depends on state only the bus sees at the
// moment of the operation (the members a joiner finds, the number of peers
// a broadcast reached), the request carries the parts and the bus joins
// them with JoinedBody or BroadcastAck, the same bytes on every bus.
type Bus interface {
	// Start begins serving node: deliveries to the sessions it holds, and
	// kicks of them, go to node from now on. Called once, before any other
	// method.
	Start(node Node) error
	// Close stops serving. The sessions this node holds are left to their
	// fate on a shared bus (held, then removed, as after a node failure);
	// on an in-process bus they end with the process.
	Close(ctx context.Context) error
	// NodeID names this node in member lists and counts.
	NodeID() string

	// Open registers a new session held by this node, at epoch 1.
	Open(ctx context.Context, s Session) error
	// Resume takes over the session a resume token names (its current or
	// its previous token, so a drop during the resume itself loses
	// nothing) for this node, when r.User matches the session's. The
	// connection holding it before, on whatever node, is kicked with
	// closeReplaced. The session gets r.NewToken as its current token.
	// Errors: ErrUnknownSession, ErrOtherUser.
	Resume(ctx context.Context, r ResumeRequest) (Resumed, error)
	// Replay returns session id's logged messages after seq `after`: the
	// seq of the first one returned and whether some after `after` are no
	// longer kept (gap).
	Replay(ctx context.Context, id string, after uint64) (from uint64, msgs [][]byte, gap bool, err error)
	// Hold marks a session whose connection dropped: up to written (the
	// last seq its node wrote) its log is delivered; it keeps its rooms
	// and takes up to Limits.Queue more messages for grace, then it is
	// removed as by Remove. A second Hold keeps the first's written. A
	// grace of 0 removes it now.
	//
	// Hold and Remove apply only while the session is at epoch (the one
	// Open or the Resume that took it over gave this connection; 0 means
	// any): a connection that ends after its session resumed elsewhere
	// must not hold or remove the new one.
	Hold(ctx context.Context, id string, epoch, written uint64, grace time.Duration) error
	// Remove ends a session for good: it leaves its rooms (the others get
	// the PeerLeft body it joined with), gives up its name, and for
	// goneMemory a message to it is answered CodePeerGone. Removing a
	// session that is gone is not an error.
	Remove(ctx context.Context, id string, epoch uint64) error
	// Kick closes the connection of session id wherever it is held, with
	// a close code and reason the client sees; the session is then held
	// (it may resume) unless the code is closeNormal. A held session has
	// no connection to close: Kick does nothing to it. To end a session
	// for good whether or not it is connected (the server API's
	// disconnect), Kick it, then Remove it with epoch 0.
	Kick(ctx context.Context, id string, code int, reason string) error

	// Join adds a session to a room, refusing it atomically at capacity
	// (ErrRoomFull, with the room's cap in Joined.Max).
	Join(ctx context.Context, r JoinRequest) (Joined, error)
	// Leave takes a session out of a room: it gets r.Left, the others the
	// PeerLeft body it joined with. Errors: ErrNotInRoom.
	Leave(ctx context.Context, r LeaveRequest) error
	// Send appends r.Body to one session's log, if r.From may reach it,
	// and r.Ack (or r.AckHeld, when the target is held) to the sender's.
	Send(ctx context.Context, r SendRequest) (held bool, err error)
	// Broadcast appends r.Body to the logs of every member of r.Room but
	// the sender, and BroadcastAck(r.AckPrefix, …) to the sender's when
	// r.AckPrefix is set. Errors: ErrNotInRoom.
	//
	// With r.From "" the message is from the server (the server API's
	// push): every member gets r.Body, there is no membership check and
	// no ack (r.AckPrefix is ignored), and a room with no members (one
	// that does not exist) reaches no one: 0, 0, nil.
	Broadcast(ctx context.Context, r BroadcastRequest) (delivered, dropped int, err error)
	// Push appends body to session id's log (a reply, an error, fresh
	// credentials, a message from the server API). Errors:
	// ErrUnknownSession, ErrQueueFull for a held session.
	Push(ctx context.Context, id string, body []byte) error
	// Claim gives session id the name (the /ws/simple login), unless
	// another session has it. Errors: ErrNameTaken.
	Claim(ctx context.Context, id, name string) error

	// Rooms lists the rooms and their member counts.
	Rooms(ctx context.Context) ([]RoomInfo, error)
	// Members lists one room's members, in join order.
	Members(ctx context.Context, room string) ([]Member, error)
	// SessionsOf lists the ids of a user's sessions (Session.User).
	SessionsOf(ctx context.Context, user string) ([]string, error)
	// Counts returns the sessions each node holds (held sessions under "").
	Counts(ctx context.Context) (map[string]int, error)
}

// Node is what a Bus calls back: the connections of this process.
type Node interface {
	// Deliver hands session id's message seq to its connection. For each
	// session it is called in seq order; it must not block or call the bus.
	Deliver(id string, seq uint64, body []byte)
	// Kick closes session id's connection with a close code and reason,
	// if that connection's epoch is at most epoch: a kick meant for the
	// connection a resume replaced must not close the one that replaced
	// it, should it arrive late (AnyEpoch closes whichever is there). It
	// must not block or call the bus.
	Kick(id string, epoch uint64, code int, reason string)
	// Resync says deliveries may have been lost (the bus's connection
	// broke): the node asks Replay for what its sessions have not had.
	Resync()
}

// AnyEpoch, in Node.Kick, closes session id's connection whatever its epoch.
const AnyEpoch = ^uint64(0)

// Limits bound a session's log; Open and Resume carry them.
type Limits struct {
	// Queue is how many messages a held session takes beyond the last one
	// written to it before sends to it fail with ErrQueueFull.
	Queue int
	// Keep is how many written messages are kept for a resume.
	Keep int
	// Grace is how long the session is held when its node dies (a shared
	// bus holds the sessions of a node that stops heartbeating, as if each
	// connection had dropped; Hold carries its own grace). 0: removed at
	// once. An in-process bus ignores it: its sessions end with the process.
	Grace time.Duration
}

// Session is a new session, as Open registers it.
type Session struct {
	ID string
	// User is the token's subject, "" without tokens.
	User string
	// Token is the resume token; "" for a session that cannot resume.
	Token  string
	Limits Limits
}

// ResumeRequest asks to take over a session.
type ResumeRequest struct {
	Token, NewToken string
	User            string
	// Last is the last seq the client received; messages after it are
	// returned.
	Last   uint64
	Limits Limits
}

// Resumed is a session taken over by Resume.
type Resumed struct {
	ID    string
	Rooms []string
	// Epoch is the session's new epoch (each Resume adds one).
	Epoch uint64
	// From is the seq of Msgs[0] (or of the next message when Msgs is
	// empty); Gap says messages after Last are no longer kept. Msgs run up
	// to the last message logged when Resume ran; later ones are delivered.
	From uint64
	Msgs [][]byte
	Gap  bool
}

// JoinRequest adds session Session to Room.
type JoinRequest struct {
	Session, Room string
	// Max caps the room when this join creates it (0: no cap);
	// RoomsPerPeer caps the rooms the session is in.
	Max, RoomsPerPeer int
	// Member is this member's JSON object in others' member lists
	// ({"peer":…,"user":…}); PeerJoined goes to the members already in
	// the room, and PeerLeft, kept with the membership, when it leaves.
	Member, PeerJoined, PeerLeft []byte
	// JoinedPrefix starts the joiner's reply; JoinedBody completes it.
	// Joining a room one is in again answers the same, without telling the
	// others.
	JoinedPrefix []byte
}

// Joined is what a join found.
type Joined struct {
	// Peers are the other members' ids, in join order; Max the room's cap.
	Peers []string
	Max   int
	Again bool // the session was in the room already
}

// LeaveRequest takes session Session out of Room; Left is its reply.
type LeaveRequest struct {
	Session, Room string
	Left          []byte
}

// SendRequest is a directed message.
type SendRequest struct {
	From string
	// To is the target session's id, or with ByName the name it claimed.
	To     string
	ByName bool
	// Room, when set, is the room both must be in; otherwise any common
	// room (or, with ByName or Anyone, none) will do.
	Room   string
	Anyone bool
	Body   []byte
	// Ack goes to the sender once Body is logged; AckHeld instead when the
	// target is held. Both nil: no ack.
	Ack, AckHeld []byte
}

// BroadcastRequest is a message to a room.
type BroadcastRequest struct {
	// From is the sending session; "" is the server (see Bus.Broadcast).
	From, Room string
	Body       []byte
	AckPrefix  []byte // nil: no ack
}

// RoomInfo is one room in a listing.
type RoomInfo struct {
	Name    string `json:"room"`
	Members int    `json:"members"`
	Max     int    `json:"max_peers"`
}

// Member is one member of a room.
type Member struct {
	Peer   string    `json:"peer"`
	User   string    `json:"user,omitempty"`
	Node   string    `json:"node"`
	Joined time.Time `json:"joined"`
}

// Errors a Bus returns. The session code maps them to protocol errors.
var (
	// ErrUnknownSession: no such session (never was, or gone), or an
	// unknown resume token.
	ErrUnknownSession = errors.New("no such session")
	// ErrPeerGone: the target session was removed within goneMemory.
	ErrPeerGone = errors.New("peer gone")
	// ErrNotShared: the target exists but shares no (or not that) room.
	ErrNotShared = errors.New("no common room")
	// ErrOtherUser: the resume token belongs to another user.
	ErrOtherUser = errors.New("session of another user")
	// ErrQueueFull: the target is held and its queue is full.
	ErrQueueFull = errors.New("queue full")
	// ErrRoomFull: the room is at capacity.
	ErrRoomFull = errors.New("room full")
	// ErrTooManyRooms: the session is in RoomsPerPeer rooms.
	ErrTooManyRooms = errors.New("too many rooms")
	// ErrNotInRoom: the session is not in the room.
	ErrNotInRoom = errors.New("not in room")
	// ErrNameTaken: another session has claimed the name.
	ErrNameTaken = errors.New("name taken")
	// ErrUnavailable: the shared bus cannot be reached; nothing happened
	// (or, for a write whose answer was lost, it may have: never acked).
	ErrUnavailable = errors.New("cluster unavailable")
)

// JoinedBody completes a joined reply: prefix (`{"type":"joined",…,` up
// to and including a comma) then the peers, the members' JSON objects and
// the room's cap. Every bus builds the reply with this layout.
func JoinedBody(prefix []byte, peers []string, members [][]byte, max int) []byte {
	b := append([]byte(nil), prefix...)
	b = append(b, `"peers":[`...)
	for i, p := range peers {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, p)
	}
	b = append(b, `],"members":[`...)
	for i, m := range members {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m...)
	}
	b = append(b, `],"max_peers":`...)
	b = strconv.AppendInt(b, int64(max), 10)
	return append(b, '}')
}

// BroadcastAck completes a broadcast's ack: prefix (`{"type":"ack","id":…,`)
// then the counts of peers reached and dropped.
func BroadcastAck(prefix []byte, delivered, dropped int) []byte {
	b := append([]byte(nil), prefix...)
	b = append(b, `"delivered":`...)
	b = strconv.AppendInt(b, int64(delivered), 10)
	if dropped > 0 {
		b = append(b, `,"dropped":`...)
		b = strconv.AppendInt(b, int64(dropped), 10)
	}
	return append(b, '}')
}
