package signaling

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The classic tutorial protocol on /ws/simple: plain JSON over a WebSocket,
// peers addressed by the name they logged in with. A client written for it
// works unchanged:
//
//	→ {"type":"login","name":"alice"}          ← {"type":"login","success":true}
//	→ {"type":"offer","name":"bob","offer":O}  bob ← {"type":"offer","offer":O,"name":"alice"}
//	→ {"type":"answer","name":"alice","answer":A}  alice ← {"type":"answer","answer":A}
//	→ {"type":"candidate","name":"bob","candidate":C}  bob ← {"type":"candidate","candidate":C}
//	→ {"type":"leave","name":"bob"}            bob ← {"type":"leave"}
//
// Unknown types get {"type":"error","message":"Command not found: T"}, as
// the tutorial's server answers. When a peer disconnects, the peer it last
// exchanged an offer or answer with gets {"type":"leave"}.

// simpleIn is a tutorial message.
type simpleIn struct {
	Type      string          `json:"type"`
	Name      string          `json:"name"`
	Offer     json.RawMessage `json:"offer"`
	Answer    json.RawMessage `json:"answer"`
	Candidate json.RawMessage `json:"candidate"`
}

// parseSimple decodes a tutorial message.
func parseSimple(b []byte) (*simpleIn, error) {
	var m simpleIn
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

type simpleLogin struct {
	Type       string `json:"type"`
	Success    bool   `json:"success"`
	Message    string `json:"message,omitempty"`
	ICEServers any    `json:"iceServers,omitempty"`
}

type simpleRelay struct {
	Type      string          `json:"type"`
	Offer     json.RawMessage `json:"offer,omitempty"`
	Answer    json.RawMessage `json:"answer,omitempty"`
	Candidate json.RawMessage `json:"candidate,omitempty"`
	Name      string          `json:"name,omitempty"`
}

type simpleError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func validName(n string) bool {
	return n != "" && len(n) <= maxPeerBytes && utf8.ValidString(n) && !strings.ContainsFunc(n, unicode.IsControl)
}

func (c *conn) simpleError(msg string) {
	c.send(encode(simpleError{Type: "error", Message: msg}))
}

// handleSimple answers one tutorial message. It runs on the reader. A
// login claims the name on the bus; messages go to the session that claimed
// the name they carry, anywhere in the cluster.
func (c *conn) handleSimple(b []byte) {
	m, err := parseSimple(b)
	if err != nil {
		c.s.metrics.messages.WithLabelValues("other", CodeBadJSON).Inc()
		c.simpleError("Invalid JSON: " + jsonErrText(err))
		return
	}
	s := c.s
	s.metrics.messages.WithLabelValues(typeLabel(m.Type), "ok").Inc()
	ctx, cancel := busCtx()
	defer cancel()
	switch m.Type {
	case "login":
		switch {
		case c.name != "":
			c.send(encode(simpleLogin{Type: "login", Success: false, Message: "already logged in as " + c.name}))
			return
		case !validName(m.Name):
			c.send(encode(simpleLogin{Type: "login", Success: false, Message: "name must be 1-64 printable characters"}))
			return
		}
		switch err := s.bus.Claim(ctx, c.id, m.Name); {
		case errors.Is(err, ErrNameTaken):
			c.send(encode(simpleLogin{Type: "login", Success: false, Message: "name taken"}))
			return
		case err != nil:
			c.send(encode(simpleLogin{Type: "login", Success: false, Message: "cluster unavailable, try again"}))
			return
		}
		c.name = m.Name
		servers, _, _ := s.iceServers(c.host, c.id)
		c.send(encode(simpleLogin{Type: "login", Success: true, ICEServers: servers}))
	case "offer", "answer", "candidate", "leave":
		if c.name == "" {
			c.simpleError("log in first")
			return
		}
		var out simpleRelay
		switch m.Type {
		case "offer":
			out = simpleRelay{Type: "offer", Offer: m.Offer, Name: c.name}
		case "answer":
			out = simpleRelay{Type: "answer", Answer: m.Answer}
		case "candidate":
			out = simpleRelay{Type: "candidate", Candidate: m.Candidate}
		case "leave":
			out = simpleRelay{Type: "leave"}
		}
		_, err := s.bus.Send(ctx, SendRequest{From: c.id, To: m.Name, ByName: true, Body: encode(out)})
		switch {
		case err == nil:
			switch m.Type {
			case "offer", "answer":
				c.other = m.Name
			case "leave":
				c.other = ""
			}
		case errors.Is(err, ErrUnknownSession):
			if m.Type != "leave" {
				c.simpleError("no user named " + safeText(m.Name))
			}
		default:
			c.simpleError("cannot reach " + safeText(m.Name) + ": " + err.Error())
		}
	default:
		c.simpleError("Command not found: " + safeText(m.Type))
	}
}

// simpleLogout tells the peer c last exchanged an offer or answer with
// that c is gone, as the tutorial's server does.
func (c *conn) simpleLogout() {
	if c.other == "" {
		return
	}
	ctx, cancel := busCtx()
	defer cancel()
	_, _ = c.s.bus.Send(ctx, SendRequest{From: c.id, To: c.other, ByName: true, Body: encode(simpleRelay{Type: "leave"})})
}
