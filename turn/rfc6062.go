package turn

import (
	"bytes"
	"time"

	pionstun "github.com/pion/stun/v4"
)

// RFC 6062 data connections: what icegate adds around pion's ConnectionBind.
//
// A ConnectionBind request (RFC 6062 §4.4) arrives on a new TCP or TLS
// connection, the client's data connection, and is authenticated like every
// request. pion v5.1.2 (and v5.1.3, which leaves the server's ConnectionBind
// alone) answers it with a success response that carries no
// MESSAGE-INTEGRITY, although RFC 8489 §9.2.4 says a response to an
// authenticated request is signed with the request's key. pion's own client
// does not check; coturn's turnutils_uclient does, prints "Wrong integrity in
// a message received from server" and never uses the connection. So the
// data connection remembers the key its ConnectionBind was verified with,
// and signs pion's success response on its way out. The response is the last
// STUN message on that connection: from then on it carries the peer's bytes.

// connBind is a ConnectionBind request waiting for pion's answer.
type connBind struct {
	txid [pionstun.TransactionIDSize]byte
	key  []byte
}

// connectionBind returns the pending answer for the ConnectionBind request
// in frame (already passed by the gate), or nil when its key cannot be found
// again (then pion answers as it does, unsigned).
func (g *gate) connectionBind(frame []byte) *connBind {
	msg := &pionstun.Message{Raw: frame}
	if err := msg.Decode(); err != nil || !msg.Contains(pionstun.AttrMessageIntegrity) {
		return nil
	}
	var username pionstun.Username
	var realm pionstun.Realm
	if username.GetFrom(msg) != nil || realm.GetFrom(msg) != nil {
		return nil
	}
	creds := g.s.creds.Load()
	if creds == nil {
		return nil
	}
	_, key, err := g.verify(creds, msg, string(username), string(realm), time.Now())
	if err != nil {
		return nil
	}
	return &connBind{txid: msg.TransactionID, key: key}
}

// sign returns pion's ConnectionBind success response b with
// MESSAGE-INTEGRITY added (RFC 8489 §9.2.4 and §14.5: computed over the
// message up to the attribute, with the length field counting it), or b
// itself when it is not that response or is signed already.
func (cb *connBind) sign(b []byte) []byte {
	const successType = 0x010B // ConnectionBind success response
	if len(b) < 20 || b[0] != successType>>8 || b[1] != successType&0xFF ||
		!bytes.Equal(b[8:20], cb.txid[:]) {
		return b
	}
	msg := &pionstun.Message{Raw: append([]byte(nil), b...)}
	if err := msg.Decode(); err != nil ||
		msg.Contains(pionstun.AttrMessageIntegrity) || msg.Contains(pionstun.AttrFingerprint) {
		return b
	}
	if err := pionstun.MessageIntegrity(cb.key).AddTo(msg); err != nil {
		return b
	}
	return msg.Raw
}
