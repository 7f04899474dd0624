package signaling

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The idle reader's cases, one list over both protocols whose connections
// wait for input the same way (idleconn.go, watch.go): /ws, and socket.io
// over an Engine.IO WebSocket (sioTransport.readIdle). Each runs in every
// mode of idleServers.

// idleProto is one protocol the cases run over.
type idleProto struct {
	name string
	// dial connects to hs (over TLS if hs is a TLS server), ready for
	// messages.
	dial func(t *testing.T, hs *httptest.Server) *idleClient
	// text is a message the server answers, carrying id and, if not
	// empty, pad.
	text func(id int, pad string) []byte
	// expect reads until each of ids has been answered, far within the
	// read timeout and the ping interval: a message left buffered above
	// the socket would wait for either.
	expect func(c *idleClient, t *testing.T, ids ...int)
	// keepalive is an idle client's answer to the server's keepalive: a
	// WebSocket pong (/ws, RFC 6455 §5.5.3), Engine.IO's pong packet
	// (socket.io).
	keepalive []byte
	// closes are the ways the client may end the connection in its last
	// segment besides a close frame (and over TLS a close_notify).
	closes map[string][]byte
	// answer has c answer the server's keepalives (writing under wmu)
	// as its reader reads, until stop closes; b is each message read.
	answer func(c *idleClient, wmu *sync.Mutex, stop <-chan struct{}) func(b []byte)
	// deep is the function a goroutine reading the connection's next
	// frame in gorilla blocks in (none should, while it waits).
	deep string
}

var idleProtos = []idleProto{
	{
		name: "ws",
		dial: dialIdle,
		text: func(id int, pad string) []byte {
			if pad != "" {
				return fmt.Appendf(nil, `{"type":"ping","id":"%d","pad":"%s"}`, id, pad)
			}
			return fmt.Appendf(nil, `{"type":"ping","id":"%d"}`, id)
		},
		expect:    (*idleClient).expectPongs,
		keepalive: frame(websocket.PongMessage, nil),
		answer: func(c *idleClient, wmu *sync.Mutex, stop <-chan struct{}) func([]byte) {
			// As gorilla's default ping handler, while not stopped.
			c.ws.SetPingHandler(func(p string) error {
				select {
				case <-stop:
					return nil
				default:
				}
				wmu.Lock()
				defer wmu.Unlock()
				return c.ws.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(time.Second))
			})
			return func([]byte) {}
		},
		deep: "signaling.(*wsTransport).ReadFrame",
	},
	{
		name: "sio",
		dial: dialSIOIdle,
		text: func(id int, pad string) []byte {
			if pad != "" {
				return fmt.Appendf(nil, `42%d["ice-servers","%s"]`, id, pad)
			}
			return fmt.Appendf(nil, `42%d["ice-servers"]`, id)
		},
		expect:    (*idleClient).expectAcks,
		keepalive: eioPong(),
		closes:    map[string][]byte{"close packet": frame(websocket.TextMessage, []byte("1"))},
		answer: func(c *idleClient, wmu *sync.Mutex, stop <-chan struct{}) func([]byte) {
			return func(b []byte) {
				select {
				case <-stop:
					return
				default:
				}
				if string(b) == "2" {
					wmu.Lock()
					defer wmu.Unlock()
					_ = c.ws.WriteMessage(websocket.TextMessage, []byte("3"))
				}
			}
		},
		deep: "engineio.(*Session).readWS",
	},
}

// ask is p's message with id, as a client's text frame.
func (p *idleProto) ask(id int) []byte { return frame(websocket.TextMessage, p.text(id, "")) }

// idleProtoServers runs f over each protocol in each mode of idleServers.
func idleProtoServers(t *testing.T, pingEvery time.Duration, f func(t *testing.T, p *idleProto, s *Server, hs *httptest.Server)) {
	for i := range idleProtos {
		p := &idleProtos[i]
		t.Run(p.name, func(t *testing.T) {
			idleServers(t, pingEvery, func(t *testing.T, s *Server, hs *httptest.Server) { f(t, p, s, hs) })
		})
	}
}

// Messages buffered above the socket (in gorilla's read buffer, in
// crypto/tls's decrypted record or its read-ahead) are handled at once,
// not when the next packet arrives: the connection waits on the socket
// only when nothing is buffered (idleconn.go). Each step writes what it
// writes in one TCP segment unless it says otherwise, between keepalives,
// WebSocket control frames and split frames.
func TestIdleReaderBufferedInput(t *testing.T) {
	idleProtoServers(t, time.Minute, func(t *testing.T, pr *idleProto, s *Server, hs *httptest.Server) {
		c := pr.dial(t, hs)
		if hs.TLS != nil && c.tls == nil {
			t.Fatal("not over TLS")
		}
		write := func(b ...[]byte) {
			t.Helper()
			if _, err := c.wire.Write(bytes.Join(b, nil)); err != nil {
				t.Fatal(err)
			}
		}
		// Two messages in one segment (and, over TLS, one record).
		write(pr.ask(1), pr.ask(2))
		pr.expect(c, t, 1, 2)
		// A keepalive, a WebSocket pong, then a message.
		write(pr.keepalive, frame(websocket.PongMessage, nil), pr.ask(3))
		pr.expect(c, t, 3)
		// A message split over two segments (two records), the second
		// late; then a message split across keepalives.
		p := pr.ask(4)
		write(p[:5])
		time.Sleep(50 * time.Millisecond)
		write(p[5:])
		pr.expect(c, t, 4)
		p = pr.ask(5)
		write(pr.keepalive, frame(websocket.PongMessage, []byte("a")), p[:1])
		time.Sleep(50 * time.Millisecond)
		write(p[1:], pr.keepalive, frame(websocket.PongMessage, []byte("b")), pr.ask(6))
		pr.expect(c, t, 5, 6)
		// Many pipelined, with keepalives and a client's ping between
		// them; larger than gorilla's read buffer.
		var many [][]byte
		var ids []int
		for i := 10; i < 40; i++ {
			many = append(many, pr.ask(i))
			ids = append(ids, i)
			if i%7 == 0 {
				many = append(many, pr.keepalive)
			}
		}
		many = append(many, frame(websocket.PingMessage, []byte("x")))
		write(many...)
		pr.expect(c, t, ids...)
		// A message larger than gorilla's buffer, then a small one.
		write(frame(websocket.TextMessage, pr.text(50, strings.Repeat("x", 3000))), pr.ask(51))
		pr.expect(c, t, 50, 51)
		if hs.TLS == nil {
			return
		}
		// Several records in one segment: crypto/tls reads them all
		// ahead while decrypting the first (readFromUntil), so only its
		// buffers know of the later ones.
		held := func(frames ...[]byte) {
			t.Helper()
			c.tcp.mu.Lock()
			c.tcp.hold = true
			c.tcp.mu.Unlock()
			for _, f := range frames {
				write(f)
			}
			if err := c.tcp.flush(); err != nil {
				t.Fatal(err)
			}
		}
		held(pr.ask(60), pr.keepalive, pr.ask(61))
		pr.expect(c, t, 60, 61)
		held(pr.keepalive, pr.ask(62))
		pr.expect(c, t, 62)
	})
}

// A close that arrives with the last message (a close frame, the
// protocol's own close, or over TLS a close_notify) is seen at once: the
// server ends the connection without waiting for its read timeout (a
// minute here).
func TestIdleReaderBufferedClose(t *testing.T) {
	idleProtoServers(t, time.Minute, func(t *testing.T, pr *idleProto, s *Server, hs *httptest.Server) {
		ends := map[string][]byte{"close frame": frame(websocket.CloseMessage, []byte{0x03, 0xe8})}
		for name, f := range pr.closes {
			ends[name] = f
		}
		if hs.TLS != nil {
			ends["close_notify"] = nil
		}
		for end, f := range ends {
			c := pr.dial(t, hs)
			c.tcp.mu.Lock()
			c.tcp.hold = true
			c.tcp.mu.Unlock()
			if _, err := c.wire.Write(pr.ask(1)); err != nil {
				t.Fatal(err)
			}
			var err error
			if f != nil {
				_, err = c.wire.Write(f)
			} else {
				err = c.tls.CloseWrite()
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := c.tcp.flush(); err != nil {
				t.Fatal(err)
			}
			// The connection ends: the client reads the server's close
			// frame, or the end of the stream, well within the minute.
			_ = c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
			for {
				_, _, err := c.ws.ReadMessage()
				if err == nil {
					continue
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("%s: the server did not end the connection: %v", end, err)
				}
				break
			}
			if !waitUntil(3*time.Second, func() bool { return s.nconns.Load() == 0 }) {
				t.Fatalf("%s: %d connections still open", end, s.nconns.Load())
			}
		}
	})
}

// Frames the keepalive shortcut (skipControl) must leave to gorilla or
// read whole: a fragmented message with a ping between its fragments (RFC
// 6455 §5.4: control frames may be injected), in one segment and in three;
// a ping split over three segments; a keepalive split over two; and an
// unmasked ping (§5.1: the server must close the connection).
func TestIdleReaderFrames(t *testing.T) {
	idleProtoServers(t, time.Minute, func(t *testing.T, pr *idleProto, s *Server, hs *httptest.Server) {
		c := pr.dial(t, hs)
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
			// The client's reader sees the pong while it reads the next
			// answer: ask for one.
			write(pr.ask(99))
			pr.expect(c, t, 99)
			select {
			case p := <-pongs:
				if p != payload {
					t.Fatalf("pong %q, want %q", p, payload)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("no pong for the ping %q", payload)
			}
		}
		msg := pr.text(7, "")
		write(append(append(rawFrame(0x01, msg[:5], false), rawFrame(0x89, []byte("mid"), false)...), rawFrame(0x80, msg[5:], false)...))
		pr.expect(c, t, 7)
		wantPong("mid")
		msg = pr.text(8, "")
		for _, f := range [][]byte{rawFrame(0x01, msg[:3], false), rawFrame(0x89, []byte("mid2"), false), rawFrame(0x80, msg[3:], false)} {
			write(f)
			time.Sleep(30 * time.Millisecond)
		}
		pr.expect(c, t, 8)
		wantPong("mid2")
		p := rawFrame(0x89, []byte("split"), false)
		write(p[:1])
		time.Sleep(30 * time.Millisecond)
		write(p[1:6])
		time.Sleep(30 * time.Millisecond)
		write(p[6:])
		wantPong("split")
		write(pr.keepalive[:1])
		time.Sleep(30 * time.Millisecond)
		write(pr.keepalive[1:], pr.ask(9))
		pr.expect(c, t, 9)
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

// rawFrame is a client frame with the first byte given whole (FIN, RSV
// and opcode), masked unless unmasked is set.
func rawFrame(b0 byte, payload []byte, unmasked bool) []byte {
	if len(payload) > 125 {
		panic("short frames only")
	}
	if unmasked {
		return append([]byte{b0, byte(len(payload))}, payload...)
	}
	f := frame(0, payload)
	f[0] = b0
	return f
}

// Keepalive rounds leave an idle connection where it waits (the waiter,
// or its reader on the socket), not in gorilla: the client's answer is
// taken below gorilla (skipControl, or by the waiter or the pinger
// itself over plain TCP) and keeps the connection up through ten rounds;
// a client's own pings are answered with their payload. A client that
// stops answering is dropped (at its read timeout, or for socket.io at
// its pong's deadline), the others stay.
func TestIdleReaderPongs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the shallow wait is Linux-only; elsewhere the reader blocks in gorilla")
	}
	idleProtoServers(t, 500*time.Millisecond, func(t *testing.T, pr *idleProto, s *Server, hs *httptest.Server) {
		const n = 5
		var wg sync.WaitGroup
		var clients []*idleClient
		var answered [n]atomic.Int32
		var stop [n]chan struct{}
		var wmu [n]sync.Mutex // each client's writes: its answers and its pings
		for i := range n {
			c := pr.dial(t, hs)
			c.ws.SetPongHandler(func(p string) error {
				if p == fmt.Sprint("client ping ", i) {
					answered[i].Add(1)
				}
				return nil
			})
			clients = append(clients, c)
			// An authenticated idle client: asked once, then quiet.
			if _, err := c.wire.Write(pr.ask(1)); err != nil {
				t.Fatal(err)
			}
			pr.expect(c, t, 1)
			stop[i] = make(chan struct{})
			onMessage := pr.answer(c, &wmu[i], stop[i])
			wg.Go(func() {
				for {
					_, b, err := c.ws.ReadMessage()
					if err != nil {
						return
					}
					onMessage(b)
				}
			})
		}
		// Ten rounds of 300 ms; without an answer a connection ends
		// after about 1 s (the ping interval and as much again). Odd
		// clients ping too.
		for range 10 {
			for i, c := range clients {
				if i%2 == 1 {
					wmu[i].Lock()
					err := c.ws.WriteControl(websocket.PingMessage, fmt.Appendf(nil, "client ping %d", i), time.Now().Add(time.Second))
					wmu[i].Unlock()
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			time.Sleep(300 * time.Millisecond)
		}
		if got := s.nconns.Load(); got != n {
			t.Fatalf("%d connections left of %d: answers did not keep them", got, n)
		}
		for i := 1; i < n; i += 2 {
			if !waitUntil(3*time.Second, func() bool { return answered[i].Load() == 10 }) {
				t.Errorf("client %d: %d of its 10 pings answered", i, answered[i].Load())
			}
		}
		if s.noWaiter {
			ok := waitUntil(3*time.Second, func() bool {
				return goroutinesIn("signaling.(*idleConn).wait") == n && goroutinesIn(pr.deep) == 0
			})
			if !ok {
				t.Errorf("%d readers waiting on the socket, %d in gorilla; want %d, 0",
					goroutinesIn("signaling.(*idleConn).wait"), goroutinesIn(pr.deep), n)
			}
		} else {
			// In the waiter: no goroutine reads any of them, and all
			// are registered.
			ok := waitUntil(3*time.Second, func() bool {
				return goroutinesIn("signaling.(*poller).wait") == 1 && goroutinesIn("signaling.(*conn).readLoop") == 0 &&
					goroutinesIn(pr.deep) == 0 && s.poll.Load().count() == n
			})
			if !ok {
				t.Errorf("%d waiters, %d readers, %d in gorilla, %d registered; want 1, 0, 0, %d",
					goroutinesIn("signaling.(*poller).wait"), goroutinesIn("signaling.(*conn).readLoop"),
					goroutinesIn(pr.deep), s.poll.Load().count(), n)
			}
			// Over plain TCP the answers were taken off the socket by
			// the pinger (lazy pongs, /ws) or the waiter itself
			// (skimPongs); over TLS they cannot be.
			p := s.poll.Load()
			if took := p.skimmed.Load() + p.taken.Load(); (hs.TLS == nil) != (took > 0) {
				t.Errorf("%d answers taken by the pinger or the waiter (TLS: %v)", took, hs.TLS != nil)
			}
		}
		// One client stops answering: it is dropped, the others stay.
		close(stop[0])
		if !waitUntil(4*time.Second, func() bool { return s.nconns.Load() == n-1 }) {
			t.Fatalf("%d connections, want %d once one stopped answering", s.nconns.Load(), n-1)
		}
		for _, c := range clients {
			c.ws.Close()
		}
		wg.Wait()
	})
}
