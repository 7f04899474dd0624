package redisbus

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"icegate/signaling"
)

// Options configure a Bus. Zero values mean the defaults stated.
type Options struct {
	// URL names the Redis server (see ParseURL for the forms). Required.
	URL string
	// NodeID names this node in member lists, counts and its delivery
	// channel. Required; unique per running node.
	NodeID string
	// NodeTimeout is how long a node may miss heartbeats (sent every
	// NodeTimeout/3) before the others hold its sessions. Default 10s.
	NodeTimeout time.Duration
	// Prefix starts every key and channel. Default "icegate:". Nodes of one
	// cluster share it; tests give each bus set its own.
	Prefix string
	// OpTimeout bounds each operation; past it the operation fails with
	// signaling.ErrUnavailable. Default 1.5s.
	OpTimeout time.Duration
	// ReapInterval is how often this node looks for dead nodes and held
	// sessions whose grace ended. Default 1s.
	ReapInterval time.Duration
	// Logger receives state changes (Redis up and down, nodes taken over);
	// nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Client, when set, is the Redis client the bus uses (from NewClient,
	// with the same OpTimeout), shared with other users of the cluster's
	// Redis; Close leaves it open for its owner to close. URL is still
	// required: the heartbeats always get a connection of their own (the
	// bus dials it), so they never queue behind the shared client's
	// traffic. Default nil: the bus connects
	// to URL itself and closes its client on Close.
	Client rueidis.Client
}

func (o Options) withDefaults() Options {
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = 10 * time.Second
	}
	if o.Prefix == "" {
		o.Prefix = "icegate:"
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = 1500 * time.Millisecond
	}
	if o.ReapInterval <= 0 {
		o.ReapInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// The query parameters a URL may carry (rueidis's names). Anything else is
// refused, so a typo is not silently ignored.
// knownParams are the query parameters of a Redis URL: the same as
// config.ParseRedisURL takes (cmd/icegate's TestRedisURLFormsAgree).
var knownParams = map[string]bool{"db": true, "addr": true, "master_set": true}

// ParseURL checks a Redis URL as `cluster.redis_url` takes it, without
// connecting:
//
//	redis://[user:pass@]host:port/db           plain TCP
//	rediss://[user:pass@]host:port/db          TLS
//	unix:///path/to/redis.sock?db=N            unix socket
//	redis://host1:26379?addr=host2:26379&master_set=NAME   Sentinel (rueidis's convention)
//
// Query parameters: db (unix://), addr and master_set (Sentinel); others
// are refused, as config check refuses them. The error says what is wrong.
func ParseURL(raw string) error {
	_, err := clientOption(raw)
	return err
}

func clientOption(raw string) (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	u, err := url.Parse(raw)
	if err != nil {
		return opt, fmt.Errorf("redis url: %w", err)
	}
	q := u.Query()
	for k := range q {
		if !knownParams[k] {
			return opt, fmt.Errorf("redis url: unknown parameter %q", k)
		}
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Hostname() == "" {
			return opt, errors.New("redis url: no host")
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return opt, fmt.Errorf("redis url: bad port %q", p)
			}
		}
		if db := strings.Trim(u.Path, "/"); db != "" && !validDB(db) {
			return opt, fmt.Errorf("redis url: database %q is not a number", db)
		}
		if q.Has("addr") && !q.Has("master_set") {
			return opt, errors.New("redis url: addr= lists Sentinels and needs master_set=")
		}
	case "unix":
		if u.Host != "" || !path.IsAbs(u.Path) {
			return opt, errors.New("redis url: unix:// needs an absolute socket path (unix:///run/redis.sock)")
		}
		if q.Has("addr") || q.Has("master_set") {
			return opt, errors.New("redis url: Sentinel (addr=, master_set=) needs redis:// or rediss://")
		}
	case "":
		return opt, errors.New("redis url: no scheme (redis://, rediss:// or unix://)")
	default:
		return opt, fmt.Errorf("redis url: scheme %q is not redis, rediss or unix", u.Scheme)
	}
	if q.Has("db") && !validDB(q.Get("db")) {
		return opt, fmt.Errorf("redis url: db %q is not a number", q.Get("db"))
	}
	if q.Has("master_set") && q.Get("master_set") == "" {
		return opt, errors.New("redis url: master_set is empty")
	}
	opt, err = rueidis.ParseURL(raw)
	if err != nil {
		return opt, fmt.Errorf("redis url: %w", err)
	}
	return opt, nil
}

func validDB(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0
}

func sortRooms(r []signaling.RoomInfo) {
	slices.SortFunc(r, func(a, b signaling.RoomInfo) int { return strings.Compare(a.Name, b.Name) })
}
