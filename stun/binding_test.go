package stun

import (
	"net/netip"
	"testing"

	pionstun "github.com/pion/stun/v4"
)

func TestBindingResponse(t *testing.T) {
	for _, src := range []string{"203.0.113.7:40000", "[2001:db8::7]:3478", "[::ffff:198.51.100.1]:1"} {
		ap := netip.MustParseAddrPort(src)
		req := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest)
		raw, err := BindingResponse(req, ap)
		if err != nil {
			t.Fatal(err)
		}
		resp := &pionstun.Message{Raw: raw}
		if err := resp.Decode(); err != nil {
			t.Fatal(err)
		}
		if resp.Type != pionstun.BindingSuccess || resp.TransactionID != req.TransactionID {
			t.Fatalf("%s: type %v txid match %v", src, resp.Type, resp.TransactionID == req.TransactionID)
		}
		var xa pionstun.XORMappedAddress
		var ma pionstun.MappedAddress
		if err := xa.GetFrom(resp); err != nil {
			t.Fatal(err)
		}
		if err := ma.GetFrom(resp); err != nil {
			t.Fatal(err)
		}
		want := ap.Addr().Unmap()
		for name, got := range map[string]netip.AddrPort{
			"XOR-MAPPED-ADDRESS": netip.AddrPortFrom(netip.MustParseAddr(xa.IP.String()), uint16(xa.Port)),
			"MAPPED-ADDRESS":     netip.AddrPortFrom(netip.MustParseAddr(ma.IP.String()), uint16(ma.Port)),
		} {
			if got != netip.AddrPortFrom(want, ap.Port()) {
				t.Errorf("%s: %s = %v, want %v", src, name, got, netip.AddrPortFrom(want, ap.Port()))
			}
		}
		if err := pionstun.Fingerprint.Check(resp); err != nil {
			t.Errorf("%s: fingerprint: %v", src, err)
		}
	}
	if _, err := BindingResponse(pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest)), netip.MustParseAddrPort("127.0.0.1:1")); err == nil {
		t.Fatal("answered an Allocate as a Binding")
	}
}

// FuzzBindingResponse: any message that decodes gets a well-formed answer
// or an error, never a panic.
func FuzzBindingResponse(f *testing.F) {
	f.Add(pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest).Raw, []byte{127, 0, 0, 1}, uint16(9))
	f.Add(pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.NewSoftware("x")).Raw,
		netip.MustParseAddr("2001:db8::1").AsSlice(), uint16(3478))
	f.Fuzz(func(t *testing.T, raw, ip []byte, port uint16) {
		m := &pionstun.Message{Raw: raw}
		if m.Decode() != nil {
			return
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		out, err := BindingResponse(m, netip.AddrPortFrom(addr, port))
		if err != nil {
			return
		}
		resp := &pionstun.Message{Raw: out}
		if err := resp.Decode(); err != nil {
			t.Fatalf("response does not decode: %v", err)
		}
	})
}
