package turn

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
	"time"

	"icegate/internal/udploop"
	"icegate/stun"
)

// The most common STUN message by far is a plain Binding request: ICE
// gathering and keepalives send nothing else. fastBinding answers it where it
// is read (on the event loop, or in the portable read loop) with no
// allocation and no trip to another goroutine. Its answer is byte for byte
// what stun.Responder gives without RFC 5780 (XOR-MAPPED-ADDRESS,
// MAPPED-ADDRESS, SOFTWARE, FINGERPRINT; a test compares them). Anything
// else (other attributes, an RFC 5780 server, a malformed message) takes the
// gate's full path.

// fastBinding writes the response to the Binding request req from src into
// out and returns it, or returns nil when the request needs the full path.
// bad reports a request to drop unanswered: its FINGERPRINT is wrong or not
// the last attribute (RFC 8489 §7.3, §14.7).
func fastBinding(req, out []byte, src netip.AddrPort) (resp []byte, bad bool) {
	if len(req) < 20 || req[0] != 0x00 || req[1] != 0x01 || binary.BigEndian.Uint32(req[4:]) != magicCookie {
		return nil, false
	}
	end := 20 + int(binary.BigEndian.Uint16(req[2:]))
	if end != len(req) {
		return nil, false
	}
	for off := 20; off < end; {
		if off+4 > end {
			return nil, false
		}
		t := binary.BigEndian.Uint16(req[off:])
		l := int(binary.BigEndian.Uint16(req[off+2:]))
		if off+4+l > end {
			return nil, false
		}
		switch t {
		case 0x8022: // SOFTWARE: nothing to do
		case 0x8028: // FINGERPRINT: CRC-32 of what precedes, XOR 0x5354554e
			if l != 4 || off+8 != end ||
				binary.BigEndian.Uint32(req[off+4:]) != crc32.ChecksumIEEE(req[:off])^0x5354554e {
				return nil, true
			}
		default:
			return nil, false
		}
		off += 4 + (l+3)&^3
	}
	a := src.Addr().Unmap()
	alen := 8
	if !a.Is4() {
		alen = 20
	}
	sw := stun.Software
	swPad := (len(sw) + 3) &^ 3
	size := 20 + 2*(4+alen) + 4 + swPad + 8
	if len(sw) > 128 || len(out) < size {
		return nil, false
	}
	m := out[:size]
	binary.BigEndian.PutUint16(m[0:], 0x0101) // Binding success
	binary.BigEndian.PutUint16(m[2:], uint16(size-20))
	copy(m[4:20], req[4:20]) // magic cookie and transaction ID
	off := 20
	// XOR-MAPPED-ADDRESS (RFC 8489 §14.2), then MAPPED-ADDRESS (§14.1).
	putAddr(m[off:], 0x0020, a, src.Port(), m[8:20], true)
	off += 4 + alen
	putAddr(m[off:], 0x0001, a, src.Port(), nil, false)
	off += 4 + alen
	binary.BigEndian.PutUint16(m[off:], 0x8022)
	binary.BigEndian.PutUint16(m[off+2:], uint16(len(sw)))
	n := copy(m[off+4:], sw)
	for i := off + 4 + n; i < off+4+swPad; i++ {
		m[i] = 0
	}
	off += 4 + swPad
	// FINGERPRINT (RFC 8489 §14.7): CRC-32 of what precedes, XOR 0x5354554e.
	binary.BigEndian.PutUint16(m[off:], 0x8028)
	binary.BigEndian.PutUint16(m[off+2:], 4)
	binary.BigEndian.PutUint32(m[off+4:], crc32.ChecksumIEEE(m[:off])^0x5354554e)
	return m, false
}

// putAddr writes a (XOR-)MAPPED-ADDRESS attribute of type t at b.
func putAddr(b []byte, t uint16, a netip.Addr, port uint16, txid []byte, xor bool) {
	binary.BigEndian.PutUint16(b[0:], t)
	b[4] = 0
	if a.Is4() {
		binary.BigEndian.PutUint16(b[2:], 8)
		b[5] = 0x01
		ip := a.As4()
		copy(b[8:12], ip[:])
	} else {
		binary.BigEndian.PutUint16(b[2:], 20)
		b[5] = 0x02
		ip := a.As16()
		copy(b[8:24], ip[:])
	}
	binary.BigEndian.PutUint16(b[6:], port)
	if !xor {
		return
	}
	binary.BigEndian.PutUint16(b[6:], port^uint16(magicCookie>>16))
	var key [16]byte
	binary.BigEndian.PutUint32(key[:4], magicCookie)
	copy(key[4:], txid)
	n := 4
	if !a.Is4() {
		n = 16
	}
	for i := range n {
		b[8+i] ^= key[i]
	}
}

// answerBindingFast answers a plain Binding request on a UDP listener,
// reporting false when the full path must handle it. scratch must have room
// for the response (at least 100 bytes).
func (c *gatePacketConn) answerBindingFast(out udploop.Sender, req, scratch []byte, from netip.AddrPort) bool {
	s := c.g.s
	if s.binding.rfc5780 != nil {
		return false // RFC 5780 answers depend on the socket: full path
	}
	resp, bad := fastBinding(req, scratch, from)
	if bad {
		c.g.droppedBadFingerprint.Inc()
		return true
	}
	if resp == nil {
		return false
	}
	if !s.unauth.allow(from, time.Now()) {
		s.droppedRateLimited.Inc()
		return true
	}
	out.Send(c.sock, resp, from)
	s.bindingsAnswered.Inc()
	return true
}
