package bus

import (
	"fmt"
	"sync"

	"github.com/rs/zerolog"
)

// serverLogger adapts nats-server's Logger interface onto zerolog. It keeps
// the first fatal message so that Start can report why the server stopped.
type serverLogger struct {
	log zerolog.Logger
	// faults, when set, is shown every error line.
	faults *storageFaults
	mu     sync.Mutex
	fatal  error
}

// Noticef logs at debug level: nats-server's notices are its start banner and
// routine events; codi2 logs its own summary line at info.
func (l *serverLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l *serverLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error().Msg(msg)
	if l.faults != nil {
		l.faults.observe(msg)
	}
}
func (l *serverLogger) Debugf(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l *serverLogger) Tracef(format string, v ...any) { l.log.Trace().Msgf(format, v...) }

// Fatalf logs at error level and records the error: the embedded server must
// never exit the process, so Start turns it into an error instead.
func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error().Bool("fatal", true).Msg(msg)
	l.mu.Lock()
	if l.fatal == nil {
		l.fatal = fmt.Errorf("%s", msg)
	}
	l.mu.Unlock()
}

func (l *serverLogger) fatalErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}
