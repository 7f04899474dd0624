package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"icegate/internal/icegatebin"
	"icegate/internal/kfast"
)

// TestOffloadTopology runs a tiny -offload benchmark end to end, so that its
// code path cannot rot: the veth topology, icegate with the kernel fast
// path (its counters must show the kernel relayed the packets), icegate
// without it and coturn, each under a small uclient load and a small
// media-rate load, with machine CPU sampled. As root only (namespaces, BPF);
// skipped without root, BPF or coturn's programs, unless
// ICEGATE_REQUIRE_INTEROP=1, under which missing programs fail it.
//
// The test runs itself again inside the client namespace, as relaybench
// does (runInTopology); that half makes the runs.
func TestOffloadTopology(t *testing.T) {
	if topo, inner := innerTopology(); inner {
		offloadTopologyInner(t, topo)
		return
	}
	if testing.Short() {
		t.Skip("short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("-offload needs root (network namespaces, CAP_BPF, CAP_NET_ADMIN)")
	}
	for _, bin := range append([]string{"ip", "sysctl"}, coturnBins...) {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("ICEGATE_REQUIRE_INTEROP") == "1" {
				t.Fatalf("%s not found (ICEGATE_REQUIRE_INTEROP=1)", bin)
			}
			t.Skipf("%s not found (tools/install-test-deps.sh installs it)", bin)
		}
	}
	// Loading the program (not attaching it) tells whether this kernel and
	// these capabilities allow BPF at all.
	prog, err := kfast.Open(kfast.Config{MaxFlows: 16})
	if err != nil {
		t.Skipf("the kernel fast path cannot load here: %v", err)
	}
	_ = prog.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "icegate")
	if err := icegatebin.Build(ctx, bin, "offload-test"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	argv := []string{os.Args[0], "-test.run=^TestOffloadTopology$", "-test.count=1", "-test.v", "-test.timeout=2m"}
	t.Setenv("ICEGATE_RELAYBENCH_TEST_ICEGATE", bin)
	err = runInTopology(ctx, argv, &out, &out)
	t.Logf("in the client namespace:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "--- PASS: TestOffloadTopology") {
		t.Fatal("the run in the client namespace did not pass")
	}
	for _, ns := range []string{"c", "s", "p"} {
		name := "icerb" + strconv.Itoa(os.Getpid()) + ns
		if _, err := os.Stat("/var/run/netns/" + name); err == nil {
			t.Errorf("namespace %s left behind", name)
		}
	}
}

// offloadTopologyInner is the half in the client namespace: every server,
// one round, a small saturating load and a small media-rate load.
func offloadTopologyInner(t *testing.T, topo topology) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var log bytes.Buffer
	e, err := newEnv(ctx, os.Getenv("ICEGATE_RELAYBENCH_TEST_ICEGATE"), &log)
	if e != nil {
		defer func() { e.close(t.Failed()) }()
	}
	if err != nil {
		t.Fatal(err)
	}
	e.at, e.serverNS, e.peerNS = topoHosts(), topo.server, topo.peer
	p := offloadPlan()
	p.relay = []uclientParams{{clients: 4, length: 200, messages: 300}}
	p.media = mediaLoads([]int{20}, time.Second)
	// The saturating load for icegate offload and coturn only (a uclient
	// run takes about 6 s, most of it uclient's connect and the quiet wait
	// at its end); the media-rate load for all three.
	b := &bench{env: e, plan: p, servers: []string{icegateOffload, coturn}, offload: true, rounds: 1, log: &log}
	if err := b.relay(ctx); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	b.servers = []string{icegateOffload, icegate, coturn}
	if err := b.media(ctx); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("progress:\n%s", log.String())
	if b.failed > 0 {
		t.Fatalf("%d run(s) failed (see the progress above)", b.failed)
	}
	table := markdown(b.rows, b.servers, "issue #17")
	t.Logf("table:\n%s", table)
	// Every machine-CPU row has a value for every server, and the kernel
	// relayed the offload runs (checkOffload fails a run otherwise; the
	// share row shows it).
	for _, r := range b.rows {
		if !strings.Contains(r.name, "machine CPU") && !strings.Contains(r.name, "Machine CPU") {
			continue
		}
		for _, s := range b.servers {
			if s == icegate && !strings.Contains(r.name, "media rate") {
				continue // not under the saturating load
			}
			if len(r.values[s]) != 1 {
				t.Errorf("%q: %s has %d values, want 1", r.name, s, len(r.values[s]))
			}
		}
	}
	for _, r := range b.rows {
		if strings.HasPrefix(r.name, "Share of the relayed packets the kernel") {
			if v := r.values[icegateOffload]; len(v) != 1 || v[0] < 100*offloadShareMin {
				t.Errorf("%q: %v", r.name, v)
			}
		}
	}
}
