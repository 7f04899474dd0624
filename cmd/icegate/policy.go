package main

import (
	"fmt"
	"io"
	"net/netip"

	"icegate/auth"
)

const policyUsage = `Usage: icegate policy explain IP [-config F]

  explain IP   show which peer-policy rule decides whether relays may reach
               IP, and why, with the policy block of -config F (default: the
               embedded defaults)
`

func policyCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, policyUsage)
		return nil
	}
	if len(args) == 0 || args[0] != "explain" {
		fmt.Fprint(stderr, policyUsage)
		return fmt.Errorf("%w: policy needs a subcommand: explain IP [-config F]", errUsage)
	}
	fs := newFlagSet("policy explain", "policy explain IP [-config F]")
	cfgPath := fs.String("config", "", "config file whose policy block to use (default: embedded defaults)")
	pos, err := parseFlags(fs, args[1:], stderr)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: policy explain needs exactly one IP", errUsage)
	}
	ip, err := netip.ParseAddr(pos[0])
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", errUsage, pos[0])
	}
	cfg, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		return err
	}
	// The server's own relay addresses, as far as the config names them.
	var self []netip.Addr
	for _, a := range []netip.Addr{cfg.Relay.IPv4PublicAddr, cfg.Relay.IPv4BindAddr, cfg.Relay.IPv6PublicAddr, cfg.Relay.IPv6BindAddr} {
		if a.IsValid() && !a.IsUnspecified() {
			self = append(self, a)
		}
	}
	p, err := auth.NewPolicy(auth.PolicyConfig{
		Presets: cfg.Policy.Presets, Allow: cfg.Policy.AllowPrefixes, Deny: cfg.Policy.DenyPrefixes, Self: self,
	})
	if err != nil {
		return err
	}
	for _, line := range p.Explain(ip) {
		fmt.Fprintln(stdout, line)
	}
	return nil
}
