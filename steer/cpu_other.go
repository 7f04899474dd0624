//go:build !unix

package steer

import "time"

// processCPU is not measured here: the CPU share counts as 0.
func processCPU() (time.Duration, bool) { return 0, false }
