//go:build linux

package kfast

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"icegate/internal/netnstest"
)

const (
	tcActOK       = 0
	tcActRedirect = 7
)

// openIn opens the program in a namespace of the topology, skipping the
// test with the reason when this kernel or process cannot load it, and
// failing it, with the verifier's log, when the verifier refuses it. It
// is closed when the test (or benchmark, or fuzz target) ends.
func openIn(t testing.TB, ns string) *Program {
	t.Helper()
	return openWith(t, ns, Config{})
}

func openWith(t testing.TB, ns string, cfg Config) *Program {
	t.Helper()
	var p *Program
	err := netnstest.Do(ns, func() error {
		var err error
		p, err = Open(cfg)
		return err
	})
	var le *LoadError
	switch {
	case errors.As(err, &le):
		// Keep the whole verifier log in the test output.
		for _, l := range le.Log {
			t.Log(l)
		}
		t.Fatal(err)
	case errors.Is(err, ErrNotSupported), errors.Is(err, ErrPermission):
		t.Skipf("kfast: cannot load the program here: %v", err)
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// run feeds one frame to the program (BPF_PROG_TEST_RUN) and returns its
// verdict and the frame as the program left it.
func run(t testing.TB, p *Program, in []byte) (uint32, []byte) {
	t.Helper()
	opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
	ret, err := p.objs.IcegateRelay.Run(&opts)
	if err != nil {
		t.Fatal(err)
	}
	return ret, opts.DataOut // cut to the length the program left
}

// channelData is a client's ChannelData message: header, data, pad.
func channelData(ch uint16, data, pad []byte) []byte {
	b := make([]byte, 4, 4+len(data)+len(pad))
	binary.BigEndian.PutUint16(b, ch)
	binary.BigEndian.PutUint16(b[2:], uint16(len(data)))
	return append(append(b, data...), pad...)
}

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

type family struct {
	name                        string
	client, listen, relay, peer netip.Addr
}

var families = []family{
	{"ipv4", netnstest.ClientIP4, netnstest.ListenIP4, netnstest.RelayIP4, netnstest.PeerIP4},
	{"ipv6", netnstest.ClientIP6, netnstest.ListenIP6, netnstest.RelayIP6, netnstest.PeerIP6},
}

// TestProgramRun runs the program on crafted frames and compares what it
// makes of them byte for byte with frames built independently: ChannelData
// to UDP and UDP to ChannelData for IPv4 and IPv6 and many sizes, with and
// without padding; everything it must not touch comes back unchanged and
// TC_ACT_OK; an expired entry and an unbound channel are not relayed; the
// counters match.
func TestProgramRun(t *testing.T) {
	needRoot(t)
	tp := newTopo(t, false)
	p := openIn(t, tp.Server)

	sizes := []int{0, 1, 2, 3, 4, 5, 100, 1000, 1400, 1440}
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			client := netip.AddrPortFrom(fam.client, 40001)
			listener := netip.AddrPortFrom(fam.listen, 3478)
			relay := netip.AddrPortFrom(fam.relay, 50002)
			peer := netip.AddrPortFrom(fam.peer, 60003)
			const ch = 0x4001
			alloc := uint64(7)
			if fam.client.Is6() {
				alloc = 8
			}
			f := Flow{Alloc: alloc, Client: client, Listener: listener, Relay: relay, Peer: peer,
				Channel: ch, Expires: time.Now().Add(time.Minute)}
			if err := p.Bind(f); err != nil {
				t.Fatal(err)
			}
			var want Counters
			for _, n := range sizes {
				for padN := 0; padN <= 3; padN++ {
					data := payload(n, byte(n+padN))
					pad := []byte{0xa1, 0xb2, 0xc3}[:padN]
					in := buildUDP(client, listener, channelData(ch, data, pad), 61)
					checkFrame(t, in)
					ret, out := run(t, p, in)
					exp := buildUDP(relay, peer, data, 64)
					if ret != tcActRedirect || !bytes.Equal(out, exp) {
						t.Fatalf("client->peer %d bytes, %d pad: verdict %d\n got % x\nwant % x", n, padN, ret, out, exp)
					}
					checkFrame(t, out)
					want.ToPeerPackets++
					want.ToPeerBytes += uint64(n)
				}
				data := payload(n, byte(n+9))
				in := buildUDP(peer, relay, data, 62)
				ret, out := run(t, p, in)
				exp := buildUDP(listener, client, channelData(ch, data, nil), 64)
				if ret != tcActRedirect || !bytes.Equal(out, exp) {
					t.Fatalf("peer->client %d bytes: verdict %d\n got % x\nwant % x", n, ret, out, exp)
				}
				checkFrame(t, out)
				want.ToClientPackets++
				want.ToClientBytes += uint64(n)
			}
			// A link-layer trailer (Ethernet pads frames to 60 bytes) is
			// not part of the datagram and is not relayed.
			trailer := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			for _, n := range []int{0, 2} {
				data := payload(n, 0x55)
				in := append(buildUDP(client, listener, channelData(ch, data, nil), 64), trailer...)
				if ret, out := run(t, p, in); ret != tcActRedirect || !bytes.Equal(out, buildUDP(relay, peer, data, 64)) {
					t.Errorf("client->peer with a trailer, %d bytes: verdict %d, % x", n, ret, out)
				}
				in = append(buildUDP(peer, relay, data, 64), trailer...)
				if ret, out := run(t, p, in); ret != tcActRedirect || !bytes.Equal(out, buildUDP(listener, client, channelData(ch, data, nil), 64)) {
					t.Errorf("peer->client with a trailer, %d bytes: verdict %d, % x", n, ret, out)
				}
				want.ToPeerPackets++
				want.ToPeerBytes += uint64(n)
				want.ToClientPackets++
				want.ToClientBytes += uint64(n)
			}
			if got, err := p.Counters(alloc); err != nil || got != want {
				t.Errorf("counters %+v, %v; want %+v", got, err, want)
			}

			// What the program must pass up untouched.
			stun := make([]byte, 20) // a Binding request header
			stun[1] = 0x01
			binary.BigEndian.PutUint32(stun[4:], 0x2112A442)
			other := netip.AddrPortFrom(fam.client, 40002)
			short := channelData(ch, payload(10, 1), nil)[:8] // length beyond the datagram
			pass := map[string][]byte{
				"stun":                buildUDP(client, listener, stun, 64),
				"unbound channel":     buildUDP(client, listener, channelData(0x4002, payload(10, 1), nil), 64),
				"other client port":   buildUDP(other, listener, channelData(ch, payload(10, 1), nil), 64),
				"other listener":      buildUDP(client, netip.AddrPortFrom(fam.listen, 3479), channelData(ch, payload(10, 1), nil), 64),
				"length beyond data":  buildUDP(client, listener, short, 64),
				"4 bytes of padding":  buildUDP(client, listener, channelData(ch, payload(10, 1), []byte{1, 2, 3, 4}), 64),
				"too short":           buildUDP(client, listener, []byte{0x40, 0x01}, 64),
				"peer without entry":  buildUDP(netip.AddrPortFrom(fam.peer, 60004), relay, payload(10, 1), 64),
				"peer to other relay": buildUDP(peer, netip.AddrPortFrom(fam.relay, 50003), payload(10, 1), 64),
			}
			// Too big for the egress device's MTU (1500) once rewritten.
			ipHdr := 20
			if fam.client.Is6() {
				ipHdr = 40
			}
			pass["peer datagram over the MTU with ChannelData"] = buildUDP(peer, relay, payload(1500-ipHdr-8, 1), 64)
			pass["ChannelData over the MTU without its header"] = buildUDP(client, listener, channelData(ch, payload(1500-ipHdr-8+1, 1), nil), 64)
			if fam.client.Is4() {
				zero := buildUDP(client, listener, channelData(ch, payload(10, 1), nil), 64)
				zero[34+6], zero[34+7] = 0, 0 // no UDP checksum (RFC 768)
				pass["ipv4 no udp checksum"] = zero
				frag := buildUDP(peer, relay, payload(10, 1), 64)
				frag[14+6] |= 0x20 // more fragments
				pass["fragment"] = frag
				tcp := buildUDP(peer, relay, payload(10, 1), 64)
				tcp[14+9] = 6
				pass["tcp"] = tcp
				opts := buildUDP(peer, relay, payload(10, 1), 64)
				opts[14] = 0x46 // IHL 6: an option the program does not parse
				pass["ip options"] = opts
			} else {
				ext := buildUDP(peer, relay, payload(10, 1), 64)
				ext[14+6] = 0 // a hop-by-hop header first
				pass["extension header"] = ext
			}
			for name, in := range pass {
				ret, out := run(t, p, in)
				if ret != tcActOK || !bytes.Equal(out, in) {
					t.Errorf("%s: verdict %d, frame changed: %v", name, ret, !bytes.Equal(out, in))
				}
			}
			if got, _ := p.Counters(alloc); got != want {
				t.Errorf("counters moved on passed packets: %+v, want %+v", got, want)
			}

			// An entry past its deadline is refused by the kernel itself.
			f.Expires = time.Now().Add(50 * time.Millisecond)
			if err := p.Bind(f); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			for _, in := range [][]byte{
				buildUDP(client, listener, channelData(ch, payload(10, 1), nil), 64),
				buildUDP(peer, relay, payload(10, 1), 64),
			} {
				if ret, out := run(t, p, in); ret != tcActOK || !bytes.Equal(out, in) {
					t.Errorf("expired entry: verdict %d", ret)
				}
			}
			// Unbound, the channel is not relayed either.
			f.Expires = time.Now().Add(time.Minute)
			if err := p.Bind(f); err != nil {
				t.Fatal(err)
			}
			p.Unbind(client, listener, ch)
			if ret, _ := run(t, p, buildUDP(client, listener, channelData(ch, payload(10, 1), nil), 64)); ret != tcActOK {
				t.Errorf("unbound channel: verdict %d", ret)
			}
			if ret, _ := run(t, p, buildUDP(peer, relay, payload(10, 1), 64)); ret != tcActOK {
				t.Errorf("peer of an unbound channel: verdict %d", ret)
			}
			c, err := p.RemoveAllocation(alloc)
			if err != nil || c != want {
				t.Errorf("RemoveAllocation: %+v, %v; want %+v", c, err, want)
			}
		})
	}
	if rw, rd, err := p.Failures(); err != nil || rw != 0 || rd != 0 {
		t.Errorf("failures: rewrite %d, redirect %d, %v", rw, rd, err)
	}
}

// TestBindRefuses checks the flows the kernel does not take.
func TestBindRefuses(t *testing.T) {
	needRoot(t)
	tp := newTopo(t, false)
	p := openIn(t, tp.Server)
	ok := Flow{Alloc: 1, Client: netip.AddrPortFrom(netnstest.ClientIP4, 1000), Listener: netip.AddrPortFrom(netnstest.ListenIP4, 3478),
		Relay: netip.AddrPortFrom(netnstest.RelayIP4, 50000), Peer: netip.AddrPortFrom(netnstest.PeerIP4, 2000), Channel: 0x4000,
		Expires: time.Now().Add(time.Minute)}
	for name, tc := range map[string]struct {
		edit func(*Flow)
		err  error
	}{
		"mixed families": {func(f *Flow) { f.Peer = netip.AddrPortFrom(netnstest.PeerIP6, 2000) }, ErrFlow},
		"channel 0x3fff": {func(f *Flow) { f.Channel = 0x3fff }, ErrFlow},
		"channel 0x8000": {func(f *Flow) { f.Channel = 0x8000 }, ErrFlow},
		"expired":        {func(f *Flow) { f.Expires = time.Now().Add(-time.Second) }, ErrFlow},
		"port 0":         {func(f *Flow) { f.Peer = netip.AddrPortFrom(netnstest.PeerIP4, 0) }, ErrFlow},
		"no route":       {func(f *Flow) { f.Peer = netip.AddrPortFrom(netip.MustParseAddr("10.200.9.9"), 2000) }, ErrNoRoute},
		"local peer":     {func(f *Flow) { f.Peer = netip.AddrPortFrom(netnstest.RelayIP4, 2000) }, ErrNoRoute},
	} {
		f := ok
		tc.edit(&f)
		if err := p.Bind(f); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", name, err, tc.err)
		}
	}
	if n := p.Flows(); n != 0 {
		t.Errorf("%d flows after refusals", n)
	}
	if err := p.Bind(ok); err != nil {
		t.Fatal(err)
	}
	if n := p.Flows(); n != 1 {
		t.Errorf("%d flows, want 1", n)
	}
}

// TestRebind checks that a new binding replaces what it conflicts with:
// a channel rebound to another peer (after its old binding lapsed, RFC
// 8656 §12: a binding is refreshed, never moved, while it lives), and a
// peer moved to another channel; and that ResetCounters zeroes.
func TestRebind(t *testing.T) {
	needRoot(t)
	tp := newTopo(t, false)
	p := openIn(t, tp.Server)
	client := netip.AddrPortFrom(netnstest.ClientIP4, 40001)
	listener := netip.AddrPortFrom(netnstest.ListenIP4, 3478)
	relay := netip.AddrPortFrom(netnstest.RelayIP4, 50002)
	peerA := netip.AddrPortFrom(netnstest.PeerIP4, 6000)
	peerB := netip.AddrPortFrom(netnstest.PeerIP4, 6001)
	exp := time.Now().Add(time.Minute)
	bind := func(peer netip.AddrPort, ch uint16) {
		t.Helper()
		if err := p.Bind(Flow{Alloc: 1, Client: client, Listener: listener, Relay: relay, Peer: peer, Channel: ch, Expires: exp}); err != nil {
			t.Fatal(err)
		}
	}
	// toPeer returns where the program sends ChannelData on ch, or nothing.
	toPeer := func(ch uint16) netip.AddrPort {
		t.Helper()
		ret, out := run(t, p, buildUDP(client, listener, channelData(ch, payload(8, 1), nil), 64))
		if ret != tcActRedirect {
			return netip.AddrPort{}
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(out[30:34])), binary.BigEndian.Uint16(out[36:38]))
	}
	// toClient returns the channel the program frames peer's data on, or 0.
	toClient := func(peer netip.AddrPort) uint16 {
		t.Helper()
		ret, out := run(t, p, buildUDP(peer, relay, payload(8, 1), 64))
		if ret != tcActRedirect {
			return 0
		}
		return binary.BigEndian.Uint16(out[42:44])
	}

	bind(peerA, 0x4000)
	if got := toPeer(0x4000); got != peerA {
		t.Fatalf("channel 0x4000 goes to %v, want %v", got, peerA)
	}
	// The channel now names peer B: A's datagrams are no longer framed.
	bind(peerB, 0x4000)
	if got := toPeer(0x4000); got != peerB {
		t.Errorf("after rebinding, channel 0x4000 goes to %v, want %v", got, peerB)
	}
	if ch := toClient(peerA); ch != 0 {
		t.Errorf("peer A still framed on %#x", ch)
	}
	if ch := toClient(peerB); ch != 0x4000 {
		t.Errorf("peer B framed on %#x, want 0x4000", ch)
	}
	// Peer B moves to channel 0x4001: 0x4000 is gone.
	bind(peerB, 0x4001)
	if got := toPeer(0x4000); got.IsValid() {
		t.Errorf("channel 0x4000 still goes to %v", got)
	}
	if ch := toClient(peerB); ch != 0x4001 {
		t.Errorf("peer B framed on %#x, want 0x4001", ch)
	}
	if n := p.Flows(); n != 1 {
		t.Errorf("%d flows, want 1", n)
	}
	if c, _ := p.Counters(1); c.ToPeerPackets != 2 || c.ToClientPackets != 2 {
		t.Errorf("counters %+v, want 2 packets each way", c)
	}
	// The same 5-tuple and channel in a new allocation (the old one was
	// deleted and the client allocated again from the same address):
	// removing the old allocation leaves the new flow alone.
	if err := p.Bind(Flow{Alloc: 2, Client: client, Listener: listener, Relay: relay, Peer: peerB, Channel: 0x4001, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.RemoveAllocation(1); err != nil {
		t.Fatal(err)
	}
	if got := toPeer(0x4001); got != peerB {
		t.Errorf("after removing allocation 1, allocation 2's channel goes to %v", got)
	}
	if c, _ := p.Counters(2); c.ToPeerPackets != 1 {
		t.Errorf("allocation 2's counters %+v, want 1 packet to the peer", c)
	}
	bind(peerB, 0x4001)
	if err := p.ResetCounters(1); err != nil {
		t.Fatal(err)
	}
	if c, _ := p.Counters(1); c != (Counters{}) {
		t.Errorf("counters after reset: %+v", c)
	}
}

// TestWildcard binds flows whose listener and relayed address are the
// unspecified address (sockets bound to [::], icegate's default): the
// program matches any local address and sends from the address the kernel
// picks for such a socket; an IPv4 client of a [::] listener is keyed as
// IPv4; an exact entry wins over a wildcard one.
func TestWildcard(t *testing.T) {
	needRoot(t)
	tp := newTopo(t, false)
	p := openIn(t, tp.Server)
	anyListen := netip.AddrPortFrom(netip.IPv6Unspecified(), 3478)
	anyRelay := netip.AddrPortFrom(netip.IPv6Unspecified(), 50002)
	for _, fam := range families {
		client := netip.AddrPortFrom(fam.client, 40001)
		listener := netip.AddrPortFrom(fam.listen, 3478)
		relay := netip.AddrPortFrom(fam.relay, 50002)
		peer := netip.AddrPortFrom(fam.peer, 60003)
		if err := p.Bind(Flow{Alloc: 1, Client: client, Listener: anyListen, Relay: anyRelay, Peer: peer,
			Channel: 0x4001, Expires: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 5, 1000} {
			data := payload(n, 9)
			if ret, out := run(t, p, buildUDP(client, listener, channelData(0x4001, data, nil), 64)); ret != tcActRedirect || !bytes.Equal(out, buildUDP(relay, peer, data, 64)) {
				t.Errorf("%s client->peer %d bytes: verdict %d\n% x", fam.name, n, ret, out)
			}
			if ret, out := run(t, p, buildUDP(peer, relay, data, 64)); ret != tcActRedirect || !bytes.Equal(out, buildUDP(listener, client, channelData(0x4001, data, nil), 64)) {
				t.Errorf("%s peer->client %d bytes: verdict %d\n% x", fam.name, n, ret, out)
			}
		}
		// An exact entry for the same client and channel wins.
		other := netip.AddrPortFrom(fam.peer, 60004)
		if err := p.Bind(Flow{Alloc: 2, Client: client, Listener: listener, Relay: netip.AddrPortFrom(fam.relay, 50003), Peer: other,
			Channel: 0x4001, Expires: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		data := payload(10, 1)
		if ret, out := run(t, p, buildUDP(client, listener, channelData(0x4001, data, nil), 64)); ret != tcActRedirect ||
			!bytes.Equal(out, buildUDP(netip.AddrPortFrom(fam.relay, 50003), other, data, 64)) {
			t.Errorf("%s: the exact entry did not win: verdict %d\n% x", fam.name, ret, out)
		}
		// Unbind names the listener as the flow did.
		p.Unbind(client, anyListen, 0x4001)
		p.Unbind(client, listener, 0x4001)
		if n := p.Flows(); n != 0 {
			t.Errorf("%s: %d flows after Unbind", fam.name, n)
		}
	}
}
