package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const adminSynopsis = `admin [-url URL] [-key KEY] COMMAND
  list [-sessions] [-user U] [-custom-id C] [-client IP[:PORT]]
                          live allocations (or signaling sessions)
  show ID                 one allocation
  kick ID | kick -user U | kick -session ID | kick -session-user SUB
                          end an allocation, a user's allocations, or signaling sessions
  drain | undrain | status
                          refuse new allocations (as SIGUSR1), accept them again, or say which
  usage [-user U] [-custom-id C] [-from 24h|TIME] [-to TIME] [-step 1h] [-scope node|cluster]
                          relayed traffic per user and custom identifier
  nodes                   the cluster's nodes and their load (steering records)
The key is one of api.keys, from -key or $ICEGATE_API_KEY.`

// adminCmd calls the admin API of a running server (admin.go) and prints
// its JSON answer.
func adminCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin", adminSynopsis)
	base := fs.String("url", "http://127.0.0.1:9641", "the metrics listener's URL (metrics.listen)")
	key := fs.String("key", "", "an API key (api.keys); default $ICEGATE_API_KEY")
	fs.SetOutput(stderr)
	// Global flags come before the command; the command's own after it.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: admin needs a command", errUsage)
	}
	if *key == "" {
		*key = os.Getenv("ICEGATE_API_KEY")
	}
	if *key == "" {
		return fmt.Errorf("%w: admin needs an API key: -key or $ICEGATE_API_KEY (one of api.keys)", errUsage)
	}
	c := adminClient{base: strings.TrimSuffix(*base, "/"), key: *key, out: stdout}
	cmd, cargs := rest[0], rest[1:]
	sub := newFlagSet("admin "+cmd, adminSynopsis)
	switch cmd {
	case "list":
		sessions := sub.Bool("sessions", false, "list signaling sessions instead of allocations")
		user := sub.String("user", "", "only this user id (a session's token sub with -sessions)")
		custom := sub.String("custom-id", "", "only this custom identifier")
		client := sub.String("client", "", "only this client IP or IP:port")
		if err := parseNone(sub, cargs, stderr); err != nil {
			return err
		}
		if *sessions {
			return c.do(ctx, http.MethodGet, "/api/v1/admin/sessions", url.Values{"user": {*user}})
		}
		return c.do(ctx, http.MethodGet, "/api/v1/admin/allocations", url.Values{"user": {*user}, "custom_id": {*custom}, "client": {*client}})
	case "show":
		pos, err := parseFlags(sub, cargs, stderr)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("%w: admin show takes one allocation id", errUsage)
		}
		return c.do(ctx, http.MethodGet, "/api/v1/admin/allocations/"+url.PathEscape(pos[0]), nil)
	case "kick":
		user := sub.String("user", "", "every allocation of this user id")
		session := sub.String("session", "", "this signaling session")
		sessionUser := sub.String("session-user", "", "every signaling session of this user (token sub)")
		pos, err := parseFlags(sub, cargs, stderr)
		if err != nil {
			return err
		}
		n := len(pos)
		for _, s := range []string{*user, *session, *sessionUser} {
			if s != "" {
				n++
			}
		}
		if n != 1 || len(pos) > 1 {
			return fmt.Errorf("%w: admin kick takes exactly one of ID, -user, -session, -session-user", errUsage)
		}
		switch {
		case len(pos) == 1:
			return c.do(ctx, http.MethodDelete, "/api/v1/admin/allocations/"+url.PathEscape(pos[0]), nil)
		case *user != "":
			return c.do(ctx, http.MethodDelete, "/api/v1/admin/allocations", url.Values{"user": {*user}})
		case *session != "":
			return c.do(ctx, http.MethodDelete, "/api/v1/admin/sessions/"+url.PathEscape(*session), nil)
		default:
			return c.do(ctx, http.MethodDelete, "/api/v1/admin/sessions", url.Values{"user": {*sessionUser}})
		}
	case "nodes":
		if err := parseNone(sub, cargs, stderr); err != nil {
			return err
		}
		return c.do(ctx, http.MethodGet, "/api/v1/admin/nodes", nil)
	case "drain", "undrain", "status":
		if err := parseNone(sub, cargs, stderr); err != nil {
			return err
		}
		switch cmd {
		case "drain":
			return c.do(ctx, http.MethodPost, "/api/v1/admin/drain", nil)
		case "undrain":
			return c.do(ctx, http.MethodPost, "/api/v1/admin/undrain", nil)
		}
		return c.do(ctx, http.MethodGet, "/api/v1/admin/drain", nil)
	case "usage":
		user := sub.String("user", "", "only this user id")
		custom := sub.String("custom-id", "", "only this custom identifier")
		from := sub.String("from", "", "start: an RFC 3339 time or a duration back from now (default: the whole retention)")
		to := sub.String("to", "", "end: an RFC 3339 time or a duration back from now (default: now)")
		step := sub.String("step", "", "one row per key and window of this many minutes (1m, 1h); default one row per key")
		scope := sub.String("scope", "", "node (this node's record) or cluster (every node's, from Redis); default cluster when the node has a cluster block")
		if err := parseNone(sub, cargs, stderr); err != nil {
			return err
		}
		return c.do(ctx, http.MethodGet, "/api/v1/admin/usage", url.Values{"user": {*user}, "custom_id": {*custom},
			"from": {*from}, "to": {*to}, "step": {*step}, "scope": {*scope}})
	}
	return fmt.Errorf("%w: unknown admin command %q (list, show, kick, drain, undrain, status, usage, nodes)", errUsage, cmd)
}

// parseNone parses flags and refuses positional arguments.
func parseNone(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: admin %s takes no arguments (got %q)", errUsage, fs.Name(), pos)
	}
	return nil
}

// adminClient calls the admin API.
type adminClient struct {
	base, key string
	out       io.Writer
}

// do sends one request and prints the answer; a non-2xx answer is an error
// with the server's message.
func (c adminClient) do(ctx context.Context, method, path string, q url.Values) error {
	for k, v := range q {
		if len(v) == 0 || v[0] == "" {
			q.Del(k)
		}
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin: reading the answer: %w", err)
	}
	if res.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("admin: %s %s: %s (%s)", method, path, e.Error.Message, res.Status)
		}
		return fmt.Errorf("admin: %s %s: %s", method, path, res.Status)
	}
	_, err = c.out.Write(body)
	return err
}
