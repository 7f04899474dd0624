package turn

import (
	"net/netip"
	"time"

	"icegate/internal/stunwire"
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
// the last attribute (RFC 8489 §7.3, §14.7). The bytes are stunwire's.
func fastBinding(req, out []byte, src netip.AddrPort) (resp []byte, bad bool) {
	if resp = stunwire.BindingAnswer(req, out, src, stun.Software); resp != nil {
		return resp, false
	}
	m, ok := stunwire.Message(req)
	return nil, ok && stunwire.Type(m) == stunwire.TypeBindingRequest && !stunwire.CheckFingerprint(m)
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
