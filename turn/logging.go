package turn

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"

	"icegate/internal/ratelog"
)

// pionLoggerFactory adapts pion's leveled logger to slog. pion logs client
// mistakes (unknown attributes, bad channel numbers) at warn and error level,
// so everything it says goes through the rate limiter; its debug and trace
// output is checked for being enabled before anything is formatted.
type pionLoggerFactory struct {
	log     *slog.Logger
	limited *ratelog.Logger
}

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope), limited: f.limited, scope: scope}
}

type pionLogger struct {
	log     *slog.Logger
	limited *ratelog.Logger
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
