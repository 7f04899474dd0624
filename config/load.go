package config

import (
	_ "embed"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// DefaultSource is the Source of a Config built from the defaults alone, and
// the file name in ranges that point into the embedded defaults.
const DefaultSource = "<embedded defaults>"

//go:embed default.hcl
var defaultHCL []byte

// DefaultFile returns the embedded defaults: every attribute with its default
// value and a comment saying what it does. A good start for a new file.
func DefaultFile() []byte {
	return slices.Clone(defaultHCL)
}

// Default returns the embedded defaults, validated. An error means the binary
// was built with broken defaults.
func Default() (*Config, error) {
	c, diags := decodeDefaults()
	if !diags.HasErrors() {
		diags = append(diags, c.Validate()...)
	}
	if diags.HasErrors() {
		return nil, fmt.Errorf("config: embedded defaults are invalid: %s", strings.TrimSpace(FormatDiagnostics(diags)))
	}
	return c, nil
}

// Load reads the HCL file at path on top of the embedded defaults and
// validates the result. The diagnostics hold every problem found, each with
// its file:line when it has one, and may hold warnings when the Config is
// usable; the Config is nil exactly when they hold an error.
func Load(path string) (*Config, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "cannot read config file",
			Detail:   err.Error(),
		}}
	}
	return Parse(src, path)
}

// Parse is Load for a file already read; filename names it in diagnostics.
func Parse(src []byte, filename string) (*Config, hcl.Diagnostics) {
	// A fresh parser each time: hclparse caches files by name.
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, diags
	}
	c, ddiags := decodeDefaults()
	if ddiags.HasErrors() {
		return nil, ddiags
	}
	c.Source = filename
	// Decoding into the struct the defaults filled keeps what the user leaves
	// out: absent attributes are skipped and a block decodes into the existing
	// pointer. Unknown attributes and blocks are errors (see decode.go).
	diags = append(diags, decodeBody(f.Body, c)...)
	// Validate even after decoding errors, so one run reports everything. An
	// attribute that failed to decode kept its default, so this adds no noise.
	diags = append(diags, c.Validate()...)
	sortDiagnostics(diags, filename)
	if diags.HasErrors() {
		return nil, diags
	}
	return c, diags
}

// decodeDefaults decodes the embedded defaults without validating them.
func decodeDefaults() (*Config, hcl.Diagnostics) {
	f, diags := hclparse.NewParser().ParseHCL(defaultHCL, DefaultSource)
	if diags.HasErrors() {
		return nil, diags
	}
	c := &Config{Source: DefaultSource}
	diags = append(diags, decodeBody(f.Body, c)...)
	return c, diags
}

// sortDiagnostics orders diags as a reader of the file wants them: those in
// the file by position, then those elsewhere (the defaults), then those
// without a position. gohcl reports in map order, so this also makes the
// output stable.
func sortDiagnostics(diags hcl.Diagnostics, filename string) {
	rank := func(d *hcl.Diagnostic) int {
		switch {
		case d.Subject == nil:
			return 2
		case d.Subject.Filename == filename:
			return 0
		default:
			return 1
		}
	}
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		ra, rb := rank(a), rank(b)
		if ra != rb || ra == 2 {
			return ra - rb
		}
		if c := strings.Compare(a.Subject.Filename, b.Subject.Filename); c != 0 {
			return c
		}
		return a.Subject.Start.Byte - b.Subject.Start.Byte
	})
}

// FormatDiagnostics renders diags one a line, each ending in a newline, as
//
//	file:line,col-col: severity: summary: detail
//
// leaving out the position when a diagnostic has none and the detail when it
// is empty. This is what `icegate config check` prints.
func FormatDiagnostics(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		if d.Subject != nil {
			b.WriteString(d.Subject.String())
			b.WriteString(": ")
		}
		switch d.Severity {
		case hcl.DiagError:
			b.WriteString("error: ")
		case hcl.DiagWarning:
			b.WriteString("warning: ")
		default:
			b.WriteString("note: ")
		}
		b.WriteString(oneLine(d.Summary))
		if d.Detail != "" {
			b.WriteString(": ")
			b.WriteString(oneLine(d.Detail))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// oneLine folds the line breaks some HCL details carry.
func oneLine(s string) string {
	return strings.TrimSpace(lineBreaks.Replace(s))
}

var lineBreaks = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")
