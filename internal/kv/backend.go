package kv

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Lifetime is the clock of one transaction, kept the same way by every
// embedded backend (boltkv, pebblekv): its context, its deadline (the
// store's transaction timeout from its start, MaxTxnDuration by default, or
// the context's deadline when that is earlier) and whether its function has
// returned. Backends embed it in their transaction type.
type Lifetime struct {
	ctx         context.Context
	deadline    time.Time
	ctxDeadline bool // deadline came from ctx, not the store's timeout
	timeout     time.Duration
	prefix      string // the backend's name, for errors ("boltkv")

	// Done is set by the backend once the transaction's function returned:
	// every later use fails with ErrTxnDone.
	Done bool
}

// NewLifetime starts the clock of a transaction of the backend prefix
// with the store's timeout, failing like Alive when ctx is done already.
func NewLifetime(ctx context.Context, timeout time.Duration, prefix string) (Lifetime, error) {
	l := Lifetime{ctx: ctx, timeout: timeout, deadline: time.Now().Add(timeout), prefix: prefix}
	if d, ok := ctx.Deadline(); ok && d.Before(l.deadline) {
		l.deadline, l.ctxDeadline = d, true
	}
	return l, l.Alive("begin")
}

// Alive reports whether the transaction may still run: its function has
// not returned, its context is not done and its deadline has not passed
// (ErrTimeout, also matching context.DeadlineExceeded when the deadline
// was the context's). Reads and the commit call it; writes call Live,
// which skips the clock: they are buffered until the commit, which fails
// past the deadline anyway (as in FoundationDB, where Set returns no error
// and the commit reports the timeout).
func (l *Lifetime) Alive(op string) error {
	if err := l.Live(op); err != nil {
		return err
	}
	if !time.Now().Before(l.deadline) {
		if l.ctxDeadline {
			return fmt.Errorf("%s: %s: %w: %w", l.prefix, op, ErrTimeout, context.DeadlineExceeded)
		}
		return fmt.Errorf("%s: %s: transaction older than %v: %w", l.prefix, op, l.timeout, ErrTimeout)
	}
	return nil
}

// Live reports whether the function has returned (ErrTxnDone) or the
// context is done (its error; ErrTimeout too for a deadline).
func (l *Lifetime) Live(op string) error {
	if l.Done {
		return fmt.Errorf("%s: %s: %w", l.prefix, op, ErrTxnDone)
	}
	if err := l.ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: %s: %w: %w", l.prefix, op, ErrTimeout, err)
		}
		return fmt.Errorf("%s: %s: %w", l.prefix, op, err)
	}
	return nil
}

// WriterSlot is the single writer slot of an embedded backend: Updates
// hold it one at a time, in the order they get it.
type WriterSlot struct {
	slot    chan struct{}
	closing chan struct{}
	where   string // the backend and its file, for errors ("boltkv: /data/state.db")
}

// NewWriterSlot returns a free slot; where names the store in errors.
func NewWriterSlot(where string) *WriterSlot {
	return &WriterSlot{slot: make(chan struct{}, 1), closing: make(chan struct{}), where: where}
}

// Acquire takes the slot for the transaction l, giving up when l runs out
// of time (Alive's error) or the slot is closed (ErrClosed).
func (w *WriterSlot) Acquire(l *Lifetime) error {
	select {
	case w.slot <- struct{}{}:
		return nil
	default:
	}
	timer := time.NewTimer(time.Until(l.deadline))
	defer timer.Stop()
	select {
	case w.slot <- struct{}{}:
		return nil
	case <-l.ctx.Done():
		return l.Alive("wait for writer")
	case <-timer.C:
		return l.Alive("wait for writer")
	case <-w.closing:
		return fmt.Errorf("%s: wait for writer: %w", w.where, ErrClosed)
	}
}

// Release frees the slot taken by Acquire.
func (w *WriterSlot) Release() { <-w.slot }

// Close wakes every Acquire waiting with ErrClosed. Call it once.
func (w *WriterSlot) Close() { close(w.closing) }
