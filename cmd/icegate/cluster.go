package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"icegate/config"
	"icegate/signaling"
	"icegate/signaling/redisbus"
	"icegate/steer"
	"icegate/turn"
)

// signalingBus returns the bus signaling runs on: nil (the in-process
// default) without a cluster block, else the Redis bus for this node. Redis
// must answer at start; once running, the bus rides out Redis going away
// (messages get cluster-unavailable meanwhile).
//
// client is the cluster's Redis client (clusterClient), which the bus
// shares with the usage record and leaves for serve to close.
func signalingBus(c *config.Cluster, client rueidis.Client, log *slog.Logger, reg prometheus.Registerer) (signaling.Bus, error) {
	if c == nil {
		return nil, nil
	}
	id := nodeID(c)
	b, err := redisbus.New(redisbus.Options{URL: c.RedisURL, NodeID: id, NodeTimeout: c.NodeTimeoutDuration,
		Prefix: c.KeyPrefix, Logger: log, Registerer: reg, Client: client})
	if err != nil {
		return nil, fmt.Errorf("cluster.redis_url %s: %w", c.Redis, err)
	}
	log.Info("signaling cluster", "node", id, "redis", c.Redis, "node_timeout", c.NodeTimeoutDuration)
	return b, nil
}

// clusterClient connects to the cluster's Redis: nil without a cluster
// block. Redis must answer at start. One client serves the signaling bus
// and the usage record; serve closes it after both.
func clusterClient(c *config.Cluster) (rueidis.Client, error) {
	if c == nil {
		return nil, nil
	}
	client, err := redisbus.NewClient(c.RedisURL, 0)
	if err != nil {
		return nil, fmt.Errorf("cluster.redis_url %s: %w", c.Redis, err)
	}
	return client, nil
}

// nodeID is this process's name in a signaling cluster: cluster.node_id,
// or when that is "" the host name plus a random suffix ("web-3-1f9c2a"),
// so two processes on one host, or a restarted one, never share a name
// while the old one's members are still in Redis. It is chosen here, when
// `icegate serve` starts, not in config: `config check` stays
// deterministic. The result passes config's node_id rule (letters,
// digits, ".", "_", "-", at most 64 bytes).
func nodeID(c *config.Cluster) string {
	if c != nil && c.NodeID != "" {
		return c.NodeID
	}
	host, err := os.Hostname()
	if err != nil {
		host = ""
	}
	return defaultNodeID(host, randomSuffix())
}

// defaultNodeID joins a host name, made to fit node_id's rule, and suffix.
func defaultNodeID(host, suffix string) string {
	host = strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '-'
	}, host)
	// 64 bytes in all: the suffix and its "-" keep their room.
	if limit := 64 - 1 - len(suffix); len(host) > limit {
		host = host[:limit]
	}
	host = strings.Trim(host, "-.")
	if host == "" {
		host = "icegate"
	}
	return host + "-" + suffix
}

// randomSuffix is 6 hex digits: 16 million values, enough that two
// processes starting on one host do not collide.
func randomSuffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// steering is TURN load steering on a cluster (package steer): this
// node's record in Redis, and the choices the relay and signaling ask of
// it. The zero value (no cluster) steers nothing.
type steering struct {
	dir  atomic.Pointer[steer.Directory]
	self string
	stop func()
	// users counts allocations per user across the cluster
	// (cluster.user_quota = "cluster"); nil otherwise.
	users atomic.Pointer[steer.UserCounts]
}

// userQuotaWait bounds the Redis round trip of a cluster-wide
// allocations_per_user check, made on the read loop of the listener the
// Allocate came on: past it the check counts this node alone.
const userQuotaWait = 100 * time.Millisecond

// elsewhere is the relay's Options.UserElsewhere: the user's allocations
// on the other live nodes (0 without a cluster-wide quota).
func (st *steering) elsewhere(user string) int {
	if u := st.users.Load(); u != nil {
		return u.Elsewhere(user)
	}
	return 0
}

// count follows the relay's allocation events into the cluster-wide
// counts.
func (st *steering) count(e turn.Event) {
	u := st.users.Load()
	if u == nil {
		return
	}
	switch e.Kind {
	case turn.EventAllocationCreated:
		u.Add(e.UserID, 1)
	case turn.EventAllocationDeleted:
		u.Add(e.UserID, -1)
	}
}

// alternate is the relay's Options.Alternate: the least loaded healthy
// other node serving the transport, for a 300 Try Alternate.
func (st *steering) alternate(transport string, v6 bool) (turn.Alternate, bool) {
	d := st.dir.Load()
	if d == nil {
		return turn.Alternate{}, false
	}
	n, ap, ok := d.PickAlternate(transport, v6)
	if !ok {
		return turn.Alternate{}, false
	}
	alt := turn.Alternate{Addr: ap, Realm: n.Realm, Nonce: n.Nonce, Node: n.ID}
	if _, err := netip.ParseAddr(n.Host); err != nil {
		alt.Domain = n.Host
	}
	return alt, true
}

// pick is signaling's Options.Steer: another node when it is less loaded
// than this one (or this one is draining or full), else this node's own.
func (st *steering) pick() (signaling.TURNNode, bool) {
	d := st.dir.Load()
	if d == nil {
		return signaling.TURNNode{}, false
	}
	n, ok := d.Pick()
	if !ok || n.ID == st.self {
		return signaling.TURNNode{}, false
	}
	return signaling.TURNNode{Node: n.ID, Host: n.Host, Relay: signaling.Relay{
		Port: n.Port, TLSPort: n.TLSPort, UDP: n.UDP, TCP: n.TCP, TLS: n.TLS}}, true
}

// publish tells the other nodes at once (after SIGUSR1 or at shutdown).
// nodes is the cluster's nodes for the admin API; nil before start.
func (st *steering) nodes() []steer.Node {
	if d := st.dir.Load(); d != nil {
		return d.Nodes()
	}
	return nil
}

func (st *steering) publish() {
	if d := st.dir.Load(); d != nil {
		d.Publish()
	}
}

// start begins heartbeating this node's record on bus's Redis; stop (run
// by Close) removes the record. cur is the config in force (turn_host, the
// realm and the cap follow a reload where those do).
func (st *steering) start(bus *redisbus.Bus, c *config.Cluster, cur func() *config.Config, srv *turn.Server, log *slog.Logger) error {
	var cpu steer.CPUSampler
	st.self = bus.NodeID()
	var users *steer.UserCounts
	var rate bitRate
	instance := ""
	if c.UserQuota == "cluster" {
		users = steer.NewUserCounts(bus.Client(), bus.Prefix(), bus.NodeID(), userQuotaWait, log)
		instance = users.Instance()
	}
	d, err := steer.New(steer.Options{Client: bus.Client(), Prefix: bus.Prefix(), NodeID: bus.NodeID(), TTL: c.NodeTimeoutDuration, Logger: log,
		Instance: instance, Self: func(ctx context.Context) steer.Node { return selfNode(ctx, cur(), srv, &cpu, &rate) }})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx) })
	if users != nil {
		wg.Go(func() { users.Run(ctx) })
		st.users.Store(users)
	}
	st.stop = func() { cancel(); wg.Wait() }
	st.dir.Store(d)
	if cur().Signaling.TURNHost == "" {
		log.Warn("cluster: signaling.turn_host is not set, so other nodes never send clients to this node's relay (they cannot know its name)")
	}
	return nil
}

// Close stops heartbeating and removes this node's record.
func (st *steering) Close() {
	if st.stop != nil {
		st.stop()
	}
}

// selfNode is this node's steering record: where clients reach its relay,
// what it serves, and its load now.
func selfNode(ctx context.Context, cfg *config.Config, srv *turn.Server, cpu *steer.CPUSampler, rate *bitRate) steer.Node {
	port, tlsPort := servedPorts(srv.Addrs())
	n := steer.Node{
		Host: cfg.Signaling.TURNHost, Port: port, TLSPort: tlsPort, Realm: cfg.Realm,
		UDP: cfg.Listen.UDPOn() && port > 0, TCP: cfg.Listen.TCPOn() && port > 0,
		TLS: cfg.Listen.TLSOn() && tlsPort > 0, DTLS: cfg.Listen.DTLSOn() && tlsPort > 0,
		Load: steer.Load{Allocations: srv.AllocationCount(), Capacity: max(cfg.Limits.AllocationsTotal, 0),
			BitRate: rate.sample(srv.RelayedTotals()), CPU: cpu.Sample(), Draining: srv.Draining()},
	}
	if n.Host == "" {
		return n
	}
	if !n.Draining {
		// For the 300s of other nodes that send clients here.
		if nonce, err := srv.Nonce(ctx); err == nil {
			n.Nonce = nonce
		}
	}
	// ALTERNATE-SERVER carries an address: turn_host itself, or what it
	// resolves to (looked up each heartbeat, so a DNS change follows).
	if a, err := netip.ParseAddr(strings.Trim(n.Host, "[]")); err == nil {
		n.Addrs = []netip.Addr{a.Unmap()}
	} else if addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", n.Host); err == nil {
		for _, a := range addrs {
			n.Addrs = append(n.Addrs, a.Unmap())
		}
	}
	return n
}

// bitRate turns the relay's byte totals (icegate_relayed_bytes_total)
// into the rate relayed between two heartbeats, both directions, in bits
// per second: the steering record's BitRate.
type bitRate struct {
	mu   sync.Mutex
	last uint64
	at   time.Time
}

// sample returns the rate since the previous sample: 0 on the first.
func (b *bitRate) sample(totals map[string]turn.Traffic) float64 {
	var total uint64
	for _, t := range totals {
		total += t.BytesToPeer + t.BytesToClient
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	rate := 0.0
	if d := now.Sub(b.at).Seconds(); !b.at.IsZero() && d > 0 && total >= b.last {
		rate = float64(total-b.last) * 8 / d
	}
	b.last, b.at = total, now
	return rate
}
