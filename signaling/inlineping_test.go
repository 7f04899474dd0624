//go:build linux

package signaling

import (
	"bytes"
	"io"
	"net"
	"net/http/httptest"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// serverConns returns s's connections.
func serverConns(s *Server) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*conn
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// Pings of plain connections go out from the timer loop itself, whole,
// and keep going out once an earlier write's deadline has passed (the
// socket keeps it; a send through RawConn.Write would fail on it): the
// clients see every ping round and stay connected.
func TestInlinePings(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("inline pings need a raw socket (Linux)")
	}
	const every = 100 * time.Millisecond
	lazyServers(t, every, func(t *testing.T, s *Server, hs *httptest.Server) {
		const n = 4
		for range n {
			answerPings(t, dialIdle(t, hs))
		}
		if !waitUntil(5*time.Second, func() bool { return s.nconns.Load() == n }) {
			t.Fatal("clients not connected")
		}
		// As the deadline of the hello's write does writeWait after it.
		for _, c := range serverConns(s) {
			_ = c.t.(*wsTransport).ws.NetConn().SetWriteDeadline(time.Now().Add(-time.Second))
		}
		start := s.pingsInline.Load()
		time.Sleep(10 * every)
		if got := s.nconns.Load(); got != n {
			t.Fatalf("%d connections of %d left after their write deadline passed", got, n)
		}
		if sent := s.pingsInline.Load() - start; sent < 5*n {
			t.Errorf("%d pings sent inline in 10 ping rounds of %d clients; want at least %d", sent, n, 5*n)
		}
		if f := s.pingsFinished.Load(); f != 0 {
			t.Errorf("%d pings finished on a goroutine; the clients read everything", f)
		}
	})
}

// A ping whose non-blocking send finds the socket buffer full sends
// nothing and says so; pingRest then blocks for it as a writer would, up
// to its deadline, and sends the frame whole (or its rest) once the
// client reads.
func TestInlinePingFullSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("inline pings need a raw socket (Linux)")
	}
	s := newTestServer(t, func(c *Config) { c.PingInterval = time.Hour })
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	cl := dialIdle(t, hs)
	var tr *wsTransport
	if !waitUntil(5*time.Second, func() bool {
		cs := serverConns(s)
		if len(cs) == 1 {
			tr, _ = cs[0].t.(*wsTransport)
		}
		return tr != nil
	}) {
		t.Fatal("no server connection")
	}
	if !tr.canPingInline() {
		t.Fatal("a plain connection cannot ping inline")
	}
	// The client reads nothing, so the server's socket fills. The
	// writer role is the test's: the server has nothing to send (pings
	// hourly). What goes in is bytes, not frames: this client never
	// reads them as WebSocket.
	_ = cl.tcp.Conn.(*net.TCPConn).SetReadBuffer(4096)
	_ = tr.nc.raw.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096) })
	_ = tr.ws.NetConn().SetWriteDeadline(time.Time{}) // the hello's would pass in writeWait
	fill := bytes.Repeat([]byte{'x'}, 1000)
	// Full: nothing goes in for 200 ms (ACKs of what the client's
	// buffer took free room for a while after the first refusal).
	var filled int
	var fullSince time.Time
	for filled < 64<<20 {
		n, err := tr.nc.sendNow(fill)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			if fullSince.IsZero() {
				fullSince = time.Now()
			}
			if time.Since(fullSince) > 200*time.Millisecond {
				break
			}
			time.Sleep(time.Millisecond)
			continue
		}
		fullSince = time.Time{}
		filled += n
	}
	sent, err := tr.pingInline()
	if err != nil || sent != 0 {
		t.Fatalf("pingInline on a full socket = %d, %v; want 0, nil", sent, err)
	}
	if err := tr.pingRest(0, time.Now().Add(50*time.Millisecond)); err == nil {
		t.Fatal("pingRest on a full socket the client does not read returned no error within its deadline")
	}
	// A fresh connection: the timed-out write above may have written
	// part of the frame. Here the send gets one byte out, the rest goes
	// through pingRest.
	cl2 := dialIdle(t, hs)
	var tr2 *wsTransport
	waitUntil(5*time.Second, func() bool {
		for _, c := range serverConns(s) {
			if w := c.t.(*wsTransport); w != tr {
				tr2 = w
			}
		}
		return tr2 != nil
	})
	if tr2 == nil {
		t.Fatal("no second server connection")
	}
	// While a reader writes a control frame (ctlWrite), the ping does
	// not go on the socket beside it: pingInline sends nothing and
	// leaves it to the blocking way.
	tr2.nc.ctl.Add(ctlWriter)
	if n, err := tr2.pingInline(); n != 0 || err != nil {
		t.Fatalf("pingInline beside a control write = %d, %v; want 0, nil", n, err)
	}
	tr2.nc.ctl.Add(-ctlWriter)
	// A ping cut short keeps control writes off until its rest is out.
	tr2.nc.ctl.Store(ctlPinging)
	ctlDone := make(chan struct{})
	go tr2.nc.ctlWrite(func() { close(ctlDone) })
	if n, err := tr2.nc.sendNow(pingFrame[:1]); n != 1 || err != nil {
		t.Fatalf("sendNow of one byte = %d, %v", n, err)
	}
	select {
	case <-ctlDone:
		t.Fatal("a control write went ahead of the rest of a ping")
	case <-time.After(50 * time.Millisecond):
	}
	if err := tr2.pingRest(1, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctlDone:
	case <-time.After(2 * time.Second):
		t.Fatal("the control write did not go once the ping's rest was out")
	}
	got := make([]byte, 2)
	_ = cl2.tcp.Conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(cl2.tcp.Conn, got); err != nil || !bytes.Equal(got, pingFrame[:]) {
		t.Fatalf("client read %x, %v; want the ping frame %x", got, err, pingFrame[:])
	}
}
