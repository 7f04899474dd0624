//go:build !unix

package main

import "os"

// Without SIGUSR1 and SIGUSR2 there is no drain or certificate signal;
// nil signals are never delivered.
var sigDrain, sigCertsLoad os.Signal

// monotonicUsec is 0: there is no systemd to read it.
func monotonicUsec() uint64 { return 0 }
