package turn

import (
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"
)

// streamSTUN speaks STUN over one TCP connection by hand, so the test sees
// the exact bytes of each response.
type streamSTUN struct {
	t    *testing.T
	conn net.Conn
}

func (s streamSTUN) do(setters ...pionstun.Setter) *pionstun.Message {
	s.t.Helper()
	m := pionstun.MustBuild(append([]pionstun.Setter{pionstun.TransactionID}, setters...)...)
	if _, err := s.conn.Write(m.Raw); err != nil {
		s.t.Fatal(err)
	}
	for {
		hdr := make([]byte, 20)
		if _, err := io.ReadFull(s.conn, hdr); err != nil {
			s.t.Fatalf("reading the answer to %v: %v", m.Type, err)
		}
		body := make([]byte, binary.BigEndian.Uint16(hdr[2:]))
		if _, err := io.ReadFull(s.conn, body); err != nil {
			s.t.Fatal(err)
		}
		resp := &pionstun.Message{Raw: append(hdr, body...)}
		if err := resp.Decode(); err != nil {
			s.t.Fatal(err)
		}
		if resp.TransactionID == m.TransactionID {
			return resp
		}
		// An indication (ConnectionAttempt) on the control connection.
	}
}

// TestConnectionBindSigned: the ConnectionBind success response carries a
// MESSAGE-INTEGRITY made with the request's key (RFC 8489 §9.2.4, RFC 6062
// §5.4), which coturn's client checks, and the data connection then carries
// the peer's bytes both ways.
func TestConnectionBindSigned(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Relay.TCP = true })
	server := srv.addr(t, "tcp", "4")
	echo := tcpEcho(t, "127.0.0.1")
	key := pionstun.NewLongTermIntegrity(testUser, testRealm, testPass)

	dial := func() streamSTUN {
		c, err := net.Dial("tcp", server.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return streamSTUN{t, c}
	}
	control := dial()
	tcpTransport := rawAttr{pionstun.AttrRequestedTransport, []byte{6, 0, 0, 0}}
	resp := control.do(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), tcpTransport)
	var nonce pionstun.Nonce
	if err := nonce.GetFrom(resp); err != nil {
		t.Fatal(err)
	}
	authed := func(s streamSTUN, method pionstun.Method, attrs ...pionstun.Setter) *pionstun.Message {
		t.Helper()
		all := append([]pionstun.Setter{pionstun.NewType(method, pionstun.ClassRequest)}, attrs...)
		all = append(all, pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm), nonce, key, pionstun.Fingerprint)
		resp := s.do(all...)
		if code := errorCode(resp); code != 0 {
			t.Fatalf("%v: error %d", method, code)
		}
		if err := key.Check(resp); err != nil {
			t.Fatalf("%v success response: MESSAGE-INTEGRITY: %v", method, err)
		}
		return resp
	}
	authed(control, pionstun.MethodAllocate, tcpTransport)
	resp = authed(control, pionstun.MethodConnect, peer("127.0.0.1", echo.Port))
	cid, err := resp.Get(pionstun.AttrConnectionID)
	if err != nil {
		t.Fatalf("Connect response without CONNECTION-ID: %v", err)
	}

	data := dial()
	authed(data, pionstun.MethodConnectionBind, rawAttr{pionstun.AttrConnectionID, cid})
	want := []byte("raw bytes after ConnectionBind")
	if _, err := data.conn.Write(want); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(data.conn, got); err != nil || string(got) != string(want) {
		t.Fatalf("echo over the data connection: %q, %v; want %q", got, err, want)
	}
}

// readSTUN reads one STUN message from a stream.
func readSTUN(t *testing.T, c net.Conn) *pionstun.Message {
	t.Helper()
	hdr := make([]byte, 20)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[2:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	m := &pionstun.Message{Raw: append(hdr, body...)}
	if err := m.Decode(); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTCPRelayCounted: an RFC 6062 TCP relay's bytes count in the
// allocation's traffic and in the relayed totals under the client's
// transport, both ways, for a connection the client opened with Connect
// (§5.2) and for one a peer opened to the relayed address (§5.3); what the
// allocation relayed stays in the totals after it ends.
func TestTCPRelayCounted(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.Relay.TCP = true })
	server := srv.addr(t, "tcp", "4")
	echo := tcpEcho(t, "127.0.0.1")
	key := pionstun.NewLongTermIntegrity(testUser, testRealm, testPass)
	dial := func() streamSTUN {
		c, err := net.Dial("tcp", server.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return streamSTUN{t, c}
	}
	control := dial()
	tcpTransport := rawAttr{pionstun.AttrRequestedTransport, []byte{6, 0, 0, 0}}
	var nonce pionstun.Nonce
	if err := nonce.GetFrom(control.do(pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest), tcpTransport)); err != nil {
		t.Fatal(err)
	}
	authed := func(s streamSTUN, method pionstun.Method, attrs ...pionstun.Setter) *pionstun.Message {
		t.Helper()
		all := append([]pionstun.Setter{pionstun.NewType(method, pionstun.ClassRequest)}, attrs...)
		all = append(all, pionstun.NewUsername(testUser), pionstun.NewRealm(testRealm), nonce, key, pionstun.Fingerprint)
		resp := s.do(all...)
		if code := errorCode(resp); code != 0 {
			t.Fatalf("%v: error %d", method, code)
		}
		return resp
	}
	var relayed pionstun.XORMappedAddress
	if err := relayed.GetFromAs(authed(control, pionstun.MethodAllocate, tcpTransport), pionstun.AttrXORRelayedAddress); err != nil {
		t.Fatal(err)
	}
	traffic := func() Traffic {
		t.Helper()
		list := srv.Allocations(AllocationFilter{User: testUser})
		if len(list) != 1 || !list[0].TCPRelay {
			t.Fatalf("allocations: %+v", list)
		}
		return list[0].Traffic
	}
	waitTraffic := func(want Traffic) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := traffic()
			if got.BytesToPeer == want.BytesToPeer && got.BytesToClient == want.BytesToClient &&
				got.PacketsToPeer >= want.PacketsToPeer && got.PacketsToClient >= want.PacketsToClient {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("traffic %+v, want bytes %d to peer and %d to client, at least %d and %d packets",
					got, want.BytesToPeer, want.BytesToClient, want.PacketsToPeer, want.PacketsToClient)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Active: Connect to the echo, 3 writes of 1000 bytes, all echoed.
	cid, err := authed(control, pionstun.MethodConnect, peer("127.0.0.1", echo.Port)).Get(pionstun.AttrConnectionID)
	if err != nil {
		t.Fatal(err)
	}
	data := dial()
	authed(data, pionstun.MethodConnectionBind, rawAttr{pionstun.AttrConnectionID, cid})
	chunk := make([]byte, 1000)
	for i := range 3 {
		if _, err := data.conn.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(data.conn, chunk); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
	}
	waitTraffic(Traffic{BytesToPeer: 3000, PacketsToPeer: 3, BytesToClient: 3000, PacketsToClient: 1})

	// Passive: a peer connects to the relayed address (it needs a
	// permission, §5.3), sends 500 bytes and gets 200 back.
	authed(control, pionstun.MethodCreatePermission, peer("127.0.0.1", 9))
	p, err := net.Dial("tcp", net.JoinHostPort(relayed.IP.String(), strconv.Itoa(relayed.Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_ = p.SetDeadline(time.Now().Add(10 * time.Second))
	attempt := readSTUN(t, control.conn) // ConnectionAttempt (§5.3)
	if attempt.Type != pionstun.NewType(pionstun.MethodConnectionAttempt, pionstun.ClassIndication) {
		t.Fatalf("got %v, want a ConnectionAttempt indication", attempt.Type)
	}
	cid, err = attempt.Get(pionstun.AttrConnectionID)
	if err != nil {
		t.Fatal(err)
	}
	data2 := dial()
	authed(data2, pionstun.MethodConnectionBind, rawAttr{pionstun.AttrConnectionID, cid})
	if _, err := p.Write(make([]byte, 500)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(data2.conn, make([]byte, 500)); err != nil {
		t.Fatal(err)
	}
	if _, err := data2.conn.Write(make([]byte, 200)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(p, make([]byte, 200)); err != nil {
		t.Fatal(err)
	}
	want := Traffic{BytesToPeer: 3200, PacketsToPeer: 4, BytesToClient: 3500, PacketsToClient: 2}
	waitTraffic(want)
	if got := srv.RelayedTotals()["tcp"]; got.BytesToPeer != 3200 || got.BytesToClient != 3500 {
		t.Fatalf("relayed totals for tcp: %+v, want %+v", got, want)
	}

	// Ended: the totals keep what it relayed.
	authed(control, pionstun.MethodRefresh, lifetime(0))
	waitAllocations(t, srv, 0)
	if got := srv.RelayedTotals()["tcp"]; got.BytesToPeer < 3200 || got.BytesToClient < 3500 {
		t.Fatalf("relayed totals for tcp after the allocation ended: %+v, want at least %+v", got, want)
	}
}
