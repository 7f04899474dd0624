// Package stun owns icegate's answers to STUN Binding requests (RFC 8489 §6.3)
// and RFC 5780 behaviour discovery (Responder), with classic RFC 3489 Binding
// for old clients (Responder.AnswerClassic); the natcheck client lives in
// stun/natcheck. It sits in front of the TURN machinery: a Binding request
// never travels through pion's allocation code.
package stun

import (
	"net/netip"

	pionstun "github.com/pion/stun/v4"
)

// Software is the SOFTWARE attribute value icegate sends (RFC 8489 §14.14).
var Software = "icegate"

// BindingResponse builds the response to a decoded Binding request received
// from src by a server without an alternate address: see Responder.Answer.
// The returned bytes are ready to send, a success or an error response.
func BindingResponse(req *pionstun.Message, src netip.AddrPort) ([]byte, error) {
	rep, err := (*Responder)(nil).Answer(Request{Msg: req, Src: src})
	if err != nil {
		return nil, err
	}
	return rep.Data, nil
}
