package steer

import (
	"runtime"
	"sync"
	"time"
)

// CPUSampler measures the process's CPU time as a share of the host's
// cores between two calls of Sample.
type CPUSampler struct {
	mu       sync.Mutex
	lastCPU  time.Duration
	lastWall time.Time
}

// Sample returns the CPU share (0 to 1) since the previous call; the first
// call returns 0. It returns 0 where the platform does not tell.
func (c *CPUSampler) Sample() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	used, ok := processCPU()
	now := time.Now()
	defer func() { c.lastCPU, c.lastWall = used, now }()
	if !ok || c.lastWall.IsZero() {
		return 0
	}
	wall := now.Sub(c.lastWall)
	if wall <= 0 {
		return 0
	}
	share := float64(used-c.lastCPU) / float64(wall) / float64(runtime.NumCPU())
	return min(max(share, 0), 1)
}
