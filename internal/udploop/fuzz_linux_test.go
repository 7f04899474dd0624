//go:build linux

package udploop

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

// FuzzFlush drives a loop's outbox with any mix of datagram sizes (empty,
// tiny, equal runs that make segment trains, shorter last ones, too large to
// segment) for two destinations, more than one outbox holds, and checks
// that every datagram arrives whole, once and in its order at its
// destination. Each input is a plan of 3-byte entries: the destination
// (low bit) and the size (the next two bytes, modulo BufSize+1).
func FuzzFlush(f *testing.F) {
	f.Add([]byte{0, 0, 100, 1, 0, 100, 0, 0, 100, 0, 0, 50, 0, 0, 100})
	f.Add([]byte{0, 5, 220, 0, 5, 220, 1, 0, 0, 0, 0, 1})
	f.Add(bytes.Repeat([]byte{0, 0, 200}, 40))
	f.Add(bytes.Repeat([]byte{1, 1, 0, 0, 1, 0}, 30))
	l, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(l.Close)
	s, err := l.Open(netip.MustParseAddrPort("127.0.0.1:0"), SocketConfig{Buffer: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	var rcv [2]*net.UDPConn
	var to [2]netip.AddrPort
	for i := range rcv {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { _ = c.Close() })
		_ = c.SetReadBuffer(4 << 20)
		rcv[i], to[i] = c, c.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	var seq uint32 // tells this input's datagrams from a previous one's
	buf := make([]byte, BufSize+1)
	f.Fuzz(func(t *testing.T, plan []byte) {
		if len(plan) > 3*3*outboxSize {
			plan = plan[:3*3*outboxSize]
		}
		var want [2][][]byte
		for ; len(plan) >= 3; plan = plan[3:] {
			d := plan[0] & 1
			size := int(binary.BigEndian.Uint16(plan[1:])) % (BufSize + 1)
			seq++
			p := make([]byte, size)
			for i := range p {
				p[i] = byte(seq) + byte(i)
			}
			if size >= 4 {
				binary.BigEndian.PutUint32(p, seq)
			}
			want[d] = append(want[d], p)
			l.Send(s, p, to[d])
		}
		l.flush()
		for d := range rcv {
			_ = rcv[d].SetReadDeadline(time.Now().Add(5 * time.Second))
			for i, w := range want[d] {
				n, err := rcv[d].Read(buf)
				if err != nil {
					t.Fatalf("destination %d, datagram %d of %d: %v", d, i, len(want[d]), err)
				}
				if !bytes.Equal(buf[:n], w) {
					t.Fatalf("destination %d, datagram %d: got %d bytes starting % x, want %d starting % x",
						d, i, n, buf[:min(n, 4)], len(w), w[:min(len(w), 4)])
				}
			}
		}
	})
}
