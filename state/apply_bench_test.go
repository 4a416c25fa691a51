package state

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/subjects"
)

// BenchmarkApplyCPU isolates the CPU the state service spends applying a
// command: planCommand and applyPlan on a real store, commandsPerTxn
// commands per transaction, the commit (and its fsync) left out of the
// time. "merge" is a merge of 4 fields into one of 1,000 records (so most
// commands read and merge a stored record); "v1import" is a multi-record
// command shaped as the v1 import's (benchImportTxn); "txn63" is a multi-record
// command of 63 such merges (ns/op is per command, not per operation).
//
//	go test -run XXX -bench ApplyCPU -benchmem ./state
func BenchmarkApplyCPU(b *testing.B) {
	stores := []struct {
		name string
		open func(testing.TB) kv.Store
	}{
		{"bolt", kvtest.NewBolt},
		{"pebble", func(t testing.TB) kv.Store { return kvtest.NewPebble(t) }},
	}
	for _, st := range stores {
		b.Run(st.name+"/merge", func(b *testing.B) {
			benchApply(b, st.open(b), 1000, func(i int) (string, []byte) {
				subj, err := subjects.StateCmd("task", fmt.Sprintf("T-%d", i%1000), "agent-1")
				require.NoError(b, err)
				return subj, benchMerge(i)
			})
		})
		b.Run(st.name+"/v1import", func(b *testing.B) {
			benchApply(b, st.open(b), 20, func(i int) (string, []byte) {
				subj, err := subjects.StateCmd(KindTxn, fmt.Sprintf("v1-f-%d", i), "codi-import")
				require.NoError(b, err)
				return subj, benchImportTxn(i)
			})
		})
		b.Run(st.name+"/txn63", func(b *testing.B) {
			benchApply(b, st.open(b), 20, func(i int) (string, []byte) {
				subj, err := subjects.StateCmd(KindTxn, fmt.Sprintf("X-%d", i), "agent-1")
				require.NoError(b, err)
				ops := make([]string, 63)
				for j := range ops {
					m := benchMerge(i + j)
					ops[j] = fmt.Sprintf(`{"kind":"task","id":"T-%d",%s`, (i*63+j)%1000, m[1:])
				}
				return subj, []byte(`{"ops":[` + strings.Join(ops, ",") + `]}`)
			})
		})
	}
}

// benchImportTxn is a multi-record command as codi2 import v1 sends
// them: 31 task visits over 100 tasks, each an assignment then a status
// update of the same task (a merge of its v1 time, sender and assignee or
// status), then the merge of the import's checkpoint.
func benchImportTxn(i int) []byte {
	ops := make([]string, 0, 63)
	for j := range 31 {
		visit := i*31 + j
		task, ts := fmt.Sprintf("ADR-%03d", visit%100), time.Unix(int64(visit), 0).UTC().Format(time.RFC3339Nano)
		ops = append(ops,
			fmt.Sprintf(`{"kind":"task","id":%q,"op":"merge","fields":{"v1_ts":%q,"v1_from":"orchestrator","assignee":"agent-%d"}}`, task, ts, visit%5+1),
			fmt.Sprintf(`{"kind":"task","id":%q,"op":"merge","fields":{"v1_ts":%q,"v1_from":"agent-%d","status":"s%d"}}`, task, ts, visit%5+1, visit/100%3))
	}
	ops = append(ops, fmt.Sprintf(`{"kind":"checkpoint","id":"f","op":"merge","fields":{"state_offset":%d,"state_prefix_sha256":"%064x"}}`, i*5000, i))
	return []byte(`{"ops":[` + strings.Join(ops, ",") + `]}`)
}

// benchMerge is a merge command of 4 fields: two strings, a number and a
// boolean, some changing with i.
func benchMerge(i int) []byte {
	return fmt.Appendf(nil, `{"op":"merge","fields":{"status":"in_progress","assignee":"agent-%d","priority":%d,"blocked":%t}}`,
		i%7, i%5, i%2 == 0)
}

// benchApply applies b.N commands made by next, perTxn per transaction
// through one batch layer as loop.commit does, timing planning and
// applying (the layer's flush included) only.
func benchApply(b *testing.B, store kv.Store, perTxn int, next func(i int) (subject string, data []byte)) {
	msgs := make([]inMsg, b.N)
	t0 := time.Now().UTC()
	for i := range msgs {
		subj, data := next(i)
		msgs[i] = inMsg{seq: uint64(i + 1), time: t0.Add(time.Duration(i) * time.Microsecond), subject: subj, data: data}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var cpu time.Duration // the process's CPU time while timed
	for start := 0; start < b.N; start += perTxn {
		b.StartTimer()
		began := processCPU(b)
		err := store.Update(context.Background(), func(stx kv.Txn) error {
			tx := newStagedTxn(stx) // the batch layer, as loop.commit has it
			tx.reserve(batchWrites * perTxn)
			for i := start; i < min(start+perTxn, b.N); i++ {
				p, err := planCommand(tx, &msgs[i], uint64(i), "g1")
				if err != nil {
					return err
				}
				if p.outcomes[p.own].status != StatusApplied {
					return fmt.Errorf("command %d: %s %s", i, p.outcomes[p.own].reason, p.outcomes[p.own].detail)
				}
				if err := applyPlan(tx, &p); err != nil {
					return err
				}
			}
			if err := tx.flush(); err != nil {
				return err
			}
			b.StopTimer()
			cpu += processCPU(b) - began
			return nil
		})
		require.NoError(b, err)
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
