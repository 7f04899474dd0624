package signaling

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"icegate/internal/leakcheck"
)

// TestMain fails the run when a goroutine of this package outlives the tests.
func TestMain(m *testing.M) { leakcheck.Main(m, "icegate/signaling.") }

// testRelay is the relay the test servers name: icegate's default ports
// and transports, with the certificate it generates.
var testRelay = Relay{Port: 3478, TLSPort: 5349, UDP: true, TCP: true, TLS: true, SelfSignedCert: true}

// testConfig returns a Config of defaults naming testRelay, changed by
// mutate. No config file is involved: the package stands on its own.
func testConfig(mutate func(*Config)) Config {
	cfg := Config{Relay: testRelay}
	if mutate != nil {
		mutate(&cfg)
	}
	return cfg
}

const testSecret = "test-secret-0123456789"

// newTestServer starts a Server and closes it when the test ends.
func newTestServer(t testing.TB, mutate func(*Config)) *Server {
	t.Helper()
	s, err := New(testConfig(mutate), Options{Secret: func() string { return testSecret }, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// newBusServer starts a Server on bus and closes it when the test ends,
// giving its queued releases and goodbyes up to 10 s.
func newBusServer(t testing.TB, bus Bus) *Server {
	t.Helper()
	s, err := New(testConfig(nil), Options{Bus: bus, Secret: func() string { return testSecret }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// hijacker is the http.ResponseWriter a WebSocket upgrade needs, over a
// net.Conn: no HTTP server involved.
type hijacker struct {
	conn net.Conn
	brw  *bufio.ReadWriter
	h    http.Header
	code int
}

func (h *hijacker) Header() http.Header         { return h.h }
func (h *hijacker) Write(b []byte) (int, error) { return h.conn.Write(b) }
func (h *hijacker) WriteHeader(code int)        { h.code = code }
func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, h.brw, nil
}

// client is a test peer: a WebSocket over net.Pipe whose other end the
// server's Accept serves.
type client struct {
	t      testing.TB
	ws     *websocket.Conn
	raw    net.Conn // the client's end of the pipe
	msgs   chan map[string]any
	closed chan error
	hello  map[string]any
	done   chan struct{} // Accept returned
}

type pipeOpts struct {
	AcceptOptions
	noRead  bool                  // do not read: a slow or dead client
	noHello bool                  // /ws/simple sends no hello
	setup   func(*websocket.Conn) // called before reading starts
}

// connect runs the WebSocket handshake over net.Pipe, serves the server
// end with Accept, and reads hello.
func connect(t testing.TB, s *Server, o pipeOpts) *client {
	t.Helper()
	cEnd, sEnd := net.Pipe()
	c := &client{t: t, raw: cEnd, msgs: make(chan map[string]any, 1024), closed: make(chan error, 1), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		br := bufio.NewReader(sEnd)
		req, err := http.ReadRequest(br)
		if err != nil {
			sEnd.Close()
			return
		}
		w := &hijacker{conn: sEnd, brw: bufio.NewReadWriter(br, bufio.NewWriter(sEnd)), h: http.Header{}}
		up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
		ws, err := up.Upgrade(w, req, nil)
		if err != nil {
			sEnd.Close()
			return
		}
		_ = s.Accept(context.Background(), ws, o.AcceptOptions)
	}()
	d := websocket.Dialer{NetDialContext: func(context.Context, string, string) (net.Conn, error) { return cEnd, nil }}
	ws, _, err := d.Dial("ws://pipe/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.ws = ws
	t.Cleanup(func() {
		ws.Close()
		<-c.done
	})
	if o.setup != nil {
		o.setup(ws)
	}
	if o.noRead {
		return c
	}
	go c.readLoop()
	if !o.noHello {
		c.hello = c.expect("hello")
	}
	return c
}

func (c *client) readLoop() {
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.closed <- err
			close(c.msgs)
			return
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			m = map[string]any{"type": "!undecodable", "raw": string(b)}
		}
		c.msgs <- m
	}
}

// send writes one message, a JSON object given as a Go value or raw text.
func (c *client) send(v any) {
	c.t.Helper()
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next returns the next message, failing after a timeout.
func (c *client) next() map[string]any {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("connection closed while waiting for a message: %v", <-c.closed)
		}
		return m
	case <-time.After(5 * time.Second):
		c.t.Fatal("no message within 5s")
	}
	return nil
}

// expect returns the next message, which must have type typ.
func (c *client) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.next()
	if m["type"] != typ {
		c.t.Fatalf("got %v, want a %q message", m, typ)
	}
	return m
}

// quiet checks that no message arrives for d.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if ok {
			c.t.Fatalf("unexpected message %v", m)
		}
	case <-time.After(d):
	}
}

// waitClosed waits for the server to close the connection and returns the
// close error.
func (c *client) waitClosed() error {
	c.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-c.msgs:
			if !ok {
				return <-c.closed
			}
		case <-timeout:
			c.t.Fatal("connection still open after 5s")
			return nil
		}
	}
}

func (c *client) id() string { return c.hello["peer"].(string) }

// pairInRoom connects two peers, a and b, that both join room (a first),
// and reads everything the joins sent them, a's peer-joined included.
func pairInRoom(t testing.TB, s *Server, room string) (a, b *client) {
	t.Helper()
	a = connect(t, s, pipeOpts{})
	b = connect(t, s, pipeOpts{})
	join := `{"type":"join","room":` + strconv.Quote(room) + `}`
	for _, p := range []*client{a, b} {
		p.send(join)
		p.expect("joined")
	}
	a.expect("peer-joined")
	return a, b
}

// eventually polls cond for up to 5s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// counterValue reads a counter.
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

var _ = sync.Mutex{}
