package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go/jetstream"
)

// retentionReadBytes bounds the record bytes one retention transaction
// reads, whatever Retention.Batch says.
const retentionReadBytes = 8 << 20

// retentionRun is one run of removals, kept at ("meta","audit","retention")
// from its first transaction until its event is in the log, so that a crash
// neither loses the event nor records it twice. Its JSON is the event's
// payload.
type retentionRun struct {
	// Removed records FromSeq..ToSeq, Bytes of them; FirstSeq is the first
	// kept record and Prev the hash before it (the anchor).
	Removed  uint64 `json:"removed"`
	FromSeq  uint64 `json:"from_seq"`
	ToSeq    uint64 `json:"to_seq"`
	FirstSeq uint64 `json:"first_seq"`
	Prev     string `json:"prev"`
	Bytes    uint64 `json:"bytes"`
	// MaxAge and MaxCount are the limits the run applied.
	MaxAge   string `json:"max_age,omitempty"`
	MaxCount uint64 `json:"max_count,omitempty"`
	// Target is the first seq the run keeps; Done is set when FirstSeq has
	// reached it. MsgID is the event's Nats-Msg-Id.
	Target uint64 `json:"target"`
	Done   bool   `json:"done"`
	MsgID  string `json:"msg_id,omitempty"`
}

// retentionMsgID returns the Nats-Msg-Id of a stored, finished run.
func retentionMsgID(stored []byte) string {
	var r retentionRun
	if json.Unmarshal(stored, &r) != nil || !r.Done {
		return ""
	}
	return r.MsgID
}

// retentionStep does one bounded piece of retention: publish the event of a
// finished run, or remove up to Retention.Batch records. more reports that
// another step should follow at once.
func (s *Service) retentionStep(ctx context.Context) (more bool, err error) {
	if r := s.retention; r != nil && r.Done {
		return false, s.publishRetention(ctx, r)
	}
	target := uint64(0)
	if r := s.retention; r != nil {
		target = r.Target
	} else if target, err = s.retentionTarget(ctx); err != nil {
		return false, err
	}
	if target <= s.committed().anchor.FirstSeq {
		return false, nil
	}
	run, m, err := s.remove(target)
	if err != nil {
		return false, err
	}
	s.setMeta(m)
	s.retention = run
	if !run.Done {
		return true, nil
	}
	s.log.Info().Uint64("removed", run.Removed).Uint64("first_seq", run.FirstSeq).Msg("retention")
	return false, s.publishRetention(ctx, run)
}

// retentionTarget returns the first seq to keep under the configured limits.
func (s *Service) retentionTarget(ctx context.Context) (uint64, error) {
	r := s.cfg.Retention
	m := s.committed()
	target := uint64(0)
	// Keep MaxCount-1 records: the event reporting the removal is the
	// MaxCount-th, so a quiet log settles instead of trimming itself forever.
	if r.MaxCount > 0 && m.count() > r.MaxCount {
		target = m.head.Seq + 2 - r.MaxCount
	}
	if r.MaxAge > 0 {
		cutoff := time.Now().Add(-r.MaxAge).UnixNano()
		keep := m.head.Seq + 1 // every record is older than the cutoff
		err := s.store.View(ctx, func(tx kv.ReadTxn) error {
			return scanIndex(tx, kv.Tuple{nsByTime}, cutoff, 0, nil, func(_ int64, seq uint64) bool {
				keep = seq
				return false
			})
		})
		target = max(target, keep)
		if err != nil {
			return 0, fmt.Errorf("audit: retention: %w", err)
		}
	}
	return min(target, m.head.Seq+1), nil
}

// remove deletes the oldest records, up to Retention.Batch of them and none
// at or after target, with their index and Nats-Msg-Id entries, and moves the
// anchor past them, in one transaction.
func (s *Service) remove(target uint64) (*retentionRun, meta, error) {
	var (
		run *retentionRun
		m   meta
	)
	err := s.store.Update(context.Background(), func(tx kv.Txn) error {
		var err error
		if m, err = readMeta(tx); err != nil {
			return err
		}
		run = &retentionRun{Target: target, FromSeq: m.anchor.FirstSeq, Prev: m.anchor.Prev}
		if r := s.cfg.Retention; r.MaxAge > 0 {
			run.MaxAge = r.MaxAge.String()
		}
		run.MaxCount = s.cfg.Retention.MaxCount
		if err := getJSON(tx, keyRetention, run); err != nil {
			return err
		}
		w := writer{tx: tx}
		lo := m.anchor.FirstSeq
		hi := min(run.Target, lo+uint64(s.cfg.Retention.Batch), m.head.Seq+1)
		read := 0
		seq := lo
		// The index values of the removed records, whose blocks may go.
		sources, categories, scs := map[string]bool{}, map[string]bool{}, map[[2]string]bool{}
		for ; seq < hi && read < retentionReadBytes; seq++ {
			begin, end := recordRange(seq, seq+1)
			parts, err := tx.GetRange(begin, end, kv.RangeOptions{})
			if err != nil {
				return err
			}
			if len(parts) == 0 {
				return fmt.Errorf("audit: retention: record %d is missing", seq)
			}
			raw := joinParts(parts)
			read += len(raw)
			var r Record
			if err := json.Unmarshal(raw, &r); err != nil {
				return fmt.Errorf("audit: retention: record %d: %w", seq, err)
			}
			sources[r.Source], categories[r.Category], scs[[2]string{r.Source, r.Category}] = true, true, true
			if r.MsgID != "" {
				// The id's key in either layout, if it still names this
				// record.
				for _, k := range [][]byte{msgIDKey(r.Source, r.MsgID), legacyMsgIDKey(r.MsgID)} {
					v, err := getOptional(tx, k)
					if err != nil {
						return err
					}
					if bytes.Equal(v, strconv.AppendUint(nil, seq, 10)) {
						w.clear(k)
					}
				}
			}
			w.clearRange(begin, end)
			run.Removed++
			run.Bytes += uint64(len(raw))
			run.ToSeq = seq
			run.Prev = r.Hash
			m.head.Bytes -= min(m.head.Bytes, uint64(len(raw)))
		}
		prefixes := []kv.Tuple{{nsByTime}}
		for src := range sources {
			prefixes = append(prefixes, kv.Tuple{nsBySource, src})
		}
		for cat := range categories {
			prefixes = append(prefixes, kv.Tuple{nsByCategory, cat})
		}
		for sc := range scs {
			prefixes = append(prefixes, kv.Tuple{nsBySC, sc[0], sc[1]})
		}
		for _, p := range prefixes {
			if err := clearIndexBefore(&w, p, seq); err != nil {
				return err
			}
		}
		m.anchor = anchor{FirstSeq: seq, Prev: run.Prev}
		run.FirstSeq = seq
		if seq >= run.Target || seq > m.head.Seq {
			run.Done = true
			run.MsgID = "codi-audit-retention-" + strconv.FormatUint(run.ToSeq, 10)
		}
		w.setJSON(keyAnchor, m.anchor)
		w.setJSON(keyHead, m.head)
		w.setJSON(keyRetention, run)
		return w.err
	})
	if err != nil {
		return nil, meta{}, fmt.Errorf("audit: retention: %w", err)
	}
	return run, m, nil
}

// publishRetention records a finished run as an audit event. Its Nats-Msg-Id
// makes a repeat after a crash or a failed publish harmless. When the
// stream answers that it already holds the event at a sequence the log has
// applied, the event is in the log and the run is closed here.
func (s *Service) publishRetention(ctx context.Context, run *retentionRun) error {
	subj, err := subjects.AuditLog(RetentionSource, RetentionCategory)
	if err != nil {
		return err
	}
	data, err := json.Marshal(run)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ack, err := s.js.Publish(pctx, subj, data, jetstream.WithMsgID(run.MsgID))
	if err != nil {
		return fmt.Errorf("audit: publish retention event: %w", err)
	}
	if !ack.Duplicate || ack.Sequence > s.committed().applied {
		return nil // the writer clears the run when it appends the event
	}
	err = s.store.Update(ctx, func(tx kv.Txn) error {
		v, err := getOptional(tx, keyRetention)
		if err != nil || v == nil || retentionMsgID(v) != run.MsgID {
			return err
		}
		return tx.Clear(keyRetention)
	})
	if err != nil {
		return fmt.Errorf("audit: close retention run: %w", err)
	}
	s.retention = nil
	return nil
}

// joinParts concatenates the parts of one record in key order.
func joinParts(parts []kv.KeyValue) []byte {
	if len(parts) == 1 {
		return parts[0].Value
	}
	n := 0
	for _, p := range parts {
		n += len(p.Value)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = append(b, p.Value...)
	}
	return b
}
