package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDeb runs `make deb` as a user would, checks the package with
// dpkg-deb -I and -c, runs the binary and the config check it ships, and,
// as root, installs it with dpkg into an empty root directory (--root, the
// maintainer scripts run with DPKG_ROOT, as dpkg's chrootless mode runs
// them), checks the user, the conffile's owner and mode and that nothing
// was enabled, then purges it.
func TestDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dpkgDeb := need(t, "dpkg-deb", "ICEGATE_REQUIRE_DEB")
	mk := need(t, "make", "ICEGATE_REQUIRE_DEB")
	gitOut, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Skipf("git describe: %v (the package's version comes from it)", err)
	}
	describe := strings.TrimSpace(string(gitOut))

	tmp := t.TempDir()
	cmd := exec.Command(mk, "--no-print-directory", "-s", "deb",
		"GO="+filepath.Join(runtime.GOROOT(), "bin", "go"), "BIN="+filepath.Join(tmp, "icegate"), "DEB_DIR="+filepath.Join(tmp, "out"))
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("make deb: %v\n%s%s", err, out, stderr)
	}
	lines := strings.Fields(string(out))
	deb := lines[len(lines)-1]
	if !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("make deb printed %q, want the package's path last", out)
	}

	info, err := exec.Command(dpkgDeb, "-I", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) string {
		for line := range strings.Lines(string(info)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+": "); ok {
				return v
			}
		}
		return ""
	}
	if field("Package") != "icegate" || field("Architecture") == "" {
		t.Errorf("control:\n%s", info)
	}
	// The Debian version starts with a digit and carries git describe's
	// commit (0~git.e23d9a3.dirty, 1.2.3+4.ge23d9a3).
	v := field("Version")
	hash := describe
	if i := strings.LastIndex(describe, "-g"); i >= 0 {
		hash = describe[i+2:]
	}
	hash = strings.TrimSuffix(hash, "-dirty")
	if v == "" || v[0] < '0' || v[0] > '9' || !strings.Contains(v, hash) {
		t.Errorf("Version %q does not carry git describe's %q", v, describe)
	}
	for _, want := range []string{"conffiles", "postinst", "prerm", "postrm"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("control archive lacks %s:\n%s", want, info)
		}
	}

	list, err := exec.Command(dpkgDeb, "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"-rwxr-xr-x root/root .* ./usr/bin/icegate",
		"-rw-r--r-- root/root .* ./lib/systemd/system/icegate.service",
		"-rw-r----- root/root .* ./etc/icegate/icegate.hcl",
		"-rw-r--r-- root/root .* ./usr/share/doc/icegate/operations.md",
		"-rw-r--r-- root/root .* ./usr/share/doc/icegate/copyright",
	} {
		perm, path, _ := strings.Cut(want, " .* ")
		found := false
		for line := range strings.Lines(string(list)) {
			if strings.HasPrefix(line, perm) && strings.HasSuffix(strings.TrimSpace(line), path) {
				found = true
			}
		}
		if !found {
			t.Errorf("package lacks %s %s:\n%s", perm, path, list)
		}
	}

	x := filepath.Join(tmp, "x")
	if out, err := exec.Command(dpkgDeb, "-x", deb, x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	bin := filepath.Join(x, "usr/bin/icegate")
	if out, err := exec.Command(bin, "version").Output(); err != nil || strings.TrimSpace(string(out)) != "icegate "+describe {
		t.Errorf("packaged icegate version: %q %v, want %q", out, err, "icegate "+describe)
	}
	conf := filepath.Join(x, "etc/icegate/icegate.hcl")
	if out, err := exec.Command(bin, "config", "check", conf).CombinedOutput(); err != nil {
		t.Errorf("config check of the packaged config: %v\n%s", err, out)
	}
	// The copyright file names every module linked into the binary, with
	// a license text under each (Debian policy §12.5).
	copyright, _ := os.ReadFile(filepath.Join(x, "usr/share/doc/icegate/copyright"))
	mods, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	deps := 0
	for line := range strings.Lines(string(mods)) {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "dep" {
			continue
		}
		deps++
		head := f[1] + " " + f[2] + "\nLicense file: "
		i := bytes.Index(copyright, []byte(head))
		if i < 0 {
			t.Errorf("copyright lacks %s", head)
			continue
		}
		if rest := copyright[i+len(head):]; !bytes.Contains(rest[:min(len(rest), 4000)], []byte("Copyright")) && !bytes.Contains(rest[:min(len(rest), 4000)], []byte("License")) {
			t.Errorf("no license text under %s", f[1])
		}
	}
	if deps < 10 || !bytes.Contains(copyright, []byte("Go (runtime and standard library)")) || !bytes.Contains(copyright, []byte("socket.io-client")) {
		t.Errorf("copyright names %d modules, Go: %v, socket.io-client: %v", deps,
			bytes.Contains(copyright, []byte("Go (runtime")), bytes.Contains(copyright, []byte("socket.io-client")))
	}

	unit, _ := os.ReadFile(filepath.Join(x, "lib/systemd/system/icegate.service"))
	if src, _ := os.ReadFile("systemd/icegate.service"); !bytes.Equal(unit, src) {
		t.Error("packaged unit differs from deploy/systemd/icegate.service")
	}

	if os.Geteuid() != 0 {
		t.Log("not root: dpkg -i --root skipped")
		return
	}
	dpkg := need(t, "dpkg", "ICEGATE_REQUIRE_DEB")
	root := filepath.Join(tmp, "root")
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{
		"var/lib/dpkg/status": "",
		"etc/passwd":          "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":           "root:x:0:\n",
		"etc/shadow":          "root:*:19000:0:99999:7:::\n",
		"etc/gshadow":         "root:*::\n",
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// --force-depends: the empty root has no passwd package installed.
	dpkgRun := func(args ...string) string {
		t.Helper()
		args = append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends", "--log=/dev/null"}, args...)
		out, err := exec.Command(dpkg, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	dpkgRun("-i", deb)
	if st := dpkgRun("-s", "icegate"); !strings.Contains(st, "Status: install ok installed") {
		t.Fatalf("after dpkg -i:\n%s", st)
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	if !strings.Contains(string(passwd), "\nicegate:x:") || !strings.Contains(string(passwd), ":/var/lib/icegate:/usr/sbin/nologin") {
		t.Errorf("no icegate system user:\n%s", passwd)
	}
	var gid string
	for line := range strings.Lines(string(group)) {
		if f := strings.Split(line, ":"); f[0] == "icegate" && len(f) > 2 {
			gid = f[2]
		}
	}
	if gid == "" {
		t.Fatalf("no icegate group:\n%s", group)
	}
	st, err := exec.Command("stat", "-c", "%a %u %g", filepath.Join(root, "etc/icegate/icegate.hcl")).Output()
	if err != nil || strings.TrimSpace(string(st)) != "640 0 "+gid {
		t.Errorf("/etc/icegate/icegate.hcl is %q %v, want mode 640, root, group icegate (%s)", st, err, gid)
	}
	if wants, _ := filepath.Glob(filepath.Join(root, "etc/systemd/system/*.wants/icegate.service")); len(wants) > 0 {
		t.Errorf("the package enabled the service: %v", wants)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/icegate")); err != nil {
		t.Error(err)
	}

	// Installing again (an upgrade to the same version) keeps the user.
	dpkgRun("-i", deb)
	if passwd2, _ := os.ReadFile(filepath.Join(root, "etc/passwd")); strings.Count("\n"+string(passwd2), "\nicegate:") != 1 {
		t.Errorf("reinstall added the user again:\n%s", passwd2)
	}

	if err := os.MkdirAll(filepath.Join(root, "var/lib/icegate"), 0o750); err != nil {
		t.Fatal(err)
	}
	dpkgRun("-P", "icegate")
	for _, gone := range []string{"usr/bin/icegate", "etc/icegate/icegate.hcl", "lib/systemd/system/icegate.service", "var/lib/icegate"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s after purge: %v", gone, err)
		}
	}
}

// TestMakeInstall: `make install` with DESTDIR and PREFIX stages the
// binary under PREFIX, the unit pointing at it, and the default config,
// which a second install keeps.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	mk := need(t, "make", "ICEGATE_REQUIRE_DEB")
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "dest")
	install := func() {
		t.Helper()
		cmd := exec.Command(mk, "--no-print-directory", "-s", "install", "DESTDIR="+dest, "PREFIX=/opt/icegate",
			"GO="+filepath.Join(runtime.GOROOT(), "bin", "go"), "BIN="+filepath.Join(tmp, "icegate"))
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
	}
	install()
	bin := filepath.Join(dest, "opt/icegate/bin/icegate")
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "icegate ") || strings.Contains(string(out), "icegate dev") {
		t.Errorf("installed icegate version: %q %v", out, err)
	}
	unit, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system/icegate.service"))
	if err != nil || !strings.Contains(string(unit), "ExecStart=/opt/icegate/bin/icegate serve -config /etc/icegate/icegate.hcl\n") {
		t.Errorf("installed unit does not run the installed binary: %v\n%s", err, unit)
	}
	conf := filepath.Join(dest, "etc/icegate/icegate.hcl")
	if out, err := exec.Command(bin, "config", "check", conf).CombinedOutput(); err != nil {
		t.Errorf("config check: %v\n%s", err, out)
	}
	if err := os.WriteFile(conf, []byte("realm = \"mine\"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	install()
	if b, _ := os.ReadFile(conf); string(b) != "realm = \"mine\"\n" {
		t.Errorf("a second make install replaced the config:\n%s", b)
	}
}
