package udploop

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"icegate/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m, "icegate/internal/udploop.") }

// echoHeader is what the test handler writes in front of an echoed
// datagram, in the headroom.
const echoHeadroom, echoTailroom = 8, 4

// echoHandler takes datagrams whose first byte is 'e' and sends them back
// with a header written in the headroom and a trailer in the tailroom; it
// leaves every other datagram to Recv.
func echoHandler(sock **Socket) Handler {
	return func(out Sender, b []byte, n int, from netip.AddrPort) bool {
		if n == 0 || b[echoHeadroom] != 'e' {
			return false
		}
		copy(b[:echoHeadroom], "ECHOHEAD")
		copy(b[echoHeadroom+n:], "TAIL")
		out.Send(*sock, b[:echoHeadroom+n+echoTailroom], from)
		return true
	}
}

// openEcho opens a socket with echoHandler on a loop, or on the portable
// path when loop is nil (then a goroutine calls Recv and hands what it
// returns to got).
func openEcho(t testing.TB, loop *Loop, cfg SocketConfig) *Socket {
	t.Helper()
	var s *Socket
	cfg.Handler = echoHandler(&s)
	cfg.Headroom, cfg.Tailroom = echoHeadroom, echoTailroom
	ap := netip.MustParseAddrPort("127.0.0.1:0")
	var err error
	if loop != nil {
		s, err = loop.Open(ap, cfg)
	} else {
		var c *net.UDPConn
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err == nil {
			s = NetSocket(c, cfg)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

func client(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetReadBuffer(1 << 20)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// paths runs f on an event loop (where there are loops) and on the
// portable path.
func paths(t *testing.T, f func(t *testing.T, loop *Loop)) {
	t.Run("portable", func(t *testing.T) { f(t, nil) })
	if !Supported() {
		return
	}
	t.Run("event-loop", func(t *testing.T) {
		l, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		f(t, l)
	})
}

// TestHandlerAndRecv: the handler's datagrams go back with what it wrote
// in the room around them; the others reach Recv, whole and in order, with
// their source.
func TestHandlerAndRecv(t *testing.T) {
	paths(t, func(t *testing.T, loop *Loop) {
		s := openEcho(t, loop, SocketConfig{Queue: 64})
		c := client(t)
		to := s.AddrPort()
		got := make(chan string, 64)
		go func() {
			defer close(got)
			buf := make([]byte, BufSize)
			for {
				n, from, err := s.Recv(buf)
				if err != nil {
					return
				}
				if from != c.LocalAddr().(*net.UDPAddr).AddrPort() {
					got <- "from " + from.String()
					continue
				}
				got <- string(buf[:n])
			}
		}()
		for i := range 20 {
			msg := fmt.Sprintf("e%d", i)
			if i%2 == 1 {
				msg = fmt.Sprintf("s%d", i)
			}
			if _, err := c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
				t.Fatal(err)
			}
			if i%2 == 1 {
				if r := <-got; r != msg {
					t.Fatalf("Recv returned %q, want %q", r, msg)
				}
				continue
			}
			buf := make([]byte, BufSize)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if want := "ECHOHEAD" + msg + "TAIL"; string(buf[:n]) != want {
				t.Fatalf("echo %q, want %q", buf[:n], want)
			}
		}
		_ = s.Close()
		if _, ok := <-got; ok {
			t.Fatal("Recv returned a datagram after the handler took it")
		}
	})
}

// TestQueueFull: with nobody calling Recv, a socket without Pause drops
// what does not fit its queue and counts it; one with Pause stops reading
// and loses nothing: every datagram reaches Recv, in order.
func TestQueueFull(t *testing.T) {
	if !Supported() {
		t.Skip("no event loops on this system")
	}
	const sent, queue = 200, 8
	for _, pause := range []bool{false, true} {
		t.Run(fmt.Sprintf("pause=%v", pause), func(t *testing.T) {
			l, err := New(Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Close)
			var dropped atomic.Int64
			s := openEcho(t, l, SocketConfig{Queue: queue, Pause: pause, Buffer: 1 << 20, Dropped: func() { dropped.Add(1) }})
			c := client(t)
			for i := range sent {
				var p [4]byte
				binary.BigEndian.PutUint32(p[:], uint32(i))
				if _, err := c.WriteToUDPAddrPort(p[:], s.AddrPort()); err != nil {
					t.Fatal(err)
				}
			}
			if !pause {
				for deadline := time.Now().Add(5 * time.Second); dropped.Load() < sent-queue; time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("%d dropped, want %d", dropped.Load(), sent-queue)
					}
				}
				return
			}
			time.Sleep(50 * time.Millisecond) // let the loop fill the queue and pause
			buf := make([]byte, BufSize)
			for i := range sent {
				n, _, err := s.Recv(buf)
				if err != nil {
					t.Fatal(err)
				}
				if n != 4 || binary.BigEndian.Uint32(buf) != uint32(i) {
					t.Fatalf("datagram %d: got % x", i, buf[:n])
				}
			}
			if d := dropped.Load(); d != 0 {
				t.Fatalf("%d dropped with Pause", d)
			}
			if st := l.Stats(); st.Pauses == 0 || st.RecvDatagrams != sent {
				t.Fatalf("stats %+v: want pauses and %d datagrams read", st, sent)
			}
		})
	}
}

// BenchmarkEcho is one round trip through a socket whose handler answers
// (client -> socket -> handler -> client): the loop's own cost, with no
// relay logic; it must not allocate.
func BenchmarkEcho(b *testing.B) {
	for _, name := range []string{"event-loop", "portable"} {
		b.Run(name, func(b *testing.B) {
			var loop *Loop
			if name == "event-loop" {
				if !Supported() {
					b.Skip("no event loops on this system")
				}
				b.Cleanup(ReserveProcs(1)) // as icegate serve does
				l, err := New(Config{})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(l.Close)
				loop = l
			}
			s := openEcho(b, loop, SocketConfig{Queue: 1})
			if loop == nil {
				go func() {
					buf := make([]byte, BufSize)
					for {
						if _, _, err := s.Recv(buf); err != nil {
							return
						}
					}
				}()
			}
			c := client(b)
			msg := make([]byte, 100)
			msg[0] = 'e'
			buf := make([]byte, BufSize)
			to := s.AddrPort()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.WriteToUDPAddrPort(msg, to); err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
