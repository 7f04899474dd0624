// Package icegatebin builds the icegate command of the working tree, for
// the tools that run it as a separate process (tools/relaybench,
// tools/natlab).
package icegatebin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Package is the import path Build compiles. As an import path rather than
// a directory it builds from any directory inside the module.
const Package = "icegate/cmd/icegate"

// BuildTimeout bounds one Build.
const BuildTimeout = 5 * time.Minute

// Version returns `git describe --always --dirty` of the checkout the
// current directory is in, or "dev" when git cannot tell (no git, not a
// checkout, or a checkout git refuses to read as this user).
func Version(ctx context.Context) string {
	b, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output()
	if v := strings.TrimSpace(string(b)); err == nil && v != "" {
		return v
	}
	return "dev"
}

// Build compiles Package into the file out, with `icegate version` printing
// version. The binary is static (CGO_ENABLED=0) and built with -trimpath.
// The go command runs in the current directory, which must be inside the
// icegate module. The error carries the compiler's output.
func Build(ctx context.Context, out, version string) error {
	ctx, cancel := context.WithTimeout(ctx, BuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-X main.version="+version, "-o", out, Package)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", Package, err, output.String())
	}
	return nil
}
