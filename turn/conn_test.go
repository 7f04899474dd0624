package turn

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	pionstun "github.com/pion/stun/v4"

	"icegate/internal/ratelog"
	"icegate/internal/testutil"
)

// msgConn speaks STUN by hand over a TCP, TLS or DTLS connection: on a
// stream it reads a header and then the body, on DTLS one record.
type msgConn struct {
	t        *testing.T
	conn     net.Conn
	datagram bool
	nonce    pionstun.Nonce
}

func (c *msgConn) do(setters ...pionstun.Setter) *pionstun.Message {
	c.t.Helper()
	m := pionstun.MustBuild(append([]pionstun.Setter{pionstun.TransactionID}, setters...)...)
	if _, err := c.conn.Write(m.Raw); err != nil {
		c.t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.conn.SetReadDeadline(time.Time{})
	var raw []byte
	if c.datagram {
		b := make([]byte, 2048)
		n, err := c.conn.Read(b)
		if err != nil {
			c.t.Fatalf("reading the answer to %v: %v", m.Type, err)
		}
		raw = b[:n]
	} else {
		hdr := make([]byte, 20)
		if _, err := io.ReadFull(c.conn, hdr); err != nil {
			c.t.Fatalf("reading the answer to %v: %v", m.Type, err)
		}
		body := make([]byte, binary.BigEndian.Uint16(hdr[2:]))
		if _, err := io.ReadFull(c.conn, body); err != nil {
			c.t.Fatal(err)
		}
		raw = append(hdr, body...)
	}
	resp := &pionstun.Message{Raw: raw}
	if err := resp.Decode(); err != nil {
		c.t.Fatal(err)
	}
	return resp
}

// allocate makes an allocation with long-term credentials and no refresh:
// it lives for limits.default_lifetime.
func (c *msgConn) allocate() {
	c.t.Helper()
	resp := c.do(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP())
	if err := c.nonce.GetFrom(resp); err != nil {
		c.t.Fatalf("no challenge: %v", err)
	}
	key := pionstun.NewLongTermIntegrity(testUser, testRealm, testPass)
	resp = c.do(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP(),
		pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm), c.nonce, key, pionstun.Fingerprint)
	if code := errorCode(resp); code != 0 {
		c.t.Fatalf("Allocate: error %d", code)
	}
}

// dialSilent connects to the listener of transport; for DTLS over a UDP
// socket the test owns, so that closing that socket makes the client vanish
// without a close_notify, as coturn's uclient -S does.
func dialSilent(t *testing.T, srv *testServer, transport string) (c *msgConn, vanish func()) {
	t.Helper()
	server := srv.addr(t, transport, "4")
	switch transport {
	case "tcp":
		conn, err := net.Dial("tcp", server.String())
		if err != nil {
			t.Fatal(err)
		}
		return &msgConn{t: t, conn: conn}, func() { _ = conn.Close() }
	case "tls":
		conn, err := tlsDial(server.String())
		if err != nil {
			t.Fatal(err)
		}
		return &msgConn{t: t, conn: conn}, func() { _ = conn.Close() }
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dtls.Client(pc, server, &dtls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test server
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.HandshakeContext(withTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Closing the UDP socket first: the dtls.Conn's close_notify goes nowhere.
	return &msgConn{t: t, conn: conn, datagram: true}, func() { _ = pc.Close(); _ = conn.Close() }
}

// waitFor polls cond for up to limit.
func waitFor(limit time.Duration, cond func() bool) bool {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestAllocationEndStartsIdleClock: a client that allocates and then falls
// silent (DTLS without close_notify, TCP or TLS without a FIN) loses its
// connection the idle timeout after its allocation expires, and the
// server's goroutines for it (icegate's and pion's) are gone too. Before,
// the read in progress had no deadline and nothing woke it. The connection
// is counted as an idle timeout.
func TestAllocationEndStartsIdleClock(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Limits.DefaultLifetime = 2 * time.Second })
	srv.gate.idle.Store(int64(time.Second))
	for _, transport := range []string{"dtls", "tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			open := srv.metrics.Connections.WithLabelValues(transport)
			idle := srv.metrics.ConnectionTimeouts.WithLabelValues("idle")
			if !waitFor(5*time.Second, func() bool { return gaugeValue(t, open) == 0 }) {
				t.Fatal("connections of an earlier subtest still open")
			}
			time.Sleep(100 * time.Millisecond)
			before := runtime.NumGoroutine()
			idleBefore := counterValue(t, idle)

			c, vanish := dialSilent(t, srv, transport)
			c.allocate()
			allocated := time.Now()
			if transport == "dtls" {
				vanish() // gone without a word; the server cannot tell
			} else {
				defer vanish() // open and silent: the server sees what a FIN-less loss looks like
			}
			if !waitFor(10*time.Second, func() bool { return gaugeValue(t, open) == 0 }) {
				t.Fatalf("%s connection still open %v after its allocation (lifetime 2 s, idle 1 s)", transport, time.Since(allocated))
			}
			if took := time.Since(allocated); took < 2900*time.Millisecond {
				t.Fatalf("closed %v after the Allocate, before lifetime + idle timeout (3 s)", took)
			}
			if got := counterValue(t, idle); got != idleBefore+1 {
				t.Fatalf("idle timeouts %v, want %v", got, idleBefore+1)
			}
			if transport != "dtls" {
				vanish()
			}
			if !waitFor(5*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
				buf := make([]byte, 1<<20)
				t.Fatalf("goroutines %d, %d before the client came:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}

// TestAllocationEndKeepsActiveClient: a client that sends after its
// allocation ended is not idle until the idle timeout after that message.
func TestAllocationEndKeepsActiveClient(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Limits.DefaultLifetime = 2 * time.Second })
	srv.gate.idle.Store(int64(1500 * time.Millisecond))
	c, vanish := dialSilent(t, srv, "tcp")
	defer vanish()
	c.allocate()
	binding := pionstun.BindingRequest
	for range 8 { // 4 s: past the lifetime and twice past the idle timeout
		time.Sleep(500 * time.Millisecond)
		if code := errorCode(c.do(binding)); code != 0 {
			t.Fatalf("Binding: %d", code)
		}
	}
}

// TestIdleTimeoutCounted: a connection that never sends a message is closed
// by the idle timeout and counted as such on TCP, TLS and DTLS alike
// (pion/dtls reports its deadline with its own net.Error).
func TestIdleTimeoutCounted(t *testing.T) {
	srv := startServer(t, nil)
	srv.gate.idle.Store(int64(500 * time.Millisecond))
	idle := srv.metrics.ConnectionTimeouts.WithLabelValues("idle")
	for _, transport := range []string{"tcp", "tls", "dtls"} {
		t.Run(transport, func(t *testing.T) {
			before := counterValue(t, idle)
			open := srv.metrics.Connections.WithLabelValues(transport)
			_, vanish := dialSilent(t, srv, transport)
			defer vanish()
			if !waitFor(200*time.Millisecond, func() bool { return gaugeValue(t, open) == 1 }) {
				t.Fatal("connection not counted open")
			}
			if !waitFor(5*time.Second, func() bool { return gaugeValue(t, open) == 0 }) {
				t.Fatal("idle connection not closed")
			}
			if got := counterValue(t, idle); got != before+1 {
				t.Fatalf("idle timeouts %v, want %v", got, before+1)
			}
		})
	}
}

// TestDTLSHandshakeFailureCounted: a datagram that reaches the DTLS
// listener as a handshake record but is no ClientHello is dropped and
// counted, like a failed TLS handshake.
func TestDTLSHandshakeFailureCounted(t *testing.T) {
	srv := startServer(t, nil)
	srv.streams.handshake.Store(int64(500 * time.Millisecond))
	dropped := srv.metrics.Dropped.WithLabelValues("dtls_handshake")
	before := counterValue(t, dropped)
	c, err := net.Dial("udp", srv.addr(t, "dtls", "4").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A DTLS 1.2 record header (handshake, epoch 0, sequence 0, 16 bytes)
	// and 16 bytes of garbage.
	rec := append([]byte{0x16, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16}, []byte("not a ClientHello")[:16]...)
	if _, err := c.Write(rec); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return counterValue(t, dropped) == before+1 }) {
		t.Fatalf("dtls_handshake drops %v, want %v", counterValue(t, dropped), before+1)
	}
	if got := gaugeValue(t, srv.metrics.Connections.WithLabelValues("dtls")); got != 0 {
		t.Fatalf("dtls connections %v after the failed handshake", got)
	}
}

// TestOversizedChannelDataKeepsStream: ChannelData of length 0xFFFC-0xFFFF
// (allowed by RFC 8656 §12; padded it is 65,536 bytes and more) and a STUN
// header announcing 0xFFEC bytes are frames pion v5.1.2's STUNConn sizes
// wrongly (16-bit overflow): each is dropped and counted as too_large, the
// connection stays, and the next message is answered.
func TestOversizedChannelDataKeepsStream(t *testing.T) {
	srv := startServer(t, nil)
	tooLarge := srv.metrics.Dropped.WithLabelValues("too_large")
	before := counterValue(t, tooLarge)
	c, vanish := dialSilent(t, srv, "tcp")
	defer vanish()
	frames := [][]byte{}
	for _, l := range []int{0xFFFC, 0xFFFD, 0xFFFF} {
		f := make([]byte, 4+(l+3)&^3)
		binary.BigEndian.PutUint16(f, 0x4000)
		binary.BigEndian.PutUint16(f[2:], uint16(l))
		frames = append(frames, f)
	}
	stun := make([]byte, 20+0xFFEC)
	binary.BigEndian.PutUint16(stun, 0x0001)
	binary.BigEndian.PutUint16(stun[2:], 0xFFEC)
	binary.BigEndian.PutUint32(stun[4:], 0x2112A442)
	frames = append(frames, stun)
	for i, f := range frames {
		if _, err := c.conn.Write(f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if code := errorCode(c.do(pionstun.BindingRequest)); code != 0 {
			t.Fatalf("Binding after oversized frame %d: error %d", i, code)
		}
	}
	if got := counterValue(t, tooLarge); got != before+float64(len(frames)) {
		t.Fatalf("too_large drops %v, want %v", got, before+float64(len(frames)))
	}
}

// TestStreamConnectionGauge: every way a TCP connection ends gives back
// icegate_connections{transport="tcp"}: the client closing, the idle and
// incomplete-frame timeouts, a refusal over limits.connections_per_source,
// an RFC 6062 data connection closed by its client or ended with its peer,
// and a malformed stream.
func TestStreamConnectionGauge(t *testing.T) {
	srv := startServer(t, func(c *Config) {
		c.Relay.TCP = true
		c.Limits.ConnectionsPerSource = 3
	})
	srv.gate.idle.Store(int64(500 * time.Millisecond))
	srv.streams.frame.Store(int64(500 * time.Millisecond))
	open := srv.metrics.Connections.WithLabelValues("tcp")
	server := srv.addr(t, "tcp", "4")
	settle := func(t *testing.T, what string) {
		t.Helper()
		if !waitFor(5*time.Second, func() bool { return gaugeValue(t, open) == 0 }) {
			t.Fatalf("%s: tcp connections gauge %v, want 0", what, gaugeValue(t, open))
		}
	}
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", server.String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Run("client closes", func(t *testing.T) {
		c := dial(t)
		mc := &msgConn{t: t, conn: c}
		mc.do(pionstun.BindingRequest)
		_ = c.Close()
		settle(t, "closed by client")
	})
	t.Run("idle and half a frame", func(t *testing.T) {
		a, b := dial(t), dial(t)
		defer a.Close()
		defer b.Close()
		_, _ = b.Write([]byte{0x00, 0x01})
		settle(t, "timeouts")
	})
	t.Run("malformed", func(t *testing.T) {
		c := dial(t)
		defer c.Close()
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		settle(t, "malformed stream")
	})
	t.Run("refused per source", func(t *testing.T) {
		var cs []net.Conn
		for range 5 {
			cs = append(cs, dial(t))
		}
		time.Sleep(200 * time.Millisecond)
		if got := gaugeValue(t, open); got > 3 {
			t.Fatalf("%v open, over the per-source cap 3", got)
		}
		for _, c := range cs {
			_ = c.Close()
		}
		settle(t, "refused")
	})
	t.Run("RFC 6062 data connection", func(t *testing.T) {
		srv.gate.idle.Store(int64(time.Minute))
		defer srv.gate.idle.Store(int64(500 * time.Millisecond))
		for _, end := range []string{"client", "peer"} {
			echo, stop := tcpPeer(t)
			control := &msgConn{t: t, conn: dial(t)}
			tcpTransport := rawAttr{pionstun.AttrRequestedTransport, []byte{6, 0, 0, 0}}
			resp := control.do(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), tcpTransport)
			if err := control.nonce.GetFrom(resp); err != nil {
				t.Fatal(err)
			}
			key := pionstun.NewLongTermIntegrity(testUser, testRealm, testPass)
			authed := func(c *msgConn, method pionstun.Method, attrs ...pionstun.Setter) *pionstun.Message {
				all := append([]pionstun.Setter{pionstun.NewType(method, pionstun.ClassRequest)}, attrs...)
				all = append(all, pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm), control.nonce, key, pionstun.Fingerprint)
				resp := c.do(all...)
				if code := errorCode(resp); code != 0 {
					t.Fatalf("%v: error %d", method, code)
				}
				return resp
			}
			authed(control, pionstun.MethodAllocate, tcpTransport)
			resp = authed(control, pionstun.MethodConnect, peer("127.0.0.1", echo.Port))
			cid, err := resp.Get(pionstun.AttrConnectionID)
			if err != nil {
				t.Fatal(err)
			}
			data := &msgConn{t: t, conn: dial(t)}
			authed(data, pionstun.MethodConnectionBind, rawAttr{pionstun.AttrConnectionID, cid})
			if _, err := data.conn.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4)
			if _, err := io.ReadFull(data.conn, got); err != nil {
				t.Fatal(err)
			}
			if end == "client" {
				_ = data.conn.Close()
			} else {
				stop()
			}
			if !waitFor(5*time.Second, func() bool { return gaugeValue(t, open) == 1 }) {
				t.Fatalf("data connection ended by the %s: gauge %v, want 1 (the control connection)", end, gaugeValue(t, open))
			}
			_ = control.conn.Close()
			_ = data.conn.Close()
			stop()
			settle(t, "RFC 6062 ended by the "+end)
		}
	})
}

// tcpPeer is a TCP echo peer whose connections stop closes.
func tcpPeer(t *testing.T) (*net.TCPAddr, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	stop := func() {
		_ = ln.Close()
		for {
			select {
			case c := <-conns:
				_ = c.Close()
			default:
				return
			}
		}
	}
	t.Cleanup(stop)
	return ln.Addr().(*net.TCPAddr), stop
}

// TestPionClientNoise: what pion says at warn or error level about a
// client's own doing (a ChannelBind conflict it was answered 400 for, a TLS
// client that hung up before the close_notify) is shown at debug level;
// what points at the server stays a warning.
func TestPionClientNoise(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	l := pionLoggerFactory{log: log, limited: ratelog.New(log)}.NewLogger("turn")
	l.Warnf("ChannelBind rejected: peer %s already bound to channel %d, attempted %d", "127.0.0.1:5000", 0x4000, 0x4001)
	l.Errorf("Failed to close conn: %s", "tls: failed to send closeNotify alert (but connection was closed anyway): write tcp 127.0.0.1:5349->127.0.0.1:40000: write: broken pipe")
	l.Errorf("%v-%v with unknown comprehension-required attributes from %v: %v", "Allocate", "request", "127.0.0.1:5000", "[0x7fff]")
	if s := logs.String(); s != "" {
		t.Fatalf("client-caused lines shown at info level:\n%s", s)
	}
	l.Errorf("Failed to close conn: %s", "close tcp: bad file descriptor")
	l.Errorf("Failed to send ChannelData from allocation %v %v", "127.0.0.1:5000", "sendto: no buffer space available")
	if s := logs.String(); strings.Count(s, "level=WARN") != 2 {
		t.Fatalf("server-side problems not shown as warnings:\n%s", s)
	}

	logs = &testutil.SyncBuffer{}
	log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l = pionLoggerFactory{log: log, limited: ratelog.New(log)}.NewLogger("turn")
	l.Warnf("ChannelBind rejected: channel %d already bound to peer %s, attempted peer %s", 0x4000, "a", "b")
	if s := logs.String(); !strings.Contains(s, "level=DEBUG") || !strings.Contains(s, "ChannelBind rejected") {
		t.Fatalf("client-caused line not shown at debug level:\n%s", s)
	}
}
