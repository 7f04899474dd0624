//go:build !unix

package main

import "log/slog"

// raiseFileLimit has nothing to raise on systems without RLIMIT_NOFILE.
func raiseFileLimit(*slog.Logger, int, int, int) {}
