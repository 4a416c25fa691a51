package audit

import (
	"context"
	"strconv"
	"time"

	"github.com/codi2/codi2/internal/kv"
)

// AppendInTxn appends one audit event to the hash-chained log inside tx, a
// transaction of the store the audit service also appends to: subject is
// the event's codi.audit.log subject, msgID its Nats-Msg-Id (the dedupe
// key: an event whose source already used msgID is not appended again, so
// a copy that reaches CODI_AUDIT later is skipped), data its payload and t
// its time (Unix time; a record is never dated before the one it follows).
//
// It is the prototype of issue 16's single commit path: the state service,
// given it as state.Config.AppendAudit over a store shared with the audit
// service, records each outcome in the transaction that applies the
// command instead of publishing it to CODI_AUDIT for a second commit. The
// chain is read and written in tx, so the services' transactions order the
// records; the audit service's Status counts them when its Config has
// SharedLog (codi.audit.committed, its own watermark, does not move).
// Safe for concurrent use; like every write in tx it may run again when
// the store retries the transaction.
func AppendInTxn(tx kv.Txn, subject, msgID string, data []byte, t time.Time) error {
	ap := NewAppender(tx)
	if err := ap.Append(subject, msgID, data, t); err != nil {
		return err
	}
	return ap.Flush()
}

// Appender appends many records in one transaction of the shared store,
// as AppendInTxn does one: the chain's head is read at the first Append,
// and the index blocks and the head are written once, at Flush, rather
// than once per record (a batch of n commands' outcomes writes its index
// blocks once, not four blocks per record). Records appended without a
// Flush are not in the log: Flush before the transaction commits. An
// Appender belongs to one transaction and one goroutine.
type Appender struct {
	tx     kv.Txn
	w      writer
	h      head   // the chain's head; its Hash is set from prev at Flush
	prev   []byte // the last record's hash
	loaded bool
	ix     *indexer
	tt     timeText
	buf    []byte // the record being appended (Set keeps no reference)
	num    []byte // its seq in decimal, the dedupe key's value
	dirty  bool
}

// NewAppender returns the Appender of tx. It does no I/O.
func NewAppender(tx kv.Txn) *Appender {
	return &Appender{tx: tx, w: writer{tx: tx}}
}

// Append appends the event as AppendInTxn describes it. An event whose
// source already used msgID, in the log or earlier in this Appender, is
// not appended again.
func (a *Appender) Append(subject, msgID string, data []byte, t time.Time) error {
	if !a.loaded {
		// Only the head is needed: readMeta's three other reads (the
		// applied watermark and its time, the anchor) would be decoded
		// for nothing.
		a.h = head{Hash: GenesisPrev}
		if err := getJSON(a.tx, keyHead, &a.h); err != nil {
			return err
		}
		a.loaded, a.ix, a.prev = true, newIndexer(), []byte(a.h.Hash)
	}
	// As newEvent makes it of a message without BulkHeader, without
	// building the message's header.
	e := singleEvent(0, t, subject, msgID, data)
	if e.msgKey != nil {
		v, err := getOptional(a.tx, e.msgKey)
		if err != nil || v != nil {
			return err
		}
	}
	seq := a.h.Seq + 1
	if e.msgKey != nil {
		a.num = strconv.AppendUint(a.num[:0], seq, 10)
		a.w.set(e.msgKey, a.num)
	}
	at := max(e.t, a.h.Time)
	a.buf = appendRecord(a.buf[:0], seq, at, e.body, a.prev, &a.tt)
	putRecord(&a.w, seq, a.buf)
	a.ix.add(&a.w, e.source, e.category, at, seq)
	a.prev = append(a.prev[:0], storedHash(a.buf)...)
	a.h.Seq, a.h.Time, a.h.Bytes = seq, at, a.h.Bytes+uint64(len(a.buf))
	if e.flagged != "" {
		a.h.Flagged++
	}
	a.dirty = true
	return a.w.err
}

// Flush writes the index blocks and the head of what was appended since
// the last Flush. Without appends it writes nothing.
func (a *Appender) Flush() error {
	if !a.dirty {
		return a.w.err
	}
	a.ix.flush(&a.w)
	a.h.Hash = string(a.prev)
	a.w.setJSON(keyHead, a.h)
	a.ix, a.dirty = newIndexer(), false
	return a.w.err
}

// sharedHead is m with the head and anchor the store holds now, which
// count the records other writers appended (AppendInTxn) since the
// service's last commit. A failed read (a closed store) leaves m as it is.
func (s *Service) sharedHead(m meta) meta {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	var (
		h head
		a anchor
	)
	err := s.store.View(ctx, func(tx kv.ReadTxn) error {
		h, a = head{Hash: GenesisPrev}, anchor{FirstSeq: 1, Prev: GenesisPrev}
		if err := getJSON(tx, keyHead, &h); err != nil {
			return err
		}
		return getJSON(tx, keyAnchor, &a)
	})
	if err == nil && h.Seq >= m.head.Seq {
		m.head, m.anchor = h, a
	}
	return m
}
