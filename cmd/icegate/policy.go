package main

import (
	"fmt"
	"io"
	"net/netip"

	"icegate/turn"
)

const policyUsage = `Usage: icegate policy explain IP[:PORT] [-config F]

  explain IP   show which peer-policy rule decides whether relays may reach
               IP, and why, as the server started with -config F (default:
               the embedded defaults) decides it: its policy block, and its
               own relay addresses, found as the server finds them at start,
               which relays reach only on the relay ports. With a PORT
               ([IPv6]:PORT), the verdict for data or a channel to that port.
`

func policyCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, policyUsage)
		return nil
	}
	if len(args) == 0 || args[0] != "explain" {
		fmt.Fprint(stderr, policyUsage)
		return fmt.Errorf("%w: policy needs a subcommand: explain IP[:PORT] [-config F]", errUsage)
	}
	fs := newFlagSet("policy explain", "policy explain IP[:PORT] [-config F]")
	cfgPath := fs.String("config", "", "config file whose policy block to use (default: embedded defaults)")
	pos, err := parseFlags(fs, args[1:], stderr)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: policy explain needs exactly one IP", errUsage)
	}
	peer, err := parsePeer(pos[0])
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		return err
	}
	// The policy the server builds from this file, around the relay
	// addresses it would advertise on this host: one function for both.
	p, err := turn.NewPeerPolicy(turnConfig(cfg))
	if err != nil {
		return err
	}
	for _, line := range p.Explain(peer) {
		fmt.Fprintln(stdout, line)
	}
	return nil
}

// parsePeer reads IP or IP:PORT ([IPv6]:PORT); no port is port 0, which
// PeerPolicy.Explain takes as a permission's question (no port).
func parsePeer(s string) (netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, 0), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: %q is not an IP address or IP:PORT", errUsage, s)
	}
	return ap, nil
}
