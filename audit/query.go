package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/strictjson"
	"github.com/codi2/codi2/internal/timeparse"
	"github.com/codi2/codi2/subjects"
)

// Query selects records, as codi.audit.query takes it. The zero value
// selects the whole log, a page at a time. It is a plain value.
type Query struct {
	// From and To select records with From <= time < To; a zero value
	// leaves that end open. On the wire they are RFC 3339 strings (the
	// service also takes "now" and relative times such as "-1h"; see
	// timeparse.Parse). Any year is accepted: a bound before 1678 or after
	// 2262 (beyond Unix nanoseconds) is as good as open.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// Source and Category, when set, select records with exactly this
	// source and category token (as it appears in the subject).
	Source   string `json:"source,omitempty"`
	Category string `json:"category,omitempty"`
	// AfterSeq selects records after this seq: pass the previous page's
	// NextAfterSeq to read the next page.
	AfterSeq uint64 `json:"after_seq,omitempty"`
	// NewestFirst answers the newest records first (descending seq): "the
	// last 20 events" is {NewestFirst: true, Limit: 20}. Pages continue
	// with BeforeSeq.
	NewestFirst bool `json:"newest_first,omitempty"`
	// BeforeSeq selects records before this seq (0: no bound): pass the
	// previous newest-first page's NextBeforeSeq to read the next one.
	BeforeSeq uint64 `json:"before_seq,omitempty"`
	// Limit is the most records in one page: default DefaultQueryLimit,
	// values above MaxQueryLimit are reduced to it. A page also ends
	// before a record that would make the reply larger than the server's
	// max payload.
	Limit int `json:"limit,omitempty"`
}

// QueryResult is one page of records in seq order (descending with
// NewestFirst). NextAfterSeq is the AfterSeq of the next page, or 0 when
// the selection has no more records; a NewestFirst page sets NextBeforeSeq
// the same way instead. It is a plain value.
type QueryResult struct {
	Records       []Record `json:"records"`
	NextAfterSeq  uint64   `json:"next_after_seq"`
	NextBeforeSeq uint64   `json:"next_before_seq,omitempty"`
}

// queryRequest is the wire form of a query. PartOffset asks for the rest of
// a record too large for one reply, from that byte on.
type queryRequest struct {
	From        string `json:"from"`
	To          string `json:"to"`
	Source      string `json:"source"`
	Category    string `json:"category"`
	AfterSeq    uint64 `json:"after_seq"`
	BeforeSeq   uint64 `json:"before_seq"`
	NewestFirst bool   `json:"newest_first"`
	Limit       int    `json:"limit"`
	PartOffset  int    `json:"part_offset"`
}

// queryPart carries a slice of a record too large for one reply. Data is
// base64 on the wire, as encoding/json writes []byte.
type queryPart struct {
	Seq    uint64 `json:"seq"`
	Offset int    `json:"offset"`
	Size   int    `json:"size"`
	Data   []byte `json:"data"`
}

// queryReply is the wire form of a page, as the client decodes it: records
// stay raw, byte for byte as stored.
type queryReply struct {
	Records       []json.RawMessage `json:"records"`
	NextAfterSeq  uint64            `json:"next_after_seq"`
	NextBeforeSeq uint64            `json:"next_before_seq,omitempty"`
	Part          *queryPart        `json:"part,omitempty"`
}

// parsedQuery is a validated query.
type parsedQuery struct {
	from, to         int64 // Unix nanoseconds, clamped to int64; 0 when open
	hasFrom, hasTo   bool
	source, category string
	afterSeq         uint64
	beforeSeq        uint64 // 0: no bound
	desc             bool
	limit            int
	partOffset       int
}

// maxFilterLen bounds a source or category filter: a token is at most 256
// bytes, and a longer filter could not be a key.
const maxFilterLen = 1024

// parseQuery reads a query strictly (strictjson: unknown and duplicate
// members are refused, so a typo never widens a query to the whole log),
// with times relative to now. Its errors are the request's fault (400).
func parseQuery(data []byte, now time.Time) (parsedQuery, error) {
	var r queryRequest
	if len(bytes.TrimSpace(data)) > 0 {
		if err := strictjson.Decode(data, &r); err != nil {
			return parsedQuery{}, fmt.Errorf("query: %w", err)
		}
	}
	q := parsedQuery{source: r.Source, category: r.Category, afterSeq: r.AfterSeq, beforeSeq: r.BeforeSeq,
		desc: r.NewestFirst, limit: r.Limit, partOffset: r.PartOffset}
	var from, to time.Time
	var err error
	if r.From != "" {
		if from, err = timeparse.Parse(r.From, now); err != nil {
			return q, fmt.Errorf("query: from: %w", err)
		}
		q.from, q.hasFrom = unixNanos(from), true
	}
	if r.To != "" {
		if to, err = timeparse.Parse(r.To, now); err != nil {
			return q, fmt.Errorf("query: to: %w", err)
		}
		q.to, q.hasTo = unixNanos(to), true
	}
	switch {
	case q.hasFrom && q.hasTo && to.Before(from):
		return q, fmt.Errorf("query: to %s is before from %s", to.Format(time.RFC3339Nano), from.Format(time.RFC3339Nano))
	case q.limit < 0:
		return q, fmt.Errorf("query: negative limit %d", q.limit)
	case q.partOffset < 0:
		return q, fmt.Errorf("query: negative part_offset %d", q.partOffset)
	case q.afterSeq > 1<<62 || q.beforeSeq > 1<<62:
		return q, fmt.Errorf("query: after_seq %d or before_seq %d out of range", q.afterSeq, q.beforeSeq)
	}
	if err := checkFilter("source", q.source); err != nil {
		return q, err
	}
	if err := checkFilter("category", q.category); err != nil {
		return q, err
	}
	if q.limit == 0 {
		q.limit = DefaultQueryLimit
	}
	q.limit = min(q.limit, MaxQueryLimit)
	return q, nil
}

// checkFilter refuses a source or category filter that no record can have:
// one that could not be a single subject token (it holds '.', '*', '>',
// whitespace or control characters, is not UTF-8) or is longer than
// maxFilterLen. Tokens the contract refuses but the stream still carries
// (too long, a bad escape) are recorded and flagged, so they can be
// selected.
func checkFilter(name, v string) error {
	if len(v) > maxFilterLen {
		return fmt.Errorf("query: %s of %d bytes: no subject token is longer than %d", name, len(v), maxFilterLen)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("query: %s %q is not UTF-8", name, v)
	}
	for _, r := range v {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("query: %s %q can never match: it is one subject token, without %q (escape the name with subjects.Escape: %q)",
				name, v, r, subjects.Escape(v))
		}
	}
	return nil
}

// Bounds of Unix nanoseconds as times: 1677-09-21 and 2262-04-11.
var (
	minNanos = time.Unix(0, math.MinInt64)
	maxNanos = time.Unix(0, math.MaxInt64)
)

// unixNanos is t in Unix nanoseconds, clamped to what an int64 holds. No
// record is outside that range, so a clamped bound selects what the exact
// one would.
func unixNanos(t time.Time) int64 {
	switch {
	case t.Before(minNanos):
		return math.MinInt64
	case t.After(maxNanos):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// query answers one page. budget is the largest reply in bytes.
func (s *Service) query(ctx context.Context, q parsedQuery, budget int) ([]byte, error) {
	var reply []byte
	err := s.store.View(ctx, func(tx kv.ReadTxn) error {
		reply = nil
		m, err := readMeta(tx)
		if err != nil {
			return err
		}
		seqs, more, err := candidates(tx, q, m)
		if err != nil {
			return err
		}
		reply = make([]byte, 0, min(budget, 512*len(seqs)+64))
		reply = append(reply, `{"records":[`...)
		n := 0
		last := uint64(0)
		rr := recordReader{tx: tx, seqs: seqs}
		for i, seq := range seqs {
			raw, err := rr.read(seq)
			if err != nil {
				return err
			}
			if i == 0 && (q.partOffset > 0 || len(reply)+len(raw)+64 > budget) {
				reply, err = partReply(seq, raw, q.partOffset, budget, more || len(seqs) > 1, q.desc)
				return err
			}
			if len(reply)+len(raw)+64 > budget {
				more = true
				break
			}
			if n > 0 {
				reply = append(reply, ',')
			}
			reply = append(reply, raw...)
			n++
			last = seq
		}
		if n < len(seqs) {
			more = true
		}
		if !more {
			last = 0
		}
		if q.desc {
			reply = append(reply, `],"next_after_seq":0,"next_before_seq":`...)
		} else {
			reply = append(reply, `],"next_after_seq":`...)
		}
		reply = strconv.AppendUint(reply, last, 10)
		reply = append(reply, '}')
		return nil
	})
	return reply, err
}

// partReply answers a record too large for one reply with a slice of it.
// Ascending, next_after_seq is seq-1 until the last part (ask again from
// there with the next part_offset), then seq or 0. Newest first,
// next_before_seq says on every part where the next page starts (seq, or
// 0 when no older record is selected); the client asks for the other parts
// with after_seq seq-1 and before_seq seq+1.
func partReply(seq uint64, raw []byte, offset, budget int, more, desc bool) ([]byte, error) {
	if offset > len(raw) {
		return nil, fmt.Errorf("%w: part_offset %d beyond record %d of %d bytes", errBadQuery, offset, seq, len(raw))
	}
	n := min(len(raw)-offset, (budget-256)*3/4)
	rep := queryReply{
		Records: []json.RawMessage{},
		Part:    &queryPart{Seq: seq, Offset: offset, Size: len(raw), Data: raw[offset : offset+n]},
	}
	switch {
	case desc && more:
		rep.NextBeforeSeq = seq
	case desc:
	case offset+n < len(raw):
		rep.NextAfterSeq = seq - 1
	case more:
		rep.NextAfterSeq = seq
	}
	return json.Marshal(rep)
}

// errBadQuery marks query errors that are the request's fault.
var errBadQuery = errors.New("bad query")

// candidates returns the seqs of up to q.limit records the query selects,
// in seq order (descending for a newest-first query), and whether more
// follow. It reads the index blocks that hold what it returns (at most one
// block more at each end), or, without filters, nothing at all.
func candidates(tx kv.ReadTxn, q parsedQuery, m meta) ([]uint64, bool, error) {
	start := max(q.afterSeq+1, m.anchor.FirstSeq)
	if q.beforeSeq > 0 && q.beforeSeq <= m.head.Seq {
		m.head.Seq = q.beforeSeq - 1 // the newest record selected
	}
	if start > m.head.Seq {
		return nil, false, nil
	}
	if q.desc {
		return candidatesDesc(tx, q, start, m.head.Seq)
	}
	if q.source == "" && q.category == "" && !q.hasFrom && !q.hasTo {
		// The log is dense: seqs are the keys.
		end := min(m.head.Seq, start+uint64(q.limit)-1)
		seqs := make([]uint64, 0, end-start+1)
		for seq := start; seq <= end; seq++ {
			seqs = append(seqs, seq)
		}
		return seqs, end < m.head.Seq, nil
	}
	prefix := indexPrefix(q)
	// Time never decreases along the log, so the entries at or after the
	// start record are those at or after (its time, start) in index order,
	// and those at or after from are those at or after (from, 0).
	first, err := tx.Get(recordKey(start))
	if err != nil {
		return nil, false, fmt.Errorf("audit: record %d: %w", start, err)
	}
	t, ok := recordTime(first)
	if !ok {
		return nil, false, fmt.Errorf("audit: record %d: %w: no time", start, ErrBadRecord)
	}
	seq := start
	if q.hasFrom && q.from > t {
		t, seq = q.from, 0
	}
	var end []byte
	if q.hasTo {
		// Blocks that start at or after to hold nothing before it.
		end = append(prefix.Pack(), kv.Tuple{q.to}.Pack()...)
	}
	var seqs []uint64
	err = scanIndex(tx, prefix, t, seq, end, func(et int64, es uint64) bool {
		if q.hasTo && et >= q.to {
			return false
		}
		if es > m.head.Seq {
			return false
		}
		if es >= start {
			seqs = append(seqs, es)
		}
		return len(seqs) <= q.limit
	})
	if err != nil {
		return nil, false, err
	}
	more := len(seqs) > q.limit
	return seqs[:min(len(seqs), q.limit)], more, nil
}

// indexPrefix is the index a filtered or time-bounded query reads.
func indexPrefix(q parsedQuery) kv.Tuple {
	switch {
	case q.source != "" && q.category != "":
		return kv.Tuple{nsBySC, q.source, q.category}
	case q.source != "":
		return kv.Tuple{nsBySource, q.source}
	case q.category != "":
		return kv.Tuple{nsByCategory, q.category}
	}
	return kv.Tuple{nsByTime}
}

// candidatesDesc is candidates for a newest-first query over the records
// start..end: it walks the index backwards from end.
func candidatesDesc(tx kv.ReadTxn, q parsedQuery, start, end uint64) ([]uint64, bool, error) {
	if q.source == "" && q.category == "" && !q.hasFrom && !q.hasTo {
		lo := start
		if end-start+1 > uint64(q.limit) {
			lo = end - uint64(q.limit) + 1
		}
		seqs := make([]uint64, 0, end-lo+1)
		for seq := end; seq >= lo; seq-- {
			seqs = append(seqs, seq)
		}
		return seqs, lo > start, nil
	}
	// Entries up to the end record are those before (its time, end+1),
	// and those before to are those before (to, 0).
	last, err := tx.Get(recordKey(end))
	if err != nil {
		return nil, false, fmt.Errorf("audit: record %d: %w", end, err)
	}
	t, ok := recordTime(last)
	if !ok {
		return nil, false, fmt.Errorf("audit: record %d: %w: no time", end, ErrBadRecord)
	}
	seq := end + 1
	if q.hasTo && q.to <= t {
		t, seq = q.to, 0
	}
	var seqs []uint64
	err = scanIndexDesc(tx, indexPrefix(q), t, seq, func(et int64, es uint64) bool {
		if es < start || q.hasFrom && et < q.from {
			return false
		}
		seqs = append(seqs, es)
		return len(seqs) <= q.limit
	})
	if err != nil {
		return nil, false, err
	}
	more := len(seqs) > q.limit
	return seqs[:min(len(seqs), q.limit)], more, nil
}

// recordReader reads the records of a page in order. When their seqs are
// consecutive (a time range, or no filter) it scans them in a few range
// reads instead of seeking to each.
type recordReader struct {
	tx        kv.ReadTxn
	seqs      []uint64
	buf       []kv.KeyValue
	truncated bool // buf ends where a range read hit its limit
}

// recordReadPairs bounds the pairs one range read of recordReader returns.
const recordReadPairs = 128

func (r *recordReader) read(seq uint64) ([]byte, error) {
	n := len(r.seqs)
	if n == 0 || r.seqs[n-1]-r.seqs[0]+1 != uint64(n) {
		return readRecord(r.tx, seq)
	}
	if len(r.buf) == 0 {
		begin, end := recordRange(seq, r.seqs[n-1]+1)
		kvs, err := r.tx.GetRange(begin, end, kv.RangeOptions{Limit: recordReadPairs})
		if err != nil {
			return nil, err
		}
		r.buf, r.truncated = kvs, len(kvs) == recordReadPairs
		if len(kvs) == 0 {
			return readRecord(r.tx, seq) // not found
		}
	}
	got, parts, whole := firstRecord(r.buf)
	if got != seq || !whole || parts == len(r.buf) && r.truncated {
		// Missing, or its parts may go on past this read: read it alone.
		r.buf = nil
		return readRecord(r.tx, seq)
	}
	raw := joinParts(r.buf[:parts])
	r.buf = r.buf[parts:]
	return raw, nil
}

// readRecord returns the stored bytes of record seq, its parts joined.
func readRecord(tx kv.ReadTxn, seq uint64) ([]byte, error) {
	begin, end := recordRange(seq, seq+1)
	parts, err := tx.GetRange(begin, end, kv.RangeOptions{})
	if err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("audit: record %d: %w", seq, kv.ErrNotFound)
	}
	return joinParts(parts), nil
}
