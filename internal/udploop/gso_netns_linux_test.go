//go:build linux

package udploop

import (
	"net"
	"net/netip"
	"testing"

	"icegate/internal/netnstest"
)

// TestSegmentationOverDevices sends segment trains over a real device (a
// veth pair between two network namespaces of the test's own, on
// 198.51.100.0/24) rather than loopback: with a 1500-byte MTU the train
// arrives as datagrams; with a 1280-byte MTU the kernel refuses 1300-byte
// segments (EINVAL) and the loop sends them one by one; with the device's
// checksum offload off, older kernels cannot segment at all (EIO: the loop
// stops trying on that socket) and newer ones segment in software. Every
// datagram arrives whole and in order.
// It needs root (for the namespaces), ip and ethtool; `make test` runs it
// as root in CI.
func TestSegmentationOverDevices(t *testing.T) {
	netnstest.Need(t, "segmentation over a veth", "ethtool")
	for _, tc := range []struct {
		name   string
		mtu    int
		txOff  bool
		size   int
		trains uint64 // in the first flush
		calls  uint64 // system calls of the first flush
		limit  int32  // the socket's segment limit after it
	}{
		{name: "mtu-1500", mtu: 1500, size: 1200, trains: 1, calls: 1, limit: gsoMaxSegment},
		// A failed sendmmsg, then 20 sendmsg; no trains of 1300 again.
		{name: "mtu-1280-refused", mtu: 1280, size: 1300, trains: 0, calls: 21, limit: 1299},
		{name: "no-checksum-offload", mtu: 1500, txOff: true, size: 1200, trains: 1, calls: 1, limit: gsoMaxSegment},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nsA, nsB := vethPair(t, tc.mtu, tc.txOff)
			l, err := New(Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Close)
			var s *Socket
			netnstest.In(t, nsA, func() error {
				s, err = l.Open(netip.MustParseAddrPort("198.51.100.1:0"), SocketConfig{Buffer: 1 << 20})
				return err
			})
			t.Cleanup(func() { _ = s.Close() })
			var rc *net.UDPConn
			netnstest.In(t, nsB, func() error {
				rc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 51, 100, 2)})
				return err
			})
			t.Cleanup(func() { _ = rc.Close() })
			_ = rc.SetReadBuffer(1 << 20)
			to := rc.LocalAddr().(*net.UDPAddr).AddrPort()

			var want [][]byte
			for i := range 20 {
				p := datagram(i, tc.size)
				want = append(want, p)
				l.Send(s, p, to)
			}
			l.flush()
			expectDatagrams(t, rc, want)
			if tc.txOff && s.gsoMax.Load() == 0 {
				// This kernel refused (EIO): one by one, and no trains again.
				t.Log("the kernel does not segment without checksum offload (EIO)")
				tc.trains, tc.calls, tc.limit = 0, 21, 0
			}
			if got := l.stats.trains.Load(); got != tc.trains {
				t.Errorf("%d segment trains sent, want %d", got, tc.trains)
			}
			if got := l.stats.sendCalls.Load(); got != tc.calls {
				t.Errorf("%d send calls, want %d", got, tc.calls)
			}
			if got := s.gsoMax.Load(); got != tc.limit {
				t.Errorf("the socket's segment limit is %d, want %d", got, tc.limit)
			}
			// The next flush goes the way the socket now knows works: one
			// sendmmsg, as a train only if the size is still allowed.
			want = want[:0]
			for i := range 5 {
				p := datagram(100+i, tc.size)
				want = append(want, p)
				l.Send(s, p, to)
			}
			l.flush()
			expectDatagrams(t, rc, want)
			wantTrains := tc.trains
			if int32(tc.size) <= tc.limit {
				wantTrains++
			}
			if got := l.stats.trains.Load(); got != wantTrains {
				t.Errorf("second flush: %d segment trains in all, want %d", got, wantTrains)
			}
			if got := l.stats.sendCalls.Load(); got != tc.calls+1 {
				t.Errorf("second flush: %d send calls in all, want %d", got, tc.calls+1)
			}
		})
	}
}

// vethPair creates two namespaces joined by a veth pair, 198.51.100.1 in
// the first and .2 in the second, checksum offload off on the first's end
// when txOff, and removes them when the test ends.
func vethPair(t *testing.T, mtu int, txOff bool) (string, string) {
	t.Helper()
	tp := netnstest.New(t, "icegso", "a", "b")
	tp.Veth("a", "va", "b", "vb", mtu)
	tp.Addr("a", "va", "198.51.100.1/24")
	tp.Addr("b", "vb", "198.51.100.2/24")
	if txOff {
		tp.TxChecksumOff("a", "va")
	}
	return tp.NS("a"), tp.NS("b")
}
