package config

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/coturn")

// importAndParse imports src and parses the result as `icegate config
// import` does, failing the test on any diagnostic.
func importAndParse(t *testing.T, src string) (CoturnImport, *Config) {
	t.Helper()
	im := ImportCoturn([]byte(src))
	c, diags := Parse(im.HCL, "imported.hcl")
	if c == nil || len(diags) > 0 {
		t.Fatalf("the import does not validate:\n%s\n--- HCL:\n%s", FormatDiagnostics(diags), im.HCL)
	}
	return im, c
}

// hasNote reports whether some note is about line and contains text.
func hasNote(notes []CoturnNote, kind CoturnNoteKind, line int, text string) bool {
	for _, n := range notes {
		if n.Kind == kind && n.Line == line && strings.Contains(n.String(), text) {
			return true
		}
	}
	return false
}

// TestImportCoturnOptions checks each option the importer translates,
// on the validated Config it gives.
func TestImportCoturnOptions(t *testing.T) {
	tests := []struct {
		name  string
		conf  string
		check func(t *testing.T, c *Config, im CoturnImport)
	}{
		{"listening ports", "listening-port=3479\ntls-listening-port 443\n", func(t *testing.T, c *Config, _ CoturnImport) {
			if c.Listen.Port != 3479 || c.Listen.TLSPort != 443 {
				t.Errorf("ports %d %d", c.Listen.Port, c.Listen.TLSPort)
			}
		}},
		{"alt port", "alt-listening-port=3490\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.STUN.AlternatePort != 3490 || !hasNote(im.Notes, CoturnChanged, 1, "alternate_address") {
				t.Errorf("alternate port %d, notes %v", c.STUN.AlternatePort, im.Notes)
			}
		}},
		{"listening ips", "listening-ip=192.0.2.1\nlistening-ip=2001:db8::1\nlistening-ip=192.0.2.1\n", func(t *testing.T, c *Config, im CoturnImport) {
			if strings.Join(c.Listen.Addresses, ",") != "192.0.2.1,2001:db8::1" || !hasNote(im.Notes, CoturnBuiltIn, 3, "already on line 1") {
				t.Errorf("addresses %v, notes %v", c.Listen.Addresses, im.Notes)
			}
			// Without relay-ip coturn relays from the address reached.
			if c.Relay.IPv4Bind != "192.0.2.1" || c.Relay.IPv6Bind != "2001:db8::1" || !hasNote(im.Notes, CoturnChanged, 1, "relay.ipv4_bind") {
				t.Errorf("relay %+v, notes %v", c.Relay, im.Notes)
			}
		}},
		{"several listening ips", "listening-ip=192.0.2.1\nlistening-ip=192.0.2.2\nlistening-ip=::\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.Relay.IPv4Bind != "0.0.0.0" || c.Relay.IPv6Bind != "::" || !hasNote(im.Notes, CoturnChanged, 1, "several ipv4 listening-ip") {
				t.Errorf("relay %+v, notes %v", c.Relay, im.Notes)
			}
		}},
		{"relay ip v4 only turns v6 relays off", "relay-ip=192.0.2.1\nrelay-ip=192.0.2.2\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.Relay.IPv4Bind != "192.0.2.1" || c.Relay.IPv6Bind != "" || !hasNote(im.Notes, CoturnUnsupported, 2, "one address per family") {
				t.Errorf("binds %q %q, notes %v", c.Relay.IPv4Bind, c.Relay.IPv6Bind, im.Notes)
			}
		}},
		{"external ip public/private", "external-ip=198.51.100.7/10.1.2.3\n", func(t *testing.T, c *Config, _ CoturnImport) {
			if c.Relay.IPv4Public != "198.51.100.7" || c.Relay.IPv4Bind != "10.1.2.3" || c.Relay.IPv6Bind != "::" {
				t.Errorf("relay %+v", c.Relay)
			}
		}},
		{"external ip private is a LAN", "external-ip=192.168.1.10\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.Relay.IPv4Public != "192.168.1.10" || !c.Relay.PrivateAllowed() || !hasNote(im.Notes, CoturnChanged, 1, "private_ok") {
				t.Errorf("relay %+v, notes %v", c.Relay, im.Notes)
			}
		}},
		{"external ip name", "external-ip=turn.example.com\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.Relay.IPv4Public != "" || !hasNote(im.Notes, CoturnUnsupported, 1, "not an IP address") {
				t.Errorf("relay %+v, notes %v", c.Relay, im.Notes)
			}
		}},
		{"ports and realm", "min-port=40000\nmax-port=40999\nrealm=\"turn.example.org\"\n", func(t *testing.T, c *Config, _ CoturnImport) {
			if c.Relay.MinPort != 40000 || c.Relay.MaxPort != 40999 || c.Realm != "turn.example.org" {
				t.Errorf("%d %d %q", c.Relay.MinPort, c.Relay.MaxPort, c.Realm)
			}
		}},
		{"realm twice", "realm=a.example\nrealm=b.example\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.Realm != "b.example" || !hasNote(im.Notes, CoturnChanged, 2, "replaces line 1") {
				t.Errorf("%q %v", c.Realm, im.Notes)
			}
		}},
		{"users", "lt-cred-mech\nuser=alice:correct horse\nuser=bob:0x7c4a8d09ca3762af61e59520943dc264\nuser=carol:0x1234\nrealm=r\n", func(t *testing.T, c *Config, im CoturnImport) {
			if len(c.Auth.Users) != 2 || c.Auth.Users[0].Name != "alice" || c.Auth.Users[0].Password != "correct horse" ||
				c.Auth.Users[1].Name != "bob" || len(c.Auth.Users[1].KeyBytes) != 16 {
				t.Errorf("users %+v", c.Auth.Users)
			}
			if !hasNote(im.Notes, CoturnUnsupported, 4, "not 32 hex digits") {
				t.Errorf("notes %v", im.Notes)
			}
		}},
		{"template characters stay text", "lt-cred-mech\nuser=a${b}%{c}\"d\\e:p${w}\nrealm=x${y}\n", func(t *testing.T, c *Config, _ CoturnImport) {
			if c.Realm != "x${y}" || len(c.Auth.Users) != 1 || c.Auth.Users[0].Name != `a${b}%{c}"d\e` || c.Auth.Users[0].Password != "p${w}" {
				t.Errorf("realm %q, users %+v", c.Realm, c.Auth.Users)
			}
		}},
		{"values HCL would change", "realm=e\u0301\nstatic-auth-secret=0123456789abcdee\u0301\nstatic-auth-secret=\xff0123456789abcdef\nuser=n:pa\u0301ss\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.Realm != "icegate" || len(c.Auth.Secrets) != 0 || !hasNote(im.Notes, CoturnUnsupported, 1, "NFC") ||
				!hasNote(im.Notes, CoturnUnsupported, 2, "NFC") || !hasNote(im.Notes, CoturnUnsupported, 3, "UTF-8") || !hasNote(im.Notes, CoturnUnsupported, 4, "ignores user=") {
				t.Errorf("realm %q, auth %+v, notes %v", c.Realm, c.Auth, im.Notes)
			}
		}},
		{"users ignored with a secret", "use-auth-secret\nstatic-auth-secret=0123456789abcdef0123\nuser=alice:pw\n", func(t *testing.T, c *Config, im CoturnImport) {
			if len(c.Auth.Users) != 0 || len(c.Auth.Secrets) != 1 || !hasNote(im.Notes, CoturnUnsupported, 3, "ignores user=") {
				t.Errorf("auth %+v, notes %v", c.Auth, im.Notes)
			}
		}},
		{"secrets", "static-auth-secret=0123456789abcdef0123\nstatic-auth-secret=${x}%{y}\"\\q-long-enough\nrest-api-separator=.\n", func(t *testing.T, c *Config, _ CoturnImport) {
			if len(c.Auth.Secrets) != 2 || c.Auth.Secrets[1] != `${x}%{y}"\q-long-enough` || c.Auth.Separator != "." {
				t.Errorf("auth %+v", c.Auth)
			}
		}},
		{"cert", "cert=testdata/tls/cert.pem\npkey=testdata/tls/key.pem\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.TLS.CertFile != "testdata/tls/cert.pem" || c.TLS.KeyFile != "testdata/tls/key.pem" || !hasNote(im.Notes, CoturnChanged, 2, "relative path") {
				t.Errorf("tls %+v, notes %v", c.TLS, im.Notes)
			}
		}},
		{"peer ranges", "denied-peer-ip=10.0.0.0-10.255.255.255\ndenied-peer-ip=192.0.2.1\nallowed-peer-ip=10.0.0.1-10.0.0.6\nallowed-peer-ip=fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff\ndenied-peer-ip=10.0.0.2-10.0.0.3\n", func(t *testing.T, c *Config, im CoturnImport) {
			// coturn lets allowed-peer-ip win, so the denied range is
			// written around the allowed one.
			denied := func(s string) bool {
				for _, p := range c.Policy.DenyPrefixes {
					if p.Contains(netip.MustParseAddr(s)) {
						return true
					}
				}
				return false
			}
			for _, a := range []string{"10.0.0.0", "10.0.0.7", "10.200.1.1", "10.255.255.255", "192.0.2.1"} {
				if !denied(a) {
					t.Errorf("%s is not denied: %v", a, c.Policy.Deny)
				}
			}
			for _, a := range []string{"10.0.0.1", "10.0.0.6", "192.0.2.2", "11.0.0.0"} {
				if denied(a) {
					t.Errorf("%s is denied: %v", a, c.Policy.Deny)
				}
			}
			if !hasNote(im.Notes, CoturnChanged, 1, "allowed-peer-ip (line 3)") {
				t.Errorf("notes %v", im.Notes)
			}
			if got := strings.Join(c.Policy.Allow, ","); got != "10.0.0.1,10.0.0.2/31,10.0.0.4/31,10.0.0.6,fe80::/10" {
				t.Errorf("allow %s", got)
			}
			if !hasNote(im.Notes, CoturnChanged, 5, "not written") {
				t.Errorf("notes %v", im.Notes)
			}
		}},
		{"loopback peers", "allow-loopback-peers\nno-multicast-peers\nno-loopback-peers\n", func(t *testing.T, c *Config, im CoturnImport) {
			if strings.Join(c.Policy.Presets, ",") != "loopback" || !hasNote(im.Notes, CoturnBuiltIn, 2, "multicast") {
				t.Errorf("presets %v, notes %v", c.Policy.Presets, im.Notes)
			}
		}},
		{"transports", "no-udp\nno-tcp=1\nno-tls=true\nno-dtls=off\n", func(t *testing.T, c *Config, _ CoturnImport) {
			if c.Listen.UDPOn() || c.Listen.TCPOn() || c.Listen.TLSOn() || !c.Listen.DTLSOn() {
				t.Errorf("listen %+v", c.Listen)
			}
		}},
		{"relays", "no-tcp-relay\nno-udp-relay\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.Relay.TCPOn() || !hasNote(im.Notes, CoturnUnsupported, 2, "UDP relays") {
				t.Errorf("relay %+v, notes %v", c.Relay, im.Notes)
			}
		}},
		{"quotas", "user-quota=3\ntotal-quota=0\nmax-bps=125000\nbps-capacity=1000000\n", func(t *testing.T, c *Config, im CoturnImport) {
			l := c.Limits
			if l.AllocationsPerUser != 3 || l.AllocationsTotal != 0 || l.BandwidthPerAllocation != 125000 || !hasNote(im.Notes, CoturnUnsupported, 4, "not implemented") {
				t.Errorf("limits %+v, notes %v", l, im.Notes)
			}
		}},
		{"short lifetime", "max-allocate-lifetime=300\n", func(t *testing.T, c *Config, _ CoturnImport) {
			if c.Limits.MaxLifetime != "300s" || c.Limits.DefaultLifetime != "300s" {
				t.Errorf("limits %+v", c.Limits)
			}
		}},
		{"huge lifetime", "max-allocate-lifetime=999999\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.Limits.MaxLifetime != "86400s" || !hasNote(im.Notes, CoturnChanged, 1, "86400") {
				t.Errorf("limits %+v", c.Limits)
			}
		}},
		{"stale nonce", "stale-nonce=600\n", func(t *testing.T, _ *Config, im CoturnImport) {
			if !hasNote(im.Notes, CoturnUnsupported, 1, "438") {
				t.Errorf("notes %v", im.Notes)
			}
		}},
		{"prometheus", "prometheus\nprometheus-port=9100\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.Metrics.Listen != "127.0.0.1:9100" || !hasNote(im.Notes, CoturnChanged, 1, "loopback only") {
				t.Errorf("metrics %q, notes %v", c.Metrics.Listen, im.Notes)
			}
		}},
		{"prometheus address", "prometheus\nprometheus-address=::\n", func(t *testing.T, c *Config, _ CoturnImport) {
			if c.Metrics.Listen != "[::]:9641" {
				t.Errorf("metrics %q", c.Metrics.Listen)
			}
		}},
		{"logs", "Verbose\nlog-file=/var/log/turn.log\nsyslog\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.Log.Level != "debug" || !hasNote(im.Notes, CoturnUnsupported, 2, "standard error") {
				t.Errorf("level %q, notes %v", c.Log.Level, im.Notes)
			}
		}},
		{"rate limit", "unauthorized-ratelimit-rps=500\n", func(t *testing.T, c *Config, _ CoturnImport) {
			if c.Limits.UnauthRate != 500 || c.Limits.UnauthBurst != 1000 {
				t.Errorf("limits %+v", c.Limits)
			}
		}},
		{"socket buffer and gso", "sock-buf-size=1048576\nudp-gso=0\n", func(t *testing.T, c *Config, _ CoturnImport) {
			if c.Listen.SocketBuffer != 1<<20 || c.Listen.SegmentationOn() {
				t.Errorf("listen %+v", c.Listen)
			}
		}},
		{"stun only", "stun-only\nstatic-auth-secret=0123456789abcdef0123\n", func(t *testing.T, c *Config, im CoturnImport) {
			if len(c.Auth.Secrets) != 0 || *c.Auth.EphemeralSecret || !hasNote(im.Notes, CoturnUnsupported, 2, "stun-only") {
				t.Errorf("auth %+v, notes %v", c.Auth, im.Notes)
			}
		}},
		{"unsupported and unknown", "mobility\nredis-userdb=\"ip=127.0.0.1 password=hunter2\"\nfrobnicate=1\n--realm=x\n", func(t *testing.T, _ *Config, im CoturnImport) {
			for line, want := range map[int]string{1: "RFC 8016", 2: "user database", 3: "not a coturn option", 4: "without dashes"} {
				if !hasNote(im.Notes, CoturnUnsupported, line, want) {
					t.Errorf("no note %q on line %d: %v", want, line, im.Notes)
				}
			}
		}},
		{"bad values", "listening-port=http\nno-udp=maybe\nlistening-port\n", func(t *testing.T, c *Config, im CoturnImport) {
			if c.Listen.Port != 3478 || !c.Listen.UDPOn() || len(im.Notes) < 3 {
				t.Errorf("listen %+v, notes %v", c.Listen, im.Notes)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			im, c := importAndParse(t, tt.conf)
			tt.check(t, c, im)
		})
	}
}

// TestImportCoturnNoSecretInNotes checks that no note repeats a secret.
func TestImportCoturnNoSecretInNotes(t *testing.T) {
	conf := "use-auth-secret\nstatic-auth-secret=s3cret-value-1234\nstatic-auth-secret=s3cret-value-1234\n" +
		"user=a:s3cret-value-1234\ncli-password=s3cret-value-1234\nredis-userdb=\"password=s3cret-value-1234\"\n" +
		"static-auth-secre=s3cret-value-1234\npkey-pwd=s3cret-value-1234\nuse-auth-secret=s3cret-value-1234\n" +
		"user-quota=s3cret-value-1234\nrealm=\"s3cret\xff\"\nuser=s3cret-name:x\n"
	im := ImportCoturn([]byte(conf))
	for _, n := range im.Notes {
		if strings.Contains(n.String(), "s3cret") {
			t.Errorf("note holds the secret: %s", n)
		}
	}
	// The secret is carried in the HCL; the header's notes are not.
	header, _, _ := strings.Cut(string(im.HCL), "\nauth {")
	if strings.Contains(header, "s3cret") || !strings.Contains(string(im.HCL), "s3cret") {
		t.Errorf("HCL:\n%s", im.HCL)
	}
}

// TestImportCoturnFiles imports Debian's turnserver.conf and a production
// file, checks that each result validates, and compares it with its golden
// file (go test -run TestImportCoturnFiles ./config/ -update rewrites them).
func TestImportCoturnFiles(t *testing.T) {
	orig := readFile
	t.Cleanup(func() { readFile = orig })
	readFile = func(path string) ([]byte, error) {
		// production.conf names Let's Encrypt's files, which exist only
		// on that server; those read as the test pair.
		b, err := orig(path)
		if errors.Is(err, fs.ErrNotExist) && strings.HasPrefix(path, "/etc/letsencrypt/") {
			if strings.Contains(filepath.Base(path), "key") {
				return orig("testdata/tls/key.pem")
			}
			return orig("testdata/tls/cert.pem")
		}
		return b, err
	}
	for _, tt := range []struct {
		file  string
		check func(t *testing.T, c *Config, im CoturnImport)
	}{
		{"debian-4.6.1.conf", func(t *testing.T, c *Config, im CoturnImport) {
			// All comments but four flags: the defaults and notes.
			d, err := Default()
			if err != nil {
				t.Fatal(err)
			}
			if c.Listen.Port != d.Listen.Port || c.Realm != d.Realm || len(c.Auth.Secrets) != 0 || c.Relay.IPv4Bind != d.Relay.IPv4Bind {
				t.Errorf("not the defaults:\n%s", im.HCL)
			}
			// syslog, no-rfc5780, no-stun-backward-compatibility,
			// response-origin-only-with-rfc5780; no credentials, private
			// peers, TCP relays, no certificate.
			if len(im.Notes) != 8 {
				t.Errorf("%d notes: %v", len(im.Notes), im.Notes)
			}
		}},
		{"production.conf", func(t *testing.T, c *Config, im CoturnImport) {
			if c.Realm != "turn.example.com" || c.Listen.TLSPort != 443 || len(c.Auth.Secrets) != 2 || len(c.Auth.Users) != 0 ||
				c.Relay.IPv4Public != "203.0.113.10" || c.Relay.IPv4Bind != "10.0.0.5" || c.Relay.IPv6Public != "2001:db8:10::5" ||
				c.Limits.AllocationsTotal != 2000 || c.Limits.MaxLifetime != "7200s" || len(c.Policy.DenyPrefixes) != 15+22 ||
				c.TLS.CertFile != "/etc/letsencrypt/live/turn.example.com/fullchain.pem" || c.Metrics.Listen != "127.0.0.1:9641" {
				t.Errorf("not translated:\n%s", im.HCL)
			}
			for _, want := range []string{"mobility", "cli-password", "redis-statsdb", "stale-nonce", "cipher-list", "log-file", "user"} {
				found := false
				for _, n := range im.Notes {
					found = found || (n.Option == want && n.Kind == CoturnUnsupported)
				}
				if !found {
					t.Errorf("%s is not listed as unsupported", want)
				}
			}
		}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata/coturn", tt.file)
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			im, c := importAndParse(t, string(src))
			tt.check(t, c, im)
			golden := strings.TrimSuffix(path, ".conf") + ".hcl"
			if *updateGolden {
				if err := os.WriteFile(golden, im.HCL, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(want) != string(im.HCL) {
				t.Errorf("%s differs from the import (-update rewrites it):\n%s", golden, im.HCL)
			}
		})
	}
}

// TestImportCoturnSystemFile imports this machine's /etc/turnserver.conf
// when there is one (Debian's coturn package installs it).
func TestImportCoturnSystemFile(t *testing.T) {
	src, err := os.ReadFile("/etc/turnserver.conf")
	if err != nil {
		t.Skipf("no /etc/turnserver.conf: %v", err)
	}
	importAndParse(t, string(src))
}

// TestCoturnOptionsCovered checks that every option coturn 4.6.1 and
// 4.17.1 read from their file (long_options in mainrelay.c) has an entry:
// translated, unsupported with why, or already icegate's behaviour.
func TestCoturnOptionsCovered(t *testing.T) {
	all := strings.Fields(`CA-file Verbose acme-redirect allocation-default-address-family allow-loopback-peers
	allowed-peer-ip alt-listening-port alt-tls-listening-port alternate-server aux-server bps-capacity cert
	channel-lifetime check-origin-consistency cipher-list cli cli-ip cli-max-output-sessions cli-password cli-port
	cpus daemon db denied-peer-ip dh-file dh1066 dh566 drain-min-allocations drop-invalid-packets
	drop-invalid-packets-log dtls ec-curve-name external-ip fingerprint include-reason-string keep-address-family
	listening-device listening-ip listening-port log-binding log-file log-min-level lt-cred-mech
	max-allocate-lifetime max-allocate-timeout max-bps max-port min-port mobility mongo-userdb multiplex-peer
	multiplex-peer-max-peers multiplex-peer-port mysql-userdb ne new-log-timestamp new-log-timestamp-format no-auth
	no-auth-pings no-cli no-dtls no-dynamic-ip-list no-dynamic-realms no-multicast-peers no-rfc5780
	no-software-attribute no-sslv2 no-sslv3 no-stdout-log no-stun no-stun-backward-compatibility no-tcp
	no-tcp-relay no-tls no-tlsv1 no-tlsv1_1 no-tlsv1_2 no-udp no-udp-relay oauth permission-lifetime pidfile pkey
	pkey-pwd proc-group proc-user prod prometheus prometheus-address prometheus-cert prometheus-key
	prometheus-path prometheus-port prometheus-tls prometheus-username-labels psql-userdb raw-public-keys realm
	redis-statsdb redis-userdb relay-device relay-ip relay-threads respond-http-unsupported
	response-origin-only-with-rfc5780 rest-api-separator rfc3489-compatibility rfc5766-channel-numbers rfc5780
	secret-key-file secret-ts-exp-time secure-stun server-name server-relay simple-log sock-buf-size
	software-attribute sql-userdb stale-nonce stateless-nonce stateless-nonce-secret static-auth-secret
	stun-backward-compatibility stun-only syslog syslog-facility tcp-alternate-server tcp-proxy-port
	tls-alternate-server tls-listening-port tlsv1 tlsv1_1 total-quota udp-alternate-server udp-gso udp-recvmmsg
	udp-recvmmsg-log udp-self-balance udp-sendmmsg-log unauthorized-ratelimit unauthorized-ratelimit-rps
	use-auth-secret user user-quota userdb verbose version web-admin web-admin-ip web-admin-listen-on-workers
	web-admin-port`)
	for _, name := range all {
		_, h := coturnHandlers[name]
		_, u := coturnUnsupported[name]
		_, b := coturnBuiltIn[name]
		if n := btoi(h) + btoi(u) + btoi(b); n != 1 {
			t.Errorf("%s is in %d tables, want 1", name, n)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FuzzImportCoturn checks that no turnserver.conf makes the importer panic
// and that what it writes always parses as HCL: whatever a value holds
// (quotes, "${", newlines through NUL-free bytes), it stays a string.
func FuzzImportCoturn(f *testing.F) {
	for _, p := range []string{"testdata/coturn/debian-4.6.1.conf", "testdata/coturn/production.conf"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("realm=\"a${b}\\\"\nuser=x:0x00\ndenied-peer-ip=::-ffff::\nexternal-ip=1.2.3.4/::1\n"))
	f.Add([]byte("realm=e\u0301%{x}\nuse-auth-secret\nstatic-auth-secret=\"$${}\t\"\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		im := ImportCoturn(src)
		c, diags := Parse(im.HCL, "imported.hcl")
		for _, d := range diags {
			// Values may be out of icegate's bounds (a port of 80 for
			// relays), which validation reports; but the text must parse.
			if d.Severity == 1 && (strings.Contains(d.Summary, "Invalid") || strings.Contains(d.Summary, "Unsupported") ||
				strings.Contains(d.Summary, "Missing") || strings.Contains(d.Summary, "Unterminated")) {
				t.Fatalf("the import is not valid HCL: %s\n%s", FormatDiagnostics(diags), im.HCL)
			}
		}
		if (c == nil) != diags.HasErrors() {
			t.Fatalf("config %v with errors %v", c != nil, diags.HasErrors())
		}
		// A value reaches the config exactly as coturn reads it: the
		// last realm is the realm.
		if c != nil {
			var last string
			for _, o := range parseCoturn(src) {
				if o.Name == "realm" && o.Value != "" && unwritable(o.Value) == "" {
					last = o.Value
				}
			}
			if last != "" && c.Realm != last {
				t.Fatalf("realm %q became %q\n%s", last, c.Realm, im.HCL)
			}
		}
		for _, n := range im.Notes {
			if strings.ContainsAny(n.String(), "\n\r") {
				t.Fatalf("note on more than one line: %q", n)
			}
		}
	})
}

// TestImportCoturnDocExample keeps the example in docs/coturn.md true:
// its turnserver.conf imports to exactly the HCL shown, with the notes
// shown.
func TestImportCoturnDocExample(t *testing.T) {
	b, err := os.ReadFile("../docs/coturn.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	_, rest, ok1 := strings.Cut(doc, "$ cat /etc/turnserver.conf\n")
	conf, rest, ok2 := strings.Cut(rest, "$ icegate config import /etc/turnserver.conf > icegate.hcl\n")
	stderr, rest, ok3 := strings.Cut(rest, "$ cat icegate.hcl\n")
	want, _, ok4 := strings.Cut(rest, "```")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		t.Fatal("docs/coturn.md has no import example")
	}
	im := ImportCoturn([]byte(conf))
	if string(im.HCL) != want {
		t.Errorf("docs/coturn.md shows:\n%s\nthe import gives:\n%s", want, im.HCL)
	}
	for _, n := range im.Notes {
		if !strings.Contains(stderr, n.Text) {
			t.Errorf("docs/coturn.md does not show the note %q", n)
		}
	}
	if !strings.Contains(stderr, fmt.Sprintf("%d note(s)", len(im.Notes))) {
		t.Errorf("docs/coturn.md shows the wrong number of notes (%d):\n%s", len(im.Notes), stderr)
	}
}
