package turn

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"icegate/config"
	"icegate/internal/testutil"
	"icegate/internal/udploop"
)

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestLoopMetrics: the loops' counters reach the registry, and a burst
// of ChannelData relayed both ways shows up in them; with
// listen.udp_segmentation off, nothing leaves in a segment train.
func TestLoopMetrics(t *testing.T) {
	if !udploop.Supported() {
		t.Skip("no event loops on this system")
	}
	for _, gso := range []bool{true, false} {
		t.Run(fmt.Sprintf("udp_segmentation=%v", gso), func(t *testing.T) { testLoopMetrics(t, gso) })
	}
}

func testLoopMetrics(t *testing.T, gso bool) {
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, func(c *config.Config) { c.Listen.UDPSegmentation = &gso })
	srv, err := New(cfg, Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	p := newChannelPath(t, &testServer{Server: srv, log: &testutil.SyncBuffer{}}, 100)
	const burst = 50
	for range burst {
		if _, err := p.client.WriteToUDPAddrPort(p.frame, p.server); err != nil {
			t.Fatal(err)
		}
	}
	_ = p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range burst {
		if _, _, err := p.client.ReadFromUDPAddrPort(p.buf); err != nil {
			t.Fatal(err)
		}
	}
	// A loop counts a send when sendmmsg returns, which can be after the
	// client has read what it sent: gather until the counts settle.
	var got map[string]float64
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got = map[string]float64{}
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				key := f.GetName()
				for _, l := range m.GetLabel() {
					key += "/" + l.GetValue()
				}
				got[key] = m.GetCounter().GetValue()
			}
		}
		if got["icegate_loop_datagrams_total/out"] >= 2*burst || time.Now().After(deadline) {
			break
		}
	}
	// The allocation's control messages came through the loops too.
	if in, out := got["icegate_loop_datagrams_total/in"], got["icegate_loop_datagrams_total/out"]; in < 2*burst || out < 2*burst {
		t.Fatalf("loops moved %v datagrams in and %v out, want at least %d each (%v)", in, out, 2*burst, got)
	}
	segmented := got["icegate_loop_datagrams_total/out_segmented"]
	t.Logf("%v of %v datagrams out left in segment trains", segmented, got["icegate_loop_datagrams_total/out"])
	if !gso && segmented != 0 {
		t.Fatalf("%v datagrams left in segment trains with udp_segmentation = false", segmented)
	}
	if got["icegate_loop_syscalls_total/recv"] == 0 || got["icegate_loop_syscalls_total/send"] == 0 ||
		got["icegate_loop_syscalls_total/wakeup"] == 0 {
		t.Fatalf("no system calls counted: %v", got)
	}
}
