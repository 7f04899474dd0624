package signaling

import (
	"context"
	"errors"
	"fmt"
)

// What the operator's admin API (cmd/icegate, /api/v1/admin/) sees of
// signaling sessions and may do to them. Like the server API, every call
// goes through the Bus, so any node answers for the whole cluster.

// SessionInfo is one session in a room.
type SessionInfo struct {
	Room string `json:"room"`
	Member
}

// ErrBadCloseCode is returned by EndSession for a close code outside the
// application's range (4100-4999).
var ErrBadCloseCode = errors.New("close code outside 4100-4999")

// Sessions lists the sessions in rooms, across the cluster, room by room
// (a session in several rooms is listed once per room). A session in no
// room is not listed; Sessions of a user (SessionsOf) finds it.
func (s *Server) Sessions(ctx context.Context) ([]SessionInfo, error) {
	rooms, err := s.bus.Rooms(ctx)
	if err != nil {
		return nil, err
	}
	out := []SessionInfo{}
	for _, r := range rooms {
		members, err := s.bus.Members(ctx, r.Name)
		if err != nil {
			return nil, err
		}
		for _, m := range members {
			out = append(out, SessionInfo{Room: r.Name, Member: m})
		}
	}
	return out, nil
}

// SessionsOf lists the ids of a user's sessions (a token's "sub").
func (s *Server) SessionsOf(ctx context.Context, user string) ([]string, error) {
	return s.bus.SessionsOf(ctx, user)
}

// EndSession ends session id for good, wherever it is, as the server API's
// disconnect does: its connection closes with code (0: 4100) and reason,
// it cannot resume, and the others in its rooms get peer-left. It reports
// false when there is no such session.
func (s *Server) EndSession(ctx context.Context, id string, code int, reason string) (bool, error) {
	if code == 0 {
		code = defaultAppCloseCode
	}
	if code < minAppCloseCode || code > maxAppCloseCode {
		return false, fmt.Errorf("%w: %d", ErrBadCloseCode, code)
	}
	if len(reason) > maxReasonBytes {
		reason = reason[:maxReasonBytes]
	}
	return s.endSession(ctx, id, code, reason)
}
