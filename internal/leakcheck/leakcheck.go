// Package leakcheck fails a test binary whose goroutines outlive its tests:
// every server a test starts must be closed, and closing must stop its work
// (STYLE.md: a goroutine-leak check in TestMain).
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs the tests and then, if they passed, waits up to three seconds
// for every goroutine whose stack mentions one of marks (e.g.
// "icegate/turn.") to end, failing the run with their stacks otherwise.
// Use it as TestMain: func TestMain(m *testing.M) { leakcheck.Main(m, "icegate/turn.") }.
func Main(m *testing.M, marks ...string) {
	code := m.Run()
	if code == 0 {
		if leak := Leaked(3*time.Second, marks...); leak != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked after the tests:\n%s\n", leak)
			code = 1
		}
	}
	os.Exit(code)
}

// Leaked returns the stacks of goroutines that mention one of marks and
// are still there after wait, or "" when there are none.
func Leaked(wait time.Duration, marks ...string) string {
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaks []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "leakcheck.Leaked(") {
				continue // the goroutine asking
			}
			for _, mark := range marks {
				if strings.Contains(g, mark) {
					leaks = append(leaks, g)
					break
				}
			}
		}
		if len(leaks) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaks, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
