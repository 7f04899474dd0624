package usage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
)

// The cluster's usage record in Redis. Every node books its minute buckets
// into one hash per minute, shared by all nodes of a key prefix:
//
//	PREFIX usage:{MINUTE}               hash, MINUTE = unix time / 60
//	  field  "bp:" len(user) ":" user custom_id  -> bytes to peer
//	         "pp:…" packets to peer, "bc:…" bytes to client, "pc:…" packets to client
//	PREFIX usage:{MINUTE}:done:BATCH    marker of a batch already applied
//
// The length before the user keeps any user name and custom identifier
// apart without escaping. The {MINUTE} hash tag keeps a minute's hash and
// its markers in one slot.
//
// A node does not write per report: reports go to a pending map in memory
// (Add, called by the relay's usage hook, never on the packet path), and
// Run flushes it every FlushInterval as one batch per minute, all batches
// in one pipeline. A batch is a script that sets its marker (NX) and only
// then applies its HINCRBYs and the hash's PEXPIRE (retention), so a batch
// sent again after a timeout whose first copy did reach Redis (a paused
// Redis runs it when it wakes) is not counted twice. A batch that failed is
// kept, unchanged, and sent again before anything newer; the pending map
// keeps at most MaxBacklog minutes, dropping the oldest (counted).

// Redis defaults.
const (
	// DefaultFlushInterval is how often Run books pending traffic: the
	// relay reports once a minute (turn's UsageInterval), so a finer
	// flush would only send fewer fields more often.
	DefaultFlushInterval = time.Minute
	// DefaultRetryInterval is how soon a failed flush is tried again.
	DefaultRetryInterval = 5 * time.Second
	// DefaultMaxBacklog is how many minutes of traffic a node keeps for
	// Redis while Redis is away; older minutes stay only in the node's
	// own record (Store).
	DefaultMaxBacklog = 60
	// defaultOpTimeout bounds one flush or query round trip.
	defaultOpTimeout = 3 * time.Second
)

// RedisOptions configure a Redis record. Zero values mean the defaults
// stated.
type RedisOptions struct {
	// Client is the cluster's Redis client (redisbus.NewClient). Required;
	// the caller closes it after the last Flush.
	Client rueidis.Client
	// Prefix starts every key, as cluster.key_prefix. Default "icegate:".
	Prefix string
	// Retention is how long a minute's hash lives after its last write
	// (PEXPIRE), as usage.retention. Default DefaultRetention.
	Retention time.Duration
	// FlushInterval is how often Run books the pending traffic. Default
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// RetryInterval is how soon Run tries again after a failed flush.
	// Default DefaultRetryInterval.
	RetryInterval time.Duration
	// MaxBacklog bounds the minutes kept for Redis while it is away.
	// Default DefaultMaxBacklog.
	MaxBacklog int
	// OpTimeout bounds one flush or query. Default 3s.
	OpTimeout time.Duration
	// Logger receives Redis going away and coming back, once per change;
	// nil discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil keeps them private.
	Registerer prometheus.Registerer
}

// Redis books minute buckets into the cluster's Redis and answers queries
// over every node's buckets. It is a Sink; create it with NewRedis.
type Redis struct {
	opt RedisOptions
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	pending map[int64]map[Key]Counters // guarded by mu

	// flushMu serializes flushes; queue is guarded by it.
	flushMu sync.Mutex
	queue   []batch

	stateMu sync.Mutex
	down    bool // the last flush failed; guarded by stateMu

	flushes  *prometheus.CounterVec
	dropped  prometheus.Counter
	backlog  prometheus.Gauge
	upMetric prometheus.Gauge
}

// batch is one minute's increments, as sent (and, after a failure, sent
// again unchanged under the same id).
type batch struct {
	minute int64
	id     string
	args   []string // field, increment pairs
}

// flushScript applies one batch once: KEYS[1] the minute's hash, KEYS[2]
// the batch's marker; ARGV[1] the hash's TTL, ARGV[2] the marker's (ms),
// then field, increment pairs. It answers 1 when applied, 0 when the batch
// had been applied before.
var flushScript = rueidis.NewLuaScript(`
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return 0 end
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i+1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1`)

// NewRedis returns a record on o.Client. It sends nothing until Flush or
// Run.
func NewRedis(o RedisOptions) (*Redis, error) {
	if o.Client == nil {
		return nil, errors.New("usage: RedisOptions.Client is required")
	}
	if o.Prefix == "" {
		o.Prefix = "icegate:"
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.MaxBacklog <= 0 {
		o.MaxBacklog = DefaultMaxBacklog
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = defaultOpTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Redis{opt: o, log: o.Logger.With("component", "usage"), now: time.Now, pending: map[int64]map[Key]Counters{},
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_usage_flushes_total",
			Help: "Flushes of this node's usage minutes into the cluster's Redis, by outcome (ok, failed). Failed ones are retried."}, []string{"outcome"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "icegate_usage_minutes_dropped_total",
			Help: "Minutes of usage that never reached the cluster's Redis (over the backlog bound, or past the retention while Redis was away); the node's own record keeps them."}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "icegate_usage_backlog_minutes",
			Help: "Minutes of usage waiting for the cluster's Redis."}),
		upMetric: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "icegate_usage_redis_up",
			Help: "1 while the last usage flush into the cluster's Redis succeeded."}),
	}
	r.upMetric.Set(1)
	r.flushes.WithLabelValues("ok")
	r.flushes.WithLabelValues("failed")
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	for _, c := range []prometheus.Collector{r.flushes, r.dropped, r.backlog, r.upMetric} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("usage: metrics: %w", err)
		}
	}
	return r, nil
}

// Add books c under k in the minute of t, in memory until the next flush.
func (r *Redis) Add(t time.Time, k Key, c Counters) {
	m := minuteOf(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.pending[m]
	if b == nil {
		b = map[Key]Counters{}
		r.pending[m] = b
		r.boundLocked()
		if r.pending[m] == nil { // m itself was the oldest
			return
		}
	}
	if _, ok := b[k]; !ok && len(b) >= MaxKeysPerMinute {
		k = Overflow
	}
	b[k] = b[k].Add(c)
}

// boundLocked drops the oldest pending minutes beyond MaxBacklog (less the
// batches queued). r.mu is held.
func (r *Redis) boundLocked() {
	for len(r.pending) > r.opt.MaxBacklog {
		oldest := slices.Min(mapKeys(r.pending))
		delete(r.pending, oldest)
		r.dropped.Inc()
	}
	r.backlog.Set(float64(len(r.pending)))
}

func mapKeys[M ~map[int64]V, V any](m M) []int64 {
	out := make([]int64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Run flushes every FlushInterval, and every RetryInterval while flushes
// fail, until ctx ends; then it flushes once more within OpTimeout, so the
// traffic reported up to then is booked if Redis answers.
func (r *Redis) Run(ctx context.Context) {
	t := time.NewTimer(r.opt.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), r.opt.OpTimeout)
			_ = r.Flush(fctx)
			cancel()
			return
		case <-t.C:
		}
		next := r.opt.FlushInterval
		if err := r.Flush(ctx); err != nil {
			next = r.opt.RetryInterval
		}
		t.Reset(next)
	}
}

// Flush sends the batches that failed before, then the pending minutes, in
// one pipeline each. It returns the first failure; what failed stays for
// the next flush.
func (r *Redis) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, r.opt.OpTimeout)
	defer cancel()
	// A queue left by a failed flush goes first, unchanged; then, once it
	// is through, what is pending now.
	for round := 0; round < 2; round++ {
		if len(r.queue) == 0 {
			r.cut()
		}
		if len(r.queue) == 0 {
			break
		}
		if err := r.send(ctx); err != nil {
			r.flushes.WithLabelValues("failed").Inc()
			r.setDown(true, err)
			return err
		}
	}
	r.flushes.WithLabelValues("ok").Inc()
	r.setDown(false, nil)
	return nil
}

// cut turns the pending minutes into batches. flushMu is held.
func (r *Redis) cut() {
	r.mu.Lock()
	pending := r.pending
	r.pending = map[int64]map[Key]Counters{}
	r.backlog.Set(0)
	r.mu.Unlock()
	minutes := mapKeys(pending)
	slices.Sort(minutes)
	for _, m := range minutes {
		b := batch{minute: m, id: batchID()}
		for k, c := range pending[m] {
			for _, f := range []struct {
				tag string
				v   uint64
			}{{"bp", c.BytesToPeer}, {"pp", c.PacketsToPeer}, {"bc", c.BytesToClient}, {"pc", c.PacketsToClient}} {
				if f.v > 0 {
					b.args = append(b.args, field(f.tag, k), strconv.FormatUint(f.v, 10))
				}
			}
		}
		if len(b.args) > 0 {
			r.queue = append(r.queue, b)
		}
	}
}

// send runs the queued batches in one pipeline and keeps the ones that
// failed. flushMu is held.
func (r *Redis) send(ctx context.Context) error {
	oldest := minuteOf(r.now().Add(-r.opt.Retention))
	ttl := strconv.FormatInt(r.opt.Retention.Milliseconds(), 10)
	// A marker outlives every resend of its batch: a batch is never sent
	// once its minute is past the retention.
	markerTTL := strconv.FormatInt((r.opt.Retention + 2*time.Minute).Milliseconds(), 10)
	queue := r.queue[:0]
	execs := make([]rueidis.LuaExec, 0, len(r.queue))
	for _, b := range r.queue {
		if b.minute < oldest {
			r.dropped.Inc() // Redis would expire it at once
			continue
		}
		queue = append(queue, b)
		hash := r.hashKey(b.minute)
		execs = append(execs, rueidis.LuaExec{Keys: []string{hash, hash + ":done:" + b.id},
			Args: append([]string{ttl, markerTTL}, b.args...)})
	}
	r.queue = queue
	if len(execs) == 0 {
		return nil
	}
	res := flushScript.ExecMulti(ctx, r.opt.Client, execs...)
	var first error
	failed := r.queue[:0]
	for i, b := range r.queue {
		if err := res[i].Error(); err != nil {
			failed = append(failed, b)
			if first == nil {
				first = err
			}
		}
	}
	r.queue = failed
	return first
}

// setDown logs and counts a change of Redis's state for the record, once
// per change.
func (r *Redis) setDown(down bool, err error) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	if r.down == down {
		return
	}
	r.down = down
	if down {
		r.upMetric.Set(0)
		r.log.Warn("usage: cluster redis unreachable; this node keeps its minutes and retries", "err", err.Error(),
			"retry_every", r.opt.RetryInterval.String(), "max_backlog_minutes", r.opt.MaxBacklog)
		return
	}
	r.upMetric.Set(1)
	r.log.Info("usage: cluster redis reachable again; the missed minutes are booked")
}

func batchID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

func (r *Redis) hashKey(minute int64) string {
	return r.opt.Prefix + "usage:{" + strconv.FormatInt(minute, 10) + "}"
}

// field is a hash field: tag ":" len(user) ":" user custom_id.
func field(tag string, k Key) string {
	return tag + ":" + strconv.Itoa(len(k.User)) + ":" + k.User + k.CustomID
}

// parseField reads a field back; ok is false for one this version did
// not write.
func parseField(f string) (tag string, k Key, ok bool) {
	tag, rest, ok := strings.Cut(f, ":")
	if !ok {
		return "", Key{}, false
	}
	n, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return "", Key{}, false
	}
	l, err := strconv.Atoi(n)
	if err != nil || l < 0 || l > len(rest) {
		return "", Key{}, false
	}
	return tag, Key{User: rest[:l], CustomID: rest[l:]}, true
}

// queryBatch bounds the HGETALLs of one pipeline.
const queryBatch = 500

// Query returns the rows q selects from every node's buckets, as
// Store.Query does for one node's. It does not flush this node's pending
// traffic first; callers that want it call Flush.
func (r *Redis) Query(ctx context.Context, q Query) ([]Row, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opt.OpTimeout)
	defer cancel()
	from, to := q.window(r.now(), r.opt.Retention)
	acc := newAccumulator(q, from)
	c := r.opt.Client
	for start := from; start < to; start += queryBatch {
		end := min(start+queryBatch, to)
		cmds := make(rueidis.Commands, 0, end-start)
		for m := start; m < end; m++ {
			cmds = append(cmds, c.B().Hgetall().Key(r.hashKey(m)).Build())
		}
		for i, res := range c.DoMulti(ctx, cmds...) {
			h, err := res.AsStrMap()
			if err != nil {
				return nil, fmt.Errorf("usage: redis: %w", err)
			}
			m := start + int64(i)
			for f, v := range h {
				tag, k, ok := parseField(f)
				n, err := strconv.ParseUint(v, 10, 64)
				if !ok || err != nil {
					continue
				}
				var d Counters
				switch tag {
				case "bp":
					d.BytesToPeer = n
				case "pp":
					d.PacketsToPeer = n
				case "bc":
					d.BytesToClient = n
				case "pc":
					d.PacketsToClient = n
				default:
					continue
				}
				acc.add(m, k, d)
			}
		}
	}
	return acc.rows(), nil
}
