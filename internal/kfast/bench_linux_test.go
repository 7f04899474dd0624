//go:build linux

package kfast

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"icegate/internal/netnstest"
)

// BenchmarkProgram runs the program on one frame per BPF_PROG_TEST_RUN
// call: a frame it passes (a STUN message), and 100- and 1000-byte
// payloads each way. Each call also pays for the system call and for
// building the skb, so the program's own cost per datagram is the
// difference to "pass".
func BenchmarkProgram(b *testing.B) {
	if testing.Short() {
		b.Skip("needs root and network namespaces")
	}
	needRoot(b)
	tp := newTopo(b, false)
	p := openIn(b, tp.Server)
	client := netip.AddrPortFrom(netnstest.ClientIP4, 40001)
	listener := netip.AddrPortFrom(netnstest.ListenIP4, 3478)
	relay := netip.AddrPortFrom(netnstest.RelayIP4, 50002)
	peer := netip.AddrPortFrom(netnstest.PeerIP4, 60003)
	if err := p.Bind(Flow{Alloc: 1, Client: client, Listener: listener, Relay: relay, Peer: peer,
		Channel: 0x4001, Expires: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	stun := make([]byte, 20)
	stun[1] = 1
	for _, bc := range []struct {
		name string
		in   []byte
		want uint32
	}{
		{"pass", buildUDP(client, listener, stun, 64), tcActOK},
		{"client-to-peer-100", buildUDP(client, listener, channelData(0x4001, payload(100, 1), nil), 64), tcActRedirect},
		{"client-to-peer-1000", buildUDP(client, listener, channelData(0x4001, payload(1000, 1), nil), 64), tcActRedirect},
		{"peer-to-client-100", buildUDP(peer, relay, payload(100, 1), 64), tcActRedirect},
		{"peer-to-client-1000", buildUDP(peer, relay, payload(1000, 1), 64), tcActRedirect},
	} {
		b.Run(bc.name, func(b *testing.B) {
			out := make([]byte, len(bc.in)+64)
			for b.Loop() {
				opts := ebpf.RunOptions{Data: bc.in, DataOut: out}
				ret, err := p.objs.IcegateRelay.Run(&opts)
				if err != nil || ret != bc.want {
					b.Fatalf("verdict %d, %v", ret, err)
				}
			}
		})
	}
}
