package turn

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"icegate/auth"
	"icegate/internal/leakcheck"
	"icegate/internal/stunwire"
	"icegate/internal/testutil"
	"icegate/internal/udploop"
)

// TestMain fails the run when a goroutine of this package outlives the tests:
// every server a test starts must be closed, and closing must stop its work.
func TestMain(m *testing.M) { leakcheck.Main(m, "icegate/turn.", "icegate/internal/udploop.") }

const (
	testRealm  = "icegate-test"
	testSecret = "current-secret-0123456789"
	oldSecret  = "previous-secret-0123456789"
	testUser   = "alice"
	testPass   = "wonderland"
)

type testServer struct {
	*Server
	log *testutil.SyncBuffer
}

// testConfig is the base test config: loopback only, on ports the system
// picks, relays on 127.0.0.1 and ::1 from ports 40000-40999, the two
// secrets, alice (a password) and bob (a key), and the loopback preset so
// that echo peers on loopback are reachable. mutate adjusts it.
func testConfig(t testing.TB, mutate func(*Config)) Config {
	t.Helper()
	lo4, lo6 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")
	cfg := Config{
		Realm:  testRealm,
		Listen: ListenConfig{Addrs: []netip.Addr{lo4, lo6}},
		Relay: RelayConfig{
			MinPort: 40000, MaxPort: 40999,
			IPv4Bind: lo4, IPv4Public: lo4, IPv6Bind: lo6, IPv6Public: lo6,
			PrivateOK: true,
		},
		Auth: AuthConfig{
			Secrets: []string{testSecret, oldSecret},
			Users: []auth.StaticUser{
				{Name: testUser, Password: testPass},
				{Name: "bob", Key: auth.LongTermKey("bob", testRealm, "builder")},
			},
		},
		Policy: PolicyConfig{Presets: []string{"loopback"}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	return cfg
}

func startServer(t testing.TB, mutate func(*Config)) *testServer {
	t.Helper()
	return startServerIO(t, mutate, false)
}

// startServerIO starts a server on the Linux event loops, or with portable
// set on Go's net package.
func startServerIO(t testing.TB, mutate func(*Config), portable bool) *testServer {
	t.Helper()
	// Reserve Ps for the loops as cmd/icegate does, so the tests and the
	// benchmark run the loops the way a server does (released after Close:
	// cleanups run last first).
	loops := udploop.UnreservedProcs()
	if !portable {
		t.Cleanup(udploop.ReserveProcs(loops))
	}
	return startServerWith(t, mutate, Options{PortableIO: portable, Loops: loops})
}

// startServerWith starts a server with opts, logging into the test server's
// buffer (shown when the test fails).
func startServerWith(t testing.TB, mutate func(*Config), opts Options) *testServer {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(testConfig(t, mutate), opts)
	if err != nil {
		t.Fatalf("turn.New: %v", err)
	}
	ts := &testServer{Server: srv, log: logs}
	t.Cleanup(func() {
		_ = srv.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return ts
}

// addr returns the listener of transport in family ("4" or "6").
func (ts *testServer) addr(t testing.TB, transport, family string) net.Addr {
	t.Helper()
	for _, a := range ts.Addrs() {
		ip := a.Addr.(interface{ String() string }).String()
		is6 := strings.HasPrefix(ip, "[")
		if a.Transport == transport && is6 == (family == "6") {
			return a.Addr
		}
	}
	t.Fatalf("no %s%s listener in %v", transport, family, ts.Addrs())
	return nil
}

// udpEcho runs a UDP echo peer on ip until the test ends.
func udpEcho(t testing.TB, ip string) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			// The AddrPort forms do not allocate, so allocation counts in
			// tests see only the server.
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr)
}

// tcpEcho runs a TCP echo peer on ip until the test ends.
func tcpEcho(t testing.TB, ip string) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				buf := make([]byte, 2048)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr)
}

// echoThrough sends through relay to peer and expects the echo back.
func echoThrough(t testing.TB, relay net.PacketConn, peer net.Addr) {
	t.Helper()
	want := []byte("hello through icegate")
	buf := make([]byte, 1500)
	// A few tries: the first packet can race the permission on a busy box.
	for try := range 5 {
		if _, err := relay.WriteTo(want, peer); err != nil {
			t.Fatalf("relay write: %v", err)
		}
		_ = relay.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := relay.ReadFrom(buf)
		if err == nil {
			if !bytes.Equal(buf[:n], want) {
				t.Fatalf("echo %q, want %q", buf[:n], want)
			}
			if from.String() != peer.String() {
				t.Fatalf("echo from %v, want %v", from, peer)
			}
			return
		}
		t.Logf("try %d: %v", try, err)
	}
	t.Fatalf("no echo from %v through the relay", peer)
}

// dialClient opens the client-side connection to a listener as pion's
// client wants it: a PacketConn for UDP, a framed stream for the others.
func dialClient(t testing.TB, transport string, server net.Addr) net.PacketConn {
	t.Helper()
	switch transport {
	case "udp":
		local := "127.0.0.1:0"
		if strings.HasPrefix(server.String(), "[") {
			local = "[::1]:0"
		}
		pc, err := net.ListenPacket("udp", local)
		if err != nil {
			t.Fatal(err)
		}
		return pc
	case "tcp":
		c, err := net.Dial("tcp", server.String())
		if err != nil {
			t.Fatal(err)
		}
		return pionturn.NewSTUNConn(c)
	case "tls":
		c, err := tlsDial(server.String())
		if err != nil {
			t.Fatal(err)
		}
		return pionturn.NewSTUNConn(c)
	case "dtls":
		c, err := dtlsDial(server.(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		return pionturn.NewSTUNConn(c)
	}
	t.Fatalf("unknown transport %q", transport)
	return nil
}

// newClient starts a pion TURN client over conn.
func newClient(t testing.TB, conn net.PacketConn, server net.Addr, user, pass string, family pionturn.RequestedAddressFamily) *pionturn.Client {
	t.Helper()
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr:         server.String(),
		TURNServerAddr:         server.String(),
		Conn:                   conn,
		Username:               user,
		Password:               pass,
		Realm:                  testRealm,
		RequestedAddressFamily: family,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = conn.Close() })
	return c
}

// rawClient speaks STUN by hand over UDP, to see the exact error codes.
type rawClient struct {
	t      testing.TB
	conn   *net.UDPConn
	stream net.PacketConn // when set, STUN over TCP or TLS instead of conn
	server net.Addr
	nonce  string
}

func newRawClient(t testing.TB, local string, server net.Addr) *rawClient {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(local)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawClient{t: t, conn: conn, server: server}
}

var errTimeout = errors.New("no response")

// do sends a request built from setters and returns the response, or
// errTimeout.
func (c *rawClient) do(setters ...pionstun.Setter) (*pionstun.Message, error) {
	req, err := pionstun.Build(append([]pionstun.Setter{pionstun.TransactionID}, setters...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.send(req.Raw, req.TransactionID)
}

func (c *rawClient) send(raw []byte, txid [pionstun.TransactionIDSize]byte) (*pionstun.Message, error) {
	conn := net.PacketConn(c.conn)
	if c.stream != nil {
		conn = c.stream
	}
	if _, err := conn.WriteTo(raw, c.server); err != nil {
		c.t.Fatal(err)
	}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(time.Second)
	for {
		_ = conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return nil, errTimeout
		}
		m := &pionstun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() == nil && m.TransactionID == txid {
			return m, nil
		}
	}
}

// challenge gets a nonce with an unauthenticated Allocate.
func (c *rawClient) challenge() {
	c.t.Helper()
	resp, err := c.do(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), requestedUDP())
	if err != nil {
		c.t.Fatalf("challenge: %v", err)
	}
	if code := errorCode(resp); code != 401 {
		c.t.Fatalf("challenge: code %d, want 401", code)
	}
	var n pionstun.Nonce
	if err := n.GetFrom(resp); err != nil {
		c.t.Fatalf("challenge without nonce: %v", err)
	}
	c.nonce = n.String()
}

// authed sends method with long-term credentials and extra attributes.
func (c *rawClient) authed(method pionstun.Method, user, pass string, attrs ...pionstun.Setter) *pionstun.Message {
	c.t.Helper()
	setters := []pionstun.Setter{pionstun.NewType(method, pionstun.ClassRequest)}
	setters = append(setters, attrs...)
	setters = append(setters, pionstun.NewUsername(user), pionstun.NewRealm(testRealm), pionstun.NewNonce(c.nonce),
		pionstun.NewLongTermIntegrity(user, testRealm, pass), pionstun.Fingerprint)
	resp, err := c.do(setters...)
	if err != nil {
		c.t.Fatalf("%v: %v", method, err)
	}
	return resp
}

func errorCode(m *pionstun.Message) int {
	if m.Type.Class != pionstun.ClassErrorResponse {
		return 0
	}
	var ec pionstun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		return -1
	}
	return int(ec.Code)
}

type rawAttr struct {
	t pionstun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *pionstun.Message) error { m.Add(a.t, a.v); return nil }

func requestedUDP() pionstun.Setter {
	return rawAttr{pionstun.AttrRequestedTransport, []byte{17, 0, 0, 0}}
}

func lifetime(sec uint32) pionstun.Setter {
	return rawAttr{pionstun.AttrLifetime, []byte{byte(sec >> 24), byte(sec >> 16), byte(sec >> 8), byte(sec)}}
}

// peer encodes XOR-PEER-ADDRESS by hand so that an IPv4-mapped IPv6
// spelling goes on the wire as an IPv6 address (pion's encoder would turn
// it back into IPv4).
func peer(ip string, port int) pionstun.Setter {
	return xorPeer{netip.MustParseAddr(ip), port}
}

type xorPeer struct {
	ip   netip.Addr
	port int
}

func (p xorPeer) AddTo(m *pionstun.Message) error {
	ip := p.ip.AsSlice()
	v := make([]byte, 4+len(ip))
	v[1] = 0x01
	if len(ip) == 16 {
		v[1] = 0x02
	}
	binary.BigEndian.PutUint16(v[2:], uint16(p.port)^uint16(stunwire.MagicCookie>>16))
	var xor [16]byte
	binary.BigEndian.PutUint32(xor[:4], stunwire.MagicCookie)
	copy(xor[4:], m.TransactionID[:])
	for i := range ip {
		v[4+i] = ip[i] ^ xor[i]
	}
	m.Add(pionstun.AttrXORPeerAddress, v)
	return nil
}

func tlsDial(addr string) (net.Conn, error) {
	return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test server
}

func dtlsDial(addr *net.UDPAddr) (net.Conn, error) {
	c, err := dtls.Dial("udp", addr, &dtls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test server
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func withTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dialTCPRelay makes an RFC 6062 TCP allocation on srv over a new control
// connection and connects it through the relay to peer; the allocation and
// the data connection close when the test ends.
func dialTCPRelay(t *testing.T, srv *testServer, peer *net.TCPAddr) net.Conn {
	t.Helper()
	server := srv.addr(t, "tcp", "4").(*net.TCPAddr)
	control, err := net.DialTCP("tcp", nil, server)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, pionturn.NewSTUNConn(control), server, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatalf("allocate TCP: %v", err)
	}
	t.Cleanup(func() { _ = alloc.Close() })
	data, err := alloc.DialTCP("tcp", nil, peer)
	if err != nil {
		t.Fatalf("connect through the TCP relay: %v", err)
	}
	t.Cleanup(func() { _ = data.Close() })
	return data
}
