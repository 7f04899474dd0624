package signaling

import (
	"encoding/json"
	"slices"
	"time"
)

// handle answers one /ws message. It runs on the connection's reader.
func (c *conn) handle(b []byte, st *settings) {
	m, e := parse(b)
	if e != nil {
		var id json.RawMessage
		t := "other"
		if m != nil {
			id = m.ID
			t = typeLabel(m.Type)
		}
		c.s.metrics.messages.WithLabelValues(t, e.code).Inc()
		forType := ""
		if m != nil && t != "other" {
			forType = m.Type
		}
		c.sendError(id, forType, e)
		return
	}
	var outcome *protoError
	switch m.Type {
	case TypeJoin:
		outcome = c.join(m, st)
	case TypeLeave:
		outcome = c.leave(m)
	case TypeOffer, TypeAnswer, TypeCandidate, TypeMessage:
		outcome = c.direct(m)
	case TypeBroadcast:
		outcome = c.broadcast(m)
	case TypePing:
		c.send(encode(ackMsg{Type: TypePong, ID: m.ID}))
	case TypeRenew:
		servers, exp, ok := c.s.iceServers(c.host, c.p.id)
		msg := iceServersMsg{Type: TypeICEServers, ICEServers: servers}
		if ok {
			msg.Expires, msg.TTL = &exp, int(time.Until(exp)/time.Second)
		}
		c.send(encode(msg))
	case TypeTURNEvents:
		if !!st.NoTURNEvents {
			outcome = perr(CodeDisabled, "TURN events are switched off (signaling.turn_events)")
			break
		}
		c.p.turnEvents.Store(*m.On)
		c.ack(m)
	case TypeBye:
		c.ack(m)
		c.kill(closeNormal, "bye")
	}
	if outcome != nil {
		c.s.metrics.messages.WithLabelValues(m.Type, outcome.code).Inc()
		c.sendError(m.ID, m.Type, outcome)
		return
	}
	c.s.metrics.messages.WithLabelValues(m.Type, "ok").Inc()
}

// ack acknowledges m if it carries an id.
func (c *conn) ack(m *inbound) {
	if len(m.ID) > 0 {
		c.send(encode(ackMsg{Type: TypeAck, ID: m.ID}))
	}
}

func (c *conn) join(m *inbound, st *settings) *protoError {
	if !c.p.claims.AllowsRoom(m.Room) {
		return perr(CodeRoomNotAllowed, "your token does not allow room %q", m.Room)
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	p := c.p
	r := s.rooms[m.Room]
	if slices.Contains(p.rooms, m.Room) && r != nil {
		// Joining again is harmless: say where the peer is.
		c.send(encode(roomMsg{Type: TypeJoined, ID: m.ID, Room: m.Room, Peers: others(r, p), MaxPeers: r.max}))
		return nil
	}
	if len(p.rooms) >= st.RoomsPerPeer {
		return perr(CodeTooManyRooms, "already in %d rooms (signaling.rooms_per_peer); leave one first", len(p.rooms))
	}
	if r == nil {
		limit := st.PeersPerRoom
		if m.MaxPeers > 0 && m.MaxPeers < limit {
			limit = m.MaxPeers
		}
		r = &room{name: m.Room, max: limit}
		s.rooms[m.Room] = r
		s.metrics.rooms.Inc()
	}
	if len(r.members) >= r.max {
		return perr(CodeRoomFull, "room %q is full (%d of %d peers)", m.Room, len(r.members), r.max)
	}
	peers := others(r, p)
	body := encode(roomMsg{Type: TypePeerJoined, Room: m.Room, Peer: p.id})
	for _, o := range r.members {
		s.deliver(o, body, "peer-joined")
	}
	r.members = append(r.members, p)
	p.rooms = append(p.rooms, m.Room)
	c.send(encode(roomMsg{Type: TypeJoined, ID: m.ID, Room: m.Room, Peers: peers, MaxPeers: r.max}))
	return nil
}

// others lists the ids of r's members other than p, never nil.
func others(r *room, p *peer) *[]string {
	ids := make([]string, 0, len(r.members))
	for _, o := range r.members {
		if o != p {
			ids = append(ids, o.id)
		}
	}
	return &ids
}

func (c *conn) leave(m *inbound) *protoError {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.leaveLocked(c.p, m.Room) {
		return perr(CodeNotInRoom, "not in room %q", m.Room)
	}
	c.send(encode(roomMsg{Type: TypeLeft, ID: m.ID, Room: m.Room}))
	return nil
}

// direct sends an offer, answer, candidate or application message to one
// peer that shares a room with the sender.
func (c *conn) direct(m *inbound) *protoError {
	s := c.s
	body := encode(relayedMsg{Type: m.Type, From: c.p.id, Room: m.Room, Data: m.Data})
	s.mu.RLock()
	t := s.peers[m.To]
	if t == nil || !sharesRoom(c.p, t, m.Room) {
		gone := t == nil && s.peerGoneLocked(m.To)
		s.mu.RUnlock()
		if gone {
			return perr(CodePeerGone, "peer %s has left", m.To)
		}
		if m.Room != "" {
			return perr(CodeNoSuchPeer, "no peer %s in room %q with you", m.To, m.Room)
		}
		return perr(CodeNoSuchPeer, "no peer %s in your rooms", m.To)
	}
	held := t.conn == nil
	err := s.deliver(t, body, m.Type)
	s.mu.RUnlock()
	if err != nil {
		if held {
			return perr(CodeQueueFull, "peer %s is reconnecting and its queue is full (signaling.send_queue)", m.To)
		}
		return perr(CodeQueueFull, "peer %s is not reading its messages (queue full); it is being disconnected", m.To)
	}
	if len(m.ID) > 0 {
		c.send(encode(ackMsg{Type: TypeAck, ID: m.ID, Held: held}))
	}
	return nil
}

func (c *conn) broadcast(m *inbound) *protoError {
	s := c.s
	body := encode(relayedMsg{Type: TypeBroadcast, From: c.p.id, Room: m.Room, Data: m.Data})
	delivered, dropped := 0, 0
	s.mu.RLock()
	r := s.rooms[m.Room]
	if r == nil || !r.has(c.p) {
		s.mu.RUnlock()
		return perr(CodeNotInRoom, "not in room %q", m.Room)
	}
	for _, o := range r.members {
		if o == c.p {
			continue
		}
		if s.deliver(o, body, TypeBroadcast) != nil {
			dropped++
		} else {
			delivered++
		}
	}
	s.mu.RUnlock()
	if len(m.ID) > 0 {
		c.send(encode(ackMsg{Type: TypeAck, ID: m.ID, Delivered: &delivered, Dropped: dropped}))
	}
	return nil
}

// RelayEvent is one decision the relay made about a client's control
// request, as the relay reports it (cmd passes the turn package's events in;
// signaling does not import the relay).
type RelayEvent struct {
	Time time.Time
	// Kind names the decision: authenticated, auth-refused,
	// allocation-created, allocation-deleted, permission-denied, refused.
	Kind string
	// Username is the USERNAME the client sent; UserID the user part the
	// relay derived from it, which for a credential this server vended is
	// the peer's id.
	Username, UserID string
	// Client is the client's transport address; Transport udp, tcp, tls or dtls.
	Client, Transport string
	// Detail says why, in words.
	Detail string
	// Peer is the peer address for permission events.
	Peer string
}

// RelayEvent routes a relay decision to the peer whose credentials the
// request used, when that peer asked for them (turn-events). It is the
// relay's Events hook: it never blocks (a full queue drops the event).
func (s *Server) RelayEvent(e RelayEvent) {
	if e.UserID == "" {
		return
	}
	v, ok := s.byID.Load(e.UserID)
	if !ok {
		return
	}
	p := v.(*peer)
	if !p.turnEvents.Load() {
		return
	}
	body := encode(turnMsg{Type: TypeTURN, Event: turnEvent{
		Time: e.Time, Kind: e.Kind, Detail: e.Detail, Transport: e.Transport,
		Client: e.Client, Peer: e.Peer, Username: e.Username,
	}})
	if _, err := p.out.push(body); err != nil {
		s.metrics.dropped.WithLabelValues("turn-event").Inc()
	}
}
