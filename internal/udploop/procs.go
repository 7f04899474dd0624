package udploop

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// An event loop waits for datagrams inside epoll_wait without telling the
// scheduler (see epollWait): it keeps its P, the scheduler's processor,
// like a goroutine in a long system call would for a moment, and so wakes
// in microseconds instead of being rescheduled. That is only fair when the
// loops have Ps of their own, beside those the rest of the program (pion's
// control plane, the signaling server) runs on. Raising GOMAXPROCS is a
// process-wide change, so this package never makes it by itself: the
// program asks with ReserveProcs, and a loop holds its P only while the
// reserved Ps cover every running loop and GOMAXPROCS still includes them
// (the testing package lowers it for AllocsPerRun and fuzzing); otherwise
// it waits as an ordinary system call.
var procs struct {
	sync.Mutex
	base     int          // GOMAXPROCS before the first reservation
	reserved atomic.Int32 // Ps reserved for the loops, readable without the lock
	loops    atomic.Int32 // running loops
}

// ReserveProcs raises GOMAXPROCS by n, the event loops about to run, until
// release is called (once; later calls do nothing). It changes the whole
// process, so only the program's main (or a test) should call it, once for
// the loops it starts. Reservations add up; the last release restores
// GOMAXPROCS to what it was before the first. On systems without event
// loops it changes nothing.
func ReserveProcs(n int) (release func()) {
	if !Supported() || n <= 0 {
		return func() {}
	}
	procs.Lock()
	defer procs.Unlock()
	if procs.reserved.Load() == 0 {
		procs.base = runtime.GOMAXPROCS(0)
	}
	procs.reserved.Add(int32(n))
	runtime.GOMAXPROCS(procs.base + int(procs.reserved.Load()))
	var once sync.Once
	return func() {
		once.Do(func() {
			procs.Lock()
			defer procs.Unlock()
			procs.reserved.Add(-int32(n))
			runtime.GOMAXPROCS(procs.base + int(procs.reserved.Load()))
		})
	}
}

// UnreservedProcs is GOMAXPROCS less the Ps ReserveProcs added: the Ps the
// rest of the program has, and a caller's natural number of loops.
func UnreservedProcs() int {
	procs.Lock()
	defer procs.Unlock()
	if procs.reserved.Load() == 0 {
		return runtime.GOMAXPROCS(0)
	}
	return procs.base
}

// mayHold reports whether a loop may keep its P while it waits. It calls
// GOMAXPROCS(0), which takes the scheduler's lock: ask it after an ordinary
// wait, not at every wake-up of a busy loop.
func mayHold() bool {
	r := procs.reserved.Load()
	return r > 0 && procs.loops.Load() <= r && runtime.GOMAXPROCS(0) > int(r)
}
