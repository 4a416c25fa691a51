package filewatch_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/filewatch"
	"github.com/codi2/codi2/internal/latency"
	"github.com/codi2/codi2/internal/servertest"
	"github.com/stretchr/testify/require"
)

// BenchmarkWatcher_ChangeLatency measures one file write at a time, without
// a coalescing window (Settle -1): "own" is the watcher's part, from reading
// the kernel event to handing the change to the sink (hash included);
// "path" is from the kernel event to the PubAck ("pubacked") or to the audit
// log's committed watermark ("committed"), over a real server. Without a
// window a rewrite may be two changes (the truncation, then the bytes):
// both are measured.
//
//	go test -run XXX -bench ChangeLatency -benchtime 2000x ./filewatch
func BenchmarkWatcher_ChangeLatency(b *testing.B) {
	for _, committed := range []bool{false, true} {
		name := "pubacked"
		if committed {
			name = "committed"
		}
		b.Run(name, func(b *testing.B) {
			s := servertest.Start(b, false)
			ac, err := audit.NewClient(connect(b, s.Bus().ClientURL()))
			require.NoError(b, err)
			inner := filewatch.AuditSink(ac, committed)
			own, path := latency.NewRecorder(b.N), latency.NewRecorder(b.N)
			got := make(chan string, 1024)
			sink := func(ctx context.Context, c filewatch.Change) error {
				own.Record(time.Since(c.Seen))
				if err := inner(ctx, c); err != nil {
					return err
				}
				path.Record(time.Since(c.Seen))
				got <- c.SHA256
				return nil
			}
			root := b.TempDir()
			start(b, filewatch.Config{Root: root, Settle: -1}, sink)
			file := filepath.Join(root, "f.txt")
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				data := fmt.Sprint("content ", i)
				require.NoError(b, os.WriteFile(file, []byte(data), 0o644))
				for h := sum(data); <-got != h; {
					// the truncation's own change, before the bytes landed
				}
			}
			b.StopTimer()
			o, p := own.Summary(), path.Summary()
			b.ReportMetric(float64(o.P50.Microseconds()), "own-p50-µs")
			b.ReportMetric(float64(o.P99.Microseconds()), "own-p99-µs")
			b.ReportMetric(float64(p.P50.Microseconds()), "path-p50-µs")
			b.ReportMetric(float64(p.P99.Microseconds()), "path-p99-µs")
		})
	}
}
