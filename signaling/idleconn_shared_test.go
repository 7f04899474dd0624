package signaling

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"icegate/internal/portshare"
)

// On the shared port (internal/portshare), a connection that negotiated
// http/1.1 by ALPN is handed on as the *tls.Conn itself, over the TCP
// socket: nothing buffers above the socket but crypto/tls, so the idle
// reader may wait on the socket (its probe covers crypto/tls). One routed
// by its first bytes (no ALPN) is a wrapper holding those bytes: no raw
// socket, the blocking read. Both answer messages that arrive several to a
// segment at once.
func TestIdleReaderSharedPort(t *testing.T) {
	cert := testCert(t)
	for _, tc := range []struct {
		name    string
		alpn    []string
		wantRaw bool
	}{
		{"alpn", []string{"http/1.1"}, true},
		{"sniffed", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			m, err := portshare.New(raw, portshare.Config{
				GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
				TURNProtos:     []string{"stun.turn"},
				HTTPProtos:     []string{"http/1.1"},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			s := newTestServer(t, func(c *Config) { c.PingInterval = time.Minute })
			chosen := make(chan bool, 1)
			h := s.Handler()
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hw := &spyWriter{ResponseWriter: w, chosen: chosen}
				h.ServeHTTP(hw, r)
			})}
			go func() { _ = srv.Serve(m.Listener(portshare.HTTP)) }()
			defer srv.Close()

			tcp, err := net.Dial("tcp", raw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			hc := &holdConn{Conn: tcp}
			c := tls.Client(hc, &tls.Config{InsecureSkipVerify: true, NextProtos: tc.alpn})
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			host := raw.Addr().String()
			if _, err := c.Write([]byte("GET /ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			var seen bytes.Buffer
			until := func(what string, subs ...string) {
				t.Helper()
				_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
				for {
					ok := true
					for _, s := range subs {
						ok = ok && strings.Contains(seen.String(), s)
					}
					if ok {
						return
					}
					b, err := br.ReadByte()
					if err != nil {
						t.Fatalf("%s: %v (read %q)", what, err, seen.String())
					}
					seen.WriteByte(b)
				}
			}
			until("hello", `"type":"hello"`)
			select {
			case got := <-chosen:
				if got != tc.wantRaw {
					t.Fatalf("raw socket chosen: %v, want %v", got, tc.wantRaw)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("no upgrade seen")
			}
			_ = c.SetWriteDeadline(time.Time{})
			// Two records in one segment: only crypto/tls knows of the
			// second once it read the first.
			hc.mu.Lock()
			hc.hold = true
			hc.mu.Unlock()
			if _, err := c.Write(ping(1)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(ping(2)); err != nil {
				t.Fatal(err)
			}
			if err := hc.flush(); err != nil {
				t.Fatal(err)
			}
			until("pongs", `"id":"1"`, `"id":"2"`)
		})
	}
}

// spyWriter reports, once the handler returns, whether serveWS's
// hijackWriter found a raw socket.
type spyWriter struct {
	http.ResponseWriter
	chosen chan bool
}

func (w *spyWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := w.ResponseWriter.(http.Hijacker).Hijack()
	if err == nil {
		w.chosen <- newIdleConn(conn).raw != nil
	}
	return conn, brw, err
}
