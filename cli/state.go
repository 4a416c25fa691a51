package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/codi2/codi2/filewatch"
	"strings"
	"time"

	"github.com/codi2/codi2/internal/timeparse"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
	"github.com/spf13/cobra"
)

// DefaultClaimTTL is the lease a claim takes unless --ttl says otherwise.
const DefaultClaimTTL = 15 * time.Minute

// ids turns the KIND and ID arguments into wire tokens: the kind as
// given, the id escaped (a file path or URL works as typed), unless it is
// already a canonical escaped token holding an escape, as --json output
// prints ids ("src/main%2Ego").
func ids(args []string) (kind, id string, err error) {
	kind = args[0]
	if err := subjects.ValidKind(kind); err != nil {
		return "", "", usageError{fmt.Errorf("kind %q: %w", kind, err)}
	}
	id = args[1]
	if _, err := subjects.Unescape(id); err != nil || !strings.Contains(id, "%") {
		id = subjects.Escape(id) // typed as it is; a canonical token (as --json prints it) is kept
	}
	if err := subjects.ValidToken(id); err != nil {
		return "", "", usageError{fmt.Errorf("id %q: %w", args[1], err)}
	}
	return kind, id, nil
}

// unescaped is the id as it was typed (subjects.Unescape), or as it is when
// it is not an escaped token.
func unescaped(id string) string {
	if s, err := subjects.Unescape(id); err == nil {
		return s
	}
	return id
}

// RecordText is a record in one line.
func RecordText(r state.Record) string {
	fields, _ := json.Marshal(r.Fields)
	s := fmt.Sprintf("%s/%s rev %d by %s at %s", r.Kind, clean(unescaped(r.ID)), r.Rev, r.UpdatedBy, r.UpdatedAt.UTC().Format(time.RFC3339))
	if r.ExpiresAt != nil {
		s += " until " + r.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if r.BoundTo != "" {
		s += " or " + r.BoundTo + "'s presence ends"
	}
	return s + " " + string(fields)
}

// conflict turns a lost claim, renewal or release into exit 3 with the
// holder, its revision and expiry, read from the server.
func (e *env) conflict(cmd *cobra.Command, c *state.Client, kind, id string, err error) error {
	var held *state.HeldError
	switch {
	case errors.As(err, &held):
		return conflictError{msg: held.Error()}
	case errors.Is(err, state.ErrNoLease):
		return conflictError{msg: err.Error()}
	case !errors.Is(err, state.ErrConflict):
		return err
	}
	ctx, cancel := e.ctx(cmd)
	defer cancel()
	cur, gerr := c.Get(ctx, kind, id, 0)
	switch {
	case errors.Is(gerr, state.ErrNotFound):
		return conflictError{msg: fmt.Sprintf("%s: %s/%s does not exist (any more)", state.ErrConflict, kind, id)}
	case gerr != nil:
		return err
	case cur.Holder() == c.Agent():
		return conflictError{msg: fmt.Sprintf("%s: the rev given is stale: %s/%s is at rev %d, held by you until %s (pass --rev %d)",
			state.ErrConflict, kind, id, cur.Rev, cur.ExpiresAt.UTC().Format(time.RFC3339), cur.Rev)}
	case cur.ExpiresAt != nil:
		return conflictError{msg: (&state.HeldError{Record: cur}).Error()}
	}
	return conflictError{msg: fmt.Sprintf("%s: %s/%s is at rev %d (last changed by %s), not the rev given",
		state.ErrConflict, kind, id, cur.Rev, cur.UpdatedBy)}
}

// lease runs one lease operation on the KIND and ID arguments as --agent
// and prints what it returns (a value for --json, a line of text); a lost
// race is exit 3 with the holder.
func (e *env) lease(cmd *cobra.Command, args []string,
	op func(ctx context.Context, c *state.Client, kind, id string) (any, string, error)) error {
	kind, id, err := ids(args)
	if err != nil {
		return err
	}
	c, ctx, cancel, err := e.stateCtx(cmd, true)
	if err != nil {
		return err
	}
	defer cancel()
	v, text, err := op(ctx, c, kind, id)
	if err != nil {
		return e.conflict(cmd, c, kind, id, err)
	}
	return e.out.emit(v, text)
}

// leased adapts a lease call that returns the record to lease's op.
func leased(done string, rec state.Record, err error) (any, string, error) {
	return rec, done + " " + RecordText(rec), err
}

func (e *env) claimCmd() *cobra.Command {
	var (
		ttl    time.Duration
		fields string
		bind   bool
	)
	cmd := &cobra.Command{
		Use:   "claim KIND ID",
		Short: "take a lease on a record if nobody holds one",
		Long: `Claim KIND/ID for --agent: create it with --fields, or take it when it exists
without a live lease (released); the record's holder field names you. Prints
the record; its rev is the fencing token for renew and release. The lease
ends after --ttl unless renewed, and then the record expires (is removed):
release instead to end the lease and keep the record. Claiming what you
already hold renews it. The claim is bound to your presence (see heartbeat):
when your presence ends it is released, unless --bind=false. Exit 3 when
another agent holds it (the holder, its rev and expiry are printed).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var f map[string]any
			if fields != "" {
				if err := json.Unmarshal([]byte(fields), &f); err != nil || f == nil {
					return usageError{fmt.Errorf("--fields: want a JSON object, got %q", fields)}
				}
			}
			if err := state.CheckTTL(ttl); err != nil {
				return usageError{fmt.Errorf("--%w", err)}
			}
			return e.lease(cmd, args, func(ctx context.Context, c *state.Client, kind, id string) (any, string, error) {
				rec, err := c.ClaimWith(ctx, kind, id, state.ClaimOptions{TTL: ttl, Fields: f, Bind: bind})
				return leased("claimed", rec, err)
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", DefaultClaimTTL, "lease length: the claim ends by itself unless renewed")
	cmd.Flags().StringVar(&fields, "fields", "", `fields to set, a JSON object ({"status":"in_progress"})`)
	cmd.Flags().BoolVar(&bind, "bind", true, "release the claim when this agent's presence ends")
	return cmd
}

func (e *env) renewCmd() *cobra.Command {
	var (
		ttl time.Duration
		rev uint64
	)
	cmd := &cobra.Command{
		Use:   "renew KIND ID --rev N",
		Short: "extend a lease held at revision N",
		Long: `Extend --agent's lease on KIND/ID to --ttl from now, if the record is still at
revision N (the rev the claim or the last renew printed). Prints the record
with its new rev. Exit 3 when another agent holds it, when it has no lease
(claim it first) or moved on; exit 4 when it no longer exists (it expired).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := revGiven(cmd, rev); err != nil {
				return err
			}
			if err := state.CheckTTL(ttl); err != nil {
				return usageError{fmt.Errorf("--%w", err)}
			}
			return e.lease(cmd, args, func(ctx context.Context, c *state.Client, kind, id string) (any, string, error) {
				rec, err := c.Refresh(ctx, kind, id, rev, ttl)
				return leased("renewed", rec, err)
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", DefaultClaimTTL, "new lease length, from now")
	cmd.Flags().Uint64Var(&rev, "rev", 0, "the record's revision, as your claim or last renew printed")
	return cmd
}

// revGiven checks renew's and release's --rev: given, and a revision (they
// start at 1).
func revGiven(cmd *cobra.Command, rev uint64) error {
	switch {
	case !cmd.Flags().Changed("rev"):
		return usageError{errors.New("--rev is required: the rev your claim printed")}
	case rev == 0:
		return usageError{errors.New("--rev 0: revisions start at 1; give the rev your claim printed")}
	}
	return nil
}

func (e *env) releaseCmd() *cobra.Command {
	var (
		rev uint64
		del bool
	)
	cmd := &cobra.Command{
		Use:   "release KIND ID --rev N",
		Short: "end a lease, keeping the record (--delete removes it)",
		Long: `End --agent's lease on KIND/ID held at revision N: the holder field is cleared
and the other fields (status, assignee) stay, so anyone may claim it again.
--delete removes the record instead. Exit 3 when another agent holds it or it
has no lease; exit 4 when it does not exist.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := revGiven(cmd, rev); err != nil {
				return err
			}
			return e.lease(cmd, args, func(ctx context.Context, c *state.Client, kind, id string) (any, string, error) {
				if del {
					err := c.ReleaseDelete(ctx, kind, id, rev)
					return map[string]any{"kind": kind, "id": id, "deleted": true}, "deleted " + kind + "/" + args[1], err
				}
				rec, err := c.Release(ctx, kind, id, rev)
				return leased("released", rec, err)
			})
		},
	}
	cmd.Flags().Uint64Var(&rev, "rev", 0, "the record's revision, as your claim or last renew printed")
	cmd.Flags().BoolVar(&del, "delete", false, "remove the record instead of keeping it")
	return cmd
}

func (e *env) getCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get KIND ID",
		Short: "read one record (exit 4 when it does not exist)",
		Long: `Print the record KIND/ID: rev (the fencing token), fields, who changed it last
and when, when its lease ends. Exit 4 when it does not exist.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, id, err := ids(args)
			if err != nil {
				return err
			}
			c, ctx, cancel, err := e.stateCtx(cmd, false)
			if err != nil {
				return err
			}
			defer cancel()
			rec, err := c.Get(ctx, kind, id, 0)
			if err != nil {
				return err
			}
			return e.out.emit(rec, RecordText(rec))
		},
	}
}

func (e *env) listCmd() *cobra.Command {
	var (
		prefix, since, until, held string
		limit                      int
		where                      []string
	)
	cmd := &cobra.Command{
		Use:   "list KIND",
		Short: "list records of a kind, in id order",
		Long: `List KIND's records in id order. --prefix selects ids starting with it,
--since and --until those changed in [since, until) (RFC 3339, "now", or "1h"
for an hour ago), --where k=v those whose field k is v (a JSON value, or a
string; repeatable, all must hold), --held true|false those whose lease is
live or not; --limit stops after N records. The server filters, from an
index where it can (codi2 list task --since 1h --where assignee=agent-1
reads only those tasks).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := args[0]
			if err := subjects.ValidKind(kind); err != nil {
				return usageError{fmt.Errorf("kind %q: %w", kind, err)}
			}
			if limit < 0 {
				return usageError{fmt.Errorf("--limit must not be negative, got %d", limit)}
			}
			q, err := e.listQuery(since, until, held, where)
			if err != nil {
				return err
			}
			c, err := e.stateClient(false)
			if err != nil {
				return err
			}
			q.Prefix = subjects.Escape(prefix)
			n := 0
			for {
				ctx, cancel := e.ctx(cmd)
				page, err := c.ListWhere(ctx, kind, q)
				cancel()
				if err != nil {
					return err
				}
				for i, rec := range page.Records {
					if err := e.out.emit(rec, RecordText(rec)); err != nil {
						return err
					}
					if n++; limit > 0 && n >= limit {
						if i < len(page.Records)-1 || page.NextAfter != "" {
							// As history says it: a cut list says so.
							fmt.Fprintf(e.io.Err, "codi2: stopped at --limit %d; more records follow (raise --limit, or 0 for all)\n", limit)
						}
						return nil
					}
				}
				if page.NextAfter == "" {
					return nil
				}
				q.After = page.NextAfter
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&prefix, "prefix", "", "only ids starting with this (as typed; escaped like the ids)")
	f.StringVar(&since, "since", "", "only records changed since: "+timeparse.Example)
	f.StringVar(&until, "until", "", "only records changed before this time")
	f.StringVar(&held, "held", "", "true: only records with a live lease; false: only those without")
	f.IntVar(&limit, "limit", 0, "at most N records (0: all)")
	f.StringArrayVar(&where, "where", nil, "only records whose field k is v (k=v, repeatable)")
	return cmd
}

// listQuery builds list's server-side filters from --since, --until,
// --held and --where; times are read at this process's now.
func (e *env) listQuery(since, until, held string, where []string) (state.ListQuery, error) {
	var q state.ListQuery
	var from, to time.Time
	for _, t := range []struct {
		flag, v string
		to      *string
		at      *time.Time
	}{{"since", since, &q.UpdatedAfter, &from}, {"until", until, &q.UpdatedBefore, &to}} {
		if t.v == "" {
			continue
		}
		at, err := timeparse.Parse(t.v, e.io.Now())
		if err != nil {
			return q, usageError{fmt.Errorf("--%s: %w", t.flag, err)}
		}
		*t.to, *t.at = at.UTC().Format(time.RFC3339Nano), at
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return q, usageError{fmt.Errorf("--since %s is not before --until %s: nothing could match", since, until)}
	}
	switch held {
	case "":
	case "true", "false":
		b := held == "true"
		q.Held = &b
	default:
		return q, usageError{fmt.Errorf("--held %q: want true or false", held)}
	}
	for _, w := range where {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return q, usageError{fmt.Errorf("--where %q: want field=value", w)}
		}
		raw := json.RawMessage(v)
		if !json.Valid(raw) {
			raw, _ = json.Marshal(v)
		}
		if q.Where == nil {
			q.Where = map[string]json.RawMessage{}
		}
		if prev, ok := q.Where[k]; ok && !bytes.Equal(prev, raw) {
			// The wire refuses a duplicate member; two values of one
			// field could only match nothing.
			return q, usageError{fmt.Errorf("--where gives field %s twice (%s and %s): a record's field has one value, nothing could match", k, prev, raw)}
		}
		q.Where[k] = raw
	}
	return q, nil
}

func (e *env) watchCmd() *cobra.Command {
	var fo filesOptions
	cmd := &cobra.Command{
		Use:   "watch KIND [ID] | watch --files [DIR]",
		Short: "print state events as they happen (--files: record file changes), until interrupted",
		Long: `Print every outcome of a command on KIND's records (or KIND/ID's) as the state
service commits it, applied or rejected, until Ctrl-C (exit 0). When the
server goes away, watch says so on standard error and reconnects for as long
as it takes; events committed while it was away are not replayed (read the
records with get or list, or the audit log with history).

With --files, watch the working tree DIR (default: the repository's root)
and record each file change as the audit event file.<create|write|remove|rename>
from --agent (or "unknown"), printing each once recorded (see README, "File
changes").`,
		Args: func(cmd *cobra.Command, args []string) error {
			if fo.files {
				return cobra.MaximumNArgs(1)(cmd, args)
			}
			return cobra.RangeArgs(1, 2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if fo.files {
				return e.watchFiles(cmd, args, fo)
			}
			for _, name := range []string{"settle", "no-hash"} {
				if cmd.Flags().Changed(name) {
					return usageError{fmt.Errorf("--%s goes with --files (watch KIND follows state events)", name)}
				}
			}
			kind := args[0]
			if err := subjects.ValidKind(kind); err != nil {
				return usageError{fmt.Errorf("kind %q: %w", kind, err)}
			}
			subj := subjects.StateEvtKind(kind)
			if len(args) == 2 {
				var id string
				var err error
				if _, id, err = ids(args); err != nil {
					return err
				}
				subj, _ = subjects.StateEvt(kind, id)
			}
			e.follow = true
			if err := e.connect(); err != nil {
				return err
			}
			sub, err := e.nc.SubscribeSync(subj)
			if err != nil {
				return err
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := e.nc.Flush(); err != nil {
				return unreachableError{err}
			}
			for {
				m, err := sub.NextMsgWithContext(cmd.Context())
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil // interrupted: done
					}
					return err
				}
				var ev state.Event
				if err := json.Unmarshal(m.Data, &ev); err != nil {
					continue
				}
				if err := e.out.emit(json.RawMessage(m.Data), eventText(m.Subject, ev)); err != nil {
					return err
				}
			}
		},
	}
	f := cmd.Flags()
	f.BoolVar(&fo.files, "files", false, "record the working tree's file changes instead (DIR: default the repository root)")
	f.BoolVar(&fo.noHash, "no-hash", false, "with --files: do not read files (no size or sha256; for huge trees)")
	f.DurationVar(&fo.settle, "settle", filewatch.DefaultSettle, "with --files: a file's events within this quiet window are one change")
	return cmd
}

func eventText(subject string, ev state.Event) string {
	s := fmt.Sprintf("#%d %s %s %s by %s", ev.Seq, subject, ev.Op, ev.Status, ev.Actor)
	switch {
	case ev.Status == state.StatusApplied:
		s += fmt.Sprintf(" -> rev %d", ev.Rev)
	case ev.Reason != "":
		s += fmt.Sprintf(": %s", ev.Reason)
		if ev.Detail != "" {
			s += " (" + ev.Detail + ")"
		}
	}
	return s
}
