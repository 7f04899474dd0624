package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"icegate/signaling"
)

// token mints a signaling token: what an application's backend does with
// any JWT library (HS256, claims sub, rooms, exp), for scripts and tests.
func token(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", "token [-secret S | -config F] -user ID [-rooms a,b,team-*] [-ttl 1h]")
	secret := fs.String("secret", "", "token secret (signaling.token_secrets); default: the first in -config")
	cfgPath := fs.String("config", "", "config file to take the secret from")
	user := fs.String("user", "", "the application's user id (the token's sub)")
	rooms := fs.String("rooms", "", "comma-separated rooms the holder may join (name, prefix*, or *); empty: any")
	ttl := fs.Duration("ttl", time.Hour, "how long the token stays valid")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: token takes no arguments (got %q)", errUsage, pos)
	}
	if *user == "" {
		fs.Usage()
		return fmt.Errorf("%w: give -user", errUsage)
	}
	if *ttl <= 0 {
		return fmt.Errorf("%w: -ttl must be positive", errUsage)
	}
	if *cfgPath != "" && *secret == "" {
		cfg, err := loadConfig(*cfgPath, stderr)
		if err != nil {
			return err
		}
		if len(cfg.Signaling.TokenSecrets) == 0 {
			return fmt.Errorf("%s has no signaling.token_secrets to mint with", *cfgPath)
		}
		*secret = cfg.Signaling.TokenSecrets[0]
	}
	if *secret == "" {
		fs.Usage()
		return fmt.Errorf("%w: give -secret or -config", errUsage)
	}
	now := time.Now()
	c := signaling.Claims{Subject: *user, Expiry: now.Add(*ttl).Unix(), IssuedAt: now.Unix()}
	for _, r := range strings.Split(*rooms, ",") {
		if r = strings.TrimSpace(r); r != "" {
			c.Rooms = append(c.Rooms, r)
		}
	}
	tok, err := signaling.MintToken(*secret, c)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
