package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"icegate/signaling"
)

// token mints a signaling token: what an application's backend does with
// any JWT library (HS256, claims sub, rooms, exp, iat, and optionally aud
// and meta), for scripts and tests.
func token(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", "token [-secret S | -config F] -user ID [-rooms a,b,team-*] [-ttl 1h] [-aud A] [-meta JSON]")
	secret := fs.String("secret", "", "token secret (signaling.token_secrets); default: the first in -config")
	cfgPath := fs.String("config", "", "config file to take the secret from")
	user := fs.String("user", "", "the application's user id (the token's sub)")
	rooms := fs.String("rooms", "", "comma-separated rooms the holder may join (name, prefix*, or *); empty: any")
	ttl := fs.Duration("ttl", time.Hour, "how long the token stays valid")
	aud := fs.String("aud", "", "comma-separated audiences (the token's aud; signaling.token_audience must be one); default: the -config's signaling.token_audience")
	meta := fs.String("meta", "", "a JSON object the application says about the user (the token's meta, at most 1024 bytes)")
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
	var c signaling.Claims
	for _, r := range strings.Split(*rooms, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		// A room no join can name would make a token that never works.
		if err := signaling.CheckRoomPattern(r); err != nil {
			return fmt.Errorf("%w: -rooms: %v", errUsage, err)
		}
		c.Rooms = append(c.Rooms, r)
	}
	if *meta != "" {
		m := []byte(strings.TrimSpace(*meta))
		if !json.Valid(m) || m[0] != '{' {
			return fmt.Errorf("%w: -meta must be a JSON object, such as '{\"name\":\"Alice\"}'", errUsage)
		}
		// The claim is carried as given; compacting it first makes the
		// size the one the token holds.
		c.Meta = compactJSON(m)
		if len(c.Meta) > signaling.MaxMetaBytes {
			return fmt.Errorf("%w: -meta is %d bytes compacted, more than %d", errUsage, len(c.Meta), signaling.MaxMetaBytes)
		}
	}
	for _, a := range strings.Split(*aud, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.Audience = append(c.Audience, a)
		}
	}
	if *cfgPath != "" && (*secret == "" || len(c.Audience) == 0) {
		cfg, err := loadConfig(*cfgPath, stderr)
		if err != nil {
			return err
		}
		if *secret == "" {
			if len(cfg.Signaling.TokenSecrets) == 0 {
				return fmt.Errorf("%s has no signaling.token_secrets to mint with", *cfgPath)
			}
			*secret = cfg.Signaling.TokenSecrets[0]
		}
		if a := cfg.Signaling.TokenAudience; len(c.Audience) == 0 && a != "" {
			c.Audience = signaling.Audience{a}
		}
		if lim := cfg.Signaling.MaxTokenLifetimeDuration; lim > 0 && *ttl > lim {
			return fmt.Errorf("%w: -ttl %s is longer than %s's signaling.max_token_lifetime %s: the server would refuse the token", errUsage, *ttl, *cfgPath, lim)
		}
	}
	if *secret == "" {
		fs.Usage()
		return fmt.Errorf("%w: give -secret or -config", errUsage)
	}
	now := time.Now()
	c.Subject, c.Expiry, c.IssuedAt = *user, now.Add(*ttl).Unix(), now.Unix()
	tok, err := signaling.MintToken(*secret, c)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// compactJSON removes the insignificant space of valid JSON.
func compactJSON(b []byte) json.RawMessage {
	var buf bytes.Buffer
	_ = json.Compact(&buf, b)
	return buf.Bytes()
}
