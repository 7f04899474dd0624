package proxied

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"icegate/internal/leakcheck"
	"icegate/internal/proxied/proxiedtest"
)

// counts collects the outcomes a listener reports.
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(o string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[o]++
}

func (c *counts) get(o string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[o]
}

// listen opens a PROXY listener on 127.0.0.1 trusting from.
func listen(t *testing.T, from string, timeout time.Duration) (net.Listener, *counts) {
	t.Helper()
	raw, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &counts{}
	ln := Listen(raw, Config{From: []netip.Prefix{netip.MustParsePrefix(from)}, Timeout: timeout, Listener: "test", Count: c.add})
	t.Cleanup(func() { ln.Close() })
	return ln, c
}

// dialFrom connects from the loopback address src.
func dialFrom(t *testing.T, src string, to net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp4", to.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// accept returns the next connection, failing the test after 2 s.
func accept(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(2 * time.Second):
		t.Fatal("Accept blocked")
	}
	return nil
}

// TestTrusted: from a trusted source, v1 and v2 headers give the client's
// address (IPv4 and IPv6), the data behind the header is read intact, and
// the local address stays the server's socket.
func TestTrusted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version byte
		client  string
	}{
		{"v1-ipv4", 1, "203.0.113.7:40000"},
		{"v2-ipv4", 2, "203.0.113.8:40001"},
		{"v1-ipv6", 1, "[2001:db8::7]:40002"},
		{"v2-ipv6", 2, "[2001:db8::8]:40003"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, n := listen(t, "127.0.0.2/32", time.Second)
			cl := dialFrom(t, "127.0.0.2", ln.Addr())
			// The header and the first data in one segment, as nginx sends them.
			if _, err := cl.Write(append(proxiedtest.Header(t, tc.version, tc.client), "hello"...)); err != nil {
				t.Fatal(err)
			}
			c := accept(t, ln)
			if got := c.RemoteAddr().String(); got != netip.MustParseAddrPort(tc.client).String() {
				t.Fatalf("RemoteAddr %s, want %s", got, tc.client)
			}
			if got := c.LocalAddr().String(); got != ln.Addr().String() {
				t.Fatalf("LocalAddr %s, want the listener's %s", got, ln.Addr())
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
				t.Fatalf("data after the header: %q, %v", buf, err)
			}
			if _, err := cl.Write([]byte("world")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "world" {
				t.Fatalf("later data: %q, %v", buf, err)
			}
			if n.get(OutcomeProxied) != 1 {
				t.Fatalf("outcomes %v, want one proxied", n.m)
			}
		})
	}
}

// TestLocal: a v2 LOCAL header (haproxy's health check) keeps the proxy's
// address and is accepted.
func TestLocal(t *testing.T) {
	ln, n := listen(t, "127.0.0.0/8", time.Second)
	cl := dialFrom(t, "127.0.0.3", ln.Addr())
	h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Write(append(b, 'x')); err != nil {
		t.Fatal(err)
	}
	c := accept(t, ln)
	if got := netip.MustParseAddrPort(c.RemoteAddr().String()).Addr().String(); got != "127.0.0.3" {
		t.Fatalf("RemoteAddr %s, want the proxy's 127.0.0.3", c.RemoteAddr())
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("data: %q, %v", buf, err)
	}
	if n.get(OutcomeLocal) != 1 {
		t.Fatalf("outcomes %v, want one local", n.m)
	}
}

// TestRefused: what is refused, and how it is counted: a trusted source
// without a header, with a malformed one, or silent past the timeout; an
// untrusted source with a header. Nothing is written back to any of them.
func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		name, from, src string
		send            []byte
		outcome         string
	}{
		{"trusted-no-header", "127.0.0.2/32", "127.0.0.2", []byte("\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl"), OutcomeMissing},
		{"trusted-silent", "127.0.0.2/32", "127.0.0.2", nil, OutcomeMissing},
		{"trusted-v1-garbage", "127.0.0.2/32", "127.0.0.2", []byte("PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n"), OutcomeMalformed},
		{"trusted-v1-no-crlf", "127.0.0.2/32", "127.0.0.2", []byte("PROXY TCP4 203.0.113.1 192.0.2.1 1 2\n"), OutcomeMalformed},
		{"trusted-v2-bad-length", "127.0.0.2/32", "127.0.0.2", append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4), OutcomeMalformed},
		{"trusted-v2-bad-version", "127.0.0.2/32", "127.0.0.2", append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x31, 0x11, 0x00, 0x0c), OutcomeMalformed},
		{"untrusted-v1", "127.0.0.2/32", "127.0.0.1", []byte("PROXY TCP4 203.0.113.1 192.0.2.1 1000 443\r\n"), OutcomeUntrusted},
		{"untrusted-v2", "127.0.0.2/32", "127.0.0.1", nil, OutcomeUntrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, n := listen(t, tc.from, 200*time.Millisecond)
			cl := dialFrom(t, tc.src, ln.Addr())
			send := tc.send
			if tc.name == "untrusted-v2" {
				send = proxiedtest.Header(t, 2, "203.0.113.9:1000")
			}
			if len(send) > 0 {
				if _, err := cl.Write(send); err != nil {
					t.Fatal(err)
				}
			}
			c := accept(t, ln)
			var re *RefusedError
			if err := Of(c).Resolve(); !errors.As(err, &re) || re.Outcome != tc.outcome {
				t.Fatalf("Resolve: %v, want a refusal %s", err, tc.outcome)
			}
			if _, err := c.Read(make([]byte, 10)); err == nil {
				t.Fatal("Read after a refusal succeeded")
			}
			if _, err := c.Write([]byte("x")); err == nil {
				t.Fatal("Write after a refusal succeeded")
			}
			if n.get(tc.outcome) != 1 {
				t.Fatalf("outcomes %v, want one %s", n.m, tc.outcome)
			}
			if got := c.RemoteAddr().String(); got != cl.LocalAddr().String() {
				t.Fatalf("a refused connection reports %s, want its socket peer %s", got, cl.LocalAddr())
			}
		})
	}
}

// TestUntrustedDirect: a direct client outside the trusted ranges, without
// a header, passes untouched and uncounted, even one whose first bytes look
// like the start of a header ("P", as a ChannelData number or "POST" does).
func TestUntrustedDirect(t *testing.T) {
	for _, data := range []string{"\x00\x01\x00\x00rest-of-stun", "POST / HTTP/1.1\r\n", "\r\n\r\nnot v2 at all"} {
		ln, n := listen(t, "127.0.0.2/32", time.Second)
		cl := dialFrom(t, "127.0.0.1", ln.Addr())
		if _, err := cl.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
		c := accept(t, ln)
		buf := make([]byte, len(data))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != data {
			t.Fatalf("read %q, %v, want %q", buf, err, data)
		}
		if c.RemoteAddr().String() != cl.LocalAddr().String() {
			t.Fatalf("RemoteAddr %s, want %s", c.RemoteAddr(), cl.LocalAddr())
		}
		if len(n.m) != 0 {
			t.Fatalf("a direct client was counted: %v", n.m)
		}
	}
}

// TestAcceptDoesNotWait: a trusted source that connects and sends nothing
// does not hold up the next connection; its own read ends at the timeout.
func TestAcceptDoesNotWait(t *testing.T) {
	ln, _ := listen(t, "127.0.0.0/8", 300*time.Millisecond)
	dialFrom(t, "127.0.0.2", ln.Addr()) // silent
	silent := accept(t, ln)
	cl := dialFrom(t, "127.0.0.3", ln.Addr())
	if _, err := cl.Write(proxiedtest.Header(t, 1, "198.51.100.4:5000")); err != nil {
		t.Fatal(err)
	}
	next := accept(t, ln)
	if got := next.RemoteAddr().String(); got != "198.51.100.4:5000" {
		t.Fatalf("RemoteAddr %s", got)
	}
	start := time.Now()
	_, err := silent.Read(make([]byte, 1))
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("silent connection: %v after %v, want a refusal at the 300 ms timeout", err, time.Since(start))
	}
}

// TestCallerDeadline: a read deadline set before the first Read bounds the
// header wait too, and stays in force for the data after it.
func TestCallerDeadline(t *testing.T) {
	ln, _ := listen(t, "127.0.0.0/8", 10*time.Second)
	cl := dialFrom(t, "127.0.0.2", ln.Addr())
	c := accept(t, ln)
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the caller's deadline was not applied to the header: %v", d)
	}
	_ = cl
}

// TestOff: no trusted ranges, no wrapping.
func TestOff(t *testing.T) {
	raw, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if Listen(raw, Config{}) != raw {
		t.Fatal("Listen wrapped a listener with no trusted ranges")
	}
}

func TestMain(m *testing.M) { leakcheck.Main(m, "icegate/internal/proxied.") }

// TestLongV2: a v2 header longer than the header buffer (TLVs, as AWS's
// load balancer and haproxy's ssl options send) is read whole, and the
// data behind it follows intact.
func TestLongV2(t *testing.T) {
	ln, n := listen(t, "127.0.0.2/32", time.Second)
	cl := dialFrom(t, "127.0.0.2", ln.Addr())
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 40), Port: 7000}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 443})
	if err := h.SetTLVs([]proxyproto.TLV{{Type: proxyproto.PP2_TYPE_NOOP, Value: make([]byte, 3000)}}); err != nil {
		t.Fatal(err)
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Write(append(b, "after"...)); err != nil {
		t.Fatal(err)
	}
	c := accept(t, ln)
	if got := c.RemoteAddr().String(); got != "203.0.113.40:7000" {
		t.Fatalf("RemoteAddr %s", got)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "after" {
		t.Fatalf("data: %q, %v", buf, err)
	}
	if n.get(OutcomeProxied) != 1 {
		t.Fatalf("outcomes %v", n.m)
	}
}
