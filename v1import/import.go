package v1import

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// Names the import writes under.
const (
	// DefaultSource is the audit source (and state actor) of imported
	// events.
	DefaultSource = "v1-import"
	// AuditCategory is the category of imported audit events:
	// codi.audit.log.<source>.v1.<ACTION>.
	AuditCategory = "v1"
	// UnparseableToken is the token after the category for fragments.
	UnparseableToken = "unparseable"
	// CheckpointKind is the state kind of the checkpoint records, one per
	// file id.
	CheckpointKind = "v1-import"
	// TaskKind is the state kind v1's state updates go to.
	TaskKind = "task"
)

// Config configures an Importer. A plain value; zero fields are defaults.
type Config struct {
	// Window bounds messages awaiting their PubAck (default 64, at most
	// 4000, nats.go's bound per client): with BulkEvents events per audit
	// message, a few MiB in flight.
	Window int
	// BulkEvents is how many audit events one bulk message carries
	// (default 256, at most audit.MaxBulkEntries); fewer when they pass
	// 512 KiB.
	BulkEvents int
	// TxnOps bounds the task updates of one multi-record command, besides
	// the checkpoint's (default and at most state.MaxTxnOps-1, at least 2:
	// a command holds whole lines, and a line up to two events).
	TxnOps int
	// CheckpointLines is how many lines pass between checkpoints (default
	// 50,000).
	CheckpointLines int
	// DryRun reads and counts the whole file and publishes nothing: it
	// needs no server (New accepts nil clients) and reads no checkpoint.
	DryRun bool
	// Progress, when set, is called with the bytes read so far and the
	// file's size, at most every 64 KiB read.
	Progress func(read, size int64)
	// MaxPayload is the largest message the server takes, in bytes: give
	// the connection's (nats.Conn.MaxPayload). Default 1 MiB, NATS's
	// default. A bulk message stays below it; a piece of a line whose
	// audit event does not fit goes as an oversized record (Summary).
	MaxPayload int64
}

// MaxRefusals bounds the refusals a Summary lists (RefusedAt).
const MaxRefusals = 5

// Refusal is a state update that was not applied: its file offset, its
// task (as v1 wrote it, cut to 64 bytes) and why.
type Refusal struct {
	Offset int64  `json:"offset"`
	Task   string `json:"task"`
	Reason string `json:"reason"`
}

// Summary is what one Import did. A plain value.
type Summary struct {
	File   string `json:"file"`
	FileID string `json:"file_id"`
	// Lines counts the file's lines (newline-terminated, and a final one
	// without); Skipped those an earlier import had done (the checkpoint).
	Lines   int `json:"lines"`
	Skipped int `json:"skipped"`
	// Events counts complete v1 events found, Recovered those among them
	// found in a torn line (Split), Unparseable the fragments kept as
	// non-JSON audit events.
	Events      int `json:"events"`
	Recovered   int `json:"recovered"`
	Unparseable int `json:"unparseable"`
	// Imported counts audit events published (Events + Unparseable),
	// StateCommands the task updates (each its own operation, event and
	// audit record).
	Imported      int `json:"imported"`
	StateCommands int `json:"state_commands"`
	// Oversized counts the pieces (events or fragments, counted there
	// too) whose audit event would not fit in a message (Config.MaxPayload):
	// their audit event holds the piece's length, SHA-256 and first 1 KiB.
	Oversized int `json:"oversized"`
	// Refused counts the state updates not applied, each at its line's
	// offset with its reason (the first MaxRefusals in RefusedAt): a task
	// id no subject token holds, a record above the state service's size
	// limit, or an update the state service refused (a large one is sent
	// alone and its outcome awaited). Its line's audit event is kept.
	Refused   int       `json:"refused"`
	RefusedAt []Refusal `json:"refused_at,omitempty"`
	// RefusedCommands counts the multi-record commands of small updates
	// (up to 63 each) the state service refused without the import
	// foreseeing it (a record near the size limit through fields others
	// wrote): found by the checkpoint's revision at the end, so their
	// offsets are not known; their updates are not applied.
	RefusedCommands int `json:"refused_commands,omitempty"`
	// RefusedBefore counts what earlier imports of the file refused (the
	// checkpoint's "refused"): updates this run skips as done.
	RefusedBefore int `json:"refused_before,omitempty"`
	// NoFirstLine: the file has no newline-terminated non-blank line yet,
	// so no id (FileID): nothing was read or imported.
	NoFirstLine bool `json:"no_first_line,omitempty"`
	// Partial is 1 when a final line without newline was left for the next
	// import.
	Partial int   `json:"partial"`
	Bytes   int64 `json:"bytes"`
	// Elapsed is the time to read and store everything (PubAcks), Applied
	// the time until the state service had applied the last command,
	// Committed until the audit log had committed the last event too. A
	// dry run reads only: Elapsed, and no Applied or Committed.
	Elapsed   time.Duration `json:"elapsed_ns"`
	Applied   time.Duration `json:"applied_ns"`
	Committed time.Duration `json:"committed_ns"`
	DryRun    bool          `json:"dry_run,omitempty"`
}

// Importer imports v1 logs through an audit and a state client; the state
// client's agent is the audit source and the commands' actor. Safe for
// concurrent use by Imports of different files.
type Importer struct {
	cfg   Config
	audit *audit.Client
	state *state.Client
}

// New returns an Importer. It fails with ErrConfig for a bad cfg or a
// missing client (both may be nil for a dry run).
func New(cfg Config, ac *audit.Client, sc *state.Client) (*Importer, error) {
	if cfg.Window == 0 {
		cfg.Window = 64
	}
	if cfg.BulkEvents == 0 {
		cfg.BulkEvents = 256
	}
	if cfg.TxnOps == 0 {
		cfg.TxnOps = state.MaxTxnOps - 1
	}
	if cfg.CheckpointLines == 0 {
		cfg.CheckpointLines = 50_000
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = 1 << 20
	}
	switch {
	case cfg.Window < 1 || cfg.Window > 4000:
		return nil, fmt.Errorf("%w: Window must be 1..4000, got %d", ErrConfig, cfg.Window)
	case cfg.BulkEvents < 1 || cfg.BulkEvents > audit.MaxBulkEntries:
		return nil, fmt.Errorf("%w: BulkEvents must be 1..%d, got %d", ErrConfig, audit.MaxBulkEntries, cfg.BulkEvents)
	case cfg.TxnOps < 2 || cfg.TxnOps > state.MaxTxnOps-1:
		return nil, fmt.Errorf("%w: TxnOps must be 2..%d, got %d", ErrConfig, state.MaxTxnOps-1, cfg.TxnOps)
	case cfg.CheckpointLines < 1:
		return nil, fmt.Errorf("%w: CheckpointLines must be positive, got %d", ErrConfig, cfg.CheckpointLines)
	case cfg.MaxPayload < minPayload:
		return nil, fmt.Errorf("%w: MaxPayload must be at least %d bytes, got %d", ErrConfig, minPayload, cfg.MaxPayload)
	case (sc == nil || ac == nil) && !cfg.DryRun:
		return nil, fmt.Errorf("%w: an audit and a state client are needed", ErrConfig)
	}
	return &Importer{cfg: cfg, audit: ac, state: sc}, nil
}

// Checkpoint is the record v1-import/<file id>: how far imports of a file
// got. Offset is the first byte not imported yet, Lines the lines before
// it. StateOffset is how far the state updates got: every one at a file
// offset below it is applied (each multi-record command of updates moves
// it in its own transaction), so a re-run publishes none of them again.
type Checkpoint struct {
	File        string `json:"file"`
	Offset      int64  `json:"offset"`
	Lines       int    `json:"lines"`
	StateOffset int64  `json:"state_offset,omitempty"`
	// StatePrefixSHA256 is the hex SHA-256 of the file's bytes before
	// StateOffset, checked like PrefixSHA256.
	StatePrefixSHA256 string `json:"state_prefix_sha256,omitempty"`
	// PrefixSHA256 is the hex SHA-256 of the file's bytes before Offset:
	// how a re-run tells the file grown from another file with the same
	// first line (ErrNotSameFile). Empty in checkpoints written before it.
	PrefixSHA256 string `json:"prefix_sha256,omitempty"`
	// Refused counts the state updates imports of the file did not apply
	// (Summary.Refused and RefusedCommands, summed over runs).
	Refused int `json:"refused,omitempty"`
	// Rev is the record's revision (not a field): 0 when there is none.
	Rev uint64 `json:"-"`
}

// source is the audit source and the commands' actor: the state client's
// agent (DefaultSource for a dry run without clients).
func (im *Importer) source() string {
	if im.state == nil {
		return DefaultSource
	}
	return im.state.Agent()
}

// checkpoint reads the checkpoint of the file at path, whose id is id: the
// zero Checkpoint for a file never imported, and for a dry run (which
// counts the whole file without a server).
func (im *Importer) checkpoint(ctx context.Context, path, id string) (Checkpoint, error) {
	cp := Checkpoint{File: path}
	if im.cfg.DryRun {
		return cp, nil
	}
	rec, err := im.state.Get(ctx, CheckpointKind, id, 0)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return cp, nil
	case err != nil:
		return cp, fmt.Errorf("v1import: %s: read the checkpoint: %w", path, err)
	}
	for name, v := range map[string]any{"offset": &cp.Offset, "lines": &cp.Lines, "file": &cp.File, "prefix_sha256": &cp.PrefixSHA256,
		"state_offset": &cp.StateOffset, "state_prefix_sha256": &cp.StatePrefixSHA256, "refused": &cp.Refused} {
		if b, ok := rec.Fields[name]; ok {
			_ = json.Unmarshal(b, v)
		}
	}
	cp.Rev = rec.Rev
	return cp, nil
}

// run is one Import's state.
type run struct {
	im     *Importer
	ctx    context.Context
	sum    Summary
	quoted []byte // the file name, as JSON
	window []jetstream.PubAckFuture
	// lastSeq is the last checkpoint's CODI_STATE sequence, auditSeq the
	// highest CODI_AUDIT sequence of this run's PubAcks.
	lastSeq, auditSeq uint64
	prefix            hash.Hash // SHA-256 of the bytes before the current offset
	buf               []byte
	// bulk holds the audit events not yet sent; ops the task updates not
	// yet sent, the first at file offset opsFrom, each at its offset in
	// opsAt with its task as v1 wrote it in opsTask; stateOffset is where
	// the checkpoint says updates still need applying.
	bulk             *audit.Bulk
	ops              []state.TxnOp
	opsAt            []int64
	opsTask          []string
	opsFrom, opsLast int64
	stateOffset      int64
	large            bool // an update in ops may be refused (maxOpBytes)
	// full holds the ids of the task records that were near the state
	// service's size limit when the run started (fullTasks).
	full map[string]bool
	// cp is the checkpoint the run started from; cpWrites counts the
	// commands of this run that write it (applied ones, for those whose
	// outcome was awaited), so that the record's revision at the end
	// tells whether the state service refused some (RefusedCommands).
	cp       Checkpoint
	cpWrites uint64
	// limit bounds an audit message's payload (bulk or not).
	limit int
	// off is where reading got, cpOff and cpLines the last checkpoint.
	off, cpOff int64
	cpLines    int
}

// Import reads the v1 log at path from its checkpoint on and publishes its
// events (see the package doc). It returns once every publish has its
// PubAck, the state service has applied the last command (the checkpoint)
// and the audit log has committed the last event, or with the first
// error: ErrPublish for a failed PubAck, ErrNotSameFile, ErrTruncated,
// ErrInterrupted (wrapping the context's error) when ctx ends, or a read
// error; a re-run resumes at the last checkpoint, publishes no state update
// below its state_offset again and no audit event the log does not drop as
// a repeat. A file without a first line (FileID) imports nothing
// (Summary.NoFirstLine).
func (im *Importer) Import(ctx context.Context, path string) (Summary, error) {
	r := &run{im: im, ctx: ctx, sum: Summary{File: path, DryRun: im.cfg.DryRun}}
	sum, err := r.importFile(path)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %s: stopped at byte %d; the checkpoint is at byte %d (%d lines): run the import again to continue from there: %w",
			ErrInterrupted, path, r.off, r.cpOff, r.cpLines, ctx.Err())
	}
	return sum, err
}

// importFile is Import's work.
func (r *run) importFile(path string) (Summary, error) {
	im, ctx := r.im, r.ctx
	start := time.Now()
	r.quoted, _ = json.Marshal(path)
	r.limit = int(im.cfg.MaxPayload) - payloadHeadroom
	f, err := os.Open(path)
	if err != nil {
		return r.sum, fmt.Errorf("v1import: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return r.sum, fmt.Errorf("v1import: %w", err)
	}
	id, ok, err := FileID(f)
	if err != nil {
		return r.sum, fmt.Errorf("v1import: %s: %w", path, err)
	}
	if !ok {
		r.sum.NoFirstLine = true // nothing is known of the file yet
		return r.sum, nil
	}
	r.sum.FileID = id
	cp, err := im.checkpoint(ctx, path, id)
	if err != nil {
		return r.sum, err
	}
	if cp.Rev == 0 && !im.cfg.DryRun {
		// Imported by the id rule before this one? Only if that
		// checkpoint's bytes are this file's.
		if cp, err = r.legacyCheckpoint(f, fi.Size(), cp); err != nil {
			return r.sum, err
		}
	}
	r.cp, r.cpOff, r.cpLines, r.off = cp, cp.Offset, cp.Lines, cp.Offset
	r.sum.Skipped, r.sum.Lines, r.sum.RefusedBefore = cp.Lines, cp.Lines, cp.Refused
	r.stateOffset = cp.StateOffset
	if r.bulk, err = audit.NewBulk(im.source()); err != nil {
		return r.sum, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if r.prefix, err = r.verify(f, fi.Size(), cp); err != nil {
		return r.sum, err
	}
	if err := r.fullTasks(); err != nil {
		return r.sum, err
	}
	if _, err := f.Seek(cp.Offset, io.SeekStart); err != nil {
		return r.sum, fmt.Errorf("v1import: %s: %w", path, err)
	}

	// A checkpoint after a final event without its newline ends mid-line:
	// that line is counted, and what completes it (its newline, or events
	// v1 appended to it) is imported without counting it again.
	midLine := false
	if cp.Offset > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], cp.Offset-1); err != nil {
			return r.sum, fmt.Errorf("v1import: %s: %w", path, err)
		}
		midLine = last[0] != '\n'
	}
	off := cp.Offset
	br := bufio.NewReaderSize(f, 256<<10)
	var long []byte
	lastProgress := off
	for {
		if err := ctx.Err(); err != nil {
			return r.sum, err
		}
		chunk, rerr := br.ReadSlice('\n')
		if errors.Is(rerr, bufio.ErrBufferFull) {
			long = append(long, chunk...)
			continue
		}
		line := chunk
		if len(long) > 0 {
			line = append(long, chunk...)
			long = long[:0]
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return r.sum, fmt.Errorf("v1import: %s at byte %d: %w", path, off, rerr)
		}
		if len(line) == 0 {
			break
		}
		terminated := line[len(line)-1] == '\n'
		body := bytes.TrimSuffix(line, []byte{'\n'})
		if !terminated && !isObject(body) {
			r.sum.Partial = 1 // still being written, perhaps: the next import's
			break
		}
		counted := !midLine
		if counted {
			r.sum.Lines++
		}
		midLine = false
		lineOps := len(r.ops)
		if err := r.line(off, body); err != nil {
			return r.sum, err
		}
		if r.large {
			// A line with an update that may be refused goes in a command
			// of its own: the ones before it are not aborted with it.
			if err := r.flushOps(lineOps, off); err != nil {
				return r.sum, err
			}
		}
		r.prefix.Write(line)
		off += int64(len(line))
		r.off, r.sum.Bytes = off, off
		if r.large || len(r.ops) > im.cfg.TxnOps-2 {
			// A line holds at most two events: the next could overflow.
			if err := r.flushOps(len(r.ops), off); err != nil {
				return r.sum, err
			}
			r.large = false
		}
		if counted && (r.sum.Lines-cp.Lines)%im.cfg.CheckpointLines == 0 {
			if err := r.checkpoint(off); err != nil {
				return r.sum, err
			}
		}
		if im.cfg.Progress != nil && off-lastProgress >= 64<<10 {
			im.cfg.Progress(off, fi.Size())
			lastProgress = off
		}
		if !terminated {
			break
		}
	}
	if im.cfg.Progress != nil {
		im.cfg.Progress(off, fi.Size())
	}
	if off > cp.Offset {
		if err := r.checkpoint(off); err != nil {
			return r.sum, err
		}
	}
	r.sum.Elapsed = time.Since(start)
	if im.cfg.DryRun {
		return r.sum, nil // nothing applied, nothing to commit: no times of it
	}
	if err := r.applied(); err != nil {
		return r.sum, err
	}
	r.sum.Applied = time.Since(start)
	if r.auditSeq > 0 {
		if _, err := im.audit.WaitCommitted(ctx, r.auditSeq); err != nil {
			return r.sum, fmt.Errorf("v1import: %s: wait for the audit log: %w", path, err)
		}
	}
	r.sum.Committed = time.Since(start)
	return r.sum, nil
}

// legacyCheckpoint looks for the file's checkpoint under the ids the rule
// before FileID's gave it (legacyIDs) and returns the first whose bytes
// are this file's (verify), adopting its id: the events it imported have
// ids under it, and a re-run must find them. One whose bytes differ is an
// error, as it was under that rule, unless the first line is blank (every
// log starting with a blank line had that id). Else it returns cp.
func (r *run) legacyCheckpoint(f *os.File, size int64, cp Checkpoint) (Checkpoint, error) {
	ids, blank, err := legacyIDs(f, r.sum.FileID)
	if err != nil {
		return cp, fmt.Errorf("v1import: %s: %w", r.sum.File, err)
	}
	var first error
	for _, id := range ids {
		old, err := r.im.checkpoint(r.ctx, r.sum.File, id)
		if err != nil {
			return cp, err
		}
		if old.Rev == 0 {
			continue
		}
		id0 := r.sum.FileID
		r.sum.FileID = id
		if _, err := r.verify(f, size, old); err == nil {
			return old, nil
		} else if first == nil && !blank {
			first = err
		}
		r.sum.FileID = id0
	}
	return cp, first
}

// verify checks that the file's bytes before cp's offsets are the ones
// the checkpoint saw, and returns the SHA-256 state of the bytes before
// cp.Offset. It fails with ErrTruncated for a file shorter than what was
// imported from it, ErrNotSameFile for one whose bytes differ.
func (r *run) verify(f *os.File, size int64, cp Checkpoint) (hash.Hash, error) {
	path := r.sum.File
	if done := max(cp.Offset, cp.StateOffset); size < done {
		return nil, fmt.Errorf("%w: %s (id %s) is %d bytes, but %d bytes of it (%s) were imported before: it was truncated or replaced since; "+
			"nothing is imported from it", ErrTruncated, path, r.sum.FileID, size, done, cp.File)
	}
	prefix := sha256.New()
	if _, err := io.Copy(prefix, io.NewSectionReader(f, 0, cp.Offset)); err != nil {
		return nil, fmt.Errorf("v1import: %s: %w", path, err)
	}
	same := cp.PrefixSHA256 == "" || hex.EncodeToString(prefix.Sum(nil)) == cp.PrefixSHA256
	if same && cp.StateOffset > cp.Offset {
		// The updates up to StateOffset are skipped: the bytes up to it
		// must be the ones their commands came from.
		sh, _ := prefix.(hash.Cloner).Clone()
		if _, err := io.Copy(sh, io.NewSectionReader(f, cp.Offset, cp.StateOffset-cp.Offset)); err != nil {
			return nil, fmt.Errorf("v1import: %s: %w", path, err)
		}
		same = hex.EncodeToString(sh.Sum(nil)) == cp.StatePrefixSHA256
	}
	if !same {
		return nil, fmt.Errorf("%w: %s (id %s) starts like %s, imported before up to byte %d, but its content differs there: "+
			"if it is that log rewritten (a byte-order mark, blank lines or other line endings added), it is imported already, and "+
			"importing it again would import every event twice; if it is another log whose first event is the same, "+
			"import it from a copy with a distinct first line", ErrNotSameFile, path, r.sum.FileID,
			cp.File, max(cp.Offset, cp.StateOffset))
	}
	return prefix, nil
}

// line imports the pieces of the line at file offset off.
func (r *run) line(off int64, line []byte) error {
	if off == 0 && bytes.HasPrefix(line, utf8BOM) {
		// A byte-order mark is no part of the first event (nor of the
		// file's id): not a torn fragment.
		off, line = int64(len(utf8BOM)), line[len(utf8BOM):]
	}
	pieces := Split(line)
	for _, p := range pieces {
		at := off + int64(p.Off)
		id := r.msgID(at)
		if !p.Event {
			r.sum.Unparseable++
			if err := r.publishAudit(UnparseableToken, at, p.Raw, false, id); err != nil {
				return err
			}
			continue
		}
		r.sum.Events++
		if len(pieces) > 1 {
			r.sum.Recovered++
		}
		ev, _ := Decode(p.Raw)
		tok := subjects.Escape(ev.Action)
		if subjects.ValidToken(tok) != nil {
			tok = "event"
		}
		if err := r.publishAudit(tok, at, p.Raw, true, id); err != nil {
			return err
		}
		if at >= r.stateOffset {
			switch cmd, why := command(ev); {
			case why != "":
				r.refuse(at, ev.Task, why)
			case cmd.Op != "":
				r.update(ev.Task, cmd, at)
			}
		}
	}
	return nil
}

// command is the state command of a v1 state update (TASK_ASSIGN,
// STATUS_UPDATE), or why the update cannot be applied (no task, or no
// assignee or status: each must be a non-empty string); a zero Command and
// no reason for any other action.
func command(ev Event) (cmd state.Command, why string) {
	var field, value string
	switch ev.Action {
	case "TASK_ASSIGN":
		field, value = "assignee", ev.To
		if value == "" {
			why = "TASK_ASSIGN without an assignee: to is missing, empty or not a string"
		}
	case "STATUS_UPDATE":
		field, value = "status", ev.Status
		if value == "" {
			why = "STATUS_UPDATE without a status: status is missing, empty or not a string"
		}
	default:
		return state.Command{}, ""
	}
	if ev.Task == "" {
		why = ev.Action + " without a task: task is missing, empty or not a string"
	}
	if why != "" {
		return state.Command{}, why
	}
	return state.Command{Op: state.OpMerge, Fields: map[string]any{"v1_ts": ev.TS, "v1_from": ev.From, field: value}}, ""
}

// payload is the audit event of a piece of a line: the file, its id, the
// piece's offset and its bytes: an event's as JSON when it is UTF-8
// (event), else, and always for a fragment, base64.
func (r *run) payload(at int64, raw []byte, event bool) []byte {
	b := r.head(at)
	if event && utf8.Valid(raw) {
		b = append(b, `,"line":`...)
		b = append(b, bytes.TrimSpace(raw)...)
	} else {
		b = append(b, `,"line_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, raw)
		b = append(b, '"')
	}
	b = append(b, '}')
	r.buf = b
	return b
}

// oversizedPayload is the audit event of a piece whose payload would not
// fit in a message: the file, its id, the piece's offset, and instead of
// its bytes "oversized":true, their "length", hex "sha256" and the first
// oversizedHead of them ("head_base64").
func (r *run) oversizedPayload(at int64, raw []byte) []byte {
	sum := sha256.Sum256(raw)
	b := r.head(at)
	b = append(b, `,"oversized":true,"length":`...)
	b = strconv.AppendInt(b, int64(len(raw)), 10)
	b = append(b, `,"sha256":"`...)
	b = hex.AppendEncode(b, sum[:])
	b = append(b, `","head_base64":"`...)
	b = base64.StdEncoding.AppendEncode(b, raw[:min(len(raw), oversizedHead)])
	b = append(b, `"}`...)
	r.buf = b
	return b
}

// head starts a piece's audit event in r.buf: {"file","file_id","offset".
func (r *run) head(at int64) []byte {
	b := r.buf[:0]
	b = append(b, `{"file":`...)
	b = append(b, r.quoted...)
	b = append(b, `,"file_id":"`...)
	b = append(b, r.sum.FileID...)
	b = append(b, `","offset":`...)
	return strconv.AppendInt(b, at, 10)
}

// Limits of what the import sends.
const (
	// maxOpBytes bounds the v1 strings of a task update sent in a
	// multi-record command: all of its operations are rejected with one,
	// so an update that may be refused (a record too large) goes as a
	// command of its own, whose outcome the import awaits.
	maxOpBytes = 4 << 10
	// recordHeadroom is what a state record adds to its fields and id
	// (kind, revision, times, actor, sequence), generously: an update
	// whose fields and id pass kv.MaxValueSize less this is refused
	// before it is sent.
	recordHeadroom = 1 << 10
	// payloadHeadroom is what a message's subject and headers take of
	// Config.MaxPayload, generously (NATS counts them against it; the
	// subject of a bulk message is about 40 bytes, its headers 30).
	payloadHeadroom = 4 << 10
	// bulkEntryHeadroom is what a bulk entry adds to its payload, id and
	// subject token (audit.EntrySize: the subject's fixed tokens, the
	// length, separators).
	bulkEntryHeadroom = 64
	// fullRecord is the size of a task record's fields above which an
	// update of it may be refused however small: the limit less what
	// an update of at most maxOpBytes of v1 strings can add, escaped
	// (6 bytes a byte), twice (assignee and status), and the headroom.
	fullRecord = kv.MaxValueSize - 2*6*maxOpBytes - recordHeadroom
	// oversizedHead is how much of an oversized piece its audit event
	// keeps.
	oversizedHead = 1 << 10
	// minPayload is the least Config.MaxPayload: an oversized piece's
	// audit event and the headroom must fit.
	minPayload = 16 << 10
)

// publishAudit adds the audit event of the piece raw at file offset at
// (an event or a fragment) to the bulk message, sending the bulk first
// when the event would take it past the message limit and after when
// full; a piece whose event alone would pass that limit goes as an
// oversized record.
func (r *run) publishAudit(tok string, at int64, raw []byte, event bool, id string) error {
	r.sum.Imported++
	data := r.payload(at, raw, event)
	overhead := len(id) + len(tok) + len(r.im.source()) + bulkEntryHeadroom
	if len(data)+overhead > r.limit {
		r.sum.Oversized++
		data = r.oversizedPayload(at, raw)
	}
	if r.im.cfg.DryRun {
		return nil
	}
	if r.bulk.Len() > 0 && r.bulk.Size()+len(data)+overhead > r.limit {
		if err := r.flushBulk(); err != nil {
			return err
		}
	}
	if err := r.bulk.Add(AuditCategory, id, data, tok); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPublish, r.sum.File, err)
	}
	if r.bulk.Len() >= r.im.cfg.BulkEvents {
		return r.flushBulk()
	}
	return nil
}

// flushBulk sends the bulk message, if it holds events.
func (r *run) flushBulk() error {
	if r.bulk.Len() == 0 {
		return nil
	}
	f, err := r.im.audit.LogBulkAsync(r.bulk)
	r.bulk.Reset()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPublish, r.sum.File, err)
	}
	return r.track(f)
}

// update adds the update of task (as v1 wrote it) at file offset at to
// the multi-record command; the read loop sends it at a line's end. An
// update the state service would refuse for its id or size is refused
// here, and counted.
func (r *run) update(task string, cmd state.Command, at int64) {
	id := subjects.Escape(task)
	if err := subjects.ValidToken(id); err != nil {
		r.refuse(at, task, "the task id is no state id: "+err.Error())
		return
	}
	large := opBytes(cmd) > maxOpBytes
	if large {
		// Only then can the record pass the limit.
		b, _ := json.Marshal(cmd.Fields)
		if n := len(b) + len(id) + recordHeadroom; n > kv.MaxValueSize {
			r.refuse(at, task, fmt.Sprintf("a record of about %d bytes is above the state service's limit of %d", n, kv.MaxValueSize))
			return
		}
	}
	r.sum.StateCommands++
	if r.im.cfg.DryRun {
		return
	}
	if len(r.ops) == 0 {
		r.opsFrom = at
	}
	r.ops = append(r.ops, state.TxnOp{Kind: TaskKind, ID: id, Command: cmd})
	r.opsAt, r.opsTask = append(r.opsAt, at), append(r.opsTask, task)
	r.opsLast = at
	r.large = r.large || large || r.full[id]
}

// fullTasks notes the task records whose fields pass fullRecord bytes
// (others wrote them): an update of one may take it past the state
// service's limit, so it goes in a command of its own line and its
// outcome is awaited. A record filled later is found by applied.
func (r *run) fullTasks() error {
	if r.im.cfg.DryRun {
		return nil
	}
	opts := state.ListOptions{Limit: 1000}
	for {
		res, err := r.im.state.List(r.ctx, TaskKind, opts)
		if err != nil {
			return fmt.Errorf("v1import: %s: list the tasks: %w", r.sum.File, err)
		}
		for _, rec := range res.Records {
			n := 0
			for k, v := range rec.Fields {
				n += len(k) + len(v) + 4
			}
			if n > fullRecord {
				if r.full == nil {
					r.full = map[string]bool{}
				}
				r.full[rec.ID] = true
			}
		}
		if res.NextAfter == "" || len(res.Records) == 0 {
			return nil
		}
		opts.After = res.NextAfter
	}
}

// refuse counts the update of task at file offset at as refused, with
// why.
func (r *run) refuse(at int64, task, reason string) {
	r.sum.Refused++
	if len(r.sum.RefusedAt) < MaxRefusals {
		if len(task) > 64 {
			task = strings.ToValidUTF8(task[:64], "") + "…"
		}
		r.sum.RefusedAt = append(r.sum.RefusedAt, Refusal{Offset: at, Task: task, Reason: reason})
	}
}

// opBytes is the size of the v1 strings cmd carries.
func opBytes(cmd state.Command) int {
	n := 0
	for _, v := range cmd.Fields {
		s, _ := v.(string)
		n += len(s)
	}
	return n
}

// msgID is the Nats-Msg-Id of what the import publishes for the piece at
// file offset at.
func (r *run) msgID(at int64) string {
	return "v1-" + r.sum.FileID + "-" + strconv.FormatInt(at, 10)
}

// flushOps sends the first n task updates gathered as one multi-record
// command whose last operation moves the checkpoint's state_offset to the
// line boundary at, with the SHA-256 of the file's bytes before it (the
// running prefix hash: at is where the read loop is), in the same
// transaction. Its txid v1-<file id>-<first offset>-<last offset> names
// exactly those updates, so a re-run that publishes them again within
// JetStream's duplicate window is stored once. Updates that may be
// refused (r.large) go through sendLarge instead.
func (r *run) flushOps(n int, at int64) error {
	if n == 0 {
		return nil
	}
	ops, rest := r.ops[:n:n], r.ops[n:]
	ats, tasks := r.opsAt[:n:n], r.opsTask[:n:n]
	last := r.opsLast
	if len(rest) > 0 {
		last = at - 1 // the updates left are in the line at at
	}
	txid := r.msgID(r.opsFrom) + "-" + strconv.FormatInt(last, 10)
	cpOp := state.TxnOp{Kind: CheckpointKind, ID: r.sum.FileID, Command: state.Command{Op: state.OpMerge,
		Fields: map[string]any{"state_offset": at, "state_prefix_sha256": hex.EncodeToString(r.prefix.Sum(nil))}}}
	r.stateOffset = at
	defer func() {
		r.ops = append(r.ops[:0], rest...)
		r.opsAt = append(r.opsAt[:0], r.opsAt[n:]...)
		r.opsTask = append(r.opsTask[:0], r.opsTask[n:]...)
		if len(rest) > 0 {
			r.opsFrom = at
		}
	}()
	if r.large {
		return r.sendLarge(ops, ats, tasks, cpOp)
	}
	f, err := r.im.state.PublishTxnAsync(txid, append(ops, cpOp))
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPublish, r.sum.File, err)
	}
	r.cpWrites++
	return r.track(f)
}

// sendLarge sends ops (updates at file offsets ats, of tasks) with the
// checkpoint's operation cpOp as one multi-record command and awaits its
// outcome: when the state service refuses an update, that one is counted
// as refused with its reason and the others are sent again without it.
func (r *run) sendLarge(ops []state.TxnOp, ats []int64, tasks []string, cpOp state.TxnOp) error {
	ops, ats, tasks = slices.Clone(ops), slices.Clone(ats), slices.Clone(tasks)
	for len(ops) > 0 {
		ev, err := r.im.state.Txn(r.ctx, append(ops[:len(ops):len(ops)], cpOp))
		if err == nil {
			r.cpWrites++
			return nil
		}
		j := slices.IndexFunc(ev.Ops, func(e state.Event) bool { return e.Reason != state.ReasonAborted })
		if ev.Status != state.StatusRejected || j < 0 || j >= len(ops) {
			return fmt.Errorf("%w: %s: %w", ErrPublish, r.sum.File, err)
		}
		r.refuse(ats[j], tasks[j], "the state service refused it: "+err.Error())
		r.sum.StateCommands--
		ops, ats, tasks = slices.Delete(ops, j, j+1), slices.Delete(ats, j, j+1), slices.Delete(tasks, j, j+1)
	}
	return nil // every one refused: the next command moves state_offset
}

// track keeps f in the window, waiting for the older half when it is full.
func (r *run) track(f jetstream.PubAckFuture) error {
	r.window = append(r.window, f)
	if len(r.window) < r.im.cfg.Window {
		return nil
	}
	half := max(len(r.window)/2, 1)
	if err := r.wait(r.window[:half]); err != nil {
		return err
	}
	r.window = append(r.window[:0], r.window[half:]...)
	return nil
}

// wait waits for the PubAcks of fs, noting the highest CODI_AUDIT
// sequence and the update commands JetStream dropped as repeats.
func (r *run) wait(fs []jetstream.PubAckFuture) error {
	for _, f := range fs {
		select {
		case ack := <-f.Ok():
			switch {
			case ack.Stream == bus.StreamAudit:
				r.auditSeq = max(r.auditSeq, ack.Sequence)
			case ack.Duplicate:
				// An update command an earlier run had stored (its txid):
				// applied once, by that one.
				r.cpWrites--
			}
		case err := <-f.Err():
			return fmt.Errorf("%w: %s: %s: %w", ErrPublish, r.sum.File, f.Msg().Subject, err)
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
	}
	return nil
}

// checkpoint sends what is gathered, waits for every publish so far, then
// records that the file is imported up to off, its state updates included
// (applied, or counted as refused).
func (r *run) checkpoint(off int64) error {
	if r.im.cfg.DryRun {
		return nil
	}
	if err := r.flushBulk(); err != nil {
		return err
	}
	if err := r.flushOps(len(r.ops), off); err != nil {
		return err
	}
	if err := r.wait(r.window); err != nil {
		return err
	}
	r.window = r.window[:0]
	sum := hex.EncodeToString(r.prefix.Sum(nil))
	fields := map[string]any{"file": r.sum.File, "offset": off, "lines": r.sum.Lines, "prefix_sha256": sum,
		"refused": r.cp.Refused + r.sum.Refused}
	if off >= r.stateOffset {
		// Every update before off is applied before this command is, or
		// was refused and counted; a re-run still short of an earlier
		// run's state_offset keeps it.
		fields["state_offset"], fields["state_prefix_sha256"] = off, sum
		r.stateOffset = off
	}
	cmd := state.Command{Op: state.OpMerge, Fields: fields}
	f, err := r.im.state.PublishAsync(CheckpointKind, r.sum.FileID, cmd, "")
	if err != nil {
		return fmt.Errorf("%w: %s: checkpoint: %w", ErrPublish, r.sum.File, err)
	}
	r.cpWrites++
	select {
	case ack := <-f.Ok():
		r.lastSeq = ack.Sequence
		r.cpOff, r.cpLines = off, r.sum.Lines
		return nil
	case err := <-f.Err():
		return fmt.Errorf("%w: %s: checkpoint: %w", ErrPublish, r.sum.File, err)
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// applied waits until the state service has applied the last command,
// then counts the commands of this run it refused (RefusedCommands: the
// checkpoint's revision is short of what this run wrote) and adds them to
// the checkpoint's "refused".
func (r *run) applied() error {
	if r.lastSeq == 0 {
		return nil
	}
	for {
		rec, err := r.im.state.Get(r.ctx, CheckpointKind, r.sum.FileID, r.lastSeq)
		if errors.Is(err, state.ErrTimeout) {
			continue
		}
		if err != nil {
			return fmt.Errorf("v1import: %s: wait for the state service: %w", r.sum.File, err)
		}
		want := r.cp.Rev + r.cpWrites
		if rec.Rev >= want {
			return nil
		}
		r.sum.RefusedCommands = int(want - rec.Rev)
		refused := r.cp.Refused + r.sum.Refused + r.sum.RefusedCommands
		_, err = r.im.state.Apply(r.ctx, CheckpointKind, r.sum.FileID, state.Command{Op: state.OpMerge, Fields: map[string]any{"refused": refused}})
		if err != nil {
			return fmt.Errorf("v1import: %s: checkpoint: %w", r.sum.File, err)
		}
		return nil
	}
}
