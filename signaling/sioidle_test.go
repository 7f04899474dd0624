package signaling

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSocketIODroppedEventsAcked: an event dropped unparsed, over
// messages_per_second or over max_message_bytes, still gets its ack, with
// the error object, as a refused join does: socket.io-client's
// emitWithAck would otherwise wait out its timeout. Before any join too
// (the ack id then names the rooms vocabulary).
func TestSocketIODroppedEventsAcked(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.MessagesPerSecond = 1
		c.MessagesBurst = 1
		c.MaxMessageBytes = 512
	})
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	a := dialSIOWebSocket(t, sioBase(hs))
	a.connect()
	a.send(`2["ice-servers"]`) // takes the burst's one token
	a.send(`27["ice-servers"]`)
	if ack := a.expect("37["); !strings.Contains(ack, CodeRateLimited) {
		t.Fatalf("ack of a rate-limited event: %s", ack)
	}
	time.Sleep(1100 * time.Millisecond) // a token again
	a.send(fmt.Sprintf(`28["message","r","%s"]`, strings.Repeat("x", 600)))
	if ack := a.expect("38["); !strings.Contains(ack, CodeTooLarge) {
		t.Fatalf("ack of an event over max_message_bytes: %s", ack)
	}
}

// TestSIOPeekID: the ack id is read from the header of EVENT and
// BINARY_EVENT packets, cut or not; others have none.
func TestSIOPeekID(t *testing.T) {
	p := &sioProto{}
	c := &conn{t: &sioTransport{}}
	for _, tc := range []struct {
		frame, want string
	}{
		{`212["a"]`, `"sio:r:12"`},
		{`212["a",{"x":"cut here`, `"sio:r:12"`},
		{`51-7["a",{"_placeholder":true,"num":0}]`, `"sio:r:7"`},
		{`2["a"]`, ""},
		{`2/ns,3["a"]`, ""},
		{`312[]`, ""},
		{`212`, ""},
		{`51-`, ""},
		{`5x-1[]`, ""},
		{`299999999999999999999["a"]`, ""},
		{``, ""},
	} {
		if got := string(p.peekID(c, []byte(tc.frame))); got != tc.want {
			t.Errorf("peekID(%q) = %s, want %s", tc.frame, got, tc.want)
		}
	}
	p.vocab.Store(vocabCodelab)
	if got := string(p.peekID(c, []byte(`25["message"]`))); got != `"sio:c:5"` {
		t.Errorf("codelab vocabulary: %s", got)
	}
}
