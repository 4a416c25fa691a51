package state

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/codi2/codi2/internal/kv"
)

// The audit outbox. Every outcome's audit event is written to
// ("outbox", seq, msg_id) in the transaction that commits the outcome. After
// the commit the loop publishes it to CODI_AUDIT asynchronously with its
// Nats-Msg-Id; once the PubAck is back, the next transaction (the next batch,
// or an idle flush) clears the key. A crash anywhere in between leaves the
// entry in the store, and the next Run publishes it again: the audit
// consumer keeps the first copy of a Nats-Msg-Id, so nothing is lost and
// nothing is recorded twice.

// auditRetryDelay is the pause after a failed audit publish.
const auditRetryDelay = time.Second

func encodeOutbox(e outboxEntry) []byte {
	return kv.Tuple{e.subject, e.msgID, e.data}.Pack()
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
// most maxAuditInflight in flight. Failed publishes are retried after
// auditRetryDelay. It fails only when the store cannot be read.
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
	for _, it := range l.audits {
		if l.inflight >= maxAuditInflight {
			break
		}
		if it.fut != nil || it.done {
			continue
		}
		msg := &nats.Msg{Subject: it.subject, Data: it.data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, it.msgID)
		fut, err := l.s.js.PublishMsgAsync(msg)
		if err != nil {
			l.auditRetry = time.Now().Add(auditRetryDelay)
			l.log.Warn().Err(err).Str("subject", it.subject).Msg("publish audit event; retrying")
			break
		}
		it.fut = fut
		l.inflight++
	}
	return nil
}

// pollAudits records the publishes that got their PubAck or failed. The
// failures of one poll are logged as one line with their count and the
// first and last Nats-Msg-Id, not one line each: a server restart fails
// every publish in flight at once.
func (l *loop) pollAudits() {
	if l.inflight == 0 {
		return
	}
	var (
		failed      int
		first, last string
		firstErr    error
	)
	for _, it := range l.audits {
		if it.fut == nil {
			continue
		}
		select {
		case <-it.fut.Ok():
			it.done, it.fut = true, nil
			l.inflight--
		case err := <-it.fut.Err():
			it.fut = nil
			l.inflight--
			if failed == 0 {
				first, firstErr = it.msgID, err
			}
			failed++
			last = it.msgID
		default:
		}
	}
	if failed > 0 {
		l.auditRetry = time.Now().Add(auditRetryDelay)
		l.log.Warn().Err(firstErr).Int("count", failed).Str("first", first).Str("last", last).
			Dur("retry_in", auditRetryDelay).Msg("audit events not acknowledged; retrying")
	}
}

// auditsAcked is a channel closed once every audit publish in flight is
// acknowledged, or nil (blocks forever) when none is.
func (l *loop) auditsAcked() <-chan struct{} {
	if l.inflight == 0 {
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
		if !it.done && it.fut == nil {
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
