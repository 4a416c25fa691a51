package v1import_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/v1import"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Issue 18, A: an update the state service would refuse (a record above
// its size limit, a task id no token holds) is counted as refused with its
// offset and reason, and takes no good update with it; the old code
// dropped it silently (exit 0, the task missing, state_offset past it).
func TestImporter_Import_RefusedUpdatesCounted(t *testing.T) {
	c := startClients(t)
	path := filepath.Join(t.TempDir(), "codi.log")
	huge := `{"action":"STATUS_UPDATE","task":"M-0","status":"` + strings.Repeat("z", 600_000) + `"}` + "\n"
	longID := `{"action":"TASK_ASSIGN","task":"` + strings.Repeat("x", 300) + `","to":"a"}` + "\n"
	var good strings.Builder
	for i := range 40 {
		good.WriteString(`{"action":"TASK_ASSIGN","task":"G-` + strconv.Itoa(i) + `","to":"a"}` + "\n")
	}
	data := good.String() + huge + longID + good.String()
	require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
	sum, err := c.importer(t, v1import.Config{}).Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, 2, sum.Refused)
	assert.Equal(t, 80, sum.StateCommands, "every good update")
	assert.Equal(t, 0, sum.RefusedCommands)
	require.Len(t, sum.RefusedAt, 2)
	assert.Equal(t, int64(good.Len()), sum.RefusedAt[0].Offset)
	assert.Equal(t, "M-0", sum.RefusedAt[0].Task)
	assert.Contains(t, sum.RefusedAt[0].Reason, "above the state service's limit of 100000")
	assert.Equal(t, int64(good.Len()+len(huge)), sum.RefusedAt[1].Offset)
	assert.Contains(t, sum.RefusedAt[1].Reason, "the task id is no state id")
	for i := range 40 {
		rec, err := c.sc.Get(context.Background(), v1import.TaskKind, "G-"+strconv.Itoa(i), 0)
		require.NoError(t, err)
		assert.Equal(t, uint64(2), rec.Rev)
	}
	cp, err := c.sc.Get(context.Background(), v1import.CheckpointKind, sum.FileID, 0)
	require.NoError(t, err)
	assert.JSONEq(t, `2`, string(cp.Fields["refused"]), "a re-run says what was refused before")
	again, err := c.importer(t, v1import.Config{}).Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, 2, again.RefusedBefore)
}

// A state update without what it sets (TASK_ASSIGN without a string to,
// STATUS_UPDATE without a string status) or without a task (missing,
// empty, not a string) is counted as refused with its offset and reason,
// as the README promises of every update not applied; the old code
// skipped it without a word (a new user's inputs). Its audit event is
// kept, and the good updates around it are applied.
func TestImporter_Import_UpdatesWithoutTaskOrValueRefused(t *testing.T) {
	c := startClients(t)
	path := filepath.Join(t.TempDir(), "codi.log")
	bad := []struct{ line, task, why string }{
		{`{"action":"TASK_ASSIGN","task":"Q-1","from":"o"}`, "Q-1", "TASK_ASSIGN without an assignee"},
		{`{"action":"TASK_ASSIGN","task":"Q-2","to":7,"from":"o"}`, "Q-2", "TASK_ASSIGN without an assignee"},
		{`{"action":"STATUS_UPDATE","task":"Q-3","status":{"a":1}}`, "Q-3", "STATUS_UPDATE without a status"},
		{`{"action":"STATUS_UPDATE","task":"Q-4"}`, "Q-4", "STATUS_UPDATE without a status"},
		{`{"action":"TASK_ASSIGN","task":"","to":"a"}`, "", "TASK_ASSIGN without a task"},
		{`{"action":"TASK_ASSIGN","task":5,"to":"a"}`, "", "TASK_ASSIGN without a task"},
	}
	good := `{"action":"TASK_ASSIGN","task":"G-1","to":"a"}` + "\n"
	var data strings.Builder
	data.WriteString(good)
	offsets := make([]int64, len(bad))
	for i, b := range bad {
		offsets[i] = int64(data.Len())
		data.WriteString(b.line + "\n")
	}
	data.WriteString(`{"action":"TASK_ACK","task":"G-1"}` + "\n" + `{"action":"STATUS_UPDATE","task":"G-1","status":"done"}` + "\n")
	require.NoError(t, os.WriteFile(path, []byte(data.String()), 0o644))

	dry, err := c.importer(t, v1import.Config{DryRun: true}).Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, len(bad), dry.Refused, "a dry run counts them too")
	sum, err := c.importer(t, v1import.Config{}).Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, len(bad)+3, sum.Events, "every line's audit event")
	assert.Equal(t, 2, sum.StateCommands)
	assert.Equal(t, len(bad), sum.Refused)
	require.Len(t, sum.RefusedAt, v1import.MaxRefusals, "the first MaxRefusals listed")
	for i, b := range bad[:v1import.MaxRefusals] {
		assert.Equal(t, offsets[i], sum.RefusedAt[i].Offset, b.line)
		assert.Equal(t, b.task, sum.RefusedAt[i].Task, b.line)
		assert.Contains(t, sum.RefusedAt[i].Reason, b.why, b.line)
	}
	for _, id := range []string{"Q-1", "Q-2", "Q-3", "Q-4"} {
		_, err := c.sc.Get(context.Background(), v1import.TaskKind, id, 0)
		require.ErrorIs(t, err, state.ErrNotFound, id)
	}
	rec, err := c.sc.Get(context.Background(), v1import.TaskKind, "G-1", 0)
	require.NoError(t, err)
	assert.JSONEq(t, `"done"`, string(rec.Fields["status"]))
	again, err := c.importer(t, v1import.Config{}).Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, len(bad), again.RefusedBefore)
}

// A copy of an imported log saved with a byte-order mark is the same log
// and is refused (a breaker's input: it was imported again, every event
// twice, and rolled a task back to the log's value); the refusal says
// that importing it anyway would import everything twice.
func TestImporter_Import_CopyWithAByteOrderMarkRefused(t *testing.T) {
	c := startClients(t)
	dir := t.TempDir()
	log := `{"action":"TASK_ASSIGN","task":"CR1","to":"old"}` + "\n" + `{"action":"TASK_ACK","task":"CR1"}` + "\n"
	plain, bom := filepath.Join(dir, "lf.log"), filepath.Join(dir, "bom.log")
	require.NoError(t, os.WriteFile(plain, []byte(log), 0o644))
	require.NoError(t, os.WriteFile(bom, []byte("\xef\xbb\xbf"+log), 0o644))
	first, err := c.importer(t, v1import.Config{}).Import(context.Background(), plain)
	require.NoError(t, err)
	_, err = c.importer(t, v1import.Config{}).Import(context.Background(), bom)
	require.ErrorIs(t, err, v1import.ErrNotSameFile)
	assert.Contains(t, err.Error(), "(id "+first.FileID+")")
	assert.Contains(t, err.Error(), "a byte-order mark, blank lines or other line endings added), it is imported already")
	assert.Len(t, c.imported(t, first.Imported), first.Imported, "the first import's events only")

	// A log that starts with a mark, imported first: the mark is no torn
	// fragment (it was counted unparseable, its event "recovered"), and the
	// first event is at its byte offset, 3.
	fresh := filepath.Join(dir, "fresh.log")
	require.NoError(t, os.WriteFile(fresh, []byte("\xef\xbb\xbf"+`{"action":"TASK_ASSIGN","task":"BOM-1","to":"a"}`+"\n"), 0o644))
	sum, err := c.importer(t, v1import.Config{}).Import(context.Background(), fresh)
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Events)
	assert.Zero(t, sum.Unparseable)
	assert.Zero(t, sum.Recovered)
	recs := c.imported(t, first.Imported+1)
	assert.Contains(t, string(recs[len(recs)-1].Data), `"offset":3,`)
}

// Issue 18, A: an update the import cannot foresee as refused (the record
// holds large fields others wrote) is sent alone, its outcome awaited and
// counted; the update in the same line and those around it are applied.
func TestImporter_Import_LargeUpdateRefusedByTheService(t *testing.T) {
	c := startClients(t)
	ctx := context.Background()
	_, err := c.sc.Apply(ctx, v1import.TaskKind, "BIG", state.Command{Op: state.OpMerge, Fields: map[string]any{"notes": strings.Repeat("n", 95_000)}})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "codi.log")
	first := `{"action":"TASK_ASSIGN","task":"T-1","to":"a"}` + "\n"
	data := first + `{"action":"STATUS_UPDATE","task":"BIG","status":"` + strings.Repeat("s", 8000) + `"}{"action":"TASK_ASSIGN","task":"T-2","to":"b"}` + "\n" +
		`{"action":"STATUS_UPDATE","task":"T-1","status":"done"}` + "\n"
	require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
	sum, err := c.importer(t, v1import.Config{}).Import(ctx, path)
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Refused)
	assert.Equal(t, 3, sum.StateCommands)
	require.Len(t, sum.RefusedAt, 1)
	assert.Equal(t, int64(len(first)), sum.RefusedAt[0].Offset)
	assert.Contains(t, sum.RefusedAt[0].Reason, "the state service refused it")
	rec, err := c.sc.Get(ctx, v1import.TaskKind, "T-2", 0)
	require.NoError(t, err)
	assert.JSONEq(t, `"b"`, string(rec.Fields["assignee"]))
	rec, err = c.sc.Get(ctx, v1import.TaskKind, "T-1", 0)
	require.NoError(t, err)
	assert.JSONEq(t, `"done"`, string(rec.Fields["status"]))
}

// Issue 18, A: a small update of a record others filled near the state
// service's limit: when the import starts, it is sent alone and counted
// as refused with its offset, the update before it applied; filled while
// the import runs, it aborts its command, which the import finds from the
// checkpoint's revision and counts instead of moving past it silently.
func TestImporter_Import_SmallUpdateOfAFullRecord(t *testing.T) {
	c := startClients(t)
	ctx := context.Background()
	fill := func(id string) {
		_, err := c.sc.Apply(ctx, v1import.TaskKind, id, state.Command{Op: state.OpMerge, Fields: map[string]any{"notes": strings.Repeat("n", 99_500)}})
		require.NoError(t, err)
	}
	fill("FULL")
	dir := t.TempDir()
	path := filepath.Join(dir, "codi.log")
	first := `{"action":"TASK_ASSIGN","task":"T-1","to":"a"}` + "\n"
	data := first + `{"action":"STATUS_UPDATE","task":"FULL","status":"` + strings.Repeat("s", 1000) + `"}` + "\n"
	require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
	sum, err := c.importer(t, v1import.Config{}).Import(ctx, path)
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Refused)
	assert.Equal(t, 0, sum.RefusedCommands)
	require.Len(t, sum.RefusedAt, 1)
	assert.Equal(t, v1import.Refusal{Offset: int64(len(first)), Task: "FULL", Reason: sum.RefusedAt[0].Reason}, sum.RefusedAt[0])
	assert.Contains(t, sum.RefusedAt[0].Reason, "above the limit of 100000")
	_, err = c.sc.Get(ctx, v1import.TaskKind, "T-1", 0)
	require.NoError(t, err)

	// Filled after the import started (once it has read 64 KiB).
	later := filepath.Join(dir, "later.log")
	pad := `{"action":"NOTE","pad":"` + strings.Repeat("p", 70_000) + `"}` + "\n"
	data = `{"action":"TASK_ASSIGN","task":"T-2","to":"a"}` + "\n" + pad +
		`{"action":"STATUS_UPDATE","task":"LATER","status":"` + strings.Repeat("s", 1000) + `"}` + "\n"
	require.NoError(t, os.WriteFile(later, []byte(data), 0o644))
	filled := false
	sum, err = c.importer(t, v1import.Config{Progress: func(read, _ int64) {
		if !filled && read > 64<<10 {
			fill("LATER")
			filled = true
		}
	}}).Import(ctx, later)
	require.NoError(t, err)
	assert.Equal(t, 1, sum.RefusedCommands)
	cp, err := c.sc.Get(ctx, v1import.CheckpointKind, sum.FileID, 0)
	require.NoError(t, err)
	assert.JSONEq(t, `1`, string(cp.Fields["refused"]))
}

// Issue 18, B: a line too large for one message (NATS's max_payload)
// becomes an audit record that fits (its offset, length, SHA-256 and
// head), counted as oversized; the lines around it are imported. The old
// code failed with "maximum payload exceeded" on every run.
func TestImporter_Import_OversizedLine(t *testing.T) {
	c := startClients(t)
	path := filepath.Join(t.TempDir(), "codi.log")
	first := `{"action":"TASK_ASSIGN","task":"T-1","to":"a"}` + "\n"
	big := `{"action":"NOTE","pad":"` + strings.Repeat("p", 1_500_000) + `"}`
	// Lines just under the limit: a bulk of them must split.
	near := `{"action":"NOTE","pad":"` + strings.Repeat("q", 400_000) + `"}` + "\n"
	data := first + big + "\n" + near + near + near + `{"action":"STATUS_UPDATE","task":"T-1","status":"done"}` + "\n"
	require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
	sum, err := c.importer(t, v1import.Config{}).Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Oversized)
	assert.Equal(t, 6, sum.Imported)
	var found bool
	for _, r := range c.imported(t, 6) {
		var p struct {
			Offset     int64  `json:"offset"`
			Oversized  bool   `json:"oversized"`
			Length     int    `json:"length"`
			SHA256     string `json:"sha256"`
			HeadBase64 []byte `json:"head_base64"`
		}
		require.NoError(t, json.Unmarshal(r.Data, &p))
		if !p.Oversized {
			continue
		}
		found = true
		h := sha256.Sum256([]byte(big))
		assert.Equal(t, int64(len(first)), p.Offset)
		assert.Equal(t, len(big), p.Length)
		assert.Equal(t, hex.EncodeToString(h[:]), p.SHA256)
		assert.Equal(t, []byte(big[:1024]), p.HeadBase64)
		assert.Equal(t, "codi.audit.log.v1-import.v1.NOTE", r.Subject)
	}
	assert.True(t, found)
	rec, err := c.sc.Get(context.Background(), v1import.TaskKind, "T-1", 0)
	require.NoError(t, err)
	assert.JSONEq(t, `"done"`, string(rec.Fields["status"]))

	// A dry run counts the same.
	dry, err := v1import.New(v1import.Config{DryRun: true}, nil, nil)
	require.NoError(t, err)
	ds, err := dry.Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, 1, ds.Oversized)
	_, err = v1import.New(v1import.Config{MaxPayload: 100}, c.ac, c.sc)
	require.ErrorIs(t, err, v1import.ErrConfig)
}

// Issue 18, C: a file's id is stable as v1 appends to it: a first line
// without its newline gives no id (nothing imported, said so), and the
// newline v1 writes later does not change the id.
func TestImporter_Import_IDStableAsTheFirstLineEnds(t *testing.T) {
	c := startClients(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ph.jsonl")
	line := `{"ts":"2026-07-03T00:00:00Z","action":"TASK_ASSIGN","from":"o","to":"a","task":"PH-0"}`
	require.NoError(t, os.WriteFile(path, []byte(line), 0o644))
	im := c.importer(t, v1import.Config{})
	sum, err := im.Import(ctx, path)
	require.NoError(t, err)
	assert.True(t, sum.NoFirstLine)
	assert.Equal(t, 0, sum.Imported)
	appendTo(t, path, "\n")
	sum, err = im.Import(ctx, path)
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Imported)
	id := sum.FileID
	appendTo(t, path, "\n")
	sum, err = im.Import(ctx, path)
	require.NoError(t, err)
	assert.Equal(t, id, sum.FileID)
	assert.Equal(t, 0, sum.Imported)
	rec, err := c.sc.Get(ctx, v1import.TaskKind, "PH-0", 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rec.Rev)

	// v1 appending another event to an unterminated first line.
	spliced := filepath.Join(t.TempDir(), "spliced.jsonl")
	require.NoError(t, os.WriteFile(spliced, []byte(`{"action":"TASK_ACK","task":"S-0"}`), 0o644))
	sum, err = im.Import(ctx, spliced)
	require.NoError(t, err)
	assert.True(t, sum.NoFirstLine)
	appendTo(t, spliced, `{"action":"TASK_ASSIGN","task":"S-0","to":"a"}`+"\n")
	sum, err = im.Import(ctx, spliced)
	require.NoError(t, err)
	assert.Equal(t, 2, sum.Imported)
	id = sum.FileID
	appendTo(t, spliced, `{"action":"TASK_ACK","task":"S-1"}`+"\n")
	sum, err = im.Import(ctx, spliced)
	require.NoError(t, err)
	assert.Equal(t, id, sum.FileID)
	assert.Equal(t, 1, sum.Imported)
}

// Issue 18, C: blank lines are no identity: a file of blank lines has no
// id, and logs starting with blank lines are told apart by their first
// event (the old code refused every such log after the first).
func TestImporter_Import_BlankFirstLines(t *testing.T) {
	c := startClients(t)
	ctx := context.Background()
	dir := t.TempDir()
	blank, a, b := filepath.Join(dir, "blank.jsonl"), filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	require.NoError(t, os.WriteFile(blank, []byte("\n\n\n"), 0o644))
	require.NoError(t, os.WriteFile(a, []byte("\n"+`{"action":"TASK_ASSIGN","task":"A-1","to":"a"}`+"\n"), 0o644))
	require.NoError(t, os.WriteFile(b, []byte("\n \n"+`{"action":"TASK_ASSIGN","task":"B-1","to":"b"}`+"\n"), 0o644))
	im := c.importer(t, v1import.Config{})
	sum, err := im.Import(ctx, blank)
	require.NoError(t, err)
	assert.True(t, sum.NoFirstLine)
	for _, p := range []string{a, b} {
		sum, err = im.Import(ctx, p)
		require.NoError(t, err, p)
		assert.Equal(t, 1, sum.Imported, p)
	}
}

// Issue 18, C: a file imported by the code before (its checkpoint and
// event ids under the old id: the SHA-256 of the first line with its
// newline) is not imported again: its checkpoint is found and its id kept.
func TestImporter_Import_OldIDRuleCheckpoint(t *testing.T) {
	c := startClients(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "codi.log")
	l1 := `{"action":"TASK_ASSIGN","task":"O-1","to":"a"}` + "\n"
	l2 := `{"action":"STATUS_UPDATE","task":"O-1","status":"done"}` + "\n"
	require.NoError(t, os.WriteFile(path, []byte(l1+l2), 0o644))
	h := sha256.Sum256([]byte(l1))
	oldID := hex.EncodeToString(h[:8])
	prefix := sha256.Sum256([]byte(l1 + l2))
	n := int64(len(l1 + l2))
	_, err := c.sc.Apply(ctx, v1import.CheckpointKind, oldID, state.Command{Op: state.OpMerge, Fields: map[string]any{
		"file": path, "offset": n, "lines": 2, "prefix_sha256": hex.EncodeToString(prefix[:]),
		"state_offset": n, "state_prefix_sha256": hex.EncodeToString(prefix[:])}})
	require.NoError(t, err)
	appendTo(t, path, `{"action":"TASK_ACK","task":"O-1"}`+"\n")
	sum, err := c.importer(t, v1import.Config{}).Import(ctx, path)
	require.NoError(t, err)
	assert.Equal(t, oldID, sum.FileID)
	assert.Equal(t, 2, sum.Skipped)
	assert.Equal(t, 1, sum.Imported)
	assert.Equal(t, 0, sum.StateCommands)
	recs := c.imported(t, 1)
	require.Len(t, recs, 1)
	assert.Equal(t, "v1-"+oldID+"-"+strconv.Itoa(int(n)), recs[0].MsgID)

	// Another log with that first line is refused, as under the old rule.
	other := filepath.Join(t.TempDir(), "other.log")
	require.NoError(t, os.WriteFile(other, []byte(l1+`{"action":"TASK_ACK","task":"X"}`+"\n"+l2+l2), 0o644))
	_, err = c.importer(t, v1import.Config{}).Import(ctx, other)
	require.ErrorIs(t, err, v1import.ErrNotSameFile)
	assert.Contains(t, err.Error(), "(id "+oldID+") starts like "+path)

	// One starting with a blank line had the old id of every such log:
	// a checkpoint under it whose bytes differ is another log's.
	blankOld := sha256.Sum256([]byte("\n"))
	_, err = c.sc.Apply(ctx, v1import.CheckpointKind, hex.EncodeToString(blankOld[:8]), state.Command{Op: state.OpMerge, Fields: map[string]any{
		"file": "blank.jsonl", "offset": 3, "lines": 3, "prefix_sha256": "00"}})
	require.NoError(t, err)
	blank := filepath.Join(t.TempDir(), "blank-first.log")
	require.NoError(t, os.WriteFile(blank, []byte("\n"+l1), 0o644))
	sum, err = c.importer(t, v1import.Config{}).Import(ctx, blank)
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Imported)
}

// Issue 18, D: an interrupted import says so, how far it got and that a
// re-run continues; the error still matches the context's.
func TestImporter_Import_InterruptedSaysWhere(t *testing.T) {
	c := startClients(t)
	path := updatesLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	im := c.importer(t, v1import.Config{CheckpointLines: 10, Progress: func(read, _ int64) {
		if read > 100_000 {
			cancel()
		}
	}})
	stopped, err := im.Import(ctx, path)
	require.ErrorIs(t, err, v1import.ErrInterrupted)
	require.ErrorIs(t, err, context.Canceled)
	assert.Regexp(t, `stopped at byte \d+; the checkpoint is at byte [1-9]\d* \(\d+ lines\): run the import again to continue from there`, err.Error())
	c.appliedAll(t, stopped.FileID) // the checkpoint was stored; a re-run reads it once applied
	sum, err := c.importer(t, v1import.Config{}).Import(context.Background(), path)
	require.NoError(t, err)
	assert.Greater(t, sum.Skipped, 0)
	assert.Equal(t, 300, sum.Lines)
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(s)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// Issue 18, B: the message limit is Config.MaxPayload (the connection's):
// bulks of large lines split below it, a line above it is oversized.
func TestImporter_Import_BulksBelowMaxPayload(t *testing.T) {
	c := startClients(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "codi.log")
	var b strings.Builder
	for range 6 {
		b.WriteString(`{"action":"NOTE","pad":"` + strings.Repeat("q", 20_000) + `"}` + "\n")
	}
	b.WriteString(`{"action":"NOTE","pad":"` + strings.Repeat("q", 70_000) + `"}` + "\n")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	const limit = 64 << 10
	sum, err := c.importer(t, v1import.Config{MaxPayload: limit}).Import(ctx, path)
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Oversized)
	assert.Len(t, c.imported(t, 7), 7)
	st, err := c.js.Stream(ctx, "CODI_AUDIT")
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		require.NoError(t, err)
		hdr := 0
		for k, vs := range m.Header {
			for _, v := range vs {
				hdr += len(k) + len(v) + 4
			}
		}
		assert.LessOrEqual(t, len(m.Subject)+hdr+len(m.Data), limit, "message %d", seq)
	}
}
