// Package logbound keeps a warning that repeats (one per push or per
// device while an engine is away) from flooding the log: the first of a
// kind is logged at once; those that follow within an interval are held
// and counted, and one line at the end of the interval says how many, with
// the latest one's attributes (its reason).
package logbound

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Interval is the servers' interval: a kind of line at most every 10 s.
const Interval = 10 * time.Second

// Logger logs warnings and errors, at most one line per kind (its level
// and message) per interval. Safe for concurrent use.
type Logger struct {
	log   *slog.Logger
	every time.Duration

	mu    sync.Mutex
	kinds map[kindKey]*kind
}

type kindKey struct {
	level slog.Level
	msg   string
}

// kind is one message's state.
type kind struct {
	last    time.Time // when a line of it was logged
	held    int       // warnings held since
	args    []any     // the latest held one's attributes
	flusher *time.Timer
}

// New returns a Logger writing to log, a line per kind per every.
func New(log *slog.Logger, every time.Duration) *Logger {
	return &Logger{log: log, every: every, kinds: map[kindKey]*kind{}}
}

// Warn logs msg with args at level warn, unless a line of msg was logged
// within the interval: then it is held, and counted in the line that ends
// it ("repeated": how many were held since the line before, with the
// latest's args).
func (l *Logger) Warn(msg string, args ...any) { l.emit(slog.LevelWarn, msg, args) }

// Error is Warn at level error.
func (l *Logger) Error(msg string, args ...any) { l.emit(slog.LevelError, msg, args) }

func (l *Logger) emit(level slog.Level, msg string, args []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := kindKey{level, msg}
	k := l.kinds[key]
	if k == nil {
		k = &kind{}
		l.kinds[key] = k
	}
	now := time.Now()
	if wait := l.every - now.Sub(k.last); !k.last.IsZero() && wait > 0 {
		k.held, k.args = k.held+1, args
		if k.flusher == nil {
			k.flusher = time.AfterFunc(wait, func() { l.flush(key) })
		}
		return
	}
	if k.held > 0 { // the interval's line is due now: this one says it
		args = append(args, "repeated", k.held)
		k.held, k.args = 0, nil
		k.flusher.Stop()
		k.flusher = nil
	}
	k.last = now
	l.log.Log(context.Background(), level, msg, args...)
}

// flush logs the lines of a kind held in the interval that ended.
func (l *Logger) flush(key kindKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kinds[key]
	k.flusher = nil
	if k.held == 0 {
		return
	}
	l.log.Log(context.Background(), key.level, key.msg, append(k.args, "repeated", k.held)...)
	k.last, k.held, k.args = time.Now(), 0, nil
}
