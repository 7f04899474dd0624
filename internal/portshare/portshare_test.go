package portshare

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"icegate/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m, "icegate/internal/portshare.") }

func testCert(t testing.TB) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startMux starts a Mux on a loopback port with cfg (its certificate set
// when cfg has none) and closes it when the test ends.
func startMux(t *testing.T, cfg Config) *Mux {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GetCertificate == nil {
		cert := testCert(t)
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }
	}
	m, err := New(ln, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// echoSide accepts on r's side and answers each connection with its
// route's name and what it read (up to 64 bytes) until the client closed
// its writing half, until the side closes.
func echoSide(t *testing.T, m *Mux, r Route) {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { _ = m.Close() }) // runs first: Accept returns
	wg.Go(func() {
		for {
			c, err := m.Listener(r).Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				got, _ := io.ReadAll(io.LimitReader(c, 64)) // to the client's close_notify
				_, _ = c.Write(append([]byte(r.String()+":"), got...))
			})
		}
	})
}

// stunRequest is a Binding request header (RFC 8489 §5), no attributes.
var stunRequest = []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

// exchange dials the mux offering alpn, sends msg in the given pieces with
// a pause between them, and returns what came back and the negotiated
// protocol.
func exchange(t *testing.T, m *Mux, alpn []string, pieces ...[]byte) (string, string) {
	t.Helper()
	c, err := tls.Dial("tcp", m.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: alpn}) //nolint:gosec // test certificate
	if err != nil {
		t.Fatalf("dial offering %q: %v", alpn, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	for i, p := range pieces {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.CloseWrite()
	got, _ := io.ReadAll(c)
	return string(got), c.ConnectionState().NegotiatedProtocol
}

// TestRoute: ALPN decides when a client offers it; without, a STUN header
// goes to TURN (also when it arrives in pieces) and anything else to HTTP;
// each side reads the client's bytes from the first.
func TestRoute(t *testing.T) {
	m := startMux(t, Config{})
	echoSide(t, m, TURN)
	echoSide(t, m, HTTP)
	get := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, tc := range []struct {
		name      string
		alpn      []string
		pieces    [][]byte
		want      string
		wantProto string
	}{
		{"alpn stun.turn", []string{"stun.turn"}, [][]byte{get}, "turn:" + string(get), "stun.turn"},
		{"alpn stun.nat-discovery", []string{"stun.nat-discovery"}, [][]byte{stunRequest}, "turn:" + string(stunRequest), "stun.nat-discovery"},
		{"alpn http/1.1", []string{"h2", "http/1.1"}, [][]byte{stunRequest}, "http:" + string(stunRequest), "http/1.1"},
		{"alpn both, server order", []string{"http/1.1", "stun.turn"}, [][]byte{get}, "turn:" + string(get), "stun.turn"},
		{"no alpn stun", nil, [][]byte{stunRequest}, "turn:" + string(stunRequest), ""},
		{"no alpn stun in pieces", nil, [][]byte{stunRequest[:1], stunRequest[1:5], stunRequest[5:]}, "turn:" + string(stunRequest), ""},
		{"no alpn http", nil, [][]byte{get}, "http:" + string(get), ""},
		{"other alpn http", []string{"h2"}, [][]byte{get}, "http:" + string(get), ""},
		{"no alpn, zero bits but no cookie", nil, [][]byte{bytes.Repeat([]byte{0}, 12)}, "http:" + string(bytes.Repeat([]byte{0}, 12)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, proto := exchange(t, m, tc.alpn, tc.pieces...)
			if got != tc.want || proto != tc.wantProto {
				t.Fatalf("got %q over %q, want %q over %q", got, proto, tc.want, tc.wantProto)
			}
		})
	}
	// A connection is counted once its side took it, which can be just
	// after the side already answered the client: wait for the last count.
	c := m.Counts()
	for deadline := time.Now().Add(2 * time.Second); (c[OutcomeTURN] != 5 || c[OutcomeHTTP] != 4) && time.Now().Before(deadline); c = m.Counts() {
		time.Sleep(5 * time.Millisecond)
	}
	if c[OutcomeTURN] != 5 || c[OutcomeHTTP] != 4 {
		t.Fatalf("counts %v, want 5 turn and 4 http", c)
	}
}

// TestCloseProtos: a client negotiating one of CloseProtos (ACME's
// TLS-ALPN-01 validation) gets GetCertificate's answer for its hello and
// then the end of the connection; no side sees it.
func TestCloseProtos(t *testing.T) {
	plain, challenge := testCert(t), testCert(t)
	m := startMux(t, Config{CloseProtos: []string{"acme-tls/1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if len(h.SupportedProtos) == 1 && h.SupportedProtos[0] == "acme-tls/1" {
				return challenge, nil
			}
			return plain, nil
		}})
	echoSide(t, m, TURN)
	echoSide(t, m, HTTP)
	c, err := tls.Dial("tcp", m.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"acme-tls/1"}}) //nolint:gosec // test certificate
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := c.ConnectionState()
	if st.NegotiatedProtocol != "acme-tls/1" || !bytes.Equal(st.PeerCertificates[0].Raw, challenge.Certificate[0]) {
		t.Fatalf("negotiated %q with the wrong certificate (challenge: %v)", st.NegotiatedProtocol, bytes.Equal(st.PeerCertificates[0].Raw, challenge.Certificate[0]))
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes after the handshake, want the connection closed", n)
	}
	if got := m.Counts()[OutcomeClosed]; got != 1 {
		t.Fatalf("closed %d, want 1", got)
	}
}

// TestSlowClientsDoNotBlock: clients that connect and send nothing, that
// stop inside the handshake, that send garbage, or that finish the
// handshake and say nothing, hold no one else up: a client arriving after
// them is served at once, and each of them is dropped at the deadline and
// counted.
func TestSlowClientsDoNotBlock(t *testing.T) {
	m := startMux(t, Config{Timeout: 500 * time.Millisecond})
	echoSide(t, m, TURN)
	echoSide(t, m, HTTP)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	for range 5 { // silent TCP: no ClientHello
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	half, err := net.Dial("tcp", m.Addr().String()) // a ClientHello's first bytes only
	if err != nil {
		t.Fatal(err)
	}
	held = append(held, half)
	if _, err := half.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}); err != nil {
		t.Fatal(err)
	}
	garbage, err := net.Dial("tcp", m.Addr().String()) // not TLS at all
	if err != nil {
		t.Fatal(err)
	}
	held = append(held, garbage)
	if _, err := garbage.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	mute, err := tls.Dial("tcp", m.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test certificate
	if err != nil {
		t.Fatal(err)
	}
	held = append(held, mute)

	start := time.Now()
	if got, _ := exchange(t, m, nil, stunRequest); got != "turn:"+string(stunRequest) {
		t.Fatalf("got %q", got)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("a client behind silent ones waited %v", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := m.Counts()
		if c[OutcomeTimeout] == 7 && c[OutcomeHandshake] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts %v, want 7 timeouts (5 silent, half a hello, a mute TLS client) and 1 handshake failure", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOverloaded: beyond MaxPending connections waiting, a new one is
// closed at once and counted.
func TestOverloaded(t *testing.T) {
	m := startMux(t, Config{MaxPending: 2, MaxPendingPerSource: 2, Timeout: 5 * time.Second})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Counts()[OutcomeOverloaded] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no connection refused as overloaded")
		}
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCloseEndsEverything: Close ends handshakes in progress and both
// sides' Accept at once, and closing one side leaves the other served.
func TestCloseEndsEverything(t *testing.T) {
	m := startMux(t, Config{Timeout: time.Minute})
	echoSide(t, m, TURN)
	_ = m.Listener(HTTP).Close()
	// HTTP's side is closed: a request for it is dropped, TURN still works.
	if got, _ := exchange(t, m, []string{"http/1.1"}, []byte("GET / HTTP/1.1\r\n\r\n")); got != "" {
		t.Fatalf("closed side answered %q", got)
	}
	if got, _ := exchange(t, m, nil, stunRequest); got != "turn:"+string(stunRequest) {
		t.Fatalf("got %q", got)
	}
	silent, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	_ = m.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v with a handshake pending", d)
	}
	if _, err := m.Listener(TURN).Accept(); err == nil {
		t.Fatal("Accept after Close returned a connection")
	}
	if got := m.Counts()[OutcomeNoTaker]; got != 1 {
		t.Fatalf("no_taker %d, want 1", got)
	}
}

// TestHTTPServer: net/http serves the HTTP side for Go clients with and
// without ALPN, and a handler wrapped with WithTLS sees the TLS state on
// both.
func TestHTTPServer(t *testing.T) {
	m := startMux(t, Config{})
	srv := &http.Server{
		Handler: WithTLS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil {
				http.Error(w, "no TLS state", http.StatusInternalServerError)
				return
			}
			_, _ = io.WriteString(w, "proto="+r.TLS.NegotiatedProtocol)
		})),
		ConnContext:       ConnContext,
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(m.Listener(HTTP)) }()
	defer func() { _ = srv.Close(); <-done }()
	for _, tc := range []struct {
		alpn []string
		want string
	}{{[]string{"http/1.1"}, "proto=http/1.1"}, {nil, "proto="}} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: tc.alpn}} //nolint:gosec // test certificate
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + m.Addr().String() + "/")
		if err != nil {
			t.Fatalf("offering %q: %v", tc.alpn, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		tr.CloseIdleConnections()
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != tc.want {
			t.Fatalf("offering %q: %d %q, want %q", tc.alpn, resp.StatusCode, body, tc.want)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		in    []byte
		r     Route
		known bool
	}{
		{nil, 0, false},
		{[]byte("G"), HTTP, true},
		{[]byte{0x40, 0x00}, HTTP, true}, // ChannelData first: never a new connection's first message
		{[]byte{0x00, 0x01, 0x00}, 0, false},
		{stunRequest[:8], TURN, true},
		{[]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x43}, HTTP, true},
	} {
		r, ok := classify(tc.in)
		if ok != tc.known || (ok && r != tc.r) {
			t.Errorf("classify(%x) = %v, %v; want %v, %v", tc.in, r, ok, tc.r, tc.known)
		}
	}
}

// TestOneSourceCannotFillThePort: one address holding silent connections
// (no ClientHello) takes at most MaxPendingPerSource of the MaxPending
// slots, so a client from another address is still served at once, not
// refused as overloaded for the whole handshake timeout.
func TestOneSourceCannotFillThePort(t *testing.T) {
	m := startMux(t, Config{MaxPending: 8, MaxPendingPerSource: 3, Timeout: 10 * time.Second})
	echoSide(t, m, TURN)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	for range 12 {
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Counts()[OutcomePerSource] < 9 {
		if time.Now().After(deadline) {
			t.Fatalf("counts %v, want 9 connections over the per-source cap refused", m.Counts())
		}
		time.Sleep(10 * time.Millisecond)
	}
	other := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(other, "tcp", m.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test certificate
	if err != nil {
		t.Fatalf("a client from another address, behind one address's silent connections: %v (counts %v)", err, m.Counts())
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(stunRequest); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite()
	if got, _ := io.ReadAll(c); string(got) != "turn:"+string(stunRequest) {
		t.Fatalf("got %q", got)
	}
	if n := m.Counts()[OutcomeOverloaded]; n != 0 {
		t.Fatalf("%d connections refused as overloaded, want 0: one address filled the port", n)
	}
}

// TestSourceHook: a connection Config.Source exempts (a trusted proxy's,
// which carries many clients) is held only to MaxPending.
func TestSourceHook(t *testing.T) {
	m := startMux(t, Config{MaxPending: 8, MaxPendingPerSource: 2, Timeout: 10 * time.Second,
		Source: func(net.Conn) (netip.Addr, bool) { return netip.Addr{}, false }})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	for range 6 {
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	time.Sleep(100 * time.Millisecond)
	if n := m.Counts()[OutcomePerSource]; n != 0 {
		t.Fatalf("%d exempt connections refused per source", n)
	}
}
