// Command icegate is a STUN/TURN relay. Each subcommand is a small function
// in this directory; the work happens in the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `icegate: a STUN/TURN relay (RFC 8489, 8656, 6062, 6156)

Usage:
  icegate serve [-config FILE]          run the server (embedded defaults without -config)
  icegate config check FILE             validate a config file, printing file:line for each problem
  icegate config default                print the embedded default config
  icegate config import TURNSERVER.CONF translate coturn's config into icegate's (stdout), listing
                                        what is not carried over and why (stderr), then check it
  icegate cred [-secret S | -config F] [-user NAME] [-ttl 24h] [-host H] [-json]
                                        mint time-limited TURN credentials (coturn's use-auth-secret)
  icegate policy explain IP[:PORT] [-config F]
                                        show which peer-policy rule decides IP (and PORT) and why,
                                        as the server with that config decides it
  icegate token [-secret S | -config F] -user ID [-rooms a,b] [-ttl 1h]
                                        mint a signaling token (HS256 JWT) for /ws and /api
  icegate natcheck [stun:host[:port]] [-json] [-lifetime]
                                        find out what NAT lies between here and a STUN server
                                        with RFC 5780 (icegate with stun.alternate_address)
  icegate healthcheck [-addr 127.0.0.1:3478]
                                        exit 0 when the server answers a STUN Binding there
                                        (a container's HEALTHCHECK)
  icegate admin [-url URL] [-key KEY] list|show|kick|drain|undrain|status|usage
                                        call a running server's admin API (api.keys; the
                                        key also from $ICEGATE_API_KEY)
  icegate version                       print the version

Run "icegate COMMAND -h" for a command's flags.
`

// errUsage marks errors that are the user's invocation, not a failure.
var errUsage = errors.New("usage")

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "icegate:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "icegate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stdout, stderr)
	case "config":
		return configCmd(rest, stdinReader, stdout, stderr)
	case "cred":
		return cred(rest, stdout, stderr)
	case "policy":
		return policyCmd(rest, stdout, stderr)
	case "token":
		return token(rest, stdout, stderr)
	case "natcheck":
		return natcheckCmd(ctx, rest, stdout, stderr)
	case "healthcheck":
		return healthcheckCmd(ctx, rest, stdout, stderr)
	case "admin":
		return adminCmd(ctx, rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "icegate", version)
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	if isHelp(cmd) {
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

// parseFlags parses fs allowing flags after positional arguments
// ("policy explain 10.0.0.1 -config f.hcl"), returning the positionals.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, error) {
	fs.SetOutput(stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: icegate %s\n", synopsis)
		if strings.Contains(synopsis, "-") {
			fs.PrintDefaults()
		}
	}
	return fs
}

// isHelp reports whether arg asks for help, as the flag package reads it.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "--h", "help":
		return true
	}
	return false
}
