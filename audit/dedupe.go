package audit

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/codi2/codi2/internal/kv"
)

// duplicates reports, for each event of evs (a transaction's events, in
// log order), whether apply must skip it as a duplicate: its source used
// its Nats-Msg-Id before, in the log (in either key layout) or at an
// earlier event of evs. Events apply skips anyway (at or below applied and
// not forced) and events without an id are false.
//
// It answers what one Get per event, made as apply appends, would: the
// first event of each key is a duplicate when the store holds the key (or
// the legacy layout says so, which depends only on the source and the id,
// as the key does), and every later event of the same key is one, since
// the first was either appended, writing the key, or skipped for a reason
// that holds for them too. The keys are looked up in key order with range
// reads (existingKeys) rather than a Get each: a batch's ids mostly count
// up, so their keys sit together in the store.
func (s *Service) duplicates(tx kv.ReadTxn, evs []*event, applied uint64) ([]bool, error) {
	dup := make([]bool, len(evs))
	var order []int32 // the events with a key, by key, then by position
	for i, e := range evs {
		if e.msgKey != nil && (e.streamSeq > applied || e.force) {
			order = append(order, int32(i))
		}
	}
	if len(order) == 0 {
		return dup, nil
	}
	slices.SortFunc(order, func(a, b int32) int {
		if c := bytes.Compare(evs[a].msgKey, evs[b].msgKey); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	// The distinct keys, each with the position of its first event.
	keys := make([][]byte, 0, len(order))
	first := order[:0:0]
	for j, i := range order {
		if j > 0 && bytes.Equal(evs[i].msgKey, keys[len(keys)-1]) {
			dup[i] = true // a later event of the same key
			continue
		}
		keys = append(keys, evs[i].msgKey)
		first = append(first, i)
	}
	found, err := existingKeys(tx, keys)
	if err != nil {
		return nil, err
	}
	for k, i := range first {
		if !found[k] && s.legacyMsgIDs {
			e := evs[i]
			v, err := legacyDuplicate(tx, e.source, e.msgID)
			if err != nil {
				return nil, err
			}
			found[k] = v != nil
		}
		dup[i] = found[k]
	}
	return dup, nil
}

// Range reads of existingKeys return minRangeRead to maxRangeRead pairs;
// between them it reads one key at a time, trying a range read again every
// pointReads keys.
const (
	minRangeRead = 4
	maxRangeRead = 4096
	pointReads   = 32
)

// existingKeys reports which of keys, sorted and distinct, tx holds. It
// reads the store in key order from the first unresolved key to the last
// key, a page at a time: one read answers every key up to the last pair it
// returned. The page grows while the keys outnumber the pairs read (ids
// counting up: a batch's keys and a few older ones between them) and
// shrinks while the pairs are mostly other keys (random ids among many);
// below minRangeRead pairs it looks keys up one by one with Get, which
// costs a B-tree search on bbolt and may skip the read on pebble (its
// filters), as a range read of one pair could not.
func existingKeys(tx kv.ReadTxn, keys [][]byte) ([]bool, error) {
	found := make([]bool, len(keys))
	last := keys[len(keys)-1]
	end := append(last[:len(last):len(last)], 0x00) // just after the last key
	limit := 64
	for i := 0; i < len(keys); {
		if limit < minRangeRead {
			v, err := getOptional(tx, keys[i])
			if err != nil {
				return nil, err
			}
			found[i] = v != nil
			if i++; i%pointReads == 0 {
				limit = minRangeRead
			}
			continue
		}
		kvs, err := tx.GetRange(keys[i], end, kv.RangeOptions{Limit: limit})
		if err != nil {
			return nil, err
		}
		start := i
		for _, p := range kvs {
			for i < len(keys) && bytes.Compare(keys[i], p.Key) < 0 {
				i++ // below the next pair: not in the store
			}
			if i < len(keys) && bytes.Equal(keys[i], p.Key) {
				found[i] = true
				i++
			}
		}
		if len(kvs) < limit {
			break // the store holds nothing more up to the last key
		}
		switch resolved := i - start; {
		case resolved >= len(kvs):
			limit = min(4*limit, maxRangeRead)
		case 4*resolved <= len(kvs):
			limit /= 4
		}
	}
	return found, nil
}
