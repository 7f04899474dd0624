// Package stunwire is icegate's one codec for the STUN and TURN bytes it
// reads and writes itself, without pion: the header checks, the attribute
// walk, MAPPED-ADDRESS and XOR-MAPPED-ADDRESS style addresses, FINGERPRINT,
// ChannelData, the Data indication and the plain Binding answer. The relay's
// packet path (turn) and the Binding answers (stun) both use it, so each wire
// rule lives in one place.
//
// Everything here works on caller-owned byte slices and allocates nothing:
// it runs for every relayed datagram. Messages that need MESSAGE-INTEGRITY
// are built with pion/stun by the callers; this package only knows the
// framing.
package stunwire

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

// MagicCookie is the fixed value in every RFC 5389/8489 header (RFC 8489 §5).
const MagicCookie = 0x2112A442

// HeaderSize is the size of a STUN header (RFC 8489 §5).
const HeaderSize = 20

// Message types and attribute types this package and its callers name
// (RFC 8489 §18.2 and §18.3, RFC 8656 §17 and §18).
const (
	TypeBindingRequest     = 0x0001
	TypeBindingSuccess     = 0x0101
	TypeSendIndication     = 0x0016
	TypeDataIndication     = 0x0017
	AttrMappedAddress      = 0x0001
	AttrChannelNumber      = 0x000C
	AttrLifetime           = 0x000D
	AttrXORPeerAddress     = 0x0012
	AttrData               = 0x0013
	AttrXORRelayedAddress  = 0x0016
	AttrEvenPort           = 0x0018
	AttrRequestedTransport = 0x0019
	AttrXORMappedAddress   = 0x0020
	AttrReservationToken   = 0x0022
	AttrErrorCode          = 0x0009
	AttrMessageIntegrity   = 0x0008
	AttrSoftware           = 0x8022
	AttrFingerprint        = 0x8028
)

// fingerprintXOR is XORed into the CRC-32 of a FINGERPRINT (RFC 8489 §14.7).
const fingerprintXOR = 0x5354554e

// IsSTUN reports whether b starts like an RFC 8489 message: the two top bits
// zero, the magic cookie, a length that is a multiple of four and fits in b.
// It does not check that b ends where the length says (see Message).
func IsSTUN(b []byte) bool {
	return len(b) >= HeaderSize && b[0]&0xC0 == 0 &&
		binary.BigEndian.Uint32(b[4:]) == MagicCookie &&
		binary.BigEndian.Uint16(b[2:])&3 == 0 &&
		HeaderSize+int(binary.BigEndian.Uint16(b[2:])) <= len(b)
}

// Type returns the message type of a STUN message (b must hold a header).
func Type(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// Message returns the STUN message at the start of b, cut to the length its
// header states, and false when b does not hold a whole one.
func Message(b []byte) ([]byte, bool) {
	if !IsSTUN(b) {
		return nil, false
	}
	return b[:HeaderSize+int(binary.BigEndian.Uint16(b[2:]))], true
}

// TransactionID returns the 12-byte transaction ID of a STUN message.
func TransactionID(m []byte) []byte { return m[8:20] }

// Attrs walks the attributes of the STUN message m (as Message returns it).
// Use it as
//
//	it := stunwire.Attrs(m)
//	for it.Next() { ... it.Type, it.Value ... }
//	if it.Err() { malformed }
//
// It allocates nothing.
func Attrs(m []byte) AttrIter { return AttrIter{m: m, off: HeaderSize} }

// AttrIter is an attribute walk in progress; see Attrs.
type AttrIter struct {
	m   []byte
	off int
	bad bool
	// Type and Value are the current attribute; Value is unpadded and
	// aliases the message.
	Type  uint16
	Value []byte
	// Offset is where the current attribute's header starts in the message.
	Offset int
}

// Next moves to the next attribute and reports whether there is one. An
// attribute whose length runs past the message ends the walk with Err set.
func (it *AttrIter) Next() bool {
	if it.bad || it.off+4 > len(it.m) {
		if !it.bad && it.off != len(it.m) {
			it.bad = true
		}
		return false
	}
	t := binary.BigEndian.Uint16(it.m[it.off:])
	l := int(binary.BigEndian.Uint16(it.m[it.off+2:]))
	v := it.off + 4
	if v+l > len(it.m) {
		it.bad = true
		return false
	}
	it.Type, it.Value, it.Offset = t, it.m[v:v+l], it.off
	// RFC 8489 §14: values are padded to a multiple of four bytes. The last
	// attribute's padding may be missing only if the message length says so,
	// which IsSTUN already refuses (lengths are multiples of four).
	it.off = v + (l+3)&^3
	if it.off > len(it.m) {
		it.off = len(it.m)
	}
	return true
}

// Err reports whether the walk stopped at a malformed attribute.
func (it *AttrIter) Err() bool { return it.bad }

// Find returns the value of the first attribute of type t in m.
func Find(m []byte, t uint16) ([]byte, bool) {
	it := Attrs(m)
	for it.Next() {
		if it.Type == t {
			return it.Value, true
		}
	}
	return nil, false
}

// CheckFingerprint reports whether m, a whole STUN message, either has no
// FINGERPRINT or has one that is its last attribute and matches (RFC 8489
// §14.7). A message that fails is to be discarded (§7.3).
func CheckFingerprint(m []byte) bool {
	it := Attrs(m)
	for it.Next() {
		if it.Type != AttrFingerprint {
			continue
		}
		if len(it.Value) != 4 || it.Offset+8 != len(m) {
			return false
		}
		// The CRC covers the message up to the attribute, with the header's
		// length already counting the FINGERPRINT attribute.
		return crc32.ChecksumIEEE(m[:it.Offset])^fingerprintXOR == binary.BigEndian.Uint32(it.Value)
	}
	return !it.Err()
}

// PutFingerprint writes a FINGERPRINT attribute at m[off:off+8], where m[:off]
// is the message so far whose header length already counts those 8 bytes.
func PutFingerprint(m []byte, off int) {
	binary.BigEndian.PutUint16(m[off:], AttrFingerprint)
	binary.BigEndian.PutUint16(m[off+2:], 4)
	binary.BigEndian.PutUint32(m[off+4:], crc32.ChecksumIEEE(m[:off])^fingerprintXOR)
}

// AddrLen is the value length of an address attribute for a: 8 for IPv4
// (including IPv4-mapped IPv6), 20 for IPv6.
func AddrLen(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 8
	}
	return 20
}

// PutAddr writes a whole MAPPED-ADDRESS style attribute of type t for ap at
// b (RFC 8489 §14.1), XOR-encoded with txid when xor is true (§14.2), and
// returns its size (4 + AddrLen). IPv4-mapped addresses are written as IPv4.
// b must have room.
func PutAddr(b []byte, t uint16, ap netip.AddrPort, txid []byte, xor bool) int {
	a := ap.Addr().Unmap()
	l := AddrLen(a)
	binary.BigEndian.PutUint16(b[0:], t)
	binary.BigEndian.PutUint16(b[2:], uint16(l))
	b[4] = 0
	if a.Is4() {
		b[5] = 0x01
		ip := a.As4()
		copy(b[8:12], ip[:])
	} else {
		b[5] = 0x02
		ip := a.As16()
		copy(b[8:24], ip[:])
	}
	binary.BigEndian.PutUint16(b[6:], ap.Port())
	if xor {
		xorValue(b[4:4+l], txid)
	}
	return 4 + l
}

// AppendAddr appends the value (no attribute header) of a MAPPED-ADDRESS
// style attribute for ap to b, XOR-encoded with txid when xor is true.
// RFC 3489 §11.2.1 has the same layout, IPv4 only.
func AppendAddr(b []byte, ap netip.AddrPort, txid []byte, xor bool) []byte {
	a := ap.Addr().Unmap()
	start := len(b)
	if a.Is4() {
		ip := a.As4()
		b = append(b, 0, 0x01, byte(ap.Port()>>8), byte(ap.Port()))
		b = append(b, ip[:]...)
	} else {
		ip := a.As16()
		b = append(b, 0, 0x02, byte(ap.Port()>>8), byte(ap.Port()))
		b = append(b, ip[:]...)
	}
	if xor {
		xorValue(b[start:], txid)
	}
	return b
}

// xorValue XORs an address value in place: the port with the cookie's top
// half, the address with the cookie followed by the transaction ID.
func xorValue(v []byte, txid []byte) {
	binary.BigEndian.PutUint16(v[2:], binary.BigEndian.Uint16(v[2:])^uint16(MagicCookie>>16))
	var key [16]byte
	binary.BigEndian.PutUint32(key[:4], MagicCookie)
	copy(key[4:], txid)
	for i := 4; i < len(v); i++ {
		v[i] ^= key[i-4]
	}
}

// ParseAddr decodes the value of a MAPPED-ADDRESS style attribute, undoing
// the XOR with txid when xor is true. Anything but an IPv4 value of exactly 8
// bytes or an IPv6 value of exactly 20 is refused; the first byte, zero on
// the wire, is ignored as RFC 8489 §14.1 asks of receivers. IPv4-mapped IPv6
// comes back as IPv4, the way pion's events report peers.
func ParseAddr(v, txid []byte, xor bool) (netip.AddrPort, bool) {
	if len(v) < 8 {
		return netip.AddrPort{}, false
	}
	port := binary.BigEndian.Uint16(v[2:])
	if xor {
		port ^= uint16(MagicCookie >> 16)
	}
	var key [16]byte
	if xor {
		binary.BigEndian.PutUint32(key[:4], MagicCookie)
		copy(key[4:], txid)
	}
	switch {
	case v[1] == 0x01 && len(v) == 8:
		var ip [4]byte
		for i := range 4 {
			ip[i] = v[4+i] ^ key[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom4(ip), port), true
	case v[1] == 0x02 && len(v) == 20:
		var ip [16]byte
		for i := range 16 {
			ip[i] = v[4+i] ^ key[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom16(ip).Unmap(), port), true
	}
	return netip.AddrPort{}, false
}

// IsChannelData reports whether b starts with a ChannelData header: the two
// top bits 01 (RFC 8656 §12.4), 0x4000 through 0x7FFF.
func IsChannelData(b []byte) bool { return len(b) >= 4 && b[0]&0xC0 == 0x40 }

// ChannelData returns the channel number and the application data of the
// ChannelData message at the start of b (RFC 8656 §12.4). Over UDP the
// padding is optional and ignored; what follows the data is the caller's
// (over TCP, the next frame).
func ChannelData(b []byte) (number uint16, data []byte, ok bool) {
	if !IsChannelData(b) {
		return 0, nil, false
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if 4+n > len(b) {
		return 0, nil, false
	}
	return binary.BigEndian.Uint16(b), b[4 : 4+n], true
}

// ValidChannel reports whether n is a channel number a client may bind.
//
// RFC 8656 §11.2 narrowed the range to 0x4000-0x4FFF (0x5000-0x7FFF are
// reserved there), but RFC 5766 §11 allowed 0x4000-0x7FFF and the clients
// still use all of it: libwebrtc (Chrome, Safari, every app built on it)
// picks numbers up to kMaxChannelNumber = 0x7FFF in its turn_port, and so do
// coturn's turnutils_uclient and pion's own client. coturn 4.16 enforced the
// narrow range, broke them, and had to add --rfc5766-channel-numbers; icegate
// does not repeat that. What no RFC ever allowed is refused: 0x0000-0x3FFF
// would be read as STUN, 0x8000-0xFFFF as neither STUN nor ChannelData (the
// first two bits of ChannelData are 01, RFC 8656 §12.4). pion's ChannelData
// decoder and the relay's fast path agree: both take 0x4000-0x7FFF.
func ValidChannel(n uint16) bool { return n >= 0x4000 && n <= 0x7FFF }

// PutChannelDataHeader writes the 4-byte ChannelData header for n bytes of
// data on channel number at b.
func PutChannelDataHeader(b []byte, number uint16, n int) {
	binary.BigEndian.PutUint16(b[0:], number)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
}

// DataIndicationHeadroom is the room a caller keeps in front of a peer's
// datagram so that either TURN header can be written in place: ChannelData
// (4 bytes) or a Data indication (20-byte header, XOR-PEER-ADDRESS of up to
// 24 bytes, DATA's 4-byte attribute header: 48 bytes).
const DataIndicationHeadroom = 48

// DataIndication writes a Data indication (RFC 8656 §11.4) around the n
// bytes of peer data at b[DataIndicationHeadroom:] and returns the message,
// a slice of b. b must have room for up to 3 bytes of padding after the data.
// txid is the transaction ID to use (RFC 8489 §6: random for an indication).
func DataIndication(b []byte, n int, from netip.AddrPort, txid [12]byte) []byte {
	alen := AddrLen(from.Addr())
	start := DataIndicationHeadroom - 4 - (4 + alen) - HeaderSize
	m := b[start:]
	pad := (4 - n%4) % 4
	for i := range pad {
		b[DataIndicationHeadroom+n+i] = 0
	}
	binary.BigEndian.PutUint16(m[0:], TypeDataIndication)
	binary.BigEndian.PutUint16(m[2:], uint16(4+alen+4+n+pad))
	binary.BigEndian.PutUint32(m[4:], MagicCookie)
	copy(m[8:20], txid[:])
	PutAddr(m[20:], AttrXORPeerAddress, from, m[8:20], true)
	d := m[20+4+alen:]
	binary.BigEndian.PutUint16(d[0:], AttrData)
	binary.BigEndian.PutUint16(d[2:], uint16(n))
	return m[:20+4+alen+4+n+pad]
}

// SendIndication decodes a Send indication (RFC 8656 §11.1) as the relay's
// fast path takes it: XOR-PEER-ADDRESS and DATA, with nothing else but
// SOFTWARE and FINGERPRINT. ok is false for anything else (another
// attribute, a malformed one, a missing one): the caller leaves such a
// message to the full path, which answers or drops it by the RFC.
func SendIndication(m []byte) (peer netip.AddrPort, data []byte, ok bool) {
	if len(m) < HeaderSize || Type(m) != TypeSendIndication {
		return netip.AddrPort{}, nil, false
	}
	m, ok = Message(m)
	if !ok {
		return netip.AddrPort{}, nil, false
	}
	it := Attrs(m)
	for it.Next() {
		switch it.Type {
		case AttrXORPeerAddress:
			if peer, ok = ParseAddr(it.Value, TransactionID(m), true); !ok {
				return netip.AddrPort{}, nil, false
			}
		case AttrData:
			data = it.Value
		case AttrFingerprint, AttrSoftware:
		default:
			return netip.AddrPort{}, nil, false
		}
	}
	if it.Err() || !peer.IsValid() || data == nil {
		return netip.AddrPort{}, nil, false
	}
	return peer, data, true
}

// BindingAnswer writes into out the success response to the plain Binding
// request req from src and returns it, or returns nil when req is not a plain
// Binding request this answer fits: anything but SOFTWARE and FINGERPRINT in
// it, a FINGERPRINT that does not match (RFC 8489 §7.3: discard; the caller's
// full path does), bytes after the message. The answer carries
// XOR-MAPPED-ADDRESS, MAPPED-ADDRESS (for RFC 3489-era clients), SOFTWARE
// (software, at most 128 bytes) and FINGERPRINT. out needs 100 + len(software)
// bytes at most.
func BindingAnswer(req, out []byte, src netip.AddrPort, software string) []byte {
	if len(req) < HeaderSize || Type(req) != TypeBindingRequest {
		return nil
	}
	m, ok := Message(req)
	if !ok || len(m) != len(req) {
		return nil
	}
	it := Attrs(m)
	for it.Next() {
		if it.Type != AttrSoftware && it.Type != AttrFingerprint {
			return nil
		}
	}
	if it.Err() || !CheckFingerprint(m) {
		return nil
	}
	alen := AddrLen(src.Addr())
	swPad := (len(software) + 3) &^ 3
	size := HeaderSize + 2*(4+alen) + 4 + swPad + 8
	if len(software) > 128 || len(out) < size {
		return nil
	}
	r := out[:size]
	binary.BigEndian.PutUint16(r[0:], TypeBindingSuccess)
	binary.BigEndian.PutUint16(r[2:], uint16(size-HeaderSize))
	copy(r[4:20], req[4:20]) // magic cookie and transaction ID
	off := HeaderSize
	// XOR-MAPPED-ADDRESS (RFC 8489 §14.2), then MAPPED-ADDRESS (§14.1).
	off += PutAddr(r[off:], AttrXORMappedAddress, src, r[8:20], true)
	off += PutAddr(r[off:], AttrMappedAddress, src, nil, false)
	binary.BigEndian.PutUint16(r[off:], AttrSoftware)
	binary.BigEndian.PutUint16(r[off+2:], uint16(len(software)))
	n := copy(r[off+4:], software)
	clear(r[off+4+n : off+4+swPad])
	off += 4 + swPad
	PutFingerprint(r, off)
	return r
}

// ErrorCode returns the error code of an error response m (RFC 8489 §14.8),
// or 0 when m is not an error response or carries no valid ERROR-CODE.
func ErrorCode(m []byte) int {
	if len(m) < HeaderSize || m[0]&0x01 == 0 || m[1]&0x10 == 0 {
		return 0
	}
	v, ok := Find(m, AttrErrorCode)
	if !ok || len(v) < 4 {
		return 0
	}
	return int(v[2]&0x7)*100 + int(v[3])
}
