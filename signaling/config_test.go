package signaling

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"icegate/config"
)

// TestConfigDefaults checks that the zero Config means the defaults the
// config file documents, so a Server built in Go behaves as one built from
// an empty signaling block.
func TestConfigDefaults(t *testing.T) {
	file, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	f := file.Signaling
	got := Config{}.withDefaults()
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"CredentialTTL", got.CredentialTTL, f.CredentialTTLDuration},
		{"MaxConnections", got.MaxConnections, f.MaxConnections},
		{"MaxOpening", got.MaxOpening, f.MaxOpening}, // 0: automatic, resolved by the Server
		{"MaxMessageBytes", got.MaxMessageBytes, f.MaxMessageBytes},
		{"MessagesPerSecond", got.MessagesPerSecond, f.MessagesPerSecond},
		{"MessagesBurst", got.MessagesBurst, f.MessagesBurst},
		{"PeersPerRoom", got.PeersPerRoom, f.PeersPerRoom},
		{"RoomsPerPeer", got.RoomsPerPeer, f.RoomsPerPeer},
		{"SendQueue", got.SendQueue, f.SendQueue},
		{"ResumeGrace", got.ResumeGrace, f.ResumeGraceDuration},
		{"PingInterval", got.PingInterval, f.PingIntervalDuration},
		{"NoTURNEvents", got.NoTURNEvents, !f.TURNEventsOn()},
		{"NoTestPage", got.NoTestPage, !file.HTTP.TestPageOn()},
		{"Separator", got.Separator, file.Auth.Separator},
	} {
		if c.got != c.want {
			t.Errorf("zero %s means %v, the config file's default is %v", c.name, c.got, c.want)
		}
	}
	if err := got.validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}

	// A burst left out follows a rate above its default.
	if c := (Config{MessagesPerSecond: 500}).withDefaults(); c.MessagesBurst != 500 {
		t.Errorf("MessagesPerSecond 500 gives burst %d, want 500", c.MessagesBurst)
	}
	// NoResume wins over a grace.
	if c := (Config{NoResume: true, ResumeGrace: time.Minute}).withDefaults(); c.ResumeGrace != 0 {
		t.Errorf("NoResume gives grace %v", c.ResumeGrace)
	}
}

// TestConfigInvalid checks that New refuses what a Server cannot work with,
// naming the field, and that a refused Reload changes nothing.
func TestConfigInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"negative connections", func(c *Config) { c.MaxConnections = -1 }, "MaxConnections -1"},
		{"negative message size", func(c *Config) { c.MaxMessageBytes = -5 }, "MaxMessageBytes"},
		{"negative queue", func(c *Config) { c.SendQueue = -1 }, "SendQueue"},
		{"room of one", func(c *Config) { c.PeersPerRoom = 1 }, "PeersPerRoom 1"},
		{"burst below rate", func(c *Config) { c.MessagesPerSecond, c.MessagesBurst = 100, 10 }, "MessagesBurst 10 is below MessagesPerSecond 100"},
		{"negative ping", func(c *Config) { c.PingInterval = -time.Second }, "PingInterval"},
		{"negative TTL", func(c *Config) { c.CredentialTTL = -time.Second }, "CredentialTTL"},
		{"negative grace", func(c *Config) { c.ResumeGrace = -time.Second }, "ResumeGrace"},
		{"two-character separator", func(c *Config) { c.Separator = "::" }, "Separator"},
		{"digit separator", func(c *Config) { c.Separator = "7" }, "Separator"},
		{"relay port 0 with UDP", func(c *Config) { c.Relay.Port = 0 }, "Relay.Port is 0"},
		{"relay TLS port 0", func(c *Config) { c.Relay.TLSPort = 0 }, "Relay.TLSPort is 0"},
		{"relay port too big", func(c *Config) { c.Relay.Port = 70000 }, "Relay.Port 70000"},
		{"one probe address", func(c *Config) { c.NATProbe.Primary = netip.MustParseAddrPort("192.0.2.1:3478") }, "NATProbe needs both"},
		{"probe port 0", func(c *Config) {
			c.NATProbe = NATProbe{netip.MustParseAddrPort("192.0.2.1:3478"), netip.MustParseAddrPort("192.0.2.2:0")}
		}, "a port is 0"},
		{"probe one address", func(c *Config) {
			c.NATProbe = NATProbe{netip.MustParseAddrPort("192.0.2.1:3478"), netip.MustParseAddrPort("192.0.2.1:3479")}
		}, "same address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(testConfig(tc.mutate), Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error with %q", err, tc.want)
			}
			s := newTestServer(t, func(c *Config) { c.PeersPerRoom = 5 })
			if err := s.Reload(testConfig(tc.mutate)); err == nil {
				t.Fatal("Reload accepted it")
			}
			limits := connect(t, s, pipeOpts{}).hello["limits"].(map[string]any)
			if str(limits["peers_per_room"]) != "5" {
				t.Errorf("after a refused reload, limits = %v", limits)
			}
		})
	}

	// Switched off, a transport needs no port: no URL names it.
	if _, err := New(Config{Relay: Relay{Port: 3478, UDP: true}}, Options{}); err != nil {
		t.Errorf("UDP alone: %v", err)
	}
	if _, err := New(Config{}, Options{}); err != nil {
		t.Errorf("the zero Config: %v", err)
	}
}

// TestZeroConfigNamesNoRelay checks that a Server told of no relay hands
// out no URL rather than one for a port nothing serves.
func TestZeroConfigNamesNoRelay(t *testing.T) {
	s, err := New(Config{}, Options{Secret: func() string { return testSecret }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(t.Context()) })
	if servers := connect(t, s, pipeOpts{}).hello["ice_servers"]; servers != nil {
		if l, _ := servers.([]any); len(l) != 0 {
			t.Fatalf("ice_servers without a relay: %v", servers)
		}
	}
}

// TestNoResume checks that with resuming off a dropped peer leaves at once
// and its token is refused.
func TestNoResume(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.NoResume, c.ResumeGrace = true, time.Hour })
	a, b := pairInRoom(t, s, "r")
	if l := b.hello["limits"].(map[string]any); str(l["resume_grace"]) != "0" {
		t.Errorf("hello limits with resuming off: %v", l)
	}
	b.raw.Close()
	if m := a.expect("peer-left"); m["peer"] != b.id() {
		t.Fatalf("peer-left: %v", m)
	}
	b2 := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Resume: b.hello["resume_token"].(string)}})
	if b2.hello["resumed"] != false {
		t.Fatalf("resumed with resuming off: %v", b2.hello)
	}
}
