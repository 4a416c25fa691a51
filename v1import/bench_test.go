package v1import_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/codi2/codi2/internal/v1sim"
	"github.com/codi2/codi2/v1import"
	"github.com/stretchr/testify/require"
)

// BenchmarkImport_V1Log imports a v1 log of 5 buffered writers: lines/s is
// the rate to everything stored (every PubAck), applied-lines/s to the
// state service having applied the last command.
//
//	go test -run XXX -bench Import_V1Log/lines=1000000 -benchtime 1x -timeout 30m ./v1import
func BenchmarkImport_V1Log(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("lines=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			res, err := v1sim.RunWrites(context.Background(), v1sim.Config{Dir: dir, Writers: 5, EventsPerWriter: n / 5, Mode: v1sim.Buffered})
			require.NoError(b, err)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				c := startClients(b)
				b.StartTimer()
				sum, err := c.importer(b, v1import.Config{}).Import(context.Background(), res.Path)
				require.NoError(b, err)
				b.ReportMetric(float64(sum.Lines)/sum.Elapsed.Seconds(), "lines/s")
				b.ReportMetric(float64(sum.Lines)/sum.Applied.Seconds(), "applied-lines/s")
			}
		})
	}
}
