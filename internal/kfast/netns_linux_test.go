//go:build linux

package kfast

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"icegate/internal/netnstest"
)

// The tests run on netnstest's Relay topology (client, server and peer
// namespaces joined by veth pairs, on 10.200.0.0/16 and fd00::/8 only).

// needRoot skips a test that cannot run here, saying why.
func needRoot(t testing.TB) {
	t.Helper()
	netnstest.Need(t, "kfast: loading the program (CAP_BPF, CAP_NET_ADMIN) in network namespaces", "ethtool")
}

// newTopo builds the Relay topology; senderTxOff as netnstest.NewRelay.
func newTopo(t testing.TB, senderTxOff bool) *netnstest.Relay {
	t.Helper()
	return netnstest.NewRelay(t, "icekf", senderTxOff)
}

// udpCsumErrors reads InCsumErrors for UDP over IPv4 and IPv6 in a
// namespace: a datagram with a bad checksum is dropped silently there and
// counted only here.
func udpCsumErrors(t *testing.T, ns string) (v4, v6 uint64) {
	t.Helper()
	c4, c6 := netnstest.UDPStats(t, ns)
	return c4.InCsumErrors, c6.InCsumErrors
}

// The independent packet builder of the tests: Ethernet, IPv4 (no
// options, DF) or IPv6, UDP, checksums computed from scratch.

var (
	ipID     = uint16(0x1234)
	flowWord = uint32(0x6000_0000 | 0x0abcde) // version 6, traffic class 0, a flow label
)

func buildUDP(src, dst netip.AddrPort, payload []byte, ttl uint8) []byte {
	v6 := src.Addr().Is6()
	eth := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00}
	ulen := 8 + len(payload)
	udp := make([]byte, ulen)
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(ulen))
	copy(udp[8:], payload)
	var ip []byte
	if !v6 {
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+ulen))
		binary.BigEndian.PutUint16(ip[4:], ipID)
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = ttl
		ip[9] = 17
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], ^fold(sum16(ip)))
	} else {
		eth[12], eth[13] = 0x86, 0xdd
		ip = make([]byte, 40)
		binary.BigEndian.PutUint32(ip[0:], flowWord)
		binary.BigEndian.PutUint16(ip[4:], uint16(ulen))
		ip[6] = 17
		ip[7] = ttl
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	binary.BigEndian.PutUint16(udp[6:], udpChecksum(src.Addr(), dst.Addr(), udp))
	return append(append(eth, ip...), udp...)
}

// udpChecksum is RFC 768's checksum (RFC 8200 §8.1 for IPv6) of a UDP
// datagram whose checksum field is zero; 0 is sent as 0xffff.
func udpChecksum(src, dst netip.Addr, udp []byte) uint16 {
	var ph []byte
	ph = append(ph, src.AsSlice()...)
	ph = append(ph, dst.AsSlice()...)
	if src.Is4() {
		ph = append(ph, 0, 17, byte(len(udp)>>8), byte(len(udp)))
	} else {
		ph = append(ph, 0, 0, byte(len(udp)>>8), byte(len(udp)), 0, 0, 0, 17)
	}
	c := ^fold(sum16(ph) + sum16(udp))
	if c == 0 {
		c = 0xffff
	}
	return c
}

func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// checkFrame verifies a frame's IPv4 header checksum and UDP checksum by
// summing them, independently of how they were produced.
func checkFrame(t testing.TB, f []byte) {
	t.Helper()
	var src, dst netip.Addr
	var udp []byte
	switch {
	case f[12] == 0x08:
		ip := f[14:34]
		if fold(sum16(ip)) != 0xffff {
			t.Errorf("IPv4 header checksum wrong: % x", ip)
		}
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		udp = f[34:]
	default:
		ip := f[14:54]
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		udp = f[54:]
	}
	u := append([]byte(nil), udp...)
	got := binary.BigEndian.Uint16(u[6:])
	u[6], u[7] = 0, 0
	if want := udpChecksum(src, dst, u); got != want {
		t.Errorf("UDP checksum %#04x, want %#04x", got, want)
	}
}
