package proxied

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// FuzzHeader feeds any bytes to a PROXY connection, from a trusted source
// and from an untrusted one: never a panic; a direct client that is let
// through reads exactly what it sent; a trusted one that is let through
// reads what followed its header, and nothing the header held.
func FuzzHeader(f *testing.F) {
	v1, _ := proxyproto.HeaderProxyFromAddrs(1, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 1), Port: 1000}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 443}).Format()
	v2, _ := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1000}, &net.TCPAddr{IP: net.ParseIP("2001:db8::2"), Port: 443}).Format()
	for _, seed := range [][]byte{
		v1, v2, append(v1, "data"...), append(v2, 0x00, 0x01, 0x00, 0x00),
		[]byte("PROXY UNKNOWN\r\n"), []byte("PROXY TCP4 1.2.3.4\r\n"), []byte("POST / HTTP/1.1\r\n"),
		[]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x00"), {0x16, 0x03, 0x01}, {},
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, trusted bool) {
		server, client := net.Pipe()
		defer server.Close()
		go func() {
			_, _ = client.Write(data)
			_ = client.Close()
		}()
		c := &Conn{Conn: server, cfg: &Config{Timeout: time.Second, Count: func(string) {}},
			src: netip.MustParseAddrPort("127.0.0.2:1"), trusted: trusted}
		err := c.Resolve()
		_ = c.RemoteAddr()
		got, rerr := io.ReadAll(c)
		switch {
		case err != nil:
			if rerr == nil || len(got) > 0 {
				t.Fatalf("a refused connection read %q, %v", got, rerr)
			}
		case !trusted:
			if !bytes.Equal(got, data) {
				t.Fatalf("a direct client sent %q, read %q", data, got)
			}
		default:
			if !bytes.HasSuffix(data, got) || len(got) == len(data) && len(data) > 0 {
				t.Fatalf("after the header of %q, read %q", data, got)
			}
		}
	})
}
