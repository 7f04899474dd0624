package stun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	pionstun "github.com/pion/stun/v4"

	"icegate/internal/stunwire"
)

// Socket names one of the four UDP sockets of an RFC 5780 server (§3): the
// primary address and port A1:P1, and the alternates. The low bit is "port
// changed", the high bit "IP changed", so a CHANGE-REQUEST is an XOR.
type Socket uint8

const (
	// Primary is A1:P1, the address clients are configured with.
	Primary Socket = 0
	// AltPort is A1:P2.
	AltPort Socket = 1
	// AltIP is A2:P1.
	AltIP Socket = 2
	// AltBoth is A2:P2.
	AltBoth Socket = 3
)

func (s Socket) String() string {
	switch s {
	case Primary:
		return "A1:P1"
	case AltPort:
		return "A1:P2"
	case AltIP:
		return "A2:P1"
	case AltBoth:
		return "A2:P2"
	}
	return fmt.Sprintf("socket(%d)", uint8(s))
}

// CHANGE-REQUEST flags (RFC 5780 §7.2).
const (
	ChangeIP   = 0x04
	ChangePort = 0x02
)

// Changed returns the socket a response to a request received on s leaves
// from when the request's CHANGE-REQUEST carries flags (RFC 5780 Table 1;
// RFC 3489 §8.2 has the same rule): ChangeIP flips A1 and A2, ChangePort P1
// and P2. Other bits are ignored.
func (s Socket) Changed(flags byte) Socket {
	if flags&ChangeIP != 0 {
		s ^= AltIP
	}
	if flags&ChangePort != 0 {
		s ^= AltPort
	}
	return s
}

// Path MTU assumptions for PADDING (RFC 5780 §7.6): an Ethernet MTU less the
// IP and UDP headers.
const (
	mtuPayload4 = 1500 - 20 - 8
	mtuPayload6 = 1500 - 40 - 8
)

// minBudget is the size a response to an unauthenticated request may have
// whatever the request's size: XOR-MAPPED-ADDRESS, MAPPED-ADDRESS,
// RESPONSE-ORIGIN, OTHER-ADDRESS and FINGERPRINT for IPv6 (124 bytes) fit.
// Above max(request, minBudget) the optional attributes are left out, so the
// smallest possible request (20 bytes) is amplified at most 6.4 times and a
// typical one (with SOFTWARE and FINGERPRINT, 40 to 60 bytes) about twice.
const minBudget = 128

// Config describes what a Responder answers for.
type Config struct {
	// Addrs are the transport addresses clients see for the four sockets,
	// indexed by Socket: behind a 1:1 NAT the public ones. Only Addrs[Primary]
	// set (or none) means no alternate address: the server is a plain RFC
	// 8489 server, never sends OTHER-ADDRESS and answers the RFC 5780
	// attributes with 420. With an alternate all four must be set, the two
	// IPs and the two ports differing.
	Addrs [4]netip.AddrPort
	// RFC3489 adds CHANGED-ADDRESS and SOURCE-ADDRESS (RFC 3489 §11.2.3,
	// §11.2.5) to responses, for clients that predate RFC 5780, and with an
	// IPv4 pair of addresses has AnswerClassic answer RFC 3489 requests,
	// those without the magic cookie. Only with an alternate address.
	RFC3489 bool
	// Software is the SOFTWARE value; "" means the package's Software.
	Software string
}

// Responder answers Binding requests (RFC 8489 §6.3, RFC 5780 §6). It is
// safe for concurrent use. The zero value, and a nil *Responder, answer as a
// plain server with no alternate address.
type Responder struct {
	cfg Config
	alt bool
}

// NewResponder checks cfg and returns a Responder.
func NewResponder(cfg Config) (*Responder, error) {
	r := &Responder{cfg: cfg}
	a := cfg.Addrs
	if a[AltPort].IsValid() || a[AltIP].IsValid() || a[AltBoth].IsValid() {
		for s, ap := range a {
			if !ap.IsValid() {
				return nil, fmt.Errorf("stun: alternate address: %s is not set", Socket(s))
			}
		}
		a1, a2 := a[Primary].Addr().Unmap(), a[AltIP].Addr().Unmap()
		p1, p2 := a[Primary].Port(), a[AltPort].Port()
		if a1 == a2 || p1 == p2 || a1.Is4() != a2.Is4() ||
			a[AltPort] != netip.AddrPortFrom(a[Primary].Addr(), p2) ||
			a[AltBoth] != netip.AddrPortFrom(a[AltIP].Addr(), p2) ||
			a[AltIP].Port() != p1 {
			return nil, fmt.Errorf("stun: alternate address: the four addresses %v are not two IPs of one family times two ports", a)
		}
		r.alt = true
	} else if cfg.RFC3489 {
		return nil, errors.New("stun: RFC 3489 attributes need an alternate address")
	}
	return r, nil
}

// Alternate reports whether r has an alternate address (RFC 5780 support).
func (r *Responder) Alternate() bool { return r != nil && r.alt }

// Request is a Binding request to answer.
type Request struct {
	// Msg is the decoded request.
	Msg *pionstun.Message
	// Src is where it came from.
	Src netip.AddrPort
	// On is the socket it arrived on. Ignored without an alternate address.
	On Socket
	// Stream is true over TCP or TLS. The answer is then a plain RFC 8489
	// one, as without an alternate address: the alternate sockets are UDP
	// only and the response rides the connection.
	Stream bool
}

// Reply is the answer to send.
type Reply struct {
	// Data is the encoded response.
	Data []byte
	// From is the socket to send it from (RFC 5780 Table 1).
	From Socket
	// To is where to send it: the request's source, or its IP with the
	// RESPONSE-PORT (RFC 5780 §7.5).
	To netip.AddrPort
}

// known reports whether icegate understands, or may safely ignore, the
// attribute type t in a Binding request: every comprehension-optional type
// (0x8000 and up) and the comprehension-required ones listed (RFC 8489
// §14), with the RFC 5780 ones only when alt (an alternate address) is set.
func known(t pionstun.AttrType, alt bool) bool {
	if t >= 0x8000 {
		return true // comprehension-optional
	}
	switch t {
	case pionstun.AttrUsername, pionstun.AttrMessageIntegrity, pionstun.AttrMessageIntegritySHA256,
		pionstun.AttrRealm, pionstun.AttrNonce, pionstun.AttrUserhash, pionstun.AttrPasswordAlgorithm,
		pionstun.AttrPriority, pionstun.AttrUseCandidate:
		return true
	case pionstun.AttrChangeRequest, pionstun.AttrResponsePort, pionstun.AttrPadding:
		return alt
	}
	return false
}

// Answer builds the response to req: a success response with
// XOR-MAPPED-ADDRESS and MAPPED-ADDRESS (RFC 5780 §6.1 wants both), with an
// alternate address also RESPONSE-ORIGIN and OTHER-ADDRESS (and CHANGED-ADDRESS
// and SOURCE-ADDRESS when RFC3489 is set), SOFTWARE, PADDING when asked, and
// FINGERPRINT; or an error response: 420 for unknown comprehension-required
// attributes (CHANGE-REQUEST, RESPONSE-PORT and PADDING without an alternate
// address, RFC 5780 §6.1), 400 for a malformed or contradictory request.
//
// A success response leaves from the socket Table 1 of RFC 5780 names
// (CHANGE-REQUEST flags XORed onto the receiving socket) to the request's
// source IP and RESPONSE-PORT or source port. Error responses leave from the
// receiving socket to the source.
func (r *Responder) Answer(req Request) (Reply, error) {
	m := req.Msg
	if m == nil || m.Type != pionstun.BindingRequest {
		return Reply{}, ErrNotBindingRequest
	}
	// Over a stream the answer is a plain RFC 8489 one: the alternate
	// sockets are UDP only, and the response rides the connection.
	alt := r.Alternate() && !req.Stream
	on := req.On
	if !alt || on > AltBoth {
		on = Primary
	}
	errReply := func(code pionstun.ErrorCode, reason string, unknown []pionstun.AttrType) (Reply, error) {
		b, err := r.errorResponse(m, code, reason, unknown)
		return Reply{Data: b, From: on, To: req.Src}, err
	}

	var unknown []pionstun.AttrType
	for _, a := range m.Attributes {
		if !known(a.Type, alt) {
			unknown = append(unknown, a.Type)
		}
	}
	if len(unknown) > 0 {
		// RFC 8489 §6.3.1.1; RFC 5780 §6.1 for CHANGE-REQUEST without an
		// alternate.
		return errReply(pionstun.CodeUnknownAttribute, "Unknown Attribute", unknown)
	}

	from, to := on, req.Src
	var padding bool
	if alt {
		if v, err := m.Get(pionstun.AttrChangeRequest); err == nil {
			if len(v) != 4 {
				return errReply(pionstun.CodeBadRequest, "Bad CHANGE-REQUEST", nil)
			}
			from = on.Changed(v[3])
		}
		if v, err := m.Get(pionstun.AttrResponsePort); err == nil {
			if len(v) != 4 {
				return errReply(pionstun.CodeBadRequest, "Bad RESPONSE-PORT", nil)
			}
			p := binary.BigEndian.Uint16(v)
			if p == 0 {
				return errReply(pionstun.CodeBadRequest, "RESPONSE-PORT 0", nil)
			}
			to = netip.AddrPortFrom(req.Src.Addr(), p)
		}
		padding = m.Contains(pionstun.AttrPadding)
		if padding && m.Contains(pionstun.AttrResponsePort) {
			// RFC 5780 §6.1: PADDING with RESPONSE-PORT is a 400.
			return errReply(pionstun.CodeBadRequest, "PADDING with RESPONSE-PORT", nil)
		}
	}

	b, err := r.success(m, req.Src, alt, on, from, to, padding)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Data: b, From: from, To: to}, nil
}

// addrAttr encodes a MAPPED-ADDRESS style attribute (RFC 8489 §14.1).
func addrAttr(ap netip.AddrPort) []byte { return stunwire.AppendAddr(nil, ap, nil, false) }

// xorAddrAttr encodes XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
func xorAddrAttr(ap netip.AddrPort, txid [pionstun.TransactionIDSize]byte) []byte {
	return stunwire.AppendAddr(nil, ap, txid[:], true)
}

const magicCookie = stunwire.MagicCookie

func (r *Responder) software() string {
	if r != nil && r.cfg.Software != "" {
		return r.cfg.Software
	}
	return Software
}

func (r *Responder) success(req *pionstun.Message, src netip.AddrPort, alt bool, on, from Socket, to netip.AddrPort, padding bool) ([]byte, error) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	reqSize := 20 + int(req.Length)
	budget := max(reqSize, minBudget)

	m := &pionstun.Message{TransactionID: req.TransactionID, Type: pionstun.BindingSuccess}
	m.WriteHeader()
	m.Add(pionstun.AttrXORMappedAddress, xorAddrAttr(src, req.TransactionID))
	m.Add(pionstun.AttrMappedAddress, addrAttr(src))
	// Optional attributes, in the order they are given up when the response
	// would exceed the budget (last first).
	type attr struct {
		t pionstun.AttrType
		v []byte
	}
	var opt []attr
	if alt {
		// RFC 5780 §6.1: RESPONSE-ORIGIN is the address the response is sent
		// from; OTHER-ADDRESS the alternate address and port relative to the
		// socket the request arrived on (Table 1: "Ca:Cp" in every row).
		m.Add(pionstun.AttrResponseOrigin, addrAttr(r.cfg.Addrs[from]))
		m.Add(pionstun.AttrOtherAddress, addrAttr(r.cfg.Addrs[on^AltBoth]))
		if r.cfg.RFC3489 {
			// RFC 3489 §11.2.3 CHANGED-ADDRESS is the same as OTHER-ADDRESS,
			// §11.2.5 SOURCE-ADDRESS the same as RESPONSE-ORIGIN.
			opt = append(opt,
				attr{pionstun.AttrChangedAddress, addrAttr(r.cfg.Addrs[on^AltBoth])},
				attr{pionstun.AttrSourceAddress, addrAttr(r.cfg.Addrs[from])})
		}
	}
	sw := []byte(r.software())
	opt = append([]attr{{pionstun.AttrSoftware, sw}}, opt...)
	size := len(m.Raw) + 8 // FINGERPRINT
	for _, a := range opt {
		size += 4 + (len(a.v)+3)&^3
	}
	// Drop from the end of opt, then SOFTWARE, until the response fits.
	for len(opt) > 0 && size > budget {
		last := opt[len(opt)-1]
		size -= 4 + (len(last.v)+3)&^3
		opt = opt[:len(opt)-1]
	}
	for _, a := range opt {
		m.Add(a.t, a.v)
	}
	if padding {
		// RFC 5780 §6.1 asks for PADDING the size of the outgoing MTU. To
		// stay amplification-safe the response is padded to the request's
		// size, at most the path MTU: a client that wants an MTU-sized
		// response sends an MTU-sized request.
		mtu := mtuPayload4
		if !to.Addr().Unmap().Is4() {
			mtu = mtuPayload6
		}
		target := min(reqSize, mtu)
		n := target - (len(m.Raw) + 4 + 8)
		n = max(n, 0) &^ 3
		m.Add(pionstun.AttrPadding, make([]byte, n))
	}
	if err := pionstun.Fingerprint.AddTo(m); err != nil {
		return nil, err
	}
	return m.Raw, nil
}

func (r *Responder) errorResponse(req *pionstun.Message, code pionstun.ErrorCode, reason string, unknown []pionstun.AttrType) ([]byte, error) {
	setters := []pionstun.Setter{
		pionstun.NewTransactionIDSetter(req.TransactionID),
		pionstun.NewType(pionstun.MethodBinding, pionstun.ClassErrorResponse),
		&pionstun.ErrorCodeAttribute{Code: code, Reason: []byte(reason)},
	}
	if len(unknown) > 0 {
		if len(unknown) > 8 {
			unknown = unknown[:8] // bounded: the request's size bounds it anyway
		}
		setters = append(setters, pionstun.UnknownAttributes(unknown))
	}
	setters = append(setters, pionstun.NewSoftware(r.software()), pionstun.Fingerprint)
	m, err := pionstun.Build(setters...)
	if err != nil {
		return nil, err
	}
	return m.Raw, nil
}
