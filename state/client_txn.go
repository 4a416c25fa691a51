package state

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nuid"

	"github.com/codi2/codi2/subjects"
)

// Txn sends ops as one multi-record command
// (codi.state.cmd.txn.<txid>.<agent>, a fresh txid) and waits for its
// summary event on codi.state.evt.txn.<txid>: all operations applied, in
// order, in one transaction, or none. It returns the summary (Ops holds
// each operation's event, Ops[i].Record the new record of an applied put
// or merge) and, when it was rejected, the error of the operation that
// was: a *ConflictError (wrapping ErrConflict) naming the holder or the
// overlapping reservation, or ErrBadRequest / ErrCorrupt. Timeouts are as
// for Apply. Safe for concurrent use.
func (c *Client) Txn(ctx context.Context, ops []TxnOp) (Event, error) {
	if len(ops) == 0 || len(ops) > MaxTxnOps {
		return Event{}, fmt.Errorf("%w: a multi-record command has 1 to %d operations, got %d", ErrBadRequest, MaxTxnOps, len(ops))
	}
	ctx, cancel := withDefault(ctx)
	defer cancel()
	txid := nuid.Next()
	subj, err := subjects.StateCmd(KindTxn, txid, c.agent)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	evtSubj, _ := subjects.StateEvt(KindTxn, txid)
	data, err := marshalTxn(ops)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	ev, err := c.publish(ctx, subj, evtSubj, txid, data, func(Event) bool { return true })
	if err != nil {
		return Event{}, err
	}
	return ev, ev.txnErr(ops)
}

// txnErr is the error of a multi-record command's summary event ev.
func (ev Event) txnErr(ops []TxnOp) error {
	if ev.Status == StatusApplied {
		return nil
	}
	for _, op := range ev.Ops {
		if op.Reason == ReasonAborted {
			continue
		}
		if op.Reason == ReasonConflict {
			return &ConflictError{Event: op}
		}
		return fmt.Errorf("%s/%s: %w", op.Kind, op.ID, op.Err())
	}
	return ev.Err() // the payload itself was refused
}

// ConflictError is the ErrConflict of an operation that met a record
// another agent holds or, for a reservation, another agent's overlapping
// reservation. Event is the rejected operation's event: Holder, ExpiresAt,
// CurrentRev and, for a reservation, Overlap.
type ConflictError struct {
	Event Event
}

func (e *ConflictError) Error() string {
	ev := e.Event
	until := func(t *time.Time) string {
		if t == nil {
			return "without expiry"
		}
		return "until " + t.UTC().Format(time.RFC3339)
	}
	switch {
	case ev.Overlap != nil:
		return fmt.Sprintf("%s: %s/%s: %s, rev %d, %s", ErrConflict, ev.Kind, ev.ID, ev.Detail, ev.Overlap.Rev, until(ev.Overlap.ExpiresAt))
	case ev.Holder != "":
		return fmt.Sprintf("%s: %s/%s is held by %s at rev %d %s", ErrConflict, ev.Kind, ev.ID, ev.Holder, ev.CurrentRev, until(ev.ExpiresAt))
	}
	return fmt.Sprintf("%s: %s/%s: seq %d: current rev %d", ErrConflict, ev.Kind, ev.ID, ev.Seq, ev.CurrentRev)
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }
