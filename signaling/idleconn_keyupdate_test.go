package signaling

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"icegate/internal/hellosplit"
)

// syncBuffer is a process's output, read while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.buf.Bytes(), []byte(s))
}

// TLS 1.3 KeyUpdate (RFC 8446 §4.6.3) from a real client, OpenSSL's
// s_client ("K" asks the server to update its keys too, "k" does not):
// crypto/tls handles it inside Read and it yields no plaintext, so the
// idle reader's deep read finds nothing and must neither stall nor spin;
// the message sent after it is answered at once (far within the read
// timeout of a minute), as is the server's own KeyUpdate answer accepted
// by the client (else s_client would fail the connection).
func TestIdleReaderKeyUpdate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	s := newTestServer(t, func(c *Config) { c.PingInterval = time.Minute })
	hs := httptest.NewUnstartedServer(s.Handler())
	hs.Listener = hellosplit.Listen(hs.Listener)
	hs.StartTLS()
	defer hs.Close()
	host := strings.TrimPrefix(hs.URL, "https://")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Not -quiet: it implies -ign_eof, which turns the command letters off.
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", host, "-tls1_3", "-servername", "localhost")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("s_client:\n%s", out.buf.String())
		}
	}()
	waitFor := func(what, s string, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !out.contains(s) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %q not seen within %v", what, s, d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Each write is a read of s_client's of its own: a command letter
	// must start one.
	send := func(b []byte) {
		t.Helper()
		if _, err := stdin.Write(b); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitFor("handshake", "TLSv1.3", 10*time.Second)
	send([]byte("GET /ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	waitFor("hello", `"type":"hello"`, 5*time.Second)
	send(ping(1))
	waitFor("pong 1", `"id":"1"`, 2*time.Second)
	for i, cmdLetter := range []string{"K\n", "k\n", "K\n"} {
		send([]byte(cmdLetter))
		id := 2 + i
		send(ping(id))
		waitFor("pong after a KeyUpdate", `"id":"`+string(rune('0'+id))+`"`, 2*time.Second)
	}
	waitFor("KeyUpdate sent", "KEYUPDATE", time.Second)
	_ = stdin.Close()
}

// A TLS 1.2 client that tries to renegotiate (OpenSSL s_client's "R": a
// ClientHello after the handshake, RFC 5746) is refused by crypto/tls
// inside Read; the idle reader must hand that error on at once, ending
// the connection, not wait for its read timeout (a minute here).
func TestIdleReaderRenegotiation(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	s := newTestServer(t, func(c *Config) { c.PingInterval = time.Minute })
	hs := httptest.NewUnstartedServer(s.Handler())
	hs.Listener = hellosplit.Listen(hs.Listener)
	hs.StartTLS()
	defer hs.Close()
	host := strings.TrimPrefix(hs.URL, "https://")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", host, "-tls1_2", "-servername", "localhost")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("s_client:\n%s", out.buf.String())
		}
	}()
	waitFor := func(what, s string, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !out.contains(s) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %q not seen within %v", what, s, d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	send := func(b []byte) {
		t.Helper()
		if _, err := stdin.Write(b); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitFor("handshake", "TLSv1.2", 10*time.Second)
	send([]byte("GET /ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	waitFor("hello", `"type":"hello"`, 5*time.Second)
	send(ping(1))
	waitFor("pong 1", `"id":"1"`, 2*time.Second)
	send([]byte("R\n"))
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection did not end after a refused renegotiation")
	}
	if !out.contains("RENEGOTIATING") {
		t.Error("s_client did not renegotiate")
	}
}
