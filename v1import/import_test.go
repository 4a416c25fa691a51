package v1import_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/server"
	"github.com/codi2/codi2/internal/v1sim"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/v1import"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type clients struct {
	ac  *audit.Client
	sc  *state.Client
	js  jetstream.JetStream
	url string
}

func startClients(t testing.TB) clients {
	t.Helper()
	return startClientsWith(t, server.Config{})
}

// startClientsWith runs a whole server with cfg (its data directory and
// listener made here) and returns clients of it.
func startClientsWith(t testing.TB, cfg server.Config) clients {
	t.Helper()
	cfg.DataDir, cfg.NATSListen = t.TempDir(), "127.0.0.1:-1"
	s, err := server.Start(context.Background(), cfg, bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	nc, err := nats.Connect(s.Bus().ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	sc, err := state.NewClient(nc, v1import.DefaultSource)
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return clients{ac, sc, js, s.Bus().ClientURL()}
}

func (c clients) importer(t testing.TB, cfg v1import.Config) *v1import.Importer {
	t.Helper()
	im, err := v1import.New(cfg, c.ac, c.sc)
	require.NoError(t, err)
	return im
}

// imported is every v1-import audit record, once the log holds n of them.
func (c clients) imported(t testing.TB, n int) []audit.Record {
	t.Helper()
	var recs []audit.Record
	require.Eventually(t, func() bool {
		recs = recs[:0]
		q := audit.Query{Source: v1import.DefaultSource, Limit: 1000}
		for {
			res, err := c.ac.Query(context.Background(), q)
			if err != nil {
				return false
			}
			recs = append(recs, res.Records...)
			if res.NextAfterSeq == 0 || len(res.Records) == 0 {
				break
			}
			q.AfterSeq = res.NextAfterSeq
		}
		return len(recs) >= n
	}, 60*time.Second, 50*time.Millisecond)
	return recs
}

// lines returns the offsets of the file's newline-terminated lines.
func lines(t testing.TB, path string) (offs []int64, text [][]byte) {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var off int64
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		offs, text = append(offs, off), append(text, b[:i])
		off += int64(i + 1)
		b = b[i+1:]
	}
	return offs, text
}

func TestImporter_Import_V1SimLog(t *testing.T) {
	c := startClients(t)
	dir := t.TempDir()
	res, err := v1sim.RunWrites(context.Background(), v1sim.Config{Dir: dir, Writers: 5, EventsPerWriter: 2000, Mode: v1sim.Buffered})
	require.NoError(t, err)
	integrity, err := v1sim.Verify(res.Path, v1sim.Config{Dir: dir, Writers: 5, EventsPerWriter: 2000})
	require.NoError(t, err)
	t.Logf("v1 log: %+v", integrity)

	sum, err := c.importer(t, v1import.Config{CheckpointLines: 3000}).Import(context.Background(), res.Path)
	require.NoError(t, err)
	t.Logf("import: %+v", sum)
	assert.Equal(t, integrity.Lines, sum.Lines)
	assert.Equal(t, sum.Events+sum.Unparseable, sum.Imported)
	assert.GreaterOrEqual(t, sum.Events, integrity.Parsed, "every line that parses, and events recovered from torn ones")

	recs := c.imported(t, sum.Imported)
	require.Len(t, recs, sum.Imported)
	byID := map[string]audit.Record{}
	for _, r := range recs {
		_, dup := byID[r.MsgID]
		require.False(t, dup, "imported twice: %s", r.MsgID)
		byID[r.MsgID] = r
	}
	// Every intact line (one JSON object) is in the log once, as it was,
	// under its offset.
	offs, text := lines(t, res.Path)
	intact := 0
	for i, line := range text {
		var v map[string]any
		if json.Unmarshal(line, &v) != nil {
			continue
		}
		intact++
		r, ok := byID["v1-"+sum.FileID+"-"+strconv.FormatInt(offs[i], 10)]
		require.True(t, ok, "line at %d not imported: %s", offs[i], line)
		var p struct {
			Offset int64           `json:"offset"`
			Line   json.RawMessage `json:"line"`
		}
		require.NoError(t, json.Unmarshal(r.Data, &p))
		assert.Equal(t, offs[i], p.Offset)
		assert.JSONEq(t, string(line), string(p.Line))
	}
	assert.GreaterOrEqual(t, intact, integrity.Parsed)
	// Unparseable fragments are kept byte for byte, with their offset.
	frags := 0
	for _, r := range recs {
		if r.Subject == "codi.audit.log.v1-import.v1.unparseable" {
			frags++
			assert.Contains(t, string(r.Data), `"line_base64":"`)
		}
	}
	assert.Equal(t, sum.Unparseable, frags)

	// The state: the last status update of each task, in file order.
	rec, err := c.sc.Get(context.Background(), v1import.TaskKind, "ADR-000", 0)
	require.NoError(t, err)
	assert.Contains(t, rec.Fields, "status")
	assert.Contains(t, rec.Fields, "assignee")

	// A second import adds nothing.
	again, err := c.importer(t, v1import.Config{}).Import(context.Background(), res.Path)
	require.NoError(t, err)
	assert.Equal(t, 0, again.Imported)
	assert.Equal(t, 0, again.StateCommands)
	assert.Equal(t, sum.Lines, again.Skipped)
	assert.Len(t, c.imported(t, sum.Imported), sum.Imported)
}

func TestImporter_Import_GrowingFileAndPartialLine(t *testing.T) {
	c := startClients(t)
	path := filepath.Join(t.TempDir(), "codi.log")
	l1 := `{"ts":"t1","action":"TASK_ASSIGN","from":"o","to":"agent-1","task":"T-1"}` + "\n"
	l2 := `{"ts":"t2","action":"STATUS_UPDATE","from":"agent-1","task":"T-1","status":"in_progress"}` + "\n"
	partial := `{"ts":"t3","action":"STATUS_UPD`
	require.NoError(t, os.WriteFile(path, []byte(l1+l2+partial), 0o644))
	im := c.importer(t, v1import.Config{})
	sum, err := im.Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, 2, sum.Lines)
	assert.Equal(t, 1, sum.Partial, "the unfinished line is left for later")
	assert.Equal(t, 2, sum.StateCommands)
	rec, err := c.sc.Get(context.Background(), v1import.TaskKind, "T-1", 0)
	require.NoError(t, err)
	assert.JSONEq(t, `"in_progress"`, string(rec.Fields["status"]))
	assert.JSONEq(t, `"agent-1"`, string(rec.Fields["assignee"]))

	// v1 finishes the line and appends another: only they are imported.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`ATE","from":"agent-1","task":"T-1","status":"done"}` + "\n" + "garbage \xff\n" + `{"action":"TASK_ACK","task":"T-1"}`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	sum, err = im.Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, 5, sum.Lines)
	assert.Equal(t, 2, sum.Skipped)
	assert.Equal(t, 3, sum.Imported)
	assert.Equal(t, 1, sum.Unparseable)
	assert.Equal(t, 1, sum.StateCommands)
	assert.Equal(t, 0, sum.Partial, "a complete event without its newline is imported")
	rec, err = c.sc.Get(context.Background(), v1import.TaskKind, "T-1", 0)
	require.NoError(t, err)
	assert.JSONEq(t, `"done"`, string(rec.Fields["status"]))
	c.imported(t, 5)
}

func TestImporter_Import_DryRun(t *testing.T) {
	c := startClients(t)
	path := filepath.Join(t.TempDir(), "codi.log")
	require.NoError(t, os.WriteFile(path, []byte(`{"action":"STATUS_UPDATE","task":"T-1","status":"x"}`+"\nnot json\n\n"), 0o644))
	var progress int64
	im := c.importer(t, v1import.Config{DryRun: true, Progress: func(read, size int64) { progress = read }})
	sum, err := im.Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, v1import.Summary{File: path, FileID: sum.FileID, Lines: 3, Events: 1, Unparseable: 1, Imported: 2,
		StateCommands: 1, Bytes: sum.Bytes, Elapsed: sum.Elapsed, DryRun: true}, sum, "no applied or committed time: nothing was")
	assert.EqualValues(t, 63, progress)
	_, err = c.sc.Get(context.Background(), v1import.TaskKind, "T-1", 0)
	require.ErrorIs(t, err, state.ErrNotFound, "a dry run publishes nothing")
	_, err = c.sc.Get(context.Background(), v1import.CheckpointKind, sum.FileID, 0)
	require.ErrorIs(t, err, state.ErrNotFound, "nor a checkpoint")

	// Without clients (no server): the same counts.
	im, err = v1import.New(v1import.Config{DryRun: true}, nil, nil)
	require.NoError(t, err)
	again, err := im.Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, sum.Lines, again.Lines)
	assert.Equal(t, sum.Imported, again.Imported)
	assert.Equal(t, sum.StateCommands, again.StateCommands)
}

func TestNew_BadConfig(t *testing.T) {
	c := startClients(t)
	for _, cfg := range []v1import.Config{{Window: 5000}, {Window: -1}, {CheckpointLines: -1}, {BulkEvents: 1025}, {TxnOps: 1}, {TxnOps: 64}} {
		_, err := v1import.New(cfg, c.ac, c.sc)
		require.ErrorIs(t, err, v1import.ErrConfig)
	}
	_, err := v1import.New(v1import.Config{}, nil, c.sc)
	require.ErrorIs(t, err, v1import.ErrConfig)
	_, err = c.importer(t, v1import.Config{}).Import(context.Background(), "/nonexistent")
	require.Error(t, err)
}

func TestImporter_Import_OddEvents(t *testing.T) {
	c := startClients(t)
	path := filepath.Join(t.TempDir(), "codi.log")
	long := strings.Repeat("x", 300)
	data := `{"action":"STATUS_UPDATE","task":"` + long + `","status":"done"}` + "\n" + // no subject carries this id
		"{\"action\":\"TASK_ASSIGN\",\"task\":\"T-\xff\",\"to\":\"agent-1\"}\n" + // not UTF-8
		`{"action":"a.b c","task":"T-2","to":"agent-1"}` + "\n" + // an action escaped into a token
		`{"action":"` + long + `"}` + "\n" + // an action no token holds
		`{"action":"STATUS_UPDATE"}` + "\n" // no task
	require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
	sum, err := c.importer(t, v1import.Config{CheckpointLines: 1, Window: 1}).Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, 5, sum.Events)
	assert.Equal(t, 1, sum.StateCommands, "only T-\\ufffd: the long id has no subject, the others no state update")
	assert.Equal(t, 2, sum.Refused, "the long id, and the update without a task")
	recs := c.imported(t, 5)
	subjects := map[string]bool{}
	for _, r := range recs {
		subjects[r.Subject] = true
		if strings.Contains(r.Subject, "TASK_ASSIGN") {
			assert.Contains(t, string(r.Data), `"line_base64":"`)
		}
	}
	assert.True(t, subjects["codi.audit.log.v1-import.v1.a%2Eb%20c"], "%v", subjects)
	assert.True(t, subjects["codi.audit.log.v1-import.v1.event"], "%v", subjects)
	cp, err := c.sc.Get(context.Background(), v1import.CheckpointKind, sum.FileID, 0)
	require.NoError(t, err)
	assert.JSONEq(t, `5`, string(cp.Fields["lines"]))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, os.WriteFile(path, []byte(data+data), 0o644))
	_, err = c.importer(t, v1import.Config{Window: 1}).Import(ctx, path)
	require.ErrorIs(t, err, context.Canceled)
}

func TestImporter_Import_LongLinesAndAClosedConnection(t *testing.T) {
	c := startClients(t)
	path := filepath.Join(t.TempDir(), "codi.log")
	long := `{"action":"NOTE","pad":"` + strings.Repeat("p", 600<<10) + `"}`
	require.NoError(t, os.WriteFile(path, []byte(long+"\n"+long[:1000]), 0o644))
	sum, err := c.importer(t, v1import.Config{}).Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Events, "a line longer than the read buffer")
	assert.Equal(t, 1, sum.Partial)

	nc, err := nats.Connect(c.url)
	require.NoError(t, err)
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	sc, err := state.NewClient(nc, "v1-import")
	require.NoError(t, err)
	nc.Close()
	im, err := v1import.New(v1import.Config{}, ac, sc)
	require.NoError(t, err)
	_, err = im.Import(context.Background(), path)
	require.ErrorIs(t, err, nats.ErrConnectionClosed)
}

// updatesLog writes a v1 log of 300 STATUS_UPDATEs of task T-1, each
// about 1 KB, and returns its path.
func updatesLog(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "codi.log")
	line := `{"action":"STATUS_UPDATE","task":"T-1","status":"` + strings.Repeat("s", 1000) + `"}` + "\n"
	require.NoError(t, os.WriteFile(path, []byte(strings.Repeat(line, 300)), 0o644))
	return path
}

func TestImporter_Import_CancelledMidway(t *testing.T) {
	c := startClients(t)
	path := updatesLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	im := c.importer(t, v1import.Config{Window: 4, Progress: func(int64, int64) { cancel() }})
	_, err := im.Import(ctx, path)
	require.ErrorIs(t, err, context.Canceled)
}

// Another log with the same first line has the first one's id and
// checkpoint: it is refused, naming both, instead of being reported as
// imported before (a new user's input: "13 imported before, 0 imported"
// for a 4-line file whose events were never imported).
func TestImporter_Import_SameFirstLineOtherFile(t *testing.T) {
	c := startClients(t)
	dir := t.TempDir()
	first := `{"ts":"t1","action":"TASK_ASSIGN","from":"o","to":"agent-1","task":"T-1"}` + "\n"
	one, other, shorter := filepath.Join(dir, "codi.log"), filepath.Join(dir, "other.log"), filepath.Join(dir, "short.log")
	require.NoError(t, os.WriteFile(one, []byte(first+`{"ts":"t2","action":"TASK_ACK","from":"agent-1","task":"T-1"}`+"\n"), 0o644))
	require.NoError(t, os.WriteFile(other, []byte(first+`{"ts":"t9","action":"TASK_ASSIGN","from":"o","to":"agent-2","task":"OTHER-1"}`+"\n"), 0o644))
	require.NoError(t, os.WriteFile(shorter, []byte(first), 0o644))
	im := c.importer(t, v1import.Config{})
	_, err := im.Import(context.Background(), one)
	require.NoError(t, err)
	_, err = im.Import(context.Background(), other)
	require.ErrorIs(t, err, v1import.ErrNotSameFile)
	assert.Contains(t, err.Error(), "starts like "+one+", imported before up to byte ")
	// A file shorter than what was imported (issue 18: it was called
	// "another log with the same first line") says so.
	_, err = im.Import(context.Background(), shorter)
	require.ErrorIs(t, err, v1import.ErrTruncated)
	assert.Contains(t, err.Error(), "is 74 bytes, but 136 bytes of it ("+one+") were imported before: it was truncated or replaced since")
	// The file itself, grown, goes on.
	f, err := os.OpenFile(one, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"ts":"t3","action":"TASK_ACK","from":"agent-1","task":"T-1"}` + "\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	sum, err := im.Import(context.Background(), one)
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Imported)
}

// A final event without its newline is imported and counted; the run that
// finds its newline (and what v1 appended after) must not count that line
// again: the file has 3 lines, not 4.
func TestImporter_Import_CompletedFinalLineCountedOnce(t *testing.T) {
	c := startClients(t)
	path := filepath.Join(t.TempDir(), "codi.log")
	l1 := `{"ts":"t1","action":"TASK_ASSIGN","from":"o","to":"agent-1","task":"T-1"}` + "\n"
	l2 := `{"ts":"t2","action":"TASK_ACK","from":"agent-1","task":"T-1"}`
	require.NoError(t, os.WriteFile(path, []byte(l1+l2), 0o644))
	im := c.importer(t, v1import.Config{})
	sum, err := im.Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, 2, sum.Lines)
	assert.Equal(t, 0, sum.Partial)
	assert.Equal(t, 2, sum.Imported)

	// v1 writes the newline, then a line and an event spliced onto
	// nothing: the second run starts mid-line.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	l3 := `{"ts":"t3","action":"STATUS_UPDATE","from":"agent-1","task":"T-1","status":"done"}` + "\n"
	_, err = f.WriteString("\n" + l3)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	sum, err = im.Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, 3, sum.Lines, "l1, l2 and l3: l2's newline is not a line")
	assert.Equal(t, 2, sum.Skipped)
	assert.Equal(t, 1, sum.Imported)
	cp, err := c.sc.Get(context.Background(), v1import.CheckpointKind, sum.FileID, 0)
	require.NoError(t, err)
	assert.JSONEq(t, `3`, string(cp.Fields["lines"]))

	// An event appended to that line without a newline between (v1 lost
	// it) is imported under its own offset, the line still counted once.
	path2 := filepath.Join(t.TempDir(), "codi.log")
	require.NoError(t, os.WriteFile(path2, []byte(`{"action":"another log"}`+"\n"+l2), 0o644))
	sum, err = im.Import(context.Background(), path2)
	require.NoError(t, err)
	require.Equal(t, 2, sum.Lines)
	f, err = os.OpenFile(path2, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(l3)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	sum, err = im.Import(context.Background(), path2)
	require.NoError(t, err)
	assert.Equal(t, 2, sum.Lines, "the event spliced onto the last line is in that line")
	assert.Equal(t, 1, sum.Imported)
	assert.Equal(t, 1, sum.Events)
}

// An unparseable fragment's audit event carries the file, its id and the
// fragment's offset like an event's, and its bytes exactly (base64).
func TestImporter_Import_FragmentsCarryFileAndOffset(t *testing.T) {
	c := startClients(t)
	path := filepath.Join(t.TempDir(), "codi.log")
	l1 := `{"ts":"t1","action":"TASK_ACK","from":"agent-1","task":"T-1"}` + "\n"
	torn := `{"ts":"t2","action":"TASK_ASS` + `{"ts":"t3","action":"TASK_ACK","from":"agent-2","task":"T-2"}` + "\n"
	garbage := "not json \xff\n"
	require.NoError(t, os.WriteFile(path, []byte(l1+torn+garbage), 0o644))
	sum, err := c.importer(t, v1import.Config{}).Import(context.Background(), path)
	require.NoError(t, err)
	require.Equal(t, 2, sum.Unparseable)
	want := map[int64][]byte{ // offset: the fragment's bytes
		int64(len(l1)):             []byte(`{"ts":"t2","action":"TASK_ASS`),
		int64(len(l1) + len(torn)): []byte("not json \xff"),
	}
	n := 0
	for _, r := range c.imported(t, sum.Imported) {
		if r.Subject != "codi.audit.log.v1-import.v1.unparseable" {
			continue
		}
		n++
		var p struct {
			File       string `json:"file"`
			FileID     string `json:"file_id"`
			Offset     *int64 `json:"offset"`
			LineBase64 []byte `json:"line_base64"`
		}
		require.NoError(t, json.Unmarshal(r.Data, &p), "a fragment's event is an object: %s", r.Data)
		assert.Equal(t, path, p.File)
		assert.Equal(t, sum.FileID, p.FileID)
		require.NotNil(t, p.Offset, "%s", r.Data)
		assert.Equal(t, want[*p.Offset], p.LineBase64, "offset %d", *p.Offset)
		assert.Equal(t, "v1-"+sum.FileID+"-"+strconv.FormatInt(*p.Offset, 10), r.MsgID)
	}
	assert.Equal(t, 2, n)
}

// An import stopped midway (a crash: what it had published goes on to be
// stored and applied) and run again after JetStream's duplicate window has
// passed imports every line's audit event and applies every state update
// exactly once: the checkpoint's state_offset, moved in each update
// command's own transaction, says which updates are applied.
func TestImporter_Import_CrashThenRerunPastTheDuplicateWindow(t *testing.T) {
	c := startClients(t)
	ctx := context.Background()
	for _, name := range []string{"CODI_STATE", "CODI_AUDIT"} {
		st, err := c.js.Stream(ctx, name)
		require.NoError(t, err)
		cfg := st.CachedInfo().Config
		cfg.Duplicates = 100 * time.Millisecond
		_, err = c.js.UpdateStream(ctx, cfg)
		require.NoError(t, err)
	}
	dir := t.TempDir()
	res, err := v1sim.RunWrites(ctx, v1sim.Config{Dir: dir, Writers: 5, EventsPerWriter: 600, Mode: v1sim.Buffered})
	require.NoError(t, err)
	want, err := c.importer(t, v1import.Config{DryRun: true}).Import(ctx, res.Path)
	require.NoError(t, err)
	require.Greater(t, want.StateCommands, 1000)

	// The first run stops halfway, before any periodic checkpoint: its
	// update commands moved state_offset. The second, with a checkpoint
	// per line, stops long before that offset: its checkpoints must not
	// move state_offset back.
	stopAt := func(at func(read, size int64) bool) (context.Context, func(read, size int64)) {
		stopped, stop := context.WithCancel(ctx)
		t.Cleanup(stop)
		return stopped, func(read, size int64) {
			if at(read, size) {
				stop()
			}
		}
	}
	stopped, progress := stopAt(func(read, size int64) bool { return read > size/2 })
	crash := v1import.Config{CheckpointLines: 100_000, BulkEvents: 50, TxnOps: 10, Window: 4, Progress: progress}
	_, err = c.importer(t, crash).Import(stopped, res.Path)
	require.ErrorIs(t, err, context.Canceled)
	c.appliedAll(t, want.FileID)
	stopped, progress = stopAt(func(read, size int64) bool { return true })
	_, err = c.importer(t, v1import.Config{CheckpointLines: 1, Progress: progress}).Import(stopped, res.Path)
	require.ErrorIs(t, err, context.Canceled)
	c.appliedAll(t, want.FileID)
	time.Sleep(300 * time.Millisecond) // the duplicate window passing: not waiting for a result

	sum, err := c.importer(t, v1import.Config{TxnOps: 7}).Import(ctx, res.Path)
	require.NoError(t, err)
	assert.Equal(t, want.Lines, sum.Lines)
	assert.Greater(t, sum.Skipped, 0, "the stopped run's checkpoint")
	assert.Less(t, sum.StateCommands, want.StateCommands, "updates applied before are not sent again")

	// Every line's event once.
	recs := c.imported(t, want.Imported)
	ids := map[string]bool{}
	for _, r := range recs {
		require.False(t, ids[r.MsgID], "imported twice: %s", r.MsgID)
		ids[r.MsgID] = true
	}
	assert.Len(t, ids, want.Imported)
	// Every update applied once: the tasks' revisions add up to them.
	total := 0
	list, err := c.sc.List(ctx, v1import.TaskKind, state.ListOptions{Limit: 1000})
	require.NoError(t, err)
	for _, r := range list.Records {
		total += int(r.Rev)
	}
	assert.Equal(t, want.StateCommands, total)
}

// An update too large to share a command (it may be refused) goes in a
// command of its own line; those around it are applied as usual.
func TestImporter_Import_LargeUpdateAlone(t *testing.T) {
	c := startClients(t)
	path := filepath.Join(t.TempDir(), "codi.log")
	big := strings.Repeat("s", 5000)
	data := `{"action":"TASK_ASSIGN","task":"T-1","to":"agent-1"}` + "\n" +
		`{"action":"STATUS_UPDATE","task":"T-1","status":"` + big + `"}{"action":"TASK_ASSIGN","task":"T-2","to":"agent-2"}` + "\n" +
		`{"action":"STATUS_UPDATE","task":"T-1","status":"done"}` + "\n"
	require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
	sum, err := c.importer(t, v1import.Config{}).Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, 4, sum.StateCommands)
	rec, err := c.sc.Get(context.Background(), v1import.TaskKind, "T-1", 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), rec.Rev)
	assert.JSONEq(t, `"done"`, string(rec.Fields["status"]))
	rec, err = c.sc.Get(context.Background(), v1import.TaskKind, "T-2", 0)
	require.NoError(t, err)
	assert.JSONEq(t, `"agent-2"`, string(rec.Fields["assignee"]))
	cp, err := c.sc.Get(context.Background(), v1import.CheckpointKind, sum.FileID, 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(4), cp.Rev, "three update commands (before, the large line, after) and the last checkpoint")
	assert.JSONEq(t, strconv.Itoa(len(data)), string(cp.Fields["state_offset"]))
}

// appliedAll waits until the state service has applied everything
// CODI_STATE holds (what a stopped import had published).
func (c clients) appliedAll(t testing.TB, fileID string) {
	t.Helper()
	info, err := c.js.Stream(context.Background(), "CODI_STATE")
	require.NoError(t, err)
	_, err = c.sc.Get(context.Background(), v1import.CheckpointKind, fileID, info.CachedInfo().State.LastSeq)
	require.NoError(t, err)
}
