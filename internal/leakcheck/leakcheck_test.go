package leakcheck

import (
	"strings"
	"testing"
	"time"
)

// TestLeaked: a goroutine still running is reported with its stack; once it
// has ended, it is not.
func TestLeaked(t *testing.T) {
	stop := make(chan struct{})
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		close(started)
		<-stop
	}()
	<-started
	// The goroutine's stack names this test (its function, or "created by").
	leak := Leaked(100*time.Millisecond, "leakcheck.TestLeaked")
	if !strings.Contains(leak, "TestLeaked") {
		t.Fatalf("a blocked goroutine was not reported: %q", leak)
	}
	close(stop)
	<-done
	if leak := Leaked(time.Second, "leakcheck.TestLeaked"); leak != "" {
		t.Fatalf("an ended goroutine was reported:\n%s", leak)
	}
}
