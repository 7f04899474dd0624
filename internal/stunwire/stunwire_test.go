package stunwire

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	pionstun "github.com/pion/stun/v4"
)

var addrs = []netip.AddrPort{
	netip.MustParseAddrPort("203.0.113.7:40000"),
	netip.MustParseAddrPort("[2001:db8::7]:3478"),
	netip.MustParseAddrPort("[::ffff:198.51.100.1]:1"),
	netip.MustParseAddrPort("0.0.0.0:0"),
	netip.MustParseAddrPort("[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
}

// The address codec agrees with pion's in both directions.
func TestAddrMatchesPion(t *testing.T) {
	for _, ap := range addrs {
		m := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest)
		txid := m.TransactionID[:]
		want := &pionstun.XORMappedAddress{IP: ap.Addr().Unmap().AsSlice(), Port: int(ap.Port())}
		if err := want.AddTo(m); err != nil {
			t.Fatal(err)
		}
		pv, _ := m.Get(pionstun.AttrXORMappedAddress)

		b := make([]byte, 24)
		n := PutAddr(b, AttrXORMappedAddress, ap, txid, true)
		if !bytes.Equal(b[4:n], pv) {
			t.Errorf("%v: PutAddr xor = %x, pion %x", ap, b[4:n], pv)
		}
		if got := AppendAddr(nil, ap, txid, true); !bytes.Equal(got, pv) {
			t.Errorf("%v: AppendAddr xor = %x, pion %x", ap, got, pv)
		}
		back, ok := ParseAddr(pv, txid, true)
		if !ok || back != netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) {
			t.Errorf("%v: ParseAddr = %v %v", ap, back, ok)
		}

		plain := &pionstun.MappedAddress{IP: ap.Addr().Unmap().AsSlice(), Port: int(ap.Port())}
		m2 := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, plain)
		pv2, _ := m2.Get(pionstun.AttrMappedAddress)
		if got := AppendAddr(nil, ap, nil, false); !bytes.Equal(got, pv2) {
			t.Errorf("%v: AppendAddr = %x, pion %x", ap, got, pv2)
		}
		if back, ok := ParseAddr(pv2, nil, false); !ok || back.Port() != ap.Port() {
			t.Errorf("%v: ParseAddr plain = %v %v", ap, back, ok)
		}
	}
}

func TestParseAddrRefuses(t *testing.T) {
	for name, v := range map[string][]byte{
		"empty":       nil,
		"short":       {0, 1, 0, 0},
		"v4 too long": {0, 1, 0, 0, 1, 2, 3, 4, 5},
		"v6 short":    {0, 2, 0, 0, 1, 2, 3, 4},
		"family 3":    {0, 3, 0, 0, 1, 2, 3, 4},
	} {
		if _, ok := ParseAddr(v, make([]byte, 12), true); ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAttrs(t *testing.T) {
	m := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest,
		pionstun.NewSoftware("abc"), pionstun.NewUsername("user"), pionstun.Fingerprint)
	var types []uint16
	it := Attrs(m.Raw)
	for it.Next() {
		types = append(types, it.Type)
	}
	if it.Err() || len(types) != 3 || types[0] != AttrSoftware || types[2] != AttrFingerprint {
		t.Fatalf("walk = %x err %v", types, it.Err())
	}
	if v, ok := Find(m.Raw, AttrSoftware); !ok || string(v) != "abc" {
		t.Fatalf("Find = %q %v", v, ok)
	}

	// An attribute running past the end is malformed; so is a stray tail.
	bad := append([]byte(nil), m.Raw...)
	bad[HeaderSize+3] = 200
	it = Attrs(bad)
	for it.Next() {
	}
	if !it.Err() {
		t.Error("overlong attribute not reported")
	}
	tail := append(append([]byte(nil), m.Raw...), 0, 1)
	it = Attrs(tail)
	for it.Next() {
	}
	if !it.Err() {
		t.Error("stray bytes not reported")
	}
}

func TestMessage(t *testing.T) {
	m := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.Fingerprint)
	if got, ok := Message(append(append([]byte(nil), m.Raw...), 9, 9, 9, 9)); !ok || len(got) != len(m.Raw) {
		t.Errorf("Message cut = %d %v", len(got), ok)
	}
	for name, b := range map[string][]byte{
		"short":        m.Raw[:19],
		"no cookie":    append([]byte{0, 1, 0, 0, 1, 2, 3, 4}, make([]byte, 12)...),
		"length odd":   append([]byte{0, 1, 0, 3}, m.Raw[4:]...),
		"past the end": append([]byte{0, 1, 0, 64}, m.Raw[4:]...),
		"top bits":     append([]byte{0x40, 1}, m.Raw[2:]...),
	} {
		if _, ok := Message(b); ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFingerprint(t *testing.T) {
	m := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.NewSoftware("x"), pionstun.Fingerprint)
	if !CheckFingerprint(m.Raw) {
		t.Fatal("pion's fingerprint refused")
	}
	bad := append([]byte(nil), m.Raw...)
	bad[len(bad)-1] ^= 1
	if CheckFingerprint(bad) {
		t.Error("wrong fingerprint accepted")
	}
	// FINGERPRINT must be last (RFC 8489 §14.7).
	notLast := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.Fingerprint)
	notLast.Add(pionstun.AttrSoftware, []byte("late"))
	notLast.WriteLength()
	if CheckFingerprint(notLast.Raw) {
		t.Error("fingerprint before another attribute accepted")
	}
	none := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest)
	if !CheckFingerprint(none.Raw) {
		t.Error("message without fingerprint refused")
	}
}

func TestChannelData(t *testing.T) {
	b := []byte{0x40, 0x01, 0, 3, 'a', 'b', 'c', 0}
	n, d, ok := ChannelData(b)
	if !ok || n != 0x4001 || string(d) != "abc" {
		t.Fatalf("ChannelData = %x %q %v", n, d, ok)
	}
	if _, _, ok := ChannelData([]byte{0x40, 0x01, 0, 9, 'a'}); ok {
		t.Error("short ChannelData accepted")
	}
	if _, _, ok := ChannelData([]byte{0x00, 0x01, 0, 0}); ok {
		t.Error("STUN taken for ChannelData")
	}
	h := make([]byte, 4)
	PutChannelDataHeader(h, 0x7FFF, 1000)
	if !bytes.Equal(h, []byte{0x7F, 0xFF, 0x03, 0xE8}) {
		t.Errorf("header = %x", h)
	}
}

// The channel numbers deployed clients use are kept; what no RFC allows is not.
func TestValidChannel(t *testing.T) {
	for n, want := range map[uint16]bool{
		0x0000: false, 0x3FFF: false, 0x4000: true, 0x4FFF: true,
		0x5000: true, 0x7FFF: true, 0x8000: false, 0xFFFF: false,
	} {
		if ValidChannel(n) != want {
			t.Errorf("ValidChannel(%#04x) = %v", n, !want)
		}
	}
}

func TestDataIndicationDecodesWithPion(t *testing.T) {
	for _, ap := range addrs[:3] {
		for _, n := range []int{0, 1, 3, 4, 1000} {
			b := make([]byte, DataIndicationHeadroom+n+3)
			for i := range n {
				b[DataIndicationHeadroom+i] = byte(i)
			}
			msg := DataIndication(b, n, ap, [12]byte{1, 2, 3})
			m := &pionstun.Message{Raw: append([]byte(nil), msg...)}
			if err := m.Decode(); err != nil {
				t.Fatalf("%v/%d: %v", ap, n, err)
			}
			if m.Type != pionstun.NewType(pionstun.MethodData, pionstun.ClassIndication) {
				t.Fatalf("type %v", m.Type)
			}
			var peer pionstun.XORMappedAddress
			if err := peer.GetFromAs(m, pionstun.AttrXORPeerAddress); err != nil {
				t.Fatal(err)
			}
			if got, _ := netip.AddrFromSlice(peer.IP); got.Unmap() != ap.Addr().Unmap() || peer.Port != int(ap.Port()) {
				t.Errorf("peer %v, want %v", peer, ap)
			}
			data, _ := m.Get(pionstun.AttrData)
			if len(data) != n || (n > 0 && data[n-1] != byte(n-1)) {
				t.Errorf("%v/%d: data %x", ap, n, data)
			}
		}
	}
}

func TestSendIndication(t *testing.T) {
	peer := &pionstun.XORMappedAddress{IP: net.ParseIP("198.51.100.9"), Port: 5000}
	build := func(extra ...pionstun.Setter) []byte {
		s := []pionstun.Setter{pionstun.TransactionID, pionstun.NewType(pionstun.MethodSend, pionstun.ClassIndication)}
		return pionstun.MustBuild(append(s, extra...)...).Raw
	}
	xorPeer := func(m *pionstun.Message) error { return peer.AddToAs(m, pionstun.AttrXORPeerAddress) }
	data := pionstun.RawAttribute{Type: pionstun.AttrData, Value: []byte("hello")}
	got, d, ok := SendIndication(build(setterFunc(xorPeer), data, pionstun.Fingerprint))
	if !ok || got != netip.MustParseAddrPort("198.51.100.9:5000") || string(d) != "hello" {
		t.Fatalf("SendIndication = %v %q %v", got, d, ok)
	}
	for name, m := range map[string][]byte{
		"no data":   build(setterFunc(xorPeer)),
		"no peer":   build(data),
		"extra":     build(setterFunc(xorPeer), data, pionstun.NewUsername("u")),
		"not send":  pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest).Raw,
		"truncated": build(setterFunc(xorPeer), data)[:30],
	} {
		if _, _, ok := SendIndication(m); ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

// BindingAnswer's bytes decode with pion to the right addresses, and it
// refuses what the full path must see.
func TestBindingAnswer(t *testing.T) {
	out := make([]byte, 256)
	for _, ap := range addrs[:3] {
		req := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.Fingerprint)
		resp := BindingAnswer(req.Raw, out, ap, "icegate")
		if resp == nil {
			t.Fatalf("%v: no answer", ap)
		}
		m := &pionstun.Message{Raw: append([]byte(nil), resp...)}
		if err := m.Decode(); err != nil {
			t.Fatal(err)
		}
		if m.TransactionID != req.TransactionID || m.Type != pionstun.BindingSuccess {
			t.Fatalf("%v: header %v", ap, m)
		}
		if err := pionstun.Fingerprint.Check(m); err != nil {
			t.Errorf("%v: fingerprint: %v", ap, err)
		}
		var x pionstun.XORMappedAddress
		if err := x.GetFrom(m); err != nil || x.Port != int(ap.Port()) {
			t.Errorf("%v: XOR-MAPPED-ADDRESS %v %v", ap, x, err)
		}
		var sw pionstun.Software
		if err := sw.GetFrom(m); err != nil || sw.String() != "icegate" {
			t.Errorf("software %q %v", sw, err)
		}
	}
	src := addrs[0]
	badFP := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.Fingerprint).Raw
	badFP[len(badFP)-1] ^= 0xFF
	for name, req := range map[string][]byte{
		"wrong fingerprint": badFP,
		"username":          pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.NewUsername("u")).Raw,
		"trailing bytes":    append(pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest).Raw, 0, 0, 0, 0),
		"allocate":          pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest)).Raw,
	} {
		if BindingAnswer(req, out, src, "icegate") != nil {
			t.Errorf("%s: answered", name)
		}
	}
	if BindingAnswer(pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest).Raw, out[:50], src, "icegate") != nil {
		t.Error("answered into a buffer too small")
	}
}

func TestErrorCode(t *testing.T) {
	m := pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassErrorResponse),
		pionstun.CodeInsufficientCapacity)
	if got := ErrorCode(m.Raw); got != 508 {
		t.Errorf("ErrorCode = %d", got)
	}
	ok := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingSuccess)
	if got := ErrorCode(ok.Raw); got != 0 {
		t.Errorf("success ErrorCode = %d", got)
	}
}

// The per-packet functions allocate nothing.
func TestNoAllocations(t *testing.T) {
	req := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.Fingerprint).Raw
	out := make([]byte, 256)
	peer := &pionstun.XORMappedAddress{IP: net.ParseIP("2001:db8::1"), Port: 5000}
	send := pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodSend, pionstun.ClassIndication),
		setterFunc(func(m *pionstun.Message) error { return peer.AddToAs(m, pionstun.AttrXORPeerAddress) }),
		pionstun.RawAttribute{Type: pionstun.AttrData, Value: make([]byte, 100)}).Raw
	buf := make([]byte, 2048)
	from := netip.MustParseAddrPort("[2001:db8::9]:9")
	cd := []byte{0x40, 0x00, 0, 4, 1, 2, 3, 4}
	n := testing.AllocsPerRun(100, func() {
		_ = BindingAnswer(req, out, from, "icegate")
		_, _, _ = SendIndication(send)
		_ = DataIndication(buf, 1000, from, [12]byte{})
		_, _, _ = ChannelData(cd)
		_ = CheckFingerprint(req)
	})
	if n != 0 {
		t.Errorf("%v allocations per run", n)
	}
}

func BenchmarkBindingAnswer(b *testing.B) {
	req := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.Fingerprint).Raw
	out := make([]byte, 256)
	from := netip.MustParseAddrPort("203.0.113.7:40000")
	b.ReportAllocs()
	for b.Loop() {
		_ = BindingAnswer(req, out, from, "icegate")
	}
}

func BenchmarkSendIndication(b *testing.B) {
	peer := &pionstun.XORMappedAddress{IP: net.ParseIP("198.51.100.1"), Port: 5000}
	send := pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodSend, pionstun.ClassIndication),
		setterFunc(func(m *pionstun.Message) error { return peer.AddToAs(m, pionstun.AttrXORPeerAddress) }),
		pionstun.RawAttribute{Type: pionstun.AttrData, Value: make([]byte, 1000)}).Raw
	b.ReportAllocs()
	for b.Loop() {
		_, _, _ = SendIndication(send)
	}
}

func BenchmarkDataIndication(b *testing.B) {
	buf := make([]byte, 2048)
	from := netip.MustParseAddrPort("198.51.100.1:5000")
	b.ReportAllocs()
	for b.Loop() {
		_ = DataIndication(buf, 1000, from, [12]byte{})
	}
}

// setterFunc adapts a function to pion's Setter.
type setterFunc func(*pionstun.Message) error

func (f setterFunc) AddTo(m *pionstun.Message) error { return f(m) }
