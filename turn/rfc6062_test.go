package turn

import (
	"encoding/binary"
	"io"
	"net"
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
