//go:build linux

package kfast

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// FuzzProgram feeds frames to the program (BPF_PROG_TEST_RUN), starting
// from valid ChannelData and peer datagrams of both families, and checks
// what it promises for any input: a frame it passes comes back unchanged;
// a frame it relays comes back as one well-formed datagram (lengths
// consistent, IPv4 header checksum right, and the UDP checksum right
// whenever the input's was) addressed to the flow's peer or client; it
// never drops.
func FuzzProgram(f *testing.F) {
	needRoot(f)
	tp := newTopo(f, false)
	p := openIn(f, tp.Server)
	dests := map[netip.Addr]bool{}
	for _, fam := range families {
		client := netip.AddrPortFrom(fam.client, 40001)
		listener := netip.AddrPortFrom(fam.listen, 3478)
		relay := netip.AddrPortFrom(fam.relay, 50002)
		peer := netip.AddrPortFrom(fam.peer, 60003)
		if err := p.Bind(Flow{Alloc: 1, Client: client, Listener: listener, Relay: relay, Peer: peer,
			Channel: 0x4001, Expires: time.Now().Add(time.Hour)}); err != nil {
			f.Fatal(err)
		}
		dests[fam.client], dests[fam.peer] = true, true
		for _, n := range []int{0, 1, 7, 64, 1000} {
			f.Add(buildUDP(client, listener, channelData(0x4001, payload(n, byte(n)), nil), 64))
			f.Add(buildUDP(client, listener, channelData(0x4001, payload(n, byte(n)), []byte{1, 2, 3}[:(4-n%4)%4]), 64))
			f.Add(buildUDP(peer, relay, payload(n, byte(n)), 64))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > 4000 {
			return // the kernel wants an Ethernet header; keep runs short
		}
		opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
		ret, err := p.objs.IcegateRelay.Run(&opts)
		if err != nil {
			// BPF_PROG_TEST_RUN itself refuses some frames (EINVAL: an
			// IPv4 EtherType with less than an IPv4 header, say) before
			// the program sees them.
			return
		}
		out := opts.DataOut
		switch ret {
		case tcActOK:
			if !bytes.Equal(out, in) {
				t.Fatalf("passed frame changed:\n in % x\nout % x", in, out)
			}
			return
		case tcActRedirect:
		default:
			t.Fatalf("verdict %d for % x", ret, in)
		}
		var dst netip.Addr
		var ulen int
		switch {
		case out[12] == 0x08 && out[13] == 0x00:
			if len(out) < 34+8 || int(binary.BigEndian.Uint16(out[16:])) != len(out)-14 {
				t.Fatalf("relayed IPv4 frame with a wrong length: % x", out)
			}
			dst = netip.AddrFrom4([4]byte(out[30:34]))
			ulen = int(binary.BigEndian.Uint16(out[38:]))
			if ulen != len(out)-34 {
				t.Fatalf("UDP length %d in a %d-byte frame", ulen, len(out))
			}
		case out[12] == 0x86 && out[13] == 0xdd:
			if len(out) < 54+8 || int(binary.BigEndian.Uint16(out[18:])) != len(out)-54 {
				t.Fatalf("relayed IPv6 frame with a wrong length: % x", out)
			}
			dst = netip.AddrFrom16([16]byte(out[38:54]))
			ulen = int(binary.BigEndian.Uint16(out[58:]))
			if ulen != len(out)-54 {
				t.Fatalf("UDP length %d in a %d-byte frame", ulen, len(out))
			}
		default:
			t.Fatalf("relayed a frame that is neither IPv4 nor IPv6: % x", in)
		}
		if !dests[dst] {
			t.Fatalf("relayed to %v", dst)
		}
		if validUDP(in) {
			checkFrame(t, out)
		}
	})
}

// validUDP reports whether a frame is a whole IPv4 or IPv6 UDP datagram
// with a correct checksum (a relay does not repair a broken one).
func validUDP(f []byte) bool {
	var src, dst netip.Addr
	var udp []byte
	switch {
	case len(f) >= 34+8 && f[12] == 0x08 && f[13] == 0x00:
		n := int(binary.BigEndian.Uint16(f[16:]))
		if f[14] != 0x45 || n < 28 || 14+n > len(f) {
			return false
		}
		src, dst = netip.AddrFrom4([4]byte(f[26:30])), netip.AddrFrom4([4]byte(f[30:34]))
		udp = f[34 : 14+n]
	case len(f) >= 54+8 && f[12] == 0x86 && f[13] == 0xdd:
		n := int(binary.BigEndian.Uint16(f[18:]))
		if 54+n > len(f) {
			return false
		}
		src, dst = netip.AddrFrom16([16]byte(f[22:38])), netip.AddrFrom16([16]byte(f[38:54]))
		udp = f[54 : 54+n]
	default:
		return false
	}
	if len(udp) < 8 || int(binary.BigEndian.Uint16(udp[4:])) != len(udp) {
		return false
	}
	u := append([]byte(nil), udp...)
	got := binary.BigEndian.Uint16(u[6:])
	u[6], u[7] = 0, 0
	return got == udpChecksum(src, dst, u)
}
