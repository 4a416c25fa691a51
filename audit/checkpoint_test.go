package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/codi2/codi2/internal/kv"
)

// checkpointHarness runs the service with a checkpoint key in its own
// directory (outside the store) and a short checkpoint interval.
func checkpointHarness(t *testing.T) (*harness, string) {
	t.Helper()
	key := filepath.Join(t.TempDir(), "audit.key")
	return newHarness(t, Config{CheckpointKeyFile: key, CheckpointInterval: 20 * time.Millisecond}), key
}

// waitCheckpoint waits until the log holds a checkpoint of seq at least
// seq and returns the newest checkpoint record.
func (h *harness) waitCheckpoint(seq uint64) Record {
	h.t.Helper()
	var last Record
	require.Eventually(h.t, func() bool {
		recs := h.all(Query{Source: CheckpointSource, Category: CheckpointCategory})
		if len(recs) == 0 {
			return false
		}
		last = recs[len(recs)-1]
		cp, ok, err := recordCheckpoint(last, h.svc.verifiers)
		return err == nil && ok && cp.Seq >= seq
	}, 10*time.Second, 10*time.Millisecond, "no checkpoint of seq %d", seq)
	return last
}

// rechain rewrites the data of record seq in the store and recomputes
// every later record's hash and the head, as someone with write access to
// audit.db would: the hash chain alone still verifies.
func rechain(t *testing.T, store kv.Store, seq uint64, data []byte) {
	t.Helper()
	require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
		m, err := readMeta(tx)
		require.NoError(t, err)
		w := &writer{tx: tx}
		prev := m.anchor.Prev
		for s := m.anchor.FirstSeq; s <= m.head.Seq; s++ {
			raw, err := readRecord(tx, s)
			require.NoError(t, err)
			r, err := ParseRecord(raw)
			require.NoError(t, err)
			payload, err := r.Payload()
			require.NoError(t, err)
			if s == seq {
				payload = data
			}
			stored, hash := encodeRecord(s, r.Time.UnixNano(), encodeBody(r.Subject, r.Source, r.Category, r.MsgID, payload), prev)
			putRecord(w, s, stored)
			prev = hash
		}
		m.head.Hash = prev
		w.setJSON(keyHead, m.head)
		return w.err
	}))
}

// TestCheckpoint_RewriteAndRechainCaught is issue 11's input 8 online: a
// record rewritten in audit.db with every later hash and the head
// recomputed passes the hash chain, but not the signed checkpoints the
// service published before.
func TestCheckpoint_RewriteAndRechainCaught(t *testing.T) {
	h, key := checkpointHarness(t)
	acks := h.logN(10, "agent-1", "x")
	h.waitCommitted(acks[9].Sequence)
	cp := h.waitCheckpoint(10)
	res := h.verify(VerifyRequest{})
	require.True(t, res.OK, "%+v", res)
	assert.Positive(t, res.Checkpoints)
	_, err := os.Stat(key + ".pub")
	require.NoError(t, err, "the public key is written beside the private one")

	require.NoError(t, h.stop())
	rechain(t, h.store, 3, []byte(`{"i":"rewritten"}`))
	plain, err := (&Service{store: h.store, cfg: h.svc.cfg}).verify(context.Background(), VerifyRequest{})
	require.NoError(t, err)
	assert.True(t, plain.OK, "the chain alone does not see the rewrite")

	h.start()
	res = h.verify(VerifyRequest{})
	assert.False(t, res.OK)
	assert.Contains(t, res.Reason, "rewritten")
	assert.Less(t, res.BadSeq, cp.Seq)
	assert.GreaterOrEqual(t, res.BadSeq, uint64(3))
}

// A checkpoint record rewritten into one that does not open makes verify
// not OK at that record, with the reason, rather than fail with an error
// (found by TestCheckpoint_RewriteAndRechainCaught in a run where the
// record it rewrote was a checkpoint: verify answered 500).
func TestCheckpoint_ForgedCheckpointRecordCaught(t *testing.T) {
	h, _ := checkpointHarness(t)
	acks := h.logN(5, "agent-1", "x")
	h.waitCommitted(acks[4].Sequence)
	rec := h.waitCheckpoint(5)
	acks = h.logN(3, "agent-1", "y")
	h.waitCommitted(acks[2].Sequence)
	require.NoError(t, h.stop())
	rechain(t, h.store, rec.Seq, []byte(`{"note":"codi2 audit checkpoint\nforged\n"}`))
	h.start()
	res := h.verify(VerifyRequest{})
	assert.False(t, res.OK)
	assert.Equal(t, rec.Seq, res.BadSeq)
	assert.Contains(t, res.Reason, "is a checkpoint that does not open")
	assert.Contains(t, res.Reason, "bad checkpoint")

	// A range that leaves the record out does not see it.
	res = h.verify(VerifyRequest{ToSeq: rec.Seq - 1})
	assert.True(t, res.OK, "%+v", res)
}

// TestCheckpoint_Offline is issue 11's input 8 offline: an export of the
// rewritten log verifies as a chain, and fails against the checkpoints it
// holds and against checkpoints exported before the rewrite.
func TestCheckpoint_Offline(t *testing.T) {
	h, key := checkpointHarness(t)
	acks := h.logN(10, "agent-1", "x")
	h.waitCommitted(acks[9].Sequence)
	h.waitCheckpoint(10)
	pub, err := os.ReadFile(key + ".pub")
	require.NoError(t, err)
	known, err := NewCheckpointVerifier(string(pub))
	require.NoError(t, err)
	export := func() []byte {
		var b bytes.Buffer
		_, err := Export(context.Background(), h.nc, &b, Query{})
		require.NoError(t, err)
		return b.Bytes()
	}
	before := export()
	cps, err := ReadCheckpoints(bytes.NewReader(before), known)
	require.NoError(t, err)
	require.NotEmpty(t, cps)
	res, err := VerifyExportCheckpoints(bytes.NewReader(before), cps)
	require.NoError(t, err)
	require.True(t, res.OK, "%+v", res)
	assert.Equal(t, len(cps), res.Checkpoints)
	// A checkpoint given twice (an export's own and an outside copy) is
	// one checkpoint; so is the log's record and the stream's newest.
	res, err = VerifyExportCheckpoints(bytes.NewReader(before), append(slices.Clone(cps), cps...))
	require.NoError(t, err)
	assert.Equal(t, len(cps), res.Checkpoints, "each counted once")
	assert.Equal(t, len(cps), h.verify(VerifyRequest{}).Checkpoints, "online: the log's checkpoints, each once")

	require.NoError(t, h.stop())
	rechain(t, h.store, 3, []byte(`{"i":"rewritten"}`))
	h.start()
	after := export()
	res, err = VerifyExport(bytes.NewReader(after))
	require.NoError(t, err)
	assert.True(t, res.OK, "the chain alone does not see the rewrite")

	own, err := ReadCheckpoints(bytes.NewReader(after), known)
	require.NoError(t, err)
	for _, set := range [][]Checkpoint{cps, own} {
		res, err = VerifyExportCheckpoints(bytes.NewReader(after), set)
		require.NoError(t, err)
		assert.False(t, res.OK)
		assert.Contains(t, res.Reason, "rewritten")
	}

	// Checkpoints that no record of the export covers vouch for nothing.
	res, err = VerifyExportCheckpoints(bytes.NewReader(after), nil)
	require.NoError(t, err)
	assert.False(t, res.OK)
	assert.Contains(t, res.Reason, "no signed checkpoint")

	// Another key's signatures are refused.
	other, err := NewCheckpointVerifier(strings.TrimSpace(otherPub(t)))
	require.NoError(t, err)
	_, err = ReadCheckpoints(bytes.NewReader(after), other)
	assert.ErrorIs(t, err, ErrBadCheckpoint)
}

func otherPub(t *testing.T) string {
	t.Helper()
	_, v, err := LoadCheckpointKey(filepath.Join(t.TempDir(), "other.key"))
	require.NoError(t, err)
	return v
}

func TestOpenCheckpoint_Malformed(t *testing.T) {
	signer, vkey, err := LoadCheckpointKey(filepath.Join(t.TempDir(), "k"))
	require.NoError(t, err)
	known, err := NewCheckpointVerifier(vkey)
	require.NoError(t, err)
	good, err := SignCheckpoint(signer, 7, strings.Repeat("ab", 32), time.Now().UnixNano())
	require.NoError(t, err)
	cp, err := OpenCheckpoint(good.Note, known)
	require.NoError(t, err)
	assert.Equal(t, uint64(7), cp.Seq)

	for _, text := range []string{"codi2-audit\n7\nnothex\ntime 2026-01-01T00:00:00Z\n", "other\n7\n" + strings.Repeat("ab", 32) + "\ntime x\n",
		"codi2-audit\n0\n" + strings.Repeat("ab", 32) + "\ntime 2026-01-01T00:00:00Z\n", "codi2-audit\n7\n" + strings.Repeat("ab", 32) + "\ntime never\n"} {
		msg, err := noteSign(signer, text)
		require.NoError(t, err)
		_, err = OpenCheckpoint(msg, known)
		assert.ErrorIs(t, err, ErrBadCheckpoint, text)
	}
	tampered := strings.Replace(good.Note, "\n7\n", "\n8\n", 1)
	_, err = OpenCheckpoint(tampered, known)
	assert.ErrorIs(t, err, ErrBadCheckpoint)
	_, err = NewCheckpointVerifier("junk")
	assert.ErrorIs(t, err, ErrBadCheckpoint)

	// The key is reused, not replaced, on the next start.
	dir := t.TempDir()
	_, v1, err := LoadCheckpointKey(filepath.Join(dir, "k"))
	require.NoError(t, err)
	_, v2, err := LoadCheckpointKey(filepath.Join(dir, "k"))
	require.NoError(t, err)
	assert.Equal(t, v1, v2)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad"), []byte("junk"), 0o600))
	_, _, err = LoadCheckpointKey(filepath.Join(dir, "bad"))
	assert.ErrorIs(t, err, ErrConfig)
}

func noteSign(signer note.Signer, text string) (string, error) {
	b, err := note.Sign(&note.Note{Text: text}, signer)
	return string(b), err
}

// FuzzOpenCheckpoint feeds OpenCheckpoint arbitrary notes, verified with
// the fixed key the committed seeds were signed with: it never panics, and
// whatever it accepts is a well-formed checkpoint that signs again to the
// same fields.
func FuzzOpenCheckpoint(f *testing.F) {
	skey, vkey, err := note.GenerateKey(bytes.NewReader(make([]byte, 64)), CheckpointKeyName)
	require.NoError(f, err)
	signer, err := note.NewSigner(skey)
	require.NoError(f, err)
	known, err := NewCheckpointVerifier(vkey)
	require.NoError(f, err)
	good, err := SignCheckpoint(signer, 42, strings.Repeat("0f", 32), 1764547200000000000)
	require.NoError(f, err)
	f.Add(good.Note)
	f.Add(strings.Replace(good.Note, "time ", "time  ", 1))
	f.Fuzz(func(t *testing.T, msg string) {
		cp, err := OpenCheckpoint(msg, known)
		if err != nil {
			if !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("error %v does not wrap ErrBadCheckpoint", err)
			}
			return
		}
		if cp.Seq == 0 || !isHex64(cp.Hash) {
			t.Fatalf("accepted %+v", cp)
		}
		again, err := SignCheckpoint(signer, cp.Seq, cp.Hash, cp.Time.UnixNano())
		require.NoError(t, err)
		back, err := OpenCheckpoint(again.Note, known)
		require.NoError(t, err)
		if back.Seq != cp.Seq || back.Hash != cp.Hash || !back.Time.Equal(cp.Time) {
			t.Fatalf("%+v signs again as %+v", cp, back)
		}
		// A records file holding the note as a checkpoint event reads back.
		data, _ := json.Marshal(checkpointEvent{Seq: cp.Seq, Hash: cp.Hash, Note: msg})
		subj := "codi.audit.log." + CheckpointSource + "." + CheckpointCategory
		raw, _ := encodeRecord(1, 1, encodeBody(subj, CheckpointSource, CheckpointCategory, "", data), GenesisPrev)
		cps, err := ReadCheckpoints(bytes.NewReader(raw), known)
		require.NoError(t, err)
		require.Len(t, cps, 1)
	})
}
