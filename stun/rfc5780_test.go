package stun

import (
	"encoding/binary"
	"net/netip"
	"testing"

	pionstun "github.com/pion/stun/v4"
)

var (
	a1p1 = netip.MustParseAddrPort("203.0.113.10:3478")
	a1p2 = netip.MustParseAddrPort("203.0.113.10:3479")
	a2p1 = netip.MustParseAddrPort("203.0.113.11:3478")
	a2p2 = netip.MustParseAddrPort("203.0.113.11:3479")
	four = [4]netip.AddrPort{a1p1, a1p2, a2p1, a2p2}
)

func changeRequest(flags byte) pionstun.Setter {
	return pionstun.RawAttribute{Type: pionstun.AttrChangeRequest, Value: []byte{0, 0, 0, flags}}
}

func responsePort(p uint16) pionstun.Setter {
	v := make([]byte, 4)
	binary.BigEndian.PutUint16(v, p)
	return pionstun.RawAttribute{Type: pionstun.AttrResponsePort, Value: v}
}

func padding(n int) pionstun.Setter {
	return pionstun.RawAttribute{Type: pionstun.AttrPadding, Value: make([]byte, n)}
}

// decoded answers req and decodes the reply, checking its fingerprint.
func decoded(t *testing.T, r *Responder, req Request) (Reply, *pionstun.Message) {
	t.Helper()
	rep, err := r.Answer(req)
	if err != nil {
		t.Fatal(err)
	}
	m := &pionstun.Message{Raw: rep.Data}
	if err := m.Decode(); err != nil {
		t.Fatalf("reply does not decode: %v", err)
	}
	if err := pionstun.Fingerprint.Check(m); err != nil {
		t.Fatalf("fingerprint: %v", err)
	}
	if m.TransactionID != req.Msg.TransactionID {
		t.Fatal("transaction ID differs")
	}
	return rep, m
}

func addrOf(t *testing.T, m *pionstun.Message, at pionstun.AttrType) netip.AddrPort {
	t.Helper()
	var a pionstun.MappedAddress
	if err := a.GetFromAs(m, at); err != nil {
		return netip.AddrPort{}
	}
	ip, _ := netip.AddrFromSlice(a.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port))
}

func errCode(m *pionstun.Message) int {
	var ec pionstun.ErrorCodeAttribute
	if ec.GetFrom(m) != nil {
		return 0
	}
	return int(ec.Code)
}

// TestChanged spells out RFC 5780 Table 1's "response sent from" column:
// the socket for each CHANGE-REQUEST on each receiving socket.
func TestChanged(t *testing.T) {
	const both = ChangeIP | ChangePort
	for _, c := range []struct {
		on    Socket
		flags byte
		want  Socket
	}{
		{Primary, 0, Primary}, {Primary, ChangePort, AltPort}, {Primary, ChangeIP, AltIP}, {Primary, both, AltBoth},
		{AltPort, 0, AltPort}, {AltPort, ChangePort, Primary}, {AltPort, ChangeIP, AltBoth}, {AltPort, both, AltIP},
		{AltIP, 0, AltIP}, {AltIP, ChangePort, AltBoth}, {AltIP, ChangeIP, Primary}, {AltIP, both, AltPort},
		{AltBoth, 0, AltBoth}, {AltBoth, ChangePort, AltIP}, {AltBoth, ChangeIP, AltPort}, {AltBoth, both, Primary},
		{Primary, 0xF9, Primary}, {AltIP, 0xF9 | ChangePort, AltBoth},
	} {
		if got := c.on.Changed(c.flags); got != c.want {
			t.Errorf("%s.Changed(%#x) = %s, want %s", c.on, c.flags, got, c.want)
		}
	}
}

// TestTable1 checks RFC 5780 §6.1 Table 1 from each of the four sockets:
// the response leaves from the receiving socket with the asked changes, says
// so in RESPONSE-ORIGIN, and OTHER-ADDRESS is always the socket with both
// changed.
func TestTable1(t *testing.T) {
	r, err := NewResponder(Config{Addrs: four})
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	for on := Primary; on <= AltBoth; on++ {
		for _, flags := range []byte{0, ChangePort, ChangeIP, ChangeIP | ChangePort} {
			setters := []pionstun.Setter{pionstun.TransactionID, pionstun.BindingRequest}
			if flags != 0 {
				setters = append(setters, changeRequest(flags))
			}
			req := Request{Msg: pionstun.MustBuild(setters...), Src: src, On: on}
			rep, m := decoded(t, r, req)
			want := on
			if flags&ChangeIP != 0 {
				want ^= AltIP
			}
			if flags&ChangePort != 0 {
				want ^= AltPort
			}
			if m.Type != pionstun.BindingSuccess || rep.From != want || rep.To != src {
				t.Errorf("on %s flags %#x: type %v from %s to %s, want success from %s to %s", on, flags, m.Type, rep.From, rep.To, want, src)
			}
			for name, c := range map[string]struct {
				at   pionstun.AttrType
				want netip.AddrPort
			}{
				"RESPONSE-ORIGIN":    {pionstun.AttrResponseOrigin, four[want]},
				"OTHER-ADDRESS":      {pionstun.AttrOtherAddress, four[on^AltBoth]},
				"MAPPED-ADDRESS":     {pionstun.AttrMappedAddress, src},
				"XOR-MAPPED-ADDRESS": {pionstun.AttrXORMappedAddress, src},
			} {
				var got netip.AddrPort
				if c.at == pionstun.AttrXORMappedAddress {
					var xa pionstun.XORMappedAddress
					if err := xa.GetFrom(m); err == nil {
						ip, _ := netip.AddrFromSlice(xa.IP)
						got = netip.AddrPortFrom(ip.Unmap(), uint16(xa.Port))
					}
				} else {
					got = addrOf(t, m, c.at)
				}
				if got != c.want {
					t.Errorf("on %s flags %#x: %s = %v, want %v", on, flags, name, got, c.want)
				}
			}
			if m.Contains(pionstun.AttrChangedAddress) || m.Contains(pionstun.AttrSourceAddress) {
				t.Errorf("RFC 3489 attributes without rfc3489")
			}
			if !m.Contains(pionstun.AttrSoftware) {
				t.Errorf("no SOFTWARE")
			}
		}
	}
}

func TestNoAlternate(t *testing.T) {
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	for _, r := range []*Responder{nil, {}, must(NewResponder(Config{Addrs: [4]netip.AddrPort{a1p1}}))} {
		rep, m := decoded(t, r, Request{Msg: pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest), Src: src, On: AltBoth})
		if m.Type != pionstun.BindingSuccess || rep.From != Primary || rep.To != src {
			t.Fatalf("plain: %v from %s to %s", m.Type, rep.From, rep.To)
		}
		for _, at := range []pionstun.AttrType{pionstun.AttrOtherAddress, pionstun.AttrResponseOrigin} {
			if m.Contains(at) {
				t.Errorf("%v without an alternate address", at)
			}
		}
		for name, s := range map[string]pionstun.Setter{
			"CHANGE-REQUEST": changeRequest(ChangeIP), "CHANGE-REQUEST none": changeRequest(0),
			"RESPONSE-PORT": responsePort(5000), "PADDING": padding(100),
		} {
			rep, m := decoded(t, r, Request{Msg: pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, s), Src: src})
			var ua pionstun.UnknownAttributes
			if errCode(m) != 420 || ua.GetFrom(m) != nil || len(ua) != 1 || rep.To != src || rep.From != Primary {
				t.Errorf("%s: code %d unknown %v to %s, want 420 listing it to the source", name, errCode(m), ua, rep.To)
			}
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestResponsePortAndPadding(t *testing.T) {
	r := must(NewResponder(Config{Addrs: four}))
	src := netip.MustParseAddrPort("198.51.100.7:40000")

	rep, m := decoded(t, r, Request{Msg: pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, responsePort(41000)), Src: src, On: AltIP})
	if m.Type != pionstun.BindingSuccess || rep.To != netip.MustParseAddrPort("198.51.100.7:41000") || rep.From != AltIP {
		t.Errorf("RESPONSE-PORT: %v to %s from %s", m.Type, rep.To, rep.From)
	}
	if got := addrOf(t, m, pionstun.AttrMappedAddress); got != src {
		t.Errorf("RESPONSE-PORT: mapped %v, want the source %v", got, src)
	}
	for name, req := range map[string]*pionstun.Message{
		"port 0":          pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, responsePort(0)),
		"with PADDING":    pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, responsePort(41000), padding(8)),
		"short change":    pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.RawAttribute{Type: pionstun.AttrChangeRequest, Value: []byte{4}}),
		"short resp port": pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.RawAttribute{Type: pionstun.AttrResponsePort, Value: []byte{1}}),
	} {
		rep, m := decoded(t, r, Request{Msg: req, Src: src, On: AltPort})
		if errCode(m) != 400 || rep.To != src || rep.From != AltPort {
			t.Errorf("%s: code %d to %s from %s, want 400 to the source from the receiving socket", name, errCode(m), rep.To, rep.From)
		}
	}

	// PADDING: the response grows to the request's size, never past it nor
	// past the path MTU.
	for _, c := range []struct {
		pad  int
		src  netip.AddrPort
		want int // response size
	}{
		{0, src, -1},
		{400, src, 20 + 4 + 400},
		{1500, src, 1472},
		{1500, netip.MustParseAddrPort("[2001:db8::7]:40000"), 1452},
	} {
		req := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, padding(c.pad))
		rep, m := decoded(t, r, Request{Msg: req, Src: c.src})
		if !m.Contains(pionstun.AttrPadding) {
			t.Errorf("pad %d: no PADDING in the response", c.pad)
		}
		if len(rep.Data) > max(len(req.Raw), minBudget) {
			t.Errorf("pad %d: response %d bytes for a request of %d", c.pad, len(rep.Data), len(req.Raw))
		}
		if c.want > 0 && len(rep.Data) != c.want {
			t.Errorf("pad %d from %s: response %d bytes, want %d", c.pad, c.src, len(rep.Data), c.want)
		}
	}
}

// TestAmplification: a response to an unauthenticated request never exceeds
// max(request, 128 bytes), dropping optional attributes when needed.
func TestAmplification(t *testing.T) {
	six := [4]netip.AddrPort{
		netip.MustParseAddrPort("[2001:db8::10]:3478"), netip.MustParseAddrPort("[2001:db8::10]:3479"),
		netip.MustParseAddrPort("[2001:db8::11]:3478"), netip.MustParseAddrPort("[2001:db8::11]:3479"),
	}
	for _, addrs := range [][4]netip.AddrPort{four, six} {
		for _, classic := range []bool{false, true} {
			r := must(NewResponder(Config{Addrs: addrs, RFC3489: classic, Software: "icegate with a rather long software name"}))
			src := netip.AddrPortFrom(addrs[0].Addr(), 40000)
			req := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest)
			rep, m := decoded(t, r, Request{Msg: req, Src: src})
			if len(rep.Data) > minBudget {
				t.Errorf("%v rfc3489=%v: %d bytes for a 20-byte request", addrs[0], classic, len(rep.Data))
			}
			for _, at := range []pionstun.AttrType{pionstun.AttrXORMappedAddress, pionstun.AttrMappedAddress, pionstun.AttrOtherAddress, pionstun.AttrResponseOrigin} {
				if !m.Contains(at) {
					t.Errorf("%v rfc3489=%v: mandatory %v dropped", addrs[0], classic, at)
				}
			}
			// A larger request gets everything.
			req = pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.NewSoftware(string(make([]byte, 200))))
			_, m = decoded(t, r, Request{Msg: req, Src: src})
			if !m.Contains(pionstun.AttrSoftware) || classic != m.Contains(pionstun.AttrChangedAddress) || classic != m.Contains(pionstun.AttrSourceAddress) {
				t.Errorf("%v rfc3489=%v: optional attributes missing from a large request's response", addrs[0], classic)
			}
		}
	}
}

func TestRFC3489(t *testing.T) {
	r := must(NewResponder(Config{Addrs: four, RFC3489: true}))
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	req := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, changeRequest(ChangePort))
	_, m := decoded(t, r, Request{Msg: req, Src: src, On: AltIP})
	if got := addrOf(t, m, pionstun.AttrChangedAddress); got != a1p2 {
		t.Errorf("CHANGED-ADDRESS %v, want %v", got, a1p2)
	}
	if got := addrOf(t, m, pionstun.AttrSourceAddress); got != a2p2 {
		t.Errorf("SOURCE-ADDRESS %v, want %v", got, a2p2)
	}
	if _, err := NewResponder(Config{Addrs: [4]netip.AddrPort{a1p1}, RFC3489: true}); err == nil {
		t.Error("RFC 3489 without an alternate accepted")
	}
}

func TestStream(t *testing.T) {
	r := must(NewResponder(Config{Addrs: four}))
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	rep, m := decoded(t, r, Request{Msg: pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest), Src: src, Stream: true})
	if m.Type != pionstun.BindingSuccess || m.Contains(pionstun.AttrOtherAddress) || rep.From != Primary {
		t.Errorf("stream: %v other-address %v", m.Type, m.Contains(pionstun.AttrOtherAddress))
	}
	_, m = decoded(t, r, Request{Msg: pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, changeRequest(ChangeIP)), Src: src, Stream: true})
	if errCode(m) != 420 {
		t.Errorf("stream CHANGE-REQUEST: code %d, want 420", errCode(m))
	}
}

func TestUnknownComprehensionRequired(t *testing.T) {
	r := must(NewResponder(Config{Addrs: four}))
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	req := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest,
		pionstun.RawAttribute{Type: 0x7777, Value: []byte{1}}, pionstun.RawAttribute{Type: 0xC0DE, Value: []byte{1}})
	_, m := decoded(t, r, Request{Msg: req, Src: src})
	var ua pionstun.UnknownAttributes
	if errCode(m) != 420 || ua.GetFrom(m) != nil || len(ua) != 1 || ua[0] != 0x7777 {
		t.Errorf("code %d unknown %v, want 420 listing 0x7777 only", errCode(m), ua)
	}
}

func TestNewResponderChecks(t *testing.T) {
	for name, addrs := range map[string][4]netip.AddrPort{
		"missing":      {a1p1, a1p2, a2p1},
		"same ip":      {a1p1, a1p2, a1p1, a1p2},
		"same port":    {a1p1, a1p1, a2p1, a2p1},
		"mixed":        {a1p1, a1p2, a2p2, a2p1},
		"two families": {a1p1, a1p2, netip.MustParseAddrPort("[2001:db8::1]:3478"), netip.MustParseAddrPort("[2001:db8::1]:3479")},
	} {
		if _, err := NewResponder(Config{Addrs: addrs}); err == nil {
			t.Errorf("%s: accepted %v", name, addrs)
		}
	}
}

// FuzzAnswer: any decodable request gets a decodable reply from a server
// with an alternate, never larger than max(request, 128) bytes, sent to the
// source IP.
func FuzzAnswer(f *testing.F) {
	f.Add(pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, changeRequest(6)).Raw, uint8(1), false)
	f.Add(pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, padding(64), responsePort(9)).Raw, uint8(2), true)
	r := must(NewResponder(Config{Addrs: four, RFC3489: true}))
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	f.Fuzz(func(t *testing.T, raw []byte, on uint8, stream bool) {
		m := &pionstun.Message{Raw: raw}
		if m.Decode() != nil {
			return
		}
		rep, err := r.Answer(Request{Msg: m, Src: src, On: Socket(on), Stream: stream})
		if err != nil {
			return
		}
		out := &pionstun.Message{Raw: rep.Data}
		if err := out.Decode(); err != nil {
			t.Fatalf("reply does not decode: %v", err)
		}
		if len(rep.Data) > max(20+int(m.Length), minBudget) {
			t.Fatalf("reply of %d bytes to a request of %d", len(rep.Data), 20+m.Length)
		}
		if rep.To.Addr() != src.Addr() || rep.From > AltBoth {
			t.Fatalf("reply to %s from %d", rep.To, rep.From)
		}
	})
}
