//go:build linux

package udploop

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loopSender is an event loop with one socket of its own that it does not
// read: the test queues datagrams in its outbox and flushes it by hand, as
// the loop does after each batch.
func loopSender(t *testing.T, ip string) (*Loop, *Socket) {
	t.Helper()
	l, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	s, err := l.Open(netip.AddrPortFrom(netip.MustParseAddr(ip), 0), SocketConfig{Buffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return l, s
}

// receiver is a UDP socket the test reads everything from, in order.
func receiver(t *testing.T, ip string) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetReadBuffer(1 << 20)
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func expectDatagrams(t *testing.T, c *net.UDPConn, want [][]byte) {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, w := range want {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(want), err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: got %d bytes starting % x, want %d bytes starting % x", i, n, buf[:min(n, 4)], len(w), w[:min(len(w), 4)])
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("an extra datagram of %d bytes", n)
	}
}

// datagram makes a payload of size bytes that says which one it is.
func datagram(id, size int) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(id + i)
	}
	p[0] = byte(id)
	return p
}

// TestFlushSegments: an outbox with two destinations interleaved, runs of
// equal sizes, shorter and longer datagrams and ones too large to segment
// leaves in one sendmmsg, as UDP_SEGMENT trains where the sizes allow, and
// every datagram arrives whole and in its order at its destination.
func TestFlushSegments(t *testing.T) {
	for _, ip := range []string{"127.0.0.1", "::1"} {
		t.Run(ip, func(t *testing.T) {
			l, s := loopSender(t, ip)
			a, aAP := receiver(t, ip)
			b, bAP := receiver(t, ip)
			plan := []struct {
				to   netip.AddrPort
				size int
			}{
				{aAP, 100}, {bAP, 100}, {aAP, 100}, {aAP, 100}, {bAP, 100}, // A: a train of 4 + a shorter last
				{aAP, 100}, {bAP, 100}, {aAP, 50}, // B: 3 of 100
				{aAP, 100},             // A: a new train (after the shorter one)
				{bAP, 200}, {bAP, 200}, // B: larger: a new train of 200s
				{bAP, 150},               // … ending with a shorter one
				{aAP, 1500}, {aAP, 1500}, // too large to segment: alone
				{aAP, 1},
			}
			var wantA, wantB [][]byte
			for i, d := range plan {
				p := datagram(i, d.size)
				l.Send(s, p, d.to)
				if d.to == aAP {
					wantA = append(wantA, p)
				} else {
					wantB = append(wantB, p)
				}
			}
			l.flush()
			expectDatagrams(t, a, wantA)
			expectDatagrams(t, b, wantB)
			if calls, sent := l.stats.sendCalls.Load(), l.stats.sendDgrams.Load(); calls != 1 || sent != uint64(len(plan)) {
				t.Fatalf("%d datagrams in %d sendmmsg calls, want %d in 1", sent, calls, len(plan))
			}
			// A: [100 100 100 100 50] [100] [1500] [1500] [1] (a 1500 starts
			// no train, so the 1 after it goes alone too); B: [100 100 100]
			// [200 200 150].
			if trains, in := l.stats.trains.Load(), l.stats.trainDgrams.Load(); trains != 3 || in != 11 {
				t.Fatalf("%d datagrams in %d segmented trains, want 11 in 3", in, trains)
			}
		})
	}
}

// TestEmptyDatagramKeepsOrder: an empty datagram (sent at once, not
// queued) does not overtake the datagrams queued before it.
func TestEmptyDatagramKeepsOrder(t *testing.T) {
	l, s := loopSender(t, "127.0.0.1")
	a, aAP := receiver(t, "127.0.0.1")
	want := [][]byte{datagram(1, 40), datagram(2, 40), {}, datagram(3, 40), datagram(4, 40)}
	for _, p := range want {
		l.Send(s, p, aAP)
	}
	l.flush()
	expectDatagrams(t, a, want)
}

// TestFlushWithoutSegmentation: a socket the kernel would not segment for
// sends every datagram alone, in order.
func TestFlushWithoutSegmentation(t *testing.T) {
	l, s := loopSender(t, "127.0.0.1")
	s.gsoMax.Store(0)
	a, aAP := receiver(t, "127.0.0.1")
	var want [][]byte
	for i := range 20 {
		p := datagram(i, 64)
		want = append(want, p)
		l.Send(s, p, aAP)
	}
	l.flush()
	expectDatagrams(t, a, want)
	if trains := l.stats.trains.Load(); trains != 0 {
		t.Fatalf("%d segmented trains on a socket without segmentation", trains)
	}
}

// TestRefusedTrainFallsBack: a train the kernel refuses (here: more
// segments than it takes) goes again as separate datagrams, and nothing
// is lost or reordered.
func TestRefusedTrainFallsBack(t *testing.T) {
	l, s := loopSender(t, "127.0.0.1")
	a, aAP := receiver(t, "127.0.0.1")
	const n, size = 300, 16 // more than UDP_MAX_SEGMENTS (64, or 128 since Linux 6.9)
	iovs := make([]unix.Iovec, n)
	var want [][]byte
	for i := range iovs {
		p := datagram(i, size)
		want = append(want, p)
		iovs[i].Base = &p[0]
		iovs[i].SetLen(size)
	}
	var name unix.RawSockaddrInet6
	var cmsg [3]uint64
	c := (*[24]byte)(unsafe.Pointer(&cmsg))
	hdr := (*unix.Cmsghdr)(unsafe.Pointer(c))
	hdr.Level, hdr.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	hdr.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = size
	msgs := make([]mmsghdr, 1)
	h := &msgs[0].hdr
	h.Name = (*byte)(unsafe.Pointer(&name))
	h.Namelen = putSockaddr(&name, s.v6, aAP)
	h.Iov = &iovs[0]
	h.SetIovlen(n)
	h.Control = &c[0]
	h.SetControllen(unix.CmsgSpace(2))
	l.sstats[0] = n
	l.sendBatch(s, msgs)
	expectDatagrams(t, a, want)
	if calls := l.stats.sendCalls.Load(); calls != 1+n {
		t.Fatalf("%d send calls, want the refused sendmmsg and the train's %d datagrams sent one by one", calls, n)
	}
	if max := s.gsoMax.Load(); max != size-1 {
		t.Fatalf("after a refused train of %d-byte segments the socket's limit is %d, want %d", size, max, size-1)
	}
}

// TestPing: an idle loop answers Ping at once, again and again, without
// spinning on its eventfd afterwards; a loop stuck in a handler does not
// answer until the handler returns, and the Ping that gave up is forgotten.
func TestPing(t *testing.T) {
	l, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	stuck, release := make(chan struct{}), make(chan struct{})
	s, err := l.Open(netip.MustParseAddrPort("127.0.0.1:0"), SocketConfig{
		Handler: func(Sender, []byte, int, netip.AddrPort) bool {
			close(stuck)
			<-release
			return true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := l.Ping(ctx)
		cancel()
		if err != nil {
			t.Fatalf("ping %d of an idle loop: %v", i, err)
		}
	}
	before := l.Stats().Wakeups
	time.Sleep(100 * time.Millisecond)
	if woke := l.Stats().Wakeups - before; woke > 2 {
		t.Fatalf("the loop woke %d times in 100 ms with nothing to do: its eventfd is not cleared", woke)
	}

	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.AddrPort()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	<-stuck
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err = l.Ping(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ping of a loop stuck in a handler: %v, want a deadline exceeded", err)
	}
	l.pingMu.Lock()
	waiting := len(l.pings)
	l.pingMu.Unlock()
	if waiting != 0 {
		t.Fatalf("%d pings left waiting after their caller gave up", waiting)
	}
	close(release)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Ping(ctx); err != nil {
		t.Fatalf("ping after the handler returned: %v", err)
	}
	_ = s.Close()
	l.Close()
	if err := l.Ping(context.Background()); !errors.Is(err, errLoopClosed) {
		t.Fatalf("ping of a closed loop: %v", err)
	}
}
