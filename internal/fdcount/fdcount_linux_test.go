package fdcount

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestOpen: the getdents count of /proc/self/fd follows opened and closed
// descriptors exactly.
func TestOpen(t *testing.T) {
	var buf []byte
	base, err := Open(&buf)
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var files []*os.File
	for range 50 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if n, _ := Open(&buf); n != base+50 {
		t.Fatalf("count %d after opening 50, want %d", n, base+50)
	}
	for _, f := range files {
		_ = f.Close()
	}
	if n, _ := Open(&buf); n != base {
		t.Fatalf("count %d after closing them, want %d", n, base)
	}
}

// TestGuard: with a reserve that leaves room for exactly k more
// descriptors, the Guard says full once k are open (by a recount), follows
// the caller's own count between recounts, and is not full again once they
// are closed.
func TestGuard(t *testing.T) {
	base, err := Open(new([]byte))
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	limit, err := Limit()
	if err != nil {
		t.Fatal(err)
	}
	const k = 20
	reserve := limit - base - k
	var own atomic.Int64
	g := New(own.Load, func(int) int { return reserve })
	now := time.Now()
	if g.Full(now) {
		t.Fatalf("full with %d open, limit %d, reserve %d", base, limit, reserve)
	}
	// The caller's own count moves the estimate without a recount.
	own.Add(k)
	if !g.Full(now) {
		t.Fatal("not full after the own count rose by the headroom")
	}
	own.Add(-k)
	if g.Full(now) {
		t.Fatal("still full after the own count fell back")
	}
	// Descriptors opened behind the caller's back are seen at the recount.
	var files []*os.File
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	for range k {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if !g.Full(now.Add(time.Second)) {
		open, l, r := g.Last()
		t.Fatalf("not full with %d open, limit %d, reserve %d", open, l, r)
	}
	for _, f := range files {
		_ = f.Close()
	}
	files = nil
	// Near the threshold the recount comes after 50 ms.
	if g.Full(now.Add(time.Second + 60*time.Millisecond)) {
		t.Fatal("still full after closing them")
	}
}

// TestGuardRecountDoesNotBlock: while one caller recounts (holding the
// recount's lock), others asking with a count that is due go on with the
// last count instead of waiting for the directory read, and many callers
// at once agree.
func TestGuardRecountDoesNotBlock(t *testing.T) {
	if _, err := Open(new([]byte)); err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	g := New(nil, func(int) int { return 0 })
	now := time.Now()
	if g.Full(now) {
		t.Fatal("full with no reserve")
	}
	g.mu.Lock() // a recount in progress
	done := make(chan bool)
	go func() { done <- g.Full(now.Add(2 * time.Second)) }()
	select {
	case full := <-done:
		if full {
			t.Error("full by the last count with no reserve")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a caller waited for another's recount")
	}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if g.Full(now.Add(time.Duration(w*200+i) * 10 * time.Millisecond)) {
					t.Error("full with no reserve")
					return
				}
			}
		})
	}
	wg.Wait()
	if open, limit, _ := g.Last(); open <= 0 || limit <= 0 {
		t.Errorf("last count %d of %d", open, limit)
	}
}

// TestLimit agrees with getrlimit.
func TestLimit(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	n, err := Limit()
	if err != nil {
		t.Skip(err)
	}
	if uint64(n) != min(rl.Cur, 1<<30) {
		t.Fatalf("Limit %d, getrlimit %d", n, rl.Cur)
	}
}
