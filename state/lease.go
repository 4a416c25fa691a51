package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/codi2/codi2/internal/kv"
)

// Leases. A record written with ttl_ms has an expiry time (the command's
// stored time plus the ttl) and an entry ("lease", expires, kind, id) in the
// lease index. Expiry happens in the apply loop, so it is ordered with the
// commands:
//
//   - a command that finds a record whose lease ended before the command was
//     stored expires it first (same transaction), then applies;
//   - otherwise a sweep expires due leases between batches, but only up to a
//     time before which every stored command is applied: a refresh that
//     JetStream stored before the lease's end is applied first, even if the
//     loop is behind.

// sweepRetry is how long a due sweep waits for the commands stored before
// the lease's end to be applied, when the loop is behind.
const sweepRetry = 10 * time.Millisecond

// sweep expires one slice (at most MaxExpiryBatch) of the leases that are
// due at now. The loop calls it between command batches and again at once
// while leases are due, taking the commands that wait first, so a command
// waits for at most one slice however many leases end together.
func (l *loop) sweep(ctx context.Context, now time.Time) error {
	if !l.leaseDue(now) {
		return nil
	}
	// Every command stored up to lastTime is applied; if the stream holds
	// nothing newer, every command stored up to now is.
	cutoff := l.lastTime
	if cutoff.After(now) {
		cutoff = now
	}
	if cutoff.Before(l.nextLease) {
		caught, err := l.caughtUp(ctx)
		if err != nil {
			l.log.Warn().Err(err).Str("stream", l.cfg.Stream).Msg("stream info for lease sweep")
			l.sweepAfter = now.Add(l.cfg.LeaseSweepInterval)
			return nil
		}
		if caught {
			cutoff = now
		}
	}
	if cutoff.Before(l.nextLease) {
		l.sweepAfter = now.Add(sweepRetry)
		return nil
	}
	return l.expireDue(ctx, cutoff)
}

// leaseDue reports whether a lease is due at now and the sweep is not
// waiting for commands stored before it.
func (l *loop) leaseDue(now time.Time) bool {
	return !l.nextLease.IsZero() && !l.nextLease.After(now) && !now.Before(l.sweepAfter)
}

// caughtUp reports whether every command in the stream is applied.
func (l *loop) caughtUp(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := l.p.Stream().Info(ctx)
	if err != nil {
		return false, err
	}
	l.p.See(info.State.LastSeq)
	return info.State.LastSeq <= l.applied, nil
}

// expireDue expires, in one transaction, up to MaxExpiryBatch leases that
// end at or before cutoff, and reports them.
func (l *loop) expireDue(ctx context.Context, cutoff time.Time) error {
	clears := l.takeDone()
	var res batchResult
	err := l.update(ctx, func(tx kv.Txn) error {
		res = batchResult{outcomes: res.outcomes[:0]}
		ap := l.auditAppender(tx) // one for the sweep's expiries, as for a batch
		applied, err := l.begin(tx, clears)
		if err != nil {
			return err
		}
		begin, _ := kv.Tuple{prefixLease}.Range()
		end := kv.Tuple{prefixLease, cutoff.UnixNano() + 1}.Pack()
		kvs, err := tx.GetRange(begin, end, kv.RangeOptions{Limit: l.cfg.MaxExpiryBatch})
		if err != nil {
			return err
		}
		for _, p := range kvs {
			t, err := kv.Unpack(p.Key)
			if err != nil || len(t) != 4 {
				return fmt.Errorf("state: corrupt lease key: %v", err)
			}
			ns, _ := t[1].(int64)
			kind, _ := t[2].(string)
			id, _ := t[3].(string)
			st, ok, err := getStored(tx, kind, id)
			if errors.Is(err, ErrCorrupt) {
				// Its lease cannot be told from the damage: drop the index
				// entry so the sweep goes on (the error is logged after
				// the commit; gets and commands on it keep failing).
				res.corrupt = append(res.corrupt, err.Error())
				if err := tx.Clear(p.Key); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			if !ok || st.tombstone || st.ExpiresAt == nil || st.ExpiresAt.UnixNano() != ns {
				// An index entry without its lease: drop it.
				if err := tx.Clear(p.Key); err != nil {
					return err
				}
				continue
			}
			w, o, _, err := planExpiry(tx, st.Record, applied, l.gen)
			if err != nil {
				return err
			}
			pl := plan{writes: w, outcomes: o}
			if err := l.applyPlanWith(tx, ap, &pl, *st.ExpiresAt); err != nil {
				return err
			}
			res.outcomes = append(res.outcomes, o...)
		}
		res.applied = applied
		if res.nextLease, err = firstLease(tx); err != nil {
			return err
		}
		return flushAudit(ap)
	})
	if err != nil {
		l.untakeDone(clears)
		return fmt.Errorf("state: expire leases up to %s: %w", cutoff.Format(time.RFC3339Nano), err)
	}
	l.dropCleared(clears)
	for _, c := range res.corrupt {
		l.log.Error().Str("detail", c).Msg("lease not expired: its record in the store is corrupt; its lease index entry was dropped")
	}
	l.nextLease = res.nextLease
	l.report(res.outcomes)
	if len(res.outcomes) > 0 {
		l.lastActive = time.Now()
		l.log.Debug().Str("stream", l.cfg.Stream).Int("batch", len(res.outcomes)).Uint64("seq", res.applied).Msg("leases expired")
	}
	return l.pumpAudits(ctx)
}
