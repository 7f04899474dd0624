package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"icegate/auth"
)

func cred(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("cred", "cred [-secret S | -config F] [-user NAME] [-ttl 24h] [-host H] [-json]")
	secret := fs.String("secret", "", "shared secret (auth.secrets); default: the first secret in -config")
	cfgPath := fs.String("config", "", "config file to take the secret, realm, ports and separator from")
	user := fs.String("user", "", "user id embedded in the username (may be empty)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the credential stays valid")
	host := fs.String("host", "localhost", "host name or IP for the iceServers URLs")
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
	port, tlsPort, sep := 3478, 5349, ":"
	if *cfgPath != "" {
		cfg, err := loadConfig(*cfgPath, stderr)
		if err != nil {
			return err
		}
		port, tlsPort, sep = cfg.Listen.Port, cfg.Listen.TLSPort, cfg.Auth.Separator
		if *secret == "" {
			if len(cfg.Auth.Secrets) == 0 {
				return fmt.Errorf("%s has no auth.secrets to mint with", *cfgPath)
			}
			*secret = cfg.Auth.Secrets[0]
		}
	}
	if *secret == "" {
		fs.Usage()
		return fmt.Errorf("%w: give -secret or -config", errUsage)
	}
	username, password, expires := auth.MintREST(*secret, *user, *ttl, time.Now(), sep)
	servers := iceServers(*host, port, tlsPort, username, password)
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

// iceServers is the browser RTCConfiguration.iceServers for this server.
func iceServers(host string, port, tlsPort int, username, password string) []auth.ICEServer {
	return auth.ICEServers(host, port, tlsPort, auth.Transports{UDP: true, TCP: true, TLS: true}, username, password)
}
