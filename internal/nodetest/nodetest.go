// Package nodetest runs Node.js programs from Go tests: the socket.io
// protocol suites (mocha) and scripts that drive the real npm
// socket.io-client against a server the test started. The npm packages
// are the ones tools/sioconformance/package-lock.json pins, installed by
// `make deps` (npm ci).
//
// Without node, or without the installed packages, a test skips, unless
// ICEGATE_REQUIRE_NODE=1 (as `make test` sets), when it fails.
package nodetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// RequireEnv names the variable that turns a missing node into a failure.
const RequireEnv = "ICEGATE_REQUIRE_NODE"

// Dir returns tools/sioconformance, where package.json and node_modules
// are, and the node binary; it skips or fails the test when either is
// missing.
func Dir(t testing.TB) (dir, node string) {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("nodetest: cannot find the source tree")
	}
	dir = filepath.Join(filepath.Dir(file), "..", "..", "tools", "sioconformance")
	missing := func(what string) {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("nodetest: %s (%s=1; `make deps` installs it)", what, RequireEnv)
		}
		t.Skipf("nodetest: %s; set %s=1 to fail instead (`make deps` installs it)", what, RequireEnv)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node not found")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io-client", "package.json")); err != nil {
		missing("npm packages not installed in " + dir)
	}
	return dir, node
}

// LinkModules makes the packages in dir/node_modules importable from a
// script in other (a temporary directory of the test's).
func LinkModules(t testing.TB, dir, other string) {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(dir, "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(abs, filepath.Join(other, "node_modules")); err != nil {
		t.Fatal(err)
	}
}
