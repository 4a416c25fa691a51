package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/codi2/codi2/internal/kv"
)

// Query selects records, as codi.audit.query takes it. The zero value
// selects the whole log, a page at a time. It is a plain value.
type Query struct {
	// From and To select records with From <= time < To; a zero value
	// leaves that end open. On the wire they are RFC 3339 strings.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// Source and Category, when set, select records with exactly this
	// source and category token (as it appears in the subject).
	Source   string `json:"source,omitempty"`
	Category string `json:"category,omitempty"`
	// AfterSeq selects records after this seq: pass the previous page's
	// NextAfterSeq to read the next page.
	AfterSeq uint64 `json:"after_seq,omitempty"`
	// Limit is the most records in one page: default DefaultQueryLimit,
	// values above MaxQueryLimit are reduced to it. A page also ends
	// before a record that would make the reply larger than the server's
	// max payload.
	Limit int `json:"limit,omitempty"`
}

// QueryResult is one page of records in seq order. NextAfterSeq is the
// AfterSeq of the next page, or 0 when the selection has no more records.
// It is a plain value.
type QueryResult struct {
	Records      []Record `json:"records"`
	NextAfterSeq uint64   `json:"next_after_seq"`
}

// queryRequest is the wire form of a query. PartOffset asks for the rest of
// a record too large for one reply, from that byte on.
type queryRequest struct {
	From       string `json:"from"`
	To         string `json:"to"`
	Source     string `json:"source"`
	Category   string `json:"category"`
	AfterSeq   uint64 `json:"after_seq"`
	Limit      int    `json:"limit"`
	PartOffset int    `json:"part_offset"`
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
	Records      []json.RawMessage `json:"records"`
	NextAfterSeq uint64            `json:"next_after_seq"`
	Part         *queryPart        `json:"part,omitempty"`
}

// parsedQuery is a validated query.
type parsedQuery struct {
	from, to         int64 // Unix nanoseconds; 0 when open
	hasFrom, hasTo   bool
	source, category string
	afterSeq         uint64
	limit            int
	partOffset       int
}

// maxFilterLen bounds a source or category filter: a token is at most 256
// bytes, and a longer filter could not be a key.
const maxFilterLen = 1024

func parseQuery(data []byte) (parsedQuery, error) {
	var r queryRequest
	if len(data) > 0 {
		if err := json.Unmarshal(data, &r); err != nil {
			return parsedQuery{}, fmt.Errorf("query: %v", err)
		}
	}
	q := parsedQuery{source: r.Source, category: r.Category, afterSeq: r.AfterSeq, limit: r.Limit, partOffset: r.PartOffset}
	var err error
	if r.From != "" {
		if q.from, err = parseTime(r.From); err != nil {
			return q, fmt.Errorf("query: from: %v", err)
		}
		q.hasFrom = true
	}
	if r.To != "" {
		if q.to, err = parseTime(r.To); err != nil {
			return q, fmt.Errorf("query: to: %v", err)
		}
		q.hasTo = true
	}
	switch {
	case q.hasFrom && q.hasTo && q.to < q.from:
		return q, fmt.Errorf("query: to %s is before from %s", r.To, r.From)
	case q.limit < 0:
		return q, fmt.Errorf("query: negative limit %d", q.limit)
	case q.partOffset < 0:
		return q, fmt.Errorf("query: negative part_offset %d", q.partOffset)
	case len(q.source) > maxFilterLen || len(q.category) > maxFilterLen:
		return q, fmt.Errorf("query: source or category longer than %d bytes", maxFilterLen)
	case q.afterSeq > 1<<62:
		return q, fmt.Errorf("query: after_seq %d out of range", q.afterSeq)
	}
	if q.limit == 0 {
		q.limit = DefaultQueryLimit
	}
	q.limit = min(q.limit, MaxQueryLimit)
	return q, nil
}

func parseTime(s string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, err
	}
	return t.UnixNano(), nil
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
				reply, err = partReply(seq, raw, q.partOffset, budget, more || len(seqs) > 1)
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
		reply = append(reply, `],"next_after_seq":`...)
		if !more {
			last = 0
		}
		reply = strconv.AppendUint(reply, last, 10)
		reply = append(reply, '}')
		return nil
	})
	return reply, err
}

// partReply answers a record too large for one reply with a slice of it.
func partReply(seq uint64, raw []byte, offset, budget int, more bool) ([]byte, error) {
	if offset > len(raw) {
		return nil, fmt.Errorf("%w: part_offset %d beyond record %d of %d bytes", errBadQuery, offset, seq, len(raw))
	}
	n := min(len(raw)-offset, (budget-256)*3/4)
	next := seq - 1
	if offset+n == len(raw) {
		next = seq
		if !more {
			next = 0
		}
	}
	b, err := json.Marshal(queryReply{
		Records:      []json.RawMessage{},
		NextAfterSeq: next,
		Part:         &queryPart{Seq: seq, Offset: offset, Size: len(raw), Data: raw[offset : offset+n]},
	})
	return b, err
}

// errBadQuery marks query errors that are the request's fault.
var errBadQuery = errors.New("bad query")

// candidates returns the seqs of up to q.limit records the query selects,
// in seq order, and whether more follow. It reads the index blocks that
// hold what it returns (at most one block more at each end), or, without
// filters, nothing at all.
func candidates(tx kv.ReadTxn, q parsedQuery, m meta) ([]uint64, bool, error) {
	start := max(q.afterSeq+1, m.anchor.FirstSeq)
	if start > m.head.Seq {
		return nil, false, nil
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
	var prefix kv.Tuple
	switch {
	case q.source != "" && q.category != "":
		prefix = kv.Tuple{nsBySC, q.source, q.category}
	case q.source != "":
		prefix = kv.Tuple{nsBySource, q.source}
	case q.category != "":
		prefix = kv.Tuple{nsByCategory, q.category}
	default:
		prefix = kv.Tuple{nsByTime}
	}
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
