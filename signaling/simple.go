package signaling

import (
	"encoding/json"
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

// handleSimple answers one tutorial message. It runs on the reader.
func (c *conn) handleSimple(b []byte) {
	m, err := parseSimple(b)
	if err != nil {
		c.s.metrics.messages.WithLabelValues("other", CodeBadJSON).Inc()
		c.simpleError("Invalid JSON: " + jsonErrText(err))
		return
	}
	s := c.s
	p := c.p
	s.metrics.messages.WithLabelValues(typeLabel(m.Type), "ok").Inc()
	switch m.Type {
	case "login":
		s.mu.Lock()
		switch {
		case p.name != "":
			s.mu.Unlock()
			c.send(encode(simpleLogin{Type: "login", Success: false, Message: "already logged in as " + p.name}))
			return
		case !validName(m.Name):
			s.mu.Unlock()
			c.send(encode(simpleLogin{Type: "login", Success: false, Message: "name must be 1-64 printable characters"}))
			return
		case s.names[m.Name] != nil:
			s.mu.Unlock()
			c.send(encode(simpleLogin{Type: "login", Success: false, Message: "name taken"}))
			return
		}
		p.name = m.Name
		s.names[m.Name] = p
		s.mu.Unlock()
		servers, _, _ := s.iceServers(c.host, p.id)
		c.send(encode(simpleLogin{Type: "login", Success: true, ICEServers: servers}))
	case "offer", "answer", "candidate", "leave":
		s.mu.Lock()
		if p.name == "" {
			s.mu.Unlock()
			c.simpleError("log in first")
			return
		}
		t := s.names[m.Name]
		if t == nil {
			s.mu.Unlock()
			if m.Type != "leave" {
				c.simpleError("no user named " + safeText(m.Name))
			}
			return
		}
		var out simpleRelay
		switch m.Type {
		case "offer":
			out = simpleRelay{Type: "offer", Offer: m.Offer, Name: p.name}
			p.other = t.name
		case "answer":
			out = simpleRelay{Type: "answer", Answer: m.Answer}
			p.other = t.name
		case "candidate":
			out = simpleRelay{Type: "candidate", Candidate: m.Candidate}
		case "leave":
			out = simpleRelay{Type: "leave"}
			t.other = ""
			p.other = ""
		}
		s.deliver(t, encode(out), m.Type)
		s.mu.Unlock()
	default:
		c.simpleError("Command not found: " + safeText(m.Type))
	}
}

// simpleLogoutLocked forgets p's login and tells the peer it talked to.
// Caller holds mu.
func (s *Server) simpleLogoutLocked(p *peer) {
	if p.name == "" {
		return
	}
	if s.names[p.name] == p {
		delete(s.names, p.name)
	}
	if p.other != "" {
		if t := s.names[p.other]; t != nil {
			t.other = ""
			s.deliver(t, encode(simpleRelay{Type: "leave"}), "leave")
		}
	}
}
