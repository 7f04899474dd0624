package icegatebin

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuild: the binary is built and says the version it was stamped with.
func TestBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles icegate")
	}
	bin := filepath.Join(t.TempDir(), "icegate")
	if err := Build(t.Context(), bin, "test-1.2.3"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "icegate test-1.2.3" {
		t.Errorf("icegate version printed %q, want %q", got, "icegate test-1.2.3")
	}
}

// TestVersion: outside a checkout git cannot describe anything.
func TestVersion(t *testing.T) {
	t.Chdir(t.TempDir())
	if v := Version(t.Context()); v != "dev" {
		t.Errorf("Version outside a checkout = %q, want dev", v)
	}
}
