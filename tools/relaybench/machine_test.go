package main

import (
	"strings"
	"testing"
)

func TestParseMachineCPU(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	stat := "cpu  100 2 30 5000 40 5 60 7 11 1\ncpu0 50 1 15 2500 20 2 30 3 5 0\nintr 1\n"
	m, err := parseMachineCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	// Not idle, iowait, or guest (already in user and nice).
	if want := int64(100 + 2 + 30 + 5 + 60 + 7); m.busy != want || m.softirq != 60 || m.system != 30 || m.idle != 5040 || m.cpus != 1 {
		t.Errorf("got %+v, want busy %d, softirq 60, system 30, idle 5040, 1 CPU", m, want)
	}
	for _, bad := range []string{"", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n", "cpu 1 2 3 4 5 6 7 8\n"} {
		if _, err := parseMachineCPU([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseOffloadMetrics(t *testing.T) {
	text := `# HELP icegate_kernel_offload_enabled x
# TYPE icegate_kernel_offload_enabled gauge
icegate_kernel_offload_enabled 1
icegate_kernel_offload_relayed_packets_total{direction="client_to_peer"} 1500
icegate_kernel_offload_relayed_packets_total{direction="peer_to_client"} 1490
icegate_kernel_offload_relayed_bytes_total{direction="client_to_peer"} 150000
`
	pk, on, err := parseOffloadMetrics(strings.NewReader(text))
	if err != nil || !on || pk != 2990 {
		t.Errorf("got %v %v %v, want 2990 true nil", pk, on, err)
	}
	pk, on, err = parseOffloadMetrics(strings.NewReader("icegate_kernel_offload_enabled 0\n"))
	if err != nil || on || pk != 0 {
		t.Errorf("disabled: got %v %v %v", pk, on, err)
	}
	if _, _, err := parseOffloadMetrics(strings.NewReader("icegate_kernel_offload_enabled 1\n")); err == nil {
		t.Error("enabled without counters: no error")
	}
}
