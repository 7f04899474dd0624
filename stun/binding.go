// Package stun owns icegate's answers to STUN Binding requests (RFC 8489 §6.3)
// and, later, RFC 5780 behaviour discovery. It sits in front of the TURN
// machinery: a Binding request never travels through pion's allocation code.
package stun

import (
	"errors"
	"net/netip"

	pionstun "github.com/pion/stun/v4"
)

// Software is the SOFTWARE attribute value icegate sends (RFC 8489 §14.14).
var Software = "icegate"

// ErrNotBindingRequest is returned when asked to answer something else.
var ErrNotBindingRequest = errors.New("stun: not a binding request")

// BindingResponse builds the success response to a decoded Binding request
// received from src: XOR-MAPPED-ADDRESS (RFC 8489 §14.2), MAPPED-ADDRESS for
// RFC 3489-era clients that still read it (§14.1), SOFTWARE and FINGERPRINT.
// The returned bytes are ready to send.
func BindingResponse(req *pionstun.Message, src netip.AddrPort) ([]byte, error) {
	if req.Type != pionstun.BindingRequest {
		return nil, ErrNotBindingRequest
	}
	ip := src.Addr().Unmap().AsSlice()
	port := int(src.Port())
	resp, err := pionstun.Build(
		pionstun.NewTransactionIDSetter(req.TransactionID),
		pionstun.BindingSuccess,
		&pionstun.XORMappedAddress{IP: ip, Port: port},
		&pionstun.MappedAddress{IP: ip, Port: port},
		pionstun.NewSoftware(Software),
		pionstun.Fingerprint,
	)
	if err != nil {
		return nil, err
	}
	return resp.Raw, nil
}
