package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/codi2/codi2/internal/pathglob"
	"github.com/codi2/codi2/subjects"
)

// ReserveOptions are the options of Client.Reserve. A plain value.
type ReserveOptions struct {
	// TTL is how long the reservations last unless renewed; it must be
	// positive.
	TTL time.Duration
	// Shared reservations overlap other shared ones without conflict.
	Shared bool
	// Reason is a free text shown to other agents.
	Reason string
	// Bind binds the reservations to this agent's presence: they end when
	// it does (KindAgent).
	Bind bool
	// Fields are extra fields stored with each reservation (a task id).
	Fields map[string]any
}

// Reserve reserves patterns (normalized pathglob patterns relative to the
// repository root, see pathglob.Normalize) in project for this agent, all
// in one multi-record command: all are granted or none. Reserving a
// pattern this agent holds already renews it. It returns the reservation
// records in the order of patterns (duplicates removed). It fails with
// ErrBadRequest for a bad project or pattern, and with a *ConflictError
// (wrapping ErrConflict) naming the other agent's overlapping reservation
// (Event.Overlap: its holder, pattern, revision and expiry). Safe for
// concurrent use: of overlapping reservations racing, one wins.
func (c *Client) Reserve(ctx context.Context, project string, patterns []string, o ReserveOptions) ([]Record, error) {
	if o.TTL <= 0 {
		return nil, fmt.Errorf("%w: a reservation needs a positive ttl, got %v", ErrBadRequest, o.TTL)
	}
	if err := ValidProject(project); err != nil {
		return nil, err
	}
	var ops []TxnOp
	seen := map[string]bool{}
	for _, p := range patterns {
		pat, err := pathglob.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		if pat.String() != p {
			return nil, fmt.Errorf("%w: pattern %q is not normalized (want %q)", ErrBadRequest, p, pat.String())
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		id, err := ReservationID(project, c.agent, p)
		if err != nil {
			return nil, err
		}
		f := map[string]any{}
		for k, v := range o.Fields {
			f[k] = v
		}
		f["holder"], f["pattern"], f["project"] = c.agent, p, project
		if o.Shared {
			f["shared"] = true
		}
		if o.Reason != "" {
			f["reason"] = o.Reason
		}
		cmd := Command{Op: OpPut, Fields: f, TTL: o.TTL}
		if o.Bind {
			cmd.Bind = Bound()
		}
		ops = append(ops, TxnOp{Kind: KindReservation, ID: id, Command: cmd})
	}
	ev, err := c.Txn(ctx, ops)
	if err != nil {
		return nil, err
	}
	recs := make([]Record, 0, len(ev.Ops))
	for _, op := range ev.Ops {
		if op.Record == nil {
			// A summary over its size limit leaves the records out:
			// read each, at the command's sequence.
			r, err := c.Get(ctx, op.Kind, op.ID, ev.Seq)
			if err != nil {
				return nil, err
			}
			op.Record = &r
		}
		recs = append(recs, *op.Record)
	}
	return recs, nil
}

// Unreserve releases this agent's reservations of patterns in project,
// exactly as they were reserved, all or none. It fails with ErrNotFound
// naming the first pattern this agent does not hold. Safe for concurrent
// use.
func (c *Client) Unreserve(ctx context.Context, project string, patterns []string) error {
	if err := ValidProject(project); err != nil {
		return err
	}
	var ops []TxnOp
	for _, p := range patterns {
		id, err := ReservationID(project, c.agent, p)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(ops, func(o TxnOp) bool { return o.ID == id }) {
			ops = append(ops, TxnOp{Kind: KindReservation, ID: id, Command: Command{Op: OpDelete}})
		}
	}
	_, err := c.Txn(ctx, ops)
	var ce *ConflictError
	if errors.As(err, &ce) && ce.Event.CurrentRev == 0 {
		i := slices.IndexFunc(ops, func(o TxnOp) bool { return o.ID == ce.Event.ID })
		return fmt.Errorf("%w: %s holds no reservation of %q in %s", ErrNotFound, c.agent, patterns[max(i, 0)], project)
	}
	return err
}

// UnreserveAll releases every live reservation of this agent in project and
// returns the patterns released, also when it fails part way: more than
// MaxTxnOps reservations are released in several commands. A reservation
// that ended meanwhile is skipped (the list is read again, at most three
// times); one renewed meanwhile is released as it now is. Safe for
// concurrent use.
func (c *Client) UnreserveAll(ctx context.Context, project string) ([]string, error) {
	var done []string
	for round := 0; ; round++ {
		held, err := c.Reservations(ctx, project, c.agent, "")
		if err != nil || len(held) == 0 {
			return done, err
		}
		gone := false
		for chunk := range slices.Chunk(held, MaxTxnOps) {
			var ops []TxnOp
			for _, r := range chunk {
				ops = append(ops, TxnOp{Kind: KindReservation, ID: r.Record.ID, Command: Command{Op: OpDelete}})
			}
			_, err := c.Txn(ctx, ops)
			var ce *ConflictError
			if errors.As(err, &ce) && ce.Event.CurrentRev == 0 && round < 2 {
				gone = true // one ended meanwhile: list again
				break
			}
			if err != nil {
				return done, err
			}
			for _, r := range chunk {
				done = append(done, r.Pattern)
			}
		}
		if !gone {
			return done, nil
		}
	}
}

// HeldReservation is a live reservation as listed: its record and its
// fields decoded.
type HeldReservation struct {
	Reservation
	Record Record
}

// Reservations lists the live reservations of project (those whose lease
// has not ended by now), in id order: only holder's when holder is not
// empty, and only those whose pattern matches path (a normalized path
// relative to the repository root) when path is not empty. Safe for
// concurrent use.
func (c *Client) Reservations(ctx context.Context, project, holder, path string) ([]HeldReservation, error) {
	if err := ValidProject(project); err != nil {
		return nil, err
	}
	prefix := project + "."
	if holder != "" {
		prefix += holder + "."
	}
	now := time.Now()
	var out []HeldReservation
	opts := ListOptions{Prefix: subjects.Escape(prefix), Limit: 1000}
	for {
		page, err := c.List(ctx, KindReservation, opts)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Records {
			if r.ExpiresAt != nil && !r.ExpiresAt.After(now) {
				continue
			}
			var res Reservation
			_ = r.Field("holder", &res.Holder)
			_ = r.Field("pattern", &res.Pattern)
			_ = r.Field("project", &res.Project)
			_ = r.Field("shared", &res.Shared)
			_ = r.Field("reason", &res.Reason)
			if path != "" {
				pat, err := pathglob.Compile(res.Pattern)
				if err != nil || !pat.Match(path) {
					continue
				}
			}
			out = append(out, HeldReservation{Reservation: res, Record: r})
		}
		if page.NextAfter == "" {
			return out, nil
		}
		opts.After = page.NextAfter
	}
}

// Heartbeat keeps this agent's presence (the record agent/<agent>) alive
// for ttl from now, merging fields (host, worktree, branch, task; a nil
// value removes one). When the presence ends (the ttl passes without a
// heartbeat, or SignOff) every record bound to it is released. It returns
// the presence record. Safe for concurrent use.
func (c *Client) Heartbeat(ctx context.Context, ttl time.Duration, fields map[string]any) (Record, error) {
	if ttl <= 0 {
		return Record{}, fmt.Errorf("%w: a heartbeat needs a positive ttl, got %v", ErrBadRequest, ttl)
	}
	if fields == nil {
		fields = map[string]any{}
	}
	return c.applyRecord(ctx, KindAgent, c.agent, Command{Op: OpMerge, Fields: fields, TTL: ttl})
}

// SignOff ends this agent's presence now, releasing everything bound to
// it. It fails with ErrNotFound when the agent has no live presence. Safe
// for concurrent use.
func (c *Client) SignOff(ctx context.Context) error {
	ev, err := c.Apply(ctx, KindAgent, c.agent, Command{Op: OpDelete})
	if errors.Is(err, ErrConflict) && ev.CurrentRev == 0 {
		return fmt.Errorf("%w: %s has no live presence", ErrNotFound, c.agent)
	}
	return err
}
