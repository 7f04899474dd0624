package signaling

import (
	"bytes"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer the HTTP server's error log may write to
// from its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// sioHTTPServer serves s over HTTP on loopback with the server's error log
// kept: net/http recovers a panic in a handler (a polling request's) and
// only logs it, so the tests read the log to see one.
func sioHTTPServer(t *testing.T, s *Server) (*httptest.Server, *lockedBuffer) {
	hs := httptest.NewUnstartedServer(s.Handler())
	logs := &lockedBuffer{}
	hs.Config.ErrorLog = log.New(logs, "", 0)
	hs.Start()
	t.Cleanup(func() {
		hs.Close()
		if strings.Contains(logs.String(), "panic") {
			t.Errorf("the HTTP server logged a panic:\n%s", logs)
		}
	})
	return hs, logs
}

// sioGarbage is what TestSIOGarbage sends: Engine.IO packets that are not
// packets, and socket.io packets that are not packets, each as one
// WebSocket frame or one POST body. close says whether the server ends the
// connection (with a close frame, or over polling a close packet or 400),
// rather than answering and going on.
var sioGarbage = []struct {
	name  string
	raw   []string // Engine.IO packets (over polling, payloads), sent in order
	bin   []byte   // then a binary frame (over polling, "b" and base64)
	close bool
	// pollingKeeps: over polling the server ignores it, as engine.io's
	// does (its polling transport passes "upgrade" to a socket that has
	// no case for it); over WebSocket, where an upgrade packet can only
	// come in the probe, it is a protocol error.
	pollingKeeps bool
}{
	// Engine.IO.
	{name: "empty", raw: []string{""}, close: true},
	{name: "unknown type", raw: []string{"x"}, close: true},
	{name: "type 9", raw: []string{"9"}, close: true},
	{name: "not utf-8", raw: []string{"\xff\xfe\x00"}, close: true},
	{name: "upgrade without probe", raw: []string{"6"}},
	{name: "stray upgrade", raw: []string{"5"}, close: true, pollingKeeps: true},
	{name: "base64 not base64", raw: []string{"b!!!!"}, close: true},
	{name: "empty message", raw: []string{"4"}, close: true},
	{name: "separators", raw: []string{"\x1e\x1e4"}, close: true},
	// socket.io.
	{name: "sio type 9", raw: []string{"49"}, close: true},
	{name: "sio truncated json", raw: []string{`42["message"`}, close: true},
	{name: "sio json object", raw: []string{`42{}`}, close: true},
	{name: "sio empty array", raw: []string{`42[]`}, close: true},
	// socket.io-parser takes a number as an event name; no such event.
	{name: "sio event name a number", raw: []string{`42[1,2]`}},
	{name: "sio ack id overflow", raw: []string{`4299999999999999999999999["message","g",1]`}, close: true},
	{name: "sio deep nesting", raw: []string{`42["message","g",` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `]`}, close: true},
	{name: "sio other namespace event", raw: []string{`42/nope,["message","g",1]`}},
	{name: "sio connect other namespace", raw: []string{`40/nope,`}},
	{name: "sio second connect", raw: []string{`40`}},
	{name: "sio client ack", raw: []string{`431[]`}},
	{name: "sio connect error from client", raw: []string{`44{"message":"x"}`}},
	{name: "sio attachment count not a number", raw: []string{`45x-["message","g",{"_placeholder":true,"num":0}]`}, close: true},
	{name: "sio attachment then text", raw: []string{`451-["message","g",{"_placeholder":true,"num":0}]`, `42["message","g",1]`}, close: true},
	{name: "sio binary frame unasked", bin: []byte{1, 2, 3}, close: true},
	// Well formed, but binary is not relayed: an error, not a close.
	{name: "sio binary event", raw: []string{`451-["message","g",{"_placeholder":true,"num":0}]`}, bin: []byte{1, 2, 3}},
}

// TestSIOGarbage sends each garbage packet over WebSocket and over
// polling from a client in a room with a socket.io neighbour and a /ws
// neighbour: the connection gets an answer or a clean close, never a
// panic, and the neighbours go on talking, seeing the sender leave when it
// was closed.
func TestSIOGarbage(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.SocketIORoomSize = 3 })
	hs, _ := sioHTTPServer(t, s)
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()

	sio := dialSIO(t, hs, hc, "websocket", false)
	sio.send(`2["join","g"]`)
	sio.event("joined")
	ws := connect(t, s, pipeOpts{})
	ws.send(`{"type":"join","room":"g"}`)
	ws.expect("joined")
	sio.event("otherjoin")

	// talk checks the two neighbours reach each other (and want, when
	// not nil, also gets the socket.io neighbour's message).
	n := 0
	talk := func(t *testing.T, also *sioWire) {
		t.Helper()
		n++
		sio.send(`2["message","g",{"n":` + strconv.Itoa(n) + `}]`)
		m := ws.expect("broadcast")
		if m["from"] != sio.id || str(m["data"]) != `{"n":`+strconv.Itoa(n)+`}` {
			t.Fatalf("/ws neighbour got %v", m)
		}
		if also != nil {
			if got := also.event("message"); string(got[1]) != `{"n":`+strconv.Itoa(n)+`}` {
				t.Fatalf("sender got %s", got)
			}
		}
		ws.send(`{"type":"broadcast","room":"g","data":"back"}`)
		if got := sio.event("message"); string(got[0]) != `"g"` || string(got[1]) != `"back"` {
			t.Fatalf("socket.io neighbour got %s", got)
		}
		if also != nil {
			also.event("message")
		}
	}
	talk(t, nil)

	for _, transport := range []string{"websocket", "polling"} {
		for _, tc := range sioGarbage {
			t.Run(transport+"/"+tc.name, func(t *testing.T) {
				g := dialSIO(t, hs, hc, transport, false)
				g.send(`2["join","g"]`)
				g.event("joined")
				sio.event("otherjoin")
				ws.expect("peer-joined")
				for _, p := range tc.raw {
					g.raw(p)
				}
				if tc.bin != nil {
					g.rawBinary(tc.bin)
				}
				want := tc.close && !(transport == "polling" && tc.pollingKeeps)
				how, ended := g.closed(150 * time.Millisecond)
				if ended != want {
					t.Errorf("connection ended: %v (%s), want %v", ended, how, want)
				}
				if ended && !strings.HasPrefix(how, "websocket close 100") && how != "close packet" && !strings.HasPrefix(how, `poll 400 {"code":1,`) {
					t.Errorf("ended by %q, want a close frame, a close packet or 400 Session ID unknown", how)
				}
				if !ended {
					// Still a working member of the room.
					talk(t, g)
					g.send(`2["leave","g"]`)
					g.event("leaved")
					g.raw("1") // Engine.IO's close: the session ends now
					if how, ok := g.closed(5 * time.Second); !ok {
						t.Fatal("close packet did not end the session")
					} else if how != "close packet" && how != "websocket close 1000" && !strings.HasPrefix(how, "poll 400") {
						t.Errorf("close packet: ended by %q", how)
					}
				}
				if got := sio.event("bye"); string(got[1]) != strconv.Quote(g.id) {
					t.Errorf("socket.io neighbour: bye %s, want %s", got, g.id)
				}
				if m := ws.expect("peer-left"); m["peer"] != g.id {
					t.Errorf("/ws neighbour: %v, want peer-left %s", m, g.id)
				}
				talk(t, nil)
				g.abandon()
			})
		}
	}
	ws.quiet(50 * time.Millisecond)
	eventually(t, "only the neighbours left", func() bool {
		st := s.Stats()
		if st.Connections == 2 && st.Peers == 2 && st.Rooms == 1 && s.eio.Sessions() == 1 {
			return true
		}
		t.Logf("%+v, %d engine.io sessions", st, s.eio.Sessions())
		return false
	})
}
