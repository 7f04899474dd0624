package config

import (
	"bytes"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"

	"icegate/auth"
)

// TestTestdata loads every file under testdata/valid, which must give no
// diagnostic at all, and every file under testdata/invalid, whose sibling
// .want file lists substrings of the formatted diagnostics, one a line: each
// must appear in some diagnostic and each diagnostic must contain one, so a
// new or lost message fails the test.
func TestTestdata(t *testing.T) {
	valid, err := filepath.Glob("testdata/valid/*.hcl")
	if err != nil || len(valid) == 0 {
		t.Fatalf("no valid cases: %v", err)
	}
	for _, path := range valid {
		t.Run("valid/"+filepath.Base(path), func(t *testing.T) {
			c, diags := Load(path)
			if len(diags) > 0 || c == nil {
				t.Fatalf("Load(%s) = %v, diagnostics:\n%s", path, c != nil, FormatDiagnostics(diags))
			}
		})
	}

	invalid, err := filepath.Glob("testdata/invalid/*.hcl")
	if err != nil || len(invalid) == 0 {
		t.Fatalf("no invalid cases: %v", err)
	}
	for _, path := range invalid {
		t.Run("invalid/"+filepath.Base(path), func(t *testing.T) {
			raw, err := os.ReadFile(path + ".want")
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for line := range strings.Lines(string(raw)) {
				if line = strings.TrimSpace(line); line != "" {
					wants = append(wants, line)
				}
			}

			c, diags := Load(path)
			if c != nil || !diags.HasErrors() {
				t.Fatalf("Load(%s) gave a config and no error; diagnostics:\n%s", path, FormatDiagnostics(diags))
			}
			got := strings.Split(strings.TrimSuffix(FormatDiagnostics(diags), "\n"), "\n")
			for _, w := range wants {
				if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, w) }) {
					t.Errorf("missing diagnostic %q", w)
				}
			}
			for _, g := range got {
				if !slices.ContainsFunc(wants, func(w string) bool { return strings.Contains(g, w) }) {
					t.Errorf("unexpected diagnostic %q", g)
				}
			}
			if t.Failed() {
				t.Logf("all diagnostics:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

func TestDefault(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != DefaultSource {
		t.Errorf("Source = %q, want %q", c.Source, DefaultSource)
	}
	want := &Config{
		Realm:         "icegate",
		ShutdownGrace: "10s",
		Log:           &Log{Level: "info", Format: "text"},
		Listen: &Listen{
			Addresses: []string{"0.0.0.0", "::"},
			Port:      3478, TLSPort: 5349, SocketBuffer: 4 << 20,
			UDPSegmentation: ptr(true), FreeBind: ptr(true), UDP: ptr(true), TCP: ptr(true), TLS: ptr(true), DTLS: ptr(true),
			ProxyFrom: []string{},
			Addrs:     []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()},
		},
		TLS: &TLS{ReloadInterval: "5s", ReloadIntervalDuration: 5 * time.Second},
		Relay: &Relay{
			MinPort: 49152, MaxPort: 65535,
			IPv4Bind: "0.0.0.0", IPv6Bind: "::",
			DiscoverWith: []string{}, DiscoverInterval: "5m", DiscoverIntervalDuration: 5 * time.Minute,
			PrivateOK: ptr(false), TCP: ptr(false), Mode: "dedicated",
			KernelOffload: "auto", KernelOffloadInterfaces: []string{},
			IPv4BindAddr: netip.IPv4Unspecified(), IPv6BindAddr: netip.IPv6Unspecified(),
		},
		Auth:   &Auth{Secrets: []string{}, Separator: ":", EphemeralSecret: ptr(true)},
		Policy: &Policy{Presets: []string{}, Allow: []string{}, Deny: []string{}},
		Limits: &Limits{
			AllocationsPerUser: 10, AllocationsTotal: 10000, PermissionsPerAllocation: 64,
			DefaultLifetime: "10m", MaxLifetime: "1h",
			UnauthRate: 100, UnauthBurst: 200, ConnectionsPerSource: 256,
			DefaultLifetimeDuration: 10 * time.Minute, MaxLifetimeDuration: time.Hour,
		},
		Metrics: &Metrics{Listen: "127.0.0.1:9641"},
		Usage:   &Usage{Retention: "24h", RetentionDuration: 24 * time.Hour},
		HTTP:    &HTTP{Listen: "127.0.0.1:8080", TestPage: ptr(true), Hosts: []string{}, ProxyFrom: []string{}},
		Signaling: &Signaling{
			AllowedOrigins: []string{}, TokenSecrets: []string{},
			CredentialTTL: "1h", MaxConnections: 10000, DescriptorReserve: 512, MaxOpening: 0, MaxMessageBytes: 65536,
			MessagesPerSecond: 50, MessagesBurst: 200, PeersPerRoom: 16, SocketIORoomSize: 2, RoomsPerPeer: 8,
			SendQueue: 256, ResumeGrace: "30s", PingInterval: "25s", TURNEvents: ptr(true), MaxTokenLifetime: "0s",
			CredentialTTLDuration: time.Hour, ResumeGraceDuration: 30 * time.Second, PingIntervalDuration: 25 * time.Second,
		},
		API:                   &API{Keys: []string{}, MaxCredentialTTL: "24h", MaxCredentialTTLDuration: 24 * time.Hour},
		STUN:                  &STUN{AlternatePort: 3479, RFC3489: ptr(false)},
		ShutdownGraceDuration: 10 * time.Second,
		Source:                DefaultSource,
	}
	got := withoutRanges(c)
	for _, pair := range []struct {
		name      string
		got, want any
	}{
		{"top", *got, *want},
		{"log", *got.Log, *want.Log},
		{"listen", *got.Listen, *want.Listen},
		{"tls", *got.TLS, *want.TLS},
		{"relay", *got.Relay, *want.Relay},
		{"auth", *got.Auth, *want.Auth},
		{"policy", *got.Policy, *want.Policy},
		{"limits", *got.Limits, *want.Limits},
		{"metrics", *got.Metrics, *want.Metrics},
		{"usage", *got.Usage, *want.Usage},
		{"http", *got.HTTP, *want.HTTP},
		{"signaling", *got.Signaling, *want.Signaling},
		{"api", *got.API, *want.API},
		{"stun", *got.STUN, *want.STUN},
	} {
		if pair.name == "top" {
			// The block pointers differ; the blocks are compared below.
			g, w := pair.got.(Config), pair.want.(Config)
			g.Log, g.Listen, g.TLS, g.Relay, g.Auth, g.Policy, g.Limits, g.Metrics = nil, nil, nil, nil, nil, nil, nil, nil
			w.Log, w.Listen, w.TLS, w.Relay, w.Auth, w.Policy, w.Limits, w.Metrics = nil, nil, nil, nil, nil, nil, nil, nil
			g.HTTP, g.Signaling, w.HTTP, w.Signaling = nil, nil, nil, nil
			g.STUN, w.STUN = nil, nil
			g.API, w.API = nil, nil
			g.Usage, w.Usage = nil, nil
			pair.got, pair.want = g, w
		}
		if !reflect.DeepEqual(pair.got, pair.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", pair.name, pair.got, pair.want)
		}
	}
}

// TestDefaultsComplete checks the schema against default.hcl: every
// attribute has a Range field, and default.hcl writes every attribute (it is
// the user's reference), so every Range of Default() points into it.
func TestDefaultsComplete(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		tags := tagsOf(v.Type())
		for _, name := range tags.attrs {
			i, ok := tags.attrRanges[name]
			if !ok {
				t.Errorf("%s%s has no attr_range field", path, name)
				continue
			}
			r := v.Field(i).Interface().(hcl.Range)
			if r.Filename != DefaultSource || r.Start.Line == 0 {
				t.Errorf("%s%s is missing from default.hcl (range %v)", path, name, r)
			}
		}
		for name, i := range tags.blocks {
			f := v.Field(i)
			if f.Kind() != reflect.Pointer {
				continue
			}
			if f.IsNil() {
				// Only the cluster block (its absence means one process
				// with no Redis) and tls.acme (certificates from files or
				// self-signed) are optional.
				if path+name != "cluster" && path+name != "tls.acme" {
					t.Errorf("block %s%s is missing from default.hcl", path, name)
				}
				continue
			}
			walk(f.Elem(), path+name+".")
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	if c.Cluster != nil {
		t.Errorf("default.hcl has a cluster block: %+v", c.Cluster)
	}
	if c.TLS.ACME != nil {
		t.Errorf("default.hcl has a tls.acme block: %+v", c.TLS.ACME)
	}
	// The optional blocks are not in the defaults; check their schema here.
	for name, typ := range map[string]reflect.Type{"cluster": reflect.TypeFor[Cluster](), "tls.acme": reflect.TypeFor[ACME]()} {
		cl := tagsOf(typ)
		for _, attr := range cl.attrs {
			if _, ok := cl.attrRanges[attr]; !ok {
				t.Errorf("%s.%s has no attr_range field", name, attr)
			}
		}
	}

	// gohcl decodes repeated blocks into the elements already in the slice,
	// so a default user would merge with the user's first one.
	if len(c.Auth.Users) > 0 {
		t.Errorf("default.hcl defines users: %+v", c.Auth.Users)
	}
	// User blocks are not in the defaults; check their schema separately.
	u := tagsOf(reflect.TypeFor[User]())
	for _, name := range u.attrs {
		if _, ok := u.attrRanges[name]; !ok {
			t.Errorf("auth.user.%s has no attr_range field", name)
		}
	}
	if !u.defRange || u.labels != 1 {
		t.Errorf("User needs one label and a def_range: %+v", u)
	}
}

// structTags is what the `hcl` tags of one struct type say.
type structTags struct {
	attrs      []string       // attribute names, in field order
	attrRanges map[string]int // attribute name → index of its attr_range field
	blocks     map[string]int // block type → field index
	labels     int
	defRange   bool
}

func tagsOf(t reflect.Type) structTags {
	st := structTags{attrRanges: map[string]int{}, blocks: map[string]int{}}
	for i := range t.NumField() {
		tag, ok := t.Field(i).Tag.Lookup("hcl")
		if !ok {
			continue
		}
		name, kind, _ := strings.Cut(tag, ",")
		switch kind {
		case "", "attr", "optional":
			st.attrs = append(st.attrs, name)
		case "attr_range":
			st.attrRanges[name] = i
		case "block":
			st.blocks[name] = i
		case "label":
			st.labels++
		case "def_range":
			st.defRange = true
		}
	}
	return st
}

// TestPresetNames keeps policy.presets in step with what the auth package
// implements.
func TestPresetNames(t *testing.T) {
	got := slices.Sorted(slices.Values(presetNames))
	if want := auth.Presets(); !slices.Equal(got, want) {
		t.Errorf("config accepts presets %v, auth implements %v", got, want)
	}
}

func TestDefaultFile(t *testing.T) {
	b := DefaultFile()
	if !bytes.Equal(b, defaultHCL) {
		t.Fatal("DefaultFile differs from the embedded defaults")
	}
	b[0] ^= 0xff
	if bytes.Equal(b, defaultHCL) {
		t.Fatal("DefaultFile returned the embedded slice itself")
	}
	// Written out as a user's file, the defaults load cleanly.
	c, diags := Parse(defaultHCL, "default.hcl")
	if len(diags) > 0 {
		t.Fatalf("defaults as a user file:\n%s", FormatDiagnostics(diags))
	}
	if c.Source != "default.hcl" || c.RealmRange.Filename != "default.hcl" {
		t.Errorf("Source %q, realm range %v", c.Source, c.RealmRange)
	}
}

// TestPartialKeepsDefaults checks that decoding the user's file over the
// defaults keeps what the user left out, block by block.
func TestPartialKeepsDefaults(t *testing.T) {
	src := `
listen {
  port = 1
}
relay {
  min_port = 50000
}
auth {
  user "alice" {
    password = "pw"
  }
}
`
	c, diags := Parse([]byte(src), "partial.hcl")
	if len(diags) > 0 {
		t.Fatalf("diagnostics:\n%s", FormatDiagnostics(diags))
	}
	if c.Listen.Port != 1 || c.Relay.MinPort != 50000 {
		t.Errorf("written values lost: port %d, min_port %d", c.Listen.Port, c.Relay.MinPort)
	}
	if !slices.Equal(c.Listen.Addresses, []string{"0.0.0.0", "::"}) || c.Listen.TLSPort != 5349 {
		t.Errorf("listen defaults lost: %+v", c.Listen)
	}
	if c.Relay.MaxPort != 65535 || c.Relay.IPv4Bind != "0.0.0.0" {
		t.Errorf("relay defaults lost: %+v", c.Relay)
	}
	if c.Realm != "icegate" || c.Log.Level != "info" || c.Limits.AllocationsTotal != 10000 || c.Metrics.Listen != "127.0.0.1:9641" {
		t.Errorf("untouched blocks lost defaults: realm %q, log %+v, limits %+v, metrics %+v", c.Realm, c.Log, c.Limits, c.Metrics)
	}
	if !switchOr(c.Listen.UDP, false) || !switchOr(c.Listen.DTLS, false) || switchOr(c.Relay.TCP, true) || !switchOr(c.Auth.EphemeralSecret, false) {
		t.Errorf("switches lost defaults: listen %+v relay.tcp %v", c.Listen, c.Relay.TCP)
	}
	if len(c.Auth.Users) != 1 || c.Auth.Users[0].Name != "alice" || c.Auth.Separator != ":" {
		t.Errorf("auth: %+v", c.Auth)
	}
	// Ranges say who wrote each value.
	if c.Listen.PortRange.Filename != "partial.hcl" || c.Listen.PortRange.Start.Line != 3 {
		t.Errorf("listen.port range %v, want partial.hcl line 3", c.Listen.PortRange)
	}
	if c.Listen.AddressesRange.Filename != DefaultSource {
		t.Errorf("listen.addresses range %v, want the defaults", c.Listen.AddressesRange)
	}
}

// TestSwitches checks the optional *bool attributes: the defaults set them,
// and null puts one back to nil, which Bool reads as its default.
func TestSwitches(t *testing.T) {
	c, diags := Parse([]byte("listen {\n  udp = null\n  tcp = false\n}\n"), "switches.hcl")
	if len(diags) > 0 {
		t.Fatalf("diagnostics:\n%s", FormatDiagnostics(diags))
	}
	if c.Listen.UDP != nil {
		t.Errorf("udp = null gave %v, want nil", *c.Listen.UDP)
	}
	if !c.Listen.UDPOn() {
		t.Error("udp = null reads as off, want the default (on)")
	}
	if c.Listen.TCP == nil || *c.Listen.TCP {
		t.Errorf("tcp = false gave %v", c.Listen.TCP)
	}
	if c.Listen.TLS == nil || !*c.Listen.TLS {
		t.Errorf("tls left out gave %v, want the default true", c.Listen.TLS)
	}
}

func TestFilledByValidate(t *testing.T) {
	c, diags := Load("testdata/valid/full.hcl")
	if len(diags) > 0 {
		t.Fatalf("diagnostics:\n%s", FormatDiagnostics(diags))
	}
	if c.ShutdownGraceDuration != 0 || c.TLS.ReloadIntervalDuration != time.Minute ||
		c.Limits.DefaultLifetimeDuration != 30*time.Second || c.Limits.MaxLifetimeDuration != 24*time.Hour {
		t.Errorf("durations: grace %v, reload %v, lifetimes %v %v", c.ShutdownGraceDuration,
			c.TLS.ReloadIntervalDuration, c.Limits.DefaultLifetimeDuration, c.Limits.MaxLifetimeDuration)
	}
	wantAddrs := []netip.Addr{
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"),
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("fe80::1%eth0"),
	}
	if !slices.Equal(c.Listen.Addrs, wantAddrs) {
		t.Errorf("listen.Addrs = %v", c.Listen.Addrs)
	}
	r := c.Relay
	if r.IPv4BindAddr != netip.MustParseAddr("10.0.0.5") || r.IPv4PublicAddr != netip.MustParseAddr("203.0.113.10") ||
		r.IPv6BindAddr != netip.MustParseAddr("2001:db8::5") || r.IPv6PublicAddr != netip.MustParseAddr("2001:db8:1::5") {
		t.Errorf("relay addrs: %v %v %v %v", r.IPv4BindAddr, r.IPv4PublicAddr, r.IPv6BindAddr, r.IPv6PublicAddr)
	}
	wantAllow := []netip.Prefix{
		netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("2001:db8::1/128"),
	}
	if !slices.Equal(c.Policy.AllowPrefixes, wantAllow) {
		t.Errorf("AllowPrefixes = %v", c.Policy.AllowPrefixes)
	}
	wantDeny := []netip.Prefix{
		netip.MustParsePrefix("10.1.2.0/24"), netip.MustParsePrefix("203.0.113.99/32"),
		netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.0.2.9/32"),
	}
	if !slices.Equal(c.Policy.DenyPrefixes, wantDeny) {
		t.Errorf("DenyPrefixes = %v", c.Policy.DenyPrefixes)
	}
	keys := map[string]string{}
	for _, u := range c.Auth.Users {
		keys[u.Name] = string(u.KeyBytes)
	}
	if keys["alice"] != "" ||
		keys["bob"] != "\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef" ||
		keys["carol"] != "\xfe\xdc\xba\x98\x76\x54\x32\x10\xfe\xdc\xba\x98\x76\x54\x32\x10" {
		t.Errorf("KeyBytes: %q", keys)
	}

	// Validate again: same result, nothing appended twice.
	if diags := c.Validate(); len(diags) > 0 {
		t.Fatalf("second Validate:\n%s", FormatDiagnostics(diags))
	}
	if !slices.Equal(c.Listen.Addrs, wantAddrs) || !slices.Equal(c.Policy.AllowPrefixes, wantAllow) {
		t.Errorf("second Validate changed filled fields: %v %v", c.Listen.Addrs, c.Policy.AllowPrefixes)
	}

	// A masked-off host part is a warning, and the prefix is masked.
	c.Policy.Allow = []string{"10.1.2.3/8"}
	diags = c.Validate()
	if diags.HasErrors() || len(diags) != 1 || diags[0].Severity != hcl.DiagWarning {
		t.Fatalf("diagnostics:\n%s", FormatDiagnostics(diags))
	}
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}; !slices.Equal(c.Policy.AllowPrefixes, want) {
		t.Errorf("AllowPrefixes = %v, want %v", c.Policy.AllowPrefixes, want)
	}
}

// TestPrefixesIPv4Mapped checks that an IPv4-mapped policy prefix is stored
// as the IPv4 prefix it maps, as auth.NewPolicy compares it, and that its
// host bits draw the warning naming what it means.
func TestPrefixesIPv4Mapped(t *testing.T) {
	c := &Config{Realm: "r", ShutdownGrace: "1s", Policy: &Policy{
		Allow: []string{"::ffff:10.1.2.3/104"},
		Deny:  []string{"::ffff:192.0.2.9"},
	}}
	diags := c.Validate()
	want := "warning: policy.allow[0]: ::ffff:10.1.2.3/104 has host bits set; it means 10.0.0.0/8\n"
	if got := FormatDiagnostics(diags); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}; !slices.Equal(c.Policy.AllowPrefixes, want) {
		t.Errorf("AllowPrefixes = %v, want %v", c.Policy.AllowPrefixes, want)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("192.0.2.9/32")}; !slices.Equal(c.Policy.DenyPrefixes, want) {
		t.Errorf("DenyPrefixes = %v, want %v", c.Policy.DenyPrefixes, want)
	}
}

// TestValidateBuiltInCode checks a Config built in code: nil blocks take their
// defaults, and with no ranges the diagnostics have no subject.
func TestValidateBuiltInCode(t *testing.T) {
	c := &Config{Realm: "r", ShutdownGrace: "1s", Relay: &Relay{MinPort: 2000, MaxPort: 1999, IPv4Bind: "0.0.0.0"}}
	diags := c.Validate()
	if c.Listen == nil || c.Listen.Port != 3478 || c.Metrics == nil || c.Auth.Separator != ":" {
		t.Fatalf("nil blocks not defaulted: %+v", c)
	}
	want := "error: relay.min_port: 2000 is above relay.max_port 1999\n"
	if got := FormatDiagnostics(diags); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestWarningsOnly checks that warnings alone still give a Config.
func TestWarningsOnly(t *testing.T) {
	c, diags := Parse([]byte("auth {\n  secrets = [\"short\"]\n}\n"), "w.hcl")
	if c == nil || diags.HasErrors() || len(diags) != 1 {
		t.Fatalf("config %v, diagnostics:\n%s", c != nil, FormatDiagnostics(diags))
	}
	want := "w.hcl:2,3-22: warning: auth.secrets[0]: only 5 characters; use at least 16 random ones\n"
	if got := FormatDiagnostics(diags); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestDiagnosticsSorted checks that diagnostics come in file order whatever
// order decoding and validation found them in.
func TestDiagnosticsSorted(t *testing.T) {
	src := "metrics {\n  listen = \"x\"\n}\nrelay {\n  bogus = 1\n}\nrealm = \"\"\n"
	_, diags := Parse([]byte(src), "s.hcl")
	var lines []int
	for _, d := range diags {
		lines = append(lines, d.Subject.Start.Line)
	}
	if !slices.Equal(lines, []int{2, 5, 7}) {
		t.Errorf("lines %v, want [2 5 7]:\n%s", lines, FormatDiagnostics(diags))
	}
}

func TestLoadMissingFile(t *testing.T) {
	c, diags := Load(filepath.Join(t.TempDir(), "nope.hcl"))
	if c != nil || !diags.HasErrors() {
		t.Fatalf("Load of a missing file gave %v, %v", c, diags)
	}
	if got := FormatDiagnostics(diags); !strings.HasPrefix(got, "error: cannot read config file: open ") {
		t.Errorf("got %q", got)
	}
}

func TestFormatDiagnostics(t *testing.T) {
	rng := hcl.Range{
		Filename: "icegate.hcl",
		Start:    hcl.Pos{Line: 14, Column: 3, Byte: 100},
		End:      hcl.Pos{Line: 14, Column: 20, Byte: 117},
	}
	diags := hcl.Diagnostics{
		{Severity: hcl.DiagError, Summary: "relay.min_port: 60000 is above relay.max_port 50000", Subject: &rng},
		{Severity: hcl.DiagWarning, Summary: "Two\nlines", Detail: "A detail\r\nover lines.\n"},
	}
	want := "icegate.hcl:14,3-20: error: relay.min_port: 60000 is above relay.max_port 50000\n" +
		"warning: Two lines: A detail over lines.\n"
	if got := FormatDiagnostics(diags); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	if got := FormatDiagnostics(nil); got != "" {
		t.Errorf("FormatDiagnostics(nil) = %q", got)
	}
}

// TestExamples loads every file in docs/examples. They name certificate
// files that exist only on a server; those read as the test pair.
func TestExamples(t *testing.T) {
	examples, err := filepath.Glob("../docs/examples/*.hcl")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	orig := readFile
	t.Cleanup(func() { readFile = orig })
	readFile = func(path string) ([]byte, error) {
		b, err := orig(path)
		if errors.Is(err, fs.ErrNotExist) && filepath.IsAbs(path) {
			if strings.Contains(filepath.Base(path), "key") {
				return orig("testdata/tls/key.pem")
			}
			return orig("testdata/tls/cert.pem")
		}
		return b, err
	}
	for _, path := range examples {
		t.Run(filepath.Base(path), func(t *testing.T) {
			if c, diags := Load(path); c == nil || len(diags) > 0 {
				t.Fatalf("diagnostics:\n%s", FormatDiagnostics(diags))
			}
		})
	}
}

// TestDecodeErrorsLeaveDefaults checks that a value that fails to decode
// leaves the field at its default (gocty may fill part of its target before
// failing), so validation adds no noise about it.
func TestDecodeErrorsLeaveDefaults(t *testing.T) {
	for _, src := range []string{
		"listen {\n  addresses = [\"127.0.0.1\", null]\n}\n",
		"listen {\n  addresses = [\"127.0.0.1\", [1]]\n}\n",
		"listen {\n  addresses = 7\n}\n",
	} {
		c, diags := decodeDefaults()
		if diags.HasErrors() {
			t.Fatal(FormatDiagnostics(diags))
		}
		f, diags := hclparse.NewParser().ParseHCL([]byte(src), "d.hcl")
		if diags.HasErrors() {
			t.Fatal(FormatDiagnostics(diags))
		}
		diags = decodeBody(f.Body, c)
		if len(diags) != 1 || !strings.Contains(FormatDiagnostics(diags), "d.hcl:2,15-") {
			t.Errorf("%q: want one error at the value, got:\n%s", src, FormatDiagnostics(diags))
		}
		if !slices.Equal(c.Listen.Addresses, []string{"0.0.0.0", "::"}) {
			t.Errorf("%q: addresses %q, want the defaults", src, c.Listen.Addresses)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// withoutRanges returns a deep copy of c with every hcl.Range zeroed.
func withoutRanges(c *Config) *Config {
	cp := reflect.New(reflect.TypeFor[Config]())
	copyZeroRanges(cp.Elem(), reflect.ValueOf(c).Elem())
	return cp.Interface().(*Config)
}

func copyZeroRanges(dst, src reflect.Value) {
	rangeType := reflect.TypeFor[hcl.Range]()
	for i := range src.NumField() {
		sf, df := src.Field(i), dst.Field(i)
		switch {
		case sf.Type() == rangeType:
			// Leave dst's zero value.
		case sf.Kind() == reflect.Pointer && sf.Type().Elem().Kind() == reflect.Struct && !sf.IsNil() &&
			sf.Type().Elem() != reflect.TypeFor[netip.Addr]():
			n := reflect.New(sf.Type().Elem())
			copyZeroRanges(n.Elem(), sf.Elem())
			df.Set(n)
		default:
			df.Set(sf)
		}
	}
}
