package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"icegate/stun/natcheck"
)

const natcheckSynopsis = "natcheck [stun:host[:port]] [-json] [-timeout 500ms] [-attempts 2] [-max-attempts 10] [-interval 120ms] [-local IP] [-lifetime [-lifetime-max 2m]]"

// natcheckCmd runs the RFC 5780 tests against a STUN server with an
// alternate address (icegate with stun.alternate_address, or coturn with two
// listening IPs) and prints what NAT lies between. The report goes to
// stdout (JSON with -json); progress of the long lifetime test goes to
// stderr, so that -json's output stays one JSON document.
func natcheckCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("natcheck", natcheckSynopsis)
	asJSON := fs.Bool("json", false, "print the report as JSON (schema in docs/nat.md)")
	timeout := fs.Duration("timeout", 500*time.Millisecond, "how long one attempt waits for an answer")
	attempts := fs.Int("attempts", 2, "least tries per request; while answers go missing, a test whose missing answer decides a verdict is retried more (up to -max-attempts)")
	maxAttempts := fs.Int("max-attempts", 10, "most tries per request; a verdict that still rests on answers loss could explain is reported with confidence low")
	interval := fs.Duration("interval", 120*time.Millisecond, "least time between two requests (at least 100ms: under 10 a second)")
	local := fs.String("local", "", "local IP to send from (default: the one routing picks)")
	lifetime := fs.Bool("lifetime", false, "also measure how long an idle binding lives: takes at most -lifetime-max (a few seconds more if answers go missing), progress on stderr")
	lifetimeMax := fs.Duration("lifetime-max", 2*time.Minute, "longest the lifetime test runs, and so the longest binding lifetime it can find (at least 1s)")
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
	if *maxAttempts < *attempts || *maxAttempts > 20 {
		return fmt.Errorf("%w: -max-attempts must be between -attempts (%d) and 20", errUsage, *attempts)
	}
	if *lifetimeMax < time.Second {
		return fmt.Errorf("%w: -lifetime-max %s is below 1s", errUsage, *lifetimeMax)
	}
	opts := natcheck.Options{
		Server: server, Timeout: *timeout, Attempts: *attempts, MaxAttempts: *maxAttempts, Interval: *interval,
		Lifetime: *lifetime, LifetimeMax: *lifetimeMax, Progress: stderr,
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
	if r.Mapped != nil {
		fmt.Fprintf(w, "mapped    %s\n", *r.Mapped)
	}
	fmt.Fprintf(w, "verdict   %s\n", r.Classic)
	if r.Reach == natcheck.Answered && r.ServerProblem == "" {
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
	if r.Lifetime != nil {
		fmt.Fprintf(w, "lifetime  %s\n", formatLifetime(r.Lifetime))
	}
	if r.ServerProblem != "" {
		fmt.Fprintf(w, "server problem: %s\n", r.ServerProblem)
	}
	fmt.Fprintf(w, "WebRTC    %s\n", r.WebRTC)
	if len(r.Peers.Relay) > 0 && len(r.Peers.Relay) < len(natcheck.PeerKinds) {
		fmt.Fprintf(w, "relay     against %s\n", strings.Join(r.Peers.Relay, "; "))
	}
	fmt.Fprintf(w, "requests  %d sent, %d of them retries; %d answers missing among those that came in the end\n",
		r.Requests, r.Retries, r.AnswersMissing)
	fmt.Fprintf(w, "confidence %s\n", r.Confidence)
	for _, c := range r.Caveats {
		fmt.Fprintf(w, "  caveat: %s\n", c)
	}
	fmt.Fprintf(w, "\nevidence:\n")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  test\tfrom\tto\tchange\ttries\tanswer from\tmapped\tnote")
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
		tries := fmt.Sprint(t.Attempts)
		if t.ControlsSent > 0 {
			tries += fmt.Sprintf(" (+%d/%d controls answered)", t.ControlsAnswered, t.ControlsSent)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Local, t.To, change, tries, from, mapped, note)
	}
	_ = tw.Flush()
}

// formatLifetime prints the lifetime bounds truthfully: one decimal, the
// lower bound rounded down and the upper one up, so the printed range
// always contains the measured one (3.75-5 s is "3.7-5.0 s", never "4-5").
func formatLifetime(l *natcheck.Lifetime) string {
	var s string
	switch {
	case l.AtLeastSeconds != nil && l.BelowSeconds != nil:
		s = fmt.Sprintf("%s-%s s (idle UDP binding)", down(*l.AtLeastSeconds), up(*l.BelowSeconds))
	case l.AtLeastSeconds != nil:
		s = fmt.Sprintf("at least %s s (outlived every probe)", down(*l.AtLeastSeconds))
	case l.BelowSeconds != nil:
		s = fmt.Sprintf("under %s s", up(*l.BelowSeconds))
	default:
		s = "no result"
	}
	if l.Result == "interrupted" {
		s += ", interrupted"
	}
	if l.Confidence == natcheck.Low {
		s += ", confidence low"
	}
	if l.Note != "" && l.Result != "measured" {
		s += ": " + l.Note
	}
	return s
}

// down and up round to one decimal towards zero and away from it. The
// small epsilon keeps 0.3 from becoming 0.4 through 0.30000000000000004.
func down(x float64) string { return strconv.FormatFloat(math.Floor(x*10+1e-9)/10, 'f', 1, 64) }
func up(x float64) string   { return strconv.FormatFloat(math.Ceil(x*10-1e-9)/10, 'f', 1, 64) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
