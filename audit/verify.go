package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/codi2/codi2/internal/kv"
)

// VerifyRequest is the request of codi.audit.verify: the records FromSeq to
// ToSeq, where 0 means the start or the end of the log. It is a plain
// value.
type VerifyRequest struct {
	FromSeq uint64 `json:"from_seq"`
	ToSeq   uint64 `json:"to_seq"`
}

// VerifyResult is the answer of codi.audit.verify and of VerifyExport. It is
// a plain value.
type VerifyResult struct {
	// OK is true when every record checked hashes to its hash, names the
	// previous record's hash as prev, and sits at its seq.
	OK bool `json:"ok"`
	// Count is the number of records checked and found good.
	Count uint64 `json:"count"`
	// Head is the hash of the last good record (for the whole log: the
	// log's head).
	Head string `json:"head"`
	// FromSeq and ToSeq are the seqs of the first and last record checked.
	FromSeq uint64 `json:"from_seq,omitempty"`
	ToSeq   uint64 `json:"to_seq,omitempty"`
	// BadSeq is the first bad record's seq when OK is false, and Reason
	// says what is wrong with it.
	BadSeq uint64 `json:"bad_seq,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Line is the 1-based line of the bad record (VerifyExport only).
	Line int `json:"line,omitempty"`
	// Checkpoints is the number of signed checkpoints the records checked
	// were found to match (see checkpoint.go); a record that does not match
	// one makes OK false with BadSeq at it.
	Checkpoints int `json:"checkpoints,omitempty"`
	// Empty is true when no record was there to check (an empty log or
	// export, or a range past the end): OK is then false and Reason starts
	// with "nothing to verify". An empty check proves nothing, so it is
	// never reported as ok.
	Empty bool `json:"empty,omitempty"`
}

// ExpectHead fails r unless its last good record's hash is hash: an
// export or log that lost records at its end still chains correctly, and
// only a head known from elsewhere (a checkpoint, an earlier verify)
// notices. A result that already failed is left as it is. It modifies r;
// not for concurrent use on one result.
func (r *VerifyResult) ExpectHead(hash string) {
	if !r.OK || r.Head == hash {
		return
	}
	r.OK, r.BadSeq = false, r.ToSeq
	r.Reason = fmt.Sprintf("the last record's hash %s is not the expected head %s: records are missing at the end, or the log moved on", r.Head, hash)
}

// nothingToVerify is the result of a check that found no record.
func nothingToVerify(head, why string) VerifyResult {
	return VerifyResult{Head: head, Empty: true, Reason: "nothing to verify: " + why}
}

// chain checks records one after another. Its zero value accepts any first
// record (its prev and seq are taken as they are); set prev and next to pin
// them.
type chain struct {
	prev  string // hash the next record must name as prev; "" for any
	next  uint64 // seq the next record must have; 0 for any
	first uint64
	count uint64
}

// check verifies one stored record and advances the chain. It returns the
// record's seq (0 if unreadable) and, when the record is bad, why.
func (c *chain) check(raw []byte) (uint64, string) {
	seq, ok := recordSeq(raw)
	if !ok {
		return 0, "not a record: no seq"
	}
	if c.next != 0 && seq != c.next {
		return seq, fmt.Sprintf("seq %d where %d belongs", seq, c.next)
	}
	prev, hash, good, err := CheckRecordHash(raw)
	switch {
	case err != nil:
		return seq, err.Error()
	case !good:
		return seq, "hash does not match the record's contents"
	case c.prev != "" && prev != c.prev:
		return seq, "prev does not match the previous record's hash"
	}
	if c.count == 0 {
		c.first = seq
	}
	c.prev, c.next = hash, seq+1
	c.count++
	return seq, ""
}

func (c *chain) result() VerifyResult {
	r := VerifyResult{OK: true, Count: c.count, Head: c.prev}
	if c.count > 0 {
		r.FromSeq, r.ToSeq = c.first, c.next-1
	}
	return r
}

func (c *chain) fail(seq uint64, reason string) VerifyResult {
	r := c.result()
	r.OK, r.BadSeq, r.Reason = false, seq, reason
	return r
}

// maxVerifyViewBytes is the record bytes one verify read transaction aims
// to stay under; the number of records per view shrinks when they are large.
const maxVerifyViewBytes = 16 << 20

// verify checks records from..to (0: the whole log) in read transactions of
// at most VerifyBatch records each.
func (s *Service) verify(ctx context.Context, req VerifyRequest) (VerifyResult, error) {
	var (
		m    meta
		c    chain
		cur  uint64
		to   uint64
		head string
	)
	err := s.store.View(ctx, func(tx kv.ReadTxn) error {
		var err error
		if m, err = readMeta(tx); err != nil {
			return err
		}
		to, head = m.head.Seq, ""
		if req.ToSeq != 0 && req.ToSeq < m.head.Seq {
			to = req.ToSeq
		} else {
			head = m.head.Hash // the whole tail: the head must match too
		}
		c = chain{prev: m.anchor.Prev, next: m.anchor.FirstSeq}
		cur = m.anchor.FirstSeq
		if req.FromSeq > m.anchor.FirstSeq && req.FromSeq <= to {
			prev, err := readRecord(tx, req.FromSeq-1)
			if err != nil {
				return err
			}
			_, hash, err := splitStored(prev)
			if err != nil {
				return err
			}
			c = chain{prev: hash, next: req.FromSeq}
			cur = req.FromSeq
		}
		return nil
	})
	if err != nil {
		return VerifyResult{}, fmt.Errorf("audit: verify: %w", err)
	}
	switch {
	case m.head.Seq < m.anchor.FirstSeq:
		return nothingToVerify(m.head.Hash, "the log holds no records"), nil
	case req.FromSeq > to:
		return nothingToVerify(m.head.Hash, fmt.Sprintf("from_seq %d is past the log's last record %d", req.FromSeq, to)), nil
	case to < m.anchor.FirstSeq:
		return nothingToVerify(m.head.Hash, fmt.Sprintf("to_seq %d is before the first kept record %d (retention removed the rest)", to, m.anchor.FirstSeq)), nil
	}
	limit := s.cfg.VerifyBatch
	for cur <= to {
		var bad *VerifyResult
		read := 0
		err := s.store.View(ctx, func(tx kv.ReadTxn) error {
			bad, read = nil, 0
			a := anchor{FirstSeq: 1}
			if err := getJSON(tx, keyAnchor, &a); err != nil {
				return err
			}
			if cur < a.FirstSeq {
				// Retention removed records ahead of us since the last
				// view: continue from the new anchor.
				cur = a.FirstSeq
				c.prev, c.next = a.Prev, a.FirstSeq
			}
			hi := min(to, cur+uint64(limit)-1)
			begin, end := recordRange(cur, hi+1)
			parts, err := tx.GetRange(begin, end, kv.RangeOptions{Limit: limit})
			if err != nil {
				return err
			}
			truncated := len(parts) == limit
			from := cur
			for len(parts) > 0 {
				seq, n, whole := firstRecord(parts)
				if seq != cur || !whole {
					r := c.fail(cur, "record is missing")
					bad = &r
					return nil
				}
				var raw []byte
				if n == len(parts) && truncated {
					// The read stopped at the limit, maybe inside this
					// record: read all of it.
					if raw, err = readRecord(tx, seq); err != nil {
						return err
					}
					parts = nil
				} else {
					raw = joinParts(parts[:n])
					parts = parts[n:]
				}
				read += len(raw)
				if _, reason := c.check(raw); reason != "" {
					r := c.fail(cur, reason)
					bad = &r
					return nil
				}
				cur++
			}
			if cur == from {
				r := c.fail(cur, "record is missing")
				bad = &r
			}
			return nil
		})
		if err != nil {
			return VerifyResult{}, fmt.Errorf("audit: verify at seq %d: %w", cur, err)
		}
		if bad != nil {
			return *bad, nil
		}
		if read > maxVerifyViewBytes {
			limit = max(1, limit*maxVerifyViewBytes/read)
		} else {
			limit = min(s.cfg.VerifyBatch, 2*limit)
		}
	}
	if head != "" && c.prev != head {
		return c.fail(to, "the log's head does not match its last record"), nil
	}
	return s.verifyCheckpoints(ctx, c.result(), c.first, to)
}

// firstRecord returns the seq of the record whose parts begin parts, how
// many of parts are its, and whether parts begins with its first part.
func firstRecord(parts []kv.KeyValue) (seq uint64, n int, whole bool) {
	if len(parts) == 0 {
		return 0, 0, false
	}
	t, err := kv.Unpack(parts[0].Key)
	if err != nil || len(t) < 2 {
		return 0, 1, false
	}
	s, ok := t[1].(int64)
	if !ok {
		return 0, 1, false
	}
	n = 1
	for n < len(parts) {
		u, err := kv.Unpack(parts[n].Key)
		if err != nil || len(u) != 3 || u[1] != t[1] {
			break
		}
		n++
	}
	return uint64(s), n, len(t) == 2
}

// VerifyExport checks a JSON-lines export offline, as written by Export:
// every record's hash is recomputed from its bytes, every prev must be the
// previous line's hash and every seq the previous one plus one. The first
// record's prev and seq are taken as they are, so an export of any range
// verifies; an export filtered by source or category has gaps and does not.
// Blank lines are ignored; an export without records is Empty, not OK. A
// missing tail chains correctly: check the head with ExpectHead. Content problems give OK false with the line,
// seq and reason; the error is for read failures only. Safe for concurrent
// use with distinct readers.
func VerifyExport(r io.Reader) (VerifyResult, error) {
	return verifyExport(r, nil)
}

// verifyExport is VerifyExport calling good, when not nil, with the seq and
// hash of every record that checks.
func verifyExport(r io.Reader, good func(seq uint64, hash string)) (VerifyResult, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var c chain
	for line := 1; ; line++ {
		raw, err := br.ReadBytes('\n')
		if len(raw) > 0 && raw[len(raw)-1] == '\n' {
			raw = raw[:len(raw)-1]
		}
		if len(raw) > 0 && raw[len(raw)-1] == '\r' {
			raw = raw[:len(raw)-1]
		}
		if len(raw) > 0 {
			seq, reason := c.check(raw)
			if reason != "" {
				res := c.fail(seq, reason)
				res.Line = line
				return res, nil
			}
			if good != nil {
				good(seq, c.prev)
			}
		}
		if errors.Is(err, io.EOF) {
			if c.count == 0 {
				return nothingToVerify("", "the export holds no records"), nil
			}
			return c.result(), nil
		}
		if err != nil {
			return c.result(), fmt.Errorf("audit: read export line %d: %w", line, err)
		}
	}
}
