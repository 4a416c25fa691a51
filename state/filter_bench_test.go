package state

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/codi2/codi2/internal/latency"
)

// BenchmarkListWhere measures filtered lists that match 1,000 records of a
// kind holding n, over a real server: "assigned to agent-7" (the field
// index), "changed in the last hour" (the time index) and both, each one
// page of up to 1,000 records, request to reply: "wire" as a NATS client
// sees it (the reply's bytes), "client" through Client.ListWhere (records
// decoded into Go values). The store is filled
// directly, records and index entries as applyPlan writes them.
//
//	go test -run XXX -bench ListWhere -benchtime 200x -timeout 30m ./state
func BenchmarkListWhere(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			store, err := boltkv.Open(filepath.Join(b.TempDir(), "state.db"), boltkv.Options{NoSync: true, InitialMmapSize: 1 << 30})
			require.NoError(b, err)
			b.Cleanup(func() { _ = store.Close() })
			now := time.Now().UTC()
			fill(b, store, n, now)
			bs := bustest.Run(b)
			nc, err := bs.Connect("codi-state")
			require.NoError(b, err)
			svc, err := New(Config{}, nc, store, zerolog.Nop())
			require.NoError(b, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- svc.Run(ctx) }()
			b.Cleanup(func() { cancel(); <-done })
			<-svc.ready
			rnc := bustest.Connect(b, bs)
			c, err := NewClient(rnc, "bench")
			require.NoError(b, err)

			for _, q := range []struct {
				name  string
				query ListQuery
				want  int
			}{
				{"assignee", ListQuery{Limit: 1000, Where: map[string]json.RawMessage{"assignee": json.RawMessage(`"agent-7"`)}}, n / 1000},
				{"last-hour", ListQuery{Limit: 1000, UpdatedAfter: now.Add(-time.Hour).Format(time.RFC3339Nano)}, 1000},
				{"last-hour-assignee", ListQuery{Limit: 1000, UpdatedAfter: now.Add(-time.Hour).Format(time.RFC3339Nano),
					Where: map[string]json.RawMessage{"assignee": json.RawMessage(`"agent-7"`)}}, 1},
			} {
				body, err := json.Marshal(q.query)
				require.NoError(b, err)
				b.Run(q.name, func(b *testing.B) {
					wire, client := latency.NewRecorder(b.N), latency.NewRecorder(b.N)
					b.ResetTimer()
					for range b.N {
						// The request as any NATS client sends it...
						start := time.Now()
						m, err := rnc.Request("codi.state.list.task", body, 10*time.Second)
						wire.Record(time.Since(start))
						require.NoError(b, err)
						require.Equal(b, q.want, bytes.Count(m.Data, []byte(`{"kind":`)), "%.200s", m.Data)
						// ...and through the Go client, records decoded.
						start = time.Now()
						res, err := c.ListWhere(context.Background(), "task", q.query)
						client.Record(time.Since(start))
						require.NoError(b, err)
						require.Len(b, res.Records, q.want)
					}
					w, cl := wire.Summary(), client.Summary()
					b.ReportMetric(float64(w.P50.Microseconds())/1000, "wire-p50-ms")
					b.ReportMetric(float64(w.P99.Microseconds())/1000, "wire-p99-ms")
					b.ReportMetric(float64(cl.P50.Microseconds())/1000, "client-p50-ms")
					b.ReportMetric(float64(cl.P99.Microseconds())/1000, "client-p99-ms")
				})
			}
		})
	}
}

// fill writes n task records with their index entries: assignee agent-(i
// mod 1000), so each agent has n/1000; updated at now - (n-i)*3.6s, so the
// last 1,000 changed within the hour.
func fill(b *testing.B, store kv.Store, n int, now time.Time) {
	b.Helper()
	statuses := []string{"open", "in_progress", "review", "done"}
	const perTx = 2_000
	for from := 0; from < n; from += perTx {
		err := store.Update(context.Background(), func(tx kv.Txn) error {
			for i := from; i < min(from+perTx, n); i++ {
				r := Record{Kind: "task", ID: fmt.Sprintf("T-%07d", i), Rev: 1, UpdatedBy: "bench", Seq: uint64(i + 1),
					UpdatedAt: now.Add(-time.Duration(n-i) * 3600 * time.Millisecond),
					Fields: map[string]json.RawMessage{
						"status":   json.RawMessage(`"` + statuses[i%4] + `"`),
						"assignee": json.RawMessage(fmt.Sprintf(`"agent-%d"`, i%1000)),
						"title":    json.RawMessage(`"a task of the benchmark, with a title of some length"`),
					}}
				val, err := encodeStored(r, false)
				if err != nil {
					return err
				}
				w := write{key: stateKey(r.Kind, r.ID), value: val}
				if err := indexWrite(tx, w); err != nil {
					return err
				}
				if err := tx.Set(w.key, w.value); err != nil {
					return err
				}
			}
			if from+perTx >= n {
				return tx.Set(indexVersionKey(), []byte{})
			}
			return nil
		})
		require.NoError(b, err)
	}
}
