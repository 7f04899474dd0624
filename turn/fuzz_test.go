package turn

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"

	"icegate/internal/udploop"
)

// FuzzGate feeds arbitrary datagrams to the gate: it must never panic, and
// what it passes on to pion is either the input or a well-formed STUN message.
func FuzzGate(f *testing.F) {
	srv := startServerIO(f, nil, true) // the gate is the same on both I/O paths
	seed := func(setters ...pionstun.Setter) {
		m, err := pionstun.Build(append([]pionstun.Setter{pionstun.TransactionID}, setters...)...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.Raw)
	}
	seed(pionstun.BindingRequest)
	seed(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP())
	seed(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP(),
		pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm), pionstun.NewNonce("x"),
		lifetime(99999), pionstun.NewLongTermIntegrity(testUser, testRealm, testPass))
	seed(pionstun.NewType(pionstun.MethodCreatePermission, pionstun.ClassRequest), peer("::ffff:127.0.0.1", 1),
		pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm), pionstun.NewNonce("x"),
		pionstun.NewLongTermIntegrity(testUser, testRealm, testPass))
	auth := func(setters ...pionstun.Setter) []pionstun.Setter {
		return append(setters, pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm), pionstun.NewNonce("x"),
			pionstun.NewLongTermIntegrity(testUser, testRealm, testPass), pionstun.Fingerprint)
	}
	seed(auth(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP(), evenPort(true))...)
	seed(auth(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP(), tokenAttr([]byte("12345678")))...)
	seed(auth(pionstun.NewType(pionstun.MethodChannelBind, pionstun.ClassRequest), peer("127.0.0.1", 9),
		rawAttr{pionstun.AttrChannelNumber, []byte{0x40, 0, 0, 0}})...)
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4})
	f.Add([]byte{0x00, 0x16, 0x00, 0x00})
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 5000}
	local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, pass := srv.gate.inspect(inbound{data: b, src: src, local: local, transport: "udp", reply: func([]byte) {}})
		if pass && !bytes.Equal(out, b) {
			m := &pionstun.Message{Raw: out}
			if err := m.Decode(); err != nil {
				t.Fatalf("gate passed on a rewritten message that does not decode: %v", err)
			}
		}
	})
}

// chunkConn serves a fixed byte stream in small reads.
type chunkConn struct {
	net.Conn
	r *bytes.Reader
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(p) > 7 {
		p = p[:7]
	}
	return c.r.Read(p)
}
func (c *chunkConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *chunkConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 5000}
}
func (c *chunkConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478} }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }
func (c *chunkConn) Close() error                     { return nil }

// FuzzStreamFraming: whatever arrives on a TCP connection, the framer
// returns whole frames or ends the connection; it never panics or hangs.
func FuzzStreamFraming(f *testing.F) {
	srv := startServerIO(f, nil, true)
	m, _ := pionstun.Build(pionstun.TransactionID, pionstun.BindingRequest)
	f.Add(append(append([]byte{}, m.Raw...), 0x40, 0x01, 0x00, 0x03, 1, 2, 3, 0))
	f.Add([]byte{0x40, 0x01, 0xFF, 0xFF})
	f.Add([]byte("\x00\x01\x00\x03"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &gateConn{Conn: &chunkConn{r: bytes.NewReader(b)}, g: srv.gate, transport: "tcp"}
		buf := make([]byte, 1600)
		total := 0
		for range len(b) + 2 {
			n, err := c.Read(buf)
			total += n
			if err == io.EOF || err == errBadFrame {
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
		}
		if total > len(b) {
			t.Fatalf("read %d bytes out of %d", total, len(b))
		}
	})
}

// FuzzFastPath feeds arbitrary datagrams to the fast path as a client with
// an allocation, a bound channel and a permission would send them (and as
// its peer would): never a panic, whatever the bytes.
func FuzzFastPath(f *testing.F) {
	srv := startServerIO(f, nil, true)
	p := newChannelPath(f, srv, 8)
	_ = p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	p.roundTrip(f)
	from := addrPortOf(p.client.LocalAddr())
	peerAP := addrPortOf(p.peer.LocalAddr())
	var listener *gatePacketConn
	var relay *relayConn
	srv.allocs.mu.RLock()
	for ap, ls := range srv.allocs.listeners {
		if ap.Addr().Is4() {
			listener = ls[0]
		}
	}
	for _, sock := range srv.allocs.relays {
		if rc, ok := sock.(*relayConn); ok {
			relay = rc
		}
	}
	srv.allocs.mu.RUnlock()
	if listener == nil || relay == nil {
		f.Fatal("no fast path state")
	}
	f.Add(p.frame)
	f.Add([]byte{0x40, 0x00, 0x00, 0x00})
	f.Add(pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodSend, pionstun.ClassIndication),
		peer("127.0.0.1", int(peerAP.Port())), rawAttr{pionstun.AttrData, []byte("x")}).Raw)
	f.Add(pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.Fingerprint).Raw)
	// The handlers send at once here; the event loop's batched sends
	// (sendmmsg, segment trains) are fuzzed in internal/udploop (FuzzFlush).
	out := udploop.Direct
	buf := make([]byte, udploop.BufSize)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > udploop.BufSize-headroom-tailroom {
			b = b[:udploop.BufSize-headroom-tailroom]
		}
		n := copy(buf[headroom:], b)
		listener.loopPacket(out, buf, n, from)
		n = copy(buf[headroom:], b)
		relay.loopPacket(out, buf, n, peerAP)
	})
}
