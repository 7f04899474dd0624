//go:build linux

package turn

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// TestStreamClientBulk moves megabytes between a pion TURN client on TCP or
// TLS and a UDP peer, each way, with a sender that keeps at most `window`
// chunks unacknowledged. Every chunk must arrive, in order or not, and the
// server must have dropped nothing: the endpoints' own buffers hold a whole
// window, so the only place a chunk can be lost is icegate. The window is
// larger than what one event-loop batch or pion's queue holds, so a relay
// that drops when pion falls behind (as it did, slow_queue_full) loses
// chunks here within the first megabyte.
func TestStreamClientBulk(t *testing.T) {
	total := 8 << 20
	if raceEnabled {
		total = 4 << 20 // the race detector slows pion's path about tenfold
	}
	srv := startServer(t, nil)
	// UDP is the yardstick: the fast path relays it without pion.
	for _, transport := range []string{"udp", "tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			server := srv.addr(t, transport, "4")
			conn := dialClient(t, transport, server)
			if uc, ok := conn.(*net.UDPConn); ok {
				bigBuffers(t, uc) // the client's own socket must hold a window too
			}
			c := newClient(t, conn, server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
			relay, err := c.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			defer relay.Close()
			peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			bigBuffers(t, peer)
			// The permission (and channel) must exist before the peer
			// sends: pion's client installs them on its first write.
			echoThrough(t, relay, udpEcho(t, "127.0.0.1"))
			if _, err := relay.WriteTo([]byte("hello"), peer.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1500)
			_ = peer.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, _, err := peer.ReadFrom(buf); err != nil {
				t.Fatalf("first datagram through the relay: %v", err)
			}
			_ = peer.SetReadDeadline(time.Time{})
			relayAddr := relay.LocalAddr()

			t.Run("peer-to-client", func(t *testing.T) {
				windowedTransfer(t, peer, relayAddr, relay, peer.LocalAddr(), total)
			})
			t.Run("client-to-peer", func(t *testing.T) {
				windowedTransfer(t, relay, peer.LocalAddr(), peer, relayAddr, total)
			})
		})
	}
	for _, reason := range []string{"slow_queue_full", "no_permission"} {
		if n := counterValue(t, srv.metrics.Dropped.WithLabelValues(reason)); n != 0 {
			t.Errorf("packets dropped for %s: %v, want 0", reason, n)
		}
	}
	var pauses uint64
	for _, l := range srv.loops {
		pauses += l.Stats().Pauses
	}
	t.Logf("relay sockets paused %d times for pion to catch up", pauses)
}

const (
	bulkChunk  = 1000
	bulkWindow = 256 // chunks in flight: 256 kB, four times a 64-slot queue's worth of batches
	bulkAckGap = 8   // the receiver acknowledges every 8th chunk (and the last)
)

// windowedTransfer sends total bytes from src to dst (src writes to dstAddr,
// dst acknowledges to srcAddr) and fails if any chunk is missing.
func windowedTransfer(t *testing.T, src net.PacketConn, dstAddr net.Addr, dst net.PacketConn, srcAddr net.Addr, total int) {
	n := uint64((total + bulkChunk - 1) / bulkChunk)
	var acked atomic.Uint64 // chunks received in a row from the first
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := make(chan struct{})
	defer close(stop)

	// The receiver: records each chunk, acknowledges the contiguous count.
	recvErr := make(chan error, 1)
	wg.Go(func() {
		got := make([]bool, n)
		var next, dups uint64
		buf := make([]byte, 2048)
		ack := make([]byte, 9)
		ack[0] = 'A'
		for next < n {
			_ = dst.SetReadDeadline(time.Now().Add(5 * time.Second))
			m, _, err := dst.ReadFrom(buf)
			if err != nil {
				recvErr <- err
				return
			}
			if m != bulkChunk || buf[0] != 'D' {
				continue // a stray echo of the set-up
			}
			seq := binary.BigEndian.Uint64(buf[1:])
			if seq >= n || got[seq] {
				dups++
				continue
			}
			got[seq] = true
			before := next
			for next < n && got[next] {
				next++
			}
			if next != before && (next%bulkAckGap == 0 || next == n) {
				binary.BigEndian.PutUint64(ack[1:], next)
				if _, err := dst.WriteTo(ack, srcAddr); err != nil {
					recvErr <- err
					return
				}
			}
		}
		_ = dst.SetReadDeadline(time.Time{})
		if dups > 0 {
			recvErr <- errors.New("duplicated chunks")
			return
		}
		recvErr <- nil
	})

	// The sender's acknowledgement reader.
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			_ = src.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			m, _, err := src.ReadFrom(buf)
			select {
			case <-stop:
				_ = src.SetReadDeadline(time.Time{})
				return
			default:
			}
			if err != nil || m != 9 || buf[0] != 'A' {
				continue
			}
			if v := binary.BigEndian.Uint64(buf[1:]); v > acked.Load() {
				acked.Store(v)
			}
		}
	})

	start := time.Now()
	chunk := make([]byte, bulkChunk)
	chunk[0] = 'D'
	for i := range bulkChunk - 9 {
		chunk[9+i] = byte(i)
	}
	for seq := uint64(0); seq < n; seq++ {
		last, lastMove := acked.Load(), time.Now()
		for seq-acked.Load() >= bulkWindow {
			if a := acked.Load(); a != last {
				last, lastMove = a, time.Now()
			}
			if time.Since(lastMove) > 3*time.Second {
				t.Fatalf("stalled at chunk %d of %d: the receiver has %d in a row; chunks were lost", seq, n, acked.Load())
			}
			time.Sleep(50 * time.Microsecond)
		}
		binary.BigEndian.PutUint64(chunk[1:], seq)
		if _, err := src.WriteTo(chunk, dstAddr); err != nil {
			t.Fatalf("send chunk %d: %v", seq, err)
		}
	}
	if err := <-recvErr; err != nil {
		t.Fatalf("receiver (had %d of %d in a row): %v", acked.Load(), n, err)
	}
	el := time.Since(start)
	t.Logf("%d chunks of %d bytes in %v (%.1f MB/s)", n, bulkChunk, el.Round(time.Millisecond), float64(total)/el.Seconds()/1e6)
}

// bigBuffers gives the test's UDP peer socket buffers that hold a whole
// window, forcing past net.core.rmem_max where the test may (root).
func bigBuffers(t *testing.T, c *net.UDPConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	_ = rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{syscall.SO_RCVBUFFORCE, syscall.SO_RCVBUF}, {syscall.SO_SNDBUFFORCE, syscall.SO_SNDBUF}} {
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o[0], 4<<20) != nil {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o[1], 4<<20)
			}
		}
	})
}

// TestStrangerDiscarded: datagrams to a TCP client's relay from a peer with
// no permission are discarded by the event loop (RFC 8656 §9), counted, and
// do not hold up the permitted peer's data behind them.
func TestStrangerDiscarded(t *testing.T) {
	srv := startServer(t, nil)
	server := srv.addr(t, "tcp", "4")
	c := newClient(t, dialClient(t, "tcp", server), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	defer relay.Close()
	echo := udpEcho(t, "127.0.0.1")
	echoThrough(t, relay, echo)

	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Skipf("no 127.0.0.2 here: %v", err)
	}
	defer stranger.Close()
	const flood = 500
	for range flood {
		if _, err := stranger.WriteTo(make([]byte, 500), relay.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	dropped := srv.metrics.Dropped.WithLabelValues("no_permission")
	deadline := time.Now().Add(3 * time.Second)
	for counterValue(t, dropped) < flood && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := counterValue(t, dropped); n != flood {
		t.Fatalf("no_permission drops %v, want %d", n, flood)
	}
	echoThrough(t, relay, echo)
}
