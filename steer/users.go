package steer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// UserCounts makes limits.allocations_per_user count a user's allocations
// on every node of the cluster (cluster.user_quota = "cluster").
//
// In Redis each user with allocations has a hash PREFIX "turn:user:" USER
// whose fields are node instances (NODE "/" a random id per process) and
// whose values are that instance's count. A node writes its own counts
// (absolute values, so a write lost while Redis was away is healed by the
// next one) from a flusher goroutine, never on the packet path. A check
// (Elsewhere) is one script: the sum of the other instances' fields whose
// instance is alive (its PREFIX "turn:inst:" key, refreshed with each
// heartbeat, has not expired); a dead instance's field is deleted there.
// So a node that dies stops counting within cluster.node_timeout, and a
// restarted node (a new instance) never inherits its predecessor's counts.
type UserCounts struct {
	client   rueidis.Client
	prefix   string
	instance string
	timeout  time.Duration
	log      *slog.Logger

	mu    sync.Mutex
	own   map[string]int
	dirty map[string]bool
	kick  chan struct{}
}

// sumOthers returns the sum of the live other instances' counts of a user
// (KEYS[1]), deleting the fields of instances whose liveness key (ARGV[1]
// .. field) is gone. ARGV[2] is this instance.
var sumOthers = rueidis.NewLuaScript(`
local t = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #t, 2 do
  if t[i] ~= ARGV[2] then
    if redis.call('EXISTS', ARGV[1] .. t[i]) == 1 then
      sum = sum + tonumber(t[i+1])
    else
      redis.call('HDEL', KEYS[1], t[i])
    end
  end
end
return sum`)

// NewUserCounts returns the counts of this process (an instance of node
// id) on client; timeout bounds a check, past which it counts only this
// node's allocations (the quota fails open rather than refusing everyone
// while Redis is away). Call Run to write the counts; the Directory of the
// same node keeps the instance alive (Options.Instance).
func NewUserCounts(client rueidis.Client, prefix, node string, timeout time.Duration, log *slog.Logger) *UserCounts {
	var b [4]byte
	_, _ = rand.Read(b[:])
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &UserCounts{client: client, prefix: prefix, instance: node + "/" + hex.EncodeToString(b[:]), timeout: timeout,
		log: log.With("component", "steer"), own: map[string]int{}, dirty: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// Instance is this process's field name in the users' hashes.
func (u *UserCounts) Instance() string { return u.instance }

// Add counts an allocation of user made (+1) or ended (-1) on this node.
// It never blocks on Redis.
func (u *UserCounts) Add(user string, delta int) {
	if user == "" {
		return
	}
	u.mu.Lock()
	u.own[user] += delta
	if u.own[user] <= 0 {
		u.own[user] = 0
	}
	u.dirty[user] = true
	u.mu.Unlock()
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// Elsewhere returns user's allocations on the other live nodes; 0 when
// Redis does not answer within the timeout.
func (u *UserCounts) Elsewhere(user string) int {
	ctx, cancel := context.WithTimeout(context.Background(), u.timeout)
	defer cancel()
	n, err := sumOthers.Exec(ctx, u.client, []string{u.prefix + "turn:user:" + user}, []string{u.prefix + "turn:inst:", u.instance}).AsInt64()
	if err != nil {
		u.log.Warn("cluster-wide allocations_per_user: Redis did not answer, counting this node only", "err", err)
		return 0
	}
	return int(n)
}

// Run writes the changed counts until ctx ends, then removes this
// instance's fields.
func (u *UserCounts) Run(ctx context.Context) {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			u.clear()
			return
		case <-u.kick:
		case <-retry.C:
		}
		u.flush(ctx)
	}
}

// flush writes every dirty user's count (HSET, or HDEL at 0); a user whose
// write failed stays dirty for the next round.
func (u *UserCounts) flush(ctx context.Context) {
	u.mu.Lock()
	batch := make(map[string]int, len(u.dirty))
	for user := range u.dirty {
		batch[user] = u.own[user]
		if u.own[user] == 0 {
			delete(u.own, user)
		}
	}
	clear(u.dirty)
	u.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	cmds := make(rueidis.Commands, 0, len(batch))
	users := make([]string, 0, len(batch))
	for user, n := range batch {
		key := u.prefix + "turn:user:" + user
		if n == 0 {
			cmds = append(cmds, u.client.B().Hdel().Key(key).Field(u.instance).Build())
		} else {
			cmds = append(cmds, u.client.B().Hset().Key(key).FieldValue().FieldValue(u.instance, strconv.Itoa(n)).Build())
		}
		users = append(users, user)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*u.timeout+time.Second)
	defer cancel()
	var failed error
	for i, r := range u.client.DoMulti(wctx, cmds...) {
		if err := r.Error(); err != nil {
			failed = errors.Join(failed, err)
			u.mu.Lock()
			u.dirty[users[i]] = true // written again next round, with the latest count
			u.mu.Unlock()
		}
	}
	if failed != nil {
		u.log.Warn("cluster-wide allocations_per_user: counts not written, retrying", "err", failed)
	}
}

// clear removes this instance's fields (best effort: an instance whose
// liveness key expired is ignored and cleaned up by readers anyway).
func (u *UserCounts) clear() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	u.mu.Lock()
	users := make([]string, 0, len(u.own))
	for user := range u.own {
		users = append(users, user)
	}
	u.mu.Unlock()
	for _, user := range users {
		_ = u.client.Do(ctx, u.client.B().Hdel().Key(u.prefix+"turn:user:"+user).Field(u.instance).Build()).Error()
	}
}
