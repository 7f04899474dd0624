package signaling

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"icegate/internal/hellosplit"
)

// holdConn is a client's TCP connection whose writes can be held and
// then sent in one write, so that several TLS records (or frames) reach
// the server in one TCP segment.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	buf  bytes.Buffer
}

func (c *holdConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold {
		return c.buf.Write(p)
	}
	return c.Conn.Write(p)
}

// flush sends what was held in one write and stops holding.
func (c *holdConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold = false
	// crypto/tls's CloseWrite leaves an expired write deadline behind.
	_ = c.Conn.SetWriteDeadline(time.Time{})
	_, err := c.Conn.Write(c.buf.Bytes())
	c.buf.Reset()
	return err
}

// idleClient is a /ws client that writes frames of its own making.
type idleClient struct {
	ws    *websocket.Conn
	hello map[string]any
	tcp   *holdConn
	tls   *tls.Conn // nil over plain TCP
	wire  net.Conn  // where frames are written: tls, or tcp
}

// dialIdle connects to hs's /ws (over TLS if hs is a TLS server) and
// reads the hello.
func dialIdle(t *testing.T, hs *httptest.Server) *idleClient {
	t.Helper()
	c, err := dialIdleErr(hs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ws.Close() })
	return c
}

// dialIdleErr is dialIdle for any goroutine: the caller closes c.ws.
func dialIdleErr(hs *httptest.Server) (*idleClient, error) {
	c, err := dialWire(hs, wsURL(hs, "/ws"))
	if err != nil {
		return nil, err
	}
	if err := c.ws.ReadJSON(&c.hello); err != nil || c.hello["type"] != "hello" {
		c.ws.Close()
		return nil, fmt.Errorf("hello: %v %v", c.hello, err)
	}
	return c, nil
}

// dialWire dials the WebSocket url of hs's (over TLS if hs is a TLS
// server) as an idleClient, and reads nothing.
func dialWire(hs *httptest.Server, url string) (*idleClient, error) {
	c := &idleClient{}
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			c.tcp = &holdConn{Conn: conn}
			return c.tcp, nil
		},
	}
	if hs.TLS != nil {
		d.NetDialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.NetDialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			c.tls = tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
			return c.tls, c.tls.HandshakeContext(ctx)
		}
	}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		return nil, err
	}
	c.ws, c.wire = ws, net.Conn(c.tcp)
	if c.tls != nil {
		c.wire = c.tls
	}
	return c, nil
}

// frame is a client's frame (masked, RFC 6455 §5.3) with FIN set.
func frame(opcode byte, payload []byte) []byte {
	b := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		panic("frame too long for this test")
	}
	key := []byte{0x11, 0x22, 0x33, 0x44}
	b = append(b, key...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// ping is a text frame with a signaling ping whose id is id.
func ping(id int) []byte {
	return frame(websocket.TextMessage, fmt.Appendf(nil, `{"type":"ping","id":"%d"}`, id))
}

// expectPongs reads replies until it has seen a pong for each of ids, in
// a time far below the server's read timeout and ping interval: a message
// left buffered above the socket would wait for either.
func (c *idleClient) expectPongs(t *testing.T, ids ...int) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[fmt.Sprint(id)] = true
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	defer c.ws.SetReadDeadline(time.Time{})
	for len(want) > 0 {
		var m map[string]any
		if err := c.ws.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for pongs %v: %v", want, err)
		}
		if m["type"] == "pong" {
			delete(want, fmt.Sprint(m["id"]))
		}
	}
}

// idleServers runs f against a server over plain TCP and over TLS (with
// cmd/icegate's hellosplit under crypto/tls), each with the shared waiter
// (watch.go) and with a reader goroutine per connection (the "-reader"
// modes: another platform's path, and ServeTransport's). The cases that
// need no keepalive give a long ping interval, so that none wakes a
// connection.
func idleServers(t *testing.T, pingEvery time.Duration, f func(t *testing.T, s *Server, hs *httptest.Server)) {
	for _, mode := range []string{"plain", "tls", "plain-reader", "tls-reader"} {
		t.Run(mode, func(t *testing.T) {
			s := newTestServer(t, func(c *Config) { c.PingInterval = pingEvery })
			s.noWaiter = strings.HasSuffix(mode, "-reader")
			hs := httptest.NewUnstartedServer(s.Handler())
			if strings.HasPrefix(mode, "tls") {
				// As cmd/icegate serves HTTPS: the reader sees
				// through hellosplit's Conn once it is passing.
				hs.Listener = hellosplit.Listen(hs.Listener)
				hs.StartTLS()
			} else {
				hs.Start()
			}
			defer hs.Close()
			f(t, s, hs)
		})
	}
}

// A client that sends a frame right behind its upgrade request (before
// the 101, which RFC 6455 §4.1 says it must wait for) has it answered:
// the frame was read ahead by net/http (plain, or TLS in the request's
// record) or by crypto/tls (TLS, a record of its own in the same
// segment), and the reader takes it from there rather than waiting on
// the socket.
func TestIdleReaderPipelinedUpgrade(t *testing.T) {
	idleServers(t, time.Minute, func(t *testing.T, s *Server, hs *httptest.Server) {
		for _, records := range []int{1, 2} {
			if records == 2 && hs.TLS == nil {
				continue
			}
			conn, err := net.Dial("tcp", hs.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			tcp := &holdConn{Conn: conn, hold: true}
			var wire net.Conn = tcp
			if hs.TLS != nil {
				tc := tls.Client(tcp, &tls.Config{InsecureSkipVerify: true})
				tcp.hold = false
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				tcp.mu.Lock()
				tcp.hold = true
				tcp.mu.Unlock()
				wire = tc
			}
			req := "GET /ws HTTP/1.1\r\nHost: " + hs.Listener.Addr().String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
			if records == 1 {
				_, err = wire.Write(append([]byte(req), ping(7)...))
			} else if _, err = wire.Write([]byte(req)); err == nil {
				_, err = wire.Write(ping(7))
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := tcp.flush(); err != nil {
				t.Fatal(err)
			}
			_ = wire.SetReadDeadline(time.Now().Add(3 * time.Second))
			br := bufio.NewReader(wire)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			for {
				b, err := readServerFrame(br)
				if err != nil {
					t.Fatalf("%d record(s): waiting for the pong: %v", records, err)
				}
				if bytes.Contains(b, []byte(`"type":"pong"`)) {
					break
				}
			}
		}
	})
}

// readServerFrame reads one unmasked frame from a server and returns its
// payload.
func readServerFrame(br *bufio.Reader) ([]byte, error) {
	h := make([]byte, 2)
	if _, err := io.ReadFull(br, h); err != nil {
		return nil, err
	}
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(br, h); err != nil {
			return nil, err
		}
		n = int(h[0])<<8 | int(h[1])
	case 127:
		return nil, errors.New("frame too long for this test")
	}
	b := make([]byte, n)
	_, err := io.ReadFull(br, b)
	return b, err
}
