package signaling

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"
)

// MemoryBus is the in-process Bus: the default, when there is no cluster.
// One lock makes every operation atomic, as one script does on Redis.
// Handles made by Node share one state, so tests can run several "nodes" on
// it; the server uses the one NewMemoryBus returns.
type MemoryBus struct {
	st   *memState
	node string
}

// NewMemoryBus returns an in-process bus whose node is called "local".
func NewMemoryBus() *MemoryBus {
	return &MemoryBus{node: "local", st: &memState{
		nodes:    map[string]Node{},
		sessions: map[string]*memSession{},
		tokens:   map[string]*memSession{},
		names:    map[string]*memSession{},
		rooms:    map[string]*memRoom{},
		gone:     map[string]time.Time{},
	}}
}

// Node returns another handle on the same state, for node id.
func (b *MemoryBus) Node(id string) *MemoryBus { return &MemoryBus{st: b.st, node: id} }

type memState struct {
	mu       sync.Mutex
	nodes    map[string]Node
	sessions map[string]*memSession
	tokens   map[string]*memSession // current and previous resume tokens
	names    map[string]*memSession
	rooms    map[string]*memRoom
	// gone maps the ids of removed sessions to when they left; goneOrder
	// holds the same departures, oldest first, so that pruning takes
	// entries from its front instead of scanning the map.
	gone      map[string]time.Time
	goneOrder []departure
}

type memSession struct {
	id, user, node string
	token, prev    string
	limits         Limits
	log            [][]byte // log[i] has seq base+i
	base           uint64
	seq            uint64 // the last seq logged
	written        uint64 // while held: the last seq its node wrote
	epoch          uint64
	held           bool
	holds          int // so a stale grace timer knows it is stale
	timer          *time.Timer
	rooms          []string
	name           string
}

type memRoom struct {
	max     int
	members []*memMember
}

type memMember struct {
	s              *memSession
	frag, peerLeft []byte
	joined         time.Time
	node           string
}

// departure is one entry of memState.goneOrder.
type departure struct {
	id string
	at time.Time
}

const (
	// goneMemory is how long a removed session's id is remembered, to
	// answer "peer-gone" rather than "no-such-peer".
	goneMemory = 10 * time.Minute
	// maxGone bounds that memory.
	maxGone = 4096
)

// Start implements Bus.
func (b *MemoryBus) Start(n Node) error {
	b.st.mu.Lock()
	b.st.nodes[b.node] = n
	b.st.mu.Unlock()
	return nil
}

// Close implements Bus: the node's sessions end with it.
func (b *MemoryBus) Close(context.Context) error {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.nodes, b.node)
	for _, s := range st.sessions {
		if s.node == b.node && s.timer != nil {
			s.timer.Stop()
		}
	}
	return nil
}

// NodeID implements Bus.
func (b *MemoryBus) NodeID() string { return b.node }

// Open implements Bus.
func (b *MemoryBus) Open(_ context.Context, s Session) error {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	ms := &memSession{id: s.ID, user: s.User, node: b.node, token: s.Token, limits: s.Limits, base: 1, epoch: 1}
	st.sessions[s.ID] = ms
	if s.Token != "" {
		st.tokens[s.Token] = ms
	}
	return nil
}

// Resume implements Bus.
func (b *MemoryBus) Resume(_ context.Context, r ResumeRequest) (Resumed, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.tokens[r.Token]
	if s == nil {
		return Resumed{}, ErrUnknownSession
	}
	if s.user != r.User {
		return Resumed{}, ErrOtherUser
	}
	if !s.held {
		if n := st.nodes[s.node]; n != nil {
			n.Kick(s.id, s.epoch, closeReplaced, "replaced by a resumed connection")
		}
	}
	limit := s.seq
	if s.held {
		limit = s.written
	}
	s.held = false
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.node = b.node
	s.limits = r.Limits
	s.epoch++
	// The token used stays valid until the next resume, in case this
	// connection drops before the client sees the new one.
	for _, t := range []string{s.token, s.prev} {
		if t != r.Token {
			delete(st.tokens, t)
		}
	}
	s.prev, s.token = r.Token, r.NewToken
	st.tokens[r.NewToken] = s

	res := Resumed{ID: s.id, Rooms: slices.Clone(s.rooms), Epoch: s.epoch}
	first := s.first()
	switch {
	case r.Last > limit:
		// The claim is impossible: what was never written is sent; what
		// was is not replayed, and if there is any, that is a gap.
		res.From, res.Gap = limit+1, limit > 0
	case r.Last+1 < first:
		res.From, res.Gap = first, true
	default:
		res.From = r.Last + 1
	}
	if res.From < first {
		res.From = first
	}
	res.Msgs = slices.Clone(s.log[res.From-s.base:])
	return res, nil
}

// Replay implements Bus.
func (b *MemoryBus) Replay(_ context.Context, id string, after uint64) (uint64, [][]byte, bool, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.sessions[id]
	if s == nil {
		return 0, nil, false, ErrUnknownSession
	}
	from, gap := after+1, false
	if first := s.first(); from < first {
		from, gap = first, true
	}
	if from > s.seq {
		return s.seq + 1, nil, gap, nil
	}
	return from, slices.Clone(s.log[from-s.base:]), gap, nil
}

// Hold implements Bus.
func (b *MemoryBus) Hold(_ context.Context, id string, epoch, written uint64, grace time.Duration) error {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.sessions[id]
	if s == nil || (epoch != 0 && s.epoch != epoch) {
		return nil
	}
	if grace <= 0 {
		st.removeLocked(s, time.Now())
		return nil
	}
	if s.held {
		return nil
	}
	s.held = true
	s.written = min(written, s.seq)
	s.holds++
	holds := s.holds
	s.timer = time.AfterFunc(grace, func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.sessions[id] == s && s.held && s.holds == holds {
			st.removeLocked(s, time.Now())
		}
	})
	return nil
}

// Remove implements Bus.
func (b *MemoryBus) Remove(_ context.Context, id string, epoch uint64) error {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if s := st.sessions[id]; s != nil && (epoch == 0 || s.epoch == epoch) {
		st.removeLocked(s, time.Now())
	}
	return nil
}

// Kick implements Bus.
func (b *MemoryBus) Kick(_ context.Context, id string, code int, reason string) error {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.sessions[id]
	if s == nil {
		return ErrUnknownSession
	}
	if n := st.nodes[s.node]; n != nil && !s.held {
		n.Kick(id, s.epoch, code, reason)
	}
	return nil
}

// Join implements Bus.
func (b *MemoryBus) Join(_ context.Context, r JoinRequest) (Joined, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.sessions[r.Session]
	if s == nil {
		return Joined{}, ErrUnknownSession
	}
	rm := st.rooms[r.Room]
	again := rm != nil && slices.Contains(s.rooms, r.Room)
	if !again {
		if len(s.rooms) >= r.RoomsPerPeer {
			return Joined{}, ErrTooManyRooms
		}
		if rm == nil {
			rm = &memRoom{max: r.Max}
			st.rooms[r.Room] = rm
		}
		if rm.max > 0 && len(rm.members) >= rm.max {
			return Joined{Max: rm.max}, ErrRoomFull
		}
		for _, m := range rm.members {
			st.appendLocked(m.s, r.PeerJoined)
		}
		rm.members = append(rm.members, &memMember{s: s, frag: r.Member, peerLeft: r.PeerLeft, joined: time.Now(), node: b.node})
		s.rooms = append(s.rooms, r.Room)
	}
	j := Joined{Max: rm.max, Again: again, Peers: []string{}}
	var frags [][]byte
	for _, m := range rm.members {
		if m.s != s {
			j.Peers = append(j.Peers, m.s.id)
			frags = append(frags, m.frag)
		}
	}
	st.appendLocked(s, JoinedBody(r.JoinedPrefix, j.Peers, frags, rm.max))
	return j, nil
}

// Leave implements Bus.
func (b *MemoryBus) Leave(_ context.Context, r LeaveRequest) error {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.sessions[r.Session]
	if s == nil || !st.leaveLocked(s, r.Room) {
		return ErrNotInRoom
	}
	st.appendLocked(s, r.Left)
	return nil
}

// Send implements Bus.
func (b *MemoryBus) Send(_ context.Context, r SendRequest) (bool, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	from := st.sessions[r.From]
	if from == nil {
		return false, ErrUnknownSession
	}
	var t *memSession
	if r.ByName {
		t = st.names[r.To]
	} else {
		t = st.sessions[r.To]
	}
	switch {
	case t == nil && !r.ByName && st.goneLocked(r.To):
		return false, ErrPeerGone
	case t == nil:
		return false, ErrUnknownSession
	case !r.ByName && !r.Anyone && !sharesRoom(from, t, r.Room):
		return false, ErrNotShared
	case t.full():
		return true, ErrQueueFull
	}
	st.appendLocked(t, r.Body)
	ack := r.Ack
	if t.held && r.AckHeld != nil {
		ack = r.AckHeld
	}
	if ack != nil {
		st.appendLocked(from, ack)
	}
	return t.held, nil
}

// Broadcast implements Bus.
func (b *MemoryBus) Broadcast(_ context.Context, r BroadcastRequest) (delivered, dropped int, err error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	rm := st.rooms[r.Room]
	var s *memSession // nil: from the server, to every member
	if r.From != "" {
		s = st.sessions[r.From]
		if s == nil || rm == nil || !slices.Contains(s.rooms, r.Room) {
			return 0, 0, ErrNotInRoom
		}
	} else if rm == nil {
		return 0, 0, nil
	}
	for _, m := range rm.members {
		switch {
		case m.s == s:
		case m.s.full():
			dropped++
		default:
			st.appendLocked(m.s, r.Body)
			delivered++
		}
	}
	if s != nil && r.AckPrefix != nil {
		st.appendLocked(s, BroadcastAck(r.AckPrefix, delivered, dropped))
	}
	return delivered, dropped, nil
}

// Push implements Bus.
func (b *MemoryBus) Push(_ context.Context, id string, body []byte) error {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.sessions[id]
	switch {
	case s == nil:
		return ErrUnknownSession
	case s.full():
		return ErrQueueFull
	}
	st.appendLocked(s, body)
	return nil
}

// Claim implements Bus.
func (b *MemoryBus) Claim(_ context.Context, id, name string) error {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.sessions[id]
	if s == nil {
		return ErrUnknownSession
	}
	if o := st.names[name]; o != nil && o != s {
		return ErrNameTaken
	}
	if s.name != "" && st.names[s.name] == s {
		delete(st.names, s.name)
	}
	s.name = name
	st.names[name] = s
	return nil
}

// Rooms implements Bus.
func (b *MemoryBus) Rooms(context.Context) ([]RoomInfo, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]RoomInfo, 0, len(st.rooms))
	for name, r := range st.rooms {
		out = append(out, RoomInfo{Name: name, Members: len(r.members), Max: r.max})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Members implements Bus.
func (b *MemoryBus) Members(_ context.Context, room string) ([]Member, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.rooms[room]
	if r == nil {
		return []Member{}, nil
	}
	out := make([]Member, 0, len(r.members))
	for _, m := range r.members {
		out = append(out, Member{Peer: m.s.id, User: m.s.user, Node: m.s.node, Joined: m.joined})
	}
	return out, nil
}

// SessionsOf implements Bus.
func (b *MemoryBus) SessionsOf(_ context.Context, user string) ([]string, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	out := []string{}
	for id, s := range st.sessions {
		if s.user == user {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Counts implements Bus.
func (b *MemoryBus) Counts(context.Context) (map[string]int, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	out := map[string]int{}
	for _, s := range st.sessions {
		if s.held {
			out[""]++
		} else {
			out[s.node]++
		}
	}
	return out, nil
}

// first is the seq of the oldest message kept: the log holds at most
// Keep+Queue (it is trimmed in batches, so it may hold more; those are
// not replayed).
func (s *memSession) first() uint64 {
	bound := uint64(max(s.limits.Keep+s.limits.Queue, 1))
	if s.seq >= bound && s.seq-bound+1 > s.base {
		return s.seq - bound + 1
	}
	return s.base
}

// full reports whether s is held and its queue is full.
func (s *memSession) full() bool {
	return s.held && s.seq-s.written >= uint64(s.limits.Queue)
}

// appendLocked logs body for s and hands it to s's node, unless s is held.
// The log keeps at most Keep+Queue messages, trimmed in batches so an
// append stays O(1) amortized. Caller holds mu.
func (st *memState) appendLocked(s *memSession, body []byte) {
	s.seq++
	s.log = append(s.log, body)
	if bound := max(s.limits.Keep+s.limits.Queue, 1); len(s.log) > 2*bound {
		drop := len(s.log) - bound
		n := copy(s.log, s.log[drop:])
		clear(s.log[n:])
		s.log = s.log[:n]
		s.base += uint64(drop)
	}
	if s.held {
		return
	}
	if n := st.nodes[s.node]; n != nil {
		n.Deliver(s.id, s.seq, body)
	}
}

// leaveLocked takes s out of room name and tells the others. Caller holds mu.
func (st *memState) leaveLocked(s *memSession, name string) bool {
	i := slices.Index(s.rooms, name)
	if i < 0 {
		return false
	}
	s.rooms = slices.Delete(s.rooms, i, i+1)
	r := st.rooms[name]
	if r == nil {
		return true
	}
	j := slices.IndexFunc(r.members, func(m *memMember) bool { return m.s == s })
	if j < 0 {
		return true
	}
	left := r.members[j].peerLeft
	r.members = slices.Delete(r.members, j, j+1)
	if len(r.members) == 0 {
		delete(st.rooms, name)
		return true
	}
	for _, m := range r.members {
		st.appendLocked(m.s, left)
	}
	return true
}

// removeLocked forgets s for good. Caller holds mu.
func (st *memState) removeLocked(s *memSession, now time.Time) {
	if st.sessions[s.id] != s {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	for _, name := range slices.Clone(s.rooms) {
		st.leaveLocked(s, name)
	}
	for _, t := range []string{s.token, s.prev} {
		if t != "" && st.tokens[t] == s {
			delete(st.tokens, t)
		}
	}
	if s.name != "" && st.names[s.name] == s {
		delete(st.names, s.name)
	}
	delete(st.sessions, s.id)
	st.rememberGoneLocked(s.id, now)
}

// rememberGoneLocked records that session id left at now, for goneLocked.
// It forgets departures older than goneMemory and, beyond maxGone, the
// oldest ones. Departures are recorded in time order (under mu, with the
// monotonic clock), so both are at the front of goneOrder: the cost is
// O(1) amortized per departure. Caller holds mu.
func (st *memState) rememberGoneLocked(id string, now time.Time) {
	st.gone[id] = now
	st.goneOrder = append(st.goneOrder, departure{id: id, at: now})
	n := 0
	for _, d := range st.goneOrder {
		if len(st.goneOrder)-n <= maxGone && now.Sub(d.at) < goneMemory {
			break
		}
		// An id that left again later has a newer entry; keep that one.
		if t, ok := st.gone[d.id]; ok && t.Equal(d.at) {
			delete(st.gone, d.id)
		}
		n++
	}
	if n > 0 {
		clear(st.goneOrder[:n]) // let the ids be collected
		st.goneOrder = st.goneOrder[n:]
	}
}

// goneLocked reports whether id left recently. Caller holds mu.
func (st *memState) goneLocked(id string) bool {
	t, ok := st.gone[id]
	return ok && time.Since(t) < goneMemory
}

// sharesRoom reports whether a and b are in a common room (room "" = any).
func sharesRoom(a, b *memSession, room string) bool {
	if room != "" {
		return slices.Contains(a.rooms, room) && slices.Contains(b.rooms, room)
	}
	for _, r := range a.rooms {
		if slices.Contains(b.rooms, r) {
			return true
		}
	}
	return false
}
