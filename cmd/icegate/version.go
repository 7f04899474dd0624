package main

import (
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=..." (make
// build, make deb, internal/icegatebin). A plain `go build` or `go install`
// leaves "dev", and init replaces it with what the go command recorded.
var version = "dev"

func init() {
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = resolveVersion(version, bi)
	}
}

// resolveVersion is the version `icegate version` prints: the stamped one;
// else the module version the go command recorded (go install
// module@version, and go build in a git checkout since Go 1.24, which
// gives a pseudo-version such as v0.0.0-20261207161445-e811820abcde+dirty);
// else the VCS revision (dev-e811820abcde, -dirty when modified); else
// "dev".
func resolveVersion(stamped string, bi *debug.BuildInfo) string {
	if stamped != "dev" && stamped != "" {
		return stamped
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "dev"
	}
	v := "dev-" + rev[:min(12, len(rev))]
	if modified == "true" {
		v += "-dirty"
	}
	return strings.TrimSpace(v)
}
