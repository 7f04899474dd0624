package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Cluster makes signaling a cluster on Redis. The block is optional and
// absent from the embedded defaults: without it signaling runs in one
// process with no Redis, as always. Every attribute needs a restart.
type Cluster struct {
	// RedisURL is where Redis is. Required. One of:
	//
	//	redis://[user:pass@]host[:port][/db]       plain TCP (port 6379, db 0)
	//	rediss://[user:pass@]host[:port][/db]      TLS
	//	unix://[user:pass@]/path/to/redis.sock[?db=N]
	//	redis://host1:26379?addr=host2:26379&master_set=NAME   Sentinel
	RedisURL      string    `hcl:"redis_url,optional"`
	RedisURLRange hcl.Range `hcl:"redis_url,attr_range"`
	// NodeID names this node in member lists and counts: letters, digits,
	// ".", "_" and "-", at most 64. Default "": the host name plus a random
	// suffix, chosen when `icegate serve` starts (cmd/icegate's nodeID),
	// not here, so `config check` says the same every time.
	NodeID      string    `hcl:"node_id,optional"`
	NodeIDRange hcl.Range `hcl:"node_id,attr_range"`
	// NodeTimeout is how long a node may miss heartbeats before the others
	// treat its peers as dropped. At least 1s. Default "10s".
	NodeTimeout      string    `hcl:"node_timeout,optional"`
	NodeTimeoutRange hcl.Range `hcl:"node_timeout,attr_range"`
	// KeyPrefix starts every Redis key icegate writes, so deployments can
	// share one Redis. Default "icegate:".
	KeyPrefix      string    `hcl:"key_prefix,optional"`
	KeyPrefixRange hcl.Range `hcl:"key_prefix,attr_range"`
	// UserQuota says where limits.allocations_per_user counts a user's
	// allocations: "node" (each node on its own, so a user may hold the
	// cap on every node) or "cluster" (on all nodes together, counted in
	// Redis: one round trip per Allocate). Default "node".
	UserQuota      string    `hcl:"user_quota,optional"`
	UserQuotaRange hcl.Range `hcl:"user_quota,attr_range"`
	// DefRange is where the block starts, for a missing redis_url.
	DefRange hcl.Range `hcl:",def_range"`

	// Filled by Validate.
	NodeTimeoutDuration time.Duration
	Redis               RedisTarget
}

// Defaults of the cluster block's optional attributes. They are applied by
// Validate, since the block is not in the embedded defaults.
const (
	DefaultNodeTimeout = 10 * time.Second
	DefaultKeyPrefix   = "icegate:"
	DefaultUserQuota   = "node"
	minNodeTimeout     = time.Second
	maxNodeTimeout     = 10 * time.Minute
	maxNodeIDBytes     = 64
	maxKeyPrefixBytes  = 64
	// Default ports of Redis and of Redis Sentinel.
	redisPort    = "6379"
	sentinelPort = "26379"
)

// RedisTarget is cluster.redis_url taken apart, for whichever Redis client
// the bus uses. Its String and LogValue hide the password.
type RedisTarget struct {
	// Network is "tcp" or "unix".
	Network string
	// Addrs are host:port: the one Redis server, or for Sentinel every
	// sentinel (the URL's host first, then each addr= in order). Empty
	// for "unix".
	Addrs []string
	// SocketPath is the Unix socket's path; "" for "tcp".
	SocketPath string
	// TLS says rediss://: TLS to the server (and to the sentinels), its
	// certificate checked against the host name.
	TLS bool
	// Username and Password authenticate (AUTH); Username "" with a
	// Password is Redis' legacy requirepass.
	Username, Password string
	// DB is the logical database (SELECT).
	DB int
	// MasterSet is the name of the Sentinel master set; "" unless the URL
	// is a Sentinel one. With it, Addrs are sentinels, which the client
	// asks for the current master.
	MasterSet string
}

// Sentinel reports whether t goes through Redis Sentinel.
func (t RedisTarget) Sentinel() bool { return t.MasterSet != "" }

// String renders t as a URL with the password replaced by "xxxxx".
func (t RedisTarget) String() string {
	u := url.URL{Scheme: "redis"}
	if t.TLS {
		u.Scheme = "rediss"
	}
	switch {
	case t.Password != "":
		u.User = url.UserPassword(t.Username, "xxxxx")
	case t.Username != "":
		u.User = url.User(t.Username)
	}
	q := url.Values{}
	if t.Network == "unix" {
		u.Scheme, u.Path = "unix", t.SocketPath
		if t.DB != 0 {
			q.Set("db", strconv.Itoa(t.DB))
		}
	} else {
		if len(t.Addrs) > 0 {
			u.Host = t.Addrs[0]
		}
		if t.DB != 0 {
			u.Path = "/" + strconv.Itoa(t.DB)
		}
		if t.Sentinel() {
			q["addr"] = slices.Clone(t.Addrs[1:])
			q.Set("master_set", t.MasterSet)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// LogValue logs t without its password.
func (t RedisTarget) LogValue() slog.Value { return slog.StringValue(t.String()) }

// redisURLForms is what an error about cluster.redis_url lists.
const redisURLForms = `write redis://[user:pass@]host:port/db, rediss://... for TLS, unix:///path/to/redis.sock?db=N, or redis://host1:26379?addr=host2:26379&master_set=NAME for Sentinel`

// ParseRedisURL takes cluster.redis_url apart; the error says what is wrong
// and never repeats the password.
func ParseRedisURL(s string) (RedisTarget, error) {
	t, err := parseRedisURL(s)
	if err != nil && t.Password != "" && strings.Contains(err.Error(), t.Password) {
		// An error quotes what the input brought (a parameter's name,
		// a malformed query), which may be the password itself: never
		// repeat it (the fuzzer found "//:0000@?0000").
		return RedisTarget{}, errors.New(strings.ReplaceAll(err.Error(), t.Password, "xxxxx"))
	}
	return t, err
}

// parseRedisURL is ParseRedisURL before an error is checked for the
// password.
func parseRedisURL(s string) (RedisTarget, error) {
	var t RedisTarget
	u, err := url.Parse(s)
	if err != nil {
		// url's errors quote the whole URL, password included.
		return t, fmt.Errorf("is not a URL; %s", redisURLForms)
	}
	if u.Fragment != "" || u.Opaque != "" {
		return t, fmt.Errorf("is not a Redis URL; %s", redisURLForms)
	}
	if u.User != nil {
		t.Username = u.User.Username()
		t.Password, _ = u.User.Password()
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return t, fmt.Errorf("has a malformed query: %v", err)
	}
	// Only the parameters below mean something; any other is most likely
	// a client library's option that icegate would silently ignore.
	for k := range q {
		switch k {
		case "db", "addr", "master_set":
		default:
			return t, fmt.Errorf("has the parameter %q; only db (unix://), addr and master_set (Sentinel) are understood", k)
		}
	}
	once := func(k string) (string, error) {
		if len(q[k]) > 1 {
			return "", fmt.Errorf("gives %s more than once", k)
		}
		return q.Get(k), nil
	}
	switch u.Scheme {
	case "redis", "rediss":
		t.Network, t.TLS = "tcp", u.Scheme == "rediss"
		if q.Has("db") {
			return t, fmt.Errorf("gives db as a parameter; for %s:// write it as the path: %s://host:port/%s", u.Scheme, u.Scheme, q.Get("db"))
		}
		master, err := once("master_set")
		if err != nil {
			return t, err
		}
		t.MasterSet = master
		if q.Has("master_set") && master == "" {
			return t, fmt.Errorf("has an empty master_set; name the Sentinel master set")
		}
		if q.Has("addr") && master == "" {
			return t, fmt.Errorf("has addr= without master_set=: addr lists more sentinels, so name the master set too")
		}
		def := redisPort
		if t.Sentinel() {
			def = sentinelPort
		}
		if u.Host == "" {
			return t, fmt.Errorf("names no host; %s", redisURLForms)
		}
		first, err := hostPort(u.Host, def)
		if err != nil {
			return t, err
		}
		t.Addrs = []string{first}
		for _, a := range q["addr"] {
			hp, err := hostPort(a, def)
			if err != nil {
				return t, fmt.Errorf("addr=%s: %w", a, err)
			}
			t.Addrs = append(t.Addrs, hp)
		}
		switch p := strings.TrimPrefix(u.Path, "/"); {
		case p == "":
		case strings.Contains(p, "/"):
			return t, fmt.Errorf("has the path %q; the path is only the database number, as in /0", u.Path)
		default:
			if t.DB, err = dbNumber(p); err != nil {
				return t, err
			}
		}
	case "unix":
		t.Network = "unix"
		if u.Host != "" {
			return t, fmt.Errorf("has the host %q; write unix:///path/to/redis.sock (three slashes)", u.Host)
		}
		if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
			return t, fmt.Errorf("names no absolute socket path; write unix:///path/to/redis.sock")
		}
		if q.Has("addr") || q.Has("master_set") {
			return t, fmt.Errorf("is a unix:// URL with Sentinel parameters; Sentinel needs redis:// or rediss://")
		}
		t.SocketPath = u.Path
		db, err := once("db")
		if err != nil {
			return t, err
		}
		if db != "" {
			if t.DB, err = dbNumber(db); err != nil {
				return t, err
			}
		}
	case "":
		return t, fmt.Errorf("has no scheme; %s", redisURLForms)
	default:
		return t, fmt.Errorf("has the scheme %q; %s", u.Scheme, redisURLForms)
	}
	return t, nil
}

// hostPort checks host[:port] and adds the default port.
func hostPort(hp, defPort string) (string, error) {
	host, port := hp, defPort
	if h, p, err := net.SplitHostPort(hp); err == nil {
		host, port = h, p
	} else if strings.Count(hp, ":") > 1 && !strings.HasPrefix(hp, "[") {
		return "", fmt.Errorf("%q: write an IPv6 address in brackets, as [::1]:6379", hp)
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		return "", fmt.Errorf("%q names no host", hp)
	}
	if err := checkHost(host); err != nil {
		return "", fmt.Errorf("host %q %v", host, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("port %q is not a number 1-65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

// dbNumber parses a logical database number.
func dbNumber(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil {
		return 0, fmt.Errorf("has the database %q, not a number 0 or above", s)
	}
	return int(n), nil
}

// checkNodeID accepts what cluster.node_id may be: it goes in Redis keys,
// member lists and logs.
func checkNodeID(id string) error {
	if len(id) > maxNodeIDBytes {
		return fmt.Errorf("is longer than %d bytes", maxNodeIDBytes)
	}
	for _, r := range id {
		if !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return fmt.Errorf("may hold only letters, digits, \".\", \"_\" and \"-\"")
		}
	}
	return nil
}

func (c *Cluster) validate(v *validator) {
	c.Redis = RedisTarget{}
	if c.RedisURL == "" {
		rng := c.RedisURLRange
		if !v.wrote(rng) {
			rng = c.DefRange
		}
		v.errorf(rng, "cluster.redis_url", "missing; a cluster needs its Redis (%s)", strings.TrimPrefix(redisURLForms, "write "))
	} else if t, err := ParseRedisURL(c.RedisURL); err != nil {
		// Never quote the URL: it may carry a password.
		v.errorf(c.RedisURLRange, "cluster.redis_url", "%v", err)
	} else {
		c.Redis = t
	}

	if c.NodeID != "" {
		if err := checkNodeID(c.NodeID); err != nil {
			v.errorf(c.NodeIDRange, "cluster.node_id", "%q %v", c.NodeID, err)
		}
	}

	// The block is not in the embedded defaults, so an attribute left out
	// is "" here: give it its default. One the user wrote as "" is an
	// error like any other bad value.
	if c.NodeTimeout == "" && !v.wrote(c.NodeTimeoutRange) {
		c.NodeTimeout = DefaultNodeTimeout.String()
	}
	c.NodeTimeoutDuration, _ = v.durationBetween(c.NodeTimeout, c.NodeTimeoutRange, "cluster.node_timeout", minNodeTimeout, maxNodeTimeout, "1s", "10m")

	switch {
	case c.UserQuota == "" && !v.wrote(c.UserQuotaRange):
		c.UserQuota = DefaultUserQuota
	case c.UserQuota != "node" && c.UserQuota != "cluster":
		v.errorf(c.UserQuotaRange, "cluster.user_quota", "%q is not \"node\" or \"cluster\"", c.UserQuota)
	}

	switch {
	case c.KeyPrefix == "" && !v.wrote(c.KeyPrefixRange):
		c.KeyPrefix = DefaultKeyPrefix
	case c.KeyPrefix == "":
		v.errorf(c.KeyPrefixRange, "cluster.key_prefix", "empty; leave it out for the default %q, so icegate's keys stay apart from others'", DefaultKeyPrefix)
	case len(c.KeyPrefix) > maxKeyPrefixBytes:
		v.errorf(c.KeyPrefixRange, "cluster.key_prefix", "is longer than %d bytes", maxKeyPrefixBytes)
	default:
		for i := 0; i < len(c.KeyPrefix); i++ {
			if b := c.KeyPrefix[i]; b <= ' ' || b > '~' {
				v.errorf(c.KeyPrefixRange, "cluster.key_prefix", "%q is not printable ASCII without spaces", c.KeyPrefix)
				break
			}
		}
	}
}
