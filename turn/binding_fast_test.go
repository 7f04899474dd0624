package turn

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"

	"icegate/stun"
)

// TestFastBindingMatchesResponder: the fast answer is byte for byte the
// answer of stun.Responder without RFC 5780, for IPv4 and IPv6 clients and
// with the attributes a plain request may carry.
func TestFastBindingMatchesResponder(t *testing.T) {
	srcs := []string{"203.0.113.7:40000", "[2001:db8::7]:3478", "[::ffff:198.51.100.1]:1", "127.0.0.1:65535"}
	reqs := []*pionstun.Message{
		pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest),
		pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.Fingerprint),
		pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.NewSoftware("libwebrtc"), pionstun.Fingerprint),
	}
	var r *stun.Responder
	for _, s := range srcs {
		src := netip.MustParseAddrPort(s)
		for i, req := range reqs {
			want, err := r.Answer(stun.Request{Msg: req, Src: src})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := fastBinding(req.Raw, make([]byte, 200), src)
			if !bytes.Equal(got, want.Data) {
				t.Errorf("%s request %d:\n got % x\nwant % x", s, i, got, want.Data)
			}
		}
	}
	// Requests the fast path must leave alone.
	for _, req := range []*pionstun.Message{
		pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, rawAttr{pionstun.AttrChangeRequest, []byte{0, 0, 0, 6}}),
		pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.NewUsername("x")),
		pionstun.MustBuild(pionstun.TransactionID, pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest)),
	} {
		if resp, _ := fastBinding(req.Raw, make([]byte, 200), netip.MustParseAddrPort("127.0.0.1:1")); resp != nil {
			t.Errorf("fast path answered %v", req)
		}
	}
	if resp, _ := fastBinding([]byte{0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 200), netip.MustParseAddrPort("127.0.0.1:1")); resp != nil {
		t.Error("fast path answered a truncated request")
	}
}

// TestFastBindingNoAllocs: a Binding round trip through the server
// allocates nothing, on both I/O paths.
func TestFastBindingNoAllocs(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable], func(t *testing.T) {
			srv := startServerIO(t, func(c *Config) { c.Limits.UnauthenticatedRate = NoLimit }, portable)
			c := newRawClient(t, "127.0.0.1", srv.addr(t, "udp", "4"))
			req := pionstun.MustBuild(pionstun.TransactionID, pionstun.BindingRequest, pionstun.Fingerprint)
			server := addrPortOf(srv.addr(t, "udp", "4"))
			buf := make([]byte, 1500)
			_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			trip := func() {
				if _, err := c.conn.WriteToUDPAddrPort(req.Raw, server); err != nil {
					t.Fatal(err)
				}
				n, _, err := c.conn.ReadFromUDPAddrPort(buf)
				if err != nil || n < 20 || buf[0] != 0x01 || buf[1] != 0x01 {
					t.Fatalf("binding answer % x, %v", buf[:n], err)
				}
			}
			trip()
			if a := allocsPerRun(1000, trip); a > 0.05 {
				t.Fatalf("%.2f allocations per Binding, want 0", a)
			}
		})
	}
}
