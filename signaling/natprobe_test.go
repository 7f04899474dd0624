package signaling

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"icegate/config"
)

// TestNATProbe checks that hello and /api/ice-servers name the server's two
// RFC 5780 addresses (for the test page's NAT hint) exactly when the stun
// block configures them, as clients reach them.
func TestNATProbe(t *testing.T) {
	rfc5780 := func(primary, alt string) func(*config.Config) {
		return func(c *config.Config) {
			c.Listen.Addresses = []string{primary}
			c.STUN.AlternateAddress = alt
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*config.Config)
		want   []string
	}{
		{"no stun block", nil, nil},
		{"alternate port alone", func(c *config.Config) { c.STUN.AlternatePort = 3490 }, nil},
		{"IPv4", rfc5780("192.0.2.10", "192.0.2.11"), []string{"stun:192.0.2.10:3478", "stun:192.0.2.11:3479"}},
		{"ports", func(c *config.Config) {
			rfc5780("192.0.2.10", "192.0.2.11")(c)
			c.Listen.Port, c.STUN.AlternatePort = 3000, 3001
		}, []string{"stun:192.0.2.10:3000", "stun:192.0.2.11:3001"}},
		{"behind a 1:1 NAT", func(c *config.Config) {
			rfc5780("10.0.0.10", "10.0.0.11")(c)
			c.Relay.IPv4Public, c.STUN.AlternatePublic = "203.0.113.10", "203.0.113.11"
		}, []string{"stun:203.0.113.10:3478", "stun:203.0.113.11:3479"}},
		{"IPv6", rfc5780("2001:db8::10", "2001:db8::11"), []string{"stun:[2001:db8::10]:3478", "stun:[2001:db8::11]:3479"}},
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
	on := testConfig(t, func(c *config.Config) {
		c.Listen.Addresses = []string{"192.0.2.10"}
		c.STUN.AlternateAddress = "192.0.2.11"
	})
	if err := s.Reload(on); err != nil {
		t.Fatal(err)
	}
	if got := strs(connect(t, s, pipeOpts{}).hello["nat_probe"]); len(got) != 2 {
		t.Fatalf("nat_probe after a reload with RFC 5780: %v", got)
	}
	if err := s.Reload(testConfig(t, nil)); err != nil {
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
