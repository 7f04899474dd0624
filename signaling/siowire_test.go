package signaling

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// sioWire is a socket.io client written from the protocol documents
// (engine.io-protocol v4, socket.io-protocol v5), for tests that must send
// what socket.io-client never would: it speaks Engine.IO over WebSocket or
// long-polling, answers pings, and hands over each socket.io packet it
// gets. The real client is socket.io-client (sio_test.go); this one is for
// garbage and for loops too fast for Node.
type sioWire struct {
	t      testing.TB
	base   string // http://host:port
	hc     *http.Client
	sid    string // the Engine.IO session id
	id     string // the socket.io id: the peer id
	ws     *websocket.Conn
	wmu    sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc

	in      chan string // socket.io packets, in order; closed at the end
	done    chan struct{}
	mu      sync.Mutex
	ended   string // how the connection ended: "close packet", "400 …", a WebSocket close
	backlog []string
}

// dialSIO opens an Engine.IO session over transport ("websocket" or
// "polling") and, unless noConnect, sends socket.io's CONNECT and waits
// for its answer.
func dialSIO(t testing.TB, hs *httptest.Server, hc *http.Client, transport string, noConnect bool) *sioWire {
	t.Helper()
	c := newSIOWire(t, hs.URL, hc)
	if err := c.open(transport); err != nil {
		t.Fatalf("engine.io handshake over %s: %v", transport, err)
	}
	if noConnect {
		return c
	}
	c.send("0")
	p := c.next()
	if !strings.HasPrefix(p, "0{") {
		t.Fatalf("CONNECT answered %q", p)
	}
	var ok struct {
		SID string `json:"sid"`
	}
	if err := json.Unmarshal([]byte(p[1:]), &ok); err != nil || ok.SID == "" {
		t.Fatalf("CONNECT answered %q", p)
	}
	c.id = ok.SID
	return c
}

func newSIOWire(t testing.TB, base string, hc *http.Client) *sioWire {
	ctx, cancel := context.WithCancel(context.Background())
	c := &sioWire{t: t, base: base, hc: hc, ctx: ctx, cancel: cancel, in: make(chan string, 256), done: make(chan struct{})}
	t.Cleanup(c.abandon)
	return c
}

func (c *sioWire) url(transport string) string {
	u := c.base + "/socket.io/?EIO=4&transport=" + transport
	if c.sid != "" {
		u += "&sid=" + c.sid
	}
	if transport == "websocket" {
		u = "ws" + strings.TrimPrefix(u, "http")
	}
	return u
}

// open runs the Engine.IO handshake and starts the reader.
func (c *sioWire) open(transport string) error {
	var open string
	if transport == "websocket" {
		ws, _, err := websocket.DefaultDialer.DialContext(c.ctx, c.url("websocket"), nil)
		if err != nil {
			return err
		}
		c.ws = ws
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			return err
		}
		_ = ws.SetReadDeadline(time.Time{})
		open = string(b)
	} else {
		code, body, err := c.get()
		if err != nil {
			return err
		}
		if code != 200 {
			return &sioStatus{code, body}
		}
		open = body
	}
	var o struct {
		SID string `json:"sid"`
	}
	if !strings.HasPrefix(open, "0") || json.Unmarshal([]byte(open[1:]), &o) != nil || o.SID == "" {
		if c.ws != nil {
			c.ws.Close()
		}
		return &sioStatus{0, "open packet " + open}
	}
	c.sid = o.SID
	go c.read()
	return nil
}

type sioStatus struct {
	code int
	body string
}

func (e *sioStatus) Error() string { return http.StatusText(e.code) + ": " + e.body }

func (c *sioWire) get() (int, string, error) {
	req, _ := http.NewRequestWithContext(c.ctx, http.MethodGet, c.url("polling"), nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// post sends an Engine.IO payload as it is; it returns the status.
func (c *sioWire) post(body []byte) int {
	req, _ := http.NewRequestWithContext(c.ctx, http.MethodPost, c.url("polling"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// read takes Engine.IO packets until the session ends, answering pings
// and passing messages (socket.io packets) on.
func (c *sioWire) read() {
	defer close(c.done)
	defer close(c.in)
	end := func(how string) {
		c.mu.Lock()
		c.ended = how
		c.mu.Unlock()
	}
	handle := func(p string) bool {
		if p == "" {
			return true
		}
		switch p[0] {
		case '1':
			end("close packet")
			return false
		case '2':
			c.raw("3" + p[1:])
		case '4':
			select {
			case c.in <- p[1:]:
			case <-c.ctx.Done():
				return false
			}
		}
		return true
	}
	if c.ws != nil {
		for {
			typ, b, err := c.ws.ReadMessage()
			if err != nil {
				if ce, ok := err.(*websocket.CloseError); ok {
					end("websocket close " + strconv.Itoa(ce.Code))
				} else {
					end("websocket error " + err.Error())
				}
				return
			}
			if typ == websocket.BinaryMessage {
				continue
			}
			if !handle(string(b)) {
				return
			}
		}
	}
	for {
		code, body, err := c.get()
		if err != nil {
			end("poll error " + err.Error())
			return
		}
		if code != 200 {
			end("poll " + strconv.Itoa(code) + " " + body)
			return
		}
		for _, p := range strings.Split(body, "\x1e") {
			if !handle(p) {
				return
			}
		}
	}
}

// raw sends one Engine.IO packet (type byte and data) as it is: a
// WebSocket text frame, or a POST body.
func (c *sioWire) raw(p string) int {
	if c.ws == nil {
		return c.post([]byte(p))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if c.ws.WriteMessage(websocket.TextMessage, []byte(p)) != nil {
		return 0
	}
	return 200
}

// rawBinary sends a binary WebSocket frame (over polling: "b" and base64,
// as engine.io-protocol encodes one).
func (c *sioWire) rawBinary(b []byte) {
	if c.ws == nil {
		c.post([]byte("b" + base64.StdEncoding.EncodeToString(b)))
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.WriteMessage(websocket.BinaryMessage, b)
}

// send sends a socket.io packet (an Engine.IO message).
func (c *sioWire) send(p string) { c.raw("4" + p) }

// next returns the next socket.io packet, failing after 5 s or at the end.
func (c *sioWire) next() string {
	c.t.Helper()
	if len(c.backlog) > 0 {
		p := c.backlog[0]
		c.backlog = c.backlog[1:]
		return p
	}
	select {
	case p, ok := <-c.in:
		if !ok {
			c.t.Fatalf("connection ended (%s) while waiting for a packet", c.how())
		}
		return p
	case <-time.After(5 * time.Second):
		c.t.Fatal("no socket.io packet within 5s")
	}
	return ""
}

// event returns the arguments of the next event called name; other
// events before it are kept for later calls.
func (c *sioWire) event(name string) []json.RawMessage {
	c.t.Helper()
	var skipped []string
	defer func() { c.backlog = append(skipped, c.backlog...) }()
	for {
		p := c.next()
		if !strings.HasPrefix(p, "2") {
			skipped = append(skipped, p)
			continue
		}
		var args []json.RawMessage
		if json.Unmarshal([]byte(p[1:]), &args) != nil || len(args) == 0 {
			c.t.Fatalf("undecodable event %q", p)
		}
		var n string
		if json.Unmarshal(args[0], &n) == nil && n == name {
			return args[1:]
		}
		skipped = append(skipped, p)
	}
}

// how says how the connection ended ("" while it is open).
func (c *sioWire) how() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// closed waits up to d for the connection to end and reports how.
func (c *sioWire) closed(d time.Duration) (string, bool) {
	select {
	case <-c.done:
		return c.how(), true
	case <-time.After(d):
		return "", false
	}
}

// abandon stops the client at once, telling the server nothing.
func (c *sioWire) abandon() {
	c.cancel()
	if c.ws != nil {
		c.ws.Close()
	}
	if c.sid != "" {
		<-c.done
	}
}
