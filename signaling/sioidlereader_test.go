package signaling

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The /ws idle reader's guarantees (idleconn_test.go,
// idleconn_frames_test.go), for socket.io over an Engine.IO WebSocket,
// whose reader waits on its socket the same way (sioTransport.readIdle).

// dialSIOIdle connects an idleClient to hs's /socket.io/ over an
// Engine.IO WebSocket (over TLS if hs is a TLS server), reads the open
// packet, and connects to socket.io's main namespace.
func dialSIOIdle(t *testing.T, hs *httptest.Server) *idleClient {
	t.Helper()
	c := dialSIOWS(t, hs, wsURL(hs, "/socket.io/?EIO=4&transport=websocket"))
	_ = c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	defer c.ws.SetReadDeadline(time.Time{})
	if _, b, err := c.ws.ReadMessage(); err != nil || !bytes.HasPrefix(b, []byte("0{")) {
		t.Fatalf("open: %q %v", b, err)
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte("40")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.ws.ReadMessage(); err != nil || !bytes.HasPrefix(b, []byte("40{")) {
		t.Fatalf("connect: %q %v", b, err)
	}
	return c
}

// dialSIOWS dials url, an Engine.IO WebSocket of hs's (over TLS if hs
// is a TLS server), as an idleClient, and reads nothing.
func dialSIOWS(t *testing.T, hs *httptest.Server, url string) *idleClient {
	t.Helper()
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
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c.ws, c.wire = ws, net.Conn(c.tcp)
	if c.tls != nil {
		c.wire = c.tls
	}
	return c
}

// sioAsk is a text frame with a socket.io event that the server acks
// with ack id id (socket.io's EVENT with an id, Engine.IO message 4).
func sioAsk(id int) []byte {
	return frame(websocket.TextMessage, fmt.Appendf(nil, `42%d["ice-servers"]`, id))
}

// eioPong is a client's Engine.IO pong packet, what an idle client sends.
func eioPong() []byte { return frame(websocket.TextMessage, []byte("3")) }

// expectAcks reads until each of ids has been acked (socket.io ACK, "43"
// and the id), answering the server's Engine.IO pings, far within the
// ping interval: a message left buffered above the socket would wait for
// the next packet.
func (c *idleClient) expectAcks(t *testing.T, ids ...int) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[fmt.Sprint(id)] = true
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	defer c.ws.SetReadDeadline(time.Time{})
	for len(want) > 0 {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for acks %v: %v", want, err)
		}
		if rest, ok := bytes.CutPrefix(b, []byte("43")); ok {
			if i := bytes.IndexByte(rest, '['); i > 0 {
				delete(want, string(rest[:i]))
			}
		}
	}
}

// Messages buffered above the socket (gorilla's read buffer, crypto/tls's
// record or its read-ahead) are handled at once, between Engine.IO pongs,
// WebSocket control frames and split frames.
func TestSIOIdleReaderBufferedInput(t *testing.T) {
	idleServers(t, time.Minute, func(t *testing.T, s *Server, hs *httptest.Server) {
		c := dialSIOIdle(t, hs)
		if hs.TLS != nil && c.tls == nil {
			t.Fatal("not over TLS")
		}
		write := func(b ...[]byte) {
			t.Helper()
			if _, err := c.wire.Write(bytes.Join(b, nil)); err != nil {
				t.Fatal(err)
			}
		}
		write(sioAsk(1), sioAsk(2))
		c.expectAcks(t, 1, 2)
		// An Engine.IO pong, a WebSocket pong, then a message.
		write(eioPong(), frame(websocket.PongMessage, nil), sioAsk(3))
		c.expectAcks(t, 3)
		// Split over two segments, the second late; then a message
		// split across pongs.
		p := sioAsk(4)
		write(p[:5])
		time.Sleep(50 * time.Millisecond)
		write(p[5:])
		c.expectAcks(t, 4)
		p = sioAsk(5)
		write(eioPong(), p[:1])
		time.Sleep(50 * time.Millisecond)
		write(p[1:], eioPong(), frame(websocket.PongMessage, []byte("b")), sioAsk(6))
		c.expectAcks(t, 5, 6)
		// Many pipelined, larger than gorilla's read buffer, with pongs
		// and a client's WebSocket ping between them.
		var many [][]byte
		var ids []int
		for i := 10; i < 40; i++ {
			many = append(many, sioAsk(i))
			ids = append(ids, i)
			if i%7 == 0 {
				many = append(many, eioPong())
			}
		}
		many = append(many, frame(websocket.PingMessage, []byte("x")))
		write(many...)
		c.expectAcks(t, ids...)
		// A message larger than gorilla's buffer, then a small one.
		big := frame(websocket.TextMessage, fmt.Appendf(nil, `4250["ice-servers","%s"]`, strings.Repeat("x", 3000)))
		write(big, sioAsk(51))
		c.expectAcks(t, 50, 51)
		if hs.TLS == nil {
			return
		}
		// Several records in one segment: only crypto/tls knows of the
		// later ones.
		c.tcp.mu.Lock()
		c.tcp.hold = true
		c.tcp.mu.Unlock()
		write(sioAsk(60))
		write(eioPong())
		write(sioAsk(61))
		if err := c.tcp.flush(); err != nil {
			t.Fatal(err)
		}
		c.expectAcks(t, 60, 61)
		c.tcp.mu.Lock()
		c.tcp.hold = true
		c.tcp.mu.Unlock()
		write(eioPong())
		write(sioAsk(62))
		if err := c.tcp.flush(); err != nil {
			t.Fatal(err)
		}
		c.expectAcks(t, 62)
	})
}

// A close that arrives with the last message (a WebSocket close frame,
// Engine.IO's close packet, or over TLS a close_notify) ends the session
// at once, not at the next ping.
func TestSIOIdleReaderBufferedClose(t *testing.T) {
	idleServers(t, time.Minute, func(t *testing.T, s *Server, hs *httptest.Server) {
		ends := []string{"close frame", "close packet"}
		if hs.TLS != nil {
			ends = append(ends, "close_notify")
		}
		for _, end := range ends {
			c := dialSIOIdle(t, hs)
			c.tcp.mu.Lock()
			c.tcp.hold = true
			c.tcp.mu.Unlock()
			if _, err := c.wire.Write(sioAsk(1)); err != nil {
				t.Fatal(err)
			}
			var err error
			switch end {
			case "close frame":
				_, err = c.wire.Write(frame(websocket.CloseMessage, []byte{0x03, 0xe8}))
			case "close packet":
				_, err = c.wire.Write(frame(websocket.TextMessage, []byte("1")))
			default:
				err = c.tls.CloseWrite()
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := c.tcp.flush(); err != nil {
				t.Fatal(err)
			}
			_ = c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
			for {
				_, _, err := c.ws.ReadMessage()
				if err == nil {
					continue
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("%s: the server did not end the session: %v", end, err)
				}
				break
			}
			if !waitUntil(3*time.Second, func() bool { return s.nconns.Load() == 0 }) {
				t.Fatalf("%s: %d connections still open", end, s.nconns.Load())
			}
		}
	})
}

// Engine.IO ping rounds leave an idle session's reader waiting on its
// socket: the pong "3" is read on a short-lived goroutine, clears the
// pong's deadline (sessions whose pong is due within the ping interval
// stay up), and the reader goes back to the wait; a client's WebSocket
// pings are answered with their payload. A client that stops answering
// is dropped at its pong's deadline, by the waiting reader.
func TestSIOIdleReaderPongs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the shallow wait is Linux-only; elsewhere the reader blocks in gorilla")
	}
	idleServers(t, 500*time.Millisecond, func(t *testing.T, s *Server, hs *httptest.Server) {
		const n = 5
		var wg sync.WaitGroup
		var clients []*idleClient
		answered := make([]chan struct{}, n)
		var stop [n]chan struct{}
		for i := range n {
			c := dialSIOIdle(t, hs)
			answered[i] = make(chan struct{}, 100)
			c.ws.SetPongHandler(func(p string) error {
				if p == fmt.Sprint("client ping ", i) {
					answered[i] <- struct{}{}
				}
				return nil
			})
			clients = append(clients, c)
			stop[i] = make(chan struct{})
			wg.Go(func() {
				for {
					_, b, err := c.ws.ReadMessage()
					if err != nil {
						return
					}
					if string(b) == "2" {
						select {
						case <-stop[i]:
							continue // stopped answering
						default:
						}
						_ = c.ws.WriteMessage(websocket.TextMessage, []byte("3"))
					}
				}
			})
		}
		for range 10 {
			for i, c := range clients {
				if i%2 == 1 {
					if err := c.ws.WriteControl(websocket.PingMessage, fmt.Appendf(nil, "client ping %d", i), time.Now().Add(time.Second)); err != nil {
						t.Fatal(err)
					}
				}
			}
			time.Sleep(300 * time.Millisecond)
		}
		if got := s.nconns.Load(); got != n {
			t.Fatalf("%d connections left of %d: pongs did not keep them", got, n)
		}
		for i := 1; i < n; i += 2 {
			if got := len(answered[i]); got != 10 && !waitUntil(3*time.Second, func() bool { return len(answered[i]) == 10 }) {
				t.Errorf("client %d: %d of its 10 pings answered", i, len(answered[i]))
			}
		}
		expectSIOIdle(t, s, n)
		// One client stops answering: its session ends at the pong's
		// deadline (the ping interval here), the others stay.
		close(stop[0])
		if !waitUntil(3*time.Second, func() bool { return s.nconns.Load() == n-1 }) {
			t.Fatalf("%d connections, want %d once one stopped answering", s.nconns.Load(), n-1)
		}
		for _, c := range clients {
			c.ws.Close()
		}
		wg.Wait()
	})
}

// Frames left to gorilla by the keepalive shortcut, over socket.io: a
// fragmented message with a WebSocket ping between its fragments, a ping
// split over three segments, an Engine.IO pong split likewise, and an
// unmasked frame (RFC 6455 §5.1: the server must close).
func TestSIOIdleReaderFrames(t *testing.T) {
	idleServers(t, time.Minute, func(t *testing.T, s *Server, hs *httptest.Server) {
		c := dialSIOIdle(t, hs)
		pongs := make(chan string, 8)
		c.ws.SetPongHandler(func(p string) error { pongs <- p; return nil })
		write := func(b ...[]byte) {
			t.Helper()
			for _, p := range b {
				if _, err := c.wire.Write(p); err != nil {
					t.Fatal(err)
				}
			}
		}
		wantPong := func(payload string) {
			t.Helper()
			write(sioAsk(99))
			c.expectAcks(t, 99)
			select {
			case p := <-pongs:
				if p != payload {
					t.Fatalf("pong %q, want %q", p, payload)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("no pong for the ping %q", payload)
			}
		}
		msg := []byte(`427["ice-servers"]`)
		write(append(append(rawFrame(0x01, msg[:5], false), rawFrame(0x89, []byte("mid"), false)...), rawFrame(0x80, msg[5:], false)...))
		c.expectAcks(t, 7)
		wantPong("mid")
		msg = []byte(`428["ice-servers"]`)
		for _, f := range [][]byte{rawFrame(0x01, msg[:3], false), rawFrame(0x89, []byte("mid2"), false), rawFrame(0x80, msg[3:], false)} {
			write(f)
			time.Sleep(30 * time.Millisecond)
		}
		c.expectAcks(t, 8)
		wantPong("mid2")
		p := rawFrame(0x89, []byte("split"), false)
		write(p[:1])
		time.Sleep(30 * time.Millisecond)
		write(p[1:6])
		time.Sleep(30 * time.Millisecond)
		write(p[6:])
		wantPong("split")
		p = eioPong()
		write(p[:1])
		time.Sleep(30 * time.Millisecond)
		write(p[1:])
		write(sioAsk(9))
		c.expectAcks(t, 9)
		write(rawFrame(0x89, []byte("bad"), true))
		_ = c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			if _, _, err := c.ws.ReadMessage(); err != nil {
				if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseProtocolError {
					t.Fatalf("after an unmasked frame: %v, want close 1002", err)
				}
				return
			}
		}
	})
}

// A session opened over polling and upgraded to WebSocket (engine.io's
// probe, then "5") takes the idle path once upgraded: its reader, which
// waited for POSTs in ReadFrame, waits on the socket, and messages and
// Engine.IO pongs on the WebSocket are handled as on one opened over it.
func TestSIOIdleReaderUpgraded(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the shallow wait is Linux-only; elsewhere the reader blocks in gorilla")
	}
	idleServers(t, 500*time.Millisecond, func(t *testing.T, s *Server, hs *httptest.Server) {
		hc := hs.Client()
		c := dialSIO(t, hs, hc, "polling", false)
		d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		ws, _, err := d.Dial(c.url("websocket"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		_ = ws.SetReadDeadline(time.Now().Add(3 * time.Second))
		if err := ws.WriteMessage(websocket.TextMessage, []byte("2probe")); err != nil {
			t.Fatal(err)
		}
		if _, b, err := ws.ReadMessage(); err != nil || string(b) != "3probe" {
			t.Fatalf("probe answered %q %v", b, err)
		}
		if err := ws.WriteMessage(websocket.TextMessage, []byte("5")); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Time{})
		acks := make(chan string, 16)
		done := make(chan struct{})
		var wmu sync.Mutex // the client's writes: the pongs and ask's
		go func() {
			defer close(done)
			for {
				_, b, err := ws.ReadMessage()
				if err != nil {
					return
				}
				switch {
				case string(b) == "2":
					wmu.Lock()
					_ = ws.WriteMessage(websocket.TextMessage, []byte("3"))
					wmu.Unlock()
				case bytes.HasPrefix(b, []byte("43")):
					acks <- string(b)
				}
			}
		}()
		ask := func(id int) {
			t.Helper()
			wmu.Lock()
			err := ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `42%d["ice-servers"]`, id))
			wmu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			select {
			case a := <-acks:
				if !strings.HasPrefix(a, fmt.Sprint("43", id, "[")) {
					t.Fatalf("ack %q, want id %d", a, id)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("no ack for %d", id)
			}
		}
		ask(1)
		// Ping rounds answered on the WebSocket keep the session (its
		// pong is due within the ping interval).
		time.Sleep(2 * time.Second)
		if got := s.nconns.Load(); got != 1 {
			t.Fatalf("%d connections, want 1", got)
		}
		ask(2)
		expectSIOIdle(t, s, 1)
		ws.Close()
		<-done
		if !waitUntil(3*time.Second, func() bool { return s.nconns.Load() == 0 }) {
			t.Fatalf("%d connections still open", s.nconns.Load())
		}
	})
}

// expectSIOIdle checks that n idle socket.io sessions are where they wait:
// in the server's waiter, with no goroutine reading any of them (or, with
// a reader goroutine each, s.noWaiter, each reader waiting on its socket),
// none in gorilla.
func expectSIOIdle(t *testing.T, s *Server, n int) {
	t.Helper()
	if s.noWaiter {
		ok := waitUntil(3*time.Second, func() bool {
			return goroutinesIn("signaling.(*idleConn).wait") == n && goroutinesIn("engineio.(*Session).readWS") == 0
		})
		if !ok {
			t.Errorf("%d readers waiting on the socket, %d in gorilla; want %d, 0",
				goroutinesIn("signaling.(*idleConn).wait"), goroutinesIn("engineio.(*Session).readWS"), n)
		}
		return
	}
	count := func() int {
		if p := s.poll.Load(); p != nil {
			return p.count()
		}
		return 0
	}
	ok := waitUntil(3*time.Second, func() bool {
		return goroutinesIn("signaling.(*poller).wait") == 1 && goroutinesIn("signaling.(*conn).readLoop") == 0 &&
			goroutinesIn("signaling.(*Server).serveSIOSession") == 0 &&
			goroutinesIn("engineio.(*Session).readWS") == 0 && count() == n
	})
	if !ok {
		t.Errorf("%d waiters, %d readers, %d session goroutines, %d in gorilla, %d registered; want 1, 0, 0, 0, %d",
			goroutinesIn("signaling.(*poller).wait"), goroutinesIn("signaling.(*conn).readLoop"),
			goroutinesIn("signaling.(*Server).serveSIOSession"), goroutinesIn("engineio.(*Session).readWS"),
			count(), n)
	}
}
