package signaling

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"testing"
	"time"

	"icegate/internal/hellosplit"
	"icegate/internal/proxied"
)

// Behind a PROXY-header listener (cmd/icegate's http.proxy_from), the
// HTTPS connection is crypto/tls over hellosplit over proxied's Conn, which
// reads the header through a buffer of its own: the socket alone does not
// show what is there to read, so the idle reader must not wait on it
// (rawSocket nil: the blocking read). Directly over TCP, with hellosplit
// passing, it may.
func TestIdleConnRawSocketChoice(t *testing.T) {
	cert := testCert(t)
	for _, tc := range []struct {
		name    string
		proxy   bool
		wantRaw bool
	}{
		{"tcp", false, true},
		{"proxy header", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			var ln net.Listener = raw
			if tc.proxy {
				ln = proxied.Listen(raw, proxied.Config{From: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Listener: "http"})
			}
			ln = tls.NewListener(hellosplit.Listen(ln), &tls.Config{Certificates: []tls.Certificate{cert}})
			got := make(chan *idleConn, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- nil
					return
				}
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					got <- nil
					return
				}
				_ = tc.SetDeadline(time.Time{})
				got <- newIdleConn(tc)
			}()
			c, err := net.Dial("tcp", raw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.proxy {
				// A documentation address only as text in the header.
				if _, err := c.Write([]byte("PROXY TCP4 10.200.0.1 127.0.0.1 40000 443\r\n")); err != nil {
					t.Fatal(err)
				}
			}
			cc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
			_ = cc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := cc.Handshake(); err != nil {
				t.Fatal(err)
			}
			nc := <-got
			if nc == nil {
				t.Fatal("server handshake failed")
			}
			if (nc.raw != nil) != tc.wantRaw {
				t.Fatalf("raw socket chosen: %v, want %v", nc.raw != nil, tc.wantRaw)
			}
		})
	}
}

// testCert is a self-signed certificate for localhost.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
