package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, and that its results
// hold together: a Config exactly when there is no error, a Config that
// validates again, and one formatted line per diagnostic.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*/*.hcl")
	if err != nil {
		f.Fatal(err)
	}
	examples, _ := filepath.Glob("../docs/examples/*.hcl")
	for _, path := range append(append(seeds, examples...), "default.hcl") {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		c, diags := Parse(src, "fuzz.hcl")
		if (c == nil) != diags.HasErrors() {
			t.Fatalf("config %v with errors %v:\n%s", c != nil, diags.HasErrors(), FormatDiagnostics(diags))
		}
		if out := FormatDiagnostics(diags); strings.Count(out, "\n") != len(diags) {
			t.Fatalf("%d diagnostics formatted as:\n%s", len(diags), out)
		}
		if c != nil {
			if again := c.Validate(); again.HasErrors() {
				t.Fatalf("second Validate failed:\n%s", FormatDiagnostics(again))
			}
		}
	})
}
