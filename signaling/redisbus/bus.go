package redisbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"icegate/signaling"
)

// closeReplaced is signaling's close code for a connection whose session
// resumed elsewhere (signaling/transport.go).
const closeReplaced = 4000

// closeServiceRestart (1012) is what a connection gets when Redis lost its
// session (it restarted without its data): the client reconnects as a new
// peer. Sessions that were only held while the cluster took this node for
// dead are reclaimed instead, their connections untouched.
const closeServiceRestart = 1012

// reapBatch bounds the held sessions one reap script removes, so one
// script never runs long; the next tick takes the rest.
const reapBatch = 100

// Bus is a signaling.Bus on Redis. Create it with New; it is safe for
// concurrent use.
type Bus struct {
	opt    Options
	log    *slog.Logger
	client rueidis.Client
	// live carries only the heartbeats and the reaper's liveness reads,
	// on a connection of its own: behind client's auto-pipelined queue
	// (thousands of resume scripts in a reconnect storm) a beat arrives
	// late and the node looks dead to the others (issue #15). Redis
	// serves its connections in turn, so a beat here waits for at most
	// one round of the others' commands, not for all of them.
	live    rueidis.Client
	metrics *metrics
	channel string

	node      signaling.Node
	started   atomic.Bool
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	// beating stops heartbeats (and reaping) when false: the tests' kill.
	beating atomic.Bool

	// cmdUp and subUp are the two halves of Healthy: the last command
	// reached Redis, and this node's delivery channel is subscribed.
	cmdUp, subUp atomic.Bool
	stateMu      sync.Mutex
	lastState    int // 0 unknown, 1 up, -1 down; guarded by stateMu

	// Redis's clock as the last usable heartbeat read it (redisMs, ms) and
	// when that was on this node's monotonic clock (redisAt), for the
	// scripts' deadlines.
	clockMu sync.Mutex
	redisMs int64
	redisAt time.Time

	// last is, per session this node holds, the last seq handed to the
	// node (by Deliver, Resume or Replay): a delivery at or below it is a
	// duplicate and dropped, so Deliver sees each session's seqs rising.
	mu   sync.Mutex
	last map[string]uint64
	// epochs is, for the same sessions, the epoch this node holds each at,
	// so a late kick of an older connection does not forget a newer one.
	epochs map[string]uint64
}

// New connects to Redis (failing with signaling.ErrUnavailable when it
// cannot) and returns a Bus for node opts.NodeID. It serves nothing until
// Start.
func New(opts Options) (*Bus, error) {
	opts = opts.withDefaults()
	if opts.NodeID == "" {
		return nil, errors.New("redisbus: NodeID is required")
	}
	if strings.ContainsAny(opts.NodeID, " \n") {
		return nil, fmt.Errorf("redisbus: node id %q has a space or newline", opts.NodeID)
	}
	client := opts.Client
	if client == nil {
		var err error
		if client, err = NewClient(opts.URL, opts.OpTimeout); err != nil {
			return nil, err
		}
	}
	live, err := NewClient(opts.URL, opts.OpTimeout)
	if err != nil {
		if opts.Client == nil {
			client.Close()
		}
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		if opts.Client == nil {
			client.Close()
		}
		live.Close()
		return nil, err
	}
	b := &Bus{
		opt:     opts,
		log:     opts.Logger.With("component", "redisbus", "node", opts.NodeID),
		client:  client,
		live:    live,
		metrics: m,
		channel: opts.Prefix + "node:" + opts.NodeID,
		last:    map[string]uint64{},
		epochs:  map[string]uint64{},
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.cmdUp.Store(true)
	return b, nil
}

// NewClient connects to the Redis that url names (see ParseURL), with the
// settings the bus runs on: no client-side cache, no automatic retries (a
// write whose answer was lost is never sent twice), dial and write
// timeouts from opTimeout (1.5s when 0). It fails with
// signaling.ErrUnavailable when Redis does not answer. A caller that
// shares one client between the bus (Options.Client) and other users of
// the cluster's Redis (the usage record) closes it itself, after them all.
func NewClient(url string, opTimeout time.Duration) (rueidis.Client, error) {
	if opTimeout <= 0 {
		opTimeout = Options{}.withDefaults().OpTimeout
	}
	co, err := clientOption(url)
	if err != nil {
		return nil, err
	}
	co.DisableCache = true // no client-side caching: every read is a script
	co.DisableRetry = true // a write whose answer was lost is never sent twice
	if co.Dialer.Timeout == 0 {
		co.Dialer.Timeout = opTimeout
	}
	if co.ConnWriteTimeout == 0 {
		// Also the interval of rueidis's keep-alive PINGs: a silent Redis
		// (a partition, not a refused connection) is noticed within it.
		co.ConnWriteTimeout = 2 * opTimeout
	}
	if co.Sentinel.MasterSet == "" && len(co.InitAddress) == 1 {
		co.ForceSingleClient = true // no CLUSTER probing of a single Redis
	}
	client, err := rueidis.NewClient(co)
	if err != nil {
		return nil, fmt.Errorf("%w: redis %s: %v", signaling.ErrUnavailable, redact(url), err)
	}
	return client, nil
}

// redact drops the password from a URL for logs.
func redact(raw string) string {
	if i := strings.Index(raw, "@"); i >= 0 {
		if j := strings.Index(raw, "://"); j >= 0 && j < i {
			return raw[:j+3] + "…@" + raw[i+1:]
		}
	}
	return raw
}

// NodeID names this node.
func (b *Bus) NodeID() string { return b.opt.NodeID }

// Client is the bus's Redis connection, for the other parts of a cluster
// node that keep state in the same Redis (TURN load steering): one
// connection per node (besides the bus's own heartbeat connection), closed
// by Close unless it came from Options.Client.
func (b *Bus) Client() rueidis.Client { return b.client }

// Prefix starts every key and channel of the bus (cluster.key_prefix).
func (b *Bus) Prefix() string { return b.opt.Prefix }

// Healthy reports whether Redis answers and this node's delivery channel is
// subscribed.
func (b *Bus) Healthy() bool { return b.cmdUp.Load() && b.subUp.Load() }

// Start registers the node (its first heartbeat), subscribes its delivery
// channel, waiting up to OpTimeout for the subscription, and starts the
// heartbeat and reaper. With Redis down it returns nil and keeps trying:
// operations fail with ErrUnavailable meanwhile.
func (b *Bus) Start(node signaling.Node) error {
	if !b.started.CompareAndSwap(false, true) {
		return errors.New("redisbus: Start called twice")
	}
	b.node = node
	b.beating.Store(true)
	subscribed := make(chan struct{})
	b.wg.Add(2)
	go b.subscribeLoop(subscribed)
	go b.tickLoop()
	_ = b.beat(b.ctx, true)
	select {
	case <-subscribed:
	case <-time.After(b.opt.OpTimeout):
		b.log.Warn("delivery channel not subscribed yet; retrying", "channel", b.channel)
	}
	return nil
}

// Close stops the node's loops and hands its sessions over at once: they
// are held (for their own grace) and may resume on another node, as after
// a node failure but without waiting for the node timeout.
func (b *Bus) Close(ctx context.Context) error {
	var err error
	b.closeOnce.Do(func() {
		if b.started.Load() && b.beating.Load() {
			_, err = b.run(ctx, "retire", retireScript)
		}
		b.cancel()
		b.wg.Wait()
		b.live.Close()
		if b.opt.Client == nil {
			b.client.Close()
		}
	})
	return err
}

// kill stops the heartbeats and the delivery channel as if the process
// died (for tests): the other nodes take its sessions over after
// NodeTimeout. Close still releases the client.
func (b *Bus) kill() {
	b.beating.Store(false)
	b.cancel()
	b.wg.Wait()
}

// errCodes maps the scripts' refusals to the bus errors.
var errCodes = map[string]error{
	"ICEGATE_UNKNOWN":   signaling.ErrUnknownSession,
	"ICEGATE_GONE":      signaling.ErrPeerGone,
	"ICEGATE_NOTSHARED": signaling.ErrNotShared,
	"ICEGATE_OTHERUSER": signaling.ErrOtherUser,
	"ICEGATE_QUEUEFULL": signaling.ErrQueueFull,
	"ICEGATE_ROOMFULL":  signaling.ErrRoomFull,
	"ICEGATE_TOOMANY":   signaling.ErrTooManyRooms,
	"ICEGATE_NOTINROOM": signaling.ErrNotInRoom,
	"ICEGATE_NAMETAKEN": signaling.ErrNameTaken,
	"ICEGATE_EXISTS":    errExists,
	"ICEGATE_LATE":      errLate,
}

// errLate: the script reached Redis after its deadline and did nothing.
var errLate = fmt.Errorf("%w: reached redis after its deadline; not done", signaling.ErrUnavailable)

// errExists: Open with an id that is in use.
var errExists = errors.New("session id in use")

// run executes one script within OpTimeout. A refusal comes back as its bus
// error; anything else that keeps the script from answering (connection
// refused or broken, timeout, Redis loading or read-only after a failover)
// is ErrUnavailable.
func (b *Bus) run(ctx context.Context, op string, s *rueidis.Lua, args ...string) (rueidis.RedisMessage, error) {
	return b.runOn(ctx, b.client, b.deadline(), op, s, args...)
}

// runOn is run on client with deadline (on Redis's clock, ms; 0: none).
func (b *Bus) runOn(ctx context.Context, client rueidis.Client, deadline int64, op string, s *rueidis.Lua, args ...string) (rueidis.RedisMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opt.OpTimeout)
	defer cancel()
	argv := make([]string, 0, 3+len(args))
	argv = append(argv, b.opt.Prefix, b.opt.NodeID)
	argv = append(argv, args...)
	argv = append(argv, strconv.FormatInt(deadline, 10))
	start := time.Now()
	msg, err := s.Exec(ctx, client, nil, argv).ToMessage()
	b.metrics.latency.Observe(time.Since(start).Seconds())
	if err == nil {
		b.setCmd(true, nil)
		return msg, nil
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		text := re.Error()
		code, _, _ := strings.Cut(text, " ")
		if e, ok := errCodes[code]; ok {
			if e == errLate {
				// Redis answers, but only after a stall.
				b.metrics.errors.WithLabelValues(op).Inc()
				return msg, fmt.Errorf("redis %s: %w", op, e)
			}
			b.setCmd(true, nil)
			return msg, e
		}
		if !re.IsLoading() && !strings.HasPrefix(text, "READONLY") && !strings.HasPrefix(text, "MASTERDOWN") &&
			!strings.HasPrefix(text, "OOM") && !strings.HasPrefix(text, "BUSY") {
			// A script error: a bug of ours, not Redis being away.
			b.metrics.errors.WithLabelValues(op).Inc()
			return msg, fmt.Errorf("redisbus %s: %w", op, err)
		}
	}
	b.metrics.errors.WithLabelValues(op).Inc()
	b.setCmd(false, err)
	return msg, fmt.Errorf("%w: redis %s: %v", signaling.ErrUnavailable, op, err)
}

// deadline is the time, on Redis's clock (ms), after which a script sent
// now must not run: lateMargin before run gives up on it, on the estimate
// of Redis's clock the last heartbeat gave. A script that runs before it
// answers within the margin unless Redis stalls right after running it,
// so an operation that timed out was, but for that, not done. 0 (no
// deadline) before the first heartbeat.
func (b *Bus) deadline() int64 {
	b.clockMu.Lock()
	ms, at := b.redisMs, b.redisAt
	b.clockMu.Unlock()
	if at.IsZero() {
		return 0
	}
	return ms + (time.Since(at) + b.opt.OpTimeout - b.opt.OpTimeout/lateMargin).Milliseconds()
}

// lateMargin: a script's deadline is OpTimeout/lateMargin before run gives
// up on it, which covers the error of the clock estimate (half the round
// trip of the beat it came from, at most OpTimeout/10 since a slower beat
// is not used) and a reply on its way.
const lateMargin = 3

// setClock takes Redis's time from a heartbeat sent at sent and answered
// now: Redis read its clock between the two, so the midpoint is off by
// half the round trip at most. Beats slower than OpTimeout/10 (Redis
// stalled) are not used.
func (b *Bus) setClock(redisMs int64, sent time.Time) {
	rtt := time.Since(sent)
	if rtt > b.opt.OpTimeout/10 {
		return
	}
	b.clockMu.Lock()
	b.redisMs, b.redisAt = redisMs, sent.Add(rtt/2)
	b.clockMu.Unlock()
}

// setCmd records whether the last command reached Redis.
func (b *Bus) setCmd(up bool, err error) {
	if b.cmdUp.Load() == up {
		return
	}
	b.cmdUp.Store(up)
	b.stateChanged(err)
}

func (b *Bus) setSub(up bool, err error) {
	if b.subUp.Load() == up {
		return
	}
	b.subUp.Store(up)
	b.stateChanged(err)
}

// stateChanged logs and counts a change of Healthy, once per change.
func (b *Bus) stateChanged(err error) {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	state := -1
	if b.Healthy() {
		state = 1
	}
	if state == b.lastState {
		return
	}
	b.lastState = state
	if state == 1 {
		b.metrics.up.Set(1)
		b.metrics.changes.WithLabelValues("up").Inc()
		b.log.Info("redis reachable: cluster bus up")
		return
	}
	b.metrics.up.Set(0)
	b.metrics.changes.WithLabelValues("down").Inc()
	b.log.Warn("redis unreachable: cluster bus down; operations fail until it is back", "err", err)
}

// subscribeLoop keeps this node's delivery channel subscribed on a
// dedicated connection, reconnecting with backoff. Every subscription after
// the first calls Node.Resync: deliveries published while it was down are
// lost, and the node replays them from the logs.
func (b *Bus) subscribeLoop(subscribed chan struct{}) {
	defer b.wg.Done()
	backoff := 50 * time.Millisecond
	first := true
	for b.ctx.Err() == nil {
		ok := b.subscribeOnce(subscribed, first)
		if ok {
			first = false
			backoff = 50 * time.Millisecond
		}
		select {
		case <-b.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// subscribeOnce subscribes on one connection and serves it until it
// breaks. It reports whether the subscription was made.
func (b *Bus) subscribeOnce(subscribed chan struct{}, first bool) bool {
	dc, release := b.client.Dedicate()
	defer release()
	confirmed := make(chan struct{})
	var once sync.Once
	wait := dc.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage: b.onMessage,
		OnSubscription: func(s rueidis.PubSubSubscription) {
			if s.Kind == "subscribe" && s.Channel == b.channel {
				once.Do(func() { close(confirmed) })
			}
		},
	})
	ctx, cancel := context.WithTimeout(b.ctx, b.opt.OpTimeout)
	err := dc.Do(ctx, dc.B().Subscribe().Channel(b.channel).Build()).Error()
	if err == nil {
		select {
		case <-confirmed:
		case err = <-wait:
			if err == nil {
				err = errors.New("connection closed")
			}
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	cancel()
	if err != nil {
		if b.ctx.Err() == nil {
			b.setSub(false, err)
		}
		return false
	}
	b.setSub(true, nil)
	if first {
		close(subscribed)
	} else {
		b.metrics.resyncs.Inc()
		b.node.Resync()
	}
	select {
	case err = <-wait:
		if b.ctx.Err() == nil {
			b.setSub(false, err)
		}
	case <-b.ctx.Done():
	}
	return true
}

// onMessage handles one message of this node's channel, in publish order:
// "d<seq> <len> <id><body>" a delivery, "k<code> <len> <id><reason>" a
// kick.
func (b *Bus) onMessage(m rueidis.PubSubMessage) {
	s := m.Message
	if len(s) < 2 {
		return
	}
	kind := s[0]
	num, rest, ok := strings.Cut(s[1:], " ")
	if !ok {
		return
	}
	n, rest, ok := strings.Cut(rest, " ")
	if !ok {
		return
	}
	idLen, err := strconv.Atoi(n)
	if err != nil || idLen > len(rest) {
		return
	}
	id, tail := rest[:idLen], rest[idLen:]
	switch kind {
	case 'd':
		seq, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return
		}
		// Only sessions this node holds (Open, Resume) are tracked: a
		// delivery published before a Hold or Remove may arrive after it
		// (another connection to Redis), and must not bring back an entry
		// nothing would remove.
		b.mu.Lock()
		last, mine := b.last[id]
		if mine && seq <= last {
			b.mu.Unlock()
			b.metrics.duplicates.Inc()
			return
		}
		if mine {
			b.last[id] = seq
		}
		b.mu.Unlock()
		b.node.Deliver(id, seq, []byte(tail))
	case 'k':
		// k<code>:<epoch of the connection kicked>
		c, e, _ := strings.Cut(num, ":")
		code, err := strconv.Atoi(c)
		if err != nil {
			return
		}
		epoch, err := strconv.ParseUint(e, 10, 64)
		if err != nil {
			return
		}
		if code == closeReplaced {
			b.forgetBefore(id, epoch)
		}
		b.node.Kick(id, epoch, code, tail)
	}
}

// seen records that the node has had session id's messages up to seq.
func (b *Bus) seen(id string, seq uint64) {
	b.mu.Lock()
	if cur, ok := b.last[id]; !ok || seq > cur {
		b.last[id] = seq
	}
	b.mu.Unlock()
}

func (b *Bus) forget(id string) {
	b.mu.Lock()
	delete(b.last, id)
	delete(b.epochs, id)
	b.mu.Unlock()
}

// forgetBefore forgets session id if this node holds it at epoch or
// earlier: a kick of the connection a resume replaced, which must not
// forget the connection that replaced it when that is on this node too.
func (b *Bus) forgetBefore(id string, epoch uint64) {
	b.mu.Lock()
	if e, ok := b.epochs[id]; ok && e <= epoch {
		delete(b.last, id)
		delete(b.epochs, id)
	}
	b.mu.Unlock()
}

// tickLoop sends heartbeats every NodeTimeout/3 and reaps every
// ReapInterval. A failure just waits for the next tick: these are also
// what notices Redis coming back when nothing else runs.
func (b *Bus) tickLoop() {
	defer b.wg.Done()
	beat := time.NewTicker(b.opt.NodeTimeout / 3)
	defer beat.Stop()
	reap := time.NewTicker(b.opt.ReapInterval)
	defer reap.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-beat.C:
			_ = b.beat(b.ctx, false)
		case <-reap.C:
			_ = b.reap(b.ctx)
		}
	}
}

// beat refreshes this node's heartbeat. When the entry was missing after
// the first beat, the cluster took this node for dead (or Redis lost its
// data): its sessions are held elsewhere or gone, so every connection it
// still has is closed and its clients resume.
func (b *Bus) beat(ctx context.Context, first bool) error {
	if !b.beating.Load() {
		return nil
	}
	sent := time.Now()
	// No deadline: a beat is true whenever it runs (the node sent it), and
	// refusing a late one is what made a node in a slow Redis look dead.
	msg, err := b.runOn(ctx, b.live, 0, "beat", beatScript, ms(b.opt.NodeTimeout))
	if err != nil {
		return err
	}
	v, _ := msg.ToArray()
	if len(v) != 3 {
		return fmt.Errorf("redisbus beat: unexpected reply %v", msg)
	}
	if now, err := v[1].AsInt64(); err == nil {
		b.setClock(now, sent)
	}
	b.stalled(v[2])
	if was, _ := v[0].AsInt64(); was == 0 && !first {
		b.metrics.lostMembership.Inc()
		b.mu.Lock()
		ids := make([]string, 0, len(b.last))
		for id := range b.last {
			ids = append(ids, id)
		}
		b.mu.Unlock()
		// Sessions opened since Redis came back are this node's; the
		// others were taken over (or lost with Redis's data).
		for len(ids) > 0 {
			batch := ids[:min(len(ids), 500)]
			ids = ids[len(batch):]
			msg, err := b.run(ctx, "not_mine", notMineScript, batch...)
			if err != nil {
				return err
			}
			v, _ := msg.ToArray()
			if len(v) != 3 {
				return fmt.Errorf("redisbus not_mine: unexpected reply %v", msg)
			}
			lost, _ := v[0].AsStrSlice()
			moved, _ := v[1].AsStrSlice()
			kept, _ := v[2].AsInt64()
			b.log.Warn("this node was taken for dead (missed heartbeats) or redis lost its data: sessions reclaimed, resumed elsewhere, or lost",
				"reclaimed", kept, "resumed_elsewhere", len(moved), "lost", len(lost))
			// A session Redis no longer has cannot resume: its client starts
			// over. One resumed on another node has a newer connection.
			for _, id := range lost {
				b.forget(id)
				b.node.Kick(id, signaling.AnyEpoch, closeServiceRestart, "session lost by the cluster; reconnect")
			}
			for _, id := range moved {
				b.forget(id)
				b.node.Kick(id, signaling.AnyEpoch, closeReplaced, "replaced by a resumed connection")
			}
		}
		// Reclaimed sessions took messages while held that were never
		// delivered here.
		b.node.Resync()
	}
	return nil
}

// reap takes over dead nodes and removes held sessions whose grace ended.
func (b *Bus) reap(ctx context.Context) error {
	if !b.beating.Load() {
		return nil
	}
	for range 10 {
		// On the liveness connection, with a deadline: a reap that waited
		// in a slow Redis past it does not run, so a reaper whose own calls
		// are late judges nobody by the beats that were late with them.
		msg, err := b.runOn(ctx, b.live, b.deadline(), "reap", reapScript, ms(b.opt.NodeTimeout), strconv.Itoa(reapBatch))
		if err != nil {
			return err
		}
		v, _ := msg.ToArray()
		if len(v) != 3 {
			return nil
		}
		b.stalled(v[2])
		dead, _ := v[0].AsInt64()
		removed, _ := v[1].AsInt64()
		if dead > 0 {
			b.metrics.nodesDead.Add(float64(dead))
			b.log.Info("took over the sessions of dead nodes", "nodes", dead)
		}
		b.metrics.expired.Add(float64(removed))
		if removed < reapBatch {
			return nil
		}
	}
	return nil
}

// stalled logs and counts a stall of Redis a liveness script found (its
// reply's excess over the beat period, ms; see unstall in scripts.go).
func (b *Bus) stalled(v rueidis.RedisMessage) {
	if n, _ := v.AsInt64(); n > 0 {
		b.metrics.stalls.Inc()
		b.log.Warn("redis ran no heartbeat for longer than the beat period: not counted against any node",
			"stall", time.Duration(n)*time.Millisecond)
	}
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

func itoa(n int) string { return strconv.Itoa(n) }

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Open registers a new session held by this node.
func (b *Bus) Open(ctx context.Context, s signaling.Session) error {
	_, err := b.run(ctx, "open", openScript, s.ID, s.User, s.Token,
		itoa(s.Limits.Queue), itoa(s.Limits.Keep), ms(s.Limits.Grace))
	if err == nil {
		b.mu.Lock()
		b.last[s.ID] = 0
		b.epochs[s.ID] = 1
		b.mu.Unlock()
	}
	return err
}

// Resume takes over the session a token names; see signaling.Bus.
func (b *Bus) Resume(ctx context.Context, r signaling.ResumeRequest) (signaling.Resumed, error) {
	msg, err := b.run(ctx, "resume", resumeScript, r.Token, r.NewToken, r.User,
		strconv.FormatUint(r.Last, 10), itoa(r.Limits.Queue), itoa(r.Limits.Keep), ms(r.Limits.Grace))
	if err != nil {
		return signaling.Resumed{}, err
	}
	v, err := msg.ToArray()
	if err != nil || len(v) != 7 {
		return signaling.Resumed{}, fmt.Errorf("redisbus resume: unexpected reply %v", msg)
	}
	var res signaling.Resumed
	res.ID, _ = v[0].ToString()
	kickSelf, _ := v[1].AsInt64()
	res.Rooms, _ = v[2].AsStrSlice()
	res.From, res.Msgs, res.Gap = replayed(v[3:6])
	epoch, _ := v[6].AsInt64()
	res.Epoch = uint64(epoch)
	if kickSelf == 1 {
		// The connection it replaces is this node's: kicked here, before
		// the caller attaches the new one, so the kick cannot hit that.
		b.node.Kick(res.ID, res.Epoch-1, closeReplaced, "replaced by a resumed connection")
	}
	b.seen(res.ID, res.From+uint64(len(res.Msgs))-1)
	b.mu.Lock()
	b.epochs[res.ID] = res.Epoch
	b.mu.Unlock()
	return res, nil
}

// replayed decodes {from, gap, msgs}.
func replayed(v []rueidis.RedisMessage) (from uint64, msgs [][]byte, gap bool) {
	f, _ := v[0].AsInt64()
	g, _ := v[1].AsInt64()
	arr, _ := v[2].ToArray()
	for _, m := range arr {
		s, _ := m.ToString()
		msgs = append(msgs, []byte(s))
	}
	return uint64(f), msgs, g == 1
}

// Replay returns session id's logged messages after seq after.
func (b *Bus) Replay(ctx context.Context, id string, after uint64) (uint64, [][]byte, bool, error) {
	msg, err := b.run(ctx, "replay", replayScript, id, strconv.FormatUint(after, 10))
	if err != nil {
		return 0, nil, false, err
	}
	v, err := msg.ToArray()
	if err != nil || len(v) != 3 {
		return 0, nil, false, fmt.Errorf("redisbus replay: unexpected reply %v", msg)
	}
	from, msgs, gap := replayed(v)
	if len(msgs) > 0 {
		b.mu.Lock()
		if _, mine := b.last[id]; mine {
			if s := from + uint64(len(msgs)) - 1; s > b.last[id] {
				b.last[id] = s
			}
		}
		b.mu.Unlock()
	}
	return from, msgs, gap, nil
}

// Hold marks a session whose connection dropped; see signaling.Bus. A Hold
// from a node that no longer holds the session (it resumed elsewhere)
// changes nothing.
func (b *Bus) Hold(ctx context.Context, id string, epoch, written uint64, grace time.Duration) error {
	msg, err := b.run(ctx, "hold", holdScript, id, strconv.FormatUint(written, 10), ms(grace), strconv.FormatUint(epoch, 10))
	b.release(id, msg, err)
	return err
}

// Remove ends a session for good; see signaling.Bus.
func (b *Bus) Remove(ctx context.Context, id string, epoch uint64) error {
	msg, err := b.run(ctx, "remove", removeScript, id, strconv.FormatUint(epoch, 10))
	b.release(id, msg, err)
	return err
}

// release stops tracking session id after a Hold or Remove, unless the
// script answered -1: a later connection of this node (resumed here)
// holds it, and its deliveries are still this node's.
func (b *Bus) release(id string, msg rueidis.RedisMessage, err error) {
	if err != nil {
		return
	}
	if n, _ := msg.AsInt64(); n != -1 {
		b.forget(id)
	}
}

// Kick closes session id's connection on whatever node holds it. A held
// session has none; that is not an error.
func (b *Bus) Kick(ctx context.Context, id string, code int, reason string) error {
	_, err := b.run(ctx, "kick", kickScript, id, itoa(code), reason)
	return err
}

// Join adds a session to a room; see signaling.Bus.
func (b *Bus) Join(ctx context.Context, r signaling.JoinRequest) (signaling.Joined, error) {
	msg, err := b.run(ctx, "join", joinScript, r.Session, r.Room, itoa(r.Max), itoa(r.RoomsPerPeer),
		string(r.Member), string(r.PeerJoined), string(r.PeerLeft), string(r.JoinedPrefix))
	if err != nil {
		return signaling.Joined{}, err
	}
	v, err := msg.ToArray()
	if err != nil || len(v) != 3 {
		return signaling.Joined{}, fmt.Errorf("redisbus join: unexpected reply %v", msg)
	}
	again, _ := v[0].AsInt64()
	max, _ := v[1].AsInt64()
	if again == -1 {
		return signaling.Joined{Max: int(max)}, signaling.ErrRoomFull
	}
	peers, _ := v[2].AsStrSlice()
	return signaling.Joined{Peers: peers, Max: int(max), Again: again == 1}, nil
}

// Leave takes a session out of a room; see signaling.Bus.
func (b *Bus) Leave(ctx context.Context, r signaling.LeaveRequest) error {
	_, err := b.run(ctx, "leave", leaveScript, r.Session, r.Room, string(r.Left))
	return err
}

// Send logs a directed message; see signaling.Bus.
func (b *Bus) Send(ctx context.Context, r signaling.SendRequest) (bool, error) {
	msg, err := b.run(ctx, "send", sendScript, r.From, r.To, flag(r.ByName), r.Room, flag(r.Anyone),
		string(r.Body), flag(r.Ack != nil), string(r.Ack), flag(r.AckHeld != nil), string(r.AckHeld))
	if err != nil {
		return false, err
	}
	held, _ := msg.AsInt64()
	return held == 1, nil
}

// Broadcast logs a message for every other member of a room; see
// signaling.Bus.
func (b *Bus) Broadcast(ctx context.Context, r signaling.BroadcastRequest) (int, int, error) {
	msg, err := b.run(ctx, "broadcast", broadcastScript, r.From, r.Room, string(r.Body),
		flag(r.AckPrefix != nil), string(r.AckPrefix))
	if err != nil {
		return 0, 0, err
	}
	v, err := msg.ToArray()
	if err != nil || len(v) != 2 {
		return 0, 0, fmt.Errorf("redisbus broadcast: unexpected reply %v", msg)
	}
	d, _ := v[0].AsInt64()
	x, _ := v[1].AsInt64()
	return int(d), int(x), nil
}

// Push logs body for session id; see signaling.Bus.
func (b *Bus) Push(ctx context.Context, id string, body []byte) error {
	_, err := b.run(ctx, "push", pushScript, id, string(body))
	return err
}

// Claim gives session id a name; see signaling.Bus.
func (b *Bus) Claim(ctx context.Context, id, name string) error {
	_, err := b.run(ctx, "claim", claimScript, id, name)
	return err
}

// Rooms lists the rooms, sorted by name.
func (b *Bus) Rooms(ctx context.Context) ([]signaling.RoomInfo, error) {
	msg, err := b.run(ctx, "rooms", roomsScript)
	if err != nil {
		return nil, err
	}
	v, _ := msg.ToArray()
	out := make([]signaling.RoomInfo, 0, len(v)/3)
	for i := 0; i+2 < len(v); i += 3 {
		name, _ := v[i].ToString()
		n, _ := v[i+1].AsInt64()
		max, _ := v[i+2].AsInt64()
		out = append(out, signaling.RoomInfo{Name: name, Members: int(n), Max: int(max)})
	}
	sortRooms(out)
	return out, nil
}

// Members lists a room's members in join order.
func (b *Bus) Members(ctx context.Context, room string) ([]signaling.Member, error) {
	msg, err := b.run(ctx, "members", membersScript, room)
	if err != nil {
		return nil, err
	}
	v, _ := msg.ToArray()
	out := make([]signaling.Member, 0, len(v)/4)
	for i := 0; i+3 < len(v); i += 4 {
		var m signaling.Member
		m.Peer, _ = v[i].ToString()
		m.User, _ = v[i+1].ToString()
		m.Node, _ = v[i+2].ToString()
		t, _ := v[i+3].AsInt64()
		m.Joined = time.UnixMilli(t)
		out = append(out, m)
	}
	return out, nil
}

// SessionsOf lists the ids of a user's sessions.
func (b *Bus) SessionsOf(ctx context.Context, user string) ([]string, error) {
	msg, err := b.run(ctx, "sessions_of", sessionsOfScript, user)
	if err != nil {
		return nil, err
	}
	return msg.AsStrSlice()
}

// Counts returns the sessions each live node holds, held ones under "".
func (b *Bus) Counts(ctx context.Context) (map[string]int, error) {
	msg, err := b.run(ctx, "counts", countsScript)
	if err != nil {
		return nil, err
	}
	v, _ := msg.ToArray()
	out := make(map[string]int, len(v)/2)
	for i := 0; i+1 < len(v); i += 2 {
		node, _ := v[i].ToString()
		n, _ := v[i+1].AsInt64()
		out[node] = int(n)
	}
	return out, nil
}

var _ signaling.Bus = (*Bus)(nil)

// metrics are the bus's Prometheus collectors.
type metrics struct {
	up             prometheus.Gauge
	changes        *prometheus.CounterVec
	errors         *prometheus.CounterVec
	latency        prometheus.Histogram
	resyncs        prometheus.Counter
	duplicates     prometheus.Counter
	nodesDead      prometheus.Counter
	expired        prometheus.Counter
	lostMembership prometheus.Counter
	stalls         prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "icegate_cluster_redis_up", Help: "1 while Redis answers and this node's delivery channel is subscribed."}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_cluster_redis_state_changes_total", Help: "Changes of the cluster bus's Redis state, by new state (up, down)."}, []string{"state"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "icegate_cluster_redis_errors_total", Help: "Bus operations that failed for want of Redis (or a script error), by operation."}, []string{"op"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "icegate_cluster_redis_op_seconds", Help: "Time of one bus operation (one script) on Redis.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .5, 1.5}}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "icegate_cluster_resyncs_total", Help: "Times the delivery channel was subscribed again and the node asked to replay."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "icegate_cluster_duplicate_deliveries_total", Help: "Deliveries dropped because the node had the message already (from a resume or replay)."}),
		nodesDead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "icegate_cluster_nodes_taken_over_total", Help: "Dead nodes whose sessions this node turned into held ones."}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "icegate_cluster_held_expired_total", Help: "Held sessions this node removed when their grace ended."}),
		lostMembership: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "icegate_cluster_membership_lost_total", Help: "Times this node found itself taken for dead (or Redis emptied) and closed its connections."}),
		stalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "icegate_cluster_redis_stalls_total", Help: "Times this node found that Redis had run no node's heartbeat for longer than the beat period (a hung or overloaded Redis); the stall is not counted against any node."}),
	}
	for _, c := range []prometheus.Collector{m.up, m.changes, m.errors, m.latency, m.resyncs, m.duplicates, m.nodesDead, m.expired, m.lostMembership, m.stalls} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("redisbus: metrics: %w", err)
		}
	}
	return m, nil
}
