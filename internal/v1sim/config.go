package v1sim

import (
	"fmt"
	"strings"
)

// Defaults applied by Config.WithDefaults to zero fields. Constants, so safe
// for concurrent use.
const (
	// DefaultWriters is the five concurrent sessions of the v1 incident.
	DefaultWriters = 5
	// DefaultEventsPerWriter keeps a default run well under a second in
	// Buffered mode.
	DefaultEventsPerWriter = 1000
	// DefaultPayloadBytes pads events to roughly the size of v1's lines.
	DefaultPayloadBytes = 100
)

// Limits enforced by Config.Validate. Constants, so safe for concurrent use.
const (
	// MaxWriters bounds the descriptors one run opens.
	MaxWriters = 1024
	// MaxEvents bounds Writers * EventsPerWriter: a run keeps one latency
	// sample per event and Verify one flag per event.
	MaxEvents = 50_000_000
	// MaxPayloadBytes bounds the pad of one event.
	MaxPayloadBytes = 1 << 20
)

// BufferSize is the size of each writer's bufio.Writer in Buffered mode. A
// constant, so safe for concurrent use.
const BufferSize = 4096

// LogName is the name of the shared log file inside Config.Dir. A constant,
// so safe for concurrent use.
const LogName = "codi-v1.log"

// Mode is how v1 writers append to the shared log. The zero Mode means
// Buffered after WithDefaults. A Mode is a plain value, safe to share.
type Mode int

// The modes. Constants, so safe for concurrent use.
const (
	// Buffered gives every writer its own 4 KiB bufio.Writer over its own
	// O_APPEND descriptor, flushed when full: v1's behaviour, which tears
	// lines across writers. Events are never fsynced.
	Buffered Mode = iota + 1
	// LockedFsync appends each event under an exclusive flock(2) with one
	// write(2) followed by fsync(2): no tearing, one disk flush per event.
	LockedFsync
)

// String returns the name ParseMode accepts. It is safe for concurrent use.
func (m Mode) String() string {
	switch m {
	case Buffered:
		return "buffered"
	case LockedFsync:
		return "locked-fsync"
	default:
		return fmt.Sprintf("Mode(%d)", int(m))
	}
}

// ParseMode returns the Mode named s ("buffered" or "locked-fsync", case
// insensitive), for command-line flags. It is safe for concurrent use.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{Buffered, LockedFsync} {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown mode %q", ErrInvalidConfig, s)
}

// Config describes one simulated v1 run. Zero fields other than Dir take the
// defaults above; see WithDefaults. A Config is a plain value, safe to share
// once built.
type Config struct {
	// Dir is the directory that holds the shared log, LogName. Required.
	Dir string
	// Writers is the number of concurrent writers, each with its own
	// descriptor, standing for v1's separate processes.
	Writers int
	// EventsPerWriter is the number of events each writer appends.
	EventsPerWriter int
	// Mode is how writers append; zero means Buffered.
	Mode Mode
	// PayloadBytes is the length of each event's "pad" field. Line lengths
	// vary anyway (timestamps and counters), so flush boundaries fall inside
	// lines whatever the pad.
	PayloadBytes int
}

// WithDefaults returns c with every zero field except Dir replaced by its
// default. It is safe for concurrent use.
func (c Config) WithDefaults() Config {
	if c.Writers == 0 {
		c.Writers = DefaultWriters
	}
	if c.EventsPerWriter == 0 {
		c.EventsPerWriter = DefaultEventsPerWriter
	}
	if c.Mode == 0 {
		c.Mode = Buffered
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = DefaultPayloadBytes
	}
	return c
}

// Validate reports, wrapping ErrInvalidConfig, the first field that is out of
// range. Zero fields are valid because they take defaults. It is safe for
// concurrent use.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: Dir is required", ErrInvalidConfig)
	case c.Writers < 0 || c.Writers > MaxWriters:
		return fmt.Errorf("%w: Writers=%d, want 0..%d", ErrInvalidConfig, c.Writers, MaxWriters)
	case c.EventsPerWriter < 0 || c.EventsPerWriter > MaxEvents:
		return fmt.Errorf("%w: EventsPerWriter=%d, want 0..%d", ErrInvalidConfig, c.EventsPerWriter, MaxEvents)
	case c.Mode != 0 && c.Mode != Buffered && c.Mode != LockedFsync:
		return fmt.Errorf("%w: Mode=%v", ErrInvalidConfig, c.Mode)
	case c.PayloadBytes < 0 || c.PayloadBytes > MaxPayloadBytes:
		return fmt.Errorf("%w: PayloadBytes=%d, want 0..%d", ErrInvalidConfig, c.PayloadBytes, MaxPayloadBytes)
	}
	// Both factors are bounded above, so the product cannot overflow.
	if d := c.WithDefaults(); d.Writers*d.EventsPerWriter > MaxEvents {
		return fmt.Errorf("%w: Writers*EventsPerWriter=%d, want <= %d",
			ErrInvalidConfig, d.Writers*d.EventsPerWriter, MaxEvents)
	}
	return nil
}
