package config

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"

	"icegate/auth"
)

// Bounds enforced by Validate.
const (
	// maxRealmChars is RFC 8489 §14.9: the realm MUST be fewer than 128
	// characters.
	maxRealmChars = 127
	// maxUsernameBytes is RFC 8489 §14.3: the username MUST be fewer than
	// 509 bytes.
	maxUsernameBytes = 508
	// minSecretChars is the length below which a secret draws a warning.
	// coturn accepts any length, so this is not an error.
	minSecretChars = 16
	// Lifetimes outside these are almost certainly typos.
	minLifetime = 30 * time.Second
	maxLifetime = 24 * time.Hour
	// Relay ports below 1024 need privileges and collide with services.
	minRelayPort = 1024
	// maxPEMSize bounds what Validate reads of a certificate or key file.
	maxPEMSize = 1 << 20
)

// presetNames are the valid policy.presets in documentation order, for the
// error message; auth.Presets() gives them sorted. TestPresetNames keeps
// the two in step.
var presetNames = []string{"lan", "loopback", "cgnat", "documentation"}

// Validate checks c and fills the fields marked "Filled by Validate". It
// reports every problem, not just the first, as an error or warning
// diagnostic whose summary names the field ("relay.min_port: ...") and whose
// subject is where the value was written: in the user's file when the user
// wrote it, else in the embedded defaults. A problem between two fields is
// reported at the one the user wrote.
//
// A nil block is replaced by its defaults first, so a Config built in code
// needs only the blocks it changes. Validate reads the TLS certificate and
// key files when they are set; it opens no sockets. It may be called again
// after c changes.
func (c *Config) Validate() hcl.Diagnostics {
	c.fillNilBlocks()
	v := &validator{source: c.Source}
	c.validateTop(v)
	c.Log.validate(v)
	c.Listen.validate(v)
	c.TLS.validate(v)
	c.Relay.validate(v, c.Listen)
	c.Auth.validate(v)
	c.Policy.validate(v)
	c.Limits.validate(v)
	c.Metrics.validate(v)
	c.Usage.validate(v)
	c.HTTP.validate(v)
	c.validateHTTPACME(v)
	c.Signaling.validate(v, c.HTTP)
	c.API.validate(v, c.HTTP)
	c.STUN.validate(v, c.Listen, c.Relay)
	c.checkTCPPorts(v)
	if c.Cluster != nil {
		c.Cluster.validate(v)
		c.checkSteering(v)
	}
	return v.diags
}

// checkSteering warns about what keeps a cluster from steering TURN load
// across its nodes (docs/cluster.md, "TURN load steering"): credentials a
// node vends for another node's relay are minted with the first of
// auth.secrets, which that node must share (static users and the secret
// generated without any never cross nodes), and other nodes can send
// clients to this relay only by its signaling.turn_host.
func (c *Config) checkSteering(v *validator) {
	if len(c.Auth.Secrets) == 0 {
		v.warnf(v.at(c.Auth.SecretsRange, c.Cluster.DefRange), "auth.secrets",
			"empty in a cluster: TURN credentials are vended for the least loaded node, which accepts them only with the same shared secret; give every node the same auth.secrets")
	}
	if c.HTTP.Listen != "" && c.Signaling.TURNHost == "" {
		v.warnf(v.at(c.Signaling.TURNHostRange, c.Cluster.DefRange), "signaling.turn_host",
			"not set in a cluster: other nodes cannot name this node's relay, so they never send TURN clients (or a 300 Try Alternate) here; set it to this node's public name or address")
	}
}

// fillNilBlocks gives each nil block its default value; Cluster, whose
// absence means "no cluster", stays nil.
func (c *Config) fillNilBlocks() {
	if c.Log != nil && c.Listen != nil && c.TLS != nil && c.Relay != nil &&
		c.Auth != nil && c.Policy != nil && c.Limits != nil && c.Metrics != nil && c.Usage != nil &&
		c.HTTP != nil && c.Signaling != nil && c.API != nil && c.STUN != nil {
		return
	}
	d, diags := decodeDefaults()
	if diags.HasErrors() {
		// Broken defaults are caught by TestDefault; give empty blocks so
		// Validate reports the zero values instead of panicking.
		d = &Config{Log: &Log{}, Listen: &Listen{}, TLS: &TLS{}, Relay: &Relay{},
			Auth: &Auth{}, Policy: &Policy{}, Limits: &Limits{}, Metrics: &Metrics{}, Usage: &Usage{},
			HTTP: &HTTP{}, Signaling: &Signaling{}, API: &API{}, STUN: &STUN{}}
	}
	if c.Log == nil {
		c.Log = d.Log
	}
	if c.Listen == nil {
		c.Listen = d.Listen
	}
	if c.TLS == nil {
		c.TLS = d.TLS
	}
	if c.Relay == nil {
		c.Relay = d.Relay
	}
	if c.Auth == nil {
		c.Auth = d.Auth
	}
	if c.Policy == nil {
		c.Policy = d.Policy
	}
	if c.Limits == nil {
		c.Limits = d.Limits
	}
	if c.Metrics == nil {
		c.Metrics = d.Metrics
	}
	if c.Usage == nil {
		c.Usage = d.Usage
	}
	if c.HTTP == nil {
		c.HTTP = d.HTTP
	}
	if c.Signaling == nil {
		c.Signaling = d.Signaling
	}
	if c.API == nil {
		c.API = d.API
	}
	if c.STUN == nil {
		c.STUN = d.STUN
	}
}

// validator collects diagnostics.
type validator struct {
	source string // the user's file name, Config.Source
	diags  hcl.Diagnostics
}

func (v *validator) add(sev hcl.DiagnosticSeverity, rng hcl.Range, field, detail, format string, args ...any) {
	d := &hcl.Diagnostic{
		Severity: sev,
		Summary:  field + ": " + fmt.Sprintf(format, args...),
		Detail:   detail,
	}
	if rng != (hcl.Range{}) {
		d.Subject = &rng
	}
	v.diags = append(v.diags, d)
}

func (v *validator) errorf(rng hcl.Range, field, format string, args ...any) {
	v.add(hcl.DiagError, rng, field, "", format, args...)
}

func (v *validator) warnf(rng hcl.Range, field, format string, args ...any) {
	v.add(hcl.DiagWarning, rng, field, "", format, args...)
}

// wrote reports whether rng is in the user's file.
func (v *validator) wrote(rng hcl.Range) bool {
	return rng != (hcl.Range{}) && rng.Filename == v.source
}

// at picks where to report a problem involving several attributes: the first
// one the user wrote, else the first one with a range.
func (v *validator) at(ranges ...hcl.Range) hcl.Range {
	for _, r := range ranges {
		if v.wrote(r) {
			return r
		}
	}
	for _, r := range ranges {
		if r != (hcl.Range{}) {
			return r
		}
	}
	return hcl.Range{}
}

// conflict reports a problem between attributes a and b, at a unless only b
// was written by the user; each message names its own attribute.
func (v *validator) conflict(ra hcl.Range, fieldA, msgA string, rb hcl.Range, fieldB, msgB string) {
	if v.wrote(rb) && !v.wrote(ra) {
		v.errorf(rb, fieldB, "%s", msgB)
		return
	}
	v.errorf(v.at(ra, rb), fieldA, "%s", msgA)
}

// duration parses a duration attribute; ok is false after an error.
func (v *validator) duration(s string, rng hcl.Range, field string) (d time.Duration, ok bool) {
	d, err := time.ParseDuration(s)
	if err != nil {
		v.errorf(rng, field, "%q is not a duration (write for example \"30s\", \"10m\" or \"1h30m\")", s)
		return 0, false
	}
	return d, true
}

// durationBetween parses a duration attribute that must lie between lo and
// hi, which loText and hiText write as the message shows them; ok is false
// after an error, and d is then 0.
func (v *validator) durationBetween(s string, rng hcl.Range, field string, lo, hi time.Duration, loText, hiText string) (d time.Duration, ok bool) {
	d, ok = v.duration(s, rng, field)
	if !ok {
		return 0, false
	}
	if d < lo || d > hi {
		v.errorf(rng, field, "%q is outside %s to %s", s, loText, hiText)
		return 0, false
	}
	return d, true
}

// nonNegative checks an int attribute where 0 means no cap; it reports
// whether n is valid.
func (v *validator) nonNegative(n int, rng hcl.Range, field string) bool {
	if n < 0 {
		v.errorf(rng, field, "%d is negative (0 means no cap)", n)
		return false
	}
	return true
}

// burst checks that a rate limit's burst is at least its sustained rate. A
// rate of 0 or less (no limit, or an error reported already) is not
// compared.
func (v *validator) burst(rate int, rateRange hcl.Range, rateField string, burst int, burstRange hcl.Range, burstField string) {
	if rate > 0 && burst < rate {
		v.conflict(
			burstRange, burstField, fmt.Sprintf("%d is below %s %d", burst, rateField, rate),
			rateRange, rateField, fmt.Sprintf("%d is above %s %d", rate, burstField, burst))
	}
}

// secrets checks a list of shared secrets: none empty, none twice, and a
// warning for one shorter than minChars characters. It never prints a
// secret.
func (v *validator) secrets(list []string, rng hcl.Range, name string, minChars int) {
	for i, s := range list {
		field := fmt.Sprintf("%s[%d]", name, i)
		switch j := slices.Index(list[:i], s); {
		case s == "":
			v.errorf(rng, field, "empty")
		case j >= 0:
			v.errorf(rng, field, "same as %s[%d]", name, j)
		case utf8.RuneCountInString(s) < minChars:
			v.warnf(rng, field, "only %d characters; use at least %d random ones", utf8.RuneCountInString(s), minChars)
		}
	}
}

// port checks a listening port.
func (v *validator) port(n int, rng hcl.Range, field string) bool {
	if n < 1 || n > 65535 {
		v.errorf(rng, field, "%d is not a port (1-65535)", n)
		return false
	}
	return true
}

// text checks a string the server sends or logs: valid UTF-8 and no control
// characters.
func (v *validator) text(s string, rng hcl.Range, field string) {
	if !utf8.ValidString(s) {
		v.errorf(rng, field, "not valid UTF-8")
		return
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		v.errorf(rng, field, "contains the control character %U", r)
	}
}

func (c *Config) validateTop(v *validator) {
	switch {
	case c.Realm == "":
		v.errorf(c.RealmRange, "realm", "empty; the realm is part of every long-term credential")
	case utf8.RuneCountInString(c.Realm) > maxRealmChars:
		v.errorf(c.RealmRange, "realm", "%d characters, more than %d (RFC 8489 §14.9)", utf8.RuneCountInString(c.Realm), maxRealmChars)
	default:
		v.text(c.Realm, c.RealmRange, "realm")
	}

	c.ShutdownGraceDuration = 0
	if d, ok := v.duration(c.ShutdownGrace, c.ShutdownGraceRange, "shutdown_grace"); ok {
		if d < 0 {
			v.errorf(c.ShutdownGraceRange, "shutdown_grace", "%q is negative", c.ShutdownGrace)
		} else {
			c.ShutdownGraceDuration = d
		}
	}
}

func (l *Log) validate(v *validator) {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		v.errorf(l.LevelRange, "log.level", "%q is not one of debug, info, warn, error", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		v.errorf(l.FormatRange, "log.format", "%q is not one of text, json", l.Format)
	}
}

func (l *Listen) validate(v *validator) {
	l.Addrs = nil
	if len(l.Addresses) == 0 {
		v.errorf(l.AddressesRange, "listen.addresses", "empty; give at least one address, such as \"0.0.0.0\"")
	}
	for i, s := range l.Addresses {
		field := fmt.Sprintf("listen.addresses[%d]", i)
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			v.errorf(l.AddressesRange, field, "%q is not an IP address", s)
			continue
		case a.Is4In6():
			v.errorf(l.AddressesRange, field, "%q is IPv4-mapped; write %s", s, a.Unmap())
			continue
		case a.IsMulticast():
			v.errorf(l.AddressesRange, field, "%s is multicast", a)
			continue
		case slices.Contains(l.Addrs, a):
			v.errorf(l.AddressesRange, field, "%s is listed twice", a)
			continue
		}
		l.Addrs = append(l.Addrs, a)
	}

	portOK := v.port(l.Port, l.PortRange, "listen.port")
	tlsPortOK := v.port(l.TLSPort, l.TLSPortRange, "listen.tls_port")
	if l.SocketBuffer < 0 || l.SocketBuffer > 1<<30 {
		v.errorf(l.SocketBufferRange, "listen.socket_buffer", "%d is outside 0 (system default) to 1073741824 bytes", l.SocketBuffer)
	}
	secure := l.TLSOn() || l.DTLSOn()
	if portOK && tlsPortOK && secure && l.Port == l.TLSPort {
		v.conflict(
			l.PortRange, "listen.port", fmt.Sprintf("%d is also listen.tls_port", l.Port),
			l.TLSPortRange, "listen.tls_port", fmt.Sprintf("%d is also listen.port", l.TLSPort))
	}

	l.ProxyFromPrefixes = v.proxyFrom(l.ProxyFrom, l.ProxyFromRange, "listen.proxy_from")
	if len(l.ProxyFromPrefixes) > 0 && !l.TCPOn() && !l.TLSOn() {
		v.warnf(l.ProxyFromRange, "listen.proxy_from", "has no effect: listen.tcp and listen.tls are off, and UDP and DTLS carry no PROXY header")
	}
	if !l.UDPOn() && !l.TCPOn() && !secure {
		v.errorf(v.at(l.UDPRange, l.TCPRange, l.TLSRange, l.DTLSRange), "listen.udp",
			"false, and so are listen.tcp, listen.tls and listen.dtls; nothing would listen")
	}
}

// readFile reads a certificate or key file for Validate. The examples test
// swaps it, because the examples name files that exist only on a server.
var readFile = readPEMFile

// readPEMFile reads a regular file of at most maxPEMSize bytes. It refuses
// devices and FIFOs, which could block or never end.
func readPEMFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Size() > maxPEMSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxPEMSize)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxPEMSize))
}

func (t *TLS) validate(v *validator) {
	t.ReloadIntervalDuration = 0
	if d, ok := v.duration(t.ReloadInterval, t.ReloadIntervalRange, "tls.reload_interval"); ok {
		if d <= 0 {
			v.errorf(t.ReloadIntervalRange, "tls.reload_interval", "%q is not positive", t.ReloadInterval)
		} else {
			t.ReloadIntervalDuration = d
		}
	}

	t.CertNames = v.certPair("tls", t.CertFile, t.CertFileRange, t.KeyFile, t.KeyFileRange)
	if t.ACME != nil {
		t.ACME.validate(v, t)
		t.CertNames = slices.Clone(t.ACME.Domains)
	}
}

// certPair checks a block's cert_file and key_file: both or neither, both
// readable, a matching pair, and a warning when the certificate expired.
// It returns the DNS names the certificate is for, nil when there is none
// or it does not load.
func (v *validator) certPair(block, certFile string, certRange hcl.Range, keyFile string, keyRange hcl.Range) []string {
	certField, keyField := block+".cert_file", block+".key_file"
	switch {
	case certFile == "" && keyFile == "":
		return nil
	case keyFile == "":
		v.conflict(
			certRange, certField, "set while "+keyField+" is empty; set both or neither",
			keyRange, keyField, "empty while "+certField+" is set; set both or neither")
		return nil
	case certFile == "":
		v.conflict(
			keyRange, keyField, "set while "+certField+" is empty; set both or neither",
			certRange, certField, "empty while "+keyField+" is set; set both or neither")
		return nil
	}
	certPEM, certErr := readFile(certFile)
	if certErr != nil {
		v.errorf(certRange, certField, "cannot read: %v", certErr)
	}
	keyPEM, keyErr := readFile(keyFile)
	if keyErr != nil {
		v.errorf(keyRange, keyField, "cannot read: %v", keyErr)
	}
	if certErr != nil || keyErr != nil {
		return nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		v.errorf(certRange, certField, "not a certificate for %s: %v", keyField, err)
		return nil
	}
	leaf := pair.Leaf
	if leaf == nil {
		return nil
	}
	if time.Now().After(leaf.NotAfter) {
		v.warnf(certRange, certField, "the certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return slices.Clone(leaf.DNSNames)
}

// relayAddr parses a relay.ipv{4,6}_{bind,public} address of the given
// family; "" gives the invalid Addr.
func (v *validator) relayAddr(s string, rng hcl.Range, field string, want4, public bool) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		v.errorf(rng, field, "%q is not an IP address", s)
	case a.Zone() != "":
		v.errorf(rng, field, "%q has a zone; relay addresses cannot", s)
	case a.Is4In6():
		v.errorf(rng, field, "%q is IPv4-mapped; write %s in relay.ipv4_%s", s, a.Unmap(), kind(public))
	case want4 && !a.Is4():
		v.errorf(rng, field, "%q is not an IPv4 address (IPv6 goes in relay.ipv6_%s)", s, kind(public))
	case !want4 && !a.Is6():
		v.errorf(rng, field, "%q is not an IPv6 address (IPv4 goes in relay.ipv4_%s)", s, kind(public))
	case a.IsMulticast():
		v.errorf(rng, field, "%s is multicast", a)
	case public && a.IsUnspecified():
		v.errorf(rng, field, "%s is unspecified; peers cannot reach it (\"\" means the bind address)", a)
	default:
		return a
	}
	return netip.Addr{}
}

func kind(public bool) string {
	if public {
		return "public"
	}
	return "bind"
}

// maxSharedPorts is turn.MaxSharedPorts (config does not import turn).
const maxSharedPorts = 64

func (r *Relay) validate(v *validator, l *Listen) {
	minOK := r.MinPort >= minRelayPort && r.MinPort <= 65535
	if !minOK {
		v.errorf(r.MinPortRange, "relay.min_port", "%d is outside %d-65535", r.MinPort, minRelayPort)
	}
	maxOK := r.MaxPort >= minRelayPort && r.MaxPort <= 65535
	if !maxOK {
		v.errorf(r.MaxPortRange, "relay.max_port", "%d is outside %d-65535", r.MaxPort, minRelayPort)
	}
	if minOK && maxOK {
		if r.MinPort > r.MaxPort {
			v.conflict(
				r.MinPortRange, "relay.min_port", fmt.Sprintf("%d is above relay.max_port %d", r.MinPort, r.MaxPort),
				r.MaxPortRange, "relay.max_port", fmt.Sprintf("%d is below relay.min_port %d", r.MaxPort, r.MinPort))
		} else {
			// A relay cannot bind a port a listener holds on the same address.
			overlap := func(port int, name string) {
				if port >= r.MinPort && port <= r.MaxPort {
					v.warnf(v.at(r.MinPortRange, r.MaxPortRange), "relay.min_port",
						"the range %d-%d holds %s %d; relays cannot get that port", r.MinPort, r.MaxPort, name, port)
				}
			}
			overlap(l.Port, "listen.port")
			if l.TLSOn() || l.DTLSOn() {
				overlap(l.TLSPort, "listen.tls_port")
			}
		}
	}

	switch r.Mode {
	case "", RelayDedicated:
	case RelayShared:
		// Each shared port is a socket per family bound at start and
		// published by a container: a handful is the point.
		if n := r.MaxPort - r.MinPort + 1; minOK && maxOK && n > maxSharedPorts {
			v.errorf(v.at(r.MaxPortRange, r.MinPortRange, r.ModeRange), "relay.max_port",
				"relay.mode = \"shared\" serves every allocation from the ports %d-%d, %d of them; at most %d (a handful, such as 3, is the point)",
				r.MinPort, r.MaxPort, n, maxSharedPorts)
		}
		if r.TCPOn() {
			v.conflict(
				r.TCPRange, "relay.tcp", "RFC 6062 TCP relays need a port per allocation, which relay.mode = \"shared\" does not give",
				r.ModeRange, "relay.mode", "\"shared\" cannot serve RFC 6062 TCP relays (relay.tcp = true): they need a port per allocation")
		}
	default:
		v.errorf(r.ModeRange, "relay.mode", "%q is not a relay mode: \"dedicated\" (a port per allocation) or \"shared\" (a few ports for all)", r.Mode)
	}

	switch r.KernelOffload {
	case "", OffloadAuto, OffloadOn, OffloadOff:
	default:
		v.errorf(r.KernelOffloadRange, "relay.kernel_offload", "%q is not \"auto\", \"on\" or \"off\"", r.KernelOffload)
	}
	seenIf := map[string]bool{}
	for _, name := range r.KernelOffloadInterfaces {
		switch {
		case name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t"):
			v.errorf(r.KernelOffloadInterfacesRange, "relay.kernel_offload_interfaces", "%q is not an interface name", name)
		case seenIf[name]:
			v.errorf(r.KernelOffloadInterfacesRange, "relay.kernel_offload_interfaces", "%q is listed twice", name)
		}
		seenIf[name] = true
	}
	if len(r.KernelOffloadInterfaces) > 0 && r.KernelOffload == OffloadOff {
		v.warnf(r.KernelOffloadInterfacesRange, "relay.kernel_offload_interfaces", "has no effect with relay.kernel_offload = \"off\"")
	}

	r.IPv4BindAddr = v.relayAddr(r.IPv4Bind, r.IPv4BindRange, "relay.ipv4_bind", true, false)
	r.IPv6BindAddr = v.relayAddr(r.IPv6Bind, r.IPv6BindRange, "relay.ipv6_bind", false, false)
	r.IPv4PublicAuto, r.IPv6PublicAuto = r.IPv4Public == autoPublic, r.IPv6Public == autoPublic
	r.IPv4PublicAddr, r.IPv6PublicAddr = netip.Addr{}, netip.Addr{}
	if !r.IPv4PublicAuto {
		r.IPv4PublicAddr = v.relayAddr(r.IPv4Public, r.IPv4PublicRange, "relay.ipv4_public", true, true)
	}
	if !r.IPv6PublicAuto {
		r.IPv6PublicAddr = v.relayAddr(r.IPv6Public, r.IPv6PublicRange, "relay.ipv6_public", false, true)
	}
	r.validateDiscovery(v)

	// A private or loopback advertised address is certainly wrong for
	// peers on the internet: relays there are unreachable, and clients only
	// find out when media fails. An error, unless the operator said a LAN or
	// a test is intended: for ipv4_public, and for a specific ipv4_bind that
	// is advertised as itself because ipv4_public is empty. (A discovered
	// address stops the start instead; one picked from the interfaces for a
	// wildcard bind is only known at start, where the server warns.)
	if !r.PrivateAllowed() {
		for _, pub := range []struct {
			a     netip.Addr
			rng   hcl.Range
			field string
			how   string
		}{
			{r.IPv4PublicAddr, r.IPv4PublicRange, "relay.ipv4_public", ""},
			{r.IPv6PublicAddr, r.IPv6PublicRange, "relay.ipv6_public", ""},
			{r.advertisedBind(r.IPv4BindAddr, r.IPv4Public), r.IPv4BindRange, "relay.ipv4_bind", " (advertised as itself: relay.ipv4_public is empty)"},
			{r.advertisedBind(r.IPv6BindAddr, r.IPv6Public), r.IPv6BindRange, "relay.ipv6_bind", " (advertised as itself: relay.ipv6_public is empty)"},
		} {
			if what := auth.NonPublic(pub.a); what != "" {
				v.errorf(pub.rng, pub.field, "%s is %s%s: peers on the internet cannot reach relays there; "+
					"advertise the public address (behind 1:1 NAT, the provider's, or \"auto\" with relay.discover_with), or set relay.private_ok = true for a LAN or a test", pub.a, what, pub.how)
			}
		}
	}

	if r.IPv4Bind == "" && r.IPv4Public != "" {
		v.conflict(
			r.IPv4PublicRange, "relay.ipv4_public", "set while relay.ipv4_bind is empty (IPv4 relays off)",
			r.IPv4BindRange, "relay.ipv4_bind", "empty (IPv4 relays off) while relay.ipv4_public is set")
	}
	if r.IPv6Bind == "" && r.IPv6Public != "" {
		v.conflict(
			r.IPv6PublicRange, "relay.ipv6_public", "set while relay.ipv6_bind is empty (IPv6 relays off)",
			r.IPv6BindRange, "relay.ipv6_bind", "empty (IPv6 relays off) while relay.ipv6_public is set")
	}
	if r.IPv4Bind == "" && r.IPv6Bind == "" {
		v.conflict(
			r.IPv4BindRange, "relay.ipv4_bind", "empty and so is relay.ipv6_bind; no relay could be allocated",
			r.IPv6BindRange, "relay.ipv6_bind", "empty and so is relay.ipv4_bind; no relay could be allocated")
	}

	if r.TCPOn() && !l.TCPOn() && !l.TLSOn() {
		v.warnf(r.TCPRange, "relay.tcp",
			"true, but listen.tcp and listen.tls are false; TCP relays need a TCP or TLS client connection (RFC 6062)")
	}
}

// autoPublic is the relay.ipv4_public/ipv6_public value that discovers the
// address with relay.discover_with.
const autoPublic = "auto"

// The bounds of relay.discover_interval: often enough to follow a cloud
// address change within minutes, not so often that the discovery servers
// see a flood.
const (
	minDiscoverInterval     = 10 * time.Second
	defaultDiscoverInterval = 5 * time.Minute
	maxDiscoverInterval     = 24 * time.Hour
)

// advertisedBind is bind when it is advertised as itself: a specific
// address with no public one configured (not "auto" either).
func (r *Relay) advertisedBind(bind netip.Addr, public string) netip.Addr {
	if public != "" || !bind.IsValid() || bind.IsUnspecified() {
		return netip.Addr{}
	}
	return bind
}

// validateDiscovery checks "auto" and the fields it uses.
func (r *Relay) validateDiscovery(v *validator) {
	r.DiscoverIntervalDuration = 0
	if r.DiscoverInterval == "" {
		r.DiscoverIntervalDuration = defaultDiscoverInterval // a Relay built in code
	} else if d, ok := v.durationBetween(r.DiscoverInterval, r.DiscoverIntervalRange, "relay.discover_interval",
		minDiscoverInterval, maxDiscoverInterval, "10s", "24h"); ok {
		r.DiscoverIntervalDuration = d
	}
	for _, srv := range r.DiscoverWith {
		host, port, err := net.SplitHostPort(srv)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			v.errorf(r.DiscoverWithRange, "relay.discover_with", "%q is not host:port (write for example \"stun.example.net:3478\" or \"[2001:db8::1]:3478\")", srv)
		}
	}
	auto := false
	for _, f := range []struct {
		on      bool
		bind    string
		rng     hcl.Range
		field   string
		bindRng hcl.Range
		v6      bool
	}{
		{r.IPv4PublicAuto, r.IPv4Bind, r.IPv4PublicRange, "relay.ipv4_public", r.IPv4BindRange, false},
		{r.IPv6PublicAuto, r.IPv6Bind, r.IPv6PublicRange, "relay.ipv6_public", r.IPv6BindRange, true},
	} {
		if !f.on {
			continue
		}
		auto = true
		if len(r.DiscoverWith) == 0 {
			v.conflict(
				f.rng, f.field, "\"auto\" needs STUN servers to ask in relay.discover_with, which is empty",
				r.DiscoverWithRange, "relay.discover_with", "empty while "+f.field+" is \"auto\"")
			continue
		}
		// A literal address of the other family is skipped at start (one
		// list serves both families), so a list of only such addresses
		// leaves this family nobody to ask and would stop the start.
		asked := 0
		for _, srv := range r.DiscoverWith {
			host, _, _ := net.SplitHostPort(srv)
			if a, err := netip.ParseAddr(host); err != nil || a.Unmap().Is4() != f.v6 {
				asked++
			}
		}
		if asked == 0 {
			fam := map[bool]string{false: "IPv4", true: "IPv6"}
			v.conflict(
				f.rng, f.field, "\"auto\" asks "+fam[f.v6]+" servers for an "+fam[f.v6]+" address, and relay.discover_with lists only "+fam[!f.v6]+" addresses",
				r.DiscoverWithRange, "relay.discover_with", "no "+fam[f.v6]+" address or host name while "+f.field+" is \"auto\"")
		}
	}
	if !auto && len(r.DiscoverWith) > 0 {
		v.warnf(r.DiscoverWithRange, "relay.discover_with",
			"set, but neither relay.ipv4_public nor relay.ipv6_public is \"auto\"; nobody asks these servers")
	}
	if auto && len(r.DiscoverWith)%2 == 0 && len(r.DiscoverWith) > 0 {
		v.warnf(r.DiscoverWithRange, "relay.discover_with",
			"%d servers: more than half must agree, and an even number can split in a tie; an odd number (3) lets one silent or wrong server be outvoted", len(r.DiscoverWith))
	}
}

func (a *Auth) validate(v *validator) {
	v.secrets(a.Secrets, a.SecretsRange, "auth.secrets", minSecretChars)

	switch sep, _ := utf8.DecodeRuneInString(a.Separator); {
	case utf8.RuneCountInString(a.Separator) != 1:
		v.errorf(a.SeparatorRange, "auth.separator", "%q is not exactly one character", a.Separator)
	case unicode.IsDigit(sep):
		v.errorf(a.SeparatorRange, "auth.separator", "%q is a digit, but it follows the expiry, a number", a.Separator)
	case unicode.IsSpace(sep) || unicode.IsControl(sep):
		v.errorf(a.SeparatorRange, "auth.separator", "%q is white space or a control character", a.Separator)
	}

	seen := make(map[string]*User, len(a.Users))
	for _, u := range a.Users {
		if u == nil {
			continue
		}
		u.KeyBytes = nil
		field := fmt.Sprintf("auth.user[%q]", u.Name)
		switch first := seen[u.Name]; {
		case u.Name == "":
			v.errorf(u.DefRange, "auth.user", "empty name")
		case first != nil:
			v.add(hcl.DiagError, u.DefRange, field, "The first is at "+first.DefRange.String()+".", "defined twice")
		case len(u.Name) > maxUsernameBytes:
			v.errorf(u.DefRange, "auth.user", "name of %d bytes, more than %d (RFC 8489 §14.3)", len(u.Name), maxUsernameBytes)
		default:
			v.text(u.Name, u.DefRange, field)
		}
		if seen[u.Name] == nil {
			seen[u.Name] = u
		}

		switch {
		case u.Password != "" && u.Key != "":
			v.errorf(v.at(u.KeyRange, u.PasswordRange, u.DefRange), field, "both password and key are set; give exactly one")
		case u.Password == "" && u.Key == "":
			v.errorf(u.DefRange, field, "neither password nor key is set; give exactly one")
		case u.Key != "":
			// Never print a key, nor ParseKey's error about it: the key
			// is as good as the password.
			b, err := auth.ParseKey(u.Key)
			if err != nil {
				v.errorf(u.KeyRange, field+".key",
					"not 32 hex digits (the MD5 of \"name:realm:password\", as turnadmin -k prints it)")
				continue
			}
			u.KeyBytes = b
		}
	}
}

// prefixes parses policy.allow or policy.deny entries.
// proxyFrom parses a proxy_from list: CIDRs or addresses, as policy
// ranges are. A range holding every address is allowed but warned about:
// any client could then claim any address, and one without a header is
// refused.
func (v *validator) proxyFrom(list []string, rng hcl.Range, name string) []netip.Prefix {
	out := v.prefixes(list, rng, name)
	for _, p := range out {
		if p.Bits() == 0 {
			v.warnf(rng, name, "%s trusts every source: any client can claim any address with a PROXY header, and one without a header is refused; list only your proxies", p)
		}
	}
	return out
}

func (v *validator) prefixes(list []string, rng hcl.Range, name string) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range list {
		field := fmt.Sprintf("%s[%d]", name, i)
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if p, err = netip.ParsePrefix(s); err != nil {
				v.errorf(rng, field, "%q is not a CIDR or IP address", s)
				continue
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				v.errorf(rng, field, "%q is not a CIDR or IP address", s)
				continue
			}
			if a.Zone() != "" {
				v.errorf(rng, field, "%q has a zone; peer addresses have none", s)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		// Store the form the policy compares in (an IPv4-mapped prefix as
		// the IPv4 prefix it maps), as auth.NewPolicy would.
		n := auth.NormalizePrefix(p)
		if p.Masked() != p {
			v.warnf(rng, field, "%s has host bits set; it means %s", p, n)
		}
		out = append(out, n)
	}
	return out
}

func (p *Policy) validate(v *validator) {
	for i, s := range p.Presets {
		if !slices.Contains(presetNames, s) {
			v.errorf(p.PresetsRange, fmt.Sprintf("policy.presets[%d]", i), "%q is not one of %s", s, strings.Join(presetNames, ", "))
		}
	}
	p.AllowPrefixes = v.prefixes(p.Allow, p.AllowRange, "policy.allow")
	p.DenyPrefixes = v.prefixes(p.Deny, p.DenyRange, "policy.deny")
}

func (l *Limits) validate(v *validator) {
	v.nonNegative(l.AllocationsPerUser, l.AllocationsPerUserRange, "limits.allocations_per_user")
	v.nonNegative(l.AllocationsTotal, l.AllocationsTotalRange, "limits.allocations_total")
	v.nonNegative(l.PermissionsPerAllocation, l.PermissionsPerAllocationRange, "limits.permissions_per_allocation")
	v.nonNegative(l.BandwidthPerAllocation, l.BandwidthPerAllocationRange, "limits.bandwidth_per_allocation")
	v.nonNegative(l.UnauthRate, l.UnauthRateRange, "limits.unauthenticated_rate")
	if v.nonNegative(l.UnauthBurst, l.UnauthBurstRange, "limits.unauthenticated_burst") {
		v.burst(l.UnauthRate, l.UnauthRateRange, "limits.unauthenticated_rate", l.UnauthBurst, l.UnauthBurstRange, "limits.unauthenticated_burst")
	}
	v.nonNegative(l.ConnectionsPerSource, l.ConnectionsPerSourceRange, "limits.connections_per_source")

	def, defOK := v.durationBetween(l.DefaultLifetime, l.DefaultLifetimeRange, "limits.default_lifetime", minLifetime, maxLifetime, "30s", "24h")
	maxD, maxOK := v.durationBetween(l.MaxLifetime, l.MaxLifetimeRange, "limits.max_lifetime", minLifetime, maxLifetime, "30s", "24h")
	l.DefaultLifetimeDuration, l.MaxLifetimeDuration = def, maxD
	if defOK && maxOK && def > maxD {
		v.conflict(
			l.DefaultLifetimeRange, "limits.default_lifetime", fmt.Sprintf("%q is above limits.max_lifetime %q", l.DefaultLifetime, l.MaxLifetime),
			l.MaxLifetimeRange, "limits.max_lifetime", fmt.Sprintf("%q is below limits.default_lifetime %q", l.MaxLifetime, l.DefaultLifetime))
	}
}

func (u *Usage) validate(v *validator) {
	if u.Retention == "" {
		u.Retention = "24h"
	}
	u.RetentionDuration, _ = v.durationBetween(u.Retention, u.RetentionRange, "usage.retention", time.Minute, 744*time.Hour, "1m", "744h")
}

func (m *Metrics) validate(v *validator) {
	if m.Listen == "" {
		return
	}
	_, port, err := net.SplitHostPort(m.Listen)
	if err != nil {
		v.errorf(m.ListenRange, "metrics.listen", "%q is not host:port (\"\" switches metrics off)", m.Listen)
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		v.errorf(m.ListenRange, "metrics.listen", "port %q is not a number 1-65535", port)
	}
}
