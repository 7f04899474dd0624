package stunwire

import (
	"bytes"
	"net/netip"
	"testing"

	pionstun "github.com/pion/stun/v4"
)

// FuzzWire runs every reader over arbitrary bytes: none may panic, and what
// they accept must agree with pion's decoder and re-encode to the same bytes.
func FuzzWire(f *testing.F) {
	f.Add(pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.Fingerprint).Raw)
	f.Add([]byte{0x40, 0x00, 0x00, 0x02, 1, 2, 0, 0})
	peer := &pionstun.XORMappedAddress{IP: []byte{198, 51, 100, 1}, Port: 9}
	f.Add(pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodSend, pionstun.ClassIndication),
		setterFunc(func(m *pionstun.Message) error { return peer.AddToAs(m, pionstun.AttrXORPeerAddress) }),
		pionstun.RawAttribute{Type: pionstun.AttrData, Value: []byte("x")}).Raw)
	out := make([]byte, 512)
	src := netip.MustParseAddrPort("203.0.113.1:1")
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, ok := Message(b); ok {
			it := Attrs(m)
			for it.Next() {
				if it.Type == AttrXORPeerAddress || it.Type == AttrXORMappedAddress {
					if ap, ok := ParseAddr(it.Value, TransactionID(m), true); ok {
						enc := AppendAddr(nil, ap, TransactionID(m), true)
						if !bytes.Equal(enc, it.Value) && !ap.Addr().Is4() {
							t.Fatalf("address %v re-encodes to %x, was %x", ap, enc, it.Value)
						}
					}
				}
			}
			if !it.Err() {
				pm := &pionstun.Message{Raw: append([]byte(nil), m...)}
				if err := pm.Decode(); err != nil {
					t.Fatalf("walk accepted what pion refuses: %v", err)
				}
			}
			if CheckFingerprint(m) && bytes.Contains(m, []byte{0x80, 0x28, 0, 4}) {
				pm := &pionstun.Message{Raw: append([]byte(nil), m...)}
				if pm.Decode() == nil && pm.Contains(pionstun.AttrFingerprint) {
					if err := pionstun.Fingerprint.Check(pm); err != nil {
						t.Fatalf("fingerprint accepted that pion refuses: %v", err)
					}
				}
			}
		}
		_, _, _ = SendIndication(b)
		_, _, _ = ChannelData(b)
		_ = ErrorCode(b)
		if r := BindingAnswer(b, out, src, "icegate"); r != nil {
			pm := &pionstun.Message{Raw: append([]byte(nil), r...)}
			if err := pm.Decode(); err != nil {
				t.Fatalf("answer does not decode: %v", err)
			}
		}
	})
}
