package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"icegate/internal/proxied"
	"icegate/internal/testutil"
)

// TestSharedPort runs the binary with http.listen on listen.tls_port: one
// socket serves TURN over TLS and HTTPS at once. Behind a client that
// connects and says nothing, pion TURN clients with and without ALPN
// allocate and relay, Go HTTP clients with and without ALPN and curl get
// answers, all concurrently; the certificate follows the ALPN offered; the
// outcomes are counted.
func TestSharedPort(t *testing.T) {
	bin := icegateBinary(t)
	dir := t.TempDir()
	port, shared, metricsPort := freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t)
	turnCert, turnKey := writeCert(t, dir, "turn-cert")
	webCert, webKey := writeCert(t, dir, "web-cert")
	cfgFile := filepath.Join(dir, "icegate.hcl")
	src := fmt.Sprintf(`log { format = "json" }
listen {
  addresses = ["127.0.0.1"]
  port      = %d
  tls_port  = %d
  dtls      = false
}
tls {
  cert_file = %q
  key_file  = %q
}
relay {
  min_port    = 22000
  max_port    = 22999
  ipv4_bind   = "127.0.0.1"
  ipv4_public = "127.0.0.1"
  ipv6_bind   = ""
  private_ok  = true
}
auth {
  user "alice" { password = "rabbit" }
}
policy { presets = ["loopback"] }
metrics { listen = "127.0.0.1:%d" }
http {
  listen    = "127.0.0.1:%d"
  cert_file = %q
  key_file  = %q
}
shutdown_grace = "1s"
`, port, shared, turnCert, turnKey, metricsPort, shared, webCert, webKey)
	if err := os.WriteFile(cfgFile, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "-config", cfgFile)
	p := &process{t: t, cmd: cmd, stderr: &testutil.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = io.Discard, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", p.stderr.String())
		}
	}()
	p.waitLog(0, "icegate ready")
	addr := "127.0.0.1:" + strconv.Itoa(shared)

	// A client that connects and sends nothing, not even a ClientHello.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	peer := udpEchoPeer(t, "127.0.0.1")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	turnClient := func(alpn []string, wantCN string) {
		defer wg.Done()
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: alpn}) //nolint:gosec // test certificates
		if err != nil {
			errs <- fmt.Errorf("turn %q: %w", alpn, err)
			return
		}
		defer c.Close()
		if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != wantCN {
			errs <- fmt.Errorf("turn %q: certificate %q, want %q", alpn, cn, wantCN)
		}
		conn := pionturn.NewSTUNConn(c)
		client, err := pionturn.NewClient(&pionturn.ClientConfig{
			STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
			Username: "alice", Password: "rabbit", Realm: "icegate",
		})
		if err != nil {
			errs <- err
			return
		}
		defer client.Close()
		if err := client.Listen(); err != nil {
			errs <- err
			return
		}
		relay, err := client.Allocate()
		if err != nil {
			errs <- fmt.Errorf("turn %q: allocate: %w", alpn, err)
			return
		}
		defer relay.Close()
		if !echoes(relay, peer) {
			errs <- fmt.Errorf("turn %q: no echo through the relay", alpn)
		}
	}
	httpClient := func(alpn []string, wantCN string) {
		defer wg.Done()
		var cn string
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: alpn, //nolint:gosec // test certificates
			VerifyConnection: func(st tls.ConnectionState) error { cn = st.PeerCertificates[0].Subject.CommonName; return nil }}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + addr + "/api/ice-servers")
		if err != nil {
			errs <- fmt.Errorf("http %q: %w", alpn, err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "iceServers") {
			errs <- fmt.Errorf("http %q: %d %s", alpn, resp.StatusCode, body)
		}
		if cn != wantCN {
			errs <- fmt.Errorf("http %q: certificate %q, want %q", alpn, cn, wantCN)
		}
	}
	for range 2 {
		wg.Add(4)
		go turnClient([]string{"stun.turn"}, "turn-cert")
		go turnClient(nil, "web-cert") // no ALPN, no server name: HTTPS's certificate (docs/tls.md)
		go httpClient([]string{"http/1.1"}, "web-cert")
		go httpClient(nil, "web-cert")
	}
	curlRuns := 0
	if _, err := exec.LookPath("curl"); err == nil {
		for _, flags := range [][]string{nil, {"--no-alpn"}} {
			curlRuns++
			wg.Go(func() {
				args := append([]string{"-sS", "-k", "--max-time", "10", "https://" + addr + "/api/ice-servers"}, flags...)
				out, err := exec.CommandContext(ctx, "curl", args...).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "iceServers") {
					errs <- fmt.Errorf("curl %v: %v: %s", flags, err, out)
				}
			})
		}
	} else {
		t.Log("curl not installed: Go's HTTP client only")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	if got := metric(t, url, `icegate_shared_port_connections_total{outcome="turn"}`); got != "4" {
		t.Errorf("turn connections counted %q, want 4", got)
	}
	if got, _ := strconv.Atoi(metric(t, url, `icegate_shared_port_connections_total{outcome="http"}`)); got < 4+curlRuns {
		t.Errorf("http connections counted %d, want at least %d", got, 4+curlRuns)
	}
}

// TestPendingSource: a shared socket's pending connections count against
// the socket's peer without reading a PROXY header (the accept loop must
// not wait for one), and a trusted proxy's are not limited per source.
func TestPendingSource(t *testing.T) {
	for _, tc := range []struct {
		name        string
		from        []netip.Prefix
		wantLimited bool
	}{
		{"no proxy_from", nil, true},
		{"untrusted", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, true},
		{"trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			ln := proxied.Listen(raw, proxied.Config{From: tc.from, Listener: "tls"})
			client, err := net.Dial("tcp", raw.Addr().String()) // sends nothing
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			done := make(chan struct{})
			var src netip.Addr
			var limited bool
			go func() { defer close(done); src, limited = pendingSource(c) }()
			select {
			case <-done:
			case <-time.After(time.Second):
				t.Fatal("pendingSource waited for the client's first bytes")
			}
			if limited != tc.wantLimited {
				t.Fatalf("limited %v, want %v", limited, tc.wantLimited)
			}
			if limited && src != netip.MustParseAddr("127.0.0.1") {
				t.Fatalf("source %v, want 127.0.0.1", src)
			}
		})
	}
}
