package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/pipeline"
	"github.com/codi2/codi2/internal/retry"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// event is a CODI_AUDIT message prepared for appending: everything that does
// not depend on the log's state is computed before the transaction.
type event struct {
	streamSeq uint64
	t         int64 // JetStream stored time, Unix nanoseconds
	source    string
	category  string
	msgID     string
	body      []byte // encodeBody's members
	size      int    // estimate, for MaxBatchBytes
	msgKey    []byte // msgIDKey(source, msgID), nil without an id
	flagged   string // what is wrong with the subject, for the log; "" when nothing
	force     bool   // appended whatever the watermark (a rebase's loss record)

	// bulk holds a bulk message's events, appended in its place (bulk.go).
	bulk []event
}

func newEvent(streamSeq uint64, t time.Time, subject string, hdr nats.Header, data []byte) event {
	if hdr.Get(BulkHeader) != "" {
		return newBulkEvent(streamSeq, t, subject, hdr, data)
	}
	return singleEvent(streamSeq, t, subject, hdr.Get(jetstream.MsgIDHeader), data)
}

// singleEvent is the event of a message that is not a bulk message, with
// Nats-Msg-Id msgID ("" for none).
func singleEvent(streamSeq uint64, t time.Time, subject, msgID string, data []byte) event {
	source, category := splitSubject(subject)
	flags, detail := subjectFlags(subject, source, category)
	return messageEvent(streamSeq, t, subject, source, category, msgID, flags, detail, data)
}

// messageEvent is the event of one message kept as one record: its
// subject's tokens, its Nats-Msg-Id (its dedupe key when set), and flags
// with the detail logged for them ("" when none). The record's body and
// the dedupe key share one allocation.
func messageEvent(streamSeq uint64, t time.Time, subject, source, category, msgID string, flags []string, detail string, data []byte) event {
	e := event{
		streamSeq: streamSeq,
		t:         t.UnixNano(),
		source:    source,
		category:  category,
		msgID:     msgID,
		size:      estimate(subject, len(data)),
		flagged:   detail,
	}
	size := bodySize(subject, msgID, data)
	if msgID != "" {
		size += msgIDKeySize(source, msgID)
	}
	buf := appendBody(make([]byte, 0, size), subject, source, category, flags, msgID, data)
	e.body = buf[:len(buf):len(buf)]
	if msgID != "" {
		e.msgKey = appendMsgIDKey(buf[len(buf):], source, msgID)
	}
	return e
}

// splitSubject returns the source and category tokens of an audit subject.
// A subject the contract does not allow (the stream takes any subject under
// codi.audit.log.>) is still recorded, with the tokens where they would be.
func splitSubject(subject string) (source, category string) {
	return subjects.Token(subject, 3), subjects.Token(subject, 4)
}

// Commit appends a delivered batch (internal/pipeline acks it after).
// Events come in stream order, after the watermark; a jump in the stream
// sequence before one (messages the stream no longer held when the
// consumer reached them) is filled by reading the stream, so that nothing
// stored is skipped, and what it does not hold is recorded as lost. It
// returns an error only when the writer must stop: the store is closed, or
// ctx ended (the pipeline's shutdown deadline) while appends failed.
func (s *Service) Commit(ctx context.Context, batch []*pipeline.Msg[event]) error {
	evs := make([]*event, len(batch))
	for i, m := range batch {
		evs[i] = &m.Value
	}
	// ctx only says when to stop retrying: a delivered batch is appended
	// (its holes read from the stream) even while the service stops, or
	// Run would fail a clean shutdown that raced a hole.
	work := context.WithoutCancel(ctx)
	return s.retry(ctx, func() error { return s.appendEvents(work, evs) })
}

// retry runs fn until it succeeds, backing off on failure. It gives up
// when the store is closed, or when ctx is done (the batch stays unacked and
// is redelivered).
func (s *Service) retry(ctx context.Context, fn func() error) error {
	backoff := retry.Backoff{Delay: 50 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := fn()
		if err == nil {
			s.problem.Set(nil)
			return nil
		}
		if errors.Is(err, kv.ErrClosed) {
			return err
		}
		// Readiness says so while appends fail (a full disk, a damaged
		// page of audit.db).
		s.problem.Set(err)
		s.log.Error().Err(err).Dur("retry_in", backoff.Delay).Msg("append")
		if backoff.Wait(ctx) != nil {
			return fmt.Errorf("audit: gave up appending: %w", err)
		}
	}
}

// appendEvents commits evs (sorted by stream seq) in transactions of at
// most MaxBatchEvents events and MaxBatchBytes bytes, filling holes in the
// delivered sequence from the stream and recording the sequences missing
// from the stream itself (lostEvent).
func (s *Service) appendEvents(ctx context.Context, evs []*event) error {
	applied := s.committed().applied
	next := applied + 1
	var filled holes
	defer filled.log(s)
	for i := 0; i < len(evs); {
		chunk := make([]*event, 0, min(len(evs)-i, s.cfg.MaxBatchEvents))
		size := 0
		for i < len(evs) && len(chunk) < s.cfg.MaxBatchEvents {
			e := evs[i]
			if e.streamSeq < next {
				i++ // a redelivery, or a duplicate within the batch
				continue
			}
			delivered := e.streamSeq == next
			if !delivered {
				var err error
				if e, err = s.fillHole(ctx, next, e, &filled); err != nil {
					return err
				}
			}
			if len(chunk) > 0 && size+e.size > s.cfg.MaxBatchBytes {
				break
			}
			if delivered {
				i++
			}
			chunk = append(chunk, e)
			size += e.size
			next = e.streamSeq + 1
		}
		if next-1 <= applied {
			continue
		}
		start := time.Now()
		m, err := s.apply(chunk, next-1, false)
		if err != nil {
			return err
		}
		s.observeAppend(int(m.head.Seq-s.committed().head.Seq), time.Since(start))
		applied = m.applied
		s.setMeta(m)
		s.publishWatermark(m)
	}
	return nil
}

// tailCheckInterval is how often the idle writer looks for events the
// stream lost after the watermark (Lost).
const tailCheckInterval = 5 * time.Second

// Lost records the events first..last after the watermark that
// CODI_AUDIT no longer holds while it holds none after them (bus.LostTail,
// called by the pipeline): purged while the log was behind, they would
// never be delivered. The loss is logged at error and appended as a lost
// record with the watermark at the stream's last sequence. Only a failed
// append is an error.
func (s *Service) Lost(ctx context.Context, first, last uint64) error {
	at := time.Now().UnixNano()
	s.log.Error().Str("stream", bus.StreamAudit).Uint64("first_seq", first).Uint64("last_seq", last).
		Msg("audit events missing from the stream (purged or deleted before the log read them); recording the loss in the log")
	lost := lostEvent(first, last, at, "")
	return s.retry(ctx, func() error {
		m, err := s.apply([]*event{&lost}, last, false)
		if err == nil {
			s.setMeta(m)
			s.publishWatermark(m)
		}
		return err
	})
}

// holes collects the stream sequences appendEvents read from the stream
// because they were not delivered, so that they are logged as one line
// with their range rather than one line each (a restart after kill -9 can
// leave hundreds).
type holes struct {
	count       int
	first, last uint64
}

func (h *holes) add(seq uint64) {
	if h.count == 0 {
		h.first = seq
	}
	h.count++
	h.last = seq
}

func (h *holes) log(s *Service) {
	if h.count > 0 {
		s.log.Warn().Int("count", h.count).Uint64("first_stream_seq", h.first).Uint64("last_stream_seq", h.last).
			Msg("filled holes in the delivered sequence from the stream")
	}
}

// fillHole returns what goes into the log at stream seq next, which was not
// delivered, before the delivered event e (e.streamSeq > next): the message
// the stream holds there (a delivery the client lost), or, when the stream
// holds nothing from next up to some seq, an event recording that range as
// lost (purged, deleted by sequence, or aged out before the log read it),
// logged at error.
func (s *Service) fillHole(ctx context.Context, next uint64, e *event, filled *holes) (*event, error) {
	raw, err := s.stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subjects.AuditLogWildcard))
	last := e.streamSeq - 1 // the last seq missing from the stream
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Nothing stored from next on: e too is gone since its delivery.
	case err != nil:
		return nil, fmt.Errorf("audit: get stream message %d: %w", next, err)
	case raw.Sequence == next:
		filled.add(next)
		ev := newEvent(raw.Sequence, raw.Time, raw.Subject, raw.Header, raw.Data)
		return &ev, nil
	case raw.Sequence < e.streamSeq:
		last = raw.Sequence - 1
	}
	s.log.Error().Str("stream", bus.StreamAudit).Uint64("first_seq", next).Uint64("last_seq", last).
		Msg("audit events missing from the stream (purged, deleted or expired before the log read them); recording the loss in the log")
	// A nanosecond before e: the watermark's time (a rebase's reference)
	// must not claim e when the transaction ends with the loss.
	lost := lostEvent(next, last, e.t-1, "")
	return &lost, nil
}

// Lost is the payload of the event the service appends for CODI_AUDIT
// sequences that were missing from the stream when the log reached them
// (source LostSource, category LostCategory): events with a PubAck that the
// log could not record, FirstSeq through LastSeq.
//
// Reason is empty for sequences found missing from the stream, and
// LostRecreated when the stream itself was deleted under the service: then
// LastSeq is the last sequence the service knew the old stream had (it may
// have held more) and Count may be 0.
type Lost struct {
	Stream   string `json:"stream"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Count    uint64 `json:"count"`
	Reason   string `json:"reason,omitempty"`
}

// LostRecreated is the Reason of a Lost event for a deleted stream.
const LostRecreated = "stream recreated"

// lostEvent is the log's record of stream seqs first..last missing, stored
// in the log's order at last's place with stored time t.
func lostEvent(first, last uint64, t int64, reason string) event {
	subj, _ := subjects.AuditLog(LostSource, LostCategory)
	data, _ := json.Marshal(Lost{Stream: bus.StreamAudit, FirstSeq: first, LastSeq: last, Count: last + 1 - first, Reason: reason})
	return event{
		streamSeq: last,
		t:         t,
		source:    LostSource,
		category:  LostCategory,
		body:      encodeBody(subj, LostSource, LostCategory, "", data),
		size:      estimate(subj, len(data)),
	}
}

// applyResult is what one append transaction did, reset on every run of the
// transaction function.
type applyResult struct {
	meta       meta
	appended   int
	duplicates int
	flagged    []*event // appended with flags
	recorded   bool     // the pending retention event was appended
}

// apply appends chunk in one transaction and records appliedTo as the last
// applied stream seq. An event at or below the stored applied seq, or whose
// Nats-Msg-Id its source already used in the log, is not appended again,
// unless forced. With rebase set appliedTo is recorded even below the
// stored applied seq (the stream's numbering started over).
func (s *Service) apply(chunk []*event, appliedTo uint64, rebase bool) (meta, error) {
	var res applyResult
	err := s.store.Update(context.Background(), func(tx kv.Txn) error {
		res = applyResult{}
		m, err := readMeta(tx)
		if err != nil {
			return err
		}
		pending, err := getOptional(tx, keyRetention)
		if err != nil {
			return err
		}
		var pendingID string
		if pending != nil {
			pendingID = retentionMsgID(pending)
		}
		w := writer{tx: tx}
		ix := newIndexer()
		// Set keeps no reference to its arguments: one buffer each for
		// records and numbers serves every event.
		var rec, num []byte
		var tt timeText
		prev := []byte(m.head.Hash) // the last record's hash, as the chain goes
		var lastAt int64            // stored time of the last event applied
		evs := expand(chunk)
		dup, err := s.duplicates(tx, evs, m.applied)
		if err != nil {
			return err
		}
		for i, e := range evs {
			if e.streamSeq <= m.applied && !e.force {
				continue
			}
			if !e.force {
				lastAt = e.t
			}
			seq := m.head.Seq + 1
			if e.msgKey != nil {
				if e.msgID == pendingID && e.source == RetentionSource {
					// The pending retention event is in the log now (or
					// already was): the run is over.
					w.clear(keyRetention)
					res.recorded = true
				}
				if dup[i] {
					res.duplicates++
					continue
				}
				num = strconv.AppendUint(num[:0], seq, 10)
				w.set(e.msgKey, num)
			}
			t := max(e.t, m.head.Time)
			rec = appendRecord(rec[:0], seq, t, e.body, prev, &tt)
			putRecord(&w, seq, rec)
			ix.add(&w, e.source, e.category, t, seq)
			prev = append(prev[:0], storedHash(rec)...)
			m.head = head{Seq: seq, Time: t, Bytes: m.head.Bytes + uint64(len(rec)), Flagged: m.head.Flagged}
			if e.flagged != "" {
				m.head.Flagged++
				res.flagged = append(res.flagged, e)
			}
			res.appended++
		}
		ix.flush(&w)
		m.head.Hash = string(prev)
		if appliedTo > m.applied || rebase {
			m.applied = appliedTo
			w.set(keyApplied, strconv.AppendUint(nil, m.applied, 10))
			if lastAt != 0 {
				m.appliedAt = lastAt
				w.set(keyAppliedAt, strconv.AppendInt(nil, lastAt, 10))
			}
		}
		w.setJSON(keyHead, m.head)
		res.meta = m
		return w.err
	})
	if err != nil {
		return meta{}, fmt.Errorf("audit: append stream_seq<=%d: %w", appliedTo, err)
	}
	if res.recorded {
		s.retention = nil
	}
	if n := len(res.flagged); n > 0 {
		e := res.flagged[0]
		s.log.Info().Int("count", n).Uint64("stream_seq", e.streamSeq).Str("source", e.source).Str("category", e.category).
			Str("detail", e.flagged).Msg("kept audit events whose subject the contract does not allow; their records are flagged")
	}
	s.log.Debug().Int("batch", res.appended).Int("duplicates", res.duplicates).
		Uint64("seq", res.meta.head.Seq).Uint64("stream_seq", res.meta.applied).Msg("committed")
	return res.meta, nil
}

// putRecord stores a record under ("audit", seq), continuing into
// ("audit", seq, 1...) when it is longer than one value may be.
func putRecord(w *writer, seq uint64, stored []byte) {
	w.key = kv.AppendInt(append(w.key[:0], recordPrefix...), int64(seq))
	w.set(w.key, stored[:min(len(stored), chunkSize)])
	for part, off := 1, chunkSize; off < len(stored); part, off = part+1, off+chunkSize {
		w.set(chunkKey(seq, part), stored[off:min(len(stored), off+chunkSize)])
	}
}
