package turn

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"icegate/stun"
)

// classicBindingRequest encodes an RFC 3489 Binding Request (§11.1): no
// magic cookie, a 128-bit transaction ID, the given attributes (each a type
// and a value whose length is a multiple of four).
func classicBindingRequest(t *testing.T, attrs ...rawAttr) ([]byte, [16]byte) {
	t.Helper()
	var txid [16]byte
	_, _ = rand.Read(txid[:])
	txid[0] = 0x5a // never the magic cookie
	b := make([]byte, 20, 64)
	b[1] = 0x01
	copy(b[4:], txid[:])
	for _, a := range attrs {
		b = binary.BigEndian.AppendUint16(b, uint16(a.t))
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.v)))
		b = append(b, a.v...)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20))
	return b, txid
}

// classicResponse decodes an RFC 3489 response: its type and attributes.
func classicResponse(t *testing.T, b []byte, txid [16]byte) (uint16, map[uint16][]byte) {
	t.Helper()
	if len(b) < 20 || int(binary.BigEndian.Uint16(b[2:]))+20 != len(b) || !bytes.Equal(b[4:20], txid[:]) {
		t.Fatalf("response header % x", b)
	}
	attrs := map[uint16][]byte{}
	for off := 20; off+4 <= len(b); {
		at, l := binary.BigEndian.Uint16(b[off:]), int(binary.BigEndian.Uint16(b[off+2:]))
		if off+4+l > len(b) {
			t.Fatalf("attribute %#x overruns: % x", at, b)
		}
		attrs[at] = b[off+4 : off+4+l]
		off += 4 + (l+3)&^3
	}
	return binary.BigEndian.Uint16(b), attrs
}

// classicAddr decodes an RFC 3489 IPv4 address attribute (§11.2.1).
func classicAddr(v []byte) netip.AddrPort {
	if len(v) != 8 || v[1] != 0x01 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(v[4:8])), binary.BigEndian.Uint16(v[2:]))
}

func classicChange(flags byte) rawAttr { return rawAttr{t: 0x0003, v: []byte{0, 0, 0, flags}} }

func rfc3489On(c *Config) { c.RFC5780.RFC3489 = true }

// TestRFC3489Classic: with stun.rfc3489 an RFC 3489 client (no magic
// cookie) is answered on each of the four sockets, from the socket its
// CHANGE-REQUEST names, with MAPPED-ADDRESS, SOURCE-ADDRESS and
// CHANGED-ADDRESS; RESPONSE-ADDRESS is ignored and the answer goes to the
// source.
func TestRFC3489Classic(t *testing.T) {
	ts, socks := rfc5780Server(t, rfc3489On)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	self := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	roundTrip := func(req []byte, to netip.AddrPort) ([]byte, netip.AddrPort) {
		t.Helper()
		if _, err := conn.WriteToUDPAddrPort(req, to); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("no answer from %v: %v", to, err)
		}
		return buf[:n], from
	}
	before := counterValue(t, ts.metrics.Requests.WithLabelValues("Binding", "rfc3489"))
	for on := stun.Primary; on <= stun.AltBoth; on++ {
		for _, flags := range []byte{0, stun.ChangePort, stun.ChangeIP, stun.ChangeIP | stun.ChangePort} {
			req, txid := classicBindingRequest(t, classicChange(flags))
			b, from := roundTrip(req, socks[on])
			want := on ^ stun.Socket(flags>>1&1) ^ stun.Socket(flags>>2&1)<<1
			if from != socks[want] {
				t.Errorf("to %s flags %#x: answer from %v, want %v (%s)", on, flags, from, socks[want], want)
			}
			typ, attrs := classicResponse(t, b, txid)
			if typ != 0x0101 || len(b) != 56 {
				t.Fatalf("to %s flags %#x: type %#x, %d bytes; want a 56-byte Binding Response", on, flags, typ, len(b))
			}
			for name, c := range map[string]struct {
				at   uint16
				want netip.AddrPort
			}{
				"MAPPED-ADDRESS":  {0x0001, self},
				"SOURCE-ADDRESS":  {0x0004, socks[want]},
				"CHANGED-ADDRESS": {0x0005, socks[on^stun.AltBoth]},
			} {
				if got := classicAddr(attrs[c.at]); got != c.want {
					t.Errorf("to %s flags %#x: %s = %v, want %v", on, flags, name, got, c.want)
				}
			}
		}
	}
	// The counter moves after the answer is sent: give the last one a moment.
	counted := func() float64 {
		return counterValue(t, ts.metrics.Requests.WithLabelValues("Binding", "rfc3489")) - before
	}
	for deadline := time.Now().Add(time.Second); counted() < 16 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := counted(); got != 16 {
		t.Errorf("rfc3489 requests counted %v, want 16", got)
	}

	// RESPONSE-ADDRESS naming another socket: the answer still comes to
	// the source, and nothing reaches the other socket.
	victim, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	va := victim.LocalAddr().(*net.UDPAddr).AddrPort()
	v := []byte{0, 0x01, 0, 0, 127, 0, 0, 1}
	binary.BigEndian.PutUint16(v[2:], va.Port())
	req, txid := classicBindingRequest(t, rawAttr{t: 0x0002, v: v})
	b, from := roundTrip(req, socks[stun.Primary])
	if typ, attrs := classicResponse(t, b, txid); typ != 0x0101 || from != socks[stun.Primary] || classicAddr(attrs[0x0001]) != self {
		t.Errorf("RESPONSE-ADDRESS: type %#x from %v mapped %v", typ, from, classicAddr(attrs[0x0001]))
	}
	_ = victim.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _, err := victim.ReadFromUDPAddrPort(make([]byte, 1500)); err == nil {
		t.Errorf("RESPONSE-ADDRESS honoured: %d bytes reached %v", n, va)
	}

	// USERNAME: the shared-secret mechanism is not offered; 420.
	req, txid = classicBindingRequest(t, rawAttr{t: 0x0006, v: []byte("user")})
	b, from = roundTrip(req, socks[stun.AltIP])
	typ, attrs := classicResponse(t, b, txid)
	if ec := attrs[0x0009]; typ != 0x0111 || len(ec) < 4 || int(ec[2])*100+int(ec[3]) != 420 || from != socks[stun.AltIP] {
		t.Errorf("USERNAME: type %#x ERROR-CODE % x from %v, want 420 from %v", typ, ec, from, socks[stun.AltIP])
	}
}

// TestRFC3489Off: without stun.rfc3489 the same classic request gets no
// answer and is counted as malformed.
func TestRFC3489Off(t *testing.T) {
	ts, socks := rfc5780Server(t)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	malformed := ts.metrics.Dropped.WithLabelValues("malformed")
	before := counterValue(t, malformed)
	req, _ := classicBindingRequest(t, classicChange(stun.ChangeIP|stun.ChangePort))
	for _, s := range socks {
		if _, err := conn.WriteToUDPAddrPort(req, s); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, from, err := conn.ReadFromUDPAddrPort(make([]byte, 1500)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("answered without rfc3489: %d bytes from %v (%v)", n, from, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for counterValue(t, malformed)-before < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := counterValue(t, malformed) - before; got != 4 {
		t.Errorf("malformed drops %v, want 4", got)
	}
}
