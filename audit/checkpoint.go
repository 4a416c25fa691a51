package audit

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/sumdb/note"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/subjects"
)

// Signed checkpoints of the chain head. The hash chain alone proves nothing
// against someone who can write the store: rewrite one record, recompute
// every later hash and the head, and the log verifies. A checkpoint is the
// head (seq and hash) signed with an ed25519 key kept outside the store, in
// the signed-note format of the Go checksum database
// (golang.org/x/mod/sumdb/note, as transparency logs' checkpoints are):
//
//	codi2-audit
//	<seq>
//	<hash of record seq, 64 hex>
//	time <RFC 3339 time of record seq>
//
//	— codi2-audit <base64 key hash and signature>
//
// The service publishes one to CODI_AUDIT every CheckpointInterval when the
// log grew, and on shutdown, as an event of source codi-audit, category
// checkpoint, payload {"seq","hash","note"}, Nats-Msg-Id
// codi-audit-checkpoint-<seq>-<hash>: so checkpoints are in the stream,
// in the log, and in any export (codi2 audit export --source codi-audit
// --category checkpoint). Verify checks the log against them: a record
// rewritten and re-chained no longer has the hash a checkpoint signed.

// Names of the checkpoint events and notes.
const (
	CheckpointSource   = "codi-audit"
	CheckpointCategory = "checkpoint"
	// CheckpointKeyName is the signer name in the key files and notes.
	CheckpointKeyName = "codi2-audit"
)

// Checkpoint is a verified signed checkpoint: record Seq of the log had
// hash Hash. Note is the signed note as published. A plain value.
type Checkpoint struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	Time time.Time `json:"-"`
	Note string    `json:"note"`
}

// checkpointText is the note text of a checkpoint of seq.
func checkpointText(seq uint64, hash string, t int64) string {
	return CheckpointKeyName + "\n" + strconv.FormatUint(seq, 10) + "\n" + hash + "\ntime " +
		time.Unix(0, t).UTC().Format(time.RFC3339Nano) + "\n"
}

// SignCheckpoint signs the checkpoint of record seq with hash and time t
// (Unix ns).
func SignCheckpoint(signer note.Signer, seq uint64, hash string, t int64) (Checkpoint, error) {
	msg, err := note.Sign(&note.Note{Text: checkpointText(seq, hash, t)}, signer)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return Checkpoint{Seq: seq, Hash: hash, Time: time.Unix(0, t).UTC(), Note: string(msg)}, nil
}

// OpenCheckpoint verifies a signed checkpoint note with the verifiers
// known and decodes it. An unsigned, badly signed or malformed note is an
// error wrapping ErrBadCheckpoint.
func OpenCheckpoint(msg string, known note.Verifiers) (Checkpoint, error) {
	n, err := note.Open([]byte(msg), known)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) != 4 || lines[0] != CheckpointKeyName || !isHex64(lines[2]) || !strings.HasPrefix(lines[3], "time ") {
		return Checkpoint{}, fmt.Errorf("%w: not a codi2 audit checkpoint", ErrBadCheckpoint)
	}
	seq, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || seq == 0 {
		return Checkpoint{}, fmt.Errorf("%w: seq %q", ErrBadCheckpoint, lines[1])
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(lines[3], "time "))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: time: %v", ErrBadCheckpoint, err)
	}
	return Checkpoint{Seq: seq, Hash: lines[2], Time: t, Note: msg}, nil
}

// LoadCheckpointKey reads the signer key in path, creating it on first use
// with a new ed25519 key: the private key (note format, mode 0600) in path
// and the public verifier key in path+".pub". It returns the signer and the
// verifier key text. Keep path out of the store's file (by default it sits
// next to audit.db) and the .pub copy wherever verifiers are.
func LoadCheckpointKey(path string) (note.Signer, string, error) {
	skey, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		s, v, gerr := note.GenerateKey(rand.Reader, CheckpointKeyName)
		if gerr != nil {
			return nil, "", fmt.Errorf("audit: checkpoint key: %w", gerr)
		}
		if err := writeNew(path, []byte(s+"\n"), 0o600); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(path+".pub", []byte(v+"\n"), 0o644); err != nil {
			return nil, "", fmt.Errorf("audit: checkpoint key: %w", err)
		}
		skey = []byte(s)
	} else if err != nil {
		return nil, "", fmt.Errorf("audit: checkpoint key: %w", err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, "", fmt.Errorf("%w: checkpoint key %s: %v", ErrConfig, path, err)
	}
	vkey, err := os.ReadFile(path + ".pub")
	if err != nil {
		return nil, "", fmt.Errorf("audit: checkpoint key: %w", err)
	}
	return signer, strings.TrimSpace(string(vkey)), nil
}

// writeNew creates path with data; an existing file is not overwritten.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("audit: checkpoint key: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("audit: checkpoint key: %w", err)
	}
	return nil
}

// NewCheckpointVerifier parses a public verifier key (the .pub file's text).
func NewCheckpointVerifier(vkey string) (note.Verifiers, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("%w: verifier key: %v", ErrBadCheckpoint, err)
	}
	return note.VerifierList(v), nil
}

// checkpointEvent is the payload of a checkpoint event.
type checkpointEvent struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	Note string `json:"note"`
}

// publishCheckpoint signs the committed head and publishes it to
// CODI_AUDIT, unless the log has not grown since the last checkpoint beyond
// that checkpoint's own record. Failures are logged: the next one covers
// the same records.
func (s *Service) publishCheckpoint(ctx context.Context) {
	m := s.committed()
	// After a checkpoint of seq N the log's next record is, when idle, that
	// checkpoint itself: signing it again would publish one every interval.
	if s.signer == nil || m.head.Seq == 0 || m.head.Seq <= s.checkpointed ||
		(s.checkpointed > 0 && m.head.Seq == s.checkpointed+1) {
		return
	}
	cp, err := SignCheckpoint(s.signer, m.head.Seq, m.head.Hash, m.head.Time)
	if err != nil {
		s.log.Error().Err(err).Msg("checkpoint")
		return
	}
	subj, _ := subjects.AuditLog(CheckpointSource, CheckpointCategory)
	data, _ := json.Marshal(checkpointEvent{Seq: cp.Seq, Hash: cp.Hash, Note: cp.Note})
	id := "codi-audit-checkpoint-" + strconv.FormatUint(cp.Seq, 10) + "-" + cp.Hash
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.js.Publish(pctx, subj, data, jetstream.WithMsgID(id)); err != nil {
		s.log.Error().Err(err).Uint64("seq", cp.Seq).Msg("publish checkpoint")
		return
	}
	s.checkpointed = cp.Seq
	s.log.Debug().Uint64("seq", cp.Seq).Str("hash", cp.Hash).Msg("checkpoint published")
}

// ReadCheckpoints returns the checkpoints of the checkpoint events in a
// JSON-lines export (records of any sources; others are skipped), each
// verified with known. A checkpoint event whose note does not verify is an
// error wrapping ErrBadCheckpoint naming its line.
func ReadCheckpoints(r io.Reader, known note.Verifiers) ([]Checkpoint, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 8<<20)
	var out []Checkpoint
	for line := 1; sc.Scan(); line++ {
		raw := sc.Bytes()
		if len(strings.TrimSpace(string(raw))) == 0 {
			continue
		}
		rec, err := ParseRecord(raw)
		if err != nil {
			return nil, fmt.Errorf("audit: checkpoints line %d: %w", line, err)
		}
		cp, ok, err := recordCheckpoint(rec, known)
		if err != nil {
			return nil, fmt.Errorf("audit: checkpoints line %d: %w", line, err)
		}
		if ok {
			out = append(out, cp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("audit: read checkpoints: %w", err)
	}
	return out, nil
}

// recordCheckpoint returns the checkpoint rec carries, if it is a
// checkpoint event.
func recordCheckpoint(rec Record, known note.Verifiers) (Checkpoint, bool, error) {
	if rec.Source != CheckpointSource || rec.Category != CheckpointCategory {
		return Checkpoint{}, false, nil
	}
	var ev checkpointEvent
	if err := json.Unmarshal(rec.Data, &ev); err != nil {
		return Checkpoint{}, false, fmt.Errorf("%w: record %d: %v", ErrBadCheckpoint, rec.Seq, err)
	}
	cp, err := OpenCheckpoint(ev.Note, known)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("record %d: %w", rec.Seq, err)
	}
	return cp, true, nil
}

// checkAgainst checks the hashes seen for checkpointed seqs: it returns
// the first checkpoint whose seq has another hash, and how many distinct
// checkpointed seqs matched.
func checkAgainst(cps []Checkpoint, hashOf func(seq uint64) (string, bool)) (bad *Checkpoint, matched int) {
	counted := make(map[uint64]bool, len(cps))
	for i := range cps {
		h, ok := hashOf(cps[i].Seq)
		if !ok {
			continue
		}
		if h != cps[i].Hash {
			return &cps[i], matched
		}
		// One checkpoint may come twice (the log's record and the
		// stream's newest; an export's own and the outside file's).
		if !counted[cps[i].Seq] {
			counted[cps[i].Seq] = true
			matched++
		}
	}
	return nil, matched
}

// checkpointFailure is the result of a chain that does not match cp.
func checkpointFailure(r VerifyResult, cp *Checkpoint) VerifyResult {
	r.OK, r.BadSeq = false, cp.Seq
	r.Reason = fmt.Sprintf("record %d does not have the hash the checkpoint signed at %s (%s): the log was rewritten",
		cp.Seq, cp.Time.Format(time.RFC3339), cp.Hash)
	return r
}

// VerifyExportCheckpoints is VerifyExport that also checks the export
// against cps: every checkpoint whose seq the export holds must name that
// record's hash. The result's Checkpoints counts those checked; an export
// that no checkpoint covers is not OK, since nothing outside the file
// vouches for it. The reader is read once.
func VerifyExportCheckpoints(r io.Reader, cps []Checkpoint) (VerifyResult, error) {
	want := make(map[uint64]bool, len(cps))
	for _, cp := range cps {
		want[cp.Seq] = true
	}
	seen := map[uint64]string{}
	res, err := verifyExport(r, func(seq uint64, hash string) {
		if want[seq] {
			seen[seq] = hash
		}
	})
	if err != nil || !res.OK {
		return res, err
	}
	bad, matched := checkAgainst(cps, func(seq uint64) (string, bool) {
		h, ok := seen[seq]
		return h, ok
	})
	res.Checkpoints = matched
	switch {
	case bad != nil:
		return checkpointFailure(res, bad), nil
	case matched == 0:
		res.OK, res.Reason = false, "no signed checkpoint covers the export"
	}
	return res, nil
}

// verifyCheckpoints checks the log's records from..to against every
// checkpoint the log and the stream hold, verified with the service's own
// key. It returns r unchanged when the service has no key.
func (s *Service) verifyCheckpoints(ctx context.Context, r VerifyResult, from, to uint64) (VerifyResult, error) {
	if s.signer == nil || !r.OK || r.Count == 0 {
		return r, nil
	}
	var (
		cps []Checkpoint
		// forged is the first checkpoint record in from..to that does
		// not open (malformed, unsigned, or signed by no known key): the
		// log was rewritten there, or the record forged.
		forged    uint64
		forgedErr error
	)
	seqs := map[uint64]string{}
	err := s.store.View(ctx, func(tx kv.ReadTxn) error {
		cps, forged, forgedErr = cps[:0], 0, nil
		m, err := readMeta(tx)
		if err != nil {
			return err
		}
		q := parsedQuery{source: CheckpointSource, category: CheckpointCategory, limit: MaxQueryLimit}
		for {
			found, more, err := candidates(tx, q, m)
			if err != nil {
				return err
			}
			for _, seq := range found {
				raw, err := readRecord(tx, seq)
				if err != nil {
					return err
				}
				rec, err := ParseRecord(raw)
				if err != nil {
					return fmt.Errorf("audit: record %d: %w", seq, err)
				}
				cp, ok, err := recordCheckpoint(rec, s.verifiers)
				switch {
				case errors.Is(err, ErrBadCheckpoint):
					if forged == 0 && seq >= from && seq <= to {
						forged, forgedErr = seq, err
					}
				case err != nil:
					return err
				case ok:
					cps = append(cps, cp)
				}
				q.afterSeq = seq
			}
			if !more || len(found) == 0 {
				return nil
			}
		}
	})
	if err != nil {
		return r, fmt.Errorf("audit: verify checkpoints: %w", err)
	}
	// The stream's newest checkpoint, in case the log lost its own.
	if s.stream != nil {
		subj, _ := subjects.AuditLog(CheckpointSource, CheckpointCategory)
		if msg, err := s.stream.GetLastMsgForSubject(ctx, subj); err == nil {
			var ev checkpointEvent
			if json.Unmarshal(msg.Data, &ev) == nil {
				if cp, err := OpenCheckpoint(ev.Note, s.verifiers); err == nil {
					cps = append(cps, cp)
				}
			}
		}
	}
	err = s.store.View(ctx, func(tx kv.ReadTxn) error {
		for _, cp := range cps {
			if cp.Seq < from || cp.Seq > to {
				continue
			}
			raw, err := readRecord(tx, cp.Seq)
			if err != nil {
				return err
			}
			_, hash, err := splitStored(raw)
			if err != nil {
				return err
			}
			seqs[cp.Seq] = hash
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("audit: verify checkpoints: %w", err)
	}
	bad, matched := checkAgainst(cps, func(seq uint64) (string, bool) {
		h, ok := seqs[seq]
		return h, ok
	})
	r.Checkpoints = matched
	switch {
	case bad != nil && (forged == 0 || bad.Seq < forged):
		return checkpointFailure(r, bad), nil
	case forged != 0:
		r.OK, r.BadSeq = false, forged
		r.Reason = fmt.Sprintf("record %d is a checkpoint that does not open (%v): the log was rewritten there, or the record forged", forged, forgedErr)
	}
	return r, nil
}
