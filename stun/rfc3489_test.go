package stun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"icegate/internal/stunwire"
)

// classicAttr is one attribute of a hand-built RFC 3489 message.
type classicAttr struct {
	t uint16
	v []byte
}

var classicTxID = [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

// classicRequest encodes an RFC 3489 Binding Request (§11.1) with the
// attributes as given (no padding added).
func classicRequest(attrs ...classicAttr) []byte {
	b := make([]byte, 20)
	b[1] = 0x01
	copy(b[4:], classicTxID[:])
	for _, a := range attrs {
		b = binary.BigEndian.AppendUint16(b, a.t)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.v)))
		b = append(b, a.v...)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20))
	return b
}

func change(flags byte) classicAttr { return classicAttr{attrChangeRequest, []byte{0, 0, 0, flags}} }

func responseAddress(ap netip.AddrPort) classicAttr {
	return classicAttr{attrResponseAddress, stunwire.AppendAddr(nil, ap, nil, false)}
}

// classicAttrs decodes a classic response, checking the header and that the
// attributes exactly fill it.
func classicAttrs(t *testing.T, b []byte) (uint16, map[uint16][]byte) {
	t.Helper()
	if len(b) < 20 || int(binary.BigEndian.Uint16(b[2:]))+20 != len(b) {
		t.Fatalf("response header: % x", b)
	}
	if !bytes.Equal(b[4:20], classicTxID[:]) {
		t.Fatalf("transaction ID % x, want % x", b[4:20], classicTxID)
	}
	attrs := map[uint16][]byte{}
	for off := 20; off < len(b); {
		if off+4 > len(b) {
			t.Fatalf("truncated attribute at %d: % x", off, b)
		}
		at, l := binary.BigEndian.Uint16(b[off:]), int(binary.BigEndian.Uint16(b[off+2:]))
		if l%4 != 0 || off+4+l > len(b) {
			t.Fatalf("attribute %#x of length %d at %d: % x", at, l, off, b)
		}
		if _, dup := attrs[at]; dup {
			t.Fatalf("attribute %#x twice", at)
		}
		attrs[at] = b[off+4 : off+4+l]
		off += 4 + l
	}
	return binary.BigEndian.Uint16(b), attrs
}

func classicAddrOf(t *testing.T, attrs map[uint16][]byte, at uint16) netip.AddrPort {
	t.Helper()
	ap, ok := classicAddr(attrs[at])
	if !ok {
		t.Fatalf("attribute %#x: % x is not an IPv4 address", at, attrs[at])
	}
	return ap
}

// TestClassicTable: an RFC 3489 Binding Request with each CHANGE-REQUEST
// on each socket is answered from the socket RFC 5780 Table 1 names, with
// SOURCE-ADDRESS saying so and CHANGED-ADDRESS the socket with both
// changed, in exactly 56 bytes.
func TestClassicTable(t *testing.T) {
	r := must(NewResponder(Config{Addrs: four, RFC3489: true}))
	if !r.Classic() {
		t.Fatal("Classic() false with RFC3489 and an IPv4 alternate")
	}
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	for _, c := range []struct {
		name  string
		attrs []classicAttr
		flags byte
	}{
		{"none", nil, 0},
		{"zero", []classicAttr{change(0)}, 0},
		{"port", []classicAttr{change(ChangePort)}, ChangePort},
		{"ip", []classicAttr{change(ChangeIP)}, ChangeIP},
		{"both", []classicAttr{change(ChangeIP | ChangePort)}, ChangeIP | ChangePort},
		{"other bits ignored", []classicAttr{change(0xF9 | ChangeIP)}, ChangeIP},
		{"first of two", []classicAttr{change(ChangePort), change(ChangeIP)}, ChangePort},
		{"optional ignored", []classicAttr{{0x8022, []byte("old!")}, change(ChangeIP)}, ChangeIP},
	} {
		for on := Primary; on <= AltBoth; on++ {
			req := classicRequest(c.attrs...)
			rep, err := r.AnswerClassic(req, src, on)
			if err != nil {
				t.Fatalf("%s on %s: %v", c.name, on, err)
			}
			want := on
			if c.flags&ChangeIP != 0 {
				want ^= AltIP
			}
			if c.flags&ChangePort != 0 {
				want ^= AltPort
			}
			if rep.From != want || rep.To != src {
				t.Errorf("%s on %s: from %s to %s, want from %s to %s", c.name, on, rep.From, rep.To, want, src)
			}
			if len(rep.Data) != 56 {
				t.Errorf("%s on %s: %d bytes, want 56", c.name, on, len(rep.Data))
			}
			typ, attrs := classicAttrs(t, rep.Data)
			if typ != classicBindingResponse || len(attrs) != 3 {
				t.Fatalf("%s on %s: type %#x with %d attributes, want a Binding Response with 3", c.name, on, typ, len(attrs))
			}
			for name, a := range map[string]struct {
				t    uint16
				want netip.AddrPort
			}{
				"MAPPED-ADDRESS":  {attrMappedAddress, src},
				"SOURCE-ADDRESS":  {attrSourceAddress, four[want]},
				"CHANGED-ADDRESS": {attrChangedAddress, four[on^AltBoth]},
			} {
				if got := classicAddrOf(t, attrs, a.t); got != a.want {
					t.Errorf("%s on %s: %s = %v, want %v", c.name, on, name, got, a.want)
				}
			}
		}
	}
}

// TestClassicResponseAddressIgnored: RESPONSE-ADDRESS is decoded but the
// answer goes to the source, never to the address it names.
func TestClassicResponseAddressIgnored(t *testing.T) {
	r := must(NewResponder(Config{Addrs: four, RFC3489: true}))
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	victim := netip.MustParseAddrPort("192.0.2.99:53")
	req := classicRequest(responseAddress(victim), change(ChangeIP|ChangePort))
	parsed, err := ParseClassic(req)
	if err != nil || parsed.ResponseAddress != victim {
		t.Fatalf("parse: %v, RESPONSE-ADDRESS %v, want %v", err, parsed.ResponseAddress, victim)
	}
	rep, err := r.AnswerClassic(req, src, Primary)
	if err != nil {
		t.Fatal(err)
	}
	if rep.To != src || rep.From != AltBoth {
		t.Errorf("answer from %s to %s, want from %s to the source %s", rep.From, rep.To, AltBoth, src)
	}
	typ, attrs := classicAttrs(t, rep.Data)
	if typ != classicBindingResponse || classicAddrOf(t, attrs, attrMappedAddress) != src {
		t.Errorf("type %#x, attributes %v", typ, attrs)
	}
	if _, ok := attrs[0x000B]; ok {
		t.Error("REFLECTED-FROM in an answer sent to the source")
	}
}

// TestClassicMalformed: what is not an RFC 3489 Binding Request is not
// answered; a good header with bad attributes gets 400, attributes icegate
// does not take 420 with UNKNOWN-ATTRIBUTES, from the receiving socket to
// the source.
func TestClassicMalformed(t *testing.T) {
	r := must(NewResponder(Config{Addrs: four, RFC3489: true}))
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	withCookie := classicRequest()
	binary.BigEndian.PutUint32(withCookie[4:], magicCookie)
	longer := append(classicRequest(), 0, 0, 0, 0)
	odd := classicRequest(classicAttr{0x8022, []byte{1}})
	binary.BigEndian.PutUint16(odd[2:], 5)
	odd = odd[:25]
	for name, b := range map[string][]byte{
		"empty":            nil,
		"short":            classicRequest()[:19],
		"magic cookie":     withCookie,
		"response type":    append([]byte{0x01, 0x01}, classicRequest()[2:]...),
		"allocate":         append([]byte{0x00, 0x03}, classicRequest()[2:]...),
		"length too short": longer,
		"length too long":  classicRequest(change(0))[:24],
		"length not x4":    odd,
	} {
		if IsClassicBinding(b) {
			t.Errorf("%s: IsClassicBinding true", name)
		}
		if _, err := ParseClassic(b); !errors.Is(err, ErrNotClassic) {
			t.Errorf("%s: parse error %v, want ErrNotClassic", name, err)
		}
		if rep, err := r.AnswerClassic(b, src, Primary); !errors.Is(err, ErrNotClassic) || rep.Data != nil {
			t.Errorf("%s: answered %d bytes (%v)", name, len(rep.Data), err)
		}
	}

	overrun := classicRequest(change(0))
	binary.BigEndian.PutUint16(overrun[22:], 8)
	v6 := make([]byte, 20)
	v6[1] = 0x02
	for _, c := range []struct {
		name    string
		req     []byte
		code    int
		unknown []uint16
	}{
		{"attribute overruns", overrun, 400, nil},
		{"short CHANGE-REQUEST", classicRequest(classicAttr{attrChangeRequest, []byte{0, 0, 0, 0, 0, 0, 0, 4}}), 400, nil},
		{"IPv6 RESPONSE-ADDRESS", classicRequest(classicAttr{attrResponseAddress, v6}), 400, nil},
		{"short RESPONSE-ADDRESS", classicRequest(classicAttr{attrResponseAddress, []byte{0, 1, 0, 1}}), 400, nil},
		{"USERNAME", classicRequest(classicAttr{0x0006, []byte("user")}), 420, []uint16{0x0006, 0x0006}},
		{"PASSWORD", classicRequest(classicAttr{0x0007, []byte("pass")}), 420, []uint16{0x0007, 0x0007}},
		{"USERNAME and MESSAGE-INTEGRITY", classicRequest(change(ChangeIP), classicAttr{0x0006, []byte("user")}, classicAttr{0x0008, make([]byte, 20)}), 420, []uint16{0x0006, 0x0008}},
		{"unknown", classicRequest(classicAttr{0x0042, nil}, classicAttr{0x7fff, nil}, classicAttr{0x8001, nil}, classicAttr{0x0043, nil}), 420, []uint16{0x0042, 0x7fff, 0x0043, 0x0043}},
		{"MAPPED-ADDRESS in a request", classicRequest(classicAttr{attrMappedAddress, make([]byte, 8)}), 420, []uint16{0x0001, 0x0001}},
	} {
		rep, err := r.AnswerClassic(c.req, src, AltIP)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if rep.From != AltIP || rep.To != src {
			t.Errorf("%s: from %s to %s, want from the receiving socket to the source", c.name, rep.From, rep.To)
		}
		typ, attrs := classicAttrs(t, rep.Data)
		ec := attrs[attrErrorCode]
		if typ != classicBindingError || len(ec) < 4 || int(ec[2])*100+int(ec[3]) != c.code {
			t.Errorf("%s: type %#x ERROR-CODE % x, want a Binding Error Response with %d", c.name, typ, ec, c.code)
		}
		var unknown []uint16
		if ua, ok := attrs[attrUnknownAttrs]; ok {
			for i := 0; i+2 <= len(ua); i += 2 {
				unknown = append(unknown, binary.BigEndian.Uint16(ua[i:]))
			}
		}
		if len(unknown) != len(c.unknown) || (len(unknown) > 0 && !bytes.Equal(u16s(unknown), u16s(c.unknown))) {
			t.Errorf("%s: UNKNOWN-ATTRIBUTES %#x, want %#x", c.name, unknown, c.unknown)
		}
		if len(rep.Data) > max(len(c.req), 128) {
			t.Errorf("%s: %d bytes for a request of %d", c.name, len(rep.Data), len(c.req))
		}
	}
}

func u16s(v []uint16) []byte {
	var b []byte
	for _, x := range v {
		b = binary.BigEndian.AppendUint16(b, x)
	}
	return b
}

// TestClassicOff: without RFC3489, without an alternate, with an IPv6 pair
// or from an IPv6 source there is no classic answer at all.
func TestClassicOff(t *testing.T) {
	six := [4]netip.AddrPort{
		netip.MustParseAddrPort("[2001:db8::10]:3478"), netip.MustParseAddrPort("[2001:db8::10]:3479"),
		netip.MustParseAddrPort("[2001:db8::11]:3478"), netip.MustParseAddrPort("[2001:db8::11]:3479"),
	}
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	req := classicRequest(change(ChangeIP))
	for name, r := range map[string]*Responder{
		"nil":          nil,
		"zero":         {},
		"no alternate": must(NewResponder(Config{Addrs: [4]netip.AddrPort{a1p1}})),
		"no rfc3489":   must(NewResponder(Config{Addrs: four})),
		"IPv6":         must(NewResponder(Config{Addrs: six, RFC3489: true})),
	} {
		if r.Classic() {
			t.Errorf("%s: Classic() true", name)
		}
		if rep, err := r.AnswerClassic(req, src, Primary); !errors.Is(err, ErrNotClassic) || rep.Data != nil {
			t.Errorf("%s: answered (%v)", name, err)
		}
	}
	r := must(NewResponder(Config{Addrs: four, RFC3489: true}))
	if _, err := r.AnswerClassic(req, netip.MustParseAddrPort("[2001:db8::7]:40000"), Primary); !errors.Is(err, ErrNotClassic) {
		t.Errorf("IPv6 source: %v, want ErrNotClassic", err)
	}
	if rep, err := r.AnswerClassic(req, netip.MustParseAddrPort("[::ffff:198.51.100.7]:40000"), Primary); err != nil || rep.To != src {
		t.Errorf("IPv4-mapped source: %v to %s, want an answer to %s", err, rep.To, src)
	}
	if _, err := r.AnswerClassic(req, src, AltBoth+1); !errors.Is(err, ErrNotClassic) {
		t.Errorf("socket out of range: %v", err)
	}
}

// FuzzClassic: ParseClassic never panics and agrees with IsClassicBinding;
// an answer, when there is one, is a well-formed RFC 3489 response of at
// most max(request, 128) bytes, to the source, from one of the four sockets.
func FuzzClassic(f *testing.F) {
	f.Add(classicRequest(), uint8(0))
	f.Add(classicRequest(change(ChangeIP|ChangePort)), uint8(1))
	f.Add(classicRequest(responseAddress(netip.MustParseAddrPort("192.0.2.1:9")), change(ChangePort)), uint8(2))
	f.Add(classicRequest(classicAttr{0x0006, []byte("user")}, classicAttr{0x0008, make([]byte, 20)}), uint8(3))
	f.Add(classicRequest(classicAttr{0x0042, []byte{1}}), uint8(3))
	r := must(NewResponder(Config{Addrs: four, RFC3489: true}))
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	f.Fuzz(func(t *testing.T, b []byte, on uint8) {
		req, err := ParseClassic(b)
		if IsClassicBinding(b) == errors.Is(err, ErrNotClassic) {
			t.Fatalf("IsClassicBinding %v, parse error %v", IsClassicBinding(b), err)
		}
		if err == nil && (req.Size != len(b) || req.NumUnknown > len(req.Unknown) || req.Change&^(ChangeIP|ChangePort) != 0) {
			t.Fatalf("parsed %+v", req)
		}
		rep, err := r.AnswerClassic(b, src, Socket(on))
		if err != nil {
			if rep.Data != nil {
				t.Fatal("data with an error")
			}
			return
		}
		if len(rep.Data) > max(len(b), 128) {
			t.Fatalf("reply of %d bytes to a request of %d", len(rep.Data), len(b))
		}
		if rep.To != src || rep.From > AltBoth {
			t.Fatalf("reply to %s from %d", rep.To, rep.From)
		}
		if len(rep.Data) < 20 || int(binary.BigEndian.Uint16(rep.Data[2:]))+20 != len(rep.Data) ||
			!bytes.Equal(rep.Data[4:20], b[4:20]) {
			t.Fatalf("reply header % x", rep.Data)
		}
		switch binary.BigEndian.Uint16(rep.Data) {
		case classicBindingResponse, classicBindingError:
		default:
			t.Fatalf("reply type % x", rep.Data[:2])
		}
	})
}
