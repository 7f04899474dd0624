package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"icegate/internal/benchproc"
)

// The -offload topology: three network namespaces of this run's own, joined
// by two veth pairs, so that the kernel fast path (an eBPF TC program,
// which cannot attach to loopback) has Ethernet interfaces to relay
// between, and every packet crosses the kernel's real receive and send
// paths:
//
//	client ns  c0 10.200.1.2/24           relaybench itself, uclient
//	   | veth
//	server ns  s0 10.200.1.1/24           listener (icegate, coturn)
//	           s1 10.200.2.1/24           relayed addresses
//	   | veth
//	peer ns    p0 10.200.2.2/24           turnutils_peer (the echo)
//
// Addresses are from 10.200.0.0/16 and exist only inside the namespaces;
// the root namespace gets no interface, address or route. The server
// namespace forwards between its two links, so that relaybench (in the
// client namespace) can check the echo peer answers; relayed traffic is
// addressed to the server's own addresses and is never forwarded.
//
// relaybench runs itself again inside the client namespace (every socket
// it opens, and every uclient it starts, is then there); the servers and
// the peer are started through `ip netns exec`. The outer process creates
// the namespaces first and removes them when the inner one has ended,
// whatever way it ended.

// topoEnv carries the namespace names "client,server,peer" to the inner run.
const topoEnv = "ICEGATE_RELAYBENCH_TOPO"

// topoHosts are the topology's addresses as a run uses them.
func topoHosts() hosts {
	return hosts{
		listen: netip.MustParseAddr("10.200.1.1"),
		relay:  netip.MustParseAddr("10.200.2.1"),
		peer:   netip.MustParseAddr("10.200.2.2"),
	}
}

// topology is one set of namespaces.
type topology struct{ client, server, peer string }

// innerTopology returns the topology this process runs inside (started by
// runInTopology), or false in the outer process.
func innerTopology() (topology, bool) {
	v := os.Getenv(topoEnv)
	if v == "" {
		return topology{}, false
	}
	f := strings.Split(v, ",")
	if len(f) != 3 {
		return topology{}, false
	}
	return topology{client: f[0], server: f[1], peer: f[2]}, true
}

// errNeedRoot is what -offload says without root.
var errNeedRoot = errors.New("-offload needs root: it creates network namespaces and veth pairs, and icegate needs CAP_BPF and CAP_NET_ADMIN to load the kernel fast path (run it as root, e.g. sudo make bench-relay RELAYBENCH=\"-offload\")")

// offloadPreflight checks what -offload needs before anything is created.
func offloadPreflight() error {
	if os.Geteuid() != 0 {
		return errNeedRoot
	}
	for _, bin := range []string{"ip", "sysctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("-offload: %s not found in PATH (iproute2, procps)", bin)
		}
	}
	return nil
}

// newTopology creates the namespaces, links and addresses. On an error what
// was made is removed again.
func newTopology(ctx context.Context) (_ topology, err error) {
	base := fmt.Sprintf("icerb%d", os.Getpid())
	t := topology{client: base + "c", server: base + "s", peer: base + "p"}
	defer func() {
		if err != nil {
			t.remove()
		}
	}()
	run := func(args ...string) error {
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	for _, ns := range t.all() {
		if err := run("ip", "netns", "add", ns); err != nil {
			return t, err
		}
		if err := run("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return t, err
		}
	}
	steps := [][]string{
		// Both ends of each pair are created inside the namespaces: no
		// interface ever exists in the root namespace.
		{"ip", "link", "add", "c0", "netns", t.client, "type", "veth", "peer", "name", "s0", "netns", t.server},
		{"ip", "link", "add", "p0", "netns", t.peer, "type", "veth", "peer", "name", "s1", "netns", t.server},
		{"ip", "-n", t.client, "addr", "add", "10.200.1.2/24", "dev", "c0"},
		{"ip", "-n", t.server, "addr", "add", "10.200.1.1/24", "dev", "s0"},
		{"ip", "-n", t.server, "addr", "add", "10.200.2.1/24", "dev", "s1"},
		{"ip", "-n", t.peer, "addr", "add", "10.200.2.2/24", "dev", "p0"},
		{"ip", "-n", t.client, "link", "set", "c0", "up"},
		{"ip", "-n", t.server, "link", "set", "s0", "up"},
		{"ip", "-n", t.server, "link", "set", "s1", "up"},
		{"ip", "-n", t.peer, "link", "set", "p0", "up"},
		{"ip", "-n", t.client, "route", "add", "10.200.2.0/24", "via", "10.200.1.1"},
		{"ip", "-n", t.peer, "route", "add", "10.200.1.0/24", "via", "10.200.2.1"},
		{"ip", "netns", "exec", t.server, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return t, err
		}
	}
	return t, nil
}

func (t topology) all() []string { return []string{t.client, t.server, t.peer} }

// remove deletes the namespaces (and with them the veths). A process still
// inside one keeps it alive, unnamed, until it ends; relaybench's children
// end with it (Pdeathsig).
func (t topology) remove() {
	for _, ns := range t.all() {
		if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	}
}

// runInTopology creates a topology, runs argv inside its client namespace
// with the namespace names in topoEnv, and removes the topology when argv
// has ended. Ctrl-C is passed on to argv as SIGINT, so it stops what it
// started and exits; then the namespaces go.
func runInTopology(ctx context.Context, argv []string, stdout, stderr io.Writer) error {
	if err := offloadPreflight(); err != nil {
		return err
	}
	t, err := newTopology(ctx)
	if err != nil {
		return fmt.Errorf("creating the veth topology: %w", err)
	}
	defer t.remove()
	fmt.Fprintf(stderr, "veth topology: namespaces %s (client), %s (server), %s (peer); removed at the end\n", t.client, t.server, t.peer)
	cmd := exec.Command("ip", append([]string{"netns", "exec", t.client}, argv...)...)
	cmd.Env = append(os.Environ(), topoEnv+"="+strings.Join(t.all(), ","))
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			err = <-done
		}
		return ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("the run inside the client namespace failed (%v; its messages are above)", ee)
	}
	return err
}

// offloadedPackets reads icegate's /metrics at addr and returns the
// packets the kernel fast path relayed (both directions) and whether it is
// attached (icegate_kernel_offload_enabled).
func offloadedPackets(ctx context.Context, addr netip.AddrPort) (packets float64, enabled bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+"/metrics", nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseOffloadMetrics(resp.Body)
}

// parseOffloadMetrics sums icegate_kernel_offload_relayed_packets_total over
// its directions and reads icegate_kernel_offload_enabled from the
// Prometheus text format.
func parseOffloadMetrics(r io.Reader) (packets float64, enabled bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	seen := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		metric, _, _ := strings.Cut(name, "{")
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, perr := strconv.ParseFloat(fields[0], 64)
		if perr != nil {
			continue
		}
		switch metric {
		case "icegate_kernel_offload_relayed_packets_total":
			packets += v
			seen = true
		case "icegate_kernel_offload_enabled":
			enabled = v == 1
		}
	}
	if err := sc.Err(); err != nil {
		return 0, false, err
	}
	if !seen && enabled {
		return 0, true, errors.New("/metrics has no icegate_kernel_offload_relayed_packets_total")
	}
	return packets, enabled, nil
}

// runOffloadOuter is -offload's outer process: it checks for root, builds
// icegate here (the client namespace has no route to the module proxy),
// and runs relaybench again with args inside a fresh topology.
func runOffloadOuter(ctx context.Context, args []string, icegatePath string, stdout, stderr io.Writer, again func([]string) ([]string, error)) error {
	if err := offloadPreflight(); err != nil {
		return err
	}
	if icegatePath == "" {
		dir, err := os.MkdirTemp("", "relaybench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		icegatePath = filepath.Join(dir, "icegate")
		if err := buildIcegate(ctx, icegatePath, stderr); err != nil {
			return err
		}
		args = append(append([]string(nil), args...), "-icegate", icegatePath)
	}
	argv, err := again(args)
	if err != nil {
		return err
	}
	return runInTopology(ctx, argv, stdout, stderr)
}

// irqAccounting says whether this kernel has CONFIG_IRQ_TIME_ACCOUNTING
// (from /proc/config.gz or /boot/config-RELEASE). Without it softirq work
// is charged by timer tick to whatever task it interrupted: softirq run in
// a sending process's system call (a veth transmit raises the receive
// softirq on the same CPU) counts as that process's system time, and in
// /proc/stat's softirq column.
func irqAccounting() string {
	var cfg []byte
	if f, err := os.Open("/proc/config.gz"); err == nil {
		if zr, err := gzip.NewReader(f); err == nil {
			cfg, _ = io.ReadAll(zr)
		}
		_ = f.Close()
	}
	if cfg == nil {
		cfg, _ = os.ReadFile("/boot/config-" + benchproc.KernelRelease())
	}
	switch {
	case cfg == nil:
		return "config not readable (CONFIG_IRQ_TIME_ACCOUNTING unknown)"
	case bytes.Contains(cfg, []byte("\nCONFIG_IRQ_TIME_ACCOUNTING=y")):
		return "with CONFIG_IRQ_TIME_ACCOUNTING (softirq time is not charged to the interrupted process)"
	default:
		return "without CONFIG_IRQ_TIME_ACCOUNTING (softirq time is charged by tick to the process it interrupted)"
	}
}
