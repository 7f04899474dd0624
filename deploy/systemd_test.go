package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// need returns the path of tool, skipping the test without it unless env
// is "1" (make test sets it, after make deps installed the tool).
func need(t *testing.T, tool, env string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv(env) == "1" {
			t.Fatalf("%s not found and %s=1 (make deps installs it)", tool, env)
		}
		t.Skipf("%s not found (set %s=1 to require it)", tool, env)
	}
	return p
}

// TestUnitVerifies runs systemd-analyze verify on the unit. verify also
// checks that each Exec*= command exists, so /usr/bin/icegate is pointed at
// a binary that does; verify exits 0 on an unknown key or a bad value (it
// only logs "ignoring"), so any output fails the test too.
func TestUnitVerifies(t *testing.T) {
	analyze := need(t, "systemd-analyze", "ICEGATE_REQUIRE_SYSTEMD")
	unit, err := os.ReadFile("systemd/icegate.service")
	if err != nil {
		t.Fatal(err)
	}
	stand, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(t.TempDir(), "icegate.service")
	if err := os.WriteFile(copied, []byte(strings.ReplaceAll(string(unit), "/usr/bin/icegate", stand)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copied).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	// What docs/operations.md promises about the unit.
	for _, want := range []string{
		"Type=notify\n", "NotifyAccess=main\n", "WatchdogSec=", "ExecReload=kill -HUP $MAINPID\n",
		"After=network-online.target\n", "Wants=network-online.target\n",
		"NoNewPrivileges=yes\n", "ProtectSystem=strict\n", "ProtectHome=yes\n", "PrivateTmp=yes\n",
		"User=icegate\n", "AmbientCapabilities=CAP_NET_BIND_SERVICE\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
		"LimitNOFILE=", "ConfigurationDirectory=icegate\n", "StateDirectory=icegate\n",
		"ExecStart=/usr/bin/icegate serve -config /etc/icegate/icegate.hcl\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}
