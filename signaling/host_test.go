package signaling

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// hostRequest sends a GET for path to hs with the Host header host and
// Origin origin ("" for none), and returns the status and body.
func hostRequest(t *testing.T, url, host, origin string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHostCheck is DNS rebinding: a page on a name the attacker points at
// this server sends Host (and Origin) naming that name, and is refused
// with 421 on every path, the WebSocket included; the server's names, IP
// addresses and localhost pass.
func TestHostCheck(t *testing.T) {
	s, hs := httpServer(t, func(c *Config) {
		c.Hosts = []string{"signal.example.com", "*.apps.example.org", "trailing.example.net."}
		c.TURNHost = "turn.example.com"
	})
	port := hs.URL[strings.LastIndex(hs.URL, ":")+1:]

	refused := 0
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"signal.example.com", true},
		{"signal.example.com:" + port, true},
		{"SIGNAL.Example.COM", true},
		{"signal.example.com.", true}, // the same name, fully qualified
		{"turn.example.com:443", true},
		{"a.apps.example.org", true},
		{"a.b.apps.example.org", true},
		{"trailing.example.net", true},
		{"localhost:" + port, true},
		{"127.0.0.1:" + port, true},
		{"203.0.113.7", true},
		{"[::1]:" + port, true},
		{"[2001:db8::1]", true},
		{"evil.example", false},
		{"evil.example:" + port, false},
		{"apps.example.org", false}, // "*." is below the name, not the name
		{"signal.example.com.evil.example", false},
		{"xsignal.example.com", false},
		{"localhost.evil.example", false},
		{"2130706433", false}, // not an address a browser sends: a name
	} {
		for _, path := range []string{"/ws", "/ws/simple", "/api/turn", "/api/ice-servers", "/"} {
			// The origin a rebinding page sends: its own, naming Host.
			code, body := hostRequest(t, hs.URL+path, tc.host, "http://"+tc.host)
			if tc.ok {
				if code == http.StatusMisdirectedRequest {
					t.Errorf("Host %q %s: refused: %s", tc.host, path, body)
				}
				continue
			}
			refused++
			if code != http.StatusMisdirectedRequest || !strings.Contains(body, `"code":"host"`) || !strings.Contains(body, "http.hosts") {
				t.Errorf("Host %q %s: %d %s, want 421 naming http.hosts", tc.host, path, code, body)
			}
		}
	}

	// The WebSocket itself: refused before the upgrade under a foreign
	// name, upgraded under the server's.
	code, body, _ := dialWS(t, wsURL(hs, "/ws"), http.Header{"Host": {"evil.example"}, "Origin": {"http://evil.example"}})
	if code != http.StatusMisdirectedRequest || !strings.Contains(body, `host \"evil.example\" is not a name of this server`) {
		t.Errorf("WebSocket under a foreign Host: %d %s", code, body)
	}
	refused++
	code, body, hello := dialWS(t, wsURL(hs, "/ws"), http.Header{"Host": {"signal.example.com"}, "Origin": {"https://signal.example.com"}})
	if code != http.StatusSwitchingProtocols || hello["type"] != "hello" {
		t.Errorf("WebSocket under the server's name: %d %s %v", code, body, hello)
	}
	if n := counterValue(t, s.metrics.refused.WithLabelValues("host")); n != float64(refused) {
		t.Errorf("refused{reason=host} = %v, want %d", n, refused)
	}
}

// TestHostCheckDefaults: with no names configured, localhost and IP
// addresses pass and every DNS name is refused, "*" accepts any, and a
// reload applies a new list.
func TestHostCheckDefaults(t *testing.T) {
	s, hs := httpServer(t, nil)
	for host, ok := range map[string]bool{"localhost": true, "LOCALHOST:1": true, "127.0.0.1": true, "[::1]": true, "home.example.net": false} {
		if code, body := hostRequest(t, hs.URL+"/api/ice-servers", host, ""); (code != http.StatusMisdirectedRequest) != ok {
			t.Errorf("Host %q: %d %s", host, code, body)
		}
	}
	if err := s.Reload(testConfig(func(c *Config) { c.Hosts = []string{"home.example.net"} })); err != nil {
		t.Fatal(err)
	}
	if code, body := hostRequest(t, hs.URL+"/api/ice-servers", "home.example.net", ""); code != http.StatusOK {
		t.Errorf("after the reload: %d %s", code, body)
	}
	if err := s.Reload(testConfig(func(c *Config) { c.Hosts = []string{"*"} })); err != nil {
		t.Fatal(err)
	}
	if code, body := hostRequest(t, hs.URL+"/api/ice-servers", "anything.example", ""); code != http.StatusOK {
		t.Errorf("with \"*\": %d %s", code, body)
	}
	for _, bad := range []string{"", "a.example.com:80", "https://a.example.com", "a.*.example.com", "*foo"} {
		if _, err := New(testConfig(func(c *Config) { c.Hosts = []string{bad} }), Options{}); err == nil || !strings.Contains(err.Error(), "Hosts[0]") {
			t.Errorf("Hosts %q: %v", bad, err)
		}
	}
}

// TestOwnOriginWithAllowedOrigins: once allowed_origins is set the
// server's own page (Origin naming the Host it was served from) keeps
// working, other origins still need the list, and a rebinding page cannot
// pass for the server's own (its Host is refused first).
func TestOwnOriginWithAllowedOrigins(t *testing.T) {
	_, hs := httpServer(t, func(c *Config) {
		c.AllowedOrigins = []string{"https://app.example.com"}
		c.Hosts = []string{"signal.example.com"}
	})
	for _, tc := range []struct {
		host, origin string
		want         int
	}{
		{"signal.example.com", "https://signal.example.com", 200},
		{"signal.example.com", "http://signal.example.com", 200},
		{"signal.example.com", "https://app.example.com", 200},
		{"signal.example.com", "https://other.example.com", 403},
		{"signal.example.com", "https://signal.example.com:8443", 403}, // another origin
		{"evil.example", "http://evil.example", 421},
	} {
		code, body := hostRequest(t, hs.URL+"/api/ice-servers", tc.host, tc.origin)
		if code != tc.want {
			t.Errorf("Host %q Origin %q: %d %s, want %d", tc.host, tc.origin, code, body, tc.want)
		}
	}
}
