package coturn

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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

func TestParseUclientLine(t *testing.T) {
	tests := []struct {
		line string
		want UclientLine
	}{
		{"3: : start_mclient: msz=10, tot_send_msgs=15950, tot_recv_msgs=15850, tot_send_bytes ~ 1595000, tot_recv_bytes ~ 1585000",
			UclientLine{Kind: ProgressLine, Sent: 15950, Recv: 15850}},
		{"18: : start_mclient: tot_send_msgs=200000, tot_recv_msgs=199961",
			UclientLine{Kind: TotalsLine, Sent: 200000, Recv: 199961}},
		{"18: : start_mclient: tot_send_msgs=40, tot_recv_msgs=40  ",
			UclientLine{Kind: TotalsLine, Sent: 40, Recv: 40}},
		{"18: : Total lost packets 39 (0.019500%), total send dropped 0 (0.000000%)",
			UclientLine{Kind: LostLine, Lost: 39, LostPct: 0.0195}},
		{"17: : Total lost packets 16431 (32.862000%), total send dropped 0 (0.000000%)",
			UclientLine{Kind: LostLine, Lost: 16431, LostPct: 32.862}},
		{"18: : start_mclient: tot_send_bytes ~ 20000000, tot_recv_bytes ~ 19996100", UclientLine{}},
		{"18: : Total transmit time is 18", UclientLine{}},
		{"0: : Total connect time is 2", UclientLine{}},
		{"", UclientLine{}},
	}
	for _, tt := range tests {
		if got := ParseUclientLine(tt.line); got != tt.want {
			t.Errorf("ParseUclientLine(%q) = %+v, want %+v", tt.line, got, tt.want)
		}
	}
}

func FuzzParseUclientLine(f *testing.F) {
	for _, l := range strings.Split(uclientOutput, "\n") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		p := ParseUclientLine(line)
		if p.Sent < 0 || p.Recv < 0 || p.Lost < 0 || p.LostPct < 0 {
			t.Errorf("negative counts from %q: %+v", line, p)
		}
	})
}

func TestParseUclientSummary(t *testing.T) {
	s, err := ParseUclientSummary(uclientOutput)
	if err != nil {
		t.Fatal(err)
	}
	if want := (UclientSummary{Sent: 200000, Recv: 199961, Lost: 39, LostPct: 0.0195}); s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
	// A small run as tools/interop makes it: 2 clients × 20 messages.
	small := "4: : start_mclient: msz=2, tot_send_msgs=40, tot_recv_msgs=40, tot_send_bytes ~ 4800, tot_recv_bytes ~ 4800\r\n" +
		"4: : start_mclient: tot_send_msgs=40, tot_recv_msgs=40\r\n" +
		"4: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)\r\n"
	if s, err := ParseUclientSummary(small); err != nil || s != (UclientSummary{Sent: 40, Recv: 40}) {
		t.Errorf("small run: got %+v, %v; want 40 sent, 40 received, none lost", s, err)
	}
	// Progress lines alone are no summary.
	var head []string
	for _, l := range strings.Split(uclientOutput, "\n") {
		if strings.Contains(l, "msz=") {
			head = append(head, l)
		}
	}
	if _, err := ParseUclientSummary(strings.Join(head, "\n")); err == nil {
		t.Error("no error for output without the summary")
	}
}

// fakeProc is a Process for StartPeer: an in-process UDP echo, or one that
// has exited at once when dead is set.
type fakeProc struct {
	conn    net.PacketConn
	dead    bool
	stopped atomic.Bool
}

func (p *fakeProc) Exited() error {
	if p.dead || p.stopped.Load() {
		return errors.New("exited: exit status 1")
	}
	return nil
}

func (p *fakeProc) Stop() {
	p.stopped.Store(true)
	if p.conn != nil {
		_ = p.conn.Close()
	}
}

func (p *fakeProc) Output() string { return "fake output" }

func startEcho(t *testing.T, port int) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return pc
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

// TestStartPeer: a peer that exits before it echoes is stopped and the next
// attempt, on another port, is kept; the arguments are PeerArgs.
func TestStartPeer(t *testing.T) {
	var started []*fakeProc
	var args [][]string
	start := func(a ...string) (*fakeProc, error) {
		args = append(args, a)
		p := &fakeProc{dead: len(started) == 0}
		if !p.dead {
			port := 0
			for i, s := range a {
				if s == "-p" {
					port = atoi(a[i+1])
				}
			}
			p.conn = startEcho(t, port)
		}
		started = append(started, p)
		return p, nil
	}
	pick := func() (int, error) { return freeUDPPort(t), nil }
	p, port, err := StartPeer(context.Background(), 3, pick, start)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if len(started) != 2 || p != started[1] || !started[0].stopped.Load() || p.stopped.Load() {
		t.Fatalf("started %d, kept the second %v, first stopped %v", len(started), p == started[1], started[0].stopped.Load())
	}
	if want := PeerArgs(port); strings.Join(args[1], " ") != strings.Join(want, " ") {
		t.Errorf("args %q, want %q", args[1], want)
	}
}

// TestStartPeerFails: when no attempt echoes, the error names every attempt
// with its output, and every peer started was stopped.
func TestStartPeerFails(t *testing.T) {
	var started []*fakeProc
	start := func(...string) (*fakeProc, error) {
		p := &fakeProc{dead: true}
		started = append(started, p)
		return p, nil
	}
	_, _, err := StartPeer(context.Background(), 2, func() (int, error) { return freeUDPPort(t), nil }, start)
	if err == nil || strings.Count(err.Error(), "fake output") != 2 || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("error %v, want both attempts with their output", err)
	}
	for i, p := range started {
		if !p.stopped.Load() {
			t.Errorf("peer %d not stopped", i)
		}
	}
}

// TestProbeUDP: silence is an error after the wait, a cancelled context at
// once.
func TestProbeUDP(t *testing.T) {
	port := freeUDPPort(t)
	alive := func() error { return nil }
	start := time.Now()
	if err := WaitEcho(context.Background(), port, alive, 300*time.Millisecond); err == nil {
		t.Fatal("an echo from nothing")
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %v, want about 300ms", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WaitEcho(ctx, port, alive, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
