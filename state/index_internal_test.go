package state

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzCanonical: canonical's fast path for scalars that are canonical
// already gives exactly what the round trip through encoding/json gives,
// for any input (valid JSON or not).
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		`"open"`, `"a<b"`, `"\u00e9"`, `"é"`, `"tab\t"`, `"q\"x"`, `""`, `"`, `"a"b"`,
		`0`, `-0`, `01`, `-`, `7`, `-12`, `1.0`, `1e3`, `123456789012345`, `1234567890123456`, `99999999999999999999`,
		`true`, `false`, `null`, `tru`, ` 1`, `1 `, `{"a":1}`, `[1]`, ``, "\"\xff\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, ok := canonical(raw)
		wc, wok := canonicalSlow(raw)
		require.Equal(t, wc, c, "canonical of %q", raw)
		require.Equal(t, wok, ok, "indexed of %q", raw)
	})
}

// TestCanonicalScalars: the values the fast path takes, and some it leaves
// to the round trip, with their canonical forms.
func TestCanonicalScalars(t *testing.T) {
	for raw, want := range map[string]string{
		`"open"`: `"open"`, `7`: `7`, `-12`: `-12`, `true`: `true`, `null`: `null`,
		`1.0`: `1`, `-0`: `0`, `"a<b"`: `"a\u003cb"`, `"\u0041"`: `"A"`, `1234567890123456789`: `1234567890123456789`,
		`9007199254740993`: `9007199254740993`, `1e400`: `1e+400`, `1e-400`: `1e-400`,
	} {
		c, ok := canonical(json.RawMessage(raw))
		require.Equal(t, want, c, raw)
		require.True(t, ok, raw)
	}
	c, ok := canonical(json.RawMessage(`[1.0,{"b":2,"a":-0}]`))
	assert.Equal(t, `[1,{"a":0,"b":2}]`, c, "numbers inside are exact too")
	assert.False(t, ok, "not indexed")
	_, ok = canonical(json.RawMessage(`1 2`))
	assert.False(t, ok, "two values are not one")
}

// The index keys packed element by element are the keys kv.Tuple.Pack
// gives, for elements with the bytes the tuple layer escapes (0x00, 0xff).
func TestIndexKeys_PackLikeTuple(t *testing.T) {
	for _, s := range []string{"", "task", "a\x00b", "\x00", "\xff\x00\xff", "é", `"open"`} {
		assert.Equal(t, kv.Tuple{prefixByTime, s, int64(-7), s}.Pack(), byTimeKey(s, -7, s))
		assert.Equal(t, kv.Tuple{prefixByTime, s, int64(1) << 60, s}.Pack(), byTimeKey(s, 1<<60, s))
		assert.Equal(t, kv.Tuple{prefixByField, s, s + "f", s + "v", s}.Pack(), byFieldKey(s, s+"f", s+"v", s))
		assert.Equal(t, kv.Tuple{prefixIndexOf, s, s}.Pack(), indexOfKey(s, s))
	}
}

// indexWrite keeps exactly the record's entries through changes of a
// record with few fields (entries found by a scan) and of one with more
// than maxScanEntries (found through a map): each field changed, kept or
// removed, the record deleted.
func TestIndexWrite_EntriesExact(t *testing.T) {
	for _, n := range []int{3, maxScanEntries + 4} {
		store := kvtest.NewBolt(t)
		at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		write := func(rev int, fields map[string]json.RawMessage) {
			t.Helper()
			var rec *Record
			if fields != nil {
				rec = &Record{Kind: "task", ID: "T", Rev: uint64(rev), Fields: fields, UpdatedAt: at.Add(time.Duration(rev) * time.Second)}
			}
			require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
				return indexWrite(tx, write{key: stateKey("task", "T"), known: true, rec: rec})
			}))
			var want [][]byte
			if rec != nil {
				want = indexKeys(*rec)
				slices.SortFunc(want, bytes.Compare)
			}
			var got [][]byte
			require.NoError(t, store.View(context.Background(), func(tx kv.ReadTxn) error {
				for _, prefix := range []string{prefixByTime, prefixByField} {
					b, e := kv.Tuple{prefix}.Range()
					kvs, err := tx.GetRange(b, e, kv.RangeOptions{})
					if err != nil {
						return err
					}
					for _, p := range kvs {
						got = append(got, p.Key)
					}
				}
				return nil
			}))
			slices.SortFunc(got, bytes.Compare)
			require.Equal(t, want, got, "n=%d rev %d", n, rev)
		}
		fields := map[string]json.RawMessage{}
		for i := range n {
			fields[fmt.Sprintf("f%02d", i)] = json.RawMessage(strconv.Itoa(i))
		}
		write(1, maps.Clone(fields))
		fields["f00"] = json.RawMessage(`"changed"`)
		delete(fields, "f01")
		fields["new"] = json.RawMessage(`true`)
		write(2, maps.Clone(fields))
		write(3, maps.Clone(fields)) // only the time entry changes
		write(4, nil)
	}
}

// indexKeys, which packs every entry into one buffer, gives the entries
// byTimeKey and byFieldKey give one by one for each field the index
// holds (canonical, at most maxIndexedValue bytes of name and value), in
// field order: fields needing escapes, with 0x00 bytes, not canonical,
// too long, not scalars, more than a buffer of names, too many.
func TestIndexKeys_AsEachKeyBuilt(t *testing.T) {
	long := strings.Repeat("x", maxIndexedValue)
	values := []string{`"open"`, `1`, `1.0`, `"a<b"`, `"\u0000"`, ` true `, `{"a":1}`, `[1]`, `null`, `"` + long + `"`, `"` + long[2:] + `"`}
	for _, n := range []int{0, 1, 5, 40, maxIndexedFields + 1} {
		r := Record{Kind: "task", ID: "T\x00-1", UpdatedAt: time.Unix(5, 6), Fields: map[string]json.RawMessage{}}
		for i := range n {
			name := fmt.Sprintf("f\x00%03d", i)
			if i == 3 {
				name = long + "y"
			}
			r.Fields[name] = json.RawMessage(values[i%len(values)])
		}
		want := [][]byte{byTimeKey(r.Kind, r.UpdatedAt.UnixNano(), r.ID)}
		if n > maxIndexedFields {
			want = append(want, byFieldKey(r.Kind, "", "", r.ID))
		} else {
			for _, f := range slices.Sorted(maps.Keys(r.Fields)) {
				if c, ok := canonical(r.Fields[f]); ok && len(f) <= maxIndexedValue {
					want = append(want, byFieldKey(r.Kind, f, c, r.ID))
				}
			}
		}
		assert.Equal(t, want, indexKeys(r), "%d fields", n)
	}
}

// The keys a command writes pack as kv.Tuple packs them.
func TestRecordKeys_PackLikeTuple(t *testing.T) {
	at := time.Unix(-3, 5)
	for _, s := range []string{"", "task", "a\x00b", "\xff\x00\xff", "é"} {
		assert.Equal(t, kv.Tuple{prefixState, s, s + "i"}.Pack(), stateKey(s, s+"i"))
		assert.Equal(t, kv.Tuple{prefixLease, at.UnixNano(), s, s + "i"}.Pack(), leaseKey(at, s, s+"i"))
		assert.Equal(t, kv.Tuple{prefixOutbox, int64(1) << 40, s}.Pack(), outboxKey(1<<40, s))
	}
}

// A record's index list that is not a tuple of byte strings is damage:
// indexWrite names it (ErrCorrupt), staged or not, and writes nothing.
func TestIndexWrite_CorruptList(t *testing.T) {
	rec := &Record{Kind: "task", ID: "T", Rev: 1, Fields: map[string]json.RawMessage{"a": json.RawMessage(`1`)}}
	for _, bad := range [][]byte{{0xff}, kv.Tuple{"a string"}.Pack(), {0x01, 'a'}} {
		for _, staged := range []bool{false, true} {
			store := kvtest.NewBolt(t)
			require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error { return tx.Set(indexOfKey("task", "T"), bad) }))
			err := store.Update(context.Background(), func(tx kv.Txn) error {
				if staged {
					tx = newStagedTxn(tx)
				}
				return indexWrite(tx, write{key: stateKey("task", "T"), known: true, rec: rec})
			})
			require.ErrorIs(t, err, ErrCorrupt, "%x staged=%v", bad, staged)
		}
	}
}

// Staged, the entries of the fields a write leaves as they were are taken
// from the record's list as it was, not packed again, and the lists and
// entries the writes leave are those of writes made one by one in the
// store: a record written through one batch layer again and again, some
// fields changed (one to a value of the same canonical form, 1.0 after
// 1), removed or added, the others untouched, against the same writes
// made straight in a second store.
func TestIndexWrite_StagedSharesUnchangedEntries(t *testing.T) {
	staged, direct := kvtest.NewBolt(t), kvtest.NewBolt(t)
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	fields := map[string]json.RawMessage{}
	for i := range 20 {
		fields[fmt.Sprintf("f%02d", i)] = json.RawMessage(strconv.Itoa(i))
	}
	changes := []func(){
		func() { fields["f03"] = json.RawMessage(`"x"`) },
		func() { fields["f04"] = json.RawMessage(`4.0`) }, // canonically 4: the same entry
		func() { delete(fields, "f05") },
		func() { fields["a-new"] = json.RawMessage(`true`) },
		func() { fields["f06"] = json.RawMessage(`{"not":"indexed"}`) },
		func() {},
	}
	require.NoError(t, staged.Update(context.Background(), func(stx kv.Txn) error {
		return direct.Update(context.Background(), func(dtx kv.Txn) error {
			batch := newStagedTxn(stx)
			var prev [][]byte
			for rev, change := range changes {
				change()
				rec := &Record{Kind: "task", ID: "T", Rev: uint64(rev + 1), Fields: maps.Clone(fields), UpdatedAt: at.Add(time.Duration(rev) * time.Second)}
				w := write{key: stateKey("task", "T"), known: true, rec: rec}
				require.NoError(t, indexWrite(batch, w))
				require.NoError(t, indexWrite(dtx, w))
				next, src, ok := batch.entries(indexOfKey("task", "T"))
				require.True(t, ok)
				require.Len(t, src, len(next))
				if prev != nil {
					shared := 0
					for _, e := range next {
						for _, p := range prev {
							if &e[0] == &p[0] {
								shared++
							}
						}
					}
					// Every field entry but the one changed (or the
					// none) is shared; the by-time entry never is.
					assert.GreaterOrEqual(t, shared, len(next)-3, "rev %d", rev+1)
				}
				prev = next
			}
			return batch.flush()
		})
	}))
	require.Equal(t, dumpStore(t, direct), dumpStore(t, staged))
}

// encodeOutbox packs what kv.Tuple packs, 0x00s and all, and
// decodeOutbox reads it back.
func TestEncodeOutbox_AsTuple(t *testing.T) {
	for _, e := range []outboxEntry{
		{key: []byte("k"), subject: "codi.audit.log.codi-state.state.task", msgID: "state-g1-7-2", data: []byte(`{"seq":7}`)},
		{key: []byte("k"), subject: "a\x00b", msgID: "", data: []byte{0x00, 0xff, 0x00}},
		{key: []byte("k"), data: []byte{}},
	} {
		v := encodeOutbox(e)
		assert.Equal(t, kv.Tuple{e.subject, e.msgID, e.data}.Pack(), v)
		back, err := decodeOutbox(e.key, v)
		require.NoError(t, err)
		assert.Equal(t, e, back)
	}
}

// An index entry a staged list marks fresh (entrySource.fresh) has the
// fresh write setEntry staged at its key, whatever the commands did
// before (puts, merges and deletes, leases that end, presences that
// release, rejected and aborted commands, whose writes are put back):
// that is what lets indexWrite drop it without looking it up. Random
// commands through one batch layer, the layer's map checked after each,
// once the upkeep they defer is settled (as a read of an index key
// settles it).
func TestIndexWrite_FreshSourcesAreFreshWrites(t *testing.T) {
	for round := range 10 {
		r := rand.New(rand.NewPCG(uint64(round), 13))
		store := kvtest.NewBolt(t)
		t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		checked, seq := 0, uint64(0)
		for range 4 { // batches: the later ones over entries the store holds
			require.NoError(t, store.Update(context.Background(), func(stx kv.Txn) error {
				batch := newStagedTxn(stx)
				for range 40 {
					seq++
					subj, data := randomBatchCommand(t, r, seq)
					im := &inMsg{seq: seq, time: t0.Add(time.Duration(seq) * 700 * time.Millisecond), subject: subj, data: data}
					p, err := planCommand(batch, im, seq-1, "g1")
					require.NoError(t, err)
					require.NoError(t, applyPlan(batch, &p))
					require.NoError(t, batch.settleIndex())
					for k, w := range batch.writes {
						for i, src := range w.sources {
							if !src.fresh {
								continue
							}
							e, ok := batch.writes[string(w.entries[i])]
							require.True(t, ok, "round %d seq %d: %x lists %x, not staged", round, seq, k, w.entries[i])
							require.True(t, e.fresh && !e.clear, "round %d seq %d: %x lists %x as fresh", round, seq, k, w.entries[i])
							checked++
						}
					}
				}
				return batch.flush()
			}))
		}
		require.Positive(t, checked)
	}
}

// A damaged index list met by the upkeep a batch layer defers fails
// where the upkeep is done: at the layer's flush, or at a read of an
// index key through it (Get, GetRange), so the transaction fails as it
// did when the upkeep ran at the write. A record write the store would
// refuse fails where it is staged.
func TestBatchLayer_DeferredUpkeepErrors(t *testing.T) {
	rec := &Record{Kind: "task", ID: "T", Rev: 1, Fields: map[string]json.RawMessage{"a": json.RawMessage(`1`)}}
	w := write{key: stateKey("task", "T"), value: []byte("v"), known: true, rec: rec}
	store := kvtest.NewBolt(t)
	require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error { return tx.Set(indexOfKey("task", "T"), []byte{0xff}) }))
	begin, end := kv.Tuple{prefixByField}.Range()
	for name, settle := range map[string]func(*stagedTxn) error{
		"flush": func(u *stagedTxn) error { return u.flush() },
		"get": func(u *stagedTxn) error {
			_, err := u.Get(byTimeKey("task", 1, "T"))
			return err
		},
		"range": func(u *stagedTxn) error {
			_, err := u.GetRange(begin, end, kv.RangeOptions{})
			return err
		},
	} {
		err := store.Update(context.Background(), func(tx kv.Txn) error {
			batch := newStagedTxn(tx)
			child := newStagedTxn(batch)
			require.NoError(t, applyWrites(child, []write{w}))
			require.NoError(t, child.flush())
			_, err := batch.Get(leaseKey(time.Unix(1, 0), "task", "T")) // not an index key: nothing settled
			require.ErrorIs(t, err, kv.ErrNotFound)
			return settle(batch)
		})
		require.ErrorIs(t, err, ErrCorrupt, name)
	}
	require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
		batch := newStagedTxn(tx)
		require.Error(t, applyWrites(batch, []write{{key: stateKey("task", "T"), value: make([]byte, kv.MaxValueSize+1)}}))
		require.Error(t, applyWrites(batch, []write{{key: nil, value: []byte("v"), known: true, rec: rec}}))
		require.NoError(t, applyWrites(batch, []write{{key: stateKey("task", "T"), clear: true}}))
		require.True(t, batch.pending)
		batch.discard()
		require.False(t, batch.pending)
		return nil
	}))
}
