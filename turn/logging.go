package turn

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

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
	if level >= slog.LevelWarn && clientCaused(msg) {
		level = slog.LevelDebug
		if !p.enabled(level) {
			return
		}
	}
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

// clientNoise are the beginnings of what pion says at warn or error level
// about a client's own doing, answered to that client already (a 400, a
// 420) or merely its way of leaving: an operator can do nothing about them,
// and one client can write them as fast as it sends. They are shown at
// debug level. Anything else pion reports stays a warning: a relay socket
// that fails, a timer that cannot be reset, an allocation that cannot close.
var clientNoise = []string{
	// RFC 8656 §12.1: a channel bound to another peer, or a peer bound to
	// another channel, is the client's mistake, answered 400.
	"ChannelBind rejected:",
	// RFC 8489 §14: answered 420 with UNKNOWN-ATTRIBUTES.
	"with unknown comprehension-required attributes from",
	// RFC 6062 §5.3: a client that never sent ConnectionBind for a Connect
	// or a ConnectionAttempt within 30 s.
	"Removing TCP Connection that was never bound",
}

// hangUps are the errors with which closing a connection fails when the
// client has already gone: crypto/tls cannot send its close_notify alert
// into a socket the peer reset or shut.
var hangUps = []string{"broken pipe", "connection reset by peer", "use of closed network connection", "closeNotify", "i/o timeout"}

// clientCaused reports whether a warning or error from pion is about what
// a client did rather than something wrong with this server.
func clientCaused(msg string) bool {
	for _, p := range clientNoise {
		if strings.Contains(msg, p) {
			return true
		}
	}
	if strings.HasPrefix(msg, "Failed to close conn:") {
		for _, h := range hangUps {
			if strings.Contains(msg, h) {
				return true
			}
		}
	}
	return false
}
