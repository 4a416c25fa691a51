package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/strictjson"
)

// FuzzDecodeCommand checks that the command decoder never panics, that what
// it accepts is a consistent command with one reading (valid UTF-8, within
// the nesting limit, no duplicate members, fields present for put), and
// that a Command the client encodes decodes to the same values.
func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{
		`{"op":"put","fields":{"a":1}}`, `{"op":"merge","fields":{"a":null},"expect_rev":3,"ttl_ms":100}`,
		`{"op":"delete","expect_rev":0}`, `{"op":"x"}`, `{"op":"put","fields":[]}`, `{`, `null`, `{"op":"put"} {}`,
		`{"op":"put","ttl_ms":-1}`, `{"op":"merge","fields":null}`, `{"op":"merge","op":"put","fields":{}}`,
		"{\"op\":\"put\",\"fields\":{\"x\":\"\xff\"}}", `{"op":"put","fields":{"a":1,"a":2}}`, `{"op":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeCommand(data)
		if err != nil {
			if c.op != "" {
				t.Fatalf("error %v with a command %+v", err, c)
			}
			return
		}
		if err := strictjson.Check(data, strictjson.MaxDepth); err != nil {
			t.Fatalf("accepted %q that strictjson refuses: %v", data, err)
		}
		switch c.op {
		case OpPut:
			if c.fields == nil {
				t.Fatalf("put without fields accepted: %q", data)
			}
		case OpMerge:
		case OpDelete:
			if c.fields != nil || c.ttl != nil {
				t.Fatalf("delete with fields or ttl accepted: %q", data)
			}
		default:
			t.Fatalf("op %q accepted", c.op)
		}
		if c.ttl != nil && (*c.ttl < 0 || *c.ttl > maxTTL) {
			t.Fatalf("ttl %v accepted", *c.ttl)
		}
		for k, v := range c.fields {
			if !json.Valid(v) {
				t.Fatalf("field %q holds invalid JSON %q", k, v)
			}
		}
	})
}

func TestCommand_MarshalJSON_RoundTrip(t *testing.T) {
	cmd := Command{Op: OpMerge, Fields: map[string]any{"a": 1, "gone": nil}, ExpectRev: Expect(0), TTL: 1500 * time.Microsecond}
	data, err := json.Marshal(cmd)
	require.NoError(t, err)
	assert.JSONEq(t, `{"op":"merge","fields":{"a":1,"gone":null},"expect_rev":0,"ttl_ms":2}`, string(data))
	c, err := decodeCommand(data)
	require.NoError(t, err)
	assert.Equal(t, OpMerge, c.op)
	require.NotNil(t, c.expectRev)
	assert.Equal(t, uint64(0), *c.expectRev)
	require.NotNil(t, c.ttl)
	assert.Equal(t, 2*time.Millisecond, *c.ttl)
	assert.True(t, isNull(c.fields["gone"]))
}

func TestEvent_MarshalJSON(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"applied", Event{Seq: 4, Status: StatusApplied, Rev: 2, Actor: "a", Op: OpDelete},
			`{"seq":4,"status":"applied","rev":2,"actor":"a","op":"delete"}`},
		{"conflict at 0", Event{Seq: 5, Status: StatusRejected, Reason: ReasonConflict, Actor: "a", Op: OpPut},
			`{"seq":5,"status":"rejected","reason":"conflict","actor":"a","op":"put","current_rev":0}`},
		{"bad request", Event{Seq: 6, Status: StatusRejected, Reason: ReasonBadRequest, Actor: "a", Op: "x", Detail: "unknown op"},
			`{"seq":6,"status":"rejected","reason":"bad_request","actor":"a","op":"x","detail":"unknown op"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := json.Marshal(tt.ev)
			require.NoError(t, err)
			assert.JSONEq(t, tt.want, string(data))
		})
	}
}

func TestEvent_Err(t *testing.T) {
	assert.NoError(t, Event{Status: StatusApplied}.Err())
	assert.ErrorIs(t, Event{Status: StatusRejected, Reason: ReasonConflict}.Err(), ErrConflict)
	assert.ErrorIs(t, Event{Status: StatusRejected, Reason: ReasonBadRequest}.Err(), ErrBadRequest)
	assert.ErrorIs(t, Event{Status: StatusRejected, Reason: ReasonCorrupt}.Err(), ErrCorrupt)
	assert.ErrorIs(t, Event{Status: "odd"}.Err(), ErrRemote)
}

func TestTruncate(t *testing.T) {
	assert.Equal(t, "abc", truncate("abc", 3))
	assert.Equal(t, "ab…", truncate("abc", 2))
	c, err := decodeCommand([]byte(`{"op":"` + strings.Repeat("z", 100) + `"}`))
	require.Error(t, err)
	assert.Less(t, len(err.Error()), 100)
	assert.Equal(t, command{}, c)
}

func TestDecodeStored_Corrupt(t *testing.T) {
	key := stateKey("task", "t1")
	good := sealStored(key, false, []byte(`{"kind":"task","id":"t1","rev":1}`))
	flipped := bytes.Clone(good)
	flipped[len(flipped)-3] ^= 0x01
	for _, v := range [][]byte{nil, {1}, {9, '{', '}'}, {1, 'x', 'y'}, {3, 0, 0, 0, 0}, flipped,
		sealStored(stateKey("task", "t2"), false, good[5:]), // another key's value
		sealStored(key, false, []byte(`{"rev":`))} {
		_, err := decodeStored(key, v)
		assert.ErrorIs(t, err, ErrCorrupt)
		assert.ErrorContains(t, err, "task/t1")
	}
	st, err := decodeStored(key, good)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), st.Rev)
	st, err = decodeStored(key, []byte(`{"kind":"task","id":"t1","rev":4}`)[0:0])
	assert.Error(t, err)
	st, err = decodeStored(key, append([]byte{tagTombstone}, `{"kind":"task","id":"t1","rev":4}`...))
	require.NoError(t, err, "a value written before checksums")
	assert.True(t, st.tombstone)
	assert.Equal(t, uint64(4), st.Rev)
	assert.Equal(t, `"\x00"`, recordName([]byte{0}))
	_, err = decodeOutbox([]byte("k"), []byte{0xff})
	assert.Error(t, err)
	_, err = decodeOutbox([]byte("k"), []byte{0x02, 'a', 0x00, 0x02, 'b', 0x00, 0x02, 'c', 0x00})
	assert.Error(t, err, "data must be bytes")
	assert.True(t, errors.Is(ErrTimeout, ErrTimeout))
}

// Requests that arrive while Run is stopping are answered 503, which the
// client reports as ErrUnavailable.
func TestService_Handlers_Stopping(t *testing.T) {
	b := bustest.Run(t)
	svc, err := New(Config{}, b.Conn(), kvtest.NewBolt(t), bustest.Logger(t))
	require.NoError(t, err)
	ms, err := svc.startMicro()
	require.NoError(t, err)
	defer func() { _ = ms.Stop() }()
	svc.stopRequests()

	c, err := NewClient(bustest.Connect(t, b), "agent-1")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Status(ctx)
	assert.ErrorIs(t, err, ErrUnavailable)
	_, err = c.Get(ctx, "task", "t1", 0)
	assert.ErrorIs(t, err, ErrUnavailable)
	_, err = c.List(ctx, "task", ListOptions{})
	assert.ErrorIs(t, err, ErrUnavailable)
}

// The watermark value is 8 bytes of sequence and 8 of stored time; an
// unknown time (a store from before it was kept) stays out rather than be
// written as a time nobody stored.
func TestEncodeApplied(t *testing.T) {
	store := kvtest.NewBolt(t)
	at := time.Unix(1_800_000_000, 123)
	for _, c := range []struct {
		at   time.Time
		size int
	}{{at, 16}, {time.Time{}, 8}} {
		v := encodeApplied(42, c.at)
		require.Len(t, v, c.size)
		require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error { return tx.Set(appliedKey("S"), v) }))
		require.NoError(t, store.View(context.Background(), func(tx kv.ReadTxn) error {
			seq, got, err := getAppliedAt(tx, "S")
			require.NoError(t, err)
			assert.Equal(t, uint64(42), seq)
			assert.True(t, got.Equal(c.at), "%v != %v", got, c.at)
			return nil
		}))
	}
}

func TestGeneration_IDs(t *testing.T) {
	created := time.Unix(0, 1764547200123456789)
	base := "1764547200123456789"
	for cur, want := range map[string]string{"": base, base: base + ".1", base + ".1": base + ".2", base + ".x": base, "17": base} {
		assert.Equal(t, want, nextGeneration(cur, created), "after %q", cur)
	}
	assert.Equal(t, "state-7", commandMsgID("", 7))
	assert.Equal(t, "state-"+base+"-7", commandMsgID(base, 7))
	assert.Equal(t, "state-expire-task.t1.3", expiryMsgID("", "task", "t1", 3))
	assert.Equal(t, "state-expire-"+base+"-task.t1.3", expiryMsgID(base, "task", "t1", 3))
	assert.Equal(t, "state-lost-4-6", lostMsgID("", 4, 6))
	assert.Equal(t, "state-lost-"+base+"-4-6", lostMsgID(base, 4, 6))
}

// commitCorrupt commits the rejection of a command whose transaction failed
// on a damaged page, the loss of the commands before it that the stream no
// longer holds, and the watermark, in one transaction.
func TestLoop_CommitCorrupt(t *testing.T) {
	b := bustest.Run(t)
	store := kvtest.NewBolt(t)
	svc, err := New(Config{}, b.Conn(), store, bustest.Logger(t))
	require.NoError(t, err)
	l := &loop{s: svc, cfg: svc.cfg, log: svc.log, gen: "g", applied: 2}
	im := &inMsg{seq: 5, time: time.Unix(100, 0).UTC(), subject: "codi.state.cmd.task.t1.agent-1", data: []byte(`{"op":"merge"}`)}
	res, err := l.commitCorrupt(context.Background(), im, kv.ErrCorrupt)
	require.NoError(t, err)
	require.Len(t, res.outcomes, 2)
	assert.Equal(t, StatusLost, res.outcomes[0].status)
	assert.Equal(t, ReasonCorrupt, res.outcomes[1].reason)
	assert.Contains(t, string(res.outcomes[1].evt), `"reason":"corrupt"`)
	require.NoError(t, store.View(context.Background(), func(tx kv.ReadTxn) error {
		seq, err := getApplied(tx, svc.cfg.Stream)
		assert.Equal(t, uint64(5), seq)
		return err
	}))
	assert.Equal(t, 2, outboxCount(t, store))

	require.NoError(t, store.Close())
	_, err = l.commitCorrupt(context.Background(), im, kv.ErrCorrupt)
	assert.ErrorIs(t, err, kv.ErrClosed)
}

func outboxCount(t *testing.T, store kv.Store) int {
	t.Helper()
	n := 0
	require.NoError(t, store.View(context.Background(), func(tx kv.ReadTxn) error {
		b, e := kv.Tuple{prefixOutbox}.Range()
		kvs, err := tx.GetRange(b, e, kv.RangeOptions{})
		n = len(kvs)
		return err
	}))
	return n
}

// A damage that every transaction reads (here the first page of the lease
// index, which each batch reads for the next expiry) cannot be isolated to
// one command: process tries the batch, then its first command alone,
// then that command's rejection, and returns an error naming the damage,
// never a panic.
func TestLoop_Process_DamageEveryTransactionReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	store, err := boltkv.Open(path, boltkv.Options{NoSync: true})
	require.NoError(t, err)
	require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
		for i := range 3000 {
			if err := tx.Set(leaseKey(time.Unix(int64(i), 0), "task", "t"), []byte{}); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, store.Close())
	first := leaseKey(time.Unix(0, 0), "task", "t")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	ps := os.Getpagesize()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	for off := 2 * ps; off+ps <= len(data); off += ps {
		if page := data[off : off+ps]; page[8] == 0x02 && bytes.Contains(page, first) {
			_, err := f.WriteAt([]byte{0x7f}, int64(off+8))
			require.NoError(t, err)
		}
	}
	require.NoError(t, f.Close())
	store, err = boltkv.Open(path, boltkv.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	b := bustest.Run(t)
	svc, err := New(Config{}, b.Conn(), store, bustest.Logger(t))
	require.NoError(t, err)
	l := &loop{s: svc, cfg: svc.cfg, log: svc.log, gen: "g"}
	batch := []*inMsg{
		{seq: 1, time: time.Unix(100, 0).UTC(), subject: "codi.state.cmd.task.a.agent-1", data: []byte(`{"op":"put"}`)},
		{seq: 2, time: time.Unix(100, 0).UTC(), subject: "codi.state.cmd.task.b.agent-1", data: []byte(`{"op":"put"}`)},
	}
	_, err = l.apply(context.Background(), batch)
	require.ErrorIs(t, err, kv.ErrCorrupt)
	assert.ErrorContains(t, err, "seq=1")
}

// TestRecordEventSplice: the event of an applied put or merge, built by
// splicing the record's stored encoding into the event, is byte for byte
// json.Marshal of the Event with its Record (as decoded from the store),
// with leases, bindings, escaped characters and nested fields.
func TestRecordEventSplice(t *testing.T) {
	store := kvtest.NewBolt(t)
	t0 := time.Date(2026, 11, 30, 18, 0, 0, 123456789, time.UTC)
	for i, data := range []string{
		`{"op":"put","fields":{"a":"<b>&","n":1.50,"o":{"z":[1, 2],"a":null},"e":"\u00e9\u2028"},"ttl_ms":60000,"bind":true}`,
		`{"op":"merge","fields":{"a":null,"m":true,"holder":"agent-1"}}`,
		`{"op":"put","fields":{}}`,
		`{"op":"delete"}`,
	} {
		subj := "codi.state.cmd.task.T-1.agent-1"
		im := &inMsg{seq: uint64(i + 1), time: t0.Add(time.Duration(i) * time.Second), subject: subj, data: []byte(data)}
		require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
			p, err := planCommand(tx, im, uint64(i), "g1")
			require.NoError(t, err)
			o := p.outcomes[p.own]
			require.Equal(t, StatusApplied, o.status, string(o.evt))
			if err := applyPlan(tx, &p); err != nil {
				return err
			}
			st, ok, err := getStored(tx, "task", "T-1")
			require.NoError(t, err)
			require.True(t, ok)
			want := Event{Seq: im.seq, Status: StatusApplied, Rev: st.Rev, Actor: "agent-1", Op: o.op}
			if !st.tombstone {
				want.Record = &st.Record
			}
			require.Equal(t, string(mustJSON(want)), string(o.evt))
			return nil
		}))
	}
}

// A client's revision hints stay bounded: past maxRevHints it forgets the
// old ones and keeps the new.
func TestRevHints_Bounded(t *testing.T) {
	var h revHints
	for i := range maxRevHints + 10 {
		h.set("task", strconv.Itoa(i), uint64(i+1))
	}
	assert.LessOrEqual(t, len(h.m), maxRevHints)
	assert.Equal(t, uint64(maxRevHints+10), h.get("task", strconv.Itoa(maxRevHints+9)))
	assert.Zero(t, h.get("task", "0"), "forgotten")
	assert.Zero(t, h.get("agent", strconv.Itoa(maxRevHints+9)), "another kind")
}
