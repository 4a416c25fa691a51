package v1import_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/server"
	"github.com/codi2/codi2/internal/v1sim"
	"github.com/codi2/codi2/v1import"
	"github.com/stretchr/testify/require"
)

// BenchmarkImport_V1Log imports a v1 log of 5 buffered writers into a
// whole in-process server: the default one, one with
// server.Config.InlineAudit (the state service appends its outcomes'
// audit records in its own transaction; issue 16's prototype), and one on
// pebble (server.StorePebble: one database, audit inline). lines/s is
// the rate to everything committed: every line's audit record and every
// state update's outcome record in the audit log (its watermark past
// them), every command applied (the state watermark); stored-lines/s the
// rate to the last PubAck.
//
//	go test -run XXX -bench Import_V1Log/lines=1000000/server=default -benchtime 1x -timeout 30m ./v1import
func BenchmarkImport_V1Log(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("lines=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			res, err := v1sim.RunWrites(context.Background(), v1sim.Config{Dir: dir, Writers: 5, EventsPerWriter: n / 5, Mode: v1sim.Buffered})
			require.NoError(b, err)
			for _, sc := range []struct {
				name string
				cfg  server.Config
			}{
				{"server=default", server.Config{}},
				{"server=inline-audit", server.Config{InlineAudit: true}},
				{"server=pebble", server.Config{Store: server.StorePebble}},
			} {
				b.Run(sc.name, func(b *testing.B) {
					for range b.N {
						b.StopTimer()
						c := startClientsWith(b, sc.cfg)
						b.StartTimer()
						start := time.Now()
						sum, err := c.importer(b, v1import.Config{}).Import(context.Background(), res.Path)
						require.NoError(b, err)
						c.committed(b, sum)
						elapsed := time.Since(start)
						b.ReportMetric(float64(sum.Lines)/elapsed.Seconds(), "lines/s")
						b.ReportMetric(float64(sum.Lines)/sum.Elapsed.Seconds(), "stored-lines/s")
					}
				})
			}
		})
	}
}

// committed waits until the audit log holds a record for every line's
// audit event and for every state command's outcome, the checkpoints'
// included (the checkpoint record's rev counts them), and its watermark
// is past every CODI_AUDIT event.
func (c clients) committed(t testing.TB, sum v1import.Summary) {
	t.Helper()
	ctx := context.Background()
	cp, err := c.sc.Get(ctx, v1import.CheckpointKind, sum.FileID, 0)
	require.NoError(t, err)
	want := uint64(sum.Imported + sum.StateCommands + int(cp.Rev))
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		st, err := c.ac.Status(ctx)
		require.NoError(t, err)
		if st.Count >= want {
			info, err := c.js.Stream(ctx, "CODI_AUDIT")
			require.NoError(t, err)
			if _, err := c.ac.WaitCommitted(ctx, info.CachedInfo().State.LastSeq); err == nil {
				return
			}
		}
		require.True(t, time.Now().Before(deadline), "the audit log holds %d records, not %d: %s", st.Count, want, mustJSON(st))
		<-tick.C
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
