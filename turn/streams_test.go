package turn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"icegate/config"
)

// TestSourceLimiter: the per-address bucket is a fifth of the per-IP one, a
// refused request costs the IP nothing, IPv4-mapped sources count as IPv4,
// and a zero rate switches the limit off.
func TestSourceLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	ip := netip.MustParseAddr("192.0.2.1")
	a := netip.AddrPortFrom(ip, 1000)
	taken := func(l *sourceLimiter, src netip.AddrPort, n int) int {
		got := 0
		for range n {
			if l.allow(src, now) {
				got++
			}
		}
		return got
	}

	l := newSourceLimiter(100, 200)
	if got := taken(l, a, 100); got != 40 {
		t.Fatalf("one address got %d of 100 at once, want its fifth of the burst (40)", got)
	}
	mapped := netip.AddrPortFrom(netip.AddrFrom16(ip.As16()), 1000)
	if l.allow(mapped, now) {
		t.Fatal("an IPv4-mapped spelling of a throttled address got a fresh bucket")
	}
	// The refused 61 took nothing from the IP: 160 of its 200 are left,
	// spread over other ports (NAT neighbours).
	got := 0
	for port := range 200 {
		got += taken(l, netip.AddrPortFrom(ip, uint16(2000+port)), 1)
	}
	if got != 160 {
		t.Fatalf("neighbours on other ports got %d, want the rest of the IP's burst (160)", got)
	}
	if !l.allow(netip.MustParseAddrPort("192.0.2.2:1000"), now) {
		t.Fatal("another IP was hurt")
	}
	now = now.Add(time.Second)
	if got := taken(l, a, 100); got != 20 {
		t.Fatalf("after a second the address got %d, want its rate (20)", got)
	}

	if off := newSourceLimiter(0, 0); taken(off, a, 1000) != 1000 {
		t.Fatal("a zero rate still limits")
	}
	// Full tables: new addresses fall back to their IP's bucket only; new
	// IPs share the overflow bucket.
	small := newSourceLimiter(10, 10)
	small.maxSources = 1
	small.allow(a, now)
	if got := taken(small, netip.AddrPortFrom(ip, 9), 20); got != 9 {
		t.Fatalf("an address past the table got %d, want what its IP has left (9)", got)
	}
}

// TestUnauthenticatedUDP: over UDP, one socket flooding is throttled while a
// neighbour on the same IP and another IP are answered; rotating ports does
// not escape the per-IP bound; and a crowd of 100 clients behind one address
// all get their 401 challenge at once.
func TestUnauthenticatedUDP(t *testing.T) {
	srv := startServer(t, nil) // the defaults: 100/s, burst 200 per IP
	server := srv.addr(t, "udp", "4")
	binding := func() []byte {
		req, _ := pionstun.Build(pionstun.TransactionID, pionstun.BindingRequest)
		return req.Raw
	}
	drain := func(c net.PacketConn) int {
		n := 0
		buf := make([]byte, 1500)
		for {
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := c.ReadFrom(buf); err != nil {
				return n
			}
			n++
		}
	}

	flood := newRawClient(t, "127.0.0.1", server)
	for range 300 {
		_, _ = flood.conn.WriteTo(binding(), server)
	}
	if got := drain(flood.conn); got < 40 || got > 60 {
		t.Fatalf("a flooding socket got %d of 300 answers, want about its burst (40)", got)
	}
	if _, err := newRawClient(t, "127.0.0.1", server).do(pionstun.BindingRequest); err != nil {
		t.Fatalf("a neighbour on the flooder's IP was hurt: %v", err)
	}
	if _, err := newRawClient(t, "127.0.0.2", server).do(pionstun.BindingRequest); err != nil {
		t.Fatalf("another IP was hurt: %v", err)
	}

	// 100 clients behind one NAT (127.0.0.3), each its first Allocate.
	crowd := make([]*rawClient, 100)
	for i := range crowd {
		crowd[i] = newRawClient(t, "127.0.0.3", server)
	}
	var wg sync.WaitGroup
	codes := make([]int, len(crowd))
	for i, c := range crowd {
		wg.Go(func() {
			resp, err := c.do(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP())
			if err == nil {
				codes[i] = errorCode(resp)
			}
		})
	}
	wg.Wait()
	for i, code := range codes {
		if code != 401 {
			t.Fatalf("crowd client %d got %d, want 401 (all codes %v)", i, code, codes)
		}
	}

	// A flood rotating ports from one IP (127.0.0.4) gets the IP's burst,
	// not a fresh budget per port.
	rotating := make([]*rawClient, 30)
	for i := range rotating {
		rotating[i] = newRawClient(t, "127.0.0.4", server)
	}
	for range 20 {
		for _, c := range rotating {
			_, _ = c.conn.WriteTo(binding(), server)
		}
	}
	var mu sync.Mutex
	answered := 0
	for _, c := range rotating {
		wg.Go(func() {
			n := drain(c.conn)
			mu.Lock()
			answered += n
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("a port-rotating flood got %d of 600 answers", answered)
	if answered > 300 {
		t.Fatalf("a port-rotating flood got %d of 600 answers, want about the IP's burst (200)", answered)
	}
}

// streamDo writes req on a TCP or TLS connection and reads one STUN message.
func streamDo(c net.Conn, req []byte, timeout time.Duration) (*pionstun.Message, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	hdr := make([]byte, 20)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[2:4]))
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, err
	}
	m := &pionstun.Message{Raw: append(hdr, body...)}
	return m, m.Decode()
}

func dialStream(transport string, server net.Addr) (net.Conn, error) {
	if transport == "tls" {
		return tlsDial(server.String())
	}
	return net.Dial("tcp", server.String())
}

func allocateRequest(t testing.TB) []byte {
	req, err := pionstun.Build(pionstun.TransactionID, pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP())
	if err != nil {
		t.Fatal(err)
	}
	return req.Raw
}

// TestStreamChallenges: 100 first Allocates over TCP, and over TLS, from one
// address (60 connections open at once, as turnutils_uclient -t -m 50 opens
// them) are all challenged: a TCP or TLS source cannot be forged, so the
// per-source UDP bucket does not apply, and a TCP client does not
// retransmit what a bucket would drop.
func TestStreamChallenges(t *testing.T) {
	srv := startServer(t, nil)
	for _, transport := range []string{"tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			server := srv.addr(t, transport, "4")
			for round, n := range []int{60, 40} {
				var wg sync.WaitGroup
				errs := make([]error, n)
				for i := range n {
					wg.Go(func() {
						c, err := dialStream(transport, server)
						if err != nil {
							errs[i] = err
							return
						}
						defer c.Close()
						resp, err := streamDo(c, allocateRequest(t), 5*time.Second)
						if err == nil && errorCode(resp) != 401 {
							err = fmt.Errorf("code %d, want 401", errorCode(resp))
						}
						errs[i] = err
					})
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d, Allocate %d: %v", round, i, err)
					}
				}
			}
		})
	}
}

// TestStreamGuard: a flood of unauthenticated requests down one TCP
// connection is held to the connection's own budget (a fifth of
// limits.unauthenticated_burst), and does not touch another connection
// from the same address.
func TestStreamGuard(t *testing.T) {
	srv := startServer(t, nil)
	server := srv.addr(t, "tcp", "4")
	flood, err := net.Dial("tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	for range 200 {
		req, _ := pionstun.Build(pionstun.TransactionID, pionstun.BindingRequest)
		if _, err := flood.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
	}
	answered := 0
	for {
		if _, err := streamDo(flood, nil, 300*time.Millisecond); err != nil {
			break
		}
		answered++
	}
	if answered < 40 || answered > 60 {
		t.Fatalf("a flooding connection got %d of 200 answers, want about its burst (40)", answered)
	}
	other, err := net.Dial("tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	req, _ := pionstun.Build(pionstun.TransactionID, pionstun.BindingRequest)
	if _, err := streamDo(other, req.Raw, 2*time.Second); err != nil {
		t.Fatalf("another connection from the same address was hurt: %v", err)
	}
}

// closedWithin reports how long the server took to close c, reading (and
// sending what trickle returns, every step) until EOF or limit.
func closedWithin(c net.Conn, limit, step time.Duration, trickle func() []byte) (time.Duration, bool) {
	start := time.Now()
	buf := make([]byte, 512)
	for time.Since(start) < limit {
		if trickle != nil {
			if b := trickle(); len(b) > 0 {
				if _, err := c.Write(b); err != nil {
					return time.Since(start), true
				}
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(step))
		_, err := c.Read(buf)
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return time.Since(start), true
		}
	}
	return time.Since(start), false
}

// byteByByte returns b one byte per call, then nothing.
func byteByByte(b []byte) func() []byte {
	return func() []byte {
		if len(b) == 0 {
			return nil
		}
		out := b[:1]
		b = b[1:]
		return out
	}
}

// TestSlowClients: a client trickling a STUN message one byte at a time is
// cut off within the frame timeout of its first byte, though every byte
// would have re-armed a per-read timer; one that sends nothing after its
// last complete message is cut off by the idle timeout counted from that
// message, bytes of a next frame notwithstanding; a TLS client that stalls
// or trickles its handshake is cut off by the handshake timeout; and a
// client with an allocation is left alone unless it leaves a frame half
// sent. Each is counted by reason.
func TestSlowClients(t *testing.T) {
	srv := startServer(t, nil)
	srv.streams.frame.Store(int64(time.Second))
	srv.streams.handshake.Store(int64(time.Second))
	srv.gate.idle.Store(int64(1500 * time.Millisecond))
	tcpAddr := srv.addr(t, "tcp", "4").String()
	tlsAddr := srv.addr(t, "tls", "4").String()
	const slack = 1500 * time.Millisecond
	binding := func() []byte {
		req, _ := pionstun.Build(pionstun.TransactionID, pionstun.BindingRequest, pionstun.NewSoftware("slow client"), pionstun.Fingerprint)
		return req.Raw
	}
	m := srv.metrics.ConnectionTimeouts

	t.Run("trickled frame", func(t *testing.T) {
		before := counterValue(t, m.WithLabelValues("incomplete_frame"))
		c, err := net.Dial("tcp", tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// One byte every 200 ms: the message (about 50 bytes) would take 10 s.
		took, closed := closedWithin(c, 6*time.Second, 200*time.Millisecond, byteByByte(binding()))
		if !closed || took > time.Second+slack {
			t.Fatalf("trickling client closed=%v after %v, want closed within about 1 s", closed, took)
		}
		if counterValue(t, m.WithLabelValues("incomplete_frame")) != before+1 {
			t.Fatal("incomplete_frame timeout not counted")
		}
	})

	t.Run("idle after last message", func(t *testing.T) {
		srv.streams.frame.Store(int64(time.Minute)) // only the idle timer may end it
		defer srv.streams.frame.Store(int64(time.Second))
		c, err := net.Dial("tcp", tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := streamDo(c, binding(), 2*time.Second); err != nil {
			t.Fatal(err)
		}
		took, closed := closedWithin(c, 6*time.Second, 300*time.Millisecond, byteByByte(binding()))
		if !closed || took > 1500*time.Millisecond+slack {
			t.Fatalf("client sending only bytes of a next message closed=%v after %v, want within the 1.5 s idle timeout", closed, took)
		}
	})

	t.Run("complete messages keep it", func(t *testing.T) {
		c, err := net.Dial("tcp", tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for range 6 { // 3 s, twice the idle timeout
			if _, err := streamDo(c, binding(), 2*time.Second); err != nil {
				t.Fatalf("a client sending a Binding every 500 ms was cut off: %v", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	t.Run("stalled TLS handshake", func(t *testing.T) {
		before := counterValue(t, m.WithLabelValues("handshake"))
		// Silence, then a TLS handshake record announcing 512 bytes that
		// come one at a time.
		record := append([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}, make([]byte, 100)...)
		for _, trickle := range []func() []byte{nil, byteByByte(record)} {
			c, err := net.Dial("tcp", tlsAddr)
			if err != nil {
				t.Fatal(err)
			}
			took, closed := closedWithin(c, 6*time.Second, 200*time.Millisecond, trickle)
			_ = c.Close()
			if !closed || took > time.Second+slack {
				t.Fatalf("stalled handshake closed=%v after %v, want within about 1 s", closed, took)
			}
		}
		// crypto/tls closes the connection as the deadline passes, just
		// before the handshake returns and the timeout is counted.
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			got := counterValue(t, m.WithLabelValues("handshake"))
			if got == before+2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("handshake timeouts counted %v, want %v", got, before+2)
			}
		}
	})

	t.Run("allocation holds, half a frame does not", func(t *testing.T) {
		server := srv.addr(t, "tcp", "4")
		raw, err := net.Dial("tcp", server.String())
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(t, pionturn.NewSTUNConn(raw), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
		relay, err := c.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		time.Sleep(2500 * time.Millisecond) // past the idle timeout
		echoThrough(t, relay, udpEcho(t, "127.0.0.1"))
		// Now half a ChannelData header, and nothing more.
		if _, err := raw.Write([]byte{0x40}); err != nil {
			t.Fatal(err)
		}
		took, closed := closedWithin(raw, 6*time.Second, 200*time.Millisecond, nil)
		if !closed || took > time.Second+slack {
			t.Fatalf("allocation holder with half a frame closed=%v after %v, want within about 1 s", closed, took)
		}
	})
}

// TestConnectionsPerSource: past limits.connections_per_source, TCP and TLS
// connections from one address together are closed at accept, counted and
// logged; another address is not affected; a closed connection frees its
// slot.
func TestConnectionsPerSource(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.Limits.ConnectionsPerSource = 3 })
	binding := func() []byte {
		req, _ := pionstun.Build(pionstun.TransactionID, pionstun.BindingRequest)
		return req.Raw
	}
	tcp4, tls4 := srv.addr(t, "tcp", "4"), srv.addr(t, "tls", "4")
	var open []net.Conn
	defer func() {
		for _, c := range open {
			_ = c.Close()
		}
	}()
	for i, server := range []net.Addr{tcp4, tcp4, tls4} {
		transport := map[bool]string{true: "tls", false: "tcp"}[server == tls4]
		c, err := dialStream(transport, server)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		if _, err := streamDo(c, binding(), 2*time.Second); err != nil {
			t.Fatalf("connection %d (%s) under the cap: %v", i, transport, err)
		}
	}
	refused := srv.metrics.ConnectionsRefused.WithLabelValues("per_source")
	for _, transport := range []string{"tcp", "tls"} {
		server := map[string]net.Addr{"tcp": tcp4, "tls": tls4}[transport]
		c, err := net.Dial("tcp", server.String())
		if err != nil {
			t.Fatal(err)
		}
		took, closed := closedWithin(c, 3*time.Second, 100*time.Millisecond, nil)
		_ = c.Close()
		if !closed || took > time.Second {
			t.Fatalf("%s connection over the cap closed=%v after %v, want closed at once", transport, closed, took)
		}
	}
	if got := counterValue(t, refused); got != 2 {
		t.Fatalf("per_source refusals counted %v, want 2", got)
	}
	if !strings.Contains(srv.log.String(), "limits.connections_per_source") {
		t.Fatal("refusal not logged")
	}
	other, err := net.Dial("tcp", srv.addr(t, "tcp", "6").String())
	if err != nil {
		t.Fatal(err)
	}
	open = append(open, other)
	if _, err := streamDo(other, binding(), 2*time.Second); err != nil {
		t.Fatalf("another address was refused: %v", err)
	}
	_ = open[0].Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := net.Dial("tcp", tcp4.String())
		if err != nil {
			t.Fatal(err)
		}
		_, err = streamDo(c, binding(), time.Second)
		if err == nil {
			open = append(open, c)
			break
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed after a connection closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
