package layers

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// allowed lists, for each of icegate's packages, the other icegate packages
// it may import directly. A package missing here fails the test: a new
// package states its place.
var allowed = map[string][]string{
	"icegate/auth":                 nil,
	"icegate/config":               {"icegate/auth"},
	"icegate/internal/stunwire":    nil,
	"icegate/internal/udploop":     {"icegate/internal/stunwire"},
	"icegate/internal/kfast":       {"icegate/internal/stunwire"}, // the kernel fast path; turn tells it which flows to take
	"icegate/internal/ratelog":     {"icegate/internal/tokenbucket"},
	"icegate/internal/tokenbucket": nil,
	"icegate/internal/certfile":    nil,
	"icegate/internal/portshare":   nil,
	"icegate/internal/proxied":     {"icegate/internal/ratelog"},
	"icegate/internal/acmecert":    nil, // certmagic; never turn or signaling
	"icegate/internal/testutil":    nil,
	"icegate/internal/netnstest":   nil, // network namespaces for tests
	"icegate/internal/leakcheck":   nil,
	"icegate/internal/coturn":      nil,
	"icegate/internal/icegatebin":  nil,
	"icegate/internal/layers":      nil,
	"icegate/internal/redistest":   nil,
	"icegate/internal/sigload":     nil,
	"icegate/internal/nodetest":    nil,
	"icegate/usage":                nil, // usage buckets (and their Redis keys); no relay, no signaling
	"icegate/internal/adminpage":   nil, // the admin page's files; it talks to the admin API over HTTP only
	"icegate/internal/fdcount":     nil,
	"icegate/internal/hellosplit":  nil, // TLS record re-framing under the HTTPS listener; no TLS of its own
	"icegate/stun":                 {"icegate/internal/stunwire"},
	"icegate/stun/natcheck":        {"icegate/stun", "icegate/internal/stunwire"},
	"icegate/turn": {"icegate/auth", "icegate/stun", "icegate/internal/stunwire",
		"icegate/internal/udploop", "icegate/internal/ratelog", "icegate/internal/tokenbucket", "icegate/internal/certfile",
		"icegate/internal/portshare", "icegate/internal/proxied", "icegate/stun/natcheck", "icegate/internal/fdcount",
		"icegate/internal/kfast"},
	"icegate/signaling": {"icegate/auth", "icegate/internal/ratelog", "icegate/internal/tokenbucket",
		"icegate/signaling/engineio", "icegate/signaling/socketio", "icegate/internal/fdcount"},
	// The Redis bus implements signaling.Bus; its tests run bustest on a
	// real redis-server. signaling itself never imports either.
	"icegate/signaling/redisbus": {"icegate/signaling"},
	"icegate/signaling/bustest":  {"icegate/signaling"},
	// TURN load steering: node records in Redis and the choice among
	// them; it knows neither the relay nor signaling (cmd wires both).
	"icegate/steer": {"icegate/internal/redistest"},
	// Engine.IO is wire mechanics under socket.io: it knows nothing of
	// sessions, rooms or the bus (signaling adapts it to a Transport).
	"icegate/signaling/engineio": nil,
	// The socket.io packet codec: bytes to packets, deciding nothing.
	"icegate/signaling/socketio": nil,
	"icegate/cmd/icegate": {"icegate/auth", "icegate/config", "icegate/turn", "icegate/signaling",
		"icegate/signaling/redisbus", "icegate/steer", "icegate/stun", "icegate/stun/natcheck", "icegate/internal/certfile", "icegate/internal/acmecert",
		"icegate/internal/ratelog", "icegate/internal/udploop", "icegate/internal/portshare", "icegate/internal/proxied",
		"icegate/usage", "icegate/internal/adminpage", "icegate/internal/hellosplit"},
}

// Tools (benchmarks, labs, interop) may use anything but each other and
// the command. The config file's translations into turn.Config and
// signaling.Config live only in cmd/icegate (turn.go, signaling.go): a tool
// that runs a component in process builds its Config directly, as the
// components' own tests do.
const toolsPrefix = "icegate/tools/"

// forbidden are imports a package must not have: standard library packages
// directly (fmt itself reaches os), icegate's and third-party packages even
// indirectly. The reason is the package's promise.
var forbidden = map[string]struct {
	deps []string
	why  string
}{
	"icegate/auth": {[]string{"os", "net/http", "syscall", "golang.org/x/sys/unix", "github.com/pion/turn/v5"},
		"auth is pure: credentials and policy as computation, no I/O"},
	"icegate/internal/stunwire": {[]string{"github.com/pion/stun/v4", "net", "os"},
		"the wire codec depends on nothing but the byte layout"},
	"icegate/signaling": {[]string{"icegate/turn", "github.com/pion/turn/v5", "icegate/config", "github.com/redis/rueidis"},
		"signaling reaches the relay only through what cmd hands it, and takes its own Config, which cmd translates from the config file"},
	"icegate/turn": {[]string{"icegate/config", "github.com/hashicorp/hcl/v2"},
		"turn takes its own Config (turn/config.go), which cmd translates from the config file: the HCL schema stays in config and cmd"},
	"icegate/stun": {[]string{"icegate/turn", "github.com/pion/turn/v5"},
		"Binding answers never travel through the relay"},
	"icegate/steer": {[]string{"icegate/turn", "icegate/signaling", "github.com/pion/turn/v5"},
		"steering decides from node records; cmd feeds it the relay's load and hands its choices to the relay and to signaling"},
	"icegate/signaling/engineio": {[]string{"icegate/signaling", "icegate/auth"},
		"the Engine.IO server is transport mechanics; signaling adapts it, never the other way"},
	"icegate/signaling/socketio": {[]string{"icegate/signaling", "icegate/auth", "net"},
		"the socket.io codec is bytes to packets: no I/O, no sessions"},
	"icegate/usage": {[]string{"icegate/turn", "icegate/signaling", "github.com/pion/turn/v5"},
		"the usage record is told what was relayed (cmd wires the relay's hook to it): it knows nothing of TURN or signaling"},
	"icegate/internal/kfast": {[]string{"icegate/turn", "icegate/auth", "github.com/pion/turn/v5",
		"github.com/pion/stun/v4", "github.com/prometheus/client_golang/prometheus"},
		"the kernel fast path is mechanics: it takes flows and returns counters, and knows nothing of pion, credentials or metrics libraries"},
	"icegate/internal/udploop": {[]string{"icegate/turn", "icegate/auth", "github.com/pion/turn/v5",
		"github.com/pion/stun/v4", "github.com/prometheus/client_golang/prometheus"},
		"the socket mechanics know nothing of TURN, credentials or metrics libraries"},
}

// forbiddenDirect are imports a package must not have itself, whatever the
// packages it uses import.
var forbiddenDirect = map[string]struct {
	deps []string
	why  string
}{
	"icegate/turn": {[]string{"golang.org/x/sys/unix", "unsafe"},
		"raw system calls and unsafe stay in internal/udploop, the UDP mechanics the relay uses"},
}

type pkg struct {
	path    string
	imports []string
	deps    []string
}

func list(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{join .Imports \" \"}}|{{join .Deps \" \"}}", "icegate/...")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimSpace(line), "|")
		if len(f) != 3 {
			continue
		}
		pkgs = append(pkgs, pkg{path: f[0], imports: strings.Fields(f[1]), deps: strings.Fields(f[2])})
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func TestLayers(t *testing.T) {
	for _, p := range list(t) {
		for _, imp := range p.imports {
			if !strings.HasPrefix(imp, "icegate/") {
				continue
			}
			if imp == "icegate/cmd/icegate" {
				t.Errorf("%s imports the command", p.path)
				continue
			}
			if strings.HasPrefix(p.path, toolsPrefix) {
				if strings.HasPrefix(imp, toolsPrefix) {
					t.Errorf("tool %s imports tool %s", p.path, imp)
				}
				continue
			}
			ok, known := allowed[p.path]
			if !known {
				t.Errorf("package %s has no place in the layer table (internal/layers/layers_test.go)", p.path)
				break
			}
			if !slices.Contains(ok, imp) {
				t.Errorf("%s imports %s, which the layers do not allow", p.path, imp)
			}
		}
		if rule, ok := forbidden[p.path]; ok {
			for _, d := range rule.deps {
				in := p.imports
				if !std(d) {
					in = p.deps
				}
				if slices.Contains(in, d) {
					t.Errorf("%s depends on %s: %s", p.path, d, rule.why)
				}
			}
		}
		if rule, ok := forbiddenDirect[p.path]; ok {
			for _, d := range rule.deps {
				if slices.Contains(p.imports, d) {
					t.Errorf("%s imports %s: %s", p.path, d, rule.why)
				}
			}
		}
	}
}

// std reports whether an import path is in the standard library: its first
// element has no dot, and it is not one of ours.
func std(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".") && first != "icegate"
}
