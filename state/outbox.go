package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/codi2/codi2/bus"
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
	if l.suspects > 0 {
		if err := l.resolveDuplicates(ctx); err != nil {
			return err
		}
	}
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
		if it.fut != nil || it.done || it.dupSeq != 0 {
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

// resolveDuplicates looks at the messages JetStream took the outbox's
// publishes for duplicates of. A message on the same subject is this
// service's own earlier publish (a restart re-publishes its outbox): done.
// A message on another subject means some other source published the id
// first, which the stream-wide duplicate window lets it do (an agent can
// aim an id like state-<gen>-<next seq> at the state service): the event
// gets the next alternate id (altMsgID), stored in its outbox entry before
// it is published again, so that a crash re-publishes the same id. It fails
// only when the store cannot be written.
func (l *loop) resolveDuplicates(ctx context.Context) error {
	for _, it := range l.audits {
		if it.dupSeq == 0 {
			continue
		}
		if l.auditStream == nil {
			s, err := l.s.js.Stream(ctx, bus.StreamAudit)
			if err != nil {
				l.log.Warn().Err(err).Str("stream", bus.StreamAudit).Msg("check a duplicate audit publish; retrying")
				l.auditRetry = time.Now().Add(auditRetryDelay)
				return nil
			}
			l.auditStream = s
		}
		msg, err := l.auditStream.GetMsg(ctx, it.dupSeq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && msg.Subject == it.subject):
			// Ours (or no longer there to tell): nothing to do again.
			it.done = true
		case err != nil:
			l.log.Warn().Err(err).Str("stream", bus.StreamAudit).Uint64("seq", it.dupSeq).Msg("check a duplicate audit publish; retrying")
			l.auditRetry = time.Now().Add(auditRetryDelay)
			return nil
		default:
			alt := it.outboxEntry
			alt.msgID = altMsgID(it.msgID)
			err := l.update(ctx, func(tx kv.Txn) error { return tx.Set(alt.key, encodeOutbox(alt)) })
			if err != nil {
				return fmt.Errorf("state: outbox %s: %w", alt.msgID, err)
			}
			l.log.Error().Str("msg_id", it.msgID).Str("subject", msg.Subject).Uint64("seq", it.dupSeq).
				Str("new_msg_id", alt.msgID).Msg("another source published this audit event's Nats-Msg-Id first; publishing it under a new id")
			it.outboxEntry = alt
		}
		it.dupSeq = 0
		l.suspects--
	}
	return nil
}

// altMsgID is the id an audit event takes when another source took id:
// id~1, then id~2, ...
func altMsgID(id string) string {
	if i := strings.LastIndexByte(id, '~'); i >= 0 {
		if n, err := strconv.ParseUint(id[i+1:], 10, 32); err == nil {
			return id[:i+1] + strconv.FormatUint(n+1, 10)
		}
	}
	return id + "~1"
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
		case ack := <-it.fut.Ok():
			it.fut = nil
			l.inflight--
			if ack.Duplicate {
				// JetStream's duplicate window is the whole stream's:
				// the id may be another source's (resolveDuplicates).
				it.dupSeq = max(ack.Sequence, 1)
				l.suspects++
			} else {
				it.done = true
			}
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
