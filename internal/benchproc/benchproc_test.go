package benchproc

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseStatTicks(t *testing.T) {
	// Fields 14 and 15 are 120 and 34; the name holds a space and a ')'.
	stat := "4242 (turn server) x) S 1 4242 1 0 -1 4194560 1349 0 18 0 120 34 0 0 20 0 7 0 153637 486662144 3812"
	got, err := ParseStatTicks([]byte(stat))
	if err != nil || got != 154 {
		t.Errorf("ParseStatTicks = %d, %v; want 154", got, err)
	}
	if _, err := ParseStatTicks([]byte("4242 (short) S 1 2")); err == nil {
		t.Error("no error for a truncated stat line")
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tturnserver\nVmPeak:\t  475256 kB\nVmRSS:\t   15604 kB\nRssAnon:\t 4176 kB\n"
	if got, err := ParseVmRSS(status); err != nil || got != 15604 {
		t.Errorf("ParseVmRSS = %d, %v; want 15604", got, err)
	}
	if _, err := ParseVmRSS("Name:\tx\n"); err == nil {
		t.Error("no error without VmRSS")
	}
}

func TestParseUDPDrops(t *testing.T) {
	table := `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  112: 0100007F:5BA6 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 123456 2 0000000000000000 42
  113: 0100007F:5BA7 00000000:0000 07 00000000:00034000 00:00000000 00000000     0        0 123457 2 0000000000000000 7
  114: 0100007F:5BA8 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 999999 2 0000000000000000 1000
`
	got := ParseUDPDrops(table, map[string]bool{"123456": true, "123457": true})
	if got != 49 {
		t.Errorf("ParseUDPDrops = %d, want 49 (the other socket is not ours)", got)
	}
	if got := ParseUDPDrops(table, map[string]bool{}); got != 0 {
		t.Errorf("no sockets: %d", got)
	}
}

func TestParseStatTicksNames(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       int64
		ok         bool
	}{
		{"plain", "1234 (icegate) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9 0", 287, true},
		// The command name may hold spaces and parentheses.
		{"odd name", "1234 (a) b (c)) R 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0", 10, true},
		{"no paren", "1234 icegate S 1", 0, false},
		{"short", "1234 (x) S 1 2 3", 0, false},
		{"not a number", "1234 (x) S 1 1 1 0 -1 0 0 0 0 0 x 3 0 0", 0, false},
	} {
		got, err := ParseStatTicks([]byte(tc.stat))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: ParseStatTicks = %d, %v; want %d (ok %v)", tc.name, got, err, tc.want, tc.ok)
		}
	}
}

// TestProcLifecycle runs a real program: its log is read, it is stopped by
// its process group, and a stopped Set holds nothing.
func TestProcLifecycle(t *testing.T) {
	var s Set
	log := t.TempDir() + "/sh.log"
	p, err := s.Start("sh", log, nil, "/bin/sh", "-c", "echo ready; echo second line; exec sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	defer s.StopAll()
	// The second line: the shell may not have written it when the first
	// is seen.
	if err := p.WaitLog(context.Background(), "second", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := p.LogLines("second"); len(got) != 1 || got[0] != "second line" {
		t.Errorf("LogLines = %q", got)
	}
	if ticks, err := CPUTicks(p.Pid()); err != nil || ticks < 0 {
		t.Errorf("CPUTicks = %d, %v", ticks, err)
	}
	if kb, err := RSSKB(p.Pid()); err != nil || kb <= 0 {
		t.Errorf("RSSKB = %d, %v", kb, err)
	}
	if p.Exited() || p.Err() != nil {
		t.Fatal("exited early")
	}
	s.StopAll()
	select {
	case <-p.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("not stopped")
	}
	if p.Err() == nil || !strings.Contains(p.Err().Error(), "signal") {
		t.Errorf("Err after a stop = %v, want the signal", p.Err())
	}
	// WaitLog after an exit says so, with the log's tail.
	if err := p.WaitLog(context.Background(), "never", time.Second); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("WaitLog after exit = %v", err)
	}
}

// TestStartPiped: a worker is talked to line by line, and closing its
// stdin ends it.
func TestStartPiped(t *testing.T) {
	var s Set
	defer s.StopAll()
	p, in, out, err := s.StartPiped("cat", "/bin/cat")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := in.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "hello\n" {
		t.Fatalf("read %q, %v", buf, err)
	}
	in.Close()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("cat did not end when its stdin closed")
	}
	if p.Err() != nil {
		t.Errorf("Err = %v", p.Err())
	}
}
