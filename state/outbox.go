package state

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/internal/kv"
)

// The audit outbox. Every outcome's audit event is written to
// ("outbox", seq, msg_id) in the transaction that commits the outcome. After
// the commit the loop publishes it to CODI_AUDIT asynchronously with its
// Nats-Msg-Id, in a bulk audit message with others (pumpAudits); once the
// PubAck is back, the next transaction (the next batch,
// or an idle flush) clears the key. A crash anywhere in between leaves the
// entry in the store, and the next Run publishes it again: the audit
// consumer keeps the first copy of a Nats-Msg-Id, so nothing is lost and
// nothing is recorded twice.

// auditRetryDelay is the pause after a failed audit publish.
const auditRetryDelay = time.Second

// encodeOutbox is the value of e's outbox key: kv.Tuple{subject, msgID,
// data}, packed element by element (no boxing).
func encodeOutbox(e outboxEntry) []byte {
	// Three codes and terminators; escapes (0x00s) grow the buffer.
	b := make([]byte, 0, len(e.subject)+len(e.msgID)+len(e.data)+8)
	b = kv.AppendString(b, e.subject)
	b = kv.AppendString(b, e.msgID)
	return kv.AppendBytes(b, e.data)
}

func decodeOutbox(key, value []byte) (outboxEntry, error) {
	t, err := kv.Unpack(value)
	if err != nil || len(t) != 3 {
		return outboxEntry{}, fmt.Errorf("state: corrupt outbox entry: %v", err)
	}
	subj, ok1 := t[0].(string)
	id, ok2 := t[1].(string)
	data, ok3 := t[2].([]byte)
	if !ok1 || !ok2 || !ok3 {
		return outboxEntry{}, fmt.Errorf("state: corrupt outbox entry")
	}
	return outboxEntry{key: key, subject: subj, msgID: id, data: data}, nil
}

// reloadOutbox reads up to maxAuditMemory entries of the store's outbox
// into memory: on start, and after a backlog larger than memory drained.
func (l *loop) reloadOutbox(ctx context.Context) error {
	var items []*auditItem
	err := l.s.store.View(ctx, func(tx kv.ReadTxn) error {
		items = items[:0]
		begin, end := kv.Tuple{prefixOutbox}.Range()
		kvs, err := tx.GetRange(begin, end, kv.RangeOptions{Limit: maxAuditMemory})
		if err != nil {
			return err
		}
		for _, p := range kvs {
			e, err := decodeOutbox(p.Key, p.Value)
			if err != nil {
				return err
			}
			items = append(items, &auditItem{outboxEntry: e})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: read outbox: %w", err)
	}
	l.audits = items
	l.spilled = len(items) == maxAuditMemory
	if len(items) > 0 {
		l.log.Info().Int("batch", len(items)).Msg("re-publishing audit events from the outbox")
	}
	return nil
}

// pumpAudits collects finished publishes and starts new ones, keeping at
// most maxAuditInflight messages in flight. Entries go out in bulk audit
// messages (audit.Bulk: up to audit.MaxBulkEntries entries and
// maxOutboxBulkBytes each, in outbox order), so that JetStream, the audit
// consumer and the acks pay one message per batch of outcomes, not one per
// outcome; each entry is still its own record in the log, deduplicated
// there by its Nats-Msg-Id (per source: another source's event with the
// same id does not hide it), so a crash that publishes an entry again
// records it once. An entry larger than maxOutboxBulkBytes goes in a bulk
// message of its own. Failed publishes are retried after auditRetryDelay.
// It fails only when the store cannot be read.
func (l *loop) pumpAudits(ctx context.Context) error {
	l.pollAudits()
	if len(l.audits) == 0 && l.spilled {
		if err := l.reloadOutbox(ctx); err != nil {
			return err
		}
	}
	if time.Now().Before(l.auditRetry) {
		return nil
	}
	if l.bulk == nil {
		b, err := audit.NewBulk(Actor)
		if err != nil {
			return fmt.Errorf("state: %w", err) // unreachable: Actor is a token
		}
		l.bulk = b
	}
	limit := min(maxOutboxBulkBytes, int(l.s.nc.MaxPayload())-bulkHeaderRoom)
	l.bulk.Reset()
	var group []*auditItem
	flush := func() bool {
		if len(group) == 0 {
			return true
		}
		msg := l.bulk.Msg()
		l.bulk.Reset()
		ok := l.publish(group, msg)
		group = nil
		return ok
	}
	for _, it := range l.audits {
		if len(l.pubs) >= maxAuditInflight-1 { // one left for the last group
			break
		}
		if it.pub != nil || it.done || it.stuck {
			continue
		}
		size := audit.EntrySize(it.subject, it.msgID, it.data)
		if l.bulk.Len() == audit.MaxBulkEntries || l.bulk.Len() > 0 && l.bulk.Size()+size > limit {
			if !flush() {
				return nil
			}
		}
		if err := l.bulk.AddSubject(it.subject, it.msgID, it.data); err != nil {
			// The service writes its entries' subjects and ids itself: a
			// damaged entry. Kept in the outbox, never dropped.
			it.stuck = true
			l.log.Error().Err(err).Str("msg_id", it.msgID).Str("subject", it.subject).
				Msg("audit event in the outbox cannot be published; kept there")
			continue
		}
		group = append(group, it)
	}
	flush()
	return nil
}

// maxOutboxBulkBytes bounds the payload of a bulk audit message the
// outbox publishes, well inside NATS's default 1 MiB max_payload;
// bulkHeaderRoom is left for its headers under a smaller max_payload.
const (
	maxOutboxBulkBytes = 256 << 10
	bulkHeaderRoom     = 256
)

// publish publishes msg, carrying items, asynchronously. It returns false
// when the publish could not start: the items stay unpublished and
// publishing pauses for auditRetryDelay.
func (l *loop) publish(items []*auditItem, msg *nats.Msg) bool {
	fut, err := l.s.js.PublishMsgAsync(msg)
	if err != nil {
		l.auditRetry = time.Now().Add(auditRetryDelay)
		l.log.Warn().Err(err).Str("subject", msg.Subject).Int("events", len(items)).Msg("publish audit events; retrying")
		return false
	}
	p := &auditPub{fut: fut, items: items}
	for _, it := range items {
		it.pub = p
	}
	l.pubs = append(l.pubs, p)
	return true
}

// pollAudits records the publishes that got their PubAck or failed. The
// failures of one poll are logged as one line with their count and the
// first and last Nats-Msg-Id, not one line each: a server restart fails
// every publish in flight at once.
func (l *loop) pollAudits() {
	if len(l.pubs) == 0 {
		return
	}
	var (
		failed      int
		first, last string
		firstErr    error
	)
	kept := l.pubs[:0]
	for _, p := range l.pubs {
		select {
		case <-p.fut.Ok():
			for _, it := range p.items {
				it.pub, it.done = nil, true
			}
		case err := <-p.fut.Err():
			for _, it := range p.items {
				it.pub = nil
				if failed == 0 {
					first, firstErr = it.msgID, err
				}
				failed++
				last = it.msgID
			}
		default:
			kept = append(kept, p)
		}
	}
	clear(l.pubs[len(kept):])
	l.pubs = kept
	if failed > 0 {
		l.auditRetry = time.Now().Add(auditRetryDelay)
		l.log.Warn().Err(firstErr).Int("count", failed).Str("first", first).Str("last", last).
			Dur("retry_in", auditRetryDelay).Msg("audit events not acknowledged; retrying")
	}
}

// auditsAcked is a channel closed once every audit publish in flight is
// acknowledged, or nil (blocks forever) when none is.
func (l *loop) auditsAcked() <-chan struct{} {
	if len(l.pubs) == 0 {
		return nil
	}
	return l.s.js.PublishAsyncComplete()
}

func (l *loop) hasDone() bool {
	for _, it := range l.audits {
		if it.done && !it.clearing {
			return true
		}
	}
	return false
}

func (l *loop) hasUnpublished() bool {
	if l.spilled {
		return true
	}
	for _, it := range l.audits {
		if !it.done && it.pub == nil {
			return true
		}
	}
	return false
}

// takeDone marks the acknowledged entries as being cleared and returns them
// for the next transaction.
func (l *loop) takeDone() []*auditItem {
	var out []*auditItem
	for _, it := range l.audits {
		if it.done && !it.clearing {
			it.clearing = true
			out = append(out, it)
		}
	}
	return out
}

// untakeDone returns entries to the pool after their transaction failed.
func (l *loop) untakeDone(items []*auditItem) {
	for _, it := range items {
		it.clearing = false
	}
}

// dropCleared forgets entries whose outbox keys a committed transaction
// cleared.
func (l *loop) dropCleared(items []*auditItem) {
	if len(items) == 0 {
		return
	}
	kept := l.audits[:0]
	for _, it := range l.audits {
		if !it.clearing {
			kept = append(kept, it)
		}
	}
	clear(l.audits[len(kept):])
	l.audits = kept
}

// flushOutbox clears the acknowledged entries in a transaction of their own.
func (l *loop) flushOutbox(ctx context.Context) error {
	items := l.takeDone()
	err := l.update(ctx, func(tx kv.Txn) error {
		for _, it := range items {
			if err := tx.Clear(it.key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		l.untakeDone(items)
		return fmt.Errorf("state: clear outbox: %w", err)
	}
	l.dropCleared(items)
	return nil
}
