package natlab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"icegate/internal/icegatebin"
	"icegate/stun/natcheck"
)

// The lab's addresses: documentation ranges and 10.200.0.0/16 only, on
// veths that exist only inside the lab's namespaces.
const (
	serverA1  = "203.0.113.10"
	serverA2  = "203.0.113.11"
	natAddr   = "203.0.113.1"
	clientIP  = "10.200.1.2"
	routerLAN = "10.200.1.1"
	peerPort  = "5000"
	labUser   = "lab"
	labPass   = "lab-password-0123"
)

// scenario is one simulated NAT.
type scenario struct {
	name    string // short, part of the namespace names
	title   string
	nft     string // the router's ruleset, "" for none
	mapping natcheck.Behavior
	filter  natcheck.Behavior
	nat     bool
	udp     bool
	hairpin bool // expected from natcheck (only checked when nat)
	classic string
	// lifetime, when set, is the router's nf_conntrack_udp_timeout, and
	// natcheck -lifetime must find it.
	lifetime time.Duration
	// natdiscoveryDeviates is the documented case where natdiscovery,
	// against a server that follows RFC 5780 Table 1, reports a different
	// mapping than against coturn (see docs/nat.md).
	natdiscoveryDeviates bool
}

const fullConeMap = `
  map fc {
    type inet_service : ipv4_addr . inet_service
    flags dynamic,timeout
    timeout 2m
  }
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr ` + natAddr + ` meta l4proto udp dnat ip addr . port to udp dport map @fc
  }
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade
    oifname "lan*" ct status dnat ip saddr 10.200.0.0/16 snat ip to ` + natAddr + `
  }
  chain fill {
    type filter hook postrouting priority srcnat + 100; policy accept;
    oifname "wan" meta l4proto udp update @fc { udp sport : ct original ip saddr . ct original proto-src }
  }
`

var scenarios = []scenario{
	{
		name: "none", title: "no NAT (routing only)",
		mapping: natcheck.EndpointIndependent, filter: natcheck.EndpointIndependent, udp: true, classic: "open internet",
	},
	{
		name: "eimeif", title: "EIM + EIF (full cone, nft map, hairpinning)",
		nft:     "table ip lab {" + fullConeMap + "}",
		mapping: natcheck.EndpointIndependent, filter: natcheck.EndpointIndependent, nat: true, udp: true, hairpin: true,
		classic: "full cone",
	},
	{
		name: "eimadf", title: "EIM + ADF (restricted cone, nft map and permission set)",
		nft: "table ip lab {" + fullConeMap + `
  set perm {
    type ipv4_addr . inet_service . ipv4_addr
    flags dynamic,timeout
    timeout 2m
  }
  chain filt {
    type filter hook forward priority filter; policy accept;
    oifname "wan" meta l4proto udp update @perm { ip saddr . udp sport . ip daddr }
    iifname "wan" meta l4proto udp ct state new ct status dnat ip daddr . udp dport . ip saddr != @perm drop
  }
}`,
		mapping: natcheck.EndpointIndependent, filter: natcheck.AddressDependent, nat: true, udp: true, hairpin: true,
		classic: "restricted cone",
	},
	{
		name: "eimapdf", title: "EIM + APDF (port restricted cone, plain masquerade)",
		nft: `table ip lab {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade
  }
}`,
		mapping: natcheck.EndpointIndependent, filter: natcheck.AddressAndPortDependent, nat: true, udp: true,
		classic: "port restricted cone", lifetime: 5 * time.Second,
	},
	{
		name: "adm", title: "ADM + APDF (snat to a jhash of source and destination IP)",
		nft: `table ip lab {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" meta l4proto udp snat ip to ` + natAddr + ` : jhash ip saddr . udp sport . ip daddr mod 16384 offset 40000
    oifname "wan" masquerade
  }
}`,
		mapping: natcheck.AddressDependent, filter: natcheck.AddressAndPortDependent, nat: true, udp: true,
		classic: "symmetric", natdiscoveryDeviates: true,
	},
	{
		name: "apdm", title: "APDM + APDF (symmetric, masquerade random)",
		nft: `table ip lab {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade random
  }
}`,
		mapping: natcheck.AddressAndPortDependent, filter: natcheck.AddressAndPortDependent, nat: true, udp: true,
		classic: "symmetric",
	},
	{
		name: "blocked", title: "UDP blocked (forward drops UDP; TURN over TCP)",
		nft: `table ip lab {
  chain filt {
    type filter hook forward priority filter; policy accept;
    meta l4proto udp drop
  }
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade
  }
}`,
		mapping: natcheck.Unknown, filter: natcheck.Unknown, nat: true, udp: false, classic: "UDP blocked",
	},
}

// available says why the lab cannot run here, or "".
func available() string {
	if runtime.GOOS != "linux" {
		return "not Linux"
	}
	if os.Geteuid() != 0 {
		return "not root (network namespaces need it)"
	}
	for _, cmd := range []string{"ip", "nft", "conntrack", "turnserver", "turnutils_natdiscovery", "turnutils_uclient", "turnutils_peer"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return cmd + " not found (make deps installs it)"
		}
	}
	probe := fmt.Sprintf("iglab%dprobe", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		return "cannot create a network namespace: " + strings.TrimSpace(string(out))
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	return ""
}

// removeStale deletes namespaces left by an earlier lab run that was
// killed: only names with this lab's prefix whose process is gone.
func removeStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	re := regexp.MustCompile(`^iglab(\d+)`)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		name := f[0]
		m := re.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		if pid, _ := strconv.Atoi(m[1]); pid == os.Getpid() || processAlive(pid) {
			continue
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// result is one scenario's row of the results table.
type result struct {
	sc                        scenario
	natcheck                  *natcheck.Report
	lifetime                  string
	closedPort                string
	ndIcegate, ndCoturn       ndResult
	turn                      string
	natcheckTime, labDuration time.Duration
}

type ndResult struct {
	noNAT              bool
	mapping, filtering string
}

func (r ndResult) String() string {
	m, f := r.mapping, r.filtering
	if m == "" {
		m = "none"
	}
	if f == "" {
		f = "none"
	}
	s := m + " / " + f
	if r.noNAT {
		s = "No NAT; " + s
	}
	return s
}

var (
	resultsMu sync.Mutex
	results   []result
)

func TestNATLab(t *testing.T) {
	if why := available(); why != "" {
		if os.Getenv("ICEGATE_REQUIRE_NATLAB") == "1" {
			t.Fatalf("NAT lab required (ICEGATE_REQUIRE_NATLAB=1) but cannot run: %s", why)
		}
		t.Skipf("NAT lab skipped: %s. The Go tests on pion's vnet (stun/natcheck) still ran.", why)
	}
	removeStale()
	bin := buildIcegate(t)
	start := time.Now()
	t.Run("scenarios", func(t *testing.T) {
		for _, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				runScenario(t, bin, sc)
			})
		}
	})
	resultsMu.Lock()
	defer resultsMu.Unlock()
	slices.SortFunc(results, func(a, b result) int {
		return slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == a.sc.name }) -
			slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == b.sc.name })
	})
	table := resultsTable(results)
	t.Logf("NAT lab finished in %s:\n%s", time.Since(start).Round(time.Second), table)
	if path := os.Getenv("NATLAB_RESULTS"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func buildIcegate(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("ICEGATE_NATLAB_BIN"); bin != "" {
		return bin // a binary built elsewhere, e.g. from another checkout
	}
	bin := filepath.Join(t.TempDir(), "icegate")
	if err := icegatebin.Build(t.Context(), bin, icegatebin.Version(t.Context())); err != nil {
		t.Fatalf("building icegate: %v", err)
	}
	return bin
}

// lab is one scenario's namespaces.
type lab struct {
	t                  *testing.T
	srv, rtr, cli      string
	dir                string
	procs              []*exec.Cmd
	procMu             sync.Mutex
	hasPerm, hasFCMap  bool
	flushedConntrackOK bool
}

func (l *lab) run(ctx context.Context, ns string, stdin string, args ...string) (string, error) {
	full := append([]string{"netns", "exec", ns}, args...)
	if ns == "" {
		full = args[1:]
		cmd := exec.CommandContext(ctx, args[0], full...)
		return combined(cmd, stdin)
	}
	cmd := exec.CommandContext(ctx, "ip", full...)
	return combined(cmd, stdin)
}

func combined(cmd *exec.Cmd, stdin string) (string, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	return out.String(), err
}

// must runs a setup command, failing the test on error.
func (l *lab) must(args ...string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	if out, err := combined(cmd, ""); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// start runs a long-lived process in ns until the scenario ends; its output
// goes to a log file shown when the test fails.
func (l *lab) start(ns, logName string, args ...string) {
	l.t.Helper()
	logPath := filepath.Join(l.dir, logName)
	f, err := os.Create(logPath)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("start %v: %v", args, err)
	}
	_ = f.Close()
	l.procMu.Lock()
	l.procs = append(l.procs, cmd)
	l.procMu.Unlock()
	l.t.Cleanup(func() {
		// ip netns exec execs the program, so this PID is the program's.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if l.t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			l.t.Logf("%s (%s):\n%s", logName, ns, b)
		}
	})
}

func newLab(t *testing.T, sc scenario) *lab {
	pfx := fmt.Sprintf("iglab%d%s", os.Getpid(), sc.name)
	l := &lab{t: t, srv: pfx + "-s", rtr: pfx + "-r", cli: pfx + "-c", dir: t.TempDir()}
	// Namespaces go last (cleanups run in reverse): processes are killed first.
	t.Cleanup(func() {
		for _, ns := range []string{l.cli, l.rtr, l.srv} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, ns := range []string{l.srv, l.rtr, l.cli} {
		l.must("ip", "netns", "add", ns)
		l.must("ip", "-n", ns, "link", "set", "lo", "up")
	}
	// veths created inside the namespaces: nothing touches the host's.
	l.must("ip", "-n", l.rtr, "link", "add", "wan", "type", "veth", "peer", "name", "wan", "netns", l.srv)
	l.must("ip", "-n", l.rtr, "link", "add", "lan1", "type", "veth", "peer", "name", "eth0", "netns", l.cli)
	l.must("ip", "-n", l.srv, "addr", "add", serverA1+"/24", "dev", "wan")
	l.must("ip", "-n", l.srv, "addr", "add", serverA2+"/24", "dev", "wan")
	l.must("ip", "-n", l.srv, "link", "set", "wan", "up")
	l.must("ip", "-n", l.srv, "route", "add", "10.200.0.0/16", "via", natAddr)
	l.must("ip", "-n", l.rtr, "addr", "add", natAddr+"/24", "dev", "wan")
	l.must("ip", "-n", l.rtr, "addr", "add", routerLAN+"/24", "dev", "lan1")
	l.must("ip", "-n", l.rtr, "link", "set", "wan", "up")
	l.must("ip", "-n", l.rtr, "link", "set", "lan1", "up")
	l.must("ip", "netns", "exec", l.rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	if sc.lifetime > 0 {
		// Bindings of this router then live this long when idle.
		l.must("ip", "netns", "exec", l.rtr, "sysctl", "-qw",
			fmt.Sprintf("net.netfilter.nf_conntrack_udp_timeout=%d", int(sc.lifetime.Seconds())))
	}
	l.must("ip", "-n", l.cli, "addr", "add", clientIP+"/24", "dev", "eth0")
	l.must("ip", "-n", l.cli, "link", "set", "eth0", "up")
	l.must("ip", "-n", l.cli, "route", "add", "default", "via", routerLAN)
	if sc.nft != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := l.run(ctx, l.rtr, sc.nft, "nft", "-f", "-"); err != nil {
			t.Fatalf("nft ruleset for %s: %v\n%s\n%s", sc.name, err, out, sc.nft)
		}
		l.hasFCMap = strings.Contains(sc.nft, "map fc")
		l.hasPerm = strings.Contains(sc.nft, "set perm")
	}
	return l
}

// flush forgets every mapping and permission the router holds, so that one
// test's traffic cannot open the way for the next.
func (l *lab) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = l.run(ctx, l.rtr, "", "conntrack", "-F")
	if l.hasFCMap {
		_, _ = l.run(ctx, l.rtr, "", "nft", "flush", "map", "ip", "lab", "fc")
	}
	if l.hasPerm {
		_, _ = l.run(ctx, l.rtr, "", "nft", "flush", "set", "ip", "lab", "perm")
	}
}

func (l *lab) startServers(bin string) {
	cfg := fmt.Sprintf(`realm = "natlab"
log {
  level = "info"
}
listen {
  addresses = ["%s"]
  port      = 3478
  tls       = false
  dtls      = false
}
relay {
  min_port  = 49152
  max_port  = 49999
  ipv4_bind = "%s"
  ipv6_bind = ""
}
auth {
  user "%s" {
    password = "%s"
  }
}
policy {
  presets = ["documentation"]
}
stun {
  alternate_address = "%s"
  alternate_port    = 3479
}
metrics {
  listen = ""
}
`, serverA1, serverA1, labUser, labPass, serverA2)
	path := filepath.Join(l.dir, "icegate.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		l.t.Fatal(err)
	}
	l.start(l.srv, "icegate.log", bin, "serve", "-config", path)
	l.start(l.srv, "turnserver.log", "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls",
		"-L", serverA1, "-L", serverA2, "--listening-port", "4478", "--alt-listening-port", "4479",
		"-E", serverA1, "--min-port", "50000", "--max-port", "50999", "--relay-threads", "1",
		"--lt-cred-mech", "--user", labUser+":"+labPass, "--realm", "natlab",
		"--pidfile", filepath.Join(l.dir, "turnserver.pid"), "--log-file", "stdout", "--simple-log")
	l.start(l.srv, "peer.log", "turnutils_peer", "-L", serverA1, "-p", peerPort)
	// Wait until every port is bound (bounded).
	want := []string{serverA1 + ":3478", serverA1 + ":3479", serverA2 + ":3478", serverA2 + ":3479",
		serverA1 + ":4478", serverA2 + ":4479", serverA1 + ":" + peerPort}
	for range 100 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, _ := l.run(ctx, l.srv, "", "ss", "-Hunl")
		cancel()
		if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(out, w+" ") }) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatal("servers did not bind their ports within 10 s")
}

var ndLine = regexp.MustCompile(`NAT with (Endpoint Independent|Address Dependent|Address and Port Dependent) (Mapping|Filtering)!`)

// natdiscovery runs coturn's independent client against port.
func (l *lab) natdiscovery(port string) (ndResult, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, _ := l.run(ctx, l.cli, "", "turnutils_natdiscovery", "-m", "-f", "-L", clientIP, "-p", port, serverA1)
	var r ndResult
	r.noNAT = strings.Contains(out, "No NAT!")
	for _, m := range ndLine.FindAllStringSubmatch(out, -1) {
		if m[2] == "Mapping" {
			r.mapping = m[1]
		} else {
			r.filtering = m[1]
		}
	}
	return r, out
}

// turnThrough allocates on icegate from behind the NAT and relays packets
// to the echo peer; over TCP when UDP is blocked.
func (l *lab) turnThrough(tcp bool) (string, bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"turnutils_uclient", "-u", labUser, "-w", labPass, "-e", serverA1, "-r", peerPort,
		"-n", "20", "-m", "1", "-l", "100", "-z", "5", "-c", "-p", "3478"}
	transport := "UDP"
	if tcp {
		args = append(args, "-t")
		transport = "TCP"
	}
	out, err := l.run(ctx, l.cli, "", append(args, serverA1)...)
	m := regexp.MustCompile(`Total lost packets (\d+) \(([\d.]+)%\)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		return "TURN/" + transport + " failed", false, out
	}
	if m[1] != "0" {
		return fmt.Sprintf("TURN/%s: %s packets lost of 20", transport, m[1]), false, out
	}
	return "TURN/" + transport + ": 20/20 echoed", true, out
}

func runScenario(t *testing.T, bin string, sc scenario) {
	begin := time.Now()
	l := newLab(t, sc)
	l.startServers(bin)
	res := result{sc: sc}

	// 1. icegate natcheck against icegate.
	l.flush()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t0 := time.Now()
	out, err := l.run(ctx, l.cli, "", bin, "natcheck", "-json", "-timeout", "400ms", "stun:"+serverA1+":3478")
	cancel()
	res.natcheckTime = time.Since(t0)
	var rep natcheck.Report
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("natcheck: %v\n%s", err, out)
	}
	res.natcheck = &rep
	// Without UDP nothing says whether there is a NAT: null, not false.
	natOK := (sc.udp && is(rep.NAT, sc.nat)) || (!sc.udp && rep.NAT == nil)
	if !is(rep.UDP, sc.udp) || rep.Mapping != sc.mapping || rep.Filtering != sc.filter || rep.Classic != sc.classic ||
		!natOK || rep.ServerProblem != "" || rep.Confidence != natcheck.High {
		t.Errorf("natcheck: udp=%s nat=%s %s mapping, %s filtering, %q, problem %q, confidence %s; want udp=%v nat=%v %s, %s, %q\n%s",
			b(rep.UDP), b(rep.NAT), rep.Mapping, rep.Filtering, rep.Classic, rep.ServerProblem, rep.Confidence,
			sc.udp, sc.nat, sc.mapping, sc.filter, sc.classic, out)
	}

	// 1b. A closed port on the server: ICMP port unreachable comes back
	// through the NAT (conntrack relates it to the flow), and natcheck
	// says the server is not answering there; where UDP is dropped on the
	// way no ICMP comes back, and it stays "UDP blocked".
	l.flush()
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	out, err = l.run(ctx, l.cli, "", bin, "natcheck", "-json", "-timeout", "400ms", "stun:"+serverA1+":3490")
	cancel()
	var closed natcheck.Report
	if err != nil || json.Unmarshal([]byte(out), &closed) != nil {
		t.Fatalf("natcheck against a closed port: %v\n%s", err, out)
	}
	wantReach := natcheck.PortUnreachable
	if !sc.udp {
		wantReach = natcheck.NoAnswer
	}
	if closed.Reach != wantReach || (sc.udp && (closed.UDP != nil || closed.Classic != "server not answering on that port")) {
		t.Errorf("natcheck against a closed port: reach %q udp %s %q; want %q\n%s", closed.Reach, b(closed.UDP), closed.Classic, wantReach, out)
	}
	res.closedPort = string(closed.Reach)
	if sc.udp && sc.nat && (rep.Hairpinning == nil || *rep.Hairpinning != sc.hairpin) {
		t.Errorf("natcheck: hairpinning %v, want %v\n%s", rep.Hairpinning, sc.hairpin, out)
	}

	// 2. coturn's natdiscovery against icegate, then against coturn.
	l.flush()
	nd1, out1 := l.natdiscovery("3478")
	l.flush()
	nd2, out2 := l.natdiscovery("4478")
	res.ndIcegate, res.ndCoturn = nd1, nd2
	if dir := os.Getenv("NATLAB_LOGDIR"); dir != "" {
		// Evidence for docs/nat.md.
		_ = os.WriteFile(filepath.Join(dir, sc.name+"-natcheck.json"), []byte(out), 0o644)
		_ = os.WriteFile(filepath.Join(dir, sc.name+"-natdiscovery-icegate.txt"), []byte(out1), 0o644)
		_ = os.WriteFile(filepath.Join(dir, sc.name+"-natdiscovery-coturn.txt"), []byte(out2), 0o644)
		l.flush()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		text, _ := l.run(ctx, l.cli, "", bin, "natcheck", "-timeout", "400ms", "stun:"+serverA1+":3478")
		cancel()
		_ = os.WriteFile(filepath.Join(dir, sc.name+"-natcheck.txt"), []byte(text), 0o644)
	}
	switch {
	case sc.natdiscoveryDeviates:
		// natdiscovery sends mapping test III to the OTHER-ADDRESS of test
		// II's response; RFC 5780 Table 1 makes that A1:P2, so it measures
		// a change of IP where it meant a change of port (docs/nat.md).
		if nd1.filtering != nd2.filtering || nd1.mapping != "Address and Port Dependent" || nd2.mapping != "Address Dependent" {
			t.Errorf("natdiscovery: icegate %s, coturn %s; want the documented deviation (APDM vs ADM)\nicegate:\n%s\ncoturn:\n%s", nd1, nd2, out1, out2)
		}
	case nd1 != nd2:
		t.Errorf("natdiscovery disagrees: icegate %s, coturn %s\nicegate:\n%s\ncoturn:\n%s", nd1, nd2, out1, out2)
	}

	// 3. The binding lifetime, where the router's is known.
	if sc.lifetime > 0 {
		l.flush()
		limit := 2 * sc.lifetime
		ctx, cancel := context.WithTimeout(context.Background(), limit+60*time.Second)
		t0 := time.Now()
		out, err := l.run(ctx, l.cli, "", bin, "natcheck", "-json", "-timeout", "400ms", "-lifetime",
			"-lifetime-max", limit.String(), "stun:"+serverA1+":3478")
		took := time.Since(t0)
		cancel()
		var rep natcheck.Report
		// Progress goes to stderr, which run mixes in: the JSON is the
		// last part of the output.
		js := out[max(0, strings.Index(out, "{\n")):]
		if err != nil || json.Unmarshal([]byte(js), &rep) != nil {
			t.Fatalf("natcheck -lifetime: %v\n%s", err, out)
		}
		lt := rep.Lifetime
		if lt == nil || lt.AtLeastSeconds == nil || lt.BelowSeconds == nil ||
			*lt.BelowSeconds < sc.lifetime.Seconds()-1 || *lt.AtLeastSeconds > sc.lifetime.Seconds()+1 {
			t.Errorf("natcheck -lifetime: want about %s\n%s", sc.lifetime, out)
		} else {
			res.lifetime = fmt.Sprintf("%.1f-%.1f s (conntrack %s; natcheck took %.1f s with -lifetime-max %s)",
				*lt.AtLeastSeconds, *lt.BelowSeconds, sc.lifetime, took.Seconds(), limit)
		}
		// The lifetime test ends by -lifetime-max; the other tests take
		// a few seconds more.
		if took > limit+10*time.Second {
			t.Errorf("natcheck -lifetime -lifetime-max %s took %s", limit, took)
		}
		if !strings.Contains(out, "natcheck: lifetime: opening ") {
			t.Errorf("natcheck -lifetime showed no progress:\n%s", out)
		}
	}

	// 4. TURN through the NAT, end to end.
	l.flush()
	summary, ok, tout := l.turnThrough(!sc.udp)
	res.turn = summary
	if !ok {
		t.Errorf("%s\n%s", summary, tout)
	}
	res.labDuration = time.Since(begin)
	resultsMu.Lock()
	results = append(results, res)
	resultsMu.Unlock()
}

func resultsTable(rs []result) string {
	var b strings.Builder
	b.WriteString("| simulated NAT | expected (mapping / filtering) | `icegate natcheck` vs icegate | hairpin | closed server port | natdiscovery vs icegate | natdiscovery vs coturn | TURN through the NAT |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	short := map[natcheck.Behavior]string{
		natcheck.EndpointIndependent: "EI", natcheck.AddressDependent: "AD", natcheck.AddressAndPortDependent: "APD", natcheck.Unknown: "?",
	}
	for _, r := range rs {
		exp := short[r.sc.mapping] + "M / " + short[r.sc.filter] + "F"
		if !r.sc.udp {
			exp = "UDP blocked"
		}
		nc := "-"
		hp := "-"
		if r.natcheck != nil {
			nc = fmt.Sprintf("%sM / %sF: %s (%.1f s)", short[r.natcheck.Mapping], short[r.natcheck.Filtering], r.natcheck.Classic, r.natcheckTime.Seconds())
			if !is(r.natcheck.UDP, true) {
				nc = fmt.Sprintf("%s (%.1f s)", r.natcheck.Classic, r.natcheckTime.Seconds())
			}
			if r.natcheck.Hairpinning != nil {
				hp = map[bool]string{true: "yes", false: "no"}[*r.natcheck.Hairpinning]
			}
		}
		if r.lifetime != "" {
			nc += "; binding lifetime " + r.lifetime
		}
		nd1, nd2 := ndShort(r.ndIcegate), ndShort(r.ndCoturn)
		if r.sc.natdiscoveryDeviates {
			nd1 += " (client deviation, see below)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.sc.title, exp, nc, hp, r.closedPort, nd1, nd2, r.turn)
	}
	return b.String()
}

func ndShort(r ndResult) string {
	ab := map[string]string{"Endpoint Independent": "EI", "Address Dependent": "AD", "Address and Port Dependent": "APD"}
	if r.mapping == "" && r.filtering == "" {
		return "no answer"
	}
	s := orQ(ab[r.mapping]) + "M / " + orQ(ab[r.filtering]) + "F"
	if r.noNAT {
		s = "\"No NAT\", " + s
	}
	return s
}

func orQ(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// is says whether p holds want (false for nil).
func is(p *bool, want bool) bool { return p != nil && *p == want }

// b prints a *bool as JSON does.
func b(p *bool) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

// lossRule drops 20% of the UDP the router forwards, both ways, at random
// (nft's numgen: the kernel here has no netem qdisc).
const lossRule = `
  chain loss {
    type filter hook forward priority filter - 10; policy accept;
    meta l4proto udp numgen random mod 100 < 20 drop
  }
`

// TestNATLabLossy runs natcheck ten times through each of two routers that
// drop 20% of UDP: a full cone, whose endpoint-independent filtering a lost
// answer would turn into a stricter verdict, and a port restricted cone,
// whose verdict rests on answers that never come. No run may give a wrong
// verdict with confidence high.
func TestNATLabLossy(t *testing.T) {
	if why := available(); why != "" {
		if os.Getenv("ICEGATE_REQUIRE_NATLAB") == "1" {
			t.Fatalf("NAT lab required (ICEGATE_REQUIRE_NATLAB=1) but cannot run: %s", why)
		}
		t.Skipf("NAT lab skipped: %s", why)
	}
	if testing.Short() {
		t.Skip("twenty natcheck runs")
	}
	removeStale()
	bin := buildIcegate(t)
	lossy := []scenario{
		{name: "lossfc", title: "EIM + EIF, 20% loss", nft: "table ip lab {" + fullConeMap + lossRule + "}",
			mapping: natcheck.EndpointIndependent, filter: natcheck.EndpointIndependent, nat: true, udp: true, hairpin: true, classic: "full cone"},
		{name: "lossprc", title: "EIM + APDF, 20% loss", nft: `table ip lab {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade
  }` + lossRule + "}",
			mapping: natcheck.EndpointIndependent, filter: natcheck.AddressAndPortDependent, nat: true, udp: true, classic: "port restricted cone"},
	}
	const runs = 10
	for _, sc := range lossy {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, sc)
			l.startServers(bin)
			var right, low, retries, missing int
			for i := range runs {
				l.flush()
				ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
				out, err := l.run(ctx, l.cli, "", bin, "natcheck", "-json", "-timeout", "300ms", "-interval", "100ms", "stun:"+serverA1+":3478")
				cancel()
				var rep natcheck.Report
				if err != nil || json.Unmarshal([]byte(out), &rep) != nil {
					t.Fatalf("natcheck: %v\n%s", err, out)
				}
				var wrong []string
				if rep.Reach != natcheck.Answered || rep.ServerProblem != "" {
					wrong = append(wrong, fmt.Sprintf("reach %q, problem %q", rep.Reach, rep.ServerProblem))
				}
				if rep.Mapping != natcheck.Unknown && rep.Mapping != sc.mapping {
					wrong = append(wrong, "mapping "+string(rep.Mapping))
				}
				if rep.Filtering != natcheck.Unknown && rep.Filtering != sc.filter {
					wrong = append(wrong, "filtering "+string(rep.Filtering))
				}
				if rep.Hairpinning != nil && *rep.Hairpinning != sc.hairpin {
					wrong = append(wrong, fmt.Sprint("hairpinning ", *rep.Hairpinning))
				}
				if len(wrong) > 0 && rep.Confidence == natcheck.High {
					t.Errorf("run %d: wrong verdict with confidence high: %q\n%s", i, wrong, out)
				}
				if len(wrong) == 0 && rep.Classic == sc.classic {
					right++
				}
				if rep.Confidence == natcheck.Low {
					low++
				}
				retries += rep.Retries
				missing += rep.AnswersMissing
				if dir := os.Getenv("NATLAB_LOGDIR"); dir != "" {
					_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.json", sc.name, i)), []byte(out), 0o644)
				}
			}
			t.Logf("%s: %d of %d runs right, %d with confidence low; %d retries, %d answers missing",
				sc.title, right, runs, low, retries, missing)
		})
	}
}
