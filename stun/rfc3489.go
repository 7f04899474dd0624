package stun

import (
	"encoding/binary"
	"net/netip"

	"icegate/internal/stunwire"
)

// Classic RFC 3489 Binding. Clients that predate RFC 5389 send no magic
// cookie: bytes 4 to 19 of their header are a 128-bit transaction ID (RFC
// 3489 §11.1). With Config.RFC3489 a Responder answers their Binding
// requests the way RFC 3489 §8.2 says, on the four RFC 5780 sockets: a
// Binding Response with MAPPED-ADDRESS, SOURCE-ADDRESS and CHANGED-ADDRESS,
// from the socket CHANGE-REQUEST names. RFC 3489 knows IPv4 only (§11.2.1:
// "The address family is always 0x01"), so classic answers exist only for
// an IPv4 pair of addresses.

// RFC 3489 message types (§11.1) and attribute types (§11.2).
const (
	classicBindingRequest  = 0x0001
	classicBindingResponse = 0x0101
	classicBindingError    = 0x0111

	attrMappedAddress    = 0x0001
	attrResponseAddress  = 0x0002
	attrChangeRequest    = 0x0003
	attrSourceAddress    = 0x0004
	attrChangedAddress   = 0x0005
	attrErrorCode        = 0x0009
	attrUnknownAttrs     = 0x000A
	classicHeaderSize    = 20
	classicAddrAttrSize  = 4 + 8
	classicResponseSize  = classicHeaderSize + 3*classicAddrAttrSize // 56
	maxClassicUnknown    = 8
	classicReasonMaxSize = 32
)

// ClassicRequest is a decoded RFC 3489 Binding Request (§11.1).
type ClassicRequest struct {
	// TransactionID is the request's 128-bit transaction ID, echoed in the
	// answer.
	TransactionID [16]byte
	// Change holds the CHANGE-REQUEST flags (ChangeIP, ChangePort), 0 when
	// the request has none.
	Change uint8
	// ResponseAddress is the request's RESPONSE-ADDRESS, invalid without
	// one. It is decoded only to check it: icegate never sends there (see
	// AnswerClassic).
	ResponseAddress netip.AddrPort
	// Size is the request's size in bytes.
	Size int
	// Unknown lists, up to 8, the comprehension-required attributes
	// (below 0x8000) icegate does not take in a Binding Request: USERNAME,
	// PASSWORD and MESSAGE-INTEGRITY (RFC 3489 §8.2.1's shared-secret
	// integrity, which needs the TLS Shared Secret service icegate does not
	// run) and any it does not know. They are answered with 420.
	Unknown    [maxClassicUnknown]uint16
	NumUnknown int
}

// IsClassicBinding reports whether b has the header of an RFC 3489 Binding
// Request: type 0x0001, a length that is a multiple of four and accounts for
// exactly the rest of b, and no RFC 5389 magic cookie where RFC 3489 has the
// first bytes of the transaction ID. It looks at nothing else.
func IsClassicBinding(b []byte) bool {
	if len(b) < classicHeaderSize || b[0] != 0x00 || b[1] != classicBindingRequest {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	return n%4 == 0 && classicHeaderSize+n == len(b) && binary.BigEndian.Uint32(b[4:]) != magicCookie
}

// ParseClassic decodes an RFC 3489 Binding Request. It returns
// ErrNotClassic when b is not one at all (see IsClassicBinding), which is
// not to be answered; ErrClassicBadRequest, with TransactionID and Size
// set, for a good header with malformed attributes (an attribute running
// past the end, a CHANGE-REQUEST or RESPONSE-ADDRESS of the wrong size or
// family), which gets a 400. A request with NumUnknown > 0 gets a 420.
func ParseClassic(b []byte) (ClassicRequest, error) {
	var req ClassicRequest
	if !IsClassicBinding(b) {
		return req, ErrNotClassic
	}
	copy(req.TransactionID[:], b[4:20])
	req.Size = len(b)
	var change, respAddr bool
	for off := classicHeaderSize; off < len(b); {
		if off+4 > len(b) {
			return req, ErrClassicBadRequest
		}
		t := binary.BigEndian.Uint16(b[off:])
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		// RFC 3489 makes every attribute a multiple of four bytes long; a
		// shorter one is read as RFC 5389 pads it.
		next := off + 4 + (l+3)&^3
		if next > len(b) {
			return req, ErrClassicBadRequest
		}
		v := b[off+4 : off+4+l]
		off = next
		switch {
		case t == attrChangeRequest:
			// §11.2.4: 32 bits, the flags in the last byte. The first one
			// counts, as in the RFC 5389 path.
			if l != 4 {
				return req, ErrClassicBadRequest
			}
			if !change {
				req.Change = v[3] & (ChangeIP | ChangePort)
				change = true
			}
		case t == attrResponseAddress:
			// §11.2.2. Decoded to check it, never used.
			ap, ok := classicAddr(v)
			if !ok {
				return req, ErrClassicBadRequest
			}
			if !respAddr {
				req.ResponseAddress = ap
				respAddr = true
			}
		case t >= 0x8000:
			// Optional (§11.1): ignored.
		default:
			if req.NumUnknown < len(req.Unknown) {
				req.Unknown[req.NumUnknown] = t
				req.NumUnknown++
			}
		}
	}
	return req, nil
}

// classicAddr decodes an RFC 3489 address attribute (§11.2.1): IPv4 only.
func classicAddr(v []byte) (netip.AddrPort, bool) {
	if len(v) != 8 || v[1] != 0x01 {
		return netip.AddrPort{}, false
	}
	ip := netip.AddrFrom4([4]byte(v[4:8]))
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(v[2:])), true
}

// Classic reports whether r answers RFC 3489 Binding requests: with
// Config.RFC3489 and an IPv4 alternate address.
func (r *Responder) Classic() bool {
	return r.Alternate() && r.cfg.RFC3489 && r.cfg.Addrs[Primary].Addr().Unmap().Is4()
}

// AnswerClassic answers the RFC 3489 Binding Request b, received from src on
// socket on (RFC 3489 §8.2). The success response is a Binding Response
// with the same transaction ID, MAPPED-ADDRESS (src, not XORed), SOURCE-ADDRESS
// (the socket it leaves from) and CHANGED-ADDRESS (the socket with both IP
// and port changed relative to on, as OTHER-ADDRESS in RFC 5780 Table 1), and
// nothing else: no SOFTWARE, no FINGERPRINT, which RFC 3489 does not have.
// It leaves from the socket CHANGE-REQUEST names (Table 1: change IP flips
// A1 and A2, change port P1 and P2). A request with attributes icegate does
// not take gets 420 with UNKNOWN-ATTRIBUTES, a malformed one 400; error
// responses leave from on.
//
// Every answer goes to src. RESPONSE-ADDRESS (§11.2.2) is deliberately not
// honoured: it names any address at all, so a forged request would make the
// server send its answers to a victim, a reflection and amplification vector
// (RFC 5389 dropped the attribute for that reason). A client relying on it
// gets the answer at its source instead, without REFLECTED-FROM.
//
// Classic answers are at most 56 bytes for success (a 20-byte request is
// amplified 2.8 times) and never more than max(request, 128) bytes. It
// returns ErrNotClassic when b is not an RFC 3489 Binding Request, or when r
// does not answer them (see Classic), or src is not IPv4: the request is
// then not to be answered.
func (r *Responder) AnswerClassic(b []byte, src netip.AddrPort, on Socket) (Reply, error) {
	if !r.Classic() || on > AltBoth {
		return Reply{}, ErrNotClassic
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if !src.Addr().Is4() {
		return Reply{}, ErrNotClassic
	}
	req, err := ParseClassic(b)
	switch {
	case err == ErrClassicBadRequest:
		return Reply{Data: classicError(&req, 400, "Bad Request"), From: on, To: src}, nil
	case err != nil:
		return Reply{}, err
	case req.NumUnknown > 0:
		return Reply{Data: classicError(&req, 420, "Unknown Attribute"), From: on, To: src}, nil
	}
	from := on.Changed(req.Change)
	m := make([]byte, classicHeaderSize, classicResponseSize)
	binary.BigEndian.PutUint16(m[0:], classicBindingResponse)
	binary.BigEndian.PutUint16(m[2:], classicResponseSize-classicHeaderSize)
	copy(m[4:20], req.TransactionID[:])
	for _, a := range [...]struct {
		t  uint16
		ap netip.AddrPort
	}{
		{attrMappedAddress, src},
		{attrSourceAddress, r.cfg.Addrs[from]},        // §11.2.5: where the response is sent from
		{attrChangedAddress, r.cfg.Addrs[on^AltBoth]}, // §11.2.3: always present, whatever the flags
	} {
		// Every address here is IPv4 (see Classic, and src above), so each
		// attribute is classicAddrAttrSize bytes and m never grows.
		m = binary.BigEndian.AppendUint16(m, a.t)
		m = binary.BigEndian.AppendUint16(m, classicAddrAttrSize-4)
		m = stunwire.AppendAddr(m, a.ap, nil, false)
	}
	return Reply{Data: m, From: from, To: src}, nil
}

// classicError builds a Binding Error Response (RFC 3489 §11.1, §11.2.9):
// ERROR-CODE with the reason padded with spaces to a multiple of four bytes,
// and for 420 UNKNOWN-ATTRIBUTES with an odd list padded by repeating an
// entry (§11.2.10). At most 20 + 8 + 32 + 4 + 8×2 = 80 bytes.
func classicError(req *ClassicRequest, code int, reason string) []byte {
	if len(reason) > classicReasonMaxSize {
		reason = reason[:classicReasonMaxSize]
	}
	reasonLen := (len(reason) + 3) &^ 3
	n := req.NumUnknown
	if code != 420 {
		n = 0
	}
	listLen := (2*n + 3) &^ 3
	size := classicHeaderSize + 4 + 4 + reasonLen
	if n > 0 {
		size += 4 + listLen
	}
	m := make([]byte, size)
	binary.BigEndian.PutUint16(m[0:], classicBindingError)
	binary.BigEndian.PutUint16(m[2:], uint16(size-classicHeaderSize))
	copy(m[4:20], req.TransactionID[:])
	off := classicHeaderSize
	binary.BigEndian.PutUint16(m[off:], attrErrorCode)
	binary.BigEndian.PutUint16(m[off+2:], uint16(4+reasonLen))
	m[off+6] = byte(code / 100)
	m[off+7] = byte(code % 100)
	copy(m[off+8:], reason)
	for i := off + 8 + len(reason); i < off+8+reasonLen; i++ {
		m[i] = ' '
	}
	off += 8 + reasonLen
	if n > 0 {
		binary.BigEndian.PutUint16(m[off:], attrUnknownAttrs)
		binary.BigEndian.PutUint16(m[off+2:], uint16(listLen))
		for i := range listLen / 2 {
			binary.BigEndian.PutUint16(m[off+4+2*i:], req.Unknown[min(i, n-1)])
		}
	}
	return m
}
