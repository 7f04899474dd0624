package main

import (
	"bufio"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"icegate/config"
	"icegate/internal/proxied/proxiedtest"
	"icegate/internal/testutil"
	"icegate/signaling"
)

// TestHTTPProxyProtocol: with http.proxy_from, a PROXY v1 or v2 header from
// the trusted proxy (127.0.0.2) gives signaling the client's address, over
// HTTP and HTTPS alike (the header comes before TLS): a request it refuses
// is logged with the client as its remote. A header from another source
// closes the connection unanswered and is counted; a direct client without
// one is served under its own address.
func TestHTTPProxyProtocol(t *testing.T) {
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			cfg, err := config.Default()
			if err != nil {
				t.Fatal(err)
			}
			cfg.HTTP.Listen = "127.0.0.1:0"
			cfg.HTTP.ProxyFrom = []string{"127.0.0.2"}
			if scheme == "https" {
				cfg.HTTP.CertFile = "../../config/testdata/tls/cert.pem"
				cfg.HTTP.KeyFile = "../../config/testdata/tls/key.pem"
			}
			if diags := cfg.Validate(); diags.HasErrors() {
				t.Fatal(config.FormatDiagnostics(diags))
			}
			logs := &testutil.SyncBuffer{}
			log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			sig, err := signaling.New(signalingConfig(cfg, nil), signaling.Options{Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			counts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_proxy_headers_total"}, []string{"listener", "outcome"})
			web, err := newHTTPServer(cfg.HTTP, nil, log)
			if err != nil {
				t.Fatal(err)
			}
			if err := web.serve(cfg.HTTP, sig, nil, log, counts); err != nil {
				t.Fatal(err)
			}
			defer web.stop()
			u, err := url.Parse(web.url)
			if err != nil {
				t.Fatal(err)
			}
			server := "127.0.0.1:" + u.Port()
			defer func() {
				if t.Failed() {
					t.Logf("log:\n%s", logs.String())
				}
			}()

			for _, tc := range []struct {
				version byte
				client  string
			}{{1, "203.0.113.5:4444"}, {2, "[2001:db8::5]:5555"}} {
				status, err := httpVia(scheme, "127.0.0.2", server, proxiedtest.Header(t, tc.version, tc.client))
				if err != nil || status != http.StatusMisdirectedRequest {
					t.Fatalf("v%d: status %d, %v; want 421 for a foreign Host", tc.version, status, err)
				}
				if !strings.Contains(logs.String(), "remote="+tc.client) {
					t.Fatalf("v%d: the refusal is not logged under the client's address %s", tc.version, tc.client)
				}
			}
			if got := counterOf(t, counts, "proxied"); got != 2 {
				t.Fatalf("proxied count %v, want 2", got)
			}

			// Anyone else's header: closed, counted, not answered.
			if status, err := httpVia(scheme, "127.0.0.1", server, proxiedtest.Header(t, 1, "203.0.113.6:1")); err == nil {
				t.Fatalf("a header from an untrusted source was answered: %d", status)
			}
			// The trusted proxy without a header: the same.
			if status, err := httpVia(scheme, "127.0.0.2", server, nil); err == nil {
				t.Fatalf("the trusted proxy without a header was answered: %d", status)
			}
			deadline := time.Now().Add(2 * time.Second)
			for counterOf(t, counts, "untrusted") != 1 || counterOf(t, counts, "missing") != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("untrusted %v, missing %v; want 1 each", counterOf(t, counts, "untrusted"), counterOf(t, counts, "missing"))
				}
				time.Sleep(10 * time.Millisecond)
			}
			// A direct client: served, under its own address.
			if status, err := httpVia(scheme, "127.0.0.1", server, nil); err != nil || status != http.StatusMisdirectedRequest {
				t.Fatalf("a direct client: %d, %v", status, err)
			}
			if !strings.Contains(logs.String(), "remote=127.0.0.1:") {
				t.Fatal("a direct client is not logged under its own address")
			}
		})
	}
}

// httpVia sends one request naming a foreign Host from the loopback
// address from, after head, and returns the response's status.
func httpVia(scheme, from, server string, head []byte) (int, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp4", server)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Write(head); err != nil {
		return 0, err
	}
	c := raw
	if scheme == "https" {
		c = tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test certificate
	}
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: close\r\n\r\n")); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func counterOf(t *testing.T, v *prometheus.CounterVec, outcome string) float64 {
	t.Helper()
	var m dto.Metric
	if err := v.WithLabelValues("http", outcome).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
