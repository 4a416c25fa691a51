package state

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/subjects"
)

// What a multi-record command keeps decoded while it is planned (the
// records and index lists its operations staged, the fresh index entries
// it drops again: stagedTxn) changes nothing it decides or writes: random
// command sequences over a few records, planned and applied in batches as
// the service does (some plans discarded, as a batch cut discards them),
// give the same outcomes, byte for byte, and the same store, key for key,
// as the same sequences planned with a plain stagedTxn, which decodes
// every value it reads and stages every removal.
func TestStagedTxn_DecodedSameAsPlain(t *testing.T) {
	ctx := context.Background()
	for round := range 30 {
		r := rand.New(rand.NewPCG(uint64(round), 18))
		cached, plain := kvtest.NewBolt(t), kvtest.NewBolt(t)
		t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		seq := uint64(0)
		for batch := range 12 {
			msgs := make([]*inMsg, 1+r.IntN(8))
			for i := range msgs {
				seq++
				subj, data := randomCommand(t, r, seq)
				msgs[i] = &inMsg{seq: seq, time: t0.Add(time.Duration(seq) * 700 * time.Millisecond), subject: subj, data: data}
			}
			cut := map[int]bool{r.IntN(len(msgs) + 4): true} // sometimes one plan discarded
			var got, want [][]string
			for _, run := range []struct {
				store kv.Store
				plan  func(kv.Txn, *inMsg, uint64) (plan, error)
				out   *[][]string
			}{
				{cached, func(tx kv.Txn, im *inMsg, wm uint64) (plan, error) { return planCommand(tx, im, wm, "g1") }, &got},
				{plain, func(tx kv.Txn, im *inMsg, wm uint64) (plan, error) { return planPlain(tx, im, wm, "g1") }, &want},
			} {
				require.NoError(t, run.store.Update(ctx, func(stx kv.Txn) error {
					*run.out = nil
					// The cached run goes through a batch layer, as
					// loop.commit does; the plain one straight to the store.
					var tx kv.Txn = stx
					if run.store == cached {
						batch := newStagedTxn(stx)
						defer func() { require.NoError(t, batch.flush()) }()
						tx = batch
					}
					for i, im := range msgs {
						p, err := run.plan(tx, im, im.seq-1)
						if err != nil {
							return err
						}
						*run.out = append(*run.out, outcomeBytes(p.outcomes))
						if cut[i] {
							p.discard()
							continue
						}
						if err := applyPlan(tx, &p); err != nil {
							return err
						}
					}
					return nil
				}))
			}
			require.Equal(t, want, got, "round %d batch %d: outcomes", round, batch)
			require.Equal(t, dumpStore(t, plain), dumpStore(t, cached), "round %d batch %d: store", round, batch)
		}
	}
}

// planPlain is planCommand with a multi-record command planned through a
// plain stagedTxn: the reference of TestStagedTxn_DecodedSameAsPlain.
func planPlain(tx kv.Txn, im *inMsg, watermark uint64, gen string) (plan, error) {
	subj, err := subjects.Parse(im.subject)
	if err == nil && subj.Type == subjects.TypeStateCmd && subj.Kind == KindTxn {
		u := newStagedTxn(tx)
		u.plain = true
		return planStaged(u, im, subj.ID, subj.Actor, watermark, gen)
	}
	return planCommand(tx, im, watermark, gen)
}

// randomCommand is a command over the records task/T-0..T-3, cp/C and
// the presence agent/agent-1: mostly multi-record commands of 1 to 8
// operations (puts, merges and deletes of fields that change, stay or go,
// some with leases short enough to end between commands, some bound to
// the presence, which releases them when it goes, some expecting a
// revision that may be wrong, which rejects and aborts the command),
// sometimes a single merge.
func randomCommand(t *testing.T, r *rand.Rand, seq uint64) (string, []byte) {
	op := func() string {
		var b strings.Builder
		kind, id := "task", fmt.Sprintf("T-%d", r.IntN(4))
		switch r.IntN(10) {
		case 0, 1:
			kind, id = "cp", "C"
		case 2:
			kind, id = KindAgent, "agent-1" // its delete or expiry releases what is bound to it
		}
		fmt.Fprintf(&b, `{"kind":%q,"id":%q,`, kind, id)
		switch n := r.IntN(10); {
		case n == 0:
			b.WriteString(`"op":"delete"`)
		case n < 3:
			b.WriteString(`"op":"put","fields":` + randomFields(r, false))
		default:
			b.WriteString(`"op":"merge","fields":` + randomFields(r, true))
		}
		switch r.IntN(6) {
		case 0:
			fmt.Fprintf(&b, `,"ttl_ms":%d`, 500+r.IntN(2000))
		case 1:
			b.WriteString(`,"ttl_ms":0`)
		}
		if r.IntN(12) == 0 {
			fmt.Fprintf(&b, `,"expect_rev":%d`, r.IntN(4))
		}
		if kind != KindAgent && r.IntN(4) == 0 {
			fmt.Fprintf(&b, `,"bind":%t`, r.IntN(3) > 0)
		}
		return b.String() + "}"
	}
	if r.IntN(6) == 0 {
		subj, err := subjects.StateCmd("task", fmt.Sprintf("T-%d", r.IntN(4)), "agent-1")
		require.NoError(t, err)
		return subj, []byte(`{"op":"merge","fields":` + randomFields(r, true) + "}")
	}
	ops := make([]string, 1+r.IntN(8))
	for i := range ops {
		ops[i] = op()
	}
	subj, err := subjects.StateCmd(KindTxn, fmt.Sprintf("X-%d", seq), "agent-1")
	require.NoError(t, err)
	return subj, []byte(`{"ops":[` + strings.Join(ops, ",") + `]}`)
}

// randomFields is a fields object of up to 4 members with values from a
// few of each shape: scalars the index holds (one needing escapes, one
// not in canonical form), an object it does not, and null (removed by a
// merge) when merge is set.
func randomFields(r *rand.Rand, merge bool) string {
	values := []string{`"open"`, `"done"`, `1`, `2.50`, `true`, `"a<b"`, `{"x": [1, 2]}`, ` "spaced" `}
	if merge {
		values = append(values, `null`)
	}
	var parts []string
	for _, name := range []string{"status", "assignee", "n", "ts"}[:r.IntN(5)] {
		if r.IntN(3) > 0 {
			parts = append(parts, fmt.Sprintf("%q:%s", name, values[r.IntN(len(values))]))
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// outcomeBytes is what outcomes carry, event and audit record, as text.
func outcomeBytes(os []outcome) []string {
	var out []string
	for _, o := range os {
		out = append(out, fmt.Sprintf("%s %s %s %x %s %s %s", o.status, o.evtSubject, o.evt, o.audit.key, o.audit.subject, o.audit.msgID, o.audit.data))
	}
	return out
}

// dumpStore is every key and value of store.
func dumpStore(t *testing.T, store kv.Store) []string {
	var out []string
	require.NoError(t, store.View(context.Background(), func(tx kv.ReadTxn) error {
		kvs, err := tx.GetRange([]byte{0x00}, []byte{0xFF}, kv.RangeOptions{})
		for _, p := range kvs {
			out = append(out, fmt.Sprintf("%x=%x", p.Key, p.Value))
		}
		return err
	}))
	return out
}

// A batch applied through one staged layer (loop.commit: every command
// reads and writes through the batch's stagedTxn, a multi-record command
// through its own layer over it, merged on success and dropped on
// rejection; the layer is written to the store once) gives the same
// outcomes, byte for byte, and the same store, key for key, as the same
// commands applied one per transaction straight in the store (multi-record
// ones through a plain stagedTxn): random batches of single and
// multi-record commands, some rejected, with leases that end between
// commands, presence records that release what is bound to them, and
// reservations that conflict, cut into several transactions by a small
// MaxBatchBytes now and then.
func TestBatchLayer_SameAsOneCommandPerTxn(t *testing.T) {
	ctx := context.Background()
	seen := map[string]int{} // what the rounds covered
	for round := range 25 {
		r := rand.New(rand.NewPCG(uint64(round), 7))
		batched, single := kvtest.NewBolt(t), kvtest.NewBolt(t)
		cfg := Config{}
		require.NoError(t, cfg.Validate()) // fills in the defaults
		l := &loop{s: &Service{store: batched}, cfg: cfg, log: zerolog.Nop(), gen: "g1"}
		t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		seq := uint64(0)
		for batch := range 10 {
			msgs := make([]*inMsg, 1+r.IntN(12))
			for i := range msgs {
				seq++
				subj, data := randomBatchCommand(t, r, seq)
				msgs[i] = &inMsg{seq: seq, time: t0.Add(time.Duration(seq) * 700 * time.Millisecond), subject: subj, data: data}
			}
			l.cfg.MaxBatchBytes = DefaultMaxBatchBytes
			if r.IntN(3) == 0 {
				l.cfg.MaxBatchBytes = 1000 + r.IntN(6000) // cuts the batch
			}
			var got, want [][]string
			for rest := msgs; len(rest) > 0; {
				res, durable, err := l.commit(ctx, rest, nil)
				require.NoError(t, err)
				require.NoError(t, durable())
				require.Positive(t, res.n)
				got = append(got, outcomeBytes(res.outcomes))
				rest = rest[res.n:]
				seen["transactions"]++
				for _, o := range res.outcomes {
					seen[string(o.status)+" "+string(o.op)+" "+o.kind+" "+string(o.reason)]++
				}
			}
			for _, im := range msgs {
				require.NoError(t, single.Update(ctx, func(tx kv.Txn) error {
					applied, err := getApplied(tx, cfg.Stream)
					if err != nil {
						return err
					}
					p, err := planPlain(tx, im, applied, "g1")
					if err != nil {
						return err
					}
					want = append(want, outcomeBytes(p.outcomes))
					if err := applyPlan(tx, &p); err != nil {
						return err
					}
					return tx.Set(appliedKey(cfg.Stream), encodeApplied(im.seq, im.time))
				}))
			}
			require.Equal(t, slices.Concat(want...), slices.Concat(got...), "round %d batch %d: outcomes", round, batch)
			require.Equal(t, dumpStore(t, single), dumpStore(t, batched), "round %d batch %d: store", round, batch)
		}
	}
	for _, what := range []string{
		"applied txn txn ", "rejected txn txn conflict", "applied merge task ",
		"applied expire task ", "applied release task ", "applied expire agent ", "applied delete agent ",
		"applied put reservation ", "rejected put reservation conflict", "applied expire reservation ",
	} {
		assert.Positive(t, seen[what], what)
	}
	assert.Greater(t, seen["transactions"], 25*10, "some batches cut")
}

// randomBatchCommand is randomCommand, or now and then a single command
// of its own: a put or delete of the presence agent/agent-1 (with a lease
// that may end before the next command), or a put or delete of a
// reservation by agent-1 or agent-2 of one of a few overlapping patterns,
// exclusive or shared (an overlap with the other agent's rejects it).
func randomBatchCommand(t *testing.T, r *rand.Rand, seq uint64) (string, []byte) {
	switch r.IntN(8) {
	case 0:
		subj, err := subjects.StateCmd(KindAgent, "agent-1", "agent-1")
		require.NoError(t, err)
		if r.IntN(4) == 0 {
			return subj, []byte(`{"op":"delete"}`)
		}
		return subj, fmt.Appendf(nil, `{"op":"put","fields":{"n":%d},"ttl_ms":%d}`, seq, 500+r.IntN(3000))
	case 1, 2:
		holder := []string{"agent-1", "agent-2"}[r.IntN(2)]
		pattern := []string{"src/**", "src/a.go", "docs/*.md"}[r.IntN(3)]
		const project = "git-0123456789ab"
		id, err := ReservationID(project, holder, pattern)
		require.NoError(t, err)
		subj, err := subjects.StateCmd(KindReservation, id, holder)
		require.NoError(t, err)
		if r.IntN(4) == 0 {
			return subj, []byte(`{"op":"delete"}`)
		}
		return subj, fmt.Appendf(nil, `{"op":"put","fields":{"holder":%q,"pattern":%q,"project":%q,"shared":%t},"ttl_ms":%d}`,
			holder, pattern, project, r.IntN(2) == 0, 1000+r.IntN(4000))
	}
	return randomCommand(t, r, seq)
}

// The index upkeep a batch layer defers to its flush (stagedWrite.index,
// stagedTxn.settleIndex) leaves the store as the upkeep done at every
// write does, key for key, and reads of index keys between commands see
// the same: random batches of up to 30 commands over three records, most
// of them multi-record commands of up to 63 operations (so a record is
// written many times in one command and in one batch), with field values
// from a few (a field changes and changes back), removals (null), puts,
// deletes (of a record that is not there: a rejection in the middle of the
// command, which takes its writes back), wrong expected revisions, leases
// that end in the batch, records of more fields than the index lists, and
// plans discarded as a batch cut discards them. The reference is a plain
// batch layer: every write's upkeep done as it is made.
func TestBatchLayer_DeferredIndexSameAsEager(t *testing.T) {
	ctx := context.Background()
	seen := map[string]int{}
	for round := range 12 {
		r := rand.New(rand.NewPCG(uint64(round), 29))
		deferred, eager := kvtest.NewBolt(t), kvtest.NewBolt(t)
		t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		seq := uint64(0)
		for batch := range 6 {
			msgs := make([]*inMsg, 1+r.IntN(30))
			for i := range msgs {
				seq++
				subj, data := denseCommand(t, r, seq)
				msgs[i] = &inMsg{seq: seq, time: t0.Add(time.Duration(seq) * 300 * time.Millisecond), subject: subj, data: data}
			}
			cut := map[int]bool{r.IntN(len(msgs) + 2): true}
			// An index read after these, of one record.
			reads := map[int]string{r.IntN(len(msgs)): fmt.Sprintf("T-%d", r.IntN(3)), r.IntN(len(msgs)): fmt.Sprintf("T-%d", r.IntN(3))}
			var got, want [][]string
			for _, run := range []struct {
				store kv.Store
				plain bool
				out   *[][]string
			}{{deferred, false, &got}, {eager, true, &want}} {
				require.NoError(t, run.store.Update(ctx, func(stx kv.Txn) error {
					*run.out = nil
					tx := newStagedTxn(stx)
					tx.plain = run.plain
					for i, im := range msgs {
						p, err := planCommand(tx, im, im.seq-1, "g1")
						if err != nil {
							return err
						}
						*run.out = append(*run.out, outcomeBytes(p.outcomes))
						for _, o := range p.outcomes {
							seen[string(o.status)+" "+string(o.op)+" "+string(o.reason)]++
						}
						if cut[i] {
							p.discard()
							continue
						}
						if err := applyPlan(tx, &p); err != nil {
							return err
						}
						if id, ok := reads[i]; ok {
							*run.out = append(*run.out, readIndex(t, tx, id))
						}
					}
					return tx.flush()
				}))
			}
			require.Equal(t, want, got, "round %d batch %d: outcomes and reads", round, batch)
			require.Equal(t, dumpStore(t, eager), dumpStore(t, deferred), "round %d batch %d: store", round, batch)
		}
	}
	for _, what := range []string{
		"applied txn ", "rejected txn conflict", "applied merge ", "applied put ", "applied delete ", "applied expire ",
		"rejected delete conflict", "rejected merge aborted", "applied merge ",
	} {
		assert.Positive(t, seen[what], what)
	}
}

// readIndex reads through tx what the indexes hold of task/id: its list
// and its by-time and by-field entries, as text.
func readIndex(t *testing.T, tx kv.ReadTxn, id string) []string {
	var out []string
	v, err := tx.Get(indexOfKey("task", id))
	if err != nil {
		require.ErrorIs(t, err, kv.ErrNotFound)
	}
	out = append(out, fmt.Sprintf("list %x", v))
	for _, prefix := range []string{prefixByTime, prefixByField} {
		begin, end := kv.Tuple{prefix, "task"}.Range()
		kvs, err := tx.GetRange(begin, end, kv.RangeOptions{Limit: 50})
		require.NoError(t, err)
		for _, p := range kvs {
			out = append(out, fmt.Sprintf("%x=%x", p.Key, p.Value))
		}
	}
	return out
}

// denseCommand is a multi-record command of 1 to 63 operations over
// task/T-0..T-2 (mostly merges), or now and then a single merge or put.
func denseCommand(t *testing.T, r *rand.Rand, seq uint64) (string, []byte) {
	values := []string{`"a"`, `"b"`, `1`, `1.0`, `{"o":1}`, `null`}
	fields := func(merge bool) string {
		if r.IntN(40) == 0 { // more than the index lists
			parts := make([]string, maxIndexedFields+1)
			for i := range parts {
				parts[i] = fmt.Sprintf(`"w%03d":%d`, i, r.IntN(2))
			}
			return "{" + strings.Join(parts, ",") + "}"
		}
		var parts []string
		for _, name := range []string{"status", "assignee", "n"} {
			if r.IntN(2) == 0 {
				continue
			}
			v := values[r.IntN(len(values))]
			if !merge && v == `null` {
				v = `"a"`
			}
			parts = append(parts, fmt.Sprintf("%q:%s", name, v))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	op := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, `{"kind":"task","id":"T-%d",`, r.IntN(3))
		switch n := r.IntN(100); {
		case n < 2:
			b.WriteString(`"op":"delete"`)
		case n < 6:
			b.WriteString(`"op":"put","fields":` + fields(false))
		default:
			b.WriteString(`"op":"merge","fields":` + fields(true))
		}
		switch r.IntN(30) {
		case 0:
			fmt.Fprintf(&b, `,"ttl_ms":%d`, 200+r.IntN(1500))
		case 1:
			b.WriteString(`,"ttl_ms":0`)
		}
		if r.IntN(150) == 0 {
			fmt.Fprintf(&b, `,"expect_rev":%d`, r.IntN(4))
		}
		return b.String() + "}"
	}
	if r.IntN(5) == 0 {
		subj, err := subjects.StateCmd("task", fmt.Sprintf("T-%d", r.IntN(3)), "agent-1")
		require.NoError(t, err)
		if r.IntN(3) == 0 {
			return subj, []byte(`{"op":"put","fields":` + fields(false) + `,"ttl_ms":800}`)
		}
		return subj, []byte(`{"op":"merge","fields":` + fields(true) + "}")
	}
	ops := make([]string, 1+r.IntN(63))
	for i := range ops {
		ops[i] = op()
	}
	subj, err := subjects.StateCmd(KindTxn, fmt.Sprintf("X-%d", seq), "agent-1")
	require.NoError(t, err)
	return subj, []byte(`{"ops":[` + strings.Join(ops, ",") + `]}`)
}

// Planning through a batch layer stages no index key: a record's entries
// and list are staged once, when the layer is flushed or an index key is
// read through it, from the record's last write. A child layer's upkeep,
// settled by a read through it, goes with its writes when it is
// discarded.
func TestBatchLayer_DefersIndexUpkeep(t *testing.T) {
	ctx := context.Background()
	store := kvtest.NewBolt(t)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	txn := func(seq uint64, ops ...string) *inMsg {
		subj, err := subjects.StateCmd(KindTxn, fmt.Sprintf("X-%d", seq), "agent-1")
		require.NoError(t, err)
		return &inMsg{seq: seq, time: t0.Add(time.Duration(seq) * time.Second), subject: subj, data: []byte(`{"ops":[` + strings.Join(ops, ",") + `]}`)}
	}
	merge := func(id, fields string) string {
		return fmt.Sprintf(`{"kind":"task","id":%q,"op":"merge","fields":%s}`, id, fields)
	}
	listOf := func(tx kv.ReadTxn, id string) []byte {
		v, err := tx.Get(indexOfKey("task", id))
		require.NoError(t, err)
		return v
	}
	var stored []byte // T-1's list as the first batch leaves it
	require.NoError(t, store.Update(ctx, func(stx kv.Txn) error {
		batch := newStagedTxn(stx)
		for seq, im := range []*inMsg{
			txn(1, merge("T-1", `{"s":"a"}`), merge("T-2", `{"s":"b"}`), merge("T-1", `{"s":"b","n":1}`)),
			txn(2, merge("T-2", `{"s":null}`), merge("T-1", `{"s":"a"}`)),
		} {
			p, err := planCommand(batch, im, uint64(seq), "g1")
			require.NoError(t, err)
			require.NoError(t, applyPlan(batch, &p))
		}
		for k := range batch.writes {
			require.False(t, isIndexKey([]byte(k)), "staged while planning: %x", k)
		}
		require.True(t, batch.pending)
		rec, ok, err := getStored(batch, "task", "T-1")
		require.NoError(t, err)
		require.True(t, ok)
		stored = packEntries(indexKeys(rec.Record))
		require.Equal(t, stored, listOf(batch, "T-1"), "read through the layer: settled first")
		require.NoError(t, batch.flush())
		require.False(t, batch.pending)
		return nil
	}))
	require.NoError(t, store.Update(ctx, func(stx kv.Txn) error {
		require.Equal(t, stored, listOf(stx, "T-1"))
		batch := newStagedTxn(stx)
		child := newStagedTxn(batch)
		p, err := planStaged(child, txn(3, merge("T-1", `{"s":"c"}`), merge("T-1", `{"n":2}`)), "X-3", "agent-1", 2, "g1")
		require.NoError(t, err)
		require.Equal(t, StatusApplied, p.outcomes[len(p.outcomes)-1].status)
		require.NotEqual(t, stored, listOf(child, "T-1"), "the child's writes, settled")
		child.discard() // as a batch cut discards it
		require.Equal(t, stored, listOf(batch, "T-1"), "discarded with them")
		require.NoError(t, batch.flush())
		return nil
	}))
	require.NoError(t, store.View(ctx, func(tx kv.ReadTxn) error {
		require.Equal(t, stored, listOf(tx, "T-1"))
		return nil
	}))
}
