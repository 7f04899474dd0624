package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestParseRedisURL takes every accepted form apart and refuses the rest
// with an error that names the problem and never the password.
func TestParseRedisURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want RedisTarget
		str  string // String(), "" for the url itself
	}{
		{"redis://127.0.0.1:6379/0", RedisTarget{Network: "tcp", Addrs: []string{"127.0.0.1:6379"}}, "redis://127.0.0.1:6379"},
		{"redis://localhost", RedisTarget{Network: "tcp", Addrs: []string{"localhost:6379"}}, "redis://localhost:6379"},
		{"redis://u:p%40ss@redis.example.com:7000/3", RedisTarget{Network: "tcp", Addrs: []string{"redis.example.com:7000"}, Username: "u", Password: "p@ss", DB: 3}, "redis://u:xxxxx@redis.example.com:7000/3"},
		{"redis://:legacy@[::1]:6379/", RedisTarget{Network: "tcp", Addrs: []string{"[::1]:6379"}, Password: "legacy"}, "redis://:xxxxx@[::1]:6379"},
		{"redis://onlyuser@h:1", RedisTarget{Network: "tcp", Addrs: []string{"h:1"}, Username: "onlyuser"}, ""},
		{"rediss://h.example.com:6380/1", RedisTarget{Network: "tcp", Addrs: []string{"h.example.com:6380"}, TLS: true, DB: 1}, ""},
		{"unix:///run/redis/redis.sock", RedisTarget{Network: "unix", SocketPath: "/run/redis/redis.sock"}, ""},
		{"unix://:pw@/run/redis.sock?db=5", RedisTarget{Network: "unix", SocketPath: "/run/redis.sock", Password: "pw", DB: 5}, "unix://:xxxxx@/run/redis.sock?db=5"},
		{"redis://s1:26379?addr=s2:26379&addr=s3&master_set=main", RedisTarget{Network: "tcp", Addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, MasterSet: "main"},
			"redis://s1:26379?addr=s2%3A26379&addr=s3%3A26379&master_set=main"},
		{"rediss://s1/2?master_set=m", RedisTarget{Network: "tcp", Addrs: []string{"s1:26379"}, TLS: true, DB: 2, MasterSet: "m"}, "rediss://s1:26379/2?master_set=m"},
	} {
		got, err := ParseRedisURL(tc.url)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tc.want) {
			t.Errorf("%s:\n got %#v\nwant %#v", tc.url, got, tc.want)
		}
		str := tc.str
		if str == "" {
			str = tc.url
		}
		if got.String() != str {
			t.Errorf("%s: String() = %s, want %s", tc.url, got, str)
		}
		// What String gives parses back to the same target, password aside.
		again, err := ParseRedisURL(got.String())
		if want := got; err != nil || want.Password != "" && again.Password != "xxxxx" || func() bool {
			again.Password, want.Password = "", ""
			return !slices.Equal(again.Addrs, want.Addrs) || again.Network != want.Network || again.DB != want.DB ||
				again.MasterSet != want.MasterSet || again.TLS != want.TLS || again.SocketPath != want.SocketPath
		}() {
			t.Errorf("%s: String() %s parses back as %#v, %v", tc.url, got, again, err)
		}
	}

	for _, tc := range []struct{ url, want string }{
		{"http://h:6379", `has the scheme "http"`},
		{"h:6379", "is not a Redis URL"},
		{"localhost", "has no scheme"},
		{"redis://", "names no host"},
		{"redis://:6379", "names no host"},
		{"redis://h:0", `port "0" is not a number 1-65535`},
		{"redis://h:99999", `port "99999"`},
		{"redis://h/x", `has the database "x"`},
		{"redis://h/-1", `has the database "-1"`},
		{"redis://h/0/1", "the path is only the database number"},
		{"redis://h?db=2", "for redis:// write it as the path"},
		{"redis://h/0#frag", "is not a Redis URL"},
		{"redis://h?dial_timeout=1s", `has the parameter "dial_timeout"`},
		{"redis://h?addr=s2:26379", "addr= without master_set="},
		{"redis://h?master_set=", "empty master_set"},
		{"redis://h?master_set=a&master_set=b", "gives master_set more than once"},
		{"redis://h?addr=bad:port&master_set=m", `addr=bad:port: port "port"`},
		{"redis://h?addr=::1:26379&master_set=m", "IPv6 address in brackets"},
		{"redis://bad_host!:1", `host "bad_host!"`},
		{"unix://host/run/redis.sock", `has the host "host"`},
		{"unix://", "names no absolute socket path"},
		{"unix:///s?db=x", `has the database "x"`},
		{"unix:///s?master_set=m", "Sentinel needs redis://"},
		{"redis://u:secretpw@h:1/zz", `has the database "zz"`},
		{"redis://u:secretpw@h\x7f:1", "is not a URL"},
	} {
		_, err := ParseRedisURL(tc.url)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.url, err, tc.want)
		} else if strings.Contains(err.Error(), "secretpw") {
			t.Errorf("%q: the error shows the password: %v", tc.url, err)
		}
	}
}

// TestClusterDefaults: a cluster block with only redis_url gets the
// documented defaults; node_id stays "" (chosen at start, not here); no
// block leaves Cluster nil; and a logged target hides its password.
func TestClusterDefaults(t *testing.T) {
	c, diags := Parse([]byte("cluster {\n  redis_url = \"redis://:pw@127.0.0.1:6379/0\"\n}\n"+
		"auth {\n  secrets = [\"cluster-shared-secret-0123456789abcdef\"]\n}\nsignaling {\n  turn_host = \"turn.example.com\"\n}\n"), "c.hcl")
	if diags.HasErrors() || len(diags) > 0 {
		t.Fatal(FormatDiagnostics(diags))
	}
	cl := c.Cluster
	if cl.NodeID != "" || cl.NodeTimeout != "10s" || cl.NodeTimeoutDuration != 10*time.Second || cl.KeyPrefix != "icegate:" || cl.UserQuota != "node" ||
		cl.Redis.Addrs[0] != "127.0.0.1:6379" || cl.Redis.Password != "pw" {
		t.Errorf("cluster %+v", cl)
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "redis", cl.Redis)
	if strings.Contains(b.String(), "pw@") || !strings.Contains(b.String(), "redis://:xxxxx@127.0.0.1:6379") {
		t.Errorf("logged %s", b.String())
	}
	if c, _ := Parse(nil, "empty.hcl"); c.Cluster != nil {
		t.Errorf("no cluster block gave %+v", c.Cluster)
	}
	// Built in code: the defaults apply too, and a missing URL is an error.
	code := &Config{Realm: "r", ShutdownGrace: "1s", Cluster: &Cluster{}}
	got := FormatDiagnostics(code.Validate())
	if !strings.HasPrefix(got, "error: cluster.redis_url: missing; a cluster needs its Redis (redis://[user:pass@]host:port/db, rediss://... for TLS, unix:///path/to/redis.sock?db=N, or redis://host1:26379?addr=host2:26379&master_set=NAME for Sentinel)\n") ||
		strings.Count(got, "error:") != 1 ||
		code.Cluster.NodeTimeoutDuration != 10*time.Second || code.Cluster.KeyPrefix != "icegate:" {
		t.Errorf("built in code: %+v\n%s", code.Cluster, got)
	}
	// Written empty, node_timeout is an error like any bad value.
	_, diags = Parse([]byte("cluster {\n  redis_url = \"redis://h\"\n  node_timeout = \"\"\n}\n"), "c.hcl")
	if got := FormatDiagnostics(diags); !strings.Contains(got, `c.hcl:3,3-20: error: cluster.node_timeout: "" is not a duration`) {
		t.Errorf("empty node_timeout: %s", got)
	}
}

// FuzzParseRedisURL checks that no input makes ParseRedisURL panic, that
// an error never repeats the password, and that an accepted URL's
// String (password hidden) is accepted again as the same target.
func FuzzParseRedisURL(f *testing.F) {
	for _, s := range []string{
		"redis://127.0.0.1:6379/0", "rediss://u:p@h:6380/2", "unix:///run/redis.sock?db=3",
		"redis://s1:26379?addr=s2:26379&master_set=m", "redis://[::1]/1", "http://x", "redis://h?x=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tgt, err := ParseRedisURL(s)
		if err != nil {
			if u, perr := url.Parse(s); perr == nil && u.User != nil {
				// The error's fixed help text (its examples name port 26379)
				// is not the password: only what the input brought counts.
				shown := strings.ReplaceAll(err.Error(), redisURLForms, "")
				if pw, ok := u.User.Password(); ok && len(pw) >= 4 && strings.Contains(shown, pw) {
					t.Fatalf("%q: error shows the password: %v", s, err)
				}
			}
			return
		}
		again, err := ParseRedisURL(tgt.String())
		if err != nil {
			t.Fatalf("%q: String() %q does not parse: %v", s, tgt.String(), err)
		}
		if tgt.Password != "" {
			again.Password = tgt.Password
		}
		if fmt.Sprintf("%#v", again) != fmt.Sprintf("%#v", tgt) {
			t.Fatalf("%q: String() %q parses as\n%#v\nnot\n%#v", s, tgt.String(), again, tgt)
		}
	})
}
