package kv

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// Gate is an embedded backend's door: it counts the transactions running
// so that Close can wait for them, and holds the single writer slot that
// Updates take one at a time, in the order they get it.
type Gate struct {
	slot    chan struct{}
	closing chan struct{} // closed by Close; wakes writers waiting for the slot
	where   string        // the backend and its file, for errors ("boltkv: /data/state.db")

	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup
}

// NewGate returns an open gate with a free slot; where names the store in
// errors.
func NewGate(where string) *Gate {
	return &Gate{slot: make(chan struct{}, 1), closing: make(chan struct{}), where: where}
}

// Enter registers a transaction, or fails with ErrClosed once Close was
// called. Every Enter that returned nil needs its Exit.
func (g *Gate) Enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return fmt.Errorf("%s: %w", g.where, ErrClosed)
	}
	g.running.Add(1)
	return nil
}

// Exit ends a transaction registered by Enter.
func (g *Gate) Exit() { g.running.Done() }

// Acquire takes the writer slot for the transaction l, giving up when l
// runs out of time (Alive's error) or the gate closes (ErrClosed).
func (g *Gate) Acquire(l *Lifetime) error {
	select {
	case g.slot <- struct{}{}:
		return nil
	default:
	}
	timer := time.NewTimer(time.Until(l.deadline))
	defer timer.Stop()
	select {
	case g.slot <- struct{}{}:
		return nil
	case <-l.ctx.Done():
		return l.Alive("wait for writer")
	case <-timer.C:
		return l.Alive("wait for writer")
	case <-g.closing:
		return fmt.Errorf("%s: wait for writer: %w", g.where, ErrClosed)
	}
}

// Release frees the writer slot taken by Acquire.
func (g *Gate) Release() { <-g.slot }

// Close refuses new transactions, fails writers waiting for the slot with
// ErrClosed and waits for the running transactions to Exit; the backend
// then closes its files. A second Close returns ErrClosed.
func (g *Gate) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return fmt.Errorf("%s: close: %w", g.where, ErrClosed)
	}
	g.closed = true
	close(g.closing)
	g.mu.Unlock()
	g.running.Wait()
	return nil
}
