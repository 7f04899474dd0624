package main

import (
	"errors"
	"strings"
	"testing"

	"icegate/config"
	"icegate/turn"
)

// The relay's refusal to start with relay.kernel_offload = "on" names the
// setting as the file spells it and where it was written, not the Go
// field turn knows it by.
func TestOffloadStartError(t *testing.T) {
	cfg, diags := config.Parse([]byte("relay {\n  kernel_offload = \"on\"\n}\n"), "site.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	cause := errors.New("the kernel refused")
	err := offloadStartError(cfg, &turn.OffloadError{Err: cause})
	msg := err.Error()
	if !strings.HasPrefix(msg, "site.hcl:2,") || !strings.Contains(msg, `relay.kernel_offload = "on"`) ||
		strings.Contains(msg, "Relay.KernelOffload") || !errors.Is(err, cause) {
		t.Errorf("got %q", msg)
	}
	other := errors.New("listen: address in use")
	if got := offloadStartError(cfg, other); got != other {
		t.Errorf("another error changed: %v", got)
	}
}
