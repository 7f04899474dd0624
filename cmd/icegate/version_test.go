package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestResolveVersion: a stamped version wins; then the module version the
// go command recorded; then the VCS revision; "dev" only when there is
// nothing.
func TestResolveVersion(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "e811820abcdef0123456789abcdef0123456789a"
	for _, tc := range []struct {
		name, stamped, mod string
		settings           []debug.BuildSetting
		want               string
	}{
		{"make build", "v1.2.3-4-ge811820", "(devel)", vcs(rev, "false"), "v1.2.3-4-ge811820"},
		{"go install module@version", "dev", "v1.2.3", nil, "v1.2.3"},
		{"go build in a checkout (Go 1.24+)", "dev", "v0.0.0-20261207161445-e811820abcde+dirty", vcs(rev, "true"), "v0.0.0-20261207161445-e811820abcde+dirty"},
		{"vcs only", "dev", "(devel)", vcs(rev, "false"), "dev-e811820abcde"},
		{"vcs only, modified", "dev", "(devel)", vcs(rev, "true"), "dev-e811820abcde-dirty"},
		{"nothing", "dev", "(devel)", nil, "dev"},
	} {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "icegate", Version: tc.mod}, Settings: tc.settings}
		if got := resolveVersion(tc.stamped, bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestVersionPlainGoBuild builds the command with a plain `go build` (no
// -ldflags) in a fresh clone of this checkout, with VCS stamping on (this
// machine's go env turns it off, and a git worktree's .git file is not
// seen by the go command): `icegate version` names the commit, not "dev".
func TestVersionPlainGoBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("clones and builds")
	}
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	top, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	root := strings.TrimSpace(string(top))
	dir := filepath.Join(t.TempDir(), "src")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(git, args...).Output()
		if err != nil {
			t.Fatalf("git %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	run("clone", "-q", "--no-hardlinks", root, dir)
	// The working tree as it is, committed in the clone, so that the code
	// under test is built and the build is clean.
	for name := range strings.SplitSeq(run("-C", root, "ls-files", "-z", "-c", "-o", "--exclude-standard"), "\x00") {
		if name == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, name))
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		} else if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run("-C", dir, "add", "-A")
	run("-C", dir, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-q", "--allow-empty", "-m", "working tree")
	rev := strings.TrimSpace(run("-C", dir, "rev-parse", "HEAD"))
	bin := filepath.Join(t.TempDir(), "icegate")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-buildvcs=true", "-o", bin, "./cmd/icegate")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(string(out))
	if !strings.Contains(got, rev[:12]) || strings.Contains(got, "dirty") {
		t.Fatalf("icegate version printed %q, want the clean commit %s", got, rev[:12])
	}
}
