package filewatch

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/codi2/codi2/subjects"
)

// Defaults of Config.
const (
	// DefaultSettle is the coalescing window: a file's kernel events are
	// one change once the file has been quiet this long. Long enough for
	// an editor's save (a few ms) and a compiler's burst of writes, short
	// enough that a change is recorded within a blink.
	DefaultSettle = 100 * time.Millisecond
	// DefaultMaxQueue bounds the changes kept in memory while the Sink
	// fails (about 300 bytes each: 30 MB).
	DefaultMaxQueue = 100_000
	// UnknownAgent is the agent of changes when none is configured.
	UnknownAgent = "unknown"
)

// Config configures a Watcher. The zero value of every field but Root is a
// default. A Config is a plain value.
type Config struct {
	// Root is the repository root: paths are recorded relative to it.
	// Required, absolute.
	Root string
	// Dir is the directory watched, Root or a directory below it (default
	// Root).
	Dir string
	// Agent is recorded with each change (default UnknownAgent). It is the
	// audit event's source, so it must be a subject token.
	Agent string
	// Project is recorded with each change when set (repo.Repo.Project).
	Project string
	// NoHash skips reading files: changes carry no size or hash (for huge
	// trees).
	NoHash bool
	// Settle is the coalescing window (default DefaultSettle; a negative
	// value means none: every kernel event is decided at once).
	Settle time.Duration
	// MaxQueue bounds the changes queued while the Sink fails (default
	// DefaultMaxQueue).
	MaxQueue int
	// RetryMin and RetryMax bound the backoff between Sink retries
	// (defaults 100 ms and 2 s).
	RetryMin, RetryMax time.Duration
}

// withDefaults returns c with its defaults filled in.
func (c Config) withDefaults() Config {
	if c.Dir == "" {
		c.Dir = c.Root
	}
	if c.Agent == "" {
		c.Agent = UnknownAgent
	}
	if c.Settle == 0 {
		c.Settle = DefaultSettle
	}
	if c.Settle < 0 {
		c.Settle = 0
	}
	if c.MaxQueue == 0 {
		c.MaxQueue = DefaultMaxQueue
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 2 * time.Second
	}
	return c
}

// Validate reports the first problem of c (with defaults applied) as an
// ErrConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Root == "" || !filepath.IsAbs(c.Root):
		return fmt.Errorf("%w: the root %q must be an absolute directory", ErrConfig, c.Root)
	case !filepath.IsAbs(c.Dir):
		return fmt.Errorf("%w: the directory %q must be absolute", ErrConfig, c.Dir)
	case c.MaxQueue < 0:
		return fmt.Errorf("%w: MaxQueue must not be negative, got %d", ErrConfig, c.MaxQueue)
	case c.RetryMin < 0 || c.RetryMax < c.RetryMin:
		return fmt.Errorf("%w: retry backoff %s..%s", ErrConfig, c.RetryMin, c.RetryMax)
	}
	if rel, err := filepath.Rel(c.Root, c.Dir); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%w: %s is outside the repository %s", ErrConfig, c.Dir, c.Root)
	}
	if err := subjects.ValidAgent(c.Agent); err != nil {
		return fmt.Errorf("%w: agent %q: %v", ErrConfig, c.Agent, err)
	}
	return nil
}
