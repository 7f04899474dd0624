package config

import "testing"

// TestSwitchDefaults: each switch accessor, on a nil switch, gives what
// default.hcl sets, so the default lives in one place.
func TestSwitchDefaults(t *testing.T) {
	d, diags := decodeDefaults()
	if diags.HasErrors() {
		t.Fatal(FormatDiagnostics(diags))
	}
	var zero Config
	zero.Listen, zero.Relay, zero.Auth, zero.STUN, zero.HTTP, zero.Signaling =
		&Listen{}, &Relay{}, &Auth{}, &STUN{}, &HTTP{}, &Signaling{}
	for _, c := range []struct {
		name     string
		file     *bool
		accessor func(*Config) bool
	}{
		{"listen.udp", d.Listen.UDP, func(c *Config) bool { return c.Listen.UDPOn() }},
		{"listen.tcp", d.Listen.TCP, func(c *Config) bool { return c.Listen.TCPOn() }},
		{"listen.tls", d.Listen.TLS, func(c *Config) bool { return c.Listen.TLSOn() }},
		{"listen.dtls", d.Listen.DTLS, func(c *Config) bool { return c.Listen.DTLSOn() }},
		{"listen.udp_segmentation", d.Listen.UDPSegmentation, func(c *Config) bool { return c.Listen.SegmentationOn() }},
		{"listen.freebind", d.Listen.FreeBind, func(c *Config) bool { return c.Listen.FreeBindOn() }},
		{"relay.tcp", d.Relay.TCP, func(c *Config) bool { return c.Relay.TCPOn() }},
		{"relay.private_ok", d.Relay.PrivateOK, func(c *Config) bool { return c.Relay.PrivateAllowed() }},
		{"auth.ephemeral_secret", d.Auth.EphemeralSecret, func(c *Config) bool { return c.Auth.EphemeralSecretOn() }},
		{"stun.rfc3489", d.STUN.RFC3489, func(c *Config) bool { return c.STUN.RFC3489On() }},
		{"http.test_page", d.HTTP.TestPage, func(c *Config) bool { return c.HTTP.TestPageOn() }},
		{"signaling.turn_events", d.Signaling.TURNEvents, func(c *Config) bool { return c.Signaling.TURNEventsOn() }},
	} {
		if c.file == nil {
			t.Errorf("%s: default.hcl does not set it", c.name)
			continue
		}
		if got := c.accessor(&zero); got != *c.file {
			t.Errorf("%s: unset means %v, default.hcl says %v", c.name, got, *c.file)
		}
		if got := c.accessor(d); got != *c.file {
			t.Errorf("%s: reads %v from the defaults, which say %v", c.name, got, *c.file)
		}
	}
}
