package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReloadClassesComplete fails when a field is added to Config (or a
// block) without saying in reloadClasses whether a reload applies it, and
// when reloadClasses names a field that no longer exists.
func TestReloadClassesComplete(t *testing.T) {
	var paths []string
	reloadPaths(reflect.TypeFor[Config](), "", &paths)
	for _, p := range paths {
		if c := reloadClasses[p]; c != Live && c != Restart {
			t.Errorf("config field %s is not classified: add it to reloadClasses in reload.go (Live or Restart) and say so in docs/operations.md", p)
		}
	}
	for p := range reloadClasses {
		if !slices.Contains(paths, p) {
			t.Errorf("reloadClasses names %s, which is not a field of Config", p)
		}
	}
}

// TestKeepRestartOnly: a changed listen.port and metrics.listen are named
// and keep their running values (with the fields Validate derived), while
// live settings take the file's; the file's config is left as it was.
func TestKeepRestartOnly(t *testing.T) {
	running, diags := Parse([]byte(`
listen {
  addresses = ["127.0.0.1"]
  port = 3478
}
metrics { listen = "127.0.0.1:9641" }
auth { secrets = ["first-secret-0123456789"] }
log { level = "info" }
`), "running.hcl")
	if diags.HasErrors() {
		t.Fatal(FormatDiagnostics(diags))
	}
	next, diags := Parse([]byte(`
listen {
  addresses = ["127.0.0.2"]
  port = 3479
}
metrics { listen = "127.0.0.1:9642" }
auth { secrets = ["second-secret-0123456789"] }
log { level = "debug" }
`), "next.hcl")
	if diags.HasErrors() {
		t.Fatal(FormatDiagnostics(diags))
	}
	eff, changes := KeepRestartOnly(running, next)
	var names []string
	for _, c := range changes {
		names = append(names, c.String())
	}
	want := []string{
		`listen.addresses (running ["127.0.0.1"], file ["127.0.0.2"])`,
		`listen.port (running 3478, file 3479)`,
		`metrics.listen (running "127.0.0.1:9641", file "127.0.0.1:9642")`,
	}
	if !slices.Equal(names, want) {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
	if eff.Listen.Port != 3478 || eff.Listen.Addrs[0].String() != "127.0.0.1" || eff.Metrics.Listen != "127.0.0.1:9641" {
		t.Errorf("restart-only settings not kept: port %d addrs %v metrics %q", eff.Listen.Port, eff.Listen.Addrs, eff.Metrics.Listen)
	}
	if eff.Listen.PortRange.Filename != "running.hcl" {
		t.Errorf("listen.port's range is %s, want the running file's", eff.Listen.PortRange)
	}
	if eff.Auth.Secrets[0] != "second-secret-0123456789" || eff.Log.Level != "debug" || eff.Source != "next.hcl" {
		t.Errorf("live settings not taken: %v %q %q", eff.Auth.Secrets, eff.Log.Level, eff.Source)
	}
	if next.Listen.Port != 3479 || next.Metrics.Listen != "127.0.0.1:9642" {
		t.Error("KeepRestartOnly modified the file's config")
	}
	if _, changes := KeepRestartOnly(running, running); len(changes) != 0 {
		t.Errorf("the same config reports changes: %v", changes)
	}
}

// TestKeepRestartOnlyCluster: the cluster block needs a restart whether it
// is added, removed or changed, and the reload's log line never shows the
// Redis password.
func TestKeepRestartOnlyCluster(t *testing.T) {
	parse := func(src string) *Config {
		t.Helper()
		c, diags := Parse([]byte(src), "c.hcl")
		if diags.HasErrors() {
			t.Fatal(FormatDiagnostics(diags))
		}
		return c
	}
	none := parse("")
	a := parse("cluster {\n  redis_url = \"redis://:hunter2@10.0.0.1:6379/0\"\n}\n")
	b := parse("cluster {\n  redis_url = \"redis://:hunter3@10.0.0.2:6379/1\"\n  node_timeout = \"5s\"\n}\n")

	eff, changes := KeepRestartOnly(none, a)
	if eff.Cluster != nil || len(changes) != 1 || changes[0].String() != "cluster (running absent, file present)" {
		t.Errorf("adding the block: cluster %+v, changes %v", eff.Cluster, changes)
	}
	eff, changes = KeepRestartOnly(a, none)
	if eff.Cluster == nil || eff.Cluster == a.Cluster || eff.Cluster.Redis.Addrs[0] != "10.0.0.1:6379" ||
		len(changes) != 1 || changes[0].String() != "cluster (running present, file absent)" {
		t.Errorf("removing the block: cluster %+v, changes %v", eff.Cluster, changes)
	}
	eff, changes = KeepRestartOnly(a, b)
	var names []string
	for _, c := range changes {
		names = append(names, c.String())
	}
	want := []string{
		`cluster.redis_url (running "redis://:xxxxx@10.0.0.1:6379", file "redis://:xxxxx@10.0.0.2:6379/1")`,
		`cluster.node_timeout (running "10s", file "5s")`,
	}
	if !slices.Equal(names, want) {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
	if eff.Cluster.Redis.DB != 0 || eff.Cluster.NodeTimeoutDuration != 10*time.Second || b.Cluster.Redis.DB != 1 {
		t.Errorf("running cluster settings not kept, or the file's changed: %+v / %+v", eff.Cluster, b.Cluster)
	}
	if _, changes := KeepRestartOnly(a, a); len(changes) != 0 {
		t.Errorf("the same cluster block reports changes: %v", changes)
	}
}
