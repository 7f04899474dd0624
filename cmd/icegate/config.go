package main

import (
	"fmt"
	"io"

	"icegate/config"
)

const configUsage = `Usage: icegate config check FILE | config default

  check FILE   load FILE on top of the embedded defaults and validate it,
               printing every problem as file:line: severity: message;
               exits 1 when there is an error
  default      print the embedded default config, every attribute with its
               default and a comment (a good start for a new file)
`

func configCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, configUsage)
		return fmt.Errorf("%w: config needs a subcommand: check FILE, or default", errUsage)
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
