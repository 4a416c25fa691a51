package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/codi2/codi2/internal/kv"
)

// Secondary indexes of live records, for list filters (filter.go):
//
//	("state-by-time", kind, updated_at_unix_nano, id)     -> empty
//	("state-by-field", kind, field, canonical value, id)  -> empty
//	("state-index-of", kind, id)                          -> Tuple of the record's entry keys
//
// The field index holds each top-level field whose value is a JSON string,
// number, boolean or null of at most maxIndexedValue bytes in canonical
// form (canonical: decoded and encoded again by encoding/json, so 1.0 and 1
// are one value). A record of more than maxIndexedFields fields has the one
// entry (kind, "", "", id) instead, which every field's range includes (a
// where never names the field ""). Entries
// are written in the transaction that writes the record (applyPlan calls
// indexWrite), and the record's list of entries with them, so that the
// entries of the value it replaces are removed exactly, even when that
// value is damaged: a live record has exactly its entries, and nothing
// else is indexed. Through a batch layer (stagedTxn) the upkeep is done
// once per record, at the layer's flush, from the record's last write:
// in the same transaction all the same.
const (
	prefixByTime  = "state-by-time"
	prefixByField = "state-by-field"
	prefixIndexOf = "state-index-of"
	// maxIndexedValue bounds the canonical values the field index holds.
	maxIndexedValue = 256
	// maxIndexedFields bounds the fields of one record the index lists,
	// so that its list of entries stays far below the store's value limit.
	maxIndexedFields = 256
	// indexBatch is how many records one backfill transaction indexes.
	indexBatch = 1000
)

// indexVersionKey marks a store whose records are all indexed. Version 2
// keys numbers by their exact canonical form (canonicalNumber); a store
// marked with version 1 only is indexed again at the next start, which
// replaces each record's entries.
func indexVersionKey() []byte {
	return kv.Tuple{prefixMeta, "index", "state-by-time,state-by-field", "2"}.Pack()
}

// exactNumbers is v, decoded with json.Decoder.UseNumber, with every
// number replaced by its canonical form; ok is false for a number that is
// not one.
func exactNumbers(v any) (_ any, ok bool) {
	switch x := v.(type) {
	case json.Number:
		c, ok := canonicalNumber(string(x))
		return json.Number(c), ok
	case map[string]any:
		for k, e := range x {
			if x[k], ok = exactNumbers(e); !ok {
				return nil, false
			}
		}
	case []any:
		for i, e := range x {
			if x[i], ok = exactNumbers(e); !ok {
				return nil, false
			}
		}
	}
	return v, true
}

// The index keys are packed element by element (kv.AppendString), which
// gives the bytes kv.Tuple.Pack gives without boxing each element: they
// are built for every field of every record written.

func byTimeKey(kind string, ns int64, id string) []byte {
	b := make([]byte, 0, len(prefixByTime)+len(kind)+len(id)+16)
	b = kv.AppendString(b, prefixByTime)
	b = kv.AppendString(b, kind)
	b = kv.AppendInt(b, ns)
	return kv.AppendString(b, id)
}

func byFieldKey(kind, field, value, id string) []byte {
	b := make([]byte, 0, len(prefixByField)+len(kind)+len(field)+len(value)+len(id)+8)
	b = kv.AppendString(b, prefixByField)
	b = kv.AppendString(b, kind)
	b = kv.AppendString(b, field)
	b = kv.AppendString(b, value)
	return kv.AppendString(b, id)
}

// indexPrefixes are the packed first elements of the index keys: every
// index key starts with one of them.
var indexPrefixes = [][]byte{
	kv.AppendString(nil, prefixByTime),
	kv.AppendString(nil, prefixByField),
	kv.AppendString(nil, prefixIndexOf),
}

// isIndexKey reports whether key is an index entry or list.
func isIndexKey(key []byte) bool {
	for _, p := range indexPrefixes {
		if bytes.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// indexPrefixEnds are the ends of the ranges of indexPrefixes.
var indexPrefixEnds = [][]byte{
	kv.PrefixEnd(indexPrefixes[0]),
	kv.PrefixEnd(indexPrefixes[1]),
	kv.PrefixEnd(indexPrefixes[2]),
}

// overlapsIndex reports whether the range [begin, end) may hold an index
// entry or list.
func overlapsIndex(begin, end []byte) bool {
	for i, p := range indexPrefixes {
		if bytes.Compare(begin, indexPrefixEnds[i]) < 0 && bytes.Compare(p, end) < 0 {
			return true
		}
	}
	return false
}

// statePrefix is the packed first element of a record's key.
var statePrefix = kv.AppendString(nil, prefixState)

// isRecordKey reports whether key is a record's, one whose writes
// indexWrite keeps the indexes in step with.
func isRecordKey(key []byte) bool {
	if !bytes.HasPrefix(key, statePrefix) {
		return false
	}
	t, err := kv.Unpack(key)
	return err == nil && len(t) == 3 && t[0] == prefixState
}

func indexOfKey(kind, id string) []byte {
	b := make([]byte, 0, len(prefixIndexOf)+len(kind)+len(id)+6)
	b = kv.AppendString(b, prefixIndexOf)
	b = kv.AppendString(b, kind)
	return kv.AppendString(b, id)
}

// canonical returns the canonical form of a JSON value and whether the
// field index holds it (a scalar of at most maxIndexedValue bytes).
func canonical(raw json.RawMessage) (string, bool) {
	if isCanonicalScalar(raw) {
		return string(raw), len(raw) <= maxIndexedValue
	}
	return canonicalSlow(raw)
}

// isCanonicalScalar reports whether raw is a scalar that encoding/json
// would encode again byte for byte, so canonical can skip the round trip:
// true, false, null, an integer of at most 15 digits without leading
// zeros (exact as a float64, and written back without exponent; not -0),
// or a string of printable ASCII that needs no escaping (no '"', '\\',
// and none of the '<', '>', '&' that encoding/json escapes). Anything else
// takes the round trip.
func isCanonicalScalar(raw []byte) bool {
	switch n := len(raw); {
	case n == 0:
		return false
	case raw[0] == '"':
		if n < 2 || raw[n-1] != '"' {
			return false
		}
		for _, c := range raw[1 : n-1] {
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
		}
		return true
	case string(raw) == "true" || string(raw) == "false" || string(raw) == "null":
		return true
	}
	digits := raw
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 15 || digits[0] == '0' && (len(digits) > 1 || len(raw) > 1) {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// canonicalSlow is canonical by a round trip through encoding/json, with
// numbers kept exact (canonicalNumber): 9007199254740993 is not
// 9007199254740992, -0 is 0, and 1e400 is a number.
func canonicalSlow(raw json.RawMessage) (string, bool) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil || d.More() {
		return "", false
	}
	v, ok := exactNumbers(v)
	if !ok {
		return "", false
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	switch v.(type) {
	case map[string]any, []any:
		return string(b), false
	}
	return string(b), len(b) <= maxIndexedValue
}

// indexKeys are the index entries of the live record r: byTimeKey's,
// then byFieldKey's in field order. They share one buffer (each is capped
// at its end), packed from the fields' values without copying them into
// strings.
func indexKeys(r Record) [][]byte {
	keys, _, _ := indexKeysOver(r, nil, nil, nil)
	return keys
}

// entrySource is what an entry of an index list that planning built was
// packed from: a field and its raw value (the by-time entry has none).
// A staged list keeps them beside its entries (stagedWrite.sources), so
// that the next write of the record takes the entry of a field whose
// value did not change as it is, rather than packing it again.
//
// fresh records that the entry's staged write is a fresh one (see
// stagedWrite.fresh), as setEntry staged it: nothing but the record's
// index upkeep writes its entries' keys, so it stays so until the list
// is written again, and clearing the entry is dropping that write, with
// no lookup (stagedTxn.dropFresh).
type entrySource struct {
	field string
	raw   []byte
	fresh bool
}

// indexKeysOver is indexKeys of r over old, the entries of the record's
// list, and src, what they were packed from (nil when the list was read
// from the store): the entry of a field whose raw value is the one src
// names is old's, shared. It also returns what the entries were packed
// from (nil above maxIndexedFields) and, appended to shared, for each
// entry the index in old of the one it shares, or -1.
func indexKeysOver(r Record, old [][]byte, src []entrySource, shared []int) (keys [][]byte, from []entrySource, _ []int) {
	if len(r.Fields) > maxIndexedFields {
		// Too many to list: one entry that every field's range includes.
		return [][]byte{byTimeKey(r.Kind, r.UpdatedAt.UnixNano(), r.ID), byFieldKey(r.Kind, "", "", r.ID)}, nil, append(shared, -1, -1)
	}
	if len(src) != len(old) {
		src = nil
	}
	var names [16]string
	fields := sortedKeys(names[:0], r.Fields)
	n := len(prefixByTime) + len(r.Kind) + len(r.ID) + 16
	for _, f := range fields {
		// Five elements of a code and a terminator each; escapes (a 0x00
		// in an element) and canonical forms longer than the value
		// grow the buffer.
		n += len(prefixByField) + len(r.Kind) + len(f) + len(r.Fields[f]) + len(r.ID) + 10
	}
	b := make([]byte, 0, n)
	keys = make([][]byte, 0, 1+len(fields))
	from = make([]entrySource, 0, 1+len(fields))
	b = kv.AppendString(b, prefixByTime)
	b = kv.AppendString(b, r.Kind)
	b = kv.AppendInt(b, r.UpdatedAt.UnixNano())
	b = kv.AppendString(b, r.ID)
	keys, from, shared = append(keys, b[:len(b):len(b)]), append(from, entrySource{}), append(shared, -1)
	j := 1 // src is in field order after its by-time entry, as fields are
	for _, f := range fields {
		if len(f) > maxIndexedValue {
			continue
		}
		raw := r.Fields[f]
		for j < len(src) && src[j].field < f {
			j++
		}
		if j < len(src) && src[j].field == f && bytes.Equal(src[j].raw, raw) {
			// The same field and value of the same record: the same entry.
			keys, from, shared = append(keys, old[j]), append(from, src[j]), append(shared, j)
			continue
		}
		value := []byte(raw)
		if !isCanonicalScalar(value) {
			c, ok := canonicalSlow(value)
			if !ok {
				continue
			}
			value = []byte(c)
		} else if len(value) > maxIndexedValue {
			continue
		}
		start := len(b)
		b = kv.AppendString(b, prefixByField)
		b = kv.AppendString(b, r.Kind)
		b = kv.AppendString(b, f)
		b = kv.AppendStringBytes(b, value)
		b = kv.AppendString(b, r.ID)
		keys = append(keys, b[start:len(b):len(b)])
		from, shared = append(from, entrySource{field: f, raw: raw}), append(shared, -1)
	}
	return keys, from, shared
}

// indexWrite keeps the indexes in step with the record write w (a state
// key): it removes the entries the record had (its "state-index-of" list)
// and adds those of the value w writes (w.rec when w.known, else value
// decoded). An entry both have is left as it is. Called in the
// transaction that makes w; through a layer that defers the upkeep
// (stagedTxn), once per record, from its last write (settleIndex).
func indexWrite(tx kv.Txn, w write) error {
	var kind, id string
	if w.known && w.rec != nil {
		kind, id = w.rec.Kind, w.rec.ID // w.key is stateKey(kind, id)
	} else {
		t, err := kv.Unpack(w.key)
		if err != nil || len(t) != 3 || t[0] != prefixState {
			return nil // not a record
		}
		kind, _ = t[1].(string)
		id, _ = t[2].(string)
	}
	of := indexOfKey(kind, id)
	u, _ := tx.(*stagedTxn)
	old, src, err := indexEntries(tx, u, of)
	if errors.Is(err, kv.ErrBadTuple) {
		return fmt.Errorf("%w: index list of %s/%s: %v", ErrCorrupt, kind, id, err)
	} else if err != nil {
		return err
	}
	var next [][]byte
	var from []entrySource
	var sharedBuf [32]int
	shared := sharedBuf[:0]
	switch {
	case w.clear:
	case w.known:
		if w.rec != nil {
			next, from, shared = indexKeysOver(*w.rec, old, src, shared)
		}
	default:
		st, err := decodeStored(w.key, w.value)
		if err != nil {
			return err
		}
		if !st.tombstone {
			next = indexKeys(st.Record)
		}
	}
	// had[i]: next[i] is an entry the record has already; kept[j]: old[j]
	// is one of next.
	var hadBuf, keptBuf [32]bool
	had, kept := hadBuf[:0], keptBuf[:0]
	if len(next) > len(hadBuf) || len(old) > len(keptBuf) {
		had, kept = make([]bool, 0, len(next)), make([]bool, 0, len(old))
	}
	had, kept = had[:len(next)], kept[:len(old)]
	for i, j := range shared {
		if j >= 0 {
			had[i], kept[j] = true, true
		}
	}
	find := entryFinder(next)
	for j, k := range old {
		if kept[j] {
			continue
		}
		if i := find(k); i >= 0 {
			had[i] = true // unchanged: already there
			continue
		}
		if u != nil && src != nil && src[j].fresh {
			u.dropFresh(k)
			continue
		}
		if err := tx.Clear(k); err != nil {
			return err
		}
	}
	if len(next) == 0 {
		if len(old) == 0 {
			return nil
		}
		return tx.Clear(of)
	}
	for i, k := range next {
		if had[i] {
			continue
		}
		// Not in the record's list: the store does not hold it (a staged
		// removal aside), so that staged, it is fresh.
		if u != nil {
			var fresh bool
			fresh, err = u.setEntry(k)
			if from != nil {
				from[i].fresh = fresh
			}
		} else {
			err = tx.Set(k, []byte{})
		}
		if err != nil {
			return err
		}
	}
	list := packEntries(next)
	if u != nil {
		return u.setOwned(of, stagedWrite{value: list, entries: next, sources: from})
	}
	return tx.Set(of, list)
}

// indexEntries reads the index list at of: from what u (when not nil)
// has staged there already decoded, with what its entries were packed
// from, else from tx, unpacked (an error matching kv.ErrBadTuple when it
// is not a tuple of byte strings), without. A missing list is empty. It
// reads u without settling its deferred upkeep (indexWrite is that
// upkeep).
func indexEntries(tx kv.ReadTxn, u *stagedTxn, of []byte) ([][]byte, []entrySource, error) {
	get := tx.Get
	if u != nil {
		if es, src, ok := u.entries(of); ok {
			return es, src, nil
		}
		get = u.get
	}
	v, err := get(of)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	es, err := kv.UnpackBytes(v)
	return es, nil, err
}

// packEntries is kv.Tuple of the byte strings es, packed: an index list's
// value.
func packEntries(es [][]byte) []byte {
	n := 0
	for _, e := range es {
		// A code, the escaped bytes (the key's own terminators are
		// 0x00s) and a terminator.
		n += len(e) + bytes.Count(e, []byte{0x00}) + 2
	}
	b := make([]byte, 0, n)
	for _, e := range es {
		b = kv.AppendBytes(b, e)
	}
	return b
}

// entryFinder returns a function giving the index of a key in keys, or
// -1: a scan for the few entries of a usual record, a map above
// maxScanEntries (a record lists up to maxIndexedFields+1).
func entryFinder(keys [][]byte) func(k []byte) int {
	if len(keys) <= maxScanEntries {
		return func(k []byte) int {
			for i, c := range keys {
				if bytes.Equal(c, k) {
					return i
				}
			}
			return -1
		}
	}
	at := make(map[string]int, len(keys))
	for i, k := range keys {
		at[string(k)] = i
	}
	return func(k []byte) int {
		if i, ok := at[string(k)]; ok {
			return i
		}
		return -1
	}
}

// maxScanEntries is the most entries entryFinder scans.
const maxScanEntries = 16

// buildIndex indexes every live record of a store written before the
// indexes existed, indexBatch records per transaction, then marks the store
// as indexed. Run calls it before it applies anything; a store already
// marked costs one read.
func (s *Service) buildIndex(ctx context.Context) error {
	marked := false
	if err := s.store.View(ctx, func(tx kv.ReadTxn) error {
		_, err := tx.Get(indexVersionKey())
		marked = err == nil
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		return err
	}); err != nil || marked {
		return err
	}
	begin, end := kv.Tuple{prefixState}.Range()
	n := 0
	for {
		var last []byte
		err := s.store.Update(ctx, func(tx kv.Txn) error {
			last = nil
			kvs, err := tx.GetRange(begin, end, kv.RangeOptions{Limit: indexBatch})
			if err != nil {
				return err
			}
			for _, p := range kvs {
				last = p.Key
				st, err := decodeStored(p.Key, p.Value)
				if err != nil || st.tombstone {
					continue // a corrupt record is served by nobody: no entries
				}
				if err := indexWrite(tx, write{key: p.Key, value: p.Value}); err != nil {
					return err
				}
			}
			if len(kvs) < indexBatch {
				return tx.Set(indexVersionKey(), []byte{})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("state: build the list indexes: %w", err)
		}
		if last == nil || bytes.Equal(last, begin) {
			break
		}
		n++
		begin = append(bytes.Clone(last), 0x00)
		if n%100 == 0 {
			s.log.Info().Int("records", n*indexBatch).Msg("building the list indexes")
		}
	}
	return nil
}
