package main

import (
	"fmt"
	"io"
	"os"

	"icegate/config"
)

const configUsage = `Usage: icegate config check FILE | config default | config import TURNSERVER.CONF

  check FILE   load FILE on top of the embedded defaults and validate it,
               printing every problem as file:line: severity: message;
               exits 1 when there is an error
  default      print the embedded default config, every attribute with its
               default and a comment (a good start for a new file)
  import TURNSERVER.CONF
               translate coturn's turnserver.conf ("-" reads standard input)
               into an icegate config on standard output; every option not
               carried over as it was is listed, with why, on standard error
               and at the top of the output; then the result is checked as
               "config check" does, and the exit is 1 when it does not
               validate
`

func configCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, configUsage)
		return fmt.Errorf("%w: config needs a subcommand: check FILE, default, or import TURNSERVER.CONF", errUsage)
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, configUsage)
		return nil
	}
	switch args[0] {
	case "check":
		fs := newFlagSet("config check", "config check FILE")
		pos, err := parseFlags(fs, args[1:], stderr)
		if err != nil {
			return err
		}
		if len(pos) != 1 || pos[0] == "" {
			fs.Usage()
			return fmt.Errorf("%w: config check needs exactly one FILE", errUsage)
		}
		if _, err := loadConfig(pos[0], stderr); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", pos[0])
		return nil
	case "default":
		fs := newFlagSet("config default", "config default")
		pos, err := parseFlags(fs, args[1:], stderr)
		if err != nil {
			return err
		}
		if len(pos) != 0 {
			return fmt.Errorf("%w: config default takes no arguments (got %q)", errUsage, pos)
		}
		_, err = stdout.Write(config.DefaultFile())
		return err
	case "import":
		fs := newFlagSet("config import", "config import TURNSERVER.CONF")
		pos, err := parseFlags(fs, args[1:], stderr)
		if err != nil {
			return err
		}
		if len(pos) != 1 || pos[0] == "" {
			fs.Usage()
			return fmt.Errorf("%w: config import needs exactly one TURNSERVER.CONF (\"-\" for standard input)", errUsage)
		}
		return configImport(pos[0], stdin, stdout, stderr)
	}
	fmt.Fprint(stderr, configUsage)
	return fmt.Errorf("%w: unknown config subcommand %q", errUsage, args[0])
}

// loadConfig reads path, or the embedded defaults when path is "". It
// prints every diagnostic, warnings included, to stderr; the error counts
// the errors among them. config.Load gives a nil Config exactly when there
// is an error.
func loadConfig(path string, stderr io.Writer) (*config.Config, error) {
	if path == "" {
		return config.Default()
	}
	cfg, diags := config.Load(path)
	if len(diags) > 0 {
		fmt.Fprint(stderr, config.FormatDiagnostics(diags))
	}
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s: %d problem(s)", path, len(diags.Errs()))
	}
	return cfg, nil
}

// stdinReader is what "config import -" reads; tests replace it.
var stdinReader io.Reader = os.Stdin

// importedName names the imported config in its check's diagnostics,
// whose line numbers are those of the output.
const importedName = "imported.hcl"

// configImport translates the coturn config at path (standard input for
// "-") with config.ImportCoturn, writes the HCL to stdout, the notes to
// stderr (they never hold a secret), and then checks the HCL as `config
// check` would. The HCL is written even when it does not validate, so the
// problems can be fixed in it; the error says so.
func configImport(path string, stdin io.Reader, stdout, stderr io.Writer) error {
	var src []byte
	var err error
	if path == "-" {
		src, err = io.ReadAll(io.LimitReader(stdin, maxCoturnFile+1))
	} else {
		src, err = readLimited(path, maxCoturnFile+1)
	}
	if err != nil {
		return fmt.Errorf("config import: %w", err)
	}
	if len(src) > maxCoturnFile {
		return fmt.Errorf("config import: %s is larger than %d bytes; not a turnserver.conf", path, maxCoturnFile)
	}
	name := path
	if path == "-" {
		name = "<stdin>"
	}

	im := config.ImportCoturn(src)
	for _, n := range im.Notes {
		// "turnserver.conf:65: not carried over: mobility: why".
		at := name
		if n.Line > 0 {
			at = fmt.Sprintf("%s:%d", name, n.Line)
		}
		n.Line = 0
		fmt.Fprintf(stderr, "%s: %s: %s\n", at, n.Kind, n)
	}
	if _, err := stdout.Write(im.HCL); err != nil {
		return err
	}

	_, diags := config.Parse(im.HCL, importedName)
	if len(diags) > 0 {
		fmt.Fprint(stderr, config.FormatDiagnostics(diags))
	}
	if diags.HasErrors() {
		return fmt.Errorf("config import: the imported config does not validate: %d problem(s), at the output's lines (%s); fix them in the output", len(diags.Errs()), importedName)
	}
	fmt.Fprintf(stderr, "%s: %d note(s); config check of the output: ok\n", name, len(im.Notes))
	return nil
}

// maxCoturnFile bounds what config import reads: coturn's own example
// file is 30 KB.
const maxCoturnFile = 4 << 20

// readLimited reads at most n bytes of the file at path.
func readLimited(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}
