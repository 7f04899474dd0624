package steer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Options configure a Directory. Zero values mean the defaults stated.
type Options struct {
	// Client is the Redis connection (the signaling bus's). Required.
	Client rueidis.Client
	// Prefix starts every key (cluster.key_prefix). Default "icegate:".
	Prefix string
	// NodeID is this node's id. Required.
	NodeID string
	// TTL is how long a record outlives its last heartbeat
	// (cluster.node_timeout): a node that stops is forgotten after it.
	// Default 10s.
	TTL time.Duration
	// Interval is the heartbeat: how often this node writes its record and
	// reads the others'. Default TTL/3.
	Interval time.Duration
	// Self returns this node's record as it is now (ID and Updated are
	// filled in). Required. It is called once per heartbeat, and may take
	// up to an Interval (it may resolve a host name).
	Self func(ctx context.Context) Node
	// Instance, when set, is kept alive with each heartbeat (the key
	// PREFIX "turn:inst:" Instance, with the TTL): the UserCounts of this
	// process, whose counts others add up only while it lives.
	Instance string
	// Logger receives state changes; nil discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = "icegate:"
	}
	if o.TTL <= 0 {
		o.TTL = 10 * time.Second
	}
	if o.Interval <= 0 {
		o.Interval = o.TTL / 3
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Directory keeps this node's record in Redis and a copy of every node's
// in memory, from which Pick and PickAlternate answer without a round
// trip: they run for every credential minted and every refused Allocate.
//
// In Redis each node has one key, PREFIX "turn:node:" ID, holding its
// record as JSON with a TTL, and its id in the set PREFIX "turn:nodes"
// (a reader removes the ids whose key expired). A heartbeat is one SET and
// SADD, then SMEMBERS and one MGET: O(nodes) per heartbeat per node.
type Directory struct {
	opt   Options
	log   *slog.Logger
	key   string
	set   string
	nodes atomic.Pointer[[]Node]
	// readAt is when the others' records were last read, Unix ns; past a
	// TTL without a read (Redis away) only this node's own record counts.
	readAt atomic.Int64
	self   atomic.Pointer[Node]
	kick   chan struct{}
	up     atomic.Bool
	wg     sync.WaitGroup
}

// New returns a Directory; it publishes nothing until Run.
func New(opts Options) (*Directory, error) {
	opts = opts.withDefaults()
	switch {
	case opts.Client == nil:
		return nil, errors.New("steer: Client is required")
	case opts.NodeID == "":
		return nil, errors.New("steer: NodeID is required")
	case opts.Self == nil:
		return nil, errors.New("steer: Self is required")
	}
	d := &Directory{
		opt:  opts,
		log:  opts.Logger.With("component", "steer", "node", opts.NodeID),
		key:  opts.Prefix + "turn:node:" + opts.NodeID,
		set:  opts.Prefix + "turn:nodes",
		kick: make(chan struct{}, 1),
	}
	d.up.Store(true)
	return d, nil
}

// Run heartbeats until ctx ends, then removes this node's record (so the
// others stop steering to it at once, not a TTL later).
func (d *Directory) Run(ctx context.Context) {
	t := time.NewTicker(d.opt.Interval)
	defer t.Stop()
	for {
		d.round(ctx)
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			keys := []string{d.key}
			if d.opt.Instance != "" {
				keys = append(keys, d.opt.Prefix+"turn:inst:"+d.opt.Instance)
			}
			_ = d.opt.Client.Do(dctx, d.opt.Client.B().Del().Key(keys...).Build()).Error()
			return
		case <-t.C:
		case <-d.kick:
		}
	}
}

// Publish asks for a heartbeat now, without waiting for it: when this
// node starts or stops draining, the others should know within a round
// trip, not an Interval.
func (d *Directory) Publish() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Refresh runs one heartbeat now and waits for it: tests, and a caller
// that must see the others' latest records.
func (d *Directory) Refresh(ctx context.Context) error { return d.round(ctx) }

// round writes this node's record and reads every node's.
func (d *Directory) round(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.opt.Interval)
	defer cancel()
	self := d.opt.Self(ctx)
	self.ID = d.opt.NodeID
	self.Updated = time.Now().UnixMilli()
	d.self.Store(&self)
	err := d.exchange(ctx, &self)
	switch was := d.up.Swap(err == nil); {
	case err != nil && was:
		d.log.Warn("cannot reach Redis: steering to this node only until it answers", "err", err)
	case err == nil && !was:
		d.log.Info("Redis answers again: steering across the cluster")
	}
	return err
}

func (d *Directory) exchange(ctx context.Context, self *Node) error {
	b, err := json.Marshal(self)
	if err != nil {
		return err
	}
	c := d.opt.Client
	cmds := rueidis.Commands{
		c.B().Set().Key(d.key).Value(string(b)).PxMilliseconds(d.opt.TTL.Milliseconds()).Build(),
		c.B().Sadd().Key(d.set).Member(d.opt.NodeID).Build(),
	}
	if d.opt.Instance != "" {
		cmds = append(cmds, c.B().Set().Key(d.opt.Prefix+"turn:inst:"+d.opt.Instance).Value("1").PxMilliseconds(d.opt.TTL.Milliseconds()).Build())
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("steer: publishing: %w", err)
		}
	}
	ids, err := c.Do(ctx, c.B().Smembers().Key(d.set).Build()).AsStrSlice()
	if err != nil {
		return fmt.Errorf("steer: listing nodes: %w", err)
	}
	slices.Sort(ids)
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = d.opt.Prefix + "turn:node:" + id
	}
	var vals []rueidis.RedisMessage
	if len(keys) > 0 {
		if vals, err = c.Do(ctx, c.B().Mget().Key(keys...).Build()).ToArray(); err != nil {
			return fmt.Errorf("steer: reading nodes: %w", err)
		}
	}
	nodes := make([]Node, 0, len(ids))
	var gone []string
	for i, v := range vals {
		s, err := v.ToString()
		if err != nil {
			// Expired: the node stopped heartbeating.
			gone = append(gone, ids[i])
			continue
		}
		var n Node
		if err := json.Unmarshal([]byte(s), &n); err != nil || n.ID != ids[i] {
			d.log.Warn("ignoring a malformed node record", "id", ids[i], "err", err)
			continue
		}
		nodes = append(nodes, n)
	}
	if len(gone) > 0 {
		_ = c.Do(ctx, c.B().Srem().Key(d.set).Member(gone...).Build()).Error()
	}
	d.nodes.Store(&nodes)
	d.readAt.Store(time.Now().UnixNano())
	return nil
}

// Nodes returns every node's record as last read, this node's as last
// measured; only this node's when the others were not read within a TTL.
func (d *Directory) Nodes() []Node {
	self := d.self.Load()
	var out []Node
	if p := d.nodes.Load(); p != nil && time.Since(time.Unix(0, d.readAt.Load())) < d.opt.TTL {
		out = make([]Node, 0, len(*p))
		for _, n := range *p {
			if n.ID != d.opt.NodeID {
				out = append(out, n)
			}
		}
	}
	if self != nil {
		out = append(out, *self)
	}
	return out
}

// Pick is Pick over Nodes for this node.
func (d *Directory) Pick() (Node, bool) { return Pick(d.Nodes(), d.opt.NodeID) }

// PickAlternate is PickAlternate over Nodes for this node.
func (d *Directory) PickAlternate(transport string, v6 bool) (Node, netip.AddrPort, bool) {
	return PickAlternate(d.Nodes(), d.opt.NodeID, transport, v6)
}
