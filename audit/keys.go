package audit

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
)

// The key layout, every key a packed kv.Tuple (see the package
// documentation). The indexes are posting lists (see index.go): a key names
// a block's first entry and its value the block's further entries.
const (
	nsRecord     = "audit"             // ("audit", seq) -> record; ("audit", seq, i) -> its part i >= 1
	nsByTime     = "audit-by-time"     // ("audit-by-time", t, seq) -> block
	nsBySource   = "audit-by-source"   // ("audit-by-source", source, t, seq) -> block
	nsByCategory = "audit-by-category" // ("audit-by-category", category, t, seq) -> block
	nsBySC       = "audit-by-sc"       // ("audit-by-sc", source, category, t, seq) -> block
	nsMsgID      = "audit-msgid-src"   // ("audit-msgid-src", source, id) -> seq
	// nsLegacyMsgID is the layout of logs written before dedupe was
	// scoped to the source: one key per id whatever its source. Such keys
	// are read (see legacyDuplicate) and cleared by retention, never
	// written.
	nsLegacyMsgID = "audit-msgid" // ("audit-msgid", id) -> seq
)

// chunkSize is the largest part of a record stored under one key. A record
// longer than this is split over ("audit", seq) and ("audit", seq, 1...).
const chunkSize = kv.MaxValueSize

// maxMsgIDKey is the longest Nats-Msg-Id used as a key as is; longer ids are
// keyed by their SHA-256, a []byte element that cannot collide with a string.
const maxMsgIDKey = 1024

var (
	keyApplied   = kv.Tuple{"meta", "applied", bus.StreamAudit}.Pack()
	keyAppliedAt = kv.Tuple{"meta", "applied-time", bus.StreamAudit}.Pack()
	keyHead      = kv.Tuple{"meta", "audit", "head"}.Pack()
	keyAnchor    = kv.Tuple{"meta", "audit", "anchor"}.Pack()
	keyRetention = kv.Tuple{"meta", "audit", "retention"}.Pack()
)

func recordKey(seq uint64) []byte { return kv.Tuple{nsRecord, seq}.Pack() }

// recordPrefix is ("audit") packed: a record key is recordPrefix followed by
// the packed seq.
var recordPrefix = kv.Tuple{nsRecord}.Pack()

func chunkKey(seq uint64, part int) []byte { return kv.Tuple{nsRecord, seq, part}.Pack() }

// recordRange bounds the keys of records lo..hi-1, parts included.
func recordRange(lo, hi uint64) (begin, end []byte) { return recordKey(lo), recordKey(hi) }

// msgIDKey is the dedupe key of the Nats-Msg-Id id sent by source: an id
// collides only with an earlier id of the same source (the subject's 4th
// token, as it appears), so one source cannot make the log drop another's
// events by reusing their ids.
//
// It is kv.Tuple{nsMsgID, source, msgIDElem(id)}.Pack(), appended to a
// packed prefix in one allocation: the intake builds one per event.
func msgIDKey(source, id string) []byte {
	return appendMsgIDKey(make([]byte, 0, msgIDKeySize(source, id)), source, id)
}

// msgIDKeySize is the room appendMsgIDKey takes at most for a key of
// source and id: the prefix, both strings, their type codes and
// terminators, and room for escaped zero bytes (two per string here, then
// append grows the key).
func msgIDKeySize(source, id string) int {
	return len(msgIDPrefix) + len(source) + min(len(id), maxMsgIDKey) + 8
}

// appendMsgIDKey is msgIDKey appending to dst.
func appendMsgIDKey(b []byte, source, id string) []byte {
	b = kv.AppendString(append(b, msgIDPrefix...), source)
	if len(id) > maxMsgIDKey {
		sum := sha256.Sum256([]byte(id))
		return kv.AppendBytes(b, sum[:])
	}
	return kv.AppendString(b, id)
}

// msgIDPrefix is (nsMsgID) packed.
var msgIDPrefix = kv.Tuple{nsMsgID}.Pack()

// legacyMsgIDKey is msgIDKey in the layout before dedupe was scoped to the
// source.
func legacyMsgIDKey(id string) []byte { return kv.Tuple{nsLegacyMsgID, msgIDElem(id)}.Pack() }

// msgIDElem is id as a tuple element: as is, or its SHA-256 when longer than
// maxMsgIDKey (a []byte element, which cannot collide with a string).
func msgIDElem(id string) any {
	if len(id) > maxMsgIDKey {
		sum := sha256.Sum256([]byte(id))
		return sum[:]
	}
	return id
}

// hasLegacyMsgIDs reports whether the log holds dedupe keys in the layout
// before dedupe was scoped to the source.
func hasLegacyMsgIDs(tx kv.ReadTxn) (bool, error) {
	begin, end := kv.Tuple{nsLegacyMsgID}.Range()
	kvs, err := tx.GetRange(begin, end, kv.RangeOptions{Limit: 1})
	return len(kvs) > 0, err
}

// legacyDuplicate looks id up in the old, unscoped layout: it returns the
// seq (as stored) of the record that used id when that record's source is
// source, and nil otherwise, so that a log written before dedupe was scoped
// goes on deduping each source's retries and nothing else. Only ids the old
// layout holds cost the read of a record.
func legacyDuplicate(tx kv.ReadTxn, source, id string) ([]byte, error) {
	v, err := getOptional(tx, legacyMsgIDKey(id))
	if err != nil || v == nil {
		return nil, err
	}
	seq, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("audit: msg id %q: seq %q: %w", id, v, err)
	}
	begin, end := recordRange(seq, seq+1)
	parts, err := tx.GetRange(begin, end, kv.RangeOptions{})
	if err != nil || len(parts) == 0 {
		// Removed by retention since: nothing left to collide with.
		return nil, err
	}
	r, err := ParseRecord(joinParts(parts))
	if err != nil {
		return nil, fmt.Errorf("audit: record %d: %w", seq, err)
	}
	if r.Source != source {
		return nil, nil
	}
	return v, nil
}

// head is the end of the log, ("meta","audit","head").
type head struct {
	// Seq and Hash are the last record's (0 and the anchor's prev when
	// the log is empty).
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	// Time is the last record's time in Unix nanoseconds; a new record's
	// time is never earlier.
	Time int64 `json:"time"`
	// Bytes is the stored size of the records kept.
	Bytes uint64 `json:"bytes"`
	// Flagged counts the records ever appended with flags (retention does
	// not lower it).
	Flagged uint64 `json:"flagged,omitempty"`
}

// anchor is the start of the log after retention, ("meta","audit","anchor"):
// the first kept seq and the hash of the record before it, so that the kept
// log verifies on its own.
type anchor struct {
	FirstSeq uint64 `json:"first_seq"`
	Prev     string `json:"prev"`
}

// meta is the committed state the writer carries between transactions.
type meta struct {
	applied   uint64 // last CODI_AUDIT stream seq applied
	appliedAt int64  // when JetStream stored it, Unix ns; 0 when unknown
	head      head
	anchor    anchor
}

// appliedTime is when JetStream stored the last applied event, or, for a
// log written before that was kept, the last record's time (no earlier
// than any appended event's).
func (m meta) appliedTime() time.Time {
	if m.appliedAt != 0 {
		return time.Unix(0, m.appliedAt)
	}
	return time.Unix(0, m.head.Time)
}

func (m meta) count() uint64 {
	if m.head.Seq < m.anchor.FirstSeq {
		return 0
	}
	return m.head.Seq - m.anchor.FirstSeq + 1
}

// readMeta reads the applied seq, head and anchor; a new store gives an
// empty log starting at seq 1 after GenesisPrev.
func readMeta(tx kv.ReadTxn) (meta, error) {
	m := meta{head: head{Hash: GenesisPrev}, anchor: anchor{FirstSeq: 1, Prev: GenesisPrev}}
	v, err := getOptional(tx, keyApplied)
	if err != nil {
		return m, err
	}
	if v != nil {
		if m.applied, err = strconv.ParseUint(string(v), 10, 64); err != nil {
			return m, fmt.Errorf("audit: applied seq %q: %w", v, err)
		}
	}
	if v, err = getOptional(tx, keyAppliedAt); err != nil {
		return m, err
	}
	if v != nil {
		if m.appliedAt, err = strconv.ParseInt(string(v), 10, 64); err != nil {
			return m, fmt.Errorf("audit: applied time %q: %w", v, err)
		}
	}
	if err := getJSON(tx, keyHead, &m.head); err != nil {
		return m, err
	}
	if err := getJSON(tx, keyAnchor, &m.anchor); err != nil {
		return m, err
	}
	return m, nil
}

func getOptional(tx kv.ReadTxn, key []byte) ([]byte, error) {
	v, err := tx.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, nil
	}
	return v, err
}

func getJSON(tx kv.ReadTxn, key []byte, into any) error {
	v, err := getOptional(tx, key)
	if err != nil || v == nil {
		return err
	}
	if err := json.Unmarshal(v, into); err != nil {
		return fmt.Errorf("audit: meta %q: %w", key, err)
	}
	return nil
}

// writer applies writes to a transaction and keeps the first error, like
// bufio.Writer: a transaction function writes many keys and checks once.
// kv fails the commit on a failed write anyway; this makes the error the
// one the function returns.
type writer struct {
	tx  kv.Txn
	err error
	key []byte // scratch for keys built per write (Set keeps no reference)
}

func (w *writer) set(key, value []byte) {
	if w.err == nil {
		w.err = w.tx.Set(key, value)
	}
}

func (w *writer) clear(key []byte) {
	if w.err == nil {
		w.err = w.tx.Clear(key)
	}
}

func (w *writer) clearRange(begin, end []byte) {
	if w.err == nil {
		w.err = w.tx.ClearRange(begin, end)
	}
}

// setJSON stores v as JSON; v is one of this package's meta types, which
// always marshal.
func (w *writer) setJSON(key []byte, v any) {
	b, err := json.Marshal(v)
	if err != nil && w.err == nil {
		w.err = err
	}
	w.set(key, b)
}
