package leakcheck

import (
	"strings"
	"testing"
	"time"
)

func blockedHelper(stop chan struct{}) { <-stop }

// TestLeaked: a goroutine still running is reported with its stack; once it
// has ended, it is not.
func TestLeaked(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); blockedHelper(stop) }()
	leak := Leaked(100*time.Millisecond, "leakcheck.blockedHelper")
	if !strings.Contains(leak, "blockedHelper") {
		t.Fatalf("a blocked goroutine was not reported: %q", leak)
	}
	close(stop)
	<-done
	if leak := Leaked(time.Second, "leakcheck.blockedHelper"); leak != "" {
		t.Fatalf("an ended goroutine was reported:\n%s", leak)
	}
}
