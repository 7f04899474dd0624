package signaling

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"slices"
	"testing"
)

// TestNATProbe checks that hello and /api/ice-servers name the server's two
// RFC 5780 addresses (for the test page's NAT hint) exactly when the config
// gives them. Which addresses those are (public ones behind a 1:1 NAT, the
// ports the relay got) is cmd/icegate's translation, tested there.
func TestNATProbe(t *testing.T) {
	probe := func(primary, alt string) func(*Config) {
		return func(c *Config) {
			c.NATProbe = NATProbe{Primary: netip.MustParseAddrPort(primary), Alternate: netip.MustParseAddrPort(alt)}
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"off", nil, nil},
		{"IPv4", probe("192.0.2.10:3478", "192.0.2.11:3479"), []string{"stun:192.0.2.10:3478", "stun:192.0.2.11:3479"}},
		{"ports", probe("192.0.2.10:3000", "192.0.2.11:3001"), []string{"stun:192.0.2.10:3000", "stun:192.0.2.11:3001"}},
		{"IPv6", probe("[2001:db8::10]:3478", "[2001:db8::11]:3479"), []string{"stun:[2001:db8::10]:3478", "stun:[2001:db8::11]:3479"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, hs := httpServer(t, tc.mutate)

			a := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Host: "turn.example.com"}})
			got := strs(a.hello["nat_probe"])
			if _, present := a.hello["nat_probe"]; present != (tc.want != nil) || !slices.Equal(got, tc.want) {
				t.Errorf("hello nat_probe = %v (present %v), want %v", a.hello["nat_probe"], present, tc.want)
			}

			resp, err := http.Get(hs.URL + "/api/ice-servers")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var v map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
				t.Fatalf("api/ice-servers: %d %v", resp.StatusCode, err)
			}
			if _, present := v["natProbe"]; present != (tc.want != nil) || !slices.Equal(strs(v["natProbe"]), tc.want) {
				t.Errorf("api natProbe = %v (present %v), want %v", v["natProbe"], present, tc.want)
			}
			if servers, _ := v["iceServers"].([]any); len(servers) != 2 {
				t.Errorf("iceServers changed: %v", v["iceServers"])
			}
		})
	}
}

// TestNATProbeReload checks that a reload that switches RFC 5780 on or off
// is what the next hello says.
func TestNATProbeReload(t *testing.T) {
	s := newTestServer(t, nil)
	if h := connect(t, s, pipeOpts{}).hello; h["nat_probe"] != nil {
		t.Fatalf("nat_probe without RFC 5780: %v", h["nat_probe"])
	}
	on := testConfig(func(c *Config) {
		c.NATProbe = NATProbe{Primary: netip.MustParseAddrPort("192.0.2.10:3478"), Alternate: netip.MustParseAddrPort("192.0.2.11:3479")}
	})
	if err := s.Reload(on); err != nil {
		t.Fatal(err)
	}
	if got := strs(connect(t, s, pipeOpts{}).hello["nat_probe"]); len(got) != 2 {
		t.Fatalf("nat_probe after a reload with RFC 5780: %v", got)
	}
	if err := s.Reload(testConfig(nil)); err != nil {
		t.Fatal(err)
	}
	if h := connect(t, s, pipeOpts{}).hello; h["nat_probe"] != nil {
		t.Fatalf("nat_probe after RFC 5780 was switched off: %v", h["nat_probe"])
	}
}

// strs converts a decoded JSON array of strings; nil for anything else.
func strs(v any) []string {
	a, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(a))
	for _, e := range a {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}
