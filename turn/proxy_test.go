package turn

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"icegate/internal/proxied/proxiedtest"
)

// The trusted proxy of these tests is 127.0.0.2; 127.0.0.1 is anyone else.
const proxyIP = "127.0.0.2"

func proxyConfig(c *Config) {
	c.Listen.ProxyFrom = []netip.Prefix{netip.MustParsePrefix(proxyIP + "/32")}
}

// dialVia connects to server from the loopback address from, sends head
// first (nil: nothing), then speaks TLS when transport is tls.
func dialVia(t testing.TB, from, transport string, server net.Addr, head []byte) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", server.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if len(head) > 0 {
		if _, err := c.Write(head); err != nil {
			t.Fatal(err)
		}
	}
	if transport != "tls" {
		return c
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test server
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc
}

func bindingRequest(t testing.TB) []byte {
	t.Helper()
	m, err := pionstun.Build(pionstun.TransactionID, pionstun.BindingRequest)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// mapped sends a Binding request on c and returns its XOR-MAPPED-ADDRESS.
func mapped(c net.Conn) (string, error) {
	m, err := pionstun.Build(pionstun.TransactionID, pionstun.BindingRequest)
	if err != nil {
		return "", err
	}
	resp, err := streamDo(c, m.Raw, 5*time.Second)
	if err != nil {
		return "", err
	}
	var xa pionstun.XORMappedAddress
	if err := xa.GetFrom(resp); err != nil {
		return "", err
	}
	return xa.String(), nil
}

// closedByServer reports whether the server closes c within 5 s without
// answering what c sends.
func closedByServer(c net.Conn, send []byte) bool {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if len(send) > 0 {
		_, _ = c.Write(send)
	}
	n, err := c.Read(make([]byte, 512))
	return n == 0 && err != nil && !isTimeout(err)
}

// TestProxyProtocol: from the trusted proxy, PROXY v1 and v2 over TCP and
// TLS give the server the client's address: in XOR-MAPPED-ADDRESS, in the
// authentication, allocation and peer-policy events, in the log, and in
// limits.connections_per_source, where each client behind the proxy
// counts as itself.
func TestProxyProtocol(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	srv := startServerWith(t, func(c *Config) {
		proxyConfig(c)
		defaultPolicy(c)
		c.Limits.ConnectionsPerSource = 2
	}, Options{PortableIO: true, Events: func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }})
	clientN := 0
	for _, transport := range []string{"tcp", "tls"} {
		server := srv.addr(t, transport, "4")
		for _, version := range []byte{1, 2} {
			t.Run(fmt.Sprintf("%s-v%d", transport, version), func(t *testing.T) {
				clientN++
				client := fmt.Sprintf("203.0.113.%d:%d", clientN, 50000+clientN)
				c := dialVia(t, proxyIP, transport, server, proxiedtest.Header(t, version, client))
				if got, err := mapped(c); err != nil || got != client {
					t.Fatalf("XOR-MAPPED-ADDRESS %s (%v), want the client's %s", got, err, client)
				}

				// An allocation through the proxy, and a peer the policy
				// refuses: both decisions name the client.
				tc := newClient(t, pionturn.NewSTUNConn(c), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
				relay, err := tc.Allocate()
				if err != nil {
					t.Fatalf("Allocate through the proxy: %v", err)
				}
				defer relay.Close()
				_, _ = relay.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(169, 254, 169, 254), Port: 80})
				deadline := time.Now().Add(5 * time.Second)
				for {
					mu.Lock()
					seen := map[string]bool{}
					for _, e := range events {
						if e.Client == client {
							seen[e.Kind] = true
						}
						if e.Client == server.String() || strings.HasPrefix(e.Client, proxyIP+":") {
							t.Errorf("event names the proxy, not the client: %+v", e)
						}
					}
					mu.Unlock()
					if seen[EventAuthenticated] && seen[EventAllocationCreated] && seen[EventPermissionDenied] {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("events naming %s: %v", client, seen)
					}
					time.Sleep(20 * time.Millisecond)
				}
				if !strings.Contains(srv.log.String(), "client="+client) {
					t.Fatalf("the log does not name the client %s", client)
				}
			})
		}
	}

	// limits.connections_per_source = 2 counts clients, not the proxy:
	// two connections of one client pass, its third is refused, and
	// another client behind the same proxy still gets in.
	t.Run("per-source", func(t *testing.T) {
		server := srv.addr(t, "tcp", "4")
		refused := counterValue(t, srv.metrics.ConnectionsRefused.WithLabelValues("per_source"))
		for i := range 2 {
			c := dialVia(t, proxyIP, "tcp", server, proxiedtest.Header(t, 2, fmt.Sprintf("198.51.100.7:%d", 1000+i)))
			if _, err := mapped(c); err != nil {
				t.Fatalf("connection %d of the client: %v", i, err)
			}
		}
		third := dialVia(t, proxyIP, "tcp", server, proxiedtest.Header(t, 2, "198.51.100.7:1002"))
		if !closedByServer(third, bindingRequest(t)) {
			t.Fatal("the client's third connection was not refused")
		}
		if got := counterValue(t, srv.metrics.ConnectionsRefused.WithLabelValues("per_source")); got != refused+1 {
			t.Fatalf("per_source refusals %v, want %v", got, refused+1)
		}
		other := dialVia(t, proxyIP, "tcp", server, proxiedtest.Header(t, 1, "198.51.100.8:1000"))
		if got, err := mapped(other); err != nil || got != "198.51.100.8:1000" {
			t.Fatalf("another client behind the proxy: %s, %v", got, err)
		}
	})
}

// TestProxyRefused: a header from a source outside listen.proxy_from, a
// trusted source without one or with a malformed one: the connection is
// closed unanswered and counted; a direct client without a header is
// served as usual, under its own address.
func TestProxyRefused(t *testing.T) {
	srv := startServerWith(t, proxyConfig, Options{PortableIO: true})
	count := func(listener, outcome string) float64 {
		return counterValue(t, srv.metrics.ProxyHeaders.WithLabelValues(listener, outcome))
	}
	for _, transport := range []string{"tcp", "tls"} {
		server := srv.addr(t, transport, "4")
		t.Run(transport, func(t *testing.T) {
			for _, tc := range []struct {
				name, from string
				head       []byte
				outcome    string
			}{
				{"untrusted-v1", "127.0.0.1", proxiedtest.Header(t, 1, "203.0.113.66:1000"), "untrusted"},
				{"untrusted-v2", "127.0.0.1", proxiedtest.Header(t, 2, "203.0.113.66:1000"), "untrusted"},
				{"missing", proxyIP, nil, "missing"},
				{"malformed-v1", proxyIP, []byte("PROXY TCP4 203.0.113.300 192.0.2.1 1 443\r\n"), "malformed"},
				{"malformed-v2", proxyIP, append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x21, 0x11, 0x00, 0x05, 1, 2, 3, 4, 5), "malformed"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					before := count(transport, tc.outcome)
					d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.from)}}
					c, err := d.Dial("tcp4", server.String())
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					// What a client would send after the header: a STUN
					// request, or a TLS ClientHello's first bytes.
					first := bindingRequest(t)
					if transport == "tls" {
						first = []byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00}
					}
					if !closedByServer(c, append(append([]byte(nil), tc.head...), first...)) {
						t.Fatal("connection not closed")
					}
					deadline := time.Now().Add(2 * time.Second)
					for count(transport, tc.outcome) != before+1 {
						if time.Now().After(deadline) {
							t.Fatalf("%s count %v, want %v", tc.outcome, count(transport, tc.outcome), before+1)
						}
						time.Sleep(10 * time.Millisecond)
					}
				})
			}
			t.Run("direct", func(t *testing.T) {
				c := dialVia(t, "127.0.0.1", transport, server, nil)
				got, err := mapped(c)
				if err != nil || !strings.HasPrefix(got, "127.0.0.1:") {
					t.Fatalf("a direct client: %s, %v", got, err)
				}
			})
		})
	}
	if !strings.Contains(srv.log.String(), "not in proxy_from") {
		t.Fatal("no log line for a header from an untrusted source")
	}
}

// TestProxyCrowd: 100 first Allocates through one trusted proxy, each on
// its own connection (60 at once, then 40), for 100 clients: all are
// challenged, none refused, although the proxy is one address and
// limits.connections_per_source is 2.
func TestProxyCrowd(t *testing.T) {
	srv := startServerWith(t, func(c *Config) {
		proxyConfig(c)
		c.Limits.ConnectionsPerSource = 2
	}, Options{PortableIO: true})
	for _, transport := range []string{"tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			server := srv.addr(t, transport, "4")
			client := 0
			for round, n := range []int{60, 40} {
				var wg sync.WaitGroup
				errs := make([]error, n)
				for i := range n {
					client++
					addr := fmt.Sprintf("198.51.100.%d:4000", client)
					wg.Go(func() {
						errs[i] = crowdAllocate(transport, server, proxiedtest.Header(t, 2, addr))
					})
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d, Allocate %d: %v", round, i, err)
					}
				}
			}
		})
	}
}

// crowdAllocate sends one unauthenticated Allocate through the proxy and
// expects the 401 challenge.
func crowdAllocate(transport string, server net.Addr, head []byte) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(proxyIP)}, Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp4", server.String())
	if err != nil {
		return err
	}
	defer raw.Close()
	if _, err := raw.Write(head); err != nil {
		return err
	}
	c := raw
	if transport == "tls" {
		c = tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test server
	}
	req, err := pionstun.Build(pionstun.TransactionID, pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP())
	if err != nil {
		return err
	}
	resp, err := streamDo(c, req.Raw, 5*time.Second)
	if err != nil {
		return err
	}
	if code := errorCode(resp); code != 401 {
		return fmt.Errorf("code %d, want 401", code)
	}
	return nil
}
