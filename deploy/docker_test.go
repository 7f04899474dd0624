package deploy

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// No Docker daemon runs where icegate's tests run, so the image itself is
// not built here (docs/docker.md). TestDockerfile checks what can be
// checked without one: the build stage's go build line is the one `make
// build` runs and, run as written, builds a static binary that names the
// stamped version; the config the image copies passes `config check`; the
// HEALTHCHECK's command, run from that binary, passes against a server
// started with that config and fails with none; compose.yaml uses host
// networking and names files that exist.
func TestDockerfile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	df := readLines(t, "docker/Dockerfile")

	// The go build line, as the build stage runs it.
	var build string
	for _, l := range df {
		if strings.HasPrefix(l, "RUN CGO_ENABLED=0 go build ") {
			build = strings.TrimPrefix(l, "RUN ")
		}
	}
	if build == "" {
		t.Fatal("Dockerfile: no `RUN CGO_ENABLED=0 go build` line")
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	ldflags := regexp.MustCompile(`(?m)^LDFLAGS := (.*)$`).FindSubmatch(mk)
	if ldflags == nil {
		t.Fatal("Makefile: no LDFLAGS")
	}
	wantLD := strings.ReplaceAll(string(ldflags[1]), "$(VERSION)", "${VERSION}")
	if !strings.Contains(build, "-trimpath") || !strings.Contains(build, `-ldflags "`+wantLD+`"`) {
		t.Errorf("Dockerfile builds with %q; make build uses -trimpath -ldflags %q", build, wantLD)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "icegate")
	cmdline := strings.ReplaceAll(strings.ReplaceAll(build, "${VERSION}", "docker-test"), "/out/icegate", bin)
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, out)
	}
	if out, _ := exec.Command(bin, "version").Output(); strings.TrimSpace(string(out)) != "icegate docker-test" {
		t.Errorf("icegate version: %q, want the stamped version", out)
	}
	if file, err := exec.Command("file", bin).Output(); err == nil && !strings.Contains(string(file), "statically linked") {
		t.Errorf("not a static binary: %s", file)
	}

	// Every file the final stage copies from the context exists, and the
	// config passes the check the build stage runs.
	for _, l := range df {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "COPY" && strings.HasPrefix(f[1], "deploy/") {
			if _, err := os.Stat("../" + f[1]); err != nil {
				t.Errorf("Dockerfile copies %s: %v", f[1], err)
			}
		}
	}
	if out, err := exec.Command(bin, "config", "check", "docker/icegate.hcl").CombinedOutput(); err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), ": ok") {
		t.Errorf("config check docker/icegate.hcl: %v\n%s", err, out)
	}

	// The HEALTHCHECK, run as written, against the image's config on a
	// free port (the host's 3478 may be taken).
	var hc []string
	for _, l := range df {
		if rest, ok := strings.CutPrefix(l, "HEALTHCHECK "); ok {
			m := regexp.MustCompile(`CMD \[(.*)\]`).FindStringSubmatch(rest)
			if m == nil {
				t.Fatalf("HEALTHCHECK not in exec form: %s", l)
			}
			for _, a := range strings.Split(m[1], ",") {
				hc = append(hc, strings.Trim(strings.TrimSpace(a), `"`))
			}
		}
	}
	if len(hc) < 2 || hc[0] != "/usr/bin/icegate" {
		t.Fatalf("HEALTHCHECK runs %q, not the binary the image installs", hc)
	}
	port := freeUDPPort(t)
	for i, a := range hc {
		if a == "127.0.0.1:3478" {
			hc[i] = fmt.Sprintf("127.0.0.1:%d", port)
		}
	}
	if out, err := exec.Command(bin, hc[1:]...).CombinedOutput(); err == nil {
		t.Error("healthcheck passes with no server listening")
	} else if !strings.Contains(string(out), "connection refused") {
		// Loopback answers ICMP port unreachable at once: the operator
		// learns nothing listens, not that the server is slow.
		t.Errorf("healthcheck with nothing listening says %q, want connection refused", out)
	}
	cfg, err := os.ReadFile("docker/icegate.hcl")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(cfg), "port     = 3478", fmt.Sprintf("port     = %d\n  addresses = [\"127.0.0.1\"]", port), 1)
	conf = strings.Replace(conf, "tls_port = 5349", fmt.Sprintf("tls_port = %d\n  tls = false\n  dtls = false", port+1), 1)
	conf = strings.Replace(conf, `listen = "127.0.0.1:8080"`, `listen = ""`, 1)
	conf = strings.Replace(conf, "min_port = 49152", "min_port = 53000\n  ipv4_bind = \"127.0.0.1\"\n  ipv6_bind = \"\"\n  private_ok = true", 1)
	conf = strings.Replace(conf, "max_port = 65535", "max_port = 53099", 1)
	cfgPath := filepath.Join(dir, "icegate.hcl")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(bin, "serve", "-config", cfgPath)
	var logs strings.Builder
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		if t.Failed() {
			t.Logf("server:\n%s", logs.String())
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := exec.Command(bin, hc[1:]...).CombinedOutput()
		if err == nil {
			t.Logf("healthcheck: %s", strings.TrimSpace(string(out)))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck never passed: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// compose.yaml: host networking, and the files it names exist.
	compose := strings.Join(readLines(t, "docker/compose.yaml"), "\n")
	if !regexp.MustCompile(`(?m)^\s+network_mode: host$`).MatchString(compose) {
		t.Error("compose.yaml does not use network_mode: host")
	}
	if !strings.Contains(compose, "dockerfile: deploy/docker/Dockerfile") || !strings.Contains(compose, "context: ../..") {
		t.Error("compose.yaml does not build deploy/docker/Dockerfile from the repository's root")
	}
	if !strings.Contains(compose, "./icegate.hcl:/etc/icegate/icegate.hcl") {
		t.Error("compose.yaml does not mount docker/icegate.hcl where the image reads its config")
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(b), "\n")
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}
