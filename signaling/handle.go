package signaling

import (
	"context"
	"encoding/json"
	"errors"
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
		servers, exp, ok := c.s.iceServers(c.host, c.id)
		msg := iceServersMsg{Type: TypeICEServers, ICEServers: servers}
		if ok {
			msg.Expires, msg.TTL = &exp, int(time.Until(exp)/time.Second)
		}
		c.send(encode(msg))
	case TypeTURNEvents:
		if st.NoTURNEvents {
			outcome = perr(CodeDisabled, "TURN events are switched off (signaling.turn_events)")
			break
		}
		c.turnEvents.Store(*m.On)
		c.ack(m)
	case TypeBye:
		c.ack(m)
		c.kill(closeNormal, "bye")
	case TypeAuth:
		outcome = c.auth(m, st)
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

// auth takes a fresh token for the session: same subject, and it moves the
// session's end to the new expiry. The rooms it allows apply to joins from
// now on.
func (c *conn) auth(m *inbound, st *settings) *protoError {
	if len(st.TokenSecrets) == 0 {
		return perr(CodeDisabled, "tokens are not in use (signaling.token_secrets is empty)")
	}
	claims, err := c.s.verifyToken(m.Token, time.Now())
	if err != nil {
		return perr(CodeBadToken, "%v", err)
	}
	if c.claims != nil && claims.Subject != c.claims.Subject {
		return perr(CodeBadToken, "the token is for another user (sub %q)", safeText(claims.Subject))
	}
	c.claims = claims
	c.expiry.Store(claims.Expiry)
	c.reauth()
	c.ack(m)
	return nil
}

// busCtx bounds a bus operation made for a client's message.
func busCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), busWait)
}

// user is the session's identity: the token's subject, "" without tokens.
func (c *conn) user() string {
	if c.claims == nil {
		return ""
	}
	return c.claims.Subject
}

// unavailable is the answer when a bus operation failed for a reason
// other than the ones each message maps: the cluster bus cannot be reached
// (the message was not delivered, or may not have been, so it is never
// acked), or the sender's own session is gone from the bus (ended by the
// server API, or lost with Redis's data) while its connection closes.
func unavailable(err error) *protoError {
	if errors.Is(err, ErrUnknownSession) {
		return perr(CodeSessionEnded, "this session has ended; reconnect")
	}
	return perr(CodeClusterUnavailable, "the cluster is unavailable; message not delivered (%v)", err)
}

func (c *conn) join(m *inbound, st *settings) *protoError {
	if !c.claims.AllowsRoom(m.Room) {
		return perr(CodeRoomNotAllowed, "your token does not allow room %q", m.Room)
	}
	limit := st.PeersPerRoom
	if m.MaxPeers > 0 && m.MaxPeers < limit {
		limit = m.MaxPeers
	}
	ctx, cancel := busCtx()
	defer cancel()
	user := c.user()
	var meta json.RawMessage
	if c.claims != nil {
		meta = c.claims.Meta
	}
	j, err := c.s.bus.Join(ctx, JoinRequest{
		Session: c.id, Room: m.Room, Max: limit, RoomsPerPeer: st.RoomsPerPeer,
		Member:       encode(memberMsg{Peer: c.id, User: user, Meta: meta}),
		PeerJoined:   encode(roomMsg{Type: TypePeerJoined, Room: m.Room, Peer: c.id, User: user, Meta: meta}),
		PeerLeft:     encode(roomMsg{Type: TypePeerLeft, Room: m.Room, Peer: c.id, User: user}),
		JoinedPrefix: joinedPrefix(m.ID, m.Room),
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTooManyRooms):
		return perr(CodeTooManyRooms, "already in %d rooms (signaling.rooms_per_peer); leave one first", st.RoomsPerPeer)
	case errors.Is(err, ErrRoomFull):
		if j.Max > 0 {
			return perr(CodeRoomFull, "room %q is full (%d of %d peers)", m.Room, j.Max, j.Max)
		}
		return perr(CodeRoomFull, "room %q is full", m.Room)
	}
	return unavailable(err)
}

// joinedPrefix starts a joined reply, up to the fields the bus fills in
// (JoinedBody).
func joinedPrefix(id json.RawMessage, room string) []byte {
	b := encode(roomMsg{Type: TypeJoined, ID: id, Room: room})
	b[len(b)-1] = ','
	return b
}

func (c *conn) leave(m *inbound) *protoError {
	ctx, cancel := busCtx()
	defer cancel()
	err := c.s.bus.Leave(ctx, LeaveRequest{Session: c.id, Room: m.Room, Left: encode(roomMsg{Type: TypeLeft, ID: m.ID, Room: m.Room})})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotInRoom):
		return perr(CodeNotInRoom, "not in room %q", m.Room)
	}
	return unavailable(err)
}

// direct sends an offer, answer, candidate or application message to one
// peer that shares a room with the sender.
func (c *conn) direct(m *inbound) *protoError {
	r := SendRequest{From: c.id, To: m.To, Room: m.Room,
		Body: encode(relayedMsg{Type: m.Type, From: c.id, FromUser: c.user(), Room: m.Room, Data: m.Data})}
	if len(m.ID) > 0 {
		r.Ack = encode(ackMsg{Type: TypeAck, ID: m.ID})
		r.AckHeld = encode(ackMsg{Type: TypeAck, ID: m.ID, Held: true})
	}
	ctx, cancel := busCtx()
	defer cancel()
	held, err := c.s.bus.Send(ctx, r)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrPeerGone):
		return perr(CodePeerGone, "peer %s has left", m.To)
	case errors.Is(err, ErrUnknownSession), errors.Is(err, ErrNotShared):
		if m.Room != "" {
			return perr(CodeNoSuchPeer, "no peer %s in room %q with you", m.To, m.Room)
		}
		return perr(CodeNoSuchPeer, "no peer %s in your rooms", m.To)
	case errors.Is(err, ErrQueueFull) && held:
		return perr(CodeQueueFull, "peer %s is reconnecting and its queue is full (signaling.send_queue)", m.To)
	case errors.Is(err, ErrQueueFull):
		return perr(CodeQueueFull, "peer %s is not reading its messages (queue full); it is being disconnected", m.To)
	}
	return unavailable(err)
}

func (c *conn) broadcast(m *inbound) *protoError {
	r := BroadcastRequest{From: c.id, Room: m.Room,
		Body: encode(relayedMsg{Type: TypeBroadcast, From: c.id, FromUser: c.user(), Room: m.Room, Data: m.Data})}
	if len(m.ID) > 0 {
		b := encode(ackMsg{Type: TypeAck, ID: m.ID})
		b[len(b)-1] = ','
		r.AckPrefix = b
	}
	ctx, cancel := busCtx()
	defer cancel()
	_, _, err := c.s.bus.Broadcast(ctx, r)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotInRoom):
		return perr(CodeNotInRoom, "not in room %q", m.Room)
	}
	return unavailable(err)
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
	s.mu.RLock()
	c := s.local[e.UserID]
	s.mu.RUnlock()
	if c == nil || !c.turnEvents.Load() {
		return
	}
	body := encode(turnMsg{Type: TypeTURN, Event: turnEvent{
		Time: e.Time, Kind: e.Kind, Detail: e.Detail, Transport: e.Transport,
		Client: e.Client, Peer: e.Peer, Username: e.Username,
	}})
	// The bus may be a network away; the relay must not wait for it. At
	// most relayEventsInFlight events are on their way; beyond that they
	// are dropped and counted.
	select {
	case s.eventSlots <- struct{}{}:
	default:
		s.metrics.dropped.WithLabelValues("turn-event").Inc()
		return
	}
	go func() {
		defer func() { <-s.eventSlots }()
		ctx, cancel := busCtx()
		defer cancel()
		if s.bus.Push(ctx, c.id, body) != nil {
			s.metrics.dropped.WithLabelValues("turn-event").Inc()
		}
	}()
}
