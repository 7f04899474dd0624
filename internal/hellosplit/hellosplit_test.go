package hellosplit

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// record is one TLS record of type typ.
func record(typ byte, body []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

// readRecords reads what Conn hands on, one Read at a time, and checks
// that each Read is exactly one whole record while re-framing (what keeps
// crypto/tls's record buffer small). It returns the records' bodies by
// type, in order, until n bytes of handshake body were seen, and then the
// raw bytes that follow.
func readRecords(t *testing.T, c *Conn, n int) (bodies [][]byte, rest []byte) {
	t.Helper()
	p := make([]byte, 576) // what crypto/tls offers its first read
	seen := 0
	for seen < n {
		k, err := c.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		r := p[:k]
		if k < headerLen || int(r[3])<<8|int(r[4]) != k-headerLen {
			t.Fatalf("a read of %d bytes is not one whole record: % x", k, r[:min(k, 8)])
		}
		if k-headerLen > Size {
			t.Fatalf("a record of %d bytes, more than %d", k-headerLen, Size)
		}
		bodies = append(bodies, bytes.Clone(r[headerLen:]))
		seen += k - headerLen
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return bodies, b
}

// The handshake records are re-framed into records of at most Size bytes,
// each its own Read, their bodies together the original's; from the first
// record of another type on, bytes pass untouched.
func TestReframe(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hello int // the ClientHello's body length
		split int // how the client framed it (0: one record)
		frag  int // the fragments expected
	}{
		{"go client", 1500 - 4, 0, 375},
		{"browser", 1900 - 4, 0, 475},
		{"small", 300 - 4, 0, 300},
		{"pre-fragmented", 1500 - 4, 1000, 375},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := make([]byte, 4+tc.hello)
			msg[0] = 1 // client_hello
			msg[1], msg[2], msg[3] = byte(tc.hello>>16), byte(tc.hello>>8), byte(tc.hello)
			for i := 4; i < len(msg); i++ {
				msg[i] = byte(i)
			}
			var in []byte
			if tc.split == 0 {
				in = record(typeHandshake, msg)
			} else {
				in = append(record(typeHandshake, msg[:tc.split]), record(typeHandshake, msg[tc.split:])...)
			}
			after := append(record(20, []byte{1}), record(23, bytes.Repeat([]byte{7}, 3000))...)
			in = append(in, after...)
			a, b := net.Pipe()
			go func() {
				_, _ = a.Write(in)
				a.Close()
			}()
			c := &Conn{Conn: b}
			bodies, rest := readRecords(t, c, len(msg))
			if got := bytes.Join(bodies, nil); !bytes.Equal(got, msg) {
				t.Fatalf("the fragments' bodies differ from the message")
			}
			if len(bodies[0]) != tc.frag {
				t.Errorf("first fragment %d bytes, want %d", len(bodies[0]), tc.frag)
			}
			if !bytes.Equal(rest, after) {
				t.Errorf("the bytes after the handshake changed: %d bytes, want %d", len(rest), len(after))
			}
			if !c.Passing() {
				t.Error("not passing after a ChangeCipherSpec")
			}
		})
	}
}

// Bytes that are not a handshake record pass from the first on, so
// crypto/tls judges them as it would have; a stream cut inside a record
// is an error that stays.
func TestNotHandshake(t *testing.T) {
	for _, in := range []string{"GET / HTTP/1.1\r\n\r\n", "\x80\x2e\x01\x03\x01", "\x16\x03\x01\x00\x00rest"} {
		a, b := net.Pipe()
		go func() {
			_, _ = a.Write([]byte(in))
			a.Close()
		}()
		got, err := io.ReadAll(&Conn{Conn: b})
		if err != nil || string(got) != in {
			t.Errorf("%q: read %q, %v", in, got, err)
		}
	}
	a, b := net.Pipe()
	go func() {
		_, _ = a.Write(record(typeHandshake, make([]byte, 100))[:50])
		a.Close()
	}()
	c := &Conn{Conn: b}
	p := make([]byte, 600)
	var err error
	for err == nil {
		_, err = c.Read(p) // the fragments that did arrive, then the end
	}
	for range 2 {
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("a record cut short: %v, want %v", err, io.ErrUnexpectedEOF)
		}
		_, err = c.Read(p)
	}
}

// Real handshakes through the re-framing listener: TLS 1.3 with the
// post-quantum key share (a 1.5 KiB ClientHello), TLS 1.2, and a
// HelloRetryRequest (a second ClientHello, after a ChangeCipherSpec);
// data flows both ways after, and the server's Conn is passing.
func TestHandshakes(t *testing.T) {
	cert := selfSigned(t)
	for _, tc := range []struct {
		name           string
		client, server *tls.Config
	}{
		{"tls13", &tls.Config{}, &tls.Config{}},
		{"tls12", &tls.Config{MaxVersion: tls.VersionTLS12}, &tls.Config{}},
		{"hello retry", &tls.Config{}, &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP256}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			scfg := tc.server.Clone()
			scfg.Certificates = []tls.Certificate{cert}
			ln := tls.NewListener(Listen(raw), scfg)
			type result struct {
				passing bool
				err     error
			}
			done := make(chan result, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- result{err: err}
					return
				}
				defer c.Close()
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					done <- result{err: err}
					return
				}
				passing := tc.NetConn().(*Conn).Passing()
				// Echo until the client closes.
				_, err = io.Copy(tc, tc)
				done <- result{passing: passing, err: err}
			}()
			ccfg := tc.client.Clone()
			ccfg.InsecureSkipVerify = true
			c, err := tls.Dial("tcp", raw.Addr().String(), ccfg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "hello retry" && c.ConnectionState().CurveID != tls.CurveP256 {
				t.Errorf("curve %v, want P-256 after a retry", c.ConnectionState().CurveID)
			}
			msg := bytes.Repeat([]byte("hello "), 20000)
			go func() {
				_, _ = c.Write(msg)
				_ = c.CloseWrite()
			}()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("echo: %d bytes of %d, %v", len(got), len(msg), err)
			}
			c.Close()
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			if !r.passing {
				t.Error("the server's Conn is not passing after the handshake")
			}
		})
	}
}

// A client that is not speaking TLS gets the error crypto/tls gives
// without the re-framing.
func TestNotTLS(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ln := tls.NewListener(Listen(raw), &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- c.(*tls.Conn).Handshake()
	}()
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	if err := <-done; err == nil || !strings.Contains(err.Error(), "does not look like a TLS handshake") {
		t.Fatalf("handshake: %v", err)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
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

// Plain HTTP sent to the HTTPS port gets net/http's answer: crypto/tls
// hands net/http the first five bytes (which hellosplit passed on
// untouched) and the connection under it, and net/http writes its 400 on
// that connection, through hellosplit's Conn.
func TestPlainHTTPToHTTPS(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	ln := tls.NewListener(Listen(raw), &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, []byte("HTTP/1.0 400 Bad Request")) || !bytes.Contains(got, []byte("Client sent an HTTP request to an HTTPS server")) {
		t.Fatalf("answer %q", got)
	}
}

// dribbleConn writes one byte per write: a client (or a slowloris) whose
// records arrive in as many segments as they have bytes.
type dribbleConn struct{ net.Conn }

func (c dribbleConn) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := c.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// A handshake whose bytes arrive one at a time completes, and the server
// is passing after it.
func TestDribbledHandshake(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ln := tls.NewListener(Listen(raw), &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(20 * time.Second))
		b := make([]byte, 5)
		if _, err := io.ReadFull(tc, b); err != nil {
			done <- err
			return
		}
		if !tc.NetConn().(*Conn).Passing() {
			done <- errors.New("not passing after the handshake")
			return
		}
		_, err = tc.Write(b)
		done <- err
	}()
	nc, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(dribbleConn{nc}, &tls.Config{InsecureSkipVerify: true})
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		t.Fatalf("echo %q, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
