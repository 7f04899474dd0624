package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"icegate/stun/natcheck"
)

const natcheckSynopsis = "natcheck [stun:host[:port]] [-json] [-timeout 500ms] [-attempts 2] [-interval 120ms] [-local IP] [-lifetime [-lifetime-max 2m]]"

// natcheckCmd runs the RFC 5780 tests against a STUN server with an
// alternate address (icegate with stun.alternate_address, or coturn with two
// listening IPs) and prints what NAT lies between.
func natcheckCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("natcheck", natcheckSynopsis)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	timeout := fs.Duration("timeout", 500*time.Millisecond, "how long one attempt waits for an answer")
	attempts := fs.Int("attempts", 2, "how often a request is sent before a test counts as unanswered")
	interval := fs.Duration("interval", 120*time.Millisecond, "least time between two requests (at least 100ms: under 10 a second)")
	local := fs.String("local", "", "local IP to send from (default: the one routing picks)")
	lifetime := fs.Bool("lifetime", false, "also measure how long an idle binding lives (takes up to -lifetime-max)")
	lifetimeMax := fs.Duration("lifetime-max", 2*time.Minute, "longest binding lifetime searched")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	target := "stun:127.0.0.1:3478"
	switch len(pos) {
	case 0:
	case 1:
		target = pos[0]
	default:
		fs.Usage()
		return fmt.Errorf("%w: natcheck takes one server", errUsage)
	}
	server, err := parseSTUNURI(target)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *interval < 100*time.Millisecond {
		return fmt.Errorf("%w: -interval %s is below 100ms (natcheck stays under 10 requests a second)", errUsage, *interval)
	}
	if *timeout <= 0 || *attempts < 1 || *attempts > 10 {
		return fmt.Errorf("%w: -timeout must be positive and -attempts 1-10", errUsage)
	}
	opts := natcheck.Options{
		Server: server, Timeout: *timeout, Attempts: *attempts, Interval: *interval,
		Lifetime: *lifetime, LifetimeMax: *lifetimeMax,
	}
	if *local != "" {
		ip, err := netip.ParseAddr(*local)
		if err != nil {
			return fmt.Errorf("%w: -local %q is not an IP address", errUsage, *local)
		}
		opts.LocalIP = ip
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := natcheck.Run(ctx, opts)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReport(stdout, rep)
	return nil
}

// parseSTUNURI accepts stun:host[:port] (RFC 7064), host[:port] and
// [v6]:port, with 3478 as the default port.
func parseSTUNURI(s string) (string, error) {
	rest := strings.TrimPrefix(s, "stun:")
	if strings.HasPrefix(s, "stuns:") || strings.HasPrefix(s, "turn") {
		return "", fmt.Errorf("%q: natcheck speaks plain STUN over UDP (stun:host[:port])", s)
	}
	if i := strings.IndexAny(rest, "?/"); i >= 0 {
		rest = rest[:i]
	}
	if rest == "" {
		return "", fmt.Errorf("%q has no host", s)
	}
	if host, port, err := net.SplitHostPort(rest); err == nil {
		if host == "" || port == "" {
			return "", fmt.Errorf("%q has no host or port", s)
		}
		return rest, nil
	}
	if ip, err := netip.ParseAddr(strings.Trim(rest, "[]")); err == nil {
		return netip.AddrPortFrom(ip, 3478).String(), nil
	}
	if strings.Contains(rest, ":") {
		return "", fmt.Errorf("%q is not stun:host[:port]", s)
	}
	return net.JoinHostPort(rest, "3478"), nil
}

func printReport(w io.Writer, r *natcheck.Report) {
	fmt.Fprintf(w, "server    %s\n", r.Server)
	if r.Local != "" {
		fmt.Fprintf(w, "local     %s\n", r.Local)
	}
	if r.Mapped != "" {
		fmt.Fprintf(w, "mapped    %s\n", r.Mapped)
	}
	fmt.Fprintf(w, "verdict   %s\n", r.Classic)
	if r.UDP && r.ServerProblem == "" {
		fmt.Fprintf(w, "mapping   %s\nfiltering %s\n", r.Mapping, r.Filtering)
	}
	if r.Hairpinning != nil {
		fmt.Fprintf(w, "hairpin   %s\n", yesNo(*r.Hairpinning))
	}
	if r.ALG != nil {
		alg := "none seen (MAPPED-ADDRESS equals XOR-MAPPED-ADDRESS)"
		if *r.ALG {
			alg = "YES: a middlebox rewrote MAPPED-ADDRESS"
		}
		fmt.Fprintf(w, "ALG       %s\n", alg)
	}
	if r.LifetimeSeconds != nil {
		if r.LifetimeMaxSeconds != nil {
			fmt.Fprintf(w, "lifetime  %.0f-%.0f s (idle UDP binding)\n", *r.LifetimeSeconds, *r.LifetimeMaxSeconds)
		} else {
			fmt.Fprintf(w, "lifetime  at least %.0f s\n", *r.LifetimeSeconds)
		}
	}
	if r.ServerProblem != "" {
		fmt.Fprintf(w, "server problem: %s\n", r.ServerProblem)
	}
	fmt.Fprintf(w, "WebRTC    %s\n\nevidence:\n", r.WebRTC)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  test\tfrom\tto\tchange\tanswer from\tmapped\tnote")
	for _, t := range r.Tests {
		from, mapped := "-", "-"
		if t.Answered {
			from, mapped = t.From, t.Mapped
		}
		if mapped == "" {
			mapped = "-"
		}
		note := t.Note
		if t.Error != "" {
			note = strings.TrimSpace(t.Error + "; " + note)
		}
		change := t.Change
		if t.ResponsePort != 0 {
			change = fmt.Sprintf("response-port %d", t.ResponsePort)
		}
		if change == "" {
			change = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Local, t.To, change, from, mapped, note)
	}
	_ = tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
