// Package pionlog routes the logs of Pion's libraries (webrtc, ice, dtls,
// interceptors, turn) to slog, so that nothing reaches Pion's default
// logger on stderr, and keeps secrets out of them.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/logging"
)

// LevelTrace is the slog level Pion's trace messages are logged at.
const LevelTrace = slog.LevelDebug - 4

// Levels maps Pion's info, warning and error messages to slog levels.
// Pion logs some remote-triggered events (a packet from a peer without
// permission, a refused candidate) at info or warning: a component whose
// peers are anyone on the Internet logs them lower, so that they cannot
// flood the log.
type Levels struct {
	Info, Warn, Error slog.Level
}

// Plain maps levels one to one.
var Plain = Levels{Info: slog.LevelInfo, Warn: slog.LevelWarn, Error: slog.LevelError}

// New returns a Pion LoggerFactory writing to log, each record carrying
// the Pion scope as attribute "pion". Whatever the level, a message that
// mentions an ICE password ("pwd") or a DTLS fingerprint is dropped, and
// one that quotes a candidate or SDP is logged at debug at most. A nil log
// discards everything.
func New(log *slog.Logger, levels Levels) logging.LoggerFactory {
	return &factory{log: log, levels: levels}
}

type factory struct {
	log    *slog.Logger
	levels Levels
}

func (f *factory) NewLogger(scope string) logging.LeveledLogger {
	if f.log == nil {
		return &logger{}
	}
	return &logger{log: f.log.With("pion", scope), levels: f.levels}
}

type logger struct {
	log    *slog.Logger
	levels Levels
}

func (l *logger) emit(level slog.Level, msg string) {
	if l.log == nil {
		return
	}
	low := strings.ToLower(msg)
	if strings.Contains(low, "pwd") || strings.Contains(low, "fingerprint") {
		return
	}
	if level > slog.LevelDebug &&
		(strings.Contains(low, "candidate") || strings.Contains(low, "sdp") || strings.Contains(low, "a=")) {
		level = slog.LevelDebug
	}
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, msg)
	}
}

// emitf formats only for enabled levels: Pion logs per packet at debug
// and trace.
func (l *logger) emitf(level slog.Level, format string, args ...any) {
	if l.log == nil || !l.log.Enabled(context.Background(), level) {
		return
	}
	l.emit(level, fmt.Sprintf(format, args...))
}

func (l *logger) Trace(msg string)                  { l.emit(LevelTrace, msg) }
func (l *logger) Tracef(format string, args ...any) { l.emitf(LevelTrace, format, args...) }
func (l *logger) Debug(msg string)                  { l.emit(slog.LevelDebug, msg) }
func (l *logger) Debugf(format string, args ...any) { l.emitf(slog.LevelDebug, format, args...) }
func (l *logger) Info(msg string)                   { l.emit(l.levels.Info, msg) }
func (l *logger) Infof(format string, args ...any)  { l.emitf(l.levels.Info, format, args...) }
func (l *logger) Warn(msg string)                   { l.emit(l.levels.Warn, msg) }
func (l *logger) Warnf(format string, args ...any)  { l.emitf(l.levels.Warn, format, args...) }
func (l *logger) Error(msg string)                  { l.emit(l.levels.Error, msg) }
func (l *logger) Errorf(format string, args ...any) { l.emitf(l.levels.Error, format, args...) }
