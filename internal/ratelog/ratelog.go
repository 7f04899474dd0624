// Package ratelog is a rate-limited slog front: per key, a burst of lines
// and then a steady trickle, with a count of what was left out. The relay
// and the signaling server log through it whatever a client can provoke.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"icegate/internal/tokenbucket"
)

// Logger logs at most burst messages per key and then one per interval,
// counting what it suppressed so the next message that gets through says how
// many were dropped. A flood of bad requests therefore cannot fill the disk,
// while the metrics still count every one.
type Logger struct {
	log      *slog.Logger
	interval time.Duration
	burst    int

	mu   sync.Mutex
	keys map[string]*logBucket
}

type logBucket struct {
	tokenbucket.Bucket
	suppressed int
}

// New returns a Logger writing to log: a burst of 20 lines per key, then
// one per 100 ms.
func New(log *slog.Logger) *Logger {
	return &Logger{log: log, interval: 100 * time.Millisecond, burst: 20, keys: map[string]*logBucket{}}
}

// maxKeys bounds the map: keys may name peers or connections, so when this
// many are tracked the map starts over (a key seen again gets a new burst).
const maxKeys = 10000

// allow reports whether a message under key may be logged now and how many
// were suppressed since the last one.
func (l *Logger) allow(key string) (bool, int) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.keys[key]
	if b == nil {
		if len(l.keys) >= maxKeys {
			clear(l.keys)
		}
		b = &logBucket{Bucket: tokenbucket.Full(float64(l.burst), now)}
		l.keys[key] = b
	}
	if !b.Take(now, float64(time.Second)/float64(l.interval), float64(l.burst), 1) {
		b.suppressed++
		return false, 0
	}
	n := b.suppressed
	b.suppressed = 0
	return true, n
}

// Log logs msg at level under the rate limit for key.
func (l *Logger) Log(level slog.Level, key, msg string, args ...any) {
	l.LogLazy(level, key, msg, func() []any { return args })
}

// LogLazy is Log for hot paths: args is called only when the line is
// written, so a suppressed line costs no allocation.
func (l *Logger) LogLazy(level slog.Level, key, msg string, args func() []any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	ok, suppressed := l.allow(key)
	if !ok {
		return
	}
	a := args()
	if suppressed > 0 {
		a = append(a, "suppressed", suppressed)
	}
	l.log.Log(context.Background(), level, msg, a...)
}
