package udploop

import (
	"runtime"
	"testing"
)

// TestReserveProcs: nothing changes GOMAXPROCS but ReserveProcs; a
// reservation adds up with another, each release gives its own back once,
// and the loops keep their Ps only while the reserved Ps cover them and
// GOMAXPROCS still includes them.
func TestReserveProcs(t *testing.T) {
	if !Supported() {
		t.Skip("no event loops on this system")
	}
	base := runtime.GOMAXPROCS(0)
	l, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("New changed GOMAXPROCS from %d to %d", base, got)
	}
	if mayHold() {
		t.Fatal("a loop may hold its P with no Ps reserved")
	}
	if got := UnreservedProcs(); got != base {
		t.Fatalf("UnreservedProcs = %d, want %d", got, base)
	}

	release := ReserveProcs(1)
	if got := runtime.GOMAXPROCS(0); got != base+1 {
		t.Fatalf("GOMAXPROCS = %d after reserving 1, want %d", got, base+1)
	}
	if got := UnreservedProcs(); got != base {
		t.Fatalf("UnreservedProcs = %d with a reservation, want %d", got, base)
	}
	if !mayHold() {
		t.Fatal("one loop with one P reserved may not hold it")
	}

	// A second loop without a P of its own: neither loop holds one.
	l2, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if mayHold() {
		t.Fatal("two loops hold Ps with one reserved")
	}
	release2 := ReserveProcs(1)
	if got := runtime.GOMAXPROCS(0); got != base+2 {
		t.Fatalf("GOMAXPROCS = %d after reserving 2, want %d", got, base+2)
	}
	if !mayHold() {
		t.Fatal("two loops with two Ps reserved may not hold them")
	}

	// Someone (the testing package, for AllocsPerRun) lowers GOMAXPROCS.
	runtime.GOMAXPROCS(2)
	if mayHold() {
		t.Fatal("loops hold Ps with GOMAXPROCS lowered to the reserved Ps")
	}
	runtime.GOMAXPROCS(base + 2)

	release2()
	release2() // a second call gives nothing back
	l2.Close()
	if got := runtime.GOMAXPROCS(0); got != base+1 {
		t.Fatalf("GOMAXPROCS = %d after one release, want %d", got, base+1)
	}
	release()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("GOMAXPROCS = %d after every release, want %d", got, base)
	}
	if mayHold() {
		t.Fatal("a loop may hold its P after the reservation ended")
	}
}
