package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// ReloadClass says what a reload (SIGHUP) does with a setting.
type ReloadClass int

const (
	// Live settings take effect at the reload: credentials, peer policy,
	// signaling settings, the log level, the relay's certificate files.
	Live ReloadClass = iota + 1
	// Restart settings are read once at start: what sockets are bound
	// (listeners, relay addresses and ports, metrics and HTTP), the realm
	// pion puts in every challenge, the limits the packet path was built
	// with. A reload keeps their running values and names each changed one.
	Restart
)

// reloadClasses classifies every field of Config by its Go path. It is the
// one place that says what a reload applies; TestReloadClassesComplete fails
// when a field is added to Config without being listed here. Fields filled
// by Validate follow the attribute they are derived from. hcl.Range fields
// are not listed: they travel with their attribute.
var reloadClasses = map[string]ReloadClass{
	"Realm":                 Restart, // pion's challenges carry the realm it started with
	"ShutdownGrace":         Live,
	"ShutdownGraceDuration": Live,
	"Source":                Live,

	"Log.Level":  Live,
	"Log.Format": Restart, // the handler is built once

	"Listen.Addresses":       Restart,
	"Listen.Addrs":           Restart,
	"Listen.Port":            Restart,
	"Listen.TLSPort":         Restart,
	"Listen.SocketBuffer":    Restart,
	"Listen.UDPSegmentation": Restart,
	"Listen.FreeBind":        Restart,
	"Listen.UDP":             Restart,
	"Listen.TCP":             Restart,
	"Listen.TLS":             Restart,
	"Listen.DTLS":            Restart,

	// The PROXY protocol wraps the listeners at start.
	"Listen.ProxyFrom":         Restart,
	"Listen.ProxyFromPrefixes": Restart,

	"TLS.CertFile":               Live, // loaded and checked at the reload, then swapped
	"TLS.KeyFile":                Live,
	"TLS.ReloadInterval":         Restart,
	"TLS.ReloadIntervalDuration": Restart,
	"TLS.CertNames":              Live, // read with the files at the reload; only the Host check uses them
	// ACME's manager, its storage and its challenge listeners are built
	// once at start; certificates it renews are served without a reload.
	"TLS.ACME.Domains":               Restart,
	"TLS.ACME.Email":                 Restart,
	"TLS.ACME.CA":                    Restart,
	"TLS.ACME.CARoot":                Restart,
	"TLS.ACME.Storage":               Restart,
	"TLS.ACME.Challenges":            Restart,
	"TLS.ACME.TLSALPNPort":           Restart,
	"TLS.ACME.HTTPListen":            Restart,
	"TLS.ACME.RenewalWindow":         Restart,
	"TLS.ACME.CheckInterval":         Restart,
	"TLS.ACME.StorageDir":            Restart,
	"TLS.ACME.CheckIntervalDuration": Restart,

	"Relay.MinPort":                  Restart,
	"Relay.MaxPort":                  Restart,
	"Relay.IPv4Bind":                 Restart,
	"Relay.IPv4BindAddr":             Restart,
	"Relay.IPv4Public":               Restart,
	"Relay.IPv4PublicAddr":           Restart,
	"Relay.IPv6Bind":                 Restart,
	"Relay.IPv6BindAddr":             Restart,
	"Relay.IPv6Public":               Restart,
	"Relay.IPv6PublicAddr":           Restart,
	"Relay.IPv4PublicAuto":           Restart,
	"Relay.IPv6PublicAuto":           Restart,
	"Relay.DiscoverWith":             Restart,
	"Relay.DiscoverInterval":         Restart,
	"Relay.DiscoverIntervalDuration": Restart,
	"Relay.PrivateOK":                Live, // the next discovery round reads it (turn.Server.privateOK)
	"Relay.TCP":                      Restart,
	"Relay.Mode":                     Restart,
	"Relay.KernelOffload":            Restart,
	"Relay.KernelOffloadInterfaces":  Restart,

	"Auth.Secrets":         Live,
	"Auth.Separator":       Live,
	"Auth.EphemeralSecret": Live,
	"Auth.Users":           Live,

	"Policy.Presets":       Live,
	"Policy.Allow":         Live,
	"Policy.AllowPrefixes": Live,
	"Policy.Deny":          Live,
	"Policy.DenyPrefixes":  Live,

	"Limits.AllocationsPerUser":       Restart,
	"Limits.AllocationsTotal":         Restart,
	"Limits.PermissionsPerAllocation": Restart,
	"Limits.DefaultLifetime":          Restart,
	"Limits.DefaultLifetimeDuration":  Restart,
	"Limits.MaxLifetime":              Restart,
	"Limits.MaxLifetimeDuration":      Restart,
	"Limits.BandwidthPerAllocation":   Restart,
	"Limits.UnauthRate":               Restart,
	"Limits.UnauthBurst":              Restart,
	"Limits.ConnectionsPerSource":     Restart,

	"Metrics.Listen": Restart,
	"Metrics.Pprof":  Restart,

	"Usage.Retention":         Restart,
	"Usage.RetentionDuration": Restart,

	"HTTP.Listen":    Restart,
	"HTTP.CertFile":  Restart, // whether HTTP speaks TLS; the files are re-read at a reload
	"HTTP.KeyFile":   Restart,
	"HTTP.ACME":      Restart, // whether HTTPS takes tls.acme's certificate
	"HTTP.TestPage":  Live,
	"HTTP.Hosts":     Live,
	"HTTP.CertNames": Live,    // read with the files at the reload
	"HTTP.SharedTLS": Restart, // follows http.listen and listen.*, which need one

	"HTTP.HealthEndpoints":   Live,    // read at each request
	"HTTP.ProxyFrom":         Restart, // wraps the listener at start
	"HTTP.ProxyFromPrefixes": Restart,

	"Signaling.AllowedOrigins":           Live,
	"Signaling.TokenSecrets":             Live,
	"Signaling.TokenAudience":            Live,
	"Signaling.MaxTokenLifetime":         Live,
	"Signaling.MaxTokenLifetimeDuration": Live,
	"Signaling.TURNHost":                 Live,
	"Signaling.CredentialTTL":            Live,
	"Signaling.CredentialTTLDuration":    Live,
	"Signaling.MaxConnections":           Live,
	"Signaling.DescriptorReserve":        Live,
	"Signaling.MaxOpening":               Live,
	"Signaling.MaxMessageBytes":          Live,
	"Signaling.MessagesPerSecond":        Live,
	"Signaling.MessagesBurst":            Live,
	"Signaling.PeersPerRoom":             Live,
	"Signaling.SocketIORoomSize":         Live,
	"Signaling.RoomsPerPeer":             Live,
	"Signaling.SendQueue":                Live,
	"Signaling.ResumeGrace":              Live,
	"Signaling.ResumeGraceDuration":      Live,
	"Signaling.PingInterval":             Live,
	"Signaling.PingIntervalDuration":     Live,
	"Signaling.TURNEvents":               Live,

	// The bus is built once at start: joining, leaving or moving a
	// cluster means a restart (and its peers resume elsewhere).
	"Cluster.RedisURL":            Restart,
	"Cluster.NodeID":              Restart,
	"Cluster.NodeTimeout":         Restart,
	"Cluster.NodeTimeoutDuration": Restart,
	"Cluster.KeyPrefix":           Restart,
	"Cluster.UserQuota":           Restart,
	"Cluster.Redis":               Restart,

	"API.Keys":                     Live, // a key is replaced without a restart
	"API.MaxCredentialTTL":         Live,
	"API.MaxCredentialTTLDuration": Live,

	"STUN.AlternateAddress":    Restart,
	"STUN.AlternatePort":       Restart,
	"STUN.AlternatePublic":     Restart,
	"STUN.RFC3489":             Restart,
	"STUN.PrimaryAddr":         Restart,
	"STUN.AlternateAddr":       Restart,
	"STUN.PrimaryPublicAddr":   Restart,
	"STUN.AlternatePublicAddr": Restart,
}

// ReloadClassOf returns the class of the field at Go path (e.g.
// "Listen.Port"), or 0 for a path that names no field.
func ReloadClassOf(path string) ReloadClass { return reloadClasses[path] }

// RestartChange is a restart-only setting that differs between the running
// config and a reloaded file.
type RestartChange struct {
	// Name is the setting as written in the file: "listen.port".
	Name string
	// Running and File are the values, as text.
	Running, File string
}

func (c RestartChange) String() string {
	return c.Name + " (running " + c.Running + ", file " + c.File + ")"
}

var rangeType = reflect.TypeFor[hcl.Range]()

// field is one leaf of a Config: a setting, with where its value was
// written when it has an attribute range.
type field struct {
	path, name string        // Go path, HCL name ("" for a field Validate fills)
	old, new   reflect.Value // settable in new
	oldRange   reflect.Value // the attribute's range field, or invalid
	newRange   reflect.Value
}

// fields lists the leaves of old and new side by side. A block missing on
// either side (a Config built in code) is skipped: there is nothing to
// compare or keep.
func fields(old, new reflect.Value, path, block string, out *[]field) {
	t := old.Type()
	ranges := map[string]int{}
	for i := range t.NumField() {
		if f := t.Field(i); f.Type == rangeType {
			if tag, ok := strings.CutSuffix(f.Tag.Get("hcl"), ",attr_range"); ok {
				ranges[tag] = i
			}
		}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type == rangeType {
			continue
		}
		p := f.Name
		if path != "" {
			p = path + "." + f.Name
		}
		tag, _, _ := strings.Cut(f.Tag.Get("hcl"), ",")
		if f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct && strings.HasSuffix(f.Tag.Get("hcl"), ",block") {
			o, n := old.Field(i), new.Field(i)
			if !o.IsNil() && !n.IsNil() {
				fields(o.Elem(), n.Elem(), p, tag, out)
			}
			continue
		}
		name := tag
		if name != "" && block != "" {
			name = block + "." + tag
		}
		fd := field{path: p, name: name, old: old.Field(i), new: new.Field(i)}
		if j, ok := ranges[tag]; ok && tag != "" {
			fd.oldRange, fd.newRange = old.Field(j), new.Field(j)
		}
		*out = append(*out, fd)
	}
}

// KeepRestartOnly returns a copy of next in which every restart-only
// setting holds running's value, and the restart-only settings whose value
// in next differs, in file order. The copy is what a reload applies: every
// component sees one consistent config, and nothing built from it (the
// signaling server's URLs, above all) names a port or address the server
// does not serve. next is not modified.
func KeepRestartOnly(running, next *Config) (*Config, []RestartChange) {
	out := *next
	o := reflect.ValueOf(&out).Elem()
	// Copy every block so that setting a field does not write into next.
	copyBlocks(o)
	var changes []RestartChange
	// An optional block added or removed: fields skips it (there is
	// nothing to compare field by field), so it is named here, and the
	// running one (or none) kept.
	r := reflect.ValueOf(running).Elem()
	for _, b := range optionalBlocks {
		ro, no := blockField(r, b.field), blockField(o, b.field)
		if !ro.IsValid() || !no.IsValid() {
			continue // its enclosing block is missing (a Config built in code)
		}
		if ro.IsNil() != no.IsNil() {
			changes = append(changes, RestartChange{Name: b.name, Running: presence(ro), File: presence(no)})
			if ro.IsNil() {
				no.Set(ro)
			} else {
				c := reflect.New(ro.Elem().Type())
				c.Elem().Set(ro.Elem())
				no.Set(c)
			}
		}
	}
	var fs []field
	fields(r, o, "", "", &fs)
	for _, f := range fs {
		if reloadClasses[f.path] != Restart {
			continue
		}
		if f.name != "" && !reflect.DeepEqual(f.old.Interface(), f.new.Interface()) {
			show := show
			if hide, ok := redacted[f.path]; ok {
				show = func(v reflect.Value) string { return hide(v.String()) }
			}
			changes = append(changes, RestartChange{Name: f.name, Running: show(f.old), File: show(f.new)})
		}
		f.new.Set(f.old)
		if f.newRange.IsValid() {
			f.newRange.Set(f.oldRange)
		}
	}
	return &out, changes
}

// optionalBlocks are the blocks whose absence is a setting of its own
// (Validate leaves them nil): adding or removing one needs a restart.
var optionalBlocks = []struct{ field, name string }{
	{"Cluster", "cluster"},
	{"TLS.ACME", "tls.acme"},
}

// blockField returns the field at a dotted Go path ("TLS.ACME") of the
// struct v, or the invalid Value when a block on the way is nil.
func blockField(v reflect.Value, path string) reflect.Value {
	for name := range strings.SplitSeq(path, ".") {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}
			}
			v = v.Elem()
		}
		v = v.FieldByName(name)
	}
	return v
}

// copyBlocks replaces every block pointer in the struct v, nested ones
// too, with a pointer to a copy, so that setting a field of v's blocks
// never writes into the struct v was copied from.
func copyBlocks(v reflect.Value) {
	t := v.Type()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() != reflect.Pointer || f.IsNil() || f.Elem().Kind() != reflect.Struct ||
			!strings.HasSuffix(t.Field(i).Tag.Get("hcl"), ",block") {
			continue
		}
		c := reflect.New(f.Elem().Type())
		c.Elem().Set(f.Elem())
		f.Set(c)
		copyBlocks(c.Elem())
	}
}

// presence renders an optional block's presence for the log.
func presence(v reflect.Value) string {
	if v.IsNil() {
		return "absent"
	}
	return "present"
}

// redacted are the restart-only settings that may hold a secret, with how
// the reload's log line shows them.
var redacted = map[string]func(string) string{
	"Cluster.RedisURL": func(s string) string {
		if t, err := ParseRedisURL(s); err == nil {
			return fmt.Sprintf("%q", t.String())
		}
		return "(not shown)"
	},
}

// show renders a setting's value for the log: strings quoted, switches
// and lists as written.
func show(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return "unset"
		}
		return show(v.Elem())
	case reflect.String:
		return fmt.Sprintf("%q", v.String())
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range v.Len() {
			parts[i] = show(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// reloadPaths lists the Go paths of every leaf of Config's type, for the
// completeness test.
func reloadPaths(t reflect.Type, path string, out *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type == rangeType {
			continue
		}
		p := f.Name
		if path != "" {
			p = path + "." + f.Name
		}
		if f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct && strings.HasSuffix(f.Tag.Get("hcl"), ",block") {
			reloadPaths(f.Type.Elem(), p, out)
			continue
		}
		*out = append(*out, p)
	}
}
