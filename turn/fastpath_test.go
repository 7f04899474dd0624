package turn

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"
)

// channelPath is a client with an allocation and a channel bound to a UDP
// echo peer, all speaking raw STUN over loopback.
type channelPath struct {
	client *net.UDPConn
	server netip.AddrPort
	peer   *net.UDPConn
	frame  []byte
	buf    []byte
}

func newChannelPath(tb testing.TB, srv *testServer, payload int) *channelPath {
	tb.Helper()
	server := srv.addr(tb, "udp", "4")
	c := newRawClient(tb, "127.0.0.1", server)
	c.challenge()
	if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 0 {
		tb.Fatalf("allocate: %d", code)
	}
	echo, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	tb.Cleanup(func() { _ = echo.Close(); <-done })
	pa := echo.LocalAddr().(*net.UDPAddr)
	chn := rawAttr{pionstun.AttrChannelNumber, []byte{0x40, 0x00, 0, 0}}
	if code := errorCode(c.authed(pionstun.MethodChannelBind, testUser, testPass, chn, peer(pa.IP.String(), pa.Port))); code != 0 {
		tb.Fatalf("channel bind: %d", code)
	}
	frame := make([]byte, 4+payload)
	binary.BigEndian.PutUint16(frame, 0x4000)
	binary.BigEndian.PutUint16(frame[2:], uint16(payload))
	for i := range payload {
		frame[4+i] = byte(i)
	}
	return &channelPath{client: c.conn, server: addrPortOf(server), peer: echo, frame: frame, buf: make([]byte, 2048)}
}

// roundTrip sends one ChannelData frame and reads the echo.
func (p *channelPath) roundTrip(tb testing.TB) {
	if _, err := p.client.WriteToUDPAddrPort(p.frame, p.server); err != nil {
		tb.Fatal(err)
	}
	n, _, err := p.client.ReadFromUDPAddrPort(p.buf)
	if err != nil {
		tb.Fatal(err)
	}
	if n != len(p.frame) || p.buf[0] != 0x40 || p.buf[4+len(p.frame)-5] != p.frame[len(p.frame)-1] {
		tb.Fatalf("echo of %d bytes came back as %d bytes", len(p.frame), n)
	}
}

// TestFastPath: ChannelData both ways is relayed by the fast path (the
// listener knows the client and the relay knows the channel), and the
// whole round trip allocates nothing.
func TestFastPath(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable], func(t *testing.T) {
			testFastPath(t, startServerIO(t, nil, portable))
		})
	}
}

func testFastPath(t *testing.T, srv *testServer) {
	p := newChannelPath(t, srv, 100)
	_ = p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	p.roundTrip(t)

	var linked bool
	srv.allocs.mu.RLock()
	for _, sock := range srv.allocs.relays {
		rc, _ := sock.(*relayConn)
		if rc == nil {
			continue
		}
		if link := rc.link.Load(); link != nil && link.addr == addrPortOf(p.client.LocalAddr()) {
			if t := rc.chans.Load(); t != nil && len(t.byNum) == 1 {
				linked = true
			}
		}
	}
	srv.allocs.mu.RUnlock()
	if !linked {
		t.Fatal("the fast path did not learn the client's allocation and channel")
	}
	// testing.AllocsPerRun would set GOMAXPROCS to 1, which the event loops
	// (each holding a P while it waits) do not leave room for; count by hand.
	allocs := allocsPerRun(2000, func() { p.roundTrip(t) })
	if allocs > 0.05 {
		t.Fatalf("%.2f allocations per relayed round trip, want 0", allocs)
	}
}

// TestSendDataFastPath: Send indications out and Data indications back,
// for a peer with a permission and no channel, relayed by the fast path
// with no allocation, and decodable by a STUN parser.
func TestSendDataFastPath(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable], func(t *testing.T) {
			srv := startServerIO(t, nil, portable)
			server := srv.addr(t, "udp", "4")
			c := newRawClient(t, "127.0.0.1", server)
			c.challenge()
			if code := errorCode(c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())); code != 0 {
				t.Fatalf("allocate: %d", code)
			}
			echo := udpEcho(t, "127.0.0.1")
			if code := errorCode(c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("127.0.0.1", echo.Port))); code != 0 {
				t.Fatalf("permission: %d", code)
			}
			payload := []byte("send indication payload, 37 bytes...")
			send := pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodSend, pionstun.ClassIndication),
				peer("127.0.0.1", echo.Port), rawAttr{pionstun.AttrData, payload})
			buf := make([]byte, 2048)
			_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			serverAP := addrPortOf(server)
			// exchange is the allocation-free part: send, read, check the type.
			exchange := func() int {
				if _, err := c.conn.WriteToUDPAddrPort(send.Raw, serverAP); err != nil {
					t.Fatal(err)
				}
				n, _, err := c.conn.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatal(err)
				}
				if n < 20 || buf[0] != 0x00 || buf[1] != 0x17 {
					t.Fatalf("got % x, want a Data indication", buf[:min(n, 20)])
				}
				return n
			}
			roundTrip := func() {
				n := exchange()
				m := &pionstun.Message{Raw: buf[:n]}
				if err := m.Decode(); err != nil {
					t.Fatalf("data indication does not decode: %v", err)
				}
				if m.Type != pionstun.NewType(pionstun.MethodData, pionstun.ClassIndication) {
					t.Fatalf("got %v, want a Data indication", m.Type)
				}
				data, err := m.Get(pionstun.AttrData)
				if err != nil || string(data) != string(payload) {
					t.Fatalf("DATA %q, %v", data, err)
				}
				var xa pionstun.XORMappedAddress
				if err := xa.GetFromAs(m, pionstun.AttrXORPeerAddress); err != nil || xa.Port != echo.Port {
					t.Fatalf("XOR-PEER-ADDRESS %v, %v", xa, err)
				}
			}
			roundTrip()
			if allocs := allocsPerRun(1000, func() { exchange() }); allocs > 0.05 {
				t.Fatalf("%.2f allocations per Send/Data round trip, want 0", allocs)
			}
		})
	}
}

// allocsPerRun is testing.AllocsPerRun without the GOMAXPROCS change: the
// average number of heap allocations, in the whole process, per call of f.
func allocsPerRun(runs int, f func()) float64 {
	f() // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(runs)
}

// BenchmarkChannelDataRoundTrip measures one ChannelData round trip through
// the relay (client -> relay -> peer -> relay -> client) on loopback; its
// allocs/op is the packet path's allocations (two relayed packets per op).
func BenchmarkChannelDataRoundTrip(b *testing.B) {
	for _, size := range []int{100, 1000} {
		for _, portable := range []bool{false, true} {
			name := map[int]string{100: "100B", 1000: "1000B"}[size] + map[bool]string{false: "/event-loop", true: "/portable"}[portable]
			b.Run(name, func(b *testing.B) {
				srv := startServerIO(b, nil, portable)
				p := newChannelPath(b, srv, size)
				_ = p.client.SetReadDeadline(time.Now().Add(time.Minute))
				p.roundTrip(b)
				b.ReportAllocs()
				b.SetBytes(int64(2 * size))
				b.ResetTimer()
				for range b.N {
					p.roundTrip(b)
				}
			})
		}
	}
}

// TestTCPClientChannelData: a client on TCP using a channel gets its data
// back over TCP; the UDP fast path must not claim it although the TCP and
// UDP listeners share an address and port.
func TestTCPClientChannelData(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable], func(t *testing.T) {
			port := freePort(t)
			srv := startServerIO(t, func(c *Config) {
				c.Listen.Port = port
				c.Listen.Addrs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
			}, portable)
			if srv.addr(t, "tcp", "4").String() != srv.addr(t, "udp", "4").String() {
				t.Fatal("TCP and UDP listeners must share the port for this test")
			}
			conn, err := net.Dial("tcp", srv.addr(t, "tcp", "4").String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			do := func(setters ...pionstun.Setter) *pionstun.Message {
				m := pionstun.MustBuild(append([]pionstun.Setter{pionstun.TransactionID}, setters...)...)
				if _, err := conn.Write(m.Raw); err != nil {
					t.Fatal(err)
				}
				hdr := make([]byte, 20)
				if _, err := io.ReadFull(conn, hdr); err != nil {
					t.Fatal(err)
				}
				body := make([]byte, binary.BigEndian.Uint16(hdr[2:]))
				if _, err := io.ReadFull(conn, body); err != nil {
					t.Fatal(err)
				}
				resp := &pionstun.Message{Raw: append(hdr, body...)}
				if err := resp.Decode(); err != nil {
					t.Fatal(err)
				}
				return resp
			}
			resp := do(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP())
			var nonce pionstun.Nonce
			if err := nonce.GetFrom(resp); err != nil {
				t.Fatal(err)
			}
			auth := func(method pionstun.Method, attrs ...pionstun.Setter) int {
				s := append([]pionstun.Setter{pionstun.NewType(method, pionstun.ClassRequest)}, attrs...)
				s = append(s, pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm), nonce,
					pionstun.NewLongTermIntegrity(testUser, testRealm, testPass))
				return errorCode(do(s...))
			}
			if code := auth(pionstun.MethodAllocate, requestedUDP()); code != 0 {
				t.Fatalf("allocate: %d", code)
			}
			echo := udpEcho(t, "127.0.0.1")
			chn := rawAttr{pionstun.AttrChannelNumber, []byte{0x40, 0x00, 0, 0}}
			if code := auth(pionstun.MethodChannelBind, chn, peer("127.0.0.1", echo.Port)); code != 0 {
				t.Fatalf("channel bind: %d", code)
			}
			frame := []byte{0x40, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o', 0, 0, 0} // padded to 4 on TCP
			if _, err := conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 12)
			if _, err := io.ReadFull(conn, got[:9]); err != nil {
				t.Fatalf("no ChannelData back over TCP: %v", err)
			}
			if string(got[4:9]) != "hello" || got[0] != 0x40 {
				t.Fatalf("got % x", got[:9])
			}
		})
	}
}

// freePort returns a port that is free for both TCP and UDP on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// TestBandwidthLimit: limits.bandwidth_per_allocation drops what exceeds the
// byte rate, per direction, on both I/O paths.
func TestBandwidthLimit(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable], func(t *testing.T) {
			srv := startServerIO(t, func(c *Config) { c.Limits.BandwidthPerAllocation = 3000 }, portable)
			p := newChannelPath(t, srv, 1000)
			// 30 KB at once against 3000 B/s with a one-second burst: a few get
			// through, most are dropped.
			for range 30 {
				if _, err := p.client.WriteToUDPAddrPort(p.frame, p.server); err != nil {
					t.Fatal(err)
				}
			}
			got := 0
			_ = p.client.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
			for {
				if _, _, err := p.client.ReadFromUDPAddrPort(p.buf); err != nil {
					break
				}
				got++
			}
			if got < 1 || got > 6 {
				t.Fatalf("%d of 30 packets of 1000 bytes came back through a 3000 B/s limit", got)
			}
			if d := counterValue(t, srv.metrics.BandwidthDrops); d < 20 {
				t.Fatalf("bandwidth drops counted %v, want most of 30", d)
			}
		})
	}
}

// TestEmptyPayloads: ChannelData and Send indications with nothing in them
// are harmless on both I/O paths; the server keeps relaying afterwards.
func TestEmptyPayloads(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable], func(t *testing.T) {
			srv := startServerIO(t, nil, portable)
			p := newChannelPath(t, srv, 100)
			empty := []byte{0x40, 0x00, 0x00, 0x00}
			send := pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodSend, pionstun.ClassIndication),
				peer("127.0.0.1", p.peer.LocalAddr().(*net.UDPAddr).Port), rawAttr{pionstun.AttrData, nil})
			for range 10 {
				_, _ = p.client.WriteToUDPAddrPort(empty, p.server)
				_, _ = p.client.WriteToUDPAddrPort(send.Raw, p.server)
			}
			// The empty datagrams are relayed (RFC 8656 allows a length of
			// 0) and echoed: 20 empty ChannelData messages come back.
			_ = p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i := range 20 {
				n, _, err := p.client.ReadFromUDPAddrPort(p.buf)
				if err != nil || n != 4 || p.buf[0] != 0x40 || p.buf[2] != 0 || p.buf[3] != 0 {
					t.Fatalf("empty echo %d: % x, %v", i, p.buf[:n], err)
				}
			}
			p.roundTrip(t)
		})
	}
}

// TestLargePeerDatagram: a peer datagram as large as a read can hold, sent
// to an allocation that has only a permission (a Data indication must be
// built around it), neither crashes the server nor stops the relay.
func TestLargePeerDatagram(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable], func(t *testing.T) {
			srv := startServerIO(t, nil, portable)
			server := srv.addr(t, "udp", "4")
			c := newRawClient(t, "127.0.0.1", server)
			c.challenge()
			resp := c.authed(pionstun.MethodAllocate, testUser, testPass, requestedUDP())
			var relayAddr pionstun.XORMappedAddress
			if err := relayAddr.GetFromAs(resp, pionstun.AttrXORRelayedAddress); err != nil {
				t.Fatal(err)
			}
			if code := errorCode(c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("127.0.0.1", 9))); code != 0 {
				t.Fatalf("permission: %d", code)
			}
			p, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for _, size := range []int{1990, 1996, 1999, 2000, 2048, 4000} {
				if _, err := p.WriteToUDP(make([]byte, size), &net.UDPAddr{IP: relayAddr.IP, Port: relayAddr.Port}); err != nil {
					t.Fatal(err)
				}
			}
			// Whatever arrives (Data indications, possibly of cut datagrams),
			// the server is still relaying afterwards.
			_ = c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			buf := make([]byte, 8192)
			for {
				if _, _, err := c.conn.ReadFrom(buf); err != nil {
					break
				}
			}
			echo := udpEcho(t, "127.0.0.1")
			if code := errorCode(c.authed(pionstun.MethodCreatePermission, testUser, testPass, peer("127.0.0.1", echo.Port))); code != 0 {
				t.Fatalf("the server stopped answering: %d", code)
			}
		})
	}
}

// TestLoopsWithFewerProcs: if GOMAXPROCS is lowered after start (as
// testing.AllocsPerRun does), the event loops stop holding Ps and the
// rest of the program still runs.
func TestLoopsWithFewerProcs(t *testing.T) {
	srv := startServerIO(t, nil, false)
	p := newChannelPath(t, srv, 100)
	_ = p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	p.roundTrip(t)
	old := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(old)
	start := time.Now()
	for range 50 {
		p.roundTrip(t)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("50 round trips took %v with GOMAXPROCS=1", d)
	}
}

// TestNoChannelDropCounted: ChannelData on a channel that is not bound
// (0x4001, 0x4FFF, 0x7FFF beside the bound 0x4000), and any ChannelData from
// a client without an allocation, is dropped, counted as no_channel, and
// does not disturb the bound channel; checking costs no allocation.
func TestNoChannelDropCounted(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable], func(t *testing.T) {
			srv := startServerIO(t, nil, portable)
			p := newChannelPath(t, srv, 16)
			_ = p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
			p.roundTrip(t)
			counter := srv.metrics.Dropped.WithLabelValues("no_channel")
			before := counterValue(t, counter)

			stray := func(conn *net.UDPConn, number uint16) {
				frame := append([]byte(nil), p.frame...)
				binary.BigEndian.PutUint16(frame, number)
				if _, err := conn.WriteToUDPAddrPort(frame, p.server); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range []uint16{0x4001, 0x4FFF, 0x7FFF} {
				stray(p.client, n)
			}
			stranger := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
			stray(stranger.conn, 0x4000)
			want := before + 4
			for deadline := time.Now().Add(3 * time.Second); counterValue(t, counter) < want && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if got := counterValue(t, counter); got != want {
				t.Fatalf("no_channel drops = %v, want %v", got, want)
			}
			// Only the bound channel came back: the echo of the next frame is
			// the next datagram the client reads.
			p.roundTrip(t)
			if got := counterValue(t, counter); got != want {
				t.Fatalf("a relayed frame was counted as a drop: %v, want %v", got, want)
			}

			var listener *gatePacketConn
			srv.allocs.mu.RLock()
			for ap, ls := range srv.allocs.listeners {
				if ap.Addr().Is4() {
					listener = ls[0]
				}
			}
			srv.allocs.mu.RUnlock()
			from := addrPortOf(p.client.LocalAddr())
			frame := append([]byte(nil), p.frame...)
			if !listener.channelBound(frame, from) {
				t.Fatal("the bound channel reads as unbound")
			}
			binary.BigEndian.PutUint16(frame, 0x4001)
			if listener.channelBound(frame, from) {
				t.Fatal("channel 0x4001 reads as bound")
			}
			if a := allocsPerRun(1000, func() { listener.channelBound(frame, from) }); a > 0.05 {
				t.Fatalf("%v allocations per check, want 0", a)
			}
		})
	}
}
