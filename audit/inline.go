package audit

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
	// Only the head is needed: readMeta's three other reads (the applied
	// watermark and its time, the anchor) would be decoded for nothing.
	h := head{Hash: GenesisPrev}
	if err := getJSON(tx, keyHead, &h); err != nil {
		return err
	}
	hdr := nats.Header{}
	if msgID != "" {
		hdr.Set(jetstream.MsgIDHeader, msgID)
	}
	e := newEvent(0, t, subject, hdr, data)
	if e.msgKey != nil {
		v, err := getOptional(tx, e.msgKey)
		if err != nil || v != nil {
			return err
		}
	}
	w := writer{tx: tx}
	seq := h.Seq + 1
	if e.msgKey != nil {
		w.set(e.msgKey, strconv.AppendUint(nil, seq, 10))
	}
	at := max(e.t, h.Time)
	rec := appendRecord(nil, seq, at, e.body, []byte(h.Hash), new(timeText))
	putRecord(&w, seq, rec)
	ix := newIndexer()
	ix.add(&w, e.source, e.category, at, seq)
	ix.flush(&w)
	h = head{Seq: seq, Time: at, Bytes: h.Bytes + uint64(len(rec)), Flagged: h.Flagged, Hash: string(storedHash(rec))}
	if e.flagged != "" {
		h.Flagged++
	}
	w.setJSON(keyHead, h)
	return w.err
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
