package turn

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/logging"
)

// limitedLog logs at most burst messages per key and then one per interval,
// counting what it suppressed so the next message that gets through says how
// many were dropped. A flood of bad requests therefore cannot fill the disk,
// while the metrics still count every one.
type limitedLog struct {
	log      *slog.Logger
	interval time.Duration
	burst    int

	mu   sync.Mutex
	keys map[string]*logBucket
}

type logBucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

func newLimitedLog(log *slog.Logger) *limitedLog {
	return &limitedLog{log: log, interval: 100 * time.Millisecond, burst: 20, keys: map[string]*logBucket{}}
}

// allow reports whether a message under key may be logged now and how many
// were suppressed since the last one. Keys come from fixed sets (reasons,
// rules), so the map stays small.
func (l *limitedLog) allow(key string) (bool, int) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.keys[key]
	if b == nil {
		b = &logBucket{tokens: float64(l.burst), last: now}
		l.keys[key] = b
	}
	b.tokens += float64(now.Sub(b.last)) / float64(l.interval)
	if b.tokens > float64(l.burst) {
		b.tokens = float64(l.burst)
	}
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return true, n
}

// Log logs msg at level under the rate limit for key.
func (l *limitedLog) Log(level slog.Level, key, msg string, args ...any) {
	l.LogLazy(level, key, msg, func() []any { return args })
}

// LogLazy is Log for hot paths: args is called only when the line is
// written, so a suppressed line costs no allocation.
func (l *limitedLog) LogLazy(level slog.Level, key, msg string, args func() []any) {
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

// pionLoggerFactory adapts pion's leveled logger to slog. pion logs client
// mistakes (unknown attributes, bad channel numbers) at warn and error level,
// so everything it says goes through the rate limiter; its debug and trace
// output is checked for being enabled before anything is formatted.
type pionLoggerFactory struct {
	log     *slog.Logger
	limited *limitedLog
}

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope), limited: f.limited, scope: scope}
}

type pionLogger struct {
	log     *slog.Logger
	limited *limitedLog
	scope   string
}

func (p pionLogger) emit(level slog.Level, msg string) {
	if level >= slog.LevelWarn {
		p.limited.Log(level, "pion-"+p.scope, msg, "pion", p.scope)
		return
	}
	p.log.Log(context.Background(), level, msg)
}

func (p pionLogger) enabled(level slog.Level) bool {
	return p.log.Enabled(context.Background(), level)
}

// pion's trace and debug output is very chatty; it is shown at slog's debug
// level minus 4 so "debug" keeps icegate's own debug lines readable.
const levelTrace = slog.LevelDebug - 4

func (p pionLogger) Trace(msg string) {
	if p.enabled(levelTrace) {
		p.emit(levelTrace, msg)
	}
}

func (p pionLogger) Tracef(format string, args ...any) {
	if p.enabled(levelTrace) {
		p.emit(levelTrace, fmt.Sprintf(format, args...))
	}
}

func (p pionLogger) Debug(msg string) {
	if p.enabled(levelTrace) {
		p.emit(levelTrace, msg)
	}
}

func (p pionLogger) Debugf(format string, args ...any) {
	if p.enabled(levelTrace) {
		p.emit(levelTrace, fmt.Sprintf(format, args...))
	}
}

func (p pionLogger) Info(msg string) {
	if p.enabled(slog.LevelDebug) {
		p.emit(slog.LevelDebug, msg)
	}
}

func (p pionLogger) Infof(format string, args ...any) {
	if p.enabled(slog.LevelDebug) {
		p.emit(slog.LevelDebug, fmt.Sprintf(format, args...))
	}
}

func (p pionLogger) Warn(msg string) { p.emit(slog.LevelWarn, msg) }

func (p pionLogger) Warnf(format string, args ...any) {
	p.emit(slog.LevelWarn, fmt.Sprintf(format, args...))
}

func (p pionLogger) Error(msg string) { p.emit(slog.LevelWarn, msg) }

func (p pionLogger) Errorf(format string, args ...any) {
	p.emit(slog.LevelWarn, fmt.Sprintf(format, args...))
}
