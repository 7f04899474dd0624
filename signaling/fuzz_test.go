package signaling

import (
	"encoding/json"
	"testing"
)

// FuzzParse checks the signaling JSON parsers: they never panic, an
// accepted message satisfies what the router relies on, and an error always
// carries a code and text for the client.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"type":"join","room":"r1","max_peers":2,"id":1}`,
		`{"type":"offer","to":"abcdefghijklmnop","data":{"type":"offer","sdp":"v=0"},"id":"x"}`,
		`{"type":"candidate","to":"p","data":null}`,
		`{"type":"broadcast","room":"r","data":[1,2]}`,
		`{"type":"turn-events","on":true}`,
		`{"type":"ping"}`, `{"type":"leave","room":"r"}`, `{"type":"bye"}`,
		`{"type":"login","name":"alice"}`, `{"type":"offer","name":"bob","offer":{}}`,
		`not json`, `[]`, `{"id":{"a":1}}`, `{"type":7}`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// The id of a message dropped unparsed (rate, size) is valid or
		// absent, whole or cut anywhere.
		for _, cut := range []int{len(b), len(b) / 2} {
			if id := peekID(b[:cut]); id != nil && !validID(id) {
				t.Fatalf("peekID(%q) = invalid %q", b[:cut], id)
			}
		}
		m, e := parse(b)
		if e != nil {
			if e.code == "" || e.msg == "" {
				t.Fatalf("error without code or text: %#v", e)
			}
			if m != nil && len(m.ID) > 0 && !validID(m.ID) {
				t.Fatalf("invalid id echoed: %q", m.ID)
			}
		} else {
			if m == nil {
				t.Fatal("nil message without error")
			}
			if len(m.ID) > 0 && !validID(m.ID) {
				t.Fatalf("accepted invalid id %q", m.ID)
			}
			switch {
			case m.Type == TypeJoin || m.Type == TypeLeave || m.Type == TypeBroadcast:
				if checkRoom(m.Room) != nil {
					t.Fatalf("accepted room %q", m.Room)
				}
			case directed(m.Type):
				if m.To == "" || len(m.To) > maxPeerBytes || len(m.Data) == 0 {
					t.Fatalf("accepted directed message %+v", m)
				}
			case m.Type == TypeTURNEvents:
				if m.On == nil {
					t.Fatal("accepted turn-events without on")
				}
			case m.Type == TypePing || m.Type == TypeRenew || m.Type == TypeBye:
			default:
				t.Fatalf("accepted type %q", m.Type)
			}
			// What is relayed must encode again.
			if _, err := json.Marshal(relayedMsg{Type: m.Type, Data: m.Data}); err != nil {
				t.Fatalf("relayed data does not encode: %v", err)
			}
		}
		if sm, err := parseSimple(b); err == nil {
			out := encode(simpleRelay{Type: sm.Type, Offer: sm.Offer, Answer: sm.Answer, Candidate: sm.Candidate, Name: sm.Name})
			if !json.Valid(out) {
				t.Fatalf("simple relay does not encode: %s", out)
			}
		}
	})
}

// directed reports whether t is sent to one peer.
func directed(t string) bool {
	switch t {
	case TypeOffer, TypeAnswer, TypeCandidate, TypeMessage:
		return true
	}
	return false
}
