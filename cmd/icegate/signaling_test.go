package main

import (
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"icegate/signaling"
	"icegate/turn"
)

// TestSignalingConfig checks the translation of the config file into the
// signaling server's Config: every setting carried, and the ports the relay
// actually got winning over the file's in every URL.
func TestSignalingConfig(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "relay", "turn.example.com", "signal.example.com")
	httpCert, httpKey := writeCert(t, dir, "http", "signal.example.com", "*.example.net")
	listen := func(transport, addr string) turn.ListenAddr {
		ap := netip.MustParseAddrPort(addr)
		if transport == "udp" || transport == "dtls" {
			return turn.ListenAddr{Transport: transport, Addr: net.UDPAddrFromAddrPort(ap)}
		}
		return turn.ListenAddr{Transport: transport, Addr: net.TCPAddrFromAddrPort(ap)}
	}
	// What the relay got: other ports than the file's.
	served := []turn.ListenAddr{
		listen("udp", "192.0.2.10:40000"), listen("tcp", "192.0.2.10:40000"),
		listen("tls", "192.0.2.10:40001"), listen("dtls", "192.0.2.10:40001"),
	}

	carried := map[string]bool{}
	for _, tc := range []struct {
		name  string
		src   string
		relay []turn.ListenAddr
		want  signaling.Config
	}{{
		name: "defaults",
		want: signaling.Config{
			AllowedOrigins: []string{}, TokenSecrets: []string{}, APIKeys: []string{},
			CredentialTTL: time.Hour, MaxCredentialTTL: 24 * time.Hour, MaxConnections: 10000, DescriptorReserve: 512, MaxOpening: 0, MaxMessageBytes: 65536,
			MessagesPerSecond: 50, MessagesBurst: 200, PeersPerRoom: 16, SocketIORoomSize: 2, RoomsPerPeer: 8, SendQueue: 256,
			ResumeGrace: 30 * time.Second, PingInterval: 25 * time.Second, Separator: ":",
			Relay: signaling.Relay{Port: 3478, TLSPort: 5349, UDP: true, TCP: true, TLS: true, SelfSignedCert: true},
		},
	}, {
		name: "every setting changed, served ports",
		src: `
listen {
  addresses = ["192.0.2.10"]
  port      = 4000
  tls_port  = 5000
  tcp       = false
}
tls {
  cert_file = "` + certFile + `"
  key_file  = "` + keyFile + `"
}
relay {
  ipv4_public = "203.0.113.10"
}
auth {
  separator = "|"
}
http {
  test_page = false
  hosts     = ["home.example.org", "signal.example.com"]
  cert_file = "` + httpCert + `"
  key_file  = "` + httpKey + `"
}
signaling {
  allowed_origins     = ["https://app.example.com"]
  token_secrets       = ["token-secret-0123456789abcdef0123456789"]
  token_audience      = "icegate.example.com"
  max_token_lifetime  = "12h"
  turn_host           = "turn.example.com"
  credential_ttl      = "2h"
  max_connections     = 7
  descriptor_reserve  = 99
  max_opening         = 5
  max_message_bytes   = 2048
  messages_per_second = 9
  messages_burst      = 11
  peers_per_room      = 3
  socketio_room_size  = 3
  rooms_per_peer      = 4
  send_queue          = 17
  resume_grace        = "45s"
  ping_interval       = "10s"
  turn_events         = false
}
api {
  keys = ["api-key-0123456789abcdef0123456789"]
}
stun {
  alternate_address = "192.0.2.11"
  alternate_port    = 4001
  alternate_public  = "203.0.113.11"
}
`,
		relay: served,
		want: signaling.Config{
			AllowedOrigins: []string{"https://app.example.com"},
			TokenSecrets:   []string{"token-secret-0123456789abcdef0123456789"},
			APIKeys:        []string{"api-key-0123456789abcdef0123456789"},
			TokenAudience:  "icegate.example.com", MaxTokenLifetime: 12 * time.Hour,
			// http.hosts, then the HTTPS and the relay's certificates'
			// names, once each.
			Hosts:         []string{"home.example.org", "signal.example.com", "*.example.net", "turn.example.com"},
			TURNHost:      "turn.example.com",
			CredentialTTL: 2 * time.Hour, MaxCredentialTTL: 24 * time.Hour, MaxConnections: 7, DescriptorReserve: 99, MaxOpening: 5, MaxMessageBytes: 2048,
			MessagesPerSecond: 9, MessagesBurst: 11, PeersPerRoom: 3, SocketIORoomSize: 3, RoomsPerPeer: 4, SendQueue: 17,
			ResumeGrace: 45 * time.Second, PingInterval: 10 * time.Second,
			NoTURNEvents: true, NoTestPage: true, Separator: "|",
			// The relay's ports, not the file's 4000 and 5000.
			Relay: signaling.Relay{Port: 40000, TLSPort: 40001, UDP: true, TCP: false, TLS: true},
			// As clients reach them behind the 1:1 NAT; the primary on the
			// port the relay got.
			NATProbe: signaling.NATProbe{
				Primary:   netip.MustParseAddrPort("203.0.113.10:40000"),
				Alternate: netip.MustParseAddrPort("203.0.113.11:4001"),
			},
		},
	}, {
		name: "resume off, IPv6 probe, no TLS listener",
		src: `
listen {
  addresses = ["2001:db8::10"]
  tls       = false
  dtls      = false
}
signaling {
  resume_grace = "0s"
}
stun {
  alternate_address = "2001:db8::11"
}
`,
		relay: []turn.ListenAddr{listen("udp", "[2001:db8::10]:41000"), listen("tcp", "[2001:db8::10]:41000")},
		want: signaling.Config{
			AllowedOrigins: []string{}, TokenSecrets: []string{}, APIKeys: []string{},
			CredentialTTL: time.Hour, MaxCredentialTTL: 24 * time.Hour, MaxConnections: 10000, DescriptorReserve: 512, MaxOpening: 0, MaxMessageBytes: 65536,
			MessagesPerSecond: 50, MessagesBurst: 200, PeersPerRoom: 16, SocketIORoomSize: 2, RoomsPerPeer: 8, SendQueue: 256,
			NoResume: true, PingInterval: 25 * time.Second, Separator: ":",
			// No TLS listener: the file's tls_port, which no URL names.
			Relay: signaling.Relay{Port: 41000, TLSPort: 5349, UDP: true, TCP: true, SelfSignedCert: true},
			NATProbe: signaling.NATProbe{
				Primary:   netip.MustParseAddrPort("[2001:db8::10]:41000"),
				Alternate: netip.MustParseAddrPort("[2001:db8::11]:3479"),
			},
		},
	}} {
		got := signalingConfig(loadFile(t, dir, tc.src), tc.relay)
		nonZeroFields(reflect.ValueOf(got), carried)
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("signalingConfig:\n got %+v\nwant %+v", got, tc.want)
			}
			if _, err := signaling.New(got, signaling.Options{}); err != nil {
				t.Errorf("signaling.New refuses the translation: %v", err)
			}
		})
	}

	// Every field of signaling.Config is set by some case above: a field
	// added to it that the translation forgets stays zero in all of them.
	all := map[string]bool{}
	walkFields(reflect.ValueOf(signaling.Config{}), "", func(name string, _ reflect.Value) { all[name] = true })
	for name := range all {
		if !carried[name] {
			t.Errorf("signaling.Config.%s is never set by signalingConfig (or no case here sets it)", name)
		}
	}
	if len(all) < 20 {
		t.Fatalf("walked only %d fields of signaling.Config: %v", len(all), all)
	}
}

// nonZeroFields records in out the dotted names of v's fields that are not
// zero.
func nonZeroFields(v reflect.Value, out map[string]bool) {
	walkFields(v, "", func(name string, f reflect.Value) {
		if !f.IsZero() {
			out[name] = true
		}
	})
}

// walkFields calls fn for each field of the struct v, descending into the
// structs of v's own package (signaling's Relay and NATProbe, turn's
// ListenConfig, RelayConfig, ...), not into other packages' types.
// Unexported fields (test knobs such as RelayConfig's lifetimes) are not
// the translation's to set and are skipped.
func walkFields(v reflect.Value, prefix string, fn func(string, reflect.Value)) {
	pkg := v.Type().PkgPath()
	for i := range v.NumField() {
		if !v.Type().Field(i).IsExported() {
			continue
		}
		f, name := v.Field(i), prefix+v.Type().Field(i).Name
		if f.Kind() == reflect.Struct && f.Type().PkgPath() == pkg {
			walkFields(f, name+".", fn)
			continue
		}
		fn(name, f)
	}
}
