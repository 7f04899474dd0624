package turn

import (
	"context"
	"crypto/tls"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	pionturn "github.com/pion/turn/v5"
)

// TestALPNTLS: the TLS listener negotiates RFC 7443's labels, in the
// server's order when a client offers both, serves a client without ALPN
// or with only other protocols as before (no ALPN in the answer), and a
// client that negotiated stun.turn allocates and relays.
func TestALPNTLS(t *testing.T) {
	srv := startServer(t, nil)
	server := srv.addr(t, "tls", "4")
	echo := udpEcho(t, "127.0.0.1")
	for _, tc := range []struct {
		offer []string
		want  string
	}{
		{[]string{"stun.turn"}, "stun.turn"},
		{[]string{"stun.nat-discovery"}, "stun.nat-discovery"},
		{[]string{"stun.nat-discovery", "stun.turn"}, "stun.turn"},
		{[]string{"h2", "stun.turn"}, "stun.turn"},
		{nil, ""},
		{[]string{"http/1.1"}, ""},
	} {
		t.Run(strings.Join(append([]string{"offer"}, tc.offer...), "_"), func(t *testing.T) {
			c, err := tls.Dial("tcp", server.String(), &tls.Config{InsecureSkipVerify: true, NextProtos: tc.offer}) //nolint:gosec // self-signed test server
			if err != nil {
				t.Fatalf("handshake offering %q: %v", tc.offer, err)
			}
			if got := c.ConnectionState().NegotiatedProtocol; got != tc.want {
				_ = c.Close()
				t.Fatalf("offering %q negotiated %q, want %q", tc.offer, got, tc.want)
			}
			client := newClient(t, pionturn.NewSTUNConn(c), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
			relay, err := client.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			defer relay.Close()
			echoThrough(t, relay, echo)
		})
	}
}

// TestALPNDTLS: the DTLS listener negotiates the same labels and serves a
// client without ALPN; pion/dtls refuses a client offering only other
// protocols (RFC 7301 §3.2), which docs/tls.md states.
func TestALPNDTLS(t *testing.T) {
	srv := startServer(t, nil)
	server := srv.addr(t, "dtls", "4").(*net.UDPAddr)
	for _, tc := range []struct {
		offer  []string
		want   string
		refuse bool
	}{
		{offer: []string{"stun.turn"}, want: "stun.turn"},
		{offer: []string{"stun.nat-discovery"}, want: "stun.nat-discovery"},
		{offer: nil, want: ""},
		{offer: []string{"h2"}, refuse: true},
	} {
		t.Run(strings.Join(append([]string{"offer"}, tc.offer...), "_"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := dtls.Dial("udp", server, &dtls.Config{InsecureSkipVerify: true, SupportedProtocols: tc.offer}) //nolint:gosec // self-signed test server
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.HandshakeContext(ctx)
			if tc.refuse {
				if err == nil {
					t.Fatalf("offering %q: handshake succeeded, want no_application_protocol", tc.offer)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake offering %q: %v", tc.offer, err)
			}
			st, _ := c.ConnectionState()
			if st.NegotiatedProtocol != tc.want {
				t.Fatalf("offering %q negotiated %q, want %q", tc.offer, st.NegotiatedProtocol, tc.want)
			}
			client := newClient(t, pionturn.NewSTUNConn(c), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
			relay, err := client.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			_ = relay.Close()
		})
	}
}

// TestALPNOpenSSL: OpenSSL's client, as an operator checks a deployment
// (`openssl s_client -alpn stun.turn`), sees stun.turn negotiated over TLS
// and DTLS.
func TestALPNOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	srv := startServer(t, nil)
	for _, tc := range []struct{ transport, flag string }{{"tls", ""}, {"dtls", "-dtls1_2"}} {
		t.Run(tc.transport, func(t *testing.T) {
			args := []string{"s_client", "-connect", srv.addr(t, tc.transport, "4").String(), "-alpn", "stun.turn"}
			if tc.flag != "" {
				args = append(args, tc.flag)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "openssl", args...)
			cmd.Stdin = strings.NewReader("") // EOF: s_client ends after the handshake
			out, err := cmd.CombinedOutput()
			if !strings.Contains(string(out), "ALPN protocol: stun.turn") {
				t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}
