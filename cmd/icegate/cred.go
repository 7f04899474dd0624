package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"icegate/auth"
	"icegate/config"
)

func cred(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("cred", "cred [-secret S | -config F] [-user NAME] [-ttl 24h] [-host H] [-json]")
	secret := fs.String("secret", "", "shared secret (auth.secrets); default: the first secret in -config")
	cfgPath := fs.String("config", "", "config file to take the secret, ports, transports, separator and turn_host from")
	user := fs.String("user", "", "user id embedded in the username (may be empty)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the credential stays valid")
	host := fs.String("host", "", "host name or IP for the iceServers URLs; default: signaling.turn_host, else localhost")
	asJSON := fs.Bool("json", false, "print only the iceServers JSON")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: cred takes no arguments (got %q)", errUsage, pos)
	}
	if *ttl <= 0 {
		return fmt.Errorf("%w: -ttl must be positive", errUsage)
	}
	if *secret == "" && *cfgPath == "" {
		fs.Usage()
		return fmt.Errorf("%w: give -secret or -config", errUsage)
	}
	// Without -config the embedded defaults give the ports and transports.
	cfg, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		return err
	}
	if *secret == "" {
		if len(cfg.Auth.Secrets) == 0 {
			return fmt.Errorf("%s has no auth.secrets to mint with", *cfgPath)
		}
		*secret = cfg.Auth.Secrets[0]
	}
	h := *host
	if h == "" {
		h = cfg.Signaling.TURNHost
	}
	if h == "" {
		h = "localhost"
	}
	username, password, expires := auth.MintREST(*secret, *user, *ttl, time.Now(), cfg.Auth.Separator)
	servers := iceServers(cfg.Listen, h, username, password)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(servers)
	}
	fmt.Fprintf(stdout, "username: %s\npassword: %s\nexpires:  %s\n\niceServers:\n", username, password, expires.UTC().Format(time.RFC3339))
	b, _ := json.MarshalIndent(servers, "", "  ")
	fmt.Fprintf(stdout, "%s\n", b)
	return nil
}

// iceServers is the browser RTCConfiguration.iceServers for this server at
// host, naming only the transports l switches on, as the signaling server
// hands them out. An IPv6 host may be written in brackets.
func iceServers(l *config.Listen, host, username, password string) []auth.ICEServer {
	t := auth.Transports{
		UDP: l.UDPOn(),
		TCP: l.TCPOn(),
		TLS: l.TLSOn(),
	}
	return auth.ICEServers(host, l.Port, l.TLSPort, t, username, password)
}
