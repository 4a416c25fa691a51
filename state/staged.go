package state

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/codi2/codi2/internal/kv"
)

// stagedTxn is a transaction whose writes are held in memory over tx until
// flush: its reads see them, tx does not. A multi-record command plans its
// operations through one, so that each operation sees the writes of the
// ones before it, and taking them all back (the command is rejected, or cut
// from the batch by MaxBatchBytes) is dropping them: nothing is read
// before a write to remember what it replaced, and nothing is written
// twice. Like the kv.Txn it wraps it is used by one goroutine, inside the
// transaction's function only.
//
// It also keeps what planning decoded, so that a record written by one
// operation is not decoded again by the next one on it: the live record a
// state key's value holds (stagedWrite.rec) and the entries an index list
// packs (stagedWrite.entries). They are part of the staged writes, so they
// go with them, on flush and on discard: nothing decoded outlives the
// command, let alone a transaction that is rolled back.
//
// The state service applies a batch through one (newStagedTxn over the
// store's transaction: the batch layer), and a multi-record command
// stages through its own over that one (newStagedTxn over the batch
// layer): a child layer. A child writes into its parent's map, and so
// into the batch layer's, remembering what each write replaced (undo), so
// that a rejected command (discard) puts back what was there, and an
// applied one (flush) costs nothing: its writes, with what they keep
// decoded, are in the batch layer already, and every read looks in one
// map. The batch layer is flushed once, before the transaction commits;
// until then nothing reads the store's transaction past it, and the
// records and index lists it keeps decoded serve every later command of
// the batch.
//
// A layer that is not plain defers a record's index upkeep (index.go):
// a record write is staged marked (stagedWrite.index), and the record's
// entries and list are worked out once, from the last write marked at its
// key, when the batch layer is flushed, rather than once per operation
// (a multi-record command writes a record two or three times, a batch
// several such commands). Since the mark is part of the staged write, a
// rejected command's discard takes it back with the write. Planning reads
// no index key; should anything read one through a layer before the
// flush, the upkeep is done first, through that layer (settleIndex).
type stagedTxn struct {
	// tx is the store's transaction: what reads find past the staged
	// writes, and what a batch layer's flush writes to.
	tx kv.Txn
	// parent is the layer a child writes into (its writes map is
	// parent's); nil for a batch layer.
	parent *stagedTxn
	writes map[string]stagedWrite
	// undo is what a child's writes replaced, in the order they were
	// made: discard puts it back, last first.
	undo []undoWrite
	// spare is an undo slice a flushed child left for the next one.
	spare []undoWrite
	// plain turns off what the staged writes keep decoded: every read
	// decodes the value, and a fresh entry cleared is cleared in tx. The
	// reference the differential tests compare against. A child takes
	// its parent's.
	plain bool
	// pending is set in a batch layer once a record write whose index
	// upkeep is deferred is staged (stagedWrite.index), by it or a
	// child: until its flush, a read of an index key settles them
	// first.
	pending bool
}

// undoWrite is the write a child layer replaced at key: prev, or none
// (had false).
type undoWrite struct {
	key  string
	prev stagedWrite
	had  bool
}

// stagedWrite is a value written at a key, or its removal.
type stagedWrite struct {
	value []byte
	clear bool
	// rec, when set, is the live record value holds (a state key's value
	// as planning built it), for getStored to take instead of decoding
	// value. Shared: nobody modifies it.
	rec *Record
	// entries, when set, is the list of index entries value packs (a
	// "state-index-of" key's value), for indexWrite to take instead of
	// unpacking value. Shared: nobody modifies it.
	entries [][]byte
	// sources, when set, is what entries were packed from (see
	// indexKeysOver), one for each. Shared: nobody modifies it.
	sources []entrySource
	// fresh marks an index entry that the store did not hold before this
	// layer staged it (no write was staged at its key, and its record
	// did not list it: see index.go): clearing it drops the write rather
	// than staging a removal of a key tx does not have.
	fresh bool
	// index marks a record write (a state key) whose index upkeep is
	// deferred: settleIndex does it, from this write, before the batch
	// layer is flushed.
	index bool
}

// newStagedTxn returns a layer over tx: a batch layer over the store's
// transaction, or a child of tx when tx is a stagedTxn.
func newStagedTxn(tx kv.Txn) *stagedTxn {
	if parent, ok := tx.(*stagedTxn); ok {
		c := &stagedTxn{tx: parent.tx, parent: parent, writes: parent.writes, undo: parent.spare[:0], plain: parent.plain}
		parent.spare = nil
		return c
	}
	return &stagedTxn{tx: tx, writes: make(map[string]stagedWrite)}
}

// reserve makes room for n staged writes at once, before the first is
// staged: a multi-record command or a batch knows about how many it will
// make. A child makes room in its undo list (the map is its parent's).
func (s *stagedTxn) reserve(n int) {
	switch {
	case s.parent != nil:
		s.undo = slices.Grow(s.undo, n)
	case len(s.writes) == 0:
		s.writes = make(map[string]stagedWrite, n)
	}
}

// put stages w at key, remembering in a child what it replaces.
func (s *stagedTxn) put(key []byte, w stagedWrite) {
	if s.parent != nil {
		prev, had := s.writes[string(key)]
		s.replace(string(key), w, prev, had)
		return
	}
	s.writes[string(key)] = w
}

// replace stages w at key (a string of its own, the map's key from now
// on) over prev, the write staged there (had) that the caller looked up
// already, remembering it in a child.
func (s *stagedTxn) replace(key string, w, prev stagedWrite, had bool) {
	if s.parent != nil {
		s.undo = append(s.undo, undoWrite{key: key, prev: prev, had: had})
	}
	s.writes[key] = w
}

// drop removes the staged write at key, which is old, remembering it in
// a child.
func (s *stagedTxn) drop(key []byte, old stagedWrite) {
	if s.parent != nil {
		s.undo = append(s.undo, undoWrite{key: string(key), prev: old, had: true})
	}
	delete(s.writes, string(key))
}

// Get returns the staged value at key, or tx's. An index key is read
// once the deferred index upkeep is done.
func (s *stagedTxn) Get(key []byte) ([]byte, error) {
	if s.base().pending && isIndexKey(key) {
		if err := s.settleIndex(); err != nil {
			return nil, err
		}
	}
	return s.get(key)
}

// get is Get without settling the index upkeep first.
func (s *stagedTxn) get(key []byte) ([]byte, error) {
	if w, ok := s.writes[string(key)]; ok {
		if w.clear {
			return nil, kv.ErrNotFound
		}
		return append([]byte{}, w.value...), nil
	}
	return s.tx.Get(key)
}

// GetRange returns tx's pairs in the range with the staged writes over
// them, as kv.ReadTxn.GetRange defines it. With a limit it reads from tx
// the limit plus the staged removals in the range: at most that many of
// tx's pairs can be hidden, so the first limit pairs of the result are
// among them and the staged values.
func (s *stagedTxn) GetRange(begin, end []byte, opts kv.RangeOptions) ([]kv.KeyValue, error) {
	if s.base().pending && overlapsIndex(begin, end) {
		if err := s.settleIndex(); err != nil {
			return nil, err
		}
	}
	var staged []string
	clears := 0
	if bytes.Compare(begin, end) < 0 {
		for k, w := range s.writes {
			if k >= string(begin) && k < string(end) {
				staged = append(staged, k)
				if w.clear {
					clears++
				}
			}
		}
	}
	if len(staged) == 0 {
		return s.tx.GetRange(begin, end, opts)
	}
	base := opts
	if base.Limit > 0 {
		base.Limit += clears
	}
	kvs, err := s.tx.GetRange(begin, end, base)
	if err != nil {
		return nil, err
	}
	out := make([]kv.KeyValue, 0, len(kvs)+len(staged))
	for _, p := range kvs {
		if _, ok := s.writes[string(p.Key)]; !ok {
			out = append(out, p)
		}
	}
	for _, k := range staged {
		if w := s.writes[k]; !w.clear {
			out = append(out, kv.KeyValue{Key: []byte(k), Value: append([]byte{}, w.value...)})
		}
	}
	slices.SortFunc(out, func(a, b kv.KeyValue) int {
		if opts.Reverse {
			return bytes.Compare(b.Key, a.Key)
		}
		return bytes.Compare(a.Key, b.Key)
	})
	if opts.Limit > 0 && len(out) > opts.Limit {
		out = out[:opts.Limit]
	}
	return out, nil
}

// Set stages value at key. Key and value are checked as every backend
// checks them (kv.CheckKey, kv.CheckValue), so that a write flush would
// refuse fails where it is made.
func (s *stagedTxn) Set(key, value []byte) error {
	if err := kv.CheckKey(key); err != nil {
		return err
	}
	if err := kv.CheckValue(value); err != nil {
		return err
	}
	s.put(key, stagedWrite{value: append([]byte{}, value...)})
	return nil
}

// Clear stages the removal of key; a fresh index entry's write is
// dropped instead.
func (s *stagedTxn) Clear(key []byte) error {
	if err := kv.CheckKey(key); err != nil {
		return err
	}
	w, ok := s.writes[string(key)]
	if ok && w.fresh {
		s.drop(key, w)
		return nil
	}
	s.replace(string(key), stagedWrite{clear: true}, w, ok)
	return nil
}

// setOwned stages w at key, checked as Set checks them. w.value is one
// planning built and nobody modifies: it is not copied. It keeps w.rec,
// w.entries and w.fresh unless s is plain.
func (s *stagedTxn) setOwned(key []byte, w stagedWrite) error {
	if err := kv.CheckKey(key); err != nil {
		return err
	}
	if err := kv.CheckValue(w.value); err != nil {
		return err
	}
	if s.plain {
		w = stagedWrite{value: w.value}
	}
	s.put(key, w)
	return nil
}

// setRecord stages w, a record write (a state key) whose index upkeep is
// deferred, checked as Set checks them: w.value is not copied (see
// setOwned), and the batch layer has an upkeep pending from now on.
func (s *stagedTxn) setRecord(key []byte, w stagedWrite) error {
	if err := kv.CheckKey(key); err != nil {
		return err
	}
	if !w.clear {
		if err := kv.CheckValue(w.value); err != nil {
			return err
		}
	}
	w.index = true
	s.put(key, w)
	s.base().pending = true
	return nil
}

// base is the batch layer s is a child of, or s.
func (s *stagedTxn) base() *stagedTxn {
	for s.parent != nil {
		s = s.parent
	}
	return s
}

// settleIndex does the deferred index upkeep of every record write
// staged (stagedWrite.index), through s: a child's upkeep goes with its
// writes when it is discarded. The writes stay marked (a later discard
// may take back a write this one replaced, whose upkeep is then to do
// again), and settling a record again is idempotent: its list is the
// one its entries were settled with, and nothing changes but the list
// being staged again. Records are settled in key order.
func (s *stagedTxn) settleIndex() error {
	var keys []string
	for k, w := range s.writes {
		if w.index {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		w := s.writes[k]
		err := indexWrite(s, write{key: []byte(k), value: w.value, clear: w.clear, known: w.rec != nil, rec: w.rec})
		if err != nil {
			return err
		}
	}
	return nil
}

// setEntry stages the index entry key (an empty value): the caller knows
// that the store does not hold it unless a write is staged at it (the
// record's list does not have it). So it is fresh when none is, and when
// the one staged is fresh; it returns which.
func (s *stagedTxn) setEntry(key []byte) (fresh bool, err error) {
	if err := kv.CheckKey(key); err != nil {
		return false, err
	}
	old, staged := s.writes[string(key)]
	w := stagedWrite{value: []byte{}, fresh: !s.plain && (!staged || old.fresh)}
	s.replace(string(key), w, old, staged)
	return w.fresh, nil
}

// dropFresh clears the index entry key whose staged write the caller
// knows to be the fresh one setEntry made: it drops the write, without
// looking it up.
func (s *stagedTxn) dropFresh(key []byte) {
	if s.parent != nil {
		s.undo = append(s.undo, undoWrite{key: string(key), prev: stagedWrite{value: []byte{}, fresh: true}, had: true})
	}
	delete(s.writes, string(key))
}

// record returns the live record staged at key as planning built it, or
// nil when it has to be read (and decoded) with Get.
func (s *stagedTxn) record(key []byte) *Record {
	return s.writes[string(key)].rec
}

// entries returns the index entries staged at key (a "state-index-of"
// key) and what they were packed from (nil when not known), and whether
// they are: when not, the list has to be read with Get.
func (s *stagedTxn) entries(key []byte) ([][]byte, []entrySource, bool) {
	w := s.writes[string(key)]
	return w.entries, w.sources, w.entries != nil
}

// ClearRange is not used by a batch transaction; it is refused rather
// than staged.
func (s *stagedTxn) ClearRange(begin, end []byte) error {
	return errors.New("state: ClearRange in a staged transaction")
}

// discard drops every staged write: a child's, by putting back what
// they replaced, last first.
func (s *stagedTxn) discard() {
	if s.parent == nil {
		clear(s.writes)
		s.pending = false
		return
	}
	for i := len(s.undo) - 1; i >= 0; i-- {
		u := s.undo[i]
		if u.had {
			s.writes[u.key] = u.prev
		} else {
			delete(s.writes, u.key)
		}
	}
	clear(s.undo) // the undo list holds values and records
	s.undo = s.undo[:0]
}

// flush makes the staged writes in tx, in key order (a B-tree takes
// sorted inserts best), with the index upkeep they defer, and drops
// them. A child's writes are in its
// parent already: it keeps them there (a parent that is a child itself
// takes over what they replaced), and leaves its undo list for the next
// child.
func (s *stagedTxn) flush() error {
	if p := s.parent; p != nil {
		if p.parent != nil {
			p.undo = append(p.undo, s.undo...)
		}
		clear(s.undo)
		p.spare, s.undo = s.undo[:0], nil
		return nil
	}
	if s.pending {
		if err := s.settleIndex(); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(s.writes))
	for k := range s.writes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var key []byte // scratch: kv.Txn keeps no reference to a key
	for _, k := range keys {
		w := s.writes[k]
		key = append(key[:0], k...)
		var err error
		if w.clear {
			err = s.tx.Clear(key)
		} else {
			err = s.tx.Set(key, w.value)
		}
		if err != nil {
			return fmt.Errorf("state: write a staged transaction: %w", err)
		}
	}
	clear(s.writes)
	s.pending = false
	return nil
}
