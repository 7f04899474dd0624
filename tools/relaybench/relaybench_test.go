package main

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"icegate/config"
)

// Output of `turnutils_uclient -c -X ... -m 10 -l 100 -n 20000 -z 0` against
// coturn 4.6.1 on loopback (trimmed: the idle progress lines before the
// traffic and during the final wait are alike).
const uclientOutput = `0: : Total connect time is 2
2: : start_mclient: msz=10, tot_send_msgs=0, tot_recv_msgs=0, tot_send_bytes ~ 0, tot_recv_bytes ~ 0
3: : start_mclient: msz=10, tot_send_msgs=15950, tot_recv_msgs=15850, tot_send_bytes ~ 1595000, tot_recv_bytes ~ 1585000
4: : start_mclient: msz=10, tot_send_msgs=47250, tot_recv_msgs=46923, tot_send_bytes ~ 4725000, tot_recv_bytes ~ 4692300
8: : start_mclient: msz=10, tot_send_msgs=194550, tot_recv_msgs=194411, tot_send_bytes ~ 19455000, tot_recv_bytes ~ 19441100
9: : start_mclient: msz=10, tot_send_msgs=200000, tot_recv_msgs=199961, tot_send_bytes ~ 20000000, tot_recv_bytes ~ 19996100
17: : start_mclient: msz=4, tot_send_msgs=200000, tot_recv_msgs=199961, tot_send_bytes ~ 20000000, tot_recv_bytes ~ 19996100
18: : start_mclient: tot_send_msgs=200000, tot_recv_msgs=199961
18: : start_mclient: tot_send_bytes ~ 20000000, tot_recv_bytes ~ 19996100
18: : Total transmit time is 18
18: : Total lost packets 39 (0.019500%), total send dropped 0 (0.000000%)
18: : Average round trip delay 0.730137 ms; min = 0 ms, max = 41 ms
18: : Average jitter 0.081816 ms; min = 0 ms, max = 15 ms
`

// timed stamps each line with the whole seconds uclient printed before it,
// which is close enough to when relaybench would have read it.
func timed(t *testing.T, out string) []timedLine {
	t.Helper()
	var lines []timedLine
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		sec, _, ok := strings.Cut(l, ":")
		if !ok {
			t.Fatalf("line without a time stamp: %q", l)
		}
		n, err := strconv.Atoi(sec)
		if err != nil {
			t.Fatalf("line without a time stamp: %q", l)
		}
		lines = append(lines, timedLine{at: time.Duration(n) * time.Second, text: l})
	}
	return lines
}

func TestCollect(t *testing.T) {
	t.Run("summary", func(t *testing.T) {
		r, err := collect(timed(t, uclientOutput))
		if err != nil {
			t.Fatal(err)
		}
		if r.sent != 200000 || r.recv != 199961 || !r.summary || r.lostPct != 0.0195 {
			t.Errorf("got sent %d recv %d summary %v loss %v", r.sent, r.recv, r.summary, r.lostPct)
		}
		if r.relayed() != 399961 {
			t.Errorf("relayed %d, want 399961", r.relayed())
		}
		// 6 progress lines and the totals.
		if len(r.samples) != 7 {
			t.Errorf("%d samples, want 7", len(r.samples))
		}
	})
	t.Run("stopped before the summary", func(t *testing.T) {
		var head []string
		for _, l := range strings.Split(uclientOutput, "\n") {
			if strings.Contains(l, "msz=") || strings.Contains(l, "connect time") {
				head = append(head, l)
			}
		}
		r, err := collect(timed(t, strings.Join(head, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		if r.sent != 200000 || r.recv != 199961 || r.summary {
			t.Errorf("got sent %d recv %d summary %v", r.sent, r.recv, r.summary)
		}
		if math.Abs(r.lostPct-0.0195) > 1e-9 {
			t.Errorf("loss %v%%, want 0.0195%% (computed as uclient does)", r.lostPct)
		}
	})
	t.Run("no counters", func(t *testing.T) {
		if _, err := collect(timed(t, "0: : Total connect time is 2\n")); err == nil {
			t.Error("no error for output without counters")
		}
	})
}

func TestActiveRate(t *testing.T) {
	s := func(sec float64, total int) progress {
		return progress{at: time.Duration(sec * float64(time.Second)), sent: total / 2, recv: total - total/2}
	}
	tests := []struct {
		name    string
		samples []progress
		total   int
		want    float64 // packets/s; 0 = no rate
	}{
		// 1000 packets/s from t=2 s to t=12 s: 5% at 2.5 s, 95% at 11.5 s.
		{"steady", []progress{s(1, 0), s(2, 0), s(4, 2000), s(8, 6000), s(12, 10000), s(13, 10000)}, 10000, 1000},
		// The final count only in the totals sample, idle before.
		{"idle tail", []progress{s(1, 0), s(2, 0), s(3, 1000), s(4, 2000), s(20, 2000)}, 2000, 1000},
		// No zero sample: counting starts at the beginning of the run.
		{"no zero sample", []progress{s(1, 1000), s(2, 2000)}, 2000, 1000},
		{"one sample at zero time", []progress{s(0, 2000)}, 2000, 0},
		{"no samples", nil, 2000, 0},
		{"nothing relayed", []progress{s(1, 0), s(2, 0)}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := activeRate(tt.samples, tt.total)
			if tt.want == 0 {
				if ok {
					t.Errorf("rate %v, want none", got)
				}
				return
			}
			if !ok || math.Abs(got-tt.want) > 1e-6*tt.want {
				t.Errorf("rate %v (ok %v), want %v", got, ok, tt.want)
			}
		})
	}
}

func TestMedianAndFormat(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	if m := median(nil); !math.IsNaN(m) {
		t.Errorf("median empty = %v", m)
	}
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 176431.4: "176,431", -1234567: "-1,234,567"} {
		if got := formatNum(v, 0); got != want {
			t.Errorf("formatNum(%v) = %q, want %q", v, got, want)
		}
	}
	if got := formatNum(12.345, 2); got != "12.35" && got != "12.34" {
		t.Errorf("formatNum(12.345, 2) = %q", got)
	}
}

func TestRowCells(t *testing.T) {
	r := newRow("x", "", higherBetter, 1.2, 0)
	r.add(icegate, 130)
	r.add(coturn, 100)
	two := []string{icegate, coturn}
	if c := r.cells(two); c[2] != "1.30×" || c[4] != "yes" {
		t.Errorf("cells %q", c)
	}
	l := newRow("loss", " %", lossPoints, 1, 2)
	l.add(icegate, 5)
	l.add(coturn, 2)
	if c := l.cells(two); c[2] != "+3.00 pp" || c[4] != "no" {
		t.Errorf("loss cells %q", c)
	}
	// Three servers: both compared with coturn, the target on the first.
	three := []string{icegateOffload, icegate, coturn}
	m := newRow("machine", "", lowerBetter, 0.3, 2)
	m.add(icegateOffload, 0.5)
	m.add(icegate, 2)
	m.add(coturn, 4)
	if c := m.cells(three); len(c) != 7 || c[3] != "0.12×" || c[4] != "0.50×" || c[6] != "yes" {
		t.Errorf("three-server cells %q", c)
	}
}

// The generated icegate config must stay valid as the schema changes.
func TestIcegateHCL(t *testing.T) {
	cfg, diags := config.Parse([]byte(icegateHCL(loopbackHosts(), 23478, 24000, 24999, 0)), "relaybench.hcl")
	if diags.HasErrors() {
		t.Fatalf("generated config: %s", config.FormatDiagnostics(diags))
	}
	if cfg.Realm != benchRealm || cfg.Relay.MinPort != 24000 || cfg.Relay.MaxPort != 24999 {
		t.Errorf("realm %q relay %d-%d", cfg.Realm, cfg.Relay.MinPort, cfg.Relay.MaxPort)
	}
}
