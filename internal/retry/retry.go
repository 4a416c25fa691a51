// Package retry has the backoff the services wait with between attempts
// at something that may succeed later: a store commit, recreating a
// consumer.
package retry

import (
	"context"
	"time"
)

// Backoff is a delay that doubles after every wait, up to Max. The zero
// Max leaves it unbounded. A Backoff is a plain value owned by one loop.
type Backoff struct {
	Delay time.Duration
	Max   time.Duration
}

// Wait sleeps for the current delay and doubles it (up to Max). It returns
// ctx's error at once if ctx is done first; the delay then stays as it was.
func (b *Backoff) Wait(ctx context.Context) error {
	t := time.NewTimer(b.Delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.Delay *= 2
	if b.Max > 0 {
		b.Delay = min(b.Delay, b.Max)
	}
	return nil
}
